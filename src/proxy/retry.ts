/**
 * When and how long to wait before another upstream attempt. Connection errors, header
 * timeouts and 429/500/502/503/504 are retried with exponential backoff and full jitter
 * (AWS architecture blog, "Exponential Backoff and Jitter"), bounded below by
 * retry_backoff_initial and above by retry_backoff_max, or for as long as the upstream
 * asked (Retry-After, RFC 9110 §10.2.3, the `retry-after-ms` variant OpenAI and
 * Azure send, or a 429 body for a provider that says it there: Google's RetryInfo).
 */
import type { RetryPolicy } from '../config/runtime.ts';
import type { Provider } from '../providers/index.ts';
import { decodedBody } from './body.ts';
import { heldHeaders, holdBody } from './hold.ts';

export const RETRYABLE_STATUS: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

export function backoffMs(policy: RetryPolicy, retryNumber: number): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** (retryNumber - 1));
  return policy.initialMs + Math.random() * Math.max(0, ceiling - policy.initialMs);
}

/** The wait the upstream asked for, in ms, or undefined when it did not say. */
export function retryAfterMs(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null) {
    const n = Number(ms);
    if (Number.isFinite(n) && n >= 0) return n;
  }
  const ra = headers.get('retry-after');
  if (ra === null) return undefined;
  const seconds = Number(ra);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(ra);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** A 429 body longer than this is not read for its wait (Google's are ~1 KB). */
const WAIT_BODY_MAX = 64 * 1024;

/**
 * The wait a 429 answer's body asks for (Provider.retryDelayInBody), and the answer to
 * relay in its place (rebuilt around the bytes read: the body can be read only once).
 */
export async function waitInBody(
  response: Response,
  provider: Provider,
  idleTimeoutMs: number,
): Promise<{ response: Response; ms: number | undefined }> {
  const declared = Number(response.headers.get('content-length') ?? 0);
  if (!response.body || !provider.retryDelayInBody || declared > WAIT_BODY_MAX) return { response, ms: undefined };
  const held = await holdBody(response.body, WAIT_BODY_MAX, idleTimeoutMs);
  const init = { status: response.status, headers: response.headers };
  if (held.bytes === undefined) return { response: new Response(held.stream, init), ms: undefined };
  const readable = decodedBody(held.bytes, response.headers.get('content-encoding'), WAIT_BODY_MAX * 16);
  const ms = readable ? provider.retryDelayInBody(readable) : undefined;
  const headers = heldHeaders(response.headers, held.bytes.byteLength);
  return { response: new Response(held.bytes, { status: response.status, headers }), ms };
}

/**
 * Delay before retry number `retryNumber` (1-based), given the wait the upstream `asked`
 * for (undefined when it did not say, or for a connection error), or undefined when it
 * asked for longer than we wait.
 */
export function retryDelay(policy: RetryPolicy, retryNumber: number, asked: number | undefined): number | undefined {
  const backoff = backoffMs(policy, retryNumber);
  if (asked === undefined) return backoff;
  if (asked > policy.maxRetryAfterMs) return undefined;
  return Math.max(asked, policy.initialMs);
}

/** Sleep that ends early when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
