/** Raw query-string edits that keep every other byte as the client sent it, and percent-decoding. */

/** Remove every occurrence of a query parameter. */
export function withoutParam(query: string, name: string): string {
  if (!query.includes(name)) return query;
  return query
    .split('&')
    .filter((part) => part !== name && !part.startsWith(`${name}=`))
    .join('&');
}

/** Percent-decoded (RFC 3986 §2.1), or `s` as it is when its escapes are malformed. */
export function percentDecoded(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** A query value as form encoding means it: `+` is a space, then percent-decoded. */
export function decodedQueryValue(v: string): string {
  return percentDecoded(v.replaceAll('+', ' '));
}
