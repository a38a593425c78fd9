/**
 * One sequence of the batch (one choice of one request): its prompt, where it is (prefill,
 * decode, done), its sampler, penalties, stop strings and text — everything but the model.
 * The scheduler feeds it logits (`onLogits`); it answers with the next token and sends the
 * text it may now show through `emit`.
 *
 * Sampling, per step, in OpenAI's documented order:
 *   logits[t] += logit_bias[t]
 *   logits[t] -= count[t] × frequency_penalty + (count[t] > 0) × presence_penalty   (count: tokens generated so far)
 *   then run.c's sampler on the result: argmax at temperature 0; else softmax(logits / T) and
 *   multinomial sampling (top_p = 1) or top-p (nucleus) sampling, drawing from the xorshift
 *   generator seeded with the request's seed — so, without penalties or bias, a completion
 *   request gives the tokens `llamats run -t T -p P -s SEED` gives for the same prompt.
 * Log-probabilities are those of the model's own distribution (log-softmax of the raw logits,
 * before bias, penalties and temperature), as Meta's generate() reports them.
 *
 * Stop strings are matched on the text, across token boundaries: text that could be the start
 * of a stop string is held back until it is not, and the stop string itself is never sent.
 */
import { InvalidArgumentError } from '../errors.js';
import { Sampler } from '../generate/sampler.js';
import type { Session } from '../model/forward.js';
import { TextStream } from '../tokenizer/llama2c.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { FinishReason } from './types.js';

export interface SequenceParams {
  maxTokens: number;
  temperature: number;
  topP: number;
  /** Sampler seed (any integer; 0 is mapped to a fixed non-zero value, xorshift needs one). */
  seed: bigint;
  presencePenalty: number;
  frequencyPenalty: number;
  logitBias: ReadonlyMap<number, number>;
  stop: readonly string[];
  /** Token ids that end the sequence (finish_reason 'stop'), not shown. */
  stopIds: readonly number[];
  /** Log-probabilities of the generated tokens. */
  logprobs: boolean;
  /** Alternatives per position (with logprobs). */
  topLogprobs: number;
  /** Also the log-probabilities of the prompt's tokens (completions with echo). */
  promptLogprobs: boolean;
  /**
   * The token the generated text follows, for decoding: the last prompt token (a completion
   * continues its prompt, leading space included) or BOS (a chat answer starts a new text, as
   * Meta's decode of the generated tokens gives it: no leading space).
   */
  textAfter: number;
}

/** A token with its log-probability and the most likely alternatives. */
export interface TokenLogprob {
  id: number;
  /** The token's own text (its bytes decoded alone; a partial UTF-8 character shows as U+FFFD). */
  text: string;
  bytes: number[];
  /** null for the first prompt token, which nothing predicts. */
  logprob: number | null;
  top: Array<{ id: number; text: string; bytes: number[]; logprob: number }>;
}

export type SequenceEvent =
  /** Text to show and its tokens; `prompt`: the prompt's tokens (completions with echo and logprobs), no text. */
  | { type: 'text'; text: string; tokens: TokenLogprob[]; prompt?: true }
  | { type: 'done'; finishReason: FinishReason; completionTokens: number }
  | { type: 'error'; error: unknown };

export type SequenceState = 'waiting' | 'prefill' | 'decode' | 'done';

let nextSequenceId = 0;

export class Sequence {
  readonly id = nextSequenceId++;
  readonly prompt: readonly number[];
  readonly params: SequenceParams;
  state: SequenceState = 'waiting';
  /** The KV-cache slot, while in the batch. */
  session: Session | undefined;
  /** Positions already run through the session. */
  pos = 0;
  /** The token to run at `pos` next (decode). */
  next = -1;
  /** Generated tokens (the stop token included when one ended the sequence). */
  generated = 0;
  cancelled = false;
  /** When it was queued and when its first token came (ms, performance.now()). */
  readonly queuedAt = performance.now();
  firstTokenAt: number | undefined;

  private readonly tokenizer: Tokenizer;
  private readonly emit: (ev: SequenceEvent) => void;
  private readonly sampler: Sampler;
  private readonly counts = new Map<number, number>();
  private readonly stream = new TextStream();
  private prevToken: number;
  /** Generated text not yet sent (could be the start of a stop string), and its tokens. */
  private held = '';
  private heldTokens: Array<{ lp: TokenLogprob | undefined; end: number }> = [];
  private heldStart = 0; // offset of `held` in the whole generated text
  private readonly promptLps: TokenLogprob[] = [];

