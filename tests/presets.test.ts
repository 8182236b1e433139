/**
 * Presets (providers known by name, as data) and the `/<name>_passthrough` routes of
 * providers that are not built in, driven by the official SDKs against mock upstreams
 * that sit at the vendors' base paths; routes added by a reload.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { readFileSync, writeFileSync } from 'node:fs';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { compileConfig } from '../src/app/config/compile.ts';
import { validateConfig } from '../src/app/config/load.ts';
import { PROVIDERS } from '../src/providers/index.ts';
import { PRESETS } from '../src/providers/presets.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MOCK_USAGE, MockUpstream } from './support/mock-upstream.ts';
import { rawRequest } from './support/raw-http.ts';

const GROQ_KEY = fakeKey('gsk');
const FIREWORKS_KEY = fakeKey('fw');
const MINE_KEY = fakeKey('mine');
const CLAUDE_KEY = fakeKey('claude');
const VK = fakeKey('vk');
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: {
      // Presets: base_url replaces the whole base, so the mock stands at the vendor's base path.
      groq: { keys: [{ name: 'g', value: GROQ_KEY }], network_config: { base_url: `${mock.url}/openai` } },
      fireworks: { keys: [{ name: 'f', value: FIREWORKS_KEY }], network_config: { base_url: `${mock.url}/inference` } },
      ollama: { network_config: { base_url: `${mock.url}/ollama` } },
      'my-llm': {
        api: 'openai',
        keys: [{ name: 'm', value: MINE_KEY }],
        network_config: { base_url: `${mock.url}/mine` },
      },
      'my-claude': {
        custom_provider_config: { base_provider_type: 'anthropic' },
        keys: [{ name: 'c', value: CLAUDE_KEY }],
        network_config: { base_url: `${mock.url}/claude` },
      },
    },
    direct_keys: false,
    governance: { virtual_keys: [{ name: 'team', value: VK, providers: ['groq'], models: ['llama*'] }] },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

describe('presets', () => {
  test('the table: real default base URLs, compiled as the base unless base_url says otherwise', async () => {
    const config = await compileConfig(
      validateConfig({ providers: { groq: {}, fireworks: {}, perplexity: {}, ollama: {} } }, 'test'),
      'test',
    );
    const url = (name: string) =>
      PROVIDERS[config.providers[name]!.api]!.url('/v1/chat/completions', '', undefined, config.providers[name]!);
    expect(url('groq')).toBe('https://api.groq.com/openai/v1/chat/completions');
    expect(url('fireworks')).toBe('https://api.fireworks.ai/inference/v1/chat/completions');
    expect(url('ollama')).toBe('http://127.0.0.1:11434/v1/chat/completions');
    expect(PRESETS.perplexity!.baseUrl).toBe('https://api.perplexity.ai');
    expect(config.customRoutes).toEqual(['groq', 'fireworks', 'perplexity', 'ollama']);
    // Not named: not served.
    expect(config.providers.mistral).toBeUndefined();
  });

  test('groq: the OpenAI SDK at /groq_passthrough/v1 reaches /openai/v1, Bearer key, usage logged', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/groq_passthrough/v1`, apiKey: VK });
    const answer = await client.chat.completions.create({
      model: 'llama-3.3-70b-versatile',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(answer.choices[0]!.message.content).toBe('hello from mock');
    expect(mock.last.path).toBe('/openai/v1/chat/completions');
    expect(mock.last.headers.authorization).toBe(`Bearer ${GROQ_KEY}`);
    const line = await gw.waitForLine((l) => l.provider === 'groq');
    expect(line).toMatchObject({ endpoint: 'groq', model: 'llama-3.3-70b-versatile', key: 'g', status: 200 });
    expect(line.usage).toMatchObject({ input_tokens: MOCK_USAGE.input, output_tokens: MOCK_USAGE.output });
    // Governance holds on a preset: the virtual key allows llama* only.
    const refused = await client.chat.completions
      .create({ model: 'mixtral-8x7b', messages: [{ role: 'user', content: 'hi' }] })
      .catch((err: unknown) => err);
    expect(refused).toMatchObject({ status: 403 });
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toContain('skybridge_tokens_total{provider="groq",model="llama-3.3-70b-versatile"');
  });

  test('fireworks: streamed chat at /fireworks_passthrough/v1 reaches /inference/v1, usage from the last chunk', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/fireworks_passthrough/v1`, apiKey: 'dummy' });
    const stream = await client.chat.completions.create({
      model: 'accounts/fireworks/models/llama-v3p1-8b-instruct',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toContain('hello');
    expect(mock.last.path).toBe('/inference/v1/chat/completions');
    expect(mock.last.headers.authorization).toBe(`Bearer ${FIREWORKS_KEY}`);
    const line = await gw.waitForLine((l) => l.provider === 'fireworks');
    expect(line).toMatchObject({ endpoint: 'fireworks', stream: true, outcome: 'ok' });
    expect(line.usage.output_tokens).toBe(MOCK_USAGE.output);
  });

  test('ollama needs no key: with direct keys off the request goes with no credential, not a 401', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/ollama_passthrough/v1`, apiKey: 'ollama' });
    await client.models.list();
    expect(mock.last.path).toBe('/ollama/v1/models');
    expect(mock.last.headers.authorization).toBeUndefined();
    // A cloud preset without keys is refused when direct keys are off.
    const bare = await startGateway({ providers: { mistral: {} }, direct_keys: false });
    try {
      const res = await fetch(`${bare.url}/mistral_passthrough/v1/models`, { headers: { authorization: 'Bearer x' } });
      expect(res.status).toBe(401);
      expect(((await res.json()) as any).error.type).toBe('no_provider_key');
    } finally {
      await bare.stop();
    }
  });

  test('config errors name the field: no base URL for vllm, another api for a preset, a taken prefix', async () => {
    const load = (providers: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
      startGateway({ providers, ...extra });
    await expect(load({ vllm: {} })).rejects.toThrow('providers.vllm.network_config.base_url');
    await expect(load({ lmstudio: { keys: [] } })).rejects.toThrow('lmstudio has no default address');
    await expect(load({ groq: { api: 'anthropic' } })).rejects.toThrow('providers.groq.api');
    await expect(load({ genai: { api: 'gemini' } })).rejects.toThrow(
      'providers.genai: /genai_passthrough is already the route of gemini',
    );
    await expect(load({ stats: { api: 'openai' } }, { metrics: { path: '/stats_passthrough' } })).rejects.toThrow(
      'providers.stats: /stats_passthrough is already metrics.path',
    );
  });
});

describe('providers of your own at /<name>_passthrough', () => {
  test('api: openai, the OpenAI SDK, usage logged with the name as endpoint', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/my-llm_passthrough/v1`, apiKey: 'dummy' });
    const answer = await client.responses.create({ model: 'qwen3', input: 'hi' });
    expect(answer.output_text).toBe('hello from mock');
    expect(mock.last.path).toBe('/mine/v1/responses');
    expect(mock.last.headers.authorization).toBe(`Bearer ${MINE_KEY}`);
    const line = await gw.waitForLine((l) => l.provider === 'my-llm');
    expect(line).toMatchObject({ endpoint: 'my-llm', model: 'qwen3', status: 200 });
    expect(line.usage.total_tokens).toBe(MOCK_USAGE.input + MOCK_USAGE.output);
  });

  test('format anthropic: the Anthropic SDK streams through /my-claude_passthrough with x-api-key', async () => {
    const client = new Anthropic({ baseURL: `${gw.url}/my-claude_passthrough`, apiKey: 'dummy' });
    const stream = client.messages.stream({
      model: 'claude-like-1',
      max_tokens: 20,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const msg = await stream.finalMessage();
    expect(msg.content[0]).toMatchObject({ type: 'text', text: 'hello from mock' });
    expect(mock.last.path).toBe('/claude/v1/messages');
    expect(mock.last.headers['x-api-key']).toBe(CLAUDE_KEY);
    expect(mock.last.headers.authorization).toBeUndefined();
    const line = await gw.waitForLine((l) => l.provider === 'my-claude');
    expect(line).toMatchObject({ endpoint: 'my-claude', stream: true, model: 'claude-like-1' });
    expect(line.usage).toMatchObject({
      input_tokens: MOCK_USAGE.input,
      output_tokens: MOCK_USAGE.output,
      cache_read_input_tokens: MOCK_USAGE.cacheRead,
    });
  });

  test('the raw-target rule holds on a custom prefix', async () => {
    const port = Number(new URL(gw.url).port);
    for (const target of [
      '/my-llm_passthrough/v1/%2e%2e/admin',
      '/my-llm_passthrough/v1/../admin',
      '/my-llm_passthrough//v1',
    ]) {
      const res = await rawRequest(port, 'GET', target);
      expect(res.status).toBe(400);
      expect(res.body).toContain('invalid_path');
    }
    expect(mock.requests.length).toBe(0);
  });
});

describe('a reload that adds a provider', () => {
  test('routes its prefix at once; Elysia routes, plugin routes and the raw-target rule still hold', async () => {
    const t = await startGateway({
      providers: { first: { api: 'openai', network_config: { base_url: `${mock.url}/first` } } },
    });
    try {
      await Bun.sleep(20); // Elysia's own reload after listen (its modules are loaded)
      const config = JSON.parse(readFileSync(t.configPath, 'utf8'));
      config.providers.second = { api: 'openai', network_config: { base_url: `${mock.url}/second` } };
      delete config.providers.first;
      writeFileSync(t.configPath, JSON.stringify(config));
      expect(await t.gw.reload('test')).toBe(true);

      const client = new OpenAI({ baseURL: `${t.url}/second_passthrough/v1`, apiKey: 'client-key' });
      await client.models.list();
      expect(mock.last.path).toBe('/second/v1/models');
      expect(mock.last.headers.authorization).toBe('Bearer client-key');
      // A removed provider's prefix answers like an unknown provider.
      const gone = await fetch(`${t.url}/first_passthrough/v1/models`);
      expect(gone.status).toBe(404);
      expect(((await gone.json()) as any).error.type).toBe('not_found');
      // Everything else is still served.
      expect((await fetch(`${t.url}/health`)).status).toBe(200);
      expect((await fetch(`${t.url}/metrics`)).status).toBe(200);
      expect((await fetch(`${t.url}/api/stats`)).status).toBe(200);
      expect((await fetch(`${t.url}/nothing-here`)).status).toBe(404);
      const raw = await rawRequest(Number(new URL(t.url).port), 'GET', '/second_passthrough/v1/%2E%2e/x');
      expect(raw.status).toBe(400);
      // And again: routes added by one reload survive the next.
      config.providers.third = { api: 'openai', network_config: { base_url: `${mock.url}/third` } };
      writeFileSync(t.configPath, JSON.stringify(config));
      expect(await t.gw.reload('test')).toBe(true);
      expect((await fetch(`${t.url}/third_passthrough/v1/models`)).status).toBe(200);
      expect((await fetch(`${t.url}/second_passthrough/v1/models`)).status).toBe(200);
    } finally {
      await t.stop();
    }
  });
});
