/**
 * Skybridge benchmark: Skybridge (logging + metrics on, as in production) beside a bare
 * `Bun.serve` + `fetch` proxy, both against the same mock upstream, in the same run.
 * Each proxy is pinned to core 0; the mock, wrk and the bench clients to core 1, so the
 * figures are per core. Started by scripts/bench/run, which pins this script to core 1.
 *
 *   bun scripts/bench/main.ts [--quick] [--binary] [--only=latency,throughput,curve,ttfb,streams,bodies,observability,aborts,workers]
 *                             [--skybridge-root=DIR]   (another source tree, to compare changes)
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { cpus, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { CLIENT_HEADERS, chatRequestBody, skybridgeConfig } from './common.ts';

// ---------------------------------------------------------------------------------
// Settings

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const BINARY = args.includes('--binary');
const ONLY = args
  .find((a) => a.startsWith('--only='))
  ?.slice(7)
  .split(',');
const ROOT = resolve(import.meta.dir, '../..');
const SKY_ROOT = resolve(args.find((a) => a.startsWith('--skybridge-root='))?.slice(17) ?? ROOT);
const MAX_HTTP_REQUESTS = '65535';
const PROXY_CORE = '0';
const LOAD_CORE = '1';

const S = QUICK
  ? { rounds: 1, latencySec: 3, throughputSec: 5, curveSec: 3, warmSec: 2, ttfbCount: 8, streamSizes: [1000, 5000] }
  : { rounds: 3, latencySec: 6, throughputSec: 8, curveSec: 5, warmSec: 3, ttfbCount: 20, streamSizes: [1000, 5000] };
const THROUGHPUT_ROUNDS = QUICK ? 1 : 5;
const STREAM = { chunks: 21, gapMs: 500 }; // 21 frames, 20 gaps of 500 ms: a 10 s stream
const TTFB = { chunks: 10, gapMs: 50 };
const BIG = 100 * 1024 * 1024;
const want = (w: string) => !ONLY || ONLY.includes(w);

const work = mkdtempSync(join(tmpdir(), 'skybridge-bench-'));
const CLK_TCK = Number(Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim()) || 100;

// ---------------------------------------------------------------------------------
// Processes

interface Proc {
  name: string;
  proc: ReturnType<typeof Bun.spawn>;
  pid: number;
  url: string;
}
const started = new Set<Proc>();

function freePort(): number {
  const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
}

async function waitReady(url: string, name: string, proc: ReturnType<typeof Bun.spawn>): Promise<void> {
  const deadline = performance.now() + 20_000;
  while (performance.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}`);
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {}
    await Bun.sleep(50);
  }
  throw new Error(`${name} did not become ready at ${url}`);
}

async function startProc(
  name: string,
  core: string,
  cmd: string[],
  env: Record<string, string>,
  port: number,
  readyPath: string,
  cwd = ROOT,
): Promise<Proc> {
  const log = openSync(join(work, `${name}.stderr`), 'a');
  const proc = Bun.spawn(['taskset', '-c', core, ...cmd], {
    cwd,
    env: { ...process.env, ...env },
    stdout: 'ignore',
    stderr: log,
  });
  closeSync(log);
  const p: Proc = { name, proc, pid: proc.pid, url: `http://127.0.0.1:${port}` };
  started.add(p);
  await waitReady(p.url + readyPath, name, proc);
  return p;
}

async function stopProc(p: Proc): Promise<void> {
  if (p.proc.exitCode === null) {
    p.proc.kill('SIGTERM');
    const t = setTimeout(() => p.proc.kill('SIGKILL'), 5000);
    await p.proc.exited;
    clearTimeout(t);
  }
  started.delete(p);
}

function cleanup(): void {
  for (const p of started) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  started.clear();
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

let mock: Proc;
const skybridgeCmd = (config: string, port: number) =>
  BINARY
    ? [join(SKY_ROOT, 'dist/skybridge-linux-x64'), 'serve', '--config', config, '--port', String(port)]
    : ['bun', 'src/main.ts', 'serve', '--config', config, '--port', String(port)];

async function startMock(): Promise<Proc> {
  const port = freePort();
  return startProc('mock', LOAD_CORE, ['bun', 'scripts/bench/mock.ts', String(port)], {}, port, '/health');
}

/** `bun --preload` of the event-loop lag probe (scripts/bench/loop-lag.ts), writing to `file`. */
const lagProbe = (file: string | undefined): { args: string[]; env: Record<string, string> } =>
  file
    ? { args: ['--preload', join(ROOT, 'scripts/bench/loop-lag.ts')], env: { LOOP_LAG_FILE: file } }
    : { args: [], env: {} };

async function startBare(lagFile?: string, upstream = mock.url): Promise<Proc> {
  const port = freePort();
  const lag = lagProbe(lagFile);
  return startProc(
    lagFile ? 'bare-lag' : 'bare',
    PROXY_CORE,
    ['bun', ...lag.args, 'scripts/bench/bare-proxy.ts', String(port)],
    { UPSTREAM: upstream, BUN_CONFIG_MAX_HTTP_REQUESTS: MAX_HTTP_REQUESTS, ...lag.env },
    port,
    '/health',
  );
}

async function startBareWhole(): Promise<Proc> {
  const port = freePort();
  return startProc(
    'bare-whole',
    PROXY_CORE,
    ['bun', 'scripts/bench/bare-proxy.ts', String(port), 'whole'],
    { UPSTREAM: mock.url, BUN_CONFIG_MAX_HTTP_REQUESTS: MAX_HTTP_REQUESTS },
    port,
    '/health',
  );
}

/** The whole-body proxy served through Elysia: what the framework alone costs. */
async function startElysiaWhole(): Promise<Proc> {
  const port = freePort();
  return startProc(
    'elysia-whole',
    PROXY_CORE,
    ['bun', 'scripts/bench/elysia-proxy.ts', String(port)],
    { UPSTREAM: mock.url, BUN_CONFIG_MAX_HTTP_REQUESTS: MAX_HTTP_REQUESTS },
    port,
    '/health',
  );
}

/**
 * Skybridge with the shipping plugin list, or another set for the observability workload
 * (common.ts skybridgeConfig: `tracing`, `tracing/protobuf`).
 */
/** `default`: the shipping plugin list (logging, explorer, metrics on; governance and tracing off without their sections). */
async function startSkybridge(
  name = 'skybridge',
  plugins = ['default'],
  lagFile?: string,
  upstream = mock.url,
): Promise<Proc> {
  const port = freePort();
  const config = join(work, `${name}.yaml`);
  writeFileSync(config, skybridgeConfig(port, upstream, join(work, 'logs', name, 'requests.ndjson'), plugins));
  const lag = lagProbe(lagFile);
  const cmd = skybridgeCmd(config, port);
  return startProc(
    name,
    PROXY_CORE,
    lagFile ? [cmd[0]!, ...lag.args, ...cmd.slice(1)] : cmd,
    { BUN_CONFIG_MAX_HTTP_REQUESTS: MAX_HTTP_REQUESTS, SKYBRIDGE_LOG_LEVEL: 'warn', ...lag.env },
    port,
    '/health',
    SKY_ROOT,
  );
}

/** Skybridge with `server.workers` set, its process group on `cores` (workers inherit the affinity). */
async function startSkybridgeWorkers(
  name: string,
  workers: number,
  cores: string,
  upstream = mock.url,
  governed = false,
): Promise<Proc> {
  const port = freePort();
  const config = join(work, `${name}.yaml`);
  const logFile = join(work, 'logs', name, 'requests.ndjson');
  writeFileSync(config, skybridgeConfig(port, upstream, logFile, ['default'], { workers, governed }));
  return startProc(
    name,
    cores,
    skybridgeCmd(config, port),
    { BUN_CONFIG_MAX_HTTP_REQUESTS: MAX_HTTP_REQUESTS, SKYBRIDGE_LOG_LEVEL: 'warn' },
    port,
    '/health',
    SKY_ROOT,
  );
}

