/**
 * The listening socket(s) of the gateway: the Elysia app served by Bun, plain HTTP or, with
 * `server.tls`, HTTPS and WSS; WebSocket sessions on the passthrough routes get
 * proxy/realtime.ts's socket handlers and the `server.websocket` limits.
 *
 * A new certificate without dropping a connection: Bun's `server.reload()` keeps the
 * certificate it started with (measured on Bun 1.4.5: the served certificate did not
 * change), so the new one gets a listening socket of its own on the same port
 * (SO_REUSEPORT) serving the same app (Elysia's listen again), and the old socket stops accepting; its open
 * connections (requests, streams, WebSocket sessions) run on until they end. A gateway
 * with TLS therefore always listens with SO_REUSEPORT; that the port is free is checked
 * first by binding it without (a second gateway on the port is an error, not half the
 * connections).
 */
import type { Server } from 'bun';
import type { Elysia } from 'elysia';
import type { ServerTls } from '../config/runtime.ts';
import { SESSION_SOCKET } from '../proxy/realtime.ts';

const MiB = 1024 * 1024;
/** Bun's largest backpressure limit: sessions enforce `server.websocket.buffer_limit_mb` themselves. */
const NO_BUN_BACKPRESSURE_LIMIT = 2 ** 32 - 1;

export interface ListenSettings {
  hostname: string;
  port: number;
  idleTimeoutSeconds: number;
  /** The largest WebSocket message a client may send (server.websocket.max_message_mb). */
  maxMessageMb: number;
  tls: ServerTls | undefined;
  /**
   * The port is shared with the other workers of a group (SO_REUSEPORT on, no check that
   * it is free: the primary made that check before it started them).
   */
  sharedPort?: boolean;
  /** Told of each server that starts accepting (the first, then one per new certificate). */
  onServer?: (server: Server<unknown>) => void;
}

export class Listener {
  /** Every server still holding connections, the one accepting new ones last. */
  private readonly servers: Server<unknown>[] = [];
  private tls: ServerTls | undefined;

  private constructor(
    private readonly app: Elysia,
    private readonly settings: ListenSettings,
  ) {
    this.tls = settings.tls;
  }

  static start(app: Elysia, settings: ListenSettings): Listener {
    const listener = new Listener(app, settings);
    const port = settings.tls && !settings.sharedPort ? freePort(settings.hostname, settings.port) : settings.port;
    listener.listen(port, settings.tls);
    return listener;
  }

  /** The server accepting new connections. */
  get server(): Server<unknown> {
    return this.servers.at(-1)!;
  }

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://${this.server.hostname}:${this.server.port}`;
  }

  get secure(): boolean {
    return this.tls !== undefined;
  }

  /**
   * Serve a new certificate from now on: a new socket on the same port takes new
   * connections, the old one stops accepting and closes once its connections are done.
   */
  replaceTls(tls: ServerTls): void {
    const old = this.server;
    this.listen(old.port!, tls);
    this.tls = tls;
    void old.stop(false).then(() => this.servers.splice(this.servers.indexOf(old), 1));
  }

  /** Stop accepting; resolves when every server's connections are done (`closeActive`: cut them). */
  async stop(closeActive: boolean): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop(closeActive)));
  }

  /**
   * One Bun server for the app, through Elysia's own listen (it builds the route table:
   * the passthrough routes and every Elysia route); Elysia then hands its routes this
   * server as `server`.
   */
  private listen(port: number, tls: ServerTls | undefined): void {
    const s = this.settings;
    this.app.listen({
      hostname: s.hostname,
      port,
      // The flow enforces server.max_request_body_mb itself (a JSON 413, and live on
      // reload); Bun's own cap would answer first with an empty 413, so it stays high.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      idleTimeout: s.idleTimeoutSeconds,
      // Elysia turns SO_REUSEPORT on by default: a second gateway on the same port would
      // start "fine" and silently take half the connections. Only the workers of one
      // primary (sharing the port on purpose) and TLS (a new certificate's socket, after
      // freePort's check) need it.
      reusePort: s.sharedPort === true || tls !== undefined,
      ...(tls && { tls: { cert: tls.cert, key: tls.key } }),
      // Elysia's Bun adapter spreads this over its own handlers (which dispatch to
      // ws.data.open, .message, ...); the app declares no Elysia WebSocket route, so the
      // sessions' handlers are the only ones, and Elysia's stay out of the way.
      websocket: {
        ...SESSION_SOCKET,
        maxPayloadLength: s.maxMessageMb * MiB,
        backpressureLimit: NO_BUN_BACKPRESSURE_LIMIT,
        closeOnBackpressureLimit: false,
        // Bun's defaults, said here: a client silent for 120 s is pinged first, then closed.
        idleTimeout: 120,
        sendPings: true,
        perMessageDeflate: false,
      } as object,
    });
    if (!this.app.server) throw new Error(`could not listen on ${s.hostname}:${port}`);
    this.servers.push(this.app.server);
    s.onServer?.(this.app.server);
  }
}

/** The port, once it is known to be free (0: a free one): binding it without SO_REUSEPORT must work. */
function freePort(hostname: string, port: number): number {
  let probe: Bun.TCPSocketListener<undefined>;
  try {
    probe = Bun.listen<undefined>({ hostname, port, socket: { data() {} } });
  } catch (err) {
    throw new Error(
      `could not listen on ${hostname}:${port}: ${(err as { code?: string }).code ?? (err as Error).message}`,
    );
  }
  const free = probe.port;
  probe.stop(true);
  return free;
}
