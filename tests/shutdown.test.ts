/**
 * Signals, with the gateway as a real process: SIGTERM lets in-flight streams finish
 * within server.shutdown_grace_seconds, refuses new connections, cuts what is left at the
 * end of the grace, flushes the request log (no line lost) and exits 0; request lines that
 * cannot be written (a full disk) are counted and make the exit code 1, and nothing keeps
 * the process past the grace and a margin. SIGHUP reopens the request log (logrotate).
 * Each test runs twice: with one process (`workers: 1`) and with a primary and two
 * workers, where the same must hold for the whole group.
 */
import { afterAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'bun';
import { fakeKey } from './support/gateway.ts';
import { slowStreamsMock } from './support/mock-upstream.ts';
import { type GatewayProcess, startGatewayProcess, tempDir } from './support/process.ts';

// model "slow-N": the 7-frame chat stream with N ms between frames.
const mock = slowStreamsMock();

const procs: GatewayProcess[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL', 2000)));
  await mock.stop();
});

const WORKERS = [1, 2] as const;

async function start(
  graceSeconds: number,
  opts: { logFile?: string; extra?: string; workers: number },
): Promise<{ gp: GatewayProcess; logFile: string; key: string }> {
  const dir = tempDir('shutdown');
  const logFile = opts.logFile ?? join(dir, 'logs', 'requests.ndjson');
  const key = fakeKey();
  const configPath = join(dir, 'config.yaml');
  writeFileSync(
    configPath,
    `server: { host: 127.0.0.1, port: 0, shutdown_grace_seconds: ${graceSeconds} }
logs: { file: ${JSON.stringify(logFile)} }
providers:
  openai:
    keys: [{ name: main, value: "${key}", models: ["*"] }]
    network_config: { base_url: "${mock.url}" }
${opts.extra ?? ''}`,
  );
  const gp = await startGatewayProcess(['--config', configPath], { workers: opts.workers });
  procs.push(gp);
  return { gp, logFile, key };
}

