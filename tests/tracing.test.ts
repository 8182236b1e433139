/**
 * OpenTelemetry tracing through a real gateway, exported to a local OTLP/HTTP receiver:
 * span structure (server span, one child per upstream attempt), GenAI/HTTP attributes,
 * W3C traceparent continued from the client and passed on to the upstream.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import type { Server } from 'bun';
import OpenAI from 'openai';
import { parseTraceparent } from '../src/plugins/tracing/trace-context.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MOCK_USAGE, MockUpstream } from './support/mock-upstream.ts';
import { decodeTraceExport } from './support/otlp-proto.ts';

const KEY_A = fakeKey();
const KEY_B = fakeKey();
const KEY_ANT = fakeKey('sk-ant');
const OTLP_TOKEN = fakeKey('otlp');

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  start: bigint;
  end: bigint;
  status: { code: number; message?: string };
  attrs: Record<string, string | number | boolean>;
}

/** A minimal OTLP/HTTP receiver (protobuf and JSON). */
class OtlpReceiver {
  readonly spans: Span[] = [];
  /** Bodies as text (JSON) or decoded and re-serialised (protobuf), for secret scans. */
  readonly bodies: string[] = [];
  readonly raw: Uint8Array[] = [];
  readonly headers: Array<Record<string, string>> = [];
  resource: Record<string, unknown> = {};
  private readonly server: Server<unknown>;

