/**
 * Client abort latency: how long after a client closes its connection the upstream
 * sees its request abandoned. Used by the `aborts` workload of scripts/bench/main.ts
 * (`bash scripts/bench/run --only=aborts`); prints one JSON line.
 *
 *   bun abort-latency.ts <target base URL> <mock URL> [--path=/openai_passthrough/v1/chat/completions]
 *       [--count=1000] [--ramp=1000] [--window=1500 | --together=MS] [--delay=3000] [--chunks=60] [--gap=50] [--seed=1] [--dump=FILE]
 *
 * `count` raw sockets (Bun.connect) are opened evenly over `ramp` ms (0: all at once),
 * each sends a chat request and closes its socket (the abort) at a random time within
 * `window` ms of sending it, or, with `--together=MS`, all close in one go MS ms after
 * the first was opened (a thousand clients leaving at the same moment). Half the requests are non-streaming, answered by the mock only after `delay` ms (an
 * upstream still thinking: every close comes before the answer); the other half are SSE
 * streams of `chunks` frames `gap` ms apart (closes mostly mid-stream). The mock
 * (scripts/bench/abort-mock.ts, `probe=ID`) records when each request arrived, when its
 * headers went out and when its connection closed; both processes read the clock
 * `performance.timeOrigin + performance.now()`, checked against the mock's with a few
 * round trips (the offset is reported and subtracted).
 *
 * Phases, from the mock's record: `before_upstream` (the client left before its request
 * reached the mock), `before_headers` (the mock had it and was thinking), `mid_stream`
 * (the mock had sent headers and some frames). Latency = the mock saw the abort - the
 * client closed, per request; `not_aborted` counts requests the mock saw through to the
 * end, or not abandoned within 10 s of the last close (a leak), `never_sent` the ones that
 * never reached it.
 * `samples` has every latency, per phase, for the caller to pool rounds.
 * `span` in the output is when the first request went out and the last socket closed
 * (the same clock), to line this run up with the proxy's event-loop lag (loop-lag.ts).
 */
import { writeFileSync } from 'node:fs';
import { CLIENT_HEADERS, chatRequestBody } from './common.ts';

const [target, mockUrl] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const opt = (name: string, dflt: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const path = opt('path', '/openai_passthrough/v1/chat/completions');
const COUNT = Number(opt('count', '1000'));
const WINDOW = Number(opt('window', '1500'));
const RAMP = Number(opt('ramp', '1000'));
const TOGETHER = Number(opt('together', '0'));
const DELAY = Number(opt('delay', '3000'));
const CHUNKS = Number(opt('chunks', '60'));
const GAP = Number(opt('gap', '50'));
const SEED = Number(opt('seed', '1'));
const DUMP = opt('dump', '');
if (!target || !mockUrl) {
  process.stderr.write(
    'usage: bun abort-latency.ts <target base URL> <mock URL> [--path=...] [--count=1000] [--ramp=1000] [--window=1500 | --together=MS] [--delay=3000] [--chunks=60] [--gap=50] [--seed=1] [--dump=FILE]\n',
  );
  process.exit(2);
}

const clock = () => performance.timeOrigin + performance.now();
const out = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);

function quantiles(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) =>
    s.length ? Math.round(s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]! * 100) / 100 : NaN;
  return { n: s.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: q(1) };
}

/** xorshift32: the same close times for every target in a run. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** The mock's clock minus ours, from the round trip with the least delay. */
async function clockOffset(): Promise<{ offset_ms: number; rtt_ms: number }> {
  let best = { offset_ms: 0, rtt_ms: Infinity };
  for (let i = 0; i < 40; i++) {
    const t0 = clock();
    const { now } = (await (await fetch(`${mockUrl}/clock`)).json()) as { now: number };
    const t1 = clock();
    if (t1 - t0 < best.rtt_ms) best = { offset_ms: now - (t0 + t1) / 2, rtt_ms: t1 - t0 };
  }
  return best;
}

interface Client {
  id: string;
  stream: boolean;
  closeAfter: number;
  sentAt?: number;
  closedAt?: number;
  received: number;
  error?: string;
}

const u = new URL(target);
const port = Number(u.port);
const run = `r${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}-`;
const random = rng(SEED);
const headerLines = Object.entries(CLIENT_HEADERS)
  .map(([k, v]) => `${k}: ${v}\r\n`)
  .join('');
const bodies = { whole: chatRequestBody(1024, false), stream: chatRequestBody(1024, true) };

