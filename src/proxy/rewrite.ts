/**
 * Provider URLs in an answer that point back at the provider (Provider.responseUrls: a
 * Gemini upload session, a redirect, an Anthropic batch's `results_url`) are rewritten
 * to the gateway, so the SDK's follow-up call comes back through it (the gateway's key,
 * a log line, governance) instead of missing the passthrough prefix or going around it.
 *
 * Only a URL on the very origin this request was sent to (scheme, host compared
 * case-insensitively, effective port; no userinfo), or a path-only one, is rewritten, and
 * only when the gateway routes the result back to exactly that URL (the provider's url()
 * is asked): `<public origin><route prefix><path>?<query>`, path and query copied as
 * encoded, credential parameters (`key=`) removed. Everything else is left as it is.
 *
 * The public origin is server.public_url, else the request's scheme and Host; the
 * X-Forwarded-Proto / -Host / -Port headers count only from server.trusted_proxies.
 *
 * Headers are rewritten on any answer. JSON members only in answers read whole (never a
 * stream; at most JSON_MAX bytes, inflated first when compressed), by editing the string
 * value in place: every other byte is kept. An edited compressed answer is sent
 * uncompressed (identity is always acceptable to a client, RFC 9110 §12.5.3; these are
 * small objects), with its length recomputed. Answers without such URLs are not touched,
 * and cost a header lookup or two (the provider's rule, then the content type, decide).
 */
import type { CompiledKey } from '../config/runtime.ts';
import {
  CLOSE,
  CLOSE_ARRAY,
  COLON,
  COMMA,
  OPEN,
  OPEN_ARRAY,
  QUOTE,
  skipSpace,
  skipValue,
  stringEnd,
  stringValue,
} from '../lib/json-bytes.ts';
import { withoutParams } from '../lib/query.ts';
import { CREDENTIAL_PARAMS } from '../providers/credentials.ts';
import type { ResponseUrls } from '../providers/provider.ts';
import { decodedBody } from './body.ts';
import type { Answer } from './exchange.ts';
import { heldHeaders, holdBody } from './hold.ts';
import { checkPassthroughPath } from './path.ts';
import type { Context } from './prepare.ts';

type Relayed = Extract<Answer, { kind: 'response' }>;

/** A JSON answer longer than this (declared, read, or inflated) is relayed untouched. */
const JSON_MAX = 8 * 1024 * 1024;
const JSON_TYPE = /^\s*application\/(?:[^;\s]*\+)?json\s*(?:;|$)/i;
/** Headers describing the exact bytes of a body that was edited. */
const BYTE_HEADERS = ['etag', 'content-md5', 'digest', 'content-digest', 'repr-digest'];
const encoder = new TextEncoder();

/**
 * The answer with its provider URLs pointed at the gateway, or undefined when it carries
 * none (nearly every answer: then nothing was allocated and nothing awaited).
 */
export function rewriteAnswer(ctx: Context, answer: Relayed): Promise<Response> | undefined {
  const rule = ctx.call.provider.responseUrls;
  if (!rule) return undefined;
  const upstream = answer.response;
  let inHeaders = false;
  for (const name of rule.headers) {
    if (applies(name, upstream.status) && upstream.headers.has(name)) {
      inHeaders = true;
      break;
    }
  }
  const method = ctx.request.method;
  const inJson =
    rule.jsonFields !== undefined &&
    upstream.body !== null &&
    method !== 'HEAD' &&
    rule.jsonFields.on(method, ctx.path) &&
    JSON_TYPE.test(upstream.headers.get('content-type') ?? '') &&
    Number(upstream.headers.get('content-length') ?? 0) <= JSON_MAX;
  if (!inHeaders && !inJson) return undefined;
  return rewritten(ctx, answer, rule, inJson);
}

/** `location` holds a URL to follow on redirects only; other listed headers on any answer. */
const applies = (name: string, status: number): boolean => name !== 'location' || (status >= 300 && status < 400);

