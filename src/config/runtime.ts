/**
 * The config as the request path uses it: everything derivable is computed here, once
 * per load (key pools, header tables, timeouts in ms, Vertex token sources), so a
 * request does lookups, not parsing. A RuntimeConfig is immutable; a reload builds a new
 * one and swaps the reference, so in-flight requests keep the one they started with.
 */
import { KeyPool, type PoolKey } from '../keys/pool.ts';
import { DEFAULT_AUTHORITY_HOST, DEFAULT_ENTRA_SCOPES, entraTokenSource, managedIdentityTokenSource } from '../providers/entra-auth.ts';
import { ServiceAccountTokenSource } from '../providers/google-auth.ts';
import type { OAuthTokenCache, TokenSource } from '../providers/oauth-token.ts';
import { ConfigError, type ConfigProblem } from '../app/config/load.ts';
import { PROVIDER_IDS, type Config, type PluginId, type ProviderId, type ProviderInput } from './schema.ts';

export interface CompiledKey extends PoolKey {
  /** Position in providers.<id>.keys, for messages. */
  index: number;
  value: string;
  /** `tokens`: an Entra ID service principal's or managed identity's access tokens, sent instead of the value. */
  azure?: { endpoint?: string; apiVersion?: string; deployments: Record<string, string>; tokens?: TokenSource };
  vertex?: { projectId?: string; region?: string; tokens?: ServiceAccountTokenSource };
}

export interface RetryPolicy {
  maxRetries: number;
  initialMs: number;
  maxMs: number;
  maxRetryAfterMs: number;
}

export interface CompiledProvider {
  id: ProviderId;
  /** network_config.base_url without a trailing slash, or undefined for the provider default. */
  baseUrl: string | undefined;
  extraHeaders: ReadonlyArray<readonly [string, string]>;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /**
   * Bun's fetch has a socket idle timer of its own (5 min unless set per call; reset by
   * every byte, checked on a ~4 s tick) that would cut a stream allowed a longer idle
   * limit: every call sets it. When the header timeout is long and not shorter than the
   * idle limit, that timer is the header timeout (no JS timer per attempt); otherwise it
   * is a backstop behind our own timers.
   */
  socketTimeoutMs: number;
  nativeHeaderTimeout: boolean;
  retry: RetryPolicy;
  keys: KeyPool<CompiledKey>;
  /** TLS options for the upstream fetch, or undefined for the defaults. */
  tls: { ca?: string; rejectUnauthorized?: boolean } | undefined;
  /** Forward the client's own credential when the provider has no keys. */
  directKeys: boolean;
}

export interface RuntimeConfig {
  source: Config;
  /** Where it came from: a file path, or "built-in default". */
  origin: string;
  providers: Readonly<Record<ProviderId, CompiledProvider>>;
  maxBodyBytes: number;
  bufferBodyBytes: number;
  plugins: readonly PluginId[];
  /** Problems that do not stop the config from loading (e.g. an Azure key without endpoint). */
  warnings: string[];
}

const MiB = 1024 * 1024;
/** Below this, Bun's ~4 s socket-timer tick is too coarse for the header timeout. */
const NATIVE_TIMEOUT_MIN_MS = 60_000;
/** How far behind our own timers the socket timer stays when it is only a backstop. */
const SOCKET_BACKSTOP_SLACK_MS = 10_000;

/** Token sources survive reloads when the credentials did not change (no needless refresh). */
const tokenSources = new Map<string, Promise<ServiceAccountTokenSource>>();

export async function compileConfig(config: Config, origin: string): Promise<RuntimeConfig> {
  const problems: ConfigProblem[] = [];
  const warnings: string[] = [];
  const providers = {} as Record<ProviderId, CompiledProvider>;
  for (const id of PROVIDER_IDS) {
    providers[id] = await compileProvider(id, config.providers[id], config.direct_keys, origin, problems, warnings);
  }
  if (config.governance?.required && config.governance.virtual_keys.length === 0) {
    problems.push({ file: origin, path: 'governance.virtual_keys', message: 'governance.required is true but no virtual key is configured' });
  }
  if (config.governance && (config.governance.required || config.governance.virtual_keys.length > 0) && !config.plugins.includes('governance')) {
    // Virtual keys that nothing checks would let every request through unnoticed.
    if (config.governance.required) problems.push({ file: origin, path: 'plugins', message: 'governance.required is true but "governance" is not in plugins' });
    else warnings.push('a governance section is configured but "governance" is not in plugins: virtual keys and limits are not enforced');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    source: config,
    origin,
    providers,
    maxBodyBytes: Math.floor(config.server.max_request_body_mb * MiB),
    bufferBodyBytes: Math.floor(Math.min(config.server.buffer_body_limit_mb, config.server.max_request_body_mb) * MiB),
    plugins: [...new Set(config.plugins)],
    warnings,
  };
}

