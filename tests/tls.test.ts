/**
 * `server.tls`: the gateway serving HTTPS and WSS with a certificate made at run time
 * (support/tls.ts), a renewed certificate taken without dropping a connection (on a file
 * change and on a reload, which SIGHUP runs), and bad certificate files as config errors
 * naming the file. Plain HTTP stays the default.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { Gateway } from '../src/app/gateway.ts';
import { fakeKey, startGateway } from './support/gateway.ts';
import { MockRealtime } from './support/mock-realtime.ts';
import { MockUpstream } from './support/mock-upstream.ts';
import { runCli } from './support/process.ts';
import { fingerprintOf, makeCert, servedFingerprint } from './support/tls.ts';
import { mustOpen } from './support/ws-client.ts';

let mock: MockUpstream;
let rt: MockRealtime;
beforeAll(() => {
  mock = new MockUpstream();
  rt = new MockRealtime();
});
afterAll(async () => {
  await mock.stop();
  await rt.stop();
});

/** Certificate files at fixed paths in a fresh directory (so they can be replaced in place). */
function certDir() {
  const dir = mkdtempSync(join(tmpdir(), 'skybridge-tls-files-'));
  const a = makeCert(dir, 'a');
  const b = makeCert(dir, 'b');
  const certFile = join(dir, 'server.pem');
  const keyFile = join(dir, 'server.key');
  copyFileSync(a.certFile, certFile);
  copyFileSync(a.keyFile, keyFile);
  return { dir, a, b, certFile, keyFile };
}

async function waitForFingerprint(port: number, want: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await servedFingerprint(port)) === want) return;
    if (Date.now() > deadline) throw new Error('the gateway did not serve the new certificate');
    await Bun.sleep(50);
  }
}

