/**
 * The explorer's index: recent request-log records in an SQLite file beside the NDJSON
 * log (bun:sqlite, WAL). The NDJSON log stays the source of truth; this file can be
 * deleted at any time and is rebuilt from the log on the next start.
 *
 * One table, one row per request: the columns filters and stats need, the log line
 * itself (`record`, the NDJSON line without `log` and the bodies) and the bodies last,
 * so list queries never read them. Rows are ordered by (ts, seq): `ts` is the request's
 * `time` in epoch ms, `seq` the rowid (insertion order) as a tie-breaker.
 *
 * One process writes it; the workers of a group open it read-only (WAL lets readers in
 * other processes see each commit without blocking the writer).
 */
import { Database } from 'bun:sqlite';
import { existsSync, rmSync, statSync } from 'node:fs';
import type { RequestRecord } from '../../core/request.ts';

/** Bump when the table layout changes: an index with another version is rebuilt. */
const SCHEMA_VERSION = 3;

/** One request as the index stores it. */
export interface IndexRow {
  request_id: string;
  ts: number;
  provider: string | null;
  endpoint: string | null;
  method: string | null;
  path: string | null;
  status: number;
  model: string | null;
  virtual_key: string | null;
  outcome: string | null;
  latency_ms: number | null;
  /** latencyBin(latency_ms): stats compute percentiles from these histograms. */
  lat_bin: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  /** USD; null when unpriced (and for log lines written before costs were). */
  cost_usd: number | null;
  /** JSON of the log line without `log`, `request_body`, `response_body`. */
  record: string;
  request_body: string | null;
  response_body: string | null;
}

/** What the live feed needs of a row: the filter's columns and the line. */
export type LiveRow = Pick<
  IndexRow,
  'ts' | 'provider' | 'model' | 'status' | 'virtual_key' | 'outcome' | 'path' | 'record'
>;

export interface LogFilter {
  /** Inclusive bounds, epoch ms. */
  from?: number;
  to?: number;
  provider?: string;
  model?: string;
  /** Status range, inclusive (a class `4xx` is 400..499, an exact code is code..code). */
  statusMin?: number;
  statusMax?: number;
  virtualKey?: string;
  outcome?: string;
  /** Substring of the path (case-sensitive, as paths are). */
  q?: string;
}

export interface Cursor {
  ts: number;
  seq: number;
}

export interface Page {
  /** Log-line JSON strings, newest first. */
  records: string[];
  next: Cursor | null;
}

/**
 * Latency histograms: a bin is a 1% wide step on a log scale, so a percentile read
 * from bins is within 1% of the exact one, and stats aggregate in SQL (GROUP BY) rather
 * than pulling every row of the window into JS.
 */
const LOG_STEP = Math.log(1.02);
export const latencyBin = (ms: number): number => Math.floor(Math.log(Math.max(ms, 0.001)) / LOG_STEP);
/** The middle of a bin, in ms. */
export const binValue = (bin: number): number => Math.round(Math.exp((bin + 0.5) * LOG_STEP) * 100) / 100;

/**
 * Aggregates per group and latency bin: [group..., lat_bin, requests, errors, input tokens,
 * output tokens, cost (null when no request of the group has one)].
 */
export type GroupRow = [string | null, string | null, number | null, number, number, number, number, number | null];
export type BucketRow = [number, number | null, number, number, number, number, number | null];

/** A request counts as an error when its status is 4xx/5xx or its outcome is not `ok`. */
const AGG = `count(*), sum(status >= 400 OR coalesce(outcome, 'ok') <> 'ok'), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), sum(cost_usd)`;

const DDL = `
CREATE TABLE IF NOT EXISTS requests (
  seq INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL UNIQUE,
  ts INTEGER NOT NULL,
  provider TEXT,
  endpoint TEXT,
  method TEXT,
  path TEXT,
  status INTEGER NOT NULL,
  model TEXT,
  virtual_key TEXT,
  outcome TEXT,
  latency_ms REAL,
  lat_bin INTEGER,
  input_tokens INTEGER,
  output_tokens INTEGER,
  cost_usd REAL,
  record TEXT NOT NULL,
  request_body TEXT,
  response_body TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
CREATE INDEX IF NOT EXISTS requests_model_ts ON requests(model, ts);
CREATE INDEX IF NOT EXISTS requests_vk_ts ON requests(virtual_key, ts);
`;
// Only the filters that pick a few rows among many have an index of their own (model,
// virtual key); provider, status and outcome take few values, so a query on them walks
// the time index. Each index costs every insert (docs/explorer.md).

