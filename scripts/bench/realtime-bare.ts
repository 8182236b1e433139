/**
 * The reference for scripts/bench/realtime.ts: the least a WebSocket relay on this stack
 * does. Bun.serve accepts the client once a `ws` client (Bun's native implementation, as
 * the gateway uses) has opened the upstream, then messages are sent on both ways as they
 * come, closes mirrored. No credentials, usage, limits, logs or metrics.
 *
 * Usage: bun scripts/bench/realtime-bare.ts <upstream port> [port]; prints {"ready":PORT}.
 */
import type { ServerWebSocket } from 'bun';
import WebSocket from 'ws';

const upstreamPort = Number(process.argv[2]);
interface Pair {
  upstream: WebSocket;
  client?: ServerWebSocket<Pair>;
}

const server = Bun.serve<Pair>({
  hostname: '127.0.0.1',
  port: Number(process.argv[3] ?? 0),
  async fetch(req, srv) {
    const url = new URL(req.url);
    const upstream = new WebSocket(`ws://127.0.0.1:${upstreamPort}${url.pathname}${url.search}`, [], {
      perMessageDeflate: false,
    });
    const pair: Pair = { upstream };
    await new Promise<void>((resolve, reject) => {
      upstream.on('open', () => resolve());
      upstream.on('error', reject);
    });
    upstream.on('message', (data, isBinary) => {
      if (isBinary) pair.client?.sendBinary(data);
      else pair.client?.sendText(data.toString());
    });
    upstream.on('close', (code, reason) =>
      pair.client?.close(code === 1005 || code === 1006 ? 1000 : code, reason.toString()),
    );
    if (srv.upgrade(req, { data: pair })) return undefined;
    upstream.close();
    return new Response('expected a WebSocket handshake', { status: 426 });
  },
  websocket: {
    idleTimeout: 0,
    open(ws) {
      ws.data.client = ws;
    },
    message(ws, message) {
      ws.data.upstream.send(message);
    },
    close(ws, code, reason) {
      if (code === 1005 || code === 1006) ws.data.upstream.close();
      else ws.data.upstream.close(code, reason);
    },
  },
});
process.stdout.write(`${JSON.stringify({ ready: server.port })}\n`);
