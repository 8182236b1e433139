/**
 * The primary of a group of workers (`server.workers` > 1). It owns the config (reads and
 * checks it once, watches the file, handles SIGHUP/SIGTERM), starts N workers that serve
 * the port together (app/worker.ts), restarts one that dies (with backoff, said in the app
 * log), and holds what must be one for the group through the same plugins the workers run
 * (core/group.ts): governance counters, the explorer's index writer, the metrics merge,
 * minted tokens. It serves no request itself.
 *
 * Workers are this same program started again (`process.execPath`: the compiled binary,
 * or bun with the entry script), with WORKER_ENV set and BUN_FEATURE_FLAG_NO_ORPHANS, so
 * they exit with the primary. They inherit its environment, BUN_CONFIG_MAX_HTTP_REQUESTS
 * included (fetch-limit.ts raised it for the primary before anything else ran).
 */
import type { Subprocess } from 'bun';
import type { RuntimeConfig } from '../config/runtime.ts';
import type { ReloadCounts, RuntimeView } from '../core/plugin.ts';
import { appLog, applyConfiguredLevel } from '../lib/app-log.ts';
import { WORKER_ENV } from '../lib/workers.ts';
import { PluginSet } from '../plugins/index.ts';
import { shareTokens } from '../providers/auth/index.ts';
import type { Env } from './config/load.ts';
import { acceptReload, loadForReload, ReloadQueue, rejectReload } from './config/reload.ts';
import { filesRead } from './config/source.ts';
import { ConfigWatcher, TlsFileWatch } from './config/watch.ts';
import { type BoundSettings, boundSettings, logRoutesAdded, warnRestartNeeded } from './gateway.ts';
import { APPLY, CUT, INIT, LISTENING, PrimaryGroup, RELOADS, REOPEN, SHUTDOWN, type WorkerInit } from './group.ts';
import { SHUTDOWN_MARGIN_MS, type StopReport, type Supervised } from './signals.ts';

export interface PrimaryOptions {
  configPath: string | undefined;
  /** The command line's --host / --port / --workers, which override the config's. */
  host?: string;
  port?: number;
  workersSetting?: 'auto' | number;
  workers: number;
  loaded: { config: RuntimeConfig; text: string | undefined };
  /** The command line's arguments, given to every worker as they are. */
  argv: string[];
  env?: Env;
}

/** A worker slot: the process filling it now, and how its last ones fared. */
interface Slot {
  readonly index: number;
  proc: Subprocess | undefined;
  startedAt: number;
  /** Exits in a row that came soon after a start: the next restart waits longer. */
  quickExits: number;
  restart: ReturnType<typeof setTimeout> | undefined;
  /** Settles when the worker listens (or exits first). */
  listening: ReturnType<typeof Promise.withResolvers<void>> | undefined;
  exited: Promise<number> | undefined;
}

/** The primary holds no WebSocket session (its workers do). */
const NO_SESSIONS = { size: 0 };
/** A worker that lived this long had no trouble starting: its restart is not delayed further. */
const STABLE_MS = 10_000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 30_000;
/** Workers have this long to start (config compiled, port bound). */
const START_TIMEOUT_MS = 30_000;
/** The primary waits this much longer than its workers' own stop deadline before it kills them. */
const WORKER_STOP_SLACK_MS = 1000;

export class Primary implements Supervised {
  private readonly group = new PrimaryGroup();
  private readonly plugins: PluginSet;
  private readonly reloads: ReloadCounts = { success: 0, failure: 0, lastSuccessful: true };
  private readonly slots: Slot[];
  private config: RuntimeConfig;
  private text: string | undefined;
  private version = 1;
  private host: string;
  /** The port every worker binds (a configured 0 resolved once, by the primary). */
  private port = 0;
  private listenAt: BoundSettings;
  private watcher: ConfigWatcher | undefined;
  /** server.tls's files: a renewal reloads the group (each worker serves the new certificate). */
  private tlsFiles: TlsFileWatch | undefined;
  private readonly reloadQueue = new ReloadQueue((reason) => this.reloadNow(reason));
  private stopping = false;
  readonly marginMs = SHUTDOWN_MARGIN_MS + WORKER_STOP_SLACK_MS;

