/**
 * A second reference, for the throughput figure only: the bare proxy of bare-proxy.ts,
 * but reading request and response bodies whole before forwarding them (what Skybridge
 * does for bodies it holds). Reading a small body costs less than streaming it through
 * Bun's fetch, so this is the floor a gateway reading bodies whole starts from.
 *
 * Usage: UPSTREAM=http://127.0.0.1:PORT bun scripts/bench/bare-whole-proxy.ts <port>
 */
const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:9';
const prefix = '/openai_passthrough';

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: Number(process.argv[2] ?? 0),
  idleTimeout: 0,
  maxRequestBodySize: 1 << 30,
  async fetch(req) {
    const url = req.url;
    let path = url.slice(url.indexOf('/', url.indexOf('//') + 2));
    if (path.startsWith(prefix)) path = path.slice(prefix.length);
    const headers = new Headers(req.headers);
    headers.delete('host');
    const body = req.method === 'GET' || req.method === 'HEAD' ? null : await req.arrayBuffer();
    const res = await fetch(upstream + path, { method: req.method, headers, body, redirect: 'manual', decompress: false, signal: req.signal });
    const out = new Headers(res.headers);
    out.delete('transfer-encoding');
    out.delete('content-length');
    return new Response(await res.arrayBuffer(), { status: res.status, headers: out });
  },
});

process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true, port: server.port, pid: process.pid })}\n`);

export {};