const COLUMNS = [
  'request_id',
  'ts',
  'provider',
  'endpoint',
  'method',
  'path',
  'status',
  'model',
  'virtual_key',
  'outcome',
  'latency_ms',
  'lat_bin',
  'input_tokens',
  'output_tokens',
  'cost_usd',
  'record',
  'request_body',
  'response_body',
] as const;
/** Rows per INSERT statement: one statement per row costs more than binding the row. */
const ROWS_PER_INSERT = 32;
/** SQLite's default automatic checkpoint threshold, used again when the checkpointer thread fails. */
const AUTO_CHECKPOINT_PAGES = 1000;
/**
 * The checkpointer's script: beside this file from source; in the compiled binary the
 * build's second entrypoint, which Bun keeps under the bundle's root (src/).
 */
const CHECKPOINTER = Bun.isStandaloneExecutable
  ? './plugins/explorer/checkpointer.ts'
  : new URL('./checkpointer.ts', import.meta.url).href;
/** It keeps no process alive (`ref`), on a small heap (`smol`: it holds one connection). */
const CHECKPOINTER_OPTIONS: Bun.WorkerOptions = { ref: false, smol: true };
const insertSql = (rows: number) =>
  `INSERT OR IGNORE INTO requests (${COLUMNS.join(', ')}) VALUES ${Array(rows)
    .fill(`(${COLUMNS.map(() => '?').join(', ')})`)
    .join(', ')}`;

export class LogStore {
  readonly db: Database;
  /** Whether the file did not exist (or was unusable) and the index starts empty. */
  readonly created: boolean;
  /** Opened read-only: another process writes it. */
  readonly readonly: boolean;
  /** Rows in the table, tracked so retention needs no COUNT(*) per flush. */
  private count: number;
  private open_ = true;
  private readonly insertMany: (rows: IndexRow[]) => number;
  /** The thread running this index's checkpoints (a file index being written). */
  private checkpointer: Worker | undefined;

  /** `path` null: an in-memory index (no request log file configured). */
  constructor(
    readonly path: string | null,
    options: { readonly?: boolean } = {},
  ) {
    this.readonly = options.readonly ?? false;
    if (this.readonly) {
      if (path === null) throw new Error('an in-memory index cannot be opened read-only');
      this.db = new Database(path, { readonly: true, strict: true });
      this.db.exec('PRAGMA busy_timeout = 2000');
      this.created = false;
      this.count = 0;
      this.insertMany = () => {
        throw new Error('the explorer index is open read-only');
      };
      return;
    }
    let created = path === null || !existsSync(path) || statSync(path).size === 0;
    let db: Database;
    try {
      db = LogStore.open(path);
      if (
        !created &&
        (db.query('PRAGMA user_version').get() as { user_version: number }).user_version !== SCHEMA_VERSION
      ) {
        throw new Error('index schema version differs');
      }
    } catch {
      // Corrupt, foreign or older index: it is only a cache of the log, start it anew.
      if (path === null) throw new Error('cannot open an in-memory index');
      for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
      db = LogStore.open(path);
      created = true;
    }
    db.exec(DDL);
    db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    this.db = db;
    this.created = created;
    if (path !== null) this.startCheckpointer(path);
    this.count = (db.query('SELECT count(*) AS n FROM requests').get() as { n: number }).n;
    const one = db.query(insertSql(1));
    const many = db.query(insertSql(ROWS_PER_INSERT));
    this.insertMany = db.transaction((rows: IndexRow[]) => {
      let added = 0;
      let i = 0;
      for (; i + ROWS_PER_INSERT <= rows.length; i += ROWS_PER_INSERT) {
        const values: unknown[] = [];
        for (let j = i; j < i + ROWS_PER_INSERT; j++) pushValues(values, rows[j]!);
        added += many.run(...(values as never[])).changes;
      }
      for (; i < rows.length; i++) added += one.run(...(pushValues([], rows[i]!) as never[])).changes;
      return added;
    });
  }

  private static open(path: string | null): Database {
    const db = new Database(path ?? ':memory:', { create: true, strict: true });
    db.exec('PRAGMA journal_mode = WAL');
    // WAL + NORMAL: a commit does not wait for fsync; a crash may lose the last commits,
    // which the NDJSON log still holds (the index is topped up from it on start).
    db.exec('PRAGMA synchronous = NORMAL');
    db.exec('PRAGMA busy_timeout = 2000');
    return db;
  }

  /**
   * Checkpoints on a thread of their own (checkpointer.ts) instead of inside a commit on
   * this one; if that thread cannot start or fails, SQLite's automatic checkpoints again.
   */
  private startCheckpointer(path: string): void {
    const automatic = () => this.open_ && this.db.exec(`PRAGMA wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}`);
    let worker: Worker;
    try {
      worker = new Worker(CHECKPOINTER, CHECKPOINTER_OPTIONS);
    } catch {
      return;
    }
    worker.onerror = () => {
      this.checkpointer = undefined;
      automatic();
    };
    this.db.exec('PRAGMA wal_autocheckpoint = 0');
    worker.postMessage({ path });
    this.checkpointer = worker;
  }

