/**
 * OpenAI: https://api.openai.com + path, `Authorization: Bearer <key>`. Realtime is a
 * WebSocket at `/v1/realtime?model=...`; each `response.done` reports its usage.
 */
import { paramValues } from '../lib/query.ts';
import { bodyModel, joinUrl, keyHeaders, type Provider, type RealtimeApi } from './provider.ts';

/** `/v1/realtime` (and `/realtime` under a base URL that already ends in /v1). */
export const openaiRealtime: RealtimeApi = {
  accepts: (path) => path.endsWith('/realtime'),
  modelOf: (_path, query) => paramValues(query, 'model')[0] || undefined,
  usage: 'openai-realtime',
};

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
  realtime: openaiRealtime,
};
