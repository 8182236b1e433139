/**
 * Hot reload, with the gateway as a real process (`bun src/main.ts --config ...`): the
 * config file is edited in place, replaced by rename, and swapped Kubernetes-style
 * (`..data` symlink) while a stream is in flight. The stream finishes on the config it
 * started with; the next request uses the new key (as the mock upstream received it). An
 * invalid edit is logged with file, line and field and the old key stays in force;
 * changing server.host/port warns that a restart is needed.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fakeKey } from './support/gateway.ts';
import { chatStream, MockUpstream } from './support/mock-upstream.ts';
import { type GatewayProcess, runCli, startGatewayProcess, tempDir } from './support/process.ts';

const mock = new MockUpstream();
// Streams for model "slow": 7 frames 250 ms apart (~1.5 s), long enough to edit the config meanwhile.
mock.respondWith((req, rec) =>
  rec.json?.stream && rec.json?.model === 'slow' ? mock.sse(req, chatStream('slow'), 250) : undefined,
);

const procs: GatewayProcess[] = [];
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL', 2000)));
  await mock.stop();
});

function configYaml(dir: string, key: string, server = 'host: 127.0.0.1, port: 0'): string {
  return `# test config
server: { ${server}, shutdown_grace_seconds: 5 }
logs: { file: ${JSON.stringify(join(dir, 'requests.ndjson'))} }
providers:
  openai:
    keys:
      - name: main
        value: "${key}"
        models: ["*"]
    network_config:
      base_url: "${mock.url}"
`;
}

async function chat(gp: GatewayProcess): Promise<string> {
  const res = await fetch(`${gp.url}/openai_passthrough/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer client-key' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  expect(res.status).toBe(200);
  await res.arrayBuffer();
  return mock.last.headers.authorization!;
}

/** Start a slow stream; resolves once the upstream has it, with a promise of its full text. */
async function openStream(gp: GatewayProcess): Promise<{ upstreamAuth: string; text: Promise<string> }> {
  const before = mock.requests.length;
  const res = await fetch(`${gp.url}/openai_passthrough/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer client-key' },
    body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  expect(res.status).toBe(200);
  const text = res.text();
  const rec = mock.requests.slice(before).find((r) => r.json?.model === 'slow');
  expect(rec).toBeDefined();
  return { upstreamAuth: rec!.headers.authorization!, text };
}

const reloaded = (l: any) => l.msg === 'config reloaded';

describe('hot reload of a plain file', () => {
  let dir: string;
  let configPath: string;
  let gp: GatewayProcess;
  const keys = [fakeKey('sk-one'), fakeKey('sk-two'), fakeKey('sk-three'), fakeKey('sk-four')];

  beforeAll(async () => {
    dir = tempDir('reload');
    configPath = join(dir, 'config.yaml');
    writeFileSync(configPath, configYaml(dir, keys[0]!));
    gp = await startGatewayProcess(['--config', configPath]);
    procs.push(gp);
  });

  test('edited in place while a stream is in flight', async () => {
    expect(await chat(gp)).toBe(`Bearer ${keys[0]}`);
    const stream = await openStream(gp);
    const from = gp.mark();
    writeFileSync(configPath, configYaml(dir, keys[1]!));
    await gp.waitForLog(reloaded, 5000, from);
    expect(await chat(gp)).toBe(`Bearer ${keys[1]}`);
    // The stream started on the old config and finishes on it.
    expect(stream.upstreamAuth).toBe(`Bearer ${keys[0]}`);
    expect(await stream.text).toContain('data: [DONE]');
  });

  test('replaced by rename (editor atomic save) while a stream is in flight', async () => {
    const stream = await openStream(gp);
    const from = gp.mark();
    const tmp = join(dir, '.config.yaml.swp');
    writeFileSync(tmp, configYaml(dir, keys[2]!));
    renameSync(tmp, configPath);
    await gp.waitForLog(reloaded, 5000, from);
    expect(await chat(gp)).toBe(`Bearer ${keys[2]}`);
    expect(stream.upstreamAuth).toBe(`Bearer ${keys[1]}`);
    expect(await stream.text).toContain('data: [DONE]');
  });

  test('the same content saved again reloads nothing', async () => {
    const from = gp.mark();
    writeFileSync(configPath, configYaml(dir, keys[2]!));
    await Bun.sleep(500);
    expect(gp.logs.slice(from).filter(reloaded)).toHaveLength(0);
  });

  test('an invalid edit is logged with file, line and field; the old key stays in force', async () => {
    const from = gp.mark();
    writeFileSync(
      configPath,
      configYaml(dir, keys[3]!).replace('      base_url:', '      max_retries: lots\n      base_url:'),
    );
    const rejected = await gp.waitForLog(
      (l) => l.msg === 'config reload rejected; previous config stays in force',
      5000,
      from,
    );
    expect(rejected.level).toBe('error');
    expect(rejected.problems).toContainEqual(
      expect.objectContaining({
        file: configPath,
        line: 11,
        col: 20,
        path: 'providers.openai.network_config.max_retries',
      }),
    );
    expect(rejected.error).toContain(`${configPath}:11:20: providers.openai.network_config.max_retries`);
    expect(await chat(gp)).toBe(`Bearer ${keys[2]}`);

    // A YAML syntax error: rejected with its position too.
    const from2 = gp.mark();
    writeFileSync(configPath, configYaml(dir, keys[3]!).replace('models: ["*"]', 'models: ["*"'));
    const syntax = await gp.waitForLog(
      (l) => l.msg === 'config reload rejected; previous config stays in force',
      5000,
      from2,
    );
    expect(syntax.problems[0]).toMatchObject({ file: configPath, line: expect.any(Number) });
    expect(await chat(gp)).toBe(`Bearer ${keys[2]}`);
  });

  test('changing server.host or server.port applies the rest and warns that a restart is needed', async () => {
    const from = gp.mark();
    writeFileSync(configPath, configYaml(dir, keys[3]!, 'host: 127.0.0.2, port: 1'));
    await gp.waitForLog(reloaded, 5000, from);
    const warnings = gp.logs.slice(from).filter((l) => l.level === 'warn' && /needs a restart/.test(l.msg));
    expect(warnings.map((w) => w.setting).sort()).toEqual(['server.host', 'server.port']);
    expect(warnings.find((w) => w.setting === 'server.port')).toMatchObject({ in_force: 0, configured: 1 });
    // Still served where it listened, with the new key.
    expect(await chat(gp)).toBe(`Bearer ${keys[3]}`);
  });

  test('SIGHUP reloads too', async () => {
    const from = gp.mark();
    gp.proc.kill('SIGHUP');
    const line = await gp.waitForLog(reloaded, 5000, from);
    expect(line.reason).toBe('SIGHUP');
    expect(await chat(gp)).toBe(`Bearer ${keys[3]}`);
  });
});

describe('hot reload through symlinks', () => {
  test('Kubernetes ConfigMap style: ..data swapped while a stream is in flight', async () => {
    const dir = tempDir('reload-k8s');
    const logDir = tempDir('reload-k8s-logs');
    const keys = [fakeKey('sk-k8s-a'), fakeKey('sk-k8s-b'), fakeKey('sk-k8s-c')];
    // What the kubelet lays out: config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>
    const version = (n: number, key: string) => {
      const d = join(dir, `..2026_11_27_0${n}`);
      mkdirSync(d);
      writeFileSync(join(d, 'config.yaml'), configYaml(logDir, key));
      return `..2026_11_27_0${n}`;
    };
    symlinkSync(version(1, keys[0]!), join(dir, '..data'));
    symlinkSync('..data/config.yaml', join(dir, 'config.yaml'));
    const swap = (n: number, key: string, old: string) => {
      const v = version(n, key);
      symlinkSync(v, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      rmSync(join(dir, old), { recursive: true });
      return v;
    };

    const gp = await startGatewayProcess(['--config', join(dir, 'config.yaml')]);
    procs.push(gp);
    expect(await chat(gp)).toBe(`Bearer ${keys[0]}`);

    const stream = await openStream(gp);
    let from = gp.mark();
    const v2 = swap(2, keys[1]!, '..2026_11_27_01');
    await gp.waitForLog(reloaded, 5000, from);
    expect(await chat(gp)).toBe(`Bearer ${keys[1]}`);
    expect(stream.upstreamAuth).toBe(`Bearer ${keys[0]}`);
    expect(await stream.text).toContain('data: [DONE]');

    // A second swap: the watch followed the first one.
    from = gp.mark();
    swap(3, keys[2]!, v2);
    await gp.waitForLog(reloaded, 5000, from);
    expect(await chat(gp)).toBe(`Bearer ${keys[2]}`);
    expect(await gp.stop()).toBe(0);
  });

  test('a config symlinked to a file elsewhere: the target replaced by rename', async () => {
    const linkDir = tempDir('reload-link');
    const realDir = tempDir('reload-real');
    const keys = [fakeKey('sk-real-a'), fakeKey('sk-real-b')];
    const real = join(realDir, 'skybridge.yaml');
    writeFileSync(real, configYaml(realDir, keys[0]!));
    symlinkSync(real, join(linkDir, 'config.yaml'));
    const gp = await startGatewayProcess(['--config', join(linkDir, 'config.yaml')]);
    procs.push(gp);
    expect(await chat(gp)).toBe(`Bearer ${keys[0]}`);
    const from = gp.mark();
    writeFileSync(join(realDir, 'new.yaml'), configYaml(realDir, keys[1]!));
    renameSync(join(realDir, 'new.yaml'), real);
    await gp.waitForLog(reloaded, 5000, from);
    expect(await chat(gp)).toBe(`Bearer ${keys[1]}`);
    expect(await gp.stop()).toBe(0);
  });
});

describe('a request log file that cannot be opened', () => {
  test('at start: the gateway does not start, and says which file and why', async () => {
    const dir = tempDir('logfile-start');
    const logPath = join(dir, 'a-directory');
    mkdirSync(logPath);
    const configPath = join(dir, 'config.yaml');
    writeFileSync(
      configPath,
      configYaml(dir, fakeKey('sk-logstart')).replace(
        JSON.stringify(join(dir, 'requests.ndjson')),
        JSON.stringify(logPath),
      ),
    );
    const r = await runCli(['--config', configPath]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`logs.file ${logPath} cannot be opened`);
  });

  test('on reload: the rest of the config applies, lines keep going to the old file', async () => {
    const dir = tempDir('logfile-reload');
    const configPath = join(dir, 'config.yaml');
    const keys = [fakeKey('sk-logreload-a'), fakeKey('sk-logreload-b')];
    writeFileSync(configPath, configYaml(dir, keys[0]!));
    const gp = await startGatewayProcess(['--config', configPath]);
    procs.push(gp);
    expect(await chat(gp)).toBe(`Bearer ${keys[0]}`);

    const bad = join(dir, 'now-a-directory');
    mkdirSync(bad);
    const from = gp.mark();
    writeFileSync(
      configPath,
      configYaml(dir, keys[1]!).replace(JSON.stringify(join(dir, 'requests.ndjson')), JSON.stringify(bad)),
    );
    const error = await gp.waitForLog((l) => l.level === 'error' && /cannot be opened/.test(l.msg), 5000, from);
    expect(error.msg).toContain('the request log stays where it was');
    await gp.waitForLog(reloaded, 5000, from);
    expect(await chat(gp)).toBe(`Bearer ${keys[1]}`);
    expect(await gp.stop()).toBe(0);
    const lines = readFileSync(join(dir, 'requests.ndjson'), 'utf8').trim().split('\n');
    expect(lines).toHaveLength(2);
  });
});
