/**
 * `llamats run <checkpoint> [options]`: llama2.c's `run` — same flags, defaults and output.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { InvalidArgumentError } from '../errors.js';
import { chat } from '../generate/chat.js';
import { checkTokenizer, generate, resolveSteps } from '../generate/generate.js';
import { loadModel } from '../model/load.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { inspectModel } from '../inspect.js';
import { fitModel } from '../plan.js';
import { formatFlags, parseArgs, type FlagSpec } from './args.js';
import { parseQuantize } from './plan.js';

export const RUN_FLAGS: readonly FlagSpec[] = [
  { short: '-t', long: '--temperature', key: 'temperature', kind: 'float', placeholder: 'float', help: 'temperature in [0, inf); 0 = greedy (argmax)', default: '1.0' },
  { short: '-p', long: '--top-p', key: 'topp', kind: 'float', placeholder: 'float', help: 'p value of top-p (nucleus) sampling in [0, 1]; 0 or 1 = off', default: '0.9' },
  { short: '-s', long: '--seed', key: 'seed', kind: 'int', placeholder: 'int', help: 'random seed; 0 = the time', default: 'time' },
  { short: '-n', long: '--steps', key: 'steps', kind: 'int', placeholder: 'int', help: 'number of steps (positions, prompt included); 0 = the context length', default: '256' },
  { short: '-i', long: '--prompt', key: 'prompt', kind: 'string', placeholder: 'string', help: 'input prompt (in chat mode: the first user message)', default: 'none' },
  { short: '-z', long: '--tokenizer', key: 'tokenizer', kind: 'string', placeholder: 'path', help: 'tokenizer file', default: 'tokenizer.bin beside the checkpoint, else in the current directory' },
  { short: '-m', long: '--mode', key: 'mode', kind: 'string', placeholder: 'generate|chat', help: 'mode', default: 'generate' },
  { short: '-y', long: '--system', key: 'system', kind: 'string', placeholder: 'string', help: 'system prompt in chat mode', default: 'asked on stdin' },
  { long: '--fit', key: 'fit', kind: 'string', placeholder: 'auto|check', help: 'when the model does not fit in memory: auto = quantize on load / shorten the context, check = stop with the choices', default: 'check' },
  { long: '--quantize', key: 'quantize', kind: 'string', placeholder: 'q8_0|q4_0', help: 'quantize the weights while loading' },
  { long: '--threads', key: 'threads', kind: 'int', placeholder: 'int', help: 'threads of the matrix products (wasm backend)', default: 'LLAMATS_THREADS, else the physical cores' },
  { long: '--kv-cache', key: 'kvCache', kind: 'string', placeholder: 'f32|f16', help: 'element type of the KV cache (f16 halves its memory)', default: 'f32' },
  { long: '--verbose', key: 'verbose', kind: 'bool', help: 'on errors, print the chain of causes' },
  { short: '-h', long: '--help', key: 'help', kind: 'bool', help: 'show this help' },
];

export const RUN_USAGE = `Usage:   llamats run <checkpoint> [options]
Example: llamats run stories15M.bin -z tokenizer.bin -n 256 -i "Once upon a time"
Runs a llama2.c checkpoint (version 0, 1 or 2) or a Meta checkpoint directory like llama2.c's run: prints the prompt and its
continuation on stdout, then "achieved tok/s: N" on stderr.
Options:
${formatFlags(RUN_FLAGS)}`;

export interface RunIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  stdin: NodeJS.ReadableStream;
  cwd: string;
}

export async function runCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, RUN_FLAGS, 'run');
  if (flags.help) {
    io.stdout(RUN_USAGE + '\n');
    return 0;
  }
  if (positionals.length === 0) throw new InvalidArgumentError(`missing <checkpoint>; usage: llamats run <checkpoint> [options] (see 'llamats run --help')`);
  if (positionals.length > 1) throw new InvalidArgumentError(`unexpected argument '${positionals[1]}'; usage: llamats run <checkpoint> [options]`);
  const checkpoint = positionals[0]!;

  // validate every flag before touching any file
  const temperature = (flags.temperature as number | undefined) ?? 1.0;
  if (temperature < 0) throw new InvalidArgumentError(`-t (temperature) must be ≥ 0; got ${temperature}`, '-t');
  const topp = (flags.topp as number | undefined) ?? 0.9;
  if (topp < 0 || topp > 1) throw new InvalidArgumentError(`-p (top-p) must be in [0, 1]; got ${topp}`, '-p');
  const steps = (flags.steps as number | undefined) ?? 256;
  if (steps < 0) throw new InvalidArgumentError(`-n (steps) must be ≥ 0 (0 = the context length); got ${steps}`, '-n');
  let seed = (flags.seed as number | undefined) ?? 0;
  if (seed === 0) seed = Math.floor(Date.now() / 1000);
  const mode = (flags.mode as string | undefined) ?? 'generate';
  if (mode !== 'generate' && mode !== 'chat') throw new InvalidArgumentError(`-m (mode) must be 'generate' or 'chat'; got '${mode}'`, '-m');
  const prompt = flags.prompt as string | undefined;
  const system = flags.system as string | undefined;
  const threads = parseThreads(flags.threads);
  const kvCache = parseKvCache(flags.kvCache);
  const session = { ...(threads !== undefined ? { threads } : {}), kvCache };

  const tokenizerPath = findTokenizer(flags.tokenizer as string | undefined, checkpoint, io.cwd);
  const tokenizer = Tokenizer.load(tokenizerPath);
  // plan the memory from the headers before loading anything
  const report = inspectModel(checkpoint, { tokenizerPath });
  const fit = fitModel(report, {
    ctx: resolveSteps(steps, report.config.seqLen || 2048),
    fit: parseFit(flags.fit),
    ...(flags.quantize !== undefined ? { quantize: parseQuantize(flags.quantize, '--quantize')! } : {}),
  });
  if (fit.note) io.stderr(`llamats: ${fit.note}\n`);
  const model = loadModel(checkpoint, { vocabSize: tokenizer.vocabSize, ...(fit.quantize ? { quantize: fit.quantize } : {}) });
  checkTokenizer(model, tokenizer, `tokenizer ${tokenizerPath}`);
  const n = Math.min(resolveSteps(steps, model.config.seqLen), fit.ctx);
  const sampling = { temperature, topp, seed, session };

  if (mode === 'chat') {
    const lines = readline.createInterface({ input: io.stdin, terminal: false });
    const it = lines[Symbol.asyncIterator]();
    await chat(model, tokenizer, {
      readLine: async (p) => {
        io.stdout(p);
        const r = await it.next();
        return r.done ? null : r.value;
      },
      write: io.stdout,
    }, { ...sampling, steps: n, ...(prompt !== undefined ? { userPrompt: prompt } : {}), ...(system !== undefined ? { systemPrompt: system } : {}) });
    lines.close();
    return 0;
  }

  // generate() validates the prompt and the sampler before its first chunk: errors print nothing else
  const it = generate(model, tokenizer, { ...sampling, steps: n, ...(prompt !== undefined ? { prompt } : {}) });
  for (;;) {
    const r = await it.next();
    if (r.done) {
      io.stdout('\n');
      if (r.value.tokensPerSecond !== null) io.stderr(`achieved tok/s: ${r.value.tokensPerSecond.toFixed(6)}\n`);
      return 0;
    }
    if (r.value.text) io.stdout(r.value.text);
  }
}

/** The --threads value: undefined (the default) or an integer ≥ 1 (the flag table checks it is an integer). */
export function parseThreads(v: unknown): number | undefined {
  if (v !== undefined && (v as number) < 1) throw new InvalidArgumentError(`--threads must be ≥ 1; got ${String(v)}`, '--threads');
  return v as number | undefined;
}