  constructor() {
    this.server = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: async (req) => {
        if (req.method !== 'POST' || new URL(req.url).pathname !== '/v1/traces')
          return new Response('no', { status: 404 });
        const bytes = new Uint8Array(await req.arrayBuffer());
        this.raw.push(bytes);
        this.headers.push(Object.fromEntries(req.headers));
        const type = req.headers.get('content-type') ?? '';
        const body =
          type === 'application/x-protobuf'
            ? decodeTraceExport(bytes)
            : type === 'application/json'
              ? JSON.parse(new TextDecoder().decode(bytes))
              : undefined;
        if (!body) return new Response('unsupported content-type', { status: 415 });
        this.bodies.push(type === 'application/json' ? new TextDecoder().decode(bytes) : JSON.stringify(body));
        for (const rs of body.resourceSpans ?? []) {
          this.resource = attrsOf(rs.resource?.attributes);
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              this.spans.push({
                traceId: s.traceId,
                spanId: s.spanId,
                parentSpanId: s.parentSpanId || undefined,
                name: s.name,
                kind: s.kind,
                start: BigInt(s.startTimeUnixNano),
                end: BigInt(s.endTimeUnixNano),
                status: s.status ?? { code: 0 },
                attrs: attrsOf(s.attributes),
              });
            }
          }
        }
        return Response.json({});
      },
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.port}/v1/traces`;
  }

  stop(): Promise<void> {
    return this.server.stop(true);
  }
}

function attrsOf(
  list: Array<{ key: string; value: Record<string, unknown> }> | undefined,
): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list ?? []) {
    if ('stringValue' in value) out[key] = value.stringValue as string;
    else if ('intValue' in value) out[key] = Number(value.intValue);
    else if ('doubleValue' in value) out[key] = value.doubleValue as number;
    else if ('boolValue' in value) out[key] = value.boolValue as boolean;
  }
  return out;
}

let mock: MockUpstream;
let receiver: OtlpReceiver;
let gw: TestGateway;
let deadUrl: string;

beforeAll(async () => {
  mock = new MockUpstream();
  receiver = new OtlpReceiver();
  const s = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response() });
  deadUrl = `http://127.0.0.1:${s.port}`;
  s.stop(true);
  gw = await startGateway({
    providers: {
      openai: {
        keys: [
          { name: 'key-a', value: KEY_A, models: ['*'] },
          { name: 'key-b', value: KEY_B, models: ['*'] },
        ],
        network_config: { base_url: mock.url, max_retries: 1, retry_backoff_initial: 1, retry_backoff_max: 5 },
      },
      anthropic: { keys: [{ name: 'ant', value: KEY_ANT, models: ['*'] }], network_config: { base_url: deadUrl } },
    },
    tracing: { endpoint: receiver.url, service_name: 'skybridge-test', headers: { 'x-otlp-token': OTLP_TOKEN } },
  });
});
afterAll(async () => {
  await gw.stop();
  await receiver.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

/** Flush the exporter until the trace's server span (and `children` attempt spans) arrived. */
async function spansOf(traceId: string, children: number): Promise<{ server: Span; attempts: Span[] }> {
  const deadline = Date.now() + 5000;
  for (;;) {
    await gw.gw.plugins.tracing.flush();
    const spans = receiver.spans.filter((s) => s.traceId === traceId);
    const server = spans.find((s) => s.kind === 2);
    const attempts = spans
      .filter((s) => s.kind === 3)
      .sort((a, b) => Number(a.attrs['skybridge.attempt']) - Number(b.attrs['skybridge.attempt']));
    if (server && attempts.length >= children) return { server, attempts };
    if (Date.now() > deadline) throw new Error(`trace ${traceId}: ${spans.length} spans arrived`);
    await Bun.sleep(20);
  }
}

const INCOMING_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const INCOMING_SPAN = '00f067aa0ba902b7';

describe('tracing', () => {
  test('official SDK with a traceparent: trace continued, server span + attempt span, upstream gets the attempt traceparent', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/openai_passthrough/v1`, apiKey: 'dummy', maxRetries: 0 });
    const { data, response } = await client.chat.completions
      .create(
        { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
        { headers: { traceparent: `00-${INCOMING_TRACE}-${INCOMING_SPAN}-01`, tracestate: 'vendor=1' } },
      )
      .withResponse();
    expect(data.choices[0]!.message.content).toBe('hello from mock');
    const requestId = response.headers.get('x-request-id')!;

    const { server, attempts } = await spansOf(INCOMING_TRACE, 1);
    expect(attempts).toHaveLength(1);
    const [attempt] = attempts as [Span];

    // Structure: the client's span is the server span's parent; the attempt is its child.
    expect(server.parentSpanId).toBe(INCOMING_SPAN);
    expect(server.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(server.name).toBe('POST /openai_passthrough/*');
    expect(attempt.parentSpanId).toBe(server.spanId);
    expect(attempt.traceId).toBe(INCOMING_TRACE);
    expect(attempt.start >= server.start).toBe(true);
    expect(attempt.end <= server.end).toBe(true);
    expect(server.end > server.start).toBe(true);

    // The upstream saw a traceparent naming the attempt span, in the client's trace.
    const tp = parseTraceparent(mock.last.headers.traceparent ?? null);
    expect(tp).toEqual({ traceId: INCOMING_TRACE, spanId: attempt.spanId, sampled: true });
    expect(mock.last.headers.tracestate).toBe('vendor=1');

    expect(server.attrs).toMatchObject({
      'gen_ai.system': 'openai',
      'gen_ai.provider.name': 'openai',
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'gpt-4o-mini',
      'gen_ai.usage.input_tokens': MOCK_USAGE.input,
      'gen_ai.usage.output_tokens': MOCK_USAGE.output,
      'http.request.method': 'POST',
      'http.response.status_code': 200,
      'url.path': '/openai_passthrough/v1/chat/completions',
      'skybridge.request_id': requestId,
      'skybridge.outcome': 'ok',
      'skybridge.attempts': 1,
    });
    expect(['key-a', 'key-b']).toContain(server.attrs['skybridge.key'] as string);
    expect(server.attrs['error.type']).toBeUndefined();
    expect(server.status.code).toBe(0);

    expect(attempt.name).toBe('chat gpt-4o-mini');
    expect(attempt.attrs).toMatchObject({
      'gen_ai.system': 'openai',
      'gen_ai.request.model': 'gpt-4o-mini',
      'http.request.method': 'POST',
      'http.response.status_code': 200,
      'url.full': `${mock.url}/v1/chat/completions`,
      'server.address': '127.0.0.1',
      'skybridge.attempt': 1,
      'skybridge.key': server.attrs['skybridge.key']!,
      'skybridge.request_id': requestId,
    });

    // Exported with the configured headers and resource; no secret anywhere.
    expect(receiver.headers.at(-1)!['x-otlp-token']).toBe(OTLP_TOKEN);
    expect(receiver.headers.at(-1)!['content-type']).toBe('application/json');
    expect(receiver.resource['service.name']).toBe('skybridge-test');
    for (const body of [...receiver.bodies, ...receiver.raw.map((b) => Buffer.from(b).toString('latin1'))])
      for (const secret of [KEY_A, KEY_B, KEY_ANT]) expect(body).not.toContain(secret);
  });

  test('a retried 429: two attempt spans under one server span, each upstream call with its own traceparent', async () => {
    let first = true;
    mock.respondWith(() => {
      if (!first) return undefined;
      first = false;
      return Response.json({ error: { message: 'slow down' } }, { status: 429 });
    });
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions?debug=secret-query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', messages: [] }),
    });
    expect(res.status).toBe(200);
    await res.text();
    expect(mock.requests).toHaveLength(2);
    const tps = mock.requests.map((r) => parseTraceparent(r.headers.traceparent ?? null)!);
    const traceId = tps[0]!.traceId;
    expect(tps[1]!.traceId).toBe(traceId);
    expect(tps[0]!.spanId).not.toBe(tps[1]!.spanId);

    const { server, attempts } = await spansOf(traceId, 2);
    // No incoming traceparent: a new root.
    expect(server.parentSpanId).toBeUndefined();
    expect(attempts.map((a) => a.spanId)).toEqual([tps[0]!.spanId, tps[1]!.spanId]);
    for (const a of attempts) expect(a.parentSpanId).toBe(server.spanId);
    const [a1, a2] = attempts as [Span, Span];
    expect(a1.attrs['http.response.status_code']).toBe(429);
    expect(a1.attrs['error.type']).toBe('429');
    expect(a1.status.code).toBe(2);
    expect(a2.attrs['http.response.status_code']).toBe(200);
    expect(a2.attrs['http.request.resend_count']).toBe(1);
    expect(a2.attrs['error.type']).toBeUndefined();
    expect(a1.attrs['skybridge.key']).not.toBe(a2.attrs['skybridge.key']);
    expect(a2.start >= a1.end).toBe(true);
    expect(server.attrs['skybridge.attempts']).toBe(2);
    // Query strings stay out of spans.
    expect(server.attrs['url.path']).toBe('/openai_passthrough/v1/chat/completions');
    for (const s of [server, a1, a2]) expect(JSON.stringify(s.attrs)).not.toContain('secret-query');
  });

  test('a stream: usage on the spans, the attempt span lasts until the stream ended', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/openai_passthrough/v1`, apiKey: 'dummy', maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [],
    });
    for await (const _ of stream) {
      // drain
    }
    const traceId = parseTraceparent(mock.last.headers.traceparent ?? null)!.traceId;
    const { server, attempts } = await spansOf(traceId, 1);
    expect(server.attrs['skybridge.stream']).toBe(true);
    expect(server.attrs['gen_ai.usage.output_tokens']).toBe(MOCK_USAGE.output);
    expect(attempts[0]!.attrs['gen_ai.usage.output_tokens']).toBe(MOCK_USAGE.output);
    expect(attempts[0]!.end).toBe(server.end);
  });

  test('upstream unreachable: error status and error.type on both spans', async () => {
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01` },
      body: JSON.stringify({ model: 'claude-sonnet-4-20250514', max_tokens: 5, messages: [] }),
    });
    expect(res.status).toBe(502);
    await res.text();
    const { server, attempts } = await spansOf('ab'.repeat(16), 1);
    expect(server.status.code).toBe(2);
    expect(server.attrs).toMatchObject({
      'error.type': 'upstream_unreachable',
      'http.response.status_code': 502,
      'gen_ai.system': 'anthropic',
      'skybridge.outcome': 'upstream_error',
      'skybridge.key': 'ant',
    });
    expect(attempts[0]!.status.code).toBe(2);
    expect(attempts[0]!.attrs['error.type']).toBe('upstream_unreachable');
    expect(attempts[0]!.attrs['http.response.status_code']).toBeUndefined();
  });

  test('an unsampled incoming trace is not exported, but the upstream still joins it', async () => {
    const traceId = 'ef'.repeat(16);
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${'12'.repeat(8)}-00` },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
    });
    await res.text();
    const tp = parseTraceparent(mock.last.headers.traceparent ?? null)!;
    expect(tp.traceId).toBe(traceId);
    expect(tp.sampled).toBe(false);
    await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    await gw.gw.plugins.tracing.flush();
    expect(receiver.spans.filter((s) => s.traceId === traceId)).toHaveLength(0);
  });

  test('an invalid traceparent starts a new trace', async () => {
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${'0'.repeat(32)}-${'12'.repeat(8)}-01` },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
    });
    await res.text();
    const tp = parseTraceparent(mock.last.headers.traceparent ?? null)!;
    expect(tp.traceId).not.toBe('0'.repeat(32));
    const { server } = await spansOf(tp.traceId, 1);
    expect(server.parentSpanId).toBeUndefined();
  });
});

/** Model names no one sends, but anyone could: each must arrive exactly as sent. */
const AWKWARD_MODELS = ['gpt-"quoted"\\back\nline\ttab', 'ünïcødé-模型-😀', 'x'.repeat(300), '\u0000\u001f\u007f'];

async function awkwardModelsRoundTrip(g: TestGateway, r: OtlpReceiver) {
  for (const model of AWKWARD_MODELS) {
    const traceId = newTraceHex();
    const res = await fetch(`${g.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${'12'.repeat(8)}-01` },
      body: JSON.stringify({ model, messages: [] }),
    });
    await res.text();
    const deadline = Date.now() + 5000;
    let spans: Span[] = [];
    while (spans.length < 2 && Date.now() < deadline) {
      await g.gw.plugins.tracing.flush();
      spans = r.spans.filter((s) => s.traceId === traceId);
      if (spans.length < 2) await Bun.sleep(20);
    }
    expect(spans).toHaveLength(2);
    for (const s of spans) expect(s.attrs['gen_ai.request.model']).toBe(model);
    expect(spans.find((s) => s.kind === 3)!.name).toBe(`chat ${model}`);
  }
}

function newTraceHex(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('hex');
}

describe('wire encodings', () => {
  test('http/json (default): awkward strings escaped and read back exactly', async () => {
    await awkwardModelsRoundTrip(gw, receiver);
    expect(receiver.headers.at(-1)!['content-type']).toBe('application/json');
  });

  test('http/protobuf: the same spans in protobuf; awkward strings, lengths and nesting decode', async () => {
    const r = new OtlpReceiver();
    const g = await startGateway({
      providers: {
        openai: {
          keys: [{ name: 'k', value: fakeKey(), models: ['*'] }],
          network_config: { base_url: mock.url, max_retries: 1, retry_backoff_initial: 1, retry_backoff_max: 5 },
        },
      },
      tracing: { endpoint: r.url, protocol: 'http/protobuf', service_name: 'proto-test' },
    });
    try {
      await awkwardModelsRoundTrip(g, r);
      expect(r.headers.at(-1)!['content-type']).toBe('application/x-protobuf');
      expect(r.resource['service.name']).toBe('proto-test');
      // A retried request: parent/child structure, ints, bools, status with a code.
      let first = true;
      mock.respondWith(() => {
        if (!first) return undefined;
        first = false;
        return Response.json({ error: { message: 'slow down' } }, { status: 429 });
      });
      const traceId = newTraceHex();
      const res = await fetch(`${g.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${INCOMING_SPAN}-01` },
        body: JSON.stringify({ model: 'gpt-4o', messages: [] }),
      });
      await res.text();
      let spans: Span[] = [];
      for (let i = 0; i < 100 && spans.length < 3; i++) {
        await g.gw.plugins.tracing.flush();
        spans = r.spans.filter((s) => s.traceId === traceId);
        if (spans.length < 3) await Bun.sleep(20);
      }
      const server = spans.find((s) => s.kind === 2)!;
      const attempts = spans
        .filter((s) => s.kind === 3)
        .sort((a, b) => Number(a.attrs['skybridge.attempt']) - Number(b.attrs['skybridge.attempt']));
      expect(server.parentSpanId).toBe(INCOMING_SPAN);
      expect(server.name).toBe('POST /openai_passthrough/*');
      expect(server.attrs).toMatchObject({
        'gen_ai.system': 'openai',
        'gen_ai.request.model': 'gpt-4o',
        'http.response.status_code': 200,
        'skybridge.attempts': 2,
        'skybridge.stream': false,
        'gen_ai.usage.input_tokens': MOCK_USAGE.input,
      });
      expect(attempts.map((a) => a.parentSpanId)).toEqual([server.spanId, server.spanId]);
      expect(attempts[0]!.status).toEqual({ code: 2 });
      expect(attempts[0]!.attrs['error.type']).toBe('429');
      expect(attempts[1]!.attrs['http.request.resend_count']).toBe(1);
      // fixed64 nanoseconds: within a minute of now, ordered.
      const nowNs = BigInt(Date.now()) * 1_000_000n;
      expect(server.start < server.end && server.end <= nowNs && nowNs - server.start < 60_000_000_000n).toBe(true);
      expect(attempts[1]!.start >= attempts[0]!.end).toBe(true);
    } finally {
      await g.stop();
      await r.stop();
    }
  });

  test('more requests than one export batch: every span arrives exactly once', async () => {
    const before = receiver.spans.length;
    const ids: string[] = [];
    // 300 requests (over the 256-item export threshold), 30 at a time: the gateway runs
    // in this process and shares its fetch slots with the test's client.
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 30 }, async () => {
          const traceId = newTraceHex();
          ids.push(traceId);
          const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-${'34'.repeat(8)}-01` },
            body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
          });
          await res.text();
        }),
      );
    }
    // A request completes (and queues its spans) just after its last byte went out.
    let got: Span[] = [];
    for (let i = 0; i < 250 && got.length < 600; i++) {
      await gw.gw.plugins.tracing.flush();
      got = receiver.spans.slice(before).filter((s) => ids.includes(s.traceId));
      if (got.length < 600) await Bun.sleep(20);
    }
    expect(got).toHaveLength(600);
    expect(new Set(got.map((s) => s.spanId)).size).toBe(600);
  });
});

describe('tracing off', () => {
  test('no tracing.endpoint: no plugin in the pipeline, the client traceparent passes through unchanged', async () => {
    const m = new MockUpstream();
    const g = await startGateway({
      providers: {
        openai: { keys: [{ name: 'k', value: fakeKey(), models: ['*'] }], network_config: { base_url: m.url } },
      },
    });
    try {
      expect(g.gw.state.pipeline.names).not.toContain('tracing');
      const tp = `00-${INCOMING_TRACE}-${INCOMING_SPAN}-01`;
      const res = await fetch(`${g.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent: tp },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
      });
      await res.text();
      expect(m.last.headers.traceparent).toBe(tp);
    } finally {
      await g.stop();
      await m.stop();
    }
  });
});
