/**
 * Path safety for passthrough remainders. The remainder is appended to a provider's
 * base URL, so anything that could change the upstream authority or climb out of the
 * base path is refused (RFC 3986 §3.2, §5.2.4): a root other than exactly one "/", a
 * leading "//" (network-path reference), "\" (read as "/" by WHATWG URL parsers),
 * "://", "." and ".." segments, control characters, and "@" in the first segment
 * (userinfo). The percent-decoded form is checked too, since upstream servers decode
 * before routing. Later segments may hold "@" (Vertex model versions: `claude@20250929`).
 */

export type PathCheck = { ok: true } | { ok: false; reason: string };

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

/** Check a raw (still percent-encoded) remainder and its decoded form. */
export function checkPassthroughPath(raw: string): PathCheck {
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
