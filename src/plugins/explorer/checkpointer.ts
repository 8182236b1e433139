/**
 * The explorer index's WAL checkpoints, on a thread of their own (a `Worker` the writing
 * LogStore starts). A checkpoint copies the WAL into the database file and fsyncs it,
 * which on a busy disk blocks for milliseconds; run inside a commit on the request
 * thread (SQLite's automatic checkpoint) it stalled every request behind it (c=1 p99
 * 12-13 ms against 4-5 ms without, docs/performance.md). Here it runs on its own
 * connection every CHECKPOINT_MS, PASSIVE: it never waits for the writer, which goes on
 * appending to the WAL meanwhile.
 *
 * Messages: `{ path }` starts it on that database; `'stop'` runs a last checkpoint,
 * closes the connection and answers `'stopped'`.
 */
import { Database } from 'bun:sqlite';

declare const self: Worker;

const CHECKPOINT_MS = 1000;

let db: Database | undefined;
let timer: ReturnType<typeof setInterval> | undefined;

function checkpoint(): void {
  try {
    db?.exec('PRAGMA wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or gone: the next tick tries again, and the writer's close checkpoints anyway.
  }
}

self.onmessage = (event: MessageEvent<{ path: string } | 'stop'>) => {
  if (event.data === 'stop') {
    clearInterval(timer);
    checkpoint();
    db?.close();
    db = undefined;
    postMessage('stopped');
    return;
  }
  db = new Database(event.data.path, { strict: true });
  db.exec('PRAGMA busy_timeout = 2000');
  timer = setInterval(checkpoint, CHECKPOINT_MS);
};
