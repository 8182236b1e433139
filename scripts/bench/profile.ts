/**
 * CPU profile of Skybridge (or the bare proxy) under wrk load: starts the bench mock on
 * core 1 and the proxy on core 0 under `bun --cpu-prof`, runs wrk, stops the proxy, and
 * prints the functions with the most self time and the most inclusive time.
 *
 *   bun scripts/bench/profile.ts [--bare] [--seconds=10] [--conns=64] [--body=1024] [--top=40] [--callers=NAME]
 *                                [--plugins=logging,metrics]   (tracing, tracing/protobuf: spans exported to the mock's OTLP sink)
 *   bun scripts/bench/profile.ts --file=PROFILE [--callers=NAME]   analyse an existing profile
 *
 * The .cpuprofile stays in .bench/profiles/ (open it in Chrome DevTools or speedscope).
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CLIENT_HEADERS, chatRequestBody, skybridgeConfig } from './common.ts';

const ROOT = resolve(import.meta.dir, '../..');
const opt = (name: string, def: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def;
const BARE = process.argv.includes('--bare');
const seconds = Number(opt('seconds', '10'));
const conns = Number(opt('conns', '64'));
const bodyBytes = Number(opt('body', '1024'));
const top = Number(opt('top', '40'));
const plugins = opt('plugins', 'logging,metrics').split(',').filter(Boolean);
const work = mkdtempSync(join(tmpdir(), 'skybridge-prof-'));
const profDir = join(ROOT, '.bench', 'profiles');
mkdirSync(profDir, { recursive: true });

const children: Array<ReturnType<typeof Bun.spawn>> = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});
const existing = opt('file', '');
const file = existing || (await run());

async function run(): Promise<string> {
  const freePort = () => {
    const s = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
    const p = s.port;
    s.stop(true);
    return p;
  };
  const port = freePort();
  const mockPort = freePort();
  const mock = Bun.spawn(['taskset', '-c', '1', 'bun', 'scripts/bench/mock.ts', String(mockPort)], {
    cwd: ROOT,
    stdout: 'ignore',
    stderr: 'inherit',
  });
  children.push(mock);
  const config = join(work, 'config.yaml');
  writeFileSync(config, skybridgeConfig(port, `http://127.0.0.1:${mockPort}`, join(work, 'requests.ndjson'), plugins));
  const name = `${BARE ? 'bare' : 'skybridge'}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`;
  const cmd = BARE
    ? ['scripts/bench/bare-proxy.ts', String(port)]
    : ['src/main.ts', 'serve', '--config', config, '--port', String(port)];
  const proxy = Bun.spawn(
    ['taskset', '-c', '0', 'bun', '--cpu-prof', `--cpu-prof-dir=${profDir}`, `--cpu-prof-name=${name}`, ...cmd],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        UPSTREAM: `http://127.0.0.1:${mockPort}`,
        BUN_CONFIG_MAX_HTTP_REQUESTS: '65535',
        SKYBRIDGE_LOG_LEVEL: 'warn',
      },
      stdout: 'ignore',
      stderr: 'inherit',
    },
  );
  children.push(proxy);
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) break;
    } catch {}
    await Bun.sleep(50);
  }
  const bodyFile = join(work, 'body.json');
  writeFileSync(bodyFile, chatRequestBody(bodyBytes));
  const lua = join(work, 'post.lua');
  writeFileSync(
    lua,
    `wrk.method = "POST"\n${Object.entries(CLIENT_HEADERS)
      .map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
      .join('\n')}\nlocal f = io.open(${JSON.stringify(bodyFile)}, "rb")\nwrk.body = f:read("*a")\nf:close()\n`,
  );
  const w = Bun.spawnSync([
    'taskset',
    '-c',
    '1',
    'wrk',
    '-t1',
    `-c${conns}`,
    `-d${seconds}s`,
    '-s',
    lua,
    `http://127.0.0.1:${port}/openai_passthrough/v1/chat/completions`,
  ]);
  process.stdout.write(w.stdout.toString());
  proxy.kill('SIGTERM');
  await proxy.exited;
  mock.kill('SIGTERM');
  await mock.exited;
  return join(profDir, name);
}

const prof = JSON.parse(readFileSync(file, 'utf8')) as {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }>;
  samples: number[];
  timeDeltas: number[];
};
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (id: number) => {
  const f = byId.get(id)!.callFrame;
  const url = f.url.replace(`file://${ROOT}/`, '').replace(`${ROOT}/`, '');
  return `${f.functionName || '(anonymous)'} ${url ? `${url.split('node_modules/').at(-1)}:${f.lineNumber + 1}` : ''}`.trim();
};
const self = new Map<string, number>();
const incl = new Map<string, number>();
let total = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  total += dt;
  const id = prof.samples[i]!;
  self.set(label(id), (self.get(label(id)) ?? 0) + dt);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const l = label(cur);
    if (seen.has(l)) continue;
    seen.add(l);
    incl.set(l, (incl.get(l) ?? 0) + dt);
  }
}
const show = (m: Map<string, number>, title: string) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top))
    process.stdout.write(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}\n`);
};
show(self, 'self time');
// --callers=name: the call paths (3 frames up) that lead to self time in functions matching `name`.
const callersOf = opt('callers', '');
if (callersOf) {
  const paths = new Map<string, number>();
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]!;
    if (!label(id).includes(callersOf)) continue;
    const chain: string[] = [];
    for (let cur: number | undefined = id, k = 0; cur !== undefined && k < 5; cur = parent.get(cur), k++)
      chain.push(label(cur));
    const key = chain.join(' <- ');
    paths.set(key, (paths.get(key) ?? 0) + (prof.timeDeltas[i] ?? 0));
  }
  show(paths, `call paths into ${callersOf}`);
}
show(incl, 'inclusive time');
process.stdout.write(`\nprofile: ${file}\n`);
