/**
 * The request log explorer: the SQLite index beside the log (batched writes, retention,
 * rebuild and top-up from the NDJSON), the query API (every filter, cursor pagination,
 * one record, stats), the live stream, the auth rules, and the page in headless
 * Chromium seeing requests arrive live.
 */
import { Database } from 'bun:sqlite';
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import type { RequestRecord } from '../src/core/request.ts';
import { createApp } from '../src/http/app.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MockUpstream } from './support/mock-upstream.ts';
import { rawRequest } from './support/raw-http.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;

let seq = 0;
/** A complete request record, as the flow hands it to onComplete. */
function record(over: Partial<RequestRecord> & { ago?: number } = {}): RequestRecord {
  const { ago = 0, ...rest } = over;
  seq++;
  return {
    time: new Date(Date.now() - ago).toISOString(),
    request_id: `req-${seq}-${crypto.randomUUID()}`,
    endpoint: 'openai',
    provider: 'openai',
    method: 'POST',
    path: '/v1/chat/completions',
    status: 200,
    stream: false,
    model: 'gpt-4o-mini',
    key: 'main',
    attempts: 1,
    latency_ms: 100,
    ttfb_ms: 50,
    bytes_in: 10,
    bytes_out: 20,
    usage: { input_tokens: 10, output_tokens: 5, total_tokens: 15 },
    usage_status: 'complete',
    usage_note: undefined,
    output_tokens_estimated: undefined,
    cost_usd: undefined,
    price_source: undefined,
    end_reason: undefined,
    gw_us: undefined,
    error: undefined,
    virtual_key: undefined,
    client_ip: '127.0.0.1',
    outcome: 'ok',
    upstream_request_id: undefined,
    retries: [],
    ...rest,
  };
}

function seed(t: TestGateway, records: RequestRecord[]): RequestRecord[] {
  const ex = t.gw.plugins.explorer;
  for (const r of records) ex.onComplete(r);
  ex.flush();
  return records;
}

async function getJson(
  t: TestGateway,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: any; res: Response }> {
  const res = await fetch(t.url + path, { headers });
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body, res };
}

/** Like toMatchObject, with `*_ms` numbers matched within 1% (percentiles come from histogram bins). */
function expectStats(got: Record<string, unknown>, want: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(want)) {
    if (k.endsWith('_ms') && typeof v === 'number') {
      expect({ [k]: Math.abs((got[k] as number) - v) <= v * 0.01 ? v : got[k] }).toEqual({ [k]: v });
    } else {
      expect({ [k]: got[k] }).toEqual({ [k]: v });
    }
  }
}

const ids = (body: any): string[] => body.data.map((r: any) => r.request_id);

