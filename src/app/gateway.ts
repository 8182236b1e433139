/**
 * A running gateway: the server, the config in force, the plugins, reloads and
 * graceful shutdown. main.ts and the tests both start gateways through this.
 */
import type { Server } from 'bun';
import type { RuntimeConfig } from '../config/runtime.ts';
import { type Group, LocalGroup } from '../core/group.ts';
import { Pipeline } from '../core/pipeline.ts';
import type { StaticPlugin } from '../core/plugin.ts';
import type { GatewayState } from '../core/runtime.ts';
import { createApp, PassthroughRoutes } from '../http/app.ts';
import { Listener } from '../http/listener.ts';
import { appLog, applyConfiguredLevel } from '../lib/app-log.ts';
import { PluginSet, type ShutdownReport } from '../plugins/index.ts';
import type { Env } from './config/load.ts';
import { acceptReload, loadForReload, ReloadQueue, rejectReload } from './config/reload.ts';
import { loadRuntimeConfig } from './config/source.ts';
import { ConfigWatcher, TlsFileWatch } from './config/watch.ts';

export interface GatewayOptions {
  /** Config file path; undefined = built-in default. */
  configPath: string | undefined;
  host?: string;
  port?: number;
  env?: Env;
  /** Extra plugins (embedding, tests), always on, run after the built-in ones. */
  plugins?: StaticPlugin[];
  /** Reload when the config file changes (default true; needs configPath). */
  watch?: boolean;
  /** The config, already loaded (the CLI read it to count workers; a worker got it from its primary). */
  loaded?: { config: RuntimeConfig; text: string | undefined };
  /** The process group (default: this process alone). */
  group?: Group;
  /** Share the port with the other workers (SO_REUSEPORT); off for a single process. */
  sharedPort?: boolean;
  /** The command line's --workers, which overrides server.workers (a change of either needs a restart). */
  workersSetting?: 'auto' | number;
}

/** What applying a config did: the routes it added, or why the plugins refused it. */
export type ApplyResult = { ok: true; routes: { added: string[]; live: boolean } } | { ok: false; error: string };

/** What was bound at start, which a reload cannot change, by setting (`server.<name>`). */
export type BoundSettings = Record<string, string | number | boolean>;

/** How long sessions closed at the end of the grace period get to finish their closing handshake. */
const SESSION_CLOSE_WAIT_MS = 1000;

export class Gateway {
  private watcher: ConfigWatcher | undefined;
  /** server.tls's files, re-read when they change (a renewed certificate). */
  private tlsFiles: TlsFileWatch | undefined;
  /** What the server was started with (CLI or config): changing these needs a restart. */
  private listenAt: BoundSettings = {};
  private readonly reloads = new ReloadQueue((reason) => this.reloadNow(reason));
  private cutRequested = false;

  private constructor(
    readonly state: GatewayState,
    readonly plugins: PluginSet,
    private readonly listener: Listener,
    private readonly routes: PassthroughRoutes,
    private readonly options: GatewayOptions,
  ) {}

