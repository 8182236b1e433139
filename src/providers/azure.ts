/**
 * Azure: the upstream is the selected key's `azure_key_config.endpoint`
 * (`network_config.base_url` overrides it). Three client shapes arrive here:
 * - `/openai/deployments/{deployment}/...` (AzureOpenAI client): dated api-version;
 * - `/openai/v1/...` (OpenAI client on Azure's v1 API): takes no dated api-version;
 * - `/v1/messages` (Anthropic client: Claude on Azure AI Foundry), forwarded to the
 *   endpoint's `/anthropic` path with `x-api-key`.
 * Auth always comes from the key; client credentials never reach Azure (`keyRequired`:
 * no direct keys): the key's value as `api-key` (`x-api-key`
 * for Claude), or, for a key with an Entra ID service principal or a managed identity,
 * `Authorization: Bearer` with a token minted for it (auth/).
 *
 * api-version: the key config's `api_version` wins, else the client's, else
 * DEFAULT_AZURE_API_VERSION on the paths that need one (`/openai/...` other than v1).
 * On `/openai/v1/...` a dated version (from key or default) is never injected: the v1
 * API refuses them; a non-dated key value (`preview`) applies, and the client's passes.
 * The rest of the query is forwarded byte for byte.
 *
 * Realtime: `/openai/realtime?api-version=...&deployment=...` (api-version as on any
 * deployment path) and `/openai/v1/realtime?model=<deployment>` (as on any v1 path) are
 * WebSocket APIs, authorized like HTTP requests (`api-key`, or an Entra ID token). The
 * deployment named in their query is used as it is.
 *
 * Deployments: when the key maps models to deployments (`deployments: {gpt-4o: my-dep}`)
 * and the path names a mapped model (`/deployments/gpt-4o/`), the key's deployment is
 * substituted, so keys in several regions with different deployment names serve one
 * model name.
 */
import type { CompiledKey, HeaderEntries } from '../config/runtime.ts';
import { GatewayError } from '../core/errors.ts';
import { paramValues, percentDecoded, withoutParams } from '../lib/query.ts';
import { defaultAnthropicVersion } from './anthropic.ts';
import { credentialFor, DEFAULT_AUTHORITY_HOST, DEFAULT_ENTRA_SCOPES } from './auth/index.ts';
import { openaiRealtime } from './openai.ts';
import { bodyModel, joinUrl, type Provider, type RealtimeApi } from './provider.ts';

/** Used only on paths that need an api-version when neither key nor client gave one. */
export const DEFAULT_AZURE_API_VERSION = '2024-10-21';

/** The one api-version the upstream sees, however the client spelled its name (util/query.ts). */
const API_VERSION: ReadonlySet<string> = new Set(['api-version']);
const DEPLOYMENT = /^\/openai\/deployments\/([^/]+)(?=\/|$)/;
const DATED_VERSION = /^\d{4}-\d{2}-\d{2}/;

export type AzurePathKind = 'deployment' | 'v1' | 'anthropic' | 'other';

export function azurePathKind(path: string): AzurePathKind {
  if (path.startsWith('/openai/v1/') || path === '/openai/v1') return 'v1';
  if (path.startsWith('/openai/')) return 'deployment';
  if (path.startsWith('/v1/') || path.startsWith('/anthropic/')) return 'anthropic';
  return 'other';
}

/** api-version per path kind: key config wins, then the client's, then a default where required. */
export function azureApiVersion(
  kind: AzurePathKind,
  keyVersion: string | undefined,
  clientVersion: string | undefined,
): string | undefined {
  switch (kind) {
    case 'deployment':
      return keyVersion ?? clientVersion ?? DEFAULT_AZURE_API_VERSION;
    case 'other':
      return keyVersion ?? clientVersion;
    case 'v1':
      // The v1 API rejects dated versions; only `preview`-style values from the key apply.
      return keyVersion && !DATED_VERSION.test(keyVersion) ? keyVersion : clientVersion;
    case 'anthropic':
      return clientVersion;
  }
}

interface AzureKey {
  endpoint: string;
  apiVersion: string | undefined;
  deployments: Record<string, string>;
  /** An API key's headers: `api-key` for OpenAI paths, `x-api-key` for Claude's. */
  openaiAuth: HeaderEntries;
  anthropicAuth: HeaderEntries;
}

const azureRealtime: RealtimeApi = {
  accepts: (path) => path === '/openai/realtime' || path === '/openai/v1/realtime',
  modelOf: (path, query) =>
    (path === '/openai/realtime' ? paramValues(query, 'deployment')[0] : paramValues(query, 'model')[0]) || undefined,
  usage: openaiRealtime.usage,
};

const NO_ENDPOINT = 'Azure passthrough needs a key with azure_key_config.endpoint under providers.azure.keys';

