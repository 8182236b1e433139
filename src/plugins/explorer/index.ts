/**
 * Request log explorer: an SQLite index of recent requests beside the NDJSON log, a
 * query API (/api/logs, /api/stats), a live stream of completed requests
 * (/api/logs/stream, SSE) and a page that uses them (/ui). See docs/explorer.md.
 *
 * Writing never runs on a request's path: onComplete only queues the record; the queue
 * is written every FLUSH_MS (or on the next tick once WRITE_CHUNK records are waiting),
 * in transactions of at most WRITE_CHUNK rows with the event loop free between them,
 * and live subscribers get each chunk right after it is written.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Elysia } from 'elysia';
import type { RuntimeConfig } from '../../config/runtime.ts';
import { appLog } from '../../lib/app-log.ts';
import type { Plugin, RequestRecord } from '../../core/request.ts';
import { jsonError } from '../../core/errors.ts';
import { redactor } from '../shared/redact.ts';
import { installExplorerRoutes } from './api.ts';
import { ingestFile } from './ingest.ts';
import { LogStore, rowFromLine, type IndexRow, type LogFilter } from './store.ts';

export const FLUSH_MS = 200;
/** Rows per transaction: a write holds the event loop for one chunk at most (a few ms). */
export const WRITE_CHUNK = 200;
/** Age retention is applied this often (row-count retention on every flush). */
const PRUNE_EVERY_MS = 60_000;
const PRUNE_STEP = 2000;
/** An existing index is topped up from this much of the log's end on start. */
const TAIL_BYTES = 4 * 1024 * 1024;
const KEEPALIVE_MS = 15_000;
/** A live subscriber this far behind (bytes queued, unread) is disconnected. */
const MAX_SUBSCRIBER_BACKLOG = 4 * 1024 * 1024;
const DAY_MS = 86_400_000;

const encoder = new TextEncoder();
const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

interface Subscriber {
  filter: LogFilter;
  controller: ReadableStreamDefaultController<Uint8Array>;
}

