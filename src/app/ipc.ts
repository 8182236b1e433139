/**
 * Messages between the primary and one worker over Bun's IPC channel (`Bun.spawn({ ipc })`
 * in the primary, `process.send` / `process.on('message')` in the worker), JSON-serialised
 * (a round trip costs ~70 us on 2 vCPU; docs/performance.md). Three kinds: a request
 * (answered by id), its reply, and a cast (no answer). `process.send` reports no
 * backpressure, so callers never send one message per request served, except the
 * governance admits, which wait for their answer anyway.
 */
import { DEFAULT_REQUEST_TIMEOUT_MS, type Handlers } from '../core/group.ts';

export type Wire =
  | { readonly k: 'req'; readonly id: number; readonly topic: string; readonly payload: unknown }
  | { readonly k: 'res'; readonly id: number; readonly value?: unknown; readonly error?: string }
  | { readonly k: 'cast'; readonly topic: string; readonly payload: unknown };

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
      try {
        this.send({ k: 'req', id, topic, payload });
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new ChannelError(`${topic}: ${(err as Error).message}`));
      }
    });
  }

  cast(topic: string, payload: unknown): void {
    if (this.closed) return;
    try {
      this.send({ k: 'cast', topic, payload });
    } catch {
      // The other process is exiting: a cast is a hint, its loss is harmless.
    }
  }

  /** A message from the other end. */
  receive(message: Wire): void {
    switch (message.k) {
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
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new ChannelError('the other process is gone'));
      this.pending.delete(id);
    }
  }

  private reply(message: Wire): void {
    if (this.closed) return;
    try {
      this.send(message);
    } catch {
      // Exiting: the requester's timeout or close() answers it.
    }
  }
}

/** A message from the channel is one of ours (anything else is ignored). */
export function isWire(message: unknown): message is Wire {
  const k = (message as { k?: unknown } | null)?.k;
  return k === 'req' || k === 'res' || k === 'cast';
}