  get rows(): number {
    if (this.readonly) return (this.db.query('SELECT count(*) AS n FROM requests').get() as { n: number }).n;
    return this.count;
  }

  /** The newest row's seq (0 when empty): the live feed of a reader starts after it. */
  maxSeq(): number {
    return (this.db.query('SELECT coalesce(max(seq), 0) AS s FROM requests').get() as { s: number }).s;
  }

  /** Rows inserted after `seq`, in insertion order (a reader's live feed). */
  since(seq: number, limit: number): Array<LiveRow & { seq: number }> {
    return this.db
      .query(
        'SELECT seq, ts, provider, model, status, virtual_key, outcome, path, record FROM requests WHERE seq > ? ORDER BY seq LIMIT ?',
      )
      .all(seq, limit) as Array<LiveRow & { seq: number }>;
  }

  /** Insert rows in one transaction; rows already present (same request_id) are skipped. */
  insert(rows: IndexRow[]): number {
    if (rows.length === 0) return 0;
    const added = this.insertMany(rows);
    this.count += added;
    return added;
  }

  /**
   * Delete up to `limit` rows older than `minTs` and up to `limit` of the oldest rows
   * beyond `maxRows`. Returns how many went and whether more are due (call again: big
   * deletes are done in steps so none holds the event loop for long).
   */
  prune(minTs: number, maxRows: number, limit = 2000): { removed: number; more: boolean } {
    const old = this.db
      .query('DELETE FROM requests WHERE seq IN (SELECT seq FROM requests WHERE ts < ? ORDER BY ts LIMIT ?)')
      .run(minTs, limit).changes;
    this.count -= old;
    let extra = 0;
    if (this.count > maxRows) {
      extra = this.db
        .query('DELETE FROM requests WHERE seq IN (SELECT seq FROM requests ORDER BY ts ASC, seq ASC LIMIT ?)')
        .run(Math.min(limit, this.count - maxRows)).changes;
      this.count -= extra;
    }
    return { removed: old + extra, more: old === limit || this.count > maxRows };
  }

  /** Newest `ts` in the index, or undefined when empty. */
  newestTs(): number | undefined {
    const r = this.db.query('SELECT max(ts) AS t FROM requests').get() as { t: number | null };
    return r.t ?? undefined;
  }

  oldestTs(): number | undefined {
    const r = this.db.query('SELECT min(ts) AS t FROM requests').get() as { t: number | null };
    return r.t ?? undefined;
  }

  /** One page of records matching `filter`, newest first, after `cursor`. */
  list(filter: LogFilter, limit: number, cursor: Cursor | undefined): Page {
    const { where, params } = whereClause(filter);
    if (cursor) {
      where.push('(ts, seq) < (?, ?)');
      params.push(cursor.ts, cursor.seq);
    }
    const sql = `SELECT seq, ts, record FROM requests${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, seq DESC LIMIT ?`;
    params.push(limit + 1);
    const rows = this.db.query(sql).values(...(params as never[])) as Array<[number, number, string]>;
    const more = rows.length > limit;
    if (more) rows.pop();
    const last = rows.at(-1);
    return { records: rows.map((r) => r[2]), next: more && last ? { ts: last[1], seq: last[0] } : null };
  }

  /** One record with its bodies, or undefined. */
  get(requestId: string): { record: string; request_body: string | null; response_body: string | null } | undefined {
    return (
      (this.db
        .query('SELECT record, request_body, response_body FROM requests WHERE request_id = ?')
        .get(requestId) as never) ?? undefined
    );
  }

  /** Stats aggregates for the rows matching `filter`: per (provider, model, bin) and per (time bucket, bin). */
  statsGroups(filter: LogFilter, first: number, bucketMs: number): { groups: GroupRow[]; buckets: BucketRow[] } {
    const { where, params } = whereClause(filter);
    const w = where.length ? ` WHERE ${where.join(' AND ')}` : '';
    const groups = this.db
      .query(`SELECT provider, model, lat_bin, ${AGG} FROM requests${w} GROUP BY provider, model, lat_bin`)
      .values(...(params as never[])) as GroupRow[];
    const buckets = this.db
      .query(`SELECT CAST((ts - ?) / ? AS INTEGER) AS b, lat_bin, ${AGG} FROM requests${w} GROUP BY b, lat_bin`)
      .values(...([first, Math.max(1, Math.floor(bucketMs)), ...params] as never[])) as BucketRow[];
    return { groups, buckets };
  }

  get isOpen(): boolean {
    return this.open_;
  }

