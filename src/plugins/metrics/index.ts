/**
 * Prometheus metrics at `GET <metrics.path>` (default /metrics), optionally behind a
 * bearer token.
 *
 * prom-client owns the registry, the text exposition, the process metrics and the
 * low-rate metrics (gauges read at scrape time, config reloads). The per-request
 * counters and histograms are kept in plain cells instead: prom-client hashes the label
 * set on every `inc`/`observe` (~0.5-0.8 us each, measured), while a cell held by
 * reference is a field increment. The cells are looked up through small per-provider /
 * per-endpoint tables and handed to the registry as ordinary metric objects, so the
 * scrape output is prom-client's own format.
 *
 * Labels are bounded: provider, endpoint, status class, outcome, stream, direction,
 * retry reason, error type and stream end reason come from fixed sets (anything unexpected is `other`);
 * models are folded (configured models, then the first MAX_DYNAMIC_MODELS others seen,
 * then `other`), and a model string that contains a configured secret is never a label.
 *
 * In a group of workers, a scrape served by any worker answers for the whole group: the
 * worker asks the primary, which asks every worker for its registry (`getMetricsAsJSON`)
 * and merges them with prom-client's `AggregatorRegistry.aggregate`, each family by its
 * `aggregator` (counters and histograms summed; gauges summed or otherwise as their
 * meaning requires), any family alike. The primary's own registry comes first (its
 * process metrics count, and what cannot be merged, like the start time, is its own); a
 * worker that has exited leaves its last counts behind, so no counter of the group ever
 * goes down.
 */
import {
  AggregatorRegistry,
  collectDefaultMetrics,
  Gauge,
  type Metric,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';
import type { RuntimeConfig } from '../../config/runtime.ts';
import { type ErrorType, jsonError } from '../../core/errors.ts';
import { type Group, LocalGroup, topic, WORKER_GONE } from '../../core/group.ts';
import type { Hooks, Plugin, PluginRoute, RuntimeView } from '../../core/plugin.ts';
import {
  type EndReason,
  type Outcome,
  OUTCOMES as RECORD_OUTCOMES,
  type RequestContext,
  type RequestRecord,
  Slot,
} from '../../core/request.ts';
import { appLog } from '../../lib/app-log.ts';
import { VERSION } from '../../lib/version.ts';
import type { Usage } from '../../usage/types.ts';
import { BearerToken } from '../shared/admin-auth.ts';
import { CellCounter, CellHistogram, type CounterCell, type HistogramCell, ReadCounter } from './cells.ts';

/** Seconds; from a cached answer (ms) to a long reasoning stream (20 min). */
export const LATENCY_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200,
];

/** Distinct models outside the configured keys' lists that get a label of their own. */
export const MAX_DYNAMIC_MODELS = 100;
/** Longer model strings are not labels (`other`). */
const MAX_MODEL_LABEL_LENGTH = 128;

const OUTCOMES = [...RECORD_OUTCOMES, 'other'] as const;
const OUTCOME_INDEX: Readonly<Record<string, number>> = Object.fromEntries(OUTCOMES.map((o, i) => [o, i]));
const OTHER_OUTCOME = OUTCOMES.length - 1;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'unknown'] as const;
/** Retry reasons are status codes or the error types of failed attempts; other codes fold into `other`. */
const RETRY_REASONS = new Set<string>([
  '429',
  '500',
  '502',
  '503',
  '504',
  'upstream_timeout',
  'upstream_unreachable',
  'upstream_invalid_response',
]);
/** Outcomes that count as an upstream failure (the HTTP status of a delivered answer does not). */
const UPSTREAM_FAILURE_OUTCOMES: ReadonlySet<Outcome> = new Set<Outcome>(['upstream_error', 'stream_idle_timeout']);

const TOKEN_DIRECTIONS = [
  ['input', 'input_tokens'],
  ['output', 'output_tokens'],
  ['cache_read', 'cache_read_input_tokens'],
  ['cache_write', 'cache_creation_input_tokens'],
  ['reasoning', 'reasoning_tokens'],
] as const;

