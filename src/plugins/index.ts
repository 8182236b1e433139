/**
 * The built-in plugins. Each is created once and re-configured on every config load;
 * the pipeline for a config lists the enabled ones in the configured order.
 */
import type { RuntimeConfig } from '../config/runtime.ts';
import type { PluginId } from '../config/schema.ts';
import { Pipeline } from '../core/pipeline.ts';
import type { Plugin } from '../core/request.ts';
import type { RouteInstaller } from '../http/app.ts';
import { ExplorerPlugin } from './explorer/index.ts';
import { GovernancePlugin } from './governance/index.ts';
import { RequestLogPlugin } from './request-log/index.ts';
import { MetricsPlugin } from './metrics/index.ts';
import { TracingPlugin } from './tracing/index.ts';

export interface ConfigurablePlugin extends Plugin {
  configure(config: RuntimeConfig): void | Promise<void>;
  /** Read after configure: false keeps the plugin out of this config's pipeline (e.g. tracing without an endpoint). */
  readonly inPipeline?: boolean;
  /** The plugin is not listed in this config's `plugins`. */
  disable?(config: RuntimeConfig): void | Promise<void>;
  /** HTTP routes the plugin serves (e.g. /metrics). */
  routes?: RouteInstaller;
  /** Write out anything buffered (shutdown). */
  flush?(): void | Promise<void>;
  /** Shutdown began: end long-lived responses (live streams) so the server can drain. */
  drain?(): void;
  /** SIGHUP: reopen files. */
  reopen?(): void;
}

export class PluginSet {
  readonly logging = new RequestLogPlugin();
  readonly governance = new GovernancePlugin();
  private readonly all: Partial<Record<PluginId, ConfigurablePlugin>> = { logging: this.logging, governance: this.governance };

  readonly metrics = new MetricsPlugin();
  readonly tracing = new TracingPlugin();
  readonly explorer = new ExplorerPlugin();

  /** `custom`: plugins of an embedding program, run after the built-in ones. */
  constructor(private readonly custom: readonly Plugin[] = []) {
    this.all.metrics = this.metrics;
    this.all.tracing = this.tracing;
    this.all.explorer = this.explorer;
  }

  /** Configure every plugin and build the pipeline for this config. */
  async pipelineFor(config: RuntimeConfig): Promise<Pipeline> {
    const enabled: Plugin[] = [];
    for (const id of config.plugins) {
      const plugin = this.all[id];
      if (!plugin) continue;
      await plugin.configure(config);
      if (plugin.inPipeline !== false) enabled.push(plugin);
    }
    for (const [id, plugin] of Object.entries(this.all) as Array<[PluginId, ConfigurablePlugin]>) {
      if (!config.plugins.includes(id)) await plugin.disable?.(config);
    }
    return new Pipeline([...enabled, ...this.custom]);
  }

  routes(): RouteInstaller[] {
    return Object.values(this.all).flatMap((p) => (p?.routes ? [p.routes] : []));
  }

  reopen(): void {
    for (const p of Object.values(this.all)) p?.reopen?.();
  }

  async flush(): Promise<void> {
    for (const p of Object.values(this.all)) await p?.flush?.();
  }

  drain(): void {
    for (const p of Object.values(this.all)) p?.drain?.();
  }

  async close(): Promise<void> {
    for (const p of Object.values(this.all)) await p?.close?.();
  }
}
