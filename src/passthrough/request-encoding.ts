/**
 * A held request body that the client compressed (`Content-Encoding: gzip`, `deflate`,
 * `br`; RFC 9110 §8.4): inflated, bounded, only to read its `model` and `stream`. The
 * compressed bytes are what is forwarded. Without this, compressing a body would hide
 * its model from key choice and from a virtual key's model list.
 */
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';

/**
 * The body as the upstream will read it: `bytes` when not compressed, the inflated
 * bytes (at most `max`), or undefined when that cannot be done (an unknown coding, a
 * corrupt stream, more than `max` once inflated).
 */
export function decodedBody(bytes: Uint8Array, contentEncoding: string | null, max: number): Uint8Array | undefined {
  if (contentEncoding === null) return bytes;
  const coding = contentEncoding.trim().toLowerCase();
  if (coding === '' || coding === 'identity') return bytes;
  const options = { maxOutputLength: Math.max(1, max) };
  try {
    switch (coding) {
      case 'gzip':
      case 'x-gzip':
        return gunzipSync(bytes, options);
      case 'deflate':
        return inflateSync(bytes, options);
      case 'br':
        return brotliDecompressSync(bytes, options);
      default:
        // zstd, several codings stacked, or anything else: not read.
        return undefined;
    }
  } catch {
    return undefined;
  }
}
