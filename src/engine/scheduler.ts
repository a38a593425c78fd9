/**
 * Continuous batching: one loop runs every sequence of every request, one step at a time.
 *
 *   each step:   drop finished and cancelled sequences (their KV-cache slot is free at once)
 *                admit waiting sequences into free slots (first come, first served)
 *                every decoding sequence runs one token  →  each gets the same share: no starving
 *                prefilling sequences run their prompt in chunks (`prefillChunk` tokens per step
 *                in all), so a long prompt delays the others' next token by one chunk, not by
 *                the whole prompt
 *   between steps (and every ~20 ms inside one) the event loop runs: new requests, aborts and
 *   streamed chunks go through.
 *
 * Slots: at most `slots` sequences are in the batch, each owning one Session (its KV cache,
 * `contextLength` positions), kept in a pool and reused, so memory stays at `slots` KV caches
 * however many requests come. Beyond that, up to `maxQueue` sequences wait; more are refused
 * with RateLimitError (HTTP 429 + Retry-After).
 *
 * Where the weights are read: `runBatch` below runs one token of each sequence. For the decoding
 * sequences of a step that is one `forwardBatch` (src/model/forward.ts): B tokens of B sessions
 * through one matrix-matrix product per weight (Backend.matmul with B columns) and attention per
 * session, so each weight is read once per step, not once per sequence (docs/SERVER.md,
 * "Continuous batching"). Prompt chunks still run a token at a time.
 */
import { RateLimitError } from '../errors.js';
import { Session, forwardBatch } from '../model/forward.js';
import type { Model } from '../model/weights.js';
import type { BackendChoice } from '../backend/backend.js';
import type { Sequence } from './sequence.js';

export interface SchedulerOptions {
  /** Sequences in the batch at once (KV-cache slots). Default 16. */
  slots?: number;
  /** Sequences that may wait for a slot; beyond, requests get RateLimitError. Default 4 × slots. */
  maxQueue?: number;
  /** Positions of each slot's KV cache. Default: the model's context (the Engine caps its default at 4096). */
  contextLength?: number;
  /** Prompt tokens run per step, all prefilling sequences together. Default 32. */
  prefillChunk?: number;
  backend?: BackendChoice;
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
          session = new Session(this.model, { maxSeqLen: this.contextLength, ...(this.backend !== undefined ? { backend: this.backend } : {}) });
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

  /** One step: a token for every decoding sequence, a chunk of prompt for the prefilling ones. */
  private async step(): Promise<void> {
    this.steps++;
    let lastYield = performance.now();
    const pause = async () => {
      if (performance.now() - lastYield > 20) {
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
      }
    };
    // every decoding sequence's next token in one batched pass (one read of each weight)
    const decoding = this.running.filter((s) => s.state === 'decode' && !s.cancelled);
    if (decoding.length > 0) {
      this.runBatch(decoding, (s) => s.next);
      await pause();
    }
    // prompt chunks, starting with a different prefilling sequence each step (round robin)
    const prefilling = this.running.filter((s) => s.state === 'prefill');
    let budget = this.prefillChunk;
    for (let k = 0; k < prefilling.length && budget > 0; k++) {
      const s = prefilling[(this.prefillTurn + k) % prefilling.length]!;
      const n = Math.min(budget, s.prefillLeft);
      for (let j = 0; j < n && !s.cancelled && s.state === 'prefill'; j++) {
        this.runBatch([s], () => s.prompt[s.pos]!);
        budget--;
        await pause();
      }
    }
    this.prefillTurn++;
  }

  /**
   * Run one token for each sequence (`token(s)` at `s.pos`) and hand each its logits: several
   * sequences in one batched forward pass (one weight read for the whole batch).
   */
  private runBatch(seqs: readonly Sequence[], token: (s: Sequence) => number): void {
    if (seqs.length > 1) {
      // one batched forward pass (Session.forwardBatch: each weight read once for all of them);
      // should it throw (one sequence's bad token or position), every sequence runs alone below
      // and only the bad one fails: rerunning rewrites the same KV-cache rows
      let all: Float32Array[] | undefined;
      try {
        all = forwardBatch(seqs.map((s) => s.session!), seqs.map(token), seqs.map((s) => s.pos));
      } catch {
        all = undefined;
      }
      if (all) {
        seqs.forEach((s, i) => {
          s.pos++;
          this.tokens++;
          try {
            s.onLogits(all[i]!);
          } catch (e) {
            s.fail(e); // as below: its session is not put back into the pool
            s.session?.dispose();
            s.session = undefined;
            this.sessions--;
          }
        });
        return;
      }
    }
    for (const s of seqs) {
      try {
        const logits = s.session!.forward(token(s), s.pos);
        s.pos++;
        this.tokens++;
        s.onLogits(logits);
      } catch (e) {
        s.fail(e);
        // its KV cache may be half-written: not back into the pool
        s.session?.dispose();
        s.session = undefined;
        this.sessions--;
      }
    }
  }
}
