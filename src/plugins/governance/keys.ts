/**
 * Virtual keys: recognising one wherever a client presents it, in constant time.
 *
 * Each configured value is hashed with SHA-256 once, when the config is loaded. A
 * presented candidate is hashed too and compared with EVERY configured digest using
 * `crypto.timingSafeEqual` (no early exit, equal-length inputs), so neither the
 * position of a mismatch nor the length of the secret shows in the response time.
 */
import { timingSafeEqual } from 'node:crypto';
import type { UpstreamRequest } from '../../core/request.ts';
import { paramValues, withoutParams } from '../../lib/query.ts';
import { bearerToken, sha256 } from '../../lib/secrets.ts';
import { CREDENTIAL_HEADERS, subprotocolCredential, subprotocols } from '../../providers/credentials.ts';
import type { Period } from './limits.ts';

export interface VirtualKey {
  name: string;
  providers: ReadonlySet<string>;
  models: readonly string[];
  requestsPerMinute: number | undefined;
  tokensPerMinute: number | undefined;
  budget: { maxTokens: number | undefined; maxCostNano: number | undefined; period: Period } | undefined;
  /** Anything to count after the request (tokens per minute, budgets)? */
  countsUsage: boolean;
}

export interface VirtualKeyInput {
  name: string;
  value: string;
  /** Provider names it may use; undefined: all. */
  providers?: readonly string[];
  models: readonly string[];
  rate_limit?: { requests_per_minute?: number; tokens_per_minute?: number };
  budget?: { max_tokens?: number; max_cost_usd?: number; period: Period };
}

/** Header the gateway reserves for the virtual key (never forwarded: `x-bf-*` is a control prefix). */
export const VK_HEADER = 'x-bf-vk';

/** Gemini's `key=` query parameter, by decoded name (util/query.ts). */
const KEY_PARAM: ReadonlySet<string> = new Set(['key']);

export class VirtualKeyTable {
  private readonly digests: Array<{ digest: Buffer; key: VirtualKey }>;

  /** `providers`: every provider name, for keys that do not list theirs. */
  constructor(inputs: readonly VirtualKeyInput[], providers: readonly string[]) {
    this.digests = inputs.map((k) => ({ digest: sha256(k.value), key: compileKey(k, providers) }));
  }

  get size(): number {
    return this.digests.length;
  }

  /** The virtual key of this name (names are not secret: no constant-time comparison). */
  named(name: string): VirtualKey | undefined {
    return this.digests.find((entry) => entry.key.name === name)?.key;
  }

  /** The virtual key whose value equals `candidate`, compared in constant time. */
  match(candidate: string): VirtualKey | undefined {
    if (this.digests.length === 0 || candidate === '') return undefined;
    const d = sha256(candidate);
    let found: VirtualKey | undefined;
    for (const entry of this.digests) {
      // Always run every comparison; only remember the (single, values are unique) hit.
      if (timingSafeEqual(d, entry.digest) && !found) found = entry.key;
    }
    return found;
  }
}

function compileKey(k: VirtualKeyInput, allProviders: readonly string[]): VirtualKey {
  const b = k.budget;
  const budget =
    b && (b.max_tokens !== undefined || b.max_cost_usd !== undefined)
      ? {
          maxTokens: b.max_tokens,
          maxCostNano: b.max_cost_usd === undefined ? undefined : Math.round(b.max_cost_usd * 1e9),
          period: b.period,
        }
      : undefined;
  const tokensPerMinute = k.rate_limit?.tokens_per_minute;
  return {
    name: k.name,
    providers: new Set(k.providers ?? allProviders),
    models: k.models,
    requestsPerMinute: k.rate_limit?.requests_per_minute,
    tokensPerMinute,
    budget,
    countsUsage: tokensPerMinute !== undefined || budget !== undefined,
  };
}

export interface Presented {
  /** The key the request is governed by (x-bf-vk first, then the SDK headers in order). */
  key: VirtualKey | undefined;
  /** `x-bf-vk` was sent but is not a virtual key. */
  badControlHeader: boolean;
  /** Some credential (header or `key=`) was sent at all. */
  anyCredential: boolean;
}

/**
 * Find the virtual key of a request and consume it: every header (and `key=` query
 * parameter, and WebSocket subprotocol) holding a virtual key is removed from what goes upstream, also in
 * direct-key mode, where the client's other credentials pass unchanged. Looks at the
 * client's own headers and query; edits the upstream ones.
 */
export function presentedKey(
  table: VirtualKeyTable,
  incoming: Headers,
  clientQuery: string,
  upstream: UpstreamRequest,
): Presented {
  let key: VirtualKey | undefined;
  let badControlHeader = false;
  let anyCredential = false;

  const control = incoming.get(VK_HEADER);
  if (control !== null) {
    anyCredential = true;
    key = table.match(control.trim());
    if (!key) badControlHeader = true;
  }
  for (const name of CREDENTIAL_HEADERS) {
    const raw = incoming.get(name);
    if (raw === null) continue;
    anyCredential = true;
    const candidate = name === 'authorization' ? bearerToken(raw) : raw.trim();
    if (candidate === undefined) continue;
    const hit = table.match(candidate);
    if (!hit) continue;
    upstream.headers.delete(name);
    key ??= hit;
  }
  // Detected in the client's own query (the gateway may already have dropped `key=` from
  // the upstream one), removed from the upstream one (direct-key mode keeps other keys).
  const values = paramValues(clientQuery, 'key');
  for (const value of values) {
    anyCredential = true;
    key ??= table.match(value);
  }
  if (values.length > 0)
    upstream.query = withoutParams(upstream.query, KEY_PARAM, (value) => table.match(value) !== undefined);
  // A browser's WebSocket handshake carries its key as a subprotocol (`openai-insecure-api-key.<key>`).
  const protocols = subprotocols(incoming.get(WEBSOCKET_PROTOCOL));
  let consumed = false;
  for (const protocol of protocols) {
    const candidate = subprotocolCredential(protocol);
    if (candidate === undefined) continue;
    anyCredential = true;
    const hit = table.match(candidate);
    if (!hit) continue;
    consumed = true;
    key ??= hit;
  }
  if (consumed) {
    const kept = subprotocols(upstream.headers.get(WEBSOCKET_PROTOCOL)).filter((p) => {
      const candidate = subprotocolCredential(p);
      return candidate === undefined || table.match(candidate) === undefined;
    });
    if (kept.length > 0) upstream.headers.set(WEBSOCKET_PROTOCOL, kept.join(', '));
    else upstream.headers.delete(WEBSOCKET_PROTOCOL);
  }
  return { key, badControlHeader, anyCredential };
}

const WEBSOCKET_PROTOCOL = 'sec-websocket-protocol';
