/**
 * Comparing a presented secret with configured ones in constant time: both are hashed
 * with SHA-256 (equal lengths whatever the input) and compared with `timingSafeEqual`,
 * so neither the position of a mismatch nor the secret's length shows in the timing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** Whether `given` hashes to `digest` (a sha256 of the configured secret), in constant time. */
export function matchesDigest(given: string, digest: Buffer): boolean {
  return timingSafeEqual(sha256(given), digest);
}

/** The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1), or undefined. */
export function bearerToken(header: string | null): string | undefined {
  if (header === null) return undefined;
  const m = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}
