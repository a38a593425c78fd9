/**
 * Continuous batching: one loop runs every sequence of every request, one step at a time.
 *
 *   each step:   drop finished and cancelled sequences (their KV-cache slot is free at once)
 *                admit waiting sequences into free slots (first come, first served)
 *                one batched forward pass runs
 *                  the next token of every decoding sequence  →  each gets the same share: no starving
 *                  chunks of the prefilling sequences' prompts (`prefillChunk` tokens per step in
 *                  all), so a long prompt delays the others' next token by one chunk, not by the
 *                  whole prompt; 4 × `prefillChunk` when no sequence decodes (nobody to delay)
 *   between steps the event loop runs (two turns): new requests, aborts and streamed chunks go through
 *   (a sequence that scores its prompt, echo with logprobs, runs it a token at a time, yielding
 *   every ~20 ms).
 *
 * Slots: at most `slots` sequences are in the batch, each owning one Session (its KV cache,
 * `contextLength` positions), kept in a pool and reused, so memory stays at `slots` KV caches
 * however many requests come. Beyond that, up to `maxQueue` sequences wait; more are refused
 * with RateLimitError (HTTP 429 + Retry-After).
 *
 * Where the weights are read: each step is one `Session.forwardRuns` (src/model/forward.ts): the
 * decode tokens and the prompt chunks of the step, B tokens in all, through one matrix-matrix
 * product per weight (Backend.matmul with B columns), attention per token against its own
 * session's KV cache, and the classifier only for the tokens whose logits are needed. So each
 * weight is read once per step, not once per sequence or prompt token (docs/SERVER.md,
 * "Continuous batching").
 */
import { RateLimitError } from '../errors.js';
import { Session, type SessionOptions } from '../model/forward.js';
import type { Model } from '../model/weights.js';
import type { BackendChoice, CacheType } from '../backend/backend.js';
import type { Sequence } from './sequence.js';

export interface SchedulerOptions {
  /** Sequences in the batch at once (KV-cache slots). Default 16. */
  slots?: number;
  /** Sequences that may wait for a slot; beyond, requests get RateLimitError. Default 4 × slots. */
  maxQueue?: number;
  /** Positions of each slot's KV cache. Default: the model's context (the Engine caps its default at 4096). */
  contextLength?: number;
  /** Prompt tokens run per step, all prefilling sequences together, while others decode (4 × that when none does). Default 32. */
  prefillChunk?: number;
  backend?: BackendChoice;
  /** Threads of the matrix products (default: LLAMATS_THREADS, else the physical cores). */
  threads?: number;
  /** Element type of every slot's KV cache (default 'f32'; 'f16' halves it). */
  kvCache?: CacheType;
}

export interface SchedulerStats {
  slots: number;
  /** Sequences in the batch now. */
  running: number;
  /** Sequences waiting for a slot. */
  waiting: number;
  maxQueue: number;
  /** KV caches allocated (≤ slots); they stay allocated for reuse. */
  sessions: number;
  /** Steps run and tokens (prompt and generated) run through the model since start. */
  steps: number;
  tokens: number;
}

export class Scheduler {
  readonly slots: number;
  readonly maxQueue: number;
  readonly contextLength: number;
  readonly prefillChunk: number;
  private readonly model: Model;
  private readonly backend: BackendChoice | undefined;
  private readonly sessionOptions: SessionOptions;
  private readonly waiting: Sequence[] = [];
  private running: Sequence[] = [];
  private readonly pool: Session[] = [];
  private sessions = 0;
  private looping = false;
  private closed = false;
  private steps = 0;
  private tokens = 0;
  private prefillTurn = 0;

  constructor(model: Model, opts: SchedulerOptions = {}) {
    this.model = model;
    this.slots = opts.slots ?? 16;
    this.maxQueue = opts.maxQueue ?? 4 * this.slots;
    this.contextLength = opts.contextLength ?? model.config.seqLen;
    this.prefillChunk = opts.prefillChunk ?? 32;
    this.backend = opts.backend;
    this.sessionOptions = { ...(opts.threads !== undefined ? { threads: opts.threads } : {}), ...(opts.kvCache !== undefined ? { kvCache: opts.kvCache } : {}) };
  }

