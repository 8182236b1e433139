/**
 * The upstream call: pick a key, let the provider build URL and auth, fetch with the
 * header timeout and the client's abort, and retry retryable failures (on another key
 * when there is one) while nothing has been sent to the client.
 */
import type { CompiledKey, CompiledProvider } from '../config/runtime.ts';
import { RETRYABLE_STATUS, retryAfterMs, retryDelay, sleep } from './retry.ts';
import type { Pipeline } from '../core/pipeline.ts';
import type { RequestContext, RequestError } from '../core/request.ts';
import type { Provider } from '../providers/types.ts';
import { GatewayError, jsonError } from '../core/errors.ts';
import { CREDENTIAL_HEADERS } from './headers.ts';

export type UpstreamResult =
  | { kind: 'ok'; response: Response }
  | { kind: 'error'; error: Response; detail: RequestError }
  | { kind: 'aborted' };

const TIMEOUT = Symbol('header timeout');

export async function callUpstream(
  ctx: RequestContext,
  provider: Provider,
  compiled: CompiledProvider,
  body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null,
  replayable: boolean,
  useKeys: boolean,
  pipeline: Pipeline,
): Promise<UpstreamResult> {
  const record = ctx.record;
  const clientSignal = ctx.request.signal;
  const maxAttempts = replayable ? 1 + compiled.retry.maxRetries : 1;
  // Keys already tried, for retries to move on to another: only when retries are possible.
  let tried: Set<CompiledKey> | undefined;

  for (let attempt = 1; ; attempt++) {
    let key: CompiledKey | undefined;
    if (useKeys) {
      key = compiled.keys.pick(ctx.model, tried);
      if (!key) {
        throw new GatewayError(
          400,
          'no_key_for_model',
          ctx.model === undefined
            ? `no ${ctx.provider} key allows this request (every key has an empty models list)`
            : `no ${ctx.provider} key allows model "${ctx.model}" (providers.${ctx.provider}.keys[].models)`,
        );
      }
      if (maxAttempts > 1) (tried ??= new Set()).add(key);
      record.key = key.name;
    }
    record.attempts = attempt;
    // A retry may land on a key of another kind (Vertex: token vs API key): start clean.
    if (useKeys && attempt > 1) for (const h of CREDENTIAL_HEADERS) ctx.headers.delete(h);
    const pending = provider.target({ path: ctx.path, query: ctx.query, headers: ctx.headers }, key, compiled);
    // Most providers answer synchronously: no await (and no extra turn) for those.
    const target = pending instanceof Promise ? await pending : pending;

    // The header timeout: Bun's socket idle timer when it is long enough for its ~4 s
    // tick (no timer, controller or listener per attempt), else a timer of our own.
    const controller = compiled.nativeHeaderTimeout ? undefined : new AbortController();
    let onClientAbort: (() => void) | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (controller) {
      onClientAbort = () => controller.abort();
      clientSignal.addEventListener('abort', onClientAbort, { once: true });
      timer = setTimeout(() => controller.abort(TIMEOUT), compiled.headerTimeoutMs);
    }
    pipeline.onAttemptStart(ctx, attempt);
    const sentAt = performance.now();
    let response: Response | undefined;
    let failure: RequestError | undefined;
    try {
      response = await fetch(target.url, {
        method: ctx.request.method,
        headers: ctx.headers,
        body,
        redirect: 'manual',
        decompress: false,
        signal: controller ? controller.signal : clientSignal,
        timeout: compiled.socketTimeoutMs,
        tls: compiled.tls,
      });
      record.ttfb_ms = Math.round((performance.now() - sentAt) * 100) / 100;
      if (response.status < 200 || response.status > 599) {
        // 1xx other than an upgrade never ends an exchange, and nothing above 599 exists
        // (RFC 9110 §15): an upstream that says so is broken, not answering.
        failure = { type: 'upstream_invalid_response', message: `${ctx.provider} upstream answered with status ${response.status}, which is not a final HTTP status` };
        void response.body?.cancel().catch(() => {});
        response = undefined;
      }
    } catch (err) {
      if (clientSignal.aborted) return { kind: 'aborted' };
      failure =
        controller?.signal.reason === TIMEOUT || isTimeout(err)
          ? { type: 'upstream_timeout', message: `${ctx.provider} sent no response headers within ${compiled.headerTimeoutMs / 1000} s` }
          : { type: 'upstream_unreachable', message: `${ctx.provider} upstream unreachable: ${describeFetchError(err)}` };
    } finally {
      if (timer) clearTimeout(timer);
    }
    if (pipeline.hasAttemptEndHooks) {
      pipeline.onAttemptEnd(ctx, { attempt, key: key?.name, url: target.url, startedAt: sentAt, endedAt: performance.now(), status: response?.status, error: failure?.type });
    }
    if (response) {
      if (response.status === 401 && key) provider.onUnauthorized?.(key);
      // Rate-limited for a stated time: requests for this model prefer the provider's other keys meanwhile.
      if (response.status === 429 && key) compiled.keys.rest(key, ctx.model, retryAfterMs(response.headers) ?? 0);
      // The abort controller stays linked to the client for the body's lifetime.
      if (!RETRYABLE_STATUS.has(response.status) || attempt >= maxAttempts) return { kind: 'ok', response };
    } else if (attempt >= maxAttempts) {
      if (onClientAbort) clientSignal.removeEventListener('abort', onClientAbort);
      const status = failure!.type === 'upstream_timeout' ? 504 : 502;
      return { kind: 'error', error: jsonError(status, failure!.type, failure!.message), detail: failure! };
    }

    const delay = retryDelay(compiled.retry, attempt, response);
    if (delay === undefined) return { kind: 'ok', response: response! };
    record.retries.push({ attempt, key: key?.name, reason: response ? String(response.status) : failure!.type, delay_ms: Math.round(delay) });
    if (onClientAbort) clientSignal.removeEventListener('abort', onClientAbort);
    await response?.body?.cancel().catch(() => {});
    await sleep(delay, clientSignal);
    if (clientSignal.aborted) return { kind: 'aborted' };
  }
}

/** Bun's fetch rejects with a DOMException named TimeoutError when its socket timer fires. */
export function isTimeout(err: unknown): boolean {
  return (err as { name?: string } | null)?.name === 'TimeoutError';
}

function describeFetchError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code ?? e.message ?? 'connection failed';
}
