/**
 * Governance counters in Redis: two gateway instances sharing one real redis-server
 * enforce one limit between them; Redis going away mid-run (the server we started is
 * killed by PID) gives fail_open / fail_closed behaviour without hanging, and governance
 * recovers when Redis is back; a Redis that accepts connections but never answers is
 * bounded by redis_timeout_ms.
 *
 * Needs `redis-server` on PATH (scripts/setup-test-deps installs it). Without it these
 * tests fail, on purpose: a skipped test would hide that shared limits went untested.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import { RedisClient, type Subprocess, type TCPSocketListener } from 'bun';
import OpenAI from 'openai';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MockUpstream, type Recorded } from './support/mock-upstream.ts';

const OPENAI_KEY = fakeKey('sk-openai');
const ANTHROPIC_KEY = fakeKey('sk-ant');
const GEMINI_KEY = fakeKey('AIza');

const vk = (name: string) => ({ name, value: fakeKey(`sk-vk-${name}`) });
const VK = {
  rpm: vk('shared-rpm'),
  tpm: vk('shared-tpm'),
  budget: vk('shared-budget'),
  down: vk('down-rpm'),
  free: vk('free'),
  burst: vk('burst'),
};
const VIRTUAL_KEYS = [
  { ...VK.rpm, rate_limit: { requests_per_minute: 4 } },
  { ...VK.tpm, rate_limit: { tokens_per_minute: 30 } },
  { ...VK.budget, budget: { max_tokens: 40, period: 'day' } },
  { ...VK.down, rate_limit: { requests_per_minute: 2 } },
  { ...VK.free },
  { ...VK.burst, rate_limit: { requests_per_minute: 5 } },
];

/** 2031-01-15 12:00:10 UTC, pinned so the minute window cannot roll over mid-test. */
const BASE = Date.UTC(2031, 0, 15, 12, 0, 10);
let clock = BASE;

// --- a redis-server of our own ---------------------------------------------------

function requireRedisServer(): string {
  const bin = Bun.which('redis-server');
  if (!bin)
    throw new Error(
      'redis-server is not installed: the shared-limit tests need it. Run scripts/setup-test-deps (as root) or apt-get install redis-server.',
    );
  return bin;
}

function freePort(): number {
  const probe = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

class RedisServer {
  private constructor(
    readonly proc: Subprocess,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(port = freePort()): Promise<RedisServer> {
    const proc = Bun.spawn(
      [
        requireRedisServer(),
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
      ],
      {
        stdout: 'ignore',
        stderr: 'ignore',
      },
    );
    const server = new RedisServer(proc, port);
    // Should the test process die before afterAll, do not leave our redis-server behind.
    process.once('exit', () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const client = new RedisClient(server.url, { connectionTimeout: 500, autoReconnect: false });
      try {
        await client.connect();
        if ((await client.send('PING', [])) === 'PONG') return server;
      } catch {
        // not listening yet
      } finally {
        client.close();
      }
      if (proc.exitCode !== null || Date.now() > deadline) {
        await server.stop();
        throw new Error(`redis-server did not start on 127.0.0.1:${port} (exit code ${proc.exitCode})`);
      }
      await Bun.sleep(50);
    }
  }

  /** Kill the server we started, by its PID. */
  async stop(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      process.kill(this.proc.pid, 'SIGKILL');
      await this.proc.exited;
    }
  }

  async command(cmd: string, args: string[]): Promise<any> {
    const client = new RedisClient(this.url, { connectionTimeout: 1000, autoReconnect: false });
    try {
      await client.connect();
      return await client.send(cmd, args);
    } finally {
      client.close();
    }
  }
}

// --- gateways ----------------------------------------------------------------------

let redis: RedisServer;
let mock: MockUpstream;
let gwA: TestGateway; // fail_open
let gwB: TestGateway; // fail_closed
const others: TestGateway[] = [];

function providers() {
  return {
    openai: { keys: [{ name: 'oa', value: OPENAI_KEY }], network_config: { base_url: mock.url } },
    anthropic: { keys: [{ name: 'an', value: ANTHROPIC_KEY }], network_config: { base_url: mock.url } },
    gemini: { keys: [{ name: 'ge', value: GEMINI_KEY }], network_config: { base_url: mock.url } },
  };
}

async function gateway(redisUrl: string, onStoreError: 'fail_open' | 'fail_closed'): Promise<TestGateway> {
  const g = await startGateway({
    providers: providers(),
    governance: {
      virtual_keys: VIRTUAL_KEYS,
      redis_url: redisUrl,
      redis_timeout_ms: 200,
      on_store_error: onStoreError,
    },
  });
  g.gw.plugins.governance.now = () => clock;
  return g;
}

/** Wait until the gateway's governance store answers (connecting on a loaded machine may take a moment). */
async function storeReady(g: TestGateway): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await g.gw.plugins.governance.storeReady();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`the gateway never reached redis: ${(err as Error).message}`);
      await Bun.sleep(100);
    }
  }
}

