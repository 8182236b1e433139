/**
 * The cost of one request's usage at a price: pure arithmetic, no lookup. Rates are USD
 * per million tokens, as both the genai-prices catalog (`input_mtok`, ...) and
 * `governance.prices` state them. The split follows the catalog's rules: input,
 * cache reads and cache writes are parts of one input total, reasoning is part of the
 * output, and a part without a rate of its own is billed at its whole's rate (cache
 * reads at the input rate, reasoning at the output rate). A tiered rate (Gemini 2.5 Pro
 * and Claude above 200k input tokens) applies its tier to the whole count, chosen by the
 * request's total input tokens.
 */
import type { Usage } from './types.ts';

/** USD per million tokens, flat or by tier of the request's input tokens. */
export type Rate = number | Tiered;

export interface Tiered {
  readonly base: number;
  /** Ascending by `start`: above `start` input tokens, `price` applies. */
  readonly tiers: ReadonlyArray<{ readonly start: number; readonly price: number }>;
}

export interface Rates {
  readonly input: Rate;
  readonly output: Rate;
  readonly cacheRead?: Rate;
  readonly cacheWrite?: Rate;
  readonly reasoning?: Rate;
}

/** Costs are kept in integer nano-dollars (1e-9 USD): the log line and a budget add the same integer. */
export const NANO_PER_USD = 1e9;

/** Tokens a request consumed: the provider's total, else input + output. */
export function tokensOf(usage: Usage | undefined): number {
  if (!usage) return 0;
  const total = usage.total_tokens ?? (usage.input_tokens ?? 0) + (usage.output_tokens ?? 0);
  return Number.isFinite(total) && total > 0 ? Math.round(total) : 0;
}

/**
 * Input tokens, cached ones included. Providers disagree on whether `input_tokens`
 * includes cached input (OpenAI and Gemini: yes; Anthropic: no), but all of them count
 * it in the total (usage/extract.ts finishUsage), so total minus output is the input
 * for all of them (Gemini's tool-use prompt tokens included).
 */
export function inputTotal(usage: Usage): number {
  const output = Math.max(0, usage.output_tokens ?? 0);
  return usage.total_tokens !== undefined
    ? Math.max(0, usage.total_tokens - output)
    : Math.max(0, usage.input_tokens ?? 0);
}

function rateAt(rate: Rate, input: number): number {
  if (typeof rate === 'number') return rate;
  let price = rate.base;
  for (const t of rate.tiers) if (input > t.start) price = t.price;
  return price;
}

/** The cost of `usage` in nano-USD (an integer). */
export function costNanoUsd(usage: Usage, rates: Rates): number {
  const input = inputTotal(usage);
  const output = Math.max(0, usage.output_tokens ?? 0);
  const cacheRead =
    rates.cacheRead === undefined ? 0 : Math.min(input, Math.max(0, usage.cache_read_input_tokens ?? 0));
  const cacheWrite =
    rates.cacheWrite === undefined
      ? 0
      : Math.min(input - cacheRead, Math.max(0, usage.cache_creation_input_tokens ?? 0));
  const reasoning = rates.reasoning === undefined ? 0 : Math.min(output, Math.max(0, usage.reasoning_tokens ?? 0));
  // USD per million tokens -> nano-USD per token: * 1e9 / 1e6 = * 1000.
  let perMillion = (input - cacheRead - cacheWrite) * rateAt(rates.input, input);
  perMillion += (output - reasoning) * rateAt(rates.output, input);
  if (cacheRead > 0) perMillion += cacheRead * rateAt(rates.cacheRead!, input);
  if (cacheWrite > 0) perMillion += cacheWrite * rateAt(rates.cacheWrite!, input);
  if (reasoning > 0) perMillion += reasoning * rateAt(rates.reasoning!, input);
  const nano = perMillion * 1000;
  return Number.isFinite(nano) ? Math.round(nano) : 0;
}
