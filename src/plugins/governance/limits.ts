/**
 * The arithmetic of governance, kept free of I/O so it can be tested on its own:
 * rate-limit windows and calendar-aligned budget periods (UTC). Token counts and costs
 * are the record's (usage/cost.ts, set by proxy/completion.ts).
 *
 * Rate limits use FIXED one-minute windows aligned to the UTC minute (epoch multiples
 * of 60 s): a counter per window, `Retry-After` = seconds until the window ends. Fixed
 * windows make the shared (Redis) state one integer per window and the retry hint
 * exact; the known trade-off is that a client may spend up to twice the limit across a
 * window boundary (end of one minute + start of the next).
 */
import { NANO_PER_USD } from '../../usage/cost.ts';

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

export function formatUsd(nano: number): string {
  const usd = nano / NANO_PER_USD;
  return `$${usd < 0.01 && usd > 0 ? usd.toPrecision(3) : usd.toFixed(2)}`;
}
