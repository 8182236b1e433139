/** Anthropic: https://api.anthropic.com + path, `x-api-key: <key>`, anthropic-version defaulted. */
import { bodyModel, joinUrl, keyHeaders, type Provider } from './provider.ts';

/** The Messages API refuses requests without a version; this is the one every SDK sends. */
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

/** The version header the Messages API requires, when the client sent none. */
export function defaultAnthropicVersion(headers: Headers): void {
  if (!headers.has('anthropic-version')) headers.set('anthropic-version', DEFAULT_ANTHROPIC_VERSION);
}

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
};
