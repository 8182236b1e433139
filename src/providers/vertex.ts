/**
 * Vertex AI (GenAI, auto-detected). Upstream `https://{region}-aiplatform.googleapis.com`,
 * `https://aiplatform.googleapis.com` for `global`.
 *
 * Project and region: the gateway owns the credentials, so a key's `project_id` and
 * `region` replace the ones in the client's path (SDK users configure placeholders);
 * an express-style path without `/projects/...` gets the key's project and region
 * inserted when the key is a service account. A key without project/region keeps the
 * client's values. In direct-key mode (no Vertex keys) the path is left as sent and the
 * host follows the path's location.
 *
 * Auth: a service-account key mints an OAuth token (google-auth.ts); a key with only a
 * `value` is an express-mode API key sent as `x-goog-api-key`. With a gateway key, the
 * client's `x-goog-user-project` is dropped (the key's project is the one billed).
 */
import { TokenError } from './google-auth.ts';
import { lastSegmentModel, modelFromGooglePath } from './gemini.ts';
import { bodyModel, joinUrl, ProviderError, type BodyMembers, type Provider } from './types.ts';

const PROJECT_PATH = /\/projects\/([^/]+)\/locations\/([^/]+)\//;
/** `/v1/...`, `/v1beta1/...`: the API version segment before the resource path. */
const VERSION_PREFIX = /^\/(v1[a-z0-9]*)(?=\/)/;

export function vertexHost(region: string | undefined): string {
  return !region || region === 'global' ? 'https://aiplatform.googleapis.com' : `https://${region}-aiplatform.googleapis.com`;
}

export const vertex: Provider = {
  id: 'vertex',
  modelOf: (path, body) => modelFromGooglePath(path) ?? lastSegmentModel(bodyModel(body)),
  async target(req, key, provider) {
    let path = req.path;
    const inPath = PROJECT_PATH.exec(path);
    let region = inPath?.[2];
    if (key?.vertex) {
      const { projectId, region: keyRegion, tokens } = key.vertex;
      region = keyRegion ?? region;
      if (inPath) {
        path = path.replace(
          PROJECT_PATH,
          `/projects/${projectId ?? inPath[1]}/locations/${keyRegion ?? inPath[2]}/`,
        );
      } else if (tokens && projectId) {
        region ??= 'us-central1';
        path = path.replace(VERSION_PREFIX, `/$1/projects/${projectId}/locations/${region}`);
      }
      // The gateway's project is billed: a client-chosen quota project would need
      // permissions the gateway's credential may not have.
      req.headers.delete('x-goog-user-project');
      if (tokens) {
        let token: string;
        try {
          token = await tokens.getToken();
        } catch (err) {
          const message = err instanceof TokenError ? err.message : 'could not mint a Vertex access token';
          throw new ProviderError(502, 'upstream_auth_error', `Vertex key ${key.name}: ${message}`);
        }
        req.headers.set('authorization', `Bearer ${token}`);
      } else {
        req.headers.set('x-goog-api-key', key.value);
      }
    } else if (key) {
      // Express-mode key without vertex_key_config.
      req.headers.set('x-goog-api-key', key.value);
    }
    return { url: joinUrl(provider.baseUrl ?? vertexHost(region), path, req.query) };
  },
  onUnauthorized: (key) => key.vertex?.tokens?.invalidate(),
  usageFormat: vertexUsageFormat,
};

/**
 * Vertex serves more than Gemini: Claude through `publishers/anthropic/...:rawPredict`
 * (Anthropic Messages bodies) and an OpenAI-compatible `endpoints/openapi/chat/completions`.
 */
function vertexUsageFormat(path: string): 'gemini' | 'anthropic' | 'openai' {
  if (path.includes('/publishers/anthropic/')) return 'anthropic';
  if (path.includes('/endpoints/openapi/')) return 'openai';
  return 'gemini';
}

/**
 * Vertex is chosen when any of these holds: the path names `/projects/{p}/locations/{l}/`,
 * the body's model is a Vertex resource path, the client sent a Google OAuth token
 * (`Bearer ya29.`), or the path is a publisher-model path (`/v1beta1/publishers/...`, the
 * express-mode shape, which the Gemini API does not have).
 */
export function isVertexRequest(path: string, body: BodyMembers, authorization: string | null): boolean {
  if (PROJECT_PATH.test(path)) return true;
  if (/^\/v1[a-z0-9]*\/publishers\//.test(path)) return true;
  const model = body?.model;
  if (typeof model === 'string' && model.includes('projects/') && model.includes('/locations/')) return true;
  return authorization !== null && /^bearer ya29\./i.test(authorization);
}
