/** OpenAI: https://api.openai.com + path, `Authorization: Bearer <key>`. */
import { bodyModel, joinUrl, type Provider } from './types.ts';

const DEFAULT_BASE = 'https://api.openai.com';

export const openai: Provider = {
  id: 'openai',
  modelOf: (_path, body) => bodyModel(body),
  target(req, key, provider) {
    if (key) req.headers.set('authorization', `Bearer ${key.value}`);
    return { url: joinUrl(provider.baseUrl ?? DEFAULT_BASE, req.path, req.query) };
  },
  usageFormat: () => 'openai',
};