  /** Queue the sequences of one request, all or none; throws RateLimitError when the queue is full. */
  submit(seqs: readonly Sequence[]): void {
    if (this.closed) throw new RateLimitError('the engine is shutting down; retry on another server', 5);
    const freeSlots = Math.max(0, this.slots - this.running.length);
    if (this.waiting.length + seqs.length > this.maxQueue + freeSlots) {
      throw new RateLimitError(
        `the server is busy: ${this.running.length} sequences running, ${this.waiting.length} waiting (queue limit ${this.maxQueue}); retry shortly`,
        this.retryAfter(),
      );
    }
    this.waiting.push(...seqs);
    if (!this.looping) {
      this.looping = true;
      setImmediate(() => void this.loop());
    }
  }

  /**
   * Take a sequence out at once: out of the queue, or out of the batch, its slot free for the
   * next step. (The forward pass is synchronous, so this never runs in the middle of one of its
   * tokens; a step in progress skips cancelled sequences.)
   */
  cancel(seq: Sequence): void {
    seq.cancelled = true;
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    this.release(seq);
  }

  stats(): SchedulerStats {
    return { slots: this.slots, running: this.running.length, waiting: this.waiting.length, maxQueue: this.maxQueue, sessions: this.sessions, steps: this.steps, tokens: this.tokens };
  }

  /** Cancel everything and give the KV caches back. */
  close(): void {
    this.closed = true;
    for (const s of [...this.waiting, ...this.running]) {
      s.cancelled = true;
      s.fail(new RateLimitError('the engine was closed', 5));
    }
    this.waiting.length = 0;
    this.reap();
    for (const s of this.pool.splice(0)) s.dispose();
  }