function post(gp: GatewayProcess, body: Record<string, unknown>): Promise<Response> {
  return fetch(`${gp.url}/openai_passthrough/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer client-key' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
}

/** Open a stream and wait for its first bytes, so it is surely in flight. */
async function openStream(gp: GatewayProcess, gapMs: number) {
  const res = await post(gp, { model: `slow-${gapMs}`, stream: true });
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  let text = new TextDecoder().decode(first.value);
  const rest = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return { text, complete: true };
        text += new TextDecoder().decode(value);
      }
    } catch {
      return { text, complete: false };
    }
  })();
  return rest;
}

const readLog = (file: string) =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l))
    : [];

/** What main.ts allows past the grace before it gives up on a step that hangs. */
const MARGIN_MS = 5000;

async function quickRequests(gp: GatewayProcess, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await post(gp, { model: 'gpt-4o-mini' });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  }
}

for (const workers of WORKERS) {
  describe(`workers: ${workers}`, () => {
    describe('SIGTERM', () => {
      test('an open stream completes within the grace, new connections are refused, exit 0, every log line written', async () => {
        const { gp, logFile, key } = await start(10, { workers });
        // Quick requests whose lines are still in the logger's buffer at SIGTERM.
        for (let i = 0; i < 20; i++) {
          const res = await post(gp, { model: 'gpt-4o-mini' });
          expect(res.status).toBe(200);
          await res.arrayBuffer();
        }
        const stream = openStream(gp, 250); // ~1.5 s in all
        await Bun.sleep(100);
        const termAt = performance.now();
        gp.proc.kill('SIGTERM');
        await gp.waitForLog((l) => l.msg === 'shutting down');

        // The listening socket is closed: a new connection is refused.
        await Bun.sleep(50);
        const refused = await fetch(`${gp.url}/health`).then(
          () => false,
          () => true,
        );
        expect(refused).toBe(true);

        const result = await stream;
        expect(result.complete).toBe(true);
        expect(result.text).toContain('data: [DONE]');
        const code = await gp.exited;
        const elapsed = performance.now() - termAt;
        expect(code).toBe(0);
        expect(elapsed).toBeLessThan(10_000);
        expect(gp.logs.some((l) => l.msg === 'stopped')).toBe(true);
        expect(gp.logs.some((l) => /grace period over/.test(l.msg ?? ''))).toBe(false);

        const lines = readLog(logFile);
        expect(lines).toHaveLength(21);
        const streamLine = lines.find((l) => l.stream === true);
        expect(streamLine).toMatchObject({ status: 200, outcome: 'ok', model: 'slow-250', key: 'main' });
        expect(streamLine.usage).toMatchObject({ input_tokens: 11, output_tokens: 7 });
        expect(readFileSync(logFile, 'utf8')).not.toContain(key);
      });

      test('a stream longer than the grace is cut when it ends; its line is still written; exit 0', async () => {
        const { gp, logFile } = await start(1, { workers });
        const stream = openStream(gp, 1000); // ~6 s in all
        await Bun.sleep(100);
        const termAt = performance.now();
        gp.proc.kill('SIGTERM');
        const code = await gp.exited;
        const elapsed = performance.now() - termAt;
        expect(code).toBe(0);
        expect(elapsed).toBeGreaterThan(900);
        expect(elapsed).toBeLessThan(4000);
        const result = await stream;
        expect(result.text).not.toContain('data: [DONE]');
        expect(gp.logs.some((l) => l.level === 'warn' && /grace period over/.test(l.msg))).toBe(true);
        const lines = readLog(logFile);
        expect(lines).toHaveLength(1);
        // Cut by the gateway, not left by the client: said so in the line.
        expect(lines[0]).toMatchObject({
          stream: true,
          status: 200,
          outcome: 'gateway_error',
          error: { type: 'shutdown' },
          model: 'slow-1000',
          end_reason: 'shutdown',
        });
      });

      test('a second signal ends the grace period at once', async () => {
        const { gp, logFile } = await start(30, { workers });
        const stream = openStream(gp, 1000);
        await Bun.sleep(100);
        const termAt = performance.now();
        gp.proc.kill('SIGTERM');
        await gp.waitForLog((l) => l.msg === 'shutting down');
        await Bun.sleep(200);
        gp.proc.kill('SIGINT');
        expect(await gp.exited).toBe(0);
        expect(performance.now() - termAt).toBeLessThan(3000);
        expect((await stream).complete).toBe(false);
        expect(gp.logs.some((l) => /second signal/.test(l.msg ?? ''))).toBe(true);
        expect(readLog(logFile)).toHaveLength(1);
        expect(readLog(logFile)[0]).toMatchObject({ outcome: 'gateway_error', error: { type: 'shutdown' } });
      });
    });

    describe('SIGTERM when the request log cannot be written', () => {
      test('a full disk (/dev/full): exit 1 within the grace, the app log counts the lines not written', async () => {
        const { gp } = await start(2, { logFile: '/dev/full', workers });
        await quickRequests(gp, 5);
        await gp.waitForLog((l) => l.level === 'error' && /request log write failed/.test(l.msg));
        await quickRequests(gp, 2); // lines held while the first ones are still unwritten
        const termAt = performance.now();
        const code = await gp.stop('SIGTERM', 2000 + MARGIN_MS + 3000);
        const elapsed = performance.now() - termAt;
        expect(code).toBe(1);
        expect(elapsed).toBeLessThan(2000 + MARGIN_MS);
        const lost = gp.logs.find((l) => /request lines could not be written/.test(l.msg ?? ''));
        expect(lost).toMatchObject({ level: 'error', lines: 7, file: '/dev/full' });
        expect(gp.logs.find((l) => l.msg === 'stopped')).toMatchObject({ exit_code: 1 });
        // One error when writes began to fail, not one per batch.
        expect(gp.logs.filter((l) => /request log write failed/.test(l.msg ?? ''))).toHaveLength(1);
      }, 20_000);

      // A tmpfs of 64 KB filled to the last byte: writes fail with ENOSPC, then space is freed.
      const mnt = tempDir('tmpfs');
      const mounted = spawnSync(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]).exitCode === 0;
      afterAll(() => {
        if (mounted) spawnSync(['umount', '-l', mnt]);
      });
      if (!mounted)
        console.warn(
          `skipping the tmpfs test: mounting a tmpfs needs root (mount -t tmpfs failed as uid ${process.getuid?.()})`,
        );
      test.skipIf(!mounted)(
        'a disk that fills and then frees space: lines held meanwhile are all written, exit 0',
        async () => {
          const logFile = join(mnt, 'logs', 'requests.ndjson');
          mkdirSync(join(mnt, 'logs'));
          const filler = join(mnt, 'filler');
          writeFileSync(filler, Buffer.alloc(64 * 1024));
          const { gp } = await start(2, { logFile, workers });
          await quickRequests(gp, 4);
          await gp.waitForLog((l) => l.level === 'error' && /request log write failed/.test(l.msg));
          await quickRequests(gp, 2);
          await Bun.sleep(100); // their batch written (and failed) too
          rmSync(filler);
          const from = gp.mark();
          await quickRequests(gp, 1);
          const resumed = await gp.waitForLog((l) => /held lines written/.test(l.msg ?? ''), 5000, from);
          expect(resumed.lines).toBe(6);
          expect(await gp.stop()).toBe(0);
          expect(readLog(logFile)).toHaveLength(7);
          expect(gp.logs.find((l) => l.msg === 'stopped')).toMatchObject({ exit_code: 0 });
        },
        20_000,
      );

      test('a step that hangs (a trace collector that never answers) does not keep the process past the grace and the margin', async () => {
        // Accepts connections and never answers: the exporter's flush waits for its own 10 s timeout.
        const sink = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
        try {
          const { gp, logFile } = await start(1, {
            workers,
            extra: `tracing: { endpoint: "http://127.0.0.1:${sink.port}/v1/traces" }\n`,
          });
          await quickRequests(gp, 3);
          const termAt = performance.now();
          const code = await gp.stop('SIGTERM', 15_000);
          const elapsed = performance.now() - termAt;
          expect(code).toBe(1);
          expect(elapsed).toBeLessThan(1000 + MARGIN_MS + 1000);
          expect(gp.logs.some((l) => l.level === 'error' && /shutdown did not finish/.test(l.msg ?? ''))).toBe(true);
          // The request log is closed first: its lines are all there.
          expect(readLog(logFile)).toHaveLength(3);
        } finally {
          sink.stop(true);
        }
      }, 20_000);
    });

    describe('SIGHUP', () => {
      test('reopens the request log: after logrotate moved it away, the next line goes to a new file', async () => {
        const { gp, logFile } = await start(5, { workers });
        const res1 = await post(gp, { model: 'gpt-4o-mini' });
        await res1.arrayBuffer();
        // The line is written asynchronously: wait for it before moving the file.
        for (let i = 0; i < 100 && readLog(logFile).length < 1; i++) await Bun.sleep(20);
        expect(readLog(logFile)).toHaveLength(1);

        renameSync(logFile, `${logFile}.1`);
        const from = gp.mark();
        gp.proc.kill('SIGHUP');
        await gp.waitForLog((l) => l.msg === 'config reloaded' && l.reason === 'SIGHUP', 5000, from);
        for (let i = 0; i < 100 && !existsSync(logFile); i++) await Bun.sleep(20);
        expect(existsSync(logFile)).toBe(true);

        const res2 = await post(gp, { model: 'gpt-4o' });
        await res2.arrayBuffer();
        expect(await gp.stop()).toBe(0);
        const rotated = readLog(`${logFile}.1`);
        const fresh = readLog(logFile);
        expect(rotated.map((l) => l.model)).toEqual(['gpt-4o-mini']);
        expect(fresh.map((l) => l.model)).toEqual(['gpt-4o']);
      });
    });
  });
}
