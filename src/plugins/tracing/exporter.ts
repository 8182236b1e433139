/**
 * Batched OTLP/HTTP export. A finished request queues one item (references, nothing
 * encoded); once 64 are waiting, or a second after the first, the batch is encoded in
 * one loop straight into a reused buffer and sent, one export at a time, off the
 * requests' own turns. Why 64: encoding a batch in one tight loop costs less than
 * encoding each request as it completes, but holding finished requests longer costs
 * more in the garbage collector (measured under wrk load, scripts/bench/ab.ts: batches
 * of 1,024 cost ~40 us more per request than batches of 32; 32 and 256 were within the
 * noise). While an export runs up to 2,048 requests wait, then new ones are dropped
 * rather than let memory grow; a failing collector costs one warning a minute, never a
 * request.
 */
import { WarnLimiter } from '../shared/warn-limiter.ts';
import { ByteWriter } from './byte-writer.ts';
import type { BatchEnvelope, OtlpEncoding } from './encoding.ts';

const EXPORT_AT_ITEMS = 64;
const MAX_PENDING_ITEMS = 2048;
const BUFFER_BYTES = 1024 * 1024;
/** A buffer that grew past this (a burst while the collector was slow) is not kept. */
const MAX_KEPT_BYTES = 8 * 1024 * 1024;
const EXPORT_DELAY_MS = 1000;
const EXPORT_TIMEOUT_MS = 10_000;
const WARN_EVERY_MS = 60_000;
const warnings = new WarnLimiter(WARN_EVERY_MS);

/** Writes one item's spans (with `encoding.separator` between them); returns how many. */
export type SpanEncoder<T> = (w: ByteWriter, item: T) => number;

export class OtlpExporter<T> {
  private pending: T[] = [];
  private writer = new ByteWriter(BUFFER_BYTES);
  private timer: ReturnType<typeof setTimeout> | undefined;
  private soon: ReturnType<typeof setImmediate> | undefined;
  private running: Promise<void> | undefined;
  private readonly headers: Record<string, string>;
  /** Span counters for diagnostics (and tests); `dropped` counts items. */
  exported = 0;
  dropped = 0;
  failed = 0;

  constructor(
    readonly endpoint: string,
    headers: Record<string, string>,
    private readonly encoding: OtlpEncoding,
    /** The ExportTraceServiceRequest around each batch (resource, scope). */
    private readonly envelope: BatchEnvelope,
    private readonly encode: SpanEncoder<T>,
  ) {
    this.headers = { ...headers, 'content-type': encoding.contentType };
  }

  add(item: T): void {
    if (this.pending.length >= MAX_PENDING_ITEMS) {
      this.dropped++;
      return;
    }
    this.pending.push(item);
    if (this.pending.length >= EXPORT_AT_ITEMS) {
      // Export on a later turn, not inside the request completion that filled the batch.
      this.soon ??= setImmediate(() => {
        this.soon = undefined;
        this.kick();
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.kick(), EXPORT_DELAY_MS);
      this.timer.unref?.();
    }
  }

  /** Export everything queued; resolves when nothing is pending and no export runs. */
  async flush(): Promise<void> {
    while (this.pending.length > 0 || this.running) {
      this.kick();
      await this.running;
    }
  }

  private kick(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.running) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      if (this.pending.length > 0 && !this.timer) {
        this.timer = setTimeout(() => this.kick(), EXPORT_DELAY_MS);
        this.timer.unref?.();
      }
    });
  }

  private async drain(): Promise<void> {
    do await this.send();
    while (this.pending.length >= EXPORT_AT_ITEMS);
  }

  private async send(): Promise<void> {
    const items = this.pending;
    if (items.length === 0) return;
    this.pending = [];
    const w = this.writer;
    w.len = 0;
    this.envelope.open(w);
    let spans = 0;
    for (let i = 0; i < items.length; i++) {
      const mark = w.len;
      if (spans > 0) w.raw(this.encoding.separator);
      try {
        spans += this.encode(w, items[i]!);
      } catch (err) {
        // One bad item must not spoil the batch.
        w.len = mark;
        this.warn('a span could not be encoded; dropped', { err: String(err) });
      }
    }
    const body = this.envelope.close(w);
    try {
      const res = await fetch(this.endpoint, {
        method: 'POST',
        headers: this.headers,
        body,
        signal: AbortSignal.timeout(EXPORT_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      this.exported += spans;
    } catch (err) {
      this.failed += spans;
      this.warn('trace export failed; spans dropped', {
        endpoint: this.endpoint,
        spans,
        err: (err as Error).message ?? String(err),
      });
    } finally {
      // The export is over (answered or aborted), so the buffer is free again.
      if (w.buf.length > MAX_KEPT_BYTES) this.writer = new ByteWriter(BUFFER_BYTES);
    }
  }

  private warn(msg: string, fields: Record<string, unknown>): void {
    warnings.warn(fields, msg);
  }
}
