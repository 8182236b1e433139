/**
 * What a provider module owns, for one API family: its default upstream, where the
 * model is in a request and whether it streams, which client credentials it reads, how
 * the upstream URL is built and a key is sent, its own key settings, which usage format
 * its answers carry, and the names tracing gives it. It knows nothing about HTTP servers,
 * logging or retries. Every member is used by proxy/ (or app/config/compile.ts for
 * `compileKey`); a provider that reuses a wire format is one small file (see openai.ts).
 */
import type { CompiledKey, CompiledProvider, HeaderEntries } from '../config/runtime.ts';
import type { KeyInput } from '../config/schema.ts';
import type { RootMembers } from '../core/request.ts';
import type { RealtimeUsageFormat } from '../usage/realtime.ts';
import type { UsageFormat } from '../usage/types.ts';

export interface Provider {
  /** The implementation's id (a built-in provider's name; `providers.<name>.api` of others). */
  readonly id: string;
  /** Scheme, host and base path when `network_config.base_url` does not say (Azure: the key's endpoint). */
  readonly defaultBaseUrl: string | undefined;
  /** How a plain API key is sent: `header: prefix + value`. */
  readonly apiKey: { readonly header: string; readonly prefix: string };
  /** OpenTelemetry GenAI names: gen_ai.system (older conventions), gen_ai.provider.name. */
  readonly genai: { readonly system: string; readonly provider: string };
  /**
   * Without configured keys the client's own credential is forwarded (direct key), unless
   * the provider cannot take one: then this is why, and such a request is refused.
   */
  readonly keyRequired?: string;
  /**
   * The genai-prices catalog provider that prices its models when the provider's own
   * name is not one the catalog knows (`azure-eu` with `api: azure`). Unset for wire
   * formats many hosts share (OpenAI's): their models are priced by name or config only.
   */
  readonly priceCatalog?: string;

  /** The model the request is for (body `model`, or path segments), for key choice, limits and logs. */
  modelOf(path: string, members: RootMembers | undefined): string | undefined;
  /** Whether the answer will stream (the body's `stream: true`, or a streaming path). */
  streams(path: string, members: RootMembers | undefined): boolean;
  /**
   * Adjust the request headers once, before the hooks (defaults the API requires, client
   * headers a gateway key makes meaningless). `keyed`: the gateway's key will be sent.
   */
  prepareHeaders?(headers: Headers, path: string, keyed: boolean): void;
  /** The upstream URL for this key (undefined: direct key). Pure: no side effects, no I/O. */
  url(path: string, query: string, key: CompiledKey | undefined, settings: CompiledProvider): string;
  /** The auth headers for one attempt with `key`; a promise only when a token must be minted. */
  authorize(key: CompiledKey, path: string): HeaderEntries | Promise<HeaderEntries>;
  /**
   * Sign one attempt over the request as it will be sent (AWS SigV4), after `authorize`
   * and `url`: only a provider whose auth covers the URL, headers and body has it.
   */
  sign?(request: OutgoingRequest, key: CompiledKey): void | Promise<void>;
  /** The usage format of the answer to a request on this path. */
  usageFormat(path: string): UsageFormat;
  /**
   * Names a request may use for a model other than the model's own (Azure deployments),
   * from its compiled keys: name -> model, for pricing. Called once per config load.
   */
  modelAliases?(keys: readonly CompiledKey[]): ReadonlyMap<string, string>;
  /**
   * Compile this provider's own key settings (azure_key_config, vertex_key_config) into
   * `key.settings`, and its credential when the key is not a plain API key. Report
   * problems through `report`; return undefined to leave a key out (with a warning).
   * Without it, a key is its value sent as `apiKey` says.
   */
  compileKey?(
    input: KeyInput,
    key: CompiledKey,
    report: KeyReport,
  ): CompiledKey | undefined | Promise<CompiledKey | undefined>;
  /** Its WebSocket APIs (OpenAI Realtime, Gemini Live), when it has any: proxy/realtime.ts relays them. */
  readonly realtime?: RealtimeApi;
  /**
   * Where this provider's answers hand out URLs on its own origin that SDKs then call by
   * themselves (an upload session, a redirect, a batch's results). proxy/rewrite.ts points
   * them at the gateway, so the follow-up comes back through it. Without it, every answer
   * passes untouched.
   */
  readonly responseUrls?: ResponseUrls;
  /**
   * Resumable uploads: the start answer's `header` holds the session URL, which names the
   * session in its `param` query parameter. A request carrying `param` continues a session:
   * its body is file bytes (streamed through, never held or read for a model), and some
   * SDKs send it without any credential (the session id is one); governance admits those
   * only for sessions it saw start.
   */
  readonly uploadSessions?: { readonly header: string; readonly param: string };
  /**
   * The wait a 429 answer's body asks for, in ms, for a provider that says it there rather
   * than in Retry-After (Google's google.rpc.RetryInfo). Read only for a 429 without a
   * Retry-After; `body` is inflated. Undefined when the body does not say.
   */
  retryDelayInBody?(body: Uint8Array): number | undefined;
}