  static async start(options: GatewayOptions): Promise<Gateway> {
    const env = options.env ?? process.env;
    const { config, text } = options.loaded ?? (await loadRuntimeConfig(options.configPath, env));
    const group = options.group ?? new LocalGroup();
    // A worker's primary has said the warnings already.
    const worker = group.role === 'worker';
    applyConfiguredLevel(config.source.logs.level);
    if (!worker) for (const w of config.warnings) appLog.warn({ config: config.origin }, w);
    const state: GatewayState = {
      config,
      pipeline: Pipeline.EMPTY,
      inflight: 0,
      openStreams: 0,
      sessions: new Set(),
      draining: false,
      cutting: false,
      reloads: { success: 0, failure: 0, lastSuccessful: true },
    };
    const plugins = new PluginSet(() => state, options.plugins, group);
    state.pipeline = await plugins.pipelineFor(config);
    const routes = new PassthroughRoutes(state);
    const app = createApp(state, plugins.routes(config), {
      secure: config.serverTls !== undefined,
      passthroughRoutes: routes,
    });
    const host = options.host ?? config.source.server.host;
    const port = options.port ?? config.source.server.port;
    const ws = config.source.server.websocket;
    const listener = Listener.start(app, {
      hostname: host,
      port,
      idleTimeoutSeconds: config.source.server.idle_timeout_seconds,
      maxMessageMb: ws.max_message_mb,
      tls: config.serverTls,
      // Workers share the port on purpose (their primary checked it was free).
      sharedPort: options.sharedPort ?? false,
      onServer: (server) => routes.attach(server),
    });
    const server = listener.server;
    appLog[worker ? 'debug' : 'info'](
      { host, port: server.port, tls: listener.secure, config: config.origin },
      worker ? 'worker listening' : 'skybridge listening',
    );
    const gateway = new Gateway(state, plugins, listener, routes, options);
    gateway.listenAt = boundSettings(config, options);
    if (options.configPath && options.watch !== false) {
      gateway.watcher = new ConfigWatcher(options.configPath, () => gateway.reload('file changed'), {
        initialText: text,
      });
      gateway.tlsFiles = new TlsFileWatch(() => gateway.reload('certificate file changed'));
      gateway.tlsFiles.follow(config);
    }
    return gateway;
  }

  /** The server accepting new connections (a new certificate brings a new one). */
  get server(): Server<unknown> {
    return this.listener.server;
  }

  get url(): string {
    return this.listener.url;
  }

  get config(): RuntimeConfig {
    return this.state.config;
  }

  /**
   * Load the config again and swap it in when valid; an invalid one is logged and the
   * current one stays in force. Returns whether the new config was applied. Reloads
   * (file watch, SIGHUP) run one after the other, never interleaved.
   */
  reload(reason: string): Promise<boolean> {
    return this.reloads.push(reason);
  }

  private async reloadNow(reason: string): Promise<boolean> {
    const counts = this.state.reloads;
    const loaded = await loadForReload({
      path: this.options.configPath,
      env: this.options.env ?? process.env,
      reason,
      counts,
    });
    if (!loaded) return false;
    const { config } = loaded;
    warnRestartNeeded(this.listenAt, boundSettings(config, this.options), `${this.listenAt.host}:${this.server.port}`);
    const applied = await this.applyConfig(config);
    // A plugin could not take the new config (a log file that cannot be opened): the
    // previous pipeline and config stay in force.
    if (!applied.ok) return rejectReload(counts, { reason, error: applied.error });
    logRoutesAdded(applied.routes);
    this.tlsFiles?.follow(config);
    appLog.info({ reason, config: config.origin }, 'config reloaded');
    return acceptReload(counts);
  }

