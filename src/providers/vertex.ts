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
 * Vertex Live is a WebSocket at
 * `/ws/google.cloud.aiplatform.<version>.LlmBidiService/BidiGenerateContent`, its model
 * named by the client's first message (`setup.model`, a resource path). With a
 * service-account key that names a project, that path gets the key's project and region
 * (us-central1 when the key names none: the session's host is chosen at the handshake,
 * before the message), as the HTTP paths do; nothing else in the message changes.
 *
 * Auth: a service-account key mints an OAuth token (auth/google-service-account.ts); a
 * key with only a `value` is an express-mode API key sent as `x-goog-api-key`. With a
 * gateway key, the client's `x-goog-user-project` is dropped (the key's project is the
 * one billed).
 */
import type { CompiledKey } from '../config/runtime.ts';
import type { RootMembers } from '../core/request.ts';
import { credentialFor } from './auth/index.ts';
import { googleRetryDelay, googleStreams, lastSegmentModel, liveSetupModel, modelFromGooglePath } from './gemini.ts';
import { bodyModel, joinUrl, keyHeaders, type Provider, type RealtimeApi } from './provider.ts';

const PROJECT_PATH = /\/projects\/([^/]+)\/locations\/([^/]+)\//;
const LIVE_PREFIX = '/ws/google.cloud.aiplatform.';
const LIVE_PATH = /^\/ws\/google\.cloud\.aiplatform\.v1[a-z0-9]*\.LlmBidiService\/BidiGenerateContent$/;
/** A Live session's model: `projects/p/locations/l/publishers/...` or `publishers/...`. */
const MODEL_RESOURCE = /^(?:projects\/[^/]+\/locations\/[^/]+\/)?(publishers\/.+)$/;
/** The region of a session whose key names none (its host is chosen at the handshake). */
const DEFAULT_LIVE_REGION = 'us-central1';
/** `/v1/...`, `/v1beta1/...`: the API version segment before the resource path. */
const VERSION_PREFIX = /^\/(v1[a-z0-9]*)(?=\/)/;

interface VertexKey {
  projectId: string | undefined;
  region: string | undefined;
}

export function vertexHost(region: string | undefined): string {
  return !region || region === 'global'
    ? 'https://aiplatform.googleapis.com'
    : `https://${region}-aiplatform.googleapis.com`;
}

export const vertex: Provider = {
  id: 'vertex',
  defaultBaseUrl: undefined,
  apiKey: { header: 'x-goog-api-key', prefix: '' },
  genai: { system: 'gcp.vertex_ai', provider: 'gcp.vertex_ai' },
  modelOf: (path, members) => modelFromGooglePath(path) ?? lastSegmentModel(bodyModel(members)),
  streams: googleStreams,
  prepareHeaders(headers, _path, keyed) {
    // The gateway's project is billed: a client-chosen quota project would need
    // permissions the gateway's credential may not have.
    if (keyed) headers.delete('x-goog-user-project');
  },
  url(path, query, key, settings) {
    const inPath = PROJECT_PATH.exec(path);
    let region = inPath?.[2];
    const vk = key?.settings as VertexKey | undefined;
    if (key && vk) {
      region = vk.region ?? region;
      if (inPath) {
        path = path.replace(
          PROJECT_PATH,
          `/projects/${vk.projectId ?? inPath[1]}/locations/${vk.region ?? inPath[2]}/`,
        );
      } else if (key.credential.kind === 'token' && vk.projectId) {
        region ??= DEFAULT_LIVE_REGION;
        path = path.replace(VERSION_PREFIX, `/$1/projects/${vk.projectId}/locations/${region}`);
      }
    }
    return joinUrl(settings.baseUrl ?? vertexHost(region), path, query);
  },
  authorize: keyHeaders,
  priceCatalog: 'google',
  usageFormat: vertexUsageFormat,
  // Vertex states a 429's wait like the Gemini API: google.rpc.RetryInfo in the error body.
  retryDelayInBody: googleRetryDelay,
  realtime: {
    accepts: (path) => LIVE_PATH.test(path),
    modelOf: () => undefined,
    firstMessage: vertexLiveSetup,
    usage: 'gemini-live',
  } satisfies RealtimeApi,
  async compileKey(input, key, report): Promise<CompiledKey> {
    const vc = input.vertex_key_config;
    const settings: VertexKey = { projectId: vc?.project_id, region: vc?.region };
    if (vc?.auth_credentials !== undefined && vc.auth_credentials !== '') {
      try {
        const credential = await credentialFor({
          kind: 'google-service-account',
          label: `Vertex key ${key.name}`,
          credentials: vc.auth_credentials,
        });
        key.credential = credential;
        settings.projectId ??= credential.projectId;
      } catch (err) {
        report.problem('vertex_key_config.auth_credentials', (err as Error).message);
      }
      if (!settings.projectId)
        report.problem('vertex_key_config.project_id', 'a Vertex service-account key needs project_id');
    } else if (!key.value) {
      report.problem(
        '',
        'a Vertex key needs vertex_key_config.auth_credentials (service account) or value (express-mode API key)',
      );
    }
    key.settings = settings;
    return key;
  },
};

/** A Live session's setup: its model, and the model path put in the key's project and region. */
function vertexLiveSetup(
  message: string,
  key: CompiledKey | undefined,
): { model: string | undefined; message: string } {
  const model = liveSetupModel(message);
  const vk = key?.settings as VertexKey | undefined;
  const resource = model === undefined ? null : MODEL_RESOURCE.exec(model);
  if (!key || !resource || key.credential.kind !== 'token' || !vk?.projectId)
    return { model: lastSegmentModel(model), message };
  const placed = `projects/${vk.projectId}/locations/${vk.region ?? DEFAULT_LIVE_REGION}/${resource[1]}`;
  return { model: lastSegmentModel(model), message: placed === model ? message : withModel(message, model!, placed) };
}

/** The message with its setup.model replaced, every other byte kept when the model is spelled plainly in it. */
function withModel(message: string, from: string, to: string): string {
  const quoted = JSON.stringify(from);
  const at = message.indexOf(quoted);
  if (at >= 0 && message.indexOf(quoted, at + 1) < 0)
    return message.slice(0, at) + JSON.stringify(to) + message.slice(at + quoted.length);
  const parsed = JSON.parse(message) as { setup: { model: string } };
  parsed.setup.model = to;
  return JSON.stringify(parsed);
}

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
 * express-mode shape, which the Gemini API does not have), or the path is Vertex Live's
 * WebSocket.
 */
export function isVertexRequest(path: string, members: RootMembers | undefined, authorization: string | null): boolean {
  if (PROJECT_PATH.test(path) || path.startsWith(LIVE_PREFIX)) return true;
  if (/^\/v1[a-z0-9]*\/publishers\//.test(path)) return true;
  const model = members?.model;
  if (typeof model === 'string' && model.includes('projects/') && model.includes('/locations/')) return true;
  return authorization !== null && /^bearer ya29\./i.test(authorization);
}
