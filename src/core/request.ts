/**
 * The plugin interface every passthrough request runs through, and the record a
 * request leaves behind. Nothing provider-specific lives here.
 */
import type { RootMembers } from '../proxy/body-members.ts';
import type { RuntimeConfig } from '../config/runtime.ts';
import type { ProviderId } from '../config/schema.ts';
import type { Usage } from '../usage/types.ts';

export type EndpointId = 'openai' | 'anthropic' | 'azure' | 'genai';

export type Outcome =
  | 'ok' // the whole answer reached the client (whatever its status)
  | 'upstream_error' // the upstream could not be reached, timed out, or broke mid-stream
  | 'client_aborted' // the client went away before the last byte
  | 'rejected' // refused by the gateway (bad input, governance, no key)
  | 'stream_idle_timeout' // the upstream stream went silent for too long
  | 'gateway_error'; // a fault in the gateway itself

export interface RequestError {
  type: string;
  message: string;
}

/** The final record of one request: what the log line, metrics and traces report. */
export interface RequestRecord {
  time: string;
  request_id: string;
  endpoint: EndpointId;
  provider: ProviderId;
  method: string;
  /** Provider-native path, without the query string (which may carry credentials). */
  path: string;
  status: number;
  stream: boolean;
  model: string | undefined;
  /** The key's name, never its value. `direct` when the client's own credential was forwarded. */
  key: string | undefined;
  attempts: number;
  latency_ms: number;
  ttfb_ms: number | undefined;
  bytes_in: number;
  bytes_out: number;
  usage: Usage | undefined;
  error: RequestError | undefined;
  virtual_key: string | undefined;
  client_ip: string | undefined;
  outcome: Outcome;
  upstream_request_id: string | undefined;
  /** Retried answers, for metrics: one entry per attempt that was retried. */
  retries: RetryEvent[];
  request_body?: string;
  response_body?: string;
}

export interface RetryEvent {
  attempt: number;
  key: string | undefined;
  reason: string;
  delay_ms: number;
}

/** One upstream attempt, as `onAttemptEnd` sees it. Times are performance.now() ms. */
export interface AttemptInfo {
  attempt: number;
  /** The key's name (never its value); undefined for direct keys. */
  key: string | undefined;
  /** The upstream URL; its query may carry credentials, so never report it as is. */
  url: string;
  startedAt: number;
  endedAt: number;
  /** The response status, when response headers arrived. */
  status: number | undefined;
  /** The error type when none did (upstream_timeout, upstream_unreachable). */
  error: string | undefined;
}

/** Per-request state shared by the flow and the plugins. */
export interface RequestContext {
  readonly id: string;
  readonly request: Request;
  readonly config: RuntimeConfig;
  readonly endpoint: EndpointId;
  provider: ProviderId;
  /** Provider-native path (raw) and query (raw, no "?"). */
  readonly path: string;
  query: string;
  /** Request headers to be sent upstream; plugins may edit them (e.g. consume a virtual key). */
  readonly headers: Headers;
  /** `model` and `stream` of a JSON body held whole (read without parsing it). */
  readonly members: RootMembers | undefined;
  /**
   * The body could not be read for its model: too large to hold (over
   * server.buffer_body_limit_mb; it streams through), or compressed with a coding the
   * gateway cannot inflate within that limit. Its model, if it names one, is unknown.
   */
  readonly bodyUnread: boolean;
  /** The JSON body held whole, parsed on first use (undefined when it is not a JSON object). */
  readonly json: Record<string, unknown> | undefined;
  model: string | undefined;
  /** performance.now() at arrival. */
  readonly startedAt: number;
  readonly record: RequestRecord;
  /** Free slots for plugins (e.g. the tracing span), keyed by plugin name. */
  readonly state: Record<string, unknown>;
}

export interface Plugin {
  readonly name: string;
  /** Before the upstream call; return a Response to answer early (auth, limits, cache). */
  onRequest?(ctx: RequestContext): Response | undefined | Promise<Response | undefined>;
  /** Right before each upstream attempt's fetch; may still edit ctx.headers (e.g. traceparent). */
  onAttemptStart?(ctx: RequestContext, attempt: number): void;
  /** After each upstream attempt: its response headers arrived or it failed (not when the client aborted it). */
  onAttemptEnd?(ctx: RequestContext, info: AttemptInfo): void;
  /** When the upstream's response headers arrived (after retries), before the body flows. */
  onResponse?(ctx: RequestContext, upstream: Response): void;
  /**
   * Once per request, after the last byte reached the client or the client went away.
   * `ctx` is undefined for requests refused before they had one (bad path, body too large).
   */
  onComplete?(record: RequestRecord, ctx: RequestContext | undefined): void | Promise<void>;
  /** Flush and release resources (shutdown, or the plugin was replaced by a reload). */
  close?(): void | Promise<void>;
}
