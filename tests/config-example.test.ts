/**
 * config.example.yaml (installed as /etc/skybridge/config.yaml by scripts/install.sh)
 * loads as it is, and documents every field of the config schema: a field added to the
 * schema without a line in the example fails here, naming it.
 */
import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigSchema } from '../src/config/schema.ts';
import { REPO, runCli } from './support/process.ts';

const EXAMPLE = join(REPO, 'config.example.yaml');

/** Every field name in the schema, with its dotted path, skipping accepted-and-ignored ones. */
function schemaFields(schema: any, path = ''): Array<{ path: string; name: string }> {
  if (!schema || typeof schema !== 'object') return [];
  switch (schema.type) {
    case 'optional':
    case 'nullable':
    case 'nullish':
      return schemaFields(schema.wrapped, path);
    case 'object':
    case 'strict_object':
    case 'loose_object':
      return Object.entries(schema.entries as Record<string, any>).flatMap(([name, entry]) => {
        const inner = entry.type === 'optional' ? entry.wrapped : entry;
        if (inner?.type === 'unknown') return []; // Bifrost-only, accepted and ignored (listed in a comment)
        const here = path ? `${path}.${name}` : name;
        return [{ path: here, name }, ...schemaFields(entry, here)];
      });
    case 'array':
      return schemaFields(schema.item, `${path}[]`);
    case 'record':
      return schemaFields(schema.value, `${path}.*`);
    case 'union':
      return (schema.options as any[]).flatMap((o) => schemaFields(o, path));
    default:
      return [];
  }
}

describe('config.example.yaml', () => {
  test('validates as it is, with no environment variable set', async () => {
    const r = await runCli(['validate', '--config', EXAMPLE], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp' },
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${EXAMPLE}: OK\n`);
  });

  test('documents every field of the schema', () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    const fields = schemaFields(ConfigSchema);
    expect(fields.length).toBeGreaterThan(40);
    const missing = fields
      .filter((f) => !new RegExp(`(^|[\\s{,#-])${f.name.replace('$', '\\$')}:`, 'm').test(text))
      .map((f) => f.path);
    expect(missing).toEqual([]);
  });
});