/** What ResponseUrls' rewrite applies to (see Provider.responseUrls). */
export interface ResponseUrls {
  /** Response headers (lower-case) holding such a URL; `location` counts on 3xx answers only. */
  readonly headers: readonly string[];
  /**
   * String members of JSON answers holding such a URL, by their path from the root
   * (`results_url`; `data[].results_url` is that member of each element of the root's
   * `data` array), in the answers to the requests `on` accepts.
   */
  readonly jsonFields?: { readonly paths: readonly string[]; on(method: string, path: string): boolean };
}

/** One upstream attempt as it will be sent: what a signature covers. */
export interface OutgoingRequest {
  readonly method: string;
  readonly url: string;
  /** Edited in place: a signature's headers are set here. */
  readonly headers: Headers;
  /** The body held whole, a stream (too large to hold), or none. */
  readonly body: Uint8Array | ReadableStream<Uint8Array> | null;
}

/**
 * A provider's WebSocket APIs. The upstream address, the credential and the query rules
 * of a session's handshake are the provider's own `url()` and `authorize()`, as for an
 * HTTP request (the scheme becomes ws: or wss:).
 */
export interface RealtimeApi {
  /** Whether a WebSocket handshake on this provider-native path is for one of these APIs. */
  accepts(path: string): boolean;
  /** The model the handshake names (query `model`, Azure's `deployment`); undefined when the first message names it. */
  modelOf(path: string, query: string): string | undefined;
  /**
   * For APIs whose client names the model in its first message (Gemini Live's `setup`):
   * that model, and the message to send upstream in its place (the same text, unless the
   * key must change it: Vertex puts the key's project and region in the model's path).
   */
  firstMessage?(message: string, key: CompiledKey | undefined): { model: string | undefined; message: string };
  /** How the server's messages report usage (usage/realtime.ts). */
  readonly usage: RealtimeUsageFormat;
}

/** Where compileKey reports what is wrong with one key. */
export interface KeyReport {
  /** `providers.<name>.keys[<i>]`, for messages. */
  readonly path: string;
  /** A problem that stops the config from loading; `field` is relative to the key (`azure_key_config.endpoint`). */
  problem(field: string, message: string): void;
  /** Loaded all the same, said in the app log. */
  warn(message: string): void;
}

/** Join a base URL (no trailing slash) with a rooted path and a raw query. */
export function joinUrl(base: string, path: string, query: string): string {
  return query ? `${base}${path}?${query}` : `${base}${path}`;
}

/** `model` from a JSON body when it is a non-empty string. */
export function bodyModel(members: RootMembers | undefined): string | undefined {
  const m = members?.model;
  return typeof m === 'string' && m ? m : undefined;
}

/** The auth headers of a plain API key credential (most providers' `authorize`). */
export const keyHeaders = (key: CompiledKey): HeaderEntries | Promise<HeaderEntries> => key.credential.headers();
