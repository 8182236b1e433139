/**
 * Google states a 429's wait in the error body (google.rpc.RetryInfo `retryDelay`, e.g.
 * "12s"), not in Retry-After: the gateway honours it for retries and key rests as it
 * honours Retry-After, reading the body only for a 429 from a provider whose rule says
 * so, and the answer stays relayable byte for byte. Through `@google/genai` against a
 * mock answering as the Gemini API does.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { gzipSync } from 'node:zlib';
import { GoogleGenAI } from '@google/genai';
import { googleRetryDelay } from '../src/providers/gemini.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MockUpstream } from './support/mock-upstream.ts';

const MAIN = fakeKey('AIza-main');
const BACKUP = fakeKey('AIza-backup');
const OPENAI = fakeKey('sk');

/** A Gemini API quota error, as Google sends it. */
function quotaError(retryDelay: string, padding = 0) {
  return JSON.stringify({
    error: {
      code: 429,
      message: `You exceeded your current quota. Please retry in ${retryDelay}.${' '.repeat(padding)}`,
      status: 'RESOURCE_EXHAUSTED',
      details: [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [{ quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests' }],
        },
        {
          '@type': 'type.googleapis.com/google.rpc.Help',
          links: [{ url: 'https://ai.google.dev/gemini-api/docs/rate-limits' }],
        },
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay },
      ],
    },
  });
}

interface Variant {
  gzip?: boolean;
  chunked?: boolean;
  headers?: Record<string, string>;
}

function limited(text: string, v: Variant = {}): Response {
  const bytes = v.gzip ? gzipSync(text) : new TextEncoder().encode(text);
  const headers: Record<string, string> = { 'content-type': 'application/json; charset=UTF-8', ...v.headers };
  if (v.gzip) headers['content-encoding'] = 'gzip';
  const body = v.chunked
    ? new ReadableStream({
        start(c) {
          for (let i = 0; i < bytes.length; i += 100) c.enqueue(bytes.subarray(i, i + 100));
          c.close();
        },
      })
    : bytes;
  return new Response(body, { status: 429, headers });
}

let mock: MockUpstream;
let gw: TestGateway;
/** Answers 429 to the main key while set. */
let mainLimited: ((n: number) => Response | undefined) | undefined;
let mainCalls = 0;

