/**
 * The byte-level pieces of span encoding, against references: decimal digits and
 * varints against BigInt/Number formatting, JSON strings against JSON.stringify, and
 * protobuf spans of every length class through the independent test decoder.
 */
import { describe, expect, test } from 'bun:test';
import { ByteWriter, varintSize } from '../src/plugins/tracing/byte-writer.ts';
import { OTLP_JSON } from '../src/plugins/tracing/otlp-json.ts';
import { OTLP_PROTO } from '../src/plugins/tracing/otlp-proto.ts';
import { newSampledTraceparent, newSpanId, parseTraceparent } from '../src/plugins/tracing/trace-context.ts';
import { decodeTraceExport } from './support/otlp-proto.ts';

const bytesOf = (w: ByteWriter) => w.buf.subarray(0, w.len);
const textOf = (w: ByteWriter) => new TextDecoder().decode(bytesOf(w));

function randomSafeInts(n: number): number[] {
  const edge = [
    0,
    1,
    9,
    10,
    99,
    127,
    128,
    16383,
    16384,
    2 ** 31 - 1,
    2 ** 31,
    2 ** 32,
    99_999_999,
    100_000_000,
    2 ** 53 - 1,
  ];
  return [...edge, ...Array.from({ length: n }, () => Math.floor(Math.random() * 2 ** Math.floor(Math.random() * 54)))];
}

describe('ByteWriter', () => {
  test('digits: every safe integer class as Number#toString writes it', () => {
    for (const n of randomSafeInts(20_000)) {
      const w = new ByteWriter(4);
      w.digits(n);
      expect(textOf(w)).toBe(String(n));
    }
  });

  test('varint: base-128 little-endian groups, as the protobuf spec defines', () => {
    for (const n of randomSafeInts(5_000)) {
      const w = new ByteWriter(2);
      w.varint(n);
      let v = 0n;
      for (const [i, b] of bytesOf(w).entries()) v |= BigInt(b & 0x7f) << BigInt(7 * i);
      expect(v).toBe(BigInt(n));
      expect(w.len).toBe(varintSize(n));
      expect(bytesOf(w).at(-1)! & 0x80).toBe(0);
    }
  });

  test('jsonString: byte for byte what JSON.stringify gives, for awkward text', () => {
    const samples = [
      '',
      'plain',
      'quote " back \\ slash',
      'ctl \u0000\u0001\u001f\u007f',
      'ünïcødé',
      '模型',
      '😀 pair',
      'lone \ud800 high',
      'lone \udc00 low',
      'x'.repeat(5000),
    ];
    for (const s of samples) {
      const w = new ByteWriter(2);
      w.jsonString(s);
      expect(textOf(w)).toBe(JSON.stringify(s));
      expect(JSON.parse(textOf(w))).toBe(s);
    }
  });
});

const TRACE = '0af7651916cd43dd8448eb211c80319c';
const SPAN = 'b7ad6b7169203331';
const PARENT = '00f067aa0ba902b7';

function oneSpanBatch(enc: typeof OTLP_JSON, value: string, startMs: number) {
  const model = enc.stringAttr('gen_ai.request.model');
  const tokens = enc.intAttr('gen_ai.usage.input_tokens');
  const env = enc.envelope({ 'service.name': 'unit' }, 'skybridge', '0.0.0');
  const w = new ByteWriter(16);
  env.open(w);
  enc.beginSpan(
    w,
    TRACE,
    SPAN,
    PARENT,
    `chat ${value}`,
    3,
    startMs,
    startMs + 1.5,
    enc.fixedAttrs({ 'gen_ai.system': 'openai' }),
  );
  model(w, value);
  tokens(w, 2 ** 40);
  model(w, undefined);
  enc.endSpan(w, 2, `failed: ${value}`);
  const body = env.close(w);
  const doc = enc === OTLP_PROTO ? decodeTraceExport(body) : JSON.parse(new TextDecoder().decode(body));
  return doc.resourceSpans[0].scopeSpans[0].spans[0];
}

describe.each([
  ['http/json', OTLP_JSON],
  ['http/protobuf', OTLP_PROTO],
])('%s span encoding', (_name, enc) => {
  // Lengths around the varint boundaries move the protobuf span across 1-, 2- and 3-byte
  // length prefixes (the reserved room is closed up after the span is written).
  test.each([0, 1, 50, 127, 128, 300, 16_383, 16_384, 70_000, 2_100_000])('a value of %i characters', (n) => {
    const value = 'm'.repeat(n);
    const startMs = 1_795_774_945_371.4941;
    const s = oneSpanBatch(enc, value, startMs);
    expect(s.traceId).toBe(TRACE);
    expect(s.spanId).toBe(SPAN);
    expect(s.parentSpanId).toBe(PARENT);
    expect(s.name).toBe(`chat ${value}`);
    expect(s.kind).toBe(3);
    // Microsecond resolution, exact in nanoseconds.
    expect(s.startTimeUnixNano).toBe('1795774945371494000');
    expect(BigInt(s.endTimeUnixNano) - BigInt(s.startTimeUnixNano)).toBe(1_500_000n);
    const attrs = Object.fromEntries(s.attributes.map((a: any) => [a.key, a.value]));
    expect(attrs['gen_ai.system']).toEqual({ stringValue: 'openai' });
    expect(attrs['gen_ai.request.model']).toEqual({ stringValue: value });
    expect(attrs['gen_ai.usage.input_tokens']).toEqual({ intValue: String(2 ** 40) });
    expect(s.attributes).toHaveLength(3);
    expect(s.status).toEqual({ code: 2, message: `failed: ${value}` });
  });

  test('non-ASCII and control characters survive', () => {
    for (const value of ['ünïcødé-模型-😀', 'tab\tnew\nline "q" \\', '\u0000'])
      expect(oneSpanBatch(enc, value, 1e12).name).toBe(`chat ${value}`);
  });
});

describe('trace context ids', () => {
  test('pooled traceparents: valid W3C values, sampled, every trace and span id distinct across pool refills', () => {
    const traces = new Set<string>();
    const spans = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      const tp = newSampledTraceparent();
      const parsed = parseTraceparent(tp);
      expect(parsed).toBeDefined();
      expect(parsed!.sampled).toBe(true);
      expect(tp).toBe(`00-${parsed!.traceId}-${parsed!.spanId}-01`);
      expect(tp.slice(3, 35)).toBe(parsed!.traceId);
      expect(tp.slice(36, 52)).toBe(parsed!.spanId);
      traces.add(parsed!.traceId);
      spans.add(parsed!.spanId);
    }
    for (let i = 0; i < 1_000; i++) spans.add(newSpanId());
    expect(traces.size).toBe(1_000);
    expect(spans.size).toBe(2_000);
    for (const id of [...traces, ...spans]) expect(id).toMatch(/^[0-9a-f]+$/);
  });
});
