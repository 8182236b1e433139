/** The seed document's Anthropic examples, run as written, against a recording mock upstream. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import Anthropic from '@anthropic-ai/sdk';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MockUpstream } from './support/mock-upstream.ts';

const GW_KEY = fakeKey('sk-ant-test');
let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: { anthropic: { keys: [{ name: 'claude', value: GW_KEY }], network_config: { base_url: mock.url } } },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

const client = () => new Anthropic({ baseURL: `${gw.url}/anthropic_passthrough`, apiKey: 'dummy-key' });

describe('Anthropic passthrough with the official SDK', () => {
  test('messages.create: x-api-key is the gateway key, no client credential upstream', async () => {
    const response = await client().messages.create({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 1024,
      messages: [{ role: 'user', content: 'hello from passthrough' }],
    });
    expect(response.content[0]!.type).toBe('text');
    expect((response.content[0] as Anthropic.TextBlock).text).toBe('hello from mock');
    const got = mock.last;
    expect(got.path).toBe('/v1/messages');
    expect(got.headers['x-api-key']).toBe(GW_KEY);
    expect(got.headers.authorization).toBeUndefined();
    expect(JSON.stringify(got.headers)).not.toContain('dummy-key');
    // The SDK sends its own anthropic-version; it passes through.
    expect(got.headers['anthropic-version']).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    expect(got.json.max_tokens).toBe(1024);
  });

  test('streamed messages: events in order, text intact', async () => {
    const stream = client().messages.stream({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 1024,
      messages: [{ role: 'user', content: 'hello from passthrough' }],
    });
    const events: string[] = [];
    stream.on('streamEvent', (e) => events.push(e.type));
    const final = await stream.finalMessage();
    expect((final.content[0] as Anthropic.TextBlock).text).toBe('hello from mock');
    expect(events).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(final.usage.output_tokens).toBe(7);
  });

  test('anthropic-beta and a client anthropic-version pass through', async () => {
    await client().messages.create(
      { model: 'claude-sonnet-4-20250514', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'anthropic-beta': 'prompt-caching-2024-07-31', 'anthropic-version': '2023-01-01' } },
    );
    expect(mock.last.headers['anthropic-beta']).toBe('prompt-caching-2024-07-31');
    expect(mock.last.headers['anthropic-version']).toBe('2023-01-01');
  });

  test('anthropic-version is added when the client sent none', async () => {
    await fetch(`${gw.url}/anthropic_passthrough/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":"claude-sonnet-4-20250514","max_tokens":1,"messages":[]}',
    });
    expect(mock.last.headers['anthropic-version']).toBe('2023-06-01');
  });

  test('seed curl example as raw fetch', async () => {
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': 'your-anthropic-key',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({
        model: 'claude-sonnet-4-20250514',
        max_tokens: 1024,
        messages: [{ role: 'user', content: 'hello from passthrough' }],
      }),
    });
    expect(res.status).toBe(200);
    expect((await res.json()).content[0].text).toBe('hello from mock');
    expect(mock.last.headers['x-api-key']).toBe(GW_KEY);
  });

  test('the request log line carries usage from message_start + message_delta', async () => {
    const stream = client().messages.stream({
      model: 'claude-haiku-log-test',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'x' }],
    });
    await stream.finalMessage();
    const line = await gw.waitForLine((l) => l.model === 'claude-haiku-log-test');
    expect(line).toMatchObject({
      provider: 'anthropic',
      endpoint: 'anthropic',
      stream: true,
      key: 'claude',
      status: 200,
      outcome: 'ok',
    });
    expect(line.usage).toEqual({
      input_tokens: 11,
      output_tokens: 7,
      cache_read_input_tokens: 3,
      cache_creation_input_tokens: 2,
      total_tokens: 23,
    });
  });
});
