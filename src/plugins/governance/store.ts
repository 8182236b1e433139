/**
 * Where governance counters live: in this process (MemoryStore, the default), in the
 * primary of a group of workers (GroupStore: the workers ask it over IPC, and it keeps a
 * MemoryStore), or in Redis (RedisStore) so that several gateway instances enforce one
 * limit.
 *
 * Both implement the same two operations, each atomic:
 * - `admit(checks)`: if every counter is below its limit, add each check's `inc` (the
 *   request counter's 1) and answer ok; otherwise change nothing and name the first
 *   counter at its limit. Refused requests therefore never use up a request slot.
 * - `add(increments)`: add usage (tokens, cost) after a request completed.
 * Every counter key names its window, so a new window starts from zero; keys expire
 * shortly after their window ended.
 */
import { RedisClient } from 'bun';
import { type Group, topic } from '../../core/group.ts';

export interface Check {
  key: string;
  limit: number;
  /** Added when admitted (1 for the request counter, 0 for read-only checks). */
  inc: number;
  /** Expiry set when `inc` is added. */
  ttlSec: number;
}

export type AdmitResult = { ok: true } | { ok: false; index: number; value: number };

export interface Increment {
  key: string;
  by: number;
  ttlSec: number;
}

export interface CounterStore {
  admit(checks: readonly Check[]): Promise<AdmitResult>;
  add(increments: readonly Increment[]): Promise<void>;
  close(): Promise<void>;
}

/** The store could not be reached or did not answer in time. */
export class StoreError extends Error {}

// --- memory -----------------------------------------------------------------

interface Cell {
  value: number;
  expiresAt: number;
}

const SWEEP_EVERY = 1000;

/** Counters in a Map: one process only. Expired windows are swept every 1000 operations. */
export class MemoryStore implements CounterStore {
  private readonly cells = new Map<string, Cell>();
  private ops = 0;

  async admit(checks: readonly Check[]): Promise<AdmitResult> {
    return this.admitSync(checks);
  }

  admitSync(checks: readonly Check[]): AdmitResult {
    const now = Date.now();
    this.maybeSweep(now);
    for (const [index, c] of checks.entries()) {
      const value = this.get(c.key, now);
      if (value >= c.limit) return { ok: false, index, value };
    }
    for (const c of checks) if (c.inc > 0) this.incr(c.key, c.inc, c.ttlSec, now);
    return { ok: true };
  }

  async add(increments: readonly Increment[]): Promise<void> {
    const now = Date.now();
    this.maybeSweep(now);
    for (const i of increments) if (i.by > 0) this.incr(i.key, i.by, i.ttlSec, now);
  }

  async close(): Promise<void> {
    // Counters survive config reloads: the plugin keeps one MemoryStore for its lifetime.
  }

  /** For tests and diagnostics: the current value of a counter. */
  peek(key: string): number {
    return this.get(key, Date.now());
  }

  get size(): number {
    return this.cells.size;
  }

  private get(key: string, now: number): number {
    const cell = this.cells.get(key);
    if (!cell) return 0;
    if (cell.expiresAt <= now) {
      this.cells.delete(key);
      return 0;
    }
    return cell.value;
  }

  private incr(key: string, by: number, ttlSec: number, now: number): void {
    const cell = this.cells.get(key);
    const expiresAt = now + ttlSec * 1000;
    if (cell && cell.expiresAt > now) {
      cell.value += by;
      cell.expiresAt = expiresAt;
    } else {
      this.cells.set(key, { value: by, expiresAt });
    }
  }

  private maybeSweep(now: number): void {
    if (++this.ops % SWEEP_EVERY !== 0) return;
    for (const [key, cell] of this.cells) if (cell.expiresAt <= now) this.cells.delete(key);
  }
}

// --- the primary of a group of workers ---------------------------------------

const ADMIT = topic<readonly Check[], AdmitResult>('governance.admit');
const ADD = topic<readonly Increment[]>('governance.add');
/** A worker waits this long for the primary's answer; then on_store_error applies. */
const GROUP_TIMEOUT_MS = 2000;

