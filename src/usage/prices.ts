/**
 * Where a model's price comes from: `governance.prices` first (exact name, then the
 * longest `prefix*` pattern), else the genai-prices catalog (npm `@pydantic/genai-prices`,
 * its bundled data only: it never fetches). Compiled once per config load
 * (app/config/compile.ts) into one `ModelPrices` per provider, which remembers each
 * model's price the first time it is asked: a request does one Map lookup.
 *
 * The catalog's own `calcPrice` is used to find a model (its provider matching, fallback
 * providers and date-suffix rules), once per model; its arithmetic is not used per
 * request, as it costs 13-40 us a call (it validates the price units each time) against
 * well under 1 us here (usage/cost.ts). Its resolver of dated prices is not exported, so
 * `Price.ratesAt` mirrors it (start dates, UTC time-of-day windows).
 */
import { calcPrice, findProvider, type ModelPrice } from '@pydantic/genai-prices';
import type { Rate, Rates, Tiered } from './cost.ts';

export type PriceSource = 'config' | 'catalog';

/** `governance.prices.<model>`: USD per million tokens. */
export interface ConfigPrice {
  input_per_million: number;
  output_per_million: number;
  cache_read_per_million?: number;
  cache_write_per_million?: number;
  reasoning_per_million?: number;
}

/** A constrained period of a catalog price: from a date, or a daily UTC window (seconds of the day). */
interface Period {
  readonly rates: Rates | undefined;
  readonly fromMs?: number;
  readonly window?: readonly [number, number];
}

/** A model's price: one set of rates, or rates by date or time of day (the catalog's dated price changes). */
export class Price {
  private readonly fixed: Rates | undefined;

  constructor(
    readonly source: PriceSource,
    private readonly periods: readonly Period[],
  ) {
    this.fixed =
      periods.length === 1 && periods[0]!.fromMs === undefined && !periods[0]!.window ? periods[0]!.rates : undefined;
  }

  /** The rates in force at `now` (epoch ms); undefined when that period prices no tokens. */
  ratesAt(now: number): Rates | undefined {
    if (this.fixed) return this.fixed;
    // As genai-prices' resolver: the last period whose constraint holds, else the first.
    for (let i = this.periods.length - 1; i >= 0; i--) {
      const p = this.periods[i]!;
      if (p.fromMs !== undefined) {
        if (now >= p.fromMs) return p.rates;
      } else if (p.window) {
        const s = (now % 86_400_000) / 1000;
        const [start, end] = p.window;
        if (end < start ? s >= start || s < end : s >= start && s < end) return p.rates;
      } else return p.rates;
    }
    return this.periods[0]?.rates;
  }
}

export function configPrice(p: ConfigPrice): Price {
  return new Price('config', [
    {
      rates: {
        input: p.input_per_million,
        output: p.output_per_million,
        cacheRead: p.cache_read_per_million,
        cacheWrite: p.cache_write_per_million,
        reasoning: p.reasoning_per_million,
      },
    },
  ]);
}

/** `governance.prices`: the exact model name first, then the longest `prefix*` pattern ("*" alone: last). */
export class ConfigPrices {
  private readonly exact = new Map<string, Price>();
  private readonly prefixes: Array<[string, Price]> = [];

  constructor(prices: Readonly<Record<string, ConfigPrice>>) {
    for (const [pattern, price] of Object.entries(prices)) {
      if (pattern.endsWith('*')) this.prefixes.push([pattern.slice(0, -1), configPrice(price)]);
      else this.exact.set(pattern, configPrice(price));
    }
    this.prefixes.sort((a, b) => b[0].length - a[0].length);
  }

  lookup(model: string): Price | undefined {
    const hit = this.exact.get(model);
    if (hit) return hit;
    for (const [prefix, price] of this.prefixes) if (model.startsWith(prefix)) return price;
    return undefined;
  }
}

/** Distinct model names remembered per provider; beyond, a name is looked up each time (clients choose names). */
const MEMO_MAX = 2000;

/** One provider's prices: config, then its catalog provider; memoised per model name. */
export class ModelPrices {
  private readonly memo = new Map<string, Price | null>();

  constructor(
    private readonly config: ConfigPrices,
    /** The genai-prices provider id its models are priced under, if any. */
    readonly catalogId: string | undefined,
    /** Names that stand for a model (Azure deployments): name -> model. */
    private readonly aliases: ReadonlyMap<string, string> | undefined,
  ) {}

  lookup(model: string | undefined): Price | undefined {
    if (model === undefined || model === '') return undefined;
    const known = this.memo.get(model);
    if (known !== undefined) return known ?? undefined;
    const alias = this.aliases?.get(model);
    const price =
      this.config.lookup(model) ??
      (alias !== undefined ? this.config.lookup(alias) : undefined) ??
      (this.catalogId !== undefined ? catalogPrice(this.catalogId, alias ?? model) : undefined);
    if (this.memo.size < MEMO_MAX) this.memo.set(model, price ?? null);
    return price;
  }
}

/** The genai-prices provider id a name stands for (its id, or a provider whose provider_match it meets), if any. */
export function catalogProviderId(name: string): string | undefined {
  return findProvider({ providerId: name })?.id;
}

/** A model's price in the catalog, found once with the catalog's own matching. */
export function catalogPrice(providerId: string, model: string): Price | undefined {
  let found: ReturnType<typeof calcPrice>;
  try {
    found = calcPrice({}, model, { providerId });
  } catch {
    return undefined;
  }
  if (!found) return undefined;
  const prices = found.model.prices;
  const periods: Period[] = Array.isArray(prices)
    ? prices.map((c) => {
        const rates = ratesOf(c.prices);
        const k = c.constraint;
        if (k?.type === 'start_date') return { rates, fromMs: Date.parse(`${k.start_date}T00:00:00Z`) };
        if (k?.type === 'time_of_date')
          return { rates, window: [secondsOfDay(k.start_time), secondsOfDay(k.end_time)] };
        return { rates };
      })
    : [{ rates: ratesOf(prices) }];
  if (periods.some((p) => p.window?.some(Number.isNaN) || Number.isNaN(p.fromMs))) return undefined;
  return periods.some((p) => p.rates) ? new Price('catalog', periods) : undefined;
}

/** Token rates of a catalog price; undefined when it prices neither input nor output tokens. */
function ratesOf(p: ModelPrice): Rates | undefined {
  const input = rate(p.input_mtok);
  const output = rate(p.output_mtok);
  if (input === undefined && output === undefined) return undefined;
  return {
    input: input ?? 0,
    output: output ?? 0,
    cacheRead: rate(p.cache_read_mtok),
    cacheWrite: rate(p.cache_write_mtok),
    reasoning: rate(p.output_reasoning_mtok),
  };
}

function rate(v: ModelPrice[string]): Rate | undefined {
  if (typeof v === 'number') return v;
  if (!v || typeof v !== 'object') return undefined;
  const t = v as Tiered;
  return { base: t.base, tiers: [...t.tiers].sort((a, b) => a.start - b.start) };
}

/** `HH:MM:SS[.f](Z|±HH:MM)` as seconds of the UTC day (NaN when it is not that). */
function secondsOfDay(time: string): number {
  const m = /^(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|([+-])(\d{2}):(\d{2}))$/.exec(time);
  if (!m) return Number.NaN;
  const local = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(`0.${m[4] ?? ''}`);
  const offset = m[5] === 'Z' ? 0 : (m[6] === '+' ? 1 : -1) * (Number(m[7]) * 3600 + Number(m[8]) * 60);
  return (local - offset + 86_400) % 86_400;
}
