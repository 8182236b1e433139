/**
 * Usage you can bill on, through the official SDKs against the recording mock upstream:
 * cost on every request of every API style (expected costs computed here from the
 * genai-prices catalog's published rates, never copied from the gateway's code), config
 * prices over the catalog, no cost for an unpriced model, `absent` usage said and counted,
 * partial usage of a stream the client left (and the budget charged the same), streams the
 * upstream cut short ending in an error the SDKs raise, `usage.add_stream_usage`, and
 * Server-Timing.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { existsSync } from 'node:fs';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import { calcPrice } from '@pydantic/genai-prices';
import { OAuth2Client } from 'google-auth-library';
import OpenAI, { AzureOpenAI } from 'openai';
import { periodWindow } from '../src/plugins/governance/limits.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import {
  anthropicStream,
  chatStream,
  geminiStream,
  MOCK_USAGE,
  MockUpstream,
  responsesStream,
} from './support/mock-upstream.ts';

const U = MOCK_USAGE;
const DUMMY = 'dummy-key';
const VK = { name: 'billed', value: fakeKey('sk-vk-billed') };

let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: {
      openai: { keys: [{ name: 'oa', value: fakeKey('sk-oa') }], network_config: { base_url: mock.url } },
      anthropic: { keys: [{ name: 'an', value: fakeKey('sk-ant') }], network_config: { base_url: mock.url } },
      gemini: { keys: [{ name: 'ge', value: fakeKey('AIza') }], network_config: { base_url: mock.url } },
      // No Vertex keys: the client's OAuth token passes (direct key), to the mock.
      vertex: { network_config: { base_url: mock.url } },
      azure: {
        keys: [
          {
            name: 'az',
            value: fakeKey('az'),
            models: ['*'],
            azure_key_config: { endpoint: mock.url, deployments: { 'gpt-4o-mini': 'team-mini' } },
          },
        ],
      },
    },
    governance: {
      virtual_keys: [{ ...VK, budget: { max_cost_usd: 1000, max_tokens: 1_000_000_000, period: 'month' } }],
      prices: { 'house-model*': { input_per_million: 1, output_per_million: 2, cache_read_per_million: 0.5 } },
    },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

let seen = 0;
/** The gateway's next request-log line. */
async function nextLine(): Promise<any> {
  const lines = await gw.waitForLines(++seen);
  return lines[seen - 1];
}

/** USD per million tokens as the catalog publishes them for this provider and model (below any tier). */
function catalogRates(providerId: string, model: string): Record<string, number> {
  const found = calcPrice({}, model, { providerId });
  if (!found) throw new Error(`the catalog has no ${providerId} ${model}`);
  const rates: Record<string, number> = {};
  for (const [k, v] of Object.entries(found.model_price)) {
    if (typeof v === 'number') rates[k] = v;
    else if (v && typeof v === 'object') rates[k] = (v as { base: number }).base;
  }
  return rates;
}

/** Expected USD: each part of the usage at its own published rate. */
function expectedUsd(
  r: Record<string, number>,
  t: { uncached: number; cacheRead?: number; cacheWrite?: number; output: number },
): number {
  return (
    (t.uncached * r.input_mtok! +
      (t.cacheRead ?? 0) * (r.cache_read_mtok ?? r.input_mtok!) +
      (t.cacheWrite ?? 0) * (r.cache_write_mtok ?? r.input_mtok!) +
      t.output * r.output_mtok!) /
    1e6
  );
}

/** The catalog's own total for the same usage (input_tokens is the whole input there). */
function catalogTotal(providerId: string, model: string, u: Record<string, number>): number {
  return calcPrice(u, model, { providerId })!.total_price;
}

const openai = (extra: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) =>
  new OpenAI({ baseURL: `${gw.url}/openai_passthrough/v1`, apiKey: DUMMY, maxRetries: 0, ...extra });
const anthropic = (apiKey = DUMMY) =>
  new Anthropic({ baseURL: `${gw.url}/anthropic_passthrough`, apiKey, maxRetries: 0 });