  /**
   * Swap in a loaded config: the plugins take it, then the config and its pipeline are
   * swapped at once and the providers it adds are routed. Logs nothing (the caller says
   * what happened: this process, or the primary for its workers).
   */
  async applyConfig(config: RuntimeConfig): Promise<ApplyResult> {
    applyConfiguredLevel(config.source.logs.level);
    let pipeline: Pipeline;
    try {
      pipeline = await this.plugins.pipelineFor(config);
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
    const previous = this.state.config;
    this.state.config = config;
    this.state.pipeline = pipeline;
    this.applyTls(config, previous);
    return { ok: true, routes: this.routes.add(config.customRoutes) };
  }

  /**
   * A new certificate or key (the files changed, SIGHUP, another path): served to new
   * connections from now on, open ones untouched (http/listener.ts).
   */
  private applyTls(config: RuntimeConfig, previous: RuntimeConfig): void {
    const tls = config.serverTls;
    const current = previous.serverTls;
    if (tls && this.listener.secure && (tls.cert !== current?.cert || tls.key !== current?.key)) {
      this.listener.replaceTls(tls);
      appLog.info({ cert_file: tls.certFile, key_file: tls.keyFile }, 'server certificate reloaded');
    }
  }

  /** A second SIGTERM/SIGINT: end the grace period now. */
  cut(): void {
    this.cutRequested = true;
  }

  /**
   * Stop accepting (the listening socket closes; requests arriving on open keep-alive
   * connections get a 503), let in-flight requests and streams finish up to the grace
   * period, cut what is left, then flush and close the request log.
   */
  async shutdown(graceMs = this.state.config.source.server.shutdown_grace_seconds * 1000): Promise<ShutdownReport> {
    this.watcher?.close();
    this.tlsFiles?.close();
    this.state.draining = true;
    // Live streams (explorer) never end on their own: end them, or draining waits out the grace period.
    this.plugins.drain();
    // Resolves once every request the server holds has been answered to the last byte
    // (WebSocket sessions included: they are waited for too, up to the grace period).
    let drained = false;
    void this.listener.stop(false).then(() => (drained = true));
    const deadline = performance.now() + graceMs;
    while ((!drained || this.state.inflight > 0) && !this.cutRequested && performance.now() < deadline)
      await Bun.sleep(20);
    if (!drained || this.state.inflight > 0) {
      appLog.warn(
        { inflight: this.state.inflight, grace_ms: graceMs },
        this.cutRequested
          ? 'second signal; cutting remaining requests'
          : 'grace period over; cutting remaining requests',
      );
    }
    this.state.cutting = true;
    if (this.state.sessions.size > 0) {
      // Sessions still open get a close frame (1001 going away) on both sides before the sockets go.
      for (const session of [...this.state.sessions]) session.close(1001, 'gateway shutting down');
      const closeDeadline = performance.now() + SESSION_CLOSE_WAIT_MS;
      while (this.state.sessions.size > 0 && performance.now() < closeDeadline) await Bun.sleep(10);
    }
    await this.listener.stop(true);
    // Cut streams complete (and write their log line) on the next ticks: wait for them.
    const cutDeadline = performance.now() + 2000;
    while (this.state.inflight > 0 && performance.now() < cutDeadline) await Bun.sleep(10);
    return this.plugins.close();
  }
}

/** `/<name>_passthrough` of a provider a reload added; `/passthrough/<name>` serves it already. */
export function logRoutesAdded({ added, live }: { added: string[]; live: boolean }): void {
  if (added.length === 0) return;
  const prefixes = added.map((name) => `/${name}_passthrough`);
  if (live) appLog.info({ prefixes }, `routes added: ${prefixes.join(', ')}`);
  else
    appLog.warn(
      { prefixes },
      `${prefixes.join(', ')} need a restart to be routed; /passthrough/<name>/... serves these providers now`,
    );
}

/** What this config would bind (the command line's host, port and workers win): a change needs a restart. */
export function boundSettings(
  config: RuntimeConfig,
  cli: { host?: string; port?: number; workersSetting?: 'auto' | number },
): BoundSettings {
  const server = config.source.server;
  return {
    host: cli.host ?? server.host,
    port: cli.port ?? server.port,
    idle_timeout_seconds: server.idle_timeout_seconds,
    tls: config.serverTls !== undefined,
    'websocket.max_message_mb': server.websocket.max_message_mb,
    workers: cli.workersSetting ?? server.workers,
  };
}

/** server.host / server.port (and the like) are bound at start: say so instead of ignoring a change. */
export function warnRestartNeeded(inForce: BoundSettings, wanted: BoundSettings, listening: string): void {
  for (const field of Object.keys(inForce)) {
    if (wanted[field] === inForce[field]) continue;
    appLog.warn(
      { setting: `server.${field}`, in_force: inForce[field], configured: wanted[field] },
      `server.${field} changed to ${wanted[field]}: needs a restart; still listening on ${listening}`,
    );
  }
}
