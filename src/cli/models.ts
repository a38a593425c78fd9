/**
 * `llamats inspect`, `llamats convert` and `llamats quantize`: look into a model without loading
 * its weights, and write any supported model as a GGUF file that llama.cpp reads.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatBytes, InvalidArgumentError } from '../errors.js';
import { ggmlTypeId, readGgufHeader, writeGgufModel, type GgufValue } from '../formats/gguf.js';
import { tokenizerGgufMetadata } from '../formats/gguf-vocab.js';
import { inspectModel, type ModelReport } from '../inspect.js';
import { defaultTokenizerPath } from '../llama.js';
import { loadModel } from '../model/load.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { formatFlags, parseArgs, type FlagSpec } from './args.js';
import type { RunIO } from './run.js';

const TYPES = 'f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q2_k|q3_k|q4_k|q5_k|q6_k';
const HELP_FLAG: FlagSpec = { short: '-h', long: '--help', key: 'help', kind: 'bool', help: 'show this help' };
const VERBOSE: FlagSpec = { long: '--verbose', key: 'verbose', kind: 'bool', help: 'on errors, print the chain of causes' };

export const INSPECT_FLAGS: FlagSpec[] = [
  { short: '-z', long: '--tokenizer', key: 'tokenizer', kind: 'string', placeholder: 'path', help: 'tokenizer to report on', default: "the model's own or the one beside it" },
  { long: '--json', key: 'json', kind: 'bool', help: 'print the report as JSON' },
  VERBOSE,
  HELP_FLAG,
];
export const INSPECT_USAGE = `Usage: llamats inspect <file-or-dir> [options]
Format, architecture, dimensions, tensor types, parameter count, bytes, tokenizer and chat
template of a model (llama2.c .bin, Meta or Hugging Face directory, GGUF) — without loading its
weights.
Options:
${formatFlags(INSPECT_FLAGS)}`;

export const CONVERT_FLAGS: FlagSpec[] = [
  { long: '--type', key: 'type', kind: 'string', placeholder: TYPES, help: 'weight type of the 2-D tensors (rows that blocks do not fit fall back as llama-quantize does)', default: 'f16' },
  { short: '-z', long: '--tokenizer', key: 'tokenizer', kind: 'string', placeholder: 'path', help: 'tokenizer to embed', default: "the model's own or the one beside it" },
  { long: '--max_seq_len', key: 'maxSeqLen', kind: 'int', placeholder: 'int', help: 'context length to record (llama.context_length)', default: "the model's" },
  VERBOSE,
  HELP_FLAG,
];
export const CONVERT_USAGE = `Usage: llamats convert <input> <output.gguf> [options]
Write a model (llama2.c, Meta, Hugging Face or GGUF) as a GGUF file with its tokenizer and chat
template embedded, in llama.cpp's layouts.
Options:
${formatFlags(CONVERT_FLAGS)}`;

export const QUANTIZE_USAGE = `Usage: llamats quantize <in.gguf> <out.gguf> <type>
Requantize a GGUF model's weights to <type> (${TYPES}) in llama.cpp's block layouts; metadata
and tokenizer are kept.
Options:
${formatFlags([VERBOSE, HELP_FLAG])}`;

export async function inspectCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, INSPECT_FLAGS, 'inspect');
  if (flags.help) return io.stdout(INSPECT_USAGE + '\n'), 0;
  if (positionals.length !== 1) throw new InvalidArgumentError(`expected one <file-or-dir>; usage: llamats inspect <file-or-dir> [--json]`);
  const r = inspectModel(positionals[0]!, flags.tokenizer !== undefined ? { tokenizerPath: flags.tokenizer as string } : {});
  io.stdout(flags.json ? JSON.stringify(r, null, 2) + '\n' : formatReport(r));
  return 0;
}

export function formatReport(r: ModelReport): string {
  const c = r.config;
  const rows: Array<[string, string]> = [
    ['path', r.path],
    ['format', r.format],
    ['architecture', r.architecture],
    ['dimensions', `dim ${c.dim}, hidden ${c.hiddenDim}, ${c.nLayers} layers, ${c.nHeads} heads, ${c.nKvHeads} KV heads, head dim ${c.headDim}`],
    ['vocabulary', String(c.vocabSize)],
    ['context', c.seqLen ? String(c.seqLen) : "not stored (the caller's max_seq_len)"],
    ['norm eps, RoPE theta', `${Number(c.normEps.toPrecision(6))}, ${c.ropeTheta}${c.ropeScaling ? ` (Llama 3.1 scaling ×${c.ropeScaling.factor})` : ''}`],
    ['embeddings', c.tiedEmbeddings ? 'tied (the classifier reuses them)' : 'separate classifier'],
    ['tensor types', Object.entries(r.tensorTypes).map(([t, n]) => `${n} ${t}`).join(', ')],
    ['parameters', `${(r.parameters / 1e6).toFixed(2)}M`],
    ['weights', `${formatBytes(r.weightBytes)} (files ${formatBytes(r.fileBytes)})`],
    ['tokenizer', r.tokenizer
      ? `${r.tokenizer.type}, ${r.tokenizer.vocabSize} tokens (${r.tokenizer.path})${r.tokenizer.vocabSize !== c.vocabSize ? ` — does not match the model's ${c.vocabSize}: pass the right one with -z` : ''}`
      : 'none found (pass -z)'],
    ['chat template', r.chatTemplate ? 'yes' : 'no'],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/** Convert `input` into a GGUF file of weight type `type`. */