const gemini = () => new GoogleGenAI({ apiKey: DUMMY, httpOptions: { baseUrl: `${gw.url}/genai_passthrough` } });
function vertex() {
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: 'ya29.client-token', expiry_date: Date.now() + 3_600_000 });
  return new GoogleGenAI({
    vertexai: true,
    project: 'p',
    location: 'us-east5',
    googleAuthOptions: { authClient },
    httpOptions: { baseUrl: `${gw.url}/genai_passthrough` },
  });
}
const azure = () =>
  new AzureOpenAI({ endpoint: `${gw.url}/azure_passthrough`, apiKey: DUMMY, apiVersion: '2024-10-21', maxRetries: 0 });

const hi = [{ role: 'user' as const, content: 'hi' }];

/** The error `work` fails with (the SDKs' promises are not ones `expect().rejects` can await). */
async function failure(work: () => Promise<unknown>): Promise<Error> {
  try {
    await work();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a failure, got none');
}

describe('cost on every request, each API style, stream and not', () => {
  test('OpenAI chat: cached input at the cache rate; stream with include_usage', async () => {
    const r = catalogRates('openai', 'gpt-4o-mini');
    await openai().chat.completions.create({ model: 'gpt-4o-mini', messages: hi });
    const line = await nextLine();
    const usd = expectedUsd(r, { uncached: U.input - U.cacheRead, cacheRead: U.cacheRead, output: U.output });
    expect(line.cost_usd).toBeCloseTo(usd, 9);
    expect(line.cost_usd).toBeCloseTo(
      catalogTotal('openai', 'gpt-4o-mini', {
        input_tokens: U.input,
        cache_read_tokens: U.cacheRead,
        output_tokens: U.output,
      }),
      9,
    );
    expect(line.price_source).toBe('catalog');
    expect(line.usage_status).toBe('complete');
    expect(line.end_reason).toBeUndefined();

    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: hi,
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const _ of stream);
    const streamed = await nextLine();
    expect(streamed.cost_usd).toBeCloseTo(expectedUsd(r, { uncached: U.input, output: U.output }), 9);
    expect(streamed.usage_status).toBe('complete');
    expect(streamed.end_reason).toBe('complete');
  });

  test('OpenAI Responses, whole and streamed', async () => {
    const r = catalogRates('openai', 'gpt-4.1');
    const usd = expectedUsd(r, { uncached: U.input - U.cacheRead, cacheRead: U.cacheRead, output: U.output });
    await openai().responses.create({ model: 'gpt-4.1', input: 'hi' });
    const whole = await nextLine();
    expect(whole.cost_usd).toBeCloseTo(usd, 9);
    const stream = await openai().responses.create({ model: 'gpt-4.1', input: 'hi', stream: true });
    for await (const _ of stream);
    const streamed = await nextLine();
    expect(streamed.cost_usd).toBeCloseTo(usd, 9);
    expect([streamed.usage_status, streamed.end_reason]).toEqual(['complete', 'complete']);
  });

  test('Anthropic: input, cache reads and cache writes each at their rate, whole and streamed', async () => {
    const model = 'claude-sonnet-4-20250514';
    const r = catalogRates('anthropic', model);
    expect(r.cache_write_mtok).not.toBe(r.input_mtok);
    const usd = expectedUsd(r, {
      uncached: U.input, // Anthropic's input_tokens excludes cached input
      cacheRead: U.cacheRead,
      cacheWrite: U.cacheWrite,
      output: U.output,
    });
    await anthropic().messages.create({ model, max_tokens: 16, messages: hi });
    const whole = await nextLine();
    expect(whole.cost_usd).toBeCloseTo(usd, 9);
    expect(whole.cost_usd).toBeCloseTo(
      catalogTotal('anthropic', model, {
        input_tokens: U.input + U.cacheRead + U.cacheWrite,
        cache_read_tokens: U.cacheRead,
        cache_write_tokens: U.cacheWrite,
        output_tokens: U.output,
      }),
      9,
    );
    const stream = await anthropic().messages.create({ model, max_tokens: 16, messages: hi, stream: true });
    for await (const _ of stream);
    const streamed = await nextLine();
    expect(streamed.cost_usd).toBeCloseTo(usd, 9);
    expect([streamed.usage_status, streamed.end_reason]).toEqual(['complete', 'complete']);
  });

  test('Gemini and Vertex, whole and streamed', async () => {
    for (const [client, model, provider] of [
      [gemini(), 'gemini-2.5-flash', 'gemini'],
      [vertex(), 'gemini-2.5-pro', 'vertex'],
    ] as const) {
      const usd = expectedUsd(catalogRates('google', model), { uncached: U.input, output: U.output });
      await client.models.generateContent({ model, contents: 'hi' });
      const whole = await nextLine();
      expect([whole.provider, whole.model, whole.price_source]).toEqual([provider, model, 'catalog']);
      expect(whole.cost_usd).toBeCloseTo(usd, 9);
      const stream = await client.models.generateContentStream({ model, contents: 'hi' });
      for await (const _ of stream);
      const streamed = await nextLine();
      expect(streamed.cost_usd).toBeCloseTo(usd, 9);
      expect([streamed.usage_status, streamed.end_reason]).toEqual(['complete', 'complete']);
    }
  });

  test("Azure: a deployment is priced as the model the key's deployments map to it", async () => {
    const r = catalogRates('azure', 'gpt-4o-mini');
    await azure().chat.completions.create({ model: 'team-mini', messages: hi });
    const whole = await nextLine();
    expect(mock.last.path).toBe('/openai/deployments/team-mini/chat/completions');
    expect(whole.model).toBe('team-mini');
    expect(whole.cost_usd).toBeCloseTo(
      expectedUsd(r, { uncached: U.input - U.cacheRead, cacheRead: U.cacheRead, output: U.output }),
      9,
    );
    const stream = await azure().chat.completions.create({
      model: 'team-mini',
      messages: hi,
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const _ of stream);
    const streamed = await nextLine();
    expect(streamed.cost_usd).toBeCloseTo(expectedUsd(r, { uncached: U.input, output: U.output }), 9);
  });

  test('which catalog provider prices a provider: its name, else its implementation vendor', async () => {
    const g = await startGateway({
      providers: {
        bedrock: { keys: [{ value: fakeKey('AKIA'), bedrock_key_config: { region: 'us-east-1' } }] },
        'azure-eu': { api: 'azure' },
        groq: { api: 'openai', network_config: { base_url: mock.url } },
        'my-vllm': { api: 'openai', network_config: { base_url: mock.url } },
      },
    });
    try {
      const p = g.gw.config.providers;
      const source = (provider: string, model: string) => p[provider]!.prices.lookup(model)?.source;
      expect(source('bedrock', 'anthropic.claude-3-5-sonnet-20241022-v2:0')).toBe('catalog');
      expect(source('azure-eu', 'gpt-4o-mini')).toBe('catalog'); // api: azure prices as Azure
      expect(source('groq', 'llama-3.3-70b-versatile')).toBe('catalog'); // Groq is in the catalog by name
      // An OpenAI-compatible host of your own is not priced at OpenAI's rates.
      expect(source('my-vllm', 'gpt-4o-mini')).toBeUndefined();
      expect(p.openai!.prices.lookup('gpt-4o-mini')?.ratesAt(Date.now())).toMatchObject({
        input: catalogRates('openai', 'gpt-4o-mini').input_mtok,
      });
    } finally {
      await g.stop();
    }
  });

  test('config prices win over the catalog; an unpriced model has no cost at all (never 0)', async () => {
    mock.respondWith((_req, rec) =>
      rec.json?.model?.startsWith('house-model') || rec.json?.model === 'nobody-prices-this'
        ? Response.json({
            id: 'x',
            object: 'chat.completion',
            model: rec.json.model,
            choices: [],
            usage: { prompt_tokens: 1000, completion_tokens: 100, prompt_tokens_details: { cached_tokens: 400 } },
          })
        : undefined,
    );
    await openai().chat.completions.create({ model: 'house-model-2', messages: hi });
    const priced = await nextLine();
    expect(priced.price_source).toBe('config');
    expect(priced.cost_usd).toBeCloseTo((600 * 1 + 400 * 0.5 + 100 * 2) / 1e6, 12);

    await openai().chat.completions.create({ model: 'nobody-prices-this', messages: hi });
    const unpriced = await nextLine();
    expect(unpriced.usage.input_tokens).toBe(1000);
    expect(unpriced.usage_status).toBe('complete');
    expect('cost_usd' in unpriced).toBe(false);
    expect('price_source' in unpriced).toBe(false);
  });

  test('answers without usage: GET /v1/models is not_applicable, errors too', async () => {
    await openai().models.list();
    const models = await nextLine();
    expect(models.usage_status).toBe('not_applicable');
    expect('cost_usd' in models).toBe(false);
    mock.respondWith(() => Response.json({ error: { message: 'bad' } }, { status: 400 }));
    expect(
      (await failure(() => openai().chat.completions.create({ model: 'gpt-4o-mini', messages: hi }))).message,
    ).toContain('bad');
    expect((await nextLine()).usage_status).toBe('not_applicable');
  });
});

describe('no silent zeros', () => {
  test('a chat stream without include_usage is absent, with a note, and counted', async () => {
    // As OpenAI: a usage chunk only when include_usage is true.
    mock.respondWith((req, rec) =>
      rec.json?.stream && !rec.json.stream_options ? mock.sse(req, chatStream(rec.json.model, false)) : undefined,
    );
    const stream = await openai().chat.completions.create({ model: 'gpt-4o-mini', messages: hi, stream: true });
    for await (const _ of stream);
    const line = await nextLine();
    expect(mock.last.json.stream_options).toBeUndefined();
    expect(line.usage_status).toBe('absent');
    expect(line.usage_note).toContain('stream_options.include_usage');
    expect(line.usage_note).toContain('usage.add_stream_usage');
    expect(line.end_reason).toBe('complete');
    expect('usage' in line).toBe(false);
    expect('cost_usd' in line).toBe(false);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toContain('skybridge_usage_absent_total{provider="openai",endpoint="openai"} 1');
  });

  test('usage.add_stream_usage asks the upstream for it: one member added, the rest byte for byte', async () => {
    const g = await startGateway({
      usage: { add_stream_usage: true },
      providers: { openai: { keys: [{ value: fakeKey('sk-oa') }], network_config: { base_url: mock.url } } },
    });
    try {
      const body = '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi ü"}]}';
      const send = (b: string) =>
        fetch(`${g.url}/openai_passthrough/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: b,
        }).then((r) => r.text());
      const text = await send(body);
      expect(new TextDecoder().decode(mock.last.body)).toBe(
        `{"stream_options":{"include_usage":true},${body.slice(1)}`,
      );
      expect(text).toContain('"usage"'); // the extra chunk reached the client
      const line = (await g.waitForLines(1))[0];
      expect(line.usage_status).toBe('complete');
      expect(line.bytes_in).toBe(Buffer.byteLength(body));
      // Inside an existing stream_options; a client's own include_usage (even false) stays.
      const withOptions = '{"model":"gpt-4o-mini","stream":true,"stream_options":{ "x":1 },"messages":[]}';
      await send(withOptions);
      expect(new TextDecoder().decode(mock.last.body)).toBe(withOptions.replace('{ "x"', '{"include_usage":true, "x"'));
      const declined = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false},"messages":[]}';
      await send(declined);
      expect(new TextDecoder().decode(mock.last.body)).toBe(declined);
      // Not a stream: untouched.
      const plain = '{"model":"gpt-4o-mini","messages":[]}';
      await send(plain);
      expect(new TextDecoder().decode(mock.last.body)).toBe(plain);
      // Through the SDK: it now gets a usage chunk it did not ask for.
      const client = new OpenAI({ baseURL: `${g.url}/openai_passthrough/v1`, apiKey: DUMMY, maxRetries: 0 });
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: hi, stream: true });
      let usage: unknown;
      for await (const chunk of stream) usage ??= chunk.usage ?? undefined;
      expect(usage).toEqual({ prompt_tokens: U.input, completion_tokens: U.output, total_tokens: U.input + U.output });
    } finally {
      await g.stop();
    }
  });
});

/** An Anthropic stream of `n` text deltas of `text`, `gapMs` apart. */
function longAnthropicStream(n: number, text: string) {
  const frames = anthropicStream('claude-sonnet-4-20250514');
  const delta = frames[2]!;
  const many = Array.from({ length: n }, () => [
    delta[0],
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } },
  ]) as typeof frames;
  return [...frames.slice(0, 2), ...many, ...frames.slice(4)];
}

describe('partial usage of a stream cut short', () => {
  test('client abort after N Anthropic deltas: partial, output by the estimate rule, the budget charged the same', async () => {
    const text = 'forty bytes of generated text, no more..'; // 40 bytes: 10 tokens by the rule
    expect(Buffer.byteLength(text)).toBe(40);
    mock.respondWith((req, rec) => (rec.json?.stream ? mock.sse(req, longAnthropicStream(200, text), 10) : undefined));
    const client = anthropic(VK.value);
    const stream = await client.messages.create({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 4000,
      messages: hi,
      stream: true,
    });
    const N = 5;
    let deltas = 0;
    for await (const event of stream) {
      if (event.type === 'content_block_delta' && ++deltas === N) break; // the SDK aborts the request
    }
    const line = await nextLine();
    expect(line.outcome).toBe('client_aborted');
    expect(line.end_reason).toBe('client_abort');
    expect(line.usage_status).toBe('partial');
    expect(line.output_tokens_estimated).toBe(true);
    expect(line.usage.input_tokens).toBe(U.input); // from message_start
    expect(line.usage.output_tokens).toBeGreaterThanOrEqual(N * 10);
    expect(line.usage.output_tokens).toBeLessThan(100 * 10);
    expect(line.usage.output_tokens % 10).toBe(0);
    const r = catalogRates('anthropic', 'claude-sonnet-4-20250514');
    expect(line.cost_usd).toBeCloseTo(
      expectedUsd(r, {
        uncached: U.input,
        cacheRead: U.cacheRead,
        cacheWrite: U.cacheWrite,
        output: line.usage.output_tokens,
      }),
      9,
    );
    // The budget moved by exactly what the log line says.
    const governance = gw.gw.plugins.governance;
    await governance.settled();
    const w = periodWindow('month', governance.now());
    const key = (counter: string) => `skybridge:gov:{${VK.name}}:${counter}:month:${Math.floor(w.start / 1000)}`;
    expect(governance.memory.peek(key('usd'))).toBe(Math.round(line.cost_usd * 1e9));
    expect(governance.memory.peek(key('tok'))).toBe(line.usage.total_tokens);
    expect(line.usage.total_tokens).toBe(U.input + U.cacheRead + U.cacheWrite + line.usage.output_tokens);
  });
});

describe('truthful stream endings', () => {
  /** The mock answers streams with these frames only: no terminator. */
  function cutAfter(frames: Array<[string | undefined, unknown]>) {
    mock.respondWith((req, rec) =>
      rec.json?.stream || rec.path.includes(':stream') ? mock.sse(req, frames) : undefined,
    );
  }

  test('an upstream that closes mid-stream: the openai SDK raises, logged upstream_eof_no_terminator', async () => {
    cutAfter(chatStream('gpt-4o-mini').slice(0, 2));
    const stream = await openai().chat.completions.create({
      model: 'gpt-4o-mini',
      messages: hi,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    await failure(async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    });
    expect(text).toBe('hello '); // what was relayed reached the client first
    const line = await nextLine();
    expect(line.end_reason).toBe('upstream_eof_no_terminator');
    expect(line.outcome).toBe('upstream_error');
    expect(line.status).toBe(200);
    expect(line.error.type).toBe('upstream_broken');
    expect(line.usage_status).toBe('partial');
    expect(line.usage.output_tokens).toBe(Math.ceil(Buffer.byteLength('hello ') / 4));
    expect(line.output_tokens_estimated).toBe(true);
  });

  test('the same for Responses streams', async () => {
    cutAfter(responsesStream('gpt-4.1').slice(0, 2));
    const stream = await openai().responses.create({ model: 'gpt-4.1', input: 'hi', stream: true });
    await failure(async () => {
      for await (const _ of stream);
    });
    expect((await nextLine()).end_reason).toBe('upstream_eof_no_terminator');
  });

  test('the anthropic SDK raises', async () => {
    cutAfter(anthropicStream('claude-sonnet-4-20250514').slice(0, 3));
    const stream = await anthropic().messages.create({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 16,
      messages: hi,
      stream: true,
    });
    await failure(async () => {
      for await (const _ of stream);
    });
    const line = await nextLine();
    expect(line.end_reason).toBe('upstream_eof_no_terminator');
    expect(line.usage.input_tokens).toBe(U.input);
    expect(line.usage_status).toBe('partial');
  });

  test('the genai SDK raises, for Gemini and Vertex (no chunk with finishReason)', async () => {
    for (const client of [gemini(), vertex()]) {
      cutAfter(geminiStream().slice(0, 1));
      const stream = await client.models.generateContentStream({ model: 'gemini-2.5-flash', contents: 'hi' });
      await failure(async () => {
        for await (const _ of stream);
      });
      const line = await nextLine();
      expect(line.end_reason).toBe('upstream_eof_no_terminator');
      expect(line.usage.input_tokens).toBe(U.input);
      mock.reset();
    }
  });

  test('an error event mid-stream ends in an error too: upstream_error', async () => {
    cutAfter([
      ...anthropicStream('claude-sonnet-4-20250514').slice(0, 3),
      ['error', { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }],
    ]);
    const stream = await anthropic().messages.create({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 16,
      messages: hi,
      stream: true,
    });
    const err = await failure(async () => {
      for await (const _ of stream);
    });
    expect(err.message).toContain('Overloaded');
    const line = await nextLine();
    expect(line.end_reason).toBe('upstream_error');
    expect(line.outcome).toBe('upstream_error');
  });

  test('the official Python SDKs raise too (openai, anthropic, google-genai)', async () => {
    const python = '.venv-seed/bin/python';
    if (!existsSync(python)) throw new Error(`${python} is missing: run scripts/setup-test-deps`);
    mock.respondWith((req, rec) =>
      rec.path.endsWith('/chat/completions')
        ? mock.sse(req, chatStream('gpt-4o-mini').slice(0, 2))
        : rec.path.endsWith('/messages')
          ? mock.sse(req, anthropicStream().slice(0, 3))
          : rec.path.includes(':stream')
            ? mock.sse(req, geminiStream().slice(0, 1))
            : undefined,
    );
    const script = `
import sys, openai, anthropic
from google import genai
from google.genai import types
base = sys.argv[1]
def run(name, f):
    try:
        f()
        print(name, "completed")
    except Exception as e:
        print(name, "raised", type(e).__name__)
def o():
    c = openai.OpenAI(base_url=base + "/openai_passthrough/v1", api_key="dummy", max_retries=0)
    for _ in c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True): pass
def a():
    c = anthropic.Anthropic(base_url=base + "/anthropic_passthrough", api_key="dummy", max_retries=0)
    for _ in c.messages.create(model="claude-sonnet-4-20250514", max_tokens=5, messages=[{"role": "user", "content": "hi"}], stream=True): pass
def g():
    c = genai.Client(api_key="dummy", http_options=types.HttpOptions(base_url=base + "/genai_passthrough"))
    for _ in c.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"): pass
run("openai", o)
run("anthropic", a)
run("google-genai", g)
`;
    const proc = Bun.spawn([python, '-c', script, gw.url], { stdout: 'pipe', stderr: 'pipe' });
    const out = await new Response(proc.stdout).text();
    await proc.exited;
    const lines = out.trim().split('\n');
    expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual([
      'openai raised',
      'anthropic raised',
      'google-genai raised',
    ]);
    const logged = [await nextLine(), await nextLine(), await nextLine()];
    expect(logged.map((l) => l.end_reason)).toEqual([
      'upstream_eof_no_terminator',
      'upstream_eof_no_terminator',
      'upstream_eof_no_terminator',
    ]);
  }, 60_000);

  test('stream endings are counted by reason', async () => {
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    const count = (provider: string, reason: string) =>
      Number(
        new RegExp(`skybridge_stream_end_total\\{provider="${provider}",reason="${reason}"\\} (\\S+)`).exec(
          metrics,
        )?.[1] ?? 0,
      );
    expect(count('openai', 'upstream_eof_no_terminator')).toBe(3); // the openai SDK, Responses, Python
    expect(count('anthropic', 'upstream_error')).toBe(1);
    expect(count('anthropic', 'client_abort')).toBe(1);
    expect(count('openai', 'complete')).toBeGreaterThanOrEqual(3);
    const cost = /skybridge_cost_usd_total\{provider="openai",model="gpt-4o-mini"\} (\S+)/.exec(metrics);
    expect(Number(cost?.[1])).toBeGreaterThan(0);
  });
});

describe('Server-Timing', () => {
  /** RFC 8941-ish: `name;dur=N` metrics, comma separated. */
  function parseServerTiming(value: string | null): { [name: string]: number; gw: number; upstream: number } {
    const out = {} as { [name: string]: number; gw: number; upstream: number };
    for (const part of (value ?? '').split(',')) {
      const m = /^\s*([A-Za-z0-9_-]+)\s*;\s*dur=([0-9.]+)\s*$/.exec(part);
      if (!m) throw new Error(`not a Server-Timing metric: ${part}`);
      out[m[1]!] = Number(m[2]);
    }
    return out;
  }

  test('every relayed answer says gw and upstream time; gw_us on the log line', async () => {
    mock.respondWith((_req, rec) =>
      rec.json?.model === 'slow-mini'
        ? Bun.sleep(60).then(() =>
            Response.json({ id: 'x', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } }),
          )
        : undefined,
    );
    const { response } = await openai().chat.completions.create({ model: 'slow-mini', messages: hi }).withResponse();
    const timing = parseServerTiming(response.headers.get('server-timing'));
    expect(Object.keys(timing)).toEqual(['gw', 'upstream']);
    expect(timing.upstream).toBeGreaterThanOrEqual(55);
    expect(timing.gw).toBeGreaterThan(0);
    expect(timing.gw).toBeLessThan(timing.upstream);
    const line = await nextLine();
    expect(line.ttfb_ms).toBe(timing.upstream);
    expect(line.gw_us).toBeGreaterThan(0);
    expect(line.gw_us / 1000).toBeLessThan(line.latency_ms - 55);

    const stream = await openai()
      .chat.completions.create({ model: 'gpt-4o-mini', messages: hi, stream: true })
      .withResponse();
    for await (const _ of stream.data);
    expect(Object.keys(parseServerTiming(stream.response.headers.get('server-timing')))).toEqual(['gw', 'upstream']);
    expect((await nextLine()).gw_us).toBeGreaterThan(0);
  });

  test("an upstream's own Server-Timing stays; server.server_timing: false sends none", async () => {
    mock.respondWith(() => Response.json({ ok: true }, { headers: { 'server-timing': 'cdn;dur=1.5' } }));
    const res = await fetch(`${gw.url}/openai_passthrough/v1/models`);
    expect(Object.keys(parseServerTiming(res.headers.get('server-timing')))).toEqual(['cdn', 'gw', 'upstream']);
    await nextLine();
    const g = await startGateway({
      server: { server_timing: false },
      providers: { openai: { network_config: { base_url: mock.url } } },
    });
    try {
      mock.reset();
      const plain = await fetch(`${g.url}/openai_passthrough/v1/models`);
      expect(plain.headers.get('server-timing')).toBeNull();
      expect((await g.waitForLines(1))[0].gw_us).toBeGreaterThan(0);
    } finally {
      await g.stop();
    }
  });
});
