/**
 * Which API a request speaks, within its usage format, from its path: what its answer's
 * usage, stream terminator and generated text look like. Only the endpoints that bill
 * tokens are named; on any other (`GET /v1/models`, files, token counting) no usage is
 * expected.
 */
import type { UsageFormat } from './types.ts';

export type ApiStyle =
  /** OpenAI Chat Completions (and legacy Completions): stream ends with `data: [DONE]`. */
  | 'chat'
  /** OpenAI Responses: stream ends with `response.completed`, `.incomplete` or `.failed`. */
  | 'responses'
  /** Anthropic Messages (also on Azure and Vertex): stream ends with `message_stop`. */
  | 'messages'
  /** Gemini / Vertex generateContent: no terminator event; the last chunk carries `finishReason`. */
  | 'generate'
  /** OpenAI embeddings: usage, never a stream. */
  | 'embeddings'
  /**
   * Bedrock InvokeModel and Converse, and their AWS event streams: ConverseStream ends with
   * its `metadata` event, InvokeModelWithResponseStream with a chunk carrying
   * `amazon-bedrock-invocationMetrics`.
   */
  | 'bedrock'
  | 'other';

export function apiStyleOf(format: UsageFormat, method: string, path: string): ApiStyle {
  if (method !== 'POST') return 'other';
  switch (format) {
    case 'openai':
      if (path.endsWith('/chat/completions') || path.endsWith('/completions')) return 'chat';
      if (path.endsWith('/responses')) return 'responses';
      if (path.endsWith('/embeddings')) return 'embeddings';
      return 'other';
    case 'anthropic':
      return path.endsWith('/messages') || path.endsWith(':rawPredict') || path.endsWith(':streamRawPredict')
        ? 'messages'
        : 'other';
    case 'gemini':
      return path.endsWith(':generateContent') || path.endsWith(':streamGenerateContent') ? 'generate' : 'other';
    case 'bedrock':
      return /\/(?:invoke|invoke-with-response-stream|converse|converse-stream)$/.test(path) ? 'bedrock' : 'other';
  }
}

/** Whether a successful answer on this API reports token usage. */
export const reportsUsage = (style: ApiStyle): boolean => style !== 'other';

/** Whether a stream of this API ends with a terminator of its own (usage/scanner.ts watches for it). */
export const hasTerminator = (style: ApiStyle): boolean =>
  style === 'chat' || style === 'responses' || style === 'messages' || style === 'generate' || style === 'bedrock';
