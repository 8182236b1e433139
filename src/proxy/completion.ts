/**
 * The end of a request, in one place: the record's status, outcome, error and latency
 * are set here exactly once, whichever way the request ends (answered, refused, failed,
 * client gone, cut at shutdown), and the record is handed to the completion hooks. The
 * request counts as in flight from its arrival until then.
 */
import { GatewayError } from '../core/errors.ts';
import { outcomeOf } from '../core/outcome.ts';
import type { Pipeline } from '../core/pipeline.ts';
import type { RequestVerdict } from '../core/plugin.ts';
import type { Outcome, RequestError, RequestRecord } from '../core/request.ts';
import type { GatewayState } from '../core/runtime.ts';
import { roundMs } from '../lib/time.ts';
import { priceUsage } from './accounting.ts';
import type { Answer } from './exchange.ts';
import type { Context } from './prepare.ts';

/** nginx's convention for "client closed the request" in logs; never sent to anyone. */
export const CLIENT_CLOSED_STATUS = 499;

const SHUTDOWN_CUT: RequestError = {
  type: 'shutdown',
  message: 'cut by the gateway when the shutdown grace period ended',
};
const CLIENT_GONE: RequestError = { type: 'client_aborted', message: 'client closed the connection' };
const finishGone = (c: Completion) => c.finish(CLIENT_CLOSED_STATUS, 'client_aborted', CLIENT_GONE);

export class Completion {
  readonly startedAt = performance.now();
  private finished = false;
  private streamed = false;
  private ctx: Context | undefined;
  /** Whether the gateway cut the connection (shutdown), as it stood when the client was seen gone. */
  private cut: boolean | undefined;

  constructor(
    readonly record: RequestRecord,
    private readonly pipeline: Pipeline,
    private readonly state: Pick<GatewayState, 'cutting' | 'inflight' | 'openStreams'>,
  ) {
    state.inflight++;
  }

  /** The request has a context from here on: completion hooks get it. */
  begin(ctx: Context): Context {
    this.ctx = ctx;
    return ctx;
  }

  /** The request hooks' verdict: the virtual key is noted; a refusal answers. */
  admit(verdict: RequestVerdict | undefined): Response | undefined {
    if (!verdict) return undefined;
    if (verdict.virtualKey !== undefined) this.record.virtual_key = verdict.virtualKey;
    return verdict.refusal ? this.refused(verdict.refusal) : undefined;
  }

  /** The gateway answers instead of the upstream (bad input, governance, no key). */
  refused(error: GatewayError): Response {
    this.finish(error.status, 'rejected', error);
    return this.stamp(error.toResponse());
  }

  /** The upstream could not answer: unreachable, timed out, broke, refused the gateway's credential. */
  failed(error: GatewayError): Response {
    this.finish(error.status, outcomeOf(error.type), error);
    return this.stamp(error.toResponse());
  }

  /** An exchange that produced no answer to relay. */
  settle(answer: Exclude<Answer, { kind: 'response' }>): Response {
    switch (answer.kind) {
      case 'failed':
        return this.failed(answer.error);
      case 'aborted':
        return this.clientGone();
      case 'too_large':
        return this.refused(
          new GatewayError(
            413,
            'payload_too_large',
            `request body exceeds server.max_request_body_mb (${this.ctx?.config.source.server.max_request_body_mb} MB)`,
          ),
        );
    }
  }

  /** Something was thrown: a GatewayError is answered as what it says; anything else is the gateway's fault. */
  fault(err: unknown): Response {
    if (err instanceof GatewayError) return outcomeOf(err.type) === 'rejected' ? this.refused(err) : this.failed(err);
    this.finish(500, 'gateway_error', { type: 'gateway_error', message: String(err) });
    return this.stamp(new GatewayError(500, 'gateway_error', 'internal gateway error').toResponse());
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
   * The client is gone now; `finish` follows a turn later, so that the completion hooks
   * (log line, metrics, governance) never run before the upstreams of the other clients
   * leaving in the same turn are cancelled. A shutdown cut is told apart from a client
   * leaving by the state at this moment.
   */
  clientLeft(): void {
    this.cut ??= this.state.cutting;
  }

  /** A streamed answer started: counted in `openStreams` until the request finishes. */
  streaming(): void {
    this.streamed = true;
    this.state.openStreams++;
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
    const r = this.record;
    if (outcome === 'client_aborted') {
      if (this.cut ?? this.state.cutting) {
        outcome = 'gateway_error';
        error = SHUTDOWN_CUT;
        if (status === CLIENT_CLOSED_STATUS) status = 503;
        if (r.end_reason === 'client_abort') r.end_reason = 'shutdown';
      } else status = CLIENT_CLOSED_STATUS;
    }
    r.status = status;
    r.outcome = outcome;
    // A GatewayError's message is not an own property: the record keeps plain fields.
    if (error) r.error = { type: error.type, message: error.message };
    const elapsed = performance.now() - this.startedAt;
    r.latency_ms = roundMs(elapsed);
    // Answers relayed set it when their headers (or their last chunk) went out.
    r.gw_us ??= Math.round((elapsed - (this.ctx?.upstreamMs ?? 0)) * 1000);
    if (this.ctx) priceUsage(r, this.ctx);
    this.state.inflight--;
    if (this.streamed) this.state.openStreams--;
    this.pipeline.onComplete(r, this.ctx);
  }

  private stamp(response: Response): Response {
    response.headers.set('x-request-id', this.record.request_id);
    if (this.record.attempts > 0) response.headers.set('x-skybridge-attempts', String(this.record.attempts));
    return response;
  }
}