async function compileProvider(
  id: ProviderId,
  input: ProviderInput | undefined,
  directKeysDefault: boolean,
  origin: string,
  problems: ConfigProblem[],
  warnings: string[],
): Promise<CompiledProvider> {
  const net = input?.network_config;
  const keys: CompiledKey[] = [];
  for (const [index, k] of (input?.keys ?? []).entries()) {
    if (!k.enabled) continue;
    const path = `providers.${id}.keys[${index}]`;
    const key: CompiledKey = {
      index,
      name: k.name ?? `${id}-${index}`,
      value: k.value ?? '',
      models: k.models,
      weight: k.weight,
    };
    if (id === 'azure') {
      key.azure = {
        endpoint: k.azure_key_config?.endpoint?.replace(/\/+$/, ''),
        apiVersion: k.azure_key_config?.api_version,
        deployments: k.azure_key_config?.deployments ?? {},
      };
      // Deployment names count as models too: a key that maps gpt-4o -> my-gpt4o-deploy
      // allows requests to /deployments/my-gpt4o-deploy/.
      key.models = [...k.models, ...Object.entries(key.azure.deployments).filter(([m]) => k.models.includes(m) || k.models.includes('*')).map(([, d]) => d)];
      const ac = k.azure_key_config;
      const entra = [ac?.tenant_id, ac?.client_id, ac?.client_secret];
      const mi = ac?.managed_identity;
      if (mi !== undefined && mi !== false) {
        if (entra.some((x) => x !== undefined)) {
          problems.push({ file: origin, path: `${path}.azure_key_config`, message: 'managed_identity and a service principal (tenant_id, client_id, client_secret) exclude each other' });
        }
        key.azure.tokens = managedIdentityToken(mi === true ? undefined : mi.client_id, ac?.scopes ?? DEFAULT_ENTRA_SCOPES);
      } else if (entra.every((x) => x !== undefined)) {
        key.azure.tokens = entraToken(ac!.tenant_id!, ac!.client_id!, ac!.client_secret!, ac?.scopes ?? DEFAULT_ENTRA_SCOPES, ac?.authority_host ?? DEFAULT_AUTHORITY_HOST);
      } else if (entra.some((x) => x !== undefined)) {
        problems.push({ file: origin, path: `${path}.azure_key_config`, message: 'Entra ID auth needs all of tenant_id, client_id and client_secret' });
      } else if (!key.value) {
        problems.push({ file: origin, path: `${path}.value`, message: 'an Azure key needs a value (the api-key), azure_key_config tenant_id, client_id and client_secret (Entra ID), or azure_key_config.managed_identity' });
      }
      if (!key.azure.endpoint) {
        // Loaded with a warning rather than refused: requests then get a JSON error naming the setting.
        warnings.push(`${path}: azure_key_config.endpoint is not set; this key is not used`);
        continue;
      }
    } else if (id === 'vertex') {
      const vc = k.vertex_key_config;
      key.vertex = { projectId: vc?.project_id, region: vc?.region };
      if (vc?.auth_credentials !== undefined && vc.auth_credentials !== '') {
        try {
          key.vertex.tokens = await tokenSource(vc.auth_credentials);
        } catch (err) {
          problems.push({ file: origin, path: `${path}.vertex_key_config.auth_credentials`, message: (err as Error).message });
        }
        key.vertex.projectId ??= key.vertex.tokens?.account.project_id;
        if (!key.vertex.projectId) problems.push({ file: origin, path: `${path}.vertex_key_config.project_id`, message: 'a Vertex service-account key needs project_id' });
      } else if (!key.value) {
        problems.push({ file: origin, path, message: 'a Vertex key needs vertex_key_config.auth_credentials (service account) or value (express-mode API key)' });
      }
    } else if (!key.value) {
      problems.push({ file: origin, path: `${path}.value`, message: 'a key needs a value' });
    }
    keys.push(key);
  }
  const headerTimeoutMs = (net?.default_request_timeout_in_seconds ?? 300) * 1000;
  const idleTimeoutMs = (net?.stream_idle_timeout_in_seconds ?? 300) * 1000;
  const nativeHeaderTimeout = headerTimeoutMs >= NATIVE_TIMEOUT_MIN_MS && headerTimeoutMs >= idleTimeoutMs;
  return {
    id,
    baseUrl: net?.base_url?.replace(/\/+$/, ''),
    extraHeaders: Object.entries(net?.extra_headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
    headerTimeoutMs,
    idleTimeoutMs,
    socketTimeoutMs: nativeHeaderTimeout ? headerTimeoutMs : Math.max(headerTimeoutMs, idleTimeoutMs) + SOCKET_BACKSTOP_SLACK_MS,
    nativeHeaderTimeout,
    retry: {
      maxRetries: net?.max_retries ?? 0,
      initialMs: net?.retry_backoff_initial ?? 500,
      maxMs: Math.max(net?.retry_backoff_max ?? 5000, net?.retry_backoff_initial ?? 500),
      maxRetryAfterMs: (net?.max_retry_after_seconds ?? 30) * 1000,
    },
    keys: new KeyPool(keys),
    tls: upstreamTls(id, net, warnings),
    directKeys: input?.direct_keys ?? directKeysDefault,
  };
}

function upstreamTls(id: ProviderId, net: ProviderInput['network_config'] | undefined, warnings: string[]): CompiledProvider['tls'] {
  if (!net?.ca_cert_pem && !net?.insecure_skip_verify) return undefined;
  if (net.insecure_skip_verify) warnings.push(`providers.${id}.network_config.insecure_skip_verify is true: upstream TLS certificates are not checked`);
  return { ...(net.ca_cert_pem ? { ca: net.ca_cert_pem } : {}), ...(net.insecure_skip_verify ? { rejectUnauthorized: false } : {}) };
}

/**
 * Token caches survive reloads when nothing about them changed (a token stays valid for
 * an hour: a reload must not cost every key a new one), by what made them.
 */
function kept<T>(cache: Map<string, T>, key: unknown[], make: () => T): T {
  const cacheKey = JSON.stringify(key);
  let value = cache.get(cacheKey);
  if (value === undefined) cache.set(cacheKey, (value = make()));
  return value;
}

const entraTokens = new Map<string, OAuthTokenCache>();

function entraToken(tenantId: string, clientId: string, clientSecret: string, scopes: readonly string[], authorityHost: string): OAuthTokenCache {
  return kept(entraTokens, [tenantId, clientId, clientSecret, scopes, authorityHost], () => entraTokenSource({ tenantId, clientId, clientSecret, scopes, authorityHost }));
}

const managedIdentityTokens = new Map<string, OAuthTokenCache>();

/** The variables that choose a managed identity's token source (entra-auth.ts). */
const MANAGED_IDENTITY_ENV = ['AZURE_FEDERATED_TOKEN_FILE', 'AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_AUTHORITY_HOST', 'IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'AZURE_POD_IDENTITY_AUTHORITY_HOST'];

function managedIdentityToken(clientId: string | undefined, scopes: readonly string[]): OAuthTokenCache {
  const env = Object.fromEntries(MANAGED_IDENTITY_ENV.map((name) => [name, process.env[name]]));
  return kept(managedIdentityTokens, [clientId, scopes, env], () => managedIdentityTokenSource(clientId, scopes, env));
}

function tokenSource(credentials: string | Record<string, unknown>): Promise<ServiceAccountTokenSource> {
  const cacheKey = typeof credentials === 'string' ? credentials : JSON.stringify(credentials);
  let source = tokenSources.get(cacheKey);
  if (!source) {
    source = ServiceAccountTokenSource.create(credentials);
    tokenSources.set(cacheKey, source);
    source.catch(() => tokenSources.delete(cacheKey));
  }
  return source;
}
