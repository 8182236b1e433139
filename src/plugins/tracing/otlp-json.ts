/**
 * OTLP/HTTP JSON encoding of spans, written as bytes (json-writer.ts).
 * https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
 *
 * Ids are hex strings, 64-bit integers (times, intValue) decimal strings, enums numbers.
 * Every attribute key is a constant, so its JSON is encoded once at module load; a span
 * costs a few byte copies plus the values that vary (ids, model, path, counts).
 */
import { fragment, type JsonWriter } from './json-writer.ts';

/** Writes one attribute (with a leading comma), or nothing when the value is absent. */
export type AttrWriter<T> = (w: JsonWriter, value: T | undefined) => void;

const keyPrefix = (key: string): string => `,{"key":${JSON.stringify(key)},"value":{`;
const CLOSE_VALUE = fragment('}}');
const CLOSE_INT = fragment('"}}');

export function stringAttr(key: string): AttrWriter<string> {
  const pre = fragment(`${keyPrefix(key)}"stringValue":`);
  return (w, v) => {
    if (v === undefined) return;
    w.raw(pre);
    w.string(v);
    w.raw(CLOSE_VALUE);
  };
}

export function intAttr(key: string): AttrWriter<number> {
  const pre = fragment(`${keyPrefix(key)}"intValue":"`);
  const negative = fragment(`${keyPrefix(key)}"intValue":"-`);
  return (w, v) => {
    if (v === undefined || !Number.isSafeInteger(v)) return;
    w.raw(v < 0 ? negative : pre);
    w.digits(Math.abs(v));
    w.raw(CLOSE_INT);
  };
}

export function boolAttr(key: string): AttrWriter<boolean> {
  const yes = fragment(`${keyPrefix(key)}"boolValue":true}}`);
  const no = fragment(`${keyPrefix(key)}"boolValue":false}}`);
  return (w, v) => {
    if (v !== undefined) w.raw(v ? yes : no);
  };
}

/** JSON text of attributes known in advance, each with a leading comma. */
export function constAttrsText(attrs: Record<string, string | number | boolean | undefined>): string {
  let out = '';
  for (const [key, v] of Object.entries(attrs)) {
    if (typeof v === 'string') out += `${keyPrefix(key)}"stringValue":${JSON.stringify(v)}}}`;
    else if (typeof v === 'number') out += Number.isSafeInteger(v) ? `${keyPrefix(key)}"intValue":"${v}"}}` : `${keyPrefix(key)}"doubleValue":${JSON.stringify(v)}}}`;
    else if (typeof v === 'boolean') out += `${keyPrefix(key)}"boolValue":${v}}}`;
  }
  return out;
}

/**
 * The first attributes of a span, fixed in advance (OTLP wants no leading comma in the
 * list, so a span always opens with these).
 */
export const leadingAttrs = (attrs: Record<string, string | number | boolean | undefined>): Uint8Array => fragment(constAttrsText(attrs).slice(1));

export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
export const STATUS_UNSET = 0;
export const STATUS_ERROR = 2;

const OPEN = fragment('{"traceId":"');
const SPAN_ID = fragment('","spanId":"');
const PARENT_ID = fragment('","parentSpanId":"');
const NAME = fragment('","name":');
const KIND: Record<number, Uint8Array> = {
  [SPAN_KIND_SERVER]: fragment(`,"kind":${SPAN_KIND_SERVER},"startTimeUnixNano":"`),
  [SPAN_KIND_CLIENT]: fragment(`,"kind":${SPAN_KIND_CLIENT},"startTimeUnixNano":"`),
};
const END_TIME = fragment('000","endTimeUnixNano":"');
const ATTRIBUTES = fragment('000","attributes":[');
const STATUS: Record<number, Uint8Array> = {
  [STATUS_UNSET]: fragment(`],"status":{"code":${STATUS_UNSET}}}`),
  [STATUS_ERROR]: fragment(`],"status":{"code":${STATUS_ERROR}}}`),
};
const STATUS_ERROR_MESSAGE = fragment(`],"status":{"code":${STATUS_ERROR},"message":`);
const CLOSE_STATUS = fragment('}}');

/**
 * Epoch milliseconds (fractional) as OTLP's fixed64 nanoseconds, in microsecond
 * resolution: epoch microseconds stay below 2^53 until the year 2255.
 */
const epochMicros = (ms: number): number => Math.round(ms * 1000);

/**
 * Write a span up to its attribute list: ids, name (`name` is raw JSON text when a
 * Uint8Array, else a string to quote), kind and times, then `leading` attributes.
 * The caller writes the other attributes and ends the span with `endSpan`.
 */
export function beginSpan(w: JsonWriter, traceId: string, spanId: string, parentSpanId: string | undefined, name: Uint8Array | string, kind: number, startMs: number, endMs: number, leading: Uint8Array): void {
  w.raw(OPEN);
  w.ascii(traceId);
  w.raw(SPAN_ID);
  w.ascii(spanId);
  if (parentSpanId) {
    w.raw(PARENT_ID);
    w.ascii(parentSpanId);
  }
  w.raw(NAME);
  if (typeof name === 'string') w.string(name);
  else w.raw(name);
  w.raw(KIND[kind]!);
  w.digits(epochMicros(startMs));
  w.raw(END_TIME);
  w.digits(epochMicros(endMs));
  w.raw(ATTRIBUTES);
  w.raw(leading);
}

export function endSpan(w: JsonWriter, statusCode: number, statusMessage?: string): void {
  if (statusCode === STATUS_ERROR && statusMessage) {
    w.raw(STATUS_ERROR_MESSAGE);
    w.string(statusMessage);
    w.raw(CLOSE_STATUS);
  } else w.raw(STATUS[statusCode]!);
}

/** The text around a batch of spans: an ExportTraceServiceRequest with one resource and scope. */
export function exportEnvelope(resource: Record<string, string | number | boolean | undefined>, scopeName: string, scopeVersion: string): { head: Uint8Array; tail: Uint8Array } {
  return {
    head: fragment(`{"resourceSpans":[{"resource":{"attributes":[${constAttrsText(resource).slice(1)}]},"scopeSpans":[{"scope":{"name":${JSON.stringify(scopeName)},"version":${JSON.stringify(scopeVersion)}},"spans":[`),
    tail: fragment(']}]}]}'),
  };
}
