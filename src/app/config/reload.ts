/**
 * What every reload does around applying a config, the same in a single process and in
 * a primary: reloads run one after the other (file events and SIGHUP queue, never
 * interleave); the file is loaded again and its warnings said; what stops a reload is
 * said once and counted, and the config in force stays.
 */
import type { RuntimeConfig } from '../../config/runtime.ts';
import type { ReloadCounts } from '../../core/plugin.ts';
import { appLog } from '../../lib/app-log.ts';
import { ConfigError, type Env } from './load.ts';
import { loadRuntimeConfig } from './source.ts';

export class ReloadQueue {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly run: (reason: string) => Promise<boolean>) {}

  /** Runs once every reload queued before it has; resolves with whether it applied a config. */
  push(reason: string): Promise<boolean> {
    const run = this.chain.then(() => this.run(reason));
    this.chain = run.catch(() => {});
    return run;
  }

  /** Hold the reloads queued from now on until `ready` settles (a primary starting its workers). */
  holdUntil(ready: Promise<unknown>): void {
    this.chain = this.chain.then(() => ready).catch(() => {});
  }
}

/** A reload that cannot apply: said, counted; the config in force stays. */
export function rejectReload(counts: ReloadCounts, fields: Record<string, unknown>): false {
  appLog.error(fields, 'config reload rejected; previous config stays in force');
  counts.failure++;
  counts.lastSuccessful = false;
  return false;
}

/** A reload applied: counted. */
export function acceptReload(counts: ReloadCounts): true {
  counts.success++;
  counts.lastSuccessful = true;
  return true;
}

/**
 * The config file loaded again, its warnings said; undefined when there is nothing to
 * apply (no file: the built-in default; a file that does not load: rejected and counted).
 */
export async function loadForReload(options: {
  path: string | undefined;
  env: Env;
  reason: string;
  counts: ReloadCounts;
}): Promise<{ config: RuntimeConfig; text: string | undefined } | undefined> {
  const { path, reason } = options;
  if (!path) {
    appLog.warn({ reason }, 'no config file (built-in default config): nothing to reload');
    return undefined;
  }
  try {
    const loaded = await loadRuntimeConfig(path, options.env);
    for (const w of loaded.config.warnings) appLog.warn({ config: loaded.config.origin }, w);
    return loaded;
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [{ message: String(err) }];
    rejectReload(options.counts, { reason, problems, error: (err as Error).message });
    return undefined;
  }
}
