/** Token usage as the request log and metrics report it, whatever the provider called it. */
export interface Usage {
  input_tokens?: number;
  output_tokens?: number;
  total_tokens?: number;
  /** Input tokens served from the provider's prompt cache. */
  cache_read_input_tokens?: number;
  /** Input tokens written to the prompt cache (Anthropic). */
  cache_creation_input_tokens?: number;
  /** Output tokens spent on reasoning, where reported (part of output_tokens). */
  reasoning_tokens?: number;
  /** Realtime and Live sessions: input and output tokens by modality, where reported (parts of input/output_tokens). */
  input_text_tokens?: number;
  input_audio_tokens?: number;
  output_text_tokens?: number;
  output_audio_tokens?: number;
}

/**
 * How a provider reports usage: `openai` covers Chat Completions (`usage`, last stream
 * chunk) and the Responses API (`response.completed`); `anthropic` covers
 * `message_start` + `message_delta`; `gemini` covers Gemini and Vertex `usageMetadata`;
 * `bedrock` covers Converse `usage`, the `metadata` event of ConverseStream, and what
 * invoked models answer (Anthropic's usage, `amazon-bedrock-invocationMetrics`, Llama's counts).
 */
export type UsageFormat = 'openai' | 'anthropic' | 'gemini' | 'bedrock';

/** What a stream said about its own end: its API's terminator, or an error event. */
export type StreamSignal = 'terminator' | 'error' | undefined;

/** A stream parser that watches for its API's end and counts the generated text it sees. */
export interface StreamWatch {
  readonly signal: StreamSignal;
  /** UTF-8 bytes of generated text seen. */
  readonly textBytes: number;
}
