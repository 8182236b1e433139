/**
 * The two ends of a process group with N workers (core/group.ts is what plugins see):
 * PrimaryGroup in the primary, one channel per worker; WorkerGroup in each worker, one
 * channel to the primary. A worker's broadcast goes to the primary, which runs its own
 * handler for it and relays it to every other worker.
 */
import {
  type GatherAnswer,
  type Group,
  type Handler,
  Handlers,
  type RequestOptions,
  type Topic,
  topic,
  WORKER_GONE,
} from '../core/group.ts';
import type { ReloadCounts } from '../core/plugin.ts';
import { appLog } from '../lib/app-log.ts';
import { Channel, isWire, type Wire } from './ipc.ts';

// --- the process-level messages (the plugins' own are in their folders) ---------------

/** What a starting worker needs: the config text the primary checked, where to listen. */
export interface WorkerInit {
  configPath: string | undefined;
  /** undefined: the built-in default config. */
  text: string | undefined;
  /** The files it names that the primary read with it (source.ts filesRead). */
  files: Record<string, string>;
  /** Which config this is (the primary counts them): a reload during the worker's start is sent again. */
  version: number;
  host: string;
  port: number;
  reloads: ReloadCounts;
}

/** A worker starts: its config and address. */
export const INIT = topic<{ pid: number }, WorkerInit>('worker.init');
/** A worker listens (on `port`, with config `version`). */
export const LISTENING = topic<{ pid: number; port: number; version: number }>('worker.listening');
/** The primary checked a config: each worker compiles and applies it (or says why not). */
export const APPLY = topic<
  { text: string | undefined; files: Record<string, string>; version: number },
  { ok: boolean; error?: string; added?: string[]; live?: boolean }
>('worker.apply');
/** The group's reload counts (the metrics of every worker show them). */
export const RELOADS = topic<ReloadCounts>('worker.reloads');
/** SIGHUP: reopen the request log. */
export const REOPEN = topic('worker.reopen');
/** SIGTERM/SIGINT: drain and exit; a second signal: cut what is left. */
export const SHUTDOWN = topic('worker.shutdown');
export const CUT = topic('worker.cut');
/** A key rests after a 429 (keys/pool.ts): every worker's pool passes it over too. */
export const KEY_REST = topic<{ provider: string; key: number; name: string; model: string; until: number }>(
  'worker.key-rest',
);

interface Member {
  readonly pid: number;
  readonly channel: Channel;
  /** Listening and configured: included in broadcasts and gathers. */
  ready: boolean;
}

export class PrimaryGroup implements Group {
  readonly role = 'primary';
  readonly isPrimary = true;
  readonly worker = undefined;
  private readonly handlers = new Handlers();
  private readonly members = new Map<number, Member>();

  /** A worker was spawned: its channel (feed it the worker's messages with `receive`). */
  attach(pid: number, send: (message: Wire) => void): void {
    const channel = new Channel(send, this.handlers, (topic, payload) => this.relay(pid, topic, payload));
    this.members.set(pid, { pid, channel, ready: false });
  }

  receive(pid: number, message: unknown): void {
    if (isWire(message)) this.members.get(pid)?.channel.receive(message);
  }

  /** The worker serves: broadcasts and gathers include it from now on. */
  ready(pid: number): void {
    const m = this.members.get(pid);
    if (m) m.ready = true;
  }

  /** The worker exited: what waits on it fails now; handlers of WORKER_GONE learn it. */
  detach(pid: number): void {
    const m = this.members.get(pid);
    if (!m) return;
    this.members.delete(pid);
    m.channel.close();
    const gone = this.handlers.get(WORKER_GONE.name);
    if (gone) void Promise.resolve(gone({ pid })).catch(() => {});
  }

  /** Ask one worker (not only a ready one: a worker still starting is asked for its config too). */
  ask<P, R>(pid: number, topic: Topic<P, R>, payload: P, options?: RequestOptions): Promise<R> {
    const m = this.members.get(pid);
    if (!m) return Promise.reject(new Error(`worker ${pid} is gone`));
    return m.channel.request(topic.name, payload, options?.timeoutMs) as Promise<R>;
  }

  get readyCount(): number {
    let n = 0;
    for (const m of this.members.values()) if (m.ready) n++;
    return n;
  }

  request<P, R>(topic: Topic<P, R>, payload: P): Promise<R> {
    return this.handlers.run(topic.name, payload) as Promise<R>;
  }

  broadcast<P>(topic: Topic<P, unknown>, payload: P): void {
    for (const m of this.members.values()) if (m.ready) m.channel.cast(topic.name, payload);
  }

  gather<P, R>(topic: Topic<P, R>, payload: P, options?: RequestOptions): Promise<Array<GatherAnswer<R>>> {
    const asked = [...this.members.values()].filter((m) => m.ready);
    return Promise.all(
      asked.map((m) =>
        m.channel.request(topic.name, payload, options?.timeoutMs).then(
          (value) => ({ pid: m.pid, value: value as R }),
          (err) => ({ pid: m.pid, error: String((err as Error)?.message ?? err) }),
        ),
      ),
    );
  }

  on<P, R>(topic: Topic<P, R>, handler: Handler<P, R>): void {
    this.handlers.set(topic, handler);
  }

  /** A worker's broadcast: the primary's own handler, then every other worker. */
  private relay(from: number, topic: string, payload: unknown): void {
    runCast(this.handlers, topic, payload);
    for (const m of this.members.values()) if (m.ready && m.pid !== from) m.channel.cast(topic, payload);
  }
}

export class WorkerGroup implements Group {
  readonly role = 'worker';
  readonly isPrimary = false;
  readonly worker = process.pid;
  private readonly handlers = new Handlers();
  private readonly channel: Channel;

  /** Listens at once: a message the primary sends before this worker asks anything is not lost. */
  constructor() {
    const send = process.send?.bind(process);
    if (!send) throw new Error('a worker needs the IPC channel to its primary');
    this.channel = new Channel(
      (message) => {
        send(message);
      },
      this.handlers,
      (topic, payload) => runCast(this.handlers, topic, payload),
    );
    process.on('message', (message: unknown) => {
      if (isWire(message)) this.channel.receive(message);
    });
    process.on('disconnect', () => this.channel.close());
  }

  request<P, R>(topic: Topic<P, R>, payload: P, options?: RequestOptions): Promise<R> {
    return this.channel.request(topic.name, payload, options?.timeoutMs) as Promise<R>;
  }

  broadcast<P>(topic: Topic<P, unknown>, payload: P): void {
    this.channel.cast(topic.name, payload);
  }

  gather(): Promise<never> {
    return Promise.reject(new Error('only the primary gathers'));
  }

  on<P, R>(topic: Topic<P, R>, handler: Handler<P, R>): void {
    this.handlers.set(topic, handler);
  }
}

function runCast(handlers: Handlers, topic: string, payload: unknown): void {
  const handler = handlers.get(topic);
  if (!handler) return;
  try {
    void Promise.resolve(handler(payload)).catch((err) =>
      appLog.warn({ topic, err: String((err as Error)?.message ?? err) }, 'group message handler failed'),
    );
  } catch (err) {
    appLog.warn({ topic, err: String((err as Error)?.message ?? err) }, 'group message handler failed');
  }
}
