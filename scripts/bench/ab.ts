/**
 * A/B throughput of Skybridge variants (other source trees, other plugin lists) beside
 * the bare proxy, interleaved round by round so machine noise hits all of them alike.
 * For trying an optimisation: copy the tree, change it, compare.
 *
 *   bun scripts/bench/ab.ts --variant=NAME:ROOT:PLUGINS[:ENV=V+ENV2=V] [--variant=...] [--rounds=5]
 *                           [--seconds=6] [--conns=64] [--body=1024] [--stream]
 *
 *   --proxy=NAME:FILE.ts[:ARG]   also run another standalone proxy (like bare-proxy.ts:
 *                                bun FILE.ts PORT [ARG] with UPSTREAM set)
 *   --gc                         run every target with BUN_JSC_logGC=1 and report what its
 *                                garbage collector saw per request: bytes allocated on the JS
 *                                heap and collection time (young and full collections)
 *   --together                   load every target at once, each under its own wrk, instead
 *                                of one after the other: they share core 0, so whatever slows
 *                                the machine in a round slows all of them alike, and each
 *                                one's CPU time per request is its cost. For differences
 *                                smaller than the round-to-round noise (metrics, tracing).
 *                                Throughput then is each one's share of the core.
 *
 * ROOT is a Skybridge source tree (its src/main.ts is run with bun); PLUGINS a comma list
 * (empty: no plugins; `tracing` exports every request's spans to the mock's OTLP sink as
 * JSON, `tracing/protobuf` as protobuf).
 * Proxies on core 0, mock and wrk on core 1.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CLIENT_HEADERS, chatRequestBody, skybridgeConfig } from './common.ts';

const ROOT = resolve(import.meta.dir, '../..');
const opt = (name: string, def: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? def;
const rounds = Number(opt('rounds', '5'));
const seconds = Number(opt('seconds', '6'));
const conns = Number(opt('conns', '64'));
const bodyBytes = Number(opt('body', '1024'));
const query = process.argv.includes('--stream') ? '?stream=1&chunks=20&gap=0' : '';
const together = process.argv.includes('--together');
const gcLog = process.argv.includes('--gc');
const variants = process.argv
  .filter((a) => a.startsWith('--variant='))
  .map((a) => {
    const [name, root, plugins, env] = a.slice(10).split(':');
    const vars = Object.fromEntries(
      (env ?? '')
        .split('+')
        .filter(Boolean)
        .map((kv) => kv.split('=') as [string, string]),
    );
    return { name: name!, root: resolve(root!), plugins: plugins ?? 'logging,metrics', env: vars };
  });
const work = mkdtempSync(join(tmpdir(), 'skybridge-ab-'));
const CLK_TCK = 100;
const procs: Array<ReturnType<typeof Bun.spawn>> = [];
process.on('SIGINT', () => process.exit(130));
// Whatever way this script ends, nothing it started stays behind.
process.on('exit', () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
});

const freePort = () => {
  const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
  const p = s.port;
  s.stop(true);
  return p;
};
const cpu = (pid: number) => {
  const st = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8') as string;
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
};
async function ready(url: string) {
  await Bun.sleep(0);
  for (let i = 0; i < 400; i++) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    await Bun.sleep(50);
  }
  throw new Error(`not ready: ${url}`);
}
/** Per process: bytes the collector saw allocated and ms it spent collecting, so far. */
const gcSeen = new Map<number, { bytes: number; ms: number }>();
function spawn(core: string, cmd: string[], cwd: string, env: Record<string, string> = {}, gc = false) {
  const p = Bun.spawn(['taskset', '-c', core, ...cmd], {
    cwd,
    env: {
      ...process.env,
      BUN_CONFIG_MAX_HTTP_REQUESTS: '65535',
      SKYBRIDGE_LOG_LEVEL: 'warn',
      ...(gc ? { BUN_JSC_logGC: '1' } : {}),
      ...env,
    },
    stdout: 'ignore',
    stderr: gc ? 'pipe' : 'inherit',
  });
  procs.push(p);
  if (gc) void readGcLog(p.pid, p.stderr as ReadableStream<Uint8Array>);
  return p;
}
/** `Requesting GC because bytes allocated this cycle: N` and `..., cycle X ms END]` lines of JSC's GC log. */
async function readGcLog(pid: number, stderr: ReadableStream<Uint8Array>) {
  const seen = { bytes: 0, ms: 0 };
  gcSeen.set(pid, seen);
  const decoder = new TextDecoder();
  let carry = '';
  for await (const chunk of stderr) {
    const lines = (carry + decoder.decode(chunk, { stream: true })).split('\n');
    carry = lines.pop()!;
    for (const line of lines) {
      const allocated = /bytes allocated this cycle: (\d+)/.exec(line);
      if (allocated) seen.bytes += Number(allocated[1]);
      const cycle = /cycle ([\d.]+)ms END\]/.exec(line);
      if (cycle) seen.ms += Number(cycle[1]);
      else if (!allocated && !line.startsWith('[GC') && !line.startsWith('GC END') && line.trim())
        process.stderr.write(`${line}\n`);
    }
  }
}

