/**
 * WebSocket passthrough (proxy/realtime.ts) with real clients against a recording
 * WebSocket mock (support/mock-realtime.ts): the `openai` SDK's OpenAIRealtimeWebSocket
 * and its Azure form (over wss:, the gateway's TLS with a run-time certificate, in a
 * child process that trusts it), a browser-style raw WebSocket with its key in a
 * subprotocol, `@google/genai` live.connect for Gemini and Vertex. What reached the
 * upstream (path, query, credentials, subprotocols, every message byte for byte) and what
 * reached the client are compared; the log line, governance, metrics, shutdown and reload
 * are checked on the same sessions.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import { GoogleGenAI, type LiveServerMessage, Modality } from '@google/genai';
import { OAuth2Client } from 'google-auth-library';
import { mayCarryUsage, realtimeUsage } from '../src/usage/realtime.ts';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { installTokenEndpoint, makeServiceAccount } from './support/google-creds.ts';
import { MockRealtime, RT_USAGE } from './support/mock-realtime.ts';
import { MockUpstream } from './support/mock-upstream.ts';
import { childEnv, REPO } from './support/process.ts';
import { makeCert, type TestCert } from './support/tls.ts';
import { mustOpen, openSocket } from './support/ws-client.ts';

const CLIENT_KEY = 'sk-client-dummy';
const wsBase = (gw: TestGateway) => gw.url.replace(/^http/, 'ws');
/** What the log says of one mock response.done (RT_USAGE.openai), in the log's names. */
const u = RT_USAGE.openai;
const OPENAI_LOG_USAGE = {
  input_tokens: u.input_tokens,
  output_tokens: u.output_tokens,
  total_tokens: u.total_tokens,
  cache_read_input_tokens: u.input_token_details.cached_tokens,
  input_text_tokens: u.input_token_details.text_tokens,
  input_audio_tokens: u.input_token_details.audio_tokens,
  output_text_tokens: u.output_token_details.text_tokens,
  output_audio_tokens: u.output_token_details.audio_tokens,
};
const g = RT_USAGE.gemini;

let mock: MockRealtime;
let http: MockUpstream;
let cert: TestCert;
beforeAll(() => {
  mock = new MockRealtime();
  http = new MockUpstream();
  cert = makeCert();
});
afterAll(async () => {
  await mock.stop();
  await http.stop();
});
beforeEach(() => mock.reset());

/** Nothing the client used as a credential reached the upstream, in any place. */
function expectNoClientCredential(secret: string) {
  const c = mock.last;
  expect(JSON.stringify(c.headers)).not.toContain(secret);
  expect(c.query).not.toContain(secret);
  expect(c.protocols.join(',')).not.toContain(secret);
}

const bytesOf = (messages: Array<{ bytes: Uint8Array; binary: boolean }>) =>
  messages.map((m) => ({ binary: m.binary, hex: Buffer.from(m.bytes).toString('hex') }));

