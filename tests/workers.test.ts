/**
 * `server.workers` > 1: one gateway, several processes serving one port. Every test runs
 * the real program (`bun src/main.ts`) as a child process with 2 or 3 workers and talks to
 * it over fresh connections (the kernel balances connections, not requests, across
 * workers: each raw request below opens its own), then checks what the user sees is one:
 * the request log (one whole line per request, whichever worker wrote it), /metrics
 * (the group's counts, whichever worker serves the scrape), governance limits, config
 * reloads, the explorer and its live feed, key rests and minted tokens; and that the group
 * survives a worker's death and drains every worker on SIGTERM.
 */
import { afterAll, describe, expect, test } from 'bun:test';
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fakeKey } from './support/gateway.ts';
import { GoogleFiles } from './support/google-files.ts';
import { MockRealtime, RT_USAGE } from './support/mock-realtime.ts';
import { slowStreamsMock } from './support/mock-upstream.ts';
import { type GatewayProcess, startGatewayProcess, tempDir } from './support/process.ts';
import { type RawResponse, rawRequest } from './support/raw-http.ts';
import { fingerprintOf, makeCert, servedFingerprint } from './support/tls.ts';
import { mustOpen } from './support/ws-client.ts';

// model "slow-N": the 7-frame chat stream with N ms between frames.
const mock = slowStreamsMock();

const procs: GatewayProcess[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL', 2000)));
  await mock.stop();
});

const KEY = fakeKey();
const providers = (key = KEY) => `providers:
  openai:
    keys: [{ name: main, value: "${key}", models: ["*"] }]
    network_config: { base_url: "${mock.url}" }
`;

/** `server` and `logs`: more members of those sections (`, shutdown_grace_seconds: 10`). */
async function start(
  workers: number,
  rest = providers(),
  { server = '', logs = '' } = {},
): Promise<{ gp: GatewayProcess; configPath: string; logFile: string }> {
  const dir = tempDir('workers');
  const configPath = join(dir, 'config.yaml');
  const logFile = join(dir, 'requests.ndjson');
  writeFileSync(
    configPath,
    `server: { host: 127.0.0.1, port: 0${server} }\nlogs: { file: ${JSON.stringify(logFile)}${logs} }\n${rest}`,
  );
  const gp = await startGatewayProcess(['--config', configPath], { workers });
  procs.push(gp);
  return { gp, configPath, logFile };
}

const CHAT = '/openai_passthrough/v1/chat/completions';

/** One chat request on a connection of its own. */
function chat(gp: GatewayProcess, headers: Record<string, string> = {}, body: Record<string, unknown> = {}) {
  return rawRequest(
    gp.port,
    'POST',
    CHAT,
    { 'content-type': 'application/json', authorization: 'Bearer client-key', ...headers },
    JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...body }),
  );
}

/** `n` requests, `concurrency` at a time, each on its own connection. */
async function many(n: number, concurrency: number, one: (i: number) => Promise<RawResponse>): Promise<RawResponse[]> {
  const out: RawResponse[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await one(i);
      }
    }),
  );
  return out;
}

const header = (r: RawResponse, name: string) =>
  new RegExp(`^${name}: (.*)$`, 'im').exec(r.head)?.[1]?.trim() ?? undefined;

/** Whole lines of the request log; throws on a line that is not one JSON object. */
function logLines(file: string): any[] {
  const text = readFileSync(file, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((l) => JSON.parse(l));
}

async function waitForLines(file: string, n: number, timeoutMs = 5000): Promise<any[]> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let lines: any[] = [];
    try {
      lines = logLines(file);
    } catch {}
    if (lines.length >= n || performance.now() > deadline) return lines;
    await Bun.sleep(25);
  }
}

/** The sum of a metric's samples in a Prometheus text scrape. */
function metric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n'))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ')));
  return sum;
}