// ---------------------------------------------------------------------------------
// Per-provider / per-endpoint lookup tables, so a request does index lookups only.

interface EndpointSeries {
  /** [statusClass * OUTCOMES.length + outcome] */
  requests: Array<CounterCell | undefined>;
  /** [stream * OUTCOMES.length + outcome] */
  duration: Array<HistogramCell | undefined>;
  /** [stream] */
  ttfb: Array<HistogramCell | undefined>;
  /** 2xx answers whose usage was not found. */
  absent?: CounterCell;
}

/** A folded model's token counters by direction, and its cost. */
type TokenCells = Partial<Record<(typeof TOKEN_DIRECTIONS)[number][0] | 'cost', CounterCell>> & {
  readonly model: string;
};

interface ProviderSeries {
  endpoints: Map<string, EndpointSeries>;
  /** Raw model string -> the cells of its folded label (bounded; cleared on reload). */
  models: Map<string, TokenCells>;
  /** Folded label -> cells (so raw spellings that fold together share cells). */
  labels: Map<string, TokenCells>;
  retries: Map<string, CounterCell>;
  errors: Map<ErrorType, CounterCell>;
  streamEnds: Map<EndReason, CounterCell>;
}

/** Raw model strings remembered per provider before folding is recomputed per request. */
const MODEL_CACHE_MAX = 1000;

type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;
/** A worker asks the primary for the group's scrape (the text). */
const SCRAPE = topic<undefined, string>('metrics.scrape');
/** The primary asks each worker for its registry. */
const COLLECT = topic<undefined, MetricsJson>('metrics.collect');
/** A worker slower than this to answer a scrape is counted with its last answer. */
const COLLECT_TIMEOUT_MS = 3000;
/** A WebSocket session whose tokens were counted as reported (onUsage), not at completion. */
const COUNTED = new Slot<true>();

function statusClass(status: number): number {
  const c = Math.floor(status / 100);
  return c >= 1 && c <= 5 ? c - 1 : STATUS_CLASSES.length - 1;
}

export class MetricsPlugin implements Plugin, Hooks {
  readonly name = 'metrics';
  readonly registry = new Registry();
  /** Distinct unconfigured models with a label of their own (tests lower it). */
  maxDynamicModels = MAX_DYNAMIC_MODELS;

  private routePath: string | undefined;
  private token: BearerToken | undefined;
  private configuredModels = new Set<string>();
  private readonly dynamicModels = new Set<string>();
  private secrets: readonly string[] = [];
  private readonly series = new Map<string, ProviderSeries>();
  /** The primary: each worker's last answer, and the counts left by workers that exited. */
  private readonly lastParts = new Map<number, MetricsJson>();
  private retired: MetricsJson = [];

