/**
 * The part of the `ws` client API the gateway uses for upstream WebSocket sessions. Bun
 * serves `import WebSocket from 'ws'` from its own built-in implementation (native
 * framing; no package is loaded), which, unlike Bun's global `WebSocket`, reports a
 * refused handshake's status, headers and body (`unexpected-response`) and the accepted
 * handshake's headers (`upgrade`). proxy/realtime.ts says why that matters.
 */
declare module 'ws' {
  import type { EventEmitter } from 'node:events';
  import type { ClientRequest, IncomingMessage } from 'node:http';

  export interface ClientOptions {
    headers?: Record<string, string>;
    /** ms until the handshake fails with "Opening handshake has timed out". */
    handshakeTimeout?: number;
    /** Larger messages close the connection with 1009. */
    maxPayload?: number;
    perMessageDeflate?: boolean;
    followRedirects?: boolean;
    ca?: string;
    rejectUnauthorized?: boolean;
  }

  export default class WebSocket extends EventEmitter {
    constructor(address: string, protocols?: string[], options?: ClientOptions);
    static readonly CONNECTING: 0;
    static readonly OPEN: 1;
    static readonly CLOSING: 2;
    static readonly CLOSED: 3;
    readonly readyState: 0 | 1 | 2 | 3;
    /** The subprotocol the server selected ('' for none). */
    readonly protocol: string;
    /** Bytes queued by send() and not yet written to the socket. */
    readonly bufferedAmount: number;
    /** A string is sent as a text message, bytes as a binary one. */
    send(data: string | Buffer | Uint8Array): void;
    ping(data?: Buffer | Uint8Array): void;
    close(code?: number, reason?: string): void;
    terminate(): void;
    /** Stop reading from the socket (the peer meets TCP backpressure); messages already read may still arrive. */
    pause(): void;
    resume(): void;

    on(event: 'open', listener: (this: WebSocket) => void): this;
    on(event: 'upgrade', listener: (this: WebSocket, response: IncomingMessage) => void): this;
    on(
      event: 'unexpected-response',
      listener: (this: WebSocket, request: ClientRequest, response: IncomingMessage) => void,
    ): this;
    /** Text messages arrive as bytes too (`isBinary` false). */
    on(event: 'message', listener: (this: WebSocket, data: Buffer, isBinary: boolean) => void): this;
    on(event: 'ping' | 'pong', listener: (this: WebSocket, data: Buffer) => void): this;
    on(event: 'close', listener: (this: WebSocket, code: number, reason: Buffer) => void): this;
    on(event: 'error', listener: (this: WebSocket, error: Error & { code?: string }) => void): this;
  }
}
