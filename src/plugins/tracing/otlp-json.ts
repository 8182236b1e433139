/**
 * OTLP/HTTP JSON (`tracing.protocol: http/json`).
 * https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
 * Ids are hex strings, 64-bit integers (times, intValue) decimal strings, enums numbers.
 */
import { type ByteWriter, fragment } from './byte-writer.ts';
import { type AttrValue, type AttrWriter, type BatchEnvelope, epochMicros, type OtlpEncoding, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET } from './encoding.ts';

const keyPrefix = (key: string): string => `,{"key":${JSON.stringify(key)},"value":{`;
const CLOSE_VALUE = fragment('}}');
const CLOSE_INT = fragment('"}}');

/** Attributes as JSON text, each with a leading comma. */
function attrsText(attrs: Record<string, AttrValue>): string {
  let out = '';
  for (const [key, v] of Object.entries(attrs)) {
    if (typeof v === 'string') out += `${keyPrefix(key)}"stringValue":${JSON.stringify(v)}}}`;
    else if (typeof v === 'number') out += Number.isSafeInteger(v) ? `${keyPrefix(key)}"intValue":"${v}"}}` : `${keyPrefix(key)}"doubleValue":${JSON.stringify(v)}}}`;
    else if (typeof v === 'boolean') out += `${keyPrefix(key)}"boolValue":${v}}}`;
  }
  return out;
}

const OPEN = fragment('{"traceId":"');
const SPAN_ID = fragment('","spanId":"');
const PARENT_ID = fragment('","parentSpanId":"');
const NAME = fragment('","name":');
const KIND: Record<number, Uint8Array> = {
  [SPAN_KIND_SERVER]: fragment(`,"kind":${SPAN_KIND_SERVER},"startTimeUnixNano":"`),
  [SPAN_KIND_CLIENT]: fragment(`,"kind":${SPAN_KIND_CLIENT},"startTimeUnixNano":"`),
};
// Times are written in microseconds, then three zeros.
const END_TIME = fragment('000","endTimeUnixNano":"');
const ATTRIBUTES = fragment('000","attributes":[');
const STATUS: Record<number, Uint8Array> = {
  [STATUS_UNSET]: fragment(`],"status":{"code":${STATUS_UNSET}}}`),
  [STATUS_ERROR]: fragment(`],"status":{"code":${STATUS_ERROR}}}`),
};
const STATUS_ERROR_MESSAGE = fragment(`],"status":{"code":${STATUS_ERROR},"message":`);
const CLOSE_STATUS = fragment('}}');

export const OTLP_JSON: OtlpEncoding = {
  protocol: 'http/json',
  contentType: 'application/json',
  separator: fragment(','),

  stringAttr(key: string): AttrWriter<string> {
    const pre = fragment(`${keyPrefix(key)}"stringValue":`);
    return (w, v) => {
      if (v === undefined) return;
      w.raw(pre);
      w.jsonString(v);
      w.raw(CLOSE_VALUE);
    };
  },

  intAttr(key: string): AttrWriter<number> {
    const pre = fragment(`${keyPrefix(key)}"intValue":"`);
    return (w, v) => {
      if (v === undefined || !Number.isSafeInteger(v) || v < 0) return;
      w.raw(pre);
      w.digits(v);
      w.raw(CLOSE_INT);
    };
  },

  boolAttr(key: string): AttrWriter<boolean> {
    const yes = fragment(`${keyPrefix(key)}"boolValue":true}}`);
    const no = fragment(`${keyPrefix(key)}"boolValue":false}}`);
    return (w, v) => {
      if (v !== undefined) w.raw(v ? yes : no);
    };
  },

  // The first attribute has no leading comma; a span's list always opens with these.
  fixedAttrs: (attrs) => fragment(attrsText(attrs).slice(1)),
  fixedName: (name) => fragment(JSON.stringify(name)),

  beginSpan(w, traceId, spanId, parentSpanId, name, kind, startMs, endMs, fixed) {
    w.raw(OPEN);
    w.ascii(traceId);
    w.raw(SPAN_ID);
    w.ascii(spanId);
    if (parentSpanId) {
      w.raw(PARENT_ID);
      w.ascii(parentSpanId);
    }
    w.raw(NAME);
    if (typeof name === 'string') w.jsonString(name);
    else w.raw(name);
    w.raw(KIND[kind]!);
    w.digits(epochMicros(startMs));
    w.raw(END_TIME);
    w.digits(epochMicros(endMs));
    w.raw(ATTRIBUTES);
    w.raw(fixed);
  },

  endSpan(w, statusCode, statusMessage) {
    if (statusCode === STATUS_ERROR && statusMessage) {
      w.raw(STATUS_ERROR_MESSAGE);
      w.jsonString(statusMessage);
      w.raw(CLOSE_STATUS);
    } else w.raw(STATUS[statusCode]!);
  },

  envelope(resource, scopeName, scopeVersion): BatchEnvelope {
    const head = fragment(
      `{"resourceSpans":[{"resource":{"attributes":[${attrsText(resource).slice(1)}]},"scopeSpans":[{"scope":{"name":${JSON.stringify(scopeName)},"version":${JSON.stringify(scopeVersion)}},"spans":[`,
    );
    const tail = fragment(']}]}]}');
    return {
      open: (w) => w.raw(head),
      close(w) {
        w.raw(tail);
        return w.buf.subarray(0, w.len);
      },
    };
  },
};
