/**
 * Every example of the seed document exactly as written there: the Python SDK examples
 * (tests/python/seed_examples.py, official `openai`, `anthropic`, `google-genai`
 * packages in .venv-seed, set up by scripts/setup-test-deps) and the curl commands
 * (run with the real curl), the gateway address being the only change.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { existsSync } from 'node:fs';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { MockUpstream } from './support/mock-upstream.ts';

const PYTHON = '.venv-seed/bin/python';
const KEYS = {
  openai: fakeKey(),
  anthropic: fakeKey('sk-ant'),
  azure: fakeKey('az'),
  gemini: fakeKey('gem'),
  vertex: fakeKey('vx'),
};
let mock: MockUpstream;
let gw: TestGateway;
let base: string;

beforeAll(async () => {
  mock = new MockUpstream();
  const net = { base_url: mock.url };
  gw = await startGateway({
    providers: {
      openai: { keys: [{ name: 'openai', value: KEYS.openai }], network_config: net },
      anthropic: { keys: [{ name: 'anthropic', value: KEYS.anthropic }], network_config: net },
      azure: { keys: [{ name: 'azure', value: KEYS.azure, azure_key_config: { endpoint: mock.url } }] },
      gemini: { keys: [{ name: 'gemini', value: KEYS.gemini }], network_config: net },
      vertex: { keys: [{ name: 'vertex', value: KEYS.vertex }], network_config: net },
    },
  });
  // "localhost", as in the seed document.
  base = `http://localhost:${new URL(gw.url).port}`;
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

describe('seed Python examples (official Python SDKs)', () => {
  const expected: Array<[string, string, string, (h: Record<string, string>) => void]> = [
    [
      'openai_passthrough',
      'POST',
      '/v1/chat/completions',
      (h) => expect(h.authorization).toBe(`Bearer ${KEYS.openai}`),
    ],
    ['anthropic_passthrough', 'POST', '/v1/messages', (h) => expect(h['x-api-key']).toBe(KEYS.anthropic)],
    [
      'azure_openai_client',
      'POST',
      '/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21',
      (h) => expect(h['api-key']).toBe(KEYS.azure),
    ],
    ['azure_v1_responses', 'POST', '/openai/v1/responses', (h) => expect(h['api-key']).toBe(KEYS.azure)],
    ['azure_anthropic', 'POST', '/anthropic/v1/messages', (h) => expect(h['x-api-key']).toBe(KEYS.azure)],
    [
      'genai_gemini',
      'POST',
      '/v1beta/models/gemini-2.5-flash:generateContent',
      (h) => expect(h['x-goog-api-key']).toBe(KEYS.gemini),
    ],
    [
      'genai_vertex',
      'POST',
      '/v1beta1/publishers/google/models/gemini-2.5-flash:generateContent',
      (h) => expect(h['x-goog-api-key']).toBe(KEYS.vertex),
    ],
  ];

  for (const [name, method, target, checkAuth] of expected) {
    test(name, async () => {
      if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run bash scripts/setup-test-deps`);
      const proc = Bun.spawn([PYTHON, '-W', 'ignore', 'tests/python/seed_examples.py', name], {
        env: { ...process.env, SKYBRIDGE_URL: base },
        stdout: 'pipe',
        stderr: 'pipe',
      });
      const [out, err, code] = await Promise.all([
        new Response(proc.stdout).text(),
        new Response(proc.stderr).text(),
        proc.exited,
      ]);
      expect(`${out}${code === 0 ? '' : err}`).toBe(`${name}: hello from mock\n`);
      expect(mock.requests.length).toBe(1);
      const got = mock.last;
      expect(`${got.method} ${got.path}${got.query ? `?${got.query}` : ''}`).toBe(`${method} ${target}`);
      checkAuth(got.headers);
      expect(JSON.stringify(got.headers)).not.toContain('dummy-key');
    }, 60_000); // a Python interpreter importing an SDK takes seconds on a busy machine
  }
});

describe('seed curl examples (real curl)', () => {
  const curl = async (args: string[]) => {
    const proc = Bun.spawn(['curl', '-sS', ...args], { stdout: 'pipe', stderr: 'pipe' });
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (code !== 0) throw new Error(`curl failed: ${err}`);
    return JSON.parse(out);
  };

  test('OpenAI', async () => {
    const out = await curl([
      '-X',
      'POST',
      `${base}/openai_passthrough/v1/chat/completions`,
      '-H',
      'content-type: application/json',
      '-H',
      'authorization: Bearer sk-your-openai-key',
      '-d',
      '{\n"model": "gpt-4o-mini",\n"messages": [{"role":"user","content":"hello from passthrough"}]\n}',
    ]);
    expect(out.choices[0].message.content).toBe('hello from mock');
    expect(mock.last.headers.authorization).toBe(`Bearer ${KEYS.openai}`);
  });

  test('Anthropic', async () => {
    const out = await curl([
      '-X',
      'POST',
      `${base}/anthropic_passthrough/v1/messages`,
      '-H',
      'content-type: application/json',
      '-H',
      'x-api-key: your-anthropic-key',
      '-H',
      'anthropic-version: 2023-06-01',
      '-d',
      '{\n"model": "claude-sonnet-4-20250514",\n"max_tokens": 1024,\n"messages": [{"role":"user","content":"hello from passthrough"}]\n}',
    ]);
    expect(out.content[0].text).toBe('hello from mock');
    expect(mock.last.headers['x-api-key']).toBe(KEYS.anthropic);
  });

  test('Azure (no credentials at all)', async () => {
    const out = await curl([
      '-X',
      'POST',
      `${base}/azure_passthrough/openai/deployments/gpt-4o/chat/completions`,
      '-H',
      'content-type: application/json',
      '-d',
      '{\n"messages": [{"role": "user", "content": "hello from azure passthrough"}]\n}',
    ]);
    expect(out.choices[0].message.content).toBe('hello from mock');
    expect(mock.last.path).toBe('/openai/deployments/gpt-4o/chat/completions');
    expect(mock.last.query).toBe('api-version=2024-10-21');
    expect(mock.last.headers['api-key']).toBe(KEYS.azure);
  });

  test('Gemini', async () => {
    const out = await curl([
      '-X',
      'POST',
      `${base}/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent`,
      '-H',
      'content-type: application/json',
      '-H',
      'x-goog-api-key: your-gemini-key',
      '-d',
      '{\n"contents":[{"parts":[{"text":"hello from passthrough"}]}]\n}',
    ]);
    expect(out.candidates[0].content.parts[0].text).toBe('hello from mock');
    expect(mock.last.headers['x-goog-api-key']).toBe(KEYS.gemini);
  });

  test('Vertex (Bearer ya29 token replaced by the configured key)', async () => {
    const out = await curl([
      '-X',
      'POST',
      `${base}/genai_passthrough/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent`,
      '-H',
      'content-type: application/json',
      '-H',
      'authorization: Bearer ya29.your-vertex-token',
      '-d',
      '{\n"contents":[{"parts":[{"text":"hello from vertex passthrough"}]}]\n}',
    ]);
    expect(out.candidates[0].content.parts[0].text).toBe('hello from mock');
    expect(mock.last.path).toBe(
      '/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent',
    );
    expect(mock.last.headers.authorization).toBeUndefined();
    expect(mock.last.headers['x-goog-api-key']).toBe(KEYS.vertex);
    const line = await gw.waitForLine((l) => l.provider === 'vertex' && l.path.includes('my-project'));
    expect(line.usage.total_tokens).toBe(18);
  });
});
