/**
 * WebSocket sessions on the passthrough routes: OpenAI and Azure OpenAI Realtime, Gemini
 * and Vertex Live (which paths, the model, the usage format: the provider's `realtime`).
 *
 * A handshake goes through the same steps as an HTTP request up to the upstream call:
 * context (prepare.ts), credentials dropped, governance (pipeline.onRequest), key choice
 * and the provider's URL and credential. Then the upstream handshake is made, and only
 * when it succeeded is the client's upgrade accepted (`server.upgrade`, whose socket
 * handlers are SESSION_SOCKET below); a refused upstream handshake is answered to the
 * client as the HTTP response it was (status, headers, body). From then on one
 * RealtimeSession relays messages both ways, in order and unchanged (text as text,
 * binary as binary), reads usage from the server's messages as they pass, and ends the
 * request once (completion.ts) when both sides are closed.
 *
 * The upstream side is the `ws` client API, which Bun implements natively (lib/ws.d.ts):
 * Bun's global `WebSocket` reports a refused handshake only as an error message ("Expected
 * 101 status code: 401"), without the body or headers a client needs to see why.
 *
 * Closing: a close frame from either side is relayed to the other with its code and
 * reason at once; a connection lost without one is relayed as a lost connection
 * (terminate), so the other side sees 1006 as it would from the provider. The record is
 * completed when both sides are closed, or CLOSE_WAIT_MS after the first (the other is
 * then terminated), so usage in the upstream's last messages still counts.
 *
 * Backpressure: a client that reads slower than the upstream writes pauses the upstream
 * socket (its TCP window fills; the provider sees backpressure) until the client drains;
 * an upstream that reads slower than the client writes pauses the client's socket. What
 * the gateway holds meanwhile is bounded by `server.websocket.buffer_limit_mb` per
 * direction: crossed, the session is closed with 1013 (try again later). Messages over
 * `server.websocket.max_message_mb` close the session with 1009.
 *
 * Pings: each leg answers its own pings (Bun does, on both sides); a ping from one side
 * is also sent on to the other, so keepalives cross the gateway; pongs are not relayed.
 * An upstream silent for UPSTREAM_PING_MAX_MS (or the provider's stream idle limit, when
 * shorter) is pinged by the gateway, and one that does not answer within as long again is
 * taken for lost (a connection can die without a FIN; a load balancer can drop an idle one).
 * The client side has Bun's own: pinged when silent, closed after 120 s without an answer.
 */

import type { IncomingMessage } from 'node:http';
import type { ServerWebSocket, WebSocketHandler } from 'bun';
import WebSocket from 'ws';
import type { CompiledKey, RuntimeConfig } from '../config/runtime.ts';
import { GatewayError } from '../core/errors.ts';
import { outcomeOf, type SessionEnd } from '../core/outcome.ts';
import type { Pipeline } from '../core/pipeline.ts';
import type { Outcome } from '../core/request.ts';
import type { GatewayState, OpenSession } from '../core/runtime.ts';
import { roundMs } from '../lib/time.ts';
import { subprotocolCredential, subprotocols } from '../providers/credentials.ts';
import type { RealtimeApi } from '../providers/provider.ts';
import type { Route } from '../providers/routes.ts';
import { addUsage, mayCarryUsage, type RealtimeUsageFormat, realtimeUsage } from '../usage/realtime.ts';
import { priceReport } from './accounting.ts';
import type { RequestBody } from './body.ts';
import type { Completion } from './completion.ts';
import { pickKey } from './exchange.ts';
import { clientResponseHeaders } from './headers.ts';
import { type IdleWatch, unwatchIdle, watchIdle } from './idle.ts';
import { type Context, prepare } from './prepare.ts';
import { retryAfterMs } from './retry.ts';

