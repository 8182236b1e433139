/**
 * A WebSocket client for tests that records what it receives (kind and bytes), its close,
 * and pings; built on the `ws` API (Bun's own implementation), which also reports a
 * refused handshake's status and body.
 */
import WebSocket from 'ws';

export interface Received {
  binary: boolean;
  bytes: Uint8Array;
  text: string;
}

export interface TestSocket {
  ws: WebSocket;
  received: Received[];
  pings: Buffer[];
  /** Resolves with the close code and reason this client saw. */
  closed: Promise<{ code: number; reason: string; at: number }>;
  /** Wait until n messages arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<Received[]>;
}

export type Opened = { ok: true; socket: TestSocket } | { ok: false; status: number; headers: Headers; body: string };

/** Connect; resolves once open, or with the HTTP answer that refused the handshake. */
export function openSocket(
  url: string,
  protocols: string[] = [],
  headers: Record<string, string> = {},
  tls: { ca?: string } = {},
): Promise<Opened> {
  const ws = new WebSocket(url, protocols, {
    headers,
    perMessageDeflate: false,
    maxPayload: 256 * 1024 * 1024,
    ...tls,
  });
  const received: Received[] = [];
  const pings: Buffer[] = [];
  ws.on('message', (data, binary) => received.push({ binary, bytes: new Uint8Array(data), text: data.toString() }));
  ws.on('ping', (data) => pings.push(data));
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), at: performance.now() })),
  );
  const socket: TestSocket = {
    ws,
    received,
    pings,
    closed,
    async waitFor(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < n) {
        if (Date.now() > deadline) throw new Error(`received ${received.length} of ${n} messages`);
        await Bun.sleep(2);
      }
      return received;
    },
  };
  return new Promise((resolve, reject) => {
    ws.on('open', () => resolve({ ok: true, socket }));
    ws.on('unexpected-response', async (_req, res) => {
      let body = '';
      for await (const chunk of res as AsyncIterable<Buffer>) body += chunk.toString();
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
      ws.terminate();
      resolve({ ok: false, status: res.statusCode ?? 0, headers: h, body });
    });
    ws.on('error', (err) => reject(err));
  });
}

/** Connect and expect the upgrade to be accepted. */
export async function mustOpen(
  url: string,
  protocols: string[] = [],
  headers: Record<string, string> = {},
  tls: { ca?: string } = {},
) {
  const opened = await openSocket(url, protocols, headers, tls);
  if (!opened.ok) throw new Error(`handshake refused: ${opened.status} ${opened.body}`);
  return opened.socket;
}