  private readonly requests = new CellCounter(
    'skybridge_requests_total',
    'Passthrough requests completed, by provider, endpoint, HTTP status class and outcome.',
    ['provider', 'endpoint', 'status_class', 'outcome'],
  );
  private readonly duration = new CellHistogram(
    'skybridge_request_duration_seconds',
    'Time from request arrival to the last byte sent to the client (or the end of the request).',
    ['provider', 'endpoint', 'stream', 'outcome'],
    LATENCY_BUCKETS,
  );
  private readonly ttfb = new CellHistogram(
    'skybridge_upstream_ttfb_seconds',
    'Time from sending the (last) upstream attempt to receiving its response headers.',
    ['provider', 'endpoint', 'stream'],
    LATENCY_BUCKETS,
  );
  private readonly tokens = new CellCounter(
    'skybridge_tokens_total',
    'Tokens reported by the provider, by provider, model (folded) and direction.',
    ['provider', 'model', 'direction'],
  );
  private readonly retries = new CellCounter(
    'skybridge_upstream_retries_total',
    'Upstream attempts that were retried, by provider and reason (status code or error type).',
    ['provider', 'reason'],
  );
  private readonly upstreamErrors = new CellCounter(
    'skybridge_upstream_errors_total',
    'Requests that ended in an upstream failure (unreachable, timeout, broken or idle stream), by provider and error type.',
    ['provider', 'type'],
  );
  private readonly cost = new CellCounter(
    'skybridge_cost_usd_total',
    'USD spent, by provider and model (folded): each request priced from governance.prices or the genai-prices catalog; unpriced requests add nothing.',
    ['provider', 'model'],
  );
  private readonly usageAbsent = new CellCounter(
    'skybridge_usage_absent_total',
    'Successful answers from endpoints that report usage whose usage could not be read (the request log says why), by provider and endpoint.',
    ['provider', 'endpoint'],
  );
  private readonly streamEnds = new CellCounter(
    'skybridge_stream_end_total',
    'Streamed answers by how they ended: complete, upstream_eof_no_terminator, upstream_error, client_abort, idle_timeout, shutdown.',
    ['provider', 'reason'],
  );
  /** The running gateway's counters, read at scrape time. */
  constructor(
    runtime: () => RuntimeView,
    private readonly group: Group = new LocalGroup(),
  ) {
    for (const m of [
      this.requests,
      this.duration,
      this.ttfb,
      this.tokens,
      this.cost,
      this.usageAbsent,
      this.streamEnds,
      this.retries,
      this.upstreamErrors,
    ]) {
      this.registry.registerMetric(m as unknown as Metric);
    }
    new Gauge({
      name: 'skybridge_inflight_requests',
      help: 'Passthrough requests not yet completed (streams included).',
      registers: [this.registry],
      collect() {
        this.set(runtime().inflight);
      },
    });
    new Gauge({
      name: 'skybridge_inflight_streams',
      help: 'Streamed answers being relayed right now (process-wide).',
      registers: [this.registry],
      collect() {
        this.set(runtime().openStreams);
      },
    });
    new Gauge({
      name: 'skybridge_websocket_sessions',
      help: 'WebSocket sessions (OpenAI Realtime, Gemini Live) open right now (also in skybridge_inflight_requests).',
      registers: [this.registry],
      collect() {
        this.set(runtime().sessions.size);
      },
    });
    new Gauge({
      name: 'skybridge_keys_resting',
      help: 'Keys passed over for some model for now: the upstream answered 429 with a Retry-After that has not run out.',
      labelNames: ['provider'],
      registers: [this.registry],
      // Every worker of a group holds the same rests.
      aggregator: 'max',
      collect() {
        for (const p of Object.values(runtime().config.providers)) this.set({ provider: p.name }, p.keys.restingNow());
      },
    });
    const reloads = new ReadCounter(
      'skybridge_config_reloads_total',
      'Config reloads (file change, SIGHUP), by result.',
      () => {
        const r = runtime().reloads;
        return [
          { labels: { result: 'success' }, value: r.success },
          { labels: { result: 'failure' }, value: r.failure },
        ];
      },
      // The group's reloads, counted by the primary: every worker holds the same counts.
      'max',
    );
    this.registry.registerMetric(reloads as unknown as Metric);
    new Gauge({
      name: 'skybridge_config_last_reload_successful',
      help: '1 when the last config reload was applied, 0 when it was rejected.',
      registers: [this.registry],
      // 0 when any process of the group did not take it.
      aggregator: 'min',
      collect() {
        this.set(runtime().reloads.lastSuccessful ? 1 : 0);
      },
    });
    new Gauge({
      name: 'skybridge_build_info',
      help: 'Always 1; the version as a label.',
      labelNames: ['version'],
      registers: [this.registry],
      aggregator: 'first',
    }).set({ version: VERSION }, 1);
    new Gauge({
      name: 'skybridge_workers',
      help: 'Gateway processes serving requests: the workers of the group that answered this scrape (1 for a single process).',
      registers: [this.registry],
      aggregator: 'sum',
    }).set(group.role === 'primary' ? 0 : 1);
    collectDefaultMetrics({ register: this.registry });
    if (group.role === 'worker') group.on(COLLECT, () => this.registry.getMetricsAsJSON());
    if (group.role === 'primary') {
      group.on(SCRAPE, () => this.groupScrape());
      group.on(WORKER_GONE, ({ pid }) => this.retire(pid));
    }
  }

