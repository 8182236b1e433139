/**
 * Walking JSON text as UTF-8 bytes without parsing it (RFC 8259): the structural bytes,
 * whitespace, and where a string or container ends. Strings are skipped with a native
 * search for their closing quote. Shared by the request-body member scan, the usage
 * tail reader and the answer URL rewrite; none validates JSON.
 */

const decoder = new TextDecoder();

export const QUOTE = 0x22;
export const BACKSLASH = 0x5c;
export const COLON = 0x3a;
export const COMMA = 0x2c;
export const OPEN = 0x7b;
export const CLOSE = 0x7d;
export const OPEN_ARRAY = 0x5b;
export const CLOSE_ARRAY = 0x5d;

export const isSpace = (b: number | undefined): boolean => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

export function skipSpace(bytes: Uint8Array, i: number): number {
  while (isSpace(bytes[i])) i++;
  return i;
}

/** Whether the byte at `i` follows an odd run of backslashes (an escaped quote in a string). */
export function escaped(bytes: Uint8Array, i: number): boolean {
  let n = 0;
  while (i - n - 1 >= 0 && bytes[i - n - 1] === BACKSLASH) n++;
  return n % 2 === 1;
}

/** Index of the quote closing the string that opens at `start`, or -1 when there is none before `limit`. */
export function stringEnd(bytes: Uint8Array, start: number, limit = bytes.length): number {
  let q = bytes.indexOf(QUOTE, start + 1);
  while (q > 0 && q < limit) {
    if (!escaped(bytes, q)) return q;
    q = bytes.indexOf(QUOTE, q + 1);
  }
  return -1;
}

/**
 * Index of the `}` or `]` that closes the container `from` is inside of (skipping the
 * strings and containers on the way), or -1 when there is none before `limit`.
 */
export function enclosingClose(bytes: Uint8Array, from: number, limit = bytes.length): number {
  let depth = 0;
  for (let j = from; j < limit; j++) {
    const c = bytes[j];
    if (c === QUOTE) {
      j = stringEnd(bytes, j, limit);
      if (j < 0) return -1;
    } else if (c === OPEN || c === OPEN_ARRAY) depth++;
    else if (c === CLOSE || c === CLOSE_ARRAY) {
      if (depth-- === 0) return j;
    }
  }
  return -1;
}

/** Index just past the object or array opening at `start`, or -1 when it does not close before `limit`. */
export function containerEnd(bytes: Uint8Array, start: number, limit = bytes.length): number {
  const close = enclosingClose(bytes, start + 1, limit);
  return close < 0 ? -1 : close + 1;
}

/** Index just past the value starting at `i`, or -1 when it does not end. */
export function skipValue(bytes: Uint8Array, i: number): number {
  const b = bytes[i];
  if (b === QUOTE) {
    const end = stringEnd(bytes, i);
    return end < 0 ? -1 : end + 1;
  }
  if (b === OPEN || b === OPEN_ARRAY) return containerEnd(bytes, i);
  // A number or literal: up to the next delimiter.
  let j = i;
  while (j < bytes.length) {
    const c = bytes[j]!;
    if (c === COMMA || c === CLOSE || c === CLOSE_ARRAY || isSpace(c)) break;
    j++;
  }
  return j === i ? -1 : j;
}

/** A byte loop, not indexOf: these ranges are short, and indexOf would search past them to the body's end. */
export function hasBackslash(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] === BACKSLASH) return true;
  return false;
}

/** The string literal in [start, end) (quotes included): decoded directly, or by JSON.parse when it has escapes. */
export function stringValue(bytes: Uint8Array, start: number, end: number): string | undefined {
  if (!hasBackslash(bytes, start + 1, end - 1)) return decoder.decode(bytes.subarray(start + 1, end - 1));
  try {
    return JSON.parse(decoder.decode(bytes.subarray(start, end))) as string;
  } catch {
    return undefined;
  }
}
