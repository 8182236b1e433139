/**
 * One passthrough request as plugins see it: its context while it runs, the record it
 * leaves behind (the log line, metrics and traces report that), and typed slots for
 * per-plugin state. Nothing provider-specific lives here.
 */
import type { RuntimeConfig } from '../config/runtime.ts';
import type { Usage } from '../usage/types.ts';
import type { EndReason, ErrorType, Outcome, UsageStatus } from './outcome.ts';

export { type EndReason, OUTCOMES, type Outcome, type UsageStatus } from './outcome.ts';

export interface RequestError {
  type: ErrorType;
  message: string;
}

/** `model` and `stream` of a JSON request body, read without parsing it (proxy/members.ts). */
export interface RootMembers {
  /** `model` when it is a string (anything else: undefined, as for a missing one). */
  readonly model: string | undefined;
  /** `stream` is the literal `true`. */
  readonly stream: boolean;
}

/** The final record of one request: what the log line, metrics and traces report. */
export interface RequestRecord {
  time: string;
  request_id: string;
  /** The passthrough route (providers/routes.ts): `openai`, `anthropic`, `azure`, `genai`. */
  endpoint: string;
  provider: string;
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
  /** Whether `usage` can be billed on (core/outcome.ts USAGE_STATUSES). */
  usage_status: UsageStatus;
  /** Why usage is absent (or what a partial one holds), for people. */
  usage_note: string | undefined;
  /** `usage.output_tokens` is the estimate from the content relayed (a stream cut short). */
  output_tokens_estimated: true | undefined;
  /** USD for `usage` at the model's price; undefined (never 0) when the model has no price. */
  cost_usd: number | undefined;
  /** Where the price came from: `governance.prices` or the genai-prices catalog. */
  price_source: 'config' | 'catalog' | undefined;
  /** How a streamed answer or a WebSocket session ended (undefined for answers read whole, refusals, failures). */
  end_reason: EndReason | undefined;
  /** Gateway time in microseconds: the request's time less its waits on the upstream (and retry pauses). */
  gw_us: number | undefined;
  error: RequestError | undefined;
  virtual_key: string | undefined;
  client_ip: string | undefined;
  outcome: Outcome;
  upstream_request_id: string | undefined;
  /** Retried answers, for metrics: one entry per attempt that was retried. */
  retries: RetryEvent[];
  request_body?: string;
  response_body?: string;
  /** A WebSocket session: the close code it ended with, as relayed to the side that did not close it. */
  close_code?: number;
  /** A WebSocket session: messages relayed client -> upstream (`bytes_in` counts their bytes). */
  messages_in?: number;
  /** A WebSocket session: messages relayed upstream -> client (`bytes_out` counts their bytes). */
  messages_out?: number;
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
  error: ErrorType | undefined;
}

/** What goes upstream: the one part of a request that request hooks may edit. */
export interface UpstreamRequest {
  readonly headers: Headers;
  /** Raw query string without "?". */
  query: string;
}

/** A request while it runs. What the client sent is read-only; `upstream` is what will be sent. */
export interface RequestContext {
  readonly id: string;
  readonly request: Request;
  readonly config: RuntimeConfig;
  /** The passthrough route (record.endpoint). */
  readonly endpoint: string;
  /** The provider's name under `providers:`. */
  readonly provider: string;
  /** Provider-native path as the client sent it (percent-encoding kept). */
  readonly path: string;
  /** The client's raw query, without "?". */
  readonly query: string;
  /** The model the request is for (body `model`, or the path), for key choice, limits and logs. */
  readonly model: string | undefined;
  /** `model` and `stream` of a JSON body held whole. */
  readonly members: RootMembers | undefined;
  /**
   * The body could not be read for its model: too large to hold (over
   * server.buffer_body_limit_mb; it streams through), or compressed with a coding the
   * gateway cannot inflate within that limit. Its model, if it names one, is unknown.
   */
  readonly bodyUnread: boolean;
  /** The JSON body held whole, parsed on first use (undefined when it is not a JSON object). */
  readonly json: Record<string, unknown> | undefined;
  /**
   * The resumable upload session this request continues, by the id its URL names
   * (Gemini's `upload_id`): its body is file bytes, and it may carry no credential.
   */
  readonly uploadId: string | undefined;
  /** The upload session an answer to this request starts (its session URL's id), if any. */
  startedUpload(answer: Response): string | undefined;
  /** performance.now() at arrival. */
  readonly startedAt: number;
  /** The record so far (read-only to plugins; proxy/completion.ts closes it). */
  readonly record: Readonly<RequestRecord>;
  readonly upstream: UpstreamRequest;
  /** Per-plugin state; use a Slot. */
  readonly slots: unknown[];
}

let slots = 0;

/**
 * A typed place for one plugin's per-request state: `const TRACE = new Slot<RequestTrace>()`,
 * then `TRACE.set(ctx, t)` and `TRACE.get(ctx)`.
 */
export class Slot<T> {
  private readonly index = slots++;

  get(ctx: RequestContext): T | undefined {
    return ctx.slots[this.index] as T | undefined;
  }

  set(ctx: RequestContext, value: T): void {
    ctx.slots[this.index] = value;
  }
}
