/**
 * Providers beyond the built-in five: an implementation defined only in this file (what
 * a new provider file plus its registry line amounts to), and providers that exist only
 * in the config, reusing a built-in wire format, reached through the generic router
 * `/passthrough/<name>/...` with the official SDKs.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { registerProvider } from '../src/providers/index.ts';
import { bodyModel, joinUrl, keyHeaders, type Provider } from '../src/providers/provider.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MOCK_USAGE, MockUpstream } from './support/mock-upstream.ts';

/** A provider of its own: OpenAI's wire format under a base path, its key in `x-echo-key`. */
const echo: Provider = {
  id: 'echo-test',
  defaultBaseUrl: undefined,
  apiKey: { header: 'x-echo-key', prefix: 'K=' },
  genai: { system: 'echo', provider: 'echo' },
  modelOf: (_path, members) => bodyModel(members),
  streams: (_path, members) => members?.stream === true,
  url: (path, query, _key, settings) => joinUrl(`${settings.baseUrl}/echo-api`, path, query),
  authorize: keyHeaders,
  usageFormat: () => 'openai',
};
registerProvider(echo);

const ECHO_KEY = fakeKey('echo');
const VLLM_KEY = fakeKey('vllm');
const CLAUDE_KEY = fakeKey('claude-like');
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: {
      'my-echo': { api: 'echo-test', keys: [{ name: 'e', value: ECHO_KEY }], network_config: { base_url: mock.url } },
      'local-vllm': {
        api: 'openai',
        keys: [{ name: 'v', value: VLLM_KEY }],
        auth: { header: 'api-key', prefix: '' },
        network_config: { base_url: `${mock.url}/vllm` },
      },
      'claude-like': {
        custom_provider_config: { base_provider_type: 'anthropic' },
        keys: [{ name: 'c', value: CLAUDE_KEY }],
        network_config: { base_url: mock.url },
      },
      'keyless-local': { api: 'openai', network_config: { base_url: mock.url } },
      openai: { keys: [{ name: 'o', value: fakeKey() }], network_config: { base_url: `${mock.url}/real-openai` } },
    },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

describe('an implementation defined outside src/ (one object and a registration)', () => {
  test('the OpenAI SDK through /passthrough/my-echo: its URL rule and key header, usage in the log', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/passthrough/my-echo/v1`, apiKey: 'dummy' });
    const answer = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(answer.choices[0]!.message.content).toBe('hello from mock');
    expect(mock.last.path).toBe('/echo-api/v1/chat/completions');
    expect(mock.last.headers['x-echo-key']).toBe(`K=${ECHO_KEY}`);
    expect(mock.last.headers.authorization).toBeUndefined();
    const line = await gw.waitForLine((l) => l.provider === 'my-echo');
    expect(line).toMatchObject({
      endpoint: 'passthrough',
      provider: 'my-echo',
      model: 'gpt-4o-mini',
      key: 'e',
      status: 200,
    });
    expect(line.usage.input_tokens).toBe(MOCK_USAGE.input);
  });
});

describe('providers that exist only in the config', () => {
  test('api: openai with its own auth header and a base path: streamed chat through the OpenAI SDK', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/passthrough/local-vllm/v1`, apiKey: 'dummy' });
    const stream = await client.chat.completions.create({
      model: 'qwen',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'hi' }],
    });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toContain('hello');
    expect(mock.last.path).toBe('/vllm/v1/chat/completions');
    expect(mock.last.headers['api-key']).toBe(VLLM_KEY);
    expect(mock.last.headers.authorization).toBeUndefined();
    const line = await gw.waitForLine((l) => l.provider === 'local-vllm');
    expect(line).toMatchObject({ endpoint: 'passthrough', stream: true, model: 'qwen' });
    expect(line.usage.output_tokens).toBe(MOCK_USAGE.output);
  });

  test("Bifrost's custom_provider_config.base_provider_type: the Anthropic SDK, x-api-key", async () => {
    const client = new Anthropic({ baseURL: `${gw.url}/passthrough/claude-like`, apiKey: 'dummy' });
    const msg = await client.messages.create({
      model: 'claude-x',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(msg.content[0]).toMatchObject({ type: 'text', text: 'hello from mock' });
    expect(mock.last.headers['x-api-key']).toBe(CLAUDE_KEY);
    expect(mock.last.headers['anthropic-version']).toBeString();
  });

  test('without keys: the client key is forwarded (direct key), as for a built-in provider', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/passthrough/keyless-local/v1`, apiKey: 'client-own-key' });
    await client.models.list();
    expect(mock.last.headers.authorization).toBe('Bearer client-own-key');
  });

  test('built-in providers are on the generic router too; an unknown name is a JSON 404', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/passthrough/openai/v1`, apiKey: 'dummy' });
    await client.models.list();
    expect(mock.last.path).toBe('/real-openai/v1/models');
    const line = await gw.waitForLine((l) => l.path === '/v1/models' && l.provider === 'openai');
    expect(line.endpoint).toBe('passthrough');
    const res = await fetch(`${gw.url}/passthrough/nobody/v1/models`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('not_found');
  });

  test('path safety holds on the generic router', async () => {
    const res = await fetch(`${gw.url}/passthrough/local-vllm/v1/%2e%2e%2fadmin`);
    expect(res.status).toBe(400);
    expect(mock.requests.length).toBe(0);
  });
});

describe('config errors name the field', () => {
  const load = (providers: Record<string, unknown>) => startGateway({ providers });
  test('a name that is not built in needs api; an unknown api; api on a built-in name; a bad name', async () => {
    await expect(load({ groqq: { keys: [] } })).rejects.toThrow('providers.groqq.api');
    await expect(load({ foo: { api: 'nope' } })).rejects.toThrow('unknown api "nope"');
    await expect(load({ openai: { api: 'anthropic' } })).rejects.toThrow('providers.openai.api');
    await expect(load({ Bad_Name: { api: 'openai' } })).rejects.toThrow('lower-case letters, digits and dashes');
  });

  test("a virtual key's provider list must name configured providers", async () => {
    await expect(
      startGateway({ governance: { virtual_keys: [{ name: 'a', value: 'vk-abc', providers: ['opneai'] }] } }),
    ).rejects.toThrow('governance.virtual_keys[0].providers[0]');
  });
});
