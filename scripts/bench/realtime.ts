/**
 * WebSocket sessions through the gateway (proxy/realtime.ts), against the same sessions
 * straight to the upstream:
 *
 *   bun scripts/bench/realtime.ts [--messages=2000] [--sessions=1000] [--closes=100]
 *
 * Starts scripts/bench/realtime-mock.ts (an echo upstream), a gateway (`bun src/main.ts`,
 * the default plugins, request log in a temp dir) and, as the reference,
 * scripts/bench/realtime-bare.ts (the least relay on this stack) as child processes, the
 * two relays with scripts/bench/heap-probe.ts preloaded; the clients (Bun's WebSocket)
 * run here. Each figure is given direct / bare relay / gateway.
 *
 *   latency     `--messages` echoes one after the other on one session, direct and
 *               through the gateway, for a 200-byte JSON event and a 4 KB audio chunk
 *               (base64 in JSON, as `input_audio_buffer.append`); each echo crosses the
 *               gateway twice, so the added latency per message is half the difference.
 *   close       `--closes` sessions each: the client closes (time until the upstream saw
 *               it), and the upstream closes (time until the client saw it).
 *   memory      a relay's RSS (after a full collection) with `--sessions` idle sessions
 *               open, against before: the cost of one idle session (client socket,
 *               upstream socket, the session's objects).
 *
 * Loopback only; the processes share the machine, so figures move between runs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Subprocess, spawn } from 'bun';
import { spawnProbedGateway } from './common.ts';

const ROOT = resolve(import.meta.dir, '../..');
const opt = (name: string, def: string) =>
  Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def);
const messages = opt('messages', '2000');
const sessions = opt('sessions', '1000');
const closes = opt('closes', '100');

const work = mkdtempSync(join(tmpdir(), 'skybridge-realtime-bench-'));
const procs: Subprocess[] = [];
process.on('exit', () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});
const now = () => performance.timeOrigin + performance.now();

/** JSON lines of a child's stdout/stderr, handed to `onLine` as they come. */
function lines(stream: ReadableStream<Uint8Array>, onLine: (line: any) => void): void {
  void (async () => {
    const decoder = new TextDecoder();
    let text = '';
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = text.indexOf('\n')) >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        try {
          onLine(JSON.parse(line));
        } catch {
          // not JSON
        }
      }
    }
  })();
}

function waitFor<T>(find: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolveIt, reject) => {
    const check = () => {
      const v = find();
      if (v !== undefined) return resolveIt(v);
      if (performance.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(check, 2);
    };
    check();
  });
}

// ---- processes -----------------------------------------------------------------------

const mockEvents: any[] = [];
const mock = spawn([process.execPath, join(ROOT, 'scripts/bench/realtime-mock.ts'), '0'], {
  stdout: 'pipe',
  stderr: 'inherit',
});
procs.push(mock);
lines(mock.stdout, (l) => mockEvents.push(l));
const mockPort = (await waitFor(() => mockEvents.find((e) => e.ready), 'the mock')).ready as number;

const probeFile = join(work, 'heap.json');
const gw = spawnProbedGateway({
  work,
  mockUrl: `http://127.0.0.1:${mockPort}`,
  probeFile,
  server: ', shutdown_grace_seconds: 2',
});
procs.push(gw);
const appLog: any[] = [];
lines(gw.stderr, (l) => {
  appLog.push(l);
  if (l.level === 'warn' || l.level === 'error') console.log(`  app log: ${JSON.stringify(l).slice(0, 300)}`);
});
const gwPort = (await waitFor(() => appLog.find((l) => l.msg === 'skybridge listening'), 'the gateway')).port as number;

const bareProbe = join(work, 'bare-heap.json');
const bareEvents: any[] = [];
const bare = spawn(
  [
    process.execPath,
    '--preload',
    join(ROOT, 'scripts/bench/heap-probe.ts'),
    join(ROOT, 'scripts/bench/realtime-bare.ts'),
    String(mockPort),
  ],
  { env: { ...process.env, SKYBRIDGE_HEAP_PROBE: bareProbe }, stdout: 'pipe', stderr: 'inherit' },
);
procs.push(bare);
lines(bare.stdout, (l) => bareEvents.push(l));
const barePort = (await waitFor(() => bareEvents.find((e) => e.ready), 'the bare relay')).ready as number;

