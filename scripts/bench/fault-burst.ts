/**
 * RSS of a gateway process after a burst of client faults, and whether it comes back.
 *
 *   bun scripts/bench/fault-burst.ts [--per-kind=2000] [--conns=32] [--bursts=3]
 *                                    [--settle=20] [--snapshots]
 *
 * Starts the bench mock and a gateway (`bun src/main.ts`, the default plugins, request
 * log in a temp dir, server.max_request_body_mb 1) as child processes, with
 * scripts/bench/heap-probe.ts preloaded. Warms it with ordinary requests and streams
 * until RSS holds, then sends `--bursts` bursts of faults, `--per-kind` of each kind,
 * `--conns` at a time:
 *
 *   malformed-http   bytes that are not HTTP, on a raw socket
 *   malformed-json   a JSON body cut short (forwarded: the upstream judges it)
 *   abort-mid-body   content-length 256 KB, 16 KB sent, socket closed
 *   abort-mid-stream a 100-frame stream, the client leaves after the first frame
 *   over-limit       2 MB with a content-length (refused at once), and chunked (refused at 1 MB)
 *   bad-path         dot segments, encoded slashes and NULs, unknown prefixes
 *
 * RSS (VmRSS from /proc/PID/status) is printed warm, right after each burst, after
 * `--settle` seconds idle, and after a forced full collection (SIGUSR2 to the probe:
 * Bun.gc(true)), with the JS heap's size, mimalloc's committed memory and the live cell
 * counts whose number changed most between the warm and the final collection.
 * `--snapshots` also writes V8 heap snapshots (warm and final) into the work directory.
 * Loopback only; everything it started is killed when it ends.
 */

import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Subprocess, spawn } from 'bun';
import { CLIENT_HEADERS, chatRequestBody, spawnProbedGateway } from './common.ts';

const ROOT = resolve(import.meta.dir, '../..');
const opt = (name: string, def: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def;
const perKind = Number(opt('per-kind', '2000'));
const conns = Number(opt('conns', '32'));
const bursts = Number(opt('bursts', '3'));
const settleSeconds = Number(opt('settle', '20'));
const snapshots = process.argv.includes('--snapshots');

const work = mkdtempSync(join(tmpdir(), 'skybridge-fault-burst-'));
const procs: Subprocess[] = [];
process.on('SIGINT', () => process.exit(130));
process.on('exit', () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
});

// ---- processes ---------------------------------------------------------------------

/** Read a child's output to its end (a full pipe would block it), resolving with the first JSON line that matches. */
function firstLine(
  stream: ReadableStream<Uint8Array>,
  match: (line: any) => boolean,
  onLine: (line: string) => void = () => {},
): Promise<any> {
  return new Promise((resolveLine, reject) => {
    void (async () => {
      const decoder = new TextDecoder();
      let text = '';
      let found = false;
      for await (const chunk of stream) {
        text += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = text.indexOf('\n')) >= 0) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          if (found) {
            onLine(line);
            continue;
          }
          try {
            const parsed = JSON.parse(line);
            if (match(parsed)) {
              found = true;
              resolveLine(parsed);
            }
          } catch {
            // not JSON
          }
        }
      }
      if (!found) reject(new Error('process ended before the expected line'));
    })();
  });
}

const mock = spawn([process.execPath, join(ROOT, 'scripts/bench/mock.ts'), '0'], { stdout: 'pipe', stderr: 'inherit' });
procs.push(mock);
const mockPort = (await firstLine(mock.stdout, (l) => l.ready)).port as number;
const mockUrl = `http://127.0.0.1:${mockPort}`;

const probeFile = join(work, 'heap.json');
const gw = spawnProbedGateway({
  work,
  mockUrl,
  probeFile,
  server: ', max_request_body_mb: 1, shutdown_grace_seconds: 5',
  env: { BUN_CONFIG_MAX_HTTP_REQUESTS: '16384', SKYBRIDGE_HEAP_SNAPSHOT: snapshots ? '1' : '0' },
});
procs.push(gw);
// The app log after that line: warnings and errors are shown (and counted).
let appWarnings = 0;
const listening = firstLine(
  gw.stderr,
  (l) => l.msg === 'skybridge listening',
  (line) => {
    if (/"level":"(warn|error|fatal)"/.test(line) && appWarnings++ < 5) console.log(`  app log: ${line.slice(0, 300)}`);
  },
);
const gwPort = (
  await Promise.race([listening, Bun.sleep(15_000).then(() => Promise.reject(new Error('gateway did not start')))])
).port as number;
const base = `http://127.0.0.1:${gwPort}`;

