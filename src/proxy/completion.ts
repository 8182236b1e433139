/**
 * Closes a request's record exactly once, whichever way it ends (answered, refused,
 * failed, client gone), and hands it to the completion hooks.
 */
import type { Pipeline } from '../core/pipeline.ts';
import type { Outcome, RequestContext, RequestError } from '../core/request.ts';
import type { GatewayState } from '../core/runtime.ts';

/** nginx's convention for "client closed the request" in logs; never sent to anyone. */
export const CLIENT_CLOSED_STATUS = 499;

const SHUTDOWN_CUT: RequestError = { type: 'shutdown', message: 'cut by the gateway when the shutdown grace period ended' };

export class Completion {
  private finished = false;

  /** Counts the request in `state.inflight` until it finishes. */
  constructor(
    private readonly ctx: RequestContext,
    private readonly pipeline: Pipeline,
    private readonly state: Pick<GatewayState, 'cutting' | 'inflight'>,
  ) {
    state.inflight++;
  }

  get done(): boolean {
    return this.finished;
  }

  /** The gateway refused the request (governance, no key, bad input). */
  rejected(response: Response, error?: RequestError): Response {
    this.finish(response.status, 'rejected', error ?? this.ctx.record.error ?? { type: 'rejected', message: `refused with ${response.status}` });
    return this.stamp(response);
  }

  /** The upstream could not answer (unreachable, timeout, auth failure upstream). */
  failed(response: Response, error?: RequestError, outcome: Outcome = 'upstream_error'): Response {
    this.finish(response.status, outcome, error ?? this.ctx.record.error);
    return this.stamp(response);
  }

  /** The client went away before any answer. */
  clientGone(): Response {
    this.finish(CLIENT_CLOSED_STATUS, 'client_aborted', { type: 'client_aborted', message: 'client closed the connection' });
    return new Response(null, { status: CLIENT_CLOSED_STATUS });
  }

  /**
   * Complete the record; later calls are ignored. For `client_aborted`, `status` is what
   * the client was sent, if anything: the record gets 499, unless the connection was
   * cut by the gateway at the end of the shutdown grace period (then it is a
   * gateway_error, with the status sent or 503).
   */
  finish(status: number, outcome: Outcome, error?: RequestError): void {
    if (this.finished) return;
    this.finished = true;
    if (outcome === 'client_aborted') {
      if (this.state.cutting) {
        outcome = 'gateway_error';
        error = SHUTDOWN_CUT;
        if (status === CLIENT_CLOSED_STATUS) status = 503;
      } else status = CLIENT_CLOSED_STATUS;
    }
    const r = this.ctx.record;
    r.status = status;
    r.outcome = outcome;
    if (error) r.error = error;
    r.latency_ms = Math.round((performance.now() - this.ctx.startedAt) * 100) / 100;
    this.state.inflight--;
    this.pipeline.onComplete(r, this.ctx);
  }

  private stamp(response: Response): Response {
    response.headers.set('x-request-id', this.ctx.id);
    if (this.ctx.record.attempts > 0) response.headers.set('x-skybridge-attempts', String(this.ctx.record.attempts));
    return response;
  }
}
