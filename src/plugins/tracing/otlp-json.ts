/**
 * OTLP/HTTP JSON (`tracing.protocol: http/json`).
 * https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding
 * Ids are hex strings, 64-bit integers (times, intValue) decimal strings, enums numbers.
 */
import { ByteWriter, fragment } from './byte-writer.ts';
import {
  type AttrWriters,
  type BatchEnvelope,
  encodeAttrs,
  epochMicros,
  type OtlpEncoding,
  SPAN_KIND_CLIENT,
  SPAN_KIND_SERVER,
  STATUS_ERROR,
  STATUS_UNSET,
} from './encoding.ts';

const keyPrefix = (key: string): string => `,{"key":${JSON.stringify(key)},"value":{`;
const CLOSE_VALUE = fragment('}}');
const CLOSE_INT = fragment('"}}');

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

/** Each attribute with a leading comma (the first in a list drops it: fixedAttrs, envelope). */
const attributes: AttrWriters = {
  stringAttr(key) {
    const pre = fragment(`${keyPrefix(key)}"stringValue":`);
    return (w, v) => {
      if (v === undefined) return;
      w.raw(pre);
      w.jsonString(v);
      w.raw(CLOSE_VALUE);
    };
  },

  intAttr(key) {
    const pre = fragment(`${keyPrefix(key)}"intValue":"`);
    return (w, v) => {
      if (v === undefined || !Number.isSafeInteger(v) || v < 0) return;
      w.raw(pre);
      w.digits(v);
      w.raw(CLOSE_INT);
    };
  },

  boolAttr(key) {
    const yes = fragment(`${keyPrefix(key)}"boolValue":true}}`);
    const no = fragment(`${keyPrefix(key)}"boolValue":false}}`);
    return (w, v) => {
      if (v !== undefined) w.raw(v ? yes : no);
    };
  },
};

export const OTLP_JSON: OtlpEncoding = {
  protocol: 'http/json',
  contentType: 'application/json',
  separator: fragment(','),

  ...attributes,

  // A span's list always opens with these, so the first drops its comma.
  fixedAttrs: (attrs) => encodeAttrs(attributes, attrs).subarray(1),
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
    const w = new ByteWriter(512);
    w.raw(fragment('{"resourceSpans":[{"resource":{"attributes":['));
    w.raw(encodeAttrs(attributes, resource).subarray(1));
    w.raw(
      fragment(
        `]},"scopeSpans":[{"scope":{"name":${JSON.stringify(scopeName)},"version":${JSON.stringify(scopeVersion)}},"spans":[`,
      ),
    );
    const head = w.buf.slice(0, w.len);
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