async function rewritten(ctx: Context, answer: Relayed, rule: ResponseUrls, inJson: boolean): Promise<Response> {
  const upstream = answer.response;
  const status = upstream.status;
  const urls = new GatewayUrls(ctx, answer.url, answer.key);
  let headers = upstream.headers;
  for (const name of rule.headers) {
    const value = applies(name, status) ? headers.get(name) : null;
    const url = value === null ? undefined : urls.rewrite(value);
    if (url === undefined) continue;
    if (headers === upstream.headers) headers = new Headers(headers); // the hooks' view of the answer stays as received
    headers.set(name, url);
  }
  if (!inJson) return new Response(upstream.body, { status, headers });

  const held = await holdBody(upstream.body!, JSON_MAX, ctx.call.settings.idleTimeoutMs);
  if (held.bytes === undefined) return new Response(held.stream, { status, headers });
  let bytes = held.bytes;
  const encoding = headers.get('content-encoding');
  const json = decodedBody(bytes, encoding, JSON_MAX);
  const edited = json && rewriteJsonUrls(json, jsonUrlFields(rule.jsonFields!.paths), urls);
  if (edited) bytes = edited;
  headers = heldHeaders(headers, bytes.byteLength);
  if (edited) {
    if (encoding !== null) headers.delete('content-encoding');
    for (const name of BYTE_HEADERS) headers.delete(name);
  }
  return new Response(bytes, { status, headers });
}

// --- the URLs -------------------------------------------------------------------------

interface SplitUrl {
  /** Lower-case scheme and host, and the effective port; undefined for a path-only URL. */
  origin: { scheme: string; host: string; port: string } | undefined;
  /** As encoded, from the first `/` (never empty). */
  path: string;
  /** As encoded, without `?`. */
  query: string;
  /** With its `#`, or empty. */
  fragment: string;
}

