/**
 * Messages between the primary and one worker over Bun's IPC channel (`Bun.spawn({ ipc })`
 * in the primary, `process.send` / `process.on('message')` in the worker), JSON-serialised
 * (a round trip costs ~70 us on 2 vCPU; docs/performance.md). Three kinds: a request
 * (answered by id), its reply, and a cast (no answer). `process.send` reports no
 * backpressure, so callers never send one message per request served, except the
 * governance admits, which wait for their answer anyway.
 *
 * What one turn of the event loop sends goes as one message (`batch`), sent when the
 * turn's callbacks are done (setImmediate): under load the admits of the requests a turn
 * took in share one write, one read and one wake-up of the other process.
 */
import { DEFAULT_REQUEST_TIMEOUT_MS, type Handlers } from '../core/group.ts';

type One =
  | { readonly k: 'req'; readonly id: number; readonly topic: string; readonly payload: unknown }
  | { readonly k: 'res'; readonly id: number; readonly value?: unknown; readonly error?: string }
  | { readonly k: 'cast'; readonly topic: string; readonly payload: unknown };

export type Wire = One | { readonly k: 'batch'; readonly items: readonly One[] };

/** The channel closed (the other process exited) or the answer did not come in time. */
export class ChannelError extends Error {}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/**
 * One end of a channel: requests by id with a timeout, handlers for the other end's
 * requests, and casts handed to `onCast` (the primary relays a worker's cast to the others).
 */
export class Channel {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  /** What this turn of the event loop sends. */
  private outbox: One[] = [];
  private readonly flush = () => {
    const items = this.outbox;
    this.outbox = [];
    if (this.closed || items.length === 0) return;
    try {
      this.send(items.length === 1 ? items[0]! : { k: 'batch', items });
    } catch (err) {
      // Exiting: requests among them fail now rather than at their timeout.
      for (const m of items)
        if (m.k === 'req') this.fail(m.id, new ChannelError(`${m.topic}: ${(err as Error).message}`));
    }
  };

  constructor(
    private readonly send: (message: Wire) => void,
    private readonly handlers: Handlers,
    private readonly onCast: (topic: string, payload: unknown) => void,
  ) {}

  request(topic: string, payload: unknown, timeoutMs = DEFAULT_REQUEST_TIMEOUT_MS): Promise<unknown> {
    if (this.closed) return Promise.reject(new ChannelError(`${topic}: the other process is gone`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ChannelError(`${topic}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.enqueue({ k: 'req', id, topic, payload });
    });
  }

  /** A hint (the other process exiting may lose it). */
  cast(topic: string, payload: unknown): void {
    if (!this.closed) this.enqueue({ k: 'cast', topic, payload });
  }

  /** A message from the other end. */
  receive(message: Wire): void {
    switch (message.k) {
      case 'batch':
        for (const item of message.items) this.receive(item);
        return;
      case 'res': {
        const p = this.pending.get(message.id);
        if (!p) return; // timed out already
        this.pending.delete(message.id);
        clearTimeout(p.timer);
        if (message.error !== undefined) p.reject(new Error(message.error));
        else p.resolve(message.value);
        return;
      }
      case 'req':
        this.handlers.run(message.topic, message.payload).then(
          (value) => this.reply({ k: 'res', id: message.id, value }),
          (err) => this.reply({ k: 'res', id: message.id, error: String((err as Error)?.message ?? err) }),
        );
        return;
      case 'cast':
        this.onCast(message.topic, message.payload);
        return;
    }
  }

  /** The other process is gone: every request waiting on it fails now. */
  close(): void {
    this.closed = true;
    this.outbox = [];
    for (const id of [...this.pending.keys()]) this.fail(id, new ChannelError('the other process is gone'));
  }

  private fail(id: number, err: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(id);
    p.reject(err);
  }

  private reply(message: One): void {
    if (!this.closed) this.enqueue(message);
  }

  private enqueue(message: One): void {
    if (this.outbox.push(message) === 1) setImmediate(this.flush);
  }
}

/** A message from the channel is one of ours (anything else is ignored). */
export function isWire(message: unknown): message is Wire {
  const k = (message as { k?: unknown } | null)?.k;
  return k === 'req' || k === 'res' || k === 'cast' || k === 'batch';
}
