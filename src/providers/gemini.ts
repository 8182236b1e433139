/**
 * Gemini API (GenAI default): https://generativelanguage.googleapis.com + path, the
 * client's API version (/v1beta, /v1) kept; `x-goog-api-key: <key>`; a client `key=`
 * query parameter is removed when the gateway's key is used.
 */
import { percentDecoded } from '../lib/query.ts';
import { bodyModel, joinUrl, type Provider } from './types.ts';

const DEFAULT_BASE = 'https://generativelanguage.googleapis.com';
const PATH_MODEL = /\/models\/([^/:?]+)/;

export const gemini: Provider = {
  id: 'gemini',
  modelOf: (path, body) => modelFromGooglePath(path) ?? lastSegmentModel(bodyModel(body)),
  target(req, key, provider) {
    // The client's `key=` was already removed with its other credentials (flow.ts).
    if (key) req.headers.set('x-goog-api-key', key.value);
    return { url: joinUrl(provider.baseUrl ?? DEFAULT_BASE, req.path, req.query) };
  },
  // The Gemini API's OpenAI-compatible endpoints (`/v1beta/openai/chat/completions`) answer in OpenAI's shape.
  usageFormat: (path) => (path.includes('/openai/') ? 'openai' : 'gemini'),
};

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


