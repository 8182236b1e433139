/**
 * GenAI passthrough: the seed document's Gemini and Vertex examples through the official
 * `@google/genai` SDK (API-key mode, Vertex mode, Vertex express mode) and its curls,
 * against a recording mock upstream standing in for Google. Service-account keys are
 * generated per run and their tokens minted at a fake token endpoint on the mock.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { type GenerateContentResponse, GoogleGenAI } from '@google/genai';
import { OAuth2Client } from 'google-auth-library';
import { modelFromGooglePath } from '../src/providers/gemini.ts';
import { isVertexRequest, vertexHost } from '../src/providers/vertex.ts';
import { ClientRecorder } from './support/client-recorder.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import {
  installTokenEndpoint,
  makeServiceAccount,
  pemPrivateKey,
  type TestServiceAccount,
} from './support/google-creds.ts';
import { anthropicAnswer, MOCK_USAGE, MockUpstream, type Recorded } from './support/mock-upstream.ts';

const DUMMY = 'dummy-key';
const USAGE = {
  input_tokens: MOCK_USAGE.input,
  output_tokens: MOCK_USAGE.output,
  total_tokens: MOCK_USAGE.input + MOCK_USAGE.output,
};
const GEMINI_CURL_BODY = JSON.stringify({ contents: [{ parts: [{ text: 'hello from passthrough' }] }] });
const VERTEX_CURL_BODY = JSON.stringify({ contents: [{ parts: [{ text: 'hello from vertex passthrough' }] }] });

let mock: MockUpstream;
beforeAll(() => {
  mock = new MockUpstream();
});
afterAll(async () => {
  await mock.stop();
});

/** Requests that reached the mock other than token grants. */
const apiCalls = () => mock.requests.filter((r) => !r.path.endsWith('/token'));
const lastApiCall = () => {
  const r = apiCalls().at(-1);
  if (!r) throw new Error('no API request reached the mock');
  return r;
};

/** No client credential (nor anything carrying the dummy key) reached the upstream. */
function expectNoClientCredential(got: Recorded) {
  expect(JSON.stringify(got.headers)).not.toContain(DUMMY);
  expect(JSON.stringify(got.headers)).not.toContain('ya29.client');
  expect(got.query).not.toContain(DUMMY);
  expect(got.headers['x-api-key']).toBeUndefined();
  expect(got.headers['api-key']).toBeUndefined();
}

function expectSameBody(rec: ClientRecorder, got: Recorded) {
  expect(rec.last.body.byteLength).toBeGreaterThan(0);
  expect(Buffer.from(got.body).equals(Buffer.from(rec.last.body))).toBe(true);
}

/** The path the SDK sent, without the gateway prefix. */
const sentPath = (rec: ClientRecorder) => rec.last.url.pathname.replace(/^\/genai_passthrough/, '');

function logReader(gw: () => TestGateway) {
  let seen = 0;
  return async () => {
    const lines = await gw().waitForLines(++seen);
    expect(lines.length).toBe(seen);
    return lines[seen - 1];
  };
}

/** An OAuth client holding a fake user token, so the SDK never looks for Google credentials. */
function fakeAuthClient(token = 'ya29.client-token') {
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: token, expiry_date: Date.now() + 3_600_000 });
  return authClient;
}

const geminiClient = (gw: TestGateway, rec?: ClientRecorder) =>
  new GoogleGenAI({
    apiKey: DUMMY,
    httpOptions: { baseUrl: `${gw.url}/genai_passthrough`, ...(rec ? { fetch: rec.fetch } : {}) },
  });

const vertexClient = (gw: TestGateway, rec?: ClientRecorder) =>
  new GoogleGenAI({
    vertexai: true,
    project: 'client-project',
    location: 'us-east5',
    googleAuthOptions: { authClient: fakeAuthClient() },
    httpOptions: { baseUrl: `${gw.url}/genai_passthrough`, ...(rec ? { fetch: rec.fetch } : {}) },
  });

const expressClient = (gw: TestGateway, rec?: ClientRecorder) =>
  new GoogleGenAI({
    vertexai: true,
    apiKey: DUMMY,
    httpOptions: { baseUrl: `${gw.url}/genai_passthrough`, ...(rec ? { fetch: rec.fetch } : {}) },
  });

