/**
 * Filling the index from the NDJSON request log: the whole file when the index is new
 * (missing, unreadable, other schema), or only its tail when the index exists (lines the
 * index missed while the gateway stopped between writing the log and the next flush).
 * Reads in chunks and yields to the event loop between batches, so a large log does not
 * hold up requests while it is read.
 */
import { existsSync, statSync } from 'node:fs';
import { type IndexRow, type LogStore, rowFromLine } from './store.ts';

const BATCH = 2000;

export interface IngestResult {
  lines: number;
  added: number;
  /** Lines that were not JSON request records. */
  skipped: number;
}

export interface IngestOptions {
  /** Start reading at this byte offset (the partial line there is skipped). */
  offset?: number;
  /** Lines with an older `time` (epoch ms) are not indexed (retention). */
  minTs: number;
  /** Checked between batches: false stops the ingestion (the store was replaced). */
  alive?: () => boolean;
  /** Called after each batch written (retention, so a long log never piles up in the index). */
  afterBatch?: () => unknown;
}

export async function ingestFile(store: LogStore, file: string, opts: IngestOptions): Promise<IngestResult> {
  const result: IngestResult = { lines: 0, added: 0, skipped: 0 };
  if (!existsSync(file)) return result;
  const size = statSync(file).size;
  const offset = Math.max(0, Math.min(opts.offset ?? 0, size));
  const alive = opts.alive ?? (() => true);
  const decoder = new TextDecoder();
  let pending = '';
  let skipFirst = offset > 0;
  let batch: IndexRow[] = [];

  const flush = async (): Promise<boolean> => {
    if (batch.length > 0) {
      if (!alive()) return false;
      result.added += store.insert(batch);
      batch = [];
      await opts.afterBatch?.();
    }
    await Bun.sleep(0);
    return alive();
  };

  const take = (line: string): void => {
    if (!line) return;
    result.lines++;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      result.skipped++;
      return;
    }
    const row =
      parsed && typeof parsed === 'object' && !Array.isArray(parsed)
        ? rowFromLine(parsed as Record<string, unknown>)
        : undefined;
    if (!row) {
      result.skipped++;
      return;
    }
    if (row.ts >= opts.minTs) batch.push(row);
  };

  // Only the bytes present now: lines appended meanwhile reach the index through the plugin.
  const reader = Bun.file(file).slice(offset, size).stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let start = 0;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n', start)) {
      const line = pending.slice(start, nl);
      start = nl + 1;
      if (skipFirst) {
        skipFirst = false;
        continue;
      }
      take(line);
    }
    pending = pending.slice(start);
    if (batch.length >= BATCH && !(await flush())) {
      await reader.cancel();
      return result;
    }
  }
  pending += decoder.decode();
  // A last line without its newline may be half written; it is indexed only if it parses.
  if (!skipFirst && pending.trim()) take(pending.trim());
  await flush();
  return result;
}
