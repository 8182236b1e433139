/**
 * The systemd unit and the install script. `systemd-analyze verify` checks the unit
 * (scripts/setup-test-deps installs it); install.sh lays its files out under --root
 * twice (idempotent, a changed config kept) with a stand-in binary that runs the CLI
 * from source, and the installed config validates.
 */
import { describe, expect, test } from 'bun:test';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAIN, REPO, runCli, tempDir } from './support/process.ts';

const UNIT = readFileSync(join(REPO, 'scripts/skybridge.service'), 'utf8');

/** `Key=value` lines of the [Service] section. */
function serviceSettings(): Map<string, string[]> {
  const section = UNIT.slice(UNIT.indexOf('[Service]'), UNIT.indexOf('[Install]'));
  const out = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

/** An executable that runs the CLI from source, standing in for the compiled binary. */
function standInBinary(): string {
  const dir = tempDir('install-bin');
  const path = join(dir, 'skybridge');
  writeFileSync(path, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN)} "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

describe('scripts/skybridge.service', () => {
  test('systemd-analyze verify passes', async () => {
    const which = Bun.which('systemd-analyze');
    if (!which) throw new Error('systemd-analyze is missing: run scripts/setup-test-deps (Debian package systemd)');
    // The unit names /usr/local/bin/skybridge, which verify requires to exist: check a copy
    // that points at a stand-in executable and is otherwise the same.
    const dir = tempDir('unit');
    const unit = join(dir, 'skybridge.service');
    expect(UNIT).toContain('ExecStart=/usr/local/bin/skybridge serve --config /etc/skybridge/config.yaml\n');
    writeFileSync(unit, UNIT.replace('/usr/local/bin/skybridge', standInBinary()));
    const r = await runCli(['verify', unit], { cmd: [which] });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  test('has the settings operations rely on', () => {
    const s = serviceSettings();
    const one = (k: string) => s.get(k)?.at(-1);
    expect(one('User')).toBe('skybridge');
    expect(one('Restart')).toBe('on-failure');
    expect(one('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(one('EnvironmentFile')).toBe('-/etc/skybridge/env');
    expect(s.get('Environment')).toContain('BUN_CONFIG_MAX_HTTP_REQUESTS=16384');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(one('LimitNOFILE')).toBe('65536');
    for (const k of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp']) expect(one(k)).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('ReadWritePaths')).toBe('/var/log/skybridge');
    // The stop timeout outlasts the default shutdown grace (30 s) with room to flush.
    expect(Number.parseInt(one('TimeoutStopSec') ?? '0', 10)).toBeGreaterThan(30);
  });
});

describe('scripts/install.sh', () => {
  test('lays out binary, unit, config, env, logrotate and docs; a second run keeps the config', async () => {
    const root = tempDir('install-root');
    const binary = standInBinary();
    const install = () =>
      runCli(['scripts/install.sh', '--root', root, '--binary', binary], {
        cmd: ['bash'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp' },
        timeoutMs: 30_000,
      });

    const first = await install();
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('config validates');
    expect(first.stdout).toContain('systemd-analyze verify: OK');

    const bin = join(root, 'usr/local/bin/skybridge');
    expect(statSync(bin).mode & 0o777).toBe(0o755);
    expect(readFileSync(join(root, 'etc/systemd/system/skybridge.service'), 'utf8')).toBe(UNIT);
    const config = join(root, 'etc/skybridge/config.yaml');
    expect(statSync(config).mode & 0o777).toBe(0o640);
    expect(readFileSync(config, 'utf8')).toContain('\n  file: /var/log/skybridge/requests.ndjson\n');
    expect(statSync(join(root, 'etc/skybridge/env')).mode & 0o777).toBe(0o640);
    expect(statSync(join(root, 'etc/skybridge')).mode & 0o777).toBe(0o750);
    for (const d of ['var/log/skybridge', 'var/lib/skybridge'])
      expect(statSync(join(root, d)).isDirectory()).toBe(true);
    for (const f of [
      'etc/logrotate.d/skybridge',
      'usr/local/share/doc/skybridge/operations.md',
      'usr/local/share/doc/skybridge/config.example.yaml',
    ]) {
      expect(existsSync(join(root, f))).toBe(true);
    }
    const validated = await runCli(['validate', '--config', config], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp' },
    });
    expect(validated.code).toBe(0);

    // An operator's edit survives a re-install (upgrade).
    writeFileSync(config, readFileSync(config, 'utf8').replace('port: 8080', 'port: 9090'));
    writeFileSync(join(root, 'etc/skybridge/env'), 'OPENAI_API_KEY=sk-operator\n');
    const second = await install();
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('kept as it is');
    expect(readFileSync(config, 'utf8')).toContain('port: 9090');
    expect(readFileSync(join(root, 'etc/skybridge/env'), 'utf8')).toBe('OPENAI_API_KEY=sk-operator\n');
  }, 60_000);
});
