/**
 * Raw query-string edits that keep every other byte as the client sent it, and
 * percent-decoding.
 *
 * Parameter names are compared as a server reads them, not as they are spelled: form-
 * decoded (`+` is a space, then %XX), stripped of surrounding spaces and control
 * characters, lower-cased. So `k%65y=`, `%6B%65%79=`, `KEY=` and `key%20=` all name `key`,
 * and a credential cannot pass beside the gateway's by a spelling the upstream decodes.
 * Both `&` and `;` separate parameters (some servers still split on `;`): a part that
 * names a parameter in either way counts.
 */

/** A query parameter name as servers read it (see above). */
export function paramName(rawName: string): string {
  let name = rawName;
  if (name.includes('+')) name = name.replaceAll('+', ' ');
  name = percentDecoded(name);
  let start = 0;
  let end = name.length;
  while (start < end && name.charCodeAt(start) <= 0x20) start++;
  while (end > start && name.charCodeAt(end - 1) <= 0x20) end--;
  return name.slice(start, end).toLowerCase();
}

/**
 * Whether the `&`-separated part `part` names one of `names` (lower-case, read as above),
 * with a value that passes `test` (form-decoded) when one is given.
 */
function matches(part: string, names: ReadonlySet<string>, test: ((value: string) => boolean) | undefined): boolean {
  if (part.includes(';')) return part.split(';').some((p) => matches(p, names, test));
  const eq = part.indexOf('=');
  if (!names.has(paramName(eq < 0 ? part : part.slice(0, eq)))) return false;
  return test === undefined || test(eq < 0 ? '' : decodedQueryValue(part.slice(eq + 1)));
}

/**
 * Remove every parameter whose name, read as servers read it, is one of `names`
 * (lower-case), and whose value passes `test` when one is given.
 */
export function withoutParams(query: string, names: ReadonlySet<string>, test?: (value: string) => boolean): string {
  if (query === '') return query;
  const parts = query.split('&');
  const kept = parts.filter((part) => !matches(part, names, test));
  return kept.length === parts.length ? query : kept.join('&');
}

/** The form-decoded values of every parameter named `name` (lower-case, read as above), in order. */
export function paramValues(query: string, name: string): string[] {
  const values: string[] = [];
  if (query === '') return values;
  for (const part of query.split(/[&;]/)) {
    const eq = part.indexOf('=');
    if (paramName(eq < 0 ? part : part.slice(0, eq)) === name)
      values.push(eq < 0 ? '' : decodedQueryValue(part.slice(eq + 1)));
  }
  return values;
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