/** A relay's RSS in MB, after a full collection (heap-probe.ts). */
async function probeRssMb(proc: Subprocess, file: string): Promise<number> {
  rmSync(file, { force: true });
  proc.kill('SIGUSR2');
  await waitFor(() => (existsSync(file) ? true : undefined), 'the heap probe');
  await Bun.sleep(200);
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

// ---- clients -------------------------------------------------------------------------

const direct = (id: number | string) => `ws://127.0.0.1:${mockPort}/v1/realtime?model=bench&id=${id}`;
const viaGateway = (id: number | string) =>
  `ws://127.0.0.1:${gwPort}/openai_passthrough/v1/realtime?model=bench&id=${id}`;
const viaBare = (id: number | string) => `ws://127.0.0.1:${barePort}/v1/realtime?model=bench&id=${id}`;

function open(url: string): Promise<WebSocket> {
  return new Promise((resolveIt, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => resolveIt(ws);
    ws.onerror = (e) => reject(new Error(`cannot open ${url}: ${(e as ErrorEvent).message}`));
  });
}

/** Round-trip times (ms) of `n` echoes in a row on one session. */
async function echoTimes(url: string, message: string, n: number): Promise<number[]> {
  const ws = await open(url);
  const times: number[] = [];
  let resolveEcho: () => void = () => {};
  ws.onmessage = () => resolveEcho();
  for (let i = 0; i < n; i++) {
    const echoed = new Promise<void>((r) => {
      resolveEcho = r;
    });
    const t = performance.now();
    ws.send(message);
    await echoed;
    times.push(performance.now() - t);
  }
  ws.close();
  return times;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const us = (ms: number) => `${Math.round(ms * 1000)} us`;

console.log(
  `skybridge realtime bench: mock :${mockPort}, bare relay :${barePort}, gateway :${gwPort}, ${new Date().toISOString()}`,
);

const small = JSON.stringify({
  type: 'response.create',
  response: { instructions: 'Say hello in one short sentence.' },
});
const audio = JSON.stringify({
  type: 'input_audio_buffer.append',
  audio: Buffer.alloc(3000, 7).toString('base64'),
});
for (const [name, message] of [
  ['200 B JSON event', small.padEnd(200, ' ')],
  ['4 KB audio chunk', audio],
] as const) {
  // Warm every path, then alternate runs so drift hits all alike.
  await echoTimes(direct('warm'), message, 200);
  await echoTimes(viaBare('warm'), message, 200);
  await echoTimes(viaGateway('warm'), message, 200);
  const d: number[] = [];
  const b: number[] = [];
  const g: number[] = [];
  for (let round = 0; round < 4; round++) {
    d.push(...(await echoTimes(direct(`d${round}`), message, messages / 4)));
    b.push(...(await echoTimes(viaBare(`b${round}`), message, messages / 4)));
    g.push(...(await echoTimes(viaGateway(`g${round}`), message, messages / 4)));
  }
  const added = (xs: number[], p: number) => us((pct(xs, p) - pct(d, p)) / 2);
  console.log(
    `latency ${name}: echo RTT p50 direct ${us(pct(d, 50))}, bare relay ${us(pct(b, 50))}, gateway ${us(pct(g, 50))}; ` +
      `added per message (one way) p50/p90/p99: bare ${added(b, 50)} / ${added(b, 90)} / ${added(b, 99)}, ` +
      `gateway ${added(g, 50)} / ${added(g, 90)} / ${added(g, 99)}`,
  );
}

// Close propagation.
const clientToUpstream: number[] = [];
const upstreamToClient: number[] = [];
for (let i = 0; i < closes; i++) {
  const id = `c${i}`;
  let ws = await open(viaGateway(id));
  const closedAt = now();
  ws.close(1000);
  const seen = await waitFor(() => mockEvents.find((e) => e.closed === id), 'the upstream to see the close');
  clientToUpstream.push(seen.at - closedAt);

  const id2 = `u${i}`;
  ws = await open(viaGateway(id2));
  const clientSaw = new Promise<number>((r) => {
    ws.onclose = () => r(now());
  });
  ws.send('close-me');
  const at = await clientSaw;
  const closing = await waitFor(() => mockEvents.find((e) => e.closing === id2), 'the upstream close');
  upstreamToClient.push(at - closing.at);
}
console.log(
  `close: client -> upstream p50 ${us(pct(clientToUpstream, 50))}, max ${us(Math.max(...clientToUpstream))}; ` +
    `upstream -> client p50 ${us(pct(upstreamToClient, 50))}, max ${us(Math.max(...upstreamToClient))} (${closes} each)`,
);

// Memory per idle session.
async function idleSessions(name: string, url: (id: string) => string, proc: Subprocess, file: string) {
  await Bun.sleep(500);
  const before = await probeRssMb(proc, file);
  const sockets: WebSocket[] = [];
  const t0 = performance.now();
  for (let i = 0; i < sessions; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, sessions - i) }, (_, j) => open(url(`${name}-idle${i + j}`))),
    );
    sockets.push(...batch);
  }
  const openMs = performance.now() - t0;
  await Bun.sleep(1000);
  const during = await probeRssMb(proc, file);
  for (const ws of sockets) ws.close();
  await waitFor(
    () =>
      mockEvents.filter((e) => typeof e.closed === 'string' && e.closed.startsWith(`${name}-idle`)).length >= sessions
        ? true
        : undefined,
    'the idle sessions to close',
    30_000,
  );
  await Bun.sleep(1000);
  const after = await probeRssMb(proc, file);
  console.log(
    `memory ${name}: RSS ${before.toFixed(1)} MB idle, ${during.toFixed(1)} MB with ${sessions} open sessions ` +
      `(${(((during - before) * 1024) / sessions).toFixed(1)} KB per session; opened in ${Math.round(openMs)} ms), ` +
      `${after.toFixed(1)} MB after they closed`,
  );
}
await idleSessions('bare', viaBare, bare, bareProbe);
await idleSessions('gateway', viaGateway, gw, probeFile);

gw.kill('SIGTERM');
await gw.exited;
bare.kill('SIGKILL');
mock.kill('SIGKILL');
process.exit(0);
