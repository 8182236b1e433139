/** Config problems an operator can act on: the file, line/column, the field's path and what is wrong. */

export interface ConfigProblem {
  file: string;
  line?: number;
  col?: number;
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatProblem(p: ConfigProblem): string {
  const where = p.line ? `${p.file}:${p.line}:${p.col ?? 1}` : p.file;
  return `${where}: ${p.path ? `${p.path}: ` : ''}${p.message}`;
}

/**
 * A name from the config as a message may show it: a field or provider name reads like
 * one (letters, digits, `_` or `-`, short, few digits); anything else may be a secret
 * pasted in the wrong place and is replaced by its length (the line and column still
 * point at it).
 */
export function shownName(name: string): string {
  const digits = name.replace(/[^0-9]/g, '').length;
  return /^[a-z_$][a-z0-9_$-]{0,31}$/i.test(name) && digits <= 4 ? name : `<a name of ${name.length} characters>`;
}
