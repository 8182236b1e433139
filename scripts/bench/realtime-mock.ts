/**
 * Bench WebSocket upstream for scripts/bench/realtime.ts: echoes every message as it came
 * (text as text, binary as binary), and answers the text `close-me` by closing with 4000.
 * Prints one JSON line per event the bench times, with an absolute high-resolution time
 * (performance.timeOrigin + performance.now(), comparable across processes):
 *   {"ready":PORT}   {"closed":ID,"code":N,"at":MS}   {"closing":ID,"at":MS}
 * where ID is the `id` query parameter of the session's handshake.
 *
 * Usage: bun scripts/bench/realtime-mock.ts [port]
 */
const now = () => performance.timeOrigin + performance.now();

const server = Bun.serve<{ id: string }>({
  hostname: '127.0.0.1',
  port: Number(process.argv[2] ?? 0),
  idleTimeout: 0,
  fetch(req, srv) {
    const id = new URL(req.url).searchParams.get('id') ?? '';
    if (srv.upgrade(req, { data: { id } })) return undefined;
    return new Response('expected a WebSocket handshake', { status: 426 });
  },
  websocket: {
    idleTimeout: 0,
    maxPayloadLength: 64 * 1024 * 1024,
    message(ws, message) {
      if (message === 'close-me') {
        process.stdout.write(`${JSON.stringify({ closing: ws.data.id, at: now() })}\n`);
        ws.close(4000, 'closed by the upstream');
        return;
      }
      ws.send(message);
    },
    close(ws, code) {
      process.stdout.write(`${JSON.stringify({ closed: ws.data.id, code, at: now() })}\n`);
    },
  },
});
process.stdout.write(`${JSON.stringify({ ready: server.port })}\n`);
