/**
 * Request log: one NDJSON line per request, in the bytes pino's logger wrote (serialised
 * here: a fifth of pino's cost) and written through pino's destination, sonic-boom (no
 * worker-thread transport: those do not run in a compiled binary). Lines are written
 * after the request completed, batched (at most BATCH_MS late), one synchronous write
 * per batch; `close()` on shutdown loses none and `reopen()` on SIGHUP follows logrotate.
 * A file deleted under us is made again at its path before the next batch; lines whose
 * write failed (a full disk) are held and written with the next batch that succeeds, and
 * those still held at close are counted in `linesLost`.
 *
 * In a group of workers every worker appends to the same file: the file is opened with
 * O_APPEND (sonic-boom's default flag 'a') and each batch of whole lines is one write()
 * (sonic-boom's sync mode writes each string handed to it in one call; only a partial
 * write, the disk filling up, would split it), which a local filesystem appends whole,
 * never interleaved with another process's. The lines lost in a worker are told to the
 * primary, which says them once for the group.
 */
import { fstatSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';
import type { RuntimeConfig } from '../../config/runtime.ts';
import { type Group, LocalGroup, topic } from '../../core/group.ts';
import type { Hooks, Plugin } from '../../core/plugin.ts';
import type { RequestRecord } from '../../core/request.ts';
import { appLog } from '../../lib/app-log.ts';
import { type LineFormat, lineFormat } from '../shared/log-line.ts';

type Destination = ReturnType<typeof pino.destination>;

/** Lines are handed to the file in batches: at most this many ms late, or this many chars. */
const BATCH_MS = 20;
const BATCH_CHARS = 64 * 1024;

/** A worker's lines that could not be written (still held at a close, or written into a deleted file). */
const LINES_LOST = topic<{ file: string | null; held: number; lost: number }>('logging.lines-lost');

export class RequestLogPlugin implements Plugin, Hooks {
  readonly name = 'logging';
  private file: string | null = null;
  private destination: Destination | undefined;
  private format: LineFormat | undefined;
  /** A config was applied (the start); later ones are reloads. */
  private configured = false;
  /** Serialised lines not yet handed to the destination (one write per batch, not per line). */
  private pending = '';
  private pendingLines = 0;
  /** Lines the destination holds because their write failed; it tries them again with each batch. */
  private held = 0;
  /** Set by the destination's 'error' event, which sonic-boom emits inside write() in sync mode. */
  private writeError: Error | undefined;
  /** Lines gone into the deleted file since it could not be made again; undefined while the file is there. */
  private lostToDeleted: number | undefined;
  /** Request lines lost: written into a deleted file that could not be made again, or still held when their file was closed. */
  linesLost = 0;
  /** Of linesLost, those already told to the primary (in a worker). */
  private linesTold = 0;
  /** The primary: lines its workers held when they closed the file at shutdown, by file, said once at close. */
  private readonly heldByWorkers = new Map<string | null, number>();
  private draining = false;
  private batchTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly writeLater = () => {
    this.batchTimer = undefined;
    this.writePending();
  };

  constructor(private readonly group: Group = new LocalGroup()) {
    if (group.role === 'primary')
      group.on(LINES_LOST, ({ file, held, lost }) => {
        this.linesLost += lost;
        if (held === 0) return;
        if (this.draining) this.heldByWorkers.set(file, (this.heldByWorkers.get(file) ?? 0) + held);
        else sayLost(file, held);
      });
  }

  /**
   * Apply a (re)loaded config: opens a new file only when the path changed. A file that
   * cannot be opened stops the start (a clear error) but not a reload: the previous
   * file stays in use and the error is logged. Off without `logs.file`.
   */
  configure(config: RuntimeConfig): this | undefined {
    const file = config.source.logs.file || null;
    this.format = lineFormat(config, this.group.worker);
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
    destination?.on('error', (err: Error) => {
      this.writeError = err;
    });
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
    // a fifth of the cost, batched into one destination write per BATCH_MS. A batch stays
    // within BATCH_CHARS unless one line alone is longer.
    const line = `{"log":"request",${this.format.fields(record)}}\n`;
    if (this.pending.length + line.length > BATCH_CHARS && this.pending !== '') this.writePending();
    this.pending += line;
    this.pendingLines++;
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
    const lines = this.pendingLines;
    this.pending = '';
    this.pendingLines = 0;
    // One fstat per batch, not per request: a file unlinked under us (its directory
    // removed) would swallow every line until a SIGHUP.
    if (unlinked(this.destination)) this.reopenDeleted();
    this.writeError = undefined;
    this.destination.write(batch);
    if (this.lostToDeleted !== undefined) {
      this.lostToDeleted += lines;
      this.linesLost += lines;
    } else if (this.writeError) {
      if (this.held === 0)
        appLog.error(
          { err: String(this.writeError), file: this.file },
          'request log write failed; lines are held in memory and written with the next batch that succeeds',
        );
      this.held += lines;
    } else if (this.held > 0) {
      // A write that succeeds has written everything held before it too.
      appLog.warn({ file: this.file, lines: this.held }, 'request log writes work again; held lines written');
      this.held = 0;
    }
  }

  private reopenDeleted(): void {
    const err = this.reopenFile();
    if (err) {
      if (this.lostToDeleted !== undefined) return;
      this.lostToDeleted = 0;
      appLog.error(
        { file: this.file, err: String(err) },
        'request log file was deleted and cannot be made again; lines are lost until it can (tried with each batch)',
      );
    } else if (this.lostToDeleted === undefined) {
      appLog.error({ file: this.file }, 'request log file was deleted (or its directory): reopened at its path');
    } else {
      this.fileBack();
    }
  }

  /** The file is open at its path again after lines went into the deleted one. */
  private fileBack(): void {
    appLog.warn({ file: this.file, lines_lost: this.lostToDeleted }, 'request log file made again at its path');
    this.lostToDeleted = undefined;
  }

  /** Open the file again at its path (directories made as needed); returns why it could not. */
  private reopenFile(): Error | undefined {
    try {
      this.destination?.reopen();
      return undefined;
    } catch (err) {
      // sonic-boom left its "close the old fd once the new one is open" listener: with the
      // next reopen's own, the old fd number would be closed twice (maybe someone else's by then).
      this.destination?.removeAllListeners('ready');
      return err as Error;
    }
  }

  /** SIGHUP: reopen the file at the same path (logrotate moved the old one away). */
  reopen(): void {
    this.writePending();
    const err = this.reopenFile();
    if (err)
      appLog.error(
        { file: this.file, err: String(err) },
        'request log cannot be reopened; lines still go to the file open before',
      );
    else if (this.lostToDeleted !== undefined) this.fileBack();
  }

  /** Hand the batched lines to the file now (each batch is one synchronous write). */
  flush(): void {
    this.writePending();
  }

  /**
   * Write out everything batched and close the file; resolves when it is closed. Lines
   * still held at that point (the disk is full) are given up: counted in `linesLost`
   * and said in the app log, rather than retried for ever.
   */
  async close(): Promise<void> {
    this.writePending();
    const destination = this.destination;
    const { file, held } = this;
    this.destination = undefined;
    this.held = 0;
    this.lostToDeleted = undefined;
    const unwritten = destination && !(await closeDestination(destination)) ? held : 0;
    this.linesLost += unwritten;
    if (this.group.role === 'worker') {
      await this.tellPrimary(file, unwritten);
      return;
    }
    if (unwritten > 0) sayLost(file, unwritten);
    // The primary at shutdown: what its workers could not write, once per file.
    for (const [f, lines] of this.heldByWorkers) sayLost(f, lines);
    this.heldByWorkers.clear();
  }

  /** Shutdown began: in the primary, the workers' lost lines are summed until the close. */
  drain(): void {
    this.draining = true;
  }

  /** A worker: the primary counts the group's lost lines and says them. */
  private async tellPrimary(file: string | null, held: number): Promise<void> {
    const lost = this.linesLost - this.linesTold;
    if (lost === 0) return;
    this.linesTold = this.linesLost;
    try {
      await this.group.request(LINES_LOST, { file, held, lost });
    } catch {
      if (held > 0) sayLost(file, held);
    }
  }
}

function sayLost(file: string | null, lines: number): void {
  appLog.error({ file, lines }, `${lines} request lines could not be written to ${file}`);
}

/** The destination's file was unlinked (deleted, or its directory): lines written to it are lost. */
function unlinked(destination: Destination): boolean {
  try {
    const stat = fstatSync((destination as unknown as { fd: number }).fd);
    return stat.nlink === 0 && stat.isFile();
  } catch {
    return false;
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

/**
 * End the stream: what it holds is written (synchronously), then the file is fsynced and
 * closed. Resolves false when that write fails: the stream is destroyed, since its
 * flushSync would retry an ENOSPC every 100 ms for ever, blocking the event loop. A
 * close that takes over timeoutMs (a stuck fsync) is not waited for.
 */
function closeDestination(destination: Destination, timeoutMs = 2000): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const done = (written: boolean) => {
      clearTimeout(timer);
      destination.off('error', failed);
      resolve(written);
    };
    const failed = () => {
      done(false);
      destination.destroy();
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    destination.once('close', () => done(true));
    destination.once('error', failed);
    try {
      destination.end();
    } catch {
      failed();
    }
  });
}
