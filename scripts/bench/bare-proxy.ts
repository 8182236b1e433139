/**
 * The reference: a bare `Bun.serve` + `fetch` forwarding proxy, the least a Bun proxy
 * can do. It strips the /openai_passthrough prefix (so clients use the same URLs as on
 * Skybridge), drops `host` and the hop-by-hop `transfer-encoding`, streams the request
 * body through to the upstream and the response body back, and passes the client's
 * abort on. No key injection, no logging, no metrics.
 *
 * Usage: UPSTREAM=http://127.0.0.1:PORT bun scripts/bench/bare-proxy.ts <port>
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
    const res = await fetch(upstream + path, {
      method: req.method,
      headers,
      body: req.body,
      redirect: 'manual',
      decompress: false,
      signal: req.signal,
    });
    const out = new Headers(res.headers);
    out.delete('transfer-encoding');
    out.delete('content-length');
    return new Response(res.body, { status: res.status, headers: out });
  },
});

// Exit cleanly on SIGTERM (so `bun --cpu-prof` writes its profile).
process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true, port: server.port, pid: process.pid })}\n`);

export {};
