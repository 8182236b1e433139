/**
 * A running gateway: the server, the config in force, the plugins, reloads and
 * graceful shutdown. main.ts and the tests both start gateways through this.
 */
import type { Server } from 'bun';
import { ConfigError, type Env } from '../config/load.ts';
import type { RuntimeConfig } from '../config/runtime.ts';
import { loadRuntimeConfig } from '../config/source.ts';
import { appLog } from '../log/app.ts';
import type { Plugin } from '../pipeline/types.ts';
import { PluginSet } from '../plugins/index.ts';
import { createApp } from './app.ts';
import type { GatewayState } from './state.ts';

export interface GatewayOptions {
  /** Config file path; undefined = built-in default. */
  configPath: string | undefined;
  host?: string;
  port?: number;
  env?: Env;
  /** Extra plugins (embedding, tests), run after the built-in ones. */
  plugins?: Plugin[];
}

export class Gateway {
  private constructor(
    readonly state: GatewayState,
    readonly plugins: PluginSet,
    readonly server: Server<unknown>,
    private readonly options: GatewayOptions,
  ) {}

  static async start(options: GatewayOptions): Promise<Gateway> {
    const env = options.env ?? process.env;
    const { config } = await loadRuntimeConfig(options.configPath, env);
    for (const w of config.warnings) appLog.warn({ config: config.origin }, w);
    const plugins = new PluginSet(options.plugins);
    const state: GatewayState = { config, pipeline: await plugins.pipelineFor(config), inflight: 0, draining: false };
    const app = createApp(state, plugins.routes());
    const host = options.host ?? config.source.server.host;
    const port = options.port ?? config.source.server.port;
    app.listen({
      hostname: host,
      port,
      // The flow enforces server.max_request_body_mb itself (a JSON 413, and live on
      // reload); Bun's own cap would answer first with an empty 413, so it stays high.
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    });
    const server = app.server;
    if (!server) throw new Error(`could not listen on ${host}:${port}`);
    appLog.info({ host, port: server.port, config: config.origin }, 'skybridge listening');
    return new Gateway(state, plugins, server, options);
  }

  get url(): string {
    return `http://${this.server.hostname}:${this.server.port}`;
  }

  get config(): RuntimeConfig {
    return this.state.config;
  }

  /**
   * Load the config again and swap it in when valid; an invalid one is logged and the
   * current one stays in force. Returns whether the new config was applied.
   */
  async reload(reason: string): Promise<boolean> {
    if (!this.options.configPath) return false;
    let config: RuntimeConfig;
    try {
      ({ config } = await loadRuntimeConfig(this.options.configPath, this.options.env ?? process.env));
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [{ message: String(err) }];
      appLog.error({ reason, problems }, 'config reload rejected; previous config stays in force');
      return false;
    }
    for (const w of config.warnings) appLog.warn({ config: config.origin }, w);
    const pipeline = await this.plugins.pipelineFor(config);
    this.state.config = config;
    this.state.pipeline = pipeline;
    appLog.info({ reason, config: config.origin }, 'config reloaded');
    return true;
  }

  /** Stop accepting, let in-flight requests finish up to the grace period, flush logs. */
  async shutdown(graceMs = this.state.config.source.server.shutdown_grace_seconds * 1000): Promise<void> {
    this.state.draining = true;
    void this.server.stop(false);
    const deadline = performance.now() + graceMs;
    while (this.state.inflight > 0 && performance.now() < deadline) await Bun.sleep(25);
    if (this.state.inflight > 0) appLog.warn({ inflight: this.state.inflight }, 'grace period over; cutting remaining requests');
    await this.server.stop(true);
    // Completions of cut streams run on the next ticks; give them a moment before flushing.
    await Bun.sleep(10);
    await this.plugins.close();
  }
}