export class ExplorerPlugin implements Plugin {
  readonly name = 'explorer';
  /** False when `explorer.enabled` is false: the plugin stays out of the pipeline. */
  inPipeline = true;
  /** The API and page answer only while active (listed in `plugins` and enabled). */
  active = false;
  store: LogStore | undefined;
  /** The log file the index was filled from, and the fill in progress, if any. */
  private logFile: string | null = null;
  private ingestion: Promise<void> | undefined;
  private rebuilding = false;
  private tokenHash: Buffer | undefined;
  private maxRows = 100_000;
  private retentionMs = 7 * DAY_MS;
  private redact: (text: string) => string = (t) => t;
  private contentMax = 0;
  private queue: RequestRecord[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private immediate: ReturnType<typeof setImmediate> | undefined;
  private lastPrune = 0;
  private pruning: Promise<number> | undefined;
  private readonly subscribers = new Set<Subscriber>();
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private draining = false;

  configure(config: RuntimeConfig): void {
    const ex = config.source.explorer;
    this.redact = redactor(config);
    this.contentMax = config.source.logs.content_max_bytes;
    this.tokenHash = ex.admin_token ? sha256(ex.admin_token) : undefined;
    this.maxRows = ex.retention_max_rows;
    this.retentionMs = ex.retention_days * DAY_MS;
    if (!ex.enabled) {
      this.inPipeline = false;
      this.deactivate();
      return;
    }
    this.inPipeline = true;
    this.active = true;
    const logFile = config.source.logs.file || null;
    if (!this.store || logFile !== this.logFile) this.open(logFile);
    else void this.prune();
  }

  /** Not listed in `plugins`: stop indexing, release the index, answer 404. */
  disable(): void {
    this.deactivate();
  }

  private deactivate(): void {
    this.active = false;
    this.closeStore();
  }

  private open(logFile: string | null): void {
    this.closeStore();
    const path = logFile ? `${logFile}.index.sqlite` : null;
    if (path) mkdirSync(dirname(path), { recursive: true });
    let store: LogStore;
    try {
      store = new LogStore(path);
    } catch (err) {
      appLog.error({ err: String(err), index: path }, 'explorer index could not be opened; using an in-memory index');
      store = new LogStore(null);
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
    const minTs = full || newest === undefined ? Date.now() - this.retentionMs : Math.max(Date.now() - this.retentionMs, newest - 5 * 60_000);
    this.rebuilding = full;
    const started = performance.now();
    this.ingestion = ingestFile(store, logFile, { offset, minTs, alive: () => this.store === store, afterBatch: () => this.prune() })
      .then(async (r) => {
        if (this.store !== store) return;
        await this.prune();
        if (r.lines > 0 && (full || r.added > 0)) {
          appLog.info({ index: path, from: logFile, full, lines: r.lines, added: r.added, skipped: r.skipped, rows: store.rows, ms: Math.round(performance.now() - started) }, full ? 'explorer index rebuilt from the request log' : 'explorer index topped up from the request log');
        }
      })
      .catch((err) => appLog.error({ err: String(err), index: path, from: logFile }, 'explorer index fill from the request log failed'))
      .finally(() => {
        if (this.store === store) this.rebuilding = false;
      });
  }

  /** Resolves when filling the index from the log (rebuild or top-up) is done. */
  async ready(): Promise<void> {
    await this.ingestion;
  }

  onComplete(record: RequestRecord): void {
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

  /** Write up to WRITE_CHUNK queued records in one transaction; schedule the rest. */
  private writeChunk(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    if (this.queue.length === 0) return;
    const batch = this.queue.length > WRITE_CHUNK ? this.queue.splice(0, WRITE_CHUNK) : this.queue.splice(0);
    if (this.queue.length > 0) this.immediate = setImmediate(() => this.writeChunk());
    const store = this.store;
    if (!store) return;
    const rows: IndexRow[] = [];
    for (const record of batch) {
      const row = rowFromLine(this.lineOf(record));
      if (row) rows.push(row);
    }
    try {
      store.insert(rows);
    } catch (err) {
      appLog.error({ err: String(err), rows: rows.length }, 'explorer index write failed; batch dropped (the request log has it)');
    }
    this.broadcast(rows);
    if (store.rows > this.maxRows || Date.now() - this.lastPrune > PRUNE_EVERY_MS) void this.prune();
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

  /** The record as the request log writes it (bodies truncated and redacted the same way). */
  private lineOf(record: RequestRecord): Record<string, unknown> {
    const { retries, request_body, response_body, ...line } = record;
    const out: Record<string, unknown> = line;
    if (retries.length > 0) out.retries = retries;
    if (request_body !== undefined) out.request_body = this.content(request_body);
    if (response_body !== undefined) out.response_body = this.content(response_body);
    return out;
  }

  private content(text: string): string {
    const clipped = text.length > this.contentMax ? `${text.slice(0, this.contentMax)}…[truncated ${text.length - this.contentMax} chars]` : text;
    return this.redact(clipped);
  }

  // ------------------------------------------------------------------------------
  // Live subscribers (SSE)

  /** An SSE response that receives every completed request matching `filter`. */
  subscribe(filter: LogFilter, signal: AbortSignal): Response {
    if (this.draining) return jsonError(503, 'shutting_down', 'the gateway is shutting down', { connection: 'close' });
    let sub: Subscriber | undefined;
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          sub = { filter, controller };
          this.subscribers.add(sub);
          controller.enqueue(encoder.encode(`retry: 3000\n: connected\n\n`));
          this.keepalive ??= setInterval(() => this.send(': keepalive\n\n'), KEEPALIVE_MS);
          this.keepalive.unref?.();
        },
        cancel: () => {
          if (sub) this.unsubscribe(sub);
        },
      },
      { highWaterMark: 64 * 1024, size: (chunk) => chunk?.byteLength ?? 0 },
    );
    signal.addEventListener('abort', () => {
      if (sub) this.unsubscribe(sub, true);
    });
    return new Response(stream, {
      headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' },
    });
  }

  /**
   * Shutdown began: end the live streams (the page's EventSource reconnects to the next
   * process), which would otherwise hold the server's drain for the whole grace period.
   */
  drain(): void {
    this.draining = true;
    for (const sub of [...this.subscribers]) this.unsubscribe(sub, true);
  }

  get liveSubscribers(): number {
    return this.subscribers.size;
  }

  private unsubscribe(sub: Subscriber, close = false): void {
    if (!this.subscribers.delete(sub)) return;
    if (close) {
      try {
        sub.controller.close();
      } catch {
        // Already closed or errored.
      }
    }
    if (this.subscribers.size === 0 && this.keepalive) {
      clearInterval(this.keepalive);
      this.keepalive = undefined;
    }
  }

  private send(text: string, only?: (s: Subscriber) => boolean): void {
    const bytes = encoder.encode(text);
    for (const sub of this.subscribers) {
      if (only && !only(sub)) continue;
      this.write(sub, bytes);
    }
  }

  private write(sub: Subscriber, bytes: Uint8Array): void {
    try {
      if ((sub.controller.desiredSize ?? 0) < -MAX_SUBSCRIBER_BACKLOG) {
        appLog.warn({}, 'explorer live subscriber too far behind; disconnected');
        this.unsubscribe(sub, true);
        return;
      }
      sub.controller.enqueue(bytes);
    } catch {
      this.unsubscribe(sub);
    }
  }

  private broadcast(rows: IndexRow[]): void {
    if (this.subscribers.size === 0 || rows.length === 0) return;
    for (const sub of this.subscribers) {
      let text = '';
      for (const row of rows) if (matches(sub.filter, row)) text += `event: request\ndata: ${row.record}\n\n`;
      if (text) this.write(sub, encoder.encode(text));
    }
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
    if (this.tokenHash) {
      const header = request.headers.get('authorization');
      const bearer = header ? /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1] : undefined;
      const given = bearer ?? queryToken ?? undefined;
      if (given === undefined) {
        return jsonError(401, 'unauthorized', 'the explorer API requires Authorization: Bearer <explorer.admin_token>', { 'www-authenticate': 'Bearer realm="skybridge explorer"' });
      }
      if (!timingSafeEqual(sha256(given), this.tokenHash)) {
        return jsonError(401, 'unauthorized', 'invalid explorer admin token', { 'www-authenticate': 'Bearer realm="skybridge explorer", error="invalid_token"' });
      }
      return undefined;
    }
    if (!isLoopbackIp(clientIp) || !isLoopbackHost(requestUrl(request).hostname)) {
      return jsonError(403, 'forbidden', 'no explorer.admin_token is configured: the explorer API answers loopback clients only');
    }
    return undefined;
  }

