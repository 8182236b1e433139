/**
 * The content coding a `Content-Encoding` header names (RFC 9110 §8.4.1), as far as
 * the gateway can undo it: for reading usage out of answers and the model out of
 * requests. Bytes are always forwarded as they are.
 */
export type Coding = 'gzip' | 'deflate' | 'br';

/** null for none or `identity`; 'unsupported' for anything else (zstd, several stacked). */
export function contentCoding(header: string | null): Coding | null | 'unsupported' {
  if (header === null) return null;
  const coding = header.trim().toLowerCase();
  switch (coding) {
    case '':
    case 'identity':
      return null;
    case 'gzip':
    case 'x-gzip':
      return 'gzip';
    case 'deflate':
    case 'br':
      return coding;
    default:
      return 'unsupported';
  }
}
