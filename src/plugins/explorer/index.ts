/**
 * Request log explorer: an SQLite index of recent requests beside the NDJSON log, a
 * query API (/api/logs, /api/stats), a live stream of completed requests
 * (/api/logs/stream, SSE) and a page that uses them (/ui). See docs/explorer.md.
 *
 * Writing never runs on a request's path: onComplete only queues the record; the queue
 * is written every FLUSH_MS (or on the next tick once WRITE_CHUNK records are waiting),
 * in transactions of at most WRITE_CHUNK rows with the event loop free between them,
 * and live subscribers get each chunk right after it is written.
 *
 * In a group of workers the primary is the index's one writer, and it indexes the
 * request log the workers append to (tail.ts), every FLUSH_MS, as it fills the index
 * from that file on start: a worker does no explorer work per request, the file is the
 * buffer while the primary is busy, and nothing per request crosses a process. Without
 * a request log to read (no `logs.file`, or `logging` left out of `plugins`), the
 * workers ship their rows to the primary instead, in batches of at most WRITE_CHUNK, one
 * batch in flight at a time (IPC has no backpressure of its own: beyond MAX_OUTBOX rows
 * waiting, the oldest are dropped), and the primary keeps the index in a temporary file.
 * Workers answer the API from the index opened read-only, and their live subscribers
 * get the rows every worker's requests added, read from the index every FLUSH_MS.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { RuntimeConfig } from '../../config/runtime.ts';
import { jsonError } from '../../core/errors.ts';
import { type Group, LocalGroup, topic } from '../../core/group.ts';
import type { Hooks, Plugin, PluginRoute } from '../../core/plugin.ts';
import type { RequestRecord } from '../../core/request.ts';
import { appLog } from '../../lib/app-log.ts';
import { bearerToken } from '../../lib/secrets.ts';
import { BearerToken, isLoopbackHost, isLoopbackIp, requestUrl } from '../shared/admin-auth.ts';
import { type LineFormat, lineFormat } from '../shared/log-line.ts';
import { WarnLimiter } from '../shared/warn-limiter.ts';
import { type ExplorerApi, explorerRoutes } from './api.ts';
import { ingestFile } from './ingest.ts';
import { LiveFeed } from './live.ts';
import { type IndexRow, type LogFilter, LogStore, rowFromFields, rowFromLine } from './store.ts';
import { LogTail } from './tail.ts';

export const FLUSH_MS = 200;
/** Rows per transaction: a write holds the event loop for one chunk at most (a few ms). */
export const WRITE_CHUNK = 200;
/** Age retention is applied this often (row-count retention on every flush). */
const PRUNE_EVERY_MS = 60_000;
const PRUNE_STEP = 2000;
/** An existing index is topped up from this much of the log's end on start. */
const TAIL_BYTES = 4 * 1024 * 1024;
const DAY_MS = 86_400_000;
/** Rows a worker keeps while the primary is behind; beyond this the oldest are dropped. */
const MAX_OUTBOX = 20_000;
/** Rows a worker's live feed reads from the index per query. */
const LIVE_READ = 1000;
/** The primary reads at most this much of the request log per step, the event loop free between steps. */
const TAIL_STEP_BYTES = 1024 * 1024;
/** A worker whose requests the primary reads from the request log: no hook per request. */
const NO_HOOKS: Hooks = {};

/** A worker's rows, written by the primary; answers how many were new. */
const ROWS = topic<IndexRow[], number>('explorer.rows');
/** Where the primary keeps the index (null: the explorer is off there). */
const INDEX = topic<undefined, { path: string; rebuilding: boolean } | null>('explorer.index');
/** The primary finished filling the index from the request log. */
const FILLED = topic<undefined>('explorer.filled');

