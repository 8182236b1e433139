/**
 * The IPC round trip between a primary and a worker, with the gateway's own classes
 * (app/group.ts over Bun's IPC channel, JSON): a governance admit's message (the checks of
 * a key with a rate limit) asked of the primary's MemoryStore, as the governance plugin
 * does.
 *
 *   bun scripts/bench/ipc-rtt.ts            one at a time (latency), then 64 in flight
 *                                           (what a loaded worker sends: batched per turn)
 *
 * Prints microseconds per round trip (wall) and CPU microseconds per round trip of each
 * side. The figures move with the machine's load: run it twice.
 */
import { PrimaryGroup, WorkerGroup } from '../../src/app/group.ts';
import { topic } from '../../src/core/group.ts';
import { type AdmitResult, type Check, MemoryStore } from '../../src/plugins/governance/store.ts';

const ADMIT = topic<readonly Check[], AdmitResult>('bench.admit');
const ROUNDS = { sequential: 5000, concurrent: 50_000, inFlight: 64 };

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

if (process.argv[2] === 'worker') {
  const group = new WorkerGroup();
  const checks: Check[] = [{ key: 'skybridge:gov:{team}:rpm:1764860400', limit: 1e12, inc: 1, ttlSec: 120 }];
  const CPU = topic<undefined, number>('bench.cpu');
  group.on(CPU, () => cpuUs());
  const run = async (n: number, inFlight: number) => {
    const cpu0 = cpuUs();
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next++ < n) await group.request(ADMIT, checks);
      }),
    );
    return { wallUs: ((performance.now() - t0) * 1000) / n, cpuUs: (cpuUs() - cpu0) / n };
  };
  await run(2000, 1); // warm-up
  await run(20_000, ROUNDS.inFlight);
  const DONE = topic<unknown>('bench.done');
  const seq = await run(ROUNDS.sequential, 1);
  const conc = await run(ROUNDS.concurrent, ROUNDS.inFlight);
  await group.request(DONE, { seq, conc });
  process.exit(0);
} else {
  const group = new PrimaryGroup();
  const memory = new MemoryStore();
  let served = 0;
  group.on(ADMIT, (checks) => {
    served++;
    return memory.admitSync(checks);
  });
  const marks: Array<{ served: number; cpu: number }> = [];
  const DONE = topic<{ seq: { wallUs: number; cpuUs: number }; conc: { wallUs: number; cpuUs: number } }>('bench.done');
  const finished = Promise.withResolvers<{
    seq: { wallUs: number; cpuUs: number };
    conc: { wallUs: number; cpuUs: number };
  }>();
  group.on(DONE, (r) => finished.resolve(r));
  const proc = Bun.spawn([process.execPath, import.meta.path, 'worker'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    serialization: 'json',
    ipc: (message, subprocess) => group.receive(subprocess.pid, message),
  });
  group.attach(proc.pid, (m) => proc.send(m));
  group.ready(proc.pid);
  // The primary's CPU over the measured part: sampled when the counts pass the warm-up.
  const sampler = setInterval(() => marks.push({ served, cpu: cpuUs() }), 5);
  const r = await finished.promise;
  clearInterval(sampler);
  const warm = 2000 + 20_000;
  const at = (n: number) => marks.find((m) => m.served >= n) ?? marks.at(-1)!;
  const seqStart = at(warm);
  const seqEnd = at(warm + ROUNDS.sequential);
  const concEnd = marks.at(-1)!;
  const primarySeq = (seqEnd.cpu - seqStart.cpu) / Math.max(1, seqEnd.served - seqStart.served);
  const primaryConc = (concEnd.cpu - seqEnd.cpu) / Math.max(1, concEnd.served - seqEnd.served);
  const f = (x: number) => x.toFixed(1);
  console.log(
    `one at a time: ${f(r.seq.wallUs)} us per round trip; CPU per round trip: worker ${f(r.seq.cpuUs)} us, primary ${f(primarySeq)} us`,
  );
  console.log(
    `${ROUNDS.inFlight} in flight: ${f(r.conc.wallUs)} us per admit (${Math.round(1e6 / r.conc.wallUs)} admits/s); CPU per admit: worker ${f(r.conc.cpuUs)} us, primary ${f(primaryConc)} us`,
  );
  await proc.exited;
}