/** A field of /proc/PID/status in MB (VmRSS: resident; VmData: the private address space, touched or not). */
function statusMb(pid: number, field: 'VmRSS' | 'VmData' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}
const rssMb = (pid: number) => statusMb(pid, 'VmRSS');

interface Probe {
  rss: number;
  mimallocCommit: number;
  heapSize: number;
  heapCapacity: number;
  extraMemorySize: number;
  objectCount: number;
  protectedObjectCount: number;
  objectTypeCounts: Record<string, number>;
  signalListeners: Record<string, number>;
  snapshot?: string;
}

async function probe(): Promise<Probe> {
  rmSync(probeFile, { force: true });
  gw.kill('SIGUSR2');
  for (let i = 0; i < 500 && !existsSync(probeFile); i++) await Bun.sleep(20);
  return JSON.parse(readFileSync(probeFile, 'utf8'));
}

// ---- clients -----------------------------------------------------------------------

/** Raw bytes on a socket; `close`: end it right after writing, else wait for the server to close it (or 5 s). */
function raw(bytes: Uint8Array | string, close: boolean): Promise<void> {
  return new Promise((done) => {
    const timer = setTimeout(() => sock.then((s) => s.end()), 5000);
    const finish = () => {
      clearTimeout(timer);
      done();
    };
    const sock = Bun.connect({
      hostname: '127.0.0.1',
      port: gwPort,
      socket: {
        open(s) {
          s.write(bytes);
          if (close) s.end();
        },
        data() {},
        close: finish,
        error: finish,
        connectError: finish,
      },
    });
  });
}

const chatUrl = `${base}/openai_passthrough/v1/chat/completions`;
const body1k = chatRequestBody(1024);

async function ordinary(i: number): Promise<void> {
  const stream = i % 4 === 0;
  const res = await fetch(stream ? `${chatUrl}?stream=1&chunks=5&gap=0` : chatUrl, {
    method: 'POST',
    headers: CLIENT_HEADERS,
    body: stream ? chatRequestBody(1024, true) : body1k,
  });
  await res.arrayBuffer();
}

const twoMb = new Uint8Array(2 * 1024 * 1024).fill(0x61);
const BAD_PATHS = [
  '/openai_passthrough/v1/%2e%2e/%2e%2e/etc/passwd',
  '/openai_passthrough/v1/a%2fb',
  '/openai_passthrough/v1/a%00b',
  '/openai_passthrough//v1/models',
  '/nope/v1/chat',
  '/anthropic_passthrough/v1/%2E%2E%2Fsecrets',
];

