/**
 * `Llama`: Meta's `llama/generation.py` API — build, generate, text_completion, chat_completion —
 * with the same semantics and results, in one process, on one device, without torch, torchrun or
 * NCCL. Names are Meta's in camelCase.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ContextOverflowError, InvalidArgumentError } from './errors.js';
import { type Dialog, encodeDialog, isUnsafeDialog, UNSAFE_ERROR } from './generate/dialog.js';
import { checkTokenizer } from './generate/generate.js';
import { argmax, sortByProbability, XorShiftRng } from './generate/sampler.js';
import { Session, type SessionOptions } from './model/forward.js';
import { loadModel } from './model/load.js';
import type { LoadQuantization } from './model/tensor.js';
import { inspectModel } from './inspect.js';
import { fitModel } from './plan.js';
import type { Model } from './model/weights.js';
import { Tokenizer } from './tokenizer/tokenizer.js';

export interface LlamaBuildOptions {
  /** A Meta checkpoint directory (params.json + consolidated.*.pth) or a llama2.c checkpoint file. */
  ckptDir: string;
  /**
   * tokenizer.model, tokenizer.json, tokenizer.bin, a GGUF file… — the format is detected from the
   * file. Optional for a model directory that holds its tokenizer (Hugging Face), or a GGUF file.
   */
  tokenizerPath?: string;
  maxSeqLen: number;
  maxBatchSize: number;
  /** Seed of the sampling generator (Meta's build calls torch.manual_seed(1)). Default 1. */
  seed?: number;
  /**
   * Memory is planned from the model's headers before loading. 'check' (default): a model that
   * does not fit is an OutOfMemoryError listing what would fit; 'auto': take the first choice
   * that fits (quantize on load, a shorter maxSeqLen, fewer sequences) — `fitNote` says which.
   */
  fit?: 'auto' | 'check';
  /** Quantize the weights while loading. */
  quantize?: LoadQuantization;
  /** How the sessions run (backend, threads, KV cache type). */
  session?: Omit<SessionOptions, 'maxSeqLen'>;
}

export interface GenerateOptions {
  maxGenLen: number;
  temperature?: number;
  topP?: number;
  logprobs?: boolean;
  echo?: boolean;
  /** Tokens that end a row; default: the tokenizer's stop ids (Llama 3: <|end_of_text|> and <|eot_id|>), else [eosId]. */
  stopTokens?: number[];
  /** Restart the sampling generator from this seed for this call. */
  seed?: number;
}

export interface CompletionOptions {
  temperature?: number;
  topP?: number;
  /** Default: maxSeqLen - 1, as Meta. */
  maxGenLen?: number;
  logprobs?: boolean;
  seed?: number;
}

export interface TextCompletion {
  generation: string;
  tokens?: string[];
  logprobs?: number[];
}

export interface ChatCompletion {
  generation: { role: 'assistant'; content: string };
  tokens?: string[];
  logprobs?: number[];
}

export class Llama {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  readonly maxSeqLen: number;
  readonly maxBatchSize: number;
  /** What `fit: 'auto'` chose and why, when it had to choose. */
  fitNote: string | undefined;
  private rng: XorShiftRng;
  private readonly sessionOptions: Omit<SessionOptions, 'maxSeqLen'>;

  constructor(model: Model, tokenizer: Tokenizer, opts: { maxSeqLen: number; maxBatchSize: number; seed?: number; session?: Omit<SessionOptions, 'maxSeqLen'> }) {
    checkTokenizer(model, tokenizer);
    for (const k of ['maxSeqLen', 'maxBatchSize'] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new InvalidArgumentError(`${k} must be a positive integer; got ${opts[k]}`, k);
    }
    if (opts.maxSeqLen > model.config.seqLen) {
      throw new InvalidArgumentError(`maxSeqLen ${opts.maxSeqLen} is longer than the model's context ${model.config.seqLen}`, 'maxSeqLen');
    }
    this.model = model;
    this.tokenizer = tokenizer;
    this.maxSeqLen = opts.maxSeqLen;
    this.maxBatchSize = opts.maxBatchSize;
    this.rng = new XorShiftRng(opts.seed ?? 1);
    this.sessionOptions = opts.session ?? {};
  }

