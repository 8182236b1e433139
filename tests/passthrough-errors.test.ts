/** Bad input and failure modes: each gets a clear JSON error and the right status. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import OpenAI from 'openai';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MockUpstream } from './support/mock-upstream.ts';
import { chunkedStream, rawRequest } from './support/raw-http.ts';

const KEY = fakeKey();
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    server: { max_request_body_mb: 1, buffer_body_limit_mb: 0.5 },
    providers: {
      openai: {
        keys: [{ name: 'gpt4o-only', value: KEY, models: ['gpt-4o', 'gpt-4o-mini'] }],
        network_config: { base_url: mock.url },
      },
      anthropic: { keys: [{ name: 'none', value: fakeKey(), models: [] }], network_config: { base_url: mock.url } },
    },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());
const gwPort = () => Number(new URL(gw.url).port);

async function expectJsonError(res: { status: number; body: string } | Response, status: number, type: string) {
  const body = res instanceof Response ? await res.text() : res.body;
  expect(res.status).toBe(status);
  const parsed = JSON.parse(body);
  expect(parsed.error.type).toBe(type);
  expect(typeof parsed.error.message).toBe('string');
  return parsed.error.message as string;
}

describe('path safety', () => {
  const bad = [
    '/openai_passthrough/..%2f..%2fetc/passwd',
    '/openai_passthrough/%2e%2e%2fv1/models',
    '/openai_passthrough/v1%5cmodels',
    '/openai_passthrough/%2f%2fevil.example/v1',
    '/openai_passthrough//evil.example/v1',
    '/openai_passthrough/http%3a%2f%2fevil.example/v1',
    '/openai_passthrough/user%40evil.example/v1',
    '/openai_passthrough/user@evil.example/v1',
    '/openai_passthrough/v1/models%0aHost:%20evil',
    '/openai_passthrough/v1/models%00',
    '/openai_passthrough/v1/%zz',
  ];
  for (const target of bad) {
    test(`400 for ${target}`, async () => {
      const res = await rawRequest(gwPort(), 'GET', target);
      await expectJsonError(res, 400, 'invalid_path');
      expect(mock.requests.length).toBe(0);
    });
  }

  test('encoded dot segments that Bun resolves itself land outside every prefix', async () => {
    const res = await rawRequest(gwPort(), 'GET', '/openai_passthrough/v1/%2e%2e/%2e%2e/admin');
    expect([400, 404]).toContain(res.status);
    expect(JSON.parse(res.body).error.type).toBeString();
    expect(mock.requests.length).toBe(0);
  });

  test('@ past the first segment is allowed (Vertex model versions)', async () => {
    const res = await rawRequest(gwPort(), 'GET', '/openai_passthrough/v1/models/claude@20250929');
    expect(res.status).toBe(200);
    expect(mock.last.path).toBe('/v1/models/claude@20250929');
  });

  test('the prefix only matches at a segment boundary', async () => {
    const res = await rawRequest(gwPort(), 'GET', '/openai_passthroughX/v1/models');
    await expectJsonError(res, 404, 'not_found');
    expect(mock.requests.length).toBe(0);
  });

  test('routing goes by the path whatever the Host header says (short names like a service `llm` included)', async () => {
    for (const host of ['llm', 'ai:80', 'x', 'gateway.internal:8080', '[::1]:9']) {
      mock.reset();
      const res = await rawRequest(gwPort(), 'GET', '/openai_passthrough/v1/models?limit=2', { host });
      expect(res.status).toBe(200);
      expect(mock.last.path).toBe('/v1/models');
      expect(mock.last.query).toBe('limit=2');
    }
    const health = await rawRequest(gwPort(), 'GET', '/health', { host: 'gw' });
    expect(health.status).toBe(200);
    await expectJsonError(await rawRequest(gwPort(), 'GET', '/nope', { host: 'gw' }), 404, 'not_found');
  });

  test('a request naming no host (HTTP/1.0 without Host, an empty Host) is routed by its path', async () => {
    // Bun's request URL is then the bare target ("/openai_passthrough/..."), not absolute.
    const http10 = await rawRequest(gwPort(), 'GET', '/openai_passthrough/v1/models?limit=3', {}, '', '1.0');
    expect(http10.status).toBe(200);
    expect(mock.last.path).toBe('/v1/models');
    expect(mock.last.query).toBe('limit=3');
    expect(mock.last.headers.authorization).toBe(`Bearer ${KEY}`);
    mock.reset();
    const emptyHost = await rawRequest(
      gwPort(),
      'POST',
      '/openai_passthrough/v1/chat/completions',
      { host: '', 'content-type': 'application/json' },
      '{"model":"gpt-4o-mini","messages":[]}',
    );
    expect(emptyHost.status).toBe(200);
    expect(mock.last.path).toBe('/v1/chat/completions');
    expect(new TextDecoder().decode(mock.last.body)).toBe('{"model":"gpt-4o-mini","messages":[]}');
    // Path safety and prefix boundaries hold for the bare target too.
    await expectJsonError(
      await rawRequest(gwPort(), 'GET', '/openai_passthrough/..%2f..%2fetc/passwd', {}, '', '1.0'),
      400,
      'invalid_path',
    );
    await expectJsonError(
      await rawRequest(gwPort(), 'GET', '/openai_passthroughX/v1/models', {}, '', '1.0'),
      404,
      'not_found',
    );
    expect((await rawRequest(gwPort(), 'GET', '/health', {}, '', '1.0')).status).toBe(200);
  });

  test('a WebSocket handshake on a path that is no WebSocket API gets a JSON 501, nothing upstream; an h2c upgrade offer is served', async () => {
    const ws = await rawRequest(gwPort(), 'GET', '/openai_passthrough/v1/models', {
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
    });
    const message = await expectJsonError(ws, 501, 'websocket_not_supported');
    expect(message).toContain('/v1/realtime');
    expect(mock.requests.length).toBe(0);
    // curl --http2 on http:// offers h2c this way; the gateway answers in HTTP/1.1 as usual.
    const h2c = await rawRequest(gwPort(), 'GET', '/openai_passthrough/v1/models', {
      connection: 'Upgrade, HTTP2-Settings',
      upgrade: 'h2c',
      'http2-settings': 'AAMAAABkAAQCAAAAAAIAAAAA',
    });
    expect(h2c.status).toBe(200);
    expect(mock.last.path).toBe('/v1/models');
    expect(mock.last.headers.upgrade).toBeUndefined();
  });

  test('unknown routes answer a JSON 404', async () => {
    await expectJsonError(await fetch(`${gw.url}/nope`), 404, 'not_found');
  });
});

describe('key selection', () => {
  test('a model no key allows: 4xx naming provider and model', async () => {
    const c = new OpenAI({ baseURL: `${gw.url}/openai_passthrough/v1`, apiKey: 'dummy', maxRetries: 0 });
    const err = await c.chat.completions.create({ model: 'gpt-5-secret-model', messages: [] }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":"gpt-5-secret-model"}',
    });
    const message = await expectJsonError(res, 400, 'no_key_for_model');
    expect(message).toContain('openai');
    expect(message).toContain('gpt-5-secret-model');
    expect(mock.requests.length).toBe(0);
  });

  test('an empty models list allows no model', async () => {
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":"claude-x"}',
    });
    await expectJsonError(res, 400, 'no_key_for_model');
  });
});

describe('bodies', () => {
  test('a declared body over max_request_body_mb: 413 before reading it', async () => {
    const res = await fetch(`${gw.url}/openai_passthrough/v1/files`, {
      method: 'POST',
      body: new Uint8Array(1024 * 1024 + 10),
    });
    await expectJsonError(res, 413, 'payload_too_large');
    expect(mock.requests.length).toBe(0);
  });

  test('a chunked body (no declared length) over the limit: 413', async () => {
    const chunk = new Uint8Array(256 * 1024);
    let sent = 0;
    const stream = new ReadableStream({
      pull(c) {
        if (sent >= 8) return c.close();
        sent++;
        c.enqueue(chunk);
      },
    });
    const res = await fetch(`${gw.url}/openai_passthrough/v1/files`, {
      method: 'POST',
      body: stream,
      duplex: 'half',
    } as RequestInit);
    await expectJsonError(res, 413, 'payload_too_large');
  });

  test('a chunked body (no declared length) within the buffer limit is held: its model picks the key', async () => {
    const chunked = (text: string) =>
      fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: chunkedStream(text),
        duplex: 'half',
      } as RequestInit);
    const ok = '{"model":"gpt-4o","messages":[{"role":"user","content":"hé"}]}';
    const res = await chunked(ok);
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(mock.last.body)).toBe(ok);
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.model).toBe('gpt-4o');
    expect(line.bytes_in).toBe(new TextEncoder().encode(ok).byteLength);
    // The key allows gpt-4o and gpt-4o-mini only: another model is refused, as with a declared length.
    mock.reset();
    await expectJsonError(await chunked('{"model":"o3","messages":[]}'), 400, 'no_key_for_model');
    expect(mock.requests.length).toBe(0);
  });

  test('a chunked body above the buffer limit streams through intact, counted', async () => {
    const big = crypto.getRandomValues(new Uint8Array(700 * 1024));
    let at = 0;
    const stream = new ReadableStream({
      pull(c) {
        if (at >= big.length) return c.close();
        c.enqueue(big.slice(at, (at += 64 * 1024)));
      },
    });
    const res = await fetch(`${gw.url}/openai_passthrough/v1/uploads`, {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'application/octet-stream' },
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(200);
    expect(mock.last.body).toEqual(big);
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.bytes_in).toBe(big.byteLength);
  });

  test('a body above the buffer limit streams through intact (no model lookup)', async () => {
    const big = crypto.getRandomValues(new Uint8Array(700 * 1024));
    const res = await fetch(`${gw.url}/openai_passthrough/v1/uploads`, {
      method: 'POST',
      body: big,
      headers: { 'content-type': 'application/octet-stream' },
    });
    expect(res.status).toBe(200);
    expect(mock.last.body).toEqual(big);
  });

  test('malformed JSON is forwarded as is; the upstream answers it', async () => {
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model": "gpt-4o", oops',
    });
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(mock.last.body)).toBe('{"model": "gpt-4o", oops');
  });
});

describe('headers', () => {
  test('request: hop-by-hop, host, cookies, gateway control headers dropped; the rest forwarded', async () => {
    await fetch(`${gw.url}/openai_passthrough/v1/models`, {
      headers: {
        connection: 'x-secret-hop',
        'x-secret-hop': '1',
        te: 'trailers',
        'proxy-authorization': 'Basic abc',
        cookie: 'session=1',
        'x-bf-vk': 'vk-123',
        'x-skybridge-debug': '1',
        'openai-organization': 'org-1',
        'openai-beta': 'assistants=v2',
        'user-agent': 'my-app/1.0',
        'api-key': 'client-azure-key',
        'x-goog-api-key': 'client-google-key',
      },
    });
    const h = mock.last.headers;
    for (const name of [
      'x-secret-hop',
      'te',
      'proxy-authorization',
      'cookie',
      'x-bf-vk',
      'x-skybridge-debug',
      'api-key',
      'x-goog-api-key',
    ])
      expect(h[name]).toBeUndefined();
    expect(h['openai-organization']).toBe('org-1');
    expect(h['openai-beta']).toBe('assistants=v2');
    expect(h['user-agent']).toBe('my-app/1.0');
    expect(h.authorization).toBe(`Bearer ${KEY}`);
  });

  test('response: credentials and cookies dropped, rate-limit headers and ids kept, x-request-id added', async () => {
    mock.respondWith(
      () =>
        new Response('{"ok":true}', {
          headers: {
            'content-type': 'application/json',
            'set-cookie': 'provider_session=abc',
            'x-api-key': 'echoed',
            authorization: 'Bearer echoed',
            'x-goog-api-key': 'echoed',
            'x-ratelimit-remaining-requests': '99',
            'openai-processing-ms': '12',
            'x-request-id': 'req_abc',
            'retry-after': '1',
          },
        }),
    );
    const res = await fetch(`${gw.url}/openai_passthrough/v1/models`);
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(res.headers.get('x-api-key')).toBeNull();
    expect(res.headers.get('authorization')).toBeNull();
    expect(res.headers.get('x-goog-api-key')).toBeNull();
    expect(res.headers.get('x-ratelimit-remaining-requests')).toBe('99');
    expect(res.headers.get('openai-processing-ms')).toBe('12');
    expect(res.headers.get('x-upstream-request-id')).toBe('req_abc');
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.upstream_request_id).toBe('req_abc');
  });

  test('redirects are returned, never followed with credentials', async () => {
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/redirect'
        ? new Response(null, { status: 307, headers: { location: `${mock.url}/v1/elsewhere` } })
        : undefined,
    );
    const res = await fetch(`${gw.url}/openai_passthrough/v1/redirect`, { redirect: 'manual' });
    expect(res.status).toBe(307);
    expect(mock.requests.map((r) => r.path)).toEqual(['/v1/redirect']);
  });
});
