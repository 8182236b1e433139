/**
 * Gemini API (GenAI default): https://generativelanguage.googleapis.com + path, the
 * client's API version (/v1beta, /v1) kept; `x-goog-api-key: <key>`.
 */
import { percentDecoded } from '../lib/query.ts';
import { bodyModel, joinUrl, keyHeaders, type Provider } from './provider.ts';

const DEFAULT_BASE = 'https://generativelanguage.googleapis.com';
const PATH_MODEL = /\/models\/([^/:?]+)/;

export const gemini: Provider = {
  id: 'gemini',
  defaultBaseUrl: DEFAULT_BASE,
  apiKey: { header: 'x-goog-api-key', prefix: '' },
  genai: { system: 'gcp.gemini', provider: 'gcp.gemini' },
  modelOf: (path, members) => modelFromGooglePath(path) ?? lastSegmentModel(bodyModel(members)),
  streams: googleStreams,
  url: (path, query, _key, settings) => joinUrl(settings.baseUrl ?? DEFAULT_BASE, path, query),
  authorize: keyHeaders,
  priceCatalog: 'google',
  // The Gemini API's OpenAI-compatible endpoints (`/v1beta/openai/chat/completions`) answer in OpenAI's shape.
  usageFormat: (path) => (path.includes('/openai/') ? 'openai' : 'gemini'),
};

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