  tokenRequired(): boolean {
    return this.tokenHash !== undefined;
  }

  indexInfo(): { rows: number; oldest: string | null; rebuilding: boolean; file: string | null } {
    const oldest = this.store?.oldestTs();
    return { rows: this.store?.rows ?? 0, oldest: oldest === undefined ? null : new Date(oldest).toISOString(), rebuilding: this.rebuilding, file: this.store?.path ?? null };
  }

  readonly routes = (app: Elysia): void => installExplorerRoutes(app, this);

  // ------------------------------------------------------------------------------

  private closeStore(): void {
    this.flush();
    for (const sub of [...this.subscribers]) this.unsubscribe(sub, true);
    this.store?.close();
    this.store = undefined;
    this.logFile = null;
    this.ingestion = undefined;
    this.rebuilding = false;
  }

  close(): void {
    this.active = false;
    this.closeStore();
  }
}

/** The stream's filter, applied to a row in memory (same meaning as the SQL one). */
export function matches(f: LogFilter, row: IndexRow): boolean {
  if (f.from !== undefined && row.ts < f.from) return false;
  if (f.to !== undefined && row.ts > f.to) return false;
  if (f.provider !== undefined && row.provider !== f.provider) return false;
  if (f.model !== undefined && row.model !== f.model) return false;
  if (f.statusMin !== undefined && f.statusMax !== undefined && (row.status < f.statusMin || row.status > f.statusMax)) return false;
  if (f.virtualKey !== undefined && row.virtual_key !== f.virtualKey) return false;
  if (f.outcome !== undefined && row.outcome !== f.outcome) return false;
  if (f.q !== undefined && !(row.path ?? '').includes(f.q)) return false;
  return true;
}

export function isLoopbackIp(ip: string | undefined): boolean {
  if (!ip) return false;
  if (ip === '::1') return true;
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/**
 * The request's URL. Bun gives the bare request target when the request named no host
 * (HTTP/1.0 without Host, or an empty Host); browsers always send one, so such a request
 * is no DNS-rebinding page and is read as addressed to localhost.
 */
export function requestUrl(request: Request): URL {
  return new URL(request.url, 'http://localhost');
}

export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
