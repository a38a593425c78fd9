/**
 * A small flag parser for llamats commands: every flag is declared once with its short and long
 * names, value kind, default and help line, so that parsing, validation and `--help` agree.
 */
import { InvalidArgumentError } from '../errors.js';

export interface FlagSpec {
  readonly short?: string; // '-t'
  readonly long: string; // '--temperature'
  readonly key: string;
  readonly kind: 'float' | 'int' | 'string' | 'bool';
  readonly placeholder?: string;
  readonly help: string;
  readonly default?: string; // as shown in --help
}

export type ParsedFlags = Record<string, string | number | boolean | undefined>;

/** Parse `argv` into positionals and flags. Unknown flags and missing values are typed errors. */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], command: string): { positionals: string[]; flags: ParsedFlags } {
  const positionals: string[] = [];
  const flags: ParsedFlags = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-' || /^-\d/.test(a)) {
      positionals.push(a);
      continue;
    }
    let name = a;
    let inline: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      name = a.slice(0, eq);
      inline = a.slice(eq + 1);
    }
    const spec = specs.find((s) => s.short === name || s.long === name);
    if (!spec) throw new InvalidArgumentError(`unknown flag ${name} for '${command}'; see 'llamats ${command} --help'`, name);
    if (spec.kind === 'bool') {
      flags[spec.key] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new InvalidArgumentError(`flag ${name} needs a value (${spec.placeholder ?? spec.kind}); see 'llamats ${command} --help'`, name);
    flags[spec.key] = convert(value, spec, name);
  }
  return { positionals, flags };
}

function convert(value: string, spec: FlagSpec, name: string): string | number {
  if (spec.kind === 'string') return value;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) {
    throw new InvalidArgumentError(`flag ${name} expects a number, got '${value}'`, name);
  }
  if (spec.kind === 'int' && !Number.isInteger(n)) {
    throw new InvalidArgumentError(`flag ${name} expects an integer, got '${value}'`, name);
  }
  return n;
}

/** The options part of a command's help: one line per flag with its default. */
export function formatFlags(specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const names = [s.short, s.long].filter(Boolean).join(', ') + (s.kind === 'bool' ? '' : ` <${s.placeholder ?? s.kind}>`);
    return [names, s.help + (s.default !== undefined ? ` (default: ${s.default})` : '')] as const;
  });
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([a, b]) => `  ${a.padEnd(w)}  ${b}`).join('\n');
}
