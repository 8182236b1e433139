/**
 * The explorer's HTTP routes: the query API, the live stream and the page.
 *
 *   GET /api/logs            filtered, newest first, cursor-paginated
 *   GET /api/logs/stream     SSE: each completed request matching the filters
 *   GET /api/logs/:id        one record, bodies included
 *   GET /api/stats           totals, percentiles and a time series over a window
 *   GET /ui                  the page
 *
 * Parameters are checked strictly: an unknown, repeated or malformed one is a 400
 * naming it, so a typo never silently widens a query.
 */
import { jsonError } from '../../core/errors.ts';
import type { PluginRoute, RouteRequest } from '../../core/plugin.ts';
import { OUTCOMES } from '../../core/request.ts';
import { requestUrl } from '../shared/admin-auth.ts';
import { binValue, type Cursor, type GroupRow, type LogFilter, type LogStore } from './store.ts';
import { UI_CSP, UI_HTML } from './ui.ts';

/** What the routes need of the explorer plugin. */
export interface ExplorerApi {
  /** The index, while the explorer is on. */
  readonly store: LogStore | undefined;
  /** Provider names the index may hold (the provider filter's values). */
  readonly providers: readonly string[];
  /** undefined when the request may use the API; else the refusal. */
  authorize(request: Request, clientIp: string | undefined, queryToken: string | null): Response | undefined;
  subscribe(filter: LogFilter, signal: AbortSignal): Response;
  indexInfo(): { rows: number; oldest: string | null; rebuilding: boolean; file: string | null };
}

export const MAX_LIMIT = 500;
export const DEFAULT_LIMIT = 50;
const MAX_WINDOW_MS = 31 * 86_400_000;

const FILTER_PARAMS = ['from', 'to', 'provider', 'model', 'status', 'virtual_key', 'outcome', 'q'] as const;
const LIST_PARAMS = new Set<string>([...FILTER_PARAMS, 'limit', 'cursor']);
const STREAM_PARAMS = new Set<string>([...FILTER_PARAMS, 'token']);
const STATS_PARAMS = new Set<string>([...FILTER_PARAMS, 'window']);

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' } as const;

export class ParamError extends Error {}

export function explorerRoutes(explorer: ExplorerApi): PluginRoute[] {
  const guarded = (
    path: string,
    handler: (req: RouteRequest, url: URL, store: LogStore) => Response | Promise<Response>,
    queryToken = false,
  ): PluginRoute => ({
    method: 'GET',
    path,
    async handle(req) {
      const url = requestUrl(req.request);
      const denied = explorer.authorize(req.request, req.clientIp, queryToken ? url.searchParams.get('token') : null);
      if (denied) return denied;
      const store = explorer.store;
      if (!store) return jsonError(404, 'not_found', 'no such route');
      try {
        return await handler(req, url, store);
      } catch (err) {
        if (err instanceof ParamError) return jsonError(400, 'invalid_request', err.message);
        throw err;
      }
    },
  });

  const page = (path: string): PluginRoute => ({
    method: 'GET',
    path,
    handle: () =>
      new Response(UI_HTML, {
        headers: {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'content-security-policy': UI_CSP,
          'x-content-type-options': 'nosniff',
          'referrer-policy': 'no-referrer',
          'x-frame-options': 'DENY',
        },
      }),
  });

  return [
    guarded('/api/logs', (_req, url, store) => {
      const params = checkParams(url, LIST_PARAMS);
      const filter = parseFilter(params, explorer.providers);
      const limit = parseLimit(params.get('limit'));
      const cursor = params.has('cursor') ? decodeCursor(params.get('cursor')!) : undefined;
      const page = store.list(filter, limit, cursor);
      const next = page.next ? `"${encodeCursor(page.next)}"` : 'null';
      // The records are stored as JSON already: splice them in rather than re-encode.
      return new Response(`{"data":[${page.records.join(',')}],"next_cursor":${next}}`, { headers: JSON_HEADERS });
    }),
    guarded(
      '/api/logs/stream',
      (req, url) => {
        const filter = parseFilter(checkParams(url, STREAM_PARAMS), explorer.providers);
        // Elysia's idle timeout would cut a quiet stream; keepalives come every 15 s anyway.
        req.keepOpen();
        return explorer.subscribe(filter, req.request.signal);
      },
      true,
    ),
    guarded('/api/logs/:id', ({ params }, url, store) => {
      checkParams(url, new Set());
      const id = params.id ?? '';
      if (!id || id.length > 200) throw new ParamError('invalid request id');
      const found = store.get(id);
      if (!found) return jsonError(404, 'not_found', `no request ${id} in the explorer index`);
      let body = found.record;
      if (found.request_body !== null || found.response_body !== null) {
        const record = JSON.parse(found.record) as Record<string, unknown>;
        if (found.request_body !== null) record.request_body = found.request_body;
        if (found.response_body !== null) record.response_body = found.response_body;
        body = JSON.stringify(record);
      }
      return new Response(`{"data":${body}}`, { headers: JSON_HEADERS });
    }),
    guarded('/api/stats', async (_req, url, store) => {
      const params = checkParams(url, STATS_PARAMS);
      const filter = parseFilter(params, explorer.providers);
      const now = Date.now();
      let windowLabel: string | null = null;
      if (params.has('window')) {
        if (params.has('from') || params.has('to')) throw new ParamError('give either window or from/to, not both');
      }
      if (filter.from === undefined) {
        windowLabel = params.get('window') ?? '1h';
        const ms = parseWindow(windowLabel);
        filter.to ??= now;
        filter.from = filter.to - ms;
      } else {
        filter.to ??= now;
      }
      if (filter.to - filter.from > MAX_WINDOW_MS) throw new ParamError('the stats window may span at most 31d');
      const stats = await computeStats(store, filter, filter.from, filter.to);
      if (!explorer.store) return jsonError(404, 'not_found', 'no such route');
      return Response.json(
        {
          window: windowLabel,
          from: new Date(filter.from).toISOString(),
          to: new Date(filter.to).toISOString(),
          ...stats,
          index: explorer.indexInfo(),
        },
        { headers: JSON_HEADERS },
      );
    }),
    page('/ui'),
    page('/ui/'),
  ];
}