export class ExplorerPlugin implements Plugin, Hooks, ExplorerApi {
  readonly name = 'explorer';
  store: LogStore | undefined;
  providers: readonly string[] = [];
  /** The log file the index was filled from, and the fill in progress, if any. */
  private logFile: string | null = null;
  private ingestion: Promise<void> | undefined;
  private rebuilding = false;
  private token: BearerToken | undefined;
  private maxRows = 100_000;
  private retentionMs = 7 * DAY_MS;
  private format: LineFormat | undefined;
  private queue: Array<Readonly<RequestRecord>> = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private immediate: ReturnType<typeof setImmediate> | undefined;
  private lastPrune = 0;
  private pruning: Promise<number> | undefined;
  private readonly live = new LiveFeed();
  /** A worker: rows not yet written by the primary, the batch in flight, and the live feed's place in the index. */
  private outbox: IndexRow[] = [];
  private shipping: Promise<void> | undefined;
  private readonly shipWarnings = new WarnLimiter(60_000);
  private livePoll: ReturnType<typeof setInterval> | undefined;
  private liveSeq = 0;
  /** The primary without a request log file: its temporary index, removed at close. */
  private tempIndex: string | undefined;
  /** A group whose workers write the request log: the primary follows it into the index. */
  private readsLog = false;
  private tail: LogTail | undefined;
  private tailTimer: ReturnType<typeof setInterval> | undefined;
  private tailing: Promise<void> | undefined;
  private readonly tailWarnings = new WarnLimiter(60_000);

  constructor(private readonly group: Group = new LocalGroup()) {
    if (group.role === 'primary') {
      group.on(ROWS, (rows) => this.insert(rows));
      group.on(INDEX, () => (this.store?.path ? { path: this.store.path, rebuilding: this.rebuilding } : null));
    }
    if (group.role === 'worker') group.on(FILLED, () => (this.rebuilding = false));
  }

  /** Off with `explorer.enabled: false`. */
  configure(config: RuntimeConfig): Hooks | undefined | Promise<Hooks | undefined> {
    const ex = config.source.explorer;
    if (!ex.enabled) {
      this.closeStore();
      return undefined;
    }
    this.format = lineFormat(config, this.group.worker);
    this.providers = Object.keys(config.providers);
    this.token = ex.admin_token ? new BearerToken(ex.admin_token) : undefined;
    this.maxRows = ex.retention_max_rows;
    this.retentionMs = ex.retention_days * DAY_MS;
    const logFile = config.source.logs.file || null;
    const readsLog = this.group.role !== 'single' && logFile !== null && config.plugins.includes('logging');
    if (this.group.role === 'worker') return this.openReader(readsLog);
    if (!this.store || logFile !== this.logFile || readsLog !== this.readsLog) {
      this.readsLog = readsLog;
      this.open(logFile);
    } else void this.prune();
    return this;
  }

  /** A worker: the primary's index, read-only (the primary has opened it for this config already). */
  private async openReader(readsLog: boolean): Promise<Hooks | undefined> {
    const index = await this.group.request(INDEX, undefined);
    if (!index) {
      this.closeStore();
      return undefined;
    }
    this.rebuilding = index.rebuilding;
    if (this.store?.path !== index.path) {
      this.closeStore();
      this.store = new LogStore(index.path, { readonly: true });
    }
    this.readsLog = readsLog;
    return readsLog ? NO_HOOKS : this;
  }

  /** Not listed in `plugins`: stop indexing, release the index. */
  off(): void {
    this.closeStore();
  }

  routes(): PluginRoute[] {
    return explorerRoutes(this);
  }

