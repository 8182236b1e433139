/**
 * Starts a real gateway (in this process, on an ephemeral port) from a config written
 * to a temporary file, with the request log in the same temporary directory.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gateway } from '../../src/app/gateway.ts';
import type { StaticPlugin as Plugin } from '../../src/core/plugin.ts';

export interface TestGateway {
  gw: Gateway;
  url: string;
  dir: string;
  configPath: string;
  logFile: string;
  /** Parsed request-log lines written so far (after the logger flushed). */
  logLines(): Promise<any[]>;
  /** Wait until at least n log lines exist. */
  waitForLines(n: number, timeoutMs?: number): Promise<any[]>;
  /** Wait for the first log line matching `pred`; throws when none came in time. */
  waitForLine(pred: (line: any) => boolean, timeoutMs?: number): Promise<any>;
  stop(): Promise<void>;
}

let counter = 0;

/** A fake secret that looks like a key but is generated per run. */
export function fakeKey(prefix = 'sk-test'): string {
  return `${prefix}-${crypto.randomUUID().replaceAll('-', '')}`;
}

export async function startGateway(
  config: Record<string, unknown>,
  env: Record<string, string | undefined> = process.env,
  plugins: Plugin[] = [],
): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), `skybridge-test-${++counter}-`));
  const logFile = join(dir, 'requests.ndjson');
  const full = {
    ...config,
    server: { host: '127.0.0.1', port: 0, ...(config.server as object) },
    logs: { file: logFile, ...(config.logs as object) },
  };
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(full, null, 2));
  const gw = await Gateway.start({ configPath, env, plugins });
  const logLines = async () => {
    gw.plugins.logging.flush();
    if (!existsSync(logFile)) return [];
    const text = readFileSync(logFile, 'utf8');
    // Only whole lines: the logger may be half way through writing the last one.
    return text
      .slice(0, text.lastIndexOf('\n') + 1)
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  };
  return {
    gw,
    url: gw.url,
    dir,
    configPath,
    logFile,
    logLines,
    async waitForLines(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const lines = await logLines();
        if (lines.length >= n || Date.now() > deadline) return lines;
        await Bun.sleep(20);
      }
    },
    async waitForLine(pred, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = (await logLines()).find(pred);
        if (line) return line;
        if (Date.now() > deadline) throw new Error('no matching request-log line');
        await Bun.sleep(20);
      }
    },
    stop: async () => {
      await gw.shutdown(2000);
    },
  };
}
