/**
 * Runs the enabled plugins in their configured order. A plugin that throws in a
 * response or completion hook is logged and skipped: no request fails because a sink
 * hiccupped. A request hook that throws answers 500, since a broken check (auth,
 * limits) must not wave traffic through.
 */
import { appLog } from '../log/app.ts';
import { jsonError } from '../server/errors.ts';
import type { AttemptInfo, Plugin, RequestContext, RequestRecord } from './types.ts';

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

  onAttemptStart(ctx: RequestContext, attempt: number): void {
    for (const p of this.attemptStartHooks) {
      try {
        p.onAttemptStart!(ctx, attempt);
      } catch (err) {
        appLog.error({ plugin: p.name, request_id: ctx.id, err: String(err) }, 'plugin attempt hook failed');
      }
    }
  }

  onAttemptEnd(ctx: RequestContext, info: AttemptInfo): void {
    for (const p of this.attemptEndHooks) {
      try {
        p.onAttemptEnd!(ctx, info);
      } catch (err) {
        appLog.error({ plugin: p.name, request_id: ctx.id, err: String(err) }, 'plugin attempt hook failed');
      }
    }
  }

  async onRequest(ctx: RequestContext): Promise<Response | undefined> {
    for (const p of this.requestHooks) {
      try {
        const answer = await p.onRequest!(ctx);
        if (answer) return answer;
      } catch (err) {
        appLog.error({ plugin: p.name, request_id: ctx.id, err: String(err) }, 'plugin request hook failed');
        return jsonError(500, 'gateway_error', `plugin ${p.name} failed; request not forwarded`);
      }
    }
    return undefined;
  }

  onResponse(ctx: RequestContext, upstream: Response): void {
    for (const p of this.responseHooks) {
      try {
        p.onResponse!(ctx, upstream);
      } catch (err) {
        appLog.error({ plugin: p.name, request_id: ctx.id, err: String(err) }, 'plugin response hook failed');
      }
    }
  }

  onComplete(record: RequestRecord, ctx: RequestContext | undefined): void {
    for (const p of this.completeHooks) {
      try {
        const r = p.onComplete!(record, ctx);
        if (r) r.catch((err) => appLog.error({ plugin: p.name, request_id: record.request_id, err: String(err) }, 'plugin completion hook failed'));
      } catch (err) {
        appLog.error({ plugin: p.name, request_id: record.request_id, err: String(err) }, 'plugin completion hook failed');
      }
    }
  }
}
