/**
 * OTLP/HTTP protobuf (`tracing.protocol: http/protobuf`, the OTLP default), written by
 * hand for the few messages a span export needs:
 * https://github.com/open-telemetry/opentelemetry-proto/blob/main/opentelemetry/proto/trace/v1/trace.proto
 *
 *   ExportTraceServiceRequest { ResourceSpans resource_spans = 1 }
 *   ResourceSpans { Resource resource = 1; ScopeSpans scope_spans = 2 }
 *   Resource      { KeyValue attributes = 1 }
 *   ScopeSpans    { InstrumentationScope scope = 1; Span spans = 2 }
 *   Span          { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4;
 *                   string name = 5; SpanKind kind = 6; fixed64 start_time_unix_nano = 7;
 *                   fixed64 end_time_unix_nano = 8; KeyValue attributes = 9; Status status = 15 }
 *   Status        { string message = 2; StatusCode code = 3 }
 *   KeyValue      { string key = 1; AnyValue value = 2 }
 *   AnyValue      { string string_value = 1; bool bool_value = 2; int64 int_value = 3 }
 *
 * A length must precede what it measures: a span reserves 4 bytes for its length and
 * closes the gap once it is written; the batch leaves room at the front for the
 * envelope, written last, when the batch length is known. About half the bytes of the
 * JSON encoding.
 */
import { ByteWriter, isAscii, varintSize } from './byte-writer.ts';
import {
  type AttrWriters,
  type BatchEnvelope,
  encodeAttrs,
  epochMicros,
  type OtlpEncoding,
  STATUS_ERROR,
} from './encoding.ts';

// Field tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited).
const LEN = 2;
const tag = (field: number, wire: number): number => (field << 3) | wire;
const SCOPE_SPANS_SPAN = tag(2, LEN);
const SPAN_TRACE_ID = tag(1, LEN);
const SPAN_SPAN_ID = tag(2, LEN);
const SPAN_PARENT_ID = tag(4, LEN);
const SPAN_NAME = tag(5, LEN);
const SPAN_KIND = tag(6, 0);
const SPAN_START = tag(7, 1);
const SPAN_END = tag(8, 1);
const SPAN_ATTRIBUTE = tag(9, LEN);
const SPAN_STATUS = tag(15, LEN);
const STATUS_MESSAGE = tag(2, LEN);
const STATUS_CODE = tag(3, 0);
const KV_KEY = tag(1, LEN);
const KV_VALUE = tag(2, LEN);
const ANY_STRING = tag(1, LEN);
const ANY_BOOL = tag(2, 0);
const ANY_INT = tag(3, 0);
const SPAN_LENGTH_ROOM = 4;

const encoder = new TextEncoder();

/** `tag key-length key value-tag`: a KeyValue up to its AnyValue's length. */
function keyField(key: string): Uint8Array {
  const k = encoder.encode(key);
  const w = new ByteWriter(k.length + 8);
  w.byte(KV_KEY);
  w.varint(k.length);
  w.raw(k);
  w.byte(KV_VALUE);
  return w.buf.slice(0, w.len);
}

/**
 * Writers of KeyValue fields under `fieldTag` (a span's attributes are field 9, a
 * resource's field 1): the hot path's and the ones for values known in advance.
 */
function attributeWriters(fieldTag: number): AttrWriters {
  return {
    stringAttr(key) {
      const kf = keyField(key);
      return (w, v) => {
        if (v === undefined) return;
        const bytes = isAscii(v) ? undefined : encoder.encode(v);
        const n = bytes ? bytes.length : v.length;
        const anyLength = 1 + varintSize(n) + n;
        w.byte(fieldTag);
        w.varint(kf.length + varintSize(anyLength) + anyLength);
        w.raw(kf);
        w.varint(anyLength);
        w.byte(ANY_STRING);
        w.varint(n);
        if (bytes) w.raw(bytes);
        else w.ascii(v);
      };
    },

    intAttr(key) {
      const kf = keyField(key);
      return (w, v) => {
        if (v === undefined || !Number.isSafeInteger(v) || v < 0) return;
        const anyLength = 1 + varintSize(v);
        w.byte(fieldTag);
        w.varint(kf.length + 1 + anyLength);
        w.raw(kf);
        w.byte(anyLength);
        w.byte(ANY_INT);
        w.varint(v);
      };
    },

    boolAttr(key) {
      const kf = keyField(key);
      const field = (value: 0 | 1) => {
        const w = new ByteWriter(kf.length + 8);
        w.byte(fieldTag);
        w.varint(kf.length + 3);
        w.raw(kf);
        w.byte(2);
        w.byte(ANY_BOOL);
        w.byte(value);
        return w.buf.slice(0, w.len);
      };
      const yes = field(1);
      const no = field(0);
      return (w, v) => {
        if (v !== undefined) w.raw(v ? yes : no);
      };
    },
  };
}

const spanAttributes = attributeWriters(SPAN_ATTRIBUTE);

