/**
 * Returns the upstream's answer to the client as it is: status, filtered headers, and
 * body bytes untouched (compressed bodies stay compressed). Small non-streaming bodies
 * are read whole and sent in one piece; everything else is piped chunk by chunk
 * (StreamRelay) with a usage scanner watching the bytes pass, an idle limit, and
 * completion on the last byte or on the client going away (which cancels the upstream at
 * once). Either way the idle limit (network_config.stream_idle_timeout_in_seconds) holds.
 *
 * A stream that ends without its API's terminator (`[DONE]`, `response.completed`,
 * `message_stop`, a Gemini chunk with `finishReason`), or with an error event, is ended
 * for the client with an error, never closed cleanly: the connection is aborted (no last
 * chunk), so the official SDKs raise as they do when a provider's connection breaks, and
 * a truncated answer never passes for a complete one. No terminator is ever made up.
 */
import { GatewayError } from '../core/errors.ts';
import { outcomeOf } from '../core/outcome.ts';
import type { EndReason, Outcome } from '../core/request.ts';
import { roundMs } from '../lib/time.ts';
import { UsageScanner, usageOfBody } from '../usage/scanner.ts';
import type { Usage } from '../usage/types.ts';
import { noteUsage } from './accounting.ts';
import type { Completion } from './completion.ts';
import { isTimeout } from './exchange.ts';
import { clientResponseHeaders } from './headers.ts';
import { type IdleWatch, ReaderWatch, unwatchIdle, watchIdle } from './idle.ts';
import type { Context } from './prepare.ts';

/** Non-streaming answers up to this size are read whole before sending. */
const WHOLE_BODY_MAX = 1024 * 1024;
/**
 * How long a stream cut upstream waits before its client's connection is aborted: Bun
 * aborts with a reset, which makes the client's system drop bytes it has received but
 * not read yet, so the chunks relayed last get this long to be written and read first
 * (an abort right after them lost everything, headers included, in a loopback test).
 */
const FLUSH_BEFORE_ABORT_MS = 20;
const decoder = new TextDecoder();
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function relay(ctx: Context, upstream: Response, done: Completion): Promise<Response> {
  const record = ctx.record;
  const headers = clientResponseHeaders(upstream.headers, ctx.id);
  headers.set('x-skybridge-attempts', String(record.attempts));
  record.upstream_request_id = upstream.headers.get('x-request-id') ?? upstream.headers.get('request-id') ?? undefined;
  const status = upstream.status;
  const contentType = upstream.headers.get('content-type');
  const sse = contentType?.startsWith('text/event-stream');
  if (sse) record.stream = true;
  // No statusText: Bun's server writes the standard reason phrase whatever a Response carries.
  const init = { status, headers };

  if (!upstream.body || ctx.request.method === 'HEAD' || status === 204 || status === 304) {
    serverTiming(ctx, headers);
    done.finish(status, 'ok');
    return new Response(null, init);
  }

  const encoding = upstream.headers.get('content-encoding');
  const lengthHeader = upstream.headers.get('content-length');
  if (!sse && lengthHeader !== null && Number(lengthHeader) <= WHOLE_BODY_MAX) {
    const readAt = performance.now();
    const bytes = await readWhole(upstream.body, ctx.call.settings.idleTimeoutMs);
    ctx.upstreamMs += performance.now() - readAt;
    if (!(bytes instanceof Uint8Array)) {
      if (ctx.request.signal.aborted) return done.clientGone();
      return done.failed(
        bytes === 'idle'
          ? idleError(ctx)
          : new GatewayError(502, 'upstream_broken', `${ctx.provider} upstream closed the connection mid-body`),
      );
    }
    record.bytes_out = bytes.byteLength;
    record.gw_us = Math.round(serverTiming(ctx, headers) * 1000);
    // Usage, the log line and metrics come after the answer was written (the next turn of
    // the event loop): off the client's critical path, and the record is completed after
    // the last byte was handed to the client, as the completion hook promises.
    setImmediate(finishWhole, ctx, done, contentType, encoding, bytes, status);
    return new Response(bytes, init);
  }

  const scanner = UsageScanner.for(ctx.call.usageFormat, ctx.call.apiStyle, contentType, encoding);
  const relayed = new StreamRelay(ctx, upstream, scanner, done, serverTiming(ctx, headers));
  return new Response(new ReadableStream(relayed, { highWaterMark: 0 }), init);
}

/**
 * The gateway's time so far (ms): since arrival, less the waits on the upstream. Also
 * sent as `server-timing: gw;dur=.., upstream;dur=<ttfb>` unless server.server_timing is
 * false; appended to an upstream's own Server-Timing, which stays.
 */
