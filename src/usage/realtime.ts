/**
 * Usage in the server messages of WebSocket sessions, read as each message passes:
 * - `openai-realtime` (OpenAI and Azure OpenAI Realtime): `response.done` carries the
 *   usage of that response (`response.usage`: input/output tokens, cached tokens, text
 *   and audio tokens); transcription sessions report theirs on
 *   `conversation.item.input_audio_transcription.completed` (`usage`).
 * - `gemini-live` (Gemini Live, Vertex Live): `usageMetadata` on the messages that close
 *   a turn (`responseTokenCount` is the Live API's name for the output).
 * Each report is the usage of one response or turn, so a session's usage is their sum.
 *
 * Messages are searched for the marker of a usage report before anything is parsed: an
 * audio delta costs one substring search, not a JSON parse. The marker is a JSON string
 * with its quotes, which text inside another string cannot contain unescaped.
 */
import type { Usage } from './types.ts';

export type RealtimeUsageFormat = 'openai-realtime' | 'gemini-live';

type Obj = Record<string, unknown>;

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const obj = (v: unknown): Obj | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);

function set(u: Usage, field: keyof Usage, value: number | undefined): void {
  if (value !== undefined) u[field] = value;
}

const OPENAI_MARKERS = ['"response.done"', '"conversation.item.input_audio_transcription.completed"'];
const GEMINI_MARKERS = ['"usageMetadata"'];
const MARKERS: Record<RealtimeUsageFormat, readonly string[]> = {
  'openai-realtime': OPENAI_MARKERS,
  'gemini-live': GEMINI_MARKERS,
};
const MARKER_BYTES: Record<RealtimeUsageFormat, readonly Buffer[]> = {
  'openai-realtime': OPENAI_MARKERS.map((m) => Buffer.from(m)),
  'gemini-live': GEMINI_MARKERS.map((m) => Buffer.from(m)),
};

/** Whether a server message may carry a usage report (a text message, or a binary one holding JSON). */
export function mayCarryUsage(format: RealtimeUsageFormat, message: string | Buffer): boolean {
  if (typeof message === 'string') {
    for (const m of MARKERS[format]) if (message.includes(m)) return true;
    return false;
  }
  for (const m of MARKER_BYTES[format]) if (message.includes(m)) return true;
  return false;
}

/** The usage one server message reports, or undefined (call after mayCarryUsage). */
export function realtimeUsage(format: RealtimeUsageFormat, message: string | Buffer): Usage | undefined {
  let event: Obj | undefined;
  try {
    event = obj(JSON.parse(typeof message === 'string' ? message : message.toString('utf8')));
  } catch {
    return undefined;
  }
  if (!event) return undefined;
  const u: Usage = {};
  if (format === 'openai-realtime') openaiRealtime(u, event);
  else geminiLive(u, event);
  if (u.input_tokens === undefined && u.output_tokens === undefined && u.total_tokens === undefined) return undefined;
  u.total_tokens ??= (u.input_tokens ?? 0) + (u.output_tokens ?? 0);
  return u;
}

function openaiRealtime(u: Usage, event: Obj): void {
  let usage: Obj | undefined;
  if (event.type === 'response.done') usage = obj(obj(event.response)?.usage);
  else if (event.type === 'conversation.item.input_audio_transcription.completed') usage = obj(event.usage);
  if (!usage) return;
  set(u, 'input_tokens', num(usage.input_tokens));
  set(u, 'output_tokens', num(usage.output_tokens));
  set(u, 'total_tokens', num(usage.total_tokens));
  const input = obj(usage.input_token_details);
  set(u, 'cache_read_input_tokens', num(input?.cached_tokens));
  set(u, 'input_text_tokens', num(input?.text_tokens));
  set(u, 'input_audio_tokens', num(input?.audio_tokens));
  const output = obj(usage.output_token_details);
  set(u, 'output_text_tokens', num(output?.text_tokens));
  set(u, 'output_audio_tokens', num(output?.audio_tokens));
}

function geminiLive(u: Usage, event: Obj): void {
  const usage = obj(event.usageMetadata);
  if (!usage) return;
  set(u, 'input_tokens', num(usage.promptTokenCount));
  const response = num(usage.responseTokenCount) ?? num(usage.candidatesTokenCount);
  const thoughts = num(usage.thoughtsTokenCount);
  // As for HTTP answers (extract.ts): thinking tokens are billed as output, reported apart.
  set(
    u,
    'output_tokens',
    response === undefined && thoughts === undefined ? undefined : (response ?? 0) + (thoughts ?? 0),
  );
  set(u, 'reasoning_tokens', thoughts);
  set(u, 'total_tokens', num(usage.totalTokenCount));
  set(u, 'cache_read_input_tokens', num(usage.cachedContentTokenCount));
  set(u, 'input_text_tokens', modality(usage.promptTokensDetails, 'TEXT'));
  set(u, 'input_audio_tokens', modality(usage.promptTokensDetails, 'AUDIO'));
  set(u, 'output_text_tokens', modality(usage.responseTokensDetails ?? usage.candidatesTokensDetails, 'TEXT'));
  set(u, 'output_audio_tokens', modality(usage.responseTokensDetails ?? usage.candidatesTokensDetails, 'AUDIO'));
}

/** `[{modality: 'AUDIO', tokenCount: 12}, ...]` -> the count of one modality, when listed. */
function modality(details: unknown, name: string): number | undefined {
  if (!Array.isArray(details)) return undefined;
  let found: number | undefined;
  for (const d of details) {
    const o = obj(d);
    if (o?.modality === name) found = (found ?? 0) + (num(o.tokenCount) ?? 0);
  }
  return found;
}

/** Add one report to a session's running total (every field summed). */
export function addUsage(total: Usage, report: Readonly<Usage>): void {
  for (const field of Object.keys(report) as Array<keyof Usage>) {
    const n = report[field];
    if (n !== undefined) total[field] = (total[field] ?? 0) + n;
  }
}
