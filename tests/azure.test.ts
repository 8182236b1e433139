/**
 * Azure passthrough: the seed document's Azure examples through the official SDKs
 * (AzureOpenAI, OpenAI on Azure's v1 API, Anthropic on Azure AI Foundry) and its curl,
 * against a recording mock upstream standing in for the Azure endpoint.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { AzureOpenAI } from 'openai';
import { azure, azureApiVersion, DEFAULT_AZURE_API_VERSION } from '../src/providers/azure.ts';
import { ClientRecorder } from './support/client-recorder.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { CHAT_STREAM_TEXT, MOCK_USAGE, MockUpstream, type Recorded } from './support/mock-upstream.ts';

const DUMMY = 'dummy-key';
const USAGE = {
  input_tokens: MOCK_USAGE.input,
  output_tokens: MOCK_USAGE.output,
  total_tokens: MOCK_USAGE.input + MOCK_USAGE.output,
};

let mock: MockUpstream;
beforeAll(() => {
  mock = new MockUpstream();
});
afterAll(async () => {
  await mock.stop();
});
beforeEach(() => mock.reset());

/** No client credential (nor anything carrying the dummy key) reached the upstream. */
function expectNoClientCredential(got: Recorded, gatewayKey: string, header: 'api-key' | 'x-api-key') {
  expect(got.headers[header]).toBe(gatewayKey);
  for (const h of ['authorization', 'api-key', 'x-api-key', 'x-goog-api-key'] as const) {
    if (h !== header) expect(got.headers[h]).toBeUndefined();
  }
  expect(JSON.stringify(got.headers)).not.toContain(DUMMY);
  expect(got.query).not.toContain(DUMMY);
}

/** The body bytes that reached the upstream are the ones the SDK sent. */
function expectSameBody(rec: ClientRecorder, got: Recorded) {
  expect(rec.last.body.byteLength).toBeGreaterThan(0);
  expect(Buffer.from(got.body).equals(Buffer.from(rec.last.body))).toBe(true);
}

/** Waits for the gateway's next request-log line. */
function logReader(gw: () => TestGateway) {
  let seen = 0;
  return async () => {
    const lines = await gw().waitForLines(++seen);
    expect(lines.length).toBe(seen);
    return lines[seen - 1];
  };
}

