/** Command-line parsing: `skybridge [serve|validate] [--config PATH] [--host H] [--port N] [--workers N|auto]`. */

import { MAX_WORKERS } from '../lib/workers.ts';

export interface CliArgs {
  command: 'serve' | 'validate' | 'version' | 'help';
  config?: string;
  host?: string;
  port?: number;
  /** Overrides server.workers. */
  workers?: 'auto' | number;
}

export const USAGE = `Usage:
  skybridge [serve] [--config PATH] [--host H] [--port N] [--workers N|auto]
                                                             start the gateway
  skybridge validate [--config PATH]                         check a config, exit 0/1
  skybridge --version | --help

Config lookup: --config, else $SKYBRIDGE_CONFIG, else ./config.yaml|yml|json, else a
built-in default enabling each provider whose API key variables are set
(OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, AZURE_API_KEY + AZURE_ENDPOINT,
GOOGLE_APPLICATION_CREDENTIALS + VERTEX_PROJECT + VERTEX_REGION).
Default bind: 127.0.0.1:8080, one worker process per usable CPU (server.workers).`;

export class UsageError extends Error {}

export function parseArgs(argv: string[]): CliArgs {
  const args: CliArgs = { command: 'serve' };
  let commandSeen = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] =
      arg.startsWith('--') && arg.includes('=')
        ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
        : [arg, undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--version':
      case '-v':
        return { command: 'version' };
      case '--help':
      case '-h':
        return { command: 'help' };
      case '--config':
      case '-c':
        args.config = value();
        break;
      case '--host':
        args.host = value();
        break;
      case '--port':
      case '-p': {
        const v = value();
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > 65535)
          throw new UsageError(`--port must be an integer 0-65535, got "${v}"`);
        args.port = n;
        break;
      }
      case '--workers': {
        const v = value();
        const n = Number(v);
        if (v !== 'auto' && !(Number.isInteger(n) && n >= 1 && n <= MAX_WORKERS))
          throw new UsageError(`--workers must be auto or an integer 1-${MAX_WORKERS}, got "${v}"`);
        args.workers = v === 'auto' ? 'auto' : n;
        break;
      }
      case 'serve':
      case 'validate':
        if (commandSeen) throw new UsageError(`unexpected argument "${arg}"`);
        args.command = flag;
        commandSeen = true;
        break;
      default:
        throw new UsageError(`unknown argument "${arg}"`);
    }
  }
  return args;
}