const mockPort = freePort();
spawn('1', ['bun', 'scripts/bench/mock.ts', String(mockPort)], ROOT);
await ready(`http://127.0.0.1:${mockPort}/health`);
const targets: Array<{ name: string; url: string; pid: number }> = [];
const barePort = freePort();
targets.push({
  name: 'bare',
  url: `http://127.0.0.1:${barePort}`,
  pid: spawn(
    '0',
    ['bun', join(ROOT, 'scripts/bench/bare-proxy.ts'), String(barePort)],
    ROOT,
    { UPSTREAM: `http://127.0.0.1:${mockPort}` },
    gcLog,
  ).pid,
});
for (const a of process.argv.filter((x) => x.startsWith('--proxy='))) {
  const [name, file, arg] = a.slice(8).split(':');
  const port = freePort();
  targets.push({
    name: name!,
    url: `http://127.0.0.1:${port}`,
    pid: spawn(
      '0',
      ['bun', resolve(file!), String(port), ...(arg ? [arg] : [])],
      ROOT,
      { UPSTREAM: `http://127.0.0.1:${mockPort}` },
      gcLog,
    ).pid,
  });
}
for (const v of variants) {
  const port = freePort();
  const cfg = join(work, `${v.name}.yaml`);
  writeFileSync(
    cfg,
    skybridgeConfig(
      port,
      `http://127.0.0.1:${mockPort}`,
      join(work, v.name, 'requests.ndjson'),
      v.plugins ? v.plugins.split(',') : [],
    ),
  );
  targets.push({
    name: v.name,
    url: `http://127.0.0.1:${port}`,
    pid: spawn('0', ['bun', 'src/main.ts', 'serve', '--config', cfg, '--port', String(port)], v.root, v.env, gcLog).pid,
  });
}
for (const t of targets) await ready(`${t.url}/health`);

