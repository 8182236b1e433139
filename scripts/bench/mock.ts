/**
 * Bench mock upstream: answers like an LLM API, as cheaply as it can (it shares a core
 * with the load generator).
 *
 *   POST .../chat/completions            ~1 KB JSON chat completion with usage
 *   POST .../chat/completions?stream=1&chunks=N&gap=MS
 *                                        SSE: N chunk frames `gap` ms apart (first at once),
 *                                        the last with usage, then [DONE]
 *   POST .../upload                      sink: hashes the body, answers {bytes, sha256}
 *   GET  .../download?bytes=N            N bytes of the shared pattern (content-length set)
 *   POST /v1/traces                      OTLP/HTTP sink: reads the body, answers {}
 *   anything else                        {"ok":true}
 *
 * Usage: bun scripts/bench/mock.ts <port>
 */
import { chatAnswer, chatStreamFrame, PATTERN_CHUNK, PROVIDER_HEADERS, patternChunk } from './common.ts';

const port = Number(process.argv[2] ?? 0);
const answer = new TextEncoder().encode(chatAnswer());
const jsonHeaders = { 'content-type': 'application/json', ...PROVIDER_HEADERS };
const sseHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  ...PROVIDER_HEADERS,
};
const enc = new TextEncoder();
const frameCache = new Map<string, Uint8Array>();
function frame(i: number, n: number): Uint8Array {
  const k = `${i}/${n}`;
  let f = frameCache.get(k);
  if (!f) frameCache.set(k, (f = enc.encode(chatStreamFrame(i, n))));
  return f;
}

const server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  idleTimeout: 0,
  maxRequestBodySize: 1 << 30,
  async fetch(req) {
    const url = req.url;
    const pathStart = url.indexOf('/', url.indexOf('//') + 2);
    const q = url.indexOf('?', pathStart);
    const path = q < 0 ? url.slice(pathStart) : url.slice(pathStart, q);

    if (path.endsWith('/chat/completions')) {
      if (q < 0) {
        if (req.body) await req.arrayBuffer();
        return new Response(answer, { headers: jsonHeaders });
      }
      const params = new URLSearchParams(url.slice(q + 1));
      if (req.body) await req.arrayBuffer();
      if (params.get('stream') !== '1') return new Response(answer, { headers: jsonHeaders });
      const chunks = Number(params.get('chunks') ?? 10);
      const gap = Number(params.get('gap') ?? 50);
      let i = 0;
      return new Response(
        new ReadableStream({
          async pull(controller) {
            if (i > 0 && i < chunks) await Bun.sleep(gap);
            if (i > chunks) return controller.close();
            // The last chunk frame and [DONE] go together, as providers do.
            controller.enqueue(
              i === chunks - 1 ? Buffer.concat([frame(i, chunks), frame(chunks, chunks)]) : frame(i, chunks),
            );
            i = i === chunks - 1 ? chunks + 1 : i + 1;
          },
        }),
        { headers: sseHeaders },
      );
    }

    if (path.endsWith('/upload')) {
      const hasher = new Bun.CryptoHasher('sha256');
      let bytes = 0;
      if (req.body) {
        for await (const chunk of req.body) {
          bytes += chunk.byteLength;
          hasher.update(chunk);
        }
      }
      return Response.json({ bytes, sha256: hasher.digest('hex') });
    }

    if (path.endsWith('/download')) {
      const total = Number(new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('bytes') ?? 100 * 1024 * 1024);
      let i = 0;
      let left = total;
      return new Response(
        new ReadableStream({
          pull(controller) {
            if (left <= 0) return controller.close();
            const n = Math.min(PATTERN_CHUNK, left);
            controller.enqueue(patternChunk(i++, n));
            left -= n;
          },
        }),
        { headers: { 'content-type': 'application/octet-stream', 'content-length': String(total) } },
      );
    }

    if (path === '/v1/traces') {
      if (req.body) await req.arrayBuffer();
      return Response.json({});
    }

    return Response.json({ ok: true });
  },
});

process.stdout.write(`${JSON.stringify({ ready: true, port: server.port, pid: process.pid })}\n`);
