/**
 * Smoke test of a compiled skybridge executable (scripts/smoke-binary runs this).
 *
 * The binary is copied alone into an empty temporary directory and run from there (no
 * node_modules, package.json, bunfig.toml or .env next to it), on a free port, with a
 * config that points openai at a mock upstream served by this script. Checks: /health,
 * one proxied request (the gateway's key reaches the upstream, the client's does not), a
 * realtime WebSocket session and a refused one (the `ws` client API Bun builds in),
 * 300 concurrent 2 s streams finishing in about 2 s (BUN_CONFIG_MAX_HTTP_REQUESTS raised
 * past Bun's 256), SIGTERM during a stream (the stream completes, exit 0), and the
 * request log lines on disk. The config leaves `server.workers` at its default (`auto`):
 * on a machine with 2 CPUs or more the binary starts itself again as its workers, whose
 * pids the log lines carry, and which are gone after the stop.
 */

import { Database } from 'bun:sqlite';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawn } from 'bun';
import { rawRequest } from '../tests/support/raw-http.ts';

const binary = resolve(process.argv[2] ?? '');
if (!process.argv[2] || !existsSync(binary)) {
  console.error(`usage: bun scripts/smoke-binary.ts <compiled binary> (got "${process.argv[2] ?? ''}")`);
  process.exit(2);
}

// SMOKE_STREAMS: fewer for a binary run under emulation (qemu-user), too slow for 300 in 2 s.
const STREAMS = Number(process.env.SMOKE_STREAMS ?? 300);
const STREAM_MS = 2000;
const FRAMES = 5;

let checks = 0;
function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`FAILED: ${what}`);
  checks++;
  console.log(`  ok  ${what}`);
}

// --- mock upstream (OpenAI chat completions, and an echoing Realtime WebSocket) ---------
const seenAuth: string[] = [];
const realtimeAuth: string[] = [];
const enc = new TextEncoder();
const upstream = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  idleTimeout: 0,
  websocket: {
    message(ws, message) {
      ws.send(message);
    },
  },
  async fetch(req, server) {
    const url = new URL(req.url);
    if (url.pathname === '/v1/realtime') {
      realtimeAuth.push(req.headers.get('authorization') ?? '');
      if (url.searchParams.get('model') === 'refuse')
        return Response.json({ error: { message: 'refused by the smoke upstream' } }, { status: 401 });
      if (server.upgrade(req)) return undefined;
      return new Response('expected a WebSocket handshake', { status: 426 });
    }
    seenAuth.push(req.headers.get('authorization') ?? '');
    const body = (await req.json().catch(() => ({}))) as { stream?: boolean; model?: string };
    if (url.pathname !== '/v1/chat/completions')
      return Response.json({ error: `unexpected path ${url.pathname}` }, { status: 404 });
    if (!body.stream) {
      return Response.json({
        id: 'chatcmpl-smoke',
        object: 'chat.completion',
        model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'hello from smoke' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
      });
    }
    // A slow stream: FRAMES frames spread over STREAM_MS.
    let i = 0;
    return new Response(
      new ReadableStream({
        async pull(c) {
          if (i > 0) await Bun.sleep(STREAM_MS / FRAMES);
          if (i === FRAMES) {
            c.enqueue(
              enc.encode(
                'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}\n\ndata: [DONE]\n\n',
              ),
            );
            c.close();
            return;
          }
          c.enqueue(enc.encode(`data: {"choices":[{"index":0,"delta":{"content":"t${i}"}}]}\n\n`));
          i++;
        },
      }),
      { headers: { 'content-type': 'text/event-stream' } },
    );
  },
});

// Raw sockets: this script's own Bun fetch would queue past 256 requests itself.
const CLIENT_HEADERS = { authorization: 'Bearer client-own-key', 'content-type': 'application/json' };
const postRaw = (port: number, path: string, body: string) => rawRequest(port, 'POST', path, CLIENT_HEADERS, body);

// --- the run ---------------------------------------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'skybridge-smoke-'));
const runDir = join(dir, 'run');
mkdirSync(runDir);
const exe = join(dir, 'skybridge');
copyFileSync(binary, exe);
const logFile = join(dir, 'logs', 'requests.ndjson');
const gatewayKey = `sk-smoke-${crypto.randomUUID()}`;
const configPath = join(dir, 'config.yaml');
writeFileSync(
  configPath,
  `server: { host: 127.0.0.1, port: 0, shutdown_grace_seconds: 15 }
logs: { file: ${JSON.stringify(logFile)} }
providers:
  openai:
    keys: [{ name: smoke, value: env.SMOKE_OPENAI_KEY, models: ["*"] }]
    network_config: { base_url: "http://127.0.0.1:${upstream.port}" }
`,
);

