/** OpenAI: https://api.openai.com + path, `Authorization: Bearer <key>`. */
import { bodyModel, joinUrl, keyHeaders, type Provider } from './provider.ts';

export const openai: Provider = {
  id: 'openai',
  defaultBaseUrl: 'https://api.openai.com',
  apiKey: { header: 'authorization', prefix: 'Bearer ' },
  genai: { system: 'openai', provider: 'openai' },
  modelOf: (_path, members) => bodyModel(members),
  streams: (_path, members) => members?.stream === true,
  url: (path, query, _key, settings) => joinUrl(settings.baseUrl ?? 'https://api.openai.com', path, query),
  authorize: keyHeaders,
  usageFormat: () => 'openai',
};
