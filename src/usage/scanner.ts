/**
 * Reads token usage out of a response body as its chunks pass to the client. `push` is
 * synchronous and keeps only what parsing needs: for SSE the current unfinished line,
 * for JSON the body up to a cap. It never holds a chunk back. Compressed bodies
 * (gzip, deflate, br) are inflated on a side path; the client still gets the original bytes.
 */
import type { Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { type Coding, contentCoding } from '../lib/content-coding.ts';
import { EventStreamParser } from './eventstream.ts';
import { applyUsage, finishUsage } from './extract.ts';
import { memberKey, rootMemberObject } from './tail.ts';
import type { Usage, UsageFormat } from './types.ts';

/** A JSON body larger than this is not parsed for usage (LLM answers are far smaller). */
const MAX_JSON_BYTES = 8 * 1024 * 1024;
/** An SSE line longer than this is skipped rather than held. */
const MAX_SSE_LINE = 1024 * 1024;

interface Sink {
  write(chunk: Uint8Array): void;
  end(): void;
}

export class UsageScanner {
  private readonly usage: Usage = {};
  private readonly sink: Sink;
  private readonly inflater: Transform | undefined;
  private readonly inflated: Promise<void> | undefined;
  /**
   * Whether pushed chunks may still be referenced after `push` returns (a JSON body is
   * collected until its end; an inflater works on them asynchronously). SSE parsing
   * without compression decodes each chunk at once and keeps none.
   */
  readonly keepsChunks: boolean;

  private constructor(
    private readonly format: UsageFormat,
    framing: Framing,
    coding: Coding | null,
  ) {
    const apply = (event: unknown) => applyUsage(format, this.usage, event);
    const parser =
      framing === 'sse'
        ? new SseParser(apply)
        : framing === 'eventstream'
          ? new EventStreamParser(apply)
          : new JsonCollector(apply);
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
    contentType: string | null,
    contentEncoding: string | null,
  ): UsageScanner | undefined {
    const framing = framingOf(contentType?.toLowerCase() ?? '');
    if (!framing) return undefined;
    const coding = contentCoding(contentEncoding);
    if (coding === 'unsupported') return undefined;
    return new UsageScanner(format, framing, coding);
  }

  push(chunk: Uint8Array): void {
    this.sink.write(chunk);
  }

  /** Usage seen so far; call once, after the last chunk (or when the client went away). */
  async finish(): Promise<Usage | undefined> {
    this.sink.end();
    if (this.inflated) await this.inflated;
    return finishUsage(this.format, this.usage);
  }
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
  const scanner = UsageScanner.for(format, contentType, contentEncoding);
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

/** Server-sent events: parse only `data:` lines that mention usage. */
class SseParser implements Sink {
  private readonly decoder = new TextDecoder();
  private carry = '';
  private skippingLongLine = false;

  constructor(private readonly onEvent: (event: unknown) => void) {}

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
    if (!text.startsWith('data:', start)) return;
    const data = text.slice(start + 5, end);
    if (!data.includes('usage')) return;
    try {
      this.onEvent(JSON.parse(data));
    } catch {
      // Not JSON ([DONE], a provider's own framing): nothing to read.
    }
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