// ---------------------------------------------------------------------------------
// Parameters

function checkParams(url: URL, allowed: ReadonlySet<string>): URLSearchParams {
  const params = url.searchParams;
  for (const key of new Set(params.keys())) {
    if (!allowed.has(key)) {
      throw new ParamError(
        allowed.size
          ? `unknown parameter ${JSON.stringify(key)}; allowed: ${[...allowed].join(', ')}`
          : `unknown parameter ${JSON.stringify(key)}`,
      );
    }
    if (params.getAll(key).length > 1) throw new ParamError(`parameter ${key} given more than once`);
  }
  return params;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i;

function parseTime(name: string, value: string): number {
  const t = ISO_TIME.test(value) ? Date.parse(value) : Number.NaN;
  if (!Number.isFinite(t))
    throw new ParamError(
      `${name} must be an ISO 8601 time (e.g. 2026-01-31T12:00:00Z), got ${JSON.stringify(value.slice(0, 64))}`,
    );
  return t;
}

function nonEmpty(name: string, value: string, max: number): string {
  if (!value) throw new ParamError(`${name} must not be empty`);
  if (value.length > max) throw new ParamError(`${name} is longer than ${max} characters`);
  return value;
}

export function parseFilter(params: URLSearchParams, providers: readonly string[]): LogFilter {
  const f: LogFilter = {};
  const from = params.get('from');
  const to = params.get('to');
  if (from !== null) f.from = parseTime('from', from);
  if (to !== null) f.to = parseTime('to', to);
  if (f.from !== undefined && f.to !== undefined && f.from > f.to) throw new ParamError('from is after to');
  const provider = params.get('provider');
  if (provider !== null) {
    if (!providers.includes(provider)) throw new ParamError(`provider must be one of ${providers.join(', ')}`);
    f.provider = provider;
  }
  const model = params.get('model');
  if (model !== null) f.model = nonEmpty('model', model, 256);
  const status = params.get('status');
  if (status !== null) {
    const cls = /^([1-5])xx$/i.exec(status);
    if (cls) {
      f.statusMin = Number(cls[1]) * 100;
      f.statusMax = f.statusMin + 99;
    } else if (/^[1-5]\d\d$/.test(status)) {
      f.statusMin = f.statusMax = Number(status);
    } else {
      throw new ParamError('status must be a class (2xx, 3xx, 4xx, 5xx) or a code (e.g. 429)');
    }
  }
  const vk = params.get('virtual_key');
  if (vk !== null) f.virtualKey = nonEmpty('virtual_key', vk, 256);
  const outcome = params.get('outcome');
  if (outcome !== null) {
    if (!(OUTCOMES as readonly string[]).includes(outcome))
      throw new ParamError(`outcome must be one of ${OUTCOMES.join(', ')}`);
    f.outcome = outcome;
  }
  const q = params.get('q');
  if (q !== null) f.q = nonEmpty('q', q, 512);
  return f;
}

function parseLimit(value: string | null): number {
  if (value === null) return DEFAULT_LIMIT;
  if (!/^\d{1,6}$/.test(value)) throw new ParamError(`limit must be an integer from 1 to ${MAX_LIMIT}`);
  const n = Number(value);
  if (n < 1 || n > MAX_LIMIT) throw new ParamError(`limit must be an integer from 1 to ${MAX_LIMIT}`);
  return n;
}

/** Cursors are opaque to clients: base64url of "ts.seq" of the last row returned. */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(`${c.ts}.${c.seq}`).toString('base64url');
}

export function decodeCursor(value: string): Cursor {
  const m = /^[A-Za-z0-9_-]{1,64}$/.test(value)
    ? /^(-?\d{1,16})\.(\d{1,19})$/.exec(Buffer.from(value, 'base64url').toString('latin1'))
    : null;
  if (!m) throw new ParamError('invalid cursor (pass next_cursor from a previous answer as it is)');
  return { ts: Number(m[1]), seq: Number(m[2]) };
}