// ---------------------------------------------------------------------------------
// /proc readings

function treePids(pid: number): number[] {
  const out = [pid];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (kids) for (const k of kids.split(/\s+/)) out.push(...treePids(Number(k)));
    }
  } catch {}
  return out;
}

/** CPU seconds (user + system) of a process tree. */
function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of treePids(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return ticks / CLK_TCK;
}

/** CPU seconds (user + system) of one process, its children not counted. */
function ownCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Resident memory of a process tree, MB. */
function rssMB(pid: number): number {
  let kb = 0;
  for (const p of treePids(pid)) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {}
  }
  return kb / 1024;
}

function rssSampler(pid: number) {
  let peak = rssMB(pid);
  const t = setInterval(() => (peak = Math.max(peak, rssMB(pid))), 20);
  return {
    stop() {
      clearInterval(t);
      return Math.max(peak, rssMB(pid));
    },
  };
}

/** Time the process's threads spent runnable but waiting for a CPU, ms (schedstat). */
function runQueueWaitMs(pid: number): number {
  let ns = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
      } catch {}
    }
  } catch {}
  return ns / 1e6;
}

function loadavg(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

// ---------------------------------------------------------------------------------
// Load generation

interface WrkResult {
  requests: number;
  rps: number;
  errors: number;
  status_errors: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
  mean_us: number;
  cpu_us_per_req?: number;
  cpu_util?: number;
  /** Cores wrk itself used. */
  wrk_cpu_util?: number;
  duration_s?: number;
}

const luaScripts = new Map<number, string>();
function luaFor(bodyBytes: number): string {
  let path = luaScripts.get(bodyBytes);
  if (path) return path;
  const bodyFile = join(work, `body-${bodyBytes}.json`);
  writeFileSync(bodyFile, chatRequestBody(bodyBytes));
  path = join(work, `post-${bodyBytes}.lua`);
  const headers = Object.entries(CLIENT_HEADERS)
    .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
    .join('\n');
  writeFileSync(
    path,
    `wrk.method = "POST"
${headers}
local f = io.open(${JSON.stringify(bodyFile)}, "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
`,
  );
  luaScripts.set(bodyBytes, path);
  return path;
}

/**
 * One wrk run; with `pid`, the CPU the proxy tree used per request. `cores` / `threads`:
 * where wrk runs and with how many threads (default: the load core, one thread).
 */
async function wrk(
  url: string,
  conns: number,
  seconds: number,
  bodyBytes: number,
  pid?: number,
  load: { cores?: string; threads?: number } = {},
): Promise<WrkResult> {
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const proc = Bun.spawn(
    [
      'taskset',
      '-c',
      load.cores ?? LOAD_CORE,
      'wrk',
      `-t${load.threads ?? 1}`,
      `-c${conns}`,
      `-d${seconds}s`,
      '--timeout',
      '10s',
      '-s',
      luaFor(bodyBytes),
      url,
    ],
    { stdout: 'pipe', stderr: 'pipe' },
  );
  const text = await new Response(proc.stdout).text();
  await proc.exited;
  const cpu1 = pid ? cpuSeconds(pid) : 0;
  const line = text.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (!line) throw new Error(`wrk gave no result for ${url}: ${text} ${await new Response(proc.stderr).text()}`);
  const r = JSON.parse(line.slice(10));
  const res: WrkResult = {
    requests: r.requests,
    rps: Math.round(r.requests / (r.duration_us / 1e6)),
    errors: r.errors,
    status_errors: r.status_errors,
    p50_us: r.p50_us,
    p90_us: r.p90_us,
    p99_us: r.p99_us,
    mean_us: r.mean_us,
  };
  if (pid && r.requests > 0) {
    res.cpu_us_per_req = Math.round(((cpu1 - cpu0) * 1e6) / r.requests);
    res.cpu_util = Math.round(((cpu1 - cpu0) / (r.duration_us / 1e6)) * 100) / 100;
  }
  const own = proc.resourceUsage()?.cpuTime.total;
  if (own !== undefined) res.wrk_cpu_util = Math.round((Number(own) / r.duration_us) * 100) / 100;
  res.duration_s = r.duration_us / 1e6;
  return res;
}

async function client(mode: string, ...rest: (string | number)[]): Promise<any> {
  const script = mode === 'abort' ? ['abort-latency.ts'] : ['client.ts', mode];
  const proc = Bun.spawn(
    ['taskset', '-c', LOAD_CORE, 'bun', join(import.meta.dir, script[0]!), ...script.slice(1), ...rest.map(String)],
    {
      stdout: 'pipe',
      stderr: 'pipe',
      env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: MAX_HTTP_REQUESTS },
    },
  );
  const text = await new Response(proc.stdout).text();
  const code = await proc.exited;
  const line = text.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`client ${mode} failed (${code}): ${text} ${await new Response(proc.stderr).text()}`);
  }
}

// ---------------------------------------------------------------------------------
// Helpers

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const r2 = (x: number) => Math.round(x * 100) / 100;
/** Nearest-rank percentiles. */
function quantiles(xs: number[]): { n: number; p50: number; p95: number; p99: number; max: number } {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const q = (p: number) => (s.length ? r2(s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!) : NaN);
  return { n: s.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: q(1) };
}
const CHAT = '/openai_passthrough/v1/chat/completions';
const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------------------------
// Run

const results: Record<string, any> = {
  started_at: new Date().toISOString(),
  mode: QUICK ? 'quick' : 'full',
  skybridge: `${BINARY ? 'binary dist/skybridge-linux-x64' : 'bun src/main.ts'}${SKY_ROOT === ROOT ? ' (current tree)' : ` in ${SKY_ROOT}`}`,
  machine: {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    mem_gb: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    bun: Bun.version,
    wrk: Bun.spawnSync(['wrk', '--version']).stdout.toString().split('\n')[0]?.trim(),
  },
  git: {
    commit: Bun.spawnSync(['git', 'rev-parse', '--short', 'HEAD'], { cwd: SKY_ROOT }).stdout.toString().trim(),
    dirty_files: Bun.spawnSync(['git', 'status', '--porcelain', 'src'], { cwd: SKY_ROOT })
      .stdout.toString()
      .trim()
      .split('\n')
      .filter(Boolean).length,
  },
  env: {
    BUN_CONFIG_MAX_HTTP_REQUESTS: MAX_HTTP_REQUESTS,
    pinning: `proxies on core ${PROXY_CORE}; mock, wrk, clients on core ${LOAD_CORE}`,
  },
  loadavg_start: loadavg(),
};

let bare: Proc;
let sky: Proc;
let bareWhole: Proc | undefined;
let elysiaWhole: Proc | undefined;

