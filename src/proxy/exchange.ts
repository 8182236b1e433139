/**
 * The upstream exchange: pick a key, authorize, one attempt, note the key's health,
 * decide whether to retry (on another key when there is one) while nothing has been sent
 * to the client. Each attempt is one function (Caddy's `proxyLoopIteration` shape).
 */
import type { CompiledKey, HeaderEntries } from '../config/runtime.ts';
import { GatewayError } from '../core/errors.ts';
import type { Pipeline } from '../core/pipeline.ts';
import { roundMs } from '../lib/time.ts';
import type { RequestBody } from './body.ts';
import type { Context } from './prepare.ts';
import { RETRYABLE_STATUS, retryAfterMs, retryDelay, sleep, waitInBody } from './retry.ts';

/**
 * How the exchange ended: an answer to relay (with the URL and key of the attempt that
 * got it), or one of the ways it did not.
 */
export type Answer =
  | {
      readonly kind: 'response';
      readonly response: Response;
      readonly url: string;
      readonly key: CompiledKey | undefined;
    }
  | { readonly kind: 'failed'; readonly error: GatewayError }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'too_large' };

const ABORTED: Answer = { kind: 'aborted' };
const TOO_LARGE: Answer = { kind: 'too_large' };
const TIMEOUT = Symbol('header timeout');
const NO_AUTH: HeaderEntries = [];

type Payload = Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null;

const CLIENT_LEFT = Symbol('client left');
/** One attempt's result: the response headers arrived, the attempt failed, or the client left. */
type AttemptResult = Response | GatewayError | typeof CLIENT_LEFT;

export async function exchange(ctx: Context, body: RequestBody, pipeline: Pipeline): Promise<Answer> {
  const { call, record, upstream } = ctx;
  const settings = call.settings;
  for (const [name, value] of settings.extraHeaders) upstream.headers.set(name, value);
  // A body streamed through keeps the length its client declared (fetch would send it chunked).
  if (body.kind === 'streamed' && body.length !== undefined)
    upstream.headers.set('content-length', String(body.length));
  const payload: Payload = body.kind === 'held' ? body.bytes : body.kind === 'streamed' ? body.stream : null;
  const maxAttempts = body.kind === 'streamed' ? 1 : 1 + settings.retry.maxRetries;
  // Keys already tried, for retries to move on to another: only when retries are possible.
  const tried = maxAttempts > 1 && call.keyed ? new Set<CompiledKey>() : undefined;
  let auth = NO_AUTH;

  for (let n = 1; ; n++) {
    const key = call.keyed ? pickKey(ctx, tried) : undefined;
    record.key = key?.name ?? 'direct';
    record.attempts = n;
    if (key) auth = setAuth(upstream.headers, auth, await call.provider.authorize(key, ctx.path));
    const url = call.provider.url(ctx.path, upstream.query, key, settings);
    // A signature (SigV4) covers this attempt's URL, headers and body bytes.
    if (key && call.provider.sign)
      await call.provider.sign({ method: ctx.request.method, url, headers: upstream.headers, body: payload }, key);
    const result = await attempt(ctx, url, payload, pipeline, n, key);
    if (body.kind === 'streamed' && body.overLimit()) return TOO_LARGE;
    if (result === CLIENT_LEFT) return ABORTED;
    let response: Response | undefined;
    let asked: number | undefined; // the wait the upstream asked for
    if (result instanceof Response) {
      response = result;
      if (RETRYABLE_STATUS.has(response.status)) {
        asked = retryAfterMs(response.headers);
        // A 429 that states its wait only in its body: read when the wait matters (a retry, or a key to rest).
        const matters = n < maxAttempts || (key !== undefined && settings.keys.size > 1);
        if (asked === undefined && response.status === 429 && call.provider.retryDelayInBody && matters)
          ({ response, ms: asked } = await waitInBody(response, call.provider, settings.idleTimeoutMs));
      }
      noteKeyHealth(ctx, key, response, asked);
      if (!RETRYABLE_STATUS.has(response.status) || n >= maxAttempts) return { kind: 'response', response, url, key };
    } else if (n >= maxAttempts) return { kind: 'failed', error: result };

    const delay = retryDelay(settings.retry, n, asked);
    if (delay === undefined) return { kind: 'response', response: response!, url, key };
    record.retries.push({
      attempt: n,
      key: key?.name,
      reason: response ? String(response.status) : (result as GatewayError).type,
      delay_ms: Math.round(delay),
    });
    await response?.body?.cancel().catch(() => {});
    const pausedAt = performance.now();
    await sleep(delay, ctx.request.signal);
    ctx.upstreamMs += performance.now() - pausedAt;
    if (ctx.request.signal.aborted) return ABORTED;
  }
}

