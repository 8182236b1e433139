/**
 * Request log: one NDJSON line per request, in the bytes pino's logger wrote (serialised
 * here: a fifth of pino's cost) and written through pino's destination, sonic-boom (no
 * worker-thread transport: those do not run in a compiled binary). Lines are written
 * after the request completed, batched (at most BATCH_MS late), one synchronous write
 * per batch; `flush()` on shutdown loses none and `reopen()` on SIGHUP follows logrotate.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { RuntimeConfig } from '../../config/runtime.ts';
import type { Hooks, Plugin } from '../../core/plugin.ts';
import type { RequestRecord } from '../../core/request.ts';
import { appLog } from '../../lib/app-log.ts';
import { type LineFormat, lineFormat } from '../shared/log-line.ts';

type Destination = ReturnType<typeof pino.destination>;

/** Lines are handed to the file in batches: at most this many ms late, or this many chars. */
const BATCH_MS = 20;
const BATCH_CHARS = 64 * 1024;

export class RequestLogPlugin implements Plugin, Hooks {
  readonly name = 'logging';
  private file: string | null = null;
  private destination: Destination | undefined;
  private format: LineFormat | undefined;
  /** A config was applied (the start); later ones are reloads. */
  private configured = false;
  /** Serialised lines not yet handed to the destination (one write per batch, not per line). */
  private pending = '';
  private batchTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly writeLater = () => {
    this.batchTimer = undefined;
    this.writePending();
  };

  /**
   * Apply a (re)loaded config: opens a new file only when the path changed. A file that
   * cannot be opened stops the start (a clear error) but not a reload: the previous
   * file stays in use and the error is logged. Off without `logs.file`.
   */
  configure(config: RuntimeConfig): this | undefined {
    const file = config.source.logs.file || null;
    this.format = lineFormat(config);
    if (file === this.file) return this.destination ? this : undefined;
    let destination: Destination | undefined;
    if (file) {
      try {
        destination = openDestination(file);
      } catch (err) {
        const message = `logs.file ${file} cannot be opened: ${(err as Error).message}`;
        if (!this.configured) throw new Error(message);
        appLog.error({ file, in_use: this.file }, `${message}; the request log stays where it was`);
        return this.destination ? this : undefined;
      }
    }
    this.configured = true;
    void this.close();
    this.file = file;
    this.destination = destination;
    destination?.on('error', (err: Error) => appLog.error({ err: String(err), file }, 'request log write failed'));
    return destination ? this : undefined;
  }

  /** Not listed in `plugins`: the file is closed. */
  async off(): Promise<void> {
    await this.close();
    this.file = null;
  }

  onComplete(record: Readonly<RequestRecord>): void {
    if (!this.destination || !this.format) return;
    // The line pino's logger wrote here before (`pino({ base: null, timestamp: false,
    // formatters: { level: () => ({ log: 'request' }) } }).info(out)`: the same bytes) at
    // a fifth of the cost, batched into one destination write per BATCH_MS.
    this.pending += `{"log":"request",${this.format.fields(record)}}\n`;
    if (this.pending.length >= BATCH_CHARS) this.writePending();
    else if (!this.batchTimer) {
      this.batchTimer = setTimeout(this.writeLater, BATCH_MS);
      this.batchTimer.unref?.();
    }
  }

  /** Hand the batched lines to the destination. */
  private writePending(): void {
    if (this.batchTimer) {
      clearTimeout(this.batchTimer);
      this.batchTimer = undefined;
    }
    if (this.pending === '' || !this.destination) return;
    const batch = this.pending;
    this.pending = '';
    this.destination.write(batch);
  }

  /** SIGHUP: reopen the file at the same path (logrotate moved the old one away). */
  reopen(): void {
    this.writePending();
    this.destination?.reopen();
  }

  flush(): void {
    this.writePending();
    try {
      this.destination?.flushSync();
    } catch {
      // Nothing buffered, or the fd is gone: nothing more to save.
    }
  }

  /**
   * Write out everything buffered and close the file; resolves when it is closed. Ending
   * the stream (rather than flushSync) keeps lines in order when a write is under way.
   */
  close(): Promise<void> {
    this.writePending();
    const destination = this.destination;
    this.destination = undefined;
    return destination ? closeDestination(destination) : Promise.resolve();
  }
}

/**
 * Synchronous writes, pino's own default: one write of at most BATCH_CHARS per BATCH_MS
 * into the page cache (~30 us) costs less than Bun's asynchronous fs.write does in
 * callbacks and bookkeeping (measured: ~8 us per request at c=64, docs/performance.md).
 * Opening is synchronous too, so a bad path throws here.
 */
function openDestination(file: string): Destination {
  mkdirSync(dirname(file), { recursive: true });
  return pino.destination({ dest: file, sync: true, mkdir: true });
}

function closeDestination(destination: Destination, timeoutMs = 5000): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      // Not closed in time (a stuck disk): push out what is left synchronously.
      try {
        destination.flushSync();
      } catch {
        // nothing more to save
      }
      done();
    }, timeoutMs);
    destination.once('close', done);
    try {
      destination.end();
    } catch {
      done();
    }
  });
}
