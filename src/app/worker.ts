/**
 * A worker of a group: the gateway as a single process runs it, on the port it shares
 * with the other workers (SO_REUSEPORT), with the config its primary read and checked,
 * and the group's shared state held by the primary (core/group.ts). Its primary starts it
 * (app/primary.ts) with WORKER_ENV set; it exits with the primary.
 *
 * Signals: SIGTERM/SIGINT drain it (a second one cuts what is left), as do the primary's
 * messages; under systemd (KillMode=mixed) only the primary is signalled, while Ctrl-C
 * in a terminal reaches every process of the group at once: a signal and the primary's
 * message for the same stop count once. SIGHUP is the primary's.
 */
import type { RuntimeConfig } from '../config/runtime.ts';
import { appLog } from '../lib/app-log.ts';
import { shareTokens } from '../providers/auth/index.ts';
import { compileConfigText } from './config/source.ts';
import { Gateway } from './gateway.ts';
import { APPLY, CUT, INIT, KEY_REST, LISTENING, RELOADS, REOPEN, SHUTDOWN, WorkerGroup } from './group.ts';
import { SHUTDOWN_MARGIN_MS } from './signals.ts';

/** Runs until the worker is told to stop (then the process exits); resolves with an exit code only when it cannot start. */
export async function runWorker(): Promise<number> {
  process.on('SIGHUP', () => {});
  const group = new WorkerGroup();
  appLog.setBindings({ worker: process.pid });
  // Before any config is compiled here: this worker's credentials ask the primary for tokens.
  shareTokens(group);
  let gateway: Gateway;
  let version: number;
  try {
    const init = await group.request(INIT, { pid: process.pid }, { timeoutMs: 30_000 });
    version = init.version;
    const config = await compileConfigText(init.configPath, init.text, { files: init.files });
    gateway = await Gateway.start({
      configPath: init.configPath,
      host: init.host,
      port: init.port,
      loaded: { config, text: init.text },
      group,
      watch: false,
      sharedPort: true,
    });
    Object.assign(gateway.state.reloads, init.reloads);
    shareKeyRests(config, group);
  } catch (err) {
    process.stderr.write(`skybridge: cannot start: ${(err as Error).message}\n`);
    return 1;
  }

  group.on(APPLY, async ({ text, files, version: next }) => {
    let config: RuntimeConfig;
    try {
      config = await compileConfigText(gateway.state.config.origin, text, { files });
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
    const applied = await gateway.applyConfig(config);
    if (!applied.ok) return { ok: false, error: applied.error };
    shareKeyRests(config, group);
    version = next;
    return { ok: true, ...applied.routes };
  });
  group.on(RELOADS, (counts) => {
    Object.assign(gateway.state.reloads, counts);
  });
  group.on(REOPEN, () => gateway.plugins.reopen());
  group.on(KEY_REST, ({ provider, key, name, model, until }) => {
    const pool = gateway.state.config.providers[provider]?.keys;
    const k = pool?.keys[key];
    // The same config has the same keys in the same order; a worker mid-reload may not.
    if (pool && k?.name === name) pool.restUntil(k, model, until);
  });

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    const graceMs = gateway.state.config.source.server.shutdown_grace_seconds * 1000;
    appLog.debug({ inflight: gateway.state.inflight }, 'worker shutting down');
    setTimeout(() => {
      appLog.error(
        { grace_ms: graceMs, margin_ms: SHUTDOWN_MARGIN_MS, exit_code: 1 },
        'shutdown did not finish within the grace period and its margin; exiting',
      );
      process.exit(1);
    }, graceMs + SHUTDOWN_MARGIN_MS);
    gateway.shutdown(graceMs).then(
      ({ requestLinesLost }) => process.exit(requestLinesLost > 0 ? 1 : 0),
      (err) => {
        appLog.error({ err: String(err) }, 'worker shutdown failed');
        process.exit(1);
      },
    );
  };
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) gateway.cut();
    stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  group.on(SHUTDOWN, () => stop());
  group.on(CUT, () => gateway.cut());

  try {
    await group.request(LISTENING, { pid: process.pid, port: Number(gateway.server.port), version });
  } catch (err) {
    process.stderr.write(`skybridge: worker lost its primary: ${(err as Error).message}\n`);
    return 1;
  }
  return new Promise<number>(() => {});
}

/** A rest this worker's pools start is told to every other worker. */
function shareKeyRests(config: RuntimeConfig, group: WorkerGroup): void {
  for (const provider of Object.values(config.providers)) {
    const pool = provider.keys;
    pool.onRest = (key, model, until) =>
      group.broadcast(KEY_REST, { provider: provider.name, key: pool.keys.indexOf(key), name: key.name, model, until });
  }
}