beforeAll(async () => {
  requireRedisServer();
  redis = await RedisServer.start();
  mock = new MockUpstream();
  gwA = await gateway(redis.url, 'fail_open');
  gwB = await gateway(redis.url, 'fail_closed');
  await Promise.all([storeReady(gwA), storeReady(gwB)]);
});
afterAll(async () => {
  await Promise.all([gwA, gwB, ...others].filter(Boolean).map((g) => g.stop()));
  await mock?.stop();
  await redis?.stop();
});
beforeEach(() => {
  mock?.reset();
  clock = BASE;
});

const openai = (g: TestGateway, apiKey: string) =>
  new OpenAI({ baseURL: `${g.url}/openai_passthrough/v1`, apiKey, maxRetries: 0 });
const chat = (g: TestGateway, apiKey: string) =>
  openai(g, apiKey).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

async function post(g: TestGateway, key: string) {
  const started = performance.now();
  const res = await fetch(`${g.url}/openai_passthrough/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  return { res, json: (await res.json()) as any, ms: performance.now() - started };
}

function expectProviderKeyOnly(rec: Recorded, header: string, value: string) {
  expect(rec.headers[header]).toBe(header === 'authorization' ? `Bearer ${value}` : value);
  const seen = JSON.stringify(rec.headers) + rec.query;
  for (const k of Object.values(VK)) expect(seen).not.toContain(k.value);
}

/** Wait until the Redis counter matching `pattern` reaches `value` (usage is written after the last byte). */
async function counterReaches(pattern: string, value: number): Promise<void> {
  let seen = 0;
  for (let i = 0; i < 100; i++) {
    const keys: string[] = await redis.command('KEYS', [pattern]);
    seen = keys.length ? Number(await redis.command('GET', [keys[0]!])) : 0;
    if (seen >= value) return;
    await Bun.sleep(20);
  }
  throw new Error(`counter ${pattern} stayed at ${seen}, expected ${value}`);
}

async function settled(...gs: TestGateway[]) {
  await Bun.sleep(20);
  for (const g of gs) await g.gw.plugins.governance.settled();
}

describe('two gateway instances sharing one redis-server', () => {
  test('requests_per_minute is one limit across both', async () => {
    for (const g of [gwA, gwB, gwA, gwB]) {
      const r = await chat(g, VK.rpm.value);
      expect(r.choices[0]!.message.content).toBe('hello from mock');
    }
    for (const g of [gwA, gwB]) {
      const { res, json } = await post(g, VK.rpm.value);
      expect(res.status).toBe(429);
      expect(json.error.type).toBe('rate_limit_exceeded');
      expect(json.error.message).toContain('requests_per_minute');
      expect(res.headers.get('retry-after')).toBe('50');
    }
    expect(mock.requests).toHaveLength(4);
    for (const r of mock.requests) expectProviderKeyOnly(r, 'authorization', OPENAI_KEY);
    // The counter is in Redis, one key for the window, with an expiry.
    const keys: string[] = await redis.command('KEYS', ['skybridge:gov:{shared-rpm}:rpm:*']);
    expect(keys).toHaveLength(1);
    expect(Number(await redis.command('GET', [keys[0]!]))).toBe(4);
    expect(Number(await redis.command('TTL', [keys[0]!]))).toBeGreaterThan(50);
  });

  test('admission is atomic: 20 concurrent requests over both instances, exactly 5 admitted', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => post(i % 2 ? gwA : gwB, VK.burst.value)));
    const statuses = results.map((r) => r.res.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(15);
    expect(mock.requests).toHaveLength(5);
  });

  test('tokens_per_minute: usage counted on one instance (a stream on the other) limits both', async () => {
    await chat(gwA, VK.tpm.value); // 18 tokens
    const stream = await openai(gwB, VK.tpm.value).chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    });
    for await (const _ of stream) {
      // drain
    }
    await counterReaches('skybridge:gov:{shared-tpm}:tpm:*', 36);
    const { res, json } = await post(gwA, VK.tpm.value);
    expect(res.status).toBe(429);
    expect(json.error.message).toContain('36 used');
    expect((await post(gwB, VK.tpm.value)).res.status).toBe(429);
    expect(mock.requests).toHaveLength(2);
  });

  test('a token budget spent through both instances and two SDKs (Anthropic, GenAI stream) is refused on both', async () => {
    const claude = new Anthropic({
      baseURL: `${gwA.url}/anthropic_passthrough`,
      apiKey: VK.budget.value,
      maxRetries: 0,
    });
    await claude.messages.create({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 8,
      messages: [{ role: 'user', content: 'hi' }],
    }); // 23
    expectProviderKeyOnly(mock.last, 'x-api-key', ANTHROPIC_KEY);
    const ai = new GoogleGenAI({ apiKey: VK.budget.value, httpOptions: { baseUrl: `${gwB.url}/genai_passthrough` } });
    for await (const _ of await ai.models.generateContentStream({ model: 'gemini-2.5-flash', contents: 'hi' })) {
      // drain: 18 more, 41 of 40
    }
    expectProviderKeyOnly(mock.last, 'x-goog-api-key', GEMINI_KEY);
    await counterReaches('skybridge:gov:{shared-budget}:tok:day:*', 41);
    for (const g of [gwA, gwB]) {
      const { res, json } = await post(g, VK.budget.value);
      expect(res.status).toBe(429);
      expect(json.error.type).toBe('budget_exceeded');
      expect(json.error.message).toContain('daily token budget (max_tokens 40, used 41)');
      expect(res.headers.get('retry-after')).toBe(String(12 * 3600 - 10));
    }
  });

  test('Redis killed mid-run: fail_open lets through, fail_closed answers 503, nobody hangs; back when Redis is', async () => {
    expect((await post(gwB, VK.down.value)).res.status).toBe(200);
    await redis.stop();

    // fail_open (A): the limit of 2 is not enforced while the store is gone, answers stay fast.
    for (let i = 0; i < 4; i++) {
      const { res, ms } = await post(gwA, VK.down.value);
      expect(res.status).toBe(200);
      expect(ms).toBeLessThan(2000);
    }
    // fail_closed (B): limited keys are refused with a JSON 503.
    for (let i = 0; i < 3; i++) {
      const { res, json, ms } = await post(gwB, VK.down.value);
      expect(res.status).toBe(503);
      expect(json.error.type).toBe('governance_unavailable');
      expect(json.error.message).toContain('fail_closed');
      expect(ms).toBeLessThan(2000);
    }
    // Checks that need no counters still work on B: a key without limits passes, a bad key is 401.
    expect((await post(gwB, VK.free.value)).res.status).toBe(200);
    const bad = await fetch(`${gwB.url}/openai_passthrough/v1/models`, { headers: { 'x-bf-vk': 'sk-vk-wrong' } });
    expect(bad.status).toBe(401);
    // Usage of requests completed during the outage is dropped without failing anything.
    await settled(gwA, gwB);

    // Redis back on the same port (empty: it kept nothing): after the cool-down both enforce again.
    redis = await RedisServer.start(redis.port);
    let status = 0;
    for (let i = 0; i < 60 && status !== 200; i++) {
      await Bun.sleep(100);
      status = (await post(gwB, VK.down.value)).res.status;
    }
    expect(status).toBe(200); // 1 of 2
    let a = 0;
    for (let i = 0; i < 60; i++) {
      const r = await post(gwA, VK.down.value);
      a = r.res.status;
      if (a === 429) break;
      await Bun.sleep(50);
    }
    expect(a).toBe(429); // A reconnected and counts in the same Redis again
    expect((await post(gwB, VK.down.value)).res.status).toBe(429);
  }, 30_000);
});

describe('a Redis that accepts connections but never answers', () => {
  let blackHole: TCPSocketListener;
  let open: TestGateway;
  let closed: TestGateway;

  beforeAll(async () => {
    blackHole = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
    const url = `redis://127.0.0.1:${blackHole.port}`;
    open = await gateway(url, 'fail_open');
    closed = await gateway(url, 'fail_closed');
    others.push(open, closed);
  });
  afterAll(() => {
    blackHole?.stop(true);
  });

  test('every request is answered within the Redis timeout, by on_store_error', async () => {
    const started = performance.now();
    for (let i = 0; i < 5; i++) {
      const o = await post(open, VK.rpm.value);
      expect(o.res.status).toBe(200);
      expect(o.ms).toBeLessThan(1500);
      const c = await post(closed, VK.rpm.value);
      expect(c.res.status).toBe(503);
      expect(c.json.error.type).toBe('governance_unavailable');
      expect(c.ms).toBeLessThan(1500);
    }
    // Bounded, and the cool-down spares most requests the wait altogether.
    expect(performance.now() - started).toBeLessThan(5000);
  }, 20_000);
});