async function collect(stream: AsyncGenerator<GenerateContentResponse>) {
  let text = '';
  let total: number | undefined;
  for await (const chunk of stream) {
    text += chunk.text ?? '';
    total = chunk.usageMetadata?.totalTokenCount ?? total;
  }
  return { text, total };
}

describe('Gemini (API-key mode) with gateway keys; Vertex with a service account', () => {
  const GEMINI_KEY = fakeKey('AIza-gw');
  let sa: TestServiceAccount;
  let tokens: ReturnType<typeof installTokenEndpoint>;
  let gw: TestGateway;
  const nextLine = logReader(() => gw);

  beforeAll(async () => {
    mock.reset();
    sa = await makeServiceAccount(`${mock.url}/main/token`);
    tokens = installTokenEndpoint(mock, '/main/token', sa);
    gw = await startGateway(
      {
        providers: {
          gemini: {
            keys: [{ name: 'gemini-main', value: GEMINI_KEY, models: ['*'] }],
            network_config: { base_url: mock.url },
          },
          vertex: {
            keys: [
              {
                name: 'vertex-sa',
                models: ['*'],
                vertex_key_config: {
                  project_id: 'gw-project',
                  region: 'europe-west4',
                  auth_credentials: 'env.TEST_VERTEX_SA_JSON',
                },
              },
            ],
            network_config: { base_url: mock.url },
          },
        },
      },
      { ...process.env, TEST_VERTEX_SA_JSON: sa.text },
    );
  });
  afterAll(() => gw.stop());
  beforeEach(() => {
    mock.requests.length = 0;
  });

  test('generateContent: path version kept, x-goog-api-key = gateway key, SDK gets the answer', async () => {
    const rec = new ClientRecorder();
    const response = await geminiClient(gw, rec).models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'hello from passthrough',
    });
    expect(response.text).toBe('hello from mock');
    expect(rec.last.headers['x-goog-api-key']).toBe(DUMMY);

    const got = lastApiCall();
    expect(got.path).toBe(sentPath(rec));
    expect(got.path).toMatch(/^\/v1(beta)?\/models\/gemini-2\.5-flash:generateContent$/);
    expect(got.query).toBe('');
    expect(got.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expect(got.headers.authorization).toBeUndefined();
    expectNoClientCredential(got);
    expectSameBody(rec, got);

    const line = await nextLine();
    expect(line).toMatchObject({
      endpoint: 'genai',
      provider: 'gemini',
      model: 'gemini-2.5-flash',
      key: 'gemini-main',
      status: 200,
      stream: false,
      outcome: 'ok',
    });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('generateContentStream: :streamGenerateContent?alt=sse, chunks and usage', async () => {
    const rec = new ClientRecorder();
    const out = await collect(
      await geminiClient(gw, rec).models.generateContentStream({
        model: 'gemini-2.5-flash',
        contents: 'hello from passthrough',
      }),
    );
    expect(out.text).toBe('hello from mock');
    expect(out.total).toBe(USAGE.total_tokens);

    const got = lastApiCall();
    expect(got.path).toBe(sentPath(rec));
    expect(got.path).toEndWith('/models/gemini-2.5-flash:streamGenerateContent');
    expect(got.query).toBe('alt=sse');
    expect(got.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expectNoClientCredential(got);
    expectSameBody(rec, got);

    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'gemini', model: 'gemini-2.5-flash', stream: true, status: 200 });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('the seed Gemini curl: client x-goog-api-key and key= replaced, /v1beta kept, other query kept', async () => {
    const res = await fetch(
      `${gw.url}/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent?key=${DUMMY}&foo=a%20b`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': DUMMY },
        body: GEMINI_CURL_BODY,
      },
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).candidates[0].content.parts[0].text).toBe('hello from mock');
    const got = lastApiCall();
    expect(got.path).toBe('/v1beta/models/gemini-2.5-flash:generateContent');
    expect(got.query).toBe('foo=a%20b');
    expect(got.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    expectNoClientCredential(got);
    expect(new TextDecoder().decode(got.body)).toBe(GEMINI_CURL_BODY);
    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'gemini', model: 'gemini-2.5-flash' });
  });

  test('Vertex detection negatives: Gemini requests stay Gemini', async () => {
    const cases: Array<{ path: string; headers: Record<string, string>; body?: string }> = [
      // A non-Google bearer token is not the Vertex pattern.
      { path: '/v1beta/models/gemini-2.5-flash:generateContent', headers: { authorization: `Bearer ${DUMMY}` } },
      // `ya29` without the dot, and the token somewhere other than Authorization.
      {
        path: '/v1beta/models/gemini-2.5-flash:generateContent',
        headers: { authorization: 'Bearer ya29not-a-token', 'x-goog-api-key': 'ya29.x' },
      },
      // A body model in Gemini's own shape.
      {
        path: '/v1beta/models/gemini-2.5-flash:countTokens',
        headers: {},
        body: JSON.stringify({ model: 'models/gemini-2.5-flash', contents: [] }),
      },
      // "projects" in a model name is not a project path.
      { path: '/v1beta/models/projects-locations-model:generateContent', headers: {} },
      { path: '/v1beta/tunedModels/projects/locations:generateContent', headers: {} },
    ];
    for (const c of cases) {
      const res = await fetch(`${gw.url}/genai_passthrough${c.path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...c.headers },
        body: c.body ?? GEMINI_CURL_BODY,
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      const got = lastApiCall();
      expect(got.path).toBe(c.path);
      expect(got.headers['x-goog-api-key']).toBe(GEMINI_KEY);
      expect(got.headers.authorization).toBeUndefined();
      expect((await nextLine()).provider).toBe('gemini');
    }
    // None of them needed a Vertex token.
    expect(mock.requests.filter((r) => r.path.endsWith('/token')).length).toBe(0);
  });

  test("Vertex mode SDK: key's project/region replace the client's, OAuth token minted from the service account", async () => {
    const rec = new ClientRecorder();
    const response = await vertexClient(gw, rec).models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'hello from vertex passthrough',
    });
    expect(response.text).toBe('hello from mock');
    expect(sentPath(rec)).toBe(
      '/v1beta1/projects/client-project/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent',
    );
    expect(rec.last.headers.authorization).toBe('Bearer ya29.client-token');

    const got = lastApiCall();
    expect(got.path).toBe(
      '/v1beta1/projects/gw-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent',
    );
    expect(got.headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);
    expect(got.headers['x-goog-api-key']).toBeUndefined();
    expectNoClientCredential(got);
    expectSameBody(rec, got);
    expect(tokens.problems).toEqual([]);
    expect(tokens.calls).toBe(1);

    const line = await nextLine();
    expect(line).toMatchObject({
      endpoint: 'genai',
      provider: 'vertex',
      model: 'gemini-2.5-flash',
      key: 'vertex-sa',
      status: 200,
    });
    expect(line.usage).toMatchObject(USAGE);
    expect(JSON.stringify(line)).not.toContain('ya29.');
  });

  test('Vertex mode SDK streamed; the cached token is reused (still one token fetch)', async () => {
    const rec = new ClientRecorder();
    const out = await collect(
      await vertexClient(gw, rec).models.generateContentStream({
        model: 'gemini-2.5-flash',
        contents: 'hello from vertex passthrough',
      }),
    );
    expect(out.text).toBe('hello from mock');
    const got = lastApiCall();
    expect(got.path).toBe(
      '/v1beta1/projects/gw-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:streamGenerateContent',
    );
    expect(got.query).toBe('alt=sse');
    expect(got.headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);
    expectSameBody(rec, got);
    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'vertex', model: 'gemini-2.5-flash', stream: true });
    expect(line.usage).toMatchObject(USAGE);

    // Several more requests: still the one token.
    for (let i = 0; i < 3; i++) {
      await vertexClient(gw).models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' });
      expect(lastApiCall().headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);
      expect((await nextLine()).status).toBe(200);
    }
    expect(tokens.calls).toBe(1);
  });

  test('Vertex express mode SDK (vertexai + apiKey) with a service-account key: project path inserted, Bearer token', async () => {
    const rec = new ClientRecorder();
    const response = await expressClient(gw, rec).models.generateContent({
      model: 'gemini-2.5-flash',
      contents: 'hello from vertex passthrough',
    });
    expect(response.text).toBe('hello from mock');
    expect(sentPath(rec)).toBe('/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent');
    const got = lastApiCall();
    expect(got.path).toBe(
      '/v1beta1/projects/gw-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent',
    );
    expect(got.headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);
    expect(got.headers['x-goog-api-key']).toBeUndefined();
    expectNoClientCredential(got);
    expectSameBody(rec, got);
    expect((await nextLine()).provider).toBe('vertex');
  });

  test('the seed Vertex curl (Bearer ya29.) in key mode: token and project/location replaced', async () => {
    const res = await fetch(
      `${gw.url}/genai_passthrough/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent`,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: 'Bearer ya29.your-vertex-token',
          'x-goog-user-project': 'my-project',
        },
        body: VERTEX_CURL_BODY,
      },
    );
    expect(res.status).toBe(200);
    expect(((await res.json()) as any).candidates[0].content.parts[0].text).toBe('hello from mock');
    const got = lastApiCall();
    expect(got.path).toBe(
      '/v1/projects/gw-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash:generateContent',
    );
    expect(got.headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);
    expect(JSON.stringify(got.headers)).not.toContain('your-vertex-token');
    expect(got.headers['x-goog-user-project']).toBeUndefined();
    expect(new TextDecoder().decode(got.body)).toBe(VERTEX_CURL_BODY);
    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'vertex', model: 'gemini-2.5-flash', key: 'vertex-sa' });
    expect(line.usage).toMatchObject(USAGE);
  });

  test('Vertex detected from a body model resource path alone', async () => {
    const body = JSON.stringify({
      model: 'projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash',
      contents: [],
    });
    const res = await fetch(`${gw.url}/genai_passthrough/v1beta1/cachedContents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': DUMMY },
      body,
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const got = lastApiCall();
    expect(got.path).toBe('/v1beta1/projects/gw-project/locations/europe-west4/cachedContents');
    expect(got.headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);
    expectNoClientCredential(got);
    expect(await nextLine()).toMatchObject({ provider: 'vertex', model: 'gemini-2.5-flash' });
  });

  test('Claude on Vertex (rawPredict): Anthropic usage read from a Vertex answer', async () => {
    mock.respondWith((_req, r) =>
      r.path.endsWith(':rawPredict') ? Response.json(anthropicAnswer('claude-sonnet-4')) : undefined,
    );
    const res = await fetch(
      `${gw.url}/genai_passthrough/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer ya29.client' },
        body: JSON.stringify({
          anthropic_version: 'vertex-2023-10-16',
          max_tokens: 16,
          messages: [{ role: 'user', content: 'x' }],
        }),
      },
    );
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(lastApiCall().path).toBe(
      '/v1/projects/gw-project/locations/europe-west4/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict',
    );
    const line = await nextLine();
    expect(line).toMatchObject({ provider: 'vertex', model: 'claude-sonnet-4@20250514' });
    expect(line.usage).toMatchObject({
      input_tokens: MOCK_USAGE.input,
      output_tokens: MOCK_USAGE.output,
      cache_read_input_tokens: MOCK_USAGE.cacheRead,
    });
  });
});

describe('service-account tokens under concurrency and failure', () => {
  afterAll(() => mock.reset());

  test('concurrent requests before the first token share one refresh', async () => {
    const sa = await makeServiceAccount(`${mock.url}/slow/token`);
    const tokens = installTokenEndpoint(mock, '/slow/token', sa, { delayMs: 150 });
    const gw = await startGateway({
      providers: {
        vertex: {
          keys: [
            {
              name: 'vx',
              vertex_key_config: { project_id: 'gw-project', region: 'us-central1', auth_credentials: sa.json },
            },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
    try {
      const before = apiCalls().length;
      const answers = await Promise.all(
        Array.from({ length: 6 }, () =>
          vertexClient(gw).models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' }),
        ),
      );
      for (const a of answers) expect(a.text).toBe('hello from mock');
      expect(tokens.calls).toBe(1);
      expect(tokens.problems).toEqual([]);
      const calls = apiCalls().slice(before);
      expect(calls.length).toBe(6);
      for (const c of calls) expect(c.headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);
    } finally {
      await gw.stop();
    }
  });

  test('token endpoint failing: 502 JSON error, nothing sent to Vertex, the next request retries the grant', async () => {
    const sa = await makeServiceAccount(`${mock.url}/failing/token`);
    const tokens = installTokenEndpoint(mock, '/failing/token', sa, { failStatus: 500, failures: 1 });
    const gw = await startGateway({
      providers: {
        vertex: {
          keys: [
            {
              name: 'vx-fail',
              vertex_key_config: { project_id: 'gw-project', region: 'us-central1', auth_credentials: sa.json },
            },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
    try {
      const before = apiCalls().length;
      const url = `${gw.url}/genai_passthrough/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent`;
      const init = {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer ya29.your-vertex-token' },
        body: VERTEX_CURL_BODY,
      };
      const res = await fetch(url, init);
      expect(res.status).toBe(502);
      expect(res.headers.get('content-type')).toContain('application/json');
      const body = (await res.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('upstream_auth_error');
      expect(body.error.message).toContain('vx-fail');
      expect(body.error.message).toContain('token endpoint');
      expect(body.error.message).not.toContain(sa.secretFragment);
      expect(apiCalls().length).toBe(before);

      // The SDK sees the same failure as an API error.
      const err = await vertexClient(gw)
        .models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      // The one scripted failure is used up: this one got a token.
      expect(err).toBeUndefined();
      expect(tokens.calls).toBe(2);
      expect(lastApiCall().headers.authorization).toBe(`Bearer ${tokens.issued[0]}`);

      const lines = await gw.waitForLines(2);
      expect(lines[0]).toMatchObject({ provider: 'vertex', status: 502, key: 'vx-fail' });
      expect(lines[0].error.type).toBe('upstream_auth_error');
      expect(lines[1]).toMatchObject({ provider: 'vertex', status: 200 });
    } finally {
      await gw.stop();
    }
  });

  test('a token Vertex refuses (401) is dropped: the next request mints a new one', async () => {
    const sa = await makeServiceAccount(`${mock.url}/revoked/token`);
    const tokens = installTokenEndpoint(mock, '/revoked/token', sa);
    const gw = await startGateway({
      providers: {
        vertex: {
          keys: [
            {
              name: 'vx-revoked',
              vertex_key_config: { project_id: 'gw-project', region: 'us-central1', auth_credentials: sa.json },
            },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
    let refused = false;
    mock.respondWith((_req, rec) => {
      if (refused || rec.path.endsWith('/token')) return undefined;
      refused = true;
      return Response.json({ error: { code: 401, status: 'UNAUTHENTICATED' } }, { status: 401 });
    });
    try {
      const url = `${gw.url}/genai_passthrough/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent`;
      const init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: VERTEX_CURL_BODY };
      expect((await fetch(url, init)).status).toBe(401);
      expect((await fetch(url, init)).status).toBe(200);
      expect(tokens.calls).toBe(2);
      expect(lastApiCall().headers.authorization).toBe(`Bearer ${tokens.issued[1]}`);
    } finally {
      await gw.stop();
    }
  });

  test('token endpoint unreachable: 502 JSON error', async () => {
    const sa = await makeServiceAccount('http://127.0.0.1:9/token');
    const gw = await startGateway({
      providers: {
        vertex: {
          keys: [
            { name: 'vx', vertex_key_config: { project_id: 'p', region: 'us-central1', auth_credentials: sa.text } },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
    try {
      const res = await expressClient(gw)
        .models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' })
        .then(
          () => undefined,
          (e: { status?: number; message?: string }) => e,
        );
      expect(res?.status).toBe(502);
      expect(res?.message).toContain('upstream_auth_error');
    } finally {
      await gw.stop();
    }
  });
});

describe('Vertex express-mode API key and direct mode', () => {
  test('express SDK with an express-mode Vertex key: publisher path kept, x-goog-api-key = gateway key', async () => {
    const VERTEX_KEY = fakeKey('AQ-vertex');
    const gw = await startGateway({
      providers: {
        vertex: { keys: [{ name: 'vx-express', value: VERTEX_KEY }], network_config: { base_url: mock.url } },
      },
    });
    try {
      const rec = new ClientRecorder();
      const response = await expressClient(gw, rec).models.generateContent({
        model: 'gemini-2.5-flash',
        contents: 'hello from vertex passthrough',
      });
      expect(response.text).toBe('hello from mock');
      const got = lastApiCall();
      expect(got.path).toBe('/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent');
      expect(got.headers['x-goog-api-key']).toBe(VERTEX_KEY);
      expect(got.headers.authorization).toBeUndefined();
      expectNoClientCredential(got);
      expectSameBody(rec, got);

      const out = await collect(
        await expressClient(gw).models.generateContentStream({ model: 'gemini-2.5-flash', contents: 'x' }),
      );
      expect(out.text).toBe('hello from mock');
      expect(lastApiCall().path).toBe('/v1beta1/publishers/google/models/gemini-2.5-flash:streamGenerateContent');
      expect(lastApiCall().query).toBe('alt=sse');

      const lines = await gw.waitForLines(2);
      expect(lines[0]).toMatchObject({ provider: 'vertex', model: 'gemini-2.5-flash', key: 'vx-express', status: 200 });
      expect(lines[0].usage).toMatchObject(USAGE);
      expect(lines[1]).toMatchObject({ provider: 'vertex', stream: true });
      expect(lines[1].usage).toMatchObject(USAGE);
    } finally {
      await gw.stop();
    }
  });

  test('direct mode (no keys): the seed Vertex curl token and path are forwarded unchanged; Gemini keys stay client-side too', async () => {
    const gw = await startGateway({
      providers: {
        gemini: { network_config: { base_url: mock.url } },
        vertex: { network_config: { base_url: mock.url } },
      },
    });
    try {
      const path =
        '/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent';
      const res = await fetch(`${gw.url}/genai_passthrough${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer ya29.your-vertex-token' },
        body: VERTEX_CURL_BODY,
      });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      let got = lastApiCall();
      expect(got.path).toBe(path);
      expect(got.headers.authorization).toBe('Bearer ya29.your-vertex-token');
      expect(new TextDecoder().decode(got.body)).toBe(VERTEX_CURL_BODY);

      // Vertex mode SDK in direct mode: its own token and project path go through.
      const rec = new ClientRecorder();
      await vertexClient(gw, rec).models.generateContent({ model: 'gemini-2.5-flash', contents: 'x' });
      got = lastApiCall();
      expect(got.path).toBe(sentPath(rec));
      expect(got.headers.authorization).toBe('Bearer ya29.client-token');

      // The seed Gemini curl in direct mode: the client's key is its own.
      const g = await fetch(`${gw.url}/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-goog-api-key': 'your-gemini-key' },
        body: GEMINI_CURL_BODY,
      });
      expect(g.status).toBe(200);
      await g.arrayBuffer();
      got = lastApiCall();
      expect(got.headers['x-goog-api-key']).toBe('your-gemini-key');

      const lines = await gw.waitForLines(3);
      expect(lines.map((l) => [l.provider, l.key])).toEqual([
        ['vertex', 'direct'],
        ['vertex', 'direct'],
        ['gemini', 'direct'],
      ]);
      for (const l of lines) expect(l.usage).toMatchObject(USAGE);
    } finally {
      await gw.stop();
    }
  });
});

describe('malformed Vertex credentials: the config does not load', () => {
  const FIELD = 'providers.vertex.keys[0].vertex_key_config.auth_credentials';
  let sa: TestServiceAccount;
  beforeAll(async () => {
    sa = await makeServiceAccount('https://oauth2.example.invalid/token');
  });

  const load = (vertexKey: Record<string, unknown>) =>
    startGateway({ providers: { vertex: { keys: [vertexKey], network_config: { base_url: mock.url } } } }).then(
      async (gw) => {
        await gw.stop();
        return 'loaded';
      },
      (e: Error) => e.message,
    );
  const withCreds = (auth_credentials: unknown) => ({
    name: 'vx',
    vertex_key_config: { project_id: 'p', region: 'us-central1', auth_credentials },
  });

  const CASES: Array<[string, () => unknown, RegExp]> = [
    ['not JSON', () => '{"type": "service_account", ', /not valid JSON/],
    ['no private_key', () => ({ ...sa.json, private_key: undefined }), /has no private_key/],
    ['no client_email', () => ({ ...sa.json, client_email: '' }), /has no client_email/],
    [
      'a private_key that is not PEM',
      () => ({ ...sa.json, private_key: 'not-a-key' }),
      /private_key is not a PEM private key/,
    ],
    ['a PEM that is not a PKCS#8 RSA key', () => ({ ...sa.json, private_key: pemPrivateKey('AAAA') }), /PKCS#8/],
    [
      'a gcloud user credential',
      () => ({ type: 'authorized_user', client_id: 'x', client_secret: 'y', refresh_token: 'z' }),
      /only "service_account"/,
    ],
    [
      'a token_uri that is not a URL',
      () => ({ ...sa.json, token_uri: 'oauth2/token' }),
      /token_uri must be an http\(s\) URL/,
    ],
    ['a missing file', () => '/nonexistent/sa.json', /cannot read file \/nonexistent\/sa\.json/],
  ];
  test.each(CASES)('%s', async (_label, creds, message) => {
    const error = await load(withCreds(creds()));
    expect(error).toContain(FIELD);
    expect(error).toMatch(message);
    expect(error).not.toContain(sa.secretFragment);
  });

  test('a mangled credential mistaken for a path is not echoed', async () => {
    const secret = Buffer.from(sa.text).toString('base64');
    const error = await load(withCreds(secret));
    expect(error).toContain(FIELD);
    expect(error).toContain('neither service-account JSON nor a readable file path');
    expect(error).not.toContain(secret.slice(0, 40));
  });

  test('a service account without any project_id names vertex_key_config.project_id', async () => {
    const error = await load({
      name: 'vx',
      vertex_key_config: { region: 'us-central1', auth_credentials: { ...sa.json, project_id: undefined } },
    });
    expect(error).toContain('providers.vertex.keys[0].vertex_key_config.project_id');
  });

  test('escaped newlines in an env-pasted private key are accepted; project_id from the file', async () => {
    const json = JSON.stringify({ ...sa.json, private_key: sa.json.private_key!.replaceAll('\n', '\\n') });
    expect(await load({ name: 'vx', vertex_key_config: { auth_credentials: json } })).toBe('loaded');
  });
});

describe('the model in a Google path (unit)', () => {
  test('read from the decoded path: an encoded colon or slash does not hide or change it', () => {
    const cases: Array<[string, string | undefined]> = [
      ['/v1beta/models/gemini-2.5-pro:generateContent', 'gemini-2.5-pro'],
      ['/v1beta/models/gemini-2.5-pro%3AgenerateContent', 'gemini-2.5-pro'],
      ['/v1beta/models/gemini-2.5-pro%3agenerateContent', 'gemini-2.5-pro'],
      ['/v1beta/models%2Fgemini-2.5-pro:generateContent', 'gemini-2.5-pro'],
      ['/v1beta/models/gemini%2D2.5%2Dpro:streamGenerateContent', 'gemini-2.5-pro'],
      [
        '/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro%3AgenerateContent',
        'gemini-2.5-pro',
      ],
      ['/v1beta/models', undefined],
    ];
    for (const [path, model] of cases) expect([path, modelFromGooglePath(path)]).toEqual([path, model]);
  });
});

describe('Vertex rules (unit)', () => {
  test('host from region', () => {
    expect(vertexHost('us-central1')).toBe('https://us-central1-aiplatform.googleapis.com');
    expect(vertexHost('europe-west4')).toBe('https://europe-west4-aiplatform.googleapis.com');
    expect(vertexHost('global')).toBe('https://aiplatform.googleapis.com');
  });

  test('detection', () => {
    expect(
      isVertexRequest('/v1/projects/p/locations/l/publishers/google/models/m:generateContent', undefined, null),
    ).toBe(true);
    expect(isVertexRequest('/v1beta1/publishers/google/models/m:generateContent', undefined, null)).toBe(true);
    expect(
      isVertexRequest(
        '/v1beta/models/m:generateContent',
        { model: 'projects/p/locations/l/publishers/google/models/m', stream: false },
        null,
      ),
    ).toBe(true);
    expect(isVertexRequest('/v1beta/models/m:generateContent', undefined, 'Bearer ya29.abc')).toBe(true);
    expect(isVertexRequest('/v1beta/models/m:generateContent', undefined, 'bearer YA29.abc')).toBe(true);
    expect(isVertexRequest('/v1beta/models/m:generateContent', undefined, null)).toBe(false);
    expect(
      isVertexRequest('/v1/models/m:streamGenerateContent', { model: 'models/m', stream: false }, 'Bearer sk-abc'),
    ).toBe(false);
    expect(isVertexRequest('/v1beta/files', undefined, 'Bearer ya29')).toBe(false);
  });
});