/** Reads an SSE response until `until` matches the text received so far. */
async function readSse(res: Response, until: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + timeoutMs;
  try {
    while (!until(text)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`SSE: condition not met in time; got ${JSON.stringify(text.slice(0, 500))}`);
      const chunk = await Promise.race([reader.read(), Bun.sleep(left).then(() => null)]);
      if (!chunk) continue;
      if (chunk.done) break;
      text += decoder.decode(chunk.value, { stream: true });
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return text;
}

const sseRecords = (text: string): any[] =>
  text
    .split('\n\n')
    .filter((b) => b.startsWith('event: request\n'))
    .map((b) => JSON.parse(b.slice(b.indexOf('data: ') + 6)));

// ---------------------------------------------------------------------------------

describe('query API', () => {
  let t: TestGateway;
  let set: Record<string, RequestRecord>;

  beforeAll(async () => {
    t = await startGateway({});
    const r = {
      a: record({ ago: 10 * MIN, virtual_key: 'team-a', latency_ms: 100, cost_usd: 0.0012, price_source: 'catalog' }),
      b: record({
        ago: 20 * MIN,
        provider: 'anthropic',
        endpoint: 'anthropic',
        model: 'claude-sonnet-4',
        path: '/v1/messages',
        status: 429,
        virtual_key: 'team-b',
        latency_ms: 200,
      }),
      c: record({
        ago: 30 * MIN,
        model: 'gpt-4o',
        status: 500,
        outcome: 'upstream_error',
        latency_ms: 300,
        usage: { input_tokens: 100, output_tokens: 50 },
        cost_usd: 0.5,
        price_source: 'config',
      }),
      d: record({
        ago: 40 * MIN,
        provider: 'gemini',
        endpoint: 'genai',
        model: 'gemini-2.5-flash',
        path: '/v1beta/models/gemini-2.5-flash:generateContent',
        status: 307,
        latency_ms: 400,
      }),
      e: record({
        ago: 2 * HOUR,
        provider: 'azure',
        endpoint: 'azure',
        model: 'gpt-4o',
        path: '/openai/deployments/gpt-4o/chat/completions',
        status: 499,
        outcome: 'client_aborted',
        latency_ms: 500,
      }),
      f: record({
        ago: 3 * HOUR,
        path: '/v1/embeddings',
        model: undefined,
        status: 400,
        outcome: 'rejected',
        virtual_key: 'team-a',
        usage: undefined,
        latency_ms: 600,
      }),
    };
    set = r;
    seed(t, Object.values(r));
  });
  afterAll(() => t.stop());

  const expectIds = async (query: string, keys: string[]) => {
    const { status, body } = await getJson(t, `/api/logs?${query}`);
    expect(status).toBe(200);
    expect(ids(body)).toEqual(keys.map((k) => set[k]!.request_id));
  };

  test('no filter: everything, newest first', () => expectIds('', ['a', 'b', 'c', 'd', 'e', 'f']));
  test('provider', () => expectIds('provider=openai', ['a', 'c', 'f']));
  test('model', () => expectIds('model=gpt-4o', ['c', 'e']));
  test('status class', async () => {
    await expectIds('status=2xx', ['a']);
    await expectIds('status=3xx', ['d']);
    await expectIds('status=4xx', ['b', 'e', 'f']);
    await expectIds('status=5xx', ['c']);
  });
  test('exact status code', () => expectIds('status=429', ['b']));
  test('virtual_key', () => expectIds('virtual_key=team-a', ['a', 'f']));
  test('outcome', async () => {
    await expectIds('outcome=client_aborted', ['e']);
    await expectIds('outcome=ok', ['a', 'b', 'd']);
  });
  test('q: substring of the path', async () => {
    await expectIds('q=chat%2Fcompletions', ['a', 'c', 'e']);
    await expectIds('q=%3AgenerateContent', ['d']);
    await expectIds('q=nothing-like-this', []);
  });
  test('time range', async () => {
    const iso = (ago: number) => encodeURIComponent(new Date(Date.now() - ago).toISOString());
    await expectIds(`from=${iso(HOUR)}`, ['a', 'b', 'c', 'd']);
    await expectIds(`to=${iso(HOUR)}`, ['e', 'f']);
    await expectIds(`from=${iso(35 * MIN)}&to=${iso(15 * MIN)}`, ['b', 'c']);
  });
  test('filters combine', () => expectIds(`provider=openai&status=4xx&virtual_key=team-a`, ['f']));

  test('one record by id; unknown id is a JSON 404', async () => {
    const { status, body } = await getJson(t, `/api/logs/${set.b!.request_id}`);
    expect(status).toBe(200);
    expect(body.data).toMatchObject({
      request_id: set.b!.request_id,
      provider: 'anthropic',
      status: 429,
      virtual_key: 'team-b',
      path: '/v1/messages',
    });
    expect(body.data.retries).toBeUndefined();
    const missing = await getJson(t, '/api/logs/no-such-request');
    expect(missing.status).toBe(404);
    expect(missing.body.error.type).toBe('not_found');
  });

  test('bad parameters are JSON 400s naming the problem', async () => {
    const bad: Array<[string, RegExp]> = [
      ['limit=0', /limit/],
      ['limit=501', /limit/],
      ['limit=ten', /limit/],
      ['cursor=!!', /cursor/],
      [`cursor=${Buffer.from('x.y').toString('base64url')}`, /cursor/],
      ['from=yesterday', /from/],
      ['to=2026-13-45T99:00:00Z', /to/],
      [`from=${new Date().toISOString()}&to=2020-01-01T00:00:00Z`, /after/],
      ['provider=nonesuch', /provider/],
      ['status=6xx', /status/],
      ['status=20', /status/],
      ['outcome=great', /outcome/],
      ['model=', /model/],
      ['sort=asc', /unknown parameter "sort"/],
      ['provider=openai&provider=azure', /more than once/],
    ];
    for (const [query, message] of bad) {
      const { status, body, res } = await getJson(t, `/api/logs?${query}`);
      expect({ query, status }).toEqual({ query, status: 400 });
      expect(res.headers.get('content-type')).toContain('application/json');
      expect(body.error.type).toBe('invalid_request');
      expect(body.error.message).toMatch(message);
    }
    for (const query of ['window=5y', 'window=32d', 'window=1h&from=2026-01-01T00:00:00Z', 'limit=5']) {
      const { status, body } = await getJson(t, `/api/stats?${query}`);
      expect({ query, status }).toEqual({ query, status: 400 });
      expect(body.error.type).toBe('invalid_request');
    }
  });

  test('stats: totals, errors, tokens, p50/p95 by provider and model, a series', async () => {
    const { status, body } = await getJson(t, '/api/stats?window=1h');
    expect(status).toBe(200);
    expect(body.window).toBe('1h');
    // a, b, c, d are within the hour; b (429) and c (500, upstream_error) are errors.
    // Percentiles come from 2%-step histogram bins: within 1% of the exact value.
    expectStats(body.totals, {
      requests: 4,
      errors: 2,
      input_tokens: 130,
      output_tokens: 65,
      cost_usd: 0.5012,
      p50_ms: 200,
      p95_ms: 400,
    });
    const openai = body.by_provider.find((p: any) => p.provider === 'openai');
    expectStats(openai, {
      provider: 'openai',
      requests: 2,
      errors: 1,
      input_tokens: 110,
      output_tokens: 55,
      cost_usd: 0.5012,
      p50_ms: 100,
      p95_ms: 300,
    });
    // Unpriced requests sum to no cost, not to $0.
    expectStats(
      body.by_model.find((m: any) => m.model === 'claude-sonnet-4'),
      { provider: 'anthropic', requests: 1, errors: 1, cost_usd: null, p50_ms: 200 },
    );
    expect(body.series.reduce((n: number, s: any) => n + (s.cost_usd ?? 0), 0)).toBeCloseTo(0.5012, 9);
    expect(body.bucket_seconds).toBe(60);
    expect(body.series.length).toBeGreaterThanOrEqual(60);
    expect(body.series.reduce((n: number, s: any) => n + s.requests, 0)).toBe(4);
    expect(body.index.rows).toBe(6);

    const day = (await getJson(t, '/api/stats?window=24h&provider=openai')).body;
    expectStats(day.totals, { requests: 3, errors: 2, p50_ms: 300, p95_ms: 600 });
    const range = (
      await getJson(
        t,
        `/api/stats?from=${encodeURIComponent(new Date(Date.now() - 4 * HOUR).toISOString())}&status=4xx`,
      )
    ).body;
    expect(range.window).toBeNull();
    expect(range.totals.requests).toBe(3);
  });
});

describe('cursor pagination', () => {
  let t: TestGateway;
  let all: RequestRecord[];

  beforeAll(async () => {
    t = await startGateway({});
    // 25 requests; several share a timestamp, so the cursor must break ties.
    const base = Date.now() - 5 * MIN;
    all = Array.from({ length: 25 }, (_, i) =>
      record({
        time: new Date(base + Math.floor(i / 3) * 1000).toISOString(),
        provider: i % 2 ? 'openai' : 'anthropic',
      }),
    );
    seed(t, all);
  });
  afterAll(() => t.stop());

  test('pages of `limit`, newest first, each row once, null cursor at the end', async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const { status, body }: { status: number; body: any } = await getJson(
        t,
        `/api/logs?limit=10${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(status).toBe(200);
      expect(body.data.length).toBe(pages < 2 ? 10 : 5);
      seen.push(...ids(body));
      cursor = body.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(new Set(seen).size).toBe(25);
    // Newest first; within one timestamp, the later-inserted first.
    expect(seen).toEqual([...all].reverse().map((r) => r.request_id));
  });

  test('with a filter, and rows added meanwhile do not shift later pages', async () => {
    const first = (await getJson(t, '/api/logs?provider=openai&limit=5')).body;
    expect(first.data.every((r: any) => r.provider === 'openai')).toBe(true);
    seed(t, [record({ provider: 'openai' })]);
    const second = (await getJson(t, `/api/logs?provider=openai&limit=5&cursor=${first.next_cursor}`)).body;
    const third = (await getJson(t, `/api/logs?provider=openai&limit=5&cursor=${second.next_cursor}`)).body;
    const got = [...ids(first), ...ids(second), ...ids(third)];
    expect(got).toEqual(
      all
        .filter((r) => r.provider === 'openai')
        .reverse()
        .map((r) => r.request_id),
    );
    expect(third.next_cursor).toBeNull();
  });

  test('the default limit is 50 and 500 is accepted', async () => {
    expect((await getJson(t, '/api/logs')).body.data.length).toBe(26);
    expect((await getJson(t, '/api/logs?limit=500')).status).toBe(200);
  });
});

describe('live traffic, content and the stream', () => {
  let mock: MockUpstream;
  let t: TestGateway;
  const KEY = fakeKey();

  beforeAll(async () => {
    mock = new MockUpstream();
    t = await startGateway({
      logs: { content: true, content_max_bytes: 300 },
      providers: {
        openai: { keys: [{ name: 'oa', value: KEY }], network_config: { base_url: mock.url } },
        anthropic: { keys: [{ name: 'an', value: fakeKey('sk-ant') }], network_config: { base_url: mock.url } },
      },
    });
  });
  afterAll(async () => {
    await t.stop();
    await mock.stop();
  });

  test('a request through the gateway is indexed like its log line, bodies redacted and truncated', async () => {
    const res = await fetch(`${t.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: `my key is ${KEY}` }],
        api_key: 'sk-in-a-field',
        pad: 'x'.repeat(400),
      }),
    });
    await res.text();
    const id = res.headers.get('x-request-id')!;
    const line = await t.waitForLine((l) => l.request_id === id);
    await Bun.sleep(350);
    const { status, body } = await getJson(t, `/api/logs/${id}`);
    expect(status).toBe(200);
    const { log: _log, ...expected } = line;
    expect(body.data).toEqual(expected);
    expect(body.data.request_body).not.toContain(KEY);
    expect(body.data.request_body).toContain('[REDACTED]');
    expect(body.data.request_body).toContain('[truncated');
    expect(body.data.response_body).toContain('hello from mock');
    // The list leaves bodies out.
    const list = (await getJson(t, '/api/logs?limit=1')).body;
    expect(list.data[0].request_id).toBe(id);
    expect(list.data[0].request_body).toBeUndefined();
  });

  test('writes are batched off the request path: queued, then one transaction', async () => {
    const ex = t.gw.plugins.explorer;
    const before = ex.store!.rows;
    const recs = Array.from({ length: 10 }, () => record());
    for (const r of recs) ex.onComplete(r);
    expect(ex.store!.rows).toBe(before); // nothing written synchronously
    await Bun.sleep(450);
    expect(ex.store!.rows).toBe(before + 10);
    // A burst is written in chunks on the next ticks (the loop free between them), not after 200 ms.
    const burst = Array.from({ length: 600 }, () => record());
    for (const r of burst) ex.onComplete(r);
    expect(ex.store!.rows).toBe(before + 10);
    await new Promise((r) => setImmediate(r));
    expect(ex.store!.rows).toBe(before + 10 + 200);
    // Counted in event-loop turns, not milliseconds (CI machines are slow): one chunk a
    // turn; waiting for the 200 ms timer instead would take thousands of turns.
    let turns = 1;
    while (ex.store!.rows < before + 610 && turns < 20) {
      await new Promise((r) => setImmediate(r));
      turns++;
    }
    expect(ex.store!.rows).toBe(before + 610);
    expect(turns).toBeLessThanOrEqual(5);
  });

  test('the stream sends each completed request, filtered like the list', async () => {
    const all = await fetch(`${t.url}/api/logs/stream`);
    const anthropicOnly = await fetch(`${t.url}/api/logs/stream?provider=anthropic&status=2xx`);
    expect(all.headers.get('content-type')).toContain('text/event-stream');
    await Bun.sleep(50);
    const a = await fetch(`${t.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true }),
    });
    await a.text();
    const b = await fetch(`${t.url}/anthropic_passthrough/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'claude-sonnet-4-20250514', max_tokens: 10, messages: [] }),
    });
    await b.text();
    const aId = a.headers.get('x-request-id')!;
    const bId = b.headers.get('x-request-id')!;
    const allText = await readSse(all, (s) => s.includes(aId) && s.includes(bId));
    const got = sseRecords(allText);
    expect(got.find((r) => r.request_id === aId)).toMatchObject({
      provider: 'openai',
      stream: true,
      usage: { input_tokens: 11, output_tokens: 7 },
    });
    expect(got.find((r) => r.request_id === bId)).toMatchObject({
      provider: 'anthropic',
      model: 'claude-sonnet-4-20250514',
    });
    expect(got.every((r) => r.request_body === undefined)).toBe(true);
    const filtered = sseRecords(await readSse(anthropicOnly, (s) => s.includes(bId)));
    expect(filtered.map((r) => r.request_id)).toEqual([bId]);
    await Bun.sleep(50);
    expect(t.gw.plugins.explorer.liveSubscribers).toBe(0);
  });

  test('shutdown ends open streams at once instead of waiting out the grace period', async () => {
    const own = await startGateway({});
    const res = await fetch(`${own.url}/api/logs/stream`);
    const reader = res.body!.getReader();
    await reader.read();
    const started = performance.now();
    await own.gw.shutdown(5000);
    expect(performance.now() - started).toBeLessThan(2000);
    expect((await reader.read()).done).toBe(true);
  });

  test('a bad stream filter is a 400, not a stream', async () => {
    const { status, body } = await getJson(t, '/api/logs/stream?outcome=meh');
    expect(status).toBe(400);
    expect(body.error.type).toBe('invalid_request');
  });
});