function serverTiming(ctx: Context, headers: Headers): number {
  const gw = performance.now() - ctx.startedAt - ctx.upstreamMs;
  if (ctx.config.source.server.server_timing)
    headers.append('server-timing', `gw;dur=${roundMs(gw)}, upstream;dur=${ctx.record.ttfb_ms ?? 0}`);
  return gw;
}

function finishWhole(
  ctx: Context,
  done: Completion,
  contentType: string | null,
  encoding: string | null,
  bytes: Uint8Array<ArrayBuffer>,
  status: number,
): void {
  const complete = (usage: Usage | undefined) => {
    noteUsage(ctx, { status, usage, partial: false, estimated: false, contentType, contentEncoding: encoding });
    if (ctx.config.source.logs.content) ctx.record.response_body = decoder.decode(bytes);
    done.finish(status, 'ok');
  };
  const usage = usageOfBody(ctx.call.usageFormat, contentType, encoding, bytes);
  if (usage instanceof Promise) void usage.then(complete);
  else complete(usage);
}

const CLIENT_LEFT_MID_STREAM = new GatewayError(499, 'client_aborted', 'client closed the connection mid-stream');

function idleError(ctx: Context): GatewayError {
  return new GatewayError(
    502,
    'stream_idle_timeout',
    `${ctx.provider} stream sent nothing for ${ctx.call.settings.idleTimeoutMs / 1000} s`,
  );
}

/** A small answer read whole, under the idle limit: its bytes, or why not. */
async function readWhole(
  body: ReadableStream<Uint8Array>,
  idleTimeoutMs: number,
): Promise<Uint8Array<ArrayBuffer> | 'idle' | 'broken'> {
  const reader = body.getReader();
  const watch = new ReaderWatch(idleTimeoutMs, reader);
  watchIdle(watch);
  const chunks: Uint8Array[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      watch.lastActivity = performance.now();
      chunks.push(value);
    }
  } catch (err) {
    return watch.fired || isTimeout(err) ? 'idle' : 'broken';
  } finally {
    unwatchIdle(watch);
  }
  if (watch.fired) return 'idle';
  return (chunks.length === 1 ? chunks[0] : new Uint8Array(Bun.concatArrayBuffers(chunks))) as Uint8Array<ArrayBuffer>;
}

/**
 * A streamed answer, relayed chunk by chunk as the client's server pulls it: this object
 * is the ReadableStream's underlying source (start, pull, cancel) and the idle watch of
 * the stream, so a stream costs one object, no closures. The upstream is read only when
 * the client side asks (highWaterMark 0): a slow client slows the upstream, nothing queues.
 *
 * The client's stream is ended with `controller.error()` and no reason: Bun then aborts
 * the chunked response (the SDKs raise) and, given no reason, prints nothing on stderr.
 */
class StreamRelay implements IdleWatch, UnderlyingDefaultSource<Uint8Array> {
  lastActivity = performance.now();
  readonly timeoutMs: number;
  private closed = false;
  private controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  /** The chunk handed to the client last, freed once the server asks for the next (see freeChunk). */
  private handedOver: Uint8Array | undefined;
  private readonly freeChunks: boolean;
  private readonly keepContent: boolean;
  private content = '';
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly status: number;

  constructor(
    private readonly ctx: Context,
    private readonly upstream: Response,
    private readonly scanner: UsageScanner | undefined,
    private readonly done: Completion,
    /** The gateway's own time (ms): until the headers, then each chunk's handling added. */
    private gatewayMs: number,
  ) {
    this.reader = upstream.body!.getReader();
    this.status = upstream.status;
    this.timeoutMs = ctx.call.settings.idleTimeoutMs;
    this.freeChunks = scanner === undefined || !scanner.keepsChunks;
    this.keepContent = ctx.config.source.logs.content;
    done.streaming();
    watchIdle(this);
  }

  start(controller: ReadableStreamDefaultController<Uint8Array>): void {
    this.controller = controller;
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    if (this.handedOver) {
      freeChunk(this.handedOver);
      this.handedOver = undefined;
    }
    let chunk: Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']>>;
    try {
      chunk = await this.reader.read();
    } catch (err) {
      if (this.closed) return;
      // The client left: its signal, given to fetch, aborted the read before cancel() ran.
      if (this.ctx.request.signal.aborted) {
        controller.error();
        return this.end('client_abort', CLIENT_LEFT_MID_STREAM);
      }
      // Bun's socket timer (CompiledProvider.socketTimeoutMs) may beat the idle sweep.
      if (isTimeout(err)) {
        controller.error();
        return this.end('idle_timeout', idleError(this.ctx));
      }
      const broken = new GatewayError(
        502,
        'upstream_broken',
        `${this.ctx.provider} stream broke: ${(err as Error).message ?? 'read error'}`,
      );
      return this.abortClient(controller, 'upstream_error', broken);
    }
    if (chunk.done) return this.upstreamEnded(controller);
    const value = chunk.value;
    const now = performance.now();
    this.lastActivity = now;
    this.ctx.record.bytes_out += value.byteLength;
    this.scanner?.push(value);
    if (this.keepContent && this.content.length < this.ctx.config.source.logs.content_max_bytes)
      this.content += decoder.decode(value, { stream: true });
    controller.enqueue(value);
    if (this.freeChunks) this.handedOver = value;
    this.gatewayMs += performance.now() - now;
  }

