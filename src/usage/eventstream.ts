/**
 * Usage in an AWS event stream (`application/vnd.amazon.eventstream`, what Bedrock
 * streams): binary messages, each a prelude (total length, headers length, CRC-32), typed
 * headers, a payload and a CRC-32 of the whole, decoded by the AWS SDK's own codec
 * (@smithy/core/event-streams), CRCs checked. Read on the side as bytes pass, never
 * holding a chunk back: whole messages are decoded in place, and only the bytes of a
 * message that spans chunks are copied until it is complete.
 *
 * Events that may carry usage: `metadata` (ConverseStream: `usage`), and `chunk`
 * (InvokeModelWithResponseStream: the model's own event, base64 in `bytes`; Anthropic's
 * `message_start`/`message_delta`, and the last one's `amazon-bedrock-invocationMetrics`).
 * Others (text deltas, most chunks) are not parsed: their generated text is counted from
 * the JSON text (usage/text.ts), the output estimate of a stream cut short.
 */
import { EventStreamCodec } from '@smithy/core/event-streams';
import { fromUtf8, toUtf8 } from '@smithy/core/serde';
import { BEDROCK_TEXT, textBytes } from './text.ts';
import type { StreamSignal, StreamWatch } from './types.ts';

/** The format's limit: a longer prelude means the framing was lost. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const MIN_MESSAGE_BYTES = 16;
const codec = new EventStreamCodec(toUtf8, fromUtf8);
const decoder = new TextDecoder();
const BYTES_MEMBER = '"bytes":"';

export class EventStreamParser implements StreamWatch {
  /** Bytes of a message not yet complete (copies), and how many. */
  private parts: Uint8Array[] = [];
  private held = 0;
  /** The framing was lost (a length no message has): nothing more is read. */
  private lost = false;
  /**
   * The stream's end: ConverseStream's last event is `metadata`; InvokeModelWithResponseStream's
   * last chunk carries `amazon-bedrock-invocationMetrics`; an `exception` message is an error.
   */
  signal: StreamSignal;
  /** UTF-8 bytes of generated text seen (text deltas, the model's own events). */
  textBytes = 0;

  constructor(private readonly onEvent: (event: unknown) => void) {}

  write(chunk: Uint8Array): void {
    if (this.lost) return;
    let bytes = chunk;
    if (this.held > 0) {
      this.parts.push(chunk.slice());
      this.held += chunk.byteLength;
      // Wait until the message (or its length) is complete before joining the parts.
      const first = this.parts[0]!;
      const need = first.byteLength >= 4 ? messageLength(first, 0) : 4;
      if (this.held < need) return;
      bytes = new Uint8Array(Buffer.concat(this.parts));
      this.parts = [];
      this.held = 0;
    }
    let at = 0;
    while (bytes.byteLength - at >= 4) {
      const length = messageLength(bytes, at);
      if (length < MIN_MESSAGE_BYTES || length > MAX_MESSAGE_BYTES) {
        this.lost = true;
        this.parts = [];
        this.held = 0;
        return;
      }
      if (bytes.byteLength - at < length) break;
      this.message(bytes.subarray(at, at + length));
      at += length;
    }
    if (at < bytes.byteLength) {
      this.parts.push(bytes.slice(at));
      this.held = bytes.byteLength - at;
    }
  }

  end(): void {
    this.parts = [];
    this.held = 0;
  }

  private message(bytes: Uint8Array): void {
    let headers: Record<string, { value: unknown }>;
    let body: Uint8Array;
    try {
      ({ headers, body } = codec.decode(bytes));
    } catch {
      return; // a bad CRC: this message is skipped, the framing still holds
    }
    const kind = headers[':message-type']?.value;
    if (kind === 'exception') this.signal ??= 'error';
    if (kind !== 'event') return;
    const type = headers[':event-type']?.value;
    try {
      if (type === 'contentBlockDelta') this.textBytes += textBytes(decoder.decode(body), BEDROCK_TEXT.converse);
      else if (type === 'metadata') {
        this.signal ??= 'terminator';
        this.onEvent(JSON.parse(decoder.decode(body)));
      } else if (type === 'chunk') {
        const inner = chunkPayload(decoder.decode(body));
        if (inner === undefined) return;
        this.textBytes += textBytes(inner, BEDROCK_TEXT.invoke);
        const last = inner.includes('invocationMetrics');
        if (last) this.signal ??= 'terminator';
        if (last || inner.includes('usage')) this.onEvent(JSON.parse(inner));
      }
    } catch {
      // Not JSON after all: nothing to read.
    }
  }
}

function messageLength(bytes: Uint8Array, at: number): number {
  return ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

/** The model's event in a `chunk` payload (`{"bytes":"<base64>"}`), read without parsing the JSON around it. */
function chunkPayload(json: string): string | undefined {
  const start = json.indexOf(BYTES_MEMBER);
  if (start < 0) return undefined;
  const from = start + BYTES_MEMBER.length;
  const end = json.indexOf('"', from);
  if (end < 0) return undefined;
  return Buffer.from(json.slice(from, end), 'base64').toString('utf8');
}