export function pickKey(ctx: Context, tried: Set<CompiledKey> | undefined): CompiledKey {
  const key = ctx.call.settings.keys.pick(ctx.model, tried);
  if (!key) {
    throw new GatewayError(
      400,
      'no_key_for_model',
      ctx.model === undefined
        ? `no ${ctx.provider} key allows this request (every key has an empty models list)`
        : `no ${ctx.provider} key allows model "${ctx.model}" (providers.${ctx.provider}.keys[].models)`,
    );
  }
  tried?.add(key);
  return key;
}

/** This attempt's auth headers in place of the last attempt's (a retry may use another kind of key). */
function setAuth(headers: Headers, previous: HeaderEntries, next: HeaderEntries): HeaderEntries {
  for (const [name] of previous) headers.delete(name);
  for (const [name, value] of next) headers.set(name, value);
  return next;
}

/** 401: the key's cached token is dropped; 429 with a stated wait (`asked`): the key rests for this model. */
function noteKeyHealth(
  ctx: Context,
  key: CompiledKey | undefined,
  response: Response,
  asked: number | undefined,
): void {
  if (!key) return;
  if (response.status === 401) key.credential.invalidate();
  else if (response.status === 429) ctx.call.settings.keys.rest(key, ctx.model, asked ?? 0);
}

/**
 * One fetch under the header timeout: Bun's socket idle timer when it is long enough for
 * its ~4 s tick (no timer, controller or listener per attempt), else a timer of our own.
 */
async function attempt(
  ctx: Context,
  url: string,
  payload: Payload,
  pipeline: Pipeline,
  n: number,
  key: CompiledKey | undefined,
): Promise<AttemptResult> {
  const settings = ctx.call.settings;
  const clientSignal = ctx.request.signal;
  // The controller stays linked to the client for the relayed body's lifetime (an attempt
  // that is not relayed is over by then: aborting it does nothing).
  const controller = settings.nativeHeaderTimeout ? undefined : new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (controller) {
    clientSignal.addEventListener('abort', () => controller.abort(), { once: true });
    timer = setTimeout(() => controller.abort(TIMEOUT), settings.headerTimeoutMs);
  }
  pipeline.onAttemptStart(ctx, n);
  const sentAt = performance.now();
  let result: AttemptResult;
  try {
    const response = await fetch(url, {
      method: ctx.request.method,
      headers: ctx.upstream.headers,
      body: payload,
      redirect: 'manual',
      decompress: false,
      signal: controller ? controller.signal : clientSignal,
      timeout: settings.socketTimeoutMs,
      tls: settings.tls,
    });
    const waited = performance.now() - sentAt;
    ctx.upstreamMs += waited;
    ctx.record.ttfb_ms = roundMs(waited);
    result = validStatus(ctx, response);
  } catch (err) {
    ctx.upstreamMs += performance.now() - sentAt;
    if (clientSignal.aborted) return CLIENT_LEFT;
    result =
      controller?.signal.reason === TIMEOUT || isTimeout(err)
        ? new GatewayError(
            504,
            'upstream_timeout',
            `${ctx.provider} sent no response headers within ${settings.headerTimeoutMs / 1000} s`,
          )
        : new GatewayError(
            502,
            'upstream_unreachable',
            `${ctx.provider} upstream unreachable: ${describeFetchError(err)}`,
          );
  } finally {
    if (timer) clearTimeout(timer);
  }
  if (pipeline.hasAttemptEndHooks) {
    const response = result instanceof Response ? result : undefined;
    pipeline.onAttemptEnd(ctx, {
      attempt: n,
      key: key?.name,
      url,
      startedAt: sentAt,
      endedAt: performance.now(),
      status: response?.status,
      error: response ? undefined : (result as GatewayError).type,
    });
  }
  return result;
}

/**
 * 1xx other than an upgrade never ends an exchange, and nothing above 599 exists (RFC
 * 9110 §15): an upstream that says so is broken, not answering.
 */
function validStatus(ctx: Context, response: Response): Response | GatewayError {
  if (response.status >= 200 && response.status <= 599) return response;
  void response.body?.cancel().catch(() => {});
  return new GatewayError(
    502,
    'upstream_invalid_response',
    `${ctx.provider} upstream answered with status ${response.status}, which is not a final HTTP status`,
  );
}

/** Bun's fetch rejects with a DOMException named TimeoutError when its socket timer fires. */
export function isTimeout(err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'TimeoutError';
}

function describeFetchError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code ?? e.message ?? 'connection failed';
}
