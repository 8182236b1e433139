/** Weighted key choice, retries moving to other keys, and keys resting after a 429. */
import { describe, expect, test } from 'bun:test';
import { KeyPool, MAX_REST_MS, type PoolKey } from '../src/keys/pool.ts';

const key = (name: string, weight = 1, models = ['*']): PoolKey => ({ name, weight, models });
const draws = (pool: KeyPool<PoolKey>, n: number, tried?: Set<PoolKey>) => {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const k = pool.pick('gpt-4o', tried)!;
    counts[k.name] = (counts[k.name] ?? 0) + 1;
  }
  return counts;
};

describe('KeyPool', () => {
  test('a resting key is passed over while another is allowed, and drawn again once rested', async () => {
    const [a, b, c] = [key('a'), key('b'), key('c', 1, ['gpt-4o-mini'])];
    const pool = new KeyPool([a!, b!, c!]);
    expect(Object.keys(draws(pool, 200)).sort()).toEqual(['a', 'b']);
    pool.rest(a!, 'gpt-4o', 150);
    expect(draws(pool, 200)).toEqual({ b: 200 });
    await Bun.sleep(170);
    expect(draws(pool, 200).a).toBeGreaterThan(50);
  });

  test('a rest is for the model that was limited (providers limit each model apart); restingNow counts keys', () => {
    const [a, b] = [key('a'), key('b')];
    const pool = new KeyPool([a!, b!]);
    pool.rest(a!, 'gpt-4o', 10_000);
    pool.rest(a!, undefined, 10_000);
    expect(draws(pool, 100)).toEqual({ b: 100 });
    expect(pool.pick(undefined)).toBe(b!);
    const mini: Record<string, number> = {};
    for (let i = 0; i < 200; i++) {
      const k = pool.pick('gpt-4o-mini')!;
      mini[k.name] = (mini[k.name] ?? 0) + 1;
    }
    expect(mini.a!).toBeGreaterThan(50);
    expect(pool.restingNow()).toBe(1);
    pool.rest(b!, 'gpt-4o-mini', 10_000);
    expect(pool.restingNow()).toBe(2);
  });

  test('every allowed key resting: the usual weighted draw (the upstream decides)', () => {
    const [a, b] = [key('a', 3), key('b', 1)];
    const pool = new KeyPool([a!, b!]);
    pool.rest(a!, 'gpt-4o', 10_000);
    pool.rest(b!, 'gpt-4o', 10_000);
    const counts = draws(pool, 400);
    expect(counts.a!).toBeGreaterThan(counts.b!);
  });

  test('untried keys come first on a retry, even when they rest; then awake ones among the untried', () => {
    const [a, b, c] = [key('a'), key('b'), key('c')];
    const pool = new KeyPool([a!, b!, c!]);
    pool.rest(b!, 'gpt-4o', 10_000);
    // a was tried: c (untried, awake) is the only choice.
    expect(draws(pool, 100, new Set([a!]))).toEqual({ c: 100 });
    // a and c tried: b (untried, resting) beats the tried ones.
    expect(draws(pool, 100, new Set([a!, c!]))).toEqual({ b: 100 });
  });

  test('a zero-weight key serves only while the weighted ones rest (a backup key)', () => {
    const [main, backup] = [key('main', 1), key('backup', 0)];
    const pool = new KeyPool([main!, backup!]);
    expect(draws(pool, 100)).toEqual({ main: 100 });
    pool.rest(main!, 'gpt-4o', 10_000);
    expect(draws(pool, 100)).toEqual({ backup: 100 });
  });

  test('no rest for a single key, a zero or absent wait; at most MAX_REST_MS', () => {
    const solo = key('solo');
    const one = new KeyPool([solo]);
    one.rest(solo, 'gpt-4o', 5_000);
    expect(one.pick('gpt-4o')).toBe(solo);
    const [a, b] = [key('a'), key('b')];
    const pool = new KeyPool([a!, b!]);
    pool.rest(a!, 'gpt-4o', 0);
    pool.rest(a!, 'gpt-4o', Number.NaN);
    expect(Object.keys(draws(pool, 200)).sort()).toEqual(['a', 'b']);
    const before = Date.now();
    pool.rest(a!, 'gpt-4o', 24 * 3600_000);
    const until = (pool as unknown as { resting: Map<string, Map<PoolKey, number>> }).resting.get('gpt-4o')!.get(a!)!;
    expect(until - before).toBeLessThanOrEqual(MAX_REST_MS + 50);
    expect(until - before).toBeGreaterThan(MAX_REST_MS - 1000);
  });
});