const MiB = 1024 * 1024;
/** How long the side that did not close first has to close in turn before it is terminated. */
const CLOSE_WAIT_MS = 2000;
/** The client's socket is paused while the upstream has this much queued and not written. */
const PAUSE_CLIENT_AT = 256 * 1024;
/** How often a paused client is checked for resuming (only while paused). */
const RESUME_CHECK_MS = 20;
/** An upstream silent this long is pinged; one that does not answer within as long again is lost. */
const UPSTREAM_PING_MAX_MS = 30_000;
/** A refused handshake's body is relayed up to this size (an error document). */
const MAX_REFUSAL_BODY = MiB;
const NO_BODY: RequestBody = { kind: 'none' };
/** Headers of the WebSocket handshake itself: the upstream client makes its own. */
const HANDSHAKE_HEADERS = [
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
];
/** Close codes that are never sent in a close frame (RFC 6455 §7.4.1): a lost connection is relayed as one. */
const LOST = new Set([1005, 1006, 1015]);
/** What Bun's server reports for a client message over maxPayloadLength (it sends the client 1009). */
const CLIENT_TOO_BIG = 'Received too big message';

export interface SessionRequest {
  route: Route;
  request: Request;
  server: Bun.Server<unknown> | null;
  rt: GatewayState;
  /** The config and pipeline in force when the handshake arrived: the session keeps them (a reload does not move it). */
  config: RuntimeConfig;
  pipeline: Pipeline;
  path: string;
  query: string;
  done: Completion;
}

/**
 * A WebSocket handshake on a passthrough route: undefined once the client's upgrade was
 * accepted (the session runs on), or the HTTP answer (a refusal, the upstream's own).
 */
export async function openSession(s: SessionRequest): Promise<Response | undefined> {
  const { done, request, server, rt, config, pipeline } = s;
  const record = done.record;
  const ctx = done.begin(
    prepare({
      startedAt: done.startedAt,
      route: s.route,
      request,
      target: { path: s.path, query: s.query },
      body: NO_BODY,
      config,
      record,
      uploadId: undefined,
    }),
  );
  const api = ctx.call.provider.realtime;
  if (!api?.accepts(ctx.path) || !server) {
    return done.refused(
      new GatewayError(
        501,
        'websocket_not_supported',
        `this path is not a WebSocket API of provider ${ctx.provider} (WebSocket APIs: OpenAI /v1/realtime, Azure /openai/realtime and /openai/v1/realtime, Gemini and Vertex Live /ws/...)`,
      ),
    );
  }
  record.stream = true;
  ctx.model = record.model = api.modelOf(ctx.path, ctx.query);
  // With the gateway's keys every client credential goes: subprotocols too (direct keys keep them).
  if (ctx.call.keyed || ctx.call.provider.keyRequired !== undefined) dropCredentialSubprotocols(ctx.upstream.headers);
  try {
    if (pipeline.hasRequestHooks) {
      const refused = done.admit(await pipeline.onRequest(ctx)); // governance: a virtual key, or a refusal
      if (refused) return refused;
    }
    if (ctx.call.noKey) return done.refused(ctx.call.noKey);
    // The upstream handshake may take longer than the connection's idle timeout.
    server.timeout(request, 0);
    const session = new RealtimeSession(ctx, done, pipeline, api, rt);
    const refusal = await session.connect();
    if (refusal) return refusal;
    if (server.upgrade(request, { data: session, headers: session.handshakeHeaders() })) return undefined;
    session.clientLeftDuringHandshake();
    return done.clientGone();
  } catch (err) {
    return done.fault(err);
  }
}

/** Remove the subprotocols that carry a credential from the list going upstream. */
function dropCredentialSubprotocols(headers: Headers): void {
  const offered = subprotocols(headers.get('sec-websocket-protocol'));
  const kept = offered.filter((p) => subprotocolCredential(p) === undefined);
  if (kept.length === offered.length) return;
  if (kept.length > 0) headers.set('sec-websocket-protocol', kept.join(', '));
  else headers.delete('sec-websocket-protocol');
}

/** `https://host/path` -> `wss://host/path` (and http -> ws). */
function webSocketUrl(url: string): string {
  return url.startsWith('https:') ? `wss:${url.slice(6)}` : url.startsWith('http:') ? `ws:${url.slice(5)}` : url;
}

/** Bun's server socket; pause, resume and getBufferedAmount exist at run time but not in bun-types 1.4.5. */
type ClientSocket = ServerWebSocket<RealtimeSession> & {
  pause(): void;
  resume(): void;
  getBufferedAmount(): number;
};

/** How the upstream handshake ended, when not with an open socket. */
type Handshake = { kind: 'open' } | { kind: 'refused'; response: Response } | { kind: 'failed'; error: GatewayError };

const SESSION = Symbol('realtime session');
type Upstream = WebSocket & { [SESSION]: RealtimeSession };