describe('auth', () => {
  test('with explorer.admin_token: Bearer required (401 otherwise); the stream also takes ?token=', async () => {
    const token = fakeKey('adm');
    const t = await startGateway({ explorer: { admin_token: token } });
    try {
      for (const path of ['/api/logs', '/api/logs/x', '/api/stats']) {
        const none = await getJson(t, path);
        expect(none.status).toBe(401);
        expect(none.body.error.type).toBe('unauthorized');
        expect(none.res.headers.get('www-authenticate')).toContain('Bearer');
        expect((await getJson(t, path, { authorization: 'Bearer wrong-token' })).status).toBe(401);
        expect((await getJson(t, path, { authorization: `Basic ${btoa(`x:${token}`)}` })).status).toBe(401);
      }
      expect((await getJson(t, '/api/logs', { authorization: `Bearer ${token}` })).status).toBe(200);
      expect((await getJson(t, '/api/stats', { authorization: `bearer ${token}` })).status).toBe(200);
      // The query token is for EventSource only; elsewhere it does not authenticate.
      expect((await getJson(t, `/api/logs?token=${token}`)).status).toBe(401);
      expect((await getJson(t, '/api/logs/stream')).status).toBe(401);
      expect((await getJson(t, '/api/logs/stream?token=nope')).status).toBe(401);
      const ok = await fetch(`${t.url}/api/logs/stream?token=${encodeURIComponent(token)}`);
      expect(ok.status).toBe(200);
      await readSse(ok, (s) => s.includes(': connected'));
      // The page itself carries no data and is served to anyone; it asks for the token.
      expect((await fetch(`${t.url}/ui`)).status).toBe(200);
    } finally {
      await t.stop();
    }
  });

  test('without a token: loopback clients addressing a loopback host only (403 otherwise)', async () => {
    const t = await startGateway({});
    try {
      expect((await getJson(t, '/api/logs')).status).toBe(200);
      expect((await getJson(t, '/api/logs', { host: `localhost:${new URL(t.url).port}` })).status).toBe(200);
      // A loopback connection for another host name: a local reverse proxy or a DNS-rebinding page.
      const proxied = await getJson(t, '/api/logs', { host: 'explorer.example.com' });
      expect(proxied.status).toBe(403);
      expect(proxied.body.error.type).toBe('forbidden');
      // A request naming no host (HTTP/1.0, no Host header) cannot come from a browser page:
      // answered for a loopback client, not failed on its bare target.
      const http10 = await rawRequest(Number(new URL(t.url).port), 'GET', '/api/stats', {}, '', '1.0');
      expect(http10.status).toBe(200);
      expect(JSON.parse(http10.body)).toHaveProperty('totals');
      // A client whose address is not loopback (the app without a socket has none).
      const ex = t.gw.plugins.explorer;
      const app = createApp(
        t.gw.state,
        ex.routes().map((route) => ({ plugin: 'explorer', route })),
      );
      const remote = await app.handle(new Request('http://127.0.0.1/api/stats'));
      expect(remote.status).toBe(403);
      expect(((await remote.json()) as any).error.type).toBe('forbidden');
      expect(ex.authorize(new Request('http://127.0.0.1/api/logs'), '10.1.2.3', null)?.status).toBe(403);
      expect(ex.authorize(new Request('http://127.0.0.1/api/logs'), '::ffff:127.0.0.1', null)).toBeUndefined();
      expect(ex.authorize(new Request('http://[::1]:8080/api/logs'), '::1', null)).toBeUndefined();
    } finally {
      await t.stop();
    }
  });

  test('explorer.enabled: false, or not in plugins: the routes answer 404 and nothing is indexed', async () => {
    for (const config of [{ explorer: { enabled: false } }, { plugins: ['logging', 'metrics'] }]) {
      const t = await startGateway(config);
      try {
        for (const path of ['/api/logs', '/api/stats', '/api/logs/stream', '/ui'])
          expect((await getJson(t, path)).status).toBe(404);
        expect(t.gw.plugins.explorer.store).toBeUndefined();
        expect(existsSync(`${t.logFile}.index.sqlite`)).toBe(false);
      } finally {
        await t.stop();
      }
    }
  });
});

