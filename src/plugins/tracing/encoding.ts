/**
 * What an OTLP/HTTP wire encoding provides to the tracing plugin: attribute writers and
 * span framing into a ByteWriter, and the ExportTraceServiceRequest around a batch.
 * Two implementations: otlp-proto.ts (http/protobuf, the OTLP default) and otlp-json.ts
 * (http/json). Everything constant (attribute keys, fixed attributes, span names) is
 * encoded once, at module or config load.
 */
import { ByteWriter } from './byte-writer.ts';

export type AttrValue = string | number | boolean | undefined;

/** Writes one attribute, or nothing when the value is absent. */
export type AttrWriter<T> = (w: ByteWriter, value: T | undefined) => void;

export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
export const STATUS_UNSET = 0;
export const STATUS_ERROR = 2;

export interface BatchEnvelope {
  /** Start a batch in an emptied writer. */
  open(w: ByteWriter): void;
  /** End the batch: the request body (a view into the writer's buffer). */
  close(w: ByteWriter): Uint8Array<ArrayBuffer>;
}

/** Makers of attribute writers, one per key (keys are encoded once, here). */
export interface AttrWriters {
  stringAttr(key: string): AttrWriter<string>;
  /** Non-negative integers (counts, codes, ports); anything else is left out. */
  intAttr(key: string): AttrWriter<number>;
  boolAttr(key: string): AttrWriter<boolean>;
}

/** Attributes known in advance, encoded once with the same writers as the hot path's. */
export function encodeAttrs(writers: AttrWriters, attrs: Record<string, AttrValue>): Uint8Array {
  const w = new ByteWriter(256);
  for (const [key, v] of Object.entries(attrs)) {
    if (typeof v === 'string') writers.stringAttr(key)(w, v);
    else if (typeof v === 'number') writers.intAttr(key)(w, v);
    else if (typeof v === 'boolean') writers.boolAttr(key)(w, v);
  }
  return w.buf.slice(0, w.len);
}

export interface OtlpEncoding extends AttrWriters {
  readonly protocol: 'http/protobuf' | 'http/json';
  readonly contentType: string;
  /** Attributes known in advance, encoded once; a span's attribute list opens with them. */
  fixedAttrs(attrs: Record<string, AttrValue>): Uint8Array;
  /** A span name known in advance, encoded once. */
  fixedName(name: string): Uint8Array;
  /** Between two spans of a batch. */
  readonly separator: Uint8Array;
  /**
   * A span up to its attributes, then `fixed` (from fixedAttrs). Ids are validated
   * lowercase hex; times epoch milliseconds. The caller writes the other attributes
   * and ends the span with endSpan.
   */
  beginSpan(
    w: ByteWriter,
    traceId: string,
    spanId: string,
    parentSpanId: string | undefined,
    name: Uint8Array | string,
    kind: number,
    startMs: number,
    endMs: number,
    fixed: Uint8Array,
  ): void;
  endSpan(w: ByteWriter, statusCode: number, statusMessage?: string): void;
  envelope(resource: Record<string, AttrValue>, scopeName: string, scopeVersion: string): BatchEnvelope;
}

/**
 * Epoch milliseconds (fractional) in microseconds: OTLP times are nanoseconds, and
 * epoch microseconds stay below 2^53 until the year 2255.
 */
export const epochMicros = (ms: number): number => Math.round(ms * 1000);