describe('workers: 3', () => {
  let gp: GatewayProcess;
  let logFile: string;
  const N = 600;
  const responses: RawResponse[] = [];

  test('requests from many connections land on every worker; the log has exactly one whole line per request', async () => {
    ({ gp, logFile } = await start(3, providers(), { logs: ', content: true, content_max_bytes: 16384' }));
    // Bodies of 1-6 KB (logged): lines of several KB, batches up to 64 KiB from three writers at once.
    const padding = (i: number) => 'x'.repeat(1000 + ((i * 977) % 5000));
    responses.push(...(await many(N, 48, (i) => chat(gp, {}, { user: `u${i}`, metadata: { pad: padding(i) } }))));
    expect(responses.every((r) => r.status === 200)).toBe(true);
    const lines = await waitForLines(logFile, N);
    expect(lines).toHaveLength(N);
    // Every line is one whole request: its own id, its own body (no line is torn or mixed).
    expect(new Set(lines.map((l) => l.request_id))).toEqual(new Set(responses.map((r) => header(r, 'x-request-id'))));
    for (const l of lines) {
      const sent = JSON.parse(l.request_body);
      expect(sent.metadata.pad).toBe(padding(Number(sent.user.slice(1))));
    }
    const workers = new Set(lines.map((l) => l.worker));
    expect(workers.size).toBe(3);
    for (const w of workers) expect(typeof w).toBe('number');
    const share = [...workers].map((w) => lines.filter((l) => l.worker === w).length);
    console.log(`requests per worker: ${share.join(' / ')}`);
  }, 60_000);

  test('/metrics counts exactly the requests sent, whichever worker serves the scrape', async () => {
    const tokens = logLines(logFile).reduce(
      (sum, l) =>
        sum +
        ['input_tokens', 'output_tokens', 'cache_read_input_tokens', 'cache_creation_input_tokens', 'reasoning_tokens']
          .map((f) => l.usage?.[f] ?? 0)
          .reduce((a, b) => a + b, 0),
      0,
    );
    expect(tokens).toBeGreaterThan(N);
    const scrapes = await many(12, 4, () => rawRequest(gp.port, 'GET', '/metrics'));
    for (const s of scrapes) {
      expect(s.status).toBe(200);
      expect(metric(s.body, 'skybridge_requests_total')).toBe(N);
      expect(metric(s.body, 'skybridge_request_duration_seconds_count')).toBe(N);
      expect(metric(s.body, 'skybridge_tokens_total')).toBe(tokens);
      expect(metric(s.body, 'skybridge_workers')).toBe(3);
      expect(metric(s.body, 'skybridge_inflight_requests')).toBeLessThanOrEqual(1);
      expect(s.body).toContain('skybridge_build_info{version=');
      expect(s.body).toMatch(/^process_start_time_seconds \d+/m);
    }
    // The histogram's buckets are summed, not merged by worker: one series per label set.
    const buckets = scrapes[0]!.body
      .split('\n')
      .filter((l) => l.startsWith('skybridge_request_duration_seconds_bucket'));
    expect(buckets.filter((l) => l.includes('le="+Inf"'))).toHaveLength(1);
  });

  test('a killed worker is replaced and serving resumes; the counters never go down', async () => {
    const before = metric((await rawRequest(gp.port, 'GET', '/metrics')).body, 'skybridge_requests_total');
    const victim = logLines(logFile)[0].worker as number;
    const from = gp.mark();
    process.kill(victim, 'SIGKILL');
    const exited = await gp.waitForLog((l) => l.msg?.startsWith('worker exited'), 5000, from);
    expect(exited).toMatchObject({ level: 'error', worker: victim, signal: 'SIGKILL' });
    const restarted = await gp.waitForLog((l) => l.msg === 'worker restarted', 10_000, from);
    expect(restarted.worker).not.toBe(victim);
    const after = await many(60, 12, () => chat(gp));
    expect(after.every((r) => r.status === 200)).toBe(true);
    const lines = await waitForLines(logFile, N + 60 + 0);
    const recent = new Set(lines.slice(N).map((l) => l.worker));
    expect(recent.has(restarted.worker)).toBe(true);
    expect(recent.has(victim)).toBe(false);
    const scrape = (await rawRequest(gp.port, 'GET', '/metrics')).body;
    expect(metric(scrape, 'skybridge_requests_total')).toBeGreaterThanOrEqual(before + 60);
    expect(metric(scrape, 'skybridge_workers')).toBe(3);
  }, 30_000);

  test('SIGTERM drains every worker: exit 0, the log has every line', async () => {
    const lines = logLines(logFile).length;
    const from = gp.mark();
    expect(await gp.stop('SIGTERM')).toBe(0);
    expect(gp.logs.slice(from).find((l) => l.msg === 'stopped')).toMatchObject({ exit_code: 0 });
    expect(logLines(logFile)).toHaveLength(lines);
  });
});

