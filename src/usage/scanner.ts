/**
 * Reads token usage out of a response body as its chunks pass to the client. `push` is
 * synchronous and keeps only what parsing needs: for SSE the current unfinished line,
 * for JSON the body up to a cap. It never holds a chunk back. Compressed bodies
 * (gzip, deflate, br) are inflated on a side path; the client still gets the original bytes.
 *
 * On an SSE stream it also notes, without parsing any event for it, whether the stream
 * carried its API's terminator or an error event, and counts the bytes of generated
 * text in content deltas: the output estimate of a stream cut short (ESTIMATE_BYTES_PER_TOKEN).
 */
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { type Coding, contentCoding } from '../lib/content-coding.ts';
import { type ApiStyle, hasTerminator } from './api.ts';
import { EventStreamParser } from './eventstream.ts';
import { applyUsage, finishUsage } from './extract.ts';
import { memberKey, rootMemberObject } from './tail.ts';
import { TEXT_RULES, type TextRule, textBytes } from './text.ts';
import type { StreamSignal, StreamWatch, Usage, UsageFormat } from './types.ts';

export type { StreamSignal } from './types.ts';

/** A JSON body larger than this is not parsed for usage (LLM answers are far smaller). */
const MAX_JSON_BYTES = 8 * 1024 * 1024;
/** An SSE line longer than this is skipped rather than held. */
const MAX_SSE_LINE = 1024 * 1024;
/**
 * The output estimate of a stream cut short: one token per this many bytes of generated
 * text (UTF-8) relayed, the usual rule of thumb for English with GPT, Claude and Gemini
 * tokenizers. Rounded up.
 */
export const ESTIMATE_BYTES_PER_TOKEN = 4;

interface Sink {
  write(chunk: Uint8Array): void;
  end(): void;
}

export class UsageScanner {
  private readonly usage: Usage = {};
  private readonly sink: Sink;
  /** The parser watching the stream's end and text, for APIs with a terminator. */
  private readonly watch: StreamWatch | undefined;
  private readonly inflater: Transform | undefined;
  private readonly inflated: Promise<void> | undefined;
  private ended: Promise<void> | undefined;
  /** The output tokens in the result are the estimate (a stream cut short). */
  outputEstimated = false;
  /**
   * Whether pushed chunks may still be referenced after `push` returns (a JSON body is
   * collected until its end; an inflater works on them asynchronously). SSE parsing
   * without compression decodes each chunk at once and keeps none.
   */
  readonly keepsChunks: boolean;

  private constructor(
    private readonly format: UsageFormat,
    style: ApiStyle,
    framing: Framing,
    coding: Coding | null,
  ) {
    const apply = (event: unknown) => applyUsage(format, this.usage, event);
    const parser =
      framing === 'sse'
        ? new SseParser(format, style, this.usage)
        : framing === 'eventstream'
          ? new EventStreamParser(apply)
          : new JsonCollector(apply);
    // Streams that end with a terminator of their own: SSE ones, and Bedrock's event streams.
    if (hasTerminator(style) && framing !== 'json' && (framing === 'eventstream') === (style === 'bedrock'))
      this.watch = parser as SseParser | EventStreamParser;
    this.inflater = makeInflater(coding);
    this.keepsChunks = framing === 'json' || this.inflater !== undefined;
    if (this.inflater) {
      const inflater = this.inflater;
      inflater.on('data', (chunk: Buffer) => parser.write(chunk));
      this.inflated = new Promise((resolve) => {
        inflater.once('end', () => {
          parser.end();
          resolve();
        });
        // A corrupt compressed body costs us the usage, never the response.
        inflater.once('error', () => resolve());
      });
      this.sink = { write: (c) => inflater.write(c), end: () => inflater.end() };
    } else {
      this.sink = parser;
    }
  }

  /** A scanner for this response, or undefined when its content type carries no usage. */
  static for(
    format: UsageFormat,
    style: ApiStyle,
    contentType: string | null,
    contentEncoding: string | null,
  ): UsageScanner | undefined {
    const framing = framingOf(contentType?.toLowerCase() ?? '');
    if (!framing) return undefined;
    const coding = contentCoding(contentEncoding);
    if (coding === 'unsupported') return undefined;
    return new UsageScanner(format, style, framing, coding);
  }

  /** A stream of an API with a terminator (a missing one means the stream was cut). */
  get expectsTerminator(): boolean {
    return this.watch !== undefined;
  }

  /** What the stream said about its end (final after `end()`). */
  get signal(): StreamSignal {
    return this.watch?.signal;
  }

