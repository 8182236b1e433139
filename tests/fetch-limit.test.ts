/**
 * Bun's fetch keeps at most 256 requests in flight unless BUN_CONFIG_MAX_HTTP_REQUESTS is
 * set when the process starts. The gateway raises it by re-executing itself (see
 * src/app/fetch-limit.ts). Proof: 300 concurrent 2 s streams through a gateway started
 * with `bun run start` all end after ~2 s; with the variable pinned to Bun's default of
 * 256 the last 44 wait for a free slot and end after ~4 s (the control: this test sees
 * the limit when it is there). scripts/smoke-binary checks the same on the compiled binary.
 *
 * With workers, each worker inherits the primary's raised limit: 600 streams through two
 * workers (more than 2 x 256) end after ~2 s as well.
 *
 * The client side uses raw sockets: this test process's own fetch has the 256 limit too.
 */
import { afterAll, expect, test } from 'bun:test';
import { chatStream, MockUpstream } from './support/mock-upstream.ts';
import { childEnv, type GatewayProcess, startGatewayProcess, writeConfigFile } from './support/process.ts';
import { rawRequest } from './support/raw-http.ts';

const STREAMS = 300;
const mock = new MockUpstream();
// 7 frames, 6 gaps of 333 ms: each stream lasts ~2 s.
mock.respondWith((req, rec) => (rec.json?.stream ? mock.sse(req, chatStream(rec.json.model), 333) : undefined));

const procs: GatewayProcess[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL', 2000)));
  await mock.stop();
});

function writeConfig(): string {
  return writeConfigFile(
    'fetch-limit',
    `providers:
  openai:
    keys: [{ name: main, value: sk-fetch-limit-test, models: ["*"] }]
    network_config: { base_url: "${mock.url}" }
`,
  );
}

async function streams(gp: GatewayProcess, n = STREAMS): Promise<{ complete: number; p50: number; max: number }> {
  const body = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] });
  const results = await Promise.all(
    Array.from({ length: n }, () =>
      rawRequest(
        gp.port,
        'POST',
        '/openai_passthrough/v1/chat/completions',
        { 'content-type': 'application/json', authorization: 'Bearer client' },
        body,
      ),
    ),
  );
  const times = results.map((r) => r.ms).sort((a, b) => a - b);
  return {
    complete: results.filter((r) => r.status === 200 && r.text.includes('data: [DONE]')).length,
    p50: Math.round(times[n >> 1]!),
    max: Math.round(times.at(-1)!),
  };
}

test(`bun run start: ${STREAMS} concurrent 2 s streams all end after ~2 s (fetch limit raised)`, async () => {
  const gp = await startGatewayProcess(['run', 'start', '--', '--config', writeConfig()], {
    cmd: [process.execPath],
    env: childEnv(),
  });
  procs.push(gp);
  const ready = await gp.waitForLog((l) => l.msg === 'ready');
  expect(ready.BUN_CONFIG_MAX_HTTP_REQUESTS).toBe('16384');
  const r = await streams(gp);
  console.log(`raised limit: ${JSON.stringify(r)}`);
  expect(r.complete).toBe(STREAMS);
  expect(r.max).toBeLessThan(3200);
  expect(await gp.stop()).toBe(0);
}, 30_000);

test(`control: pinned to Bun's default of 256, the last ${STREAMS - 256} streams wait (~4 s)`, async () => {
  const gp = await startGatewayProcess(['--config', writeConfig()], {
    env: childEnv({ BUN_CONFIG_MAX_HTTP_REQUESTS: '256' }),
  });
  procs.push(gp);
  const ready = await gp.waitForLog((l) => l.msg === 'ready');
  expect(ready.BUN_CONFIG_MAX_HTTP_REQUESTS).toBe('256');
  const r = await streams(gp);
  console.log(`Bun default: ${JSON.stringify(r)}`);
  expect(r.complete).toBe(STREAMS);
  expect(r.max).toBeGreaterThan(3600);
  expect(await gp.stop()).toBe(0);
}, 30_000);

test(`workers: 2: each worker has the raised limit (${2 * STREAMS} concurrent 2 s streams end after ~2 s)`, async () => {
  const gp = await startGatewayProcess(['--config', writeConfig()], { env: childEnv(), workers: 2 });
  procs.push(gp);
  const ready = await gp.waitForLog((l) => l.msg === 'ready');
  expect(ready).toMatchObject({ workers: 2, BUN_CONFIG_MAX_HTTP_REQUESTS: '16384' });
  const r = await streams(gp, 2 * STREAMS);
  console.log(`two workers: ${JSON.stringify(r)}`);
  expect(r.complete).toBe(2 * STREAMS);
  expect(r.max).toBeLessThan(3200);
  expect(await gp.stop()).toBe(0);
}, 30_000);