describe('workers: 2', () => {
  test('SIGTERM with streams in flight on several workers: every stream completes, every line is written', async () => {
    const { gp, logFile } = await start(2, providers(), { server: ', shutdown_grace_seconds: 10' });
    const STREAMS = 12;
    // ~1.5 s each, on connections of their own.
    const streams = Array.from({ length: STREAMS }, () => chat(gp, {}, { model: 'slow-250', stream: true }));
    await Bun.sleep(400);
    const termAt = performance.now();
    gp.proc.kill('SIGTERM');
    const done = await Promise.all(streams);
    for (const r of done) {
      expect(r.status).toBe(200);
      expect(r.body).toContain('data: [DONE]');
    }
    expect(await gp.exited).toBe(0);
    expect(performance.now() - termAt).toBeLessThan(10_000);
    const lines = logLines(logFile);
    expect(lines).toHaveLength(STREAMS);
    expect(lines.every((l) => l.outcome === 'ok' && l.stream === true && l.usage?.output_tokens === 7)).toBe(true);
    expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
  }, 30_000);

  test('a requests_per_minute limit of N admits exactly N across workers', async () => {
    const vk = fakeKey('vk');
    const { gp, logFile } = await start(
      2,
      `${providers()}governance:
  required: true
  virtual_keys:
    - { name: team, value: "${vk}", providers: [openai], models: ["*"], rate_limit: { requests_per_minute: 25 } }
`,
    );
    const rs = await many(80, 16, () => chat(gp, { authorization: `Bearer ${vk}` }));
    expect(rs.filter((r) => r.status === 200)).toHaveLength(25);
    expect(rs.filter((r) => r.status === 429)).toHaveLength(55);
    const lines = await waitForLines(logFile, 80);
    expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
    // Admitted on both workers: the limit is the group's, not split per worker.
    expect(new Set(lines.filter((l) => l.status === 200).map((l) => l.worker)).size).toBe(2);
  }, 30_000);

  test('an edit to the config reaches every worker; an invalid one is rejected once', async () => {
    const { gp, configPath } = await start(2);
    const newKey = fakeKey('rotated');
    let from = gp.mark();
    writeFileSync(configPath, readFileSync(configPath, 'utf8').replace(KEY, newKey));
    const reloaded = await gp.waitForLog((l) => l.msg === 'config reloaded', 5000, from);
    expect(reloaded).toMatchObject({ reason: 'file changed', workers: 2 });
    const seen = mock.requests.length;
    const rs = await many(40, 8, () => chat(gp));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    const auth = new Set(mock.requests.slice(seen).map((r) => r.headers.authorization));
    expect(auth).toEqual(new Set([`Bearer ${newKey}`]));
    const scrape = (await rawRequest(gp.port, 'GET', '/metrics')).body;
    expect(scrape).toMatch(/^skybridge_config_reloads_total\{result="success"\} 1$/m);

    from = gp.mark();
    writeFileSync(configPath, `${readFileSync(configPath, 'utf8')}\nserver: { nonsense: 1 }\n`);
    await gp.waitForLog((l) => l.msg?.startsWith('config reload rejected'), 5000, from);
    await Bun.sleep(300);
    expect(gp.logs.slice(from).filter((l) => l.level === 'error')).toHaveLength(1);
    const after = (await rawRequest(gp.port, 'GET', '/metrics')).body;
    expect(after).toMatch(/^skybridge_config_reloads_total\{result="failure"\} 1$/m);
    expect(after).toMatch(/^skybridge_config_last_reload_successful 0$/m);
    expect((await chat(gp)).status).toBe(200);
    expect(mock.last.headers.authorization).toBe(`Bearer ${newKey}`);
  }, 30_000);

  test('the workers exit with their primary, even when it is killed with SIGKILL', async () => {
    const { gp, logFile } = await start(2);
    await many(20, 5, () => chat(gp));
    const pids = [...new Set((await waitForLines(logFile, 20)).map((l) => l.worker as number))];
    expect(pids).toHaveLength(2);
    gp.proc.kill('SIGKILL');
    await gp.exited;
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 100 && pids.some(alive); i++) await Bun.sleep(20);
    expect(pids.filter(alive)).toEqual([]);
  }, 30_000);

  test('server.workers changed in the file: a restart is needed, and said once', async () => {
    const dir = tempDir('workers-count');
    const configPath = join(dir, 'config.yaml');
    const config = (n: number) =>
      `server: { host: 127.0.0.1, port: 0, workers: ${n} }\nlogs: { file: ${JSON.stringify(join(dir, 'requests.ndjson'))} }\n${providers()}`;
    writeFileSync(configPath, config(2));
    const gp = await startGatewayProcess(['--config', configPath], { workers: 'config' });
    procs.push(gp);
    expect(gp.logs.find((l) => l.msg === 'skybridge listening')).toMatchObject({ workers: 2 });
    const from = gp.mark();
    writeFileSync(configPath, config(3));
    await gp.waitForLog((l) => l.msg === 'config reloaded', 5000, from);
    const warned = gp.logs.slice(from).filter((l) => l.setting === 'server.workers');
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 'warn', in_force: 2, configured: 3 });
    expect(await gp.stop()).toBe(0);
  }, 30_000);

  test('server.tls: every worker serves HTTPS; a renewed certificate reaches every worker, a restarted one too', async () => {
    const dir = tempDir('workers-tls');
    const [a, b] = [makeCert(dir, 'a'), makeCert(dir, 'b')];
    const certFile = join(dir, 'server.pem');
    const keyFile = join(dir, 'server.key');
    copyFileSync(a.certFile, certFile);
    copyFileSync(a.keyFile, keyFile);
    const tls = `, tls: { cert_file: ${JSON.stringify(certFile)}, key_file: ${JSON.stringify(keyFile)} }`;
    const { gp, logFile } = await start(2, providers(), { server: tls });
    expect(gp.logs.find((l) => l.msg === 'skybridge listening')).toMatchObject({ tls: true, workers: 2 });
    // Each request on a fresh TLS connection (keepalive off): the kernel spreads them over both workers.
    const https = () =>
      fetch(`https://127.0.0.1:${gp.port}${CHAT}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', connection: 'close' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
        keepalive: false,
        tls: { ca: a.cert + b.cert },
      } as RequestInit);
    for (let i = 0; i < 30; i++) expect((await https()).status).toBe(200);
    expect(new Set((await waitForLines(logFile, 30)).map((l) => l.worker)).size).toBe(2);

    const from = gp.mark();
    copyFileSync(b.keyFile, keyFile);
    copyFileSync(b.certFile, certFile);
    await gp.waitForLog((l) => l.msg === 'config reloaded' && l.reason === 'certificate file changed', 5000, from);
    // 40 fresh connections, whichever worker takes each: all get the new certificate.
    const served = new Set<string>();
    for (let i = 0; i < 40; i++) served.add(await servedFingerprint(gp.port));
    expect([...served]).toEqual([fingerprintOf(b.cert)]);
    for (let i = 0; i < 10; i++) expect((await https()).status).toBe(200);

    // A worker started later gets the certificate its primary read, not what is on disk
    // now (here a half-written file: the reload it causes is rejected).
    const broken = gp.mark();
    writeFileSync(certFile, '-----BEGIN CERTIFICATE-----\nhalf');
    await gp.waitForLog((l) => l.msg?.startsWith('config reload rejected'), 5000, broken);
    const victim = (await waitForLines(logFile, 40)).at(-1).worker as number;
    process.kill(victim, 'SIGKILL');
    const restarted = await gp.waitForLog((l) => l.msg === 'worker restarted', 10_000, broken);
    expect(restarted.worker).not.toBe(victim);
    const after = new Set<string>();
    for (let i = 0; i < 40; i++) after.add(await servedFingerprint(gp.port));
    expect([...after]).toEqual([fingerprintOf(b.cert)]);
    expect(await gp.stop()).toBe(0);
  }, 30_000);

  test('WebSocket sessions on every worker: the sessions gauge and the tokens are the group’s', async () => {
    const rt = new MockRealtime();
    try {
      const { gp, logFile } = await start(
        2,
        `providers:\n  openai:\n    keys: [{ name: main, value: "${KEY}" }]\n    network_config: { base_url: "${rt.url}" }\n`,
      );
      const scrape = async () => (await rawRequest(gp.port, 'GET', '/metrics')).body;
      const url = `ws://127.0.0.1:${gp.port}/openai_passthrough/v1/realtime?model=gpt-realtime`;
      const sessions = [];
      for (let i = 0; i < 8; i++) sessions.push(await mustOpen(url));
      expect(metric(await scrape(), 'skybridge_websocket_sessions')).toBe(8);
      for (const s of sessions) s.ws.send(JSON.stringify({ type: 'response.create' }));
      for (const s of sessions) await s.waitFor(4);
      // Tokens counted as reported, summed over the workers, before any session ends.
      const input = 'skybridge_tokens_total{provider="openai",model="gpt-realtime",direction="input"}';
      expect(metric(await scrape(), input)).toBe(8 * RT_USAGE.openai.input_tokens);
      for (const s of sessions) s.ws.close();
      const lines = await waitForLines(logFile, 8);
      expect(lines.every((l) => l.end_reason === 'client_close')).toBe(true);
      expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
      const after = await scrape();
      expect(metric(after, 'skybridge_websocket_sessions')).toBe(0);
      expect(metric(after, input)).toBe(8 * RT_USAGE.openai.input_tokens);
      expect(await gp.stop()).toBe(0);
    } finally {
      await rt.stop();
    }
  }, 30_000);

  test('a token budget spent by WebSocket sessions is the group’s: every worker refuses after it', async () => {
    const rt = new MockRealtime();
    const vk = fakeKey('vk-rt');
    try {
      const { gp, logFile } = await start(
        2,
        `governance:\n  virtual_keys: [{ name: rt, value: "${vk}", budget: { max_tokens: 300, period: day } }]\n` +
          `providers:\n  openai:\n    keys: [{ name: main, value: "${KEY}" }]\n    network_config: { base_url: "${rt.url}" }\n`,
      );
      const url = `ws://127.0.0.1:${gp.port}/openai_passthrough/v1/realtime?model=gpt-realtime`;
      // Two sessions, one response each (170 tokens apiece): 340 of the 300 spent.
      for (let i = 0; i < 2; i++) {
        const s = await mustOpen(url, ['realtime', `openai-insecure-api-key.${vk}`]);
        s.ws.send(JSON.stringify({ type: 'response.create' }));
        await s.waitFor(4);
        s.ws.close();
      }
      await waitForLines(logFile, 2);
      // Each request on a fresh connection: both workers answer, and both refuse.
      const refused = await many(12, 3, () => chat(gp, { authorization: `Bearer ${vk}` }));
      expect(refused.map((r) => r.status)).toEqual(Array(12).fill(429));
      expect(refused.every((r) => JSON.parse(r.body).error.type === 'budget_exceeded')).toBe(true);
      const lines = await waitForLines(logFile, 14);
      const sessions = lines.filter((l) => l.end_reason);
      expect(sessions.reduce((n, l) => n + l.usage.total_tokens, 0)).toBe(2 * RT_USAGE.openai.total_tokens);
      expect(new Set(lines.filter((l) => l.status === 429).map((l) => l.worker)).size).toBe(2);
      expect(await gp.stop()).toBe(0);
    } finally {
      await rt.stop();
    }
  }, 30_000);

  test('SIGHUP reopens the request log in every worker', async () => {
    const { gp, logFile } = await start(2);
    await many(20, 5, () => chat(gp));
    await waitForLines(logFile, 20);
    renameSync(logFile, `${logFile}.1`);
    const from = gp.mark();
    gp.proc.kill('SIGHUP');
    await gp.waitForLog((l) => l.msg === 'config reloaded' && l.reason === 'SIGHUP', 5000, from);
    const rs = await many(30, 6, () => chat(gp));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    expect(await gp.stop()).toBe(0);
    expect(logLines(`${logFile}.1`)).toHaveLength(20);
    const fresh = logLines(logFile);
    expect(fresh).toHaveLength(30);
    expect(new Set(fresh.map((l) => l.worker)).size).toBe(2);
  }, 30_000);
});

