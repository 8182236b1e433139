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
import { CLOSE, COLON, containerEnd, enclosingClose, escaped, OPEN, skipSpace } from '../lib/json-bytes.ts';

/** A usage object longer than this is not searched for its end (real ones are ~100-600 bytes). */
const MAX_OBJECT_BYTES = 4096;
/** How far from the end the key is looked for before giving up. */
const MAX_TAIL_BYTES = 16 * 1024;

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
  const end = containerEnd(bytes, start, Math.min(bytes.length, start + MAX_OBJECT_BYTES));
  if (end < 0) return undefined;
  // What follows must close exactly one level (the root object) and end the document.
  if (!closesRoot(bytes, end)) return undefined;
  if (bytes[skipSpace(bytes, 0)] !== OPEN) return undefined;
  return [start, end];
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

/** Whether the bytes from `from` are more members of the root and then its closing `}` alone. */
function closesRoot(bytes: Uint8Array, from: number): boolean {
  const close = enclosingClose(bytes, from);
  return close >= 0 && bytes[close] === CLOSE && skipSpace(bytes, close + 1) === bytes.length;
}
