/**
 * Following the request log as its writers append to it: the primary of a group of
 * workers indexes their requests from the file they all append to, so a worker does no
 * explorer work per request. Each call returns the whole lines appended since the last
 * (writers append whole batches of lines with O_APPEND, so a line is never mixed with
 * another; the last bytes without their newline are a batch being written, kept for the
 * next call).
 *
 * The file is followed across rotations: when its path names another file (logrotate
 * moved it away, or it was deleted and made again), the new one is read from its start
 * while the old one is still read as long as it grows (workers write to it until their
 * SIGHUP reopen) and let go after RETIRE_QUIET_MS without new bytes. A file that shrank
 * (copytruncate) is read again from its start. A reader more than MAX_LAG_BYTES behind
 * skips ahead and says how much it skipped: the index then misses those requests, the
 * log keeps them.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';

const RETIRE_QUIET_MS = 10_000;
export const MAX_LAG_BYTES = 64 * 1024 * 1024;
const NEWLINE = 0x0a;

interface Reader {
  fd: number;
  ino: number;
  offset: number;
  /** Bytes after the last newline read: the start of a line still being written. */
  partial: Buffer | undefined;
  lastGrowth: number;
}

export interface TailRead {
  lines: string[];
  /** Bytes skipped because the reader was too far behind. */
  skipped: number;
  /** More bytes are waiting than this call was allowed to read. */
  more: boolean;
}

export class LogTail {
  private current: Reader | undefined;
  private retiring: Reader[] = [];
  private readonly decoder = new TextDecoder();

  /** Follow `file` from byte `offset` (the end of what was read before). */
  constructor(
    readonly file: string,
    offset: number,
  ) {
    this.current = this.open(offset);
  }

  /** Whole lines appended since the last call; at most about `maxBytes` read. */
  read(maxBytes: number): TailRead {
    const out: TailRead = { lines: [], skipped: 0, more: false };
    this.follow();
    let budget = maxBytes;
    for (const r of [...this.retiring, ...(this.current ? [this.current] : [])]) {
      budget -= this.readFrom(r, budget, out);
      if (budget <= 0) out.more = true;
    }
    const now = performance.now();
    this.retiring = this.retiring.filter((r) => {
      if (now - r.lastGrowth < RETIRE_QUIET_MS) return true;
      closeSync(r.fd);
      return false;
    });
    return out;
  }

  close(): void {
    for (const r of [...this.retiring, ...(this.current ? [this.current] : [])]) closeSync(r.fd);
    this.retiring = [];
    this.current = undefined;
  }

  /** The path names another file now: read that one from its start, keep the old one for a while. */
  private follow(): void {
    const ino = statSync(this.file, { throwIfNoEntry: false })?.ino;
    if (ino === undefined || ino === this.current?.ino) return;
    if (this.current) this.retiring.push(this.current);
    this.current = this.open(0);
  }

  private open(offset: number): Reader | undefined {
    let fd: number;
    try {
      fd = openSync(this.file, 'r');
    } catch {
      return undefined; // not there yet: the writers make it
    }
    return { fd, ino: fstatSync(fd).ino, offset, partial: undefined, lastGrowth: performance.now() };
  }

  /** Read `r` up to `budget` bytes into `out`; returns the bytes read. */
  private readFrom(r: Reader, budget: number, out: TailRead): number {
    const size = fstatSync(r.fd).size;
    if (size < r.offset) {
      // Truncated in place (copytruncate): what is there now is new.
      r.offset = 0;
      r.partial = undefined;
    }
    if (size - r.offset > MAX_LAG_BYTES) {
      const to = size - MAX_LAG_BYTES / 16;
      out.skipped += to - r.offset;
      r.offset = to;
      // The first line from there on is cut: skipped with the rest.
      r.partial = Buffer.from('\u0000');
    }
    const length = Math.min(size - r.offset, Math.max(0, budget));
    if (length <= 0) return 0;
    const bytes = Buffer.allocUnsafe(length);
    const n = readSync(r.fd, bytes, 0, length, r.offset);
    r.offset += n;
    r.lastGrowth = performance.now();
    const chunk = r.partial ? Buffer.concat([r.partial, bytes.subarray(0, n)]) : bytes.subarray(0, n);
    const end = chunk.lastIndexOf(NEWLINE);
    if (end < 0) {
      r.partial = chunk;
      return n;
    }
    r.partial = end + 1 < chunk.length ? Buffer.from(chunk.subarray(end + 1)) : undefined;
    let lines = this.decoder.decode(chunk.subarray(0, end)).split('\n');
    // A line cut by a skip ahead starts with the marker: dropped.
    if (lines[0]?.startsWith('\u0000')) lines = lines.slice(1);
    for (const line of lines) if (line) out.lines.push(line);
    return n;
  }
}
