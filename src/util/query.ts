/** Raw query-string edits that keep every other byte as the client sent it. */

/** Remove every occurrence of a query parameter. */
export function withoutParam(query: string, name: string): string {
  if (!query.includes(name)) return query;
  return query
    .split('&')
    .filter((part) => part !== name && !part.startsWith(`${name}=`))
    .join('&');
}
