/**
 * Governance (virtual keys, allowed providers/models, rate limits, budgets) with the
 * official SDKs using a virtual key as their API key, against gateways whose providers
 * point at a recording mock upstream. Counters in memory here; Redis in
 * governance-redis.test.ts. The governance clock is pinned per test so that minute
 * windows and budget periods never roll over mid-test.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI, { AzureOpenAI } from 'openai';
import { VirtualKeyTable } from '../src/plugins/governance/keys.ts';
import { minuteWindow, periodWindow, secondsUntil } from '../src/plugins/governance/limits.ts';
import { MemoryStore } from '../src/plugins/governance/store.ts';
import { costNanoUsd, tokensOf } from '../src/usage/cost.ts';
import { ConfigPrices } from '../src/usage/prices.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { anthropicStream, chatStream, MockUpstream, type Recorded } from './support/mock-upstream.ts';
import { chunkedStream } from './support/raw-http.ts';

const OPENAI_KEY = fakeKey('sk-openai');
const ANTHROPIC_KEY = fakeKey('sk-ant');
const GEMINI_KEY = fakeKey('AIza');
const AZURE_KEY = fakeKey('azure');

const vk = (name: string) => ({ name, value: fakeKey(`sk-vk-${name}`) });
const VK = {
  open: vk('open'),
  mini: vk('mini-only'),
  rpm: vk('rpm3'),
  tpm: vk('tpm30'),
  tpmStream: vk('tpm20-stream'),
  budgetTok: vk('budget-tokens'),
  budgetUsd: vk('budget-usd'),
  budgetGemini: vk('budget-gemini'),
  reload: vk('reload'),
  aborted: vk('aborted-stream'),
};

/** Wednesday 2031-01-15 12:00:10 UTC: 50 s left in the minute, 11 h 59 m 50 s in the day. */
const BASE = Date.UTC(2031, 0, 15, 12, 0, 10);
let clock = BASE;

let mock: MockUpstream;
let gw: TestGateway; // keys mode, governance optional
let gwRequired: TestGateway; // keys mode, governance.required
let gwDirect: TestGateway; // no provider keys: client credentials pass (direct keys)

function governanceConfig() {
  return {
    virtual_keys: [
      { ...VK.open },
      { ...VK.mini, providers: ['openai'], models: ['gpt-4o-mini*'] },
      { ...VK.rpm, rate_limit: { requests_per_minute: 3 } },
      { ...VK.tpm, rate_limit: { tokens_per_minute: 30 } },
      { ...VK.tpmStream, rate_limit: { tokens_per_minute: 20 } },
      { ...VK.budgetTok, budget: { max_tokens: 30, period: 'day' } },
      { ...VK.budgetUsd, budget: { max_cost_usd: 40, period: 'month' } },
      { ...VK.budgetGemini, budget: { max_tokens: 15, period: 'hour' } },
      { ...VK.reload, rate_limit: { requests_per_minute: 2 } },
      { ...VK.aborted, budget: { max_tokens: 10, period: 'week' } },
    ],
    prices: { 'gpt-4o-mini': { input_per_million: 1_000_000, output_per_million: 2_000_000 } },
  };
}

function keyedProviders(base: string) {
  return {
    openai: { keys: [{ name: 'oa', value: OPENAI_KEY }], network_config: { base_url: base } },
    anthropic: { keys: [{ name: 'an', value: ANTHROPIC_KEY }], network_config: { base_url: base } },
    gemini: { keys: [{ name: 'ge', value: GEMINI_KEY }], network_config: { base_url: base } },
    azure: {
      keys: [{ name: 'az', value: AZURE_KEY, azure_key_config: { endpoint: base, api_version: '2024-10-21' } }],
    },
  };
}

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({ providers: keyedProviders(mock.url), governance: governanceConfig() });
  gwRequired = await startGateway({
    providers: keyedProviders(mock.url),
    governance: { required: true, virtual_keys: [VK.open] },
  });
  gwDirect = await startGateway({
    providers: {
      openai: { network_config: { base_url: mock.url } },
      anthropic: { network_config: { base_url: mock.url } },
      gemini: { network_config: { base_url: mock.url } },
    },
    governance: { virtual_keys: [VK.open] },
  });
  for (const g of [gw, gwRequired, gwDirect]) g.gw.plugins.governance.now = () => clock;
});
afterAll(async () => {
  await Promise.all([gw.stop(), gwRequired.stop(), gwDirect.stop()]);
  await mock.stop();
});
beforeEach(() => {
  mock.reset();
  clock = BASE;
});

