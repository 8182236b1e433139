/**
 * `usage.add_stream_usage`: an OpenAI chat stream request that does not say whether it
 * wants usage gets `stream_options.include_usage: true`, so the stream's last chunk
 * carries it (without it a chat stream reports no usage at all). A byte edit of the held
 * body: one member inserted at the start of the root object (or of its `stream_options`
 * object), the rest forwarded byte for byte. A client's own `include_usage`, true or
 * false, is left as it is; a compressed body is not edited.
 */
import { CLOSE, OPEN, skipSpace } from '../lib/json-bytes.ts';
import type { RequestBody } from './body.ts';
import { memberRange, rootOpen } from './members.ts';

type Held = Extract<RequestBody, { kind: 'held' }>;

const encoder = new TextEncoder();
const STREAM_OPTIONS = encoder.encode('stream_options');
const INCLUDE_USAGE = encoder.encode('include_usage');
const MEMBER = encoder.encode('"stream_options":{"include_usage":true}');
const INNER = encoder.encode('"include_usage":true');
const OBJECT = encoder.encode('{"include_usage":true}');
const COMMA = encoder.encode(',');
const NOTHING = new Uint8Array(0);

/** The body with usage asked for, or the same body when it needs no edit (or cannot be edited). */
export function withStreamUsage(body: Held): Held {
  const bytes = body.bytes;
  if (body.readable !== bytes || !body.members?.stream) return body; // compressed, or not a stream
  const root = rootOpen(bytes);
  if (root < 0) return body;
  const options = memberRange(bytes, root, STREAM_OPTIONS);
  if (options === null) return body;
  let edited: Uint8Array<ArrayBuffer>;
  if (options === undefined) edited = insertFirst(bytes, root, MEMBER);
  else if (bytes[options[0]] === OPEN) {
    const own = memberRange(bytes, options[0], INCLUDE_USAGE);
    if (own !== undefined) return body; // the client said, or the object cannot be followed
    edited = insertFirst(bytes, options[0], INNER);
  } else edited = splice(bytes, options[0], options[1], OBJECT, NOTHING); // `null`
  return { kind: 'held', bytes: edited, readable: edited, members: body.members };
}

/** `member` as the first member of the object opening at `open`. */
function insertFirst(bytes: Uint8Array, open: number, member: Uint8Array): Uint8Array<ArrayBuffer> {
  const empty = bytes[skipSpace(bytes, open + 1)] === CLOSE;
  return splice(bytes, open + 1, open + 1, member, empty ? NOTHING : COMMA);
}

function splice(bytes: Uint8Array, from: number, to: number, a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length - (to - from) + a.length + b.length);
  out.set(bytes.subarray(0, from), 0);
  out.set(a, from);
  out.set(b, from + a.length);
  out.set(bytes.subarray(to), from + a.length + b.length);
  return out;
}
