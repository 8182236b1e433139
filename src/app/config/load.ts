/**
 * Reads a YAML or JSON config file into a validated `Config`. Errors carry the file,
 * line/column and the field path so an operator can fix them without guessing.
 * JSON is parsed by the YAML parser too (YAML 1.2 is a superset), so both get positions.
 */
import { readFileSync } from 'node:fs';
import * as v from 'valibot';
import { type Document, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { ConfigError, type ConfigProblem, shownName } from '../../config/problems.ts';
import { type Config, ConfigSchema } from '../../config/schema.ts';

export { ConfigError, type ConfigProblem, formatProblem } from '../../config/problems.ts';

export type Env = Record<string, string | undefined>;

const ENV_REF = /^env\.([A-Za-z_][A-Za-z0-9_]*)$/;

/** Load and validate a config file; throws ConfigError. */
export function loadConfigFile(file: string, env: Env = process.env): { config: Config; text: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([{ file, path: '', message: `cannot read config file: ${(err as Error).message}` }]);
  }
  return { config: parseConfigText(text, file, env), text };
}

/** Parse config text (YAML or JSON); `file` is only used in messages. */
export function parseConfigText(text: string, file: string, env: Env = process.env): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
        return { file, line: pos.line, col: pos.col, path: '', message: e.message.split('\n')[0]! };
      }),
    );
  }
  const raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  return validateConfig(raw, file, env, (path) => position(doc, lineCounter, path));
}

/** Resolve `env.NAME` references and validate a plain object against the schema. */
export function validateConfig(
  raw: unknown,
  file: string,
  env: Env = process.env,
  at: (path: (string | number)[]) => { line?: number; col?: number } = () => ({}),
): Config {
  const problems: ConfigProblem[] = [];
  const resolved = resolveEnvRefs(raw, [], env, (path, name) =>
    problems.push({ file, ...at(path), path: dotPath(path), message: `environment variable ${name} is not set` }),
  );
  if (problems.length > 0) throw new ConfigError(problems);

  const result = v.safeParse(ConfigSchema, resolved, { abortEarly: false, message: withoutValue });
  if (!result.success) {
    throw new ConfigError(
      result.issues.map((issue) => {
        const path = (issue.path ?? []).map((p) => p.key as string | number);
        const message = describeIssue(issue);
        const nameAtFault = message === UNKNOWN_FIELD || issue.path?.at(-1)?.origin === 'key';
        return { file, ...at(path), path: dotPath(nameAtFault ? maskLast(path) : path), message };
      }),
    );
  }
  return result.output;
}

/** Replace every `env.NAME` string with the variable's value. */
function resolveEnvRefs(
  node: unknown,
  path: (string | number)[],
  env: Env,
  missing: (path: (string | number)[], name: string) => void,
): unknown {
  if (typeof node === 'string') {
    const m = ENV_REF.exec(node);
    if (!m) return node;
    const value = env[m[1]!];
    if (value === undefined || value === '') missing(path, m[1]!);
    return value ?? '';
  }
  if (Array.isArray(node)) return node.map((item, i) => resolveEnvRefs(item, [...path, i], env, missing));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, item] of Object.entries(node)) out[k] = resolveEnvRefs(item, [...path, k], env, missing);
    return out;
  }
  return node;
}

/*
 * Config problems never quote the value found: a key pasted where another field belongs
 * would be printed on stderr and in the app log. They name the field, what it expects and
 * the type found; the line and column point at the value.
 */
const UNKNOWN_FIELD = 'unknown field';

/** valibot's default message, without the `received` part that quotes the value. */
const withoutValue = (issue: v.BaseIssue<unknown>): string =>
  `invalid ${issue.type.replaceAll('_', ' ')}: expected ${issue.expected}`;

function describeIssue(issue: v.BaseIssue<unknown>): string {
  if (issue.type === 'union' && issue.issues?.length) return describeIssue(issue.issues[0]!);
  if (issue.expected === 'never') return UNKNOWN_FIELD;
  if (issue.kind === 'schema') return `invalid type: expected ${issue.expected}, got ${typeOf(issue.input)}`;
  return issue.message;
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const t = typeof value;
  return t === 'undefined' ? 'nothing' : t === 'object' ? 'a map' : `a ${t}`;
}

/** A name the problem is about (unknown, or not a valid name) is shown only when it reads like one (problems.ts). */
function maskLast(path: (string | number)[]): (string | number)[] {
  const last = path.at(-1);
  return typeof last === 'string' ? [...path.slice(0, -1), shownName(last)] : path;
}

function dotPath(path: (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** Line/column of the deepest node that exists on `path` (the key itself for unknown keys). */
function position(doc: Document, lc: LineCounter, path: (string | number)[]): { line?: number; col?: number } {
  let node: unknown = doc.contents;
  let offset: number | undefined = (doc.contents as Node | null)?.range?.[0];
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(key));
      if (!pair) break;
      offset = (pair.key as Node).range?.[0] ?? offset;
      node = pair.value;
      if ((node as Node | null)?.range) offset = (node as Node).range![0];
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
      if ((node as Node | null)?.range) offset = (node as Node).range![0];
      else break;
    } else break;
  }
  if (offset === undefined) return {};
  const { line, col } = lc.linePos(offset);
  return { line, col };
}
