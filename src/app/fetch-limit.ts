/**
 * Bun's `fetch` keeps at most 256 requests in flight; the rest wait inside the runtime.
 * For a gateway that is 256 concurrent streams. The limit is BUN_CONFIG_MAX_HTTP_REQUESTS,
 * which Bun reads from the environment when the process starts: assigning it to
 * `process.env` afterwards, even as the first statement of the program, has no effect
 * (measured: 300 streams of 2 s still took 4 s), and `bun build --compile` cannot embed
 * it (no define, bunfig key or exec-argv flag sets it).
 *
 * So `skybridge serve`, when the variable is not set, replaces its own process image with
 * itself and the variable set (execve: same PID, same stdio and signal handling, so
 * systemd and shells see no difference). This holds for `bun run start`, `bun
 * src/main.ts` and the compiled binary alike. A value set by the operator (environment,
 * systemd unit, .env for `bun run`) is kept as it is.
 *
 * main.ts imports ./raise-fetch-limit.ts first, which calls ensureFetchLimit before the
 * rest of the program is evaluated: the re-exec costs one runtime start and nothing more.
 */
import { parseArgs } from './cli.ts';

export const FETCH_LIMIT_VAR = 'BUN_CONFIG_MAX_HTTP_REQUESTS';
/** Bun accepts 1-65535. A limit, not a reservation: a higher value costs no memory. */
export const DEFAULT_FETCH_LIMIT = '16384';

/** True when running as a `bun build --compile` executable. */
export function isCompiled(): boolean {
  return /[\\/]\$bunfs[\\/]|~BUN[\\/]/.test(Bun.main);
}

export function ensureFetchLimit(argv: string[], env: NodeJS.ProcessEnv = process.env): void {
  if (env[FETCH_LIMIT_VAR]) return;
  let command: string;
  try {
    command = parseArgs(argv).command;
  } catch {
    return; // main.ts reports the usage error
  }
  if (command !== 'serve') return;
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve !== 'function') return;
  const args = isCompiled()
    ? [process.execPath, ...argv]
    : [process.execPath, ...process.execArgv, process.argv[1]!, ...argv];
  try {
    execve.call(process, process.execPath, args, { ...env, [FETCH_LIMIT_VAR]: DEFAULT_FETCH_LIMIT });
  } catch (err) {
    // Still running: the gateway works, with Bun's default of 256 upstream requests.
    process.stderr.write(
      `skybridge: could not raise ${FETCH_LIMIT_VAR} (${(err as Error).message}); upstream concurrency stays at 256\n`,
    );
  }
}
