/**
 * `model` and `stream` of a JSON request body, read from its root object's members
 * without parsing the body into objects. Strings (the messages: most of an LLM request)
 * are skipped with a native search for their closing quote, so the cost is a few
 * memchr calls plus a walk over the structure, with nothing allocated but the model.
 *
 * Not a validator: the upstream judges the body (it is forwarded byte for byte either
 * way). A body whose structure cannot be followed (not an object, a string or container
 * left open, garbage after the root) gives undefined, as JSON.parse would; one that is
 * malformed inside a value (say a raw newline in a string) may still give its model.
 * A repeated member counts once, the last one, as in JSON.parse (RFC 8259 section 4
 * leaves duplicates to the parser).
 */
import type { RootMembers } from '../core/request.ts';
import {
  CLOSE,
  COLON,
  COMMA,
  hasBackslash,
  OPEN,
  QUOTE,
  skipSpace,
  skipValue,
  stringEnd,
  stringValue,
} from '../lib/json-bytes.ts';

const MODEL = new TextEncoder().encode('model');
const STREAM = new TextEncoder().encode('stream');
const TRUE = new TextEncoder().encode('true');

export function rootMembers(bytes: Uint8Array): RootMembers | undefined {
  const n = bytes.length;
  // A UTF-8 byte order mark: TextDecoder drops it, so JSON.parse never saw one either.
  let i = skipSpace(bytes, bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0);
  if (bytes[i] !== OPEN) return undefined;
  i = skipSpace(bytes, i + 1);
  let model: string | undefined;
  let stream = false;
  if (bytes[i] === CLOSE) i++;
  else {
    for (;;) {
      if (bytes[i] !== QUOTE) return undefined;
      const keyEnd = stringEnd(bytes, i);
      if (keyEnd < 0) return undefined;
      const key = memberName(bytes, i, keyEnd);
      i = skipSpace(bytes, keyEnd + 1);
      if (bytes[i] !== COLON) return undefined;
      const valueStart = skipSpace(bytes, i + 1);
      const valueEnd = skipValue(bytes, valueStart);
      if (valueEnd < 0) return undefined;
      if (key === 'model') model = bytes[valueStart] === QUOTE ? stringValue(bytes, valueStart, valueEnd) : undefined;
      else if (key === 'stream') stream = valueEnd - valueStart === 4 && startsWith(bytes, valueStart, TRUE);
      i = skipSpace(bytes, valueEnd);
      if (bytes[i] === COMMA) {
        i = skipSpace(bytes, i + 1);
        continue;
      }
      if (bytes[i] !== CLOSE) return undefined;
      i++;
      break;
    }
  }
  return skipSpace(bytes, i) === n ? { model, stream } : undefined;
}

/** 'model', 'stream' or undefined for any other member name (escaped names decoded). */
function memberName(bytes: Uint8Array, open: number, close: number): 'model' | 'stream' | undefined {
  const len = close - open - 1;
  if (len === 5 && startsWith(bytes, open + 1, MODEL)) return 'model';
  if (len === 6 && startsWith(bytes, open + 1, STREAM)) return 'stream';
  // An escaped name ("mod\u0065l") is the same member to JSON.parse.
  if (len > 6 && hasBackslash(bytes, open + 1, close)) {
    const name = stringValue(bytes, open, close + 1);
    return name === 'model' || name === 'stream' ? name : undefined;
  }
  return undefined;
}

function startsWith(bytes: Uint8Array, at: number, word: Uint8Array): boolean {
  for (let k = 0; k < word.length; k++) if (bytes[at + k] !== word[k]) return false;
  return true;
}

/**
 * [start, end) of the value of member `name` of the object opening at `open` (the last
 * one when repeated), undefined when it has none, null when its structure cannot be
 * followed. Names are compared as written (an escaped name is another name here).
 */
export function memberRange(bytes: Uint8Array, open: number, name: Uint8Array): [number, number] | undefined | null {
  if (bytes[open] !== OPEN) return null;
  let i = skipSpace(bytes, open + 1);
  if (bytes[i] === CLOSE) return undefined;
  let found: [number, number] | undefined;
  for (;;) {
    if (bytes[i] !== QUOTE) return null;
    const keyEnd = stringEnd(bytes, i);
    if (keyEnd < 0) return null;
    const isName = keyEnd - i - 1 === name.length && startsWith(bytes, i + 1, name);
    i = skipSpace(bytes, keyEnd + 1);
    if (bytes[i] !== COLON) return null;
    const valueStart = skipSpace(bytes, i + 1);
    const valueEnd = skipValue(bytes, valueStart);
    if (valueEnd < 0) return null;
    if (isName) found = [valueStart, valueEnd];
    i = skipSpace(bytes, valueEnd);
    if (bytes[i] === COMMA) {
      i = skipSpace(bytes, i + 1);
      continue;
    }
    return bytes[i] === CLOSE ? found : null;
  }
}

/** Index of the root object's `{` (after a byte order mark and whitespace), or -1. */
export function rootOpen(bytes: Uint8Array): number {
  const i = skipSpace(bytes, bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0);
  return bytes[i] === OPEN ? i : -1;
}
