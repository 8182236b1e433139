/**
 * Governance: virtual keys for clients, allowed providers/models per key, rate limits
 * (requests and tokens per minute) and budgets (tokens and cost per calendar period).
 *
 * onRequest: find and consume the virtual key, check what it may use, then admit the
 * request against its counters in one atomic store operation (the request counter is
 * only incremented when every limit passes). onComplete: add the tokens and cost the
 * request actually used (streams included, a stream cut short at its partial usage) to
 * the token-per-minute window and the budget period: the record's own `usage` and
 * `cost_usd`, so a budget and a log line never disagree on a request. A WebSocket
 * session's usage is added as each report arrives (onUsage, priced the same way), and
 * the model its first message names is checked then (onModel). Token limits are
 * therefore enforced on admission against what was
 * already spent: a request in flight may take a key past its limit, the next ones are
 * refused.
 *
 * In a group of workers without Redis, the counters and the upload sessions are the
 * primary's: workers admit through it (GroupStore), and an upload session started on one
 * worker is known to all.
 */
import type { RuntimeConfig } from '../../config/runtime.ts';
import { type ErrorType, GatewayError } from '../../core/errors.ts';
import { type Group, LocalGroup, topic } from '../../core/group.ts';
import type { Hooks, Plugin, RequestVerdict } from '../../core/plugin.ts';
import { type RequestContext, type RequestRecord, Slot } from '../../core/request.ts';
import { allows } from '../../keys/pool.ts';
import { appLog } from '../../lib/app-log.ts';
import { NANO_PER_USD, tokensOf } from '../../usage/cost.ts';
import type { Usage } from '../../usage/types.ts';
import { WarnLimiter } from '../shared/warn-limiter.ts';
import { presentedKey, type VirtualKey, VirtualKeyTable } from './keys.ts';
import { formatUsd, minuteWindow, type Period, periodWindow, secondsUntil, type Window } from './limits.ts';
import {
  type AdmitResult,
  type Check,
  type CounterStore,
  GroupStore,
  type Increment,
  MemoryStore,
  RedisStore,
  redactRedisUrl,
  serveCounters,
} from './store.ts';
import { type UploadSession, UploadSessions } from './uploads.ts';

/** The virtual key a request is governed by, for its completion. */
const GOVERNED = new Slot<VirtualKey>();
/** Its usage was charged as it was reported (onUsage: a WebSocket session), not at completion. */
const CHARGED = new Slot<true>();
/** Counter keys outlive their window by this much (clock skew between instances). */
const TTL_SLACK_SEC = 60;
const ADJECTIVE: Record<Period, string> = { hour: 'hourly', day: 'daily', week: 'weekly', month: 'monthly' };
const HOW_TO_SEND =
  'send it as the x-bf-vk header or as the API key of your SDK (Authorization: Bearer, x-api-key, api-key, x-goog-api-key)';
/** An upload session started on one worker, told to every other (and the primary). */
const UPLOAD_STARTED = topic<{ id: string; key: string | undefined }>('governance.upload-started');
/** A worker asks the primary about a session it has not heard of (yet). */
const UPLOAD_RECALL = topic<string, UploadSession | null>('governance.upload-recall');
/** How long the primary waits for a session's start to reach it before it answers unknown. */
const UPLOAD_RECALL_WAIT_MS = 50;
const UNKNOWN_UPLOAD =
  'this upload session was not started through this gateway instance, or has expired: send its requests with a virtual key, or start the upload again';

interface PlannedCheck {
  check: Check;
  window: Window;
  type: 'rate_limit_exceeded' | 'budget_exceeded';
  message: (value: number, retryAfter: number) => string;
}