const openai = (apiKey: string, g = gw, extra: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) =>
  new OpenAI({ baseURL: `${g.url}/openai_passthrough/v1`, apiKey, maxRetries: 0, ...extra });
const anthropic = (apiKey: string, g = gw, extra: Partial<ConstructorParameters<typeof Anthropic>[0]> = {}) =>
  new Anthropic({ baseURL: `${g.url}/anthropic_passthrough`, apiKey, maxRetries: 0, ...extra });
const genai = (apiKey: string, g = gw) =>
  new GoogleGenAI({ apiKey, httpOptions: { baseUrl: `${g.url}/genai_passthrough` } });
const chat = (client: OpenAI, model = 'gpt-4o-mini') =>
  client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
const claude = (client: Anthropic) =>
  client.messages.create({
    model: 'claude-sonnet-4-20250514',
    max_tokens: 16,
    messages: [{ role: 'user', content: 'hi' }],
  });

/** The virtual key must be nowhere in what reached the provider. */
function expectNoVirtualKey(rec: Recorded, ...values: string[]) {
  const seen = JSON.stringify(rec.headers) + rec.query + new TextDecoder().decode(rec.body);
  for (const v of values) expect(seen).not.toContain(v);
}

async function logLine(g: TestGateway, requestId: string | null): Promise<any> {
  expect(requestId).toBeTruthy();
  const deadline = Date.now() + 5000;
  for (;;) {
    const line = (await g.logLines()).find((l) => l.request_id === requestId);
    if (line || Date.now() > deadline) return line;
    await Bun.sleep(20);
  }
}

/** Wait until `n` more requests completed (their log lines exist) and governance wrote their usage. */
async function completed(g: TestGateway, before: number, n = 1): Promise<void> {
  const lines = await g.waitForLines(before + n);
  expect(lines.length).toBeGreaterThanOrEqual(before + n);
  await g.gw.plugins.governance.settled();
}