/**
 * A worker's counters: each operation is one request to the primary, which runs it on
 * its MemoryStore. Exact across workers (the primary runs one operation at a time), at
 * the cost of one IPC round trip per admitted request.
 */
export class GroupStore implements CounterStore {
  constructor(private readonly group: Group) {}

  async admit(checks: readonly Check[]): Promise<AdmitResult> {
    try {
      return await this.group.request(ADMIT, checks, { timeoutMs: GROUP_TIMEOUT_MS });
    } catch (err) {
      throw new StoreError(`the primary process did not answer: ${(err as Error).message}`);
    }
  }

  async add(increments: readonly Increment[]): Promise<void> {
    try {
      await this.group.request(ADD, increments, { timeoutMs: GROUP_TIMEOUT_MS });
    } catch (err) {
      throw new StoreError(`the primary process did not answer: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {}
}

/** The primary answers its workers' GroupStores from `memory`. */
export function serveCounters(group: Group, memory: MemoryStore): void {
  group.on(ADMIT, (checks) => memory.admitSync(checks));
  group.on(ADD, (increments) => memory.add(increments));
}

// --- redis ------------------------------------------------------------------

/**
 * KEYS: the counters; ARGV: limit, inc, ttl for each. Reads every counter first and
 * only then increments, inside one script: atomic across gateway instances.
 */
const ADMIT_SCRIPT = `
for i = 1, #KEYS do
  local v = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  if v >= tonumber(ARGV[(i - 1) * 3 + 1]) then return {i, v} end
end
for i = 1, #KEYS do
  local inc = tonumber(ARGV[(i - 1) * 3 + 2])
  if inc > 0 then
    redis.call('INCRBY', KEYS[i], inc)
    redis.call('EXPIRE', KEYS[i], ARGV[(i - 1) * 3 + 3])
  end
end
return {0, 0}
`;

/** KEYS: the counters; ARGV: amount, ttl for each. */
const ADD_SCRIPT = `
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[(i - 1) * 2 + 1])
  redis.call('EXPIRE', KEYS[i], ARGV[(i - 1) * 2 + 2])
end
return #KEYS
`;

const sha1 = (s: string) => new Bun.CryptoHasher('sha1').update(s).digest('hex');
const ADMIT_SHA = sha1(ADMIT_SCRIPT);
const ADD_SHA = sha1(ADD_SCRIPT);
const CONNECT_TIMEOUT_MIN_MS = 1000;

export interface RedisStoreOptions {
  /** Upper bound for any one operation, connecting included. */
  timeoutMs: number;
  /** After a failure, operations fail at once for this long before Redis is tried again. */
  cooldownMs?: number;
}

/**
 * Counters in Redis, through Bun's built-in client. Every operation is bounded by
 * `timeoutMs` (connecting included), so an unreachable or stalled Redis never makes a
 * request hang. Commands are not queued while disconnected; after a failure the
 * connection is dropped and, for `cooldownMs`, operations fail immediately (the plugin
 * applies `on_store_error`) instead of each paying the timeout; then a fresh connection
 * is tried. Scripts run with EVALSHA, falling back to EVAL when Redis does not know them.
 */
export class RedisStore implements CounterStore {
  private client: RedisClient | undefined;
  private connecting: Promise<RedisClient> | undefined;
  private retryAt = 0;
  private closed = false;
  private readonly cooldownMs: number;

  constructor(
    private readonly url: string,
    private readonly options: RedisStoreOptions,
  ) {
    this.cooldownMs = options.cooldownMs ?? 1000;
  }

  /** Open the connection ahead of the first request. */
  warmUp(onError: (err: unknown) => void): void {
    this.connect().catch(onError);
  }

  async admit(checks: readonly Check[]): Promise<AdmitResult> {
    const args: string[] = [];
    for (const c of checks) args.push(String(c.limit), String(c.inc), String(Math.max(1, Math.ceil(c.ttlSec))));
    const reply = await this.script(
      ADMIT_SCRIPT,
      ADMIT_SHA,
      checks.map((c) => c.key),
      args,
    );
    if (!Array.isArray(reply) || reply.length < 2)
      throw new StoreError(`unexpected reply from redis: ${JSON.stringify(reply)}`);
    const index = Number(reply[0]);
    return index === 0 ? { ok: true } : { ok: false, index: index - 1, value: Number(reply[1]) };
  }

  async add(increments: readonly Increment[]): Promise<void> {
    const live = increments.filter((i) => i.by > 0);
    if (live.length === 0) return;
    const args: string[] = [];
    for (const i of live) args.push(String(Math.round(i.by)), String(Math.max(1, Math.ceil(i.ttlSec))));
    await this.script(
      ADD_SCRIPT,
      ADD_SHA,
      live.map((i) => i.key),
      args,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    this.drop();
  }

  private async script(source: string, sha: string, keys: string[], args: string[]): Promise<unknown> {
    return this.bounded(async (client) => {
      try {
        return await client.send('EVALSHA', [sha, String(keys.length), ...keys, ...args]);
      } catch (err) {
        if (!String((err as Error)?.message ?? err).includes('NOSCRIPT')) throw err;
        return await client.send('EVAL', [source, String(keys.length), ...keys, ...args]);
      }
    });
  }

  /**
   * Run `op` on a connected client, waiting at most `timeoutMs` in all. A command that
   * fails or stalls on an open connection drops that connection and starts the
   * cool-down; a connection attempt still under way is left to finish or fail on its
   * own (its failure starts the cool-down), so a slow connect does not cost a second one.
   */
  private async bounded<T>(op: (client: RedisClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError('redis store closed');
    // Cooling down after a failure: fail at once, without extending the cool-down.
    const wait = this.retryAt - Date.now();
    if (wait > 0 && !this.client?.connected && !this.connecting)
      throw new StoreError(`redis unavailable (next attempt in ${wait} ms)`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new StoreError(`redis did not answer within ${this.options.timeoutMs} ms`)),
        this.options.timeoutMs,
      );
    });
    let used: RedisClient | undefined;
    try {
      return await Promise.race([
        this.connect().then((client) => {
          used = client;
          return op(client);
        }),
        timeout,
      ]);
    } catch (err) {
      // An error answer from a working Redis (e.g. OOM, READONLY) is no reason to reconnect.
      if (used && (err as { code?: string })?.code !== 'ERR_REDIS_SERVER_ERROR') this.failed(used);
      throw err instanceof StoreError ? err : new StoreError(`redis error: ${describe(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves when connected; rejects with the reason otherwise (diagnostics, tests). */
  async ping(): Promise<void> {
    const reply = await this.bounded((client) => client.send('PING', []));
    if (reply !== 'PONG') throw new StoreError(`unexpected PING reply: ${String(reply)}`);
  }

  private connect(): Promise<RedisClient> {
    if (this.client?.connected && !this.connecting) return Promise.resolve(this.client);
    if (this.connecting) return this.connecting;
    this.drop();
    const client = new RedisClient(this.url, {
      // Connecting (TCP, TLS, HELLO, AUTH) may take longer than one command; requests still
      // never wait longer than timeoutMs for it.
      connectionTimeout: Math.max(this.options.timeoutMs, CONNECT_TIMEOUT_MIN_MS),
      // Reconnection is ours (after the cool-down); commands never wait in a queue.
      autoReconnect: false,
      enableOfflineQueue: false,
    });
    this.client = client;
    const connecting = client.connect().then(() => client);
    this.connecting = connecting;
    connecting.then(
      () => {
        if (this.connecting === connecting) this.connecting = undefined;
      },
      () => {
        if (this.connecting === connecting) this.connecting = undefined;
        this.failed(client);
      },
    );
    return connecting;
  }

  /** Start the cool-down and drop the connection the failure happened on. */
  private failed(client: RedisClient | undefined): void {
    this.retryAt = Date.now() + this.cooldownMs;
    if (client && client === this.client) this.drop();
  }

  private drop(): void {
    const client = this.client;
    this.client = undefined;
    this.connecting = undefined;
    if (client) {
      client.onclose = null;
      try {
        client.close();
      } catch {
        // Already closed.
      }
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as Error & { code?: string }).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/** The URL with any password replaced, for log lines. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable redis_url)';
  }
}