  private open(logFile: string | null): void {
    this.closeStore();
    const path = logFile ? `${logFile}.index.sqlite` : this.group.role === 'primary' ? this.temporaryIndex() : null;
    if (path) mkdirSync(dirname(path), { recursive: true });
    let store: LogStore;
    try {
      store = new LogStore(path);
    } catch (err) {
      const fallback = this.group.role === 'primary' && path !== this.tempIndex ? this.temporaryIndex() : null;
      appLog.error(
        { err: String(err), index: path, ...(fallback && { instead: fallback }) },
        `explorer index could not be opened; using ${fallback ? 'a temporary' : 'an in-memory'} index`,
      );
      store = new LogStore(fallback);
    }
    this.store = store;
    this.logFile = logFile;
    void this.prune();
    if (!logFile) return;
    const full = store.created;
    const newest = store.newestTs();
    const size = Bun.file(logFile).size;
    const offset = full ? 0 : Math.max(0, size - TAIL_BYTES);
    // Topping up: only lines newer than what the index holds (minus a margin for
    // requests that completed out of order), so pruned rows do not come back.
    const minTs =
      full || newest === undefined
        ? Date.now() - this.retentionMs
        : Math.max(Date.now() - this.retentionMs, newest - 5 * 60_000);
    this.rebuilding = full;
    const started = performance.now();
    // The primary of a group then follows the file from where the fill stopped.
    if (this.readsLog) this.followLog(logFile, size);
    this.ingestion = ingestFile(store, logFile, {
      offset,
      minTs,
      alive: () => this.store === store,
      afterBatch: () => this.prune(),
    })
      .then(async (r) => {
        if (this.store !== store) return;
        await this.prune();
        if (r.lines > 0 && (full || r.added > 0)) {
          appLog.info(
            {
              index: path,
              from: logFile,
              full,
              lines: r.lines,
              added: r.added,
              skipped: r.skipped,
              rows: store.rows,
              ms: Math.round(performance.now() - started),
            },
            full ? 'explorer index rebuilt from the request log' : 'explorer index topped up from the request log',
          );
        }
      })
      .catch((err) =>
        appLog.error(
          { err: String(err), index: path, from: logFile },
          'explorer index fill from the request log failed',
        ),
      )
      .finally(() => {
        if (this.store !== store) return;
        this.rebuilding = false;
        this.group.broadcast(FILLED, undefined);
      });
  }

  /**
   * The primary: index what the workers append to the request log, every FLUSH_MS, in
   * steps of TAIL_STEP_BYTES and transactions of WRITE_CHUNK rows with the event loop free
   * between them. Lines the fill on start reads too are inserted once (by request id).
   */
  private followLog(file: string, offset: number): void {
    this.tail = new LogTail(file, offset);
    this.tailTimer = setInterval(() => void this.readLog(), FLUSH_MS);
    this.tailTimer.unref?.();
  }

  /** Index what the request log has that the index has not; resolves when done (or `steps` are). */
  private readLog(steps = 16): Promise<void> {
    this.tailing ??= (async () => {
      for (let i = 0; i < steps; i++) {
        const tail = this.tail;
        if (!tail) return;
        const read = tail.read(TAIL_STEP_BYTES);
        if (read.skipped > 0)
          this.tailWarnings.warn(
            { file: tail.file, bytes: read.skipped },
            'explorer index too far behind the request log: skipped ahead (those requests are in the log only)',
          );
        const rows: IndexRow[] = [];
        for (const line of read.lines) {
          try {
            const row = rowFromLine(JSON.parse(line), line);
            if (row) rows.push(row);
          } catch {
            // Not a JSON line: the request log has only those, unless edited by hand.
          }
        }
        for (let at = 0; at < rows.length; at += WRITE_CHUNK) {
          this.insert(rows.slice(at, at + WRITE_CHUNK));
          await new Promise((r) => setImmediate(r));
        }
        if (!read.more) return;
      }
    })().finally(() => (this.tailing = undefined));
    return this.tailing;
  }

  private stopFollowing(): void {
    clearInterval(this.tailTimer);
    this.tailTimer = undefined;
    this.tail?.close();
    this.tail = undefined;
  }

  /** The primary's index when there is no request log file: the workers need a file to read. */
  private temporaryIndex(): string {
    this.tempIndex ??= join(tmpdir(), `skybridge-explorer-${process.pid}.sqlite`);
    return this.tempIndex;
  }

