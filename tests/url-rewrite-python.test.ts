/**
 * The follow-up calls of issue 21 through the official Python SDKs (.venv-seed, made by
 * scripts/setup-test-deps; driven by tests/python/url_rewrite.py): google-genai's
 * files.upload, whose chunk requests carry no credential at all (the upload_id is one),
 * with and without governance.required; files.download; anthropic's batches.results(),
 * plain and beta.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AnthropicBatches } from './support/anthropic-batches.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { GoogleFiles } from './support/google-files.ts';
import { MockUpstream } from './support/mock-upstream.ts';

const PYTHON = '.venv-seed/bin/python';
const GEMINI_KEY = fakeKey('AIza');
const ANTHROPIC_KEY = fakeKey('sk-ant');
const uploader = { name: 'py-uploader', value: fakeKey('sk-vk-py') };
/** The API version google-genai 2.25 calls by default. */
const V = 'v1beta';
const dir = mkdtempSync(join(tmpdir(), 'skybridge-py-'));

let mock: MockUpstream;
let files: GoogleFiles;
let batches: AnthropicBatches;
let gw: TestGateway;
let gwRequired: TestGateway;

async function python(gateway: TestGateway, apiKey: string, ...args: string[]): Promise<any> {
  if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run bash scripts/setup-test-deps`);
  const proc = Bun.spawn([PYTHON, '-W', 'ignore', 'tests/python/url_rewrite.py', ...args], {
    env: { ...process.env, SKYBRIDGE_URL: gateway.url, API_KEY: apiKey },
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`url_rewrite.py ${args.join(' ')} failed:\n${err}`);
  return JSON.parse(out);
}

function fileOf(bytes: Uint8Array, name: string): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

beforeAll(async () => {
  mock = new MockUpstream();
  files = new GoogleFiles(mock);
  batches = new AnthropicBatches(mock);
  const providers = {
    gemini: { keys: [{ name: 'ge', value: GEMINI_KEY }], network_config: { base_url: mock.url } },
    anthropic: { keys: [{ name: 'an', value: ANTHROPIC_KEY }], network_config: { base_url: mock.url } },
  };
  gw = await startGateway({ providers });
  gwRequired = await startGateway({
    providers,
    governance: {
      required: true,
      virtual_keys: [{ ...uploader, models: ['gemini-*'], rate_limit: { requests_per_minute: 2 } }],
    },
  });
  const now = Date.now(); // pinned: the minute window must not roll over mid-test
  gwRequired.gw.plugins.governance.now = () => now;
});
afterAll(async () => {
  await gw.stop();
  await gwRequired.stop();
  await mock.stop();
});
beforeEach(() => {
  mock.requests.length = 0;
});

describe('google-genai (Python)', () => {
  test('files.upload of a 5 MB file: the chunk carries no credential, the bytes arrive intact with the gateway key', async () => {
    const bytes = randomBytes(5 * 1000 * 1000);
    const out = await python(gw, 'dummy-key', 'gemini_upload', fileOf(bytes, 'a.pdf'), 'application/pdf');
    // What the SDK itself sent: the start with its key, the chunk with none.
    expect(out.sent.map((s: any) => [s.method, s.path, s.query.startsWith('upload_id='), s.credential])).toEqual([
      ['POST', `/genai_passthrough/upload/${V}/files`, false, true],
      ['POST', `/genai_passthrough/upload/${V}/files`, true, false],
    ]);
    const stored = files.files.get(out.name.slice('files/'.length))!;
    expect(Buffer.from(stored.bytes).equals(Buffer.from(bytes))).toBe(true);
    expect(out.size_bytes).toBe(bytes.byteLength);
    expect(out.uri).toBe(`${mock.url}/${V}/${out.name}`);
    expect(mock.requests.length).toBe(2);
    for (const rec of mock.requests) {
      expect(rec.headers['x-goog-api-key']).toBe(GEMINI_KEY);
      expect(JSON.stringify(rec.headers)).not.toContain('dummy-key');
    }
    const lines = (await gw.waitForLines(2)).filter((l) => l.path === `/upload/${V}/files`);
    expect(lines.length).toBe(2);
  }, 60_000);

  test('governance.required: the credential-less chunk is admitted for the upload the virtual key started, and counted to it', async () => {
    const bytes = randomBytes(5 * 1000 * 1000);
    const out = await python(gwRequired, uploader.value, 'gemini_upload', fileOf(bytes, 'b.pdf'), 'application/pdf');
    expect(out.sent.map((s: any) => s.credential)).toEqual([true, false]);
    expect(Buffer.from(files.files.get(out.name.slice('files/'.length))!.bytes).equals(Buffer.from(bytes))).toBe(true);
    for (const rec of mock.requests) expect(rec.headers['x-goog-api-key']).toBe(GEMINI_KEY);
    const lines = (await gwRequired.waitForLines(2)).filter((l) => l.path === `/upload/${V}/files`);
    expect(lines.map((l) => [l.status, l.virtual_key])).toEqual([
      [200, 'py-uploader'],
      [200, 'py-uploader'],
    ]);
    // Both legs were counted to its requests_per_minute (2): the next request is refused.
    const third = await fetch(`${gwRequired.url}/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': uploader.value },
      body: '{}',
    });
    expect(third.status).toBe(429);
  }, 60_000);

  test('files.download follows the rewritten redirect through the gateway', async () => {
    const bytes = randomBytes(200_000);
    files.files.set('pydl', { id: 'pydl', mimeType: 'application/pdf', bytes, chunks: [], done: true });
    const dest = join(dir, 'downloaded.pdf');
    const out = await python(gw, 'dummy-key', 'gemini_download', 'files/pydl', dest);
    expect(Buffer.from(readFileSync(dest)).equals(Buffer.from(bytes))).toBe(true);
    expect(out.sent.map((s: any) => s.path)).toEqual([
      `/genai_passthrough/${V}/files/pydl:download`,
      `/genai_passthrough/download/${V}/files/pydl:download`,
    ]);
    expect(mock.requests.map((r) => r.path)).toEqual([
      `/${V}/files/pydl:download`,
      `/download/${V}/files/pydl:download`,
    ]);
    for (const rec of mock.requests) expect(rec.headers['x-goog-api-key']).toBe(GEMINI_KEY);
  }, 60_000);
});

describe('anthropic (Python)', () => {
  for (const flavour of ['plain', 'beta']) {
    test(`${flavour}: batches.create, then batches.results(): the JSONL read through the gateway, intact`, async () => {
      const out = await python(gw, 'dummy-key', 'anthropic_batches', flavour);
      expect(out.results_url).toBe(`${gw.url}/anthropic_passthrough/v1/messages/batches/${out.id}/results`);
      const expected = batches.results
        .get(out.id)!
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(out.results).toEqual(expected);
      expect(mock.requests.map((r) => `${r.method} ${r.path}?${r.query}`)).toEqual(
        flavour === 'beta'
          ? [
              'POST /v1/messages/batches?beta=true',
              `GET /v1/messages/batches/${out.id}?beta=true`,
              `GET /v1/messages/batches/${out.id}/results?`,
            ]
          : [
              'POST /v1/messages/batches?',
              `GET /v1/messages/batches/${out.id}?`,
              `GET /v1/messages/batches/${out.id}/results?`,
            ],
      );
      for (const rec of mock.requests) {
        expect(rec.headers['x-api-key']).toBe(ANTHROPIC_KEY);
        expect(JSON.stringify(rec.headers)).not.toContain('dummy-key');
      }
    }, 60_000);
  }
});
