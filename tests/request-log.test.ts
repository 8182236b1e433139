/**
 * The request log: one complete NDJSON line per request, with usage equal to the
 * upstream's numbers for every API style, streamed or not, compressed or not; a log file
 * deleted under a running gateway is made again at its path.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { existsSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import type { StaticPlugin as Plugin } from '../src/core/plugin.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { chatStream, MOCK_USAGE, MockUpstream } from './support/mock-upstream.ts';
import { startGatewayProcess, tempDir } from './support/process.ts';

const SECRETS = { openai: fakeKey(), anthropic: fakeKey('sk-ant'), gemini: fakeKey('AIzaTest'), vertex: fakeKey('vx') };
let mock: MockUpstream;
let gw: TestGateway;
const throwing: Plugin = {
  name: 'throws-everywhere',
  onResponse() {
    throw new Error('plugin bug');
  },
  onComplete() {
    throw new Error('plugin bug');
  },
};

beforeAll(async () => {
  mock = new MockUpstream();
  const net = { base_url: mock.url };
  gw = await startGateway(
    {
      logs: { content: true, content_max_bytes: 400 },
      providers: {
        openai: { keys: [{ name: 'oa', value: SECRETS.openai }], network_config: net },
        anthropic: { keys: [{ name: 'an', value: SECRETS.anthropic }], network_config: net },
        gemini: { keys: [{ name: 'ge', value: SECRETS.gemini }], network_config: net },
        vertex: { keys: [{ name: 'vx', value: SECRETS.vertex }], network_config: net },
      },
    },
    process.env,
    [throwing],
  );
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});
beforeEach(() => mock.reset());

async function send(path: string, body: unknown) {
  const res = await fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  expect(res.status).toBe(200);
  const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
  return { res, text, line };
}

const U = MOCK_USAGE;
const openaiUsage = { input_tokens: U.input, output_tokens: U.output, total_tokens: U.input + U.output };

describe('usage for every API style', () => {
  const cases: Array<[string, string, unknown, Record<string, number>]> = [
    [
      'OpenAI chat',
      '/openai_passthrough/v1/chat/completions',
      { model: 'gpt-4o-mini', messages: [] },
      { ...openaiUsage, cache_read_input_tokens: U.cacheRead },
    ],
    [
      'OpenAI chat, streamed',
      '/openai_passthrough/v1/chat/completions',
      { model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true } },
      openaiUsage,
    ],
    [
      'OpenAI Responses',
      '/openai_passthrough/v1/responses',
      { model: 'gpt-4.1', input: 'x' },
      { ...openaiUsage, cache_read_input_tokens: U.cacheRead, reasoning_tokens: 0 },
    ],
    [
      'OpenAI Responses, streamed',
      '/openai_passthrough/v1/responses',
      { model: 'gpt-4.1', input: 'x', stream: true },
      { ...openaiUsage, cache_read_input_tokens: U.cacheRead, reasoning_tokens: 0 },
    ],
    [
      'Anthropic',
      '/anthropic_passthrough/v1/messages',
      { model: 'claude-sonnet-4-20250514', max_tokens: 5 },
      {
        input_tokens: U.input,
        output_tokens: U.output,
        cache_read_input_tokens: U.cacheRead,
        cache_creation_input_tokens: U.cacheWrite,
        total_tokens: U.input + U.output + U.cacheRead + U.cacheWrite,
      },
    ],
    [
      'Anthropic, streamed',
      '/anthropic_passthrough/v1/messages',
      { model: 'claude-sonnet-4-20250514', max_tokens: 5, stream: true },
      {
        input_tokens: U.input,
        output_tokens: U.output,
        cache_read_input_tokens: U.cacheRead,
        cache_creation_input_tokens: U.cacheWrite,
        total_tokens: U.input + U.output + U.cacheRead + U.cacheWrite,
      },
    ],
    ['Gemini', '/genai_passthrough/v1beta/models/gemini-2.5-flash:generateContent', { contents: [] }, openaiUsage],
    [
      'Gemini, streamed',
      '/genai_passthrough/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      { contents: [] },
      openaiUsage,
    ],
    [
      'Vertex',
      '/genai_passthrough/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent',
      { contents: [] },
      openaiUsage,
    ],
    [
      'Vertex, streamed',
      '/genai_passthrough/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse',
      { contents: [] },
      openaiUsage,
    ],
  ];
  for (const [name, path, body, usage] of cases) {
    test(name, async () => {
      const { line } = await send(path, body);
      expect(line.usage).toEqual(usage);
      expect(line.attempts).toBe(1);
      expect(line.outcome).toBe('ok');
      expect(line.stream).toBe(name.endsWith('streamed'));
      expect(line.model).toBeString();
      expect(line.provider).toBe(
        name.startsWith('Vertex')
          ? 'vertex'
          : name.startsWith('Gemini')
            ? 'gemini'
            : name.startsWith('OpenAI')
              ? 'openai'
              : 'anthropic',
      );
      for (const field of [
        'time',
        'request_id',
        'endpoint',
        'method',
        'path',
        'status',
        'key',
        'latency_ms',
        'ttfb_ms',
        'bytes_in',
        'bytes_out',
        'client_ip',
      ])
        expect(line[field]).toBeDefined();
      expect(line.path).not.toContain('?');
    });
  }

  test('gzip-encoded JSON and brotli-encoded SSE: bytes forwarded as they are, usage still read', async () => {
    const json = gzipSync(JSON.stringify({ usage: { prompt_tokens: 5, completion_tokens: 6, total_tokens: 11 } }));
    const sse = brotliCompressSync(
      chatStream('gpt-4o-mini')
        .map(([, d]) => `data: ${typeof d === 'string' ? d : JSON.stringify(d)}\n\n`)
        .join(''),
    );
    mock.respondWith((_req, rec) =>
      rec.json?.stream
        ? new Response(sse, { headers: { 'content-type': 'text/event-stream', 'content-encoding': 'br' } })
        : new Response(json, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }),
    );
    for (const [stream, bytes, usage] of [
      [false, json, { input_tokens: 5, output_tokens: 6, total_tokens: 11 }],
      [true, sse, openaiUsage],
    ] as const) {
      const res = await fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', stream }),
        decompress: false,
      } as RequestInit);
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(new Uint8Array(bytes));
      const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
      expect(line.usage).toEqual(usage);
    }
  });

  test('partial usage is kept when the client leaves mid-stream', async () => {
    mock.respondWith((req) =>
      mock.sse(
        req,
        [
          ['message_start', { type: 'message_start', message: { usage: { input_tokens: 42, output_tokens: 1 } } }],
          ...Array.from({ length: 20 }, () => ['ping', { type: 'ping' }] as [string, unknown]),
        ],
        100,
      ),
    );
    const ac = new AbortController();
    const res = await fetch(`${gw.url}/anthropic_passthrough/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"model":"claude-x","stream":true}',
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await Bun.sleep(150);
    ac.abort();
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.outcome).toBe('client_aborted');
    expect(line.usage.input_tokens).toBe(42);
  });
});

describe('the log itself', () => {
  test('a plugin that throws does not break requests (and the log line is still written)', async () => {
    const { line } = await send('/openai_passthrough/v1/chat/completions', { model: 'gpt-4o-mini' });
    expect(line.status).toBe(200);
  });

  test('exactly one line per request under 200 concurrent requests', async () => {
    const before = (await gw.logLines()).length;
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', stream: i % 2 === 0 }),
        }).then(async (r) => {
          await r.arrayBuffer();
          return r.headers.get('x-request-id')!;
        }),
      ),
    );
    const lines = (await gw.waitForLines(before + 200)).slice(before);
    expect(lines.length).toBe(200);
    expect(new Set(lines.map((l) => l.request_id))).toEqual(new Set(responses));
  });

  test('bodies are logged only with logs.content, truncated, secrets redacted; no configured secret anywhere in the log', async () => {
    const { line } = await send('/openai_passthrough/v1/chat/completions', {
      model: 'gpt-4o-mini',
      api_key: 'sk-inline-secret-value',
      note: `my key is ${SECRETS.openai}`,
      filler: 'x'.repeat(1000),
    });
    expect(line.request_body).toContain('[REDACTED]');
    expect(line.request_body).not.toContain('sk-inline-secret-value');
    expect(line.request_body).toContain('[truncated');
    expect(line.response_body).toContain('hello from mock');
    const text = readFileSync(gw.logFile, 'utf8');
    for (const secret of Object.values(SECRETS)) expect(text).not.toContain(secret);
  });
});

describe('the log file deleted while the gateway runs', () => {
  const readIds = (file: string): string[] =>
    existsSync(file)
      ? readFileSync(file, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l).request_id)
      : [];
  async function waitForIds(file: string, n: number): Promise<string[]> {
    for (let i = 0; i < 150 && readIds(file).length < n; i++) await Bun.sleep(20);
    return readIds(file);
  }

  test('rm -rf of its directory, then of the file alone: an app-log error each time, the file is made again at its path and later lines land in it', async () => {
    const dir = tempDir('log-deleted');
    const logDir = join(dir, 'logs');
    const logFile = join(logDir, 'requests.ndjson');
    const configPath = join(dir, 'config.yaml');
    writeFileSync(
      configPath,
      `server: { host: 127.0.0.1, port: 0 }\nlogs: { file: ${JSON.stringify(logFile)} }\nproviders:\n  openai:\n    keys: [{ name: oa, value: "${SECRETS.openai}" }]\n    network_config: { base_url: "${mock.url}" }\n`,
    );
    const gp = await startGatewayProcess(['--config', configPath]);
    const send = async (): Promise<string> => {
      const res = await fetch(`${gp.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"model":"gpt-4o-mini"}',
      });
      await res.arrayBuffer();
      expect(res.status).toBe(200);
      return res.headers.get('x-request-id')!;
    };
    try {
      const first = [await send(), await send()];
      expect(await waitForIds(logFile, 2)).toEqual(first);

      rmSync(logDir, { recursive: true, force: true });
      let from = gp.mark();
      const second: string[] = [];
      for (let i = 0; i < 5; i++) second.push(await send());
      expect(await waitForIds(logFile, 5)).toEqual(second);
      const gone = await gp.waitForLog((l) => l.level === 'error' && /deleted/.test(l.msg), 5000, from);
      expect(gone.file).toBe(logFile);

      unlinkSync(logFile);
      from = gp.mark();
      const third = [await send(), await send()];
      expect(await waitForIds(logFile, 2)).toEqual(third);
      await gp.waitForLog((l) => l.level === 'error' && /deleted/.test(l.msg), 5000, from);
      expect(await gp.stop()).toBe(0);
      expect(readIds(logFile)).toEqual(third);
    } finally {
      await gp.stop('SIGKILL', 2000);
    }
  }, 20_000);

  test('a directory that cannot be made again (a file in its place): one error, requests still served, SIGHUP does not stop the gateway, lines resume once it can (by the next batch or by SIGHUP), lost lines counted', async () => {
    const dir = tempDir('log-blocked');
    const logDir = join(dir, 'logs');
    const logFile = join(logDir, 'requests.ndjson');
    const configPath = join(dir, 'config.yaml');
    writeFileSync(
      configPath,
      `server: { host: 127.0.0.1, port: 0 }\nlogs: { file: ${JSON.stringify(logFile)} }\nproviders:\n  openai:\n    keys: [{ name: oa, value: "${SECRETS.openai}" }]\n    network_config: { base_url: "${mock.url}" }\n`,
    );
    const gp = await startGatewayProcess(['--config', configPath]);
    const send = async (): Promise<string> => {
      const res = await fetch(`${gp.url}/openai_passthrough/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"model":"gpt-4o-mini"}',
      });
      await res.arrayBuffer();
      expect(res.status).toBe(200);
      return res.headers.get('x-request-id')!;
    };
    try {
      await send();
      await waitForIds(logFile, 1);
      rmSync(logDir, { recursive: true, force: true });
      writeFileSync(logDir, 'not a directory');
      const from = gp.mark();
      for (let i = 0; i < 3; i++) {
        await send();
        await Bun.sleep(40); // a batch each
      }
      const failed = await gp.waitForLog((l) => l.level === 'error' && /cannot/.test(l.msg), 5000, from);
      expect(failed.file).toBe(logFile);
      expect(gp.logs.slice(from).filter((l) => l.level === 'error')).toHaveLength(1);

      gp.proc.kill('SIGHUP');
      await gp.waitForLog((l) => l.msg === 'config reloaded' && l.reason === 'SIGHUP', 5000, from);
      await send();
      await Bun.sleep(100); // its batch written, into the deleted file: lost

      unlinkSync(logDir);
      const from2 = gp.mark();
      const later = [await send(), await send()];
      expect(await waitForIds(logFile, 2)).toEqual(later);
      // The lines written while the file could not be made: the three above and the one after SIGHUP.
      const back = await gp.waitForLog((l) => l.level === 'warn' && /made again/.test(l.msg), 5000, from2);
      expect(back.lines_lost).toBe(4);

      // Blocked again, put right, then SIGHUP: the signal's reopen ends the loss as well.
      rmSync(logDir, { recursive: true, force: true });
      writeFileSync(logDir, 'not a directory');
      const from3 = gp.mark();
      await send();
      await gp.waitForLog((l) => l.level === 'error' && /cannot be made again/.test(l.msg), 5000, from3);
      unlinkSync(logDir);
      gp.proc.kill('SIGHUP');
      const back2 = await gp.waitForLog((l) => l.level === 'warn' && /made again/.test(l.msg), 5000, from3);
      expect(back2.lines_lost).toBe(1);
      const last = [await send(), await send()];
      expect(await waitForIds(logFile, 2)).toEqual(last);

      // Lines were lost: the stop says so with its exit code, and counts only those.
      expect(await gp.stop()).toBe(1);
      expect(gp.logs.find((l) => l.msg === 'stopped')).toMatchObject({ exit_code: 1, request_lines_lost: 5 });
    } finally {
      await gp.stop('SIGKILL', 2000);
    }
  }, 20_000);
});