  /** Resolves when filling the index from the log (rebuild or top-up) is done. */
  async ready(): Promise<void> {
    await this.ingestion;
  }

  onComplete(record: Readonly<RequestRecord>): void {
    if (!this.store) return;
    this.queue.push(record);
    if (this.queue.length >= WRITE_CHUNK) {
      this.immediate ??= setImmediate(() => this.writeChunk());
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.writeChunk(), FLUSH_MS);
      this.timer.unref?.();
    }
  }

  /** Write everything queued now (shutdown, reload, tests). */
  flush(): void {
    while (this.queue.length > 0) this.writeChunk();
  }

  /** Write up to WRITE_CHUNK queued records in one transaction (a worker: ship them); schedule the rest. */
  private writeChunk(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (this.queue.length === 0) return;
    const batch = this.queue.length > WRITE_CHUNK ? this.queue.splice(0, WRITE_CHUNK) : this.queue.splice(0);
    if (this.queue.length > 0) this.immediate = setImmediate(() => this.writeChunk());
    if (!this.store) return;
    const rows: IndexRow[] = [];
    for (const record of batch) {
      const row = rowFromFields(record, this.format!.fields(record));
      if (row) rows.push(row);
    }
    if (this.group.role === 'worker') {
      this.ship(rows);
      return;
    }
    this.insert(rows);
    this.live.broadcast(rows);
  }

  /** Rows into the index (this process's, or a worker's); retention when due. */
  private insert(rows: IndexRow[]): number {
    const store = this.store;
    if (!store || rows.length === 0) return 0;
    let added = 0;
    try {
      added = store.insert(rows);
    } catch (err) {
      appLog.error(
        { err: String(err), rows: rows.length },
        'explorer index write failed; batch dropped (the request log has it)',
      );
    }
    if (store.rows > this.maxRows || Date.now() - this.lastPrune > PRUNE_EVERY_MS) void this.prune();
    return added;
  }

  /** A worker: hand rows to the primary, one batch in flight at a time. */
  private ship(rows: IndexRow[]): void {
    for (const row of rows) this.outbox.push(row);
    if (this.outbox.length > MAX_OUTBOX) {
      const dropped = this.outbox.length - MAX_OUTBOX;
      this.outbox.splice(0, dropped);
      this.shipWarnings.warn(
        { dropped },
        'explorer index behind this worker: oldest rows not indexed (the request log has them)',
      );
    }
    this.shipNext();
  }

  private shipNext(): void {
    if (this.shipping || this.outbox.length === 0) return;
    const batch = this.outbox.splice(0, WRITE_CHUNK);
    this.shipping = this.group
      .request(ROWS, batch, { timeoutMs: 10_000 })
      .then(
        () => {},
        (err) =>
          this.shipWarnings.warn(
            { err: String((err as Error)?.message ?? err), rows: batch.length },
            'explorer rows could not be handed to the primary; not indexed (the request log has them)',
          ),
      )
      .finally(() => {
        this.shipping = undefined;
        this.shipNext();
      });
  }

  /** Resolves when every row shipped so far has been answered for. */
  private async shipped(): Promise<void> {
    while (this.shipping) await this.shipping;
  }

  /**
   * Apply retention (age and row count) in steps of PRUNE_STEP rows with the event loop
   * free between them. Concurrent calls share one run. Resolves with the rows removed.
   */
  prune(): Promise<number> {
    this.pruning ??= this.pruneSteps().finally(() => (this.pruning = undefined));
    return this.pruning;
  }

  private async pruneSteps(): Promise<number> {
    let removed = 0;
    for (;;) {
      const store = this.store;
      if (!store) return removed;
      this.lastPrune = Date.now();
      try {
        const step = store.prune(Date.now() - this.retentionMs, this.maxRows, PRUNE_STEP);
        removed += step.removed;
        if (!step.more) return removed;
      } catch (err) {
        appLog.error({ err: String(err) }, 'explorer index retention failed');
        return removed;
      }
      await new Promise((r) => setImmediate(r));
    }
  }

  /** An SSE response that receives every completed request matching `filter`. */
  subscribe(filter: LogFilter, signal: AbortSignal): Response {
    const response = this.live.subscribe(filter, signal);
    if (this.group.role === 'worker' && !this.livePoll && this.store && this.live.size > 0) {
      this.liveSeq = this.store.maxSeq();
      this.livePoll = setInterval(() => this.pollLive(), FLUSH_MS);
      this.livePoll.unref?.();
    }
    return response;
  }

  /** A worker's live feed: the rows any worker's requests added to the index since the last look. */
  private pollLive(): void {
    const store = this.store;
    if (!store || this.live.size === 0) {
      clearInterval(this.livePoll);
      this.livePoll = undefined;
      return;
    }
    try {
      for (;;) {
        const rows = store.since(this.liveSeq, LIVE_READ);
        if (rows.length === 0) return;
        this.liveSeq = rows.at(-1)!.seq;
        this.live.broadcast(rows);
        if (rows.length < LIVE_READ) return;
      }
    } catch (err) {
      this.shipWarnings.warn({ err: String(err) }, 'explorer live feed could not read the index');
    }
  }

  drain(): void {
    this.live.drain();
  }

  get liveSubscribers(): number {
    return this.live.size;
  }

  // ------------------------------------------------------------------------------
  // Auth

  /**
   * undefined when the request may use the admin API. With `explorer.admin_token`:
   * `Authorization: Bearer <token>` (or `?token=` where `queryToken` is allowed).
   * Without: only loopback clients that also addressed a loopback host (so neither a
   * local reverse proxy nor a DNS-rebinding page turns it into an open API).
   */
  authorize(request: Request, clientIp: string | undefined, queryToken: string | null): Response | undefined {
    if (this.token) {
      const given = bearerToken(request.headers.get('authorization')) ?? queryToken ?? undefined;
      if (given === undefined) {
        return jsonError(
          401,
          'unauthorized',
          'the explorer API requires Authorization: Bearer <explorer.admin_token>',
          { 'www-authenticate': 'Bearer realm="skybridge explorer"' },
        );
      }
      if (!this.token.accepts(null, given)) {
        return jsonError(401, 'unauthorized', 'invalid explorer admin token', {
          'www-authenticate': 'Bearer realm="skybridge explorer", error="invalid_token"',
        });
      }
      return undefined;
    }
    if (!isLoopbackIp(clientIp) || !isLoopbackHost(requestUrl(request).hostname)) {
      return jsonError(
        403,
        'forbidden',
        'no explorer.admin_token is configured: the explorer API answers loopback clients only',
      );
    }
    return undefined;
  }

  indexInfo(): { rows: number; oldest: string | null; rebuilding: boolean; file: string | null } {
    const oldest = this.store?.oldestTs();
    return {
      rows: this.store?.rows ?? 0,
      oldest: oldest === undefined ? null : new Date(oldest).toISOString(),
      rebuilding: this.rebuilding,
      file: this.store?.path ?? null,
    };
  }

  // ------------------------------------------------------------------------------

  private closeStore(): void {
    this.flush();
    this.stopFollowing();
    this.live.closeAll();
    clearInterval(this.livePoll);
    this.livePoll = undefined;
    this.store?.close();
    if (this.store?.path && this.store.path === this.tempIndex)
      for (const suffix of ['', '-wal', '-shm']) rmSync(this.tempIndex + suffix, { force: true });
    this.store = undefined;
    this.logFile = null;
    this.ingestion = undefined;
    this.rebuilding = false;
  }

  async close(): Promise<void> {
    // A worker: what it queued reaches the primary before this process exits.
    this.flush();
    await this.shipped();
    // The primary, once its workers have exited: the last lines they wrote.
    if (this.tail) {
      await this.tailing;
      await this.readLog(Number.POSITIVE_INFINITY);
    }
    this.closeStore();
  }
}