export const azure: Provider = {
  id: 'azure',
  defaultBaseUrl: undefined,
  apiKey: { header: 'api-key', prefix: '' },
  genai: { system: 'az.ai.openai', provider: 'azure.ai.openai' },
  keyRequired: NO_ENDPOINT,
  modelOf(path, members) {
    // On the decoded path: `/openai%2Fdeployments%2Fgpt-4o/...` must not hide the model
    // from key choice or a virtual key's list (Azure decodes before routing).
    const m = DEPLOYMENT.exec(percentDecoded(path));
    if (m) return m[1];
    return bodyModel(members);
  },
  streams: (_path, members) => members?.stream === true,
  prepareHeaders(headers, path) {
    if (azurePathKind(path) === 'anthropic') defaultAnthropicVersion(headers);
  },
  url(path, query, key, settings) {
    const ak = key?.settings as AzureKey | undefined;
    if (!ak) throw new GatewayError(500, 'provider_not_configured', NO_ENDPOINT);
    const kind = azurePathKind(path);
    const version = azureApiVersion(kind, ak.apiVersion, paramValues(query, 'api-version')[0] || undefined);
    let q = withoutParams(query, API_VERSION);
    if (version)
      q = q ? `${q}&api-version=${encodeURIComponent(version)}` : `api-version=${encodeURIComponent(version)}`;
    const base = settings.baseUrl ?? ak.endpoint;
    if (kind === 'anthropic') {
      if (!path.startsWith('/anthropic/') && !base.endsWith('/anthropic')) path = `/anthropic${path}`;
    } else {
      const m = DEPLOYMENT.exec(path);
      const mapped = m ? ak.deployments[percentDecoded(m[1]!)] : undefined;
      if (mapped) path = `/openai/deployments/${encodeURIComponent(mapped)}${path.slice(m![0].length)}`;
    }
    return joinUrl(base, path, q);
  },
  authorize(key, path) {
    if (key.credential.kind === 'token') return key.credential.headers();
    const ak = key.settings as AzureKey;
    return azurePathKind(path) === 'anthropic' ? ak.anthropicAuth : ak.openaiAuth;
  },
  usageFormat: (path) => (azurePathKind(path) === 'anthropic' ? 'anthropic' : 'openai'),
  // Long-running operations (image generation on older api-versions) are polled at Operation-Location.
  responseUrls: { headers: ['operation-location'] },
  realtime: azureRealtime,
  priceCatalog: 'azure',
  modelAliases(keys) {
    // A deployment is priced as the model the key's `deployments` maps to it.
    const aliases = new Map<string, string>();
    for (const key of keys) {
      const deployments = (key.settings as AzureKey | undefined)?.deployments ?? {};
      for (const [model, deployment] of Object.entries(deployments))
        if (deployment !== model && !aliases.has(deployment)) aliases.set(deployment, model);
    }
    return aliases;
  },
  compileKey(input, key, report): CompiledKey | undefined {
    const ac = input.azure_key_config;
    const deployments = ac?.deployments ?? {};
    // Deployment names count as models too: a key that maps gpt-4o -> my-gpt4o-deploy
    // allows requests to /deployments/my-gpt4o-deploy/.
    key.models = [
      ...input.models,
      ...Object.entries(deployments)
        .filter(([m]) => input.models.includes(m) || input.models.includes('*'))
        .map(([, d]) => d),
    ];
    const label = `Azure key ${key.name}`;
    const scopes = ac?.scopes ?? DEFAULT_ENTRA_SCOPES;
    const entra = [ac?.tenant_id, ac?.client_id, ac?.client_secret];
    const mi = ac?.managed_identity;
    if (mi !== undefined && mi !== false) {
      if (entra.some((x) => x !== undefined))
        report.problem(
          'azure_key_config',
          'managed_identity and a service principal (tenant_id, client_id, client_secret) exclude each other',
        );
      key.credential = credentialFor({
        kind: 'managed-identity',
        label,
        clientId: mi === true ? undefined : mi.client_id,
        scopes,
      });
    } else if (entra.every((x) => x !== undefined)) {
      key.credential = credentialFor({
        kind: 'entra',
        label,
        tenantId: ac!.tenant_id!,
        clientId: ac!.client_id!,
        clientSecret: ac!.client_secret!,
        scopes,
        authorityHost: ac?.authority_host ?? DEFAULT_AUTHORITY_HOST,
      });
    } else if (entra.some((x) => x !== undefined)) {
      report.problem('azure_key_config', 'Entra ID auth needs all of tenant_id, client_id and client_secret');
    } else if (!key.value) {
      report.problem(
        'value',
        'an Azure key needs a value (the api-key), azure_key_config tenant_id, client_id and client_secret (Entra ID), or azure_key_config.managed_identity',
      );
    }
    const endpoint = ac?.endpoint?.replace(/\/+$/, '');
    if (!endpoint) {
      // Loaded with a warning rather than refused: requests then get a JSON error naming the setting.
      report.warn(`${report.path}: azure_key_config.endpoint is not set; this key is not used`);
      return undefined;
    }
    const settings: AzureKey = {
      endpoint,
      apiVersion: ac?.api_version,
      deployments,
      openaiAuth: [['api-key', key.value]],
      anthropicAuth: [['x-api-key', key.value]],
    };
    key.settings = settings;
    return key;
  },
};