/** A length-delimited field around `content`. */
function messageField(fieldTag: number, content: Uint8Array): Uint8Array {
  const w = new ByteWriter(content.length + 8);
  w.byte(fieldTag);
  w.varint(content.length);
  w.raw(content);
  return w.buf.slice(0, w.len);
}

/** fixed64 nanoseconds from epoch milliseconds, as two little-endian 32-bit halves. */
function fixed64Nanos(w: ByteWriter, ms: number): void {
  const us = epochMicros(ms);
  const usHigh = Math.floor(us / 0x100000000);
  const lowNs = (us - usHigh * 0x100000000) * 1000; // < 2^42: exact
  const carry = Math.floor(lowNs / 0x100000000);
  w.uint32le(lowNs - carry * 0x100000000);
  w.uint32le(usHigh * 1000 + carry);
}

export const OTLP_PROTO: OtlpEncoding = {
  protocol: 'http/protobuf',
  contentType: 'application/x-protobuf',
  separator: new Uint8Array(0),

  ...spanAttributes,
  fixedAttrs: (attrs) => encodeAttrs(spanAttributes, attrs),

  fixedName(name) {
    const w = new ByteWriter(name.length * 3 + 8);
    w.byte(SPAN_NAME);
    w.lengthPrefixedUtf8(name);
    return w.buf.slice(0, w.len);
  },

  beginSpan(w, traceId, spanId, parentSpanId, name, kind, startMs, endMs, fixed) {
    w.byte(SCOPE_SPANS_SPAN);
    w.ensure(SPAN_LENGTH_ROOM);
    w.len += SPAN_LENGTH_ROOM;
    w.mark = w.len;
    w.byte(SPAN_TRACE_ID);
    w.byte(16);
    w.hexBytes(traceId);
    w.byte(SPAN_SPAN_ID);
    w.byte(8);
    w.hexBytes(spanId);
    if (parentSpanId) {
      w.byte(SPAN_PARENT_ID);
      w.byte(8);
      w.hexBytes(parentSpanId);
    }
    if (typeof name === 'string') {
      w.byte(SPAN_NAME);
      w.lengthPrefixedUtf8(name);
    } else w.raw(name);
    w.byte(SPAN_KIND);
    w.byte(kind);
    w.byte(SPAN_START);
    fixed64Nanos(w, startMs);
    w.byte(SPAN_END);
    fixed64Nanos(w, endMs);
    w.raw(fixed);
  },

  endSpan(w, statusCode, statusMessage) {
    // An unset status is the default: no field at all.
    if (statusCode === STATUS_ERROR) {
      const message = statusMessage ? encoder.encode(statusMessage) : undefined;
      const length = (message ? 1 + varintSize(message.length) + message.length : 0) + 2;
      w.byte(SPAN_STATUS);
      w.varint(length);
      if (message) {
        w.byte(STATUS_MESSAGE);
        w.varint(message.length);
        w.raw(message);
      }
      w.byte(STATUS_CODE);
      w.byte(statusCode);
    }
    // The span's length goes in the room reserved before it, then the gap is closed.
    const start = w.mark;
    const length = w.len - start;
    const size = varintSize(length);
    const at = start - SPAN_LENGTH_ROOM;
    if (size < SPAN_LENGTH_ROOM) w.buf.copyWithin(at + size, start, w.len);
    w.len = at;
    w.varint(length);
    w.len = at + size + length;
  },

  envelope(resource, scopeName, scopeVersion): BatchEnvelope {
    const resourceField = messageField(tag(1, LEN), encodeAttrs(attributeWriters(tag(1, LEN)), resource));
    const scope = new ByteWriter(256);
    scope.byte(tag(1, LEN));
    scope.lengthPrefixedUtf8(scopeName);
    scope.byte(tag(2, LEN));
    scope.lengthPrefixedUtf8(scopeVersion);
    const scopeField = messageField(tag(1, LEN), scope.buf.subarray(0, scope.len));
    // Room for: request tag + length, resource, scope_spans tag + length, scope.
    const room = 2 * (1 + 5) + resourceField.length + scopeField.length;
    return {
      open(w) {
        w.ensure(room);
        w.len = room;
      },
      close(w) {
        const end = w.len;
        const scopeSpansLength = scopeField.length + (end - room);
        const resourceSpansLength = resourceField.length + 1 + varintSize(scopeSpansLength) + scopeSpansLength;
        const headLength =
          1 +
          varintSize(resourceSpansLength) +
          resourceField.length +
          1 +
          varintSize(scopeSpansLength) +
          scopeField.length;
        const start = room - headLength;
        w.len = start;
        w.byte(tag(1, LEN));
        w.varint(resourceSpansLength);
        w.raw(resourceField);
        w.byte(tag(2, LEN));
        w.varint(scopeSpansLength);
        w.raw(scopeField);
        w.len = end;
        return w.buf.subarray(start, end);
      },
    };
  },
};