  constructor(tokenizer: Tokenizer, prompt: readonly number[], params: SequenceParams, emit: (ev: SequenceEvent) => void) {
    if (prompt.length === 0) throw new InvalidArgumentError('a prompt needs at least one token', 'prompt');
    this.tokenizer = tokenizer;
    this.prompt = prompt;
    this.params = params;
    this.emit = emit;
    const seed = BigInt.asUintN(64, params.seed) === 0n ? 0x9e3779b97f4a7c15n : params.seed;
    this.sampler = new Sampler(tokenizer.vocabSize, { temperature: params.temperature, topp: params.topP, seed });
    this.prevToken = params.textAfter;
  }

  /**
   * Prompt tokens still to run: all of them, but the last when nothing is generated (max_tokens 0:
   * its logits would predict nothing).
   */
  get prefillLeft(): number {
    if (this.state !== 'prefill') return 0;
    return (this.params.maxTokens === 0 ? this.prompt.length - 1 : this.prompt.length) - this.pos;
  }

  /** Entered the batch with a slot: prefill starts at position 0. */
  start(session: Session): void {
    this.session = session;
    this.state = 'prefill';
    this.pos = 0;
    if (this.params.promptLogprobs) {
      // the first prompt token has no logprob (nothing predicts it); OpenAI reports null
      const id = this.prompt[0]!;
      this.promptLps.push({ ...this.describe(id, this.tokenizer.bosId, true), logprob: null });
    }
    if (this.params.maxTokens === 0 && this.prompt.length === 1) this.finish('length');
  }

  /**
   * The logits after running the token at position `pos - 1` (the scheduler ran it and advanced
   * `pos`). In prefill they score the next prompt token (when asked) until the last prompt token,
   * whose logits give the first generated token.
   */
  onLogits(logits: Float32Array): void {
    if (this.state === 'prefill') {
      if (this.pos < this.prompt.length) {
        if (this.params.promptLogprobs) {
          const id = this.prompt[this.pos]!;
          this.promptLps.push(this.scored(logits, id, this.prompt[this.pos - 1]!, true));
        }
        if (this.params.maxTokens === 0 && this.pos === this.prompt.length - 1) this.finish('length');
        return;
      }
      this.state = 'decode';
      if (this.params.promptLogprobs) this.emit({ type: 'text', text: '', tokens: this.promptLps.splice(0), prompt: true });
    }
    if (this.state !== 'decode') return;
    this.sample(logits);
  }

  /**
   * The scheduler ran a chunk of prompt tokens in one pass and advanced `pos` past them;
   * `logits`: those after the prompt's last token, when the chunk ended the prompt. (A sequence
   * that scores its prompt, `promptLogprobs`, needs every token's logits: it goes through
   * `onLogits` a token at a time instead.)
   */
  onPromptChunk(logits: Float32Array | undefined): void {
    if (this.state !== 'prefill') return;
    if (this.pos < this.prompt.length) {
      if (this.prefillLeft === 0) this.finish('length'); // max_tokens 0: the prompt is all there is
      return;
    }
    if (!logits) throw new Error('internal: the prompt ended without its logits');
    this.onLogits(logits);
  }

  private sample(logits: Float32Array): void {
    const p = this.params;
    const n = this.tokenizer.vocabSize;
    // log-probabilities come from the raw logits: keep them before bias, penalties and the sampler change them
    const raw = p.logprobs ? logits.slice(0, n) : undefined;
    for (const [id, b] of p.logitBias) logits[id] = logits[id]! + b;
    if (p.presencePenalty !== 0 || p.frequencyPenalty !== 0) {
      for (const [id, c] of this.counts) logits[id] = logits[id]! - c * p.frequencyPenalty - p.presencePenalty;
    }
    const token = this.sampler.sample(logits);
    const lp = raw ? this.scored(raw, token, this.prevToken, false) : undefined;
    this.generated++;
    this.firstTokenAt ??= performance.now();
    if (p.stopIds.includes(token)) return this.finish('stop');
    this.counts.set(token, (this.counts.get(token) ?? 0) + 1);
    const text = this.stream.push(this.tokenizer.tokenBytes(this.prevToken, token));
    this.prevToken = token;
    this.next = token;
    if (this.push(text, lp)) return;
    if (this.generated >= p.maxTokens) this.finish('length');
  }

