/**
 * Provider URLs that point back at the provider, rewritten to the gateway so the SDK's
 * follow-up call stays on it (issue 21): the Gemini Files API's resumable upload and
 * download through `@google/genai`, Anthropic's Message Batches results through
 * `@anthropic-ai/sdk` (plain and beta), against recording mocks that answer as the
 * providers do. The same flows through the Python SDKs are in url-rewrite-python.test.ts.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import { jsonUrlFields, rewriteJsonUrls } from '../src/proxy/rewrite.ts';
import { AnthropicBatches } from './support/anthropic-batches.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { GoogleFiles } from './support/google-files.ts';
import { MockUpstream, type Recorded, type Responder } from './support/mock-upstream.ts';
import { seededRandom } from './support/random.ts';

const GEMINI_KEY = fakeKey('AIza');
const ANTHROPIC_KEY = fakeKey('sk-ant');
const DUMMY = 'dummy-key';
const MiB = 1024 * 1024;
/** The API version @google/genai 3.3 calls by default. */
const V = 'v1';

function randomBytes(size: number, seed: number): Uint8Array<ArrayBuffer> {
  const rand = seededRandom(seed);
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 4) {
    const x = rand(2 ** 32);
    bytes[i] = x;
    bytes[i + 1] = x >>> 8;
    bytes[i + 2] = x >>> 16;
    bytes[i + 3] = x >>> 24;
  }
  return bytes;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/** The gateway's key reached the upstream, and nothing the client sent as a credential did. */
function expectGatewayKey(rec: Recorded) {
  expect(rec.headers['x-goog-api-key']).toBe(GEMINI_KEY);
  expect(JSON.stringify(rec.headers)).not.toContain(DUMMY);
  expect(rec.query).not.toMatch(/(^|&)key=/);
}

const genai = (gw: TestGateway, apiKey = DUMMY) =>
  new GoogleGenAI({ apiKey, httpOptions: { baseUrl: `${gw.url}/genai_passthrough` } });