  /** A guess for Retry-After: how long until a slot frees, from the batch's pace; at least 1 s. */
  private retryAfter(): number {
    return Math.max(1, Math.min(60, Math.ceil((this.waiting.length + 1) / this.slots)));
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.reap();
        this.admit();
        if (this.running.length === 0) break;
        await this.step();
        // two turns of the event loop between steps: a request's headers and its body often come
        // in separate reads, and the server reads its sockets only here; with one turn, requests
        // sent together entered the batch about one per step (serve-bench, 16 streams), with two
        // all in the same step
        await new Promise((r) => setImmediate(r));
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.looping = false;
      // a request that came during the last await
      if (this.waiting.length > 0 && !this.closed) {
        this.looping = true;
        setImmediate(() => void this.loop());
      }
    }
  }

  /** Finished and cancelled sequences leave the batch; their sessions go back to the pool. */
  private reap(): void {
    const keep: Sequence[] = [];
    for (const s of this.running) {
      if (s.state !== 'done' && !s.cancelled) keep.push(s);
      else this.release(s);
    }
    this.running = keep;
  }

  private release(s: Sequence): void {
    const session = s.session;
    s.session = undefined;
    if (s.state !== 'done') s.state = 'done';
    if (!session) return;
    if (this.closed) {
      session.dispose();
      this.sessions--;
    } else this.pool.push(session);
  }

  private admit(): void {
    while (this.running.length < this.slots && this.waiting.length > 0) {
      const s = this.waiting.shift()!;
      if (s.cancelled || s.state === 'done') continue;
      let session = this.pool.pop();
      if (!session) {
        try {
          session = new Session(this.model, { ...this.sessionOptions, maxSeqLen: this.contextLength, ...(this.backend !== undefined ? { backend: this.backend } : {}) });
          this.sessions++;
        } catch (e) {
          s.fail(e);
          continue;
        }
      }
      s.start(session);
      this.running.push(s);
    }
  }

  /**
   * One step, one batched forward pass: the next token of every decoding sequence and up to
   * `prefillChunk` prompt tokens of the prefilling ones (whole chunks per sequence, starting with a
   * different one each step: round robin), so each weight is read once per step for all of them.
   * A sequence that scores its prompt (echo with logprobs) needs the logits of every prompt token:
   * its prompt runs a token at a time, after the batch.
   */
  private async step(): Promise<void> {
    this.steps++;
    const runs: Run[] = [];
    for (const s of this.running) {
      if (s.state === 'decode' && !s.cancelled) runs.push({ seq: s, tokens: [s.next] });
    }
    const prefilling = this.running.filter((s) => s.state === 'prefill' && !s.cancelled);
    const scoring: Array<{ seq: Sequence; n: number }> = [];
    // the budget protects the decoding sequences' next token; with none decoding (a burst of
    // new requests) a step takes more, so that they start decoding together
    let budget = runs.length > 0 ? this.prefillChunk : IDLE_PREFILL_STEPS * this.prefillChunk;
    for (let k = 0; k < prefilling.length && budget > 0; k++) {
      const s = prefilling[(this.prefillTurn + k) % prefilling.length]!;
      const n = Math.min(budget, s.prefillLeft);
      if (n <= 0) continue;
      budget -= n;
      if (s.params.promptLogprobs) scoring.push({ seq: s, n });
      else runs.push({ seq: s, tokens: s.prompt.slice(s.pos, s.pos + n) });
    }
    this.prefillTurn++;
    if (runs.length > 0) this.runBatch(runs);
    let lastYield = performance.now();
    for (const { seq: s, n } of scoring) {
      for (let j = 0; j < n && !s.cancelled && s.state === 'prefill'; j++) {
        this.runBatch([{ seq: s, tokens: [s.prompt[s.pos]!] }]);
        // let the event loop run every ~20 ms: new requests, aborts, chunk writes
        if (performance.now() - lastYield > 20) {
          await new Promise((r) => setImmediate(r));
          lastYield = performance.now();
        }
      }
    }
  }

  /**
   * Run each sequence's tokens (a decode token, or a chunk of its prompt, at `s.pos` on) and hand
   * it the logits: all in one batched forward pass (`Session.forwardRuns`: one weight read for the
   * whole step; the classifier only where logits are needed). Should it throw (one sequence's bad
   * token or position), every sequence runs alone and only the bad one fails: rerunning rewrites
   * the same KV-cache rows.
   */
  private runBatch(runs: readonly Run[]): void {
    runs = runs.filter((r) => !r.seq.cancelled && r.seq.state !== 'done' && r.seq.session);
    if (runs.length === 0) return;
    let all: Array<Float32Array | undefined> | undefined;
    try {
      all = Session.forwardRuns(runs.map(({ seq: s, tokens }) => ({ session: s.session!, tokens, pos: s.pos, logits: this.wantsLogits(s, tokens.length) })));
    } catch {
      all = undefined;
    }
    runs.forEach((run, i) => {
      const s = run.seq;
      if (s.cancelled || s.state === 'done' || !s.session) return; // cancelled by an earlier one's output
      try {
        let logits = all?.[i];
        if (!all) {
          const l = s.session!.prefill(run.tokens, s.pos);
          logits = this.wantsLogits(s, run.tokens.length) ? l : undefined;
        }
        s.pos += run.tokens.length;
        this.tokens += run.tokens.length;
        if (s.state === 'decode' || s.params.promptLogprobs) s.onLogits(logits!);
        else s.onPromptChunk(logits);
      } catch (e) {
        s.fail(e);
        // its KV cache may be half-written: not back into the pool
        if (s.session) {
          s.session.dispose();
          s.session = undefined;
          this.sessions--;
        }
      }
    });
  }

  /** Whether a run of `n` tokens from `s.pos` needs the logits after its last token. */
  private wantsLogits(s: Sequence, n: number): boolean {
    return s.state === 'decode' || s.params.promptLogprobs || s.pos + n === s.prompt.length;
  }
}

/** Prompt budget of a step with no decoding sequence, in steps' worth (`prefillChunk`). */
const IDLE_PREFILL_STEPS = 4;

/** One sequence's tokens in a step: its decode token, or a chunk of its prompt. */
interface Run {
  seq: Sequence;
  tokens: readonly number[];
}