  /** Load a model and its tokenizer (Meta's `Llama.build`). */
  static async build(opts: LlamaBuildOptions): Promise<Llama> {
    const tokenizerPath = opts.tokenizerPath ?? defaultTokenizerPath(opts.ckptDir);
    const tokenizer = Tokenizer.load(tokenizerPath);
    const fit = fitModel(inspectModel(opts.ckptDir, { tokenizerPath }), {
      ctx: opts.maxSeqLen,
      batch: opts.maxBatchSize,
      fit: opts.fit ?? 'check',
      ...(opts.quantize ? { quantize: opts.quantize } : {}),
    });
    const model = loadModel(opts.ckptDir, { vocabSize: tokenizer.vocabSize, maxSeqLen: fit.ctx, ...(fit.quantize ? { quantize: fit.quantize } : {}) });
    const llama = new Llama(model, tokenizer, { maxSeqLen: fit.ctx, maxBatchSize: fit.batch, ...(opts.seed !== undefined ? { seed: opts.seed } : {}), ...(opts.session ? { session: opts.session } : {}) });
    llama.fitNote = fit.note;
    return llama;
  }

  /**
   * Meta's `generate()`: rows of different lengths decode together from the shortest prompt;
   * each row keeps its own prompt tokens; a row stops at a stop token and the loop ends when all
   * have; outputs are trimmed to prompt + maxGenLen (without the prompt unless `echo`) and cut at
   * the first stop token.
   */
  async generate(promptTokens: number[][], opts: GenerateOptions): Promise<{ tokens: number[][]; logprobs?: number[][] }> {
    const { maxGenLen, temperature = 0.6, topP = 0.9, logprobs = false, echo = false } = opts;
    const stop = opts.stopTokens ?? (this.tokenizer.stopIds?.length ? [...this.tokenizer.stopIds] : [this.tokenizer.eosId]);
    const vocab = this.model.config.vocabSize;
    const bsz = promptTokens.length;
    if (bsz === 0) return { tokens: [], ...(logprobs ? { logprobs: [] } : {}) };
    if (bsz > this.maxBatchSize) throw new InvalidArgumentError(`${bsz} prompts exceed maxBatchSize ${this.maxBatchSize}; build with a larger maxBatchSize or send fewer prompts`, 'maxBatchSize');
    if (!Number.isInteger(maxGenLen) || maxGenLen < 0) throw new InvalidArgumentError(`maxGenLen must be an integer ≥ 0; got ${maxGenLen}`, 'maxGenLen');
    if (!Number.isFinite(temperature) || temperature < 0) throw new InvalidArgumentError(`temperature must be ≥ 0; got ${temperature}`, 'temperature');
    if (!Number.isFinite(topP) || topP < 0 || topP > 1) throw new InvalidArgumentError(`topP must be in [0, 1]; got ${topP}`, 'topP');
    promptTokens.forEach((p, i) => {
      if (p.length === 0) throw new InvalidArgumentError(`prompt ${i} is empty; every prompt needs at least one token (BOS)`, 'promptTokens');
      p.forEach((t) => {
        if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new InvalidArgumentError(`prompt ${i} has token ${t}, outside the vocabulary [0, ${vocab})`, 'promptTokens');
      });
    });
    const minPrompt = Math.min(...promptTokens.map((p) => p.length));
    const maxPrompt = Math.max(...promptTokens.map((p) => p.length));
    if (maxPrompt > this.maxSeqLen) throw new ContextOverflowError(`a prompt of ${maxPrompt} tokens exceeds maxSeqLen ${this.maxSeqLen}; shorten it or build with a larger maxSeqLen`);
    const totalLen = Math.min(this.maxSeqLen, maxGenLen + maxPrompt);
    if (opts.seed !== undefined) this.rng = new XorShiftRng(opts.seed);

    const PAD = -1;
    const tokens = promptTokens.map((p) => {
      const row = new Array<number>(totalLen).fill(PAD);
      p.forEach((t, i) => (row[i] = t));
      return row;
    });
    const lps = promptTokens.map(() => new Array<number>(totalLen).fill(0));
    const sessions = promptTokens.map(() => new Session(this.model, { ...this.sessionOptions, maxSeqLen: totalLen }));
    const fed = new Array<number>(bsz).fill(0); // positions already run through each row's session
    const eosReached = new Array<boolean>(bsz).fill(false);
    const scratch = new Float64Array(vocab);
    const probs = new Float32Array(vocab);

    if (minPrompt === totalLen && logprobs) {
      // Meta's special case (nothing to generate): it scores each token against the logits of
      // its own position, not the previous one. Kept as is, for identical results.
      promptTokens.forEach((_, b) => {
        for (let pos = 0; pos < totalLen; pos++) {
          const t = tokens[b]![pos]!;
          const logits = sessions[b]!.forward(t, pos);
          lps[b]![pos] = t === PAD ? 0 : logSoftmaxAt(logits, t);
        }
      });
    }

    let lastYield = performance.now();
    try {
      for (let cur = minPrompt; cur < totalLen; cur++) {
        // Meta keeps computing rows past their EOS; their output is cut at EOS anyway
        const active = [...tokens.keys()].filter((b) => !eosReached[b]);
        const logitsOf: Float32Array[] = [];
        if (!logprobs) {
          // every row's new positions in one batched pass (one read of each weight for the batch;
          // the first step runs the shortest prompt's tokens as prompt chunks): the logits of
          // `forward` on each token in turn (to float32 rounding where wasm runs panel products)
          const out = Session.forwardRuns(active.map((b) => ({ session: sessions[b]!, tokens: tokens[b]!.slice(fed[b]!, cur), pos: fed[b]!, logits: true })));
          active.forEach((b, i) => (logitsOf[b] = out[i]!));
        } else {
          // every prompt position's logits are needed for its logprob: token by token
          for (const b of active) {
            const row = tokens[b]!;
            for (let pos = fed[b]!; pos < cur; pos++) {
              logitsOf[b] = sessions[b]!.forward(row[pos]!, pos);
              if (pos + 1 < cur) lps[b]![pos + 1] = logSoftmaxAt(logitsOf[b]!, row[pos + 1]!);
            }
          }
        }
        for (const b of active) {
          const row = tokens[b]!;
          const logits = logitsOf[b]!;
          fed[b] = cur;
          const inPrompt = cur < promptTokens[b]!.length;
          const next = inPrompt ? row[cur]! : temperature > 0 ? metaSampleTopP(logits, vocab, temperature, topP, this.rng.nextF32(), scratch, probs) : argmax(logits, vocab);
          row[cur] = next;
          if (logprobs) lps[b]![cur] = logSoftmaxAt(logits, next);
          if (!inPrompt && stop.includes(next)) eosReached[b] = true;
        }
        if (eosReached.every(Boolean)) break;
        if (performance.now() - lastYield > 25) {
          await new Promise((r) => setImmediate(r));
          lastYield = performance.now();
        }
      }
    } finally {
      for (const s of sessions) s.dispose();
    }

    const outTokens: number[][] = [];
    const outLogprobs: number[][] = [];
    tokens.forEach((row, b) => {
      const start = echo ? 0 : promptTokens[b]!.length;
      const end = promptTokens[b]!.length + maxGenLen;
      let toks = row.slice(start, end);
      let probs = lps[b]!.slice(start, end);
      for (const st of stop) {
        const i = toks.indexOf(st);
        if (i >= 0) {
          toks = toks.slice(0, i);
          probs = probs.slice(0, i);
        }
      }
      outTokens.push(toks);
      outLogprobs.push(probs);
    });
    return logprobs ? { tokens: outTokens, logprobs: outLogprobs } : { tokens: outTokens };
  }

