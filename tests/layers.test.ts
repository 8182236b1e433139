/**
 * The dependency rule of src/ (README, "Architecture"): imports point down the layers,
 * never up or sideways, and no file-level cycle exists.
 *
 *   main → app → http → plugins | proxy → providers → core → config → usage | keys → lib
 *
 * Folders on one rank (plugins and proxy; usage and keys) do not import each other. Inside
 * plugins/, a plugin's folder imports only itself and plugins/shared/; only the registry
 * (plugins/index.ts) knows them all.
 */
import { describe, expect, test } from 'bun:test';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const SRC = resolve(import.meta.dir, '../src');
const RANK: Record<string, number> = {
  'main.ts': 0,
  app: 1,
  http: 2,
  plugins: 3,
  proxy: 3,
  providers: 4,
  core: 5,
  config: 6,
  usage: 7,
  keys: 7,
  lib: 8,
};

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : name.endsWith('.ts') ? [path] : [];
  });
}

/** Relative imports of a file (static, dynamic and re-exports), as paths relative to src/. */
function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!);
  // Files outside src/ (package.json) are data, not a layer.
  return specs.map((s) => relative(SRC, resolve(dirname(file), s))).filter((to) => !to.startsWith('..'));
}

const top = (path: string) => path.split('/')[0]!;

/** What is wrong with `from` importing `to` (paths relative to src/), or undefined. */
export function layerViolation(from: string, to: string): string | undefined {
  const a = top(from);
  const b = top(to);
  if (!(a in RANK)) return `${from} is in a folder with no layer (${a}); add it to the rule`;
  if (!(b in RANK)) return `${to} is in a folder with no layer (${b})`;
  if (a === b) {
    if (a !== 'plugins') return undefined;
    const pa = from.split('/')[1]!;
    const pb = to.split('/')[1]!;
    if (pa === 'index.ts' || pa === pb || pb === 'shared') return undefined;
    return `${from} imports ${to}: a plugin imports only its own folder and plugins/shared`;
  }
  if (RANK[b]! > RANK[a]!) return undefined;
  return `${from} imports ${to}: ${a}/ may only import layers below it (${b}/ is ${RANK[b] === RANK[a] ? 'beside' : 'above'} it)`;
}

describe('layers', () => {
  const files = filesUnder(SRC).map((f) => relative(SRC, f));
  const graph = new Map(files.map((f) => [f, importsOf(join(SRC, f))] as const));

  test('every import points down the layers', () => {
    const violations: string[] = [];
    for (const [from, tos] of graph)
      for (const to of tos) {
        const v = layerViolation(from, to);
        if (v) violations.push(v);
      }
    expect(violations).toEqual([]);
  });

  test('no file-level import cycle', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (f: string) => {
      state.set(f, 'open');
      stack.push(f);
      for (const to of graph.get(f) ?? []) {
        if (state.get(to) === 'open') cycles.push([...stack.slice(stack.indexOf(to)), to].join(' -> '));
        else if (!state.has(to) && graph.has(to)) visit(to);
      }
      stack.pop();
      state.set(f, 'done');
    };
    for (const f of graph.keys()) if (!state.has(f)) visit(f);
    expect(cycles).toEqual([]);
  });

  test('the rule itself: an upward, a sideways and a plugin-to-plugin import fail, downward ones pass', () => {
    expect(layerViolation('proxy/relay.ts', 'http/app.ts')).toBeString();
    expect(layerViolation('core/request.ts', 'proxy/body.ts')).toBeString();
    expect(layerViolation('proxy/handle.ts', 'plugins/index.ts')).toBeString();
    expect(layerViolation('usage/scanner.ts', 'keys/pool.ts')).toBeString();
    expect(layerViolation('plugins/metrics/index.ts', 'plugins/tracing/index.ts')).toBeString();
    expect(layerViolation('plugins/governance/index.ts', 'plugins/index.ts')).toBeString();
    expect(layerViolation('proxy/handle.ts', 'providers/index.ts')).toBeUndefined();
    expect(layerViolation('plugins/metrics/index.ts', 'plugins/shared/redact.ts')).toBeUndefined();
    expect(layerViolation('main.ts', 'app/gateway.ts')).toBeUndefined();
    // A file added with an upward import is caught by the scan, not only by the rule.
    expect(
      importsOf(join(SRC, 'core/x.ts'), "import { handle } from '../proxy/handle.ts';").map((to) =>
        layerViolation('core/x.ts', to),
      ),
    ).toEqual([expect.any(String)]);
  });
});