export function convertToGguf(input: string, output: string, opts: { type: string; tokenizerPath?: string; maxSeqLen?: number }): void {
  const type = ggmlTypeId(opts.type);
  if (path.resolve(input) === path.resolve(output)) throw new InvalidArgumentError('the output must not be the input file', 'output');
  const isGguf = !fs.statSync(input).isDirectory() && input.endsWith('.gguf');
  let extra: Map<string, GgufValue>;
  let vocabSize: number | undefined;
  if (isGguf && opts.tokenizerPath === undefined) {
    // keep the input's tokenizer and template as they are
    const h = readGgufHeader(input);
    extra = new Map([...h.metadata].filter(([k]) => k.startsWith('tokenizer.')));
  } else {
    const tokPath = opts.tokenizerPath ?? tokenizerBeside(input);
    const tokenizer = Tokenizer.load(tokPath);
    vocabSize = tokenizer.vocabSize;
    extra = tokenizerGgufMetadata(tokenizer, chatTemplateOf(input));
  }
  const model = loadModel(input, { ...(vocabSize !== undefined ? { vocabSize } : {}), ...(opts.maxSeqLen !== undefined ? { maxSeqLen: opts.maxSeqLen } : {}) });
  writeGgufModel(output, model, { type, extraMetadata: extra });
}

function tokenizerBeside(input: string): string {
  // llama.cpp's converter prefers tokenizer.model (SentencePiece) where a directory has both
  if (fs.statSync(input).isDirectory() && fs.existsSync(path.join(input, 'tokenizer.model'))) return path.join(input, 'tokenizer.model');
  if (fs.statSync(input).isDirectory() || input.endsWith('.gguf')) return defaultTokenizerPath(input);
  const t = path.join(path.dirname(input), 'tokenizer.bin');
  if (fs.existsSync(t)) return t;
  throw new InvalidArgumentError(`no tokenizer found beside ${input} (looked for ${t}); pass one with -z <path>`, '-z');
}

function chatTemplateOf(input: string): string | undefined {
  const tc = path.join(input, 'tokenizer_config.json');
  if (!fs.existsSync(tc)) return undefined;
  const t = (JSON.parse(fs.readFileSync(tc, 'utf8')) as { chat_template?: unknown }).chat_template;
  return typeof t === 'string' ? t : undefined;
}

export async function convertCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, CONVERT_FLAGS, 'convert');
  if (flags.help) return io.stdout(CONVERT_USAGE + '\n'), 0;
  if (positionals.length !== 2) throw new InvalidArgumentError('expected <input> <output.gguf>; usage: llamats convert <input> <output.gguf> [--type f16]');
  const [input, output] = positionals as [string, string];
  const t0 = performance.now();
  convertToGguf(input, output, {
    type: (flags.type as string | undefined) ?? 'f16',
    ...(flags.tokenizer !== undefined ? { tokenizerPath: flags.tokenizer as string } : {}),
    ...(flags.maxSeqLen !== undefined ? { maxSeqLen: flags.maxSeqLen as number } : {}),
  });
  io.stderr(`wrote ${output} (${formatBytes(fs.statSync(output).size)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return 0;
}

export async function quantizeCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, [VERBOSE, HELP_FLAG], 'quantize');
  if (flags.help) return io.stdout(QUANTIZE_USAGE + '\n'), 0;
  if (positionals.length !== 3) throw new InvalidArgumentError(`expected <in.gguf> <out.gguf> <type>; type is one of ${TYPES}`);
  const [input, output, type] = positionals as [string, string, string];
  if (!input.endsWith('.gguf')) throw new InvalidArgumentError(`${input}: quantize reads GGUF files; use 'llamats convert' for other formats`);
  const t0 = performance.now();
  convertToGguf(input, output, { type });
  io.stderr(`wrote ${output} (${formatBytes(fs.statSync(output).size)}) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return 0;
}
