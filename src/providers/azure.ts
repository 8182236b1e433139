/**
 * Azure: the upstream is the selected key's `azure_key_config.endpoint`
 * (`network_config.base_url` overrides it). Three client shapes arrive here:
 * - `/openai/deployments/{deployment}/...` (AzureOpenAI client): dated api-version;
 * - `/openai/v1/...` (OpenAI client on Azure's v1 API): takes no dated api-version;
 * - `/v1/messages` (Anthropic client: Claude on Azure AI Foundry), forwarded to the
 *   endpoint's `/anthropic` path with `x-api-key`.
 * Auth always comes from the key; client credentials never reach Azure (the flow drops
 * them for Azure whatever `direct_keys` says): the key's value as `api-key` (`x-api-key`
 * for Claude), or, for a key with an Entra ID service principal or a managed identity,
 * `Authorization: Bearer` with a token minted for it (entra-auth.ts).
 *
 * api-version: the key config's `api_version` wins, else the client's, else
 * DEFAULT_AZURE_API_VERSION on the paths that need one (`/openai/...` other than v1).
 * On `/openai/v1/...` a dated version (from key or default) is never injected: the v1
 * API refuses them; a non-dated key value (`preview`) applies, and the client's passes.
 * The rest of the query is forwarded byte for byte.
 *
 * Deployments: when the key maps models to deployments (`deployments: {gpt-4o: my-dep}`)
 * and the path names a mapped model (`/deployments/gpt-4o/`), the key's deployment is
 * substituted, so keys in several regions with different deployment names serve one
 * model name.
 */
import { DEFAULT_ANTHROPIC_VERSION } from './anthropic.ts';
import { paramValues, percentDecoded, withoutParams } from '../lib/query.ts';
import { TokenError } from './oauth-token.ts';
import { bodyModel, joinUrl, ProviderError, type Provider, type UpstreamTarget } from './types.ts';

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
export function azureApiVersion(kind: AzurePathKind, keyVersion: string | undefined, clientVersion: string | undefined): string | undefined {
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

export const azure: Provider = {
  id: 'azure',
  modelOf(path, body) {
    // On the decoded path: `/openai%2Fdeployments%2Fgpt-4o/...` must not hide the model
    // from key choice or a virtual key's list (Azure decodes before routing).
    const m = DEPLOYMENT.exec(percentDecoded(path));
    if (m) return m[1];
    return bodyModel(body);
  },
  target(req, key, provider) {
    if (!key?.azure?.endpoint) {
      throw new ProviderError(
        500,
        'provider_not_configured',
        'Azure passthrough needs a key with azure_key_config.endpoint under providers.azure.keys',
      );
    }
    const kind = azurePathKind(req.path);
    const clientVersion = paramValues(req.query, 'api-version')[0] || undefined;
    const version = azureApiVersion(kind, key.azure.apiVersion, clientVersion);
    let query = withoutParams(req.query, API_VERSION);
    if (version) query = query ? `${query}&api-version=${encodeURIComponent(version)}` : `api-version=${encodeURIComponent(version)}`;

    const base = provider.baseUrl ?? key.azure.endpoint;
    const tokens = key.azure.tokens;
    let path = req.path;
    if (kind === 'anthropic') {
      if (!tokens) req.headers.set('x-api-key', key.value);
      if (!req.headers.has('anthropic-version')) req.headers.set('anthropic-version', DEFAULT_ANTHROPIC_VERSION);
      if (!path.startsWith('/anthropic/') && !base.endsWith('/anthropic')) path = `/anthropic${path}`;
    } else {
      if (!tokens) req.headers.set('api-key', key.value);
      const m = DEPLOYMENT.exec(path);
      const mapped = m ? key.azure.deployments[percentDecoded(m[1]!)] : undefined;
      if (mapped) path = `/openai/deployments/${encodeURIComponent(mapped)}${path.slice(m![0].length)}`;
    }
    const target = { url: joinUrl(base, path, query) };
    return tokens ? withEntraToken(target, req.headers, tokens.getToken(), key.name) : target;
  },
  onUnauthorized: (key) => key.azure?.tokens?.invalidate(),
  usageFormat: (path) => (azurePathKind(path) === 'anthropic' ? 'anthropic' : 'openai'),
};

/** The target once the key's Entra token is in `Authorization` (api-key keys stay synchronous). */
async function withEntraToken(target: UpstreamTarget, headers: Headers, token: Promise<string>, keyName: string): Promise<UpstreamTarget> {
  try {
    headers.set('authorization', `Bearer ${await token}`);
  } catch (err) {
    const message = err instanceof TokenError ? err.message : 'could not get an Entra ID access token';
    throw new ProviderError(502, 'upstream_auth_error', `Azure key ${keyName}: ${message}`);
  }
  return target;
}