function requestText(c: Client): string {
  const query = c.stream ? `stream=1&chunks=${CHUNKS}&gap=${GAP}&probe=${c.id}` : `delay=${DELAY}&probe=${c.id}`;
  const body = c.stream ? bodies.stream : bodies.whole;
  return `POST ${u.pathname.replace(/\/$/, '')}${path}?${query} HTTP/1.1\r\nhost: ${u.host}\r\n${headerLines}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

const sync = await clockOffset();
const clients: Client[] = Array.from({ length: COUNT }, (_, i) => ({
  id: `${run}${i}`,
  stream: i % 2 === 1,
  closeAfter: random() * WINDOW,
  received: 0,
}));

const startedAt = clock();
let open = 0;
const closers: Array<() => void> = [];
let closingNow = false;
await new Promise<void>((allClosed) => {
  let pending = COUNT;
  const settle = () => {
    if (--pending === 0) allClosed();
  };
  const connect = (c: Client) => {
    const text = requestText(c);
    Bun.connect<Client>({
      hostname: u.hostname,
      port,
      data: c,
      socket: {
        open(s) {
          open++;
          s.write(text);
          c.sentAt = clock();
          const close = () => {
            if (c.closedAt !== undefined) return;
            c.closedAt = clock();
            s.end();
            settle();
          };
          // Opened after the moment all close (a slow accept): it closes at once.
          if (TOGETHER > 0) closingNow ? close() : closers.push(close);
          else setTimeout(close, c.closeAfter);
        },
        data(_s, d) {
          c.received += d.byteLength;
        },
        close() {
          // Closed by the other side first (an error answer): not an abort.
          if (c.closedAt === undefined) {
            c.closedAt = NaN;
            c.error ??= 'closed by the server';
            settle();
          }
        },
        error(_s, e) {
          c.error = String(e);
        },
        connectError(_s, e) {
          c.error = String(e);
          c.closedAt = NaN;
          settle();
        },
      },
    }).catch((e) => {
      c.error = String(e);
      if (c.closedAt === undefined) {
        c.closedAt = NaN;
        settle();
      }
    });
  };
  for (const [i, c] of clients.entries()) {
    if (RAMP > 0) setTimeout(connect, (i * RAMP) / COUNT, c);
    else connect(c);
  }
  if (TOGETHER > 0) {
    setTimeout(() => {
      closingNow = true;
      for (const close of closers) close();
    }, TOGETHER);
  }
  // A client still waiting to connect long after its close time is given up on.
  setTimeout(
    () => {
      for (const c of clients) {
        if (c.closedAt !== undefined) continue;
        c.error = 'no connection in time';
        c.closedAt = NaN;
        settle();
      }
    },
    RAMP + Math.max(WINDOW, TOGETHER) + 15_000,
  );
});
const lastClose = clock();

// Wait until the mock saw every request it received abandoned or finished (at most 10 s:
// a proxy stalled for seconds on a loaded machine still counts as abandoning late).
type ProbeRecord = {
  id: string;
  stream: boolean;
  arrived: number;
  headers?: number;
  abortedAt?: number;
  abortedBy?: string;
  completed?: number;
};
const records = new Map<string, ProbeRecord>();
for (let waited = 0; ; waited += 100) {
  await Bun.sleep(100);
  const last = waited >= 10_000;
  const batch = (await (
    await fetch(`${mockUrl}/probe-log?run=${run}${last ? '&forget=1' : ''}`)
  ).json()) as ProbeRecord[];
  for (const r of batch) records.set(r.id, r);
  if (last || [...records.values()].every((r) => r.abortedAt !== undefined || r.completed !== undefined)) break;
}

const phases: Record<string, number[]> = { before_upstream: [], before_headers: [], mid_stream: [] };
const by: Record<string, number> = {};
let notAborted = 0;
let neverSent = 0;
let errors = 0;
const slowest: Array<{
  id: string;
  phase: string;
  ms: number;
  closed_after_ms: number;
  received: number;
  by?: string;
}> = [];
for (const c of clients) {
  if (c.error || !Number.isFinite(c.closedAt)) {
    errors++;
    continue;
  }
  const r = records.get(c.id);
  if (!r) {
    neverSent++;
    continue;
  }
  if (r.abortedAt === undefined) {
    notAborted++;
    continue;
  }
  const closed = c.closedAt! + sync.offset_ms;
  const phase =
    closed < r.arrived
      ? 'before_upstream'
      : r.headers === undefined || closed < r.headers
        ? 'before_headers'
        : 'mid_stream';
  const ms = r.abortedAt - closed;
  phases[phase]!.push(ms);
  by[r.abortedBy!] = (by[r.abortedBy!] ?? 0) + 1;
  slowest.push({
    id: c.id.slice(run.length),
    phase,
    ms: Math.round(ms * 100) / 100,
    closed_after_ms: Math.round(c.closeAfter),
    received: c.received,
    by: r.abortedBy,
  });
}
slowest.sort((a, b) => b.ms - a.ms);
if (DUMP) {
  const rows = clients.map((c) => ({
    ...c,
    closedAt: c.closedAt! + sync.offset_ms,
    sentAt: c.sentAt! + sync.offset_ms,
    mock: records.get(c.id),
  }));
  writeFileSync(DUMP, JSON.stringify({ startedAt: startedAt + sync.offset_ms, rows }));
}

out({
  target,
  count: COUNT,
  opened: open,
  ramp_ms: RAMP,
  together_ms: TOGETHER || undefined,
  window_ms: WINDOW,
  delay_ms: DELAY,
  stream: { chunks: CHUNKS, gap_ms: GAP },
  clock: { offset_ms: Math.round(sync.offset_ms * 1000) / 1000, rtt_ms: Math.round(sync.rtt_ms * 1000) / 1000 },
  latency_ms: {
    all: quantiles(Object.values(phases).flat()),
    before_upstream: quantiles(phases.before_upstream!),
    before_headers: quantiles(phases.before_headers!),
    mid_stream: quantiles(phases.mid_stream!),
  },
  aborted_by: by,
  not_aborted: notAborted,
  never_sent: neverSent,
  errors,
  slowest: slowest.slice(0, 10),
  samples: Object.fromEntries(Object.entries(phases).map(([k, xs]) => [k, xs.map((x) => Math.round(x * 100) / 100)])),
  span: { start: startedAt, end: lastClose },
  wall_ms: Math.round(lastClose - startedAt),
});
process.exit(0);
