/**
 * Request log: one NDJSON line per request, written by pino through sonic-boom (no
 * worker-thread transport: those do not run in a compiled binary). Lines are written
 * after the request completed, asynchronously; `flush()` on shutdown loses none and
 * `reopen()` on SIGHUP follows logrotate.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import pino, { type Logger } from 'pino';
import type { RuntimeConfig } from '../config/runtime.ts';
import { appLog } from '../log/app.ts';
import type { Plugin, RequestRecord } from '../pipeline/types.ts';
import { redactor } from './redact.ts';

type Destination = ReturnType<typeof pino.destination>;

export class RequestLogPlugin implements Plugin {
  readonly name = 'logging';
  private file: string | null = null;
  private destination: Destination | undefined;
  private logger: Logger | undefined;
  private redact: (text: string) => string = (t) => t;
  private contentMax = 0;

  /** Apply a (re)loaded config: opens a new file only when the path changed. */
  configure(config: RuntimeConfig): void {
    const file = config.source.logs.file || null;
    this.redact = redactor(config);
    this.contentMax = config.source.logs.content_max_bytes;
    if (file === this.file) return;
    void this.close();
    this.file = file;
    if (!file) return;
    mkdirSync(dirname(file), { recursive: true });
    this.destination = pino.destination({ dest: file, sync: false, mkdir: true });
    this.destination.on('error', (err: Error) => appLog.error({ err: String(err), file }, 'request log write failed'));
    this.logger = pino(
      { base: null, timestamp: false, formatters: { level: () => ({ log: 'request' }) } },
      this.destination,
    );
  }

  onComplete(record: RequestRecord): void {
    if (!this.logger) return;
    const { retries, request_body, response_body, ...line } = record;
    const out: Record<string, unknown> = line;
    if (retries.length > 0) out.retries = retries;
    if (request_body !== undefined) out.request_body = this.content(request_body);
    if (response_body !== undefined) out.response_body = this.content(response_body);
    this.logger.info(out);
  }

  private content(text: string): string {
    const clipped = text.length > this.contentMax ? `${text.slice(0, this.contentMax)}…[truncated ${text.length - this.contentMax} chars]` : text;
    return this.redact(clipped);
  }

  /** SIGHUP: reopen the file at the same path (logrotate moved the old one away). */
  reopen(): void {
    this.destination?.reopen();
  }

  flush(): void {
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
    const destination = this.destination;
    this.destination = undefined;
    this.logger = undefined;
    return destination ? closeDestination(destination) : Promise.resolve();
  }
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
