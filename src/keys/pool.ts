/**
 * Weighted key selection. Built once per config load; the per-model candidate lists are
 * memoised so a request costs one Map lookup and one random draw. A key the upstream
 * rate-limited with a Retry-After rests for that model: other keys are preferred for it
 * until then (providers limit each model apart: OpenAI, Anthropic and Gemini per model,
 * Azure per deployment).
 */
export interface PoolKey {
  name: string;
  /** Patterns from the config: "*" = any model, "gpt-4o*" = prefix, otherwise exact. */
  models: readonly string[];
  weight: number;
}

interface Candidates<K> {
  keys: K[];
  /** Running sum of weights, same order as keys. */
  cumulative: number[];
  total: number;
}

const MAX_MEMOISED_MODELS = 2048;
/** The longest a key rests, whatever the upstream asked: a key out of quota for hours is
 * still tried now and then, as it is only passed over while others are available. */
export const MAX_REST_MS = 60_000;

export class KeyPool<K extends PoolKey> {
  private readonly memo = new Map<string, Candidates<K>>();
  private readonly anyModel: Candidates<K>;
  /**
   * Keys resting after a 429 with Retry-After, by model ('' for requests naming none),
   * and until when (epoch ms); nearly always empty.
   */
  private readonly resting = new Map<string, Map<K, number>>();
  /** Told of each rest this pool starts (a worker of a group tells the others). */
  onRest: ((key: K, model: string, until: number) => void) | undefined;

  constructor(readonly keys: readonly K[]) {
    // A request that names no model (GET /v1/models, file uploads) may use any key
    // that allows at least one model.
    this.anyModel = candidates(keys.filter((k) => k.models.length > 0));
  }

  get size(): number {
    return this.keys.length;
  }

  /**
   * Pick a key at random by weight among those allowed for the model, preferring keys
   * not in `tried` (retries move to another key when one is available), then keys not
   * resting for this model. When every allowed key is to be passed over, the usual draw
   * decides.
   */
  pick(model: string | undefined, tried?: ReadonlySet<K>): K | undefined {
    const c = this.lookup(model);
    if (c.keys.length === 0) return undefined;
    const resting = this.resting.size > 0 ? this.restingFor(model ?? '') : undefined;
    if ((tried === undefined || tried.size === 0) && resting === undefined) return draw(c);
    let pool = c.keys;
    if (tried && tried.size > 0) {
      const untried = pool.filter((k) => !tried.has(k));
      if (untried.length > 0) pool = untried;
    }
    if (resting) {
      const awake = pool.filter((k) => !resting.has(k));
      if (awake.length > 0) pool = awake;
    }
    return pool.length === c.keys.length ? draw(c) : draw(candidates(pool));
  }

  /** How many keys rest now, for some model at least (for the metrics scrape). */
  restingNow(): number {
    const now = Date.now();
    const keys = new Set<K>();
    for (const byKey of this.resting.values()) for (const [k, until] of byKey) if (until > now) keys.add(k);
    return keys.size;
  }

  /** The upstream refused `key` for `model` for its rate limit and said for how long: prefer others meanwhile. */
  rest(key: K, model: string | undefined, ms: number): void {
    if (this.keys.length < 2 || !(ms > 0)) return;
    const until = Date.now() + Math.min(ms, MAX_REST_MS);
    if (this.restUntil(key, model ?? '', until)) this.onRest?.(key, model ?? '', until);
  }

  /**
   * `key` rests for `model` ('' for none) until `until` (epoch ms): a rest this pool
   * started, or one another process of the group started (told through `onRest` there).
   * False when too many models rest already to remember one more.
   */
  restUntil(key: K, model: string, until: number): boolean {
    let keys = this.resting.get(model);
    if (!keys) {
      if (this.resting.size >= MAX_MEMOISED_MODELS) return false;
      this.resting.set(model, (keys = new Map()));
    }
    keys.set(key, Math.min(until, Date.now() + MAX_REST_MS));
    return true;
  }

  /** The keys resting for a model now (expired rests are dropped here), or undefined for none. */
  private restingFor(model: string): Map<K, number> | undefined {
    const keys = this.resting.get(model);
    if (!keys) return undefined;
    const now = Date.now();
    for (const [k, until] of keys) if (until <= now) keys.delete(k);
    if (keys.size > 0) return keys;
    this.resting.delete(model);
    return undefined;
  }

  private lookup(model: string | undefined): Candidates<K> {
    if (model === undefined) return this.anyModel;
    let c = this.memo.get(model);
    if (!c) {
      c = candidates(this.keys.filter((k) => allows(k.models, model)));
      if (this.memo.size >= MAX_MEMOISED_MODELS) this.memo.clear();
      this.memo.set(model, c);
    }
    return c;
  }
}

export function allows(patterns: readonly string[], model: string): boolean {
  for (const p of patterns) {
    if (p === '*' || p === model) return true;
    if (p.endsWith('*') && model.startsWith(p.slice(0, -1))) return true;
  }
  return false;
}

function candidates<K extends PoolKey>(keys: K[]): Candidates<K> {
  const cumulative: number[] = [];
  let total = 0;
  for (const k of keys) {
    total += k.weight;
    cumulative.push(total);
  }
  return { keys, cumulative, total };
}

function draw<K>(c: Candidates<K>): K {
  if (c.keys.length === 1) return c.keys[0]!;
  // All weights zero: treat as equal weights rather than never choosing.
  if (c.total <= 0) return c.keys[Math.floor(Math.random() * c.keys.length)]!;
  const r = Math.random() * c.total;
  for (let i = 0; i < c.cumulative.length; i++) if (r < c.cumulative[i]!) return c.keys[i]!;
  return c.keys[c.keys.length - 1]!;
}