export class GovernancePlugin implements Plugin, Hooks {
  readonly name = 'governance';
  /** The clock windows and periods are computed from (epoch ms). Tests move it. */
  now: () => number = Date.now;
  /** Counters when no redis_url is set; kept for the plugin's lifetime (reloads keep counts). */
  readonly memory = new MemoryStore();
  /** Without Redis: this process's MemoryStore, or the primary's for a worker. */
  private readonly local: CounterStore;
  private store: CounterStore;
  private storeSignature: string | undefined;
  private required = false;
  private failOpen = true;
  private prefix = 'skybridge:gov:';
  private keys = new VirtualKeyTable([], []);
  private readonly pending = new Set<Promise<void>>();
  private readonly storeWarnings = new WarnLimiter(10_000);
  private readonly priceWarnings = new WarnLimiter(60_000);
  /** Upload sessions started through this gateway, and by which virtual key (kept across reloads). */
  readonly uploads = new UploadSessions();

  constructor(private readonly group: Group = new LocalGroup()) {
    this.local = group.role === 'worker' ? new GroupStore(group) : this.memory;
    this.store = this.local;
    if (group.role === 'primary') {
      serveCounters(group, this.memory);
      group.on(UPLOAD_RECALL, async (id) => {
        let session = this.uploads.recall(id, this.now());
        if (!session) {
          // A session started on another worker a moment ago may still be on its way here.
          await Bun.sleep(UPLOAD_RECALL_WAIT_MS);
          session = this.uploads.recall(id, this.now());
        }
        return session ? { key: session.key } : null;
      });
    }
    if (group.role !== 'single') group.on(UPLOAD_STARTED, ({ id, key }) => this.uploads.remember(id, key, this.now()));
  }

  /** Off without a governance section that requires or names a virtual key: no request hook runs then. */
  configure(config: RuntimeConfig): this | undefined {
    const g = config.source.governance;
    if (!g || (!g.required && g.virtual_keys.length === 0)) {
      void this.releaseStore();
      return undefined;
    }
    this.required = g.required;
    this.failOpen = (g?.on_store_error ?? 'fail_open') === 'fail_open';
    this.prefix = g?.redis_key_prefix ?? 'skybridge:gov:';
    this.keys = new VirtualKeyTable(g.virtual_keys, Object.keys(config.providers));

    // The primary of a group serves no request: its workers use Redis themselves.
    const url = (this.group.role !== 'primary' && g?.redis_url) || undefined;
    const timeoutMs = g?.redis_timeout_ms ?? 250;
    const signature = url ? `${url}\n${timeoutMs}` : undefined;
    if (signature !== this.storeSignature) {
      const old = this.store;
      if (url) {
        const redis = new RedisStore(url, { timeoutMs });
        redis.warmUp((err) =>
          this.storeWarnings.warn(
            { err: String((err as Error)?.message ?? err), redis: redactRedisUrl(url) },
            'governance store: cannot connect to redis (will retry on demand)',
          ),
        );
        this.store = redis;
        appLog.info({ redis: redactRedisUrl(url), timeout_ms: timeoutMs }, 'governance counters in redis');
      } else {
        this.store = this.local;
      }
      this.storeSignature = signature;
      if (old !== this.local) void this.settled().then(() => old.close());
    }

    for (const k of g?.virtual_keys ?? []) {
      if (k.budget?.max_cost_usd === undefined) continue;
      const providers = (k.providers ?? Object.keys(config.providers)).map((p) => config.providers[p]);
      const unpriced = k.models.filter((m) => {
        const model = m.endsWith('*') ? m.slice(0, -1) : m;
        return !providers.some((p) => p?.prices.lookup(model));
      });
      if (unpriced.length > 0) {
        appLog.warn(
          { virtual_key: k.name, models: unpriced },
          'virtual key has a cost budget but neither governance.prices nor the price catalog prices some of its models; requests for unpriced models are refused',
        );
      }
    }
    return this;
  }

