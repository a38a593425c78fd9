/**
 * Text generation as run.c's `generate()`: the prompt (after BOS) is forced token by token, then
 * tokens are sampled until `steps` positions are used or the model emits BOS (which delimits
 * stories in llama2.c's training data).
 */
import { ContextOverflowError, InvalidArgumentError, TokenizerMismatchError } from '../errors.js';
import { PREFILL_CHUNK, Session, type SessionOptions } from '../model/forward.js';
import type { Model } from '../model/weights.js';
import { TextStream } from '../tokenizer/llama2c.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export interface GenerateOptions extends SamplerOptions {
  /** Text to continue; default empty (the model starts from BOS alone). */
  readonly prompt?: string;
  /** Positions to run, prompt included. Default 256; 0 or more than the context = the context. */
  readonly steps?: number;
  /** Stop early when aborted; the generation then ends with stopReason 'aborted'. */
  readonly signal?: AbortSignal;
  /** How the session runs (backend, threads, KV cache type); its maxSeqLen is `steps`. */
  readonly session?: Omit<SessionOptions, 'maxSeqLen'>;
}

/** One step of a generation: a token and the text it completes (possibly empty). */
export interface GenerationChunk {
  /** The token id, or null for the final flush of an unfinished UTF-8 character. */
  readonly token: number | null;
  /** Position of this token in the sequence (BOS is position 0). */
  readonly pos: number;
  /** True while the token comes from the prompt rather than from the sampler. */
  readonly fromPrompt: boolean;
  /** Whole UTF-8 characters completed by this token. */
  readonly text: string;
}

export interface GenerationResult {
  /** Every token of the sequence, BOS and prompt included. */
  readonly tokens: number[];
  readonly promptTokens: number;
  readonly stopReason: 'bos' | 'steps' | 'aborted';
  /** Tokens per second after the first step (run.c's "achieved tok/s"), or null with < 2 steps. */
  readonly tokensPerSecond: number | null;
}

/** Resolve `steps` as run.c does: 0 or more than the context means the whole context. */
export function resolveSteps(steps: number | undefined, seqLen: number): number {
  const s = steps ?? 256;
  if (!Number.isInteger(s) || s < 0) throw new InvalidArgumentError(`steps must be an integer ≥ 0; got ${s}`, 'steps');
  return s === 0 || s > seqLen ? seqLen : s;
}

/**
 * Stream a generation. Yields one chunk per token after BOS, prompt tokens included (as run.c
 * prints them), and returns a summary.
 */
export async function* generate(
  model: Model,
  tokenizer: Tokenizer,
  opts: GenerateOptions = {},
): AsyncGenerator<GenerationChunk, GenerationResult, undefined> {
  checkTokenizer(model, tokenizer);
  const steps = resolveSteps(opts.steps, model.config.seqLen);
  const prompt = tokenizer.encode(opts.prompt ?? '', { bos: true });
  checkPromptFits(prompt.length, model.config.seqLen);
  const sampler = new Sampler(model.config.vocabSize, opts);
  const session = new Session(model, { ...opts.session, maxSeqLen: steps });
  const text = new TextStream({ safePrint: true });
  const tokens = [prompt[0]!];
  let token = prompt[0]!;
  let pos = 0;
  let start = 0;
  let stopReason: GenerationResult['stopReason'] = 'steps';
  let lastYield = performance.now();
  // the prompt runs in batched chunks (Session.prefill: one read of the weights per chunk); the
  // logits after a chunk are those of its last token, needed when it is the prompt's last
  const promptEnd = Math.min(prompt.length, steps);
  let prefilled = 0; // prompt positions already in the KV cache
  let chunkLogits: Float32Array | undefined;
  try {
    while (pos < steps) {
      if (opts.signal?.aborted) {
        stopReason = 'aborted';
        break;
      }
      let logits: Float32Array;
      if (pos < promptEnd) {
        if (pos >= prefilled) {
          prefilled = Math.min(pos + PREFILL_CHUNK, promptEnd);
          chunkLogits = Float32Array.from(session.prefill(prompt.slice(pos, prefilled), pos));
        }
        logits = chunkLogits!; // read only at pos = prompt.length - 1, the last of its chunk
      } else {
        logits = session.forward(token, pos);
      }
      const fromPrompt = pos < prompt.length - 1;
      const next = fromPrompt ? prompt[pos + 1]! : sampler.sample(logits);
      pos++;
      if (next === tokenizer.bosId) {
        stopReason = 'bos';
        break;
      }
      tokens.push(next);
      yield { token: next, pos, fromPrompt, text: text.push(tokenizer.tokenBytes(token, next)) };
      token = next;
      if (start === 0) start = performance.now();
      // let timers and I/O run now and then: the forward pass itself is synchronous
      if (performance.now() - lastYield > 25) {
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    }
  } finally {
    session.dispose(); // the KV cache goes back to the backend now, also when the consumer stops early
  }
  const rest = text.flush();
  if (rest) yield { token: null, pos, fromPrompt: false, text: rest };
  const elapsed = performance.now() - start;
  return {
    tokens,
    promptTokens: prompt.length,
    stopReason,
    tokensPerSecond: pos > 1 && start > 0 ? ((pos - 1) / elapsed) * 1000 : null,
  };
}

/** Generate and collect: the whole text (prompt included, as run.c prints it) and the summary. */
export async function generateText(model: Model, tokenizer: Tokenizer, opts: GenerateOptions = {}): Promise<GenerationResult & { text: string }> {
  const it = generate(model, tokenizer, opts);
  let text = '';
  for (;;) {
    const r = await it.next();
    if (r.done) return { ...r.value, text };
    text += r.value.text;
  }
}

/** The tokenizer must have the model's vocabulary size; `label` names the tokenizer file in the message. */
export function checkTokenizer(model: Model, tokenizer: Tokenizer, label = 'the tokenizer'): void {
  if (tokenizer.vocabSize !== model.config.vocabSize) {
    throw new TokenizerMismatchError(
      `${label} has ${tokenizer.vocabSize} tokens but the model's vocabulary has ${model.config.vocabSize}; pass the tokenizer that belongs to this model (-z)`,
    );
  }
}

export function checkPromptFits(promptTokens: number, seqLen: number): void {
  if (promptTokens > seqLen) {
    throw new ContextOverflowError(`the prompt is ${promptTokens} tokens (with BOS) but the model's context is ${seqLen}; shorten the prompt`);
  }
}