describe('key config with api_version (key wins)', () => {
  const KEY = fakeKey('az-gw');
  const KEY_VERSION = '2024-06-01';
  let gw: TestGateway;
  const nextLine = logReader(() => gw);
  beforeAll(async () => {
    gw = await startGateway({
      providers: {
        azure: {
          keys: [
            {
              name: 'eastus',
              value: KEY,
              models: ['*'],
              azure_key_config: { endpoint: mock.url, api_version: KEY_VERSION },
            },
          ],
        },
      },
    });
  });
  afterAll(() => gw.stop());

  const azureClient = (rec: ClientRecorder) =>
    new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      apiKey: DUMMY,
      apiVersion: '2024-10-21',
      fetch: rec.fetch,
    });

  test('AzureOpenAI chat.completions.create: deployment path, key api-version over the client one, api-key = gateway key', async () => {
    const rec = new ClientRecorder();
    const response = await azureClient(rec).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hello from azure passthrough' }],
    });
    expect(response.choices[0]!.message.content).toBe('hello from mock');
    expect(rec.last.url.searchParams.get('api-version')).toBe('2024-10-21');
    expect(rec.last.headers['api-key']).toBe(DUMMY);

    const got = mock.last;
    expect(got.method).toBe('POST');
    expect(got.path).toBe('/openai/deployments/gpt-4o/chat/completions');
    expect(got.query).toBe(`api-version=${KEY_VERSION}`);
    expectNoClientCredential(got, KEY, 'api-key');
    expectSameBody(rec, got);

    const line = await nextLine();
    expect(line).toMatchObject({
      endpoint: 'azure',
      provider: 'azure',
      model: 'gpt-4o',
      key: 'eastus',
      status: 200,
      stream: false,
      outcome: 'ok',
    });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('AzureOpenAI streamed chat completion: chunks intact, usage logged', async () => {
    const rec = new ClientRecorder();
    const stream = await azureClient(rec).chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hello from azure passthrough' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(CHAT_STREAM_TEXT.join(''));
    expect(usage?.total_tokens).toBe(USAGE.total_tokens);
    const got = mock.last;
    expect(got.path).toBe('/openai/deployments/gpt-4o/chat/completions');
    expect(got.query).toBe(`api-version=${KEY_VERSION}`);
    expectNoClientCredential(got, KEY, 'api-key');
    expectSameBody(rec, got);

    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'azure', model: 'gpt-4o', stream: true, status: 200, outcome: 'ok' });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('an Entra ID token from the client (azureADTokenProvider) never reaches Azure', async () => {
    const rec = new ClientRecorder();
    const client = new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      azureADTokenProvider: async () => `${DUMMY}-entra`,
      apiVersion: '2024-10-21',
      fetch: rec.fetch,
    });
    await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    expect(rec.last.headers.authorization).toBe(`Bearer ${DUMMY}-entra`);
    expectNoClientCredential(mock.last, KEY, 'api-key');
    await nextLine();
  });

  test('OpenAI client at /azure_passthrough/openai/v1/: responses.create, no dated api-version injected', async () => {
    const rec = new ClientRecorder();
    const client = new OpenAI({ baseURL: `${gw.url}/azure_passthrough/openai/v1/`, apiKey: DUMMY, fetch: rec.fetch });
    const response = await client.responses.create({ model: 'gpt-4.1', input: 'hello from azure passthrough' });
    expect(response.output_text).toBe('hello from mock');
    expect(rec.last.headers.authorization).toBe(`Bearer ${DUMMY}`);

    const got = mock.last;
    expect(got.path).toBe('/openai/v1/responses');
    // The key's dated api_version is not for the v1 API (Azure refuses it there).
    expect(got.query).toBe('');
    expectNoClientCredential(got, KEY, 'api-key');
    expectSameBody(rec, got);

    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'azure', model: 'gpt-4.1', status: 200 });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('OpenAI client on the v1 API, streamed responses, client api-version=preview passes', async () => {
    const rec = new ClientRecorder();
    const client = new OpenAI({
      baseURL: `${gw.url}/azure_passthrough/openai/v1/`,
      apiKey: DUMMY,
      defaultQuery: { 'api-version': 'preview' },
      fetch: rec.fetch,
    });
    const stream = await client.responses.create({
      model: 'gpt-4.1',
      input: 'hello from azure passthrough',
      stream: true,
    });
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    expect(types).toEqual(['response.created', 'response.output_text.delta', 'response.completed']);
    expect(text).toBe('hello from mock');
    const got = mock.last;
    expect(got.path).toBe('/openai/v1/responses');
    expect(got.query).toBe('api-version=preview');
    expectNoClientCredential(got, KEY, 'api-key');
    expectSameBody(rec, got);

    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'azure', model: 'gpt-4.1', stream: true });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('Anthropic client at /azure_passthrough: Claude on Foundry at /anthropic/v1/messages with x-api-key', async () => {
    const rec = new ClientRecorder();
    const client = new Anthropic({ baseURL: `${gw.url}/azure_passthrough`, apiKey: DUMMY, fetch: rec.fetch });
    const response = await client.messages.create({
      model: 'claude-sonnet-4-20250514',
      max_tokens: 1024,
      messages: [{ role: 'user', content: 'hello from azure passthrough' }],
    });
    expect((response.content[0] as Anthropic.TextBlock).text).toBe('hello from mock');
    expect(rec.last.url.pathname).toBe('/azure_passthrough/v1/messages');

    const got = mock.last;
    expect(got.path).toBe('/anthropic/v1/messages');
    expect(got.query).toBe('');
    expectNoClientCredential(got, KEY, 'x-api-key');
    expect(got.headers['anthropic-version']).toBe(rec.last.headers['anthropic-version']!);
    expectSameBody(rec, got);

    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'azure', model: 'claude-sonnet-4-20250514', status: 200 });
    expect(line.usage).toMatchObject({
      input_tokens: MOCK_USAGE.input,
      output_tokens: MOCK_USAGE.output,
      cache_read_input_tokens: MOCK_USAGE.cacheRead,
    });
  });

  test('Anthropic client at /azure_passthrough, streamed', async () => {
    const rec = new ClientRecorder();
    const client = new Anthropic({ baseURL: `${gw.url}/azure_passthrough`, apiKey: DUMMY, fetch: rec.fetch });
    const final = await client.messages
      .stream({
        model: 'claude-sonnet-4-20250514',
        max_tokens: 64,
        messages: [{ role: 'user', content: 'hello from azure passthrough' }],
      })
      .finalMessage();
    expect((final.content[0] as Anthropic.TextBlock).text).toBe('hello from mock');
    const got = mock.last;
    expect(got.path).toBe('/anthropic/v1/messages');
    expectNoClientCredential(got, KEY, 'x-api-key');
    expectSameBody(rec, got);
    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'azure', stream: true });
    expect(line.usage).toMatchObject({ input_tokens: MOCK_USAGE.input, output_tokens: MOCK_USAGE.output });
  });

  test('the seed curl (no credentials at all): key api-version and api-key added', async () => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hello from azure passthrough' }] });
    const res = await fetch(`${gw.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).choices[0].message.content).toBe('hello from mock');
    const got = mock.last;
    expect(got.path).toBe('/openai/deployments/gpt-4o/chat/completions');
    expect(got.query).toBe(`api-version=${KEY_VERSION}`);
    expect(got.headers['api-key']).toBe(KEY);
    expect(new TextDecoder().decode(got.body)).toBe(body);
    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'azure', model: 'gpt-4o', key: 'eastus' });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('every client credential header is dropped, the rest of the query is kept byte for byte', async () => {
    const res = await fetch(
      `${gw.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions?x=a%20b&api-version=2023-05-15&y=%2B1`,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'api-key': `${DUMMY}-1`,
          authorization: `Bearer ${DUMMY}-2`,
          'x-api-key': `${DUMMY}-3`,
          'x-goog-api-key': `${DUMMY}-4`,
        },
        body: JSON.stringify({ messages: [] }),
      },
    );
    expect(res.status).toBe(200);
    const got = mock.last;
    expect(got.query).toBe(`x=a%20b&y=%2B1&api-version=${KEY_VERSION}`);
    expectNoClientCredential(got, KEY, 'api-key');
    await nextLine();
  });
});

describe('key config without api_version (client or default)', () => {
  const KEY = fakeKey('az-gw');
  let gw: TestGateway;
  const nextLine = logReader(() => gw);
  beforeAll(async () => {
    gw = await startGateway({
      // direct_keys: true must not matter for Azure: client credentials are never forwarded.
      direct_keys: true,
      providers: {
        azure: {
          keys: [{ name: 'westus', value: KEY, models: ['*'], azure_key_config: { endpoint: `${mock.url}/` } }],
        },
      },
    });
  });
  afterAll(() => gw.stop());

  test("AzureOpenAI: the client's api-version is used", async () => {
    const rec = new ClientRecorder();
    const client = new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      apiKey: DUMMY,
      apiVersion: '2025-01-01-preview',
      fetch: rec.fetch,
    });
    const response = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'hello from azure passthrough' }],
    });
    expect(response.choices[0]!.message.content).toBe('hello from mock');
    const got = mock.last;
    expect(got.path).toBe('/openai/deployments/gpt-4o/chat/completions');
    expect(got.query).toBe('api-version=2025-01-01-preview');
    expectNoClientCredential(got, KEY, 'api-key');
    expectSameBody(rec, got);
    await nextLine();
  });

  test('AzureOpenAI with a deployment option: other deployment API (embeddings) gets the client version', async () => {
    const rec = new ClientRecorder();
    const client = new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      apiKey: DUMMY,
      apiVersion: '2024-10-21',
      deployment: 'text-embed',
      fetch: rec.fetch,
    });
    mock.respondWith((_req, r) =>
      r.path.endsWith('/embeddings')
        ? Response.json({
            object: 'list',
            data: [{ object: 'embedding', index: 0, embedding: [0.5] }],
            model: 'x',
            usage: { prompt_tokens: 2, total_tokens: 2 },
          })
        : undefined,
    );
    const out = await client.embeddings.create({ model: 'ignored-by-azure', input: 'hi', encoding_format: 'float' });
    expect(out.data[0]!.embedding).toEqual([0.5]);
    expect(mock.last.path).toBe('/openai/deployments/text-embed/embeddings');
    expect(mock.last.query).toBe('api-version=2024-10-21');
    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'azure', model: 'text-embed' });
  });

  test(`the seed curl without api-version: the default ${DEFAULT_AZURE_API_VERSION} is added`, async () => {
    const res = await fetch(`${gw.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hello from azure passthrough' }] }),
    });
    expect(res.status).toBe(200);
    expect(mock.last.query).toBe(`api-version=${DEFAULT_AZURE_API_VERSION}`);
    expect(mock.last.headers['api-key']).toBe(KEY);
    await nextLine();
  });

  test('OpenAI client on the v1 API: no api-version at all', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/azure_passthrough/openai/v1/`, apiKey: DUMMY });
    await client.responses.create({ model: 'gpt-4.1', input: 'x' });
    expect(mock.last.path).toBe('/openai/v1/responses');
    expect(mock.last.query).toBe('');
    await nextLine();
  });
});

describe('key selection and deployments', () => {
  const EAST = fakeKey('az-east');
  const WEST = fakeKey('az-west');
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({
      providers: {
        azure: {
          keys: [
            // Endpoints with a path let the mock tell which key's endpoint was used.
            {
              name: 'east',
              value: EAST,
              models: ['gpt-4o'],
              azure_key_config: { endpoint: `${mock.url}/east`, deployments: { 'gpt-4o': 'east-gpt4o' } },
            },
            {
              name: 'west',
              value: WEST,
              models: ['gpt-4.1', 'o4-mini'],
              azure_key_config: { endpoint: `${mock.url}/west`, api_version: '2025-04-01-preview' },
            },
          ],
        },
      },
    });
  });
  afterAll(() => gw.stop());

  const az = () =>
    new AzureOpenAI({ endpoint: `${gw.url}/azure_passthrough`, apiKey: DUMMY, apiVersion: '2024-10-21' });

  test('the deployment name is the model: each request goes to the key (and endpoint) that allows it', async () => {
    for (let i = 0; i < 3; i++) {
      await az().chat.completions.create({ model: 'gpt-4.1', messages: [{ role: 'user', content: 'x' }] });
      expect(mock.last.path).toBe('/west/openai/deployments/gpt-4.1/chat/completions');
      expect(mock.last.query).toBe('api-version=2025-04-01-preview');
      expect(mock.last.headers['api-key']).toBe(WEST);
    }
  });

  test("a model mapped in the key's deployments goes to that deployment; the deployment name itself works too", async () => {
    await az().chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    expect(mock.last.path).toBe('/east/openai/deployments/east-gpt4o/chat/completions');
    expect(mock.last.headers['api-key']).toBe(EAST);
    await az().chat.completions.create({ model: 'east-gpt4o', messages: [{ role: 'user', content: 'x' }] });
    expect(mock.last.path).toBe('/east/openai/deployments/east-gpt4o/chat/completions');
    expect(mock.last.headers['api-key']).toBe(EAST);
  });

  test('a deployment no key allows: 4xx JSON error naming provider and model, nothing sent upstream', async () => {
    const err = await az()
      .chat.completions.create({ model: 'gpt-35-turbo', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBeGreaterThanOrEqual(400);
    expect(e.status).toBeLessThan(500);
    expect(JSON.stringify(e.error)).toContain('gpt-35-turbo');
    expect(JSON.stringify(e.error)).toContain('azure');
    expect(mock.requests.length).toBe(0);
  });
});

describe('network_config.base_url overrides the key endpoint', () => {
  const KEY = fakeKey('az-gw');
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({
      providers: {
        azure: {
          // Port 9 on loopback refuses connections: if the endpoint were used the test fails.
          keys: [
            { name: 'k', value: KEY, azure_key_config: { endpoint: 'http://127.0.0.1:9', api_version: '2024-10-21' } },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
  });
  afterAll(() => gw.stop());

  test('requests reach base_url', async () => {
    const client = new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      apiKey: DUMMY,
      apiVersion: '2024-10-21',
    });
    await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    expect(mock.last.path).toBe('/openai/deployments/gpt-4o/chat/completions');
    expect(mock.last.headers['api-key']).toBe(KEY);
  });
});

describe('Azure without a usable key', () => {
  for (const [label, azureConfig] of [
    [
      'a key without azure_key_config.endpoint',
      { keys: [{ name: 'noendpoint', value: fakeKey('az'), azure_key_config: { api_version: '2024-10-21' } }] },
    ],
    ['no azure provider at all', undefined],
  ] as const) {
    test(`${label}: JSON error naming azure_key_config.endpoint, the client key is forwarded nowhere`, async () => {
      const gw = await startGateway({ providers: azureConfig ? { azure: azureConfig } : {} });
      try {
        const res = await fetch(
          `${gw.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21`,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'api-key': DUMMY },
            body: JSON.stringify({ messages: [] }),
          },
        );
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.headers.get('content-type')).toContain('application/json');
        const body = (await res.json()) as { error: { type: string; message: string } };
        expect(body.error.message).toContain('azure_key_config.endpoint');
        expect(JSON.stringify(body)).not.toContain(DUMMY);
        expect(mock.requests.length).toBe(0);

        // The SDK surfaces the same error.
        const client = new AzureOpenAI({
          endpoint: `${gw.url}/azure_passthrough`,
          apiKey: DUMMY,
          apiVersion: '2024-10-21',
          maxRetries: 0,
        });
        const err = await client.chat.completions.create({ model: 'gpt-4o', messages: [] }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(OpenAI.APIError);
        expect(String((err as Error).message)).toContain('azure_key_config.endpoint');
        expect(mock.requests.length).toBe(0);

        const [line] = await gw.waitForLines(1);
        expect(line).toMatchObject({ provider: 'azure', model: 'gpt-4o' });
        expect(line.error.message).toContain('azure_key_config.endpoint');
      } finally {
        await gw.stop();
      }
    });
  }
});

describe('api-version rules (unit)', () => {
  test('precedence per path kind', () => {
    expect(azureApiVersion('deployment', 'K', 'C')).toBe('K');
    expect(azureApiVersion('deployment', undefined, 'C')).toBe('C');
    expect(azureApiVersion('deployment', undefined, undefined)).toBe(DEFAULT_AZURE_API_VERSION);
    expect(azureApiVersion('v1', '2024-10-21', undefined)).toBeUndefined();
    expect(azureApiVersion('v1', '2024-10-21', 'preview')).toBe('preview');
    expect(azureApiVersion('v1', 'preview', 'latest')).toBe('preview');
    expect(azureApiVersion('anthropic', '2024-10-21', undefined)).toBeUndefined();
    expect(azureApiVersion('other', undefined, undefined)).toBeUndefined();
    expect(azureApiVersion('other', 'K', 'C')).toBe('K');
  });
});

describe('the model in an Azure path (unit)', () => {
  test('the deployment is read from the decoded path', () => {
    expect(azure.modelOf('/openai/deployments/gpt-4o/chat/completions', undefined)).toBe('gpt-4o');
    expect(azure.modelOf('/openai/deployments/gpt%2D4o/chat/completions', undefined)).toBe('gpt-4o');
    expect(azure.modelOf('/openai%2Fdeployments%2Fgpt-4o%2Fchat/completions', undefined)).toBe('gpt-4o');
    expect(azure.modelOf('/openai/v1/responses', { model: 'gpt-4.1', stream: false })).toBe('gpt-4.1');
  });
});

describe('Entra ID service principal (azure_key_config tenant_id, client_id, client_secret)', () => {
  const TENANT = 'tenant-1234';
  const CLIENT_ID = 'app-5678';
  const SECRET = fakeKey('entra-secret');
  let gw: TestGateway;
  let tokenCalls: Array<Record<string, string>> = [];
  let tokenAnswer: () => Response;
  let issued = 0;

  beforeAll(async () => {
    gw = await startGateway({
      providers: {
        azure: {
          keys: [
            {
              name: 'entra',
              models: ['*'],
              azure_key_config: {
                endpoint: mock.url,
                api_version: '2024-10-21',
                tenant_id: TENANT,
                client_id: CLIENT_ID,
                client_secret: SECRET,
                authority_host: mock.url,
              },
            },
          ],
        },
      },
    });
  });
  afterAll(() => gw.stop());
  beforeEach(() => {
    tokenCalls = [];
    tokenAnswer = () =>
      Response.json({ token_type: 'Bearer', expires_in: 3599, access_token: `entra-token-${++issued}` });
    mock.respondWith((_req, rec) => {
      if (rec.path !== `/${TENANT}/oauth2/v2.0/token`) return undefined;
      tokenCalls.push(Object.fromEntries(new URLSearchParams(new TextDecoder().decode(rec.body))));
      return tokenAnswer();
    });
  });
  const upstreamCalls = () => mock.requests.filter((r) => !r.path.endsWith('/oauth2/v2.0/token'));

  test('AzureOpenAI chat: a client-credentials token for the Cognitive Services scope, sent as Bearer, cached', async () => {
    const client = new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      apiKey: DUMMY,
      apiVersion: '2024-10-21',
    });
    for (let i = 0; i < 2; i++) {
      const r = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
      expect(r.choices[0]!.message.content).toBe('hello from mock');
    }
    expect(tokenCalls).toEqual([
      {
        grant_type: 'client_credentials',
        client_id: CLIENT_ID,
        client_secret: SECRET,
        scope: 'https://cognitiveservices.azure.com/.default',
      },
    ]);
    const calls = upstreamCalls();
    expect(calls).toHaveLength(2);
    for (const got of calls) {
      expect(got.path).toBe('/openai/deployments/gpt-4o/chat/completions');
      expect(got.headers.authorization).toBe(`Bearer entra-token-${issued}`);
      expect(got.headers['api-key']).toBeUndefined();
      expect(JSON.stringify(got.headers)).not.toContain(DUMMY);
      expect(JSON.stringify(got.headers)).not.toContain(SECRET);
    }
  });

  test('Anthropic client (Claude on Foundry): Bearer token, no x-api-key', async () => {
    const client = new Anthropic({ baseURL: `${gw.url}/azure_passthrough`, apiKey: DUMMY });
    await client.messages.create({
      model: 'claude-sonnet-4-5',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const got = upstreamCalls().at(-1)!;
    expect(got.path).toBe('/anthropic/v1/messages');
    expect(got.headers.authorization).toMatch(/^Bearer entra-token-\d+$/);
    expect(got.headers['x-api-key']).toBeUndefined();
  });

  /** The next call to Azure (not the token endpoint) is answered 401. */
  const refuseNextAzureCall = () => {
    let refused = false;
    mock.respondWith((_req, rec) => {
      if (refused || !rec.path.includes('/deployments/')) return undefined;
      refused = true;
      return Response.json({ error: { code: '401', message: 'token revoked' } }, { status: 401 });
    });
  };
  const chat = () =>
    fetch(`${gw.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"messages":[]}',
    });

  test('a 401 from Azure drops the cached token: the next request gets a new one', async () => {
    expect((await chat()).status).toBe(200);
    refuseNextAzureCall();
    expect((await chat()).status).toBe(401);
    const callsBefore = tokenCalls.length;
    const res = await chat();
    expect(res.status).toBe(200);
    expect(tokenCalls.length).toBe(callsBefore + 1);
    expect(upstreamCalls().at(-1)!.headers.authorization).toBe(`Bearer entra-token-${issued}`);
  });

  test('the token endpoint refusing: 502 JSON naming the key and the reason, never the secret; nothing sent to Azure', async () => {
    refuseNextAzureCall();
    await chat();
    tokenAnswer = () =>
      Response.json(
        { error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.' },
        { status: 401 },
      );
    const sentBefore = upstreamCalls().length;
    const res = await chat();
    expect(res.status).toBe(502);
    const err = (await res.json()).error;
    expect(err.type).toBe('upstream_auth_error');
    expect(err.message).toContain('Azure key entra');
    expect(err.message).toContain('invalid_client');
    expect(err.message).not.toContain(SECRET);
    expect(upstreamCalls().length).toBe(sentBefore);
  });

  test('with logs.content on, the client secret is redacted from logged bodies', async () => {
    const logging = await startGateway({
      logs: { content: true },
      providers: {
        azure: {
          keys: [
            {
              name: 'entra',
              models: ['*'],
              azure_key_config: {
                endpoint: mock.url,
                tenant_id: TENANT,
                client_id: CLIENT_ID,
                client_secret: SECRET,
                authority_host: mock.url,
              },
            },
          ],
        },
      },
    });
    try {
      const res = await fetch(
        `${logging.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ messages: [{ role: 'user', content: `my note: ${SECRET}` }] }),
        },
      );
      expect(res.status).toBe(200);
      const line = await logging.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
      expect(line.request_body).toContain('[REDACTED]');
      expect(JSON.stringify(line)).not.toContain(SECRET);
    } finally {
      await logging.stop();
    }
  });

  test('config: an incomplete service principal is a config error naming the fields', async () => {
    await expect(
      startGateway({
        providers: {
          azure: {
            keys: [
              {
                name: 'half',
                models: ['*'],
                azure_key_config: { endpoint: mock.url, tenant_id: TENANT, client_id: CLIENT_ID },
              },
            ],
          },
        },
      }),
    ).rejects.toThrow(/tenant_id, client_id and client_secret/);
  });
});

describe('managed identity (azure_key_config.managed_identity): the token source the host provides', () => {
  const ENV_NAMES = [
    'AZURE_FEDERATED_TOKEN_FILE',
    'AZURE_TENANT_ID',
    'AZURE_CLIENT_ID',
    'AZURE_AUTHORITY_HOST',
    'IDENTITY_ENDPOINT',
    'IDENTITY_HEADER',
    'AZURE_POD_IDENTITY_AUTHORITY_HOST',
  ];
  let tokenCalls: Recorded[] = [];
  let issued = 0;
  let refuseTokens = false;
  const isTokenCall = (rec: Recorded) =>
    rec.path.startsWith('/msi/') ||
    rec.path.startsWith('/metadata/identity/') ||
    rec.path.endsWith('/oauth2/v2.0/token');
  const azureCalls = () => mock.requests.filter((r) => !isTokenCall(r));

  /** A gateway whose process environment is `env` (only while its config loads: that is when the source is chosen). */
  async function gatewayIn(env: Record<string, string>, managedIdentity: unknown): Promise<TestGateway> {
    const saved = Object.fromEntries(ENV_NAMES.map((n) => [n, process.env[n]]));
    for (const n of ENV_NAMES) delete process.env[n];
    Object.assign(process.env, env);
    try {
      return await startGateway({
        providers: {
          azure: {
            keys: [
              {
                name: 'mi',
                models: ['*'],
                azure_key_config: { endpoint: mock.url, api_version: '2024-10-21', managed_identity: managedIdentity },
              },
            ],
          },
        },
      });
    } finally {
      for (const n of ENV_NAMES) {
        if (saved[n] === undefined) delete process.env[n];
        else process.env[n] = saved[n];
      }
    }
  }

  beforeEach(() => {
    tokenCalls = [];
    refuseTokens = false;
    mock.respondWith((_req, rec) => {
      if (!isTokenCall(rec)) return undefined;
      tokenCalls.push(rec);
      if (refuseTokens)
        return Response.json({ error: 'invalid_request', error_description: 'Identity not found' }, { status: 400 });
      // App Service answers expires_on (epoch seconds, a string); IMDS both; Entra expires_in.
      return Response.json({
        access_token: `mi-token-${++issued}`,
        expires_on: String(Math.floor(Date.now() / 1000) + 3600),
        token_type: 'Bearer',
        resource: 'https://cognitiveservices.azure.com',
      });
    });
  });

  async function chatThrough(gw: TestGateway): Promise<void> {
    const client = new AzureOpenAI({
      endpoint: `${gw.url}/azure_passthrough`,
      apiKey: DUMMY,
      apiVersion: '2024-10-21',
    });
    for (let i = 0; i < 2; i++) {
      const r = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
      expect(r.choices[0]!.message.content).toBe('hello from mock');
    }
    // One token for both requests (cached), sent as Bearer; no api-key, nothing of the client's.
    expect(tokenCalls).toHaveLength(1);
    for (const got of azureCalls().slice(-2)) {
      expect(got.path).toBe('/openai/deployments/gpt-4o/chat/completions');
      expect(got.headers.authorization).toBe(`Bearer mi-token-${issued}`);
      expect(got.headers['api-key']).toBeUndefined();
      expect(JSON.stringify(got.headers)).not.toContain(DUMMY);
    }
  }

  test('a VM: the instance metadata service (GET, Metadata: true, resource, api-version 2018-02-01)', async () => {
    const gw = await gatewayIn({ AZURE_POD_IDENTITY_AUTHORITY_HOST: mock.url }, true);
    try {
      await chatThrough(gw);
      const call = tokenCalls[0]!;
      expect(call.method).toBe('GET');
      expect(call.path).toBe('/metadata/identity/oauth2/token');
      expect(Object.fromEntries(new URLSearchParams(call.query))).toEqual({
        'api-version': '2018-02-01',
        resource: 'https://cognitiveservices.azure.com',
      });
      expect(call.headers.metadata).toBe('true');
    } finally {
      await gw.stop();
    }
  });

  test('App Service / Container Apps: IDENTITY_ENDPOINT with X-IDENTITY-HEADER; a user-assigned identity by client_id', async () => {
    const header = fakeKey('identity-header');
    const gw = await gatewayIn(
      { IDENTITY_ENDPOINT: `${mock.url}/msi/token`, IDENTITY_HEADER: header },
      { client_id: 'user-assigned-1' },
    );
    try {
      await chatThrough(gw);
      const call = tokenCalls[0]!;
      expect(call.method).toBe('GET');
      expect(call.path).toBe('/msi/token');
      expect(Object.fromEntries(new URLSearchParams(call.query))).toEqual({
        'api-version': '2019-08-01',
        resource: 'https://cognitiveservices.azure.com',
        client_id: 'user-assigned-1',
      });
      expect(call.headers['x-identity-header']).toBe(header);
    } finally {
      await gw.stop();
    }
  });

  test('AKS workload identity: the projected token, re-read at each refresh, as client assertion', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-wi-'));
    const tokenFile = join(dir, 'azure-identity-token');
    writeFileSync(tokenFile, 'projected.jwt.one\n');
    const gw = await gatewayIn(
      {
        AZURE_FEDERATED_TOKEN_FILE: tokenFile,
        AZURE_TENANT_ID: 'tenant-wi',
        AZURE_CLIENT_ID: 'wi-client',
        AZURE_AUTHORITY_HOST: mock.url,
      },
      true,
    );
    try {
      await chatThrough(gw);
      const call = tokenCalls[0]!;
      expect(call.method).toBe('POST');
      expect(call.path).toBe('/tenant-wi/oauth2/v2.0/token');
      expect(Object.fromEntries(new URLSearchParams(new TextDecoder().decode(call.body)))).toEqual({
        grant_type: 'client_credentials',
        client_id: 'wi-client',
        scope: 'https://cognitiveservices.azure.com/.default',
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: 'projected.jwt.one',
      });
      // Azure refuses the token: it is dropped, and the next one is minted from the rotated file.
      writeFileSync(tokenFile, 'projected.jwt.two');
      let refused = false;
      mock.respondWith((_req, rec) => {
        if (refused || isTokenCall(rec)) return undefined;
        refused = true;
        return Response.json({ error: { code: '401', message: 'expired' } }, { status: 401 });
      });
      const chat = () =>
        fetch(`${gw.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"messages":[]}',
        });
      expect((await chat()).status).toBe(401);
      expect((await chat()).status).toBe(200);
      expect(new URLSearchParams(new TextDecoder().decode(tokenCalls.at(-1)!.body)).get('client_assertion')).toBe(
        'projected.jwt.two',
      );
    } finally {
      await gw.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('no token (identity refused, or the token file gone): 502 upstream_auth_error naming the key; nothing sent to Azure', async () => {
    // Another identity than the tests above (a token cache outlives its gateway, as on reload).
    const gw = await gatewayIn({ AZURE_POD_IDENTITY_AUTHORITY_HOST: mock.url }, { client_id: 'not-assigned-here' });
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-wi-'));
    const wi = await gatewayIn(
      {
        AZURE_FEDERATED_TOKEN_FILE: join(dir, 'missing'),
        AZURE_TENANT_ID: 't',
        AZURE_CLIENT_ID: 'c',
        AZURE_AUTHORITY_HOST: mock.url,
      },
      true,
    );
    try {
      refuseTokens = true;
      for (const [g, reason] of [
        [gw, 'Identity not found'],
        [wi, 'could not be read'],
      ] as const) {
        const before = azureCalls().length;
        const res = await fetch(`${g.url}/azure_passthrough/openai/deployments/gpt-4o/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"messages":[]}',
        });
        expect(res.status).toBe(502);
        const err = (await res.json()).error;
        expect(err.type).toBe('upstream_auth_error');
        expect(err.message).toContain('Azure key mi');
        expect(err.message).toContain(reason);
        expect(azureCalls().length).toBe(before);
      }
    } finally {
      await gw.stop();
      await wi.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('config: managed_identity with a service principal is an error; with neither nor a value, the message names all three ways', async () => {
    await expect(
      startGateway({
        providers: {
          azure: {
            keys: [
              {
                name: 'both',
                models: ['*'],
                azure_key_config: {
                  endpoint: mock.url,
                  managed_identity: true,
                  tenant_id: 't',
                  client_id: 'c',
                  client_secret: 's',
                },
              },
            ],
          },
        },
      }),
    ).rejects.toThrow(/exclude each other/);
    await expect(
      startGateway({
        providers: {
          azure: {
            keys: [{ name: 'none', models: ['*'], azure_key_config: { endpoint: mock.url, managed_identity: false } }],
          },
        },
      }),
    ).rejects.toThrow(/managed_identity/);
  });
});