  async onRequest(ctx: RequestContext): Promise<RequestVerdict | undefined> {
    const found = presentedKey(this.keys, ctx.request.headers, ctx.query, ctx.upstream);
    if (found.badControlHeader)
      return refuse(401, 'unauthorized', 'the x-bf-vk header does not hold a valid virtual key');
    let vk = found.key;
    if (ctx.uploadId !== undefined) {
      const session = this.uploads.recall(ctx.uploadId, this.now()) ?? (await this.recallShared(ctx.uploadId));
      if (!vk && !found.anyCredential) {
        // No credential at all (Python's chunks): the session id stands for the key that started it.
        if (!session || (session.key !== undefined && !(vk = this.keys.named(session.key))))
          return refuse(401, 'unauthorized', UNKNOWN_UPLOAD);
      } else if (vk && session?.key !== undefined && session.key !== vk.name) {
        return refuse(403, 'forbidden', `this upload session was started by another virtual key than "${vk.name}"`);
      }
    }
    if (!vk) {
      if (!this.required) return undefined;
      return refuse(
        401,
        'unauthorized',
        found.anyCredential
          ? `the credential sent is not a valid virtual key; this gateway requires one: ${HOW_TO_SEND}`
          : `a virtual key is required: ${HOW_TO_SEND}`,
      );
    }
    GOVERNED.set(ctx, vk);
    const verdict = (refusal?: GatewayError): RequestVerdict => ({ virtualKey: vk.name, refusal });
    const refuseFor = (status: number, type: ErrorType, message: string) =>
      verdict(new GatewayError(status, type, message));

    if (!vk.providers.has(ctx.provider)) {
      return refuseFor(
        403,
        'provider_not_allowed',
        `virtual key "${vk.name}" may not use provider "${ctx.provider}" (allowed: ${[...vk.providers].join(', ') || 'none'})`,
      );
    }
    if (
      ctx.model === undefined &&
      ctx.bodyUnread &&
      (!vk.models.includes('*') || vk.budget?.maxCostNano !== undefined) &&
      !isUpload(ctx.request.headers.get('content-type'))
    ) {
      // A body that may name a model but could not be read (too large to hold, or
      // compressed beyond reading) would walk around the model list and the cost budget:
      // refused for a key with either. File uploads are never read for a model.
      const limit = ctx.config.source.server.buffer_body_limit_mb;
      return refuseFor(
        413,
        'body_too_large_to_check',
        `virtual key "${vk.name}" is limited to some models or by cost, and this request body cannot be checked for its model (over server.buffer_body_limit_mb, ${limit} MB, once inflated, or compressed with a coding other than gzip, deflate, br)`,
      );
    }
    const modelRefusal = this.modelRefusal(vk, ctx);
    if (modelRefusal) return verdict(modelRefusal);

    const now = this.now();
    const plan = this.plan(vk, now);
    if (plan.length === 0) return verdict();
    let result: AdmitResult;
    try {
      result = await this.store.admit(plan.map((p) => p.check));
    } catch (err) {
      this.storeWarnings.warn(
        { err: String((err as Error)?.message ?? err), on_store_error: this.failOpen ? 'fail_open' : 'fail_closed' },
        this.failOpen
          ? 'governance store unavailable; request let through unchecked (fail_open)'
          : 'governance store unavailable; request refused (fail_closed)',
      );
      if (this.failOpen) return verdict();
      return refuseFor(
        503,
        'governance_unavailable',
        'the governance counter store is unavailable; request refused (governance.on_store_error: fail_closed)',
      );
    }
    if (result.ok) return verdict();
    const hit = plan[result.index]!;
    const retryAfter = secondsUntil(hit.window.end, now);
    return verdict(
      new GatewayError(429, hit.type, hit.message(result.value, retryAfter), { 'retry-after': String(retryAfter) }),
    );
  }

  /** An answer that starts an upload session: remember who started it (onRequest admits its chunks). */
  onResponse(ctx: RequestContext, upstream: Response): void {
    if (upstream.status < 200 || upstream.status > 299) return;
    const id = ctx.startedUpload(upstream);
    if (id === undefined) return;
    const key = GOVERNED.get(ctx)?.name;
    this.uploads.remember(id, key, this.now());
    if (this.group.role === 'worker') this.group.broadcast(UPLOAD_STARTED, { id, key });
  }

