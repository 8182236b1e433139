/**
 * Bodies relayed chunk by chunk arrive byte for byte, whatever the reader's pace: the
 * relay frees each chunk's memory once Bun's server asked for the next one
 * (src/proxy/relay.ts, `freeChunk`), which is only right if the server has sent
 * or copied it by then. These tests hash what the upstream sent and what the client
 * got, with a fast reader, with a reader that stops reading its socket (so the
 * gateway's writes back up), and for the bodies whose chunks a usage scanner keeps
 * (JSON without a length, compressed JSON), where usage must still be read.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { fakeKey, startGateway, type TestGateway } from './support/gateway.ts';
import { chatAnswer, MOCK_USAGE, MockUpstream } from './support/mock-upstream.ts';
import { seededRandom } from './support/random.ts';

let mock: MockUpstream;
let gw: TestGateway;

beforeAll(async () => {
  mock = new MockUpstream();
  gw = await startGateway({
    providers: { openai: { keys: [{ name: 'k', value: fakeKey() }], network_config: { base_url: mock.url } } },
  });
});
afterAll(async () => {
  await gw.stop();
  await mock.stop();
});

const sha256 = (bytes: Uint8Array) => new Bun.CryptoHasher('sha256').update(bytes).digest('hex');

/** Random bytes in chunks of random sizes (1 B to 256 KB; sizes the same for a given seed). */
function randomChunks(seed: number, total: number): Uint8Array[] {
  const rand = seededRandom(seed);
  const chunks: Uint8Array[] = [];
  for (let sent = 0; sent < total; ) {
    const size = Math.min(total - sent, 1 + rand(1 + rand(256 * 1024)));
    chunks.push(new Uint8Array(randomBytes(size)));
    sent += size;
  }
  return chunks;
}

/** An upstream body sent chunk by chunk (a fresh copy of each, as a real socket would give). */
function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(controller) {
      if (i >= chunks.length) controller.close();
      else controller.enqueue(chunks[i++]!.slice());
    },
  });
}

const concat = (chunks: Uint8Array[]) => new Uint8Array(Buffer.concat(chunks));

/**
 * GET over a raw socket that pauses reading now and then (long enough for the socket
 * buffers to fill and the gateway's writes to back up); returns the de-chunked body.
 */