describe('Gemini Files API through the gateway (@google/genai)', () => {
  let mock: MockUpstream;
  let files: GoogleFiles;
  let gw: TestGateway;

  /** This test's own answers, before the Files API's (reset before each test). */
  let special: Responder | undefined;

  beforeAll(async () => {
    mock = new MockUpstream();
    files = new GoogleFiles(mock);
    mock.respondWith((req, rec) => special?.(req, rec));
    gw = await startGateway({
      providers: {
        gemini: {
          keys: [{ name: 'ge', value: GEMINI_KEY }],
          network_config: { base_url: mock.url, max_retries: 2, retry_backoff_initial: 1, retry_backoff_max: 2 },
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
    special = undefined;
  });

  test('files.upload of a 5 MB file: bytes intact at the upstream, the gateway key on every leg, a log line per leg', async () => {
    const bytes = randomBytes(5 * 1000 * 1000, 1);
    const file = await genai(gw).files.upload({ file: new Blob([bytes]), config: { mimeType: 'application/pdf' } });

    const [start, chunk, ...more] = mock.requests;
    expect(more).toEqual([]);
    expect(`${start!.method} ${start!.path}?${start!.query}`).toBe(`POST /upload/${V}/files?`);
    expect(start!.headers['x-goog-upload-command']).toBe('start');
    expect(chunk!.method).toBe('POST');
    expect(chunk!.path).toBe(`/upload/${V}/files`);
    expect(chunk!.query).toMatch(/^upload_id=ABgVH8[\w-]+&upload_protocol=resumable$/);
    expect(chunk!.headers['x-goog-upload-command']).toBe('upload, finalize');
    expect(chunk!.headers['x-goog-upload-offset']).toBe('0');
    // Streamed through with the length the client declared, not re-chunked.
    expect(chunk!.headers['content-length']).toBe(String(bytes.byteLength));
    for (const rec of [start!, chunk!]) expectGatewayKey(rec);

    const stored = files.files.get(file.name!.slice('files/'.length))!;
    expect(sameBytes(stored.bytes, bytes)).toBe(true);
    expect(file.sizeBytes).toBe(String(bytes.byteLength));
    // File.uri and downloadUri are identifiers the SDKs send back and parse: untouched.
    expect(file.uri).toBe(`${mock.url}/${V}/${file.name}`);
    expect(file.downloadUri).toBe(`${mock.url}/${V}/${file.name}:download?alt=media`);

    const lines = (await gw.waitForLines(2)).filter((l) => l.path === `/upload/${V}/files`);
    expect(lines.map((l) => [l.method, l.status, l.key, l.outcome])).toEqual([
      ['POST', 200, 'ge', 'ok'],
      ['POST', 200, 'ge', 'ok'],
    ]);
    expect(lines[1].bytes_in).toBe(bytes.byteLength);
  });

  test('a 9 MiB file goes in two chunks (active, then final), each through the gateway', async () => {
    const bytes = randomBytes(9 * MiB, 2);
    const file = await genai(gw).files.upload({ file: new Blob([bytes]), config: { mimeType: 'video/mp4' } });
    expect(mock.requests.length).toBe(3);
    const session = files.files.get(file.name!.slice('files/'.length))!;
    expect(session.chunks).toEqual([
      { offset: 0, length: 8 * MiB, command: 'upload' },
      { offset: 8 * MiB, length: MiB, command: 'upload, finalize' },
    ]);
    expect(sameBytes(session.bytes, bytes)).toBe(true);
    for (const rec of mock.requests) expectGatewayKey(rec);
  });

  test('the start answer names the gateway: x-goog-upload-url and -control-url rewritten, path and query as encoded', async () => {
    const res = await fetch(`${gw.url}/genai_passthrough/upload/v1beta/files`, {
      method: 'POST',
      headers: { 'x-goog-api-key': DUMMY, 'x-goog-upload-protocol': 'resumable', 'x-goog-upload-command': 'start' },
      body: '{"file":{"display_name":"a"}}',
    });
    expect(res.status).toBe(200);
    const url = res.headers.get('x-goog-upload-url')!;
    expect(url).toMatch(
      new RegExp(
        `^${gw.url}/genai_passthrough/upload/v1beta/files\\?upload_id=ABgVH8[\\w-]+&upload_protocol=resumable$`,
      ),
    );
    expect(res.headers.get('x-goog-upload-control-url')).toBe(url);
    expect(res.headers.get('x-goog-upload-status')).toBe('active');
    expect(res.headers.get('x-goog-upload-chunk-granularity')).toBe('8388608');
  });

  test('an upload chunk streams through once: never held, so never replayed (a 503 is not retried)', async () => {
    const upload = await fetch(`${gw.url}/genai_passthrough/upload/v1beta/files`, {
      method: 'POST',
      headers: { 'x-goog-upload-command': 'start', 'x-goog-upload-header-content-length': '10' },
    });
    const url = upload.headers.get('x-goog-upload-url')!;
    special = (_req, rec) => (rec.query.includes('upload_id=') ? new Response('busy', { status: 503 }) : undefined);
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'x-goog-upload-command': 'upload, finalize', 'x-goog-upload-offset': '0' },
      body: '0123456789',
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('x-skybridge-attempts')).toBe('1');
    expect(mock.requests.filter((r) => r.query.includes('upload_id=')).length).toBe(1);
    // The start (a small body, held) is replayed like any other request.
    special = (_req, rec) =>
      rec.headers['x-goog-upload-command'] === 'start' && rec.query === 'retry=1'
        ? new Response('busy', { status: 503 })
        : undefined;
    const start = await fetch(`${gw.url}/genai_passthrough/upload/v1beta/files?retry=1`, {
      method: 'POST',
      headers: { 'x-goog-upload-command': 'start' },
      body: '{}',
    });
    expect(start.headers.get('x-skybridge-attempts')).toBe('3');
  });

  test('308 answers and x-goog-upload-* headers pass unchanged; a 308 is not followed', async () => {
    special = (_req, rec) =>
      rec.query.startsWith('upload_id=resume-1')
        ? new Response(null, {
            status: 308,
            headers: {
              'x-goog-upload-status': 'active',
              'x-goog-upload-size-received': '4194304',
              range: 'bytes=0-4194303',
            },
          })
        : undefined;
    const res = await fetch(`${gw.url}/genai_passthrough/upload/v1beta/files?upload_id=resume-1`, {
      method: 'POST',
      headers: { 'x-goog-upload-command': 'query' },
      redirect: 'manual',
    });
    expect(res.status).toBe(308);
    expect(res.headers.get('x-goog-upload-status')).toBe('active');
    expect(res.headers.get('x-goog-upload-size-received')).toBe('4194304');
    expect(res.headers.get('range')).toBe('bytes=0-4194303');
    expect(res.headers.get('location')).toBeNull();
    expect(mock.requests.length).toBe(1);
    expectGatewayKey(mock.last);
  });

  test('files.download: the 302 Location is rewritten, so the SDK follows it through the gateway with its key', async () => {
    const bytes = randomBytes(300_000, 3);
    files.files.set('dl1', { id: 'dl1', mimeType: 'application/pdf', bytes, chunks: [], done: true });
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-dl-'));
    const path = join(dir, 'file.pdf');
    await genai(gw).files.download({ file: 'files/dl1', downloadPath: path });
    expect(sameBytes(readFileSync(path), bytes)).toBe(true);
    expect(mock.requests.map((r) => `${r.method} ${r.path}?${r.query}`)).toEqual([
      `GET /${V}/files/dl1:download?alt=media`,
      `GET /download/${V}/files/dl1:download?alt=media`,
    ]);
    for (const rec of mock.requests) expectGatewayKey(rec);
    const lines = await gw.waitForLine((l) => l.path === `/download/${V}/files/dl1:download`);
    expect(lines.status).toBe(200);
    const redirect = await fetch(`${gw.url}/genai_passthrough/v1beta/files/dl1:download?alt=media`, {
      redirect: 'manual',
    });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe(
      `${gw.url}/genai_passthrough/download/v1beta/files/dl1:download?alt=media`,
    );
  });

  test('only the upstream origin is rewritten: other hosts, ports, schemes and userinfo are left as they are', async () => {
    const port = new URL(mock.url).port;
    const cases: Record<string, string> = {
      other: 'https://storage.googleapis.com/upload/x?upload_id=1',
      port: `http://127.0.0.1:${Number(port) + 1}/upload/v1beta/files?upload_id=1`,
      scheme: `https://127.0.0.1:${port}/upload/v1beta/files?upload_id=1`,
      userinfo: `http://user@127.0.0.1:${port}/upload/v1beta/files?upload_id=1`,
      relative: 'upload/v1beta/files?upload_id=1',
      network: `//127.0.0.1:${port}/upload/v1beta/files`,
      dots: `http://127.0.0.1:${port}/upload/../../openai_passthrough/v1/models`,
    };
    special = (_req, rec) => {
      const which = /^\/v1beta\/case\/(\w+)$/.exec(rec.path)?.[1];
      return which ? new Response(null, { headers: { 'x-goog-upload-url': cases[which]! } }) : undefined;
    };
    for (const [which, url] of Object.entries(cases)) {
      const res = await fetch(`${gw.url}/genai_passthrough/v1beta/case/${which}`);
      expect([which, res.headers.get('x-goog-upload-url')]).toEqual([which, url]);
    }
  });

  test('the same origin spelled otherwise is rewritten (host case, explicit port); key= is removed; a path-only Location counts', async () => {
    const port = new URL(mock.url).port;
    special = (_req, rec) => {
      if (rec.path === '/v1beta/spelled')
        return new Response(null, {
          headers: {
            'x-goog-upload-url': `HTTP://127.0.0.1:${port}/upload/v1beta/files?upload_id=%41b&key=AIzaLeak&x=1`,
          },
        });
      if (rec.path === '/v1beta/moved')
        return new Response(null, { status: 301, headers: { location: '/v1beta/files/abc?KEY=AIzaLeak#frag' } });
      return undefined;
    };
    const spelled = await fetch(`${gw.url}/genai_passthrough/v1beta/spelled`);
    expect(spelled.headers.get('x-goog-upload-url')).toBe(
      `${gw.url}/genai_passthrough/upload/v1beta/files?upload_id=%41b&x=1`,
    );
    const moved = await fetch(`${gw.url}/genai_passthrough/v1beta/moved`, { redirect: 'manual' });
    expect(moved.status).toBe(301);
    expect(moved.headers.get('location')).toBe(`${gw.url}/genai_passthrough/v1beta/files/abc#frag`);
  });

  test('Location is rewritten on redirects only', async () => {
    special = (_req, rec) =>
      rec.path.endsWith('/created')
        ? Response.json({}, { status: 201, headers: { location: `${mock.url}/v1beta/x` } })
        : undefined;
    const created = await fetch(`${gw.url}/genai_passthrough/v1beta/created`, { method: 'POST', body: '{}' });
    expect(created.headers.get('location')).toBe(`${mock.url}/v1beta/x`);
  });
});

describe('the public origin of rewritten URLs', () => {
  let mock: MockUpstream;
  const gateways: TestGateway[] = [];
  const start = async (server: Record<string, unknown>) => {
    const gw = await startGateway({
      server,
      providers: { gemini: { keys: [{ name: 'ge', value: GEMINI_KEY }], network_config: { base_url: mock.url } } },
    });
    gateways.push(gw);
    return gw;
  };
  const startUpload = (url: string, headers: Record<string, string> = {}) =>
    fetch(url, { method: 'POST', headers: { 'x-goog-upload-command': 'start', ...headers }, body: '{}' }).then((r) =>
      r.headers.get('x-goog-upload-url'),
    );

  beforeAll(() => {
    mock = new MockUpstream();
    new GoogleFiles(mock);
  });
  afterAll(async () => {
    for (const gw of gateways) await gw.stop();
    await mock.stop();
  });

  test('server.public_url is honoured (with a path: the gateway mounted below a reverse proxy)', async () => {
    const gw = await start({ public_url: 'https://LLM.example.com:443/gw/' });
    const url = await startUpload(`${gw.url}/genai_passthrough/upload/v1beta/files`, {
      'x-forwarded-host': 'evil.example',
    });
    expect(url).toMatch(/^https:\/\/llm\.example\.com\/gw\/genai_passthrough\/upload\/v1beta\/files\?upload_id=/);
    // The generic route's prefix is the one used for its requests.
    const generic = await startUpload(`${gw.url}/passthrough/gemini/upload/v1beta/files`);
    expect(generic).toMatch(/^https:\/\/llm\.example\.com\/gw\/passthrough\/gemini\/upload\/v1beta\/files\?upload_id=/);
  });

  test("without public_url: the request's Host; X-Forwarded-* only from server.trusted_proxies", async () => {
    const plain = await start({});
    const forwarded = { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'llm.example.com' };
    const own = await startUpload(`${plain.url}/genai_passthrough/upload/v1beta/files`, {
      host: 'gateway.internal:8080',
      ...forwarded,
    });
    expect(own).toMatch(/^http:\/\/gateway\.internal:8080\/genai_passthrough\/upload\/v1beta\/files\?upload_id=/);

    const trusting = await start({ trusted_proxies: ['10.0.0.0/8', '127.0.0.1'] });
    const viaProxy = await startUpload(`${trusting.url}/genai_passthrough/upload/v1beta/files`, forwarded);
    expect(viaProxy).toMatch(/^https:\/\/llm\.example\.com\/genai_passthrough\/upload\/v1beta\/files\?upload_id=/);
    const port = await startUpload(`${trusting.url}/genai_passthrough/upload/v1beta/files`, {
      'x-forwarded-proto': 'http, https',
      'x-forwarded-host': 'a.example, llm.example.com',
      'x-forwarded-port': '8443',
    });
    expect(port).toMatch(/^https:\/\/llm\.example\.com:8443\/genai_passthrough\//);
    // A forwarded host that is not a host is not believed.
    const bad = await startUpload(`${trusting.url}/genai_passthrough/upload/v1beta/files`, {
      'x-forwarded-host': 'evil.example/path?',
    });
    expect(bad!.startsWith(`${trusting.url}/genai_passthrough/`)).toBe(true);
  });

  test('public_url and trusted_proxies are checked when the config loads', async () => {
    for (const server of [
      { public_url: 'https://llm.example.com/?x=1' },
      { public_url: 'https://user:pw@llm.example.com' },
      { public_url: 'ftp://llm.example.com' },
      { trusted_proxies: ['10.0.0.0/33'] },
      { trusted_proxies: ['proxy.internal'] },
    ]) {
      await expect(start(server)).rejects.toThrow(/server\.(public_url|trusted_proxies)/);
    }
  });
});

describe('Gemini uploads under governance (virtual keys optional)', () => {
  let mock: MockUpstream;
  let files: GoogleFiles;
  let gw: TestGateway;
  const team = { name: 'team', value: fakeKey('sk-vk-team') };

  beforeAll(async () => {
    mock = new MockUpstream();
    files = new GoogleFiles(mock);
    gw = await startGateway({
      providers: { gemini: { keys: [{ name: 'ge', value: GEMINI_KEY }], network_config: { base_url: mock.url } } },
      governance: { virtual_keys: [{ ...team, rate_limit: { requests_per_minute: 2 } }] },
    });
    const now = Date.now(); // pinned: the minute window must not roll over mid-test
    gw.gw.plugins.governance.now = () => now;
  });
  afterAll(async () => {
    await gw.stop();
    await mock.stop();
  });

  test('files.upload of a 5 MB file with a virtual key: each leg logged under it and charged to it', async () => {
    const bytes = randomBytes(5 * 1000 * 1000, 5);
    const file = await genai(gw, team.value).files.upload({
      file: new Blob([bytes]),
      config: { mimeType: 'image/png' },
    });
    expect(sameBytes(files.files.get(file.name!.slice('files/'.length))!.bytes, bytes)).toBe(true);
    for (const rec of mock.requests) expectGatewayKey(rec);
    const lines = (await gw.waitForLines(2)).filter((l) => l.path === `/upload/${V}/files`);
    expect(lines.map((l) => [l.status, l.virtual_key])).toEqual([
      [200, 'team'],
      [200, 'team'],
    ]);
    const third = await genai(gw, team.value)
      .models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi' })
      .catch((e) => e);
    expect(third.status).toBe(429);
    // Without a virtual key the upload is ungoverned, and works the same.
    const open = await genai(gw).files.upload({ file: new Blob([bytes]), config: { mimeType: 'image/png' } });
    expect(sameBytes(files.files.get(open.name!.slice('files/'.length))!.bytes, bytes)).toBe(true);
  });
});

describe('Gemini uploads under governance.required: true', () => {
  let mock: MockUpstream;
  let files: GoogleFiles;
  let gw: TestGateway;
  const uploader = { name: 'uploader', value: fakeKey('sk-vk-up') };
  const other = { name: 'other', value: fakeKey('sk-vk-other') };

  beforeAll(async () => {
    mock = new MockUpstream();
    files = new GoogleFiles(mock);
    gw = await startGateway({
      providers: { gemini: { keys: [{ name: 'ge', value: GEMINI_KEY }], network_config: { base_url: mock.url } } },
      governance: {
        required: true,
        virtual_keys: [
          // Limited to some models: an upload names none, and its bytes are not read for one.
          { ...uploader, models: ['gemini-2.5*'], rate_limit: { requests_per_minute: 2 } },
          { ...other },
        ],
      },
    });
    // Pinned: the requests_per_minute window must not roll over mid-test.
    const now = Date.now();
    gw.gw.plugins.governance.now = () => now;
  });
  afterAll(async () => {
    await gw.stop();
    await mock.stop();
  });
  beforeEach(() => {
    mock.requests.length = 0;
  });

  test('files.upload with a virtual key: every leg governed by it and counted to it, the gateway key upstream', async () => {
    const bytes = randomBytes(5 * 1000 * 1000, 4);
    const file = await genai(gw, uploader.value).files.upload({
      file: new Blob([bytes]),
      config: { mimeType: 'application/pdf' },
    });
    expect(sameBytes(files.files.get(file.name!.slice('files/'.length))!.bytes, bytes)).toBe(true);
    expect(mock.requests.length).toBe(2);
    for (const rec of mock.requests) {
      expect(rec.headers['x-goog-api-key']).toBe(GEMINI_KEY);
      expect(JSON.stringify(rec.headers)).not.toContain(uploader.value);
    }
    const lines = (await gw.waitForLines(2)).filter((l) => l.path === `/upload/${V}/files`);
    expect(lines.map((l) => l.virtual_key)).toEqual(['uploader', 'uploader']);
    // Both legs were charged to its requests_per_minute (2): a third request is refused.
    const third = await genai(gw, uploader.value)
      .models.generateContent({ model: 'gemini-2.5-flash', contents: 'hi' })
      .catch((e) => e);
    expect(third.status).toBe(429);
  });

  test('a chunk without any credential is refused for an upload_id the gateway never saw start', async () => {
    const res = await fetch(`${gw.url}/genai_passthrough/upload/v1beta/files?upload_id=ABgVH8forged`, {
      method: 'POST',
      headers: { 'x-goog-upload-command': 'upload, finalize', 'x-goog-upload-offset': '0' },
      body: 'bytes',
    });
    expect(res.status).toBe(401);
    const body = await res.json();
    expect(body.error.type).toBe('unauthorized');
    expect(body.error.message).toContain('upload session');
    expect(mock.requests.length).toBe(0);
  });

  test('a chunk presenting another virtual key than the one that started the upload is refused', async () => {
    const start = await fetch(`${gw.url}/genai_passthrough/upload/v1beta/files`, {
      method: 'POST',
      headers: {
        'x-goog-api-key': other.value,
        'x-goog-upload-command': 'start',
        'x-goog-upload-header-content-length': '5',
      },
      body: '{}',
    });
    const url = start.headers.get('x-goog-upload-url')!;
    const chunk = (headers: Record<string, string>) =>
      fetch(url, {
        method: 'POST',
        headers: { 'x-goog-upload-command': 'upload, finalize', 'x-goog-upload-offset': '0', ...headers },
        body: 'hello',
      });
    mock.requests.length = 0;
    const stolen = await chunk({ 'x-goog-api-key': uploader.value });
    expect(stolen.status).toBe(403);
    expect(mock.requests.length).toBe(0);
    // Without a credential the session's own key governs it.
    const own = await chunk({});
    expect(own.status).toBe(200);
    expect(own.headers.get('x-goog-upload-status')).toBe('final');
    const line = await gw.waitForLine((l) => l.request_id === own.headers.get('x-request-id'));
    expect(line.virtual_key).toBe('other');
  });
});

// --- Anthropic Message Batches --------------------------------------------------------

describe('Anthropic Message Batches through the gateway (@anthropic-ai/sdk)', () => {
  let mock: MockUpstream;
  let batches: AnthropicBatches;
  let gw: TestGateway;
  let client: Anthropic;
  const requests = [
    {
      custom_id: 'a',
      params: {
        model: 'claude-sonnet-4-20250514',
        max_tokens: 10,
        messages: [{ role: 'user' as const, content: 'hi' }],
      },
    },
    {
      custom_id: 'b',
      params: {
        model: 'claude-sonnet-4-20250514',
        max_tokens: 10,
        messages: [{ role: 'user' as const, content: 'ho' }],
      },
    },
  ];

  beforeAll(async () => {
    mock = new MockUpstream();
    batches = new AnthropicBatches(mock);
    gw = await startGateway({
      providers: {
        anthropic: { keys: [{ name: 'an', value: ANTHROPIC_KEY }], network_config: { base_url: mock.url } },
      },
    });
    client = new Anthropic({ baseURL: `${gw.url}/anthropic_passthrough`, apiKey: DUMMY });
  });
  afterAll(async () => {
    await gw.stop();
    await mock.stop();
  });
  beforeEach(() => {
    mock.requests.length = 0;
    batches.override = undefined;
  });

  const gatewayResults = (id: string) => `${gw.url}/anthropic_passthrough/v1/messages/batches/${id}/results`;

  async function resultsOf(decoder: AsyncIterable<unknown>) {
    const out: unknown[] = [];
    for await (const item of decoder) out.push(item);
    return out;
  }

  for (const flavour of ['plain', 'beta'] as const) {
    test(`${flavour}: create, retrieve, list, cancel answer with results_url on the gateway; results() reads the JSONL through it`, async () => {
      const api = flavour === 'beta' ? client.beta.messages.batches : client.messages.batches;
      const created = await api.create({ requests });
      expect(created.results_url).toBe(gatewayResults(created.id));
      const retrieved = await api.retrieve(created.id);
      expect(retrieved.results_url).toBe(gatewayResults(created.id));
      const listed = [];
      for await (const b of api.list()) listed.push(b);
      expect(listed.find((b) => b.id === created.id)?.results_url).toBe(gatewayResults(created.id));
      const canceled = await api.cancel(created.id);
      expect(canceled.results_url).toBe(gatewayResults(created.id));

      mock.requests.length = 0;
      const results = await resultsOf(
        flavour === 'beta'
          ? await client.beta.messages.batches.results(created.id, { betas: ['message-batches-2024-09-24'] })
          : await api.results(created.id),
      );
      const expected = batches.results
        .get(created.id)!
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(results).toEqual(expected);
      expect(mock.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
        `GET /v1/messages/batches/${created.id}`,
        `GET /v1/messages/batches/${created.id}/results`,
      ]);
      for (const rec of mock.requests) {
        expect(rec.headers['x-api-key']).toBe(ANTHROPIC_KEY);
        expect(JSON.stringify(rec.headers)).not.toContain(DUMMY);
      }
      // The beta flavour differs on the wire by its header (the Python SDK also adds ?beta=true).
      if (flavour === 'beta')
        for (const rec of mock.requests) expect(rec.headers['anthropic-beta']).toBe('message-batches-2024-09-24');
      const line = await gw.waitForLine((l) => l.path === `/v1/messages/batches/${created.id}/results`);
      expect([line.status, line.key]).toEqual([200, 'an']);
    });
  }

  test('the JSON edit changes only the string value: member order, spacing, escapes and every other byte kept', async () => {
    const port = new URL(mock.url).port;
    const original = `{ "type" : "message_batch",\n  "id":"msgbatch_x", "note": "results_url: http:\\/\\/127.0.0.1:${port}\\/v1",\n  "results_url" :\t"http:\\/\\/127.0.0.1:${port}\\/v1\\/messages\\/batches\\/msgbatch_x\\/results",  "z" : [1, {"results_url": "keep"}]\n}\n`;
    batches.override = (path) => (path === '/v1/messages/batches/msgbatch_x' ? { text: original } : undefined);
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages/batches/msgbatch_x`);
    const text = await res.text();
    const expected = original.replace(
      /"http:\\\/\\\/127\.0\.0\.1:\d+\\\/v1\\\/messages\\\/batches\\\/msgbatch_x\\\/results"/,
      JSON.stringify(gatewayResults('msgbatch_x')),
    );
    expect(expected).not.toBe(original);
    expect(text).toBe(expected);
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(expected)));
  });

  test('list: results_url in each element of data[] rewritten; another origin left untouched', async () => {
    const body = {
      data: [
        { id: 'b1', results_url: `${mock.url}/v1/messages/batches/b1/results` },
        { id: 'b2', results_url: null },
        { id: 'b3', results_url: 'https://api.anthropic.com/v1/messages/batches/b3/results' },
      ],
      has_more: false,
      first_id: 'b1',
      last_id: 'b3',
    };
    batches.override = (path) => (path === '/v1/messages/batches' ? { text: JSON.stringify(body) } : undefined);
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages/batches?limit=3`);
    const got = await res.json();
    expect(got).toEqual({
      ...body,
      data: [{ id: 'b1', results_url: gatewayResults('b1') }, body.data[1], body.data[2]],
    });
  });

  test('a gzip-encoded batch answer is inflated, edited and sent uncompressed with its new length', async () => {
    const batch = {
      id: 'msgbatch_gz',
      type: 'message_batch',
      results_url: `${mock.url}/v1/messages/batches/msgbatch_gz/results`,
    };
    const text = JSON.stringify(batch);
    batches.override = (path) => (path === '/v1/messages/batches/msgbatch_gz' ? { text, gzip: true } : undefined);
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages/batches/msgbatch_gz`, {
      headers: { 'accept-encoding': 'gzip' },
      decompress: false,
    });
    expect(mock.last.headers['accept-encoding']).toBe('gzip');
    expect(res.headers.get('content-encoding')).toBeNull();
    const bytes = new Uint8Array(await res.arrayBuffer());
    const expected = JSON.stringify({ ...batch, results_url: gatewayResults('msgbatch_gz') });
    expect(new TextDecoder().decode(bytes)).toBe(expected);
    expect(res.headers.get('content-length')).toBe(String(bytes.byteLength));
    // Through the SDK (which asks for compression) as well.
    const viaSdk = await client.messages.batches.retrieve('msgbatch_gz');
    expect(viaSdk.results_url).toBe(gatewayResults('msgbatch_gz'));
  });

  test('a gzip answer with nothing to rewrite is relayed compressed, byte for byte; so is a chunked one', async () => {
    const text = JSON.stringify({
      id: 'msgbatch_o',
      results_url: 'https://api.anthropic.com/v1/messages/batches/o/results',
    });
    batches.override = (path) =>
      path === '/v1/messages/batches/msgbatch_o' ? { text, gzip: true, chunked: true } : undefined;
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages/batches/msgbatch_o`, {
      headers: { 'accept-encoding': 'gzip' },
      decompress: false,
    });
    expect(res.headers.get('content-encoding')).toBe('gzip');
    expect(sameBytes(new Uint8Array(await res.arrayBuffer()), gzipSync(text))).toBe(true);
  });

  test('an answer without a declared length (chunked) is read whole and rewritten', async () => {
    const text = JSON.stringify({
      id: 'msgbatch_c',
      results_url: `${mock.url}/v1/messages/batches/msgbatch_c/results`,
    });
    batches.override = (path) => (path === '/v1/messages/batches/msgbatch_c' ? { text, chunked: true } : undefined);
    const got = await client.messages.batches.retrieve('msgbatch_c');
    expect(got.results_url).toBe(gatewayResults('msgbatch_c'));
  });

  test('other Anthropic answers are not touched, even with a results_url in them', async () => {
    const text = `{"results_url":"${mock.url}/v1/messages/batches/x/results","model":"m"}`;
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/messages/count_tokens'
        ? new Response(text, { headers: { 'content-type': 'application/json' } })
        : undefined,
    );
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages/count_tokens`, { method: 'POST', body: '{}' });
    expect(await res.text()).toBe(text);
  });
});

describe('a base URL with a path', () => {
  let mock: MockUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    mock = new MockUpstream();
    new GoogleFiles(mock);
    gw = await startGateway({
      providers: {
        anthropic: {
          keys: [{ name: 'an', value: ANTHROPIC_KEY }],
          network_config: { base_url: `${mock.url}/corp-proxy/anthropic` },
        },
        gemini: { keys: [{ name: 'ge', value: GEMINI_KEY }], network_config: { base_url: `${mock.url}/corp-proxy` } },
      },
    });
  });
  afterAll(async () => {
    await gw.stop();
    await mock.stop();
  });

  test('a URL below the base path maps back below it; one the gateway cannot route back is left as it is', async () => {
    mock.respondWith((_req, rec) =>
      rec.path.startsWith('/corp-proxy/anthropic/v1/messages/batches/')
        ? Response.json({
            data: [
              { id: 'in', results_url: `${mock.url}/corp-proxy/anthropic/v1/messages/batches/in/results` },
              { id: 'out', results_url: `${mock.url}/other/v1/messages/batches/out/results` },
            ],
          })
        : undefined,
    );
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages/batches/x`);
    const body = await res.json();
    expect(body.data[0].results_url).toBe(`${gw.url}/anthropic_passthrough/v1/messages/batches/in/results`);
    expect(body.data[1].results_url).toBe(`${mock.url}/other/v1/messages/batches/out/results`);
    await fetch(body.data[0].results_url);
    expect(mock.last.path).toBe('/corp-proxy/anthropic/v1/messages/batches/in/results');
  });

  test('Gemini: /upload/ and /download/ go to the origin, and the session URL comes back through the gateway', async () => {
    const start = await fetch(`${gw.url}/genai_passthrough/upload/v1beta/files`, {
      method: 'POST',
      headers: { 'x-goog-upload-command': 'start', 'x-goog-upload-header-content-length': '3' },
      body: '{}',
    });
    expect(mock.last.path).toBe('/upload/v1beta/files');
    const url = start.headers.get('x-goog-upload-url')!;
    expect(url.startsWith(`${gw.url}/genai_passthrough/upload/v1beta/files?upload_id=`)).toBe(true);
    const done = await fetch(url, {
      method: 'POST',
      headers: { 'x-goog-upload-command': 'upload, finalize', 'x-goog-upload-offset': '0' },
      body: 'abc',
    });
    expect(done.headers.get('x-goog-upload-status')).toBe('final');
    expect(`${mock.last.path}?${mock.last.query}`).toBe(url.slice(`${gw.url}/genai_passthrough`.length));
    // Other Gemini paths stay below the base path.
    await fetch(`${gw.url}/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent`, {
      method: 'POST',
      body: '{}',
    });
    expect(mock.last.path).toBe('/corp-proxy/v1beta/models/gemini-2.5-flash:generateContent');
  });
});

