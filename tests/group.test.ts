/**
 * The pieces of a process group, without processes: the IPC channel (request/reply by
 * id, errors, timeouts, a closed channel), the primary's relay and gather, the local
 * group of a single process, the CPU count behind `workers: auto`, and the merge of
 * metrics registries (the sum of two workers' registries is what one process that served
 * both workers' requests would show).
 */
import { describe, expect, test } from 'bun:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AggregatorRegistry } from 'prom-client';
import { cgroupQuota, resolveWorkers } from '../src/app/cpus.ts';
import { PrimaryGroup } from '../src/app/group.ts';
import { Channel, type Wire } from '../src/app/ipc.ts';
import { Handlers, LocalGroup, topic, WORKER_GONE } from '../src/core/group.ts';
import type { RequestRecord } from '../src/core/request.ts';
import { MetricsPlugin } from '../src/plugins/metrics/index.ts';
import { tempDir } from './support/process.ts';

const ECHO = topic<{ n: number }, { twice: number }>('test.echo');
const FAIL = topic<undefined, undefined>('test.fail');
const SLOW = topic<undefined, string>('test.slow');
const NEWS = topic<string>('test.news');

const turn = () => new Promise((r) => setImmediate(r));

/** Two channel ends joined as two processes would be: JSON on the way, delivered a turn later. */
function pair(): {
  a: Channel;
  b: Channel;
  aHandlers: Handlers;
  bHandlers: Handlers;
  casts: string[];
  wires: Wire[];
} {
  const aHandlers = new Handlers();
  const bHandlers = new Handlers();
  const casts: string[] = [];
  const wires: Wire[] = [];
  const wire = (to: () => Channel) => (m: Wire) => {
    wires.push(m);
    const copy = JSON.parse(JSON.stringify(m)) as Wire;
    setTimeout(() => to().receive(copy), 0);
  };
  const a: Channel = new Channel(
    wire(() => b),
    aHandlers,
    (t, p) => casts.push(`a:${t}:${p}`),
  );
  const b: Channel = new Channel(
    wire(() => a),
    bHandlers,
    (t, p) => casts.push(`b:${t}:${p}`),
  );
  return { a, b, aHandlers, bHandlers, casts, wires };
}

describe('IPC channel', () => {
  test('a request is answered by the other end’s handler, by id, several at once', async () => {
    const { a, bHandlers } = pair();
    bHandlers.set(ECHO, async ({ n }) => {
      await Bun.sleep(10 - n);
      return { twice: 2 * n };
    });
    const answers = await Promise.all([1, 2, 3].map((n) => a.request(ECHO.name, { n })));
    expect(answers).toEqual([{ twice: 2 }, { twice: 4 }, { twice: 6 }]);
  });

  test('what one turn of the event loop sends goes as one message', async () => {
    const { a, bHandlers, wires } = pair();
    bHandlers.set(ECHO, ({ n }) => ({ twice: 2 * n }));
    const answers = await Promise.all(Array.from({ length: 50 }, (_, n) => a.request(ECHO.name, { n })));
    expect(answers.map((x) => (x as { twice: number }).twice)).toEqual(Array.from({ length: 50 }, (_, n) => 2 * n));
    // 50 requests in one message, their 50 answers in another.
    expect(wires.map((w) => (w.k === 'batch' ? w.items.length : 1))).toEqual([50, 50]);
  });

  test('a handler that throws, an unknown topic, no answer in time, a closed channel: the request fails, nothing hangs', async () => {
    const { a, b, bHandlers } = pair();
    bHandlers.set(FAIL, () => {
      throw new Error('refused here');
    });
    bHandlers.set(SLOW, () => Bun.sleep(200).then(() => 'late'));
    await expect(a.request(FAIL.name, undefined)).rejects.toThrow('refused here');
    await expect(a.request('test.nobody', undefined)).rejects.toThrow('no handler for test.nobody');
    await expect(a.request(SLOW.name, undefined, 30)).rejects.toThrow('no answer within 30 ms');
    const pending = a.request(SLOW.name, undefined);
    a.close();
    await expect(pending).rejects.toThrow('the other process is gone');
    await expect(a.request(ECHO.name, { n: 1 })).rejects.toThrow('gone');
    b.close();
  });

  test('a cast gets no answer', async () => {
    const { a, casts } = pair();
    a.cast(NEWS.name, 'hello');
    await Bun.sleep(5);
    expect(casts).toEqual([`b:${NEWS.name}:hello`]);
  });
});

describe('groups', () => {
  test('a single process: requests and gathers are answered here, broadcasts go nowhere', async () => {
    const group = new LocalGroup();
    group.on(ECHO, ({ n }) => ({ twice: 2 * n }));
    expect(await group.request(ECHO, { n: 4 })).toEqual({ twice: 8 });
    expect(await group.gather(ECHO, { n: 1 })).toEqual([{ pid: process.pid, value: { twice: 2 } }]);
    group.broadcast(NEWS, 'nobody hears');
    expect(group.role).toBe('single');
    expect(group.isPrimary).toBe(true);
  });

  test('the primary relays a worker’s broadcast to its own handler and the other workers; gathers from ready workers; a gone worker is said', async () => {
    const primary = new PrimaryGroup();
    const sent = new Map<number, Wire[]>([
      [101, []],
      [102, []],
      [103, []],
    ]);
    for (const pid of sent.keys()) primary.attach(pid, (m) => sent.get(pid)!.push(m));
    primary.ready(101);
    primary.ready(102); // 103 is still starting
    const heard: string[] = [];
    primary.on(NEWS, (p) => {
      heard.push(p);
    });
    const gone: number[] = [];
    primary.on(WORKER_GONE, ({ pid }) => {
      gone.push(pid);
    });

    primary.receive(101, { k: 'cast', topic: NEWS.name, payload: 'rest key a' });
    await turn();
    expect(heard).toEqual(['rest key a']);
    expect(sent.get(101)).toEqual([]);
    expect(sent.get(102)).toEqual([{ k: 'cast', topic: NEWS.name, payload: 'rest key a' }]);
    expect(sent.get(103)).toEqual([]);

    const gathering = primary.gather(ECHO, { n: 5 }, { timeoutMs: 1000 });
    await turn();
    const asks = [...sent.values()].flatMap((s) => s.filter((m) => m.k === 'req'));
    expect(asks).toHaveLength(2);
    const ask101 = sent.get(101)!.find((m) => m.k === 'req') as Extract<Wire, { k: 'req' }>;
    primary.receive(101, { k: 'res', id: ask101.id, value: { twice: 10 } });
    primary.detach(102);
    expect(await gathering).toEqual([
      { pid: 101, value: { twice: 10 } },
      { pid: 102, error: 'the other process is gone' },
    ]);
    await Bun.sleep(0);
    expect(gone).toEqual([102]);
    expect(primary.readyCount).toBe(1);
  });
});

