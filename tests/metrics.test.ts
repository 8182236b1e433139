/**
 * Prometheus metrics through a real gateway: a known mix of requests (non-stream,
 * stream, an upstream 4xx, an unreachable upstream, a 429 retried on the other key,
 * unknown models) and exact counter values in the scrape; bearer-token protection; no
 * secret anywhere in the output; config reloads counted.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { writeFileSync } from 'node:fs';
import OpenAI from 'openai';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MOCK_USAGE, MockUpstream } from './support/mock-upstream.ts';

const KEY_A = fakeKey();
const KEY_B = fakeKey();
const KEY_ANT = fakeKey('sk-ant');
const TOKEN = fakeKey('metrics');
const U = MOCK_USAGE;

let mock: MockUpstream;
let gw: TestGateway;
let deadUrl: string;

/** A port nothing listens on: bind one, note it, close it. */
function closedPortUrl(): string {
  const s = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response() });
  const url = `http://127.0.0.1:${s.port}`;
  s.stop(true);
  return url;
}

function configFor(extra: Record<string, unknown> = {}) {
  return {
    providers: {
      openai: {
        keys: [
          { name: 'key-a', value: KEY_A, models: ['gpt-4o-mini', 'gpt-4o'] },
          { name: 'key-b', value: KEY_B, models: ['*'] },
        ],
        network_config: { base_url: mock.url, max_retries: 1, retry_backoff_initial: 1, retry_backoff_max: 5 },
      },
      anthropic: { keys: [{ name: 'ant', value: KEY_ANT, models: ['*'] }], network_config: { base_url: deadUrl } },
    },
    metrics: { bearer_token: TOKEN },
    ...extra,
  };
}

beforeAll(async () => {
  mock = new MockUpstream();
  deadUrl = closedPortUrl();
  gw = await startGateway(configFor());
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});

async function scrape(): Promise<string> {
  const res = await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return res.text();
}

