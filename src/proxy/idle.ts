/**
 * Ends upstream bodies that went silent for longer than their limit. One timer sweeps
 * every body being read (streamed or read whole) each second, instead of a timer reset
 * per chunk.
 */
export interface IdleWatch {
  lastActivity: number;
  readonly timeoutMs: number;
  onIdle(): void;
}

const watched = new Set<IdleWatch>();
let timer: ReturnType<typeof setInterval> | undefined;

function sweep(): void {
  const now = performance.now();
  for (const w of watched) {
    if (now - w.lastActivity > w.timeoutMs) {
      watched.delete(w);
      w.onIdle();
    }
  }
  if (watched.size === 0 && timer) {
    clearInterval(timer);
    timer = undefined;
  }
}

export function watchIdle(w: IdleWatch): void {
  watched.add(w);
  if (!timer) {
    timer = setInterval(sweep, Math.min(1000, Math.max(50, w.timeoutMs / 4)));
    timer.unref?.();
  }
}

export function unwatchIdle(w: IdleWatch): void {
  watched.delete(w);
}

/** Watches a body read through `reader`: once silent too long, the read is cancelled and `fired` says why. */
export class ReaderWatch implements IdleWatch {
  lastActivity = performance.now();
  fired = false;

  constructor(
    readonly timeoutMs: number,
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
  ) {}

  onIdle(): void {
    this.fired = true;
    this.reader.cancel().catch(() => {});
  }
}
