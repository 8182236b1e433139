/**
 * Azure: the upstream is the selected key's `azure_key_config.endpoint`. Three client
 * shapes arrive here:
 * - `/openai/deployments/{deployment}/...` (AzureOpenAI client): dated api-version;
 * - `/openai/v1/...` (OpenAI client on Azure's v1 API): takes no dated api-version;
 * - `/v1/messages` (Anthropic client: Claude on Azure AI Foundry), forwarded to the
 *   endpoint's `/anthropic` path with `x-api-key`.
 * Auth always comes from the key; client credentials never reach Azure.
 */
import { DEFAULT_ANTHROPIC_VERSION } from './anthropic.ts';
import { bodyModel, joinUrl, ProviderError, type Provider } from './types.ts';

/** Used only on paths that need an api-version when neither key nor client gave one. */
export const DEFAULT_AZURE_API_VERSION = '2024-10-21';

const DEPLOYMENT = /^\/openai\/deployments\/([^/]+)\//;
const DATED_VERSION = /^\d{4}-\d{2}-\d{2}/;

type AzurePathKind = 'deployment' | 'v1' | 'anthropic' | 'other';

function kindOf(path: string): AzurePathKind {
  if (path.startsWith('/openai/v1/') || path === '/openai/v1') return 'v1';
  if (path.startsWith('/openai/')) return 'deployment';
  if (path.startsWith('/v1/') || path.startsWith('/anthropic/')) return 'anthropic';
  return 'other';
}

/** api-version per path kind: key config wins, then the client's, then a default where required. */
function apiVersionFor(kind: AzurePathKind, keyVersion: string | undefined, clientVersion: string | null): string | null {
  switch (kind) {
    case 'deployment':
    case 'other':
      return keyVersion ?? clientVersion ?? (kind === 'deployment' ? DEFAULT_AZURE_API_VERSION : null);
    case 'v1':
      // The v1 API rejects dated versions; only `preview`-style values from the key apply.
      return keyVersion && !DATED_VERSION.test(keyVersion) ? keyVersion : clientVersion;
    case 'anthropic':
      return clientVersion;
  }
}

export const azure: Provider = {
  id: 'azure',
  modelOf(path, json) {
    const m = DEPLOYMENT.exec(path);
    if (m) return safeDecode(m[1]!);
    return bodyModel(json);
  },
  target(req, key, provider) {
    if (!key?.azure?.endpoint) {
      throw new ProviderError(
        500,
        'provider_not_configured',
        'Azure passthrough needs a key with azure_key_config.endpoint under providers.azure.keys',
      );
    }
    const kind = kindOf(req.path);
    const params = new URLSearchParams(req.query);
    const version = apiVersionFor(kind, key.azure.apiVersion, params.get('api-version'));
    if (version) params.set('api-version', version);
    else params.delete('api-version');

    const base = provider.baseUrl ?? key.azure.endpoint;
    let path = req.path;
    if (kind === 'anthropic') {
      req.headers.set('x-api-key', key.value);
      if (!req.headers.has('anthropic-version')) req.headers.set('anthropic-version', DEFAULT_ANTHROPIC_VERSION);
      if (!path.startsWith('/anthropic/') && !base.endsWith('/anthropic')) path = `/anthropic${path}`;
    } else {
      req.headers.set('api-key', key.value);
    }
    return { url: joinUrl(base, path, params.toString()) };
  },
  usageFormat: (path) => (kindOf(path) === 'anthropic' ? 'anthropic' : 'openai'),
};

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
