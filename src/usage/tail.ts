/**
 * Finds the top-level usage object of a whole JSON answer near its end, so that only
 * that object is decoded and parsed instead of the whole answer (every provider writes
 * `usage` / `usageMetadata` among the last fields). Anything unexpected returns
 * undefined and the caller parses the whole body, so the result never differs from a
 * full parse on a well-formed answer.
 *
 * Why a backwards search for the key is safe (RFC 8259 section 7): inside a string
 * every `"` is escaped, so `e"` cannot occur in one, and an unescaped `"` before
 * `usage"` opens a string: the bytes `"usage"` are a string of their own, and followed
 * by `:` a member name. The object's depth is proven by the bytes after it: exactly one
 * `}` (the root's) may close outside strings, at the end of the document.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
/** A usage object longer than this is not searched for its end (real ones are ~100-600 bytes). */
const MAX_OBJECT_BYTES = 4096;
/** How far from the end the key is looked for before giving up. */
const MAX_TAIL_BYTES = 16 * 1024;

const isSpace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;

/** The key as the bytes `"name"`, made once per format. */
export function memberKey(name: string): Uint8Array {
  return new TextEncoder().encode(`"${name}"`);
}

/**
 * [start, end) of the object value of the root object's last `key` member, or undefined
 * when it is not found in the tail, not an object, not at the root, or when the bytes
 * around it are not what a JSON object ends with.
 */
export function rootMemberObject(bytes: Uint8Array, key: Uint8Array): [number, number] | undefined {
  const at = lastIndexOfKey(bytes, key);
  if (at < 0 || escaped(bytes, at)) return undefined;
  let i = skipSpace(bytes, at + key.length);
  if (bytes[i] !== COLON) return undefined;
  i = skipSpace(bytes, i + 1);
  if (bytes[i] !== OPEN) return undefined;
  const start = i;
  const end = valueEnd(bytes, start, Math.min(bytes.length, start + MAX_OBJECT_BYTES));
  if (end < 0) return undefined;
  // What follows must close exactly one level (the root object) and end the document.
  if (!closesRoot(bytes, end)) return undefined;
  if (bytes[skipSpace(bytes, 0)] !== OPEN) return undefined;
  return [start, end];
}

/** Whether the byte at `i` follows an odd run of backslashes (an escaped quote in a string). */
function escaped(bytes: Uint8Array, i: number): boolean {
  let n = 0;
  while (i - n - 1 >= 0 && bytes[i - n - 1] === BACKSLASH) n++;
  return n % 2 === 1;
}

function skipSpace(bytes: Uint8Array, i: number): number {
  while (i < bytes.length && isSpace(bytes[i]!)) i++;
  return i;
}

function lastIndexOfKey(bytes: Uint8Array, key: Uint8Array): number {
  const stop = Math.max(0, bytes.length - MAX_TAIL_BYTES);
  const last = key[key.length - 1]!;
  outer: for (let i = bytes.length - 1; i >= stop + key.length - 1; i--) {
    if (bytes[i] !== last) continue;
    const from = i - key.length + 1;
    for (let k = 0; k < key.length - 1; k++) if (bytes[from + k] !== key[k]) continue outer;
    return from;
  }
  return -1;
}

/** Index just past the object or array opening at `start`, or -1 when it does not close before `limit`. */
function valueEnd(bytes: Uint8Array, start: number, limit: number): number {
  let depth = 0;
  for (let i = start; i < limit; i++) {
    const b = bytes[i]!;
    if (b === QUOTE) {
      i = stringEnd(bytes, i, limit);
      if (i < 0) return -1;
    } else if (b === OPEN || b === OPEN_ARRAY) depth++;
    else if (b === CLOSE || b === CLOSE_ARRAY) {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/** Index of the quote closing the string that opens at `start`, or -1. */
function stringEnd(bytes: Uint8Array, start: number, limit: number): number {
  for (let i = start + 1; i < limit; i++) {
    const b = bytes[i]!;
    if (b === BACKSLASH) i++;
    else if (b === QUOTE) return i;
  }
  return -1;
}

/** Whether the bytes from `from` are more members of the root and then its closing `}` alone. */
function closesRoot(bytes: Uint8Array, from: number): boolean {
  let depth = 0;
  for (let i = from; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b === QUOTE) {
      i = stringEnd(bytes, i, bytes.length);
      if (i < 0) return false;
    } else if (b === OPEN || b === OPEN_ARRAY) depth++;
    else if (b === CLOSE || b === CLOSE_ARRAY) {
      depth--;
      if (depth < 0) return b === CLOSE && skipSpace(bytes, i + 1) === bytes.length;
    }
  }
  return false;
}