  configure(config: RuntimeConfig): this | undefined {
    const m = config.source.metrics;
    if (this.routePath !== undefined && m.path !== this.routePath) {
      appLog.warn(
        { path: m.path, serving: this.routePath },
        'metrics.path changed; the new path takes effect on restart',
      );
    }
    if (!m.enabled) return undefined;
    this.token = m.bearer_token ? new BearerToken(m.bearer_token) : undefined;
    this.secrets = m.bearer_token ? [...config.secrets, m.bearer_token] : config.secrets;
    const models = new Set<string>();
    for (const p of Object.values(config.providers)) {
      for (const key of p.keys.keys)
        for (const model of key.models) if (!model.includes('*') && this.safeLabel(model)) models.add(model);
    }
    this.configuredModels = models;
    for (const ps of this.series.values()) ps.models.clear();
    return this;
  }

  routes(config: RuntimeConfig): PluginRoute[] {
    this.routePath = config.source.metrics.path;
    return [{ method: 'GET', path: this.routePath, handle: ({ request }) => this.scrape(request) }];
  }

  async scrape(request: Request): Promise<Response> {
    if (this.token && !this.token.accepts(request.headers.get('authorization'))) {
      return jsonError(401, 'unauthorized', 'metrics require Authorization: Bearer <metrics.bearer_token>', {
        'www-authenticate': 'Bearer realm="skybridge metrics"',
      });
    }
    const text =
      this.group.role === 'worker'
        ? await this.group.request(SCRAPE, undefined, { timeoutMs: COLLECT_TIMEOUT_MS + 2000 })
        : await this.registry.metrics();
    return new Response(text, { headers: { 'content-type': this.registry.contentType, 'cache-control': 'no-store' } });
  }

  /** The primary: every worker's registry merged, with its own first. */
  private async groupScrape(): Promise<string> {
    const answers = await this.group.gather(COLLECT, undefined, { timeoutMs: COLLECT_TIMEOUT_MS });
    const parts: MetricsJson[] = [await this.ownPart()];
    for (const a of answers) {
      if (a.value) this.lastParts.set(a.pid, a.value);
      // A worker too busy to answer in time is counted as it was at its last answer.
      const part = a.value ?? this.lastParts.get(a.pid);
      if (part) parts.push(part);
    }
    parts.push(this.retired);
    return AggregatorRegistry.aggregate(parts).metrics();
  }

  /** The primary's registry, with the families that cannot be merged (`omit`) taken as its own. */
  private async ownPart(): Promise<MetricsJson> {
    const own = await this.registry.getMetricsAsJSON();
    for (const m of own) if (m.aggregator === 'omit') m.aggregator = 'first';
    return own;
  }

  /** A worker exited: its counters and histograms as last seen stay in the group's sums. */
  private async retire(pid: number): Promise<void> {
    const last = this.lastParts.get(pid);
    this.lastParts.delete(pid);
    if (!last) return;
    // prom-client declares `type` an enum; the values are the exposition's names.
    const monotonic = last.filter((m) => ['counter', 'histogram'].includes(m.type as unknown as string));
    this.retired = await AggregatorRegistry.aggregate([this.retired, monotonic]).getMetricsAsJSON();
  }

  /** A session's tokens, counted as each report arrives. */
  onUsage(ctx: RequestContext, usage: Readonly<Usage>, costUsd: number | undefined): void {
    COUNTED.set(ctx, true);
    this.countTokens(this.providerSeries(ctx.provider), ctx.provider, ctx.model, usage, costUsd);
  }

