/**
 * Gemini API (GenAI default): https://generativelanguage.googleapis.com + path, the
 * client's API version (/v1beta, /v1) kept; `x-goog-api-key: <key>`.
 *
 * Files: an upload starts with `POST /upload/v1beta/files` (X-Goog-Upload-Command: start);
 * the answer's `x-goog-upload-url` names the session (`?upload_id=`), to which the SDKs
 * send the bytes; a download (`GET /v1beta/files/{id}:download?alt=media`) answers with a
 * redirect to `/download/v1beta/...`. Those URLs are on Google's origin: rewritten to the
 * gateway (responseUrls), and the `/upload/` and `/download/` paths they carry are sent
 * to the base URL's origin, not below its path, as Google serves them at its root.
 *
 * Gemini Live is a WebSocket at
 * `/ws/google.ai.generativelanguage.<version>.GenerativeService.BidiGenerateContent`
 * (every version: @google/genai 3.3 uses v1, others v1beta and v1alpha). The SDKs put
 * the key in the `key` query parameter; the gateway sends its own as `x-goog-api-key`,
 * as on HTTP (Google takes the header on the handshake too), so the key is never part of
 * a URL. The model is named by the client's first message (`setup.model`).
 */
import { percentDecoded } from '../lib/query.ts';
import { bodyModel, joinUrl, keyHeaders, type Provider, type RealtimeApi } from './provider.ts';

const DEFAULT_BASE = 'https://generativelanguage.googleapis.com';
const PATH_MODEL = /\/models\/([^/:?]+)/;
const LIVE_PATH =
  /^\/ws\/google\.ai\.generativelanguage\.v1[a-z0-9]*\.GenerativeService\.BidiGenerateContent(?:Constrained)?$/;

const geminiLive: RealtimeApi = {
  accepts: (path) => LIVE_PATH.test(path),
  modelOf: () => undefined,
  firstMessage: (message) => ({ model: lastSegmentModel(liveSetupModel(message)), message }),
  usage: 'gemini-live',
};

export const gemini: Provider = {
  id: 'gemini',
  defaultBaseUrl: DEFAULT_BASE,
  apiKey: { header: 'x-goog-api-key', prefix: '' },
  genai: { system: 'gcp.gemini', provider: 'gcp.gemini' },
  modelOf: (path, members) => modelFromGooglePath(path) ?? lastSegmentModel(bodyModel(members)),
  streams: googleStreams,
  url(path, query, _key, settings) {
    const base = settings.baseUrl ?? DEFAULT_BASE;
    return joinUrl(path.startsWith('/upload/') || path.startsWith('/download/') ? originOf(base) : base, path, query);
  },
  authorize: keyHeaders,
  priceCatalog: 'google',
  // The Gemini API's OpenAI-compatible endpoints (`/v1beta/openai/chat/completions`) answer in OpenAI's shape.
  usageFormat: (path) => (path.includes('/openai/') ? 'openai' : 'gemini'),
  realtime: geminiLive,
  responseUrls: { headers: ['x-goog-upload-url', 'x-goog-upload-control-url', 'location'] },
  uploadSessions: { header: 'x-goog-upload-url', param: 'upload_id' },
  retryDelayInBody: googleRetryDelay,
};

/** `scheme://host[:port]` of a base URL (no trailing slash, as compiled). */
function originOf(base: string): string {
  const end = base.indexOf('/', base.indexOf('//') + 2);
  return end < 0 ? base : base.slice(0, end);
}

const RETRY_INFO = 'google.rpc.RetryInfo';
const DURATION = /^(\d+(?:\.\d+)?)s$/;

/**
 * `error.details[]`'s google.rpc.RetryInfo `retryDelay` (a protobuf Duration: `"12s"`,
 * `"0.5s"` in JSON) of a Google API error answer, in ms.
 */
export function googleRetryDelay(body: Uint8Array): number | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return undefined;
  }
  // Some Google endpoints wrap the error in a one-element array.
  const root = (Array.isArray(parsed) ? parsed[0] : parsed) as { error?: { details?: unknown } } | null;
  const details = root?.error?.details;
  if (!Array.isArray(details)) return undefined;
  for (const d of details as Array<Record<string, unknown> | null>) {
    const type = d?.['@type'];
    if (typeof type !== 'string' || !type.endsWith(RETRY_INFO)) continue;
    const delay = d!.retryDelay;
    if (typeof delay === 'string') {
      const m = DURATION.exec(delay.trim());
      if (m) return Number(m[1]) * 1000;
    } else if (delay && typeof delay === 'object') {
      // The proto form, { seconds, nanos }, as some clients log it.
      const { seconds, nanos } = delay as { seconds?: unknown; nanos?: unknown };
      const ms = Number(seconds ?? 0) * 1000 + Number(nanos ?? 0) / 1e6;
      if (Number.isFinite(ms) && ms >= 0) return ms;
    }
  }
  return undefined;
}

/** `setup.model` of a Live session's first client message (`models/gemini-...`, or a Vertex resource path). */
export function liveSetupModel(message: string): string | undefined {
  try {
    const model = (JSON.parse(message) as { setup?: { model?: unknown } } | null)?.setup?.model;
    return typeof model === 'string' && model ? model : undefined;
  } catch {
    return undefined;
  }
}

/** Google's streaming methods are their own paths (`:streamGenerateContent`); OpenAI-shaped bodies say `stream`. */
export function googleStreams(path: string, members: { readonly stream: boolean } | undefined): boolean {
  return members?.stream === true || path.includes(':streamGenerateContent');
}

/**
 * `.../models/gemini-2.5-flash:generateContent` -> `gemini-2.5-flash`. Read from the
 * decoded path: Google decodes before routing, so `models%2Fgemini-2.5-pro%3Agenerate...`
 * names the same model and must not hide it from key choice or a virtual key's list.
 */
export function modelFromGooglePath(path: string): string | undefined {
  return PATH_MODEL.exec(percentDecoded(path))?.[1];
}

/** `projects/p/locations/l/publishers/google/models/m` or `models/m` -> `m`. */
export function lastSegmentModel(model: string | undefined): string | undefined {
  if (!model) return undefined;
  const i = model.lastIndexOf('/');
  return i >= 0 ? model.slice(i + 1) : model;
}