  /** A worker that has not heard of a session asks the primary (the start may have been served by another worker). */
  private async recallShared(id: string): Promise<UploadSession | undefined> {
    if (this.group.role !== 'worker') return undefined;
    const session = await this.group.request(UPLOAD_RECALL, id).catch(() => null);
    if (!session) return undefined;
    this.uploads.remember(id, session.key, this.now());
    return session;
  }

  /** A model named after admission (a Gemini Live session's setup message): checked as onRequest checks one. */
  onModel(ctx: RequestContext): GatewayError | undefined {
    const vk = GOVERNED.get(ctx);
    return vk && this.modelRefusal(vk, ctx);
  }

  private modelRefusal(vk: VirtualKey, ctx: RequestContext): GatewayError | undefined {
    const model = ctx.model;
    const modelAllowed = model === undefined ? vk.models.length > 0 : allows(vk.models, model);
    if (!modelAllowed) {
      return new GatewayError(
        403,
        'model_not_allowed',
        `virtual key "${vk.name}" may not use model "${model ?? '(none)'}" (allowed: ${vk.models.join(', ') || 'none'})`,
      );
    }
    if (
      vk.budget?.maxCostNano !== undefined &&
      model !== undefined &&
      !ctx.config.providers[ctx.provider]?.prices.lookup(model)
    ) {
      return new GatewayError(
        403,
        'model_not_priced',
        `virtual key "${vk.name}" has a cost budget, but neither governance.prices nor the price catalog has a price for model "${model}" on ${ctx.provider}`,
      );
    }
    return undefined;
  }

  /** A session's usage, charged as each report arrives (its completion then charges nothing more). */
  onUsage(ctx: RequestContext, usage: Readonly<Usage>, costUsd: number | undefined): void {
    const vk = GOVERNED.get(ctx);
    if (!vk?.countsUsage) return;
    CHARGED.set(ctx, true);
    this.charge(vk, usage, costUsd, ctx.model);
  }

  onComplete(record: Readonly<RequestRecord>, ctx: RequestContext | undefined): void {
    const vk = ctx && GOVERNED.get(ctx);
    if (!vk?.countsUsage || CHARGED.get(ctx!)) return;
    this.charge(vk, record.usage, record.cost_usd, record.model);
  }

  /** Add tokens (and their cost in USD, undefined when unpriced) to the key's token-per-minute window and budget period. */
  private charge(
    vk: VirtualKey,
    usage: Readonly<Usage> | undefined,
    costUsd: number | undefined,
    model: string | undefined,
  ): void {
    const tokens = tokensOf(usage);
    if (tokens <= 0) return;
    const now = this.now();
    const increments: Increment[] = [];
    if (vk.tokensPerMinute !== undefined) {
      const w = minuteWindow(now);
      increments.push({ key: this.key(vk, 'tpm', w), by: tokens, ttlSec: ttl(w, now) });
    }
    const budget = vk.budget;
    if (budget) {
      const w = periodWindow(budget.period, now);
      if (budget.maxTokens !== undefined)
        increments.push({ key: this.key(vk, `tok:${budget.period}`, w), by: tokens, ttlSec: ttl(w, now) });
      if (budget.maxCostNano !== undefined) {
        if (costUsd !== undefined) {
          increments.push({
            key: this.key(vk, `usd:${budget.period}`, w),
            by: Math.round(costUsd * NANO_PER_USD),
            ttlSec: ttl(w, now),
          });
        } else {
          this.priceWarnings.warn(
            { virtual_key: vk.name, model: model ?? null, tokens },
            'no price for the model of a completed request; its cost was not counted against the budget',
          );
        }
      }
    }
    if (increments.length === 0) return;
    const done: Promise<void> = this.store
      .add(increments)
      .catch((err) =>
        this.storeWarnings.warn(
          { err: String((err as Error)?.message ?? err), virtual_key: vk.name, tokens },
          'governance store unavailable; usage of a completed request was not counted',
        ),
      )
      .finally(() => this.pending.delete(done));
    this.pending.add(done);
  }