describe('workers: 2, the state the group shares', () => {
  test('explorer: every worker’s requests on /api/logs and /api/stats, whichever worker serves; the live feed shows them all', async () => {
    const { gp } = await start(2);
    const live = await fetch(`${gp.url}/api/logs/stream`);
    expect(live.status).toBe(200);
    const reader = live.body!.getReader();
    const events: any[] = [];
    const reading = (async () => {
      let text = '';
      const decoder = new TextDecoder();
      while (events.length < 30) {
        const { done, value } = await reader.read();
        if (done) return;
        text += decoder.decode(value, { stream: true });
        for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
          const frame = text.slice(0, end);
          text = text.slice(end + 2);
          const data = /^data: (.*)$/m.exec(frame);
          if (frame.includes('event: request') && data) events.push(JSON.parse(data[1]!));
        }
      }
    })();
    const rs = await many(30, 6, () => chat(gp));
    const ids = new Set(rs.map((r) => header(r, 'x-request-id')));
    await Promise.race([reading, Bun.sleep(5000)]);
    await reader.cancel();
    expect(new Set(events.map((e) => e.request_id))).toEqual(ids);
    expect(new Set(events.map((e) => e.worker)).size).toBe(2);

    for (const page of await many(8, 4, () => rawRequest(gp.port, 'GET', '/api/logs?limit=100'))) {
      expect(page.status).toBe(200);
      const { data } = JSON.parse(page.body);
      expect(new Set(data.map((d: any) => d.request_id))).toEqual(ids);
    }
    for (const stats of await many(4, 4, () => rawRequest(gp.port, 'GET', '/api/stats'))) {
      const body = JSON.parse(stats.body);
      expect(body.totals.requests).toBe(30);
      expect(body.index.rows).toBe(30);
    }
    const one = [...ids][0]!;
    for (const r of await many(4, 4, () => rawRequest(gp.port, 'GET', `/api/logs/${one}`)))
      expect(JSON.parse(r.body).data.request_id).toBe(one);
    expect(await gp.stop()).toBe(0);
  }, 30_000);

  for (const [what, rest, logs] of [
    ['the request log left out of plugins', `plugins: [explorer, metrics]\n${providers()}`, ''],
    ['no request log file (a temporary index)', providers(), ', file: ""'],
  ] as const) {
    test(`explorer without a request log to read (${what}): workers ship their rows, every request is listed`, async () => {
      const dir = tempDir('workers-ship');
      const configPath = join(dir, 'config.yaml');
      writeFileSync(
        configPath,
        `server: { host: 127.0.0.1, port: 0 }\nlogs: { ${logs ? logs.slice(2) : `file: ${JSON.stringify(join(dir, 'requests.ndjson'))}`} }\n${rest}`,
      );
      const gp = await startGatewayProcess(['--config', configPath], { workers: 2 });
      procs.push(gp);
      const rs = await many(40, 8, () => chat(gp));
      const ids = new Set(rs.map((r) => header(r, 'x-request-id')));
      let data: any[] = [];
      for (let i = 0; i < 50 && data.length < 40; i++) {
        await Bun.sleep(50);
        data = JSON.parse((await rawRequest(gp.port, 'GET', '/api/logs?limit=100')).body).data;
      }
      expect(new Set(data.map((d) => d.request_id))).toEqual(ids);
      expect(new Set(data.map((d) => d.worker)).size).toBe(2);
      expect(await gp.stop()).toBe(0);
    }, 30_000);
  }

  test('a key resting after a 429 rests on every worker', async () => {
    const [a, b] = [fakeKey('key-a'), fakeKey('key-b')];
    mock.respondWith((_req, rec) =>
      rec.json?.model === 'rest-test' && rec.headers.authorization === `Bearer ${a}`
        ? Response.json({ error: { message: 'slow down' } }, { status: 429, headers: { 'retry-after': '30' } })
        : undefined,
    );
    const { gp, logFile } = await start(
      2,
      `providers:
  openai:
    keys:
      - { name: a, value: "${a}", models: ["*"], weight: 1 }
      - { name: b, value: "${b}", models: ["*"], weight: 0 }
    network_config: { base_url: "${mock.url}" }
`,
    );
    expect((await chat(gp, {}, { model: 'rest-test' })).status).toBe(429);
    // The rest travels from the worker that saw the 429 to the others (~0.1 ms over IPC).
    await Bun.sleep(100);
    const seen = mock.requests.length;
    const rs = await many(30, 6, () => chat(gp, {}, { model: 'rest-test' }));
    expect(rs.map((r) => r.status)).toEqual(Array(30).fill(200));
    expect(new Set(mock.requests.slice(seen).map((r) => r.headers.authorization))).toEqual(new Set([`Bearer ${b}`]));
    const lines = await waitForLines(logFile, 31);
    expect(new Set(lines.slice(1).map((l) => l.worker)).size).toBe(2);
    const scrape = (await rawRequest(gp.port, 'GET', '/metrics')).body;
    expect(scrape).toMatch(/^skybridge_keys_resting\{provider="openai"\} 1$/m);
    expect(await gp.stop()).toBe(0);
  }, 30_000);

  test('an Entra ID token is minted once for the group, not once per worker', async () => {
    const TENANT = 'tenant-workers';
    let minted = 0;
    mock.respondWith((_req, rec) =>
      rec.path === `/${TENANT}/oauth2/v2.0/token`
        ? Response.json({ token_type: 'Bearer', expires_in: 3599, access_token: `entra-token-${++minted}` })
        : undefined,
    );
    const { gp, logFile } = await start(
      2,
      `providers:
  azure:
    keys:
      - name: entra
        models: ["*"]
        azure_key_config:
          endpoint: "${mock.url}"
          api_version: "2024-10-21"
          tenant_id: ${TENANT}
          client_id: app-1
          client_secret: "${fakeKey('entra-secret')}"
          authority_host: "${mock.url}"
`,
    );
    const seen = mock.requests.length;
    const rs = await many(30, 6, () =>
      rawRequest(
        gp.port,
        'POST',
        '/azure_passthrough/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21',
        { 'content-type': 'application/json', 'api-key': 'dummy' },
        JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
      ),
    );
    expect(rs.every((r) => r.status === 200)).toBe(true);
    expect(minted).toBe(1);
    const calls = mock.requests.slice(seen).filter((r) => r.path.includes('/deployments/'));
    expect(calls).toHaveLength(30);
    expect(new Set(calls.map((r) => r.headers.authorization))).toEqual(new Set(['Bearer entra-token-1']));
    const lines = await waitForLines(logFile, 30);
    expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
    expect(await gp.stop()).toBe(0);
  }, 30_000);

  test('an upload session started on one worker admits its credential-less chunks on every worker', async () => {
    const files = new GoogleFiles(mock);
    const vk = fakeKey('vk-upload');
    const { gp, logFile } = await start(
      2,
      `providers:
  gemini:
    keys: [{ name: main, value: "${fakeKey('gemini')}", models: ["*"] }]
    network_config: { base_url: "${mock.url}" }
governance:
  required: true
  virtual_keys: [{ name: uploader, value: "${vk}", providers: [gemini], models: ["*"] }]
`,
    );
    const CHUNKS = 12;
    const started = await rawRequest(gp.port, 'POST', '/genai_passthrough/upload/v1beta/files', {
      'x-goog-api-key': vk,
      'x-goog-upload-protocol': 'resumable',
      'x-goog-upload-command': 'start',
      'x-goog-upload-header-content-length': String(CHUNKS * 10),
      'x-goog-upload-header-content-type': 'text/plain',
    });
    expect(started.status).toBe(200);
    const url = new URL(header(started, 'x-goog-upload-url')!);
    const rs: RawResponse[] = [];
    for (let i = 0; i < CHUNKS; i++) {
      rs.push(
        await rawRequest(
          gp.port,
          'POST',
          url.pathname + url.search,
          {
            'x-goog-upload-command': i === CHUNKS - 1 ? 'upload, finalize' : 'upload',
            'x-goog-upload-offset': String(i * 10),
          },
          String(i).padStart(10, '-'),
        ),
      );
    }
    expect(rs.map((r) => r.status)).toEqual(Array(CHUNKS).fill(200));
    expect([...files.files.values()][0]!.chunks).toHaveLength(CHUNKS);
    const lines = (await waitForLines(logFile, CHUNKS + 1)).slice(1);
    expect(lines.every((l) => l.virtual_key === 'uploader')).toBe(true);
    expect(new Set(lines.map((l) => l.worker)).size).toBe(2);
    expect(await gp.stop()).toBe(0);
  }, 30_000);
});