/** Raw call for checking status, headers and JSON of refusals. */
async function post(g: TestGateway, path: string, headers: Record<string, string>, body: unknown) {
  const res = await fetch(`${g.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { res, json: (await res.json()) as any };
}
const chatBody = (model = 'gpt-4o-mini') => ({ model, messages: [{ role: 'user', content: 'hi' }] });

/** The `{type, message}` of a gateway error as an SDK exception carries it (OpenAI unwraps `error`, Anthropic does not). */
const errorOf = (err: any): { type: string; message: string } => err.error?.error ?? err.error;

async function expectStatus(p: Promise<unknown>, status: number): Promise<any> {
  try {
    await p;
  } catch (err: any) {
    expect(err?.status).toBe(status);
    return err;
  }
  throw new Error(`expected an error with status ${status}, the call succeeded`);
}

describe('virtual keys: presented through each SDK, consumed, never forwarded', () => {
  test('OpenAI SDK (Authorization: Bearer <vk>): upstream gets the gateway key, the log names the vk', async () => {
    const { data, response } = await chat(openai(VK.open.value)).withResponse();
    expect(data.choices[0]!.message.content).toBe('hello from mock');
    expect(mock.last.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expectNoVirtualKey(mock.last, VK.open.value);
    const line = await logLine(gw, response.headers.get('x-request-id'));
    expect(line.virtual_key).toBe('open');
    expect(line.key).toBe('oa');
    expect(JSON.stringify(line)).not.toContain(VK.open.value);
  });

  test('Anthropic SDK (its apiKey goes out as Authorization: Bearer <vk>), and a raw x-api-key: <vk>', async () => {
    const msg = await claude(anthropic(VK.open.value));
    expect(msg.content[0]).toMatchObject({ type: 'text', text: 'hello from mock' });
    expect(mock.last.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(mock.last.headers.authorization).toBeUndefined();
    expectNoVirtualKey(mock.last, VK.open.value);

    const { res } = await post(
      gw,
      '/anthropic_passthrough/v1/messages',
      { 'x-api-key': VK.open.value, 'anthropic-version': '2023-06-01' },
      { model: 'claude-sonnet-4-20250514', max_tokens: 1, messages: [] },
    );
    expect(res.status).toBe(200);
    expect(mock.last.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expectNoVirtualKey(mock.last, VK.open.value);
    expect((await logLine(gw, res.headers.get('x-request-id'))).virtual_key).toBe('open');
  });

  test('Google GenAI SDK (x-goog-api-key: <vk>)', async () => {
    const r = await genai(VK.open.value).models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi' });
    expect(r.text).toBe('hello from mock');
    expect(mock.last.path).toEndWith('/models/gemini-2.5-flash:generateContent');
    expect(mock.last.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expectNoVirtualKey(mock.last, VK.open.value);
  });

  test('AzureOpenAI SDK (api-key: <vk>)', async () => {
    const client = new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      apiKey: VK.open.value,
      apiVersion: '2024-10-21',
      maxRetries: 0,
    });
    const r = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(r.choices[0]!.message.content).toBe('hello from mock');
    expect(mock.last.path).toBe('/openai/deployments/gpt-4o-mini/chat/completions');
    expect(mock.last.headers['api-key']).toBe(AZURE_KEY);
    expectNoVirtualKey(mock.last, VK.open.value);
  });

  test('x-bf-vk header next to a dummy SDK key', async () => {
    const { response } = await chat(
      openai('dummy-key', gw, { defaultHeaders: { 'x-bf-vk': VK.open.value } }),
    ).withResponse();
    expect(mock.last.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(mock.last.headers['x-bf-vk']).toBeUndefined();
    expectNoVirtualKey(mock.last, VK.open.value, 'dummy-key');
    expect((await logLine(gw, response.headers.get('x-request-id'))).virtual_key).toBe('open');
  });

  test('Gemini key= query parameter holding the vk is recognised and removed', async () => {
    const { res } = await post(
      gw,
      `/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent?key=${VK.open.value}&alt=json`,
      {},
      { contents: [{ parts: [{ text: 'hi' }] }] },
    );
    expect(res.status).toBe(200);
    expect(mock.last.query).toBe('alt=json');
    expect(mock.last.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expectNoVirtualKey(mock.last, VK.open.value);
    expect((await logLine(gw, res.headers.get('x-request-id'))).virtual_key).toBe('open');
  });

  test('not required: no vk or a non-vk SDK key passes without a virtual key', async () => {
    const { response } = await chat(openai('dummy-key')).withResponse();
    expect(mock.requests).toHaveLength(1);
    expect((await logLine(gw, response.headers.get('x-request-id'))).virtual_key).toBeUndefined();
    const { res } = await post(gw, '/openai_passthrough/v1/chat/completions', {}, chatBody());
    expect(res.status).toBe(200);
  });

  test('not required: a wrong x-bf-vk is refused with 401 before the upstream', async () => {
    const { res, json } = await post(
      gw,
      '/openai_passthrough/v1/chat/completions',
      { 'x-bf-vk': 'sk-vk-wrong', authorization: 'Bearer dummy' },
      chatBody(),
    );
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(json.error.type).toBe('unauthorized');
    expect(json.error.message).toContain('x-bf-vk');
    expect(JSON.stringify(json)).not.toContain('sk-vk-wrong');
    expect(mock.requests).toHaveLength(0);
    const line = await logLine(gw, res.headers.get('x-request-id'));
    expect(line.outcome).toBe('rejected');
    expect(line.status).toBe(401);
    expect(line.error.type).toBe('unauthorized');
  });

  test('required: no vk, or an SDK key that is not one, gets 401; a valid one passes', async () => {
    const { res, json } = await post(gwRequired, '/openai_passthrough/v1/chat/completions', {}, chatBody());
    expect(res.status).toBe(401);
    expect(json).toEqual({
      error: { type: 'unauthorized', message: expect.stringContaining('virtual key is required') },
    });

    const err = await expectStatus(chat(openai('sk-not-a-virtual-key', gwRequired)), 401);
    expect(errorOf(err).type).toBe('unauthorized');
    await expectStatus(claude(anthropic('sk-not-a-virtual-key', gwRequired)), 401);
    await expectStatus(
      genai('sk-not-a-virtual-key', gwRequired).models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi' }),
      401,
    );
    expect(mock.requests).toHaveLength(0);

    await chat(openai(VK.open.value, gwRequired));
    await claude(anthropic(VK.open.value, gwRequired));
    expect(mock.requests).toHaveLength(2);
    expect(mock.requests[0]!.headers.authorization).toBe(`Bearer ${OPENAI_KEY}`);
    expect(mock.requests[1]!.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    for (const r of mock.requests) expectNoVirtualKey(r, VK.open.value);
  });

  test('direct-key mode: the vk is consumed even though client credentials pass', async () => {
    // OpenAI SDK with the vk as its key: the only credential is the vk, so nothing reaches upstream.
    const { response } = await chat(openai(VK.open.value, gwDirect)).withResponse();
    expect(mock.last.headers.authorization).toBeUndefined();
    expectNoVirtualKey(mock.last, VK.open.value);
    const line = await logLine(gwDirect, response.headers.get('x-request-id'));
    expect(line.virtual_key).toBe('open');
    expect(line.key).toBe('direct');

    // Anthropic SDK with its own provider key and the vk in x-bf-vk: the provider key passes.
    const own = fakeKey('sk-ant-own');
    await claude(anthropic(own, gwDirect, { defaultHeaders: { 'x-bf-vk': VK.open.value } }));
    expect(mock.last.headers.authorization).toBe(`Bearer ${own}`); // how SDK 1.x sends apiKey
    expectNoVirtualKey(mock.last, VK.open.value);
    // The vk in Authorization next to the provider key in x-api-key: only the vk is dropped.
    // (Raw request: the SDK itself drops x-api-key when an Authorization header is set.)
    await post(
      gwDirect,
      '/anthropic_passthrough/v1/messages',
      { 'x-api-key': own, authorization: `Bearer ${VK.open.value}` },
      { model: 'claude-sonnet-4-20250514', max_tokens: 1, messages: [] },
    );
    expect(mock.last.headers['x-api-key']).toBe(own);
    expect(mock.last.headers.authorization).toBeUndefined();
    expectNoVirtualKey(mock.last, VK.open.value);

    // x-bf-vk plus a provider key in Authorization: the provider key passes.
    const ownOpenai = fakeKey('sk-own');
    await chat(openai(ownOpenai, gwDirect, { defaultHeaders: { 'x-bf-vk': VK.open.value } }));
    expect(mock.last.headers.authorization).toBe(`Bearer ${ownOpenai}`);
    expectNoVirtualKey(mock.last, VK.open.value);

    // Gemini: vk in x-goog-api-key dropped; own key in key= kept.
    const ownGemini = fakeKey('AIza-own');
    const { res } = await post(
      gwDirect,
      `/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent?key=${ownGemini}`,
      { 'x-goog-api-key': VK.open.value },
      { contents: [] },
    );
    expect(res.status).toBe(200);
    expect(mock.last.headers['x-goog-api-key']).toBeUndefined();
    expect(mock.last.query).toBe(`key=${ownGemini}`);
    // And the other way round: vk in key=, own key in the header.
    await post(
      gwDirect,
      `/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent?alt=json&key=${encodeURIComponent(VK.open.value)}`,
      { 'x-goog-api-key': ownGemini },
      { contents: [] },
    );
    expect(mock.last.headers['x-goog-api-key']).toBe(ownGemini);
    expect(mock.last.query).toBe('alt=json');
    expectNoVirtualKey(mock.last, VK.open.value);
  });

  test('VirtualKeyTable: constant-time match on SHA-256 digests', () => {
    const table = new VirtualKeyTable(
      [
        { name: 'a', value: 'secret-a', providers: ['openai'], models: ['*'] },
        { name: 'b', value: 'secret-b-longer', providers: ['openai'], models: ['*'] },
      ],
      ['openai'],
    );
    expect(table.match('secret-a')?.name).toBe('a');
    expect(table.match('secret-b-longer')?.name).toBe('b');
    expect(table.match('secret-')).toBeUndefined();
    expect(table.match('secret-a ')).toBeUndefined();
    expect(table.match('x'.repeat(10_000))).toBeUndefined();
    expect(table.match('')).toBeUndefined();
    expect(new VirtualKeyTable([], []).match('secret-a')).toBeUndefined();
  });
});

describe('allowed providers and models', () => {
  test('model patterns: a prefix pattern allows, another model gets 403 naming the vk and the model', async () => {
    await chat(openai(VK.mini.value), 'gpt-4o-mini-2024-07-18');
    expect(mock.requests).toHaveLength(1);
    const err = await expectStatus(chat(openai(VK.mini.value), 'gpt-4o'), 403);
    expect(errorOf(err).type).toBe('model_not_allowed');
    expect(errorOf(err).message).toContain('"mini-only"');
    expect(errorOf(err).message).toContain('"gpt-4o"');
    expect(mock.requests).toHaveLength(1);
  });

  test('a body sent chunked (no declared length) is checked the same: no way around the model list', async () => {
    const chunked = (model: string) =>
      fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${VK.mini.value}`, 'content-type': 'application/json' },
        body: chunkedStream(JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] })),
        duplex: 'half',
      } as RequestInit);
    const refused = await chunked('gpt-4o');
    expect(refused.status).toBe(403);
    expect((await refused.json()).error.type).toBe('model_not_allowed');
    expect(mock.requests).toHaveLength(0);
    expect((await chunked('gpt-4o-mini')).status).toBe(200);
    expect(mock.last.json.model).toBe('gpt-4o-mini');
  });

  test('a body too large to read for its model: refused for a key limited to some models, let through for one that is not', async () => {
    // 9 MB of JSON, over the default buffer_body_limit_mb (8): streamed through unread.
    const big = JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(9 * 1024 * 1024) }] });
    const send = (vkValue: string) =>
      fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${vkValue}`, 'content-type': 'application/json' },
        body: big,
      });
    const refused = await send(VK.mini.value);
    expect(refused.status).toBe(413);
    const err = (await refused.json()).error;
    expect(err.type).toBe('body_too_large_to_check');
    expect(err.message).toContain('"mini-only"');
    expect(err.message).toContain('buffer_body_limit_mb');
    expect(mock.requests).toHaveLength(0);
    const open = await send(VK.open.value);
    expect(open.status).toBe(200);
    expect(mock.last.body.byteLength).toBe(Buffer.byteLength(big));
    // A file upload is never read for a model, whatever its size: not refused for that.
    mock.reset();
    const upload = await fetch(`${gw.url}/openai_passthrough/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${VK.mini.value}`, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(9 * 1024 * 1024),
    });
    expect(upload.status).toBe(200);
    expect(mock.last.body.byteLength).toBe(9 * 1024 * 1024);
  });

  test('a compressed body is checked the same; one that cannot be read is refused to a limited key', async () => {
    const send = (vkValue: string, bytes: Uint8Array<ArrayBuffer>, encoding: string) =>
      fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${vkValue}`,
          'content-type': 'application/json',
          'content-encoding': encoding,
        },
        body: bytes,
      });
    const gz = (model: string) =>
      new Uint8Array(gzipSync(JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] })));
    const refused = await send(VK.mini.value, gz('gpt-4o'), 'gzip');
    expect(refused.status).toBe(403);
    expect((await refused.json()).error.type).toBe('model_not_allowed');
    expect((await send(VK.mini.value, gz('gpt-4o-mini'), 'gzip')).status).toBe(200);
    expect(mock.last.headers['content-encoding']).toBe('gzip');
    const unreadable = await send(VK.mini.value, gz('gpt-4o'), 'zstd');
    expect(unreadable.status).toBe(413);
    expect((await unreadable.json()).error.type).toBe('body_too_large_to_check');
    expect(mock.requests).toHaveLength(1);
  });

  test('providers: a provider not listed gets 403 naming the vk and the provider', async () => {
    const err = await expectStatus(claude(anthropic(VK.mini.value)), 403);
    expect(errorOf(err).type).toBe('provider_not_allowed');
    expect(errorOf(err).message).toContain('"mini-only"');
    expect(errorOf(err).message).toContain('"anthropic"');
    await expectStatus(genai(VK.mini.value).models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi' }), 403);
    expect(mock.requests).toHaveLength(0);
  });
});

