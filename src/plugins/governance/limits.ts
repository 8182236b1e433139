/**
 * The arithmetic of governance, kept free of I/O so it can be tested on its own:
 * rate-limit windows, calendar-aligned budget periods (UTC), token counts and cost.
 *
 * Rate limits use FIXED one-minute windows aligned to the UTC minute (epoch multiples
 * of 60 s): a counter per window, `Retry-After` = seconds until the window ends. Fixed
 * windows make the shared (Redis) state one integer per window and the retry hint
 * exact; the known trade-off is that a client may spend up to twice the limit across a
 * window boundary (end of one minute + start of the next).
 */
import type { Usage } from '../../usage/types.ts';

export type Period = 'hour' | 'day' | 'week' | 'month';

export interface Window {
  /** Inclusive start, epoch ms. */
  start: number;
  /** Exclusive end, epoch ms. */
  end: number;
}

export const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;

/** The fixed one-minute rate-limit window holding `now`. */
export function minuteWindow(now: number): Window {
  const start = Math.floor(now / MINUTE_MS) * MINUTE_MS;
  return { start, end: start + MINUTE_MS };
}

/**
 * The calendar period holding `now`, in UTC: the hour, the day (from 00:00), the ISO
 * week (from Monday 00:00) or the month (from the 1st, 00:00).
 */
export function periodWindow(period: Period, now: number): Window {
  switch (period) {
    case 'hour': {
      const start = Math.floor(now / HOUR_MS) * HOUR_MS;
      return { start, end: start + HOUR_MS };
    }
    case 'day': {
      const start = Math.floor(now / DAY_MS) * DAY_MS;
      return { start, end: start + DAY_MS };
    }
    case 'week': {
      const day = Math.floor(now / DAY_MS) * DAY_MS;
      const sinceMonday = (new Date(day).getUTCDay() + 6) % 7;
      const start = day - sinceMonday * DAY_MS;
      return { start, end: start + 7 * DAY_MS };
    }
    case 'month': {
      const d = new Date(now);
      const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
      const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      return { start, end };
    }
  }
}

/** Whole seconds until `end`, at least 1 (the value of a `Retry-After` header). */
export function secondsUntil(end: number, now: number): number {
  return Math.max(1, Math.ceil((end - now) / 1000));
}

/** Tokens a request consumed: the provider's total, else input + output. */
export function tokensOf(usage: Usage | undefined): number {
  if (!usage) return 0;
  const total = usage.total_tokens ?? (usage.input_tokens ?? 0) + (usage.output_tokens ?? 0);
  return Number.isFinite(total) && total > 0 ? Math.round(total) : 0;
}

export interface Price {
  input_per_million: number;
  output_per_million: number;
}

/** Cost is counted in integer nano-dollars (1e-9 USD) so that counters stay integers. */
export const NANO_PER_USD = 1e9;

/**
 * Cost of a request in nano-USD. Output tokens at the output price; every other token
 * of the total (prompt, cache reads and writes, tool-use prompt) at the input price.
 * Providers disagree on whether `input_tokens` includes cached input (OpenAI and
 * Gemini: yes; Anthropic: no), but all of them count it in the total, so "total minus
 * output" is the provider-neutral measure of input.
 */
export function costNanoUsd(usage: Usage | undefined, price: Price): number {
  if (!usage) return 0;
  const output = Math.max(0, usage.output_tokens ?? 0);
  const input =
    usage.total_tokens !== undefined ? Math.max(0, usage.total_tokens - output) : Math.max(0, usage.input_tokens ?? 0);
  // price per million tokens -> nano-USD per token = price * 1e9 / 1e6 = price * 1000.
  const nano = (input * price.input_per_million + output * price.output_per_million) * 1000;
  return Number.isFinite(nano) ? Math.round(nano) : 0;
}

/**
 * Price table lookup: the exact model name first, then the longest matching
 * "prefix*" pattern ("*" alone matches everything, last).
 */
export class PriceTable {
  private readonly exact = new Map<string, Price>();
  private readonly prefixes: Array<[string, Price]> = [];

  constructor(prices: Record<string, Price>) {
    for (const [pattern, price] of Object.entries(prices)) {
      if (pattern.endsWith('*')) this.prefixes.push([pattern.slice(0, -1), price]);
      else this.exact.set(pattern, price);
    }
    this.prefixes.sort((a, b) => b[0].length - a[0].length);
  }

  get size(): number {
    return this.exact.size + this.prefixes.length;
  }

  lookup(model: string | undefined): Price | undefined {
    if (model === undefined) return undefined;
    const hit = this.exact.get(model);
    if (hit) return hit;
    for (const [prefix, price] of this.prefixes) if (model.startsWith(prefix)) return price;
    return undefined;
  }
}

export function formatUsd(nano: number): string {
  const usd = nano / NANO_PER_USD;
  return `$${usd < 0.01 && usd > 0 ? usd.toPrecision(3) : usd.toFixed(2)}`;
}