/** Value of one sample, by metric name and exact label set (label order as exposed). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const part of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[part[1]!] = part[2]!;
    const keys = Object.keys(labels);
    if (keys.length === Object.keys(got).length && keys.every((k) => got[k] === labels[k])) return Number(m[3]);
  }
  return undefined;
}

function openai() {
  return new OpenAI({ baseURL: `${gw.url}/openai_passthrough/v1`, apiKey: 'dummy', maxRetries: 0 });
}

function post(path: string, body: unknown): Promise<Response> {
  return fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

describe('metrics', () => {
  test('a known request mix gives exact counters, token totals and histogram counts', async () => {
    // 1. Non-stream through the official SDK.
    const answer = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(answer.usage?.prompt_tokens).toBe(U.input);

    // 2. Stream through the official SDK (usage in the last chunk).
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    });
    for await (const _ of stream) {
      // drain
    }

    // 3. The upstream answers 400: delivered as is (4xx, outcome ok), no usage.
    mock.respondWith((_req, rec) =>
      rec.json?.model === 'gpt-4o' ? Response.json({ error: { message: 'bad request' } }, { status: 400 }) : undefined,
    );
    const bad = await post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o', messages: [] });
    expect(bad.status).toBe(400);
    await bad.text();

    // 4. Upstream unreachable: 502.
    const dead = await post('/anthropic_passthrough/v1/messages', {
      model: 'claude-sonnet-4-20250514',
      max_tokens: 5,
      messages: [],
    });
    expect(dead.status).toBe(502);
    await dead.text();

    // 5. A 429 on the first attempt, retried on the other key.
    let first429 = true;
    mock.respondWith((_req, rec) => {
      if (rec.json?.messages?.[0]?.content !== 'retry me' || !first429) return undefined;
      first429 = false;
      return Response.json({ error: { message: 'slow down' } }, { status: 429 });
    });
    const retried = await post('/openai_passthrough/v1/chat/completions', {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'retry me' }],
    });
    expect(retried.status).toBe(200);
    expect(retried.headers.get('x-skybridge-attempts')).toBe('2');
    await retried.text();

    // 6. Unknown models: one dynamic label slot; a model holding a secret never gets one.
    gw.gw.plugins.metrics.maxDynamicModels = 1;
    for (const model of [`leak-${KEY_A}`, 'mystery-model-1', 'mystery-model-2']) {
      const r = await post('/openai_passthrough/v1/chat/completions', { model, messages: [] });
      expect(r.status).toBe(200);
      await r.text();
    }

    await gw.waitForLines(8);
    const text = await scrape();
    const req = (provider: string, endpoint: string, status_class: string, outcome: string) =>
      sample(text, 'skybridge_requests_total', { provider, endpoint, status_class, outcome });
    expect(req('openai', 'openai', '2xx', 'ok')).toBe(6);
    expect(req('openai', 'openai', '4xx', 'ok')).toBe(1);
    expect(req('anthropic', 'anthropic', '5xx', 'upstream_error')).toBe(1);

    const tok = (model: string, direction: string) =>
      sample(text, 'skybridge_tokens_total', { provider: 'openai', model, direction });
    // gpt-4o-mini: #1 (non-stream, cached 3), #2 (stream, no cache detail), #5 (non-stream, cached 3).
    expect(tok('gpt-4o-mini', 'input')).toBe(3 * U.input);
    expect(tok('gpt-4o-mini', 'output')).toBe(3 * U.output);
    expect(tok('gpt-4o-mini', 'cache_read')).toBe(2 * U.cacheRead);
    expect(tok('mystery-model-1', 'input')).toBe(U.input);
    // The secret-bearing model and the one over the limit fold into `other`.
    expect(tok('other', 'input')).toBe(2 * U.input);
    expect(tok('other', 'output')).toBe(2 * U.output);
    expect(tok('mystery-model-2', 'input')).toBeUndefined();
    expect(text).not.toContain('mystery-model-2');
    expect(text).not.toContain('leak-');

    expect(sample(text, 'skybridge_upstream_retries_total', { provider: 'openai', reason: '429' })).toBe(1);
    expect(
      sample(text, 'skybridge_upstream_errors_total', { provider: 'anthropic', type: 'upstream_unreachable' }),
    ).toBe(1);
    expect(
      sample(text, 'skybridge_upstream_errors_total', { provider: 'openai', type: 'upstream_unreachable' }),
    ).toBeUndefined();

    const durationCount = (stream: string, outcome: string, provider = 'openai', endpoint = 'openai') =>
      sample(text, 'skybridge_request_duration_seconds_count', { provider, endpoint, stream, outcome });
    expect(durationCount('false', 'ok')).toBe(6);
    expect(durationCount('true', 'ok')).toBe(1);
    expect(durationCount('false', 'upstream_error', 'anthropic', 'anthropic')).toBe(1);
    expect(
      sample(text, 'skybridge_request_duration_seconds_bucket', {
        provider: 'openai',
        endpoint: 'openai',
        stream: 'false',
        outcome: 'ok',
        le: '+Inf',
      }),
    ).toBe(6);
    expect(
      sample(text, 'skybridge_upstream_ttfb_seconds_count', {
        provider: 'openai',
        endpoint: 'openai',
        stream: 'false',
      }),
    ).toBe(6);
    expect(
      sample(text, 'skybridge_upstream_ttfb_seconds_count', { provider: 'openai', endpoint: 'openai', stream: 'true' }),
    ).toBe(1);
    // No answer, no time to first byte.
    expect(
      sample(text, 'skybridge_upstream_ttfb_seconds_count', {
        provider: 'anthropic',
        endpoint: 'anthropic',
        stream: 'false',
      }),
    ).toBeUndefined();

    expect(sample(text, 'skybridge_inflight_requests')).toBe(0);
    expect(sample(text, 'skybridge_inflight_streams')).toBeNumber();
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(sample(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);

    // No secret anywhere: provider keys, the metrics token.
    for (const secret of [KEY_A, KEY_B, KEY_ANT, TOKEN]) expect(text).not.toContain(secret);
  });

  test('bounded labels: no request ids, no raw paths, only known label names', async () => {
    const text = await scrape();
    const lines = text.split('\n').filter((l) => l.startsWith('skybridge_'));
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) {
      expect(l).not.toContain('/v1/');
      expect(l).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}/); // UUIDs (request ids)
      for (const [, name] of l.matchAll(/([a-z_]+)="/g)) {
        expect([
          'provider',
          'endpoint',
          'status_class',
          'outcome',
          'stream',
          'le',
          'model',
          'direction',
          'reason',
          'type',
          'result',
          'version',
        ]).toContain(name!);
      }
    }
  });

  test('bearer token: 401 JSON without it or with a wrong one', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }] as Record<
      string,
      string
    >[]) {
      const res = await fetch(`${gw.url}/metrics`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('content-type')).toContain('application/json');
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
      const body = (await res.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('unauthorized');
      expect(JSON.stringify(body)).not.toContain(TOKEN);
    }
  });

  test('config reloads are counted by result; metrics.enabled: false turns the route off', async () => {
    writeFileSync(gw.configPath, '{ "providers": { "openai": { "keys": "not a list" } } }');
    expect(await gw.gw.reload('test')).toBe(false);
    let text = await scrape();
    expect(sample(text, 'skybridge_config_reloads_total', { result: 'failure' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'skybridge_config_last_reload_successful')).toBe(0);

    const full = { ...configFor(), server: { host: '127.0.0.1', port: 0 }, logs: { file: gw.logFile } };
    writeFileSync(gw.configPath, JSON.stringify(full));
    expect(await gw.gw.reload('test')).toBe(true);
    text = await scrape();
    expect(sample(text, 'skybridge_config_reloads_total', { result: 'success' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'skybridge_config_last_reload_successful')).toBe(1);
    // Counters survive a reload.
    expect(
      sample(text, 'skybridge_requests_total', {
        provider: 'openai',
        endpoint: 'openai',
        status_class: '2xx',
        outcome: 'ok',
      }),
    ).toBe(6);

    writeFileSync(gw.configPath, JSON.stringify({ ...full, metrics: { enabled: false } }));
    expect(await gw.gw.reload('test')).toBe(true);
    expect((await fetch(`${gw.url}/metrics`)).status).toBe(404);
    writeFileSync(gw.configPath, JSON.stringify({ ...full, plugins: ['logging'] }));
    expect(await gw.gw.reload('test')).toBe(true);
    expect((await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    writeFileSync(gw.configPath, JSON.stringify(full));
    expect(await gw.gw.reload('test')).toBe(true);
    expect((await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
  });
});

describe('metrics without a token, on a custom path', () => {
  test('open scrape at metrics.path', async () => {
    const m = new MockUpstream();
    const g = await startGateway({
      providers: {
        openai: { keys: [{ name: 'k', value: fakeKey(), models: ['*'] }], network_config: { base_url: m.url } },
      },
      metrics: { path: '/internal/metrics' },
    });
    try {
      const r = await fetch(`${g.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
      });
      await r.text();
      await g.waitForLines(1);
      const res = await fetch(`${g.url}/internal/metrics`);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(
        sample(text, 'skybridge_requests_total', {
          provider: 'openai',
          endpoint: 'openai',
          status_class: '2xx',
          outcome: 'ok',
        }),
      ).toBe(1);
      expect((await fetch(`${g.url}/metrics`)).status).toBe(404);
    } finally {
      await g.stop();
      await m.stop();
    }
  });
});
