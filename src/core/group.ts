/**
 * The process group a gateway runs in, as plugins and providers see it. With
 * `server.workers: 1` it is this process alone (LocalGroup: everything stays in-process,
 * no message is ever serialised). With N workers, the primary process holds what must be
 * one for the group (governance counters, the explorer's index writer, minted tokens) and
 * the workers serve requests and ask it (app/group.ts carries the messages).
 *
 * A plugin states what it shares by the topics it handles and sends: it registers its
 * handlers once (`on`), asks the holder with `request`, tells the others with
 * `broadcast`, and, in the holder, asks every worker with `gather`. Nothing here is on a
 * request's path unless a plugin puts it there.
 */

/** single: one process does everything; primary: holds the shared state, serves nothing; worker: serves, asks the primary. */
export type GroupRole = 'single' | 'primary' | 'worker';

/** A message kind: its name, what it carries and what its handler answers (types only). */
export interface Topic<Payload, Reply> {
  readonly name: string;
  /** Never set: carries the payload and reply types. */
  readonly types?: (payload: Payload) => Reply;
}

export function topic<Payload = undefined, Reply = undefined>(name: string): Topic<Payload, Reply> {
  return { name };
}

export type Handler<Payload, Reply> = (payload: Payload) => Reply | Promise<Reply>;

/** One worker's answer to a gather: `value` when it answered in time, else `error`. */
export interface GatherAnswer<Reply> {
  /** The worker's process id (a restarted worker has a new one). */
  readonly pid: number;
  readonly value?: Reply;
  readonly error?: string;
}

export interface RequestOptions {
  /** Give up after this long (the answer is an error). Default: DEFAULT_REQUEST_TIMEOUT_MS. */
  timeoutMs?: number;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 5000;

export interface Group {
  readonly role: GroupRole;
  /** This process holds the group's shared state (a single process, or the primary). */
  readonly isPrimary: boolean;
  /** This process's id in the request log and app log (its pid in a worker; undefined in a single process). */
  readonly worker: number | undefined;
  /** Ask the primary (from a worker), or call this process's own handler (elsewhere). */
  request<P, R>(topic: Topic<P, R>, payload: P, options?: RequestOptions): Promise<R>;
  /**
   * Tell every other process of the group: from a worker, the primary's handler runs and
   * every other worker's; from the primary, every worker's. Nothing in a single process.
   */
  broadcast<P>(topic: Topic<P, unknown>, payload: P): void;
  /** From the primary: ask every serving process and collect their answers (a single process asks itself). */
  gather<P, R>(topic: Topic<P, R>, payload: P, options?: RequestOptions): Promise<Array<GatherAnswer<R>>>;
  /** Handle `topic` here: requests (in the holder), broadcasts and gathers (in workers). One handler per topic. */
  on<P, R>(topic: Topic<P, R>, handler: Handler<P, R>): void;
}

/** Sent by the primary's group to its own handlers when a worker has exited (its last answers are all there will be). */
export const WORKER_GONE = topic<{ pid: number }>('group.worker-gone');

/** Handlers by topic name, shared by the implementations. */
export class Handlers {
  private readonly map = new Map<string, Handler<unknown, unknown>>();

  set<P, R>(topic: Topic<P, R>, handler: Handler<P, R>): void {
    this.map.set(topic.name, handler as Handler<unknown, unknown>);
  }

  get(name: string): Handler<unknown, unknown> | undefined {
    return this.map.get(name);
  }

  /** Run the handler of `name`; rejects when there is none. */
  async run(name: string, payload: unknown): Promise<unknown> {
    const handler = this.map.get(name);
    if (!handler) throw new Error(`no handler for ${name}`);
    return handler(payload);
  }
}

/** The group of a single process: every request is answered here, broadcasts reach no one. */
export class LocalGroup implements Group {
  readonly role = 'single';
  readonly isPrimary = true;
  readonly worker = undefined;
  private readonly handlers = new Handlers();

  request<P, R>(topic: Topic<P, R>, payload: P): Promise<R> {
    return this.handlers.run(topic.name, payload) as Promise<R>;
  }

  broadcast<P>(_topic: Topic<P, unknown>, _payload: P): void {}

  async gather<P, R>(topic: Topic<P, R>, payload: P): Promise<Array<GatherAnswer<R>>> {
    return [{ pid: process.pid, value: (await this.handlers.run(topic.name, payload)) as R }];
  }

  on<P, R>(topic: Topic<P, R>, handler: Handler<P, R>): void {
    this.handlers.set(topic, handler);
  }
}
