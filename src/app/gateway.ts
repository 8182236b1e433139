/**
 * A running gateway: the server, the config in force, the plugins, reloads and
 * graceful shutdown. main.ts and the tests both start gateways through this.
 */
import type { Server } from 'bun';
import type { RuntimeConfig } from '../config/runtime.ts';
import { Pipeline } from '../core/pipeline.ts';
import type { StaticPlugin } from '../core/plugin.ts';
import type { GatewayState } from '../core/runtime.ts';
import { createApp, PassthroughRoutes } from '../http/app.ts';
import { appLog, applyConfiguredLevel } from '../lib/app-log.ts';
import { PluginSet, type ShutdownReport } from '../plugins/index.ts';
import { ConfigError, type Env } from './config/load.ts';
import { loadRuntimeConfig } from './config/source.ts';
import { ConfigWatcher } from './config/watch.ts';

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
}

export class Gateway {
  private watcher: ConfigWatcher | undefined;
  /** What the server was started with (CLI or config): changing these needs a restart. */
  private listenAt = { host: '', port: 0, idle_timeout_seconds: 0 };
  private reloadChain: Promise<unknown> = Promise.resolve();
  private cutRequested = false;

  private constructor(
    readonly state: GatewayState,
    readonly plugins: PluginSet,
    readonly server: Server<unknown>,
    private readonly routes: PassthroughRoutes,
    private readonly options: GatewayOptions,
  ) {}

  static async start(options: GatewayOptions): Promise<Gateway> {
    const env = options.env ?? process.env;
    const { config, text } = await loadRuntimeConfig(options.configPath, env);
    applyConfiguredLevel(config.source.logs.level);
    for (const w of config.warnings) appLog.warn({ config: config.origin }, w);
    const state: GatewayState = {
      config,
      pipeline: Pipeline.EMPTY,
      inflight: 0,
      openStreams: 0,
      draining: false,
      cutting: false,
      reloads: { success: 0, failure: 0, lastSuccessful: true },
    };
    const plugins = new PluginSet(() => state, options.plugins);
    state.pipeline = await plugins.pipelineFor(config);
    const routes = new PassthroughRoutes(state);
    const app = createApp(state, plugins.routes(config), routes);
    const host = options.host ?? config.source.server.host;
    const port = options.port ?? config.source.server.port;
    app.listen({
      hostname: host,
      port,
      // The flow enforces server.max_request_body_mb itself (a JSON 413, and live on
      // reload); Bun's own cap would answer first with an empty 413, so it stays high.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      idleTimeout: config.source.server.idle_timeout_seconds,
      // Elysia turns SO_REUSEPORT on by default: a second gateway on the same port would
      // start "fine" and silently take half the connections. A taken port is an error.
      reusePort: false,
    });
    const server = app.server;
    if (!server) throw new Error(`could not listen on ${host}:${port}`);
    routes.attach(server);
    appLog.info({ host, port: server.port, config: config.origin }, 'skybridge listening');
    const gateway = new Gateway(state, plugins, server, routes, options);
    gateway.listenAt = { host, port, idle_timeout_seconds: config.source.server.idle_timeout_seconds };
    if (options.configPath && options.watch !== false) {
      gateway.watcher = new ConfigWatcher(options.configPath, () => gateway.reload('file changed'), {
        initialText: text,
      });
    }
    return gateway;
  }

  get url(): string {
    return `http://${this.server.hostname}:${this.server.port}`;
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
    const run = this.reloadChain.then(() => this.reloadNow(reason));
    this.reloadChain = run.catch(() => {});
    return run;
  }

  private async reloadNow(reason: string): Promise<boolean> {
    if (!this.options.configPath) {
      appLog.warn({ reason }, 'no config file (built-in default config): nothing to reload');
      return false;
    }
    let config: RuntimeConfig;
    try {
      ({ config } = await loadRuntimeConfig(this.options.configPath, this.options.env ?? process.env));
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [{ message: String(err) }];
      return this.rejectReload({ reason, problems, error: (err as Error).message });
    }
    for (const w of config.warnings) appLog.warn({ config: config.origin }, w);
    applyConfiguredLevel(config.source.logs.level);
    this.warnRestartNeeded(config);
    let pipeline: Pipeline;
    try {
      pipeline = await this.plugins.pipelineFor(config);
    } catch (err) {
      // A plugin could not take the new config (a log file that cannot be opened): the
      // previous pipeline and config stay in force.
      return this.rejectReload({ reason, error: (err as Error).message });
    }
    this.state.config = config;
    this.state.pipeline = pipeline;
    this.routeNewProviders(config);
    appLog.info({ reason, config: config.origin }, 'config reloaded');
    this.state.reloads.success++;
    this.state.reloads.lastSuccessful = true;
    return true;
  }

  private rejectReload(fields: Record<string, unknown>): false {
    appLog.error(fields, 'config reload rejected; previous config stays in force');
    this.state.reloads.failure++;
    this.state.reloads.lastSuccessful = false;
    return false;
  }

  /** `/<name>_passthrough` of a provider this reload added; `/passthrough/<name>` serves it already. */
  private routeNewProviders(config: RuntimeConfig): void {
    const { added, live } = this.routes.add(config.customRoutes);
    if (added.length === 0) return;
    const prefixes = added.map((name) => `/${name}_passthrough`);
    if (live) appLog.info({ prefixes }, `routes added: ${prefixes.join(', ')}`);
    else
      appLog.warn(
        { prefixes },
        `${prefixes.join(', ')} need a restart to be routed; /passthrough/<name>/... serves these providers now`,
      );
  }

  /** server.host / server.port are bound at start: say so instead of ignoring a change. */
  private warnRestartNeeded(config: RuntimeConfig): void {
    const wanted = {
      host: this.options.host ?? config.source.server.host,
      port: this.options.port ?? config.source.server.port,
      idle_timeout_seconds: config.source.server.idle_timeout_seconds,
    };
    for (const field of ['host', 'port', 'idle_timeout_seconds'] as const) {
      if (wanted[field] === this.listenAt[field]) continue;
      appLog.warn(
        { setting: `server.${field}`, in_force: this.listenAt[field], configured: wanted[field] },
        `server.${field} changed to ${wanted[field]}: needs a restart; still listening on ${this.listenAt.host}:${this.server.port}`,
      );
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
    this.state.draining = true;
    // Live streams (explorer) never end on their own: end them, or draining waits out the grace period.
    this.plugins.drain();
    // Resolves once every request the server holds has been answered to the last byte.
    let drained = false;
    void this.server.stop(false).then(() => (drained = true));
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
    await this.server.stop(true);
    // Cut streams complete (and write their log line) on the next ticks: wait for them.
    const cutDeadline = performance.now() + 2000;
    while (this.state.inflight > 0 && performance.now() < cutDeadline) await Bun.sleep(10);
    return this.plugins.close();
  }
}
