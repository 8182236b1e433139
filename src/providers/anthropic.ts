/** Anthropic: https://api.anthropic.com + path, `x-api-key: <key>`, anthropic-version defaulted. */
import { bodyModel, joinUrl, type Provider } from './types.ts';

const DEFAULT_BASE = 'https://api.anthropic.com';
/** The Messages API refuses requests without a version; this is the one every SDK sends. */
export const DEFAULT_ANTHROPIC_VERSION = '2023-06-01';

export const anthropic: Provider = {
  id: 'anthropic',
  modelOf: (_path, body) => bodyModel(body),
  target(req, key, provider) {
    if (key) req.headers.set('x-api-key', key.value);
    if (!req.headers.has('anthropic-version')) req.headers.set('anthropic-version', DEFAULT_ANTHROPIC_VERSION);
    return { url: joinUrl(provider.baseUrl ?? DEFAULT_BASE, req.path, req.query) };
  },
  usageFormat: () => 'anthropic',
};
