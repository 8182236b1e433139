/**
 * Config → RuntimeConfig: everything the request path would otherwise work out per
 * request, once per load. Keys are compiled by their provider (providers/), which may
 * read its own key section and build a credential through providers/auth/; problems are
 * collected for all keys and reported together, with their paths.
 */
import { ConfigError, type ConfigProblem, shownName } from '../../config/problems.ts';
import type { CompiledKey, CompiledProvider, RuntimeConfig } from '../../config/runtime.ts';
import { type Config, PROVIDER_IDS, type ProviderInput } from '../../config/schema.ts';
import { KeyPool } from '../../keys/pool.ts';
import { IpRanges } from '../../lib/ip-ranges.ts';
import { apiKey } from '../../providers/auth/index.ts';
import { type KeyReport, PROVIDERS, type Provider } from '../../providers/index.ts';
import { PRESETS } from '../../providers/presets.ts';
import { customPrefix, ROUTES } from '../../providers/routes.ts';
import { ConfigPrices, catalogProviderId, ModelPrices } from '../../usage/prices.ts';
import { readServerTls } from './tls.ts';

const MiB = 1024 * 1024;
/** Below this, Bun's ~4 s socket-timer tick is too coarse for the header timeout. */
const NATIVE_TIMEOUT_MIN_MS = 60_000;
/** How far behind our own timers the socket timer stays when it is only a backstop. */
const SOCKET_BACKSTOP_SLACK_MS = 10_000;

export async function compileConfig(
  config: Config,
  origin: string,
  /** Files the config names, already read (a worker gets its primary's): see readServerTls. */
  files: Readonly<Record<string, string>> = {},
): Promise<RuntimeConfig> {
  const problems: ConfigProblem[] = [];
  const warnings: string[] = [];
  const report: Report = { origin, problems, warnings };
  const providers: Record<string, CompiledProvider> = {};
  const prices = new ConfigPrices(config.governance?.prices ?? {});
  for (const name of new Set([...PROVIDER_IDS, ...Object.keys(config.providers)])) {
    const input = config.providers[name];
    const provider = implementationOf(name, input, report);
    if (provider) providers[name] = await compileProvider(name, provider, input, config.direct_keys, report, prices);
  }
  const customRoutes = Object.keys(config.providers).filter((name) => !isBuiltIn(name));
  for (const name of customRoutes) checkPrefix(name, config, report);
  for (const [i, vk] of (config.governance?.virtual_keys ?? []).entries()) {
    for (const [j, name] of (vk.providers ?? []).entries()) {
      if (!providers[name])
        problems.push({
          file: origin,
          path: `governance.virtual_keys[${i}].providers[${j}]`,
          message: `no provider is named "${shownName(name)}" (providers: ${Object.keys(providers).map(shownName).join(', ')})`,
        });
    }
  }
  if (config.governance?.required && config.governance.virtual_keys.length === 0) {
    problems.push({
      file: origin,
      path: 'governance.virtual_keys',
      message: 'governance.required is true but no virtual key is configured',
    });
  }
  if (
    config.governance &&
    (config.governance.required || config.governance.virtual_keys.length > 0) &&
    !config.plugins.includes('governance')
  ) {
    // Virtual keys that nothing checks would let every request through unnoticed.
    if (config.governance.required)
      problems.push({
        file: origin,
        path: 'plugins',
        message: 'governance.required is true but "governance" is not in plugins',
      });
    else
      warnings.push(
        'a governance section is configured but "governance" is not in plugins: virtual keys and limits are not enforced',
      );
  }
  const serverTls = readServerTls(config.server.tls, origin, problems, warnings, files);
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    source: config,
    origin,
    providers,
    maxBodyBytes: Math.floor(config.server.max_request_body_mb * MiB),
    bufferBodyBytes: Math.floor(Math.min(config.server.buffer_body_limit_mb, config.server.max_request_body_mb) * MiB),
    publicUrl: publicUrl(config.server.public_url),
    trustedProxies: config.server.trusted_proxies.length > 0 ? new IpRanges(config.server.trusted_proxies) : undefined,
    plugins: [...new Set(config.plugins)],
    warnings,
    secrets: configuredSecrets(config, providers),
    customRoutes,
    serverTls,
  };
}

