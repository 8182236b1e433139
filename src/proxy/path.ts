/**
 * Path safety for passthrough remainders. The remainder is appended to a provider's
 * base URL, so anything that could change the upstream authority or climb out of the
 * base path is refused (RFC 3986 §3.2, §5.2.4): a root other than exactly one "/", a
 * leading "//" (network-path reference), "\\" (read as "/" by WHATWG URL parsers),
 * "://", "." and ".." segments, control characters, "#" (a fragment is never sent), and
 * "@" in the first segment (userinfo). The percent-decoded form is checked too, since
 * upstream servers decode before routing. Later segments may hold "@" (Vertex model
 * versions: `claude@20250929`).
 *
 * Bun's server hands over `request.url` already parsed by the WHATWG URL rules: dot
 * segments in any spelling (`..`, `.%2e`, `%2E.`, ...) resolved, "\\" read as "/". So the
 * rules above cannot see what the client actually sent. Bun's router, though, matches
 * the raw request target and gives its segments as route parameters: `sameSegments`
 * compares those with the parsed remainder, and any difference (whatever rewrote it) is
 * refused. The rule follows the parser instead of listing its spellings.
 */
import { percentDecoded } from '../lib/query.ts';

export type PathCheck = { ok: true } | { ok: false; reason: string };

/**
 * The shape of the raw-target route a request matched: its segments after the prefix
 * are the route parameters `names` (in order), followed by a "/" when `trailingSlash`.
 */
/** Segments after a prefix that raw-target routes cover; a deeper target is refused. */
export const MAX_SEGMENTS = 32;

export interface RawRoute {
  readonly names: readonly string[];
  readonly trailingSlash: boolean;
}

const OK: PathCheck = { ok: true };

function checkRules(p: string): PathCheck {
  if (p.charCodeAt(0) !== 47 /* / */) return { ok: false, reason: 'must start with /' };
  if (p.charCodeAt(1) === 47) return { ok: false, reason: 'must not start with //' };
  if (p.includes('\\')) return { ok: false, reason: 'must not contain a backslash' };
  if (p.includes('://')) return { ok: false, reason: 'must not contain a URL scheme' };
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return { ok: false, reason: 'must not contain control characters' };
  }
  const firstEnd = p.indexOf('/', 1);
  const first = firstEnd < 0 ? p.slice(1) : p.slice(1, firstEnd);
  if (first.includes('@')) return { ok: false, reason: 'first segment must not contain @' };
  if (p.includes('/.')) {
    for (const segment of p.split('/')) {
      if (segment === '..' || segment === '.') return { ok: false, reason: 'must not contain . or .. segments' };
    }
  }
  return OK;
}

/**
 * Check a raw (still percent-encoded) remainder and its decoded form, and the query: a
 * literal "#" in either would start a fragment the upstream never receives (an encoded
 * one, %23, is data).
 */
export function checkPassthroughPath(raw: string, query = ''): PathCheck {
  if (raw.includes('#') || query.includes('#')) return { ok: false, reason: 'must not contain a fragment (#)' };
  const direct = checkRules(raw);
  if (!direct.ok || !raw.includes('%')) return direct;
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return { ok: false, reason: 'malformed percent-encoding' };
  }
  return checkRules(decoded);
}

/**
 * Split a request URL into the remainder after `prefix` and the raw query. Returns
 * undefined when the prefix does not end at a segment boundary. Bun gives an absolute
 * URL, or the bare request target when the request named no host (HTTP/1.0 without a
 * Host header, or an empty Host: RFC 9112 §3.2 allows both).
 */
export function splitPassthroughUrl(url: string, prefix: string): { path: string; query: string } | undefined {
  const pathStart = url.charCodeAt(0) === 47 ? 0 : url.indexOf('/', url.indexOf('//') + 2);
  if (pathStart < 0) return undefined;
  const q = url.indexOf('?', pathStart);
  const fullPath = q < 0 ? url.slice(pathStart) : url.slice(pathStart, q);
  if (!fullPath.startsWith(prefix)) return undefined;
  const rest = fullPath.slice(prefix.length);
  if (rest !== '' && rest.charCodeAt(0) !== 47) return undefined;
  return { path: rest === '' ? '/' : rest, query: q < 0 ? '' : url.slice(q + 1) };
}

/** What `sameSegments` found wrong with a raw target, in the client's terms. */
export function describeRawMismatch(params: Readonly<Record<string, string>>, route: RawRoute): string {
  const raw = route.names.map((n) => params[n] ?? '');
  if (raw.some((s) => s === '.' || s === '..')) return 'must not contain . or .. segments, in any spelling (%2e)';
  if (raw.some((s) => s.includes('\\'))) return 'must not contain a backslash';
  if (route.trailingSlash && route.names.length === MAX_SEGMENTS)
    return `must not have more than ${MAX_SEGMENTS} segments`;
  return 'must not contain empty segments (//), or dot segments after them';
}

/**
 * Whether the parsed remainder `path` is, segment by segment, the raw one: `params`
 * holds the raw target's segments (percent-decoded by Bun's router) under `route.names`.
 * A segment may differ in spelling only (percent-encoding the URL parser added).
 */
export function sameSegments(params: Readonly<Record<string, string>>, route: RawRoute, path: string): boolean {
  const names = route.names;
  if (names.length === 0) return path === '/';
  let at = 1;
  for (let i = 0; i < names.length; i++) {
    const raw = params[names[i]!];
    if (raw === undefined) return false;
    let end = path.indexOf('/', at);
    if (end < 0) end = path.length;
    if (!(end - at === raw.length && path.startsWith(raw, at)) && percentDecoded(path.slice(at, end)) !== raw)
      return false;
    at = end + 1;
  }
  // Past the last segment: the end of the path, or its trailing "/" and then the end.
  return route.trailingSlash ? at === path.length && path.charCodeAt(at - 1) === 47 : at === path.length + 1;
}
