/** Times as the request log reports them. */

/** Milliseconds rounded to 0.01 ms. */
export const roundMs = (ms: number): number => Math.round(ms * 100) / 100;

let isoMs = 0;
let isoText = '';

/** `new Date().toISOString()`, formatted once per millisecond rather than once per request. */
export function isoNow(): string {
  const ms = Date.now();
  if (ms !== isoMs) {
    isoMs = ms;
    isoText = new Date(ms).toISOString();
  }
  return isoText;
}