const isBuiltIn = (name: string) => (PROVIDER_IDS as readonly string[]).includes(name);

/** `/<name>_passthrough` must not be a route that is already served (GenAI's is `genai`'s). */
function checkPrefix(name: string, config: Config, report: Report): void {
  const prefix = customPrefix(name);
  const taken = ROUTES.find((r) => r.prefix === prefix);
  const metricsPath = config.metrics.path;
  if (taken || metricsPath === prefix || metricsPath.startsWith(`${prefix}/`))
    report.problems.push({
      file: report.origin,
      path: `providers.${shownName(name)}`,
      message: `${prefix} is already ${taken ? `the route of ${taken.provider}` : 'metrics.path'}: name this provider otherwise`,
    });
}

/** `scheme://host[:port][/path]` as the URL parser spells it (lower-case host, default port left out), no trailing slash. */
function publicUrl(configured: string | undefined): string | undefined {
  if (configured === undefined) return undefined;
  const url = new URL(configured);
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * The implementation serving a provider: its own for a built-in name; for any other, the
 * one its `api` (or Bifrost's custom_provider_config.base_provider_type) names.
 */
function implementationOf(name: string, input: ProviderInput | undefined, report: Report): Provider | undefined {
  const api = input?.api ?? input?.custom_provider_config?.base_provider_type;
  const field = input?.api !== undefined ? 'api' : 'custom_provider_config.base_provider_type';
  const shown = shownName(name);
  const preset = Object.hasOwn(PRESETS, name) ? PRESETS[name] : undefined;
  if (isBuiltIn(name) || preset) {
    const own = preset?.api ?? name;
    if (api !== undefined && api !== own)
      report.problems.push({
        file: report.origin,
        path: `providers.${name}.${field}`,
        message: `${name} is ${preset ? `a preset speaking ${own}` : 'built in'}: its api cannot be ${shownName(api)} (name a provider of your own otherwise)`,
      });
    return PROVIDERS[own];
  }
  const known = Object.keys(PROVIDERS).join(', ');
  if (api === undefined) {
    report.problems.push({
      file: report.origin,
      path: `providers.${shown}.api`,
      message: `${shown} is not a built-in provider: say which API it speaks (api: one of ${known})`,
    });
    return undefined;
  }
  const provider = PROVIDERS[api];
  if (!provider)
    report.problems.push({
      file: report.origin,
      path: `providers.${shown}.${field}`,
      message: `unknown api "${shownName(api)}" (one of ${known})`,
    });
  return provider;
}

interface Report {
  origin: string;
  problems: ConfigProblem[];
  warnings: string[];
}

async function compileProvider(
  name: string,
  provider: Provider,
  input: ProviderInput | undefined,
  directKeysDefault: boolean,
  report: Report,
  prices: ConfigPrices,
): Promise<CompiledProvider> {
  const net = input?.network_config;
  const auth = input?.auth ?? provider.apiKey;
  const preset = Object.hasOwn(PRESETS, name) ? PRESETS[name] : undefined;
  const baseUrl = net?.base_url?.replace(/\/+$/, '') ?? preset?.baseUrl;
  if (preset && baseUrl === undefined)
    report.problems.push({
      file: report.origin,
      path: `providers.${name}.network_config.base_url`,
      message: `${name} has no default address: set its server's base URL (e.g. ${preset.example})`,
    });
  const keys: CompiledKey[] = [];
  for (const [index, k] of (input?.keys ?? []).entries()) {
    if (!k.enabled) continue;
    const path = `providers.${shownName(name)}.keys[${index}]`;
    const keyName = k.name ?? `${name}-${index}`;
    const value = k.value ?? '';
    let key: CompiledKey | undefined = {
      index,
      name: keyName,
      value,
      models: k.models,
      weight: k.weight,
      credential: apiKey(auth.header.toLowerCase(), `${auth.prefix}${value}`),
      settings: undefined,
    };
    if (provider.compileKey) {
      const keyReport: KeyReport = {
        path,
        problem: (field, message) =>
          report.problems.push({ file: report.origin, path: field ? `${path}.${field}` : path, message }),
        warn: (message) => report.warnings.push(message),
      };
      key = await provider.compileKey(k, key, keyReport);
    } else if (!value) {
      report.problems.push({ file: report.origin, path: `${path}.value`, message: 'a key needs a value' });
    }
    if (key) keys.push(key);
  }
  const headerTimeoutMs = (net?.default_request_timeout_in_seconds ?? 300) * 1000;
  const idleTimeoutMs = (net?.stream_idle_timeout_in_seconds ?? 300) * 1000;
  const nativeHeaderTimeout = headerTimeoutMs >= NATIVE_TIMEOUT_MIN_MS && headerTimeoutMs >= idleTimeoutMs;
  const socketTimeoutMs = nativeHeaderTimeout
    ? headerTimeoutMs
    : Math.max(headerTimeoutMs, idleTimeoutMs) + SOCKET_BACKSTOP_SLACK_MS;
  return {
    name,
    api: provider.id,
    baseUrl,
    extraHeaders: Object.entries(net?.extra_headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const),
    headerTimeoutMs,
    idleTimeoutMs,
    socketTimeoutMs,
    nativeHeaderTimeout,
    nativeIdleTimeout: socketTimeoutMs === idleTimeoutMs,
    retry: {
      maxRetries: net?.max_retries ?? 0,
      initialMs: net?.retry_backoff_initial ?? 500,
      maxMs: Math.max(net?.retry_backoff_max ?? 5000, net?.retry_backoff_initial ?? 500),
      maxRetryAfterMs: (net?.max_retry_after_seconds ?? 30) * 1000,
    },
    keys: new KeyPool(keys),
    tls: upstreamTls(name, net, report.warnings),
    directKeys: input?.direct_keys ?? directKeysDefault,
    // Providers of your own and local servers may need no key at all.
    keyOptional: preset ? preset.keyOptional === true : !isBuiltIn(name),
    prices: new ModelPrices(
      prices,
      catalogProviderId(name) ?? (provider.priceCatalog && catalogProviderId(provider.priceCatalog)),
      provider.modelAliases?.(keys),
    ),
  };
}

function upstreamTls(
  name: string,
  net: ProviderInput['network_config'] | undefined,
  warnings: string[],
): CompiledProvider['tls'] {
  if (!net?.ca_cert_pem && !net?.insecure_skip_verify) return undefined;
  if (net.insecure_skip_verify)
    warnings.push(
      `providers.${name}.network_config.insecure_skip_verify is true: upstream TLS certificates are not checked`,
    );
  return {
    ...(net.ca_cert_pem ? { ca: net.ca_cert_pem } : {}),
    ...(net.insecure_skip_verify ? { rejectUnauthorized: false } : {}),
  };
}

/** Every secret the config holds (at least 4 characters): redacted from logged bodies, never a metrics label. */
function configuredSecrets(config: Config, providers: Record<string, CompiledProvider>): string[] {
  const secrets: string[] = [];
  for (const p of Object.values(providers)) for (const k of p.keys.keys) if (k.value) secrets.push(k.value);
  for (const input of Object.values(config.providers))
    for (const k of input?.keys ?? []) {
      if (k.azure_key_config?.client_secret) secrets.push(k.azure_key_config.client_secret);
      if (k.bedrock_key_config?.secret_key) secrets.push(k.bedrock_key_config.secret_key);
      if (k.bedrock_key_config?.session_token) secrets.push(k.bedrock_key_config.session_token);
    }
  for (const vk of config.governance?.virtual_keys ?? []) secrets.push(vk.value);
  return secrets.filter((s) => s.length >= 4);
}