  /** A token's text and log-probability under the (raw) logits that predict it, with the top alternatives. */
  private scored(logits: Float32Array, id: number, prev: number, inPrompt: boolean): TokenLogprob {
    const n = this.tokenizer.vocabSize;
    // log softmax as logSoftmaxAt (Meta's generate) computes it: logits[t] - max - log Σ exp(logits - max)
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += Math.exp(logits[i]! - max);
    const logSum = Math.log(sum);
    const lp = this.describe(id, prev, inPrompt);
    lp.logprob = logits[id]! - max - logSum;
    const k = this.params.topLogprobs;
    if (k > 0) lp.top = topK(logits, n, k).map((t) => ({ ...this.describe(t, prev, false), logprob: logits[t]! - max - logSum }));
    return lp;
  }

  private describe(id: number, prev: number, inPrompt: boolean): TokenLogprob {
    const special = inPrompt && (id === this.tokenizer.bosId || id === this.tokenizer.eosId);
    const bytes = special ? new Uint8Array(0) : this.tokenizer.tokenBytes(prev, id);
    return { id, text: DECODER.decode(bytes), bytes: [...bytes], logprob: 0, top: [] };
  }

  /** Add generated text; send what cannot be the start of a stop string. True when a stop string ended the sequence. */
  private push(text: string, lp: TokenLogprob | undefined): boolean {
    this.held += text;
    this.heldTokens.push({ lp, end: this.heldStart + this.held.length });
    const stops = this.params.stop;
    if (stops.length === 0) {
      this.release(this.held.length);
      return false;
    }
    let at = -1;
    for (const s of stops) {
      const i = this.held.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    if (at >= 0) {
      this.release(at, true);
      this.finish('stop', false);
      return true;
    }
    let keep = 0;
    for (const s of stops) {
      for (let k = Math.min(s.length - 1, this.held.length); k > keep; k--) {
        if (this.held.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    this.release(this.held.length - keep);
    return false;
  }

  /**
   * Send held[0, n) and the tokens whose text ends there; at a stop string (`cut`), drop the rest:
   * a token whose text the stop string cuts (it starts before the stop string and ends inside or
   * after it) has no logprob entry, so every entry's text lies in the text sent (docs/SERVER.md,
   * "Stop strings and logprobs").
   */
  private release(n: number, cut = false): void {
    const upTo = this.heldStart + n;
    const tokens: TokenLogprob[] = [];
    let i = 0;
    for (; i < this.heldTokens.length; i++) {
      const t = this.heldTokens[i]!;
      if (t.end > upTo) break;
      if (t.lp) tokens.push(t.lp);
    }
    this.heldTokens = cut ? [] : this.heldTokens.slice(i);
    const text = this.held.slice(0, n);
    this.held = cut ? '' : this.held.slice(n);
    this.heldStart = upTo;
    if (text !== '' || tokens.length > 0) this.emit({ type: 'text', text, tokens });
  }

  /** End the sequence: send what is held (`flush`; not after a stop string) and the finish reason. */
  finish(reason: FinishReason, flush = true): void {
    if (this.state === 'done') return;
    if (flush) {
      const rest = this.stream.flush();
      this.held += rest;
      if (this.heldTokens.length > 0) this.heldTokens[this.heldTokens.length - 1]!.end += rest.length;
      this.release(this.held.length);
    }
    if (this.promptLps.length > 0) this.emit({ type: 'text', text: '', tokens: this.promptLps.splice(0), prompt: true });
    this.state = 'done';
    this.emit({ type: 'done', finishReason: reason, completionTokens: this.generated });
  }

  /** End with an error (a failure inside the forward pass): the request fails. */
  fail(error: unknown): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.emit({ type: 'error', error });
  }
}

const DECODER = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Ids of the k largest logits, largest first (ties: lower id first). */
function topK(logits: Float32Array, n: number, k: number): number[] {
  const ids: number[] = [];
  const order = (a: number, b: number) => logits[b]! - logits[a]! || a - b;
  for (let i = 0; i < n; i++) {
    if (ids.length < k) {
      ids.push(i);
      if (ids.length === k) ids.sort(order);
    } else if (logits[i]! > logits[ids[k - 1]!]!) {
      ids[k - 1] = i;
      ids.sort(order);
    }
  }
  return ids.length < k ? ids.sort(order) : ids;
}
