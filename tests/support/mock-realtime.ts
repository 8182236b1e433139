/**
 * A local stand-in for the providers' WebSocket APIs (OpenAI and Azure Realtime, Gemini
 * and Vertex Live). It records every handshake (path, query, headers, offered
 * subprotocols) and every message it received, byte for byte and with its kind, and
 * answers like the real API: OpenAI sends `session.created` on connect and, for each
 * `response.create`, a text delta, an audio delta and `response.done` with usage; Gemini
 * answers `setup` with `setupComplete` and each turn with model text and a closing
 * message carrying `usageMetadata` (as binary frames, as Google sends them). A test may
 * refuse handshakes (`refuseWith`) or take over a connection (`onMessage`).
 */
import type { Server, ServerWebSocket } from 'bun';

export interface RtMessage {
  binary: boolean;
  bytes: Uint8Array;
  text: string;
}

export interface RtConnection {
  path: string;
  query: string;
  headers: Record<string, string>;
  /** Subprotocols the client offered, in order. */
  protocols: string[];
  received: RtMessage[];
  sent: RtMessage[];
  /** The close the mock received (or saw: 1006 for a lost connection). */
  closed: { code: number; reason: string } | undefined;
  ws: ServerWebSocket<RtConnection> | undefined;
  send(message: string | Uint8Array): void;
}

/** What the mock reports per response (OpenAI) and per turn (Gemini), for tests to compare with the log. */
export const RT_USAGE = {
  openai: {
    input_tokens: 120,
    output_tokens: 50,
    total_tokens: 170,
    input_token_details: { cached_tokens: 64, text_tokens: 20, audio_tokens: 100 },
    output_token_details: { text_tokens: 10, audio_tokens: 40 },
  },
  gemini: {
    promptTokenCount: 30,
    responseTokenCount: 12,
    totalTokenCount: 42,
    promptTokensDetails: [{ modality: 'TEXT', tokenCount: 30 }],
    responseTokensDetails: [{ modality: 'AUDIO', tokenCount: 12 }],
  },
} as const;

type Refuser = (req: Request, path: string) => Response | undefined;

const enc = new TextEncoder();
const dec = new TextDecoder();

export class MockRealtime {
  readonly connections: RtConnection[] = [];
  /** Answer handshakes with this instead of accepting them (undefined: accept). */
  refuseWith: Refuser | undefined;
  /** Take over a connection's messages (return true when handled). */
  onMessage: ((conn: RtConnection, message: RtMessage) => boolean | undefined) | undefined;
  /** Called for each ping the mock receives (it answers them itself). */
  onPing: ((conn: RtConnection, data: Buffer) => void) | undefined;
  /** Delay before each answer the mock sends on its own (ms). */
  answerDelayMs = 0;
  /** Delay before a handshake is answered (ms). */
  handshakeDelayMs = 0;
  private readonly server: Server<RtConnection>;
  /** Bumped by reset(): a handshake delayed past it belongs to an earlier test and is refused. */
  private generation = 0;

