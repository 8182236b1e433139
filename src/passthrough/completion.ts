/**
 * Closes a request's record exactly once, whichever way it ends (answered, refused,
 * failed, client gone), and hands it to the completion hooks.
 */
import type { Pipeline } from '../pipeline/pipeline.ts';
import type { Outcome, RequestContext, RequestError } from '../pipeline/types.ts';
import type { GatewayState } from '../server/state.ts';

/** nginx's convention for "client closed the request" in logs; never sent to anyone. */
export const CLIENT_CLOSED_STATUS = 499;

const SHUTDOWN_CUT: RequestError = { type: 'shutdown', message: 'cut by the gateway when the shutdown grace period ended' };
const CLIENT_GONE: RequestError = { type: 'client_aborted', message: 'client closed the connection' };
const finishGone = (c: Completion) => c.finish(CLIENT_CLOSED_STATUS, 'client_aborted', CLIENT_GONE);

export class Completion {
  private finished = false;
  /** Whether the gateway cut the connection (shutdown), as it stood when the client was seen gone. */
  private cut: boolean | undefined;

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

  /**
   * The client went away before any answer (its upstream call is aborted already). The
   * record is completed on the next turn, as `clientLeft` explains.
   */
  clientGone(): Response {
    this.clientLeft();
    setImmediate(finishGone, this);
    return new Response(null, { status: CLIENT_CLOSED_STATUS });
  }

  /**
   * The client is gone now; `finish` follows a turn later, so that the hooks (log line,
   * metrics, governance) never run before the upstreams of other clients leaving in the
   * same turn are cancelled. A shutdown cut is told apart from a client leaving by the
   * state at this moment.
   */
  clientLeft(): void {
    this.cut ??= this.state.cutting;
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
      if (this.cut ?? this.state.cutting) {
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