const FAULTS: Record<string, (i: number) => Promise<void>> = {
  'malformed-http': (i) =>
    raw(
      i % 2
        ? 'NOT HTTP AT ALL\r\n\r\n'
        : 'POST /openai_passthrough/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}',
      false,
    ),
  'malformed-json': async () => {
    const res = await fetch(chatUrl, {
      method: 'POST',
      headers: CLIENT_HEADERS,
      body: '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"cut',
    });
    await res.arrayBuffer();
  },
  'abort-mid-body': () =>
    raw(
      `POST /openai_passthrough/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 262144\r\n\r\n{"model":"gpt-4o-mini","pad":"${'x'.repeat(16 * 1024)}`,
      true,
    ),
  'abort-mid-stream': async () => {
    const ac = new AbortController();
    try {
      const res = await fetch(`${chatUrl}?stream=1&chunks=100&gap=10`, {
        method: 'POST',
        headers: CLIENT_HEADERS,
        body: chatRequestBody(1024, true),
        signal: ac.signal,
      });
      await res.body!.getReader().read();
    } finally {
      ac.abort();
    }
  },
  'over-limit': async (i) => {
    const body =
      i % 2
        ? twoMb
        : new ReadableStream<Uint8Array>({
            start(c) {
              for (let k = 0; k < 32; k++) c.enqueue(twoMb.subarray(k * 65536, (k + 1) * 65536));
              c.close();
            },
          });
    const res = await fetch(chatUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    await res.arrayBuffer();
  },
  'bad-path': async (i) => {
    const res = await fetch(`${base}${BAD_PATHS[i % BAD_PATHS.length]}`, {
      method: 'POST',
      headers: CLIENT_HEADERS,
      body: '{}',
    });
    await res.arrayBuffer();
  },
};

async function run(n: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let failed = 0;
  await Promise.all(
    Array.from({ length: conns }, async () => {
      for (let i = next++; i < n; i = next++) await task(i).catch(() => failed++);
    }),
  );
  return failed;
}

// ---- the run -------------------------------------------------------------------------

const rows: Array<[string, string]> = [];
const mb = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const note = (stage: string, detail = '') => {
  const line = `${stage.padEnd(34)} RSS ${rssMb(gw.pid).toFixed(1).padStart(6)} MB  VmData ${statusMb(gw.pid, 'VmData').toFixed(0).padStart(5)} MB ${detail}`;
  rows.push([stage, line]);
  console.log(line);
};
const heapLine = (p: Probe) =>
  `(after Bun.gc(true): heap ${mb(p.heapSize)} MB of ${mb(p.heapCapacity)} MB, extra ${mb(p.extraMemorySize)} MB, mimalloc ${mb(p.mimallocCommit)} MB, ${p.objectCount} cells)`;

console.log(
  `gateway pid ${gw.pid}, mock ${mockUrl}, work ${work}; ${perKind} of each fault kind x ${bursts} bursts, ${conns} at a time\n`,
);
note('started');
let last = 0;
for (let round = 1; round <= 6; round++) {
  await run(4000, ordinary);
  await Bun.sleep(2000);
  const now = rssMb(gw.pid);
  note(`warm-up ${round} (4,000 requests)`);
  if (round >= 3 && Math.abs(now - last) < 1) break;
  last = now;
}
await Bun.sleep(settleSeconds * 1000);
note(`warm, ${settleSeconds} s idle`);
const warm = await probe();
note('warm, forced GC', heapLine(warm));

let final = warm;
for (let b = 1; b <= bursts; b++) {
  const failures: string[] = [];
  const perKindRss: string[] = [];
  for (const [kind, task] of Object.entries(FAULTS)) {
    const failed = await run(perKind, task);
    if (failed) failures.push(`${kind}: ${failed} client errors`);
    perKindRss.push(`${kind} ${rssMb(gw.pid).toFixed(0)}`);
  }
  note(`burst ${b}: right after`, failures.length ? `(${failures.join(', ')})` : '');
  console.log(`  RSS MB after each kind: ${perKindRss.join(', ')}`);
  const decay: string[] = [];
  const idleFrom = performance.now();
  for (const at of [1, 2, 5, 10, settleSeconds].filter((t, i, a) => t <= settleSeconds && a.indexOf(t) === i)) {
    await Bun.sleep(Math.max(0, idleFrom + at * 1000 - performance.now()));
    decay.push(`${at} s ${rssMb(gw.pid).toFixed(1)}`);
  }
  console.log(`  RSS MB idle after the burst: ${decay.join(', ')}`);
  note(`burst ${b}: ${settleSeconds} s idle`);
  final = await probe();
  note(`burst ${b}: forced GC`, heapLine(final));
}

// Still serving? One ordinary request after it all.
const check = await fetch(chatUrl, { method: 'POST', headers: CLIENT_HEADERS, body: body1k });
await check.arrayBuffer();
console.log(`\nan ordinary request afterwards: ${check.status}; app-log warnings and errors: ${appWarnings}`);
console.log(
  `signal listeners warm / final: ${JSON.stringify(warm.signalListeners)} / ${JSON.stringify(final.signalListeners)}`,
);
console.log(`protected cells warm / final: ${warm.protectedObjectCount} / ${final.protectedObjectCount}`);
const types = new Set([...Object.keys(warm.objectTypeCounts), ...Object.keys(final.objectTypeCounts)]);
const deltas = [...types]
  .map(
    (t) =>
      [
        t,
        (final.objectTypeCounts[t] ?? 0) - (warm.objectTypeCounts[t] ?? 0),
        warm.objectTypeCounts[t] ?? 0,
        final.objectTypeCounts[t] ?? 0,
      ] as const,
  )
  .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
console.log('live cells by type, warm -> after the last burst (forced GC both times), largest changes:');
for (const [t, d, w, f] of deltas.slice(0, 15))
  console.log(`  ${t.padEnd(28)} ${String(w).padStart(8)} -> ${String(f).padStart(8)}  (${d >= 0 ? '+' : ''}${d})`);
if (snapshots) console.log(`heap snapshots: ${warm.snapshot} ${final.snapshot}`);

gw.kill('SIGTERM');
const code = await Promise.race([gw.exited, Bun.sleep(10_000).then(() => 'timeout')]);
console.log(`gateway stopped: ${code}`);
mock.kill('SIGKILL');
if (!snapshots) rmSync(work, { recursive: true, force: true });