  push(chunk: Uint8Array): void {
    this.sink.write(chunk);
  }

  /** No more chunks: resolves when every byte was read (compressed bodies inflate on a side path). */
  end(): Promise<void> {
    if (!this.ended) {
      this.sink.end();
      this.ended = this.inflated ?? Promise.resolve();
    }
    return this.ended;
  }

  /**
   * Usage seen, after `end()`. `partial`: the stream was cut short, so output tokens are at
   * least the estimate from the generated text relayed (`outputEstimated` says when it was used).
   */
  result(partial: boolean): Usage | undefined {
    if (partial && this.watch) this.outputEstimated = raiseToEstimate(this.usage, this.watch.textBytes);
    return finishUsage(this.format, this.usage);
  }

  /** Usage seen, once the body is over. */
  async finish(): Promise<Usage | undefined> {
    await this.end();
    return this.result(false);
  }
}

/** Output tokens at least the estimate from `textBytes`; the provider's total follows. True when raised. */
function raiseToEstimate(usage: Usage, textBytes: number): boolean {
  const estimate = Math.ceil(textBytes / ESTIMATE_BYTES_PER_TOKEN);
  const reported = usage.output_tokens ?? 0;
  if (estimate <= reported) return false;
  usage.output_tokens = estimate;
  if (usage.total_tokens !== undefined) usage.total_tokens += estimate - reported;
  return true;
}

const jsonDecoder = new TextDecoder();

/**
 * Usage in a body read whole. An uncompressed JSON answer (the common case) is parsed
 * directly, synchronously: no scanner, no parser objects, no promise. A compressed or
 * SSE or event-stream body goes through a scanner.
 */
export function usageOfBody(
  format: UsageFormat,
  contentType: string | null,
  contentEncoding: string | null,
  bytes: Uint8Array,
): Usage | undefined | Promise<Usage | undefined> {
  const framing = framingOf(contentType?.toLowerCase() ?? '');
  if (contentCoding(contentEncoding) === null && framing !== 'sse' && framing !== 'eventstream')
    return framing === 'json' ? usageOfJson(format, bytes) : undefined;
  const scanner = UsageScanner.for(format, 'other', contentType, contentEncoding);
  if (!scanner) return undefined;
  scanner.push(bytes);
  return scanner.finish();
}

/** How an answer's usage is framed: SSE events, AWS event-stream messages (Bedrock), or one JSON document. */
type Framing = 'sse' | 'eventstream' | 'json';

function framingOf(ct: string): Framing | undefined {
  if (ct.startsWith('text/event-stream')) return 'sse';
  if (ct.startsWith('application/vnd.amazon.eventstream')) return 'eventstream';
  return ct.includes('json') ? 'json' : undefined;
}

/** Where each format keeps its usage in a whole answer: a member of the root object. */
const USAGE_MEMBER: Record<UsageFormat, { name: string; key: Uint8Array }> = {
  openai: { name: 'usage', key: memberKey('usage') },
  anthropic: { name: 'usage', key: memberKey('usage') },
  gemini: { name: 'usageMetadata', key: memberKey('usageMetadata') },
  bedrock: { name: 'usage', key: memberKey('usage') },
};

/**
 * Usage of an uncompressed JSON answer: only its usage object is decoded and parsed when
 * it is found at the end of the root object (the usual shape, and a fraction of the
 * cost); anything else is parsed whole.
 */
export function usageOfJson(format: UsageFormat, bytes: Uint8Array): Usage | undefined {
  const usage: Usage = {};
  if (bytes.byteLength > 0 && bytes.byteLength <= MAX_JSON_BYTES) {
    const member = USAGE_MEMBER[format];
    const slice = rootMemberObject(bytes, member.key);
    try {
      if (slice)
        applyUsage(format, usage, {
          [member.name]: JSON.parse(jsonDecoder.decode(bytes.subarray(slice[0], slice[1]))),
        });
      else applyUsage(format, usage, JSON.parse(jsonDecoder.decode(bytes)));
    } catch {
      // Not JSON after all: no usage.
    }
  }
  return finishUsage(format, usage);
}

/** A streaming inflater for the coding, none for an uncompressed body. */
function makeInflater(coding: Coding | null): Transform | undefined {
  switch (coding) {
    case 'gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    case null:
      return undefined;
  }
}

/** Event names that end a stream (`event:` lines): the terminator when its data line follows. */
const TERMINAL_EVENTS: Readonly<Partial<Record<ApiStyle, readonly string[]>>> = {
  responses: ['response.completed', 'response.incomplete', 'response.failed'],
  messages: ['message_stop'],
};

