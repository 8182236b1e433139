/**
 * Runs the hooks of the plugins a config turned on, in the configured order. A plugin
 * that throws in a response, attempt or completion hook is logged and skipped: no
 * request fails because a sink hiccupped. A request hook that throws refuses the request
 * with a 500, since a broken check (auth, limits) must not wave traffic through.
 */
import { appLog } from '../lib/app-log.ts';
import type { Usage } from '../usage/types.ts';
import { GatewayError } from './errors.ts';
import type { Hooks, RequestVerdict } from './plugin.ts';
import type { AttemptInfo, RequestContext, RequestRecord } from './request.ts';

type HookName = keyof Hooks;

/** One plugin's hooks in a pipeline. */
export interface Stage {
  readonly name: string;
  readonly hooks: Hooks;
}

export class Pipeline {
  static readonly EMPTY = new Pipeline([]);

  private readonly requestHooks: Stage[];
  private readonly responseHooks: Stage[];
  private readonly completeHooks: Stage[];
  private readonly attemptStartHooks: Stage[];
  private readonly attemptEndHooks: Stage[];
  private readonly modelHooks: Stage[];
  private readonly usageHooks: Stage[];

  constructor(readonly stages: readonly Stage[]) {
    this.requestHooks = stages.filter((s) => s.hooks.onRequest);
    this.responseHooks = stages.filter((s) => s.hooks.onResponse);
    this.completeHooks = stages.filter((s) => s.hooks.onComplete);
    this.attemptStartHooks = stages.filter((s) => s.hooks.onAttemptStart);
    this.attemptEndHooks = stages.filter((s) => s.hooks.onAttemptEnd);
    this.modelHooks = stages.filter((s) => s.hooks.onModel);
    this.usageHooks = stages.filter((s) => s.hooks.onUsage);
  }

  /** The names of the plugins in this pipeline, in order. */
  get names(): string[] {
    return this.stages.map((s) => s.name);
  }

  /** Whether the named plugin is on in this pipeline. */
  has(name: string): boolean {
    return this.stages.some((s) => s.name === name);
  }

  /** False when no plugin has a request hook: the request path then skips the (async) call. */
  get hasRequestHooks(): boolean {
    return this.requestHooks.length > 0;
  }

  /** False when no plugin wants attempt reports: the request path then builds none. */
  get hasAttemptEndHooks(): boolean {
    return this.attemptEndHooks.length > 0;
  }

  /** The request hooks' verdict: the first refusal stops the rest; a virtual key named by any is kept. */
  async onRequest(ctx: RequestContext): Promise<RequestVerdict | undefined> {
    let virtualKey: string | undefined;
    for (const s of this.requestHooks) {
      let verdict: RequestVerdict | undefined;
      try {
        verdict = await s.hooks.onRequest!(ctx);
      } catch (err) {
        failed(s, 'onRequest', ctx.id, err);
        return {
          virtualKey,
          refusal: new GatewayError(500, 'gateway_error', `plugin ${s.name} failed; request not forwarded`),
        };
      }
      if (!verdict) continue;
      virtualKey ??= verdict.virtualKey;
      if (verdict.refusal) return { virtualKey, refusal: verdict.refusal };
    }
    return virtualKey === undefined ? undefined : { virtualKey };
  }

  /** The first refusal of a model learnt after admission; a hook that throws refuses, as in onRequest. */
  onModel(ctx: RequestContext): GatewayError | undefined {
    for (const s of this.modelHooks) {
      try {
        const refusal = s.hooks.onModel!(ctx);
        if (refusal) return refusal;
      } catch (err) {
        failed(s, 'onModel', ctx.id, err);
        return new GatewayError(500, 'gateway_error', `plugin ${s.name} failed; request not forwarded`);
      }
    }
    return undefined;
  }

  onUsage(ctx: RequestContext, usage: Readonly<Usage>, costUsd: number | undefined): void {
    for (const s of this.usageHooks) {
      try {
        s.hooks.onUsage!(ctx, usage, costUsd);
      } catch (err) {
        failed(s, 'onUsage', ctx.id, err);
      }
    }
  }

  // The hooks below run for every request, so each loop calls its hook inline
  // rather than through a closure per call.

  onAttemptStart(ctx: RequestContext, attempt: number): void {
    for (const s of this.attemptStartHooks) {
      try {
        s.hooks.onAttemptStart!(ctx, attempt);
      } catch (err) {
        failed(s, 'onAttemptStart', ctx.id, err);
      }
    }
  }

  onAttemptEnd(ctx: RequestContext, info: AttemptInfo): void {
    for (const s of this.attemptEndHooks) {
      try {
        s.hooks.onAttemptEnd!(ctx, info);
      } catch (err) {
        failed(s, 'onAttemptEnd', ctx.id, err);
      }
    }
  }

  onResponse(ctx: RequestContext, upstream: Response): void {
    for (const s of this.responseHooks) {
      try {
        s.hooks.onResponse!(ctx, upstream);
      } catch (err) {
        failed(s, 'onResponse', ctx.id, err);
      }
    }
  }

  onComplete(record: Readonly<RequestRecord>, ctx: RequestContext | undefined): void {
    for (const s of this.completeHooks) {
      try {
        const r = s.hooks.onComplete!(record, ctx);
        // An async hook's rejection is logged like a throw.
        if (r instanceof Promise) r.catch((err) => failed(s, 'onComplete', record.request_id, err));
      } catch (err) {
        failed(s, 'onComplete', record.request_id, err);
      }
    }
  }
}

function failed(s: Stage, hook: HookName, requestId: string, err: unknown): void {
  appLog.error({ plugin: s.name, hook, request_id: requestId, err: String(err) }, 'plugin hook failed');
}
