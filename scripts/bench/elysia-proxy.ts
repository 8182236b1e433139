/**
 * A third reference: the bare proxy reading bodies whole (bare-proxy.ts `whole`), served
 * through Elysia instead of `Bun.serve`'s fetch handler, with the same route options as
 * Skybridge (`app.all(prefix/*)`, `parse: 'none'`). It shows what the HTTP framework
 * alone costs, with nothing of the gateway in it: the floor any Elysia gateway reading
 * bodies whole starts from.
 *
 * Usage: UPSTREAM=http://127.0.0.1:PORT bun scripts/bench/elysia-proxy.ts <port>
 */
import { Elysia } from 'elysia';

const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:9';
const prefix = '/openai_passthrough';

const app = new Elysia({ handler: { standardHostname: false } });
app.all(
  `${prefix}/*`,
  async ({ request }: { request: Request }) => {
    const url = request.url;
    const path = url.slice(url.indexOf('/', url.indexOf('//') + 2) + prefix.length);
    const headers = new Headers(request.headers);
    headers.delete('host');
    const body = request.method === 'GET' || request.method === 'HEAD' ? null : await request.arrayBuffer();
    const res = await fetch(upstream + path, { method: request.method, headers, body, redirect: 'manual', decompress: false, signal: request.signal });
    const out = new Headers(res.headers);
    out.delete('transfer-encoding');
    out.delete('content-length');
    return new Response(await res.arrayBuffer(), { status: res.status, headers: out });
  },
  { parse: 'none' },
);
app.get('/health', () => new Response('ok'));
app.listen({ hostname: '127.0.0.1', port: Number(process.argv[2] ?? 0), idleTimeout: 0, maxRequestBodySize: 1 << 30 });

process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true, port: app.server?.port, pid: process.pid })}\n`);