describe('rate limits (fixed one-minute UTC windows)', () => {
  test('requests_per_minute: over the limit is 429 with Retry-After to the end of the minute; the next minute starts from zero', async () => {
    const client = openai(VK.rpm.value);
    for (let i = 0; i < 3; i++) await chat(client);
    const { res, json } = await post(
      gw,
      '/openai_passthrough/v1/chat/completions',
      { authorization: `Bearer ${VK.rpm.value}` },
      chatBody(),
    );
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('50');
    expect(json.error.type).toBe('rate_limit_exceeded');
    expect(json.error.message).toContain('requests_per_minute');
    expect(json.error.message).toContain('"rpm3"');
    const err = await expectStatus(chat(client), 429);
    expect(err.headers.get('retry-after')).toBe('50');
    clock = BASE + 45_000; // 12:00:55
    await expectStatus(chat(client), 429).then((e) => expect(e.headers.get('retry-after')).toBe('5'));
    expect(mock.requests).toHaveLength(3);

    clock = BASE + 50_000; // 12:01:00: a new window
    for (let i = 0; i < 3; i++) await chat(client);
    await expectStatus(chat(client), 429);
    expect(mock.requests).toHaveLength(6);
  });

  test('tokens_per_minute: usage of plain and streamed answers counts; over the limit is 429 until the minute ends', async () => {
    const client = openai(VK.tpm.value);
    const before = (await gw.logLines()).length;
    await chat(client); // 18 tokens
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    });
    for await (const _ of stream) {
      // drain
    }
    await completed(gw, before, 2);
    const { res, json } = await post(
      gw,
      '/openai_passthrough/v1/chat/completions',
      { authorization: `Bearer ${VK.tpm.value}` },
      chatBody(),
    );
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('50');
    expect(json.error.type).toBe('rate_limit_exceeded');
    expect(json.error.message).toContain('tokens_per_minute');
    expect(json.error.message).toContain('36 used');
    expect(mock.requests).toHaveLength(2);
    clock = BASE + 50_000;
    await chat(client);
  });

  test('a stream admitted before the limit was reached finishes, and its usage still counts', async () => {
    mock.respondWith((req, rec) =>
      rec.json?.model === 'slow-model' ? mock.sse(req, chatStream('slow-model'), 60) : undefined,
    );
    const client = openai(VK.tpmStream.value);
    const before = (await gw.logLines()).length;
    const stream = await client.chat.completions.create({
      model: 'slow-model',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    });
    await chat(client); // 18 of 20: under the limit, admitted
    await completed(gw, before, 1);
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toContain('hello');
    await completed(gw, before, 2);
    const { res, json } = await post(
      gw,
      '/openai_passthrough/v1/chat/completions',
      { authorization: `Bearer ${VK.tpmStream.value}` },
      chatBody(),
    );
    expect(res.status).toBe(429);
    expect(json.error.message).toContain('36 used');
    expect(mock.requests).toHaveLength(2);
  });
});

