/**
 * `llamats plan <model>`: the memory a model will need, from its headers, against what this
 * machine has — and, when it does not fit, by how much and which choices fit.
 */
import { EXIT_CODES, InvalidArgumentError } from '../errors.js';
import { formatPlan, planMemory } from '../plan.js';
import type { LoadQuantization } from '../model/tensor.js';
import { formatFlags, parseArgs, type FlagSpec } from './args.js';
import type { RunIO } from './run.js';

export const PLAN_FLAGS: FlagSpec[] = [
  { long: '--ctx', key: 'ctx', kind: 'int', placeholder: 'int', help: 'context (positions) per sequence', default: "the model's" },
  { long: '--batch', key: 'batch', kind: 'int', placeholder: 'int', help: 'sequences at once (one KV cache each)', default: '1' },
  { long: '--quantize', key: 'quantize', kind: 'string', placeholder: 'q8_0|q4_0', help: 'plan for weights quantized on load' },
  { long: '--device', key: 'device', kind: 'string', placeholder: 'cpu', help: 'device to plan for (only the CPU has a backend yet)', default: 'cpu' },
  { long: '--json', key: 'json', kind: 'bool', help: 'print the plan as JSON' },
  { long: '--verbose', key: 'verbose', kind: 'bool', help: 'on errors, print the chain of causes' },
  { short: '-h', long: '--help', key: 'help', kind: 'bool', help: 'show this help' },
];

export const PLAN_USAGE = `Usage: llamats plan <model> [options]
The memory <model> needs (weights, the backend's copy, KV cache, activations) against what this
machine has (MemAvailable, cgroup limits), from the model's headers alone. When it does not fit:
by how much, and which choices fit. Exit status 0 when it fits, ${EXIT_CODES.OUT_OF_MEMORY} when it does not.
Options:
${formatFlags(PLAN_FLAGS)}`;

/** Parse a --quantize / --fit value. */
export function parseQuantize(v: unknown, flag: string): LoadQuantization | undefined {
  if (v === undefined) return undefined;
  if (v === 'q8_0' || v === 'q4_0') return v;
  throw new InvalidArgumentError(`${flag} must be q8_0 or q4_0; got '${String(v)}'`, flag);
}

export async function planCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, PLAN_FLAGS, 'plan');
  if (flags.help) return io.stdout(PLAN_USAGE + '\n'), 0;
  if (positionals.length !== 1) throw new InvalidArgumentError('expected one <model>; usage: llamats plan <model> [--ctx N] [--batch N]');
  if (flags.device !== undefined && flags.device !== 'cpu') {
    throw new InvalidArgumentError(`--device ${String(flags.device)}: llamats has only a CPU backend yet (see 'llamats doctor'); use --device cpu`, '--device');
  }
  for (const k of ['ctx', 'batch'] as const) {
    if (flags[k] !== undefined && (flags[k] as number) < 1) throw new InvalidArgumentError(`--${k} must be ≥ 1; got ${String(flags[k])}`, `--${k}`);
  }
  const quantize = parseQuantize(flags.quantize, '--quantize');
  const p = planMemory(positionals[0]!, {
    ...(flags.ctx !== undefined ? { ctx: flags.ctx as number } : {}),
    ...(flags.batch !== undefined ? { batch: flags.batch as number } : {}),
    ...(quantize ? { quantize } : {}),
  });
  io.stdout(flags.json ? JSON.stringify({ ...p, model: { path: p.model.path, format: p.model.format, parameters: p.model.parameters } }, null, 2) + '\n' : formatPlan(p));
  return p.fits ? 0 : EXIT_CODES.OUT_OF_MEMORY;
}
