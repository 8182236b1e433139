/**
 * The generated text in stream events, measured without parsing them: the bytes behind
 * the output estimate of a stream cut short (usage/scanner.ts ESTIMATE_BYTES_PER_TOKEN).
 */
import type { ApiStyle } from './api.ts';

/**
 * Where each API's stream events carry generated text (compact JSON from OpenAI and
 * Anthropic, `"key": "..."` from Google): after `anchor` (the delta object), the string
 * values of `keys`, the first key found only when `first` (a chat delta carries one of
 * content, tool call arguments, a refusal, or the reasoning some compatible servers
 * stream; an Anthropic delta one of text, tool input, thinking), else every occurrence
 * (Responses `*.delta` events, the parts of a Gemini chunk). Inside a JSON string every
 * `"` is escaped, so `"text":` cannot match inside one. An anchor and a first-found key
 * keep the search to one or two native `indexOf` calls per event (~60 ns measured
 * against ~140 for every key over the whole line).
 */
export interface TextRule {
  readonly anchor?: string;
  readonly keys: readonly string[];
  readonly first: boolean;
}

export const TEXT_RULES: Readonly<Record<ApiStyle, TextRule | undefined>> = {
  chat: { anchor: '"delta":', keys: ['"content":', '"arguments":', '"refusal":', '"reasoning_content":'], first: true },
  responses: { keys: ['"delta":'], first: false },
  messages: { anchor: '"delta":', keys: ['"text":', '"partial_json":', '"thinking":'], first: true },
  generate: { keys: ['"text":'], first: false },
  embeddings: undefined,
  bedrock: undefined, // AWS event-stream messages, not lines: BEDROCK_TEXT
  other: undefined,
};

/**
 * Bedrock streams: ConverseStream's `contentBlockDelta` (text, reasoning text, tool input),
 * and the model's own events in InvokeModelWithResponseStream chunks (Anthropic's deltas,
 * Llama's `generation`, Titan's `outputText`, Mistral's and Cohere's `text`).
 */
export const BEDROCK_TEXT: { readonly converse: TextRule; readonly invoke: TextRule } = {
  converse: { anchor: '"delta":', keys: ['"text":', '"input":'], first: true },
  invoke: { keys: ['"text":', '"partial_json":', '"thinking":', '"generation":', '"outputText":'], first: true },
};

/** UTF-8 bytes of generated text in one event's data, by its API's rule. */
export function textBytes(data: string, rule: TextRule): number {
  let from = 0;
  if (rule.anchor !== undefined) {
    from = data.indexOf(rule.anchor);
    if (from < 0) return 0;
  }
  let total = 0;
  for (const key of rule.keys) {
    const n = stringValueBytes(data, key, from, rule.first);
    if (n >= 0) {
      total += n;
      if (rule.first) break;
    }
  }
  return total;
}

/**
 * UTF-8 bytes of the JSON string values of `key` (`"text":`) in `data` from `from`,
 * decoded as far as counting needs (an escape is one byte, `\uXXXX` the bytes of its
 * code unit); only the first when `first`. -1 when no such string value is there.
 */
function stringValueBytes(data: string, key: string, from: number, first: boolean): number {
  let total = -1;
  let i = data.indexOf(key, from);
  while (i >= 0) {
    let j = i + key.length;
    while (data.charCodeAt(j) === 32) j++;
    if (data.charCodeAt(j) === 34) {
      if (total < 0) total = 0;
      for (j++; j < data.length; j++) {
        const c = data.charCodeAt(j);
        if (c === 34) break;
        if (c === 92) {
          if (data.charCodeAt(++j) === 117) {
            total += utf8Bytes(Number.parseInt(data.slice(j + 1, j + 5), 16));
            j += 4;
          } else total += 1;
        } else total += utf8Bytes(c);
      }
      if (first) return total;
    }
    i = data.indexOf(key, j);
  }
  return total;
}

/** Bytes of one UTF-16 code unit in UTF-8 (a surrogate is half of a 4-byte pair). */
const utf8Bytes = (c: number): number => (c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c < 0xe000) ? 2 : 3);