describe('workers: auto', () => {
  const cgroup = (files: Record<string, string>, self: string) => {
    const root = tempDir('cgroup');
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(join(root, path, '..'), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    writeFileSync(join(root, 'self'), self);
    return { root, self: join(root, 'self') };
  };

  test('cgroup v2: the smallest quota from this process’s cgroup up, rounded up; "max" is no quota', () => {
    const { root, self } = cgroup(
      {
        'cpu.max': 'max 100000\n',
        'system.slice/cpu.max': '400000 100000\n',
        'system.slice/skybridge.service/cpu.max': '150000 100000\n',
      },
      '0::/system.slice/skybridge.service\n',
    );
    expect(cgroupQuota(root, self)).toBe(2);
    const none = cgroup({ 'cpu.max': 'max 100000\n', 'a/cpu.max': 'max 100000\n' }, '0::/a\n');
    expect(cgroupQuota(none.root, none.self)).toBeUndefined();
  });

  test('cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us; -1 is no quota', () => {
    const { root, self } = cgroup(
      {
        'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '300000\n',
        'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
        'cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
        'cpu,cpuacct/cpu.cfs_period_us': '100000\n',
      },
      '4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n',
    );
    expect(cgroupQuota(root, self)).toBe(3);
  });

  test('no cgroup file: no quota; a number stays as it is; auto is 1 where SO_REUSEPORT does not balance', () => {
    expect(cgroupQuota('/nonexistent', '/nonexistent/cgroup')).toBeUndefined();
    expect(resolveWorkers(3)).toBe(3);
    expect(resolveWorkers('auto', 'darwin')).toBe(1);
    expect(resolveWorkers('auto', 'linux')).toBeGreaterThanOrEqual(1);
  });
});

describe('metrics of several workers', () => {
  const record = (i: number): RequestRecord => ({
    time: new Date().toISOString(),
    request_id: `r${i}`,
    endpoint: i % 3 ? 'openai' : 'anthropic',
    provider: i % 3 ? 'openai' : 'anthropic',
    method: 'POST',
    path: '/v1/x',
    status: i % 7 ? 200 : 429,
    stream: i % 2 === 0,
    model: `m${i % 4}`,
    key: 'main',
    attempts: 1 + (i % 2),
    latency_ms: (i * 37) % 3000,
    ttfb_ms: (i * 13) % 700,
    bytes_in: 10,
    bytes_out: 20,
    usage: { input_tokens: i, output_tokens: 2 * i, total_tokens: 3 * i },
    usage_status: 'complete',
    usage_note: undefined,
    output_tokens_estimated: undefined,
    cost_usd: i % 5 ? i * 1e-6 : undefined,
    price_source: i % 5 ? 'catalog' : undefined,
    end_reason: i % 2 === 0 ? (i % 7 ? 'complete' : 'upstream_error') : undefined,
    gw_us: 100 + i,
    error: i % 7 ? undefined : { type: 'upstream_unreachable', message: 'x' },
    virtual_key: undefined,
    client_ip: undefined,
    outcome: i % 7 ? 'ok' : 'upstream_error',
    upstream_request_id: undefined,
    retries: i % 2 ? [{ attempt: 1, key: 'main', reason: i % 4 === 1 ? '429' : '503', delay_ms: 5 }] : [],
  });
  const skybridgeLines = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('skybridge_') && !l.startsWith('skybridge_build_info'))
      .sort();

  test('two workers’ registries merged are exactly one registry that saw every request', async () => {
    const view = () => ({
      config: { providers: {} } as never,
      inflight: 0,
      openStreams: 0,
      sessions: { size: 0 },
      reloads: { success: 2, failure: 1, lastSuccessful: true },
    });
    const [w1, w2, one] = [new MetricsPlugin(view), new MetricsPlugin(view), new MetricsPlugin(view)];
    for (let i = 0; i < 300; i++) {
      (i % 2 ? w1 : w2).onComplete(record(i));
      one.onComplete(record(i));
    }
    const merged = await AggregatorRegistry.aggregate([
      await w1.registry.getMetricsAsJSON(),
      await w2.registry.getMetricsAsJSON(),
    ]).metrics();
    const expected = skybridgeLines(await one.registry.metrics()).map((l) =>
      // Each worker is one process: the group has two.
      l === 'skybridge_workers 1' ? 'skybridge_workers 2' : l,
    );
    expect(skybridgeLines(merged)).toEqual(expected);
    expect(expected.some((l) => l.startsWith('skybridge_request_duration_seconds_bucket'))).toBe(true);
    expect(merged).toContain('skybridge_config_reloads_total{result="success"} 2');
  });
});