  /** Meta's `text_completion`: each prompt encoded with BOS, then `generate`. */
  async textCompletion(prompts: string[], opts: CompletionOptions & { echo?: boolean } = {}): Promise<TextCompletion[]> {
    const promptTokens = prompts.map((p) => this.tokenizer.encode(p, { bos: true }));
    const r = await this.generate(promptTokens, this.completionArgs(opts));
    return r.tokens.map((t, i) =>
      r.logprobs ? { generation: this.tokenizer.decode(t), tokens: t.map((x) => this.tokenizer.decode([x])), logprobs: r.logprobs[i]! } : { generation: this.tokenizer.decode(t) },
    );
  }

  /**
   * Meta's `chat_completion`: the Llama 2 chat format (with its unsafe-tag check), or Llama 3's
   * header format when the tokenizer has Llama 3's special tokens (see generate/dialog.ts).
   */
  async chatCompletion(dialogs: Dialog[], opts: CompletionOptions = {}): Promise<ChatCompletion[]> {
    const format = this.dialogFormat();
    const promptTokens = dialogs.map((d) => encodeDialog(this.tokenizer, d, { format }));
    const unsafe = dialogs.map((d) => format === 'llama2' && isUnsafeDialog(d));
    const r = await this.generate(promptTokens, this.completionArgs(opts));
    return r.tokens.map((t, i) => {
      const generation = { role: 'assistant' as const, content: unsafe[i] ? UNSAFE_ERROR : this.tokenizer.decode(t) };
      return r.logprobs ? { generation, tokens: t.map((x) => this.tokenizer.decode([x])), logprobs: r.logprobs[i]! } : { generation };
    });
  }