// The upstream socket's listeners: shared functions (the emitter is `this`), no closures per session.
function onUpstreamUpgrade(this: WebSocket, response: IncomingMessage): void {
  (this as Upstream)[SESSION].upstreamHeaders = response.headers;
}
function onUpstreamOpen(this: WebSocket): void {
  (this as Upstream)[SESSION].upstreamOpened();
}
function onUpstreamRefused(this: WebSocket, _request: unknown, response: IncomingMessage): void {
  void (this as Upstream)[SESSION].handshakeRefused(response);
}
function onUpstreamMessage(this: WebSocket, data: Buffer, isBinary: boolean): void {
  (this as Upstream)[SESSION].fromUpstream(data, isBinary);
}
function onUpstreamPing(this: WebSocket, data: Buffer): void {
  (this as Upstream)[SESSION].upstreamPing(data);
}
function onUpstreamPong(this: WebSocket): void {
  (this as Upstream)[SESSION].upstreamAlive();
}
function onUpstreamError(this: WebSocket, error: Error & { code?: string }): void {
  (this as Upstream)[SESSION].upstreamError(error);
}
function onUpstreamClose(this: WebSocket, code: number, reason: Buffer): void {
  (this as Upstream)[SESSION].upstreamClosed(code, reason.toString());
}

/** The server's socket handlers for every session: Bun.serve's `websocket` (http/listener.ts). */
export const SESSION_SOCKET: WebSocketHandler<RealtimeSession> = {
  open: (ws) => ws.data.clientOpened(ws as ClientSocket),
  message: (ws, message) => ws.data.fromClient(message),
  drain: (ws) => ws.data.clientDrained(),
  ping: (ws, data) => ws.data.clientPing(data),
  close: (ws, code, reason) => ws.data.clientClosed(code, reason),
};

type SideState = 'open' | 'closing' | 'closed';

/** One WebSocket session: the upstream socket, the client's once accepted, and the relay between them. */
export class RealtimeSession implements OpenSession, IdleWatch {
  client: ClientSocket | undefined;
  /** The accepted upstream handshake's response headers. */
  upstreamHeaders: IncomingMessage['headers'] | undefined;
  /** When the upstream last sent anything (message, ping, pong): the idle sweep pings it when silent. */
  lastActivity = 0;
  readonly timeoutMs: number;
  private pingOutstanding = false;
  private upstream: Upstream | undefined;
  private key: CompiledKey | undefined;
  private readonly usageFormat: RealtimeUsageFormat;
  private readonly bufferLimit: number;
  private settleHandshake: ((h: Handshake) => void) | undefined;
  private sentAt = 0;
  /** Upstream messages that arrived before the client's socket was open, in order. */
  private pending: Array<string | Buffer> | undefined = [];
  /** The upstream closed before the client's socket was open: relayed once it is. */
  private earlyClose: [code: number, reason: string] | undefined;
  /** The client's first message is still to come and names the model (Gemini Live). */
  private awaitingFirst: boolean;
  private upstreamPaused = false;
  private resumeTimer: ReturnType<typeof setInterval> | undefined;
  private closeTimer: ReturnType<typeof setTimeout> | undefined;
  private clientState: SideState = 'open';
  private upstreamState: SideState = 'open';
  private ended = false;
  private end: SessionEnd | undefined;
  private error: GatewayError | undefined;

  constructor(
    private readonly ctx: Context,
    private readonly done: Completion,
    private readonly pipeline: Pipeline,
    private readonly api: RealtimeApi,
    private readonly rt: GatewayState,
  ) {
    this.usageFormat = api.usage;
    this.bufferLimit = ctx.config.source.server.websocket.buffer_limit_mb * MiB;
    this.timeoutMs = Math.min(UPSTREAM_PING_MAX_MS, ctx.call.settings.idleTimeoutMs);
    this.awaitingFirst = api.firstMessage !== undefined && ctx.model === undefined;
    const r = ctx.record;
    r.messages_in = 0;
    r.messages_out = 0;
  }