describe('server.tls', () => {
  test('plain HTTP by default; with server.tls the same routes over HTTPS, the SDK trusting the certificate', async () => {
    const plain = await startGateway({ providers: { openai: { network_config: { base_url: mock.url } } } });
    const files = certDir();
    const secure = await startGateway({
      server: { tls: { cert_file: files.certFile, key_file: files.keyFile } },
      providers: { openai: { keys: [{ value: fakeKey() }], network_config: { base_url: mock.url } } },
    });
    try {
      expect(plain.url).toStartWith('http://');
      expect(secure.url).toStartWith('https://');
      const port = Number(new URL(secure.url).port);
      expect(await servedFingerprint(port)).toBe(fingerprintOf(files.a.cert));
      const client = new OpenAI({
        baseURL: `${secure.url}/openai_passthrough/v1`,
        apiKey: 'dummy',
        fetchOptions: { tls: { ca: files.a.cert } } as object,
      });
      const answer = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [] });
      expect(answer.usage?.total_tokens).toBeGreaterThan(0);
      // An untrusting client is refused by TLS; plain HTTP on the TLS port gets nothing useful.
      expect(await fetch(`${secure.url}/health`).catch((e) => String(e))).toMatch(/certificate|self.signed/i);
      const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
      expect(res?.ok ?? false).toBe(false);
    } finally {
      await plain.stop();
      await secure.stop();
    }
  });

  test('a renewed certificate (files replaced) is served to new connections; open sessions and streams run on', async () => {
    const files = certDir();
    const gw = await startGateway({
      server: { tls: { cert_file: files.certFile, key_file: files.keyFile } },
      providers: {
        openai: { keys: [{ value: fakeKey() }], network_config: { base_url: rt.url } },
        anthropic: { keys: [{ value: fakeKey() }], network_config: { base_url: mock.url } },
      },
    });
    const both = files.a.cert + files.b.cert;
    try {
      const port = Number(new URL(gw.url).port);
      const wsUrl = `${gw.url.replace(/^https/, 'wss')}/openai_passthrough/v1/realtime?model=gpt-realtime`;
      const session = await mustOpen(wsUrl, [], {}, { ca: both });
      await session.waitFor(1);
      // A slow stream in flight across the change (ending with its terminator: one without
      // is cut so the client notices, docs/observability.md).
      mock.respondWith((req) =>
        mock.sse(
          req,
          [
            ...Array.from({ length: 10 }, (_, i): [string, unknown] => [
              'content_block_delta',
              { type: 'content_block_delta', index: i },
            ]),
            ['message_stop', { type: 'message_stop' }],
          ],
          80,
        ),
      );
      const stream = fetch(`${gw.url}/anthropic_passthrough/v1/messages`, {
        method: 'POST',
        body: JSON.stringify({ model: 'claude-x', stream: true }),
        tls: { ca: both },
      } as RequestInit).then((r) => r.text());
      await Bun.sleep(100);

      copyFileSync(files.b.keyFile, files.keyFile);
      copyFileSync(files.b.certFile, files.certFile);
      await waitForFingerprint(port, fingerprintOf(files.b.cert));

      // The session opened before the change still relays both ways.
      const conn = rt.last;
      session.ws.send('{"type":"after.renewal"}');
      await rt.waitForMessages(1);
      expect(conn.received.at(-1)!.text).toBe('{"type":"after.renewal"}');
      conn.send('{"type":"still.flowing"}');
      expect((await session.waitFor(2))[1]!.text).toBe('{"type":"still.flowing"}');
      // The stream completed whole.
      expect(((await stream).match(/content_block_delta/g) ?? []).length).toBe(20);
      // New sessions get the new certificate.
      const fresh = await mustOpen(wsUrl, [], {}, { ca: files.b.cert });
      fresh.ws.close();
      session.ws.close();
      expect(gw.gw.state.reloads.success).toBeGreaterThanOrEqual(1);
    } finally {
      await gw.stop();
    }
  });

  test('a reload (what SIGHUP runs) re-reads the files even when nothing watched them change', async () => {
    const files = certDir();
    const configPath = join(files.dir, 'config.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        server: { host: '127.0.0.1', port: 0, tls: { cert_file: files.certFile, key_file: files.keyFile } },
        logs: { file: null },
      }),
    );
    const gw = await Gateway.start({ configPath, watch: false });
    try {
      const port = gw.server.port!;
      copyFileSync(files.b.keyFile, files.keyFile);
      copyFileSync(files.b.certFile, files.certFile);
      await Bun.sleep(300);
      expect(await servedFingerprint(port)).toBe(fingerprintOf(files.a.cert));
      expect(await gw.reload('SIGHUP')).toBe(true);
      expect(await servedFingerprint(port)).toBe(fingerprintOf(files.b.cert));
      // A bad file on reload: rejected, the certificate in force stays.
      writeFileSync(files.certFile, 'not a certificate');
      expect(await gw.reload('SIGHUP')).toBe(false);
      expect(await servedFingerprint(port)).toBe(fingerprintOf(files.b.cert));
      // Every route still answers on the new socket: the app's own (Bun's table and Elysia's fallback).
      const trusted = { tls: { ca: files.b.cert } } as RequestInit;
      expect((await fetch(`${gw.url}/health`, trusted)).status).toBe(200);
      expect((await fetch(`${gw.url}/health`, { ...trusted, method: 'HEAD' })).status).toBe(200);
      expect((await fetch(`${gw.url}/metrics`, trusted)).status).toBe(200);
      expect((await fetch(`${gw.url}/nope`, trusted)).status).toBe(404);
    } finally {
      await gw.shutdown(500);
    }
  });

  test('bad certificate files are config errors naming the file', async () => {
    const files = certDir();
    const garbage = join(files.dir, 'garbage.pem');
    writeFileSync(garbage, 'hello');
    const encrypted = join(files.dir, 'encrypted.key');
    const made = Bun.spawnSync([
      'openssl',
      'pkey',
      '-in',
      files.a.keyFile,
      '-aes128',
      '-passout',
      'pass:secret',
      '-out',
      encrypted,
    ]);
    expect(made.exitCode).toBe(0);
    const cases: Array<[Record<string, string>, RegExp]> = [
      [
        { cert_file: join(files.dir, 'missing.pem'), key_file: files.keyFile },
        /server\.tls\.cert_file: .*missing\.pem: cannot read: ENOENT/,
      ],
      [
        { cert_file: garbage, key_file: files.keyFile },
        /server\.tls\.cert_file: .*garbage\.pem: not a PEM certificate/,
      ],
      [
        { cert_file: files.certFile, key_file: garbage },
        /server\.tls\.key_file: .*garbage\.pem: not a PEM private key/,
      ],
      [
        { cert_file: files.certFile, key_file: files.b.keyFile },
        /server\.tls\.key_file: .*b\.key: not the private key of the certificate in .*server\.pem/,
      ],
      [
        { cert_file: files.certFile, key_file: encrypted },
        /server\.tls\.key_file: .*encrypted\.key: the private key is encrypted/,
      ],
    ];
    for (const [tls, message] of cases) {
      const path = join(files.dir, 'bad.json');
      writeFileSync(path, JSON.stringify({ server: { tls } }));
      const r = await runCli(['validate', '--config', path]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
    }
    // `env.NAME` works for the paths too.
    const path = join(files.dir, 'env.json');
    writeFileSync(path, JSON.stringify({ server: { tls: { cert_file: 'env.TLS_CERT', key_file: 'env.TLS_KEY' } } }));
    const ok = await runCli(['validate', '--config', path], {
      env: { ...(process.env as Record<string, string>), TLS_CERT: files.certFile, TLS_KEY: files.keyFile },
    });
    expect(ok.code).toBe(0);
  });

  test('a second gateway on a TLS gateway’s port fails to start instead of sharing it', async () => {
    const files = certDir();
    const tls = { cert_file: files.certFile, key_file: files.keyFile };
    const first = await startGateway({ server: { tls } });
    try {
      const port = Number(new URL(first.url).port);
      const second = await startGateway({ server: { tls, port } }).catch((e) => e as Error);
      expect(second).toBeInstanceOf(Error);
      expect((second as Error).message).toContain('EADDRINUSE');
    } finally {
      await first.stop();
    }
  });
});
