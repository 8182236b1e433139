/**
 * A held request body that the client compressed (`Content-Encoding: gzip`, `deflate`,
 * `br`): inflated, bounded, only to read its `model` and `stream`. The compressed bytes
 * are what is forwarded. Without this, compressing a body would hide its model from key
 * choice and from a virtual key's model list.
 */
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { contentCoding } from '../lib/content-coding.ts';

/**
 * The body as the upstream will read it: `bytes` when not compressed, the inflated
 * bytes (at most `max`), or undefined when that cannot be done (an unsupported coding,
 * a corrupt stream, more than `max` once inflated).
 */
export function decodedBody(bytes: Uint8Array, contentEncoding: string | null, max: number): Uint8Array | undefined {
  const coding = contentCoding(contentEncoding);
  if (coding === null) return bytes;
  if (coding === 'unsupported') return undefined;
  const options = { maxOutputLength: Math.max(1, max) };
  try {
    return coding === 'gzip' ? gunzipSync(bytes, options) : coding === 'deflate' ? inflateSync(bytes, options) : brotliDecompressSync(bytes, options);
  } catch {
    return undefined;
  }
}
