#!/usr/bin/env bun
/**
 * CLI entry: serve (default) | validate | --version | --help; a dispatcher to the
 * process's role: a single gateway (`server.workers: 1`), the primary of a group of
 * workers (app/primary.ts), or one of its workers (app/worker.ts, when WORKER_ENV is set).
 *
 * Only light modules are imported statically: `serve` may re-exec the process first
 * (boot/fetch-limit.ts), and Bun loads every static import before running any code, so
 * the gateway's modules (Elysia, pino, plugins) are imported dynamically, once, in the
 * process that keeps running. --version and --help stay instant too.
 */
// First: may re-exec the process with BUN_CONFIG_MAX_HTTP_REQUESTS raised (see the module).
import './app/raise-fetch-limit.ts';
import { type CliArgs, parseArgs, USAGE, UsageError } from './app/cli.ts';
import { FETCH_LIMIT_VAR } from './app/fetch-limit.ts';
import type { Supervised } from './app/signals.ts';
import { VERSION } from './lib/version.ts';
import { WORKER_ENV } from './lib/workers.ts';

async function main(argv: string[]): Promise<number> {
  let args: CliArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`skybridge: ${err.message}\n\n${USAGE}\n`);
    return 2;
  }
  if (args.command === 'version') {
    process.stdout.write(`skybridge ${VERSION}\n`);
    return 0;
  }
  if (args.command === 'help') {
    process.stdout.write(`skybridge ${VERSION}: LLM API gateway\n\n${USAGE}\n`);
    return 0;
  }
  // A worker of a group: everything it needs comes from its primary.
  if (args.command === 'serve' && process.env[WORKER_ENV]) return (await import('./app/worker.ts')).runWorker();
  const { ConfigError } = await import('./app/config/load.ts');
  const { loadRuntimeConfig, locateConfig } = await import('./app/config/source.ts');
  const configPath = locateConfig(args.config, process.env);
  if (args.command === 'validate') {
    try {
      const { config } = await loadRuntimeConfig(configPath);
      for (const w of config.warnings) process.stderr.write(`warning: ${w}\n`);
      process.stdout.write(`${config.origin}: OK\n`);
      return 0;
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
  }

  // SIGHUP's default action is to terminate: until the real handler is installed
  // (a logrotate right at start-up), ignore it.
  const ignoreHup = () => {};
  process.on('SIGHUP', ignoreHup);
  const { appLog } = await import('./lib/app-log.ts');
  const { installSignals, supervised } = await import('./app/signals.ts');
  let target: Supervised;
  let workers: number;
  try {
    const loaded = await loadRuntimeConfig(configPath);
    workers = (await import('./app/cpus.ts')).resolveWorkers(args.workers ?? loaded.config.source.server.workers);
    const common = { configPath, host: args.host, port: args.port, loaded };
    if (workers > 1) {
      const { Primary } = await import('./app/primary.ts');
      target = await Primary.start({ ...common, workers, workersSetting: args.workers, argv });
    } else {
      const { Gateway } = await import('./app/gateway.ts');
      target = supervised(await Gateway.start({ ...common, workersSetting: args.workers }));
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`skybridge: invalid config\n${err.message}\n`);
      return 1;
    }
    process.stderr.write(`skybridge: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  process.off('SIGHUP', ignoreHup);
  installSignals(target, appLog);
  appLog.info(
    {
      pid: process.pid,
      version: VERSION,
      workers,
      [FETCH_LIMIT_VAR]: process.env[FETCH_LIMIT_VAR] ?? '256 (Bun default)',
    },
    'ready',
  );
  return new Promise<number>(() => {});
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`skybridge: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
