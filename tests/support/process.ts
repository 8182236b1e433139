/**
 * Runs the gateway as a real child process (`bun src/main.ts ...` or any command line),
 * for what only a process shows: signals, exit codes, file watching, the fetch limit.
 * The app log (NDJSON on stderr) is collected and parsed as it arrives.
 */

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Subprocess, spawn } from 'bun';

export const REPO = resolve(import.meta.dir, '../..');
export const MAIN = join(REPO, 'src/main.ts');

export function tempDir(name = 'proc'): string {
  return mkdtempSync(join(tmpdir(), `skybridge-${name}-`));
}

/**
 * A config file for a child gateway in a fresh temporary directory: listening on
 * 127.0.0.1 (any port), the request log beside it, then `rest` (YAML). Returns its path.
 */
export function writeConfigFile(name: string, rest: string): string {
  const dir = tempDir(name);
  const path = join(dir, 'config.yaml');
  writeFileSync(
    path,
    `server: { host: 127.0.0.1, port: 0 }\nlogs: { file: ${JSON.stringify(join(dir, 'requests.ndjson'))} }\n${rest}`,
  );
  return path;
}

/** The environment for a child: this one without the Bun fetch limit, app log at info. */
export function childEnv(extra: Record<string, string | undefined> = {}): Record<string, string> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    SKYBRIDGE_LOG_LEVEL: 'info',
    BUN_CONFIG_MAX_HTTP_REQUESTS: undefined,
    ...extra,
  };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}

export interface GatewayProcess {
  proc: Subprocess<'ignore', 'pipe', 'pipe'>;
  port: number;
  url: string;
  /** Parsed app-log lines so far (stderr lines that are not JSON are kept as { raw }). */
  logs: any[];
  stderr(): string;
  stdout(): string;
  /** Wait for an app-log line matching pred, among the lines from index `after` on. */
  waitForLog(pred: (line: any) => boolean, timeoutMs?: number, after?: number): Promise<any>;
  /** The number of app-log lines so far: pass it as `after` to wait for newer lines only. */
  mark(): number;
  exited: Promise<number>;
  /** Send a signal and wait for the exit code (SIGKILL after timeoutMs). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number>;
}

/** Run a command (default `bun src/main.ts`) and collect its output; no waiting. */
export function run(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; cmd?: string[] } = {},
): {
  proc: Subprocess<'ignore', 'pipe', 'pipe'>;
  stderr: () => string;
  stdout: () => string;
  done: Promise<{ code: number; stdout: string; stderr: string }>;
} {
  const proc = spawn([...(opts.cmd ?? [process.execPath, MAIN]), ...args], {
    cwd: opts.cwd ?? REPO,
    env: opts.env ?? childEnv(),
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
  });
  let out = '';
  let err = '';
  const pump = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
  };
  const pumps = Promise.all([pump(proc.stdout, (s) => (out += s)), pump(proc.stderr, (s) => (err += s))]);
  const done = proc.exited.then(async (code) => {
    await pumps;
    return { code, stdout: out, stderr: err };
  });
  return { proc, stderr: () => err, stdout: () => out, done };
}

/** Run a CLI command to completion. */
export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; cmd?: string[]; timeoutMs?: number } = {},
) {
  const r = run(args, opts);
  const timer = setTimeout(() => r.proc.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
  const result = await r.done;
  clearTimeout(timer);
  return result;
}

/**
 * Start a gateway process and wait until it listens. Pass `--config` etc. in `args`; the
 * config should use port 0 (the port is read from the "skybridge listening" log line).
 * `workers`: the `--workers` given (default 1, a single process, as most tests need;
 * `'config'` gives none, so the config's `server.workers` or its default `auto` applies).
 */
export async function startGatewayProcess(
  args: string[],
  opts: {
    cwd?: string;
    env?: Record<string, string>;
    cmd?: string[];
    timeoutMs?: number;
    workers?: number | 'auto' | 'config';
  } = {},
): Promise<GatewayProcess> {
  const workers = opts.workers ?? 1;
  const r = run(workers === 'config' ? args : [...args, '--workers', String(workers)], opts);
  const logs: any[] = [];
  let parsedUpTo = 0;
  const parse = () => {
    const text = r.stderr();
    const end = text.lastIndexOf('\n') + 1;
    if (end <= parsedUpTo) return;
    for (const line of text.slice(parsedUpTo, end).split('\n')) {
      if (!line) continue;
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ raw: line });
      }
    }
    parsedUpTo = end;
  };
  let exitCode: number | undefined;
  const exited = r.done.then((d) => {
    parse();
    exitCode = d.code;
    return d.code;
  });

  const waitForLog = async (pred: (line: any) => boolean, timeoutMs = 10_000, after = 0): Promise<any> => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      parse();
      const hit = logs.slice(after).find(pred);
      if (hit) return hit;
      if (exitCode !== undefined || performance.now() > deadline) {
        throw new Error(
          `no matching app-log line${exitCode !== undefined ? ` (process exited ${exitCode})` : ''}; stderr:\n${r.stderr()}`,
        );
      }
      await Bun.sleep(15);
    }
  };

  const listening = await waitForLog((l) => l.msg === 'skybridge listening', opts.timeoutMs ?? 15_000);
  const port = listening.port as number;
  const gp: GatewayProcess = {
    proc: r.proc,
    port,
    url: `http://127.0.0.1:${port}`,
    logs,
    stderr: r.stderr,
    stdout: r.stdout,
    waitForLog,
    mark() {
      parse();
      return logs.length;
    },
    exited,
    async stop(signal = 'SIGTERM', timeoutMs = 20_000) {
      if (exitCode !== undefined) return exitCode;
      r.proc.kill(signal);
      const timer = setTimeout(() => r.proc.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  return gp;
}