/**
 * Server-sent events: parse only `data:` lines that mention usage; note the terminator,
 * error events and the generated text's bytes from the lines' text alone.
 */
class SseParser implements Sink, StreamWatch {
  private readonly decoder = new TextDecoder();
  private carry = '';
  private skippingLongLine = false;
  private readonly text: TextRule | undefined;
  private readonly terminalEvents: readonly string[] | undefined;
  /** The last `event:` line named a terminal event (or an error): its data line decides. */
  private pending: StreamSignal;
  signal: StreamSignal;
  /** UTF-8 bytes of generated text seen. */
  textBytes = 0;

  constructor(
    private readonly format: UsageFormat,
    readonly style: ApiStyle,
    private readonly usage: Usage,
  ) {
    this.text = TEXT_RULES[style];
    this.terminalEvents = TERMINAL_EVENTS[style];
  }

  write(chunk: Uint8Array): void {
    let text = this.decoder.decode(chunk, { stream: true });
    let start = 0;
    let nl = text.indexOf('\n');
    if (nl < 0) {
      this.hold(text);
      return;
    }
    if (this.carry) {
      text = this.carry + text;
      nl += this.carry.length;
      this.carry = '';
    }
    while (nl >= 0) {
      if (this.skippingLongLine) this.skippingLongLine = false;
      else this.line(text, start, nl);
      start = nl + 1;
      nl = text.indexOf('\n', start);
    }
    if (start < text.length) this.hold(text.slice(start));
  }

  end(): void {
    if (this.carry && !this.skippingLongLine) this.line(this.carry, 0, this.carry.length);
    this.carry = '';
  }

  private hold(part: string): void {
    if (this.skippingLongLine) return;
    this.carry += part;
    if (this.carry.length > MAX_SSE_LINE) {
      this.carry = '';
      this.skippingLongLine = true;
    }
  }

  private line(text: string, start: number, end: number): void {
    if (text.charCodeAt(end - 1) === 13) end--; // CRLF
    if (text.startsWith('event:', start)) {
      if (this.terminalEvents) this.event(text, start + 6, end);
      return;
    }
    if (!text.startsWith('data:', start)) return;
    const data = text.slice(text.charCodeAt(start + 5) === 32 ? start + 6 : start + 5, end);
    if (this.pending) {
      this.signal ??= this.pending;
      this.pending = undefined;
    }
    if (this.text) this.textBytes += textBytes(data, this.text);
    if (data.startsWith('{"error"') || data.startsWith('{"type":"error"')) this.signal ??= 'error';
    else if (this.style === 'chat') {
      if (data.length <= 8 && data === '[DONE]') this.signal ??= 'terminator';
    } else if (this.style === 'generate') {
      if (data.includes('"finishReason"')) this.signal ??= 'terminator';
    } else if (this.style === 'messages' && data.length < 64 && data.includes('"message_stop"'))
      this.signal ??= 'terminator';
    if (!data.includes('usage')) return;
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      return; // Not JSON ([DONE], a provider's own framing): nothing to read.
    }
    applyUsage(this.format, this.usage, event);
    if (this.style === 'responses') {
      const type = (event as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && this.terminalEvents!.includes(type)) this.signal ??= 'terminator';
    }
  }

  /** An `event:` line: a terminal event (or an error) takes effect with its data line. */
  private event(text: string, from: number, end: number): void {
    if (text.charCodeAt(from) === 32) from++;
    const length = end - from;
    // Compared in place: most events are deltas, and a slice per event line costs more.
    for (const name of this.terminalEvents!)
      if (length === name.length && text.startsWith(name, from)) {
        this.pending = 'terminator';
        return;
      }
    if (length === 5 && text.startsWith('error', from)) this.pending = 'error';
  }
}

/** A whole JSON answer, or Gemini's streamed JSON array; parsed once at the end. */
class JsonCollector implements Sink {
  private chunks: Uint8Array[] = [];
  private size = 0;

  constructor(private readonly onDocument: (doc: unknown) => void) {}

  write(chunk: Uint8Array): void {
    if (this.size < 0) return;
    this.size += chunk.byteLength;
    if (this.size > MAX_JSON_BYTES) {
      this.chunks = [];
      this.size = -1;
      return;
    }
    this.chunks.push(chunk);
  }

  end(): void {
    if (this.size <= 0) return;
    const bytes = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    try {
      this.onDocument(JSON.parse(new TextDecoder().decode(bytes)));
    } catch {
      // Truncated (client went away) or not JSON after all: no usage.
    }
  }
}