describe('index file: rebuild, top-up, retention', () => {
  test('checkpoints run on a thread of their own: rows reach the index file itself, not only its WAL, within seconds', async () => {
    const t = await startGateway({});
    try {
      const indexFile = `${t.logFile}.index.sqlite`;
      // 300 rows: ~100 pages of WAL, far below SQLite's automatic threshold (1000 pages),
      // so only the checkpointer thread can have copied them into the file.
      const records = seed(
        t,
        Array.from({ length: 300 }, () => record()),
      );
      const copy = join(mkdtempSync(join(tmpdir(), 'skybridge-index-copy-')), 'index.sqlite');
      let inFile = 0;
      const deadline = performance.now() + 5000;
      while (inFile < records.length && performance.now() < deadline) {
        await Bun.sleep(100);
        // The file alone, as a reader with no WAL would see it.
        writeFileSync(copy, await Bun.file(indexFile).bytes());
        rmSync(`${copy}-wal`, { force: true });
        const db = new Database(copy, { readonly: true });
        try {
          inFile = (db.query('SELECT count(*) AS n FROM requests').get() as { n: number }).n;
        } catch {
          inFile = 0; // not even the table has been checkpointed yet
        } finally {
          db.close();
        }
      }
      expect(inFile).toBe(records.length);
      expect((await getJson(t, '/api/stats')).body.totals.requests).toBe(records.length);
    } finally {
      await t.stop();
    }
  });

  test('the index is rebuilt from the NDJSON log when missing', async () => {
    const mock = new MockUpstream();
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-explorer-'));
    const logFile = join(dir, 'requests.ndjson');
    const config = {
      logs: { file: logFile },
      providers: { openai: { keys: [{ name: 'oa', value: fakeKey() }], network_config: { base_url: mock.url } } },
    };
    try {
      const first = await startGateway(config);
      const sent: string[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${first.url}/openai_passthrough/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: `model-${i}`, messages: [] }),
        });
        await res.text();
        sent.push(res.headers.get('x-request-id')!);
      }
      // (first.waitForLines reads the gateway's default log path, not this one.)
      for (
        let i = 0;
        i < 100 &&
        (
          await Bun.file(logFile)
            .text()
            .catch(() => '')
        ).split('\n').length < 6;
        i++
      ) {
        first.gw.plugins.logging.flush();
        await Bun.sleep(20);
      }
      await first.stop();
      const index = `${logFile}.index.sqlite`;
      expect(existsSync(index)).toBe(true);
      for (const suffix of ['', '-wal', '-shm']) rmSync(index + suffix, { force: true });

      const second = await startGateway(config);
      try {
        await second.gw.plugins.explorer.ready();
        expect(existsSync(index)).toBe(true);
        const body = (await getJson(second, '/api/logs')).body;
        expect(ids(body)).toEqual([...sent].reverse());
        expect(body.data[0]).toMatchObject({ model: 'model-4', provider: 'openai', usage: { input_tokens: 11 } });
        expect((await getJson(second, `/api/logs/${sent[0]}`)).body.data.model).toBe('model-0');
      } finally {
        await second.stop();
      }
    } finally {
      await mock.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('rebuild skips unreadable, non-request and expired lines; an unusable index file is replaced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-explorer-'));
    const logFile = join(dir, 'requests.ndjson');
    const line = (r: RequestRecord) => JSON.stringify({ log: 'request', ...r, retries: undefined });
    const fresh = record({ ago: HOUR, model: 'fresh' });
    const old = record({ ago: 9 * 24 * HOUR, model: 'expired' });
    const withBody = {
      ...record({ ago: 2 * HOUR, model: 'with-body' }),
      request_body: '{"q":1}',
      response_body: 'data: x',
    };
    writeFileSync(
      logFile,
      [
        line(old),
        '{not json',
        '{"log":"something else"}',
        line(withBody),
        '',
        line(fresh),
        '{"log":"request","time":"2026-',
      ].join('\n'),
    );
    writeFileSync(`${logFile}.index.sqlite`, 'this is not an sqlite file, just garbage bytes '.repeat(100));
    const t = await startGateway({ logs: { file: logFile } });
    try {
      await t.gw.plugins.explorer.ready();
      const body = (await getJson(t, '/api/logs')).body;
      expect(body.data.map((r: any) => r.model)).toEqual(['fresh', 'with-body']);
      const detail = (await getJson(t, `/api/logs/${withBody.request_id}`)).body.data;
      expect(detail.request_body).toBe('{"q":1}');
      expect(detail.response_body).toBe('data: x');
      expect(detail.log).toBeUndefined();
    } finally {
      await t.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an index of the schema before costs is rebuilt; log lines written before costs still load', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-explorer-'));
    const logFile = join(dir, 'requests.ndjson');
    // A line as written before cost_usd existed, and one with a cost.
    const before = { ...record({ ago: 20 * MIN, model: 'before-costs' }), retries: undefined } as Record<
      string,
      unknown
    >;
    for (const k of ['usage_status', 'cost_usd', 'price_source', 'end_reason', 'gw_us']) delete before[k];
    const priced = record({ ago: 10 * MIN, model: 'priced', cost_usd: 0.25, price_source: 'catalog' });
    writeFileSync(
      logFile,
      `${JSON.stringify({ log: 'request', ...before })}\n${JSON.stringify({ log: 'request', ...priced })}\n`,
    );
    const old = new Database(`${logFile}.index.sqlite`, { create: true });
    old.exec('CREATE TABLE requests (seq INTEGER PRIMARY KEY, request_id TEXT, ts INTEGER); PRAGMA user_version = 2');
    old.close();
    const t = await startGateway({ logs: { file: logFile } });
    try {
      await t.gw.plugins.explorer.ready();
      expect((await getJson(t, '/api/logs')).body.data.map((r: any) => r.model)).toEqual(['priced', 'before-costs']);
      const stats = (await getJson(t, '/api/stats?window=1h')).body;
      expect(stats.totals.requests).toBe(2);
      expect(stats.totals.cost_usd).toBe(0.25);
      expect(stats.by_model.find((m: any) => m.model === 'before-costs').cost_usd).toBeNull();
    } finally {
      await t.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an existing index is topped up from the end of the log (lines it missed)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-explorer-'));
    const logFile = join(dir, 'requests.ndjson');
    const known = record({ ago: 10 * MIN, model: 'known' });
    const first = await startGateway({ logs: { file: logFile } });
    seed(first, [known]);
    await first.stop();
    // Lines the index never saw (the gateway stopped before the flush): newer ones come in.
    const missed = record({ ago: 5 * MIN, model: 'missed' });
    const line = (r: RequestRecord) => `${JSON.stringify({ log: 'request', ...r })}\n`;
    writeFileSync(logFile, line(known) + line(missed), { flag: 'a' });
    const second = await startGateway({ logs: { file: logFile } });
    try {
      await second.gw.plugins.explorer.ready();
      expect((await getJson(second, '/api/logs')).body.data.map((r: any) => r.model)).toEqual(['missed', 'known']);
    } finally {
      await second.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('retention: at most retention_max_rows (the newest), none older than retention_days', async () => {
    const t = await startGateway({ explorer: { retention_max_rows: 5, retention_days: 1 } });
    try {
      const recs = seed(
        t,
        Array.from({ length: 8 }, (_, i) => record({ ago: (8 - i) * MIN })),
      );
      expect(t.gw.plugins.explorer.store!.rows).toBe(5);
      expect(ids((await getJson(t, '/api/logs')).body)).toEqual(
        recs
          .slice(3)
          .reverse()
          .map((r) => r.request_id),
      );
      seed(t, [record({ ago: 2 * 24 * HOUR, model: 'too-old' })]);
      await t.gw.plugins.explorer.prune();
      const models = (await getJson(t, '/api/logs')).body.data.map((r: any) => r.model);
      expect(models).not.toContain('too-old');
      expect(models.length).toBe(5);
    } finally {
      await t.stop();
    }
  });

  test('a reload that changes logs.file moves the index; one that disables the explorer closes it', async () => {
    const t = await startGateway({});
    try {
      seed(t, [record({ model: 'before' })]);
      const other = join(t.dir, 'moved', 'requests.ndjson');
      const base = JSON.parse(await Bun.file(t.configPath).text());
      writeFileSync(t.configPath, JSON.stringify({ ...base, logs: { ...base.logs, file: other } }));
      expect(await t.gw.reload('test')).toBe(true);
      expect(t.gw.plugins.explorer.store!.path).toBe(`${other}.index.sqlite`);
      expect((await getJson(t, '/api/logs')).body.data).toEqual([]);
      writeFileSync(t.configPath, JSON.stringify({ ...base, explorer: { enabled: false } }));
      expect(await t.gw.reload('test')).toBe(true);
      expect((await getJson(t, '/api/logs')).status).toBe(404);
      writeFileSync(t.configPath, JSON.stringify(base));
      expect(await t.gw.reload('test')).toBe(true);
      expect((await getJson(t, '/api/logs')).body.data.map((r: any) => r.model)).toEqual(['before']);
    } finally {
      await t.stop();
    }
  });

  test('no logs.file: an in-memory index still serves the API', async () => {
    const t = await startGateway({ logs: { file: null } });
    try {
      expect(t.gw.plugins.explorer.store!.path).toBeNull();
      seed(t, [record({ model: 'in-memory' })]);
      expect((await getJson(t, '/api/logs')).body.data[0].model).toBe('in-memory');
    } finally {
      await t.stop();
    }
  });
});

