/**
 * Where the config comes from: `--config`, else $SKYBRIDGE_CONFIG, else
 * ./config.yaml|yml|json, else the built-in default built from provider env variables.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { RuntimeConfig } from '../../config/runtime.ts';
import { compileConfig } from './compile.ts';
import { defaultConfigInput } from './defaults.ts';
import { type Env, loadConfigFile, parseConfigText, validateConfig } from './load.ts';

export const DEFAULT_ORIGIN = 'built-in default';
const CANDIDATES = ['config.yaml', 'config.yml', 'config.json'];

export function locateConfig(cliPath: string | undefined, env: Env, cwd = process.cwd()): string | undefined {
  if (cliPath) return resolve(cwd, cliPath);
  if (env.SKYBRIDGE_CONFIG) return resolve(cwd, env.SKYBRIDGE_CONFIG);
  for (const name of CANDIDATES) {
    const p = resolve(cwd, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** Load, validate and compile; throws ConfigError with positions on any problem. */
export async function loadRuntimeConfig(
  path: string | undefined,
  env: Env = process.env,
): Promise<{ config: RuntimeConfig; text: string | undefined }> {
  if (!path) {
    const config = validateConfig(defaultConfigInput(env), DEFAULT_ORIGIN, env);
    return { config: await compileConfig(config, DEFAULT_ORIGIN), text: undefined };
  }
  const { config, text } = loadConfigFile(path, env);
  return { config: await compileConfig(config, path), text };
}

/**
 * The config from text already read (a worker compiles what its primary read and
 * checked: every process of the group runs the same file, even while it is being edited);
 * undefined text: the built-in default.
 */
export async function compileConfigText(
  path: string | undefined,
  text: string | undefined,
  options: { env?: Env; files?: Readonly<Record<string, string>> } = {},
): Promise<RuntimeConfig> {
  const env = options.env ?? process.env;
  if (!path || text === undefined) return (await loadRuntimeConfig(undefined, env)).config;
  return compileConfig(parseConfigText(text, path, env), path, options.files);
}

/**
 * The files a compiled config read besides its own (server.tls's certificate and key),
 * by path: sent to the workers with the text, so a certificate renewed while they compile
 * cannot give them a different one (or a key that is not the certificate's).
 */
export function filesRead(config: RuntimeConfig): Record<string, string> {
  const tls = config.serverTls;
  return tls ? { [tls.certFile]: tls.cert, [tls.keyFile]: tls.key } : {};
}
