/** Anthropic: https://api.anthropic.com + path, `x-api-key: <key>`, anthropic-version defaulted. */
import { bodyModel, joinUrl, keyHeaders, type Provider } from './provider.ts';

/** The Messages API refuses requests without a version; this is the one every SDK sends. */
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

/** The version header the Messages API requires, when the client sent none. */
export function defaultAnthropicVersion(headers: Headers): void {
  if (!headers.has('anthropic-version')) headers.set('anthropic-version', DEFAULT_ANTHROPIC_VERSION);
}

/** The Message Batches routes whose answers are batch objects (create, list, retrieve, cancel), plain and beta (`?beta=true`). */
const BATCH_OBJECTS = /^\/v1\/messages\/batches(?:\/[^/]+(?:\/cancel)?)?\/?$/;

export const anthropic: Provider = {
  id: 'anthropic',
  defaultBaseUrl: 'https://api.anthropic.com',
  apiKey: { header: 'x-api-key', prefix: '' },
  genai: { system: 'anthropic', provider: 'anthropic' },
  modelOf: (_path, members) => bodyModel(members),
  streams: (_path, members) => members?.stream === true,
  prepareHeaders: (headers) => defaultAnthropicVersion(headers),
  url: (path, query, _key, settings) => joinUrl(settings.baseUrl ?? 'https://api.anthropic.com', path, query),
  authorize: keyHeaders,
  priceCatalog: 'anthropic',
  usageFormat: () => 'anthropic',
  // A batch's `results_url` is absolute on Anthropic's origin; the SDKs GET it as given.
  responseUrls: {
    headers: [],
    jsonFields: {
      paths: ['results_url', 'data[].results_url'],
      on: (method, path) => method !== 'DELETE' && path.startsWith('/v1/messages/batches') && BATCH_OBJECTS.test(path),
    },
  },
};
