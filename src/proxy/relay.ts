/**
 * Returns the upstream's answer to the client as it is: status, filtered headers, and
 * body bytes untouched (compressed bodies stay compressed). Small non-streaming bodies
 * are read whole and sent in one piece; everything else is piped chunk by chunk
 * (StreamRelay) with a usage scanner watching the bytes pass, an idle limit, and
 * completion on the last byte or on the client going away (which cancels the upstream at
 * once). Either way the idle limit (network_config.stream_idle_timeout_in_seconds) holds.
 */
import { GatewayError } from '../core/errors.ts';
import { outcomeOf } from '../core/outcome.ts';
import type { Outcome } from '../core/request.ts';
import { UsageScanner, usageOfBody } from '../usage/scanner.ts';
import type { Usage } from '../usage/types.ts';
import type { Completion } from './completion.ts';
import { isTimeout } from './exchange.ts';
import { clientResponseHeaders } from './headers.ts';
import { type IdleWatch, unwatchIdle, watchIdle } from './idle.ts';
import type { Context } from './prepare.ts';

/** Non-streaming answers up to this size are read whole before sending. */
const WHOLE_BODY_MAX = 1024 * 1024;
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
    done.finish(status, 'ok');
    return new Response(null, init);
  }

  const encoding = upstream.headers.get('content-encoding');
  const lengthHeader = upstream.headers.get('content-length');
  if (!sse && lengthHeader !== null && Number(lengthHeader) <= WHOLE_BODY_MAX) {
    const bytes = await readWhole(upstream.body, ctx.call.settings.idleTimeoutMs);
    if (!(bytes instanceof Uint8Array)) {
      if (ctx.request.signal.aborted) return done.clientGone();
      return done.failed(
        bytes === 'idle'
          ? idleError(ctx)
          : new GatewayError(502, 'upstream_broken', `${ctx.provider} upstream closed the connection mid-body`),
      );
    }
    record.bytes_out = bytes.byteLength;
    // Usage, the log line and metrics come after the answer was written (the next turn of
    // the event loop): off the client's critical path, and the record is completed after
    // the last byte was handed to the client, as the completion hook promises.
    setImmediate(finishWhole, ctx, done, contentType, encoding, bytes, status);
    return new Response(bytes, init);
  }

  const scanner = UsageScanner.for(ctx.call.usageFormat, contentType, encoding);
  return new Response(
    new ReadableStream(new StreamRelay(ctx, upstream.body.getReader(), scanner, done, status), { highWaterMark: 0 }),
    init,
  );
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
    ctx.record.usage = usage;
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

/** Ends a whole-body read that went silent for longer than the idle limit. */
class WholeBodyWatch implements IdleWatch {
  lastActivity = performance.now();
  fired = false;

  constructor(
    readonly timeoutMs: number,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
  ) {}

  onIdle(): void {
    this.fired = true;
    this.reader.cancel().catch(() => {});
  }
}

/** A small answer read whole, under the idle limit: its bytes, or why not. */
async function readWhole(
  body: ReadableStream<Uint8Array>,
  idleTimeoutMs: number,
): Promise<Uint8Array<ArrayBuffer> | 'idle' | 'broken'> {
  const reader = body.getReader();
  const watch = new WholeBodyWatch(idleTimeoutMs, reader);
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

  constructor(
    private readonly ctx: Context,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly scanner: UsageScanner | undefined,
    private readonly done: Completion,
    private readonly status: number,
  ) {
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
      controller.error(err);
      // The client left: its signal, given to fetch, aborted the read before cancel() ran.
      if (this.ctx.request.signal.aborted) return this.end(CLIENT_LEFT_MID_STREAM);
      // Bun's socket timer (CompiledProvider.socketTimeoutMs) may beat the idle sweep.
      if (isTimeout(err)) return this.end(idleError(this.ctx));
      const broken = new GatewayError(
        502,
        'upstream_broken',
        `${this.ctx.provider} stream broke: ${(err as Error).message ?? 'read error'}`,
      );
      return this.end(broken);
    }
    if (chunk.done) {
      controller.close();
      return this.end();
    }
    const value = chunk.value;
    this.lastActivity = performance.now();
    this.ctx.record.bytes_out += value.byteLength;
    this.scanner?.push(value);
    if (this.keepContent && this.content.length < this.ctx.config.source.logs.content_max_bytes)
      this.content += decoder.decode(value, { stream: true });
    controller.enqueue(value);
    if (this.freeChunks) this.handedOver = value;
  }

  /** The client went away: stop the upstream generating at once, nothing before it. */
  cancel(reason: unknown): Promise<void> {
    this.reader.cancel(reason).catch(() => {});
    return this.end(CLIENT_LEFT_MID_STREAM);
  }

  onIdle(): void {
    const error = idleError(this.ctx);
    this.reader.cancel(error.message).catch(() => {});
    this.controller?.error(new Error(error.message));
    void this.end(error);
  }

  /** Completes the record once: without an error, the whole answer was relayed. */
  private async end(error?: GatewayError): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    unwatchIdle(this);
    const outcome: Outcome = error ? outcomeOf(error.type) : 'ok';
    if (outcome === 'client_aborted') {
      // The upstream is cancelled already (fetch has the client's signal; cancel() cancels
      // the reader first). The bookkeeping waits a turn: clients leaving in this one get
      // their upstreams cancelled before any of it runs.
      this.done.clientLeft();
      await nextTurn();
    }
    try {
      if (this.scanner) this.ctx.record.usage = await this.scanner.finish();
    } catch {
      // Usage is lost; the request is still completed (logged, counted, no longer in flight).
    }
    if (this.keepContent) this.ctx.record.response_body = this.content;
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