/** Run the openai SDK's realtime client (support/realtime-sdk-client.ts) against a TLS gateway. */
async function sdkClient(env: Record<string, string>): Promise<any> {
  const proc = Bun.spawn([process.execPath, join(REPO, 'tests/support/realtime-sdk-client.ts')], {
    cwd: REPO,
    env: childEnv({ NODE_EXTRA_CA_CERTS: cert.certFile, ...env }),
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`SDK client exited ${code}: ${err}`);
  return JSON.parse(out.trim().split('\n').at(-1)!);
}

describe('OpenAI Realtime', () => {
  let gw: TestGateway;
  let tlsGw: TestGateway;
  const key = fakeKey();
  beforeAll(async () => {
    const providers = { openai: { keys: [{ name: 'main', value: key }], network_config: { base_url: mock.url } } };
    gw = await startGateway({ providers });
    tlsGw = await startGateway({ providers, server: { tls: { cert_file: cert.certFile, key_file: cert.keyFile } } });
  });
  afterAll(async () => {
    await gw.stop();
    await tlsGw.stop();
  });

  test('OpenAIRealtimeWebSocket over wss: the gateway key upstream, none of the client; events byte for byte both ways; usage in the log', async () => {
    expect(tlsGw.url).toStartWith('https://');
    const result = await sdkClient({ GW_URL: tlsGw.url, MODE: 'openai', API_KEY: CLIENT_KEY, MODEL: 'gpt-realtime' });
    expect(result.errors).toEqual([]);
    const up = mock.last;
    expect(up.path).toBe('/v1/realtime');
    expect(up.query).toBe('model=gpt-realtime');
    expect(up.headers.authorization).toBe(`Bearer ${key}`);
    // The SDK sends its key as a subprotocol: dropped; `realtime` passes and is selected.
    expect(up.protocols).toEqual(['realtime']);
    expect(result.protocol).toBe('realtime');
    expectNoClientCredential(CLIENT_KEY);
    // Client -> upstream: exactly the strings the SDK sent, as text.
    expect(up.received.map((m) => ({ binary: m.binary, text: m.text }))).toEqual(
      result.sent.map((text: string) => ({ binary: false, text })),
    );
    // Upstream -> client: exactly what the mock sent, in order.
    expect(result.raw).toEqual(up.sent.map((m) => m.text));
    expect(result.types).toEqual([
      'session.created',
      'response.output_text.delta',
      'response.output_audio.delta',
      'response.done',
    ]);
    expect(result.close).toEqual({ code: 1000, reason: 'client done' });
    expect(up.closed).toEqual({ code: 1000, reason: 'client done' });
    const line = await tlsGw.waitForLine((l) => l.path === '/v1/realtime');
    expect(line).toMatchObject({
      endpoint: 'openai',
      provider: 'openai',
      method: 'GET',
      status: 101,
      stream: true,
      model: 'gpt-realtime',
      key: 'main',
      outcome: 'ok',
      end_reason: 'client_close',
      close_code: 1000,
      messages_in: 3,
      messages_out: 4,
      usage: OPENAI_LOG_USAGE,
      upstream_request_id: 'rt_req_1',
    });
    expect(line.bytes_in).toBe(result.sent.reduce((n: number, s: string) => n + Buffer.byteLength(s), 0));
    expect(line.bytes_out).toBe(up.sent.reduce((n, m) => n + m.bytes.byteLength, 0));
    expect(JSON.stringify(line)).not.toContain(CLIENT_KEY);
  });

  test('a browser-style client (key in a subprotocol): that subprotocol is dropped, the others pass; text and binary byte for byte both ways, in order', async () => {
    const ws = new globalThis.WebSocket(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`, [
      'realtime',
      `openai-insecure-api-key.${CLIENT_KEY}`,
      'openai-beta.realtime-v1',
    ]);
    ws.binaryType = 'arraybuffer';
    const got: Array<string | ArrayBuffer> = [];
    ws.onmessage = (e) => got.push(e.data);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    expect(ws.protocol).toBe('realtime');
    expect(mock.last.protocols).toEqual(['realtime', 'openai-beta.realtime-v1']);
    expect(mock.last.headers.authorization).toBe(`Bearer ${key}`);
    expectNoClientCredential(CLIENT_KEY);

    // Messages that a re-encoding would change: multi-byte UTF-8, an empty one, bytes that
    // are not UTF-8, a large binary one.
    const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 7) & 255);
    const outgoing: Array<string | Uint8Array<ArrayBuffer>> = [
      '{"type":"input_audio_buffer.append","audio":"AAAA"}',
      'héllo ✓ 𝄞',
      '',
      new Uint8Array([0, 255, 0xc3, 0x28, 10]),
      big,
    ];
    for (const m of outgoing) ws.send(m);
    await mock.waitForMessages(outgoing.length);
    const want = outgoing.map((m) =>
      typeof m === 'string' ? { binary: false, bytes: new TextEncoder().encode(m) } : { binary: true, bytes: m },
    );
    expect(bytesOf(mock.last.received)).toEqual(bytesOf(want));

    // And the other way: the mock sends the same, the client gets exactly that.
    for (const m of outgoing) mock.last.send(m);
    const deadline = Date.now() + 5000;
    while (got.length < 1 + outgoing.length && Date.now() < deadline) await Bun.sleep(5);
    const received = got
      .slice(1)
      .map((d) =>
        typeof d === 'string'
          ? { binary: false, bytes: new TextEncoder().encode(d) }
          : { binary: true, bytes: new Uint8Array(d) },
      );
    expect(bytesOf(received)).toEqual(bytesOf(want));
    ws.close(1000);
    await mock.waitForClose();
  });

  test('a refused upstream handshake is answered with its status, headers and body; nothing is upgraded', async () => {
    mock.refuseWith = () =>
      Response.json(
        { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } },
        { status: 401, headers: { 'x-request-id': 'req_refused_1', 'www-authenticate': 'Bearer' } },
      );
    const opened = await openSocket(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`, ['realtime']);
    expect(opened.ok).toBe(false);
    if (opened.ok) return;
    expect(opened.status).toBe(401);
    expect(JSON.parse(opened.body).error.code).toBe('invalid_api_key');
    expect(opened.headers.get('x-upstream-request-id')).toBe('req_refused_1');
    expect(opened.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    const line = await gw.waitForLine((l) => l.status === 401 && l.path === '/v1/realtime');
    expect(line).toMatchObject({ outcome: 'ok', key: 'main', upstream_request_id: 'req_refused_1' });
    expect(line.end_reason).toBeUndefined();
  });

  test('upstream unreachable: 502 JSON before any upgrade; a path that is no WebSocket API: 501', async () => {
    const dead = await startGateway({
      providers: { openai: { keys: [{ value: key }], network_config: { base_url: 'http://127.0.0.1:9' } } },
    });
    try {
      const refused = await openSocket(`${wsBase(dead)}/openai_passthrough/v1/realtime?model=m`);
      expect(refused.ok).toBe(false);
      if (refused.ok) return;
      expect(refused.status).toBe(502);
      expect(JSON.parse(refused.body).error.type).toBe('upstream_unreachable');
      const notWs = await openSocket(`${wsBase(gw)}/openai_passthrough/v1/chat/completions`);
      expect(notWs.ok).toBe(false);
      if (notWs.ok) return;
      expect(notWs.status).toBe(501);
      expect(JSON.parse(notWs.body).error.type).toBe('websocket_not_supported');
      expect(mock.connections.length).toBe(0);
    } finally {
      await dead.stop();
    }
  });

  test('a client that leaves during the upstream handshake: the upstream attempt is dropped, logged client_aborted; a slow handshake is a 504', async () => {
    mock.handshakeDelayMs = 300;
    const raw = await Bun.connect({ hostname: '127.0.0.1', port: Number(new URL(gw.url).port), socket: { data() {} } });
    raw.write(
      'GET /openai_passthrough/v1/realtime?model=gpt-realtime HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n',
    );
    await Bun.sleep(50);
    raw.end();
    const line = await gw.waitForLine((l) => l.outcome === 'client_aborted');
    expect(line).toMatchObject({ path: '/v1/realtime', status: 499 });
    await Bun.sleep(400);
    // The mock answered the handshake after the gateway had dropped the attempt: nothing stays open.
    expect(mock.connections.filter((c) => c.ws !== undefined && c.closed === undefined)).toEqual([]);

    const slow = await startGateway({
      providers: {
        openai: {
          keys: [{ value: key }],
          network_config: { base_url: mock.url, default_request_timeout_in_seconds: 1 },
        },
      },
    });
    try {
      mock.handshakeDelayMs = 1500;
      const r = await openSocket(`${wsBase(slow)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.status).toBe(504);
      expect(JSON.parse(r.body).error.type).toBe('upstream_timeout');
    } finally {
      await slow.stop();
    }
  });

  test('closing either side closes the other with the same code and reason; a lost connection is relayed as lost', async () => {
    const url = `${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`;
    // The client closes: the upstream sees its code and reason.
    let s = await mustOpen(url);
    let t0 = performance.now();
    s.ws.close(4001, 'client says bye');
    expect(await mock.waitForClose()).toEqual({ code: 4001, reason: 'client says bye' });
    const clientToUpstreamMs = performance.now() - t0;
    // The upstream closes: the client sees its code and reason.
    s = await mustOpen(url);
    await s.waitFor(1); // session.created: the session is relayed
    t0 = performance.now();
    mock.last.ws!.close(4002, 'upstream says bye');
    const seen = await s.closed;
    expect({ code: seen.code, reason: seen.reason }).toEqual({ code: 4002, reason: 'upstream says bye' });
    const upstreamToClientMs = seen.at - t0;
    // The upstream's connection is lost: the client's is dropped too (1006, as from the provider).
    s = await mustOpen(url);
    await s.waitFor(1);
    mock.last.ws!.terminate();
    expect((await s.closed).code).toBe(1006);
    // The client's connection is lost: so is the upstream's.
    s = await mustOpen(url);
    await s.waitFor(1);
    s.ws.terminate();
    expect((await mock.waitForClose()).code).toBe(1006);
    // Generous bounds for a shared machine; the bench measures the real figure.
    expect(clientToUpstreamMs).toBeLessThan(200);
    expect(upstreamToClientMs).toBeLessThan(200);

    const lines = (await gw.waitForLines(0)).filter((l) => l.end_reason);
    const last4 = lines.slice(-4).map((l) => [l.end_reason, l.outcome, l.close_code]);
    expect(last4).toEqual([
      ['client_close', 'ok', 4001],
      ['upstream_close', 'ok', 4002],
      ['upstream_error', 'upstream_error', undefined],
      ['client_abort', 'client_aborted', undefined],
    ]);
  });

  test('pings cross the gateway both ways (each hop also answers its own)', async () => {
    const pingsAtMock: Buffer[] = [];
    mock.onPing = (_c, data) => pingsAtMock.push(data);
    const s = await mustOpen(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
    await s.waitFor(1);
    const pong = new Promise<Buffer>((resolve) => s.ws.on('pong', resolve));
    s.ws.ping(Buffer.from('client-ping'));
    // The gateway answers the client's ping itself, and sends it on.
    expect((await pong).toString()).toBe('client-ping');
    for (let i = 0; i < 300 && pingsAtMock.length === 0; i++) await Bun.sleep(5);
    expect(pingsAtMock.map(String)).toEqual(['client-ping']);
    mock.last.ws!.ping('upstream-ping');
    const deadline = Date.now() + 3000;
    while (s.pings.length === 0 && Date.now() < deadline) await Bun.sleep(5);
    expect(s.pings.map(String)).toEqual(['upstream-ping']);
    s.ws.close();
  });

  test('a silent upstream is pinged by the gateway; one that does not answer is taken for lost', async () => {
    const quick = await startGateway({
      providers: {
        openai: {
          keys: [{ value: key }],
          network_config: { base_url: mock.url, stream_idle_timeout_in_seconds: 1 },
        },
      },
    });
    try {
      const pings: number[] = [];
      mock.onPing = () => pings.push(performance.now());
      const s = await mustOpen(`${wsBase(quick)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
      const conn = mock.last;
      await s.waitFor(1);
      const opened = performance.now();
      for (let i = 0; i < 300 && pings.length === 0; i++) await Bun.sleep(10);
      expect(pings.length).toBe(1);
      expect(pings[0]! - opened).toBeGreaterThan(800);
      // The mock answered (Bun does): the session stays. Now it stops reading: no pong.
      conn.ws!.pause();
      const closed = await s.closed;
      expect(closed.code).toBe(1006);
      // Silent 1 s: pinged; 1 s more without an answer: lost (the shared idle sweep ticks at up to 1 s).
      expect(closed.at - opened).toBeLessThan(9000);
      const line = await quick.waitForLine((l) => l.end_reason === 'upstream_error');
      expect(line.error.message).toContain('did not answer a WebSocket ping');
    } finally {
      await quick.stop();
    }
  }, 20_000);

  test('without keys (direct key) the client key passes as it came, subprotocol included', async () => {
    const direct = await startGateway({ providers: { openai: { network_config: { base_url: mock.url } } } });
    try {
      const s = await mustOpen(`${wsBase(direct)}/openai_passthrough/v1/realtime?model=gpt-realtime`, [
        'realtime',
        `openai-insecure-api-key.${CLIENT_KEY}`,
      ]);
      expect(mock.last.protocols).toEqual(['realtime', `openai-insecure-api-key.${CLIENT_KEY}`]);
      expect(mock.last.headers.authorization).toBeUndefined();
      s.ws.close();
      const line = await direct.waitForLine((l) => l.end_reason !== undefined);
      expect(line.key).toBe('direct');
    } finally {
      await direct.stop();
    }
  });
});

describe('limits: backpressure and message size', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({
      server: { websocket: { max_message_mb: 40, buffer_limit_mb: 2 } },
      providers: { openai: { keys: [{ value: fakeKey() }], network_config: { base_url: mock.url } } },
    });
  });
  afterAll(() => gw.stop());
  const url = () => `${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`;

  test('a client that stops reading pauses the upstream: the provider meets backpressure, nothing is lost or reordered', async () => {
    const s = await mustOpen(url());
    await s.waitFor(1);
    s.ws.pause();
    const conn = mock.last;
    const chunk = 64 * 1024;
    const count = 400; // 25.6 MiB: far more than the gateway may hold (2 MiB)
    let sent = 0;
    // Send as fast as the upstream socket takes them; a full socket means backpressure reached the provider.
    let sawBackpressure = false;
    while (sent < count) {
      const status = conn.ws!.sendBinary(new Uint8Array(chunk).fill(sent & 255));
      sent++;
      if (status === -1) {
        sawBackpressure = true;
        break;
      }
    }
    await Bun.sleep(300);
    expect(sawBackpressure).toBe(true);
    // The gateway held back (paused its upstream socket) instead of ending the session.
    expect(conn.closed).toBeUndefined();
    s.ws.resume();
    while (sent < count) {
      while (conn.ws!.getBufferedAmount() > 1024 * 1024) await Bun.sleep(5);
      conn.ws!.sendBinary(new Uint8Array(chunk).fill(sent & 255));
      sent++;
    }
    const got = await s.waitFor(1 + count, 20_000);
    for (let i = 0; i < count; i++) {
      const m = got[1 + i]!;
      if (m.bytes.byteLength !== chunk || m.bytes[0] !== (i & 255) || m.bytes[chunk - 1] !== (i & 255))
        throw new Error(`message ${i} changed`);
    }
    s.ws.close();
    await mock.waitForClose(conn);
  });

  test('a message that would leave more than buffer_limit_mb waiting for the client closes the session with 1013', async () => {
    const s = await mustOpen(url());
    await s.waitFor(1);
    s.ws.pause();
    await Bun.sleep(20);
    const conn = mock.last;
    // One message larger than the socket buffers on the way (a few MB on loopback) and the limit together.
    conn.ws!.sendBinary(new Uint8Array(30 * 1024 * 1024));
    expect((await mock.waitForClose(conn)).code).toBe(1013);
    s.ws.resume();
    expect((await s.closed).code).toBe(1013);
    const line = await gw.waitForLine((l) => l.end_reason === 'backpressure');
    expect(line).toMatchObject({ outcome: 'rejected', close_code: 1013, error: { type: 'backpressure_limit' } });
  });

  test('an upstream that stops reading pauses the client; everything arrives once it reads again', async () => {
    const s = await mustOpen(url());
    await s.waitFor(1);
    const conn = mock.last;
    conn.ws!.pause();
    const chunk = new Uint8Array(64 * 1024);
    // 25.6 MiB: more than the socket buffers on the way and the gateway's 2 MiB together. Had
    // the gateway read it all, it would have closed the session (1013); it paused the client.
    for (let i = 0; i < 400; i++) s.ws.send(chunk.fill(i & 255));
    await Bun.sleep(500);
    expect(conn.closed).toBeUndefined();
    expect(s.ws.bufferedAmount).toBeGreaterThan(0);
    conn.ws!.resume();
    await mock.waitForMessages(400, 20_000);
    conn.received.forEach((m, i) => {
      if (m.bytes.byteLength !== chunk.byteLength || m.bytes[100] !== (i & 255))
        throw new Error(`message ${i} changed`);
    });
    s.ws.close();
  });

  test('a message over max_message_mb closes the session with 1009; the upstream is told the client went away', async () => {
    const s = await mustOpen(url());
    await s.waitFor(1);
    const conn = mock.last;
    s.ws.send(new Uint8Array(41 * 1024 * 1024));
    expect((await s.closed).code).toBe(1009);
    expect((await mock.waitForClose(conn)).code).toBe(1001);
    expect(conn.received.length).toBe(0);
    const line = await gw.waitForLine((l) => l.end_reason === 'message_too_large');
    expect(line).toMatchObject({ outcome: 'rejected', error: { type: 'payload_too_large' } });
  });
});

describe('Azure OpenAI Realtime', () => {
  let gw: TestGateway;
  const azureKey = fakeKey('az');
  beforeAll(async () => {
    gw = await startGateway({
      server: { tls: { cert_file: cert.certFile, key_file: cert.keyFile } },
      providers: {
        azure: {
          keys: [{ name: 'az', value: azureKey, azure_key_config: { endpoint: mock.url, api_version: '2024-10-21' } }],
        },
      },
    });
  });
  afterAll(() => gw.stop());

  test('AzureOpenAI realtime (GA /openai/v1/realtime): the gateway api-key, no dated api-version, events both ways', async () => {
    const result = await sdkClient({ GW_URL: gw.url, MODE: 'azure', API_KEY: CLIENT_KEY, MODEL: 'my-realtime-dep' });
    expect(result.errors).toEqual([]);
    const up = mock.last;
    expect(up.path).toBe('/openai/v1/realtime');
    expect(up.query).toBe('model=my-realtime-dep');
    expect(up.headers['api-key']).toBe(azureKey);
    expectNoClientCredential(CLIENT_KEY);
    expect(up.received.map((m) => m.text)).toEqual(result.sent);
    expect(result.raw).toEqual(up.sent.map((m) => m.text));
    const line = await gw.waitForLine((l) => l.path === '/openai/v1/realtime');
    expect(line).toMatchObject({ provider: 'azure', model: 'my-realtime-dep', status: 101, usage: OPENAI_LOG_USAGE });
  });

  test('an Entra ID key: a minted token as Authorization: Bearer', async () => {
    const tenant = 'tenant-rt';
    http.respondWith((_req, rec) =>
      rec.path === `/${tenant}/oauth2/v2.0/token`
        ? Response.json({ token_type: 'Bearer', expires_in: 3599, access_token: 'entra-rt-token' })
        : undefined,
    );
    const entra = await startGateway({
      providers: {
        azure: {
          keys: [
            {
              name: 'entra',
              azure_key_config: {
                endpoint: mock.url,
                tenant_id: tenant,
                client_id: 'app',
                client_secret: fakeKey('secret'),
                authority_host: http.url,
              },
            },
          ],
        },
      },
    });
    try {
      const s = await mustOpen(`${wsBase(entra)}/azure_passthrough/openai/v1/realtime?model=dep`, [], {
        'api-key': CLIENT_KEY,
      });
      expect(mock.last.headers.authorization).toBe('Bearer entra-rt-token');
      expect(mock.last.headers['api-key']).toBeUndefined();
      expectNoClientCredential(CLIENT_KEY);
      s.ws.close();
    } finally {
      await entra.stop();
    }
  });

  test('the preview form (/openai/realtime?api-version&deployment): the key in the query is dropped, the api-version rule applies', async () => {
    // A browser's form: the key in the query (it cannot send headers); this client trusts the certificate itself.
    const s = await mustOpen(
      `${wsBase(gw)}/azure_passthrough/openai/realtime?api-version=2025-04-01-preview&deployment=gpt-4o-realtime&api-key=${CLIENT_KEY}`,
      [],
      {},
      { ca: cert.cert },
    );
    const up = mock.last;
    expect(up.path).toBe('/openai/realtime');
    // The key's api_version wins (as on every deployment path); the client's deployment stays.
    expect(up.query).toBe('deployment=gpt-4o-realtime&api-version=2024-10-21');
    expect(up.headers['api-key']).toBe(azureKey);
    expectNoClientCredential(CLIENT_KEY);
    s.ws.close();
    const line = await gw.waitForLine((l) => l.path === '/openai/realtime');
    expect(line.model).toBe('gpt-4o-realtime');
  });
});

describe('Gemini and Vertex Live (@google/genai live.connect)', () => {
  let gw: TestGateway;
  const geminiKey = fakeKey('gemini');

  beforeAll(async () => {
    const sa = await makeServiceAccount(`${http.url}/sa-token`, 'sa-project');
    installTokenEndpoint(http, '/sa-token', sa);
    gw = await startGateway({
      providers: {
        gemini: { keys: [{ name: 'g', value: geminiKey }], network_config: { base_url: mock.url } },
        vertex: {
          keys: [
            {
              name: 'vx',
              vertex_key_config: { project_id: 'gw-project', region: 'europe-west4', auth_credentials: sa.json },
            },
          ],
          network_config: { base_url: mock.url },
        },
      },
    });
  });
  afterAll(() => gw.stop());

  async function converse(ai: GoogleGenAI, model: string) {
    const messages: LiveServerMessage[] = [];
    let turns = 0;
    let onTurn: () => void = () => {};
    const session = await ai.live.connect({
      model,
      config: { responseModalities: [Modality.TEXT] },
      callbacks: {
        onmessage: (m) => {
          messages.push(m);
          if (m.serverContent?.turnComplete) {
            turns++;
            onTurn();
          }
        },
        onerror: () => {},
        onclose: () => {},
      },
    });
    for (const text of ['hello', 'and again']) {
      const turn = new Promise<void>((resolve) => {
        onTurn = resolve;
      });
      session.sendClientContent({ turns: text, turnComplete: true });
      await turn;
    }
    session.close();
    return { messages, turns };
  }

  test('Gemini: the SDK key= query parameter dropped, the gateway key as x-goog-api-key; setup and turns byte for byte; usage of both turns summed', async () => {
    const ai = new GoogleGenAI({ apiKey: CLIENT_KEY, httpOptions: { baseUrl: `${gw.url}/genai_passthrough` } });
    const { messages, turns } = await converse(ai, 'gemini-2.0-flash-live-001');
    expect(turns).toBe(2);
    const up = mock.last;
    expect(up.path).toMatch(
      /^\/ws\/google\.ai\.generativelanguage\.v1[a-z0-9]*\.GenerativeService\.BidiGenerateContent$/,
    );
    expect(up.query).toBe('');
    expect(up.headers['x-goog-api-key']).toBe(geminiKey);
    expectNoClientCredential(CLIENT_KEY);
    expect(JSON.parse(up.received[0]!.text).setup.model).toBe('models/gemini-2.0-flash-live-001');
    // The SDK's own serialisation reached the mock unchanged (text frames).
    expect(up.received.every((m) => !m.binary)).toBe(true);
    expect(up.received.map((m) => JSON.parse(m.text))).toMatchObject([
      { setup: {} },
      { clientContent: { turnComplete: true } },
      { clientContent: { turnComplete: true } },
    ]);
    // The mock's binary frames reached the SDK, which parsed them.
    expect(messages.filter((m) => m.setupComplete).length).toBe(1);
    expect(messages.filter((m) => m.usageMetadata).length).toBe(2);
    await mock.waitForClose(up);
    const line = await gw.waitForLine((l) => l.provider === 'gemini' && l.end_reason);
    expect(line).toMatchObject({
      endpoint: 'genai',
      model: 'gemini-2.0-flash-live-001',
      status: 101,
      stream: true,
      messages_in: 3,
      messages_out: 5,
      // Two turns, each reporting its own usage: summed.
      usage: {
        input_tokens: 2 * g.promptTokenCount,
        output_tokens: 2 * g.responseTokenCount,
        total_tokens: 2 * g.totalTokenCount,
        input_text_tokens: 2 * g.promptTokensDetails[0].tokenCount,
        output_audio_tokens: 2 * g.responseTokensDetails[0].tokenCount,
      },
      end_reason: 'client_close',
    });
  });

  test("Vertex: detected, a minted token for the key's service account, the setup model put in the key's project and region", async () => {
    const ai = new GoogleGenAI({
      vertexai: true,
      project: 'client-project',
      location: 'us-east5',
      googleAuthOptions: { authClient: fakeAuthClient() },
      httpOptions: { baseUrl: `${gw.url}/genai_passthrough` },
    });
    const { turns } = await converse(ai, 'gemini-live-2.5-flash');
    expect(turns).toBe(2);
    const up = mock.last;
    expect(up.path).toMatch(/^\/ws\/google\.cloud\.aiplatform\.v1[a-z0-9]*\.LlmBidiService\/BidiGenerateContent$/);
    expect(up.headers.authorization).toMatch(/^Bearer ya29\.gw-sa-token-\d+$/);
    expect(JSON.stringify(up.headers)).not.toContain('ya29.client');
    const setup = up.received[0]!.text;
    expect(JSON.parse(setup).setup.model).toBe(
      'projects/gw-project/locations/europe-west4/publishers/google/models/gemini-live-2.5-flash',
    );
    // Only the model changed: the rest of the SDK's setup message is as it was sent.
    expect(setup.replace('gw-project/locations/europe-west4', 'client-project/locations/us-east5')).toContain(
      '"model":"projects/client-project/locations/us-east5/publishers/google/models/gemini-live-2.5-flash"',
    );
    const line = await gw.waitForLine((l) => l.provider === 'vertex' && l.end_reason);
    expect(line).toMatchObject({
      model: 'gemini-live-2.5-flash',
      key: 'vx',
      usage: { input_tokens: 2 * g.promptTokenCount },
    });
  });
});

function fakeAuthClient(token = 'ya29.client-token') {
  const authClient = new OAuth2Client();
  authClient.setCredentials({ access_token: token, expiry_date: Date.now() + 3_600_000 });
  return authClient;
}

describe('governance at the handshake, usage charged as it arrives', () => {
  let gw: TestGateway;
  const VK = fakeKey('vk-rt');
  const VK_ONE = fakeKey('vk-one');
  let clock = Date.UTC(2026, 11, 4, 10, 0, 5);
  beforeAll(async () => {
    gw = await startGateway({
      providers: {
        openai: { keys: [{ value: fakeKey() }], network_config: { base_url: mock.url } },
        gemini: { keys: [{ value: fakeKey('g') }], network_config: { base_url: mock.url } },
        azure: { keys: [{ value: fakeKey('az'), azure_key_config: { endpoint: mock.url } }] },
      },
      governance: {
        required: true,
        virtual_keys: [
          {
            name: 'rt',
            value: VK,
            providers: ['openai', 'gemini'],
            models: ['gpt-realtime*', 'gemini-2.0*'],
            rate_limit: { tokens_per_minute: 100 },
          },
          { name: 'one', value: VK_ONE, providers: ['openai'], rate_limit: { requests_per_minute: 1 } },
        ],
      },
    });
    gw.gw.plugins.governance.now = () => clock;
  });
  afterAll(() => gw.stop());
  const url = (model = 'gpt-realtime') => `${wsBase(gw)}/openai_passthrough/v1/realtime?model=${model}`;

  async function refused(opened: Promise<Awaited<ReturnType<typeof openSocket>>>, status: number, type: string) {
    const r = await opened;
    expect(r.ok).toBe(false);
    if (r.ok) return undefined;
    expect(r.status).toBe(status);
    expect(JSON.parse(r.body).error.type).toBe(type);
    return r;
  }

  test('refusals (401, 403, 429) answer the handshake before any upstream connection', async () => {
    await refused(openSocket(url()), 401, 'unauthorized');
    await refused(openSocket(url(), ['realtime', `openai-insecure-api-key.${CLIENT_KEY}`]), 401, 'unauthorized');
    await refused(openSocket(url('gpt-4o-realtime')), 401, 'unauthorized');
    await refused(
      openSocket(url('other-model'), ['realtime', `openai-insecure-api-key.${VK}`]),
      403,
      'model_not_allowed',
    );
    const azure = `${wsBase(gw)}/azure_passthrough/openai/v1/realtime?model=gpt-realtime`;
    await refused(openSocket(azure, [], { 'api-key': VK }), 403, 'provider_not_allowed');
    expect(mock.connections.length).toBe(0);
    // requests_per_minute: 1 -> the second session of the minute is refused, with Retry-After.
    const first = await mustOpen(url(), [], { authorization: `Bearer ${VK_ONE}` });
    const r = await refused(openSocket(url(), [], { authorization: `Bearer ${VK_ONE}` }), 429, 'rate_limit_exceeded');
    expect(Number(r!.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(mock.connections.length).toBe(1);
    first.ws.close();
  });

  test('a virtual key in the browser-style subprotocol is consumed; tokens count against the limit while the session is still open', async () => {
    const s = await mustOpen(url(), ['realtime', `openai-insecure-api-key.${VK}`]);
    expect(mock.last.protocols).toEqual(['realtime']);
    expectNoClientCredential(VK);
    await s.waitFor(1);
    s.ws.send(JSON.stringify({ type: 'response.create' }));
    await s.waitFor(4); // ... response.done: 170 tokens, over tokens_per_minute 100
    expect(u.total_tokens).toBeGreaterThan(100);
    await Bun.sleep(50);
    // The session is still open, and its tokens already count: a new session is refused.
    await refused(openSocket(url(), ['realtime', `openai-insecure-api-key.${VK}`]), 429, 'rate_limit_exceeded');
    s.ws.close();
    const line = await gw.waitForLine((l) => l.virtual_key === 'rt' && l.end_reason);
    expect(line.usage.total_tokens).toBe(u.total_tokens);
    // Charged once: as reported, not again from the record at completion.
    await gw.gw.plugins.governance.settled();
    const minute = Math.floor(Date.UTC(2026, 11, 4, 10, 0, 0) / 1000);
    expect(gw.gw.plugins.governance.memory.peek(`skybridge:gov:{rt}:tpm:${minute}`)).toBe(u.total_tokens);
    // The next minute admits again.
    clock += 60_000;
    const again = await mustOpen(url(), ['realtime', `openai-insecure-api-key.${VK}`]);
    again.ws.close();
  });

  test('Gemini Live names its model in the first message: a model the key may not use ends the session (1008) before it reaches the provider', async () => {
    const s = await mustOpen(
      `${wsBase(gw)}/genai_passthrough/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=${VK}`,
    );
    const conn = mock.last;
    expectNoClientCredential(VK);
    s.ws.send(JSON.stringify({ setup: { model: 'models/gemini-2.5-flash-live' } }));
    const closed = await s.closed;
    expect(closed.code).toBe(1008);
    expect(closed.reason).toContain('may not use model');
    expect(conn.received).toEqual([]);
    expect((await mock.waitForClose(conn)).code).toBe(1008);
    const line = await gw.waitForLine((l) => l.end_reason === 'refused');
    expect(line).toMatchObject({
      model: 'gemini-2.5-flash-live',
      virtual_key: 'rt',
      outcome: 'rejected',
      error: { type: 'model_not_allowed' },
    });
  });
});

describe('a session is priced report by report', () => {
  test('cost_usd on the session line is the sum of its responses; the budget and the cost metric add the same', async () => {
    const VK = fakeKey('vk-cost');
    const gw = await startGateway({
      providers: { openai: { keys: [{ value: fakeKey() }], network_config: { base_url: mock.url } } },
      governance: {
        virtual_keys: [{ name: 'cost', value: VK, budget: { max_cost_usd: 5, period: 'day' } }],
        // USD per million tokens: input 4, output 16, cached input 0.4.
        prices: { 'gpt-realtime': { input_per_million: 4, output_per_million: 16, cache_read_per_million: 0.4 } },
      },
    });
    gw.gw.plugins.governance.now = () => Date.UTC(2026, 11, 4, 10, 0, 5);
    try {
      const s = await mustOpen(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`, [
        'realtime',
        `openai-insecure-api-key.${VK}`,
      ]);
      await s.waitFor(1);
      s.ws.send(JSON.stringify({ type: 'response.create' }));
      await s.waitFor(4);
      s.ws.send(JSON.stringify({ type: 'response.create' }));
      await s.waitFor(7);
      s.ws.close();
      const line = await gw.waitForLine((l) => l.virtual_key === 'cost' && l.end_reason);
      // One response.done: input 120 (64 of them cached), output 50.
      const cached = u.input_token_details.cached_tokens;
      const oneNano = ((u.input_tokens - cached) * 4 + u.output_tokens * 16 + cached * 0.4) * 1000;
      expect(line.usage.total_tokens).toBe(2 * u.total_tokens);
      expect(line.cost_usd).toBe((2 * oneNano) / 1e9);
      expect(line.price_source).toBe('config');
      await gw.gw.plugins.governance.settled();
      const day = Math.floor(Date.UTC(2026, 11, 4) / 1000);
      expect(gw.gw.plugins.governance.memory.peek(`skybridge:gov:{cost}:usd:day:${day}`)).toBe(2 * oneNano);
      const metrics = await (await fetch(`${gw.url}/metrics`)).text();
      const costLine = metrics
        .split('\n')
        .find((l) => l.startsWith('skybridge_cost_usd_total{provider="openai",model="gpt-realtime"}'));
      expect(Number(costLine?.split(' ').at(-1))).toBeCloseTo((2 * oneNano) / 1e9, 12);
    } finally {
      await gw.stop();
    }
  });
});

describe('metrics, traces, shutdown and reload', () => {
  test('skybridge_websocket_sessions while open; requests and tokens counted; one server span per session and one for its handshake', async () => {
    const spans: any[] = [];
    const collector = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      async fetch(req) {
        const body = (await req.json()) as any;
        for (const rs of body.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) spans.push(...ss.spans);
        return Response.json({});
      },
    });
    const gw = await startGateway({
      providers: { openai: { keys: [{ value: fakeKey() }], network_config: { base_url: mock.url } } },
      tracing: { endpoint: `http://127.0.0.1:${collector.port}/v1/traces` },
    });
    try {
      const scrape = async () => (await fetch(`${gw.url}/metrics`)).text();
      const s = await mustOpen(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
      expect(await scrape()).toContain('skybridge_websocket_sessions 1');
      s.ws.send(JSON.stringify({ type: 'response.create' }));
      await s.waitFor(4);
      // Tokens are counted as reported, before the session ends.
      expect(await scrape()).toContain(
        `skybridge_tokens_total{provider="openai",model="gpt-realtime",direction="input"} ${u.input_tokens}`,
      );
      const traceparent = mock.last.headers.traceparent;
      expect(traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      s.ws.close();
      await gw.waitForLine((l) => l.end_reason);
      const text = await scrape();
      expect(text).toContain('skybridge_websocket_sessions 0');
      expect(text).toContain(
        'skybridge_requests_total{provider="openai",endpoint="openai",status_class="1xx",outcome="ok"} 1',
      );
      // Counted once: not again from the record at completion.
      expect(text).toContain(
        `skybridge_tokens_total{provider="openai",model="gpt-realtime",direction="input"} ${u.input_tokens}`,
      );
      await gw.gw.plugins.tracing.flush();
      const traceId = traceparent!.split('-')[1];
      const mine = spans.filter((sp) => sp.traceId === traceId);
      expect(mine.map((sp) => sp.kind).sort()).toEqual([2, 3]); // SERVER, CLIENT
      const server = mine.find((sp) => sp.kind === 2);
      expect(server.attributes).toContainEqual({ key: 'gen_ai.request.model', value: { stringValue: 'gpt-realtime' } });
    } finally {
      await gw.stop();
      await collector.stop(true);
    }
  });

  test('shutdown waits for open sessions up to the grace period, then closes both sides with 1001', async () => {
    const gw = await startGateway({
      providers: { openai: { keys: [{ value: fakeKey() }], network_config: { base_url: mock.url } } },
    });
    const early = await mustOpen(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
    const late = await mustOpen(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
    const lateUpstream = mock.last;
    const started = performance.now();
    const stopped = gw.gw.shutdown(600);
    await Bun.sleep(100);
    // New sessions are refused meanwhile; open ones keep working.
    const refused = await openSocket(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`).catch(() => ({
      ok: false as const,
      status: 0,
    }));
    expect(refused.ok).toBe(false);
    late.ws.send('{"type":"still.here"}');
    await mock.waitForMessages(1);
    early.ws.close(1000, 'done in time');
    await stopped;
    expect(performance.now() - started).toBeGreaterThanOrEqual(550);
    expect((await late.closed).code).toBe(1001);
    expect((await mock.waitForClose(lateUpstream)).code).toBe(1001);
    const lines = (await gw.logLines()).filter((l) => l.end_reason);
    expect(lines.map((l) => [l.end_reason, l.outcome])).toEqual([
      ['client_close', 'ok'],
      ['shutdown', 'gateway_error'],
    ]);
    expect(lines[1].error.type).toBe('shutdown');
  });

  test('a config reload leaves open sessions on their config; new sessions take the new one', async () => {
    const first = fakeKey('first');
    const second = fakeKey('second');
    const config = (value: string) => ({
      providers: { openai: { keys: [{ name: value.slice(0, 12), value }], network_config: { base_url: mock.url } } },
    });
    const gw = await startGateway(config(first));
    try {
      const open = await mustOpen(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
      const openConn = mock.last;
      expect(openConn.headers.authorization).toBe(`Bearer ${first}`);
      const { writeFileSync, readFileSync } = await import('node:fs');
      const current = JSON.parse(readFileSync(gw.configPath, 'utf8'));
      writeFileSync(gw.configPath, JSON.stringify({ ...current, ...config(second) }));
      const deadline = Date.now() + 5000;
      while (gw.gw.state.reloads.success === 0 && Date.now() < deadline) await Bun.sleep(20);
      expect(gw.gw.state.reloads.success).toBe(1);
      const fresh = await mustOpen(`${wsBase(gw)}/openai_passthrough/v1/realtime?model=gpt-realtime`);
      expect(mock.last.headers.authorization).toBe(`Bearer ${second}`);
      open.ws.send(JSON.stringify({ type: 'response.create' }));
      await open.waitFor(4);
      expect(openConn.received.length).toBe(1);
      open.ws.close();
      fresh.ws.close();
      const lines = await gw.waitForLines(2);
      expect(lines.map((l) => l.key).sort()).toEqual([first.slice(0, 12), second.slice(0, 12)].sort());
    } finally {
      await gw.stop();
    }
  });
});

describe('usage in server messages (usage/realtime.ts)', () => {
  test('only a report is parsed: the event name inside transcript text is no report', () => {
    const delta = JSON.stringify({ type: 'response.output_audio_transcript.delta', delta: 'say "response.done" now' });
    expect(delta).toContain('response.done');
    expect(mayCarryUsage('openai-realtime', delta)).toBe(false);
    const done = JSON.stringify({ type: 'response.done', response: { usage: RT_USAGE.openai } });
    expect(mayCarryUsage('openai-realtime', done)).toBe(true);
    expect(mayCarryUsage('openai-realtime', Buffer.from(done))).toBe(true);
    // A response.done without usage (a cancelled response may have none) reports nothing.
    expect(realtimeUsage('openai-realtime', JSON.stringify({ type: 'response.done', response: {} }))).toBeUndefined();
  });

  test('transcription sessions report per transcript; Gemini thinking tokens count as output', () => {
    const transcript = JSON.stringify({
      type: 'conversation.item.input_audio_transcription.completed',
      usage: {
        type: 'tokens',
        input_tokens: 14,
        output_tokens: 5,
        total_tokens: 19,
        input_token_details: { audio_tokens: 14 },
      },
    });
    expect(realtimeUsage('openai-realtime', transcript)).toEqual({
      input_tokens: 14,
      output_tokens: 5,
      total_tokens: 19,
      input_audio_tokens: 14,
    });
    const live = Buffer.from(
      JSON.stringify({ usageMetadata: { promptTokenCount: 7, candidatesTokenCount: 3, thoughtsTokenCount: 2 } }),
    );
    expect(mayCarryUsage('gemini-live', live)).toBe(true);
    expect(realtimeUsage('gemini-live', live)).toEqual({
      input_tokens: 7,
      output_tokens: 5,
      reasoning_tokens: 2,
      total_tokens: 12,
    });
  });
});