/** The --kv-cache value: 'f32' (the default) or 'f16'. */
export function parseKvCache(v: unknown): 'f32' | 'f16' {
  if (v === undefined || v === 'f32') return 'f32';
  if (v === 'f16') return 'f16';
  throw new InvalidArgumentError(`--kv-cache must be f32 or f16; got '${String(v)}'`, '--kv-cache');
}

/** The --fit value: 'auto' or 'check' (the default). */
export function parseFit(v: unknown): 'auto' | 'check' {
  if (v === undefined || v === 'check') return 'check';
  if (v === 'auto') return 'auto';
  throw new InvalidArgumentError(`--fit must be auto or check; got '${String(v)}'`, '--fit');
}

/**
 * -z if given; else tokenizer.bin beside the checkpoint file; for a model directory its
 * tokenizer.json or tokenizer.model, or ../tokenizer.model (Meta's layout); a GGUF file's own
 * vocabulary; else ./tokenizer.bin (run.c's default).
 */
export function findTokenizer(given: string | undefined, checkpoint: string, cwd: string): string {
  if (given !== undefined) return given;
  const isDir = fs.existsSync(checkpoint) && fs.statSync(checkpoint).isDirectory();
  const candidates = isDir
    ? [path.join(checkpoint, 'tokenizer.json'), path.join(checkpoint, 'tokenizer.model'), path.join(checkpoint, '..', 'tokenizer.model'), path.join(checkpoint, 'tokenizer.bin'), path.join(cwd, 'tokenizer.bin')]
    : checkpoint.endsWith('.gguf')
      ? [checkpoint]
      : [path.join(path.dirname(checkpoint), 'tokenizer.bin'), path.join(cwd, 'tokenizer.bin')];
  for (const c of candidates) if (fs.existsSync(c)) return c;
  throw new InvalidArgumentError(`no tokenizer found (looked for ${candidates.join(' and ')}); pass one with -z <path>`, '-z');
}
