/**
 * The gateway's mutable core: the config in force and the pipeline built for it. A
 * reload replaces both references at once; a request reads them once, on arrival.
 */
import type { RuntimeConfig } from '../config/runtime.ts';
import type { Pipeline } from './pipeline.ts';

export interface GatewayState {
  config: RuntimeConfig;
  pipeline: Pipeline;
  /** Passthrough requests not yet completed (streams included). */
  inflight: number;
  /** Set on SIGTERM: new requests are refused while in-flight ones finish. */
  draining: boolean;
  /** Set when the shutdown grace period is over: requests still open are cut by the gateway, not by their clients. */
  cutting: boolean;
}
