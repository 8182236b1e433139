/**
 * The plugin contract. A plugin is created once; every config load calls `configure`,
 * which returns the hooks it adds to that config's pipeline, or undefined when the
 * config leaves it off (then it is not in the pipeline at all: no hook of it runs, its
 * routes answer 404). A plugin the config does not list is not configured; `off` tells
 * it to release what it holds. Plugins see a request only through these hooks.
 */
import type { RuntimeConfig } from '../config/runtime.ts';
import type { Usage } from '../usage/types.ts';
import type { GatewayError } from './errors.ts';
import type { AttemptInfo, RequestContext, RequestRecord } from './request.ts';

/** What a request hook decided: a refusal, and the virtual key the request is governed by. */
export interface RequestVerdict {
  refusal?: GatewayError;
  virtualKey?: string;
}

export interface Hooks {
  /** Before the upstream call; may refuse the request (auth, limits) or name its virtual key. */
  onRequest?(ctx: RequestContext): RequestVerdict | undefined | Promise<RequestVerdict | undefined>;
  /** Right before each upstream attempt's fetch; may still edit ctx.upstream (e.g. traceparent). */
  onAttemptStart?(ctx: RequestContext, attempt: number): void;
  /** After each upstream attempt: its response headers arrived or it failed (not when the client aborted it). */
  onAttemptEnd?(ctx: RequestContext, info: AttemptInfo): void;
  /** When the upstream's response headers arrived (after retries), before the body flows. */
  onResponse?(ctx: RequestContext, upstream: Response): void;
  /**
   * The model became known after onRequest admitted the request (a Gemini Live session
   * names it in its first message; `ctx.model` is set): may refuse it, as onRequest would.
   */
  onModel?(ctx: RequestContext): GatewayError | undefined;
  /**
   * Usage reported while the request is still open (a WebSocket session reports it per
   * response or turn), as each report arrives. `record.usage` at completion is their sum:
   * a plugin that counts usage here must not count that sum again in onComplete.
   * `costUsd`: the report's cost at the model's price (undefined: unpriced); the
   * record's `cost_usd` is their sum.
   */
  onUsage?(ctx: RequestContext, usage: Readonly<Usage>, costUsd: number | undefined): void;
  /**
   * Once per request, after the last byte reached the client or the client went away.
   * `ctx` is undefined for requests refused before they had one (bad path, body too large).
   */
  onComplete?(record: Readonly<RequestRecord>, ctx: RequestContext | undefined): void | Promise<void>;
}

/** A plugin's own HTTP route (/metrics, /api/logs): served only while the plugin is on. */
export interface PluginRoute {
  readonly method: 'GET';
  readonly path: string;
  handle(req: RouteRequest): Response | Promise<Response>;
}

export interface RouteRequest {
  readonly request: Request;
  /** Path parameters (`/api/logs/:id`). */
  readonly params: Readonly<Record<string, string>>;
  readonly clientIp: string | undefined;
  /** Lift the connection's idle timeout, for a long-lived answer (a live stream). */
  keepOpen(): void;
}

/** What the running gateway tells plugins (metrics reads it at scrape time). */
export interface RuntimeView {
  readonly config: RuntimeConfig;
  /** Passthrough requests not yet completed (streams included). */
  readonly inflight: number;
  /** Streamed answers being relayed right now. */
  readonly openStreams: number;
  /** WebSocket sessions open right now (they count in `inflight` too). */
  readonly sessions: { readonly size: number };
  readonly reloads: Readonly<ReloadCounts>;
}

export interface ReloadCounts {
  success: number;
  failure: number;
  lastSuccessful: boolean;
}

export interface Plugin {
  /** Its name in the config's `plugins:` list. */
  readonly name: string;
  /** A config that lists this plugin was loaded: its hooks, or undefined when its own settings turn it off. */
  configure(config: RuntimeConfig): Hooks | undefined | Promise<Hooks | undefined>;
  /** A config that leaves it off was loaded (not listed, or configure returned undefined): release what it holds. */
  off?(): void | Promise<void>;
  /** Its HTTP routes, installed once at start (a changed path needs a restart). */
  routes?(config: RuntimeConfig): readonly PluginRoute[];
  /** Shutdown began: end long-lived answers (live streams) so the server can drain. */
  drain?(): void;
  /** SIGHUP: reopen files. */
  reopen?(): void;
  /** Flush and release everything (shutdown). */
  close?(): void | Promise<void>;
}

/** A plugin of an embedding program (or a test): always on, its hooks as they are. */
export type StaticPlugin = Hooks & { readonly name: string };
