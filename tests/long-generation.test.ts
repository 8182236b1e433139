/**
 * Elysia's Bun adapter closes connections idle for 30 s; an upstream that thinks for
 * longer must still get its answer to the client.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { MockUpstream } from './support/mock-upstream.ts';
import { startGateway, type TestGateway } from './support/gateway.ts';

let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({ providers: { openai: { keys: [{ name: 'k', value: 'sk-long-wait-test' }], network_config: { base_url: mock.url } } } });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});

test(
  'an answer after 33 s of upstream silence reaches the client (non-stream and stream)',
  async () => {
    mock.respondWith(async (req, rec) => {
      await Bun.sleep(33_000);
      return rec.json?.stream ? mock.sse(req, [[undefined, { late: true }]]) : Response.json({ late: true });
    });
    const [plain, streamed] = await Promise.all([
      fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"o3"}' }),
      fetch(`${gw.url}/openai_passthrough/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"o3","stream":true}' }),
    ]);
    expect(plain.status).toBe(200);
    expect(await plain.json()).toEqual({ late: true });
    expect(await streamed.text()).toContain('"late":true');
  },
  60_000,
);