  /** The client went away: stop the upstream generating at once, nothing before it. */
  cancel(reason: unknown): Promise<void> {
    this.reader.cancel(reason).catch(() => {});
    return this.end('client_abort', CLIENT_LEFT_MID_STREAM);
  }

  onIdle(): void {
    const error = idleError(this.ctx);
    this.reader.cancel(error.message).catch(() => {});
    this.controller?.error();
    void this.end('idle_timeout', error);
  }

  /**
   * The upstream's body ended cleanly: closed for the client when the stream carried its
   * terminator (or its API has none), else aborted (a cut or failed upstream stream).
   */
  private async upstreamEnded(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    const scanner = this.scanner;
    if (scanner?.expectsTerminator && this.status < 300) {
      await scanner.end(); // a compressed stream's last bytes are inflated on a side path
      if (this.closed) return;
      const signal = scanner.signal;
      if (signal !== 'terminator') {
        const which = signal === 'error' ? 'sent an error event' : 'ended without its terminator';
        return this.abortClient(
          controller,
          signal === 'error' ? 'upstream_error' : 'upstream_eof_no_terminator',
          new GatewayError(502, 'upstream_broken', `${this.ctx.provider} stream ${which}`),
        );
      }
    }
    controller.close();
    return this.end('complete');
  }

  /** The upstream failed mid-stream: the record is completed now, the client's connection aborted once the last chunks went out. */
  private async abortClient(
    controller: ReadableStreamDefaultController<Uint8Array>,
    reason: EndReason,
    error: GatewayError,
  ): Promise<void> {
    const ended = this.end(reason, error);
    await Bun.sleep(FLUSH_BEFORE_ABORT_MS); // no pull comes while this one waits
    controller.error();
    return ended;
  }

  /** Completes the record once: `complete` without an error, the whole answer was relayed. */
  private async end(
    reason: EndReason,
    error?: GatewayError,
    outcome: Outcome = error ? outcomeOf(error.type) : 'ok',
  ): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    unwatchIdle(this);
    if (outcome === 'client_aborted') {
      // The upstream is cancelled already (fetch has the client's signal; cancel() cancels
      // the reader first). The bookkeeping waits a turn: clients leaving in this one get
      // their upstreams cancelled before any of it runs.
      this.done.clientLeft();
      await nextTurn();
    }
    const record = this.ctx.record;
    record.end_reason = reason;
    record.gw_us = Math.round(this.gatewayMs * 1000);
    const partial = reason !== 'complete';
    let usage: Usage | undefined;
    try {
      if (this.scanner) {
        await this.scanner.end();
        usage = this.scanner.result(partial);
      }
    } catch {
      // Usage is lost; the request is still completed (logged, counted, no longer in flight).
    }
    noteUsage(this.ctx, {
      status: this.status,
      usage,
      partial,
      estimated: this.scanner?.outputEstimated ?? false,
      contentType: this.upstream.headers.get('content-type'),
      contentEncoding: this.upstream.headers.get('content-encoding'),
    });
    if (this.keepContent) record.response_body = this.content;
    this.done.finish(this.status, outcome, error);
  }
}

/**
 * Releases a relayed chunk's memory now instead of at the next garbage collection,
 * which otherwise lets a large download raise RSS by the ~16 MB the collector allows
 * between young collections (docs/performance.md).
 *
 * Safe only because of how Bun's server consumes a JavaScript stream body: it writes
 * each chunk to its native sink synchronously, and that sink sends or copies the bytes
 * before returning (chunks are lent to it, not given), before it reads the next chunk,
 * which is what calls `pull` again. Nothing else reads these streams. Only a chunk that
 * owns its whole ArrayBuffer is detached (never a view into a shared one), and only
 * when no usage scanner still holds it (`keepsChunks`). The byte-exactness tests (large
 * bodies relayed to fast and slow readers, hashed) guard this against a Bun upgrade.
 */
function freeChunk(chunk: Uint8Array): void {
  const buffer = chunk.buffer;
  if (
    buffer instanceof ArrayBuffer &&
    chunk.byteOffset === 0 &&
    chunk.byteLength === buffer.byteLength &&
    !buffer.detached
  )
    buffer.transfer(0);
}