  /** The upstream handshake, with the gateway's key: undefined when it is open, else the answer for the client. */
  async connect(): Promise<Response | undefined> {
    const { ctx, pipeline } = this;
    const { call, record, upstream } = ctx;
    const settings = call.settings;
    for (const [name, value] of settings.extraHeaders) upstream.headers.set(name, value);
    const key = call.keyed ? pickKey(ctx, undefined) : undefined;
    this.key = key;
    record.key = key?.name ?? 'direct';
    record.attempts = 1;
    if (key)
      for (const [name, value] of await call.provider.authorize(key, ctx.path)) upstream.headers.set(name, value);
    const url = webSocketUrl(call.provider.url(ctx.path, upstream.query, key, settings));
    const protocols = subprotocols(upstream.headers.get('sec-websocket-protocol'));
    for (const name of HANDSHAKE_HEADERS) upstream.headers.delete(name);
    pipeline.onAttemptStart(ctx, 1); // traceparent on the handshake
    if (ctx.request.signal.aborted) return this.done.clientGone();

    const handshake = new Promise<Handshake>((resolve) => {
      this.settleHandshake = resolve;
    });
    this.sentAt = performance.now();
    const ws = new WebSocket(url, protocols, {
      headers: Object.fromEntries(upstream.headers),
      handshakeTimeout: settings.headerTimeoutMs,
      maxPayload: ctx.config.source.server.websocket.max_message_mb * MiB,
      perMessageDeflate: false,
      followRedirects: false,
      ...settings.tls,
    }) as Upstream;
    ws[SESSION] = this;
    this.upstream = ws;
    ws.on('upgrade', onUpstreamUpgrade);
    ws.on('open', onUpstreamOpen);
    ws.on('unexpected-response', onUpstreamRefused);
    ws.on('message', onUpstreamMessage);
    ws.on('ping', onUpstreamPing);
    ws.on('pong', onUpstreamPong);
    ws.on('error', onUpstreamError);
    ws.on('close', onUpstreamClose);
    ctx.request.signal.addEventListener('abort', this);

    const result = await handshake;
    ctx.request.signal.removeEventListener('abort', this);
    if (pipeline.hasAttemptEndHooks) {
      pipeline.onAttemptEnd(ctx, {
        attempt: 1,
        key: key?.name,
        url,
        startedAt: this.sentAt,
        endedAt: performance.now(),
        status: result.kind === 'open' ? 101 : result.kind === 'refused' ? result.response.status : undefined,
        error: result.kind === 'failed' ? result.error.type : undefined,
      });
    }
    if (result.kind === 'open') return undefined;
    if (ctx.request.signal.aborted) return this.done.clientGone();
    if (result.kind === 'failed') return this.done.failed(result.error);
    this.done.finish(result.response.status, 'ok');
    return result.response;
  }

  /** Settle the upstream handshake once. */
  private settle(h: Handshake): void {
    const settle = this.settleHandshake;
    this.settleHandshake = undefined;
    settle?.(h);
  }

  /** The client went away while the upstream handshake was under way (its request's signal). */
  handleEvent(): void {
    this.upstream?.terminate();
    this.settle({ kind: 'failed', error: new GatewayError(499, 'client_aborted', 'client closed the connection') });
  }

  upstreamOpened(): void {
    const record = this.ctx.record;
    record.ttfb_ms = roundMs(performance.now() - this.sentAt);
    const h = this.upstreamHeaders;
    const id = h?.['x-request-id'] ?? h?.['request-id'] ?? h?.['apim-request-id'];
    if (typeof id === 'string') record.upstream_request_id = id;
    this.lastActivity = performance.now();
    watchIdle(this);
    this.settle({ kind: 'open' });
  }

  upstreamAlive(): void {
    this.lastActivity = performance.now();
    this.pingOutstanding = false;
  }

  /** The upstream was silent for timeoutMs: ping it, or, when the last ping went unanswered, take it for lost. */
  onIdle(): void {
    if (this.upstreamState !== 'open' || this.ended) return;
    if (this.upstreamPaused) {
      // Not read from while the client catches up: its silence says nothing.
      this.lastActivity = performance.now();
      watchIdle(this);
      return;
    }
    if (this.pingOutstanding) {
      this.note(
        'upstream_error',
        new GatewayError(
          502,
          'upstream_broken',
          `${this.ctx.provider} did not answer a WebSocket ping within ${this.timeoutMs / 1000} s`,
        ),
      );
      this.upstream?.terminate();
      return;
    }
    this.pingOutstanding = true;
    this.lastActivity = performance.now();
    this.upstream?.ping();
    watchIdle(this);
  }

