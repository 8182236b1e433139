/**
 * The command line as an operator meets it (real processes): --version, --help, usage
 * errors, `validate` on good and bad configs (exit 0/1, file:line:col and field path),
 * a missing env variable named, the config lookup order, the built-in default from
 * provider env variables, and `bun run start -- --config x --port N`.
 */
import { afterAll, describe, expect, test } from 'bun:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pkg from '../package.json' with { type: 'json' };
import { type GatewayProcess, REPO, runCli, startGatewayProcess, tempDir } from './support/process.ts';

/** A clean environment: no provider keys or SKYBRIDGE_* from the machine running the tests. */
const baseEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
  HOME: process.env.HOME ?? '/tmp',
  SKYBRIDGE_LOG_LEVEL: 'info',
  ...extra,
});

const procs: GatewayProcess[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL', 2000)));
});

const GOOD = `server: { host: 127.0.0.1, port: 0 }
logs: { file: ./logs/requests.ndjson }
providers:
  openai:
    keys:
      - { name: main, value: env.CLI_TEST_OPENAI_KEY, models: ["*"] }
`;

describe('information', () => {
  test('--version and -v print the version, exit 0', async () => {
    for (const flag of ['--version', '-v']) {
      const r = await runCli([flag], { env: baseEnv() });
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`skybridge ${pkg.version}\n`);
    }
  });

  test('--help prints the usage, exit 0', async () => {
    const r = await runCli(['--help'], { env: baseEnv() });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage:');
    expect(r.stdout).toContain('skybridge validate [--config PATH]');
    expect(r.stdout).toContain('Default bind: 127.0.0.1:8080');
  });

  test('an unknown argument is a usage error, exit 2', async () => {
    const r = await runCli(['--frobnicate'], { env: baseEnv() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown argument "--frobnicate"');
    expect(r.stderr).toContain('Usage:');
  });
});

describe('validate', () => {
  test('a good config: exit 0 and "<path>: OK"', async () => {
    const dir = tempDir('cli');
    const path = join(dir, 'config.yaml');
    writeFileSync(path, GOOD);
    const r = await runCli(['validate', '--config', path], { env: baseEnv({ CLI_TEST_OPENAI_KEY: 'sk-x' }) });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${path}: OK\n`);
  });

  test('a wrong field: exit 1, file:line:col and the field path', async () => {
    const dir = tempDir('cli');
    const path = join(dir, 'config.yaml');
    writeFileSync(path, `${GOOD}    network_config:\n      max_retries: lots\n`);
    const r = await runCli(['validate', '--config', path], { env: baseEnv({ CLI_TEST_OPENAI_KEY: 'sk-x' }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^${path.replaceAll('.', '\\.')}:8:20: providers\\.openai\\.network_config\\.max_retries: `),
    );
  });

  test('a YAML syntax error: exit 1 with its position', async () => {
    const dir = tempDir('cli');
    const path = join(dir, 'config.yaml');
    writeFileSync(path, GOOD.replace('models: ["*"] }', 'models: ["*" }'));
    const r = await runCli(['validate', '--config', path], { env: baseEnv({ CLI_TEST_OPENAI_KEY: 'sk-x' }) });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^${path.replaceAll('.', '\\.')}:6:\\d+: `));
  });

  test('an unknown field in JSON: exit 1 with position and path', async () => {
    const dir = tempDir('cli');
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify({ server: { port: 8080, colour: 'blue' } }, null, 2));
    const r = await runCli(['validate', '--config', path], { env: baseEnv() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${path}:4:15: server.colour: unknown field`);
  });

  test('a missing environment variable is named, with where it is used', async () => {
    const dir = tempDir('cli');
    const path = join(dir, 'config.yaml');
    writeFileSync(path, GOOD);
    const r = await runCli(['validate', '--config', path], { env: baseEnv() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `${path}:6:30: providers.openai.keys[0].value: environment variable CLI_TEST_OPENAI_KEY is not set`,
    );
  });

  test('a missing file: exit 1 naming it', async () => {
    const r = await runCli(['validate', '--config', '/nonexistent/skybridge.yaml'], { env: baseEnv() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('/nonexistent/skybridge.yaml: cannot read config file');
  });

  test('serve with a bad config exits 1 with the same message', async () => {
    const dir = tempDir('cli');
    const path = join(dir, 'config.yaml');
    writeFileSync(path, GOOD);
    const r = await runCli(['--config', path], { env: baseEnv() });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('skybridge: invalid config');
    expect(r.stderr).toContain('environment variable CLI_TEST_OPENAI_KEY is not set');
  });
});

test('a port already in use: exit 1 saying so (no silent SO_REUSEPORT sharing)', async () => {
  const taken = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response('other') });
  try {
    const dir = tempDir('cli-port');
    const path = join(dir, 'config.yaml');
    writeFileSync(path, GOOD);
    const r = await runCli(['--config', path, '--port', String(taken.port)], {
      env: baseEnv({ CLI_TEST_OPENAI_KEY: 'sk-x' }),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`skybridge: cannot start: Failed to start server. Is port ${taken.port} in use?`);
  } finally {
    await taken.stop(true);
  }
});

describe('config lookup', () => {
  test('./config.yaml in the working directory, then $SKYBRIDGE_CONFIG over it', async () => {
    const dir = tempDir('cli-cwd');
    writeFileSync(join(dir, 'config.yaml'), GOOD);
    const env = baseEnv({ CLI_TEST_OPENAI_KEY: 'sk-x' });
    const r = await runCli(['validate'], { cwd: dir, env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${join(dir, 'config.yaml')}: OK\n`);

    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc', 'other.json'), '{}');
    const r2 = await runCli(['validate'], { cwd: dir, env: { ...env, SKYBRIDGE_CONFIG: 'etc/other.json' } });
    expect(r2.code).toBe(0);
    expect(r2.stdout).toBe(`${join(dir, 'etc', 'other.json')}: OK\n`);
  });

  test('no file anywhere: the built-in default, from provider env variables', async () => {
    const dir = tempDir('cli-default');
    const env = baseEnv({ OPENAI_API_KEY: 'sk-from-env', SKYBRIDGE_PORT: '0' });
    const r = await runCli(['validate'], { cwd: dir, env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('built-in default: OK\n');

    const gp = await startGatewayProcess([], { cwd: dir, env });
    procs.push(gp);
    const listening = gp.logs.find((l) => l.msg === 'skybridge listening');
    expect(listening).toMatchObject({ host: '127.0.0.1', config: 'built-in default' });
    const health = await fetch(`${gp.url}/health`);
    expect(health.status).toBe(200);
    expect(await gp.stop()).toBe(0);
  });
});

test('bun run start -- --config x --port N', async () => {
  const dir = tempDir('cli-run');
  const path = join(dir, 'config.yaml');
  writeFileSync(path, GOOD);
  // A free port: bind one, note it, let it go.
  const probe = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: () => new Response() });
  const port = probe.port!;
  await probe.stop(true);

  const gp = await startGatewayProcess(['run', 'start', '--', '--config', path, '--port', String(port)], {
    cmd: [process.execPath],
    cwd: REPO,
    env: baseEnv({ CLI_TEST_OPENAI_KEY: 'sk-x' }),
  });
  procs.push(gp);
  expect(gp.port).toBe(port);
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  expect(health.status).toBe(200);
  expect(((await health.json()) as { version: string }).version).toBe(pkg.version);
  // `bun run` passes SIGTERM on to the gateway, which stops cleanly.
  expect(await gp.stop()).toBe(0);
});
