/**
 * Who may read a plugin's admin routes (/metrics, the explorer API): a bearer token when
 * one is configured, compared in constant time; else, for the explorer, loopback only.
 */
import { bearerToken, matchesDigest, sha256 } from '../../lib/secrets.ts';

/** A configured bearer token, kept as its digest. */
export class BearerToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = sha256(token);
  }

  /** Whether the request's `Authorization: Bearer` (or `given`, when passed) is the token. */
  accepts(authorization: string | null, given = bearerToken(authorization)): boolean {
    return given !== undefined && matchesDigest(given, this.digest);
  }
}

export function isLoopbackIp(ip: string | undefined): boolean {
  if (!ip) return false;
  if (ip === '::1') return true;
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/**
 * The request's URL. Bun gives the bare request target when the request named no host
 * (HTTP/1.0 without Host, or an empty Host); browsers always send one, so such a request
 * is no DNS-rebinding page and is read as addressed to localhost.
 */
export function requestUrl(request: Request): URL {
  return new URL(request.url, 'http://localhost');
}
