/** Config files: YAML and JSON, Bifrost's shape, env references, errors with positions. */
import { describe, expect, test } from 'bun:test';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, parseConfigText } from '../src/app/config/load.ts';
import { loadRuntimeConfig } from '../src/app/config/source.ts';

const SPEC_EXAMPLE = `server: { host: 127.0.0.1, port: 8080, max_request_body_mb: 100 }
logs:   { file: ./logs/requests.ndjson, content: false }
providers:
  openai:
    keys:
      - { name: main, value: env.OPENAI_API_KEY, models: ["*"], weight: 0.7 }
      - { name: backup, value: env.OPENAI_API_KEY_2, models: ["gpt-4o-mini"], weight: 0.3 }
    network_config:
      base_url: https://api.openai.com
      extra_headers: { x-team: research }
      default_request_timeout_in_seconds: 300
      max_retries: 2
      retry_backoff_initial: 500      # ms
      retry_backoff_max: 5000         # ms
  azure:
    keys:
      - name: eastus
        value: env.AZURE_API_KEY
        models: ["*"]
        azure_key_config: { endpoint: https://my-res.openai.azure.com, api_version: 2024-10-21 }
  gemini:
    keys: [{ name: g, value: env.GEMINI_API_KEY, models: ["*"] }]
`;

const ENV = { OPENAI_API_KEY: 'k1', OPENAI_API_KEY_2: 'k2', AZURE_API_KEY: 'k3', GEMINI_API_KEY: 'k4' };

function problemsOf(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('config files', () => {
  test("the spec's example config loads, env references resolved", () => {
    const c = parseConfigText(SPEC_EXAMPLE, 'config.yaml', ENV);
    expect(c.providers.openai!.keys[0]!.value).toBe('k1');
    expect(c.providers.openai!.keys[1]).toMatchObject({
      name: 'backup',
      value: 'k2',
      models: ['gpt-4o-mini'],
      weight: 0.3,
    });
    expect(c.providers.azure!.keys[0]!.azure_key_config!.api_version).toBe('2024-10-21');
    expect(c.providers.openai!.network_config.extra_headers).toEqual({ 'x-team': 'research' });
  });

  test('a missing environment variable is an error naming it, with its position', () => {
    const [p] = problemsOf(() => parseConfigText(SPEC_EXAMPLE, 'config.yaml', { ...ENV, OPENAI_API_KEY_2: undefined }));
    expect(p!.message).toContain('OPENAI_API_KEY_2');
    expect(p!.path).toBe('providers.openai.keys[1].value');
    expect(p!.line).toBe(7);
  });

  test('a wrong type: file, line/column and field path', () => {
    const text = 'providers:\n  openai:\n    keys:\n      - name: a\n        value: x\n        weight: heavy\n';
    const [p] = problemsOf(() => parseConfigText(text, '/etc/skybridge/config.yaml', {}));
    expect(p).toMatchObject({
      file: '/etc/skybridge/config.yaml',
      line: 6,
      col: 17,
      path: 'providers.openai.keys[0].weight',
    });
    expect(new ConfigError([p!]).message).toStartWith(
      '/etc/skybridge/config.yaml:6:17: providers.openai.keys[0].weight: ',
    );
  });

  test('an unknown field is reported (typos do not pass silently)', () => {
    const [p] = problemsOf(() =>
      parseConfigText('providers:\n  openai:\n    network_config:\n      max_retry: 3\n', 'c.yaml', {}),
    );
    expect(p!.path).toBe('providers.openai.network_config.max_retry');
    expect(p!.line).toBe(4);
  });

  test('YAML syntax errors carry positions', () => {
    const [p] = problemsOf(() => parseConfigText('providers:\n  openai: [\n', 'c.yaml', {}));
    expect(p!.line).toBeGreaterThan(0);
  });

  test("Bifrost's config.json provider shape loads (extra Bifrost fields accepted)", () => {
    const bifrost = {
      $schema: 'https://www.getbifrost.ai/schema',
      client: { drop_excess_requests: false },
      providers: {
        openai: {
          keys: [
            { name: 'openai-key-1', value: 'env.OPENAI_API_KEY', models: [], weight: 1.0, use_for_batch_api: true },
          ],
          network_config: { default_request_timeout_in_seconds: 30, max_retries: 1 },
          concurrency_and_buffer_size: { concurrency: 3, buffer_size: 10 },
        },
        vertex: {
          keys: [
            {
              name: 'vk',
              value: 'env.GEMINI_API_KEY',
              models: ['*'],
              weight: 1,
              vertex_key_config: { project_id: 'p', region: 'us-central1', auth_credentials: '' },
            },
          ],
        },
      },
      config_store: { enabled: false },
    };
    const c = parseConfigText(JSON.stringify(bifrost, null, 2), 'config.json', ENV);
    expect(c.providers.openai!.keys[0]!.models).toEqual([]);
  });

  test('JSON errors have positions too', () => {
    const [p] = problemsOf(() =>
      parseConfigText('{\n  "providers": {\n    "openai": { "keys": 5 }\n  }\n}', 'config.json', {}),
    );
    expect(p).toMatchObject({ path: 'providers.openai.keys', line: 3 });
  });

  test('compile-time checks: a key without a value', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skybridge-cfg-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'providers:\n  openai:\n    keys:\n      - name: a\n');
    const err = await loadRuntimeConfig(file, {}).catch((e) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toContain('providers.openai.keys[0].value');
  });

  test('built-in default: providers enabled from their standard variables', async () => {
    const { config } = await loadRuntimeConfig(undefined, {
      OPENAI_API_KEY: 'a',
      ANTHROPIC_API_KEY: 'b',
      AZURE_API_KEY: 'c',
      AZURE_ENDPOINT: 'https://x.openai.azure.com',
    });
    expect(config.origin).toBe('built-in default');
    expect(config.providers.openai!.keys.size).toBe(1);
    expect(config.providers.anthropic!.keys.size).toBe(1);
    expect(config.providers.azure!.keys.size).toBe(1);
    expect(config.providers.gemini!.keys.size).toBe(0);
    expect(config.source.server).toMatchObject({ host: '127.0.0.1', port: 8080 });
  });
});
