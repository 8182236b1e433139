/**
 * What a provider module owns, for one API family: its default upstream, where the
 * model is in a request, how the upstream URL and auth are built for a chosen key, and
 * which usage format its responses carry. It knows nothing about HTTP servers, logging
 * or retries.
 */
import type { CompiledKey, CompiledProvider } from '../config/runtime.ts';
import type { ProviderId } from '../config/schema.ts';
import type { UsageFormat } from '../usage/types.ts';

export interface ProviderRequest {
  /** Provider-native path as the client sent it (percent-encoding kept), rooted by "/". */
  path: string;
  /** Raw query string without "?", possibly empty. */
  query: string;
  /** Headers to send upstream: already filtered, client credentials already removed when a key is used. */
  headers: Headers;
}

/** What providers read from a JSON body held whole: its root `model` member. */
export type BodyMembers = { readonly model?: unknown } | undefined;

export interface UpstreamTarget {
  url: string;
}

export interface Provider {
  id: ProviderId;
  /** The model the request is for (body `model`, or path segments), for key choice and logs. */
  modelOf(path: string, body: BodyMembers): string | undefined;
  /**
   * Build the upstream URL and set auth headers on `req.headers` for `key`.
   * `key` is undefined in direct-key mode: the client's credential was kept.
   * Throws ProviderError for requests this provider cannot serve.
   */
  target(req: ProviderRequest, key: CompiledKey | undefined, provider: CompiledProvider): UpstreamTarget | Promise<UpstreamTarget>;
  /** The usage format of the answer to a request on this path. */
  usageFormat(path: string): UsageFormat;
  /** The upstream refused `key`'s credential (401): drop anything cached for it (a minted token). */
  onUnauthorized?(key: CompiledKey): void;
}

/** A request the provider cannot serve; becomes a JSON error with this status. */
export class ProviderError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** Join a base URL (no trailing slash) with a rooted path and a raw query. */
export function joinUrl(base: string, path: string, query: string): string {
  return query ? `${base}${path}?${query}` : `${base}${path}`;
}

/** `model` from a JSON body when it is a non-empty string. */
export function bodyModel(body: BodyMembers): string | undefined {
  const m = body?.model;
  return typeof m === 'string' && m ? m : undefined;
}
