/**
 * Signals of the process that owns the gateway: a single process (the Gateway itself) or
 * the primary of a group of workers. SIGTERM/SIGINT stop it within the grace period (a
 * second signal ends the grace), SIGHUP reopens the request log and reloads the config.
 * Workers handle their own signals (app/worker.ts).
 */
import type { AppLog } from '../lib/app-log.ts';
import type { Gateway } from './gateway.ts';

/** How a stop went: request lines that could not be written, workers that failed to stop cleanly. */
export interface StopReport {
  requestLinesLost: number;
  workersFailed?: number;
}

/** What the signals act on. */
export interface Supervised {
  readonly graceSeconds: number;
  /** How long past the grace a stop may take before the process gives up on it. */
  readonly marginMs: number;
  /** Fields of the "shutting down" line (what is in flight). */
  shutdownFields(): Record<string, unknown>;
  cut(): void;
  shutdown(): Promise<StopReport>;
  reopen(): void | Promise<void>;
  reload(reason: string): Promise<boolean>;
}

/** How long past `server.shutdown_grace_seconds` a shutdown may take (cutting streams, closing the log). */
export const SHUTDOWN_MARGIN_MS = 5000;

/** A single-process gateway, as the signals see it. */
export function supervised(gateway: Gateway): Supervised {
  return {
    get graceSeconds() {
      return gateway.state.config.source.server.shutdown_grace_seconds;
    },
    marginMs: SHUTDOWN_MARGIN_MS,
    shutdownFields: () => ({ inflight: gateway.state.inflight }),
    cut: () => gateway.cut(),
    shutdown: () => gateway.shutdown(),
    reopen: () => gateway.plugins.reopen(),
    reload: (reason) => gateway.reload(reason),
  };
}

export function installSignals(target: Supervised, appLog: AppLog): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      // A second signal ends the grace period; the log is still flushed.
      target.cut();
      return;
    }
    stopping = true;
    const grace = target.graceSeconds;
    appLog.info({ signal, ...target.shutdownFields(), grace_seconds: grace }, 'shutting down');
    // Whatever step hangs (a collector that never answers, a stuck disk), the process is
    // gone before a supervisor's stop timeout would SIGKILL it without a word.
    setTimeout(
      () => {
        appLog.error(
          { grace_seconds: grace, margin_ms: target.marginMs, exit_code: 1 },
          'shutdown did not finish within the grace period and its margin; exiting',
        );
        process.exit(1);
      },
      grace * 1000 + target.marginMs,
    );
    target.shutdown().then(
      ({ requestLinesLost: lost, workersFailed = 0 }) => {
        // Request lines that could not be written are data lost: a failed stop.
        const code = lost > 0 || workersFailed > 0 ? 1 : 0;
        appLog[code ? 'error' : 'info'](
          {
            exit_code: code,
            ...(lost > 0 && { request_lines_lost: lost }),
            ...(workersFailed > 0 && { workers_failed: workersFailed }),
          },
          'stopped',
        );
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
  process.on('SIGHUP', async () => {
    // logrotate: the request log is reopened at its path; then the config is read again.
    await target.reopen();
    appLog.info('SIGHUP: request log reopened; reloading config');
    void target.reload('SIGHUP');
  });
}
