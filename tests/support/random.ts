/**
 * A deterministic random source for generated test inputs (xorshift32: unlike an LCG,
 * its low bits are not periodic). `rand(n)` is an integer in [0, n).
 */
export function seededRandom(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return Math.floor(((x >>> 0) / 4294967296) * n);
  };
}