  /** The upstream answered the handshake with something other than 101: relayed to the client as it is. */
  async handshakeRefused(res: IncomingMessage): Promise<void> {
    const settle = this.settleHandshake;
    this.settleHandshake = undefined; // the close that follows is not a failure of its own
    if (!settle) {
      this.upstream?.terminate();
      return;
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (typeof value === 'string') headers.set(name, value);
      else if (Array.isArray(value)) for (const v of value) headers.append(name, v);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        chunks.push(chunk);
        size += chunk.byteLength;
        if (size >= MAX_REFUSAL_BODY) break;
      }
    } catch {
      // What arrived is relayed; the status says the rest.
    }
    this.upstream?.terminate();
    const status = res.statusCode ?? 502;
    this.noteKeyHealth(status, headers);
    const record = this.ctx.record;
    record.ttfb_ms = roundMs(performance.now() - this.sentAt);
    record.upstream_request_id = headers.get('x-request-id') ?? headers.get('request-id') ?? undefined;
    const body = Buffer.concat(chunks).subarray(0, MAX_REFUSAL_BODY);
    record.bytes_out = body.byteLength;
    const out = clientResponseHeaders(headers, this.ctx.id);
    out.set('x-skybridge-attempts', '1');
    const valid = status >= 200 && status <= 599;
    settle({
      kind: 'refused',
      response: new Response(status === 204 || status === 304 || !valid ? null : body, {
        status: valid ? status : 502,
        headers: out,
      }),
    });
  }

  /** 401: the key's cached token is dropped; 429 with a stated wait: the key rests for this model. */
  private noteKeyHealth(status: number, headers: Headers): void {
    const key = this.key;
    if (!key) return;
    if (status === 401) key.credential.invalidate();
    else if (status === 429) this.ctx.call.settings.keys.rest(key, this.ctx.model, retryAfterMs(headers) ?? 0);
  }

  upstreamError(error: Error & { code?: string }): void {
    if (this.settleHandshake) {
      const provider = this.ctx.provider;
      this.settle({
        kind: 'failed',
        error: /handshake has timed out/i.test(error.message)
          ? new GatewayError(
              504,
              'upstream_timeout',
              `${provider} did not complete the WebSocket handshake within ${this.ctx.call.settings.headerTimeoutMs / 1000} s`,
            )
          : new GatewayError(
              502,
              'upstream_unreachable',
              `${provider} upstream unreachable: ${error.code ?? error.message ?? 'connection failed'}`,
            ),
      });
      return;
    }
    if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      const limit = this.ctx.config.source.server.websocket.max_message_mb;
      this.note(
        'message_too_large',
        new GatewayError(
          502,
          'upstream_invalid_response',
          `${this.ctx.provider} sent a message over server.websocket.max_message_mb (${limit} MB)`,
        ),
      );
    }
    // The close event follows and ends the session.
  }

  /** The client's upgrade was accepted: its socket is open (called by Bun inside server.upgrade). */
  clientOpened(ws: ClientSocket): void {
    this.client = ws;
    this.rt.sessions.add(this);
    const pending = this.pending;
    this.pending = undefined;
    if (pending) for (const message of pending) this.toClient(message);
    if (this.earlyClose) this.upstreamClosed(...this.earlyClose);
  }

  /** Response headers of the accepted upgrade: the upstream's, filtered as for HTTP, and its subprotocol. */
  handshakeHeaders(): Headers {
    const headers = new Headers();
    for (const [name, value] of Object.entries(this.upstreamHeaders ?? {})) {
      if (typeof value === 'string' && !name.startsWith('sec-websocket-')) headers.set(name, value);
    }
    const out = clientResponseHeaders(headers, this.ctx.id);
    out.set('x-skybridge-attempts', '1');
    // Without it Bun would select the client's first offer itself.
    const protocol = this.upstream?.protocol;
    if (protocol) out.set('sec-websocket-protocol', protocol);
    return out;
  }

  clientLeftDuringHandshake(): void {
    this.upstreamState = 'closing';
    this.upstream?.close(1001, 'client left');
  }

  fromClient(message: string | Buffer): void {
    const upstream = this.upstream;
    if (!upstream || this.upstreamState !== 'open') return;
    const record = this.ctx.record;
    record.messages_in!++;
    record.bytes_in += typeof message === 'string' ? Buffer.byteLength(message) : message.byteLength;
    if (this.awaitingFirst) {
      this.awaitingFirst = false;
      const admitted = this.firstMessage(message);
      if (admitted === undefined) return;
      message = admitted;
    }
    upstream.send(message);
    if (upstream.bufferedAmount > PAUSE_CLIENT_AT) this.upstreamSlow();
  }

  /** Gemini Live's setup names the model: noted, checked by governance, and (Vertex) put in the key's project. */
  private firstMessage(message: string | Buffer): string | Buffer | undefined {
    const text = typeof message === 'string' ? message : message.toString('utf8');
    const first = this.api.firstMessage!(text, this.key);
    if (first.model !== undefined) {
      this.ctx.model = this.ctx.record.model = first.model;
      const refusal = this.pipeline.onModel(this.ctx);
      if (refusal) {
        this.note('refused', refusal);
        this.closeBoth(1008, refusal.message);
        return undefined;
      }
    }
    if (first.message === text) return message;
    return typeof message === 'string' ? first.message : Buffer.from(first.message);
  }

  fromUpstream(data: Buffer, isBinary: boolean): void {
    this.lastActivity = performance.now();
    this.pingOutstanding = false;
    const record = this.ctx.record;
    const message = isBinary ? data : data.toString('utf8');
    if (mayCarryUsage(this.usageFormat, message)) {
      const usage = realtimeUsage(this.usageFormat, message);
      if (usage) {
        addUsage((record.usage ??= {}), usage);
        this.pipeline.onUsage(this.ctx, usage, priceReport(this.ctx, usage));
      }
    }
    if (this.clientState !== 'open') return; // too late to deliver; its usage still counts
    record.messages_out!++;
    record.bytes_out += data.byteLength;
    if (this.pending) this.pending.push(message);
    else this.toClient(message);
  }

  private toClient(message: string | Buffer): void {
    const client = this.client!;
    const status = typeof message === 'string' ? client.sendText(message) : client.sendBinary(message);
    // -1: queued behind a full socket (0 is an empty message, or a socket already closing).
    if (status !== -1) return;
    if (client.getBufferedAmount() > this.bufferLimit) {
      this.note(
        'backpressure',
        new GatewayError(
          503,
          'backpressure_limit',
          `the client read too slowly: more than server.websocket.buffer_limit_mb (${this.bufferLimit / MiB} MB) waited for it`,
        ),
      );
      this.closeBoth(1013, 'client too slow: gateway buffer limit crossed');
    } else if (!this.upstreamPaused) {
      this.upstreamPaused = true;
      this.upstream?.pause();
    }
  }

  clientDrained(): void {
    if (!this.upstreamPaused) return;
    this.upstreamPaused = false;
    this.upstream?.resume();
  }

  /** The upstream reads slower than the client writes: pause the client until it catches up, or end over the limit. */
  private upstreamSlow(): void {
    if (this.upstream!.bufferedAmount > this.bufferLimit) {
      this.note(
        'backpressure',
        new GatewayError(
          503,
          'backpressure_limit',
          `${this.ctx.provider} read too slowly: more than server.websocket.buffer_limit_mb (${this.bufferLimit / MiB} MB) waited for it`,
        ),
      );
      this.closeBoth(1013, 'upstream too slow: gateway buffer limit crossed');
      return;
    }
    if (this.resumeTimer) return;
    this.client?.pause();
    this.resumeTimer = setInterval(() => {
      if (this.upstreamState === 'open' && this.upstream!.bufferedAmount > PAUSE_CLIENT_AT / 2) return;
      clearInterval(this.resumeTimer);
      this.resumeTimer = undefined;
      if (this.clientState === 'open') this.client?.resume();
    }, RESUME_CHECK_MS);
  }

  clientPing(data: Buffer): void {
    if (this.upstreamState === 'open') this.upstream?.ping(data);
  }

  upstreamPing(data: Buffer): void {
    this.upstreamAlive();
    if (this.clientState === 'open') this.client?.ping(data);
  }

  clientClosed(code: number, reason: string): void {
    if (this.clientState === 'closed') return;
    const first = this.clientState === 'open' && this.upstreamState === 'open';
    this.clientState = 'closed';
    if (first) {
      if (code === 1006 && reason === CLIENT_TOO_BIG) {
        const limit = this.ctx.config.source.server.websocket.max_message_mb;
        this.note(
          'message_too_large',
          new GatewayError(
            413,
            'payload_too_large',
            `a client message exceeded server.websocket.max_message_mb (${limit} MB)`,
          ),
        );
        this.relayClose('upstream', 1001, 'client connection closed by the gateway: message too large');
      } else {
        const lost = code === 1006 || code === 1015;
        this.note(
          lost ? 'client_abort' : 'client_close',
          lost ? new GatewayError(499, 'client_aborted', 'client connection lost') : undefined,
        );
        this.relayClose('upstream', code, reason);
      }
    }
    this.closedOneSide();
  }

  upstreamClosed(code: number, reason: string): void {
    if (this.settleHandshake) {
      this.upstreamError(new Error(`connection closed during the handshake (${code})`));
      return;
    }
    if (!this.client) {
      // Closed before the client's socket opened (or before the handshake was answered).
      this.earlyClose ??= [code, reason];
      return;
    }
    if (this.upstreamState === 'closed') return;
    const first = this.upstreamState === 'open' && this.clientState === 'open';
    this.upstreamState = 'closed';
    if (first) {
      const lost = code === 1006 || code === 1015;
      this.note(
        lost ? 'upstream_error' : 'upstream_close',
        lost ? new GatewayError(502, 'upstream_broken', `${this.ctx.provider} WebSocket connection lost`) : undefined,
      );
      this.relayClose('client', code, reason);
    }
    this.closedOneSide();
  }

  /** Shutdown: the grace period is over. */
  close(code: number, reason: string): void {
    this.note(
      'shutdown',
      new GatewayError(503, 'shutdown', 'closed by the gateway when the shutdown grace period ended'),
    );
    this.closeBoth(code, reason);
  }

  /** The first cause of the end is the one logged. */
  private note(end: SessionEnd, error?: GatewayError): void {
    if (this.end !== undefined) return;
    this.end = end;
    this.error = error;
  }

  /** The gateway ends the session: both sides get the same close. */
  private closeBoth(code: number, reason: string): void {
    this.relayClose('client', code, reason);
    this.relayClose('upstream', code, reason);
  }

  /** Send one side a close (code, reason), or lose its connection when that is what the other side did. */
  private relayClose(side: 'client' | 'upstream', code: number, reason: string): void {
    const open = side === 'client' ? this.clientState === 'open' : this.upstreamState === 'open';
    const to = side === 'client' ? this.client : this.upstream;
    if (!open || !to) return;
    if (side === 'client') this.clientState = 'closing';
    else this.upstreamState = 'closing';
    if (!LOST.has(code)) this.ctx.record.close_code ??= code;
    // A close reason is at most 123 bytes (RFC 6455 §5.5: a control frame carries 125).
    const short = Buffer.byteLength(reason) > 123 ? Buffer.from(reason).subarray(0, 120).toString() : reason;
    try {
      if (code === 1005) to.close();
      else if (LOST.has(code)) to.terminate();
      else to.close(code, short);
    } catch {
      to.terminate();
    }
  }

  /** One side is closed: finish when both are, else give the other CLOSE_WAIT_MS to close in turn. */
  private closedOneSide(): void {
    if (this.clientState === 'closed' && this.upstreamState === 'closed') {
      this.finish();
      return;
    }
    if (this.resumeTimer) {
      clearInterval(this.resumeTimer);
      this.resumeTimer = undefined;
    }
    this.closeTimer ??= setTimeout(() => {
      if (this.clientState !== 'closed') this.client?.terminate();
      if (this.upstreamState !== 'closed') this.upstream?.terminate();
      this.clientState = this.upstreamState = 'closed';
      this.finish();
    }, CLOSE_WAIT_MS);
  }

  /** Both sides are closed: the record is completed, once. */
  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    unwatchIdle(this);
    clearTimeout(this.closeTimer);
    clearInterval(this.resumeTimer);
    this.rt.sessions.delete(this);
    const record = this.ctx.record;
    record.end_reason = this.end ?? 'client_close';
    const error = this.error;
    const outcome: Outcome = error ? outcomeOf(error.type) : 'ok';
    this.done.finish(101, outcome, error);
  }
}
