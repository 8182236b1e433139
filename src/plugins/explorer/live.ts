/**
 * The explorer's live feed (/api/logs/stream): SSE subscribers that get each indexed
 * request matching their filter, a keepalive comment every 15 s, and a subscriber that
 * falls too far behind is disconnected rather than buffered without bound.
 */
import { jsonError } from '../../core/errors.ts';
import { appLog } from '../../lib/app-log.ts';
import type { LiveRow, LogFilter } from './store.ts';

const KEEPALIVE_MS = 15_000;
/** A live subscriber this far behind (bytes queued, unread) is disconnected. */
const MAX_SUBSCRIBER_BACKLOG = 4 * 1024 * 1024;
const encoder = new TextEncoder();

interface Subscriber {
  filter: LogFilter;
  controller: ReadableStreamDefaultController<Uint8Array>;
}

export class LiveFeed {
  private readonly subscribers = new Set<Subscriber>();
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private draining = false;

  /** An SSE response that receives every indexed request matching `filter`. */
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
      headers: {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-accel-buffering': 'no',
      },
    });
  }

  get size(): number {
    return this.subscribers.size;
  }

  /**
   * Shutdown began: end the live streams (the page's EventSource reconnects to the next
   * process), which would otherwise hold the server's drain for the whole grace period.
   */
  drain(): void {
    this.draining = true;
    this.closeAll();
  }

  closeAll(): void {
    for (const sub of [...this.subscribers]) this.unsubscribe(sub, true);
  }

  broadcast(rows: readonly LiveRow[]): void {
    if (this.subscribers.size === 0 || rows.length === 0) return;
    for (const sub of this.subscribers) {
      let text = '';
      for (const row of rows) if (matches(sub.filter, row)) text += `event: request\ndata: ${row.record}\n\n`;
      if (text) this.write(sub, encoder.encode(text));
    }
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

  private send(text: string): void {
    const bytes = encoder.encode(text);
    for (const sub of this.subscribers) this.write(sub, bytes);
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
}

/** The stream's filter, applied to a row in memory (same meaning as the SQL one). */
export function matches(f: LogFilter, row: LiveRow): boolean {
  if (f.from !== undefined && row.ts < f.from) return false;
  if (f.to !== undefined && row.ts > f.to) return false;
  if (f.provider !== undefined && row.provider !== f.provider) return false;
  if (f.model !== undefined && row.model !== f.model) return false;
  if (f.statusMin !== undefined && f.statusMax !== undefined && (row.status < f.statusMin || row.status > f.statusMax))
    return false;
  if (f.virtualKey !== undefined && row.virtual_key !== f.virtualKey) return false;
  if (f.outcome !== undefined && row.outcome !== f.outcome) return false;
  if (f.q !== undefined && !(row.path ?? '').includes(f.q)) return false;
  return true;
}