// ---------------------------------------------------------------------------------

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function launch(): Promise<{
  context: BrowserContext;
  page: Page;
  errors: string[];
  close: () => Promise<void>;
}> {
  if (!existsSync(CHROMIUM))
    throw new Error(`${CHROMIUM} is missing: run scripts/setup-test-deps as root (Debian package chromium)`);
  const userDataDir = mkdtempSync(join(tmpdir(), 'skybridge-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
    reducedMotion: 'reduce',
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  return {
    context,
    page,
    errors,
    close: async () => {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

describe('the page in headless Chromium', () => {
  let mock: MockUpstream;
  let t: TestGateway;

  beforeAll(async () => {
    mock = new MockUpstream();
    const net = { base_url: mock.url };
    t = await startGateway({
      logs: { content: true },
      providers: {
        openai: { keys: [{ name: 'oa-main', value: fakeKey() }], network_config: net },
        anthropic: { keys: [{ name: 'an-main', value: fakeKey('sk-ant') }], network_config: net },
        gemini: { keys: [{ name: 'ge-main', value: fakeKey('AIza') }], network_config: net },
      },
    });
    // An hour of history, so the charts have something to show.
    const models: Array<[RequestRecord['provider'], string, string]> = [
      ['openai', 'gpt-4o-mini', '/v1/chat/completions'],
      ['anthropic', 'claude-sonnet-4-20250514', '/v1/messages'],
      ['gemini', 'gemini-2.5-flash', '/v1beta/models/gemini-2.5-flash:generateContent'],
      ['openai', 'gpt-4.1', '/v1/responses'],
    ];
    const history: RequestRecord[] = [];
    for (let i = 0; i < 240; i++) {
      const [provider, model, path] = models[i % models.length]!;
      const wave = 1 + Math.sin(i / 18);
      const status = i % 37 === 0 ? 500 : i % 23 === 0 ? 429 : 200;
      history.push(
        record({
          ago: HOUR - i * 14_500 - 30_000,
          provider,
          endpoint: provider === 'gemini' ? 'genai' : provider === 'anthropic' ? 'anthropic' : 'openai',
          model,
          path,
          status,
          outcome: status === 500 ? 'upstream_error' : 'ok',
          stream: i % 3 === 0,
          latency_ms: Math.round(300 + 900 * wave + (i % 7) * 120),
          ttfb_ms: Math.round(120 + 200 * wave),
          usage: { input_tokens: 200 + ((i * 37) % 900), output_tokens: 80 + ((i * 53) % 400), total_tokens: 0 },
          cost_usd: status === 200 ? ((200 + ((i * 37) % 900)) * 2.5 + (80 + ((i * 53) % 400)) * 10) / 1e6 : undefined,
          virtual_key: i % 4 === 0 ? 'team-research' : i % 4 === 1 ? 'team-support' : undefined,
        }),
      );
    }
    seed(t, history);
  });
  afterAll(async () => {
    await t.stop();
    await mock.stop();
  });

  test('requests sent through the gateway appear live; filters, detail view and keyboard work', async () => {
    const b = await launch();
    try {
      const { page, errors } = b;
      await page.goto(`${t.url}/ui`);
      await page.locator('#live-text', { hasText: 'Live' }).waitFor({ timeout: 10_000 });
      await page.locator('#rows tr').first().waitFor();
      expect(await page.locator('#rows tr').count()).toBe(100);
      expect(await page.locator('#k-req').textContent()).toBe('240');

      // Live: requests through the gateway show up at the top without a reload.
      const send = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
        const res = await fetch(`${t.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body: JSON.stringify(body),
        });
        await res.text();
        return res.headers.get('x-request-id')!;
      };
      const chat = await send('/openai_passthrough/v1/chat/completions', {
        model: 'gpt-4o-mini',
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'hello from the explorer test' }],
      });
      const claude = await send('/anthropic_passthrough/v1/messages', {
        model: 'claude-sonnet-4-20250514',
        max_tokens: 64,
        messages: [{ role: 'user', content: 'hello' }],
      });
      mock.respondWith((_req, rec) =>
        rec.path.includes('generateContent')
          ? Response.json({ error: { code: 503, message: 'overloaded' } }, { status: 503 })
          : undefined,
      );
      const gem = await send('/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent', {
        contents: [{ parts: [{ text: 'hi' }] }],
      });
      for (const id of [chat, claude, gem])
        await page.locator(`#rows tr[data-id="${id}"]`).waitFor({ timeout: 10_000 });
      const top = await page
        .locator('#rows tr')
        .evaluateAll((trs) => trs.slice(0, 3).map((tr) => tr.getAttribute('data-id')));
      expect(top).toEqual([gem, claude, chat]);
      expect(await page.locator(`#rows tr[data-id="${gem}"] .badge`).textContent()).toBe('503');
      expect(await page.locator(`#rows tr[data-id="${chat}"]`).textContent()).toContain('11 / 7');
      expect(await page.locator(`#rows tr[data-id="${chat}"] td:nth-child(8)`).textContent()).toMatch(/^\$0\.0000\d+$/);
      expect(await page.locator('#k-cost').textContent()).toMatch(/^\$\d+\.\d\d$/);

      // Detail view: timings, usage, bodies (content logging is on).
      await page.locator(`#rows tr[data-id="${claude}"]`).click();
      await page.locator('#d-body h3', { hasText: 'Token usage' }).waitFor();
      const detail = await page.locator('#detail').textContent();
      expect(detail).toContain('claude-sonnet-4-20250514');
      expect(detail).toContain('an-main');
      expect(detail).toContain('"max_tokens": 64');
      expect(detail).toContain('hello from mock');
      expect(detail).toContain('(catalog price)');
      expect(detail).toContain('complete');
      // Keyboard: arrows move between rows, Enter opens, Escape closes.
      await page.keyboard.press('ArrowDown');
      await page.keyboard.press('Enter');
      await page.locator('#d-title', { hasText: '/v1/chat/completions' }).waitFor();
      expect(await page.locator(`#rows tr[data-id="${chat}"]`).getAttribute('aria-selected')).toBe('true');
      await page.keyboard.press('Escape');
      expect(await page.locator('#detail').isHidden()).toBe(true);

      // Filters: provider + status go to the API; the live stream follows them.
      await page.selectOption('#f-provider', 'gemini');
      await page.selectOption('#f-status', '5xx');
      await page.waitForFunction(
        () =>
          document.querySelectorAll('#rows tr').length > 0 &&
          [...document.querySelectorAll('#rows tr')].every(
            (tr) => tr.textContent!.includes('gemini') && /\b5\d\d\b/.test(tr.querySelector('.badge')!.textContent!),
          ),
      );
      const gem2 = await send('/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent', {
        contents: [{ parts: [{ text: 'again' }] }],
      });
      const chat2 = await send('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] });
      await page.locator(`#rows tr[data-id="${gem2}"]`).waitFor({ timeout: 10_000 });
      await Bun.sleep(400);
      expect(await page.locator(`#rows tr[data-id="${chat2}"]`).count()).toBe(0);
      await page.click('button[type=reset]');
      await page.locator(`#rows tr[data-id="${chat2}"]`).waitFor({ timeout: 10_000 });

      // The screenshot: live table, charts and an open detail view.
      await page.locator(`#rows tr[data-id="${claude}"]`).click();
      await page.locator('#d-body h3', { hasText: 'Bodies' }).waitFor();
      await page.waitForFunction(() => document.querySelectorAll('#c-tok rect').length > 10);
      mkdirSync('test-artifacts', { recursive: true });
      await page.screenshot({ path: 'test-artifacts/explorer.png' });
      expect(errors).toEqual([]);
    } finally {
      await b.close();
    }
  }, 90_000);

  test('with an admin token: the page asks once, keeps it for the tab, and streams with ?token=', async () => {
    const token = fakeKey('adm');
    const tt = await startGateway({
      explorer: { admin_token: token },
      providers: { openai: { keys: [{ name: 'oa', value: fakeKey() }], network_config: { base_url: mock.url } } },
    });
    const b = await launch();
    try {
      const { page, errors } = b;
      await page.goto(`${tt.url}/ui`);
      await page.locator('#token-form').waitFor({ state: 'visible' });
      expect(await page.locator('#notice').textContent()).toContain('admin token');
      await page.fill('#token', token);
      await page.press('#token', 'Enter');
      await page.locator('#live-text', { hasText: 'Live' }).waitFor({ timeout: 10_000 });
      expect(await page.evaluate(() => sessionStorage.getItem('skybridge.explorer.token'))).toBe(token);
      const res = await fetch(`${tt.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
      });
      await res.text();
      await page.locator(`#rows tr[data-id="${res.headers.get('x-request-id')}"]`).waitFor({ timeout: 10_000 });
      // A reload in the same tab does not ask again.
      await page.reload();
      await page.locator('#live-text', { hasText: 'Live' }).waitFor({ timeout: 10_000 });
      expect(await page.locator('#token-form').isHidden()).toBe(true);
      // Errors logged by the browser for the first, refused attempt (401s) are expected.
      expect(errors.filter((e) => !e.includes('401'))).toEqual([]);
    } finally {
      await b.close();
      await tt.stop();
    }
  }, 60_000);
});
