/**
 * When and how long to wait before another upstream attempt. Connection errors, header
 * timeouts and 429/500/502/503/504 are retried with exponential backoff and full jitter
 * (AWS architecture blog, "Exponential Backoff and Jitter"), bounded below by
 * retry_backoff_initial and above by retry_backoff_max, or for as long as the upstream
 * asked (Retry-After, RFC 9110 §10.2.3, and the `retry-after-ms` variant OpenAI and
 * Azure send).
 */
import type { RetryPolicy } from '../config/runtime.ts';

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

/**
 * Delay before retry number `retryNumber` (1-based) after `res` (undefined for a
 * connection error), or undefined when the upstream asked for longer than we wait.
 */
export function retryDelay(policy: RetryPolicy, retryNumber: number, res: Response | undefined): number | undefined {
  const backoff = backoffMs(policy, retryNumber);
  const asked = res ? retryAfterMs(res.headers) : undefined;
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