const bodyFile = join(work, 'body.json');
writeFileSync(bodyFile, chatRequestBody(bodyBytes, query !== ''));
const lua = join(work, 'post.lua');
writeFileSync(
  lua,
  `wrk.method = "POST"\n${Object.entries(CLIENT_HEADERS)
    .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
    .join(
      '\n',
    )}\nlocal f = io.open(${JSON.stringify(bodyFile)}, "rb")\nwrk.body = f:read("*a")\nf:close()\ndone = function(s, l, r) io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50":%d}\\n', s.requests, s.duration, s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status, l:percentile(50))) end\n`,
);
async function wrk(t: (typeof targets)[number], secs: number) {
  const c0 = cpu(t.pid);
  const g0 = { ...(gcSeen.get(t.pid) ?? { bytes: 0, ms: 0 }) };
  const p = Bun.spawn(
    [
      'taskset',
      '-c',
      '1',
      'wrk',
      '-t1',
      `-c${conns}`,
      `-d${secs}s`,
      '-s',
      lua,
      `${t.url}/openai_passthrough/v1/chat/completions${query}`,
    ],
    { stdout: 'pipe' },
  );
  const text = await new Response(p.stdout).text();
  await p.exited;
  const r = JSON.parse(
    text
      .split('\n')
      .find((l) => l.startsWith('BENCHJSON '))!
      .slice(10),
  );
  const g1 = gcSeen.get(t.pid) ?? { bytes: 0, ms: 0 };
  return {
    rps: Math.round(r.requests / (r.duration_us / 1e6)),
    cpu: Math.round(((cpu(t.pid) - c0) * 1e6) / r.requests),
    errors: r.errors,
    p50: r.p50,
    gcBytes: (g1.bytes - g0.bytes) / r.requests,
    gcUs: ((g1.ms - g0.ms) * 1000) / r.requests,
  };
}

for (const t of targets) await wrk(t, 2);
const res = new Map<string, Array<Awaited<ReturnType<typeof wrk>>>>();
for (let i = 0; i < rounds; i++) {
  const order = i % 2 ? [...targets].reverse() : targets;
  const line: string[] = [];
  const results = together ? await Promise.all(order.map((t) => wrk(t, seconds))) : [];
  for (const [j, t] of order.entries()) {
    const r = together ? results[j]! : await wrk(t, seconds);
    res.set(t.name, [...(res.get(t.name) ?? []), r]);
    line.push(`${t.name} ${r.rps}/s ${r.cpu}us${r.errors ? ` ERR${r.errors}` : ''}`);
  }
  process.stderr.write(`round ${i + 1}: ${line.join(', ')}\n`);
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const bareRps = med(res.get('bare')!.map((r) => r.rps));
process.stdout.write(
  `\nconns ${conns}, body ${bodyBytes} B${query ? ', SSE' : ''}, ${rounds} rounds of ${seconds} s${together ? ', all targets at once' : ''} (medians)\n`,
);
for (const t of targets) {
  const rs = res.get(t.name)!;
  const rps = med(rs.map((r) => r.rps));
  const gc = gcLog
    ? `  GC ${(med(rs.map((r) => r.gcBytes)) / 1024).toFixed(1)} KB/req ${med(rs.map((r) => r.gcUs)).toFixed(1)} us/req`
    : '';
  process.stdout.write(
    `${t.name.padEnd(16)} ${String(rps).padStart(7)} req/s  ${String(med(rs.map((r) => r.cpu))).padStart(4)} us/req  p50 ${med(rs.map((r) => r.p50))} us  ${(rps / bareRps).toFixed(2)}x bare${gc}\n`,
  );
}
// Paired per round against the first variant: machine drift between rounds cancels out,
// and the spread says whether a difference is more than noise.
const first = variants[0]?.name;
if (first && variants.length > 1) {
  const quartile = (xs: number[], q: number) =>
    [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;
  process.stdout.write(`\nCPU us/request per round, relative to ${first} (median, interquartile range):\n`);
  for (const v of variants.slice(1)) {
    const ratios = res.get(v.name)!.map((r, i) => r.cpu / res.get(first)![i]!.cpu);
    process.stdout.write(
      `${v.name.padEnd(16)} ${quartile(ratios, 0.5).toFixed(3)}x  (${quartile(ratios, 0.25).toFixed(3)}-${quartile(ratios, 0.75).toFixed(3)})\n`,
    );
  }
}
// The proxies first (a gateway flushes its last spans on SIGTERM), then the mock they send to.
const [mockProc, ...proxies] = procs;
for (const p of proxies) p.kill('SIGTERM');
await Promise.all(proxies.map((p) => p.exited));
mockProc!.kill('SIGTERM');
await mockProc!.exited;