  constructor(options: { tls?: { cert: string; key: string } } = {}) {
    this.server = Bun.serve<RtConnection>({
      hostname: '127.0.0.1',
      port: 0,
      idleTimeout: 0,
      ...(options.tls && { tls: options.tls }),
      fetch: async (req, server) => {
        const generation = this.generation;
        if (this.handshakeDelayMs > 0) await Bun.sleep(this.handshakeDelayMs);
        if (generation !== this.generation) return new Response('from an earlier test', { status: 503 });
        const url = req.url;
        const pathStart = url.indexOf('/', url.indexOf('//') + 2);
        const q = url.indexOf('?', pathStart);
        const path = q < 0 ? url.slice(pathStart) : url.slice(pathStart, q);
        const refused = this.refuseWith?.(req, path);
        if (refused) return refused;
        const protocols = (req.headers.get('sec-websocket-protocol') ?? '')
          .split(',')
          .map((p) => p.trim())
          .filter(Boolean);
        const conn: RtConnection = {
          path,
          query: q < 0 ? '' : url.slice(q + 1),
          headers: Object.fromEntries(req.headers),
          protocols,
          received: [],
          sent: [],
          closed: undefined,
          ws: undefined,
          send(message) {
            const binary = typeof message !== 'string';
            this.sent.push({
              binary,
              bytes: binary ? message : enc.encode(message),
              text: binary ? dec.decode(message) : message,
            });
            if (binary) this.ws!.sendBinary(message);
            else this.ws!.sendText(message);
          },
        };
        const headers: Record<string, string> = { 'x-request-id': `rt_req_${this.connections.length + 1}` };
        if (protocols.includes('realtime')) headers['sec-websocket-protocol'] = 'realtime';
        this.connections.push(conn);
        if (server.upgrade(req, { data: conn, headers })) return undefined;
        return new Response('expected a WebSocket handshake', { status: 426 });
      },
      websocket: {
        maxPayloadLength: 64 * 1024 * 1024,
        open: (ws) => {
          ws.data.ws = ws;
          if (ws.data.path.endsWith('/realtime'))
            this.later(ws.data, () => ws.data.send(openaiEvent('session.created')));
        },
        message: (ws, raw) => {
          const conn = ws.data;
          const binary = typeof raw !== 'string';
          const message: RtMessage = binary
            ? { binary, bytes: new Uint8Array(raw), text: dec.decode(raw) }
            : { binary, bytes: enc.encode(raw), text: raw };
          conn.received.push(message);
          if (this.onMessage?.(conn, message)) return;
          this.answer(conn, message);
        },
        ping: (ws, data) => this.onPing?.(ws.data, data),
        close: (ws, code, reason) => {
          ws.data.closed = { code, reason };
        },
      },
    });
  }

  get url(): string {
    return `${this.server.protocol}://127.0.0.1:${this.server.port}`;
  }

  get last(): RtConnection {
    const c = this.connections.at(-1);
    if (!c) throw new Error('mock realtime upstream received no handshake');
    return c;
  }

  /** Wait until the last connection has received n messages (or closed). */
  async waitForMessages(n: number, timeoutMs = 5000): Promise<RtConnection> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const c = this.connections.at(-1);
      if (c && (c.received.length >= n || c.closed)) return c;
      await Bun.sleep(5);
    }
    throw new Error(`mock realtime upstream did not receive ${n} messages`);
  }

  async waitForClose(conn = this.last, timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + timeoutMs;
    while (!conn.closed && Date.now() < deadline) await Bun.sleep(2);
    if (!conn.closed) throw new Error('mock realtime connection did not close');
    return conn.closed;
  }

  reset(): void {
    this.generation++;
    this.connections.length = 0;
    this.refuseWith = undefined;
    this.onMessage = undefined;
    this.onPing = undefined;
    this.answerDelayMs = 0;
    this.handshakeDelayMs = 0;
  }

  async stop(): Promise<void> {
    await this.server.stop(true);
  }

  private later(conn: RtConnection, send: () => void): void {
    if (this.answerDelayMs > 0) setTimeout(() => conn.closed || send(), this.answerDelayMs);
    else send();
  }

  private answer(conn: RtConnection, message: RtMessage): void {
    let event: any;
    try {
      event = JSON.parse(message.text);
    } catch {
      return; // audio frames and other binary input: nothing to answer
    }
    if (conn.path.endsWith('/realtime')) {
      if (event.type === 'response.create') {
        this.later(conn, () => {
          conn.send(openaiEvent('response.output_text.delta', { delta: 'Hello from the mock' }));
          conn.send(
            openaiEvent('response.output_audio.delta', { delta: Buffer.from('audio-bytes').toString('base64') }),
          );
          conn.send(
            openaiEvent('response.done', {
              response: { id: 'resp_1', object: 'realtime.response', status: 'completed', usage: RT_USAGE.openai },
            }),
          );
        });
      }
      return;
    }
    // Gemini / Vertex Live: answers as binary frames holding JSON.
    if (event.setup) this.later(conn, () => conn.send(enc.encode(JSON.stringify({ setupComplete: {} }))));
    else if (event.clientContent || event.realtimeInput) {
      this.later(conn, () => {
        conn.send(
          enc.encode(JSON.stringify({ serverContent: { modelTurn: { parts: [{ text: 'Hello from Live' }] } } })),
        );
        conn.send(
          enc.encode(JSON.stringify({ serverContent: { turnComplete: true }, usageMetadata: RT_USAGE.gemini })),
        );
      });
    }
  }
}

let eventId = 0;
function openaiEvent(type: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({ type, event_id: `event_${++eventId}`, ...fields });
}