try {
  mock = await startMock();
  bare = await startBare();
  sky = await startSkybridge();
  if (want('throughput')) {
    bareWhole = await startBareWhole();
    elysiaWhole = await startElysiaWhole();
  }
  const metricsRes = await fetch(`${sky.url}/metrics`);
  const metricsText = await metricsRes.text();
  results.skybridge_plugins = { default: true, metrics: metricsRes.status === 200 && metricsText.includes('# TYPE') };
  log(
    `mock ${mock.url}, bare ${bare.url}, skybridge ${sky.url} (${results.skybridge}; metrics ${results.skybridge_plugins.metrics ? 'on' : 'NOT AVAILABLE'}); work dir ${work}`,
  );

  const targets = () => [
    { name: 'bare', proc: bare },
    { name: 'skybridge', proc: sky },
  ];

  // Warm-up: JIT, connection pools.
  for (const t of targets()) await wrk(t.proc.url + CHAT, 16, S.warmSec, 1024);
  await wrk(`${mock.url}/v1/chat/completions`, 16, 1, 1024);

  // 1. Added latency at c=1 (proxy minus direct-to-mock, same round).
  if (want('latency')) {
    log('latency at c=1');
    const rounds: any[] = [];
    for (let i = 0; i < S.rounds; i++) {
      const direct = await wrk(`${mock.url}/v1/chat/completions`, 1, S.latencySec, 1024);
      const b = await wrk(bare.url + CHAT, 1, S.latencySec, 1024, bare.pid);
      const s = await wrk(sky.url + CHAT, 1, S.latencySec, 1024, sky.pid);
      rounds.push({
        direct,
        bare: b,
        skybridge: s,
        added_us: {
          bare: { p50: b.p50_us - direct.p50_us, p99: b.p99_us - direct.p99_us },
          skybridge: { p50: s.p50_us - direct.p50_us, p99: s.p99_us - direct.p99_us },
        },
      });
    }
    const m = (who: 'bare' | 'skybridge', q: 'p50' | 'p99') => median(rounds.map((r) => r.added_us[who][q]));
    results.latency_c1 = {
      rounds,
      direct_p50_us: median(rounds.map((r) => r.direct.p50_us)),
      added_p50_us: {
        bare: m('bare', 'p50'),
        skybridge: m('skybridge', 'p50'),
        ratio: r2(m('skybridge', 'p50') / m('bare', 'p50')),
      },
      added_p99_us: {
        bare: m('bare', 'p99'),
        skybridge: m('skybridge', 'p99'),
        ratio: r2(m('skybridge', 'p99') / m('bare', 'p99')),
      },
    };
  }

  // 2. Throughput at c=64, rotating which proxy goes first. Two more references run
  //    beside them, then stop: the bare proxy reading bodies whole (the floor for a
  //    gateway that holds bodies) and the same served through Elysia (what the framework
  //    alone adds to that floor).
  if (want('throughput')) {
    log('throughput at c=64');
    await wrk(bareWhole!.url + CHAT, 16, S.warmSec, 1024);
    await wrk(elysiaWhole!.url + CHAT, 16, S.warmSec, 1024);
    const all = [...targets(), { name: 'bare_whole', proc: bareWhole! }, { name: 'elysia_whole', proc: elysiaWhole! }];
    const rounds: any[] = [];
    for (let i = 0; i < THROUGHPUT_ROUNDS; i++) {
      const order = [...all.slice(i % all.length), ...all.slice(0, i % all.length)];
      const round: Record<string, WrkResult> = {};
      for (const t of order) round[t.name] = await wrk(t.proc.url + CHAT, 64, S.throughputSec, 1024, t.proc.pid);
      rounds.push({ ...round, ratio: r2(round.skybridge!.rps / round.bare!.rps) });
      log(
        `  round ${i + 1}: bare ${round.bare!.rps} req/s, skybridge ${round.skybridge!.rps} req/s (${rounds.at(-1).ratio}x), bare reading whole ${round.bare_whole!.rps} req/s, the same on Elysia ${round.elysia_whole!.rps} req/s`,
      );
    }
    await stopProc(bareWhole!);
    await stopProc(elysiaWhole!);
    const rps = (w: string) => median(rounds.map((r) => r[w].rps));
    const cpu = (w: string) => median(rounds.map((r) => r[w].cpu_us_per_req));
    results.throughput_c64 = {
      rounds,
      rps: {
        bare: rps('bare'),
        skybridge: rps('skybridge'),
        ratio: r2(rps('skybridge') / rps('bare')),
        ratio_median_of_rounds: median(rounds.map((r) => r.ratio)),
        bare_whole: rps('bare_whole'),
        bare_whole_ratio: r2(rps('bare_whole') / rps('bare')),
        elysia_whole: rps('elysia_whole'),
        elysia_whole_ratio: r2(rps('elysia_whole') / rps('bare')),
      },
      cpu_us_per_req: {
        bare: cpu('bare'),
        skybridge: cpu('skybridge'),
        ratio: r2(cpu('skybridge') / cpu('bare')),
        bare_whole: cpu('bare_whole'),
        elysia_whole: cpu('elysia_whole'),
      },
      errors: rounds.reduce(
        (n, r) => n + r.bare.errors + r.bare.status_errors + r.skybridge.errors + r.skybridge.status_errors,
        0,
      ),
    };
  }

  // 3. Cost curve: concurrency and request body size.
  if (want('curve')) {
    log('cost curve');
    const rows: any[] = [];
    const cases = [
      ...[1, 16, 64, 256].map((c) => ({ c, body: 1024 })),
      ...[100 * 1024, 1024 * 1024].map((body) => ({ c: 64, body })),
    ];
    for (const k of cases) {
      const row: any = { concurrency: k.c, body_bytes: k.body };
      for (const t of targets()) row[t.name] = await wrk(t.proc.url + CHAT, k.c, S.curveSec, k.body, t.proc.pid);
      row.rps_ratio = r2(row.skybridge.rps / row.bare.rps);
      row.cpu_ratio = r2(row.skybridge.cpu_us_per_req / row.bare.cpu_us_per_req);
      rows.push(row);
      log(
        `  c=${k.c} body=${k.body}: bare ${row.bare.rps} req/s ${row.bare.cpu_us_per_req} us/req, skybridge ${row.skybridge.rps} req/s ${row.skybridge.cpu_us_per_req} us/req`,
      );
    }
    results.cost_curve = rows;
  }

  // 4. Streaming: added TTFB and chunk gaps (50 ms spacing).
  if (want('ttfb')) {
    log('streaming TTFB and chunk spacing');
    // Warm the streaming path of both proxies (JIT) the way steady traffic would.
    for (const t of targets()) await wrk(`${t.proc.url}${CHAT}?stream=1&chunks=5&gap=0`, 16, S.warmSec, 1024);
    const direct = await client('ttfb', `${mock.url}/v1/chat/completions`, S.ttfbCount, TTFB.chunks, TTFB.gapMs);
    const out: any = { direct };
    for (const t of targets())
      out[t.name] = await client('ttfb', t.proc.url + CHAT, S.ttfbCount, TTFB.chunks, TTFB.gapMs);
    out.added_ttfb_ms = {
      bare: r2(out.bare.ttfb_ms.p50 - direct.ttfb_ms.p50),
      skybridge: r2(out.skybridge.ttfb_ms.p50 - direct.ttfb_ms.p50),
    };
    results.stream_ttfb = out;
  }

  // 5. Many concurrent 10 s streams, each proxy fresh.
  if (want('streams')) {
    results.concurrent_streams = {};
    for (const n of S.streamSizes) {
      log(`${n} concurrent 10 s streams`);
      const row: any = {};
      for (const name of ['bare', 'skybridge'] as const) {
        const p = await restart(name);
        await wrk(p.url + CHAT, 16, 1, 1024);
        const before = rssMB(p.pid);
        const sampler = rssSampler(p.pid);
        const res = await client('streams', p.url + CHAT, n, STREAM.chunks, STREAM.gapMs);
        const peak = sampler.stop();
        row[name] = {
          ...res,
          rss_before_mb: Math.round(before),
          peak_rss_mb: Math.round(peak),
          on_time_11s: res.completed === n && res.duration_ms.max <= 11_000,
        };
        log(
          `  ${name}: ${res.completed}/${n} complete, max ${Math.round(res.duration_ms.max)} ms, peak RSS ${Math.round(peak)} MB`,
        );
      }
      results.concurrent_streams[n] = row;
    }
  }

  // 6. 100 MB request body and 100 MB response body, each proxy fresh and warmed.
  if (want('bodies')) {
    log('100 MB upload and download');
    const file = join(work, 'upload.bin');
    const fd = openSync(file, 'w');
    const hasher = new Bun.CryptoHasher('sha256');
    const block = new Uint8Array(1024 * 1024);
    for (let i = 0; i < BIG / block.length; i++) {
      for (let j = 0; j < block.length; j += 65536) crypto.getRandomValues(block.subarray(j, j + 65536));
      hasher.update(block);
      writeSync(fd, block);
    }
    closeSync(fd);
    const sha = hasher.digest('hex');
    const small = join(work, 'upload-small.bin');
    writeFileSync(small, new Uint8Array(1024 * 1024));
    const smallSha = new Bun.CryptoHasher('sha256').update(new Uint8Array(1024 * 1024)).digest('hex');
    const out: any = {};
    for (const name of ['bare', 'skybridge'] as const) {
      out[name] = {};
      for (const dir of ['upload', 'download'] as const) {
        const p = await restart(name);
        await wrk(p.url + CHAT, 16, 1, 1024);
        // Warm the path with a 1 MiB transfer in the same direction.
        if (dir === 'upload') await client('upload', `${p.url}/openai_passthrough/v1/upload`, small, smallSha);
        else await client('download', `${p.url}/openai_passthrough/v1/download`, 1024 * 1024);
        await Bun.sleep(200);
        const before = rssMB(p.pid);
        const sampler = rssSampler(p.pid);
        const res =
          dir === 'upload'
            ? await client('upload', `${p.url}/openai_passthrough/v1/upload`, file, sha)
            : await client('download', `${p.url}/openai_passthrough/v1/download`, BIG);
        const peak = sampler.stop();
        out[name][dir] = { ...res, rss_before_mb: r2(before), peak_rss_mb: r2(peak), rss_growth_mb: r2(peak - before) };
        log(
          `  ${name} ${dir}: status ${res.status}, intact ${res.intact}, ${r2(res.seconds)} s, RSS +${r2(peak - before)} MB`,
        );
      }
    }
    results.big_bodies = out;
  }

  // 7. What observability costs: the same Skybridge with logging only, + metrics (the
  //    production set used above), + metrics and tracing with every request's spans
  //    exported (to the mock's OTLP sink, on the load core), as JSON and as protobuf, and
  //    protobuf with one request in ten sampled. All variants are loaded at once, each
  //    under its own wrk: they share the proxy core, so whatever slows the machine in a
  //    round slows all of them alike (one after the other, single rounds moved +-10-20%,
  //    more than the effect measured), and each one's CPU time per request is its cost.
  if (want('observability')) {
    log('observability cost at c=64 (all variants at once on the proxy core)');
    // Every variant a fresh process started at the same time: the production process
    // above has served every other workload (its heap shows it), which skewed this
    // comparison by more than the effect measured.
    const variants = [
      { name: 'logging', proc: await startSkybridge('sky-logging', ['logging']) },
      { name: 'logging_metrics', proc: await startSkybridge('sky-metrics', ['logging', 'metrics']) },
      { name: 'logging_metrics_tracing', proc: await startSkybridge('sky-tracing', ['logging', 'metrics', 'tracing']) },
      {
        name: 'logging_metrics_tracing_protobuf',
        proc: await startSkybridge('sky-tracing-pb', ['logging', 'metrics', 'tracing/protobuf']),
      },
      {
        name: 'logging_metrics_tracing_protobuf_sampled_10pct',
        proc: await startSkybridge('sky-tracing-pb-10', ['logging', 'metrics', 'tracing/protobuf@0.1']),
      },
    ];
    const together = (secs: number) =>
      Promise.all(variants.map((v) => wrk(v.proc.url + CHAT, 64, secs, 1024, v.proc.pid)));
    await together(S.warmSec);
    const rounds: Array<Record<string, WrkResult>> = [];
    const obsRounds = QUICK ? 4 : 16;
    const obsSec = QUICK ? 2 : 3;
    for (let i = 0; i < obsRounds; i++) {
      const measured = await together(obsSec);
      const round = Object.fromEntries(variants.map((v, j) => [v.name, measured[j]!]));
      rounds.push(round);
      log(`  round ${i + 1}: ${variants.map((v) => `${v.name} ${round[v.name]!.cpu_us_per_req} us`).join(', ')}`);
    }
    for (const v of variants) await stopProc(v.proc);
    const cpu = (w: string) => median(rounds.map((r) => r[w]!.cpu_us_per_req!));
    // Throughput a core loses against logging only, per round (then the median), from
    // CPU per request: with the core shared, that is what each request costs.
    const lost = (w: string) =>
      rounds.map((r) => 100 * (1 - r.logging!.cpu_us_per_req! / r[w]!.cpu_us_per_req!)).sort((a, b) => a - b);
    const cost = (w: string) => r2(median(lost(w)));
    const spread = (w: string) => {
      const xs = lost(w);
      return [r2(xs[Math.floor(xs.length / 4)]!), r2(xs[Math.floor((xs.length * 3) / 4)]!)];
    };
    const others = variants.slice(1).map((v) => v.name);
    results.observability_c64 = {
      method: 'all variants at once on the proxy core, each under its own wrk at c=64',
      rounds,
      cpu_us_per_req: Object.fromEntries(variants.map((v) => [v.name, cpu(v.name)])),
      throughput_cost_pct: {
        metrics: cost('logging_metrics'),
        metrics_tracing: cost('logging_metrics_tracing'),
        metrics_tracing_protobuf: cost('logging_metrics_tracing_protobuf'),
        metrics_tracing_protobuf_sampled_10pct: cost('logging_metrics_tracing_protobuf_sampled_10pct'),
      },
      throughput_cost_iqr_pct: Object.fromEntries(others.map((w) => [w, spread(w)])),
    };
  }

  // 8. Client aborts: how soon the upstream sees a request abandoned once its client has
  //    closed the connection (scripts/bench/abort-latency.ts: 1,000 raw-socket clients,
  //    half waiting for a slow non-streaming answer, half reading SSE streams, against
  //    scripts/bench/abort-mock.ts, which notes when each upstream connection closes).
  //    Two patterns: closes spread at random over 1.5 s after each request (opened over
  //    1 s), and all 1,000 closing in one go. Direct to the mock is the measurement's own
  //    floor. Proxies fresh, pointed at that mock; every target gets the same close times.
  if (want('aborts')) {
    log('client aborts: when the upstream sees the request abandoned');
    const rounds = QUICK ? 2 : 6;
    const modes = [
      { name: 'spread', args: ['--ramp=1000', '--window=1500'] },
      { name: 'together', args: ['--ramp=1000', '--together=1500'] },
    ];
    const mockPort = freePort();
    const abortMock = await startProc(
      'abort-mock',
      LOAD_CORE,
      ['bun', 'scripts/bench/abort-mock.ts', String(mockPort)],
      {},
      mockPort,
      '/health',
    );
    const proxies = {
      bare: await startBare(undefined, abortMock.url),
      skybridge: await startSkybridge('skybridge-aborts', undefined, undefined, abortMock.url),
    };
    type AbortTarget = { name: string; url: string; path?: string; pid?: number };
    const targets: AbortTarget[] = [
      { name: 'direct', url: abortMock.url, path: '/v1/chat/completions' },
      { name: 'bare', url: proxies.bare.url, pid: proxies.bare.pid },
      { name: 'skybridge', url: proxies.skybridge.url, pid: proxies.skybridge.pid },
    ];
    const abortRun = async (t: AbortTarget, args: string[], seed: number) => {
      const wait0 = t.pid ? runQueueWaitMs(t.pid) : 0;
      const res = await client(
        'abort',
        t.url,
        abortMock.url,
        ...(t.path ? [`--path=${t.path}`] : []),
        ...args,
        `--seed=${seed}`,
      );
      if (t.pid) res.proxy_runqueue_wait_ms = Math.round(runQueueWaitMs(t.pid) - wait0);
      return res;
    };
    for (const t of targets) await abortRun(t, modes[0]!.args, 1000); // warm-up, not counted
    const runs: Record<string, Record<string, any[]>> = {};
    for (let i = 0; i < rounds; i++) {
      for (const m of modes) {
        const byName = (runs[m.name] ??= {});
        for (const t of [...targets.slice(i % targets.length), ...targets.slice(0, i % targets.length)])
          (byName[t.name] ??= []).push(await abortRun(t, m.args, i + 1));
        log(
          `  round ${i + 1} ${m.name}: ${targets.map((t) => `${t.name} p99 ${byName[t.name]!.at(-1).latency_ms.all.p99} ms`).join(', ')}`,
        );
      }
    }
    await stopProc(proxies.bare);
    await stopProc(proxies.skybridge);
    // One more spread run for each proxy, fresh, with the event-loop lag probe preloaded
    // (its 1 ms timer wakes the loop, so these latencies are reported apart).
    const lag: Record<string, any> = {};
    if (!BINARY) {
      for (const name of ['bare', 'skybridge'] as const) {
        const file = join(work, `lag-${name}.json`);
        const p =
          name === 'bare'
            ? await startBare(file, abortMock.url)
            : await startSkybridge('skybridge-lag', undefined, file, abortMock.url);
        const dump = async () => {
          rmSync(file, { force: true });
          p.proc.kill('SIGUSR2');
          for (let k = 0; k < 100 && !existsSync(file); k++) await Bun.sleep(20);
          return JSON.parse(readFileSync(file, 'utf8')) as Array<[number, number]>;
        };
        await abortRun({ name, url: p.url }, modes[0]!.args, 1000);
        await dump();
        const res = await abortRun({ name, url: p.url, pid: p.pid }, modes[0]!.args, 1);
        const during = (await dump()).filter(([t]) => t >= res.span.start && t <= res.span.end + 500).map(([, l]) => l);
        lag[name] = {
          lag_ms: quantiles(during),
          stalls_over_5ms: during.filter((l) => l > 5).length,
          latency_ms: res.latency_ms.all,
        };
        await stopProc(p);
      }
    }
    await stopProc(abortMock);
    const summary: Record<string, any> = {};
    for (const m of modes) {
      summary[m.name] = {};
      for (const [name, rs] of Object.entries(runs[m.name]!)) {
        const pooled = (phase: string) =>
          quantiles(
            rs.flatMap((r) =>
              phase === 'all'
                ? Object.values(r.samples as Record<string, number[]>).flat()
                : (r.samples[phase] as number[]),
            ),
          );
        summary[m.name][name] = {
          all: pooled('all'),
          before_upstream: pooled('before_upstream'),
          before_headers: pooled('before_headers'),
          mid_stream: pooled('mid_stream'),
          p99_median_of_rounds: median(rs.map((r) => r.latency_ms.all.p99)),
          p99_rounds: rs.map((r) => r.latency_ms.all.p99),
          not_aborted: rs.reduce((n, r) => n + r.not_aborted, 0),
          never_sent: rs.reduce((n, r) => n + r.never_sent, 0),
          errors: rs.reduce((n, r) => n + r.errors, 0),
          runqueue_wait_ms_median:
            rs[0]?.proxy_runqueue_wait_ms === undefined ? undefined : median(rs.map((r) => r.proxy_runqueue_wait_ms)),
        };
      }
    }
    for (const rs of Object.values(runs)) for (const list of Object.values(rs)) for (const r of list) delete r.samples;
    results.aborts = { rounds, summary, lag, runs };
  }

  // 9. Several workers (server.workers), the default plugins, c=64, 1 KB chat.
  //    (a) The cost of being several: workers: 2 and workers: 1, each whole process group
  //        pinned to the proxy core, wrk on the load core: CPU us per request of the group
  //        (primary included), rounds alternating which goes first. The control: two
  //        unrelated workers: 1 gateways on that core, each under half the connections
  //        (what any two processes sharing one core cost, with no group at all).
  //    (b) Throughput when the proxy may use both cores: workers: 2 vs 1, the proxy, a
  //        mock of its own and wrk (2 threads) all on both cores; where the CPU went.
  //    (c) The primary's own CPU per request (the explorer rows it indexes), and with
  //        governance, where every request is one IPC round trip to its counters.
  if (want('workers')) {
    log('workers: the cost of being several (both groups on one core)');
    const rounds = QUICK ? 2 : 4;
    const ONE_CORE = PROXY_CORE;
    const BOTH = `${PROXY_CORE},${LOAD_CORE}`;
    const groupRun = async (p: Proc, load?: { cores: string; threads: number }, peer?: Proc) => {
      const primary0 = ownCpuSeconds(p.pid);
      const peer0 = peer ? cpuSeconds(peer.pid) : 0;
      const r = await wrk(p.url + CHAT, 64, S.throughputSec, 1024, p.pid, load);
      const primaryUs = ((ownCpuSeconds(p.pid) - primary0) * 1e6) / Math.max(1, r.requests);
      const peerUtil = peer ? (cpuSeconds(peer.pid) - peer0) / (r.duration_s ?? S.throughputSec) : undefined;
      return { ...r, primary_cpu_us_per_req: r2(primaryUs), ...(peer && { mock_cpu_util: r2(peerUtil!) }) };
    };
    /** Two unrelated single-process gateways loaded at once, half the connections each. */
    const pairRun = async (a: Proc, b: Proc) => {
      const cpu0 = cpuSeconds(a.pid) + cpuSeconds(b.pid);
      const [ra, rb] = await Promise.all([a, b].map((p) => wrk(p.url + CHAT, 32, S.throughputSec, 1024)));
      const requests = ra!.requests + rb!.requests;
      return {
        rps: ra!.rps + rb!.rps,
        cpu_us_per_req: Math.round(((cpuSeconds(a.pid) + cpuSeconds(b.pid) - cpu0) * 1e6) / Math.max(1, requests)),
      };
    };
    const cost: Array<Record<string, any>> = [];
    {
      const w1 = await startSkybridgeWorkers('sky-w1', 1, ONE_CORE);
      const w2 = await startSkybridgeWorkers('sky-w2', 2, ONE_CORE);
      const pair = [
        await startSkybridgeWorkers('sky-pair-a', 1, ONE_CORE),
        await startSkybridgeWorkers('sky-pair-b', 1, ONE_CORE),
      ];
      for (const p of [w1, w2, ...pair]) await wrk(p.url + CHAT, 16, S.warmSec, 1024);
      for (let i = 0; i < rounds; i++) {
        const runs = [
          ['w1', () => groupRun(w1)],
          ['w2', () => groupRun(w2)],
          ['pair', () => pairRun(pair[0]!, pair[1]!)],
        ] as const;
        const round: Record<string, any> = {};
        for (const [name, run] of [...runs.slice(i % 3), ...runs.slice(0, i % 3)]) round[name] = await run();
        round.cpu_ratio = r2(round.w2.cpu_us_per_req / round.w1.cpu_us_per_req);
        round.pair_ratio = r2(round.pair.cpu_us_per_req / round.w1.cpu_us_per_req);
        cost.push(round);
        log(
          `  round ${i + 1}: workers 1 ${round.w1.rps} req/s, ${round.w1.cpu_us_per_req} us/req; workers 2 ${round.w2.rps} req/s, ${round.w2.cpu_us_per_req} us/req (primary ${round.w2.primary_cpu_us_per_req}), ratio ${round.cpu_ratio}; two unrelated gateways ${round.pair.cpu_us_per_req} us/req, ratio ${round.pair_ratio}`,
        );
      }
      for (const p of [w1, w2, ...pair]) await stopProc(p);
    }

    log('workers: throughput with the proxy, the mock and wrk on both cores');
    const mockPort = freePort();
    const mock2 = await startProc(
      'mock-both',
      BOTH,
      ['bun', 'scripts/bench/mock.ts', String(mockPort)],
      {},
      mockPort,
      '/health',
    );
    const both: Array<Record<string, any>> = [];
    const load = { cores: BOTH, threads: 2 };
    {
      const w1 = await startSkybridgeWorkers('sky-both-w1', 1, BOTH, mock2.url);
      const w2 = await startSkybridgeWorkers('sky-both-w2', 2, BOTH, mock2.url);
      for (const p of [w1, w2]) await wrk(p.url + CHAT, 16, S.warmSec, 1024, undefined, load);
      for (let i = 0; i < rounds; i++) {
        const order =
          i % 2
            ? ([
                ['w2', w2],
                ['w1', w1],
              ] as const)
            : ([
                ['w1', w1],
                ['w2', w2],
              ] as const);
        const round: Record<string, any> = {};
        for (const [name, p] of order) round[name] = await groupRun(p, load, mock2);
        round.rps_ratio = r2(round.w2.rps / round.w1.rps);
        both.push(round);
        const split = (x: any) => `proxy ${x.cpu_util} / mock ${x.mock_cpu_util} / wrk ${x.wrk_cpu_util} cores`;
        log(
          `  round ${i + 1}: workers 1 ${round.w1.rps} req/s (${split(round.w1)}); workers 2 ${round.w2.rps} req/s (${split(round.w2)}); ratio ${round.rps_ratio}`,
        );
      }
      await stopProc(w1);
      await stopProc(w2);
    }

    log('workers: governance without Redis (every request asks the primary)');
    const governed: Array<Record<string, any>> = [];
    {
      const g1 = await startSkybridgeWorkers('sky-gov-w1', 1, ONE_CORE, mock.url, true);
      const g2 = await startSkybridgeWorkers('sky-gov-w2', 2, ONE_CORE, mock.url, true);
      for (const p of [g1, g2]) await wrk(p.url + CHAT, 16, S.warmSec, 1024);
      for (let i = 0; i < Math.max(1, rounds / 2); i++) {
        const round: Record<string, any> = { w1: await groupRun(g1), w2: await groupRun(g2) };
        round.cpu_ratio = r2(round.w2.cpu_us_per_req / round.w1.cpu_us_per_req);
        governed.push(round);
        log(
          `  round ${i + 1}: governed, one core: workers 1 ${round.w1.cpu_us_per_req} us/req, workers 2 ${round.w2.cpu_us_per_req} us/req (primary ${round.w2.primary_cpu_us_per_req}); ratio ${round.cpu_ratio}`,
        );
      }
      await stopProc(g1);
      await stopProc(g2);
    }
    await stopProc(mock2);

    const m = (rs: Array<Record<string, any>>, path: (r: any) => number) => r2(median(rs.map(path)));
    const perCoreRps = m(cost, (r) => 1e6 / r.w1.cpu_us_per_req);
    const w1Us = m(cost, (r) => r.w1.cpu_us_per_req);
    const costRatio = m(cost, (r) => r.cpu_ratio);
    const primaryUs = m(cost, (r) => r.w2.primary_cpu_us_per_req);
    const governedPrimaryUs = m(governed, (r) => r.w2.primary_cpu_us_per_req);
    results.workers = {
      rounds,
      cost_one_core: cost,
      both_cores: both,
      governed_one_core: governed,
      summary: {
        w1_cpu_us_per_req: m(cost, (r) => r.w1.cpu_us_per_req),
        w2_cpu_us_per_req: m(cost, (r) => r.w2.cpu_us_per_req),
        cpu_ratio: costRatio,
        primary_cpu_us_per_req: primaryUs,
        pair_cpu_us_per_req: m(cost, (r) => r.pair.cpu_us_per_req),
        pair_ratio: m(cost, (r) => r.pair_ratio),
        both_cores_rps: { w1: m(both, (r) => r.w1.rps), w2: m(both, (r) => r.w2.rps) },
        both_cores_ratio: m(both, (r) => r.rps_ratio),
        both_cores_cpu: {
          w1: {
            proxy: m(both, (r) => r.w1.cpu_util),
            mock: m(both, (r) => r.w1.mock_cpu_util),
            wrk: m(both, (r) => r.w1.wrk_cpu_util),
          },
          w2: {
            proxy: m(both, (r) => r.w2.cpu_util),
            mock: m(both, (r) => r.w2.mock_cpu_util),
            wrk: m(both, (r) => r.w2.wrk_cpu_util),
          },
        },
        governed_cpu_ratio: m(governed, (r) => r.cpu_ratio),
        governed_primary_cpu_us_per_req: governedPrimaryUs,
        // The model for N cores, one worker each (the load generated elsewhere):
        // - each request costs what it costs a single process on a core of its own (w1),
        //   plus the group's own machinery: what workers: 2 costs beyond two unrelated
        //   gateways sharing the core alike (the primary's share and the IPC), so
        //   N x 1e6 / (w1 + that); the pessimistic figure keeps the whole one-core ratio
        //   (as if every worker shared its core with another);
        // - the primary is one process: it indexes at most 1e6 / its us per request rows/s
        //   (beyond that the explorer index skips ahead; requests are not slowed), and
        //   admits at most 1e6 / its us per governed request (governance without Redis).
        model: Object.fromEntries(
          [8, 32].map((cores) => [
            cores,
            {
              rps: Math.round(
                (cores * 1e6) /
                  (w1Us +
                    Math.max(
                      0,
                      m(cost, (r) => r.w2.cpu_us_per_req - r.pair.cpu_us_per_req),
                    )),
              ),
              rps_pessimistic: Math.round((cores * perCoreRps) / costRatio),
              explorer_index_ceiling_rows: primaryUs > 0 ? Math.round(1e6 / primaryUs) : null,
              governed_admits_ceiling_rps: governedPrimaryUs > 0 ? Math.round(1e6 / governedPrimaryUs) : null,
            },
          ]),
        ),
      },
    };
  }
} finally {
  results.loadavg_end = loadavg();
  results.finished_at = new Date().toISOString();
  cleanup();
}