const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/;
const PATH_ONLY = /^(\/(?!\/)[^?#]*)(?:\?([^#]*))?(#.*)?$/;
const AUTHORITY = /^(\[[0-9A-Fa-f:.]+\]|[^:@[\]]+)(?::(\d*))?$/;
const DEFAULT_PORT: Record<string, string> = { http: '80', https: '443' };

/** An http(s) URL or a path-only one, split as written; undefined for anything else (userinfo included). */
function splitUrl(value: string): SplitUrl | undefined {
  const path = PATH_ONLY.exec(value);
  if (path) return { origin: undefined, path: path[1]!, query: path[2] ?? '', fragment: path[3] ?? '' };
  const m = ABSOLUTE.exec(value);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  const defaultPort = DEFAULT_PORT[scheme];
  const authority = AUTHORITY.exec(m[2]!); // `@` (userinfo) never matches
  if (!defaultPort || !authority) return undefined;
  const port = authority[2] ? String(Number(authority[2])) : defaultPort;
  return {
    origin: { scheme, host: authority[1]!.toLowerCase(), port },
    path: m[3] || '/',
    query: m[4] ?? '',
    fragment: m[5] ?? '',
  };
}

const sameOrigin = (a: SplitUrl['origin'], b: SplitUrl['origin']): boolean =>
  a !== undefined && b !== undefined && a.scheme === b.scheme && a.host === b.host && a.port === b.port;

/** Gateway URLs for the provider URLs of one answer (built only for answers that have some). */
class GatewayUrls {
  private readonly sent: SplitUrl | undefined;
  /** `<public origin><route prefix>`, worked out on first use; null when the origin is unknown. */
  private base: string | null | undefined;

  constructor(
    private readonly ctx: Context,
    sentTo: string,
    private readonly key: CompiledKey | undefined,
  ) {
    this.sent = splitUrl(sentTo);
  }

  /** The gateway URL standing for `value`, or undefined to leave it as it is. */
  rewrite(value: string): string | undefined {
    const url = splitUrl(value.trim());
    const sent = this.sent;
    if (!url || !sent?.origin || (url.origin && !sameOrigin(url.origin, sent.origin))) return undefined;
    const path = this.routedPath(url.path, sent);
    if (path === undefined || !checkPassthroughPath(path, url.query).ok) return undefined;
    if (this.base === undefined) {
      const origin = publicOrigin(this.ctx);
      this.base = origin === undefined ? null : origin + this.ctx.call.route.prefix;
    }
    if (this.base === null) return undefined;
    const query = withoutParams(url.query, CREDENTIAL_PARAMS);
    return `${this.base}${path}${query ? `?${query}` : ''}${url.fragment}`;
  }

  /**
   * The passthrough path the gateway sends to `path` on the upstream origin: the path
   * below the base path this request was sent under (a base URL with a path), or the
   * path itself (a provider serving some paths at its origin's root); checked by asking
   * the provider where each would go.
   */
  private routedPath(path: string, sent: SplitUrl): string | undefined {
    const own = this.ctx.path;
    const basePath = sent.path.endsWith(own) ? sent.path.slice(0, sent.path.length - own.length) : '';
    if (basePath && path.startsWith(`${basePath}/`) && this.routesTo(path.slice(basePath.length), path, sent))
      return path.slice(basePath.length);
    return this.routesTo(path, path, sent) ? path : undefined;
  }

  private routesTo(candidate: string, path: string, sent: SplitUrl): boolean {
    const { provider, settings } = this.ctx.call;
    try {
      const target = splitUrl(provider.url(candidate, '', this.key, settings));
      return target !== undefined && sameOrigin(target.origin, sent.origin) && target.path === path;
    } catch {
      return false; // the provider cannot route it (no key for Azure)
    }
  }
}

const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/;

/** server.public_url, else the request's scheme and Host (as a trusted proxy forwarded them), if known. */
function publicOrigin(ctx: Context): string | undefined {
  const { config, request } = ctx;
  if (config.publicUrl !== undefined) return config.publicUrl;
  let scheme = request.url.startsWith('https:') ? 'https' : 'http';
  let host = request.headers.get('host');
  const peer = ctx.record.client_ip;
  if (config.trustedProxies && peer !== undefined && config.trustedProxies.has(peer)) {
    const proto = lastValue(request.headers.get('x-forwarded-proto'))?.toLowerCase();
    if (proto === 'http' || proto === 'https') scheme = proto;
    const forwarded = lastValue(request.headers.get('x-forwarded-host'));
    if (forwarded && HOST.test(forwarded)) host = forwarded;
    const port = lastValue(request.headers.get('x-forwarded-port'));
    if (host && port && /^\d{1,5}$/.test(port) && !/:\d+$/.test(host) && port !== DEFAULT_PORT[scheme])
      host = `${host}:${port}`;
  }
  if (!host || !HOST.test(host)) host = new URL(request.url).host;
  return HOST.test(host) ? `${scheme}://${host}` : undefined;
}

/** The last of a comma-separated header's values: the one the nearest (trusted) proxy added. */
function lastValue(header: string | null): string | undefined {
  if (header === null) return undefined;
  const comma = header.lastIndexOf(',');
  return (comma < 0 ? header : header.slice(comma + 1)).trim() || undefined;
}

// --- JSON -----------------------------------------------------------------------------

/** Where URLs are in a JSON answer: a member holding one, an object to look into, an array of such objects. */
type Field = { readonly kind: 'url' } | { readonly kind: 'object' | 'each'; readonly fields: Fields };
export type Fields = Map<string, Field>;

const compiled = new WeakMap<readonly string[], Fields>();

/** `['results_url', 'data[].results_url']` as a tree of member names, made once per rule. */
export function jsonUrlFields(paths: readonly string[]): Fields {
  let root = compiled.get(paths);
  if (root) return root;
  root = new Map();
  for (const path of paths) {
    let fields = root;
    const names = path.split('.');
    names.forEach((segment, i) => {
      const each = segment.endsWith('[]');
      const name = each ? segment.slice(0, -2) : segment;
      if (i === names.length - 1) {
        fields.set(name, { kind: 'url' });
        return;
      }
      let next = fields.get(name);
      if (!next || next.kind === 'url')
        fields.set(name, (next = { kind: each ? 'each' : 'object', fields: new Map() }));
      fields = next.fields;
    });
  }
  compiled.set(paths, root);
  return root;
}

type Edit = [start: number, end: number, replacement: Uint8Array];

/**
 * `bytes` (a JSON object) with the URL members `fields` names rewritten by `urls`, every
 * other byte kept; undefined when none changed or the structure cannot be followed.
 */
export function rewriteJsonUrls(
  bytes: Uint8Array,
  fields: Fields,
  urls: { rewrite(value: string): string | undefined },
): Uint8Array<ArrayBuffer> | undefined {
  const edits: Edit[] = [];
  const start = skipSpace(bytes, bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0);
  const end = walkObject(bytes, start, fields, edits, urls);
  if (end < 0 || skipSpace(bytes, end) !== bytes.length || edits.length === 0) return undefined;
  let size = bytes.length;
  for (const [from, to, replacement] of edits) size += replacement.length - (to - from);
  const out = new Uint8Array(size);
  let read = 0;
  let written = 0;
  for (const [from, to, replacement] of edits) {
    out.set(bytes.subarray(read, from), written);
    written += from - read;
    out.set(replacement, written);
    written += replacement.length;
    read = to;
  }
  out.set(bytes.subarray(read), written);
  return out;
}

/** Index just past the object opening at `i`, collecting edits; -1 when it cannot be followed. */
function walkObject(
  bytes: Uint8Array,
  i: number,
  fields: Fields,
  edits: Edit[],
  urls: { rewrite(value: string): string | undefined },
): number {
  if (bytes[i] !== OPEN) return -1;
  i = skipSpace(bytes, i + 1);
  if (bytes[i] === CLOSE) return i + 1;
  for (;;) {
    if (bytes[i] !== QUOTE) return -1;
    const nameEnd = stringEnd(bytes, i);
    if (nameEnd < 0) return -1;
    const field = fields.get(stringValue(bytes, i, nameEnd + 1) ?? '');
    i = skipSpace(bytes, nameEnd + 1);
    if (bytes[i] !== COLON) return -1;
    const start = skipSpace(bytes, i + 1);
    let end: number;
    if (field?.kind === 'object' && bytes[start] === OPEN) end = walkObject(bytes, start, field.fields, edits, urls);
    else if (field?.kind === 'each' && bytes[start] === OPEN_ARRAY)
      end = walkArray(bytes, start, field.fields, edits, urls);
    else {
      end = skipValue(bytes, start);
      if (field?.kind === 'url' && bytes[start] === QUOTE && end > 0) {
        const value = stringValue(bytes, start, end);
        const url = value === undefined ? undefined : urls.rewrite(value);
        if (url !== undefined && url !== value) edits.push([start, end, encoder.encode(JSON.stringify(url))]);
      }
    }
    if (end < 0) return -1;
    i = skipSpace(bytes, end);
    if (bytes[i] === CLOSE) return i + 1;
    if (bytes[i] !== COMMA) return -1;
    i = skipSpace(bytes, i + 1);
  }
}

/** Index just past the array opening at `i`, walking the objects in it; -1 when it cannot be followed. */
function walkArray(
  bytes: Uint8Array,
  i: number,
  fields: Fields,
  edits: Edit[],
  urls: { rewrite(value: string): string | undefined },
): number {
  i = skipSpace(bytes, i + 1);
  if (bytes[i] === CLOSE_ARRAY) return i + 1;
  for (;;) {
    const end = bytes[i] === OPEN ? walkObject(bytes, i, fields, edits, urls) : skipValue(bytes, i);
    if (end < 0) return -1;
    i = skipSpace(bytes, end);
    if (bytes[i] === CLOSE_ARRAY) return i + 1;
    if (bytes[i] !== COMMA) return -1;
    i = skipSpace(bytes, i + 1);
  }
}
