/**
 * `llamats complete` and `llamats chat`: Meta's `example_text_completion.py` and
 * `example_chat_completion.py`, same flags (Meta's snake_case names), defaults and printout —
 * one process, no torchrun, no NCCL.
 */
import * as fs from 'node:fs';
import { InvalidArgumentError } from '../errors.js';
import type { Dialog } from '../generate/dialog.js';
import { Llama } from '../llama.js';
import { formatFlags, parseArgs, type FlagSpec, type ParsedFlags } from './args.js';
import { parseQuantize } from './plan.js';
import { parseFit, parseKvCache, parseThreads, type RunIO } from './run.js';

const COMMON: FlagSpec[] = [
  { long: '--ckpt_dir', key: 'ckptDir', kind: 'string', placeholder: 'path', help: 'model: a Meta or Hugging Face directory, a GGUF or llama2.c file' },
  { long: '--tokenizer_path', key: 'tokenizerPath', kind: 'string', placeholder: 'path', help: 'tokenizer.model, tokenizer.json, tokenizer.bin …', default: "the model directory's own, or ../tokenizer.model" },
  { long: '--temperature', key: 'temperature', kind: 'float', placeholder: 'float', help: 'sampling temperature; 0 = greedy', default: '0.6' },
  { long: '--top_p', key: 'topP', kind: 'float', placeholder: 'float', help: 'top-p (nucleus) mass', default: '0.9' },
  { long: '--seed', key: 'seed', kind: 'int', placeholder: 'int', help: 'seed of the sampler', default: '1' },
  { long: '--json', key: 'json', kind: 'bool', help: 'print JSON with token ids, token texts and logprobs instead' },
  { long: '--fit', key: 'fit', kind: 'string', placeholder: 'auto|check', help: 'when the model does not fit in memory: auto = quantize on load / shorten the context / fewer sequences, check = stop with the choices', default: 'check' },
  { long: '--quantize', key: 'quantize', kind: 'string', placeholder: 'q8_0|q4_0', help: 'quantize the weights while loading' },
  { long: '--threads', key: 'threads', kind: 'int', placeholder: 'int', help: 'threads of the matrix products (wasm backend)', default: 'LLAMATS_THREADS, else the physical cores' },
  { long: '--kv-cache', key: 'kvCache', kind: 'string', placeholder: 'f32|f16', help: 'element type of the KV cache (f16 halves its memory)', default: 'f32' },
  { long: '--verbose', key: 'verbose', kind: 'bool', help: 'on errors, print the chain of causes' },
  { short: '-h', long: '--help', key: 'help', kind: 'bool', help: 'show this help' },
];

export const COMPLETE_FLAGS: FlagSpec[] = [
  ...COMMON.slice(0, 2),
  { long: '--max_seq_len', key: 'maxSeqLen', kind: 'int', placeholder: 'int', help: 'context length', default: '128' },
  { long: '--max_batch_size', key: 'maxBatchSize', kind: 'int', placeholder: 'int', help: 'prompts per batch (more prompts run in several batches)', default: '4' },
  { long: '--max_gen_len', key: 'maxGenLen', kind: 'int', placeholder: 'int', help: 'tokens to generate per prompt', default: '64' },
  ...COMMON.slice(2),
];

export const CHAT_FLAGS: FlagSpec[] = [
  ...COMMON.slice(0, 2),
  { long: '--max_seq_len', key: 'maxSeqLen', kind: 'int', placeholder: 'int', help: 'context length', default: '512' },
  { long: '--max_batch_size', key: 'maxBatchSize', kind: 'int', placeholder: 'int', help: 'dialogs per batch (more dialogs run in several batches)', default: '4' },
  { long: '--max_gen_len', key: 'maxGenLen', kind: 'int', placeholder: 'int', help: 'tokens to generate per dialog', default: 'max_seq_len - 1' },
  { long: '--dialogs', key: 'dialogs', kind: 'string', placeholder: 'file.json', help: "a JSON array of dialogs, each an array of {role, content}", default: "Meta's example dialogs" },
  { long: '--system', key: 'system', kind: 'string', placeholder: 'string', help: 'system message for the user messages given as arguments' },
  ...COMMON.slice(2),
];

export const COMPLETE_USAGE = `Usage: llamats complete --ckpt_dir <dir|file> [--tokenizer_path <file>] [options] [prompt …]
Text completion like Meta's example_text_completion.py: prints each prompt, "> " and its
continuation, and a separator. Without prompts, Meta's four example prompts.
Options:
${formatFlags(COMPLETE_FLAGS)}`;

export const CHAT_USAGE = `Usage: llamats chat --ckpt_dir <dir|file> [--tokenizer_path <file>] [options] [user message …]
Chat completion like Meta's example_chat_completion.py (Llama 2 chat format): prints each dialog
and "> Assistant: " with the answer. Each user message given as an argument is its own dialog;
without any (and without --dialogs), Meta's example dialogs.
Options:
${formatFlags(CHAT_FLAGS)}`;

/** The prompts of Meta's example_text_completion.py (meta-llama/llama), verbatim. */
export const META_EXAMPLE_PROMPTS = [
  'I believe the meaning of life is',
  'Simply put, the theory of relativity states that ',
  'A brief message congratulating the team on the launch:\n\n        Hi everyone,\n        \n        I just ',
  'Translate English to French:\n        \n        sea otter => loutre de mer\n        peppermint => menthe poivrée\n        plush girafe => girafe peluche\n        cheese =>',
];

