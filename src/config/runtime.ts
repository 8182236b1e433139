/**
 * The config as the request path uses it: everything derivable is computed once per load
 * by app/config/compile.ts (key pools, credentials, header tables, timeouts in ms), so a
 * request does lookups, not parsing. A RuntimeConfig is immutable; a reload builds a new
 * one and swaps the reference, so in-flight requests keep the one they started with.
 */
import type { KeyPool, PoolKey } from '../keys/pool.ts';
import type { IpRanges } from '../lib/ip-ranges.ts';
import type { ModelPrices } from '../usage/prices.ts';
import type { Config, PluginId } from './schema.ts';

/** Header name/value pairs to set on an upstream request. */
export type HeaderEntries = ReadonlyArray<readonly [string, string]>;

/** How a key authenticates upstream (providers/auth/). */
export interface Credential {
  /** `api-key`: a fixed header; `token`: an access token minted (and cached) on demand. */
  readonly kind: 'api-key' | 'token';
  /** The headers for one upstream call; a promise only when a token must be minted. */
  headers(): HeaderEntries | Promise<HeaderEntries>;
  /** The upstream refused it (401): forget anything cached. */
  invalidate(): void;
}

export interface CompiledKey extends PoolKey {
  /** Position in providers.<name>.keys, for messages. */
  index: number;
  value: string;
  credential: Credential;
  /** What the provider compiled from its own key section (azure_key_config, ...); only it reads this. */
  settings: unknown;
}

export interface RetryPolicy {
  maxRetries: number;
  initialMs: number;
  maxMs: number;
  maxRetryAfterMs: number;
}

export interface CompiledProvider {
  /** Its name under `providers:`. */
  name: string;
  /** The implementation serving it (providers/index.ts): wire format and rules. */
  api: string;
  /** network_config.base_url without a trailing slash, or undefined for the provider default. */
  baseUrl: string | undefined;
  extraHeaders: ReadonlyArray<readonly [string, string]>;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
  /**
   * Bun's fetch has a socket idle timer of its own (5 min unless set per call; reset by
   * every byte, checked on a ~4 s tick) that would cut a stream allowed a longer idle
   * limit: every call sets it. When the header timeout is long and not shorter than the
   * idle limit, that timer is the header timeout (no JS timer per attempt); otherwise it
   * is a backstop behind our own timers.
   */
  socketTimeoutMs: number;
  nativeHeaderTimeout: boolean;
  /** The socket timer is the idle limit (the defaults): a body read whole needs no idle watch of its own. */
  nativeIdleTimeout: boolean;
  retry: RetryPolicy;
  keys: KeyPool<CompiledKey>;
  /** TLS options for the upstream fetch, or undefined for the defaults. */
  tls: { ca?: string; rejectUnauthorized?: boolean } | undefined;
  /** Forward the client's own credential when the provider has no keys. */
  directKeys: boolean;
  /**
   * Without keys and without direct keys, send requests with no credential rather than
   * refuse them (401 no_provider_key): providers of your own and local servers (Ollama).
   */
  keyOptional: boolean;
  /** Its models' prices (governance.prices, then the catalog), memoised per model. */
  prices: ModelPrices;
}

/** `server.tls`, read and checked (app/config/tls.ts): absolute paths and the PEM texts. */
export interface ServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: string;
  readonly key: string;
}

export interface RuntimeConfig {
  source: Config;
  /** Where it came from: a file path, or "built-in default". */
  origin: string;
  providers: Readonly<Record<string, CompiledProvider>>;
  maxBodyBytes: number;
  bufferBodyBytes: number;
  /** server.public_url without a trailing slash (`https://llm.example.com/gw`), or undefined. */
  publicUrl: string | undefined;
  /** server.trusted_proxies: the peers whose X-Forwarded-* headers count; undefined when none. */
  trustedProxies: IpRanges | undefined;
  plugins: readonly PluginId[];
  /** Problems that do not stop the config from loading (e.g. an Azure key without endpoint). */
  warnings: string[];
  /** Configured secrets (provider keys, client secrets, virtual keys): never logged, never a label. */
  secrets: readonly string[];
  /** Providers also served at `/<name>_passthrough` (every configured name that is not built in). */
  customRoutes: readonly string[];
  /** The gateway's own certificate (HTTPS, WSS), or undefined for plain HTTP. */
  serverTls: ServerTls | undefined;
}