  onComplete(record: Readonly<RequestRecord>, ctx?: RequestContext): void {
    const provider = record.provider;
    const ps = this.providerSeries(provider);
    const endpoint = record.endpoint;
    let es = ps.endpoints.get(endpoint);
    if (!es) ps.endpoints.set(endpoint, (es = { requests: [], duration: [], ttfb: [] }));
    const oi = OUTCOME_INDEX[record.outcome] ?? OTHER_OUTCOME;
    const ci = statusClass(record.status);
    const si = record.stream ? 1 : 0;

    const ri = ci * OUTCOMES.length + oi;
    (es.requests[ri] ??= this.requests.cell(provider, endpoint, STATUS_CLASSES[ci]!, OUTCOMES[oi]!)).value++;
    const di = si * OUTCOMES.length + oi;
    (es.duration[di] ??= this.duration.cell(provider, endpoint, si ? 'true' : 'false', OUTCOMES[oi]!)).observe(
      record.latency_ms / 1000,
    );
    if (record.ttfb_ms !== undefined)
      (es.ttfb[si] ??= this.ttfb.cell(provider, endpoint, si ? 'true' : 'false')).observe(record.ttfb_ms / 1000);

    const usage = record.usage;
    if (usage) {
      if (!(ctx && COUNTED.get(ctx))) this.countTokens(ps, provider, record.model, usage, record.cost_usd);
    } else if (record.usage_status === 'absent') (es.absent ??= this.usageAbsent.cell(provider, endpoint)).value++;

    const reason = record.end_reason;
    if (reason !== undefined) {
      let cell = ps.streamEnds.get(reason);
      if (!cell) ps.streamEnds.set(reason, (cell = this.streamEnds.cell(provider, reason)));
      cell.value++;
    }

    for (const retry of record.retries) {
      const reason = RETRY_REASONS.has(retry.reason) ? retry.reason : 'other';
      let cell = ps.retries.get(reason);
      if (!cell) ps.retries.set(reason, (cell = this.retries.cell(provider, reason)));
      cell.value++;
    }

    if (UPSTREAM_FAILURE_OUTCOMES.has(record.outcome)) {
      const type = record.error?.type ?? 'gateway_error';
      let cell = ps.errors.get(type);
      if (!cell) ps.errors.set(type, (cell = this.upstreamErrors.cell(provider, type)));
      cell.value++;
    }
  }

  private providerSeries(provider: string): ProviderSeries {
    let ps = this.series.get(provider);
    if (!ps)
      this.series.set(
        provider,
        (ps = {
          endpoints: new Map(),
          models: new Map(),
          labels: new Map(),
          retries: new Map(),
          errors: new Map(),
          streamEnds: new Map(),
        }),
      );
    return ps;
  }

  private countTokens(
    ps: ProviderSeries,
    provider: string,
    model: string | undefined,
    usage: Readonly<Usage>,
    costUsd: number | undefined,
  ): void {
    const cells = this.tokenCells(ps, model);
    for (const [direction, field] of TOKEN_DIRECTIONS) {
      const n = usage[field];
      if (n) (cells[direction] ??= this.tokens.cell(provider, cells.model, direction)).value += n;
    }
    if (costUsd !== undefined) (cells.cost ??= this.cost.cell(provider, cells.model)).value += costUsd;
  }

  private tokenCells(ps: ProviderSeries, model: string | undefined): TokenCells {
    const raw = model ?? '';
    let cells = ps.models.get(raw);
    if (cells) return cells;
    const label = this.modelLabel(model);
    cells = ps.labels.get(label);
    if (!cells) ps.labels.set(label, (cells = { model: label }));
    if (ps.models.size < MODEL_CACHE_MAX) ps.models.set(raw, cells);
    return cells;
  }

  /** The label a model gets: configured, or one of the first N others, else `other`. */
  modelLabel(model: string | undefined): string {
    if (!model) return 'unknown';
    if (this.configuredModels.has(model) || this.dynamicModels.has(model)) return model;
    if (this.dynamicModels.size >= this.maxDynamicModels || !this.safeLabel(model)) return 'other';
    this.dynamicModels.add(model);
    return model;
  }

  private safeLabel(model: string): boolean {
    if (model.length > MAX_MODEL_LABEL_LENGTH) return false;
    for (const s of this.secrets) if (s.length >= 4 && model.includes(s)) return false;
    return true;
  }
}
