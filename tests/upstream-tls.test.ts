/**
 * An upstream on HTTPS with a private CA: network_config.ca_cert_pem trusts it,
 * insecure_skip_verify skips the check, neither fails closed with a 502.
 */
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'bun';
import { startGateway } from './support/gateway.ts';

let upstream: Server<unknown>;
let certPem: string;

beforeAll(async () => {
  // A throwaway self-signed certificate for 127.0.0.1, made per run.
  const dir = mkdtempSync(join(tmpdir(), 'skybridge-tls-'));
  const proc = Bun.spawn(
    [
      'openssl',
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdout: 'ignore', stderr: 'pipe' },
  );
  if ((await proc.exited) !== 0) throw new Error(`openssl failed: ${await new Response(proc.stderr).text()}`);
  certPem = readFileSync(join(dir, 'cert.pem'), 'utf8');
  upstream = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    tls: { cert: certPem, key: readFileSync(join(dir, 'key.pem'), 'utf8') },
    fetch: (req) => Response.json({ auth: req.headers.get('authorization') }),
  });
});
afterAll(() => upstream.stop(true));

async function call(network: Record<string, unknown>) {
  const gw = await startGateway({
    providers: {
      openai: {
        keys: [{ name: 'k', value: 'sk-tls-test' }],
        network_config: { base_url: `https://127.0.0.1:${upstream.port}`, ...network },
      },
    },
  });
  try {
    const res = await fetch(`${gw.url}/openai_passthrough/v1/models`);
    return { status: res.status, body: await res.json() };
  } finally {
    await gw.stop();
  }
}

test('an untrusted certificate fails closed: 502 JSON', async () => {
  const { status, body } = await call({});
  expect(status).toBe(502);
  expect(body.error.type).toBe('upstream_unreachable');
});

test('ca_cert_pem trusts the private CA', async () => {
  expect(await call({ ca_cert_pem: certPem })).toEqual({ status: 200, body: { auth: 'Bearer sk-tls-test' } });
});

test('insecure_skip_verify skips the check', async () => {
  expect((await call({ insecure_skip_verify: true })).status).toBe(200);
});

test("Bifrost's duration strings for the retry backoff", async () => {
  const gw = await startGateway({
    providers: { openai: { network_config: { retry_backoff_initial: '250ms', retry_backoff_max: '1m30s' } } },
  });
  try {
    expect(gw.gw.config.providers.openai!.retry).toMatchObject({ initialMs: 250, maxMs: 90_000 });
  } finally {
    await gw.stop();
  }
});