async function restart(name: 'bare' | 'skybridge'): Promise<Proc> {
  if (name === 'bare') {
    await stopProc(bare);
    bare = await startBare();
    return bare;
  }
  await stopProc(sky);
  sky = await startSkybridge();
  return sky;
}

// ---------------------------------------------------------------------------------
// Report

const T = {
  thr: 1.1,
  lat: 1.1,
  ttfb: 0.5,
  s1k: { seconds: 11, rss: 120 },
  s5k: { rss: 400 },
  growth: 16,
};
const checks: Array<{ target: string; value: string; met: boolean | null }> = [];
const lines: string[] = [];
const fmt = (x: unknown) =>
  typeof x === 'number' ? (Number.isInteger(x) ? String(x) : x.toFixed(2)) : String(x ?? '-');
const row = (cells: unknown[]) => lines.push(`| ${cells.map(fmt).join(' | ')} |`);

lines.push(
  `Skybridge bench (${results.mode}, ${results.skybridge}; the default plugins: logging, explorer${results.skybridge_plugins?.metrics ? ', metrics' : ' (metrics not available)'}), ${results.started_at}`,
);
lines.push(
  `machine: ${results.machine.cpu}, ${results.machine.cores} cores; ${results.env.pinning}; BUN_CONFIG_MAX_HTTP_REQUESTS=${MAX_HTTP_REQUESTS} for both proxies; loadavg ${results.loadavg_start} -> ${results.loadavg_end}`,
);
lines.push('');
row(['workload', 'bare Bun proxy', 'Skybridge', 'ratio', 'target', 'met']);
lines.push('|---|---|---|---|---|---|');
const L = results.latency_c1;
if (L) {
  const ok = L.added_p50_us.ratio <= T.lat;
  row([
    'added latency c=1, p50 (us)',
    L.added_p50_us.bare,
    L.added_p50_us.skybridge,
    L.added_p50_us.ratio,
    `<= ${T.lat}x bare`,
    ok ? 'yes' : 'NO',
  ]);
  row(['added latency c=1, p99 (us)', L.added_p99_us.bare, L.added_p99_us.skybridge, L.added_p99_us.ratio, '', '']);
  checks.push({ target: 'added latency c=1 <= 1.1x bare', value: `${L.added_p50_us.ratio}x`, met: ok });
}
const H = results.throughput_c64;
if (H) {
  const ok = H.rps.ratio >= T.thr;
  row(['c=64 req/s (median)', H.rps.bare, H.rps.skybridge, H.rps.ratio, `>= ${T.thr}x bare`, ok ? 'yes' : 'NO']);
  row(['c=64 CPU us/req', H.cpu_us_per_req.bare, H.cpu_us_per_req.skybridge, H.cpu_us_per_req.ratio, '', '']);
  row([
    'c=64 req/s, bare proxy reading bodies whole in the Skybridge column (reference)',
    H.rps.bare,
    H.rps.bare_whole,
    H.rps.bare_whole_ratio,
    '',
    '',
  ]);
  row([
    'c=64 req/s, the same served through Elysia in the Skybridge column (reference)',
    H.rps.bare,
    H.rps.elysia_whole,
    H.rps.elysia_whole_ratio,
    '',
    '',
  ]);
  checks.push({ target: 'throughput c=64 >= 1.1x bare', value: `${H.rps.ratio}x`, met: ok });
}
const F = results.stream_ttfb;
if (F) {
  const ok =
    F.added_ttfb_ms.skybridge < T.ttfb &&
    F.skybridge.batched_reads === 0 &&
    Math.abs(F.skybridge.gap_ms.p50 - TTFB.gapMs) < 5;
  row([
    'stream added TTFB p50 (ms)',
    F.added_ttfb_ms.bare,
    F.added_ttfb_ms.skybridge,
    '',
    `< ${T.ttfb} ms`,
    ok ? 'yes' : 'NO',
  ]);
  row([
    'stream chunk gap p50 (ms) / batched reads',
    `${fmt(F.bare.gap_ms.p50)} / ${F.bare.batched_reads}`,
    `${fmt(F.skybridge.gap_ms.p50)} / ${F.skybridge.batched_reads}`,
    '',
    '~50 / 0',
    '',
  ]);
  checks.push({
    target: 'stream TTFB added < 0.5 ms, no batching',
    value: `${F.added_ttfb_ms.skybridge} ms, gap ${fmt(F.skybridge.gap_ms.p50)} ms, ${F.skybridge.batched_reads} batched`,
    met: ok,
  });
}
const C = results.concurrent_streams;
if (C) {
  for (const n of Object.keys(C)) {
    const c = C[n];
    const rssT = Number(n) <= 1000 ? T.s1k.rss : T.s5k.rss;
    const ok =
      Number(n) <= 1000
        ? c.skybridge.on_time_11s && c.skybridge.peak_rss_mb < rssT
        : c.skybridge.completed === Number(n) && c.skybridge.peak_rss_mb < rssT;
    row([
      `${n} streams: complete / max s`,
      `${c.bare.completed} / ${fmt(c.bare.duration_ms.max / 1000)}`,
      `${c.skybridge.completed} / ${fmt(c.skybridge.duration_ms.max / 1000)}`,
      '',
      Number(n) <= 1000 ? 'all within 11 s' : 'all complete',
      '',
    ]);
    row([
      `${n} streams: peak RSS (MB)`,
      c.bare.peak_rss_mb,
      c.skybridge.peak_rss_mb,
      r2(c.skybridge.peak_rss_mb / c.bare.peak_rss_mb),
      `< ${rssT} MB`,
      ok ? 'yes' : 'NO',
    ]);
    checks.push({
      target: `${n} streams ${Number(n) <= 1000 ? 'within 11 s' : 'complete'}, RSS < ${rssT} MB`,
      value: `${c.skybridge.completed}/${n}, max ${fmt(c.skybridge.duration_ms.max / 1000)} s, ${c.skybridge.peak_rss_mb} MB`,
      met: ok,
    });
  }
}
const B = results.big_bodies;
if (B) {
  for (const dir of ['upload', 'download'] as const) {
    const s = B.skybridge[dir];
    const ok = s.intact && s.rss_growth_mb < T.growth;
    row([
      `100 MB ${dir}: RSS growth (MB), intact`,
      `${fmt(B.bare[dir].rss_growth_mb)}, ${B.bare[dir].intact}`,
      `${fmt(s.rss_growth_mb)}, ${s.intact}`,
      '',
      `< ${T.growth} MB, intact`,
      ok ? 'yes' : 'NO',
    ]);
    checks.push({
      target: `100 MB ${dir}: RSS growth < 16 MB, intact`,
      value: `${s.rss_growth_mb} MB, intact ${s.intact}`,
      met: ok,
    });
  }
}
const O = results.observability_c64;
if (O) {
  const ok = O.throughput_cost_pct.metrics_tracing < 5;
  const costCell = (key: string, name: string) =>
    `${fmt(O.throughput_cost_pct[key])}% (${O.throughput_cost_iqr_pct[name].map(fmt).join(' to ')})`;
  lines.push('');
  lines.push(
    'Observability cost at c=64 (Skybridge variants loaded at once on the proxy core; cost = throughput per core lost vs logging only, from CPU per request, median of per-round ratios and interquartile range)',
  );
  row(['plugins', 'CPU us/req', 'throughput cost', 'target', 'met']);
  lines.push('|---|---|---|---|---|');
  row(['logging', O.cpu_us_per_req.logging, '', '', '']);
  row(['logging + metrics', O.cpu_us_per_req.logging_metrics, costCell('metrics', 'logging_metrics'), '', '']);
  row([
    'logging + metrics + tracing (every request exported, http/json)',
    O.cpu_us_per_req.logging_metrics_tracing,
    costCell('metrics_tracing', 'logging_metrics_tracing'),
    '< 5%',
    ok ? 'yes' : 'NO',
  ]);
  row([
    'logging + metrics + tracing (every request exported, http/protobuf)',
    O.cpu_us_per_req.logging_metrics_tracing_protobuf,
    costCell('metrics_tracing_protobuf', 'logging_metrics_tracing_protobuf'),
    '< 5%',
    O.throughput_cost_pct.metrics_tracing_protobuf < 5 ? 'yes' : 'NO',
  ]);
  row([
    'logging + metrics + tracing (http/protobuf, sample_ratio 0.1)',
    O.cpu_us_per_req.logging_metrics_tracing_protobuf_sampled_10pct,
    costCell('metrics_tracing_protobuf_sampled_10pct', 'logging_metrics_tracing_protobuf_sampled_10pct'),
    '',
    '',
  ]);
  checks.push({
    target: 'metrics + tracing cost < 5% of throughput',
    value: `${O.throughput_cost_pct.metrics_tracing}%`,
    met: ok,
  });
}
const A = results.aborts;
if (A) {
  const ok =
    A.summary.spread.skybridge.p99_median_of_rounds < 10 &&
    A.summary.spread.skybridge.not_aborted === 0 &&
    A.summary.together.skybridge.not_aborted === 0;
  const q = (x: any) => `${fmt(x.p50)} / ${fmt(x.p95)} / ${fmt(x.p99)} / ${fmt(x.max)}`;
  lines.push('');
  lines.push(
    `Client aborts (1,000 clients per run, ${A.rounds} rounds): ms from the client closing its socket to the upstream seeing the request abandoned; direct to the mock is the floor`,
  );
  row(['', 'direct', 'bare Bun proxy', 'Skybridge', 'target', 'met']);
  lines.push('|---|---|---|---|---|---|');
  const AS = A.summary;
  row([
    'closes spread over 1.5 s: p99, median of rounds',
    AS.spread.direct.p99_median_of_rounds,
    AS.spread.bare.p99_median_of_rounds,
    AS.spread.skybridge.p99_median_of_rounds,
    '< 10 ms',
    ok ? 'yes' : 'NO',
  ]);
  row([
    '  all rounds pooled: p50 / p95 / p99 / max',
    q(AS.spread.direct.all),
    q(AS.spread.bare.all),
    q(AS.spread.skybridge.all),
    '',
    '',
  ]);
  row([
    '  while the upstream thinks (before headers)',
    q(AS.spread.direct.before_headers),
    q(AS.spread.bare.before_headers),
    q(AS.spread.skybridge.before_headers),
    '',
    '',
  ]);
  row([
    '  mid-stream',
    q(AS.spread.direct.mid_stream),
    q(AS.spread.bare.mid_stream),
    q(AS.spread.skybridge.mid_stream),
    '',
    '',
  ]);
  row([
    '  before the request reached the upstream (n)',
    `${q(AS.spread.direct.before_upstream)} (${AS.spread.direct.before_upstream.n})`,
    `${q(AS.spread.bare.before_upstream)} (${AS.spread.bare.before_upstream.n})`,
    `${q(AS.spread.skybridge.before_upstream)} (${AS.spread.skybridge.before_upstream.n})`,
    '',
    '',
  ]);
  row([
    '1,000 closes at once: p50 / p95 / p99 / max',
    q(AS.together.direct.all),
    q(AS.together.bare.all),
    q(AS.together.skybridge.all),
    '',
    '',
  ]);
  row([
    'upstream calls never abandoned (spread, at once)',
    `${AS.spread.direct.not_aborted}, ${AS.together.direct.not_aborted}`,
    `${AS.spread.bare.not_aborted}, ${AS.together.bare.not_aborted}`,
    `${AS.spread.skybridge.not_aborted}, ${AS.together.skybridge.not_aborted}`,
    '0',
    '',
  ]);
  row([
    'proxy threads waiting for the CPU per run (ms, median, spread)',
    '',
    AS.spread.bare.runqueue_wait_ms_median,
    AS.spread.skybridge.runqueue_wait_ms_median,
    '',
    '',
  ]);
  if (A.lag.bare)
    row([
      'event-loop lag during a spread run (1 ms timer): p50 / p95 / p99 / max',
      '',
      q(A.lag.bare.lag_ms),
      q(A.lag.skybridge.lag_ms),
      '',
      '',
    ]);
  checks.push({
    target: 'client abort reaches the upstream: p99 < 10 ms',
    value: `${AS.spread.skybridge.p99_median_of_rounds} ms (bare ${AS.spread.bare.p99_median_of_rounds} ms)`,
    met: ok,
  });
}
const W = results.workers;
if (W) {
  const ws = W.summary;
  lines.push('');
  lines.push(`Several workers (server.workers), default plugins, c=64, 1 KB chat, ${W.rounds} rounds (medians)`);
  row(['', 'workers: 1', 'workers: 2', 'ratio', 'target', 'met']);
  lines.push('|---|---|---|---|---|---|');
  const okCost = ws.cpu_ratio <= 1.05;
  row([
    '(a) one core: CPU us per request of the whole group',
    ws.w1_cpu_us_per_req,
    `${ws.w2_cpu_us_per_req} (primary ${ws.primary_cpu_us_per_req})`,
    ws.cpu_ratio,
    '<= 1.05',
    okCost ? 'yes' : 'NO',
  ]);
  row([
    '    control: two unrelated workers: 1 gateways on that core, half the connections each',
    ws.w1_cpu_us_per_req,
    ws.pair_cpu_us_per_req,
    ws.pair_ratio,
    '',
    '',
  ]);
  row([
    '(b) both cores (mock and wrk too): req/s',
    ws.both_cores_rps.w1,
    ws.both_cores_rps.w2,
    ws.both_cores_ratio,
    '',
    '',
  ]);
  const c = (x: any) => `${x.proxy} / ${x.mock} / ${x.wrk}`;
  row(['    cores used: proxy / mock / wrk', c(ws.both_cores_cpu.w1), c(ws.both_cores_cpu.w2), '', '', '']);
  row([
    'governance without Redis, one core: CPU us per request',
    median(W.governed_one_core.map((r: any) => r.w1.cpu_us_per_req)),
    `${median(W.governed_one_core.map((r: any) => r.w2.cpu_us_per_req))} (primary ${ws.governed_primary_cpu_us_per_req})`,
    ws.governed_cpu_ratio,
    '',
    '',
  ]);
  for (const [cores, x] of Object.entries(ws.model as Record<string, any>))
    row([
      `(c) model, ${cores} cores: req/s (pessimistic); the primary indexes / admits at most`,
      '',
      `${x.rps} (${x.rps_pessimistic}); ${x.explorer_index_ceiling_rows} / ${x.governed_admits_ceiling_rps}`,
      '',
      '',
      '',
    ]);
  checks.push({
    target: 'workers: 2 on one core costs <= 5% more CPU per request',
    value: `${ws.cpu_ratio}x`,
    met: okCost,
  });
}
if (results.cost_curve) {
  lines.push('');
  lines.push('Cost curve (one run per cell)');
  row([
    'concurrency',
    'body',
    'bare req/s',
    'Skybridge req/s',
    'ratio',
    'bare CPU us/req',
    'Skybridge CPU us/req',
    'ratio',
  ]);
  lines.push('|---|---|---|---|---|---|---|---|');
  for (const c of results.cost_curve) {
    const body = c.body_bytes >= 1024 * 1024 ? `${c.body_bytes / 1024 / 1024} MB` : `${c.body_bytes / 1024} KB`;
    row([
      c.concurrency,
      body,
      c.bare.rps,
      c.skybridge.rps,
      c.rps_ratio,
      c.bare.cpu_us_per_req,
      c.skybridge.cpu_us_per_req,
      c.cpu_ratio,
    ]);
  }
}
results.checks = checks;
const report = lines.join('\n');
process.stdout.write(`\n${report}\n`);

mkdirSync(join(ROOT, '.bench'), { recursive: true });
const outFile = join(ROOT, '.bench', `results-${results.started_at.replace(/[:.]/g, '-')}.json`);
writeFileSync(outFile, JSON.stringify({ ...results, report }, null, 2));
process.stdout.write(`\nresults: ${outFile}\n`);
rmSync(work, { recursive: true, force: true });
process.exit(0);