  private constructor(private readonly options: PrimaryOptions) {
    this.config = options.loaded.config;
    this.text = options.loaded.text;
    this.host = options.host ?? this.config.source.server.host;
    this.listenAt = boundSettings(this.config, options);
    // What the primary's metrics registry reads: it serves no request; the reloads are the group's.
    const view = (): RuntimeView => ({
      config: this.config,
      inflight: 0,
      openStreams: 0,
      sessions: NO_SESSIONS,
      reloads: this.reloads,
    });
    this.plugins = new PluginSet(view, [], this.group);
    this.slots = Array.from({ length: options.workers }, (_, i) => ({
      index: i + 1,
      proc: undefined,
      startedAt: 0,
      quickExits: 0,
      restart: undefined,
      listening: undefined,
      exited: undefined,
    }));
    this.group.on(INIT, ({ pid }) => this.init(pid));
    this.group.on(LISTENING, ({ pid, port, version }) => this.listening(pid, port, version));
  }

  static async start(options: PrimaryOptions): Promise<Primary> {
    const primary = new Primary(options);
    await primary.begin();
    return primary;
  }

  private async begin(): Promise<void> {
    // A change seen while the group starts is reloaded once it has started.
    const started = Promise.withResolvers<void>();
    this.reloadQueue.holdUntil(started.promise);
    try {
      await this.startGroup();
    } finally {
      started.resolve();
    }
  }

  private async startGroup(): Promise<void> {
    const config = this.config;
    applyConfiguredLevel(config.source.logs.level);
    for (const w of config.warnings) appLog.warn({ config: config.origin }, w);
    // Watched from now on (Bun adds the watch a moment after the call returns): an edit
    // while the workers start reaches them (a worker that starts on an older config is
    // sent the new one when it listens).
    if (this.options.configPath) {
      this.watcher = new ConfigWatcher(this.options.configPath, () => this.reload('file changed'), {
        initialText: this.text,
      });
      this.tlsFiles = new TlsFileWatch(() => this.reload('certificate file changed'));
      this.tlsFiles.follow(config);
    }
    // Tokens this process mints for its workers; the plugins hold the group's state.
    shareTokens(this.group);
    await this.plugins.pipelineFor(config);
    this.port = this.claimPort(this.options.port ?? config.source.server.port);
    try {
      await Promise.all(this.slots.map((slot) => this.spawn(slot)));
    } catch (err) {
      this.stopping = true;
      this.watcher?.close();
      this.tlsFiles?.close();
      for (const slot of this.slots) slot.proc?.kill('SIGKILL');
      await this.plugins.close();
      throw err;
    }
    appLog.info(
      {
        host: this.host,
        port: this.port,
        tls: config.serverTls !== undefined,
        config: config.origin,
        workers: this.slots.length,
      },
      'skybridge listening',
    );
  }

  /**
   * The port the workers share. A port held by another process is refused here, with the
   * error a single process gives: workers bind with SO_REUSEPORT, which would otherwise let
   * a second gateway of the same user join the port silently. Port 0 is resolved here too.
   */
  private claimPort(port: number): number {
    const probe = Bun.serve({ hostname: this.host, port, reusePort: false, fetch: () => new Response(null) });
    const bound = Number(probe.port);
    probe.stop(true);
    return bound;
  }

  get graceSeconds(): number {
    return this.config.source.server.shutdown_grace_seconds;
  }

  shutdownFields(): Record<string, unknown> {
    return { workers: this.group.readyCount };
  }

  // --- workers --------------------------------------------------------------------