function slowGet(url: string, path: string): Promise<{ status: number; body: Uint8Array }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        `GET ${path} HTTP/1.1\r\nhost: ${hostname}:${port}\r\nauthorization: Bearer sk-dummy\r\nconnection: close\r\n\r\n`,
      );
    });
    let received = 0;
    let nextPause = 256 * 1024;
    // Pausing 100 ms per MB read, while the gateway gets the whole body from the mock in
    // well under that: most of the body has to wait in the gateway's own send buffers.
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      received += d.byteLength;
      if (received >= nextPause) {
        nextPause += 1024 * 1024;
        socket.pause();
        setTimeout(() => socket.resume(), 100);
      }
    });
    socket.on('error', reject);
    socket.on('close', () => {
      try {
        resolve(parseChunkedResponse(Buffer.concat(parts)));
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** Status and body of an HTTP/1.1 response (chunked or with a content-length). */
function parseChunkedResponse(raw: Buffer): { status: number; body: Uint8Array } {
  const headEnd = raw.indexOf('\r\n\r\n');
  const head = raw.subarray(0, headEnd).toString('latin1');
  const status = Number(head.split(' ')[1]);
  let at = headEnd + 4;
  if (!/^transfer-encoding:\s*chunked/im.test(head)) return { status, body: new Uint8Array(raw.subarray(at)) };
  const out: Buffer[] = [];
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', at);
    const size = parseInt(raw.subarray(at, lineEnd).toString('latin1'), 16);
    if (size === 0) break;
    out.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
  return { status, body: new Uint8Array(Buffer.concat(out)) };
}

describe('relayed bodies arrive byte for byte', () => {
  test('24 MB binary download, fast reader', async () => {
    const chunks = randomChunks(1, 24 * 1024 * 1024);
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/files/f1/content'
        ? new Response(streamOf(chunks), { headers: { 'content-type': 'application/octet-stream' } })
        : undefined,
    );
    const res = await fetch(`${gw.url}/openai_passthrough/v1/files/f1/content`, {
      headers: { authorization: 'Bearer sk-dummy' },
    });
    expect(res.status).toBe(200);
    const got = new Uint8Array(await res.arrayBuffer());
    expect(got.byteLength).toBe(24 * 1024 * 1024);
    expect(sha256(got)).toBe(sha256(concat(chunks)));
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.bytes_out).toBe(24 * 1024 * 1024);
  });

  test('16 MB binary download, a reader that stops reading its socket', async () => {
    const chunks = randomChunks(2, 16 * 1024 * 1024);
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/files/f2/content'
        ? new Response(streamOf(chunks), { headers: { 'content-type': 'application/octet-stream' } })
        : undefined,
    );
    const { status, body } = await slowGet(gw.url, '/openai_passthrough/v1/files/f2/content');
    expect(status).toBe(200);
    expect(body.byteLength).toBe(16 * 1024 * 1024);
    expect(sha256(body)).toBe(sha256(concat(chunks)));
  }, 30_000);

  test('an SSE stream of many frames, slow reader: every byte, and its usage read', async () => {
    const enc = new TextEncoder();
    const frames: Uint8Array[] = [];
    const rand = seededRandom(3);
    for (let i = 0; i < 3000; i++) {
      const content = `${'x'.repeat(rand(4000))} ✓ ${i}`;
      frames.push(
        enc.encode(
          `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`,
        ),
      );
    }
    frames.push(
      enc.encode(
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 5, completion_tokens: 3000, total_tokens: 3005 } })}\n\ndata: [DONE]\n\n`,
      ),
    );
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/sse-bytes'
        ? new Response(streamOf(frames), { headers: { 'content-type': 'text/event-stream' } })
        : undefined,
    );
    const { status, body } = await slowGet(gw.url, '/openai_passthrough/v1/sse-bytes');
    expect(status).toBe(200);
    expect(sha256(body)).toBe(sha256(concat(frames)));
    const line = await gw.waitForLine((l) => l.path === '/v1/sse-bytes');
    expect(line.usage).toMatchObject({ input_tokens: 5, output_tokens: 3000 });
  }, 30_000);

  test('a 3 MB JSON answer without a length: bytes intact and usage read (the scanner keeps its chunks)', async () => {
    const answer = { ...chatAnswer(), padding: 'p'.repeat(3 * 1024 * 1024) };
    const bytes = new TextEncoder().encode(JSON.stringify(answer));
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < bytes.byteLength; at += 65_536) pieces.push(bytes.subarray(at, at + 65_536));
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/big-json'
        ? new Response(streamOf(pieces), { headers: { 'content-type': 'application/json' } })
        : undefined,
    );
    const res = await fetch(`${gw.url}/openai_passthrough/v1/big-json`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-dummy' },
      body: '{"model":"gpt-4o-mini"}',
    });
    const got = new Uint8Array(await res.arrayBuffer());
    expect(sha256(got)).toBe(sha256(bytes));
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.usage).toMatchObject({ input_tokens: MOCK_USAGE.input, output_tokens: MOCK_USAGE.output });
  });

  test('a gzip-compressed 2 MB JSON answer: the compressed bytes as sent, and usage read', async () => {
    const answer = { ...chatAnswer(), padding: Array.from({ length: 60_000 }, (_, i) => `w${i}`).join(' ') };
    const gz = new Uint8Array(gzipSync(JSON.stringify(answer)));
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < gz.byteLength; at += 4096) pieces.push(gz.subarray(at, at + 4096));
    mock.respondWith((_req, rec) =>
      rec.path === '/v1/big-gzip'
        ? new Response(streamOf(pieces), {
            headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
          })
        : undefined,
    );
    const res = await fetch(`${gw.url}/openai_passthrough/v1/big-gzip`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-dummy' },
      body: '{"model":"gpt-4o-mini"}',
      decompress: false,
    });
    expect(res.headers.get('content-encoding')).toBe('gzip');
    const got = new Uint8Array(await res.arrayBuffer());
    expect(sha256(got)).toBe(sha256(gz));
    const line = await gw.waitForLine((l) => l.request_id === res.headers.get('x-request-id'));
    expect(line.usage).toMatchObject({ input_tokens: MOCK_USAGE.input, output_tokens: MOCK_USAGE.output });
  });
});
