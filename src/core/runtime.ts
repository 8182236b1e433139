/**
 * The gateway's mutable core: the config in force and the pipeline built for it (a
 * reload replaces both references at once; a request reads them once, on arrival), and
 * the counters the process keeps about itself.
 */
import type { RuntimeConfig } from '../config/runtime.ts';
import type { Pipeline } from './pipeline.ts';
import type { ReloadCounts, RuntimeView } from './plugin.ts';

/** An open WebSocket session, as the gateway's shutdown sees it. */
export interface OpenSession {
  /** Close both sides with this code and reason (the grace period is over). */
  close(code: number, reason: string): void;
}

export interface GatewayState extends RuntimeView {
  config: RuntimeConfig;
  pipeline: Pipeline;
  inflight: number;
  openStreams: number;
  readonly sessions: Set<OpenSession>;
  /** Set on SIGTERM: new requests are refused while in-flight ones finish. */
  draining: boolean;
  /** Set when the shutdown grace period is over: requests still open are cut by the gateway, not by their clients. */
  cutting: boolean;
  readonly reloads: ReloadCounts;
}