const env: Record<string, string> = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: dir,
  SMOKE_OPENAI_KEY: gatewayKey,
};
// Negative control for the measurement: SMOKE_FETCH_LIMIT=256 runs the binary with Bun's default.
if (process.env.SMOKE_FETCH_LIMIT) env.BUN_CONFIG_MAX_HTTP_REQUESTS = process.env.SMOKE_FETCH_LIMIT;
console.log(`smoke-binary: ${binary}`);
const proc = spawn([exe, '--config', configPath], { cwd: runDir, env, stdout: 'pipe', stderr: 'pipe' });
let stderr = '';
const stderrDone = (async () => {
  const decoder = new TextDecoder();
  for await (const chunk of proc.stderr) stderr += decoder.decode(chunk, { stream: true });
})();
const stdoutDone = new Response(proc.stdout).text();

async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (performance.now() > deadline)
      throw new Error(`timed out waiting for ${what}\n--- gateway stderr ---\n${stderr}`);
    await Bun.sleep(25);
  }
}

let exitCode = 1;
try {
  const port = await waitFor(
    'the gateway to listen',
    () => {
      if (proc.exitCode !== null) throw new Error(`gateway exited with ${proc.exitCode}\n${stderr}`);
      for (const line of stderr.split('\n')) {
        if (!line.includes('"skybridge listening"')) continue;
        try {
          return (JSON.parse(line) as { port: number }).port;
        } catch {
          // not a whole line yet
        }
      }
      return undefined;
    },
    10_000,
  );
  const base = `http://127.0.0.1:${port}`;
  const ready = await waitFor(
    'the ready line',
    () => stderr.split('\n').find((l) => l.includes('"msg":"ready"')),
    5000,
  );
  const workers = (JSON.parse(ready) as { workers: number }).workers;
  console.log(`  gateway pid ${proc.pid} on ${base}, workers: ${workers} (auto)`);
  check(workers >= 1, `server.workers: auto started ${workers} worker(s)`);

  const health = await fetch(`${base}/health`);
  const healthBody = (await health.json()) as { status: string; version: string };
  check(health.status === 200 && healthBody.status === 'ok', `/health answers 200 ok (version ${healthBody.version})`);

  const res = await fetch(`${base}/openai_passthrough/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer client-own-key' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const answer = (await res.json()) as { choices?: Array<{ message: { content: string } }> };
  check(
    res.status === 200 && answer.choices?.[0]?.message.content === 'hello from smoke',
    'proxied chat completion answered 200',
  );
  check(
    seenAuth.at(-1) === `Bearer ${gatewayKey}`,
    "the gateway's key (from env.SMOKE_OPENAI_KEY) reached the upstream, not the client's",
  );

  // A realtime session through the binary: the `ws` client API must resolve to Bun's own there.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/openai_passthrough/v1/realtime?model=gpt-realtime`, [
    'realtime',
    'openai-insecure-api-key.client-own-key',
  ]);
  const echoed = await new Promise<string>((resolveEcho, reject) => {
    ws.onopen = () => ws.send('{"type":"smoke.ping"}');
    ws.onmessage = (e) => resolveEcho(String(e.data));
    ws.onerror = () => reject(new Error('the realtime session failed'));
  });
  ws.close(1000);
  check(
    echoed === '{"type":"smoke.ping"}' && realtimeAuth.at(-1) === `Bearer ${gatewayKey}`,
    "a realtime WebSocket session relayed a message both ways, the gateway's key upstream",
  );
  const refused = await rawRequest(port, 'GET', '/openai_passthrough/v1/realtime?model=refuse', {
    upgrade: 'websocket',
    'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'sec-websocket-version': '13',
  });
  check(
    refused.status === 401 && refused.body.includes('refused by the smoke upstream'),
    "a refused upstream handshake reached the client as the upstream's 401 and body",
  );

  const streamBody = JSON.stringify({
    model: 'gpt-4o-mini',
    stream: true,
    messages: [{ role: 'user', content: 'hi' }],
  });
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: STREAMS }, () => postRaw(port, '/openai_passthrough/v1/chat/completions', streamBody)),
  );
  const wall = performance.now() - t0;
  const times = results.map((r) => r.ms).sort((a, b) => a - b);
  const ok = results.filter((r) => r.status === 200 && r.text.includes('data: [DONE]')).length;
  console.log(
    `  ${STREAMS} concurrent ${STREAM_MS} ms streams: ${ok} complete, p50 ${Math.round(times[STREAMS >> 1]!)} ms, max ${Math.round(times.at(-1)!)} ms, wall ${Math.round(wall)} ms`,
  );
  check(ok === STREAMS, `all ${STREAMS} concurrent streams completed`);
  check(
    times.at(-1)! < STREAM_MS * 1.6,
    `the slowest of ${STREAMS} streams took < ${STREAM_MS * 1.6} ms (Bun's default 256-request fetch limit would make it ~${STREAM_MS * 2} ms)`,
  );

  // The explorer index's checkpoints run on a Worker thread whose script is the build's
  // second entrypoint: the rows reach the index file itself (not only its WAL) within seconds.
  const indexRows = await waitFor(
    'the explorer index file to hold the requests (checkpointed by its thread)',
    () => {
      const copy = join(dir, 'index-copy.sqlite');
      try {
        copyFileSync(`${logFile}.index.sqlite`, copy);
        rmSync(`${copy}-wal`, { force: true });
        const db = new Database(copy, { readonly: true });
        try {
          const n = (db.query('SELECT count(*) AS n FROM requests').get() as { n: number }).n;
          return n >= STREAMS ? n : undefined;
        } finally {
          db.close();
        }
      } catch {
        return undefined;
      }
    },
    8000,
  );
  check(indexRows >= STREAMS, `the explorer index file holds ${indexRows} rows, checkpointed by its own thread`);

  // SIGTERM while a stream is open: it completes, then the process exits 0.
  const late = postRaw(port, '/openai_passthrough/v1/chat/completions', streamBody);
  await waitFor(
    'the last stream to reach the upstream',
    () => (seenAuth.length >= 1 + STREAMS + 1 ? true : undefined),
    5000,
  );
  await Bun.sleep(200);
  const termAt = performance.now();
  proc.kill('SIGTERM');
  const lateResult = await late;
  check(
    lateResult.status === 200 && lateResult.text.includes('data: [DONE]'),
    `a stream open at SIGTERM completed (${Math.round(performance.now() - termAt)} ms after the signal)`,
  );
  exitCode = await Promise.race([proc.exited, Bun.sleep(15_000).then(() => -1)]);
  check(exitCode === 0, `exit code 0 after SIGTERM (got ${exitCode})`);

  const lines = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
  const expected = 1 + 2 + STREAMS + 1;
  check(lines.length === expected, `request log has ${expected} lines (got ${lines.length})`);
  const chats = lines.filter((l) => l.path === '/v1/chat/completions');
  check(
    chats.length === 1 + STREAMS + 1 &&
      chats.every((l) => l.status === 200 && l.key === 'smoke' && l.outcome === 'ok') &&
      !readFileSync(logFile, 'utf8').includes(gatewayKey),
    'every chat log line: status 200, outcome ok, key name (never its value)',
  );
  // The price catalog is bundled into the binary: the non-streamed chat (5 in, 3 out) is priced from it.
  const priced = chats.find((l) => !l.stream);
  check(
    priced?.price_source === 'catalog' && typeof priced.cost_usd === 'number' && priced.cost_usd > 0,
    `the bundled price catalog prices gpt-4o-mini (cost_usd ${priced?.cost_usd}, ${priced?.price_source})`,
  );
  const sessions = lines.filter((l) => l.path === '/v1/realtime').map((l) => [l.status, l.end_reason ?? null]);
  check(
    JSON.stringify(sessions.sort()) ===
      JSON.stringify([
        [101, 'client_close'],
        [401, null],
      ]),
    'the realtime session and the refused handshake are logged (101 client_close, 401)',
  );
  await stderrDone;
  check(/"msg":"stopped"/.test(stderr), 'the app log (stderr) says stopped');
  if (workers > 1) {
    const pids = [...new Set(lines.map((l) => l.worker as number))];
    check(
      pids.length === workers && pids.every((p) => typeof p === 'number' && p !== proc.pid),
      `requests were served by ${workers} worker processes (pids ${pids.join(', ')})`,
    );
    check(
      pids.every((p) => !existsSync(`/proc/${p}`) || readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z ')),
      'every worker has exited with the primary',
    );
  }
  void stdoutDone;
  console.log(`smoke-binary: OK (${checks} checks)`);
} catch (err) {
  console.error(`smoke-binary: ${(err as Error).message}`);
  if (!(err as Error).message.includes('gateway stderr')) console.error(`--- gateway stderr ---\n${stderr}`);
  if (proc.exitCode === null) proc.kill('SIGKILL');
  exitCode = 1;
} finally {
  await upstream.stop(true);
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode === 0 && checks > 0 ? 0 : 1);
