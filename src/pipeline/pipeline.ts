/**
 * Runs the enabled plugins in their configured order. A plugin that throws in a
 * response, attempt or completion hook is logged and skipped: no request fails because
 * a sink hiccupped. A request hook that throws answers 500, since a broken check (auth,
 * limits) must not wave traffic through.
 */
import { appLog } from '../log/app.ts';
import { jsonError } from '../server/errors.ts';
import type { AttemptInfo, Plugin, RequestContext, RequestRecord } from './types.ts';

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

  onAttemptStart(ctx: RequestContext, attempt: number): void {
    for (const p of this.attemptStartHooks) isolated(p, 'onAttemptStart', ctx.id, () => p.onAttemptStart!(ctx, attempt));
  }

  onAttemptEnd(ctx: RequestContext, info: AttemptInfo): void {
    for (const p of this.attemptEndHooks) isolated(p, 'onAttemptEnd', ctx.id, () => p.onAttemptEnd!(ctx, info));
  }

  onResponse(ctx: RequestContext, upstream: Response): void {
    for (const p of this.responseHooks) isolated(p, 'onResponse', ctx.id, () => p.onResponse!(ctx, upstream));
  }

  onComplete(record: RequestRecord, ctx: RequestContext | undefined): void {
    for (const p of this.completeHooks) isolated(p, 'onComplete', record.request_id, () => p.onComplete!(record, ctx));
  }
}

/** Run one hook; a throw or a rejected promise is logged, never passed on. */
function isolated(p: Plugin, hook: HookName, requestId: string, run: () => unknown): void {
  try {
    const r = run();
    if (r instanceof Promise) r.catch((err) => failed(p, hook, requestId, err));
  } catch (err) {
    failed(p, hook, requestId, err);
  }
}

function failed(p: Plugin, hook: HookName, requestId: string, err: unknown): void {
  appLog.error({ plugin: p.name, hook, request_id: requestId, err: String(err) }, 'plugin hook failed');
}