describe('budgets (calendar periods, UTC)', () => {
  test('max_tokens per day: spent budget is 429 budget_exceeded until midnight UTC, also across minutes', async () => {
    const client = anthropic(VK.budgetTok.value);
    const before = (await gw.logLines()).length;
    await claude(client); // 23 tokens (11 in + 7 out + 5 cache)
    const stream = client.messages.stream({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'hi' }],
    });
    await stream.finalMessage(); // 23 more, counted when the stream completed
    await completed(gw, before, 2);
    const err = await expectStatus(claude(client), 429);
    expect(errorOf(err).type).toBe('budget_exceeded');
    expect(errorOf(err).message).toContain('"budget-tokens"');
    expect(errorOf(err).message).toContain('daily token budget');
    expect(errorOf(err).message).toContain('max_tokens 30, used 46');
    expect(errorOf(err).message).toContain('2031-01-16T00:00:00.000Z');
    expect(err.headers.get('retry-after')).toBe(String(12 * 3600 - 10));
    clock = BASE + 5 * 60_000; // minutes later: still spent
    await expectStatus(claude(client), 429);
    clock = Date.UTC(2031, 0, 16, 0, 0, 1); // next day
    await claude(client);
    expect(mock.requests).toHaveLength(3);
  });

  test('max_cost_usd per month, priced from governance.prices; a model priced nowhere refused', async () => {
    const client = openai(VK.budgetUsd.value);
    await chat(client); // 11 * $1 + 7 * $2 = $25 (prices per million tokens, scaled up for the test)
    await chat(client); // $25 spent < $40: admitted, $50 after
    await completed(gw, 0, 0);
    const err = await expectStatus(chat(client), 429);
    expect(errorOf(err).type).toBe('budget_exceeded');
    expect(errorOf(err).message).toContain('monthly cost budget');
    expect(errorOf(err).message).toContain('max_cost_usd $40.00, spent $50.00');
    expect(err.headers.get('retry-after')).toBe(String((Date.UTC(2031, 1, 1) - BASE) / 1000));
    const unpriced = await expectStatus(chat(client, 'in-house-finetune-7'), 403);
    expect(errorOf(unpriced).type).toBe('model_not_priced');
    clock = Date.UTC(2031, 1, 1);
    await chat(client);
    expect(mock.requests).toHaveLength(3);
  });

  test('a stream the client abandons still counts the usage seen so far', async () => {
    mock.respondWith((req, rec) =>
      rec.json?.model === 'slow-claude' ? mock.sse(req, anthropicStream('slow-claude'), 300) : undefined,
    );
    const before = (await gw.logLines()).length;
    const abort = new AbortController();
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': VK.aborted.value },
      body: JSON.stringify({
        model: 'slow-claude',
        max_tokens: 16,
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      }),
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain('message_start'); // 11 input + 1 output + 5 cache so far
    abort.abort();
    await completed(gw, before, 1);
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.outcome).toBe('client_aborted');
    const { res: next, json } = await post(
      gw,
      '/anthropic_passthrough/v1/messages',
      { 'x-api-key': VK.aborted.value },
      { model: 'claude-sonnet-4-20250514', max_tokens: 1, messages: [] },
    );
    expect(next.status).toBe(429);
    expect(json.error.message).toContain('weekly token budget (max_tokens 10, used 17)');
    expect(json.error.message).toContain('2031-01-20T00:00:00.000Z'); // next Monday
  });

  test('Gemini stream usage counts against an hourly token budget', async () => {
    const ai = genai(VK.budgetGemini.value);
    const before = (await gw.logLines()).length;
    let text = '';
    for await (const chunk of await ai.models.generateContentStream({ model: 'gemini-2.5-flash', contents: 'hi' }))
      text += chunk.text ?? '';
    expect(text).toBe('hello from mock');
    expect(mock.last.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expectNoVirtualKey(mock.last, VK.budgetGemini.value);
    await completed(gw, before, 1);
    const { res, json } = await post(
      gw,
      '/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent',
      { 'x-goog-api-key': VK.budgetGemini.value },
      { contents: [] },
    );
    expect(res.status).toBe(429);
    expect(json.error.type).toBe('budget_exceeded');
    expect(json.error.message).toContain('hourly token budget (max_tokens 15, used 18)');
    expect(res.headers.get('retry-after')).toBe(String(3600 - 10));
  });
});

