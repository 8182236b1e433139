/**
 * The two upstream timeouts, as configured, and nothing else: Bun's fetch has a socket
 * idle timer of its own (BUN_CONFIG_HTTP_IDLE_TIMEOUT, 5 min by default; it fires up to ~6 s late) that would cut
 * a stream allowed a longer idle limit. The gateway runs as a child process with that
 * default lowered to 2 s, so any request it forgot to cover is cut within ~8 s.
 *
 * - anthropic: header timeout 2 s (a JS timer, to the millisecond), idle limit 30 s;
 * - openai: header timeout 60 s = idle limit (Bun's socket timer does the header timeout).
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { anthropicStream, chatStream, MockUpstream } from './support/mock-upstream.ts';
import {
  childEnv,
  type GatewayProcess,
  REPO,
  runCli,
  startGatewayProcess,
  writeConfigFile,
} from './support/process.ts';

const BUN_IDLE_S = '2';
const enc = new TextEncoder();
let mock: MockUpstream;
let gp: GatewayProcess;
let dir: string;

/** An SSE body of the path's API (with its terminator): one frame, `silenceMs` of nothing, then the rest. */
function silentStream(path: string, silenceMs: number): Response {
  const frames = (path.endsWith('/messages') ? anthropicStream() : chatStream('gpt-4o-mini')).map(
    ([event, data]) =>
      `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`,
  );
  return new Response(
    new ReadableStream({
      async start(c) {
        c.enqueue(enc.encode(frames[0]!));
        await Bun.sleep(silenceMs);
        for (const f of frames.slice(1)) c.enqueue(enc.encode(f));
        c.close();
      },
    }),
    { headers: { 'content-type': 'text/event-stream' } },
  );
}

beforeAll(async () => {
  mock = new MockUpstream();
  mock.respondWith(async (req, rec) => {
    const wait = Number(new URL(req.url).searchParams.get('silence') ?? 0);
    if (rec.json?.stream) return silentStream(rec.path, wait);
    if (wait) await Bun.sleep(wait);
    return Response.json({ id: 'late', usage: { input_tokens: 1, output_tokens: 2 } });
  });
  const config = writeConfigFile(
    'timeouts',
    `providers:
  anthropic:
    keys: [{ name: a, value: sk-ant-timeouts-test, models: ["*"] }]
    network_config: { base_url: "${mock.url}", default_request_timeout_in_seconds: 2, stream_idle_timeout_in_seconds: 30, max_retries: 0 }
  openai:
    keys: [{ name: o, value: sk-timeouts-test, models: ["*"] }]
    network_config: { base_url: "${mock.url}", default_request_timeout_in_seconds: 60, stream_idle_timeout_in_seconds: 60, max_retries: 0 }
`,
  );
  dir = dirname(config);
  gp = await startGatewayProcess(['--config', config], { env: childEnv({ BUN_CONFIG_HTTP_IDLE_TIMEOUT: BUN_IDLE_S }) });
  await gp.waitForLog((l) => l.msg === 'ready');
});

afterAll(async () => {
  await gp?.stop('SIGTERM', 5000);
  await mock?.stop();
});

const post = (path: string, body: unknown) =>
  fetch(`${gp.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await f();
  return [v, performance.now() - t0];
}

test('control: with the lowered default, a plain Bun fetch is cut by its socket timer', async () => {
  const script = `try { await fetch(${JSON.stringify(`${mock.url}/v1/messages?silence=12000`)}, { method: 'POST', body: '{}' }); console.log('answered'); } catch (e) { console.log(e.name); }`;
  const r = await runCli(['-e', script], {
    cmd: [process.execPath],
    cwd: REPO,
    env: childEnv({ BUN_CONFIG_HTTP_IDLE_TIMEOUT: BUN_IDLE_S }),
    timeoutMs: 15_000,
  });
  expect(r.stdout.trim()).toBe('TimeoutError');
}, 20_000);

test("every limit is the configured one: silences longer than Bun's default pass, header timeouts fire at their value", async () => {
  const [jsHeader, streamAfterSilence, wholeAfterSilence, nativeHeader, nativeStream] = await Promise.all([
    // anthropic, header timeout 2 s by a JS timer: 504 at ~2 s.
    timed(() =>
      post('/anthropic_passthrough/v1/messages?silence=10000', { model: 'claude-sonnet-4-5', max_tokens: 5 }),
    ),
    // anthropic stream silent for 12 s (idle limit 30 s): arrives whole.
    timed(async () =>
      (
        await post('/anthropic_passthrough/v1/messages?silence=12000', {
          model: 'claude-sonnet-4-5',
          max_tokens: 5,
          stream: true,
        })
      ).text(),
    ),
    // openai answer after 12 s of silence (header timeout 60 s): 200.
    timed(() => post('/openai_passthrough/v1/chat/completions?silence=12000', { model: 'gpt-4o-mini' })),
    // openai, no headers for 70 s: 504 after the 60 s header timeout (Bun's ~4 s tick).
    timed(() => post('/openai_passthrough/v1/chat/completions?silence=70000', { model: 'gpt-4o-mini' })),
    // openai stream silent for 12 s: arrives whole.
    timed(async () =>
      (
        await post('/openai_passthrough/v1/chat/completions?silence=12000', { model: 'gpt-4o-mini', stream: true })
      ).text(),
    ),
  ]);

  expect(jsHeader[0].status).toBe(504);
  expect((await jsHeader[0].json()).error.type).toBe('upstream_timeout');
  expect(jsHeader[1]).toBeGreaterThan(1900);
  expect(jsHeader[1]).toBeLessThan(4000);

  expect(streamAfterSilence[0]).toContain('event: message_stop');
  expect(streamAfterSilence[1]).toBeGreaterThan(11_900);

  expect(wholeAfterSilence[0].status).toBe(200);
  expect(await wholeAfterSilence[0].json()).toEqual({ id: 'late', usage: { input_tokens: 1, output_tokens: 2 } });

  expect(nativeHeader[0].status).toBe(504);
  expect((await nativeHeader[0].json()).error).toEqual({
    type: 'upstream_timeout',
    message: 'openai sent no response headers within 60 s',
  });
  expect(nativeHeader[1]).toBeGreaterThan(59_500);
  expect(nativeHeader[1]).toBeLessThan(68_000);

  expect(nativeStream[0]).toContain('data: [DONE]');

  // The request log agrees: one timeout per provider, everything else ok.
  await Bun.sleep(100);
  const lines = readFileSync(join(dir, 'requests.ndjson'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const timeouts = lines.filter((l) => l.error?.type === 'upstream_timeout');
  expect(timeouts.map((l) => [l.provider, l.status, l.outcome]).sort()).toEqual([
    ['anthropic', 504, 'upstream_error'],
    ['openai', 504, 'upstream_error'],
  ]);
  expect(lines.filter((l) => l.outcome === 'ok')).toHaveLength(3);
}, 90_000);