describe('rewriteJsonUrls (the byte walk)', () => {
  const fields = jsonUrlFields(['results_url', 'data[].results_url', 'a.b.url']);
  const urls = { rewrite: (v: string) => (v.startsWith('http://up/') ? `http://gw/p/${v.slice(10)}` : undefined) };
  const run = (text: string) => {
    const out = rewriteJsonUrls(new TextEncoder().encode(text), fields, urls);
    return out && new TextDecoder('utf-8', { ignoreBOM: true }).decode(out);
  };

  test('members at their paths only; nothing else changes', () => {
    expect(run('{"results_url":"http://up/x"}')).toBe('{"results_url":"http://gw/p/x"}');
    expect(run('\uFEFF {"x":{"results_url":"http://up/x"},"results_url" : "http:\\/\\/up\\/y" } ')).toBe(
      '\uFEFF {"x":{"results_url":"http://up/x"},"results_url" : "http://gw/p/y" } ',
    );
    expect(run('{"data":[{"results_url":"http://up/1"},7,null,{"id":"q","results_url":"http://up/2"}]}')).toBe(
      '{"data":[{"results_url":"http://gw/p/1"},7,null,{"id":"q","results_url":"http://gw/p/2"}]}',
    );
    expect(run('{"a":{"b":{"url":"http://up/deep","x":"http://up/no"}}}')).toBe(
      '{"a":{"b":{"url":"http://gw/p/deep","x":"http://up/no"}}}',
    );
    expect(run('{"results_\\u0075rl":"http://up/esc"}')).toBe('{"results_\\u0075rl":"http://gw/p/esc"}');
    expect(run('{"res\\"ults_url":"http://up/x","results_url":"ok \\" http://up/"}')).toBeUndefined();
  });

  test('nothing to change, or a structure that cannot be followed: undefined (the answer is relayed as it is)', () => {
    for (const text of [
      '{"results_url":null}',
      '{"results_url":"https://other/x"}',
      '[{"results_url":"http://up/x"}]',
      '{"results_url":"http://up/x"',
      '{"results_url":"http://up/x"} trailing',
      '{"results_url" "http://up/x"}',
      '',
    ])
      expect([text, run(text)]).toEqual([text, undefined]);
  });
});