describe('config', () => {
  test('counters survive a config reload', async () => {
    const client = openai(VK.reload.value);
    await chat(client);
    await chat(client);
    await expectStatus(chat(client), 429);
    writeFileSync(
      gw.configPath,
      JSON.stringify({ ...JSON.parse(await Bun.file(gw.configPath).text()), direct_keys: true }),
    );
    expect(await gw.gw.reload('test')).toBe(true);
    gw.gw.plugins.governance.now = () => clock;
    await expectStatus(chat(client), 429);
  });

  test('duplicate virtual key names or values, or required without the plugin, are config errors', async () => {
    await expect(
      startGateway({
        governance: {
          virtual_keys: [
            { name: 'x', value: 'v1' },
            { name: 'x', value: 'v2' },
          ],
        },
      }),
    ).rejects.toThrow('virtual key names must be unique');
    await expect(
      startGateway({
        governance: {
          virtual_keys: [
            { name: 'x', value: 'v1' },
            { name: 'y', value: 'v1' },
          ],
        },
      }),
    ).rejects.toThrow('virtual key values must be unique');
    await expect(
      startGateway({
        plugins: ['logging'],
        governance: { required: true, virtual_keys: [{ name: 'x', value: 'v1' }] },
      }),
    ).rejects.toThrow('"governance" is not in plugins');
    await expect(startGateway({ governance: { redis_url: 'http://127.0.0.1:6379' } })).rejects.toThrow('redis://');
  });
});

