/**
 * The registry of the built-in plugins, the only place that knows them all. Each is
 * created once; on every config load the plugins the config lists are configured, in its
 * order, and those that return hooks make up the pipeline; the others are told to
 * release what they hold (`off`). Plugins of an embedding program (tests) run after them.
 *
 * Each plugin is given the process group (core/group.ts) and says itself what it shares
 * with the other processes of the group; in the primary of a group, the same plugins are
 * configured but serve no request: they hold what the workers ask for.
 */
import type { RuntimeConfig } from '../config/runtime.ts';
import { type Group, LocalGroup } from '../core/group.ts';
import { Pipeline, type Stage } from '../core/pipeline.ts';
import type { Plugin, PluginRoute, RuntimeView, StaticPlugin } from '../core/plugin.ts';
import { ExplorerPlugin } from './explorer/index.ts';
import { GovernancePlugin } from './governance/index.ts';
import { MetricsPlugin } from './metrics/index.ts';
import { RequestLogPlugin } from './request-log/index.ts';
import { TracingPlugin } from './tracing/index.ts';

export class PluginSet {
  readonly governance: GovernancePlugin;
  readonly logging: RequestLogPlugin;
  readonly explorer: ExplorerPlugin;
  readonly metrics: MetricsPlugin;
  readonly tracing = new TracingPlugin();
  private readonly all: readonly Plugin[];

  /**
   * `runtime`: the running gateway's counters (metrics reads them); `extra`: an embedding
   * program's plugins; `group`: the processes this one shares state with (default: none).
   */
  constructor(
    runtime: () => RuntimeView,
    private readonly extra: readonly StaticPlugin[] = [],
    readonly group: Group = new LocalGroup(),
  ) {
    this.governance = new GovernancePlugin(group);
    this.logging = new RequestLogPlugin(group);
    this.explorer = new ExplorerPlugin(group);
    this.metrics = new MetricsPlugin(runtime, group);
    this.all = [this.governance, this.logging, this.explorer, this.metrics, this.tracing];
  }

  /** Configure every plugin for this config and build its pipeline. */
  async pipelineFor(config: RuntimeConfig): Promise<Pipeline> {
    const stages: Stage[] = [];
    const on = new Set<Plugin>();
    for (const name of config.plugins) {
      const plugin = this.all.find((p) => p.name === name);
      const hooks = plugin && (await plugin.configure(config));
      if (!plugin || !hooks) continue;
      on.add(plugin);
      stages.push({ name: plugin.name, hooks });
    }
    for (const plugin of this.all) if (!on.has(plugin)) await plugin.off?.();
    for (const plugin of this.extra) stages.push({ name: plugin.name, hooks: plugin });
    return new Pipeline(stages);
  }

  /** Every plugin's routes, with the plugin that must be on for them to answer. */
  routes(config: RuntimeConfig): Array<{ plugin: string; route: PluginRoute }> {
    return this.all.flatMap((p) => (p.routes?.(config) ?? []).map((route) => ({ plugin: p.name, route })));
  }

  reopen(): void {
    for (const p of this.all) p.reopen?.();
  }

  drain(): void {
    for (const p of this.all) p.drain?.();
  }

  /** Flush and release everything; says what could not be saved. */
  async close(): Promise<ShutdownReport> {
    for (const p of this.all) await p.close?.();
    return { requestLinesLost: this.logging.linesLost };
  }
}

export interface ShutdownReport {
  /** Request-log lines that could not be written (a full disk, a log file gone). */
  requestLinesLost: number;
}
