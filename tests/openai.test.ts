/**
 * The seed document's OpenAI examples, run as written (official SDK, dummy key, base URL
 * at the gateway; the curl example as raw fetch) against a recording mock upstream.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import OpenAI from 'openai';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { CHAT_STREAM_TEXT, MOCK_USAGE, MockUpstream } from './support/mock-upstream.ts';

const GW_KEY = fakeKey();
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: {
      openai: {
        keys: [{ name: 'main', value: GW_KEY, models: ['*'] }],
        network_config: { base_url: mock.url, extra_headers: { 'x-team': 'research' } },
      },
    },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

function client() {
  return new OpenAI({ baseURL: `${gw.url}/openai_passthrough/v1`, apiKey: 'dummy-key' });
}

describe('OpenAI passthrough with the official SDK', () => {
  test('chat.completions.create: gateway key upstream, dummy key dropped, body bytes identical', async () => {
    const response = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hello from passthrough' }],
    });
    expect(response.choices[0]!.message.content).toBe('hello from mock');
    const got = mock.last;
    expect(got.method).toBe('POST');
    expect(got.path).toBe('/v1/chat/completions');
    expect(got.headers.authorization).toBe(`Bearer ${GW_KEY}`);
    expect(JSON.stringify(got.headers)).not.toContain('dummy-key');
    expect(got.headers['x-team']).toBe('research');
    expect(got.headers.host).not.toContain(new URL(gw.url).port);
    expect(got.json).toEqual({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello from passthrough' }] });
    // SDK headers pass through untouched.
    expect(got.headers['x-stainless-lang']).toBe('js');
  });

  test('streamed chat: every chunk arrives in order, with usage', async () => {
    const stream = await client().chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hello from passthrough' }],
    });
    const parts: string[] = [];
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      const t = chunk.choices[0]?.delta?.content;
      if (t) parts.push(t);
      if (chunk.usage) usage = chunk.usage;
    }
    expect(parts).toEqual(CHAT_STREAM_TEXT);
    expect(usage?.total_tokens).toBe(MOCK_USAGE.input + MOCK_USAGE.output);
    expect(mock.last.headers.authorization).toBe(`Bearer ${GW_KEY}`);
  });

  test('Responses API, plain and streamed', async () => {
    const c = client();
    const r = await c.responses.create({ model: 'gpt-4.1', input: 'hello from passthrough' });
    expect(r.output_text).toBe('hello from mock');
    expect(mock.last.path).toBe('/v1/responses');
    const stream = await c.responses.create({ model: 'gpt-4.1', input: 'hello', stream: true });
    const types: string[] = [];
    for await (const ev of stream) types.push(ev.type);
    expect(types).toEqual(['response.created', 'response.output_text.delta', 'response.completed']);
  });

  test('GET with query string: models.list keeps the query', async () => {
    const res = await fetch(`${gw.url}/openai_passthrough/v1/models?limit=2&after=x%20y`, {
      headers: { authorization: 'Bearer dummy-key' },
    });
    expect(res.status).toBe(200);
    expect(mock.last.method).toBe('GET');
    expect(mock.last.path).toBe('/v1/models');
    expect(mock.last.query).toBe('limit=2&after=x%20y');
  });

  test('a key= query parameter is a client credential too: dropped', async () => {
    await fetch(`${gw.url}/openai_passthrough/v1/models?key=client-secret&limit=2`);
    expect(mock.last.query).toBe('limit=2');
  });

  test("seed curl example as raw fetch: the client's key is replaced by the gateway's", async () => {
    const body = '{\n"model": "gpt-4o-mini",\n"messages": [{"role":"user","content":"hello from passthrough"}]\n}';
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-your-openai-key' },
      body,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect((await res.json()).choices[0].message.content).toBe('hello from mock');
    expect(new TextDecoder().decode(mock.last.body)).toBe(body);
    expect(mock.last.headers.authorization).toBe(`Bearer ${GW_KEY}`);
  });

  test('all methods are forwarded, bodies of any type stream through intact', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      const res = await fetch(`${gw.url}/openai_passthrough/v1/things/1`, {
        method,
        headers: { 'content-type': 'application/json' },
        body: method === 'DELETE' ? undefined : '{"a":1}',
      });
      expect(res.status).toBe(200);
      expect(mock.last.method).toBe(method);
    }
    const head = await fetch(`${gw.url}/openai_passthrough/v1/models`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(mock.last.method).toBe('HEAD');

    const binary = crypto.getRandomValues(new Uint8Array(300_000));
    const form = new FormData();
    form.append('purpose', 'fine-tune');
    form.append('file', new Blob([binary]), 'data.jsonl');
    const up = await fetch(`${gw.url}/openai_passthrough/v1/files`, { method: 'POST', body: form });
    expect(up.status).toBe(200);
    const received = mock.last;
    expect(received.headers['content-type']).toStartWith('multipart/form-data; boundary=');
    const parsed = await new Response(received.body, {
      headers: { 'content-type': received.headers['content-type']! },
    }).formData();
    const file = parsed.get('file') as File;
    expect(new Uint8Array(await file.arrayBuffer())).toEqual(binary);
  });

  test('binary response bytes and content-encoding are forwarded as they are', async () => {
    const payload = new Uint8Array(256).map((_, i) => i);
    const gz = Bun.gzipSync(JSON.stringify({ ok: 'ünïcødé ✓' }));
    mock.respondWith((_req, rec) => {
      if (rec.path === '/v1/audio/speech') return new Response(payload, { headers: { 'content-type': 'audio/mpeg' } });
      if (rec.path === '/v1/gz')
        return new Response(gz, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
      return undefined;
    });
    const audio = await fetch(`${gw.url}/openai_passthrough/v1/audio/speech`, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect(new Uint8Array(await audio.arrayBuffer())).toEqual(payload);
    const res = await fetch(`${gw.url}/openai_passthrough/v1/gz`, { decompress: false } as RequestInit);
    expect(res.headers.get('content-encoding')).toBe('gzip');
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(new Uint8Array(gz));
  });
});