  close(): void {
    if (!this.open_) return;
    this.open_ = false;
    if (this.readonly) {
      this.db.close();
      return;
    }
    this.checkpointer?.terminate();
    this.checkpointer = undefined;
    try {
      this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } catch {
      // Busy or already closed: the WAL is replayed on the next open.
    }
    this.db.close();
  }
}

function whereClause(f: LogFilter): { where: string[]; params: Array<string | number> } {
  const where: string[] = [];
  const params: Array<string | number> = [];
  if (f.from !== undefined) {
    where.push('ts >= ?');
    params.push(f.from);
  }
  if (f.to !== undefined) {
    where.push('ts <= ?');
    params.push(f.to);
  }
  if (f.provider !== undefined) {
    where.push('provider = ?');
    params.push(f.provider);
  }
  if (f.model !== undefined) {
    where.push('model = ?');
    params.push(f.model);
  }
  if (f.statusMin !== undefined && f.statusMax !== undefined) {
    where.push('status BETWEEN ? AND ?');
    params.push(f.statusMin, f.statusMax);
  }
  if (f.virtualKey !== undefined) {
    where.push('virtual_key = ?');
    params.push(f.virtualKey);
  }
  if (f.outcome !== undefined) {
    where.push('outcome = ?');
    params.push(f.outcome);
  }
  if (f.q !== undefined) {
    where.push('instr(path, ?) > 0');
    params.push(f.q);
  }
  return { where, params };
}

function pushValues(values: unknown[], row: IndexRow): unknown[] {
  for (const column of COLUMNS) values.push(row[column]);
  return values;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** How every request-log line starts: what follows is the line's record (`{` + the rest). */
const LINE_PREFIX = '{"log":"request",';

/** The stored record: the line without its `log` tag and the bodies (the row keeps those apart). */
function recordOf(line: Record<string, unknown>): string {
  const { log: _log, request_body: _request, response_body: _response, ...rest } = line;
  return JSON.stringify(rest);
}

/**
 * A request-log line (as written to the NDJSON file, or about to be) as an index row;
 * undefined when it is not a request line (no request_id or unreadable time). `text`:
 * the line as read, whose record is then cut from it rather than serialised again.
 */
export function rowFromLine(line: Record<string, unknown>, text?: string): IndexRow | undefined {
  const requestId = line.request_id;
  const ts = typeof line.time === 'string' ? Date.parse(line.time) : Number.NaN;
  if (typeof requestId !== 'string' || !requestId || !Number.isFinite(ts)) return undefined;
  const { request_body, response_body } = line;
  const usage = (line.usage ?? {}) as Record<string, unknown>;
  const latency = num(line.latency_ms);
  return {
    request_id: requestId,
    ts,
    provider: str(line.provider),
    endpoint: str(line.endpoint),
    method: str(line.method),
    path: str(line.path),
    status: num(line.status) ?? 0,
    model: str(line.model),
    virtual_key: str(line.virtual_key),
    outcome: str(line.outcome),
    latency_ms: latency,
    lat_bin: latency === null ? null : latencyBin(latency),
    input_tokens: num(usage.input_tokens),
    output_tokens: num(usage.output_tokens),
    cost_usd: num(line.cost_usd),
    // The line as read is the record when it holds no bodies (the common case): no copy of
    // the object, no second serialisation.
    record:
      text?.startsWith(LINE_PREFIX) && request_body === undefined && response_body === undefined
        ? `{${text.slice(LINE_PREFIX.length)}`
        : recordOf(line),
    request_body: str(request_body),
    response_body: str(response_body),
  };
}

/**
 * A completed request as an index row, from its record and its log-line fields (the
 * request log's serialisation, shared: shared/log-line.ts). The stored `record` is that
 * line; with logged bodies, which the row keeps apart, the line is read back.
 */
export function rowFromFields(record: Readonly<RequestRecord>, fields: string): IndexRow | undefined {
  if (record.request_body !== undefined || record.response_body !== undefined)
    return rowFromLine(JSON.parse(`{${fields}}`));
  const ts = Date.parse(record.time);
  if (!record.request_id || !Number.isFinite(ts)) return undefined;
  return {
    request_id: record.request_id,
    ts,
    provider: record.provider,
    endpoint: record.endpoint,
    method: record.method,
    path: record.path,
    status: record.status,
    model: record.model ?? null,
    virtual_key: record.virtual_key ?? null,
    outcome: record.outcome,
    latency_ms: record.latency_ms,
    lat_bin: latencyBin(record.latency_ms),
    input_tokens: num(record.usage?.input_tokens),
    output_tokens: num(record.usage?.output_tokens),
    cost_usd: record.cost_usd ?? null,
    record: `{${fields}}`,
    request_body: null,
    response_body: null,
  };
}