  private spawn(slot: Slot): Promise<void> {
    const { argv } = this.options;
    const cmd = Bun.isStandaloneExecutable
      ? [process.execPath, ...argv]
      : [process.execPath, ...process.execArgv, process.argv[1]!, ...argv];
    const listening = Promise.withResolvers<void>();
    slot.listening = listening;
    slot.startedAt = performance.now();
    const proc = Bun.spawn(cmd, {
      env: {
        ...(this.options.env ?? process.env),
        [WORKER_ENV]: String(slot.index),
        BUN_FEATURE_FLAG_NO_ORPHANS: 'true',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
      serialization: 'json',
      ipc: (message, subprocess) => this.group.receive(subprocess.pid, message),
    });
    slot.proc = proc;
    this.group.attach(proc.pid, (message) => proc.send(message));
    slot.exited = proc.exited.then((code) => {
      this.exited(slot, proc, code);
      return code;
    });
    const timer = setTimeout(
      () => listening.reject(new Error(`worker ${slot.index} did not start within ${START_TIMEOUT_MS / 1000} s`)),
      START_TIMEOUT_MS,
    );
    return listening.promise.finally(() => clearTimeout(timer));
  }

  private slotOf(pid: number): Slot | undefined {
    return this.slots.find((s) => s.proc?.pid === pid);
  }

  private init(pid: number): WorkerInit {
    if (!this.slotOf(pid)) throw new Error(`no worker ${pid}`);
    return {
      configPath: this.options.configPath,
      text: this.text,
      files: filesRead(this.config),
      version: this.version,
      host: this.host,
      port: this.port,
      reloads: { ...this.reloads },
    };
  }

  private listening(pid: number, port: number, version: number): void {
    const slot = this.slotOf(pid);
    if (!slot) return;
    this.group.ready(pid);
    slot.listening?.resolve();
    slot.listening = undefined;
    if (port !== this.port) appLog.error({ worker: pid, port, expected: this.port }, 'worker listens on another port');
    // A reload while it started: it gets the config in force now.
    if (version !== this.version) void this.catchUp(pid);
  }

  private async catchUp(pid: number): Promise<void> {
    const payload = { text: this.text, files: filesRead(this.config), version: this.version };
    const answer = await this.group
      .ask(pid, APPLY, payload, { timeoutMs: START_TIMEOUT_MS })
      .catch((err) => ({ ok: false, error: String((err as Error).message) }));
    if (!answer.ok)
      appLog.error({ worker: pid, error: answer.error }, 'a worker started during a reload could not apply the config');
    await this.group.ask(pid, RELOADS, { ...this.reloads }).catch(() => {});
  }

  private exited(slot: Slot, proc: Subprocess, code: number): void {
    if (slot.proc !== proc) return;
    this.group.detach(proc.pid);
    slot.proc = undefined;
    const failed = slot.listening;
    slot.listening = undefined;
    if (failed) failed.reject(new Error(`worker ${slot.index} exited with code ${code} before it listened`));
    if (this.stopping) return;
    const lived = performance.now() - slot.startedAt;
    slot.quickExits = lived < STABLE_MS ? slot.quickExits + 1 : 0;
    const delay = Math.min(RESTART_MIN_MS * 2 ** Math.max(0, slot.quickExits - 1), RESTART_MAX_MS);
    appLog.error(
      {
        worker: proc.pid,
        slot: slot.index,
        exit_code: code,
        ...(proc.signalCode && { signal: proc.signalCode }),
        restart_in_ms: delay,
      },
      'worker exited; the others serve on, a new one starts',
    );
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      if (this.stopping) return;
      this.spawn(slot).then(
        () => appLog.info({ worker: slot.proc?.pid, slot: slot.index }, 'worker restarted'),
        (err) => {
          if (!this.stopping) appLog.error({ slot: slot.index, err: String(err) }, 'worker restart failed');
        },
      );
    }, delay);
  }

  // --- config -----------------------------------------------------------------------

  /** Reloads (file watch, SIGHUP) run one after the other, never interleaved. */
  reload(reason: string): Promise<boolean> {
    return this.reloadQueue.push(reason);
  }

  private async reloadNow(reason: string): Promise<boolean> {
    // A file that does not load is rejected here, once: the workers never see it.
    const loaded = await loadForReload({
      path: this.options.configPath,
      env: this.options.env ?? process.env,
      reason,
      counts: this.reloads,
    });
    if (!loaded) return this.tellReloads(false);
    const { config, text } = loaded;
    warnRestartNeeded(this.listenAt, boundSettings(config, this.options), `${this.host}:${this.port}`);
    applyConfiguredLevel(config.source.logs.level);
    try {
      // The primary's plugins first: a new explorer index is open before the workers look for it.
      await this.plugins.pipelineFor(config);
    } catch (err) {
      return this.tellReloads(rejectReload(this.reloads, { reason, error: (err as Error).message }));
    }
    this.config = config;
    this.text = text;
    this.version++;
    const answers = await this.group.gather(
      APPLY,
      { text, files: filesRead(config), version: this.version },
      { timeoutMs: START_TIMEOUT_MS },
    );
    const failed = answers.filter((a) => !a.value?.ok);
    if (failed.length > 0) {
      return this.tellReloads(
        rejectReload(this.reloads, {
          reason,
          workers: failed.map((a) => ({ worker: a.pid, error: a.value?.error ?? a.error })),
          error: `${failed.length} of ${answers.length} workers could not apply the config; they keep the one they had`,
        }),
      );
    }
    this.tlsFiles?.follow(config);
    const first = answers[0]?.value;
    if (first?.added) logRoutesAdded({ added: first.added, live: first.live ?? false });
    appLog.info({ reason, config: config.origin, workers: answers.length }, 'config reloaded');
    return this.tellReloads(acceptReload(this.reloads));
  }

  /** The workers' metrics show the group's reload counts. */
  private tellReloads(applied: boolean): boolean {
    this.group.broadcast(RELOADS, { ...this.reloads });
    return applied;
  }

  // --- signals ----------------------------------------------------------------------

  /** SIGHUP: every worker reopens the request log (the primary's own handle too). */
  async reopen(): Promise<void> {
    this.plugins.reopen();
    await this.group.gather(REOPEN, undefined);
  }

  cut(): void {
    this.group.broadcast(CUT, undefined);
  }

  /**
   * Every worker drains (stops accepting, finishes what it serves within the grace, writes
   * its log lines, hands its last explorer rows over) and exits; then the primary closes
   * what it holds. A worker still running past its own deadline is killed.
   */
  async shutdown(): Promise<StopReport> {
    this.stopping = true;
    this.watcher?.close();
    this.tlsFiles?.close();
    this.plugins.drain();
    for (const slot of this.slots) {
      clearTimeout(slot.restart);
      slot.restart = undefined;
    }
    const running = this.slots.filter((s) => s.proc);
    this.group.broadcast(SHUTDOWN, undefined);
    // A worker still starting is not in the broadcast: a signal stops it (it served
    // nothing, so how it ends is no failure of the stop).
    const starting = new Set(running.filter((s) => s.listening));
    for (const slot of starting) slot.proc?.kill('SIGTERM');
    const deadline = this.graceSeconds * 1000 + SHUTDOWN_MARGIN_MS + WORKER_STOP_SLACK_MS / 2;
    const killer = setTimeout(() => {
      for (const slot of running) slot.proc?.kill('SIGKILL');
    }, deadline);
    const codes = await Promise.all(running.map((s) => s.exited!.then((code) => (starting.has(s) ? 0 : code))));
    clearTimeout(killer);
    const workersFailed = codes.filter((c) => c !== 0).length;
    const report = await this.plugins.close();
    return { requestLinesLost: report.requestLinesLost, workersFailed };
  }
}