describe('limits arithmetic', () => {
  test('minute windows and calendar periods in UTC', () => {
    const t = Date.UTC(2031, 0, 15, 12, 34, 56, 789); // a Wednesday
    expect(minuteWindow(t)).toEqual({ start: Date.UTC(2031, 0, 15, 12, 34), end: Date.UTC(2031, 0, 15, 12, 35) });
    expect(periodWindow('hour', t)).toEqual({ start: Date.UTC(2031, 0, 15, 12), end: Date.UTC(2031, 0, 15, 13) });
    expect(periodWindow('day', t)).toEqual({ start: Date.UTC(2031, 0, 15), end: Date.UTC(2031, 0, 16) });
    expect(periodWindow('week', t)).toEqual({ start: Date.UTC(2031, 0, 13), end: Date.UTC(2031, 0, 20) }); // Monday to Monday
    expect(periodWindow('week', Date.UTC(2031, 0, 19, 23, 59))).toEqual({
      start: Date.UTC(2031, 0, 13),
      end: Date.UTC(2031, 0, 20),
    }); // Sunday
    expect(periodWindow('week', Date.UTC(2031, 0, 20))).toEqual({
      start: Date.UTC(2031, 0, 20),
      end: Date.UTC(2031, 0, 27),
    });
    expect(periodWindow('month', t)).toEqual({ start: Date.UTC(2031, 0, 1), end: Date.UTC(2031, 1, 1) });
    expect(periodWindow('month', Date.UTC(2031, 11, 31, 23, 59, 59))).toEqual({
      start: Date.UTC(2031, 11, 1),
      end: Date.UTC(2032, 0, 1),
    });
    expect(periodWindow('month', Date.UTC(2032, 1, 29, 12))).toEqual({
      start: Date.UTC(2032, 1, 1),
      end: Date.UTC(2032, 2, 1),
    });
    expect(secondsUntil(Date.UTC(2031, 0, 15, 12, 35), t)).toBe(4);
    expect(secondsUntil(t, t)).toBe(1);
  });

  test('tokens and cost', () => {
    expect(tokensOf(undefined)).toBe(0);
    expect(tokensOf({ input_tokens: 5, output_tokens: 3 })).toBe(8);
    expect(tokensOf({ input_tokens: 5, output_tokens: 3, total_tokens: 12 })).toBe(12);
    const rates = { input: 2.5, output: 10 };
    // 1M input at $2.50 + 100k output at $10/M = $3.50 = 3.5e9 nano-USD
    expect(costNanoUsd({ input_tokens: 1_000_000, output_tokens: 100_000, total_tokens: 1_100_000 }, rates)).toBe(
      3_500_000_000,
    );
    // Anthropic-style: cache tokens only in the total; without a cache rate they are billed as input.
    expect(
      costNanoUsd({ input_tokens: 10, output_tokens: 10, cache_read_input_tokens: 80, total_tokens: 100 }, rates),
    ).toBe(90 * 2500 + 10 * 10_000);
    // With a cache read rate, the 80 cached tokens are billed at it.
    expect(
      costNanoUsd(
        { input_tokens: 10, output_tokens: 10, cache_read_input_tokens: 80, total_tokens: 100 },
        { ...rates, cacheRead: 0.25 },
      ),
    ).toBe(10 * 2500 + 80 * 250 + 10 * 10_000);
    const price = { input_per_million: 2.5, output_per_million: 10 };
    const table = new ConfigPrices({
      'gpt-4o*': price,
      'gpt-4o-mini*': { input_per_million: 0.15, output_per_million: 0.6 },
      o3: price,
    });
    const now = Date.now();
    expect(table.lookup('gpt-4o-mini-2024-07-18')?.ratesAt(now)?.input).toBe(0.15);
    expect(table.lookup('gpt-4o-2024-08-06')?.ratesAt(now)?.input).toBe(2.5);
    expect(table.lookup('o3')?.ratesAt(now)).toEqual({ input: 2.5, output: 10 } as never);
    expect(table.lookup('o3-mini')).toBeUndefined();
  });

  test('MemoryStore admit: all checks pass or nothing is counted', async () => {
    const s = new MemoryStore();
    const checks = [
      { key: 'tok', limit: 10, inc: 0, ttlSec: 60 },
      { key: 'req', limit: 2, inc: 1, ttlSec: 60 },
    ];
    expect(await s.admit(checks)).toEqual({ ok: true });
    expect(await s.admit(checks)).toEqual({ ok: true });
    expect(await s.admit(checks)).toEqual({ ok: false, index: 1, value: 2 });
    expect(s.peek('req')).toBe(2);
    await s.add([{ key: 'tok', by: 10, ttlSec: 60 }]);
    expect(await s.admit(checks)).toEqual({ ok: false, index: 0, value: 10 });
    expect(s.peek('req')).toBe(2);
    await s.add([{ key: 'gone', by: 5, ttlSec: 0 }]);
    expect(s.peek('gone')).toBe(0);
  });
});
