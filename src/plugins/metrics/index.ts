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
 * retry reason and error type come from fixed sets (anything unexpected is `other`);
 * models are folded (configured models, then the first MAX_DYNAMIC_MODELS others seen,
 * then `other`), and a model string that contains a configured secret is never a label.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Elysia } from 'elysia';
import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { RuntimeConfig } from '../../config/runtime.ts';
import { PROVIDER_IDS, type ProviderId } from '../../config/schema.ts';
import { appLog } from '../../lib/app-log.ts';
import { openStreams } from '../../proxy/idle.ts';
import type { EndpointId, Outcome, Plugin, RequestRecord } from '../../core/request.ts';
import { jsonError } from '../../core/errors.ts';
import type { GatewayState } from '../../core/runtime.ts';
import { VERSION } from '../../lib/version.ts';
import { configuredSecrets } from '../shared/redact.ts';

/** Seconds; from a cached answer (ms) to a long reasoning stream (20 min). */
export const LATENCY_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200];

/** Distinct models outside the configured keys' lists that get a label of their own. */
export const MAX_DYNAMIC_MODELS = 100;
/** Longer model strings are not labels (`other`). */
const MAX_MODEL_LABEL_LENGTH = 128;

const OUTCOMES = ['ok', 'upstream_error', 'client_aborted', 'rejected', 'stream_idle_timeout', 'gateway_error', 'other'] as const;
const OUTCOME_INDEX: Readonly<Record<string, number>> = Object.fromEntries(OUTCOMES.map((o, i) => [o, i]));
const OTHER_OUTCOME = OUTCOMES.length - 1;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'unknown'] as const;
const RETRY_REASONS = new Set(['429', '500', '502', '503', '504', 'upstream_timeout', 'upstream_unreachable', 'upstream_invalid_response']);
const UPSTREAM_ERROR_TYPES = new Set(['upstream_unreachable', 'upstream_timeout', 'upstream_broken', 'upstream_invalid_response', 'stream_idle_timeout', 'upstream_auth_error']);
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
// Cells: counters and histograms whose hot path is a field update.

interface CounterCell {
  readonly labels: Record<string, string>;
  value: number;
}

class HistogramCell {
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

function labelsOf(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < names.length; i++) labels[names[i]!] = values[i]!;
  return labels;
}

/** A counter family in the shape prom-client's Registry reads (`name`, `type`, `get()`). */
class CellCounter {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly cells = new Map<string, CounterCell>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  /** The cell for these label values (created once; callers keep the reference). */
  cell(...values: string[]): CounterCell {
    const key = values.join('\u0000');
    let c = this.cells.get(key);
    if (!c) {
      c = { labels: labelsOf(this.labelNames, values), value: 0 };
      this.cells.set(key, c);
    }
    return c;
  }

  async get() {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: [...this.cells.values()].map((c) => ({ labels: c.labels, value: c.value })),
    };
  }
}

class CellHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly cells = new Map<string, HistogramCell>();
  private readonly le: string[];

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    this.le = [...bounds.map(String), '+Inf'];
  }

  cell(...values: string[]): HistogramCell {
    const key = values.join('\u0000');
    let c = this.cells.get(key);
    if (!c) {
      c = new HistogramCell(labelsOf(this.labelNames, values), this.bounds);
      this.cells.set(key, c);
    }
    return c;
  }

  async get() {
    const values: Array<{ metricName: string; labels: Record<string, string>; value: number }> = [];
    for (const c of this.cells.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.le.length; i++) {
        cumulative += c.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...c.labels, le: this.le[i]! }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels: c.labels, value: c.sum });
      values.push({ metricName: `${this.name}_count`, labels: c.labels, value: c.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

// ---------------------------------------------------------------------------------
// Per-provider / per-endpoint lookup tables, so a request does index lookups only.

interface EndpointSeries {
  /** [statusClass * OUTCOMES.length + outcome] */
  requests: Array<CounterCell | undefined>;
  /** [stream * OUTCOMES.length + outcome] */
  duration: Array<HistogramCell | undefined>;
  /** [stream] */
  ttfb: Array<HistogramCell | undefined>;
}

type TokenCells = Partial<Record<(typeof TOKEN_DIRECTIONS)[number][0], CounterCell>> & { readonly model: string };

interface ProviderSeries {
  endpoints: Partial<Record<EndpointId, EndpointSeries>>;
  /** Raw model string -> the cells of its folded label (bounded; cleared on reload). */
  models: Map<string, TokenCells>;
  /** Folded label -> cells (so raw spellings that fold together share cells). */
  labels: Map<string, TokenCells>;
  retries: Map<string, CounterCell>;
  errors: Map<string, CounterCell>;
}

/** Raw model strings remembered per provider before folding is recomputed per request. */
const MODEL_CACHE_MAX = 1000;

function statusClass(status: number): number {
  const c = Math.floor(status / 100);
  return c >= 1 && c <= 5 ? c - 1 : STATUS_CLASSES.length - 1;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export class MetricsPlugin implements Plugin {
  readonly name = 'metrics';
  readonly registry = new Registry();
  /** Off: the route answers 404 and the plugin stays out of the pipeline. */
  inPipeline = false;
  /** Distinct unconfigured models with a label of their own (tests lower it). */
  maxDynamicModels = MAX_DYNAMIC_MODELS;

  private path = '/metrics';
  private routePath: string | undefined;
  private tokenHash: Buffer | undefined;
  private state: GatewayState | undefined;
  private configuredModels = new Set<string>();
  private readonly dynamicModels = new Set<string>();
  private secrets: string[] = [];
  private readonly series = {} as Record<ProviderId, ProviderSeries>;

  private readonly requests = new CellCounter('skybridge_requests_total', 'Passthrough requests completed, by provider, endpoint, HTTP status class and outcome.', [
    'provider',
    'endpoint',
    'status_class',
    'outcome',
  ]);
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
  private readonly tokens = new CellCounter('skybridge_tokens_total', 'Tokens reported by the provider, by provider, model (folded) and direction.', ['provider', 'model', 'direction']);
  private readonly retries = new CellCounter('skybridge_upstream_retries_total', 'Upstream attempts that were retried, by provider and reason (status code or error type).', ['provider', 'reason']);
  private readonly upstreamErrors = new CellCounter(
    'skybridge_upstream_errors_total',
    'Requests that ended in an upstream failure (unreachable, timeout, broken or idle stream), by provider and error type.',
    ['provider', 'type'],
  );
  private readonly reloads: Counter<'result'>;
  private readonly lastReload: Gauge;

  constructor() {
    for (const id of PROVIDER_IDS) this.series[id] = { endpoints: {}, models: new Map(), labels: new Map(), retries: new Map(), errors: new Map() };
    for (const m of [this.requests, this.duration, this.ttfb, this.tokens, this.retries, this.upstreamErrors]) {
      this.registry.registerMetric(m as unknown as Metric);
    }
    const self = this;
    new Gauge({
      name: 'skybridge_inflight_requests',
      help: 'Passthrough requests not yet completed (streams included).',
      registers: [this.registry],
      collect() {
        this.set(self.state?.inflight ?? 0);
      },
    });
    new Gauge({
      name: 'skybridge_inflight_streams',
      help: 'Streamed answers being relayed right now (process-wide).',
      registers: [this.registry],
      collect() {
        this.set(openStreams());
      },
    });
    new Gauge({
      name: 'skybridge_keys_resting',
      help: 'Keys passed over for some model for now: the upstream answered 429 with a Retry-After that has not run out.',
      labelNames: ['provider'],
      registers: [this.registry],
      collect() {
        const providers = self.state?.config.providers;
        if (providers) for (const id of PROVIDER_IDS) this.set({ provider: id }, providers[id].keys.restingNow());
      },
    });
    this.reloads = new Counter({ name: 'skybridge_config_reloads_total', help: 'Config reloads (file change, SIGHUP), by result.', labelNames: ['result'], registers: [this.registry] });
    this.reloads.inc({ result: 'success' }, 0);
    this.reloads.inc({ result: 'failure' }, 0);
    this.lastReload = new Gauge({ name: 'skybridge_config_last_reload_successful', help: '1 when the last config reload was applied, 0 when it was rejected.', registers: [this.registry] });
    this.lastReload.set(1);
    new Gauge({ name: 'skybridge_build_info', help: 'Always 1; the version as a label.', labelNames: ['version'], registers: [this.registry] }).set({ version: VERSION }, 1);
    collectDefaultMetrics({ register: this.registry });
  }

  /** Read the gateway's in-flight count at scrape time. */
  bindState(state: GatewayState): void {
    this.state = state;
  }

  configure(config: RuntimeConfig): void {
    const m = config.source.metrics;
    this.inPipeline = m.enabled;
    this.setPath(m.path);
    this.tokenHash = m.bearer_token ? sha256(m.bearer_token) : undefined;
    this.secrets = configuredSecrets(config);
    if (m.bearer_token) this.secrets.push(m.bearer_token);
    const models = new Set<string>();
    for (const id of PROVIDER_IDS) {
      for (const key of config.providers[id].keys.keys) for (const model of key.models) if (!model.includes('*') && this.safeLabel(model)) models.add(model);
    }
    this.configuredModels = models;
    for (const id of PROVIDER_IDS) this.series[id].models.clear();
  }

  /** Not listed in `plugins`: the route answers 404. */
  disable(config: RuntimeConfig): void {
    this.inPipeline = false;
    this.setPath(config.source.metrics.path);
  }

  private setPath(path: string): void {
    if (this.routePath !== undefined && path !== this.routePath) {
      appLog.warn({ path, serving: this.routePath }, 'metrics.path changed; the new path takes effect on restart');
    }
    this.path = path;
  }

  /** Gateway.reload reports each attempt here. */
  recordConfigReload(result: 'success' | 'failure'): void {
    this.reloads.inc({ result });
    this.lastReload.set(result === 'success' ? 1 : 0);
  }

  readonly routes = (app: Elysia): void => {
    this.routePath = this.path;
    app.get(this.routePath, ({ request }: { request: Request }) => this.scrape(request));
  };

  async scrape(request: Request): Promise<Response> {
    if (!this.inPipeline) return jsonError(404, 'not_found', 'no such route');
    if (this.tokenHash && !this.authorized(request.headers.get('authorization'))) {
      return jsonError(401, 'unauthorized', 'metrics require Authorization: Bearer <metrics.bearer_token>', { 'www-authenticate': 'Bearer realm="skybridge metrics"' });
    }
    const text = await this.registry.metrics();
    return new Response(text, { headers: { 'content-type': this.registry.contentType, 'cache-control': 'no-store' } });
  }

  private authorized(header: string | null): boolean {
    if (!header || !this.tokenHash) return false;
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!m) return false;
    return timingSafeEqual(sha256(m[1]!), this.tokenHash);
  }

  onComplete(record: RequestRecord): void {
    const provider = record.provider;
    const ps = this.series[provider];
    if (!ps) return;
    const endpoint = record.endpoint;
    const es = (ps.endpoints[endpoint] ??= { requests: [], duration: [], ttfb: [] });
    const oi = OUTCOME_INDEX[record.outcome] ?? OTHER_OUTCOME;
    const ci = statusClass(record.status);
    const si = record.stream ? 1 : 0;

    const ri = ci * OUTCOMES.length + oi;
    (es.requests[ri] ??= this.requests.cell(provider, endpoint, STATUS_CLASSES[ci]!, OUTCOMES[oi]!)).value++;
    const di = si * OUTCOMES.length + oi;
    (es.duration[di] ??= this.duration.cell(provider, endpoint, si ? 'true' : 'false', OUTCOMES[oi]!)).observe(record.latency_ms / 1000);
    if (record.ttfb_ms !== undefined) (es.ttfb[si] ??= this.ttfb.cell(provider, endpoint, si ? 'true' : 'false')).observe(record.ttfb_ms / 1000);

    const usage = record.usage;
    if (usage) {
      const cells = this.tokenCells(ps, record.model);
      for (const [direction, field] of TOKEN_DIRECTIONS) {
        const n = usage[field];
        if (n) (cells[direction] ??= this.tokens.cell(provider, cells.model, direction)).value += n;
      }
    }

    for (const retry of record.retries) {
      const reason = RETRY_REASONS.has(retry.reason) ? retry.reason : 'other';
      let cell = ps.retries.get(reason);
      if (!cell) ps.retries.set(reason, (cell = this.retries.cell(provider, reason)));
      cell.value++;
    }

    if (UPSTREAM_FAILURE_OUTCOMES.has(record.outcome)) {
      const t = record.error?.type;
      const type = t && UPSTREAM_ERROR_TYPES.has(t) ? t : 'other';
      let cell = ps.errors.get(type);
      if (!cell) ps.errors.set(type, (cell = this.upstreamErrors.cell(provider, type)));
      cell.value++;
    }
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
