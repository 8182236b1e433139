/**
 * Runs the enabled plugins in their configured order. A plugin that throws in a
 * response, attempt or completion hook is logged and skipped: no request fails because
 * a sink hiccupped. A request hook that throws answers 500, since a broken check (auth,
 * limits) must not wave traffic through.
 */
import { appLog } from '../lib/app-log.ts';
import { jsonError } from './errors.ts';
import type { AttemptInfo, Plugin, RequestContext, RequestRecord } from './request.ts';

type HookName = 'onRequest' | 'onResponse' | 'onAttemptStart' | 'onAttemptEnd' | 'onComplete';

export class Pipeline {
  private readonly requestHooks: Plugin[];
  private readonly responseHooks: Plugin[];
  private readonly completeHooks: Plugin[];
  private readonly attemptStartHooks: Plugin[];
  private readonly attemptEndHooks: Plugin[];

  constructor(readonly plugins: readonly Plugin[]) {
    this.requestHooks = plugins.filter((p) => p.onRequest);
    this.responseHooks = plugins.filter((p) => p.onResponse);
    this.completeHooks = plugins.filter((p) => p.onComplete);
    this.attemptStartHooks = plugins.filter((p) => p.onAttemptStart);
    this.attemptEndHooks = plugins.filter((p) => p.onAttemptEnd);
  }

  /** False when no plugin has a request hook: the flow then skips the (async) call. */
  get hasRequestHooks(): boolean {
    return this.requestHooks.length > 0;
  }

  /** False when no plugin wants attempt reports: the flow then builds none. */
  get hasAttemptEndHooks(): boolean {
    return this.attemptEndHooks.length > 0;
  }

  async onRequest(ctx: RequestContext): Promise<Response | undefined> {
    for (const p of this.requestHooks) {
      try {
        const answer = await p.onRequest!(ctx);
        if (answer) return answer;
      } catch (err) {
        failed(p, 'onRequest', ctx.id, err);
        return jsonError(500, 'gateway_error', `plugin ${p.name} failed; request not forwarded`);
      }
    }
    return undefined;
  }

  // The hooks below run for every request, so each loop calls its hook inline
  // rather than through a closure per call.

  onAttemptStart(ctx: RequestContext, attempt: number): void {
    for (const p of this.attemptStartHooks) {
      try {
        p.onAttemptStart!(ctx, attempt);
      } catch (err) {
        failed(p, 'onAttemptStart', ctx.id, err);
      }
    }
  }

  onAttemptEnd(ctx: RequestContext, info: AttemptInfo): void {
    for (const p of this.attemptEndHooks) {
      try {
        p.onAttemptEnd!(ctx, info);
      } catch (err) {
        failed(p, 'onAttemptEnd', ctx.id, err);
      }
    }
  }

  onResponse(ctx: RequestContext, upstream: Response): void {
    for (const p of this.responseHooks) {
      try {
        p.onResponse!(ctx, upstream);
      } catch (err) {
        failed(p, 'onResponse', ctx.id, err);
      }
    }
  }

  onComplete(record: RequestRecord, ctx: RequestContext | undefined): void {
    for (const p of this.completeHooks) {
      try {
        const r = p.onComplete!(record, ctx);
        // An async hook's rejection is logged like a throw.
        if (r instanceof Promise) r.catch((err) => failed(p, 'onComplete', record.request_id, err));
      } catch (err) {
        failed(p, 'onComplete', record.request_id, err);
      }
    }
  }
}

function failed(p: Plugin, hook: HookName, requestId: string, err: unknown): void {
  appLog.error({ plugin: p.name, hook, request_id: requestId, err: String(err) }, 'plugin hook failed');
}