  /** Resolves when the counter store answers (always, for memory); rejects with the reason. */
  async storeReady(): Promise<void> {
    if (this.store instanceof RedisStore) await this.store.ping();
  }

  /** Resolves when every usage write started so far has finished (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  /** Off (left out of `plugins`, or no virtual keys): release the Redis connection. */
  async off(): Promise<void> {
    await this.releaseStore();
  }

  async close(): Promise<void> {
    await this.releaseStore();
  }

  private async releaseStore(): Promise<void> {
    await this.settled();
    if (this.store !== this.local) await this.store.close();
    this.store = this.local;
    this.storeSignature = undefined;
  }

  /** The checks for one request, most lasting first: a spent budget outranks a busy minute. */
  private plan(vk: VirtualKey, now: number): PlannedCheck[] {
    const plan: PlannedCheck[] = [];
    const b = vk.budget;
    if (b) {
      const w = periodWindow(b.period, now);
      const resets = new Date(w.end).toISOString();
      if (b.maxCostNano !== undefined) {
        const limit = b.maxCostNano;
        plan.push({
          check: { key: this.key(vk, `usd:${b.period}`, w), limit, inc: 0, ttlSec: ttl(w, now) },
          window: w,
          type: 'budget_exceeded',
          message: (v) =>
            `virtual key "${vk.name}" has used up its ${ADJECTIVE[b.period]} cost budget (max_cost_usd ${formatUsd(limit)}, spent ${formatUsd(v)}); it resets at ${resets}`,
        });
      }
      if (b.maxTokens !== undefined) {
        const limit = b.maxTokens;
        plan.push({
          check: { key: this.key(vk, `tok:${b.period}`, w), limit, inc: 0, ttlSec: ttl(w, now) },
          window: w,
          type: 'budget_exceeded',
          message: (v) =>
            `virtual key "${vk.name}" has used up its ${ADJECTIVE[b.period]} token budget (max_tokens ${limit}, used ${v}); it resets at ${resets}`,
        });
      }
    }
    const m = minuteWindow(now);
    if (vk.tokensPerMinute !== undefined) {
      const limit = vk.tokensPerMinute;
      plan.push({
        check: { key: this.key(vk, 'tpm', m), limit, inc: 0, ttlSec: ttl(m, now) },
        window: m,
        type: 'rate_limit_exceeded',
        message: (v, s) =>
          `virtual key "${vk.name}" is over its tokens_per_minute limit (${limit}; ${v} used this minute); retry in ${s} s`,
      });
    }
    if (vk.requestsPerMinute !== undefined) {
      const limit = vk.requestsPerMinute;
      plan.push({
        check: { key: this.key(vk, 'rpm', m), limit, inc: 1, ttlSec: ttl(m, now) },
        window: m,
        type: 'rate_limit_exceeded',
        message: (_v, s) =>
          `virtual key "${vk.name}" is over its requests_per_minute limit (${limit}); retry in ${s} s`,
      });
    }
    return plan;
  }

  /**
   * `<prefix>{<name>}:<counter>:<window start, epoch s>`. The braces are a Redis Cluster
   * hash tag: all counters of one key share a slot, as the multi-key scripts require.
   */
  private key(vk: VirtualKey, counter: string, w: Window): string {
    return `${this.prefix}{${encodeURIComponent(vk.name)}}:${counter}:${Math.floor(w.start / 1000)}`;
  }
}

function ttl(w: Window, now: number): number {
  return Math.ceil((w.end - now) / 1000) + TTL_SLACK_SEC;
}

function refuse(status: number, type: ErrorType, message: string): RequestVerdict {
  return { refusal: new GatewayError(status, type, message) };
}

/** File uploads (multipart forms, raw bytes, media): never read for a model, whatever their size. */
const isUpload = (contentType: string | null): boolean =>
  contentType !== null && /^\s*(multipart\/|application\/octet-stream|audio\/|image\/|video\/)/i.test(contentType);
