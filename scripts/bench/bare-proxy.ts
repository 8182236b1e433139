/**
 * The reference: a bare `Bun.serve` + `fetch` forwarding proxy, the least a Bun proxy
 * can do. It strips the /openai_passthrough prefix (so clients use the same URLs as on
 * Skybridge), drops `host` and the hop-by-hop `transfer-encoding`, streams the request
 * body through to the upstream and the response body back, and passes the client's
 * abort on. No key injection, no logging, no metrics.
 *
 * With `whole`, a second reference for the throughput figure: request and response
 * bodies are read whole before they are forwarded (what Skybridge does for bodies it
 * holds). Reading a small body costs less than streaming it through Bun's fetch, so this
 * is the floor a gateway reading bodies whole starts from.
 *
 * Usage: UPSTREAM=http://127.0.0.1:PORT bun scripts/bench/bare-proxy.ts <port> [whole]
 */
const upstream = process.env.UPSTREAM ?? 'http://127.0.0.1:9';
const prefix = '/openai_passthrough';
const whole = process.argv[3] === 'whole';

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
    const body = !whole ? req.body : req.method === 'GET' || req.method === 'HEAD' ? null : await req.arrayBuffer();
    const res = await fetch(upstream + path, {
      method: req.method,
      headers,
      body,
      redirect: 'manual',
      decompress: false,
      signal: req.signal,
    });
    const out = new Headers(res.headers);
    out.delete('transfer-encoding');
    out.delete('content-length');
    return new Response(whole ? await res.arrayBuffer() : res.body, { status: res.status, headers: out });
  },
});

// Exit cleanly on SIGTERM (so `bun --cpu-prof` writes its profile).
process.on('SIGTERM', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ ready: true, port: server.port, pid: process.pid })}\n`);

export {};