  /** 'llama3' when <|start_header_id|> is one special token of the vocabulary, else 'llama2'. */
  dialogFormat(): 'llama2' | 'llama3' {
    const ids = this.tokenizer.encode('<|start_header_id|>', { special: true });
    return ids.length === 1 ? 'llama3' : 'llama2';
  }

  private completionArgs(opts: CompletionOptions & { echo?: boolean }): GenerateOptions {
    return {
      maxGenLen: opts.maxGenLen ?? this.maxSeqLen - 1,
      temperature: opts.temperature ?? 0.6,
      topP: opts.topP ?? 0.9,
      logprobs: opts.logprobs ?? false,
      echo: opts.echo ?? false,
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    };
  }
}

/**
 * Where a model keeps its tokenizer when none is given: a Hugging Face directory holds
 * tokenizer.json or tokenizer.model, a GGUF file holds its vocabulary; a Meta directory's
 * tokenizer.model sits beside it (Meta's layout). Otherwise the caller must name one.
 */
export function defaultTokenizerPath(ckpt: string): string {
  const isDir = fs.existsSync(ckpt) && fs.statSync(ckpt).isDirectory();
  if (!isDir) {
    if (ckpt.endsWith('.gguf')) return ckpt;
    throw new InvalidArgumentError(`no tokenizer given for ${ckpt}; pass tokenizerPath (--tokenizer_path, -z)`, 'tokenizerPath');
  }
  for (const f of ['tokenizer.json', 'tokenizer.model', path.join('..', 'tokenizer.model')]) {
    if (fs.existsSync(path.join(ckpt, f))) return path.join(ckpt, f);
  }
  throw new InvalidArgumentError(`no tokenizer found in ${ckpt} (looked for tokenizer.json and tokenizer.model, and ../tokenizer.model); pass tokenizerPath (--tokenizer_path, -z)`, 'tokenizerPath');
}

/** log softmax(logits)[t], in float64. */
export function logSoftmaxAt(logits: Float32Array, t: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  return logits[t]! - max - Math.log(sum);
}

/**
 * Meta's `sample_top_p` on softmax(logits / temperature), with one uniform `coin` in [0, 1):
 * sort descending, drop every token whose preceding cumulative mass already exceeds topP,
 * renormalize what is left, and pick where the coin falls. `probs`/`scratch` are work arrays.
 */
export function metaSampleTopP(
  logits: Float32Array, n: number, temperature: number, topP: number, coin: number,
  scratch: Float64Array = new Float64Array(n), probs: Float32Array = new Float32Array(n),
): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[i]! / temperature);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += probs[i] = Math.exp(logits[i]! / temperature - max);
  for (let i = 0; i < n; i++) probs[i] = probs[i]! / sum;
  const sorted = sortByProbability(probs, n, 0, scratch);
  let kept = 0;
  let last = 0;
  for (let i = 0; i < sorted.count; i++) {
    if (kept > topP) break; // mask: probs_sum - probs_sort > p, i.e. the mass before this token
    kept += probs[sorted.index(i)]!;
    last = i;
  }
  const r = coin * kept;
  let cdf = 0;
  for (let i = 0; i <= last; i++) {
    cdf += probs[sorted.index(i)]!;
    if (r < cdf) return sorted.index(i);
  }
  return sorted.index(last);
}