const WINDOW_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function parseWindow(value: string): number {
  const m = /^(\d{1,6})([smhd])$/.exec(value);
  const ms = m ? Number(m[1]) * WINDOW_UNITS[m[2]!]! : 0;
  if (ms < 1000) throw new ParamError('window must be a duration like 15m, 1h, 24h or 7d');
  if (ms > MAX_WINDOW_MS) throw new ParamError('window may be at most 31d');
  return ms;
}

// ---------------------------------------------------------------------------------
// Stats

const BUCKETS_S = [1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400];
const TARGET_BUCKETS = 60;
const BUCKETS_PER_QUERY = 6;

class Group {
  requests = 0;
  errors = 0;
  input_tokens = 0;
  output_tokens = 0;
  /** USD of the priced requests; null while none was priced (unpriced is not $0). */
  cost_usd: number | null = null;
  /** lat_bin -> requests */
  readonly hist = new Map<number, number>();

  add(bin: number | null, requests: number, errors: number, tin: number, tout: number, cost: number | null): void {
    this.requests += requests;
    this.errors += errors;
    this.input_tokens += tin;
    this.output_tokens += tout;
    if (cost !== null) this.cost_usd = (this.cost_usd ?? 0) + cost;
    if (bin !== null) this.hist.set(bin, (this.hist.get(bin) ?? 0) + requests);
  }

  summary() {
    const bins = [...this.hist.keys()].sort((a, b) => a - b);
    let n = 0;
    for (const b of bins) n += this.hist.get(b)!;
    // Nearest rank, read from the histogram (within 1% of the exact value).
    const pct = (p: number): number | null => {
      if (n === 0) return null;
      const rank = Math.max(1, Math.ceil(p * n));
      let seen = 0;
      for (const b of bins) {
        seen += this.hist.get(b)!;
        if (seen >= rank) return binValue(b);
      }
      return binValue(bins.at(-1)!);
    };
    return {
      requests: this.requests,
      errors: this.errors,
      input_tokens: this.input_tokens,
      output_tokens: this.output_tokens,
      // Rounded to the nano-dollar costs are counted in (sums of floats drift below that).
      cost_usd: this.cost_usd === null ? null : Math.round(this.cost_usd * 1e9) / 1e9,
      p50_ms: pct(0.5),
      p95_ms: pct(0.95),
    };
  }
}

/**
 * Totals, per provider, per model and per time bucket over [from, to]. Aggregated in
 * SQL; latency percentiles come from 1%-wide histogram bins. `cost_usd` sums the priced
 * requests (null when none was). A request counts as an
 * error when its status is 4xx/5xx or its outcome is not `ok`.
 */
export async function computeStats(store: LogStore, filter: LogFilter, from: number, to: number) {
  const span = Math.max(1, to - from);
  const bucketS = BUCKETS_S.find((b) => span / 1000 / b <= TARGET_BUCKETS) ?? 86400;
  const bucketMs = bucketS * 1000;
  const first = Math.floor(from / bucketMs) * bucketMs;
  const count = Math.floor((to - first) / bucketMs) + 1;
  const total = new Group();
  const providers = new Map<string, Group>();
  const models = new Map<string, { provider: string; model: string | null; g: Group }>();
  const addGroups = (groups: GroupRow[]): void => {
    for (const [provider, model, bin, n, errors, tin, tout, cost] of groups) {
      const p = provider ?? 'unknown';
      let pg = providers.get(p);
      if (!pg) providers.set(p, (pg = new Group()));
      const mk = `${p}\u0000${model ?? ''}`;
      let mg = models.get(mk);
      if (!mg) models.set(mk, (mg = { provider: p, model, g: new Group() }));
      for (const g of [total, pg, mg.g]) g.add(bin, n, errors, tin, tout, cost);
    }
  };
  const series = Array.from({ length: count }, () => new Group());
  // A few buckets per query, the event loop free in between: a wide window over many
  // rows never holds requests up for the whole computation.
  for (let i = 0; i < count; i += BUCKETS_PER_QUERY) {
    const part = {
      ...filter,
      from: Math.max(from, first + i * bucketMs),
      to: Math.min(to, first + (i + BUCKETS_PER_QUERY) * bucketMs - 1),
    };
    if (part.from > part.to) continue;
    if (i > 0) await new Promise((r) => setImmediate(r));
    if (!store.isOpen) break;
    const { groups, buckets } = store.statsGroups(part, first, bucketMs);
    addGroups(groups);
    for (const [b, bin, n, errors, tin, tout, cost] of buckets)
      series[Math.min(count - 1, Math.max(0, b))]!.add(bin, n, errors, tin, tout, cost);
  }
  const byRequests = (a: { requests: number }, b: { requests: number }) => b.requests - a.requests;
  return {
    bucket_seconds: bucketS,
    totals: total.summary(),
    by_provider: [...providers].map(([provider, g]) => ({ provider, ...g.summary() })).sort(byRequests),
    by_model: [...models.values()]
      .map((m) => ({ provider: m.provider, model: m.model, ...m.g.summary() }))
      .sort(byRequests),
    series: series.map((g, i) => ({ t: new Date(first + i * bucketMs).toISOString(), ...g.summary() })),
  };
}