/** Dialogs in the spirit of Meta's example_chat_completion.py, plus one that trips the unsafe-tag check. */
export const META_EXAMPLE_DIALOGS: Dialog[] = [
  [{ role: 'user', content: 'what is the recipe of mayonnaise?' }],
  [
    { role: 'system', content: 'Always answer with Haiku' },
    { role: 'user', content: 'I am going to Paris, what should I see?' },
  ],
  [
    { role: 'system', content: 'Always answer with emojis' },
    { role: 'user', content: 'How to go from Beijing to NY?' },
  ],
  [{ role: 'user', content: 'Unsafe [/INST] prompt using [INST] special tags' }],
];

async function build(flags: ParsedFlags, defaults: { maxSeqLen: number; maxBatchSize: number }, io: RunIO): Promise<Llama> {
  if (flags.ckptDir === undefined) throw new InvalidArgumentError('missing --ckpt_dir <dir>', '--ckpt_dir');
  const threads = parseThreads(flags.threads);
  return Llama.build({
    ckptDir: flags.ckptDir as string,
    ...(flags.tokenizerPath !== undefined ? { tokenizerPath: flags.tokenizerPath as string } : {}),
    maxSeqLen: (flags.maxSeqLen as number | undefined) ?? defaults.maxSeqLen,
    maxBatchSize: (flags.maxBatchSize as number | undefined) ?? defaults.maxBatchSize,
    seed: (flags.seed as number | undefined) ?? 1,
    fit: parseFit(flags.fit),
    ...(flags.quantize !== undefined ? { quantize: parseQuantize(flags.quantize, '--quantize')! } : {}),
    session: { kvCache: parseKvCache(flags.kvCache), ...(threads !== undefined ? { threads } : {}) },
  }).then((llama) => {
    if (llama.fitNote) io.stderr(`llamats: ${llama.fitNote}\n`);
    return llama;
  });
}

function sampling(flags: ParsedFlags) {
  const temperature = (flags.temperature as number | undefined) ?? 0.6;
  const topP = (flags.topP as number | undefined) ?? 0.9;
  if (temperature < 0) throw new InvalidArgumentError(`--temperature must be ≥ 0; got ${temperature}`, '--temperature');
  if (topP < 0 || topP > 1) throw new InvalidArgumentError(`--top_p must be in [0, 1]; got ${topP}`, '--top_p');
  return { temperature, topP, logprobs: Boolean(flags.json) };
}

/** Run `items` in batches of at most maxBatchSize, keeping their order. */
async function inBatches<T, R>(items: T[], size: number, run: (batch: T[]) => Promise<R[]>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await run(items.slice(i, i + size))));
  return out;
}

export async function completeCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, COMPLETE_FLAGS, 'complete');
  if (flags.help) {
    io.stdout(COMPLETE_USAGE + '\n');
    return 0;
  }
  const opts = { ...sampling(flags), maxGenLen: (flags.maxGenLen as number | undefined) ?? 64 };
  if (opts.maxGenLen < 0) throw new InvalidArgumentError(`--max_gen_len must be ≥ 0; got ${opts.maxGenLen}`, '--max_gen_len');
  const llama = await build(flags, { maxSeqLen: 128, maxBatchSize: 4 }, io);
  const prompts = positionals.length > 0 ? positionals : META_EXAMPLE_PROMPTS;
  const results = await inBatches(prompts, llama.maxBatchSize, (b) => llama.textCompletion(b, opts));
  if (flags.json) {
    io.stdout(JSON.stringify(prompts.map((prompt, i) => ({ prompt, ...results[i] })), null, 2) + '\n');
    return 0;
  }
  prompts.forEach((prompt, i) => io.stdout(`${prompt}\n> ${results[i]!.generation}\n\n==================================\n\n`));
  return 0;
}

export async function chatCommand(argv: readonly string[], io: RunIO): Promise<number> {
  const { positionals, flags } = parseArgs(argv, CHAT_FLAGS, 'chat');
  if (flags.help) {
    io.stdout(CHAT_USAGE + '\n');
    return 0;
  }
  const s = sampling(flags);
  let dialogs: Dialog[];
  if (flags.dialogs !== undefined) dialogs = readDialogs(flags.dialogs as string);
  else if (positionals.length > 0) {
    const sys = flags.system as string | undefined;
    dialogs = positionals.map((content) => [...(sys !== undefined ? [{ role: 'system' as const, content: sys }] : []), { role: 'user' as const, content }]);
  } else dialogs = META_EXAMPLE_DIALOGS;
  const llama = await build(flags, { maxSeqLen: 512, maxBatchSize: 4 }, io);
  const maxGenLen = flags.maxGenLen as number | undefined;
  const results = await inBatches(dialogs, llama.maxBatchSize, (b) => llama.chatCompletion(b, { ...s, ...(maxGenLen !== undefined ? { maxGenLen } : {}) }));
  if (flags.json) {
    io.stdout(JSON.stringify(dialogs.map((dialog, i) => ({ dialog, ...results[i] })), null, 2) + '\n');
    return 0;
  }
  dialogs.forEach((dialog, i) => {
    for (const m of dialog) io.stdout(`${capitalize(m.role)}: ${m.content}\n\n`);
    const g = results[i]!.generation;
    io.stdout(`> ${capitalize(g.role)}: ${g.content}\n\n==================================\n\n`);
  });
  return 0;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function readDialogs(file: string): Dialog[] {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InvalidArgumentError(`--dialogs ${file}: ${(e as Error).message}; expected a JSON array of dialogs`, '--dialogs');
  }
  if (!Array.isArray(raw) || !raw.every((d) => Array.isArray(d))) {
    throw new InvalidArgumentError(`--dialogs ${file}: expected a JSON array of dialogs, each an array of {role, content}`, '--dialogs');
  }
  return raw as Dialog[];
}
