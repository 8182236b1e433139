/**
 * Failure modes between the gateway and the upstream: unreachable, slow, aborted,
 * idle streams, retries across keys, direct-key mode.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import OpenAI from 'openai';
import type { Pipeline } from '../src/core/pipeline.ts';
import type { RequestRecord } from '../src/core/request.ts';
import { Completion } from '../src/proxy/completion.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { chatStream, MockUpstream } from './support/mock-upstream.ts';
import { chunkedStream } from './support/raw-http.ts';

const KEY_A = fakeKey('sk-a');
const KEY_B = fakeKey('sk-b');
let mock: MockUpstream;
let gw: TestGateway;

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response() });
  const port = s.port!;
  await s.stop(true);
  return port;
}

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: {
      openai: {
        keys: [
          { name: 'a', value: KEY_A, weight: 1 },
          { name: 'b', value: KEY_B, weight: 1 },
        ],
        network_config: {
          base_url: mock.url,
          max_retries: 2,
          retry_backoff_initial: 20,
          retry_backoff_max: 100,
          default_request_timeout_in_seconds: 1,
          stream_idle_timeout_in_seconds: 1,
        },
      },
      // No keys: direct-key mode.
      anthropic: { network_config: { base_url: mock.url } },
      gemini: {
        keys: [{ name: 'g', value: fakeKey('gk') }],
        network_config: { base_url: `http://127.0.0.1:${await deadPort()}` },
      },
    },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

const post = (path: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal) =>
  fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal,
  });

const lineFor = (res: Response) => gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));

describe('upstream failures', () => {
  test('unreachable upstream: 502 JSON, logged as upstream_error', async () => {
    const res = await post('/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent', { contents: [] });
    expect(res.status).toBe(502);
    const body = await res.json();
    expect(body.error.type).toBe('upstream_unreachable');
    const line = await lineFor(res);
    expect(line).toMatchObject({ status: 502, outcome: 'upstream_error', provider: 'gemini' });
  });

  test('no response headers within the timeout: 504 JSON (after retries)', async () => {
    mock.respondWith(async () => {
      await Bun.sleep(1500);
      return Response.json({ late: true });
    });
    const started = performance.now();
    const res = await post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini' });
    expect(res.status).toBe(504);
    expect((await res.json()).error.type).toBe('upstream_timeout');
    expect(res.headers.get('x-skybridge-attempts')).toBe('3');
    expect(performance.now() - started).toBeGreaterThan(2900);
  });

  test('client abort before the upstream answered aborts the upstream call', async () => {
    let upstreamAborted = false;
    mock.respondWith(async (req) => {
      req.signal.addEventListener('abort', () => (upstreamAborted = true));
      await Bun.sleep(800);
      return Response.json({});
    });
    const ac = new AbortController();
    const p = post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini' }, {}, ac.signal).catch((e) => e);
    await Bun.sleep(150);
    ac.abort();
    expect(await p).toBeInstanceOf(Error);
    for (let i = 0; i < 40 && !upstreamAborted; i++) await Bun.sleep(25);
    expect(upstreamAborted).toBe(true);
    const line = await gw.waitForLine((l) => l.outcome === 'client_aborted' && l.status === 499 && !l.stream);
    expect(line.error.type).toBe('client_aborted');
  });

  test('client abort mid-stream cancels the upstream stream; logged as client_aborted with partial usage', async () => {
    const abortedBefore = mock.abortedStreams;
    mock.respondWith((req, rec) =>
      mock.sse(
        req,
        [
          ...chatStream(rec.json.model),
          ...Array.from({ length: 50 }, () => [undefined, { choices: [] }] as [undefined, unknown]),
        ],
        100,
      ),
    );
    const ac = new AbortController();
    const res = await post(
      '/openai_passthrough/v1/chat/completions',
      { model: 'gpt-4o-mini', stream: true },
      {},
      ac.signal,
    );
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    for (let i = 0; i < 40 && mock.abortedStreams === abortedBefore; i++) await Bun.sleep(25);
    expect(mock.abortedStreams).toBe(abortedBefore + 1);
    const line = await lineFor(res);
    expect(line.outcome).toBe('client_aborted');
    expect(line.status).toBe(499);
    // The client's signal aborts the upstream read before the stream's cancel() runs:
    // still the client leaving, not the upstream breaking.
    expect(line.error).toEqual({ type: 'client_aborted', message: 'client closed the connection mid-stream' });
    expect(line.stream).toBe(true);
    expect(line.end_reason).toBe('client_abort');
  });

  test('a stream that goes idle longer than the limit is ended', async () => {
    mock.respondWith((req) =>
      mock.sse(
        req,
        [
          [undefined, { choices: [] }],
          [undefined, { choices: [] }],
        ],
        2500,
      ),
    );
    const res = await post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini', stream: true });
    const text = await res.text().catch(() => 'errored');
    expect(text.length).toBeGreaterThan(0);
    const line = await lineFor(res);
    expect(line.outcome).toBe('stream_idle_timeout');
    expect(line.error.type).toBe('stream_idle_timeout');
    expect(line.end_reason).toBe('idle_timeout');
    expect(line.usage_status).toBe('partial');
  });
});

describe('many clients leaving at once', () => {
  test('every upstream call is abandoned, every request logged once as client_aborted (499), none left in flight', async () => {
    const N = 120;
    const tag = `leave-${Date.now()}`; // the model name: tells these requests' log lines apart
    const aborted = { stream: 0, waiting: 0 };
    mock.respondWith((req, rec) => {
      if (rec.json?.model !== tag) return undefined;
      const kind = rec.json.stream ? 'stream' : 'waiting';
      req.signal.addEventListener('abort', () => aborted[kind]++);
      if (kind === 'stream')
        return mock.sse(
          req,
          Array.from({ length: 100 }, () => [undefined, { choices: [] }] as [undefined, unknown]),
          50,
        );
      return Bun.sleep(10_000).then(() => Response.json({ late: true }));
    });
    const port = Number(new URL(gw.url).port);
    const sockets = await Promise.all(
      Array.from({ length: N }, (_, i) => {
        const body = JSON.stringify({ model: tag, stream: i % 2 === 1 });
        const head = `POST /openai_passthrough/v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
        let got = 0;
        return Bun.connect({
          hostname: '127.0.0.1',
          port,
          socket: { open: (s) => void s.write(head + body), data: (_s, d) => void (got += d.byteLength), close() {} },
        }).then((s) => ({ s, stream: i % 2 === 1, got: () => got }));
      }),
    );
    // Every request upstream, every stream under way at the client.
    for (let i = 0; i < 200 && !(mock.requests.length >= N && sockets.every((c) => !c.stream || c.got() > 0)); i++)
      await Bun.sleep(25);
    expect(mock.requests.length).toBe(N);
    for (const c of sockets) c.s.end();
    for (let i = 0; i < 200 && aborted.stream + aborted.waiting < N; i++) await Bun.sleep(25);
    expect(aborted).toEqual({ stream: N / 2, waiting: N / 2 });
    for (let i = 0; i < 200 && gw.gw.state.inflight > 0; i++) await Bun.sleep(10);
    expect(gw.gw.state.inflight).toBe(0);
    const mine = await gw.waitForLines(0).then((lines) => lines.filter((l) => l.model === tag));
    expect(mine).toHaveLength(N);
    for (const l of mine)
      expect([l.outcome, l.status, l.error.type]).toEqual(['client_aborted', 499, 'client_aborted']);
    expect(new Set(mine.map((l) => l.request_id)).size).toBe(N);
  });

  test('a client leaving is told apart from a shutdown cut by the state when it left, not when the record is completed', () => {
    const completed: RequestRecord[] = [];
    const pipeline = { onComplete: (r: RequestRecord) => void completed.push(r) } as unknown as Pipeline;
    const record = () => ({ request_id: 'r', status: 0, outcome: 'ok', retries: [] }) as unknown as RequestRecord;
    const state = { cutting: false, inflight: 0, openStreams: 0 };
    const left = new Completion(record(), pipeline, state);
    left.clientLeft();
    state.cutting = true; // the shutdown cut starts before the deferred bookkeeping runs
    left.finish(200, 'client_aborted', { type: 'client_aborted', message: 'gone' });
    const cut = new Completion(record(), pipeline, state);
    cut.clientLeft();
    cut.finish(200, 'client_aborted', { type: 'client_aborted', message: 'gone' });
    expect(completed.map((r) => [r.outcome, r.status, r.error?.type])).toEqual([
      ['client_aborted', 499, 'client_aborted'],
      ['gateway_error', 200, 'shutdown'],
    ]);
    expect(state.inflight).toBe(0);
  });
});

describe('retries', () => {
  test('429 on one key, 200 on the other: the client never notices', async () => {
    mock.respondWith((_req, rec) =>
      rec.headers.authorization === `Bearer ${KEY_A}`
        ? Response.json({ error: { message: 'rate limited' } }, { status: 429 })
        : undefined,
    );
    const client = new OpenAI({ baseURL: `${gw.url}/openai_passthrough/v1`, apiKey: 'dummy', maxRetries: 0 });
    // The first key is a weighted random choice, so keep going until key a was tried
    // first at least twice (bounded: 40 requests all drawing b first has p = 2^-40).
    const ids: string[] = [];
    let retried: any[] = [];
    for (let i = 0; i < 40 && (i < 6 || retried.length < 2); i++) {
      const res = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] }).withResponse();
      expect(res.response.status).toBe(200);
      expect(mock.last.headers.authorization).toBe(`Bearer ${KEY_B}`);
      ids.push(res.response.headers.get('x-request-id')!);
      const mine = (await gw.waitForLines(0)).filter((l) => ids.includes(l.request_id));
      retried = mine.filter((l) => l.attempts === 2);
    }
    expect(retried.length).toBeGreaterThanOrEqual(2);
    for (const l of retried)
      expect(l).toMatchObject({ key: 'b', status: 200, retries: [{ attempt: 1, key: 'a', reason: '429' }] });
  });

  test('Retry-After is honoured', async () => {
    let n = 0;
    mock.respondWith(() =>
      n++ === 0 ? new Response('{}', { status: 503, headers: { 'retry-after': '1' } }) : undefined,
    );
    const started = performance.now();
    const res = await post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini' });
    expect(res.status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(990);
    expect(res.headers.get('x-skybridge-attempts')).toBe('2');
  });

  test('exhausted retries return the last upstream answer as it is', async () => {
    mock.respondWith(() =>
      Response.json({ error: { message: 'overloaded', n: mock.requests.length } }, { status: 503 }),
    );
    const res = await post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini' });
    expect(res.status).toBe(503);
    expect((await res.json()).error.n).toBe(3);
    expect(mock.requests.length).toBe(3);
  });

  test('4xx other than 429 is not retried', async () => {
    mock.respondWith(() => Response.json({ error: 'bad' }, { status: 400 }));
    const res = await post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini' });
    expect(res.status).toBe(400);
    expect(mock.requests.length).toBe(1);
  });

  test('no retry once the stream started: an upstream that breaks mid-stream ends the client stream', async () => {
    mock.respondWith(() => {
      const enc = new TextEncoder();
      return new Response(
        new ReadableStream({
          async start(c) {
            c.enqueue(enc.encode('data: {"choices":[]}\n\n'));
            await Bun.sleep(50);
            c.error(new Error('upstream died'));
          },
        }),
        { headers: { 'content-type': 'text/event-stream' } },
      );
    });
    const res = await post('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini', stream: true });
    expect(res.status).toBe(200);
    await res.text().catch(() => '');
    expect(mock.requests.length).toBe(1);
  });

  test('a small chunked body (no declared length) is held and replayed on retry', async () => {
    let calls = 0;
    mock.respondWith(() =>
      ++calls === 1 ? Response.json({ error: { message: 'slow down' } }, { status: 429 }) : undefined,
    );
    const text = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'again' }] });
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chunkedStream(text),
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(200);
    expect(mock.requests).toHaveLength(2);
    for (const r of mock.requests) expect(new TextDecoder().decode(r.body)).toBe(text);
    expect(res.headers.get('x-skybridge-attempts')).toBe('2');
  });

  test('a body too large to hold goes once, without retries', async () => {
    mock.respondWith(() => new Response('{}', { status: 503 }));
    const res = await fetch(`${gw.url}/openai_passthrough/v1/files`, {
      method: 'POST',
      body: new Uint8Array(9 * 1024 * 1024),
    });
    expect(res.status).toBe(503);
    expect(mock.requests.length).toBe(1);
  });
});

describe('direct keys', () => {
  test("a provider without keys forwards the client's own credential unchanged", async () => {
    const res = await post(
      '/anthropic_passthrough/v1/messages',
      { model: 'claude-x', max_tokens: 1, messages: [] },
      { 'x-api-key': 'client-own-key' },
    );
    expect(res.status).toBe(200);
    expect(mock.last.headers['x-api-key']).toBe('client-own-key');
    expect((await lineFor(res)).key).toBe('direct');
  });

  test('direct_keys: false refuses with 401', async () => {
    const g2 = await startGateway({
      direct_keys: false,
      providers: { anthropic: { network_config: { base_url: mock.url } } },
    });
    try {
      const res = await fetch(`${g2.url}/anthropic_passthrough/v1/messages`, {
        method: 'POST',
        headers: { 'x-api-key': 'client-own-key', 'content-type': 'application/json' },
        body: '{}',
      });
      expect(res.status).toBe(401);
      expect((await res.json()).error.message).toContain('direct_keys');
      expect(mock.requests.length).toBe(0);
    } finally {
      await g2.stop();
    }
  });
});

describe('a rate-limited key rests', () => {
  test('429 with Retry-After: later requests use the other key until then, then the first again', async () => {
    const MAIN = fakeKey('sk-main');
    const BACKUP = fakeKey('sk-backup');
    const g2 = await startGateway({
      providers: {
        openai: {
          keys: [
            { name: 'main', value: MAIN, weight: 1 },
            { name: 'backup', value: BACKUP, weight: 0 }, // used only while main rests
          ],
          network_config: { base_url: mock.url, max_retries: 0 },
        },
      },
    });
    try {
      let limited = false;
      mock.respondWith((_req, rec) => {
        if (limited || rec.headers.authorization !== `Bearer ${MAIN}`) return undefined;
        limited = true;
        return Response.json({ error: { message: 'rate limited' } }, { status: 429, headers: { 'retry-after': '2' } });
      });
      const client = new OpenAI({ baseURL: `${g2.url}/openai_passthrough/v1`, apiKey: 'dummy', maxRetries: 0 });
      const chat = () => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] });
      const err = await chat().catch((e) => e);
      expect(err).toBeInstanceOf(OpenAI.RateLimitError);
      const restedAt = Date.now();
      for (let i = 0; i < 5; i++) {
        await chat();
        expect(mock.last.headers.authorization).toBe(`Bearer ${BACKUP}`);
      }
      expect(Date.now() - restedAt).toBeLessThan(1500);
      const resting = async () =>
        /^skybridge_keys_resting\{provider="openai"\} (\d+)$/m.exec(
          await (await fetch(`${g2.url}/metrics`)).text(),
        )?.[1];
      expect(await resting()).toBe('1');
      await Bun.sleep(2100 - (Date.now() - restedAt));
      expect(await resting()).toBe('0');
      await chat();
      expect(mock.last.headers.authorization).toBe(`Bearer ${MAIN}`);
      const keys = (await g2.waitForLines(7)).map((l) => `${l.key}:${l.status}`);
      expect(keys).toEqual([
        'main:429',
        'backup:200',
        'backup:200',
        'backup:200',
        'backup:200',
        'backup:200',
        'main:200',
      ]);
    } finally {
      await g2.stop();
    }
  });

  test('429 without Retry-After: no rest (the key is drawn as usual)', async () => {
    const MAIN = fakeKey('sk-main');
    const g2 = await startGateway({
      providers: {
        openai: {
          keys: [
            { name: 'main', value: MAIN, weight: 1 },
            { name: 'backup', value: fakeKey(), weight: 0 },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
    try {
      let n = 0;
      mock.respondWith(() =>
        n++ === 0 ? Response.json({ error: { message: 'rate limited' } }, { status: 429 }) : undefined,
      );
      const first = await fetch(`${g2.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"model":"gpt-4o"}',
      });
      expect(first.status).toBe(429);
      const next = await fetch(`${g2.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"model":"gpt-4o"}',
      });
      expect(next.status).toBe(200);
      expect(mock.last.headers.authorization).toBe(`Bearer ${MAIN}`);
    } finally {
      await g2.stop();
    }
  });
});

describe('weighted key choice', () => {
  test('keys are picked by weight among those allowing the model', async () => {
    const g2 = await startGateway({
      providers: {
        openai: {
          keys: [
            { name: 'heavy', value: fakeKey(), weight: 0.8 },
            { name: 'light', value: fakeKey(), weight: 0.2 },
            { name: 'mini-only', value: fakeKey(), weight: 100, models: ['gpt-4o-mini'] },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
    try {
      const counts: Record<string, number> = {};
      for (let i = 0; i < 300; i++) {
        const res = await fetch(`${g2.url}/openai_passthrough/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"model":"gpt-4o"}',
        });
        await res.arrayBuffer();
      }
      for (const l of await g2.waitForLines(300)) counts[l.key] = (counts[l.key] ?? 0) + 1;
      expect(counts['mini-only']).toBeUndefined();
      expect(counts.heavy! + counts.light!).toBe(300);
      expect(counts.heavy!).toBeGreaterThan(190);
      expect(counts.light!).toBeGreaterThan(25);
    } finally {
      await g2.stop();
    }
  });
});
