#!/usr/bin/env bun
/**
 * CLI entry: serve (default) | validate | --version | --help.
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
import type { Gateway } from './app/gateway.ts';
import type { AppLog } from './lib/app-log.ts';
import { VERSION } from './lib/version.ts';

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
  const { Gateway } = await import('./app/gateway.ts');
  const { appLog } = await import('./lib/app-log.ts');
  let gateway: Gateway;
  try {
    gateway = await Gateway.start({ configPath, host: args.host, port: args.port });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`skybridge: invalid config\n${err.message}\n`);
      return 1;
    }
    process.stderr.write(`skybridge: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  process.off('SIGHUP', ignoreHup);
  installSignals(gateway, appLog);
  appLog.info(
    { pid: process.pid, version: VERSION, [FETCH_LIMIT_VAR]: process.env[FETCH_LIMIT_VAR] ?? '256 (Bun default)' },
    'ready',
  );
  return new Promise<number>(() => {});
}

/** How long past `server.shutdown_grace_seconds` a shutdown may take (cutting streams, closing the log). */
const SHUTDOWN_MARGIN_MS = 5000;

function installSignals(gateway: Gateway, appLog: AppLog): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // A second signal ends the grace period; the log is still flushed.
      gateway.cut();
      return;
    }
    stopping = true;
    const grace = gateway.state.config.source.server.shutdown_grace_seconds;
    appLog.info({ signal, inflight: gateway.state.inflight, grace_seconds: grace }, 'shutting down');
    // Whatever step hangs (a collector that never answers, a stuck disk), the process is
    // gone before a supervisor's stop timeout would SIGKILL it without a word.
    setTimeout(
      () => {
        appLog.error(
          { grace_seconds: grace, margin_ms: SHUTDOWN_MARGIN_MS, exit_code: 1 },
          'shutdown did not finish within the grace period and its margin; exiting',
        );
        process.exit(1);
      },
      grace * 1000 + SHUTDOWN_MARGIN_MS,
    );
    gateway.shutdown().then(
      ({ requestLinesLost: lost }) => {
        // Request lines that could not be written are data lost: a failed stop.
        const code = lost > 0 ? 1 : 0;
        appLog[code ? 'error' : 'info']({ exit_code: code, ...(lost > 0 && { request_lines_lost: lost }) }, 'stopped');
        process.exit(code);
      },
      (err) => {
        appLog.error({ err: String(err) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    // logrotate: the request log is reopened at its path; then the config is read again.
    gateway.plugins.reopen();
    appLog.info('SIGHUP: request log reopened; reloading config');
    void gateway.reload('SIGHUP');
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`skybridge: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