beforeAll(async () => {
  mock = new MockUpstream();
  mock.respondWith((_req, rec) =>
    rec.headers['x-goog-api-key'] === MAIN && mainLimited ? mainLimited(++mainCalls) : undefined,
  );
  gw = await startGateway({
    providers: {
      gemini: {
        keys: [
          { name: 'main', value: MAIN, weight: 1 },
          { name: 'backup', value: BACKUP, weight: 0 }, // drawn only while main rests, or on a retry
        ],
        network_config: {
          base_url: mock.url,
          max_retries: 1,
          retry_backoff_initial: 10,
          retry_backoff_max: 20,
          max_retry_after_seconds: 3,
        },
      },
      openai: {
        keys: [{ name: 'oa', value: OPENAI }],
        network_config: { base_url: mock.url, max_retries: 1, retry_backoff_initial: 10, retry_backoff_max: 20 },
      },
    },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => {
  mock.requests.length = 0;
  mainLimited = undefined;
  mainCalls = 0;
});

const client = () => new GoogleGenAI({ apiKey: 'dummy-key', httpOptions: { baseUrl: `${gw.url}/genai_passthrough` } });
// Each test its own model: a key rests per model, and rests must not carry over between tests.
const generate = (model: string) => client().models.generateContent({ model, contents: 'hello' });

describe('RetryInfo in a Gemini 429 body', () => {
  const variants: Array<[string, Variant]> = [
    ['plain', {}],
    ['gzip', { gzip: true }],
    ['chunked gzip (no declared length)', { gzip: true, chunked: true }],
  ];
  for (const [name, variant] of variants) {
    test(`${name}: the retry waits the retryDelay, on the other key`, async () => {
      mainLimited = (n) => (n === 1 ? limited(quotaError('1.2s'), variant) : undefined);
      const started = performance.now();
      const res = await generate(`gemini-2.5-flash-${name.replaceAll(' ', '-')}`);
      expect(res.text).toBe('hello from mock');
      expect(performance.now() - started).toBeGreaterThanOrEqual(1190);
      expect(mock.requests.map((r) => r.headers['x-goog-api-key'])).toEqual([MAIN, BACKUP]);
      const line = await gw.waitForLine((l) => l.model?.startsWith(`gemini-2.5-flash-${name.replaceAll(' ', '-')}`));
      expect(line).toMatchObject({ status: 200, key: 'backup', attempts: 2 });
      expect(line.retries).toEqual([{ attempt: 1, key: 'main', reason: '429', delay_ms: 1200 }]);
    });
  }

  test('a wait longer than max_retry_after_seconds: the 429 is relayed byte for byte, and the key rests that long', async () => {
    const text = quotaError('45s');
    mainLimited = (n) => (n === 1 ? limited(text) : undefined);
    const res = await fetch(`${gw.url}/genai_passthrough/v1beta/models/gemini-rest:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"contents":[{"parts":[{"text":"hi"}]}]}',
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('x-skybridge-attempts')).toBe('1');
    expect(res.headers.get('content-type')).toBe('application/json; charset=UTF-8');
    expect(await res.text()).toBe(text);
    // The SDK sees Google's own error.
    mainLimited = (n) => (n === 2 ? limited(text) : undefined);
    const err = await generate('gemini-rest-sdk').catch((e) => e);
    expect(err.status).toBe(429);
    expect(err.message).toContain('RESOURCE_EXHAUSTED');
    // main rests for gemini-rest (at most 60 s): the weight-0 backup serves it meanwhile.
    mock.requests.length = 0;
    for (let i = 0; i < 3; i++) await generate('gemini-rest');
    expect(mock.requests.map((r) => r.headers['x-goog-api-key'])).toEqual([BACKUP, BACKUP, BACKUP]);
  });

  test('Retry-After, when sent, is what counts (the body is not needed)', async () => {
    mainLimited = (n) => (n === 1 ? limited(quotaError('20s'), { headers: { 'retry-after': '1' } }) : undefined);
    const started = performance.now();
    await generate('gemini-header');
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(990);
    expect(took).toBeLessThan(2900);
  });

  test('a 429 body over 64 KiB is not read for its wait, and is relayed intact after the last attempt', async () => {
    const text = quotaError('2s', 100_000);
    mock.respondWith((_req, rec) => (rec.path.includes('gemini-huge') ? limited(text, { chunked: true }) : undefined));
    const started = performance.now();
    const res = await fetch(`${gw.url}/genai_passthrough/v1beta/models/gemini-huge:generateContent`, {
      method: 'POST',
      body: '{}',
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('x-skybridge-attempts')).toBe('2');
    expect(await res.text()).toBe(text);
    expect(performance.now() - started).toBeLessThan(1500); // the backoff (10-20 ms), not 2 s
  });

  test('a provider whose rule does not say so (OpenAI) never has its 429 body read', async () => {
    let n = 0;
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/chat/completions' && n++ === 0 ? limited(quotaError('2s')) : undefined,
    );
    const started = performance.now();
    const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":"gpt-4o-mini","messages":[]}',
    });
    expect(res.status).toBe(200);
    expect(performance.now() - started).toBeLessThan(1500);
  });
});

describe('googleRetryDelay', () => {
  const body = (x: unknown) => new TextEncoder().encode(JSON.stringify(x));
  const info = (retryDelay: unknown) => ({
    error: { details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay }] },
  });

  test('reads protobuf Durations in JSON form (and the { seconds, nanos } form)', () => {
    expect(googleRetryDelay(body(info('12s')))).toBe(12_000);
    expect(googleRetryDelay(body(info('0.250s')))).toBe(250);
    expect(googleRetryDelay(body(info({ seconds: '3', nanos: 500_000_000 })))).toBe(3500);
    expect(googleRetryDelay(body([info('7s')]))).toBe(7000);
  });

  test('anything else says nothing', () => {
    for (const x of [
      info('soon'),
      info('-1s'),
      info(12),
      { error: { details: [{ '@type': 'type.googleapis.com/google.rpc.Help', retryDelay: '5s' }] } },
      { error: { details: 'x' } },
      { error: {} },
      null,
    ])
      expect(googleRetryDelay(body(x))).toBeUndefined();
    expect(googleRetryDelay(new TextEncoder().encode('not json'))).toBeUndefined();
  });
});
