/**
 * How a request ends: its outcome (the log's `outcome`, a metrics label) and, when it
 * did not end well, the type of its error. Both are closed sets, so metrics and the
 * explorer never meet a value they do not know.
 */

/** Every way a request ends, as logged; `other` is only a metrics label. */
export const OUTCOMES = [
  'ok',
  'upstream_error',
  'client_aborted',
  'rejected',
  'stream_idle_timeout',
  'gateway_error',
] as const;

export type Outcome =
  | 'ok' // the whole answer reached the client (whatever its status)
  | 'upstream_error' // the upstream could not be reached, timed out, or broke mid-stream
  | 'client_aborted' // the client went away before the last byte
  | 'rejected' // refused by the gateway (bad input, governance, no key)
  | 'stream_idle_timeout' // the upstream stream went silent for too long
  | 'gateway_error'; // a fault in the gateway itself

export type ErrorType =
  // refused by the gateway, before or instead of the upstream call
  | 'not_found'
  | 'invalid_path'
  | 'invalid_request'
  | 'method_not_allowed'
  | 'invalid_body'
  | 'payload_too_large'
  | 'websocket_not_supported'
  | 'backpressure_limit'
  | 'shutting_down'
  | 'no_key_for_model'
  | 'no_provider_key'
  | 'provider_not_configured'
  | 'unauthorized'
  | 'forbidden'
  | 'provider_not_allowed'
  | 'model_not_allowed'
  | 'model_not_priced'
  | 'body_too_large_to_check'
  | 'rate_limit_exceeded'
  | 'budget_exceeded'
  | 'governance_unavailable'
  | 'rejected'
  // the upstream failed
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_broken'
  | 'upstream_invalid_response'
  | 'upstream_auth_error'
  | 'stream_idle_timeout'
  // the client left, or the gateway failed
  | 'client_aborted'
  | 'shutdown'
  | 'gateway_error';

/**
 * How far the usage on a request's record can be billed on: `complete` (the provider's
 * final usage was read), `partial` (a stream ended early: what was read so far, output at
 * least the estimate from the content relayed), `absent` (a 2xx answer from an endpoint
 * that reports usage, but none was found: `usage_note` says why), `not_applicable`
 * (errors, refusals, endpoints that report no usage).
 */
export const USAGE_STATUSES = ['complete', 'partial', 'absent', 'not_applicable'] as const;
export type UsageStatus = (typeof USAGE_STATUSES)[number];

/**
 * How a streamed answer ended: `complete` (the protocol's terminator, or a clean end of a
 * stream that has none), `upstream_eof_no_terminator` (the upstream closed without it),
 * `upstream_error` (a read error or an error event mid-stream), `client_abort`,
 * `idle_timeout`, `shutdown` (cut when the shutdown grace period ended).
 */
export const STREAM_END_REASONS = [
  'complete',
  'upstream_eof_no_terminator',
  'upstream_error',
  'client_abort',
  'idle_timeout',
  'shutdown',
] as const;

/**
 * How a WebSocket session ended: a close frame from the client or the upstream, a
 * connection lost without one (`client_abort`, `upstream_error`), a message or buffer
 * over its limit, a model refused by governance in the first message, or the gateway's
 * shutdown.
 */
export const SESSION_END_REASONS = [
  'client_close',
  'upstream_close',
  'client_abort',
  'upstream_error',
  'message_too_large',
  'backpressure',
  'refused',
  'shutdown',
] as const;
export type SessionEnd = (typeof SESSION_END_REASONS)[number];

/** `end_reason` of a log line: how a stream or a WebSocket session ended. */
export type EndReason = (typeof STREAM_END_REASONS)[number] | SessionEnd;

/** How a request that ended with this error is logged and counted. */
export function outcomeOf(type: ErrorType): Outcome {
  switch (type) {
    case 'upstream_unreachable':
    case 'upstream_timeout':
    case 'upstream_broken':
    case 'upstream_invalid_response':
    case 'upstream_auth_error':
      return 'upstream_error';
    case 'stream_idle_timeout':
      return 'stream_idle_timeout';
    case 'client_aborted':
      return 'client_aborted';
    case 'shutdown':
    case 'gateway_error':
      return 'gateway_error';
    default:
      return 'rejected';
  }
}
