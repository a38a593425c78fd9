/**
 * The forward pass of a LLaMA-family transformer, and `Session` (one sequence's state).
 *
 * It is written for reading: one backend op per block, the same order of operations as llama2.c's
 * `run.c`. With the `ref` backend it is the reference every faster backend is checked against:
 * activations in float32 arrays (every stored value rounded to float32, as in run.c), dot products
 * accumulated in float64, which is at least as accurate.
 *
 *   x = embedding[token]
 *   for each layer:
 *     x += Wo · attention(RoPE(Wq · rmsnorm(x)), RoPE(Wk · rmsnorm(x)), Wv · rmsnorm(x))
 *     x += W2 · (silu(W1 · rmsnorm(x)) * (W3 · rmsnorm(x)))
 *   logits = Wcls · rmsnorm(x)
 *
 * Where the time goes: the matrix-vector products (`matvec`), which read every weight once per
 * token; attention grows with the position.
 *
 * The ops run on a backend (src/backend/backend.ts) chosen by `openBackend`: `ref` runs the plain
 * TypeScript ops of src/backend/ref/ops.ts (the definition), `wasm` their WebAssembly SIMD twins.
 * Vectors and weights are the backend's handles; this file never touches their memory.
 */
import { ContextOverflowError, InvalidArgumentError, OutOfMemoryError, formatBytes } from '../errors.js';
import * as os from 'node:os';
import { BackendUnavailableError, CACHE_TYPES, defaultThreads, openBackend, type Backend, type BackendChoice, type BackendModel, type BackendName, type CacheType, type Vector } from '../backend/backend.js';
import { ropeAngles } from '../backend/ref/ops.js';
import { kvDim, layerKvBytes, type ModelConfig } from './config.js';
import type { Model } from './weights.js';

// The reference blocks live in src/backend/ref/ops.ts (the ref backend); re-exported for callers.
export { rmsnorm, softmax, matmul, quantizeActivations, rope, ropeAngles, scaleRopeFrequency } from '../backend/ref/ops.js';

// ---------------------------------------------------------------------------------------------
// State and the forward pass

/** Options of a Session. */
export interface SessionOptions {
  /** Positions the KV cache holds (default: the model's context). */
  maxSeqLen?: number;
  /** Which backend runs the ops (default: LLAMATS_BACKEND, else `auto` = wasm, falling back to ref). */
  backend?: BackendChoice;
  /**
   * Threads of the matrix-vector products (wasm; default: LLAMATS_THREADS, else the physical
   * cores). Outputs are identical for any number; products too small to gain stay on one thread.
   */
  threads?: number;
  /**
   * Element type of the KV cache (default 'f32'): 'f16' halves its memory and what attention
   * reads, each key and value rounded to the nearest half as it is stored (as llama.cpp's default
   * f16 cache); logits then differ from 'f32' by about the rounding of a half.
   */
  kvCache?: CacheType;
}

/**
 * One sequence's activations and key/value cache, allocated once in the backend's memory. A
 * Session belongs to one model; several sessions can share a model (and its uploaded weights).
 */
export class Session {
  readonly model: Model;
  /** Positions the KV cache holds: 0 ≤ pos < maxSeqLen. */
  readonly maxSeqLen: number;
  /** The backend that runs this session. */
  readonly backend: BackendName;
  /** Why the requested backend is not the one running, when it is not (e.g. wasm → ref). */
  readonly fallbackReason: string | undefined;
  /** Threads the products run on (1 on ref). */
  readonly threads: number;
  private readonly on: BackendModel;
  private s: SessionState | undefined; // undefined once disposed
  private readonly cos: Float32Array; // (headDim/2,) this position's RoPE angles, on the host
  private readonly sin: Float32Array;

  constructor(model: Model, opts: SessionOptions = {}) {
    const c = model.config;
    const maxSeqLen = opts.maxSeqLen ?? c.seqLen;
    if (!Number.isInteger(maxSeqLen) || maxSeqLen < 1 || maxSeqLen > c.seqLen) {
      throw new InvalidArgumentError(`maxSeqLen must be an integer in [1, ${c.seqLen}] (the model's context); got ${maxSeqLen}`, 'maxSeqLen');
    }
    const kvCache = opts.kvCache ?? 'f32';
    if (!CACHE_TYPES.includes(kvCache)) throw new InvalidArgumentError(`kvCache must be one of ${CACHE_TYPES.join(', ')}; got ${String(kvCache)}`, 'kvCache');
    const cacheBytes = kvCacheBytes(c, maxSeqLen, kvCache === 'f16' ? 2 : 4);
    const available = os.freemem();
    if (cacheBytes > available) {
      throw new OutOfMemoryError(
        `the KV cache for ${maxSeqLen} positions needs ${formatBytes(cacheBytes)} but ${formatBytes(available)} is available; use a shorter context (fewer steps)`,
        cacheBytes,
        available,
      );
    }
    this.model = model;
    this.maxSeqLen = maxSeqLen;
    const threads = opts.threads ?? defaultThreads();
    let on = openBackend(model, opts.backend, threads);
    let s: SessionState;
    try {
      s = allocateState(on, c, maxSeqLen, kvCache);
    } catch (e) {
      // the backend's memory is full (a wasm memory holds 4 GiB): this session runs on ref
      if (!(e instanceof BackendUnavailableError) || on.backend.name === 'ref') throw e;
      on = { ...openBackend(model, 'ref'), fallbackReason: `${on.backend.name} backend unavailable for this session: ${e.message}` };
      s = allocateState(on, c, maxSeqLen, kvCache);
    }
    this.on = on;
    this.s = s;
    this.backend = on.backend.name;
    this.threads = on.backend.name === 'ref' ? 1 : threads;
    this.fallbackReason = on.fallbackReason;
    this.cos = new Float32Array(c.headDim / 2);
    this.sin = new Float32Array(c.headDim / 2);
  }

  /**
   * Run `token` at position `pos` (the KV cache must hold positions 0..pos-1 of this sequence)
   * and return the logits for the next token. The returned array is reused by the next call.
   */
  forward(token: number, pos: number): Float32Array {
    const c = this.model.config;
    const st = this.check(token, pos);
    const { parts, layers, tokenEmbedding, finalNorm, classifier } = this.on;
    const dim = c.dim;
    const kv = kvDim(c);
    const hs = c.headDim;
    ropeAngles(pos, hs, c.ropeTheta, this.cos, this.sin, c.ropeScaling);

    // A model split across memories (parts) runs each layer in its part; `enter` moves the
    // residual stream x and this position's RoPE angles into the next part (most models: one part).
    let part = -1;
    let b!: Backend;
    let a!: Activations;
    const enter = (next: number) => {
      if (next === part) return;
      const nb = parts[next]!;
      const na = st.parts[next]!;
      if (part < 0) nb.embed(na.x, tokenEmbedding, token); // x = embedding[token]
      else nb.write(na.x, b.read(a.x));
      nb.write(na.cos, this.cos);
      nb.write(na.sin, this.sin);
      [part, b, a] = [next, nb, na];
    };

    for (let l = 0; l < c.nLayers; l++) {
      const lw = layers[l]!;
      enter(lw.part);
      const { x, xb, xb2, hb, hb2, q, k, v, att, cos, sin } = a;
      const kc = st.keyCache[l]!;
      const vc = st.valueCache[l]!;

      // attention: q, k, v for this position; k and v go into the cache
      b.rmsnorm(xb, x, lw.attnNorm, c.normEps);
      b.matvecs([[q, xb, lw.wq], [k, xb, lw.wk], [v, xb, lw.wv]]); // one dispatch on threads
      b.rope(q, dim, hs, cos, sin);
      b.rope(k, kv, hs, cos, sin);
      b.copy(kc, pos * kv, k);
      b.copy(vc, pos * kv, v);

      // each query head attends over positions 0..pos of its key/value head
      b.attention(xb, q, kc, vc, att, pos, c);
      b.matvec(xb2, xb, lw.wo);
      b.add(x, xb2);

      // feed-forward: w2(silu(w1(x)) * w3(x))
      b.rmsnorm(xb, x, lw.ffnNorm, c.normEps);
      b.matvecs([[hb, xb, lw.w1], [hb2, xb, lw.w3]]);
      b.siluMul(hb, hb2);
      b.matvec(xb, hb, lw.w2);
      b.add(x, xb);
    }

    enter(this.on.head);
    b.rmsnorm(a.x, a.x, finalNorm, c.normEps);
    b.matvec(a.logits, a.x, classifier);
    return b.read(a.logits);
  }

  /**
   * Run a chunk of prompt tokens at positions startPos, startPos + 1, … (the KV cache must hold
   * positions 0..startPos-1) and return the logits after the last one — what `forward` on each
   * token in turn would leave, to float32 rounding (bit for bit on the reference backend; the wasm
   * backend runs a chunk of 8 or more tokens as panel products, which sum in the plain loop's
   * order). The projections and the feed-forward run as batched products (`matmul`, `matmuls`:
   * one read of each weight for up to PREFILL_CHUNK tokens), the chunk's attention causally in one
   * `attentions` call. The returned array is reused by the next call.
   */
  prefill(tokens: readonly number[], startPos: number): Float32Array {
    const c = this.model.config;
    if (tokens.length === 0) throw new InvalidArgumentError('prefill needs at least one token', 'tokens');
    for (const token of tokens) {
      if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) {
        throw new InvalidArgumentError(`token id ${token} is outside the vocabulary [0, ${c.vocabSize})`, 'token');
      }
    }
    const end = startPos + tokens.length - 1;
    if (!Number.isInteger(startPos) || startPos < 0 || end >= this.maxSeqLen) {
      throw new ContextOverflowError(`positions ${startPos}..${end} are outside the context [0, ${this.maxSeqLen})`);
    }
    const st = this.s;
    if (!st) throw new InvalidArgumentError('this session was disposed; create a new Session', 'session');
    if (tokens.length === 1) return this.forward(tokens[0]!, startPos);
    let logits!: Float32Array;
    for (let i = 0; i < tokens.length; i += PREFILL_CHUNK) {
      logits = this.prefillChunk(st, tokens.slice(i, i + PREFILL_CHUNK), startPos + i);
    }
    return logits;
  }

  private prefillChunk(st: SessionState, tokens: readonly number[], startPos: number): Float32Array {
    const { backend: b, finalNorm, classifier } = this.on;
    const n = tokens.length;
    const bt = this.runBatch(tokens.map((token, t) => ({ st, token, pos: startPos + t })));
    const last = bt.x[n - 1]!;
    const logits = st.parts[this.on.head]!.logits;
    b.rmsnorm(last, last, finalNorm, this.model.config.normEps);
    b.matvec(logits, last, classifier);
    return b.read(logits);
  }

  /**
   * One token of each of several sequences (`sessions[i]` runs `tokens[i]` at `positions[i]`, as
   * its `forward` would) with one read of each weight for all of them: the continuous-batching
   * server's decode step. Returns each session's logits (each reused by that session's next call),
   * equal to its `forward` (bit for bit but for float weights on wasm with 8 or more sessions:
   * float32 rounding). Sessions of different models or backends run one by one.
   */
  static forwardBatch(sessions: readonly Session[], tokens: readonly number[], positions: readonly number[]): Float32Array[] {
    if (tokens.length !== sessions.length || positions.length !== sessions.length) {
      throw new InvalidArgumentError(`forwardBatch needs one token and one position per session; got ${sessions.length} sessions, ${tokens.length} tokens, ${positions.length} positions`, 'tokens');
    }
    return Session.forwardRuns(sessions.map((session, i) => ({ session, tokens: [tokens[i]!], pos: positions[i]!, logits: true }))) as Float32Array[];
  }

  /**
   * Several sequences' tokens in one batched pass, one read of each weight for all of them: run
   * i runs `tokens` at positions pos, pos + 1, … of its session (a prompt chunk, or one decode
   * token) — the continuous-batching server's step, prompt chunks and decode tokens together.
   * Returns, for each run with `logits: true`, its session's logits after its last token (reused by
   * that session's next call), equal to `forward` on each token in turn (as `prefill`: to float32
   * rounding where the wasm backend runs panel products); undefined for
   * the others (a prompt chunk that does not end its prompt skips the classifier). Each session at
   * most once; sessions of different models or backends run one by one (`prefill`).
   */
  static forwardRuns(runs: ReadonlyArray<{ session: Session; tokens: readonly number[]; pos: number; logits: boolean }>): Array<Float32Array | undefined> {
    const first = runs[0]?.session;
    if (!first) return [];
    if (runs.length === 1 && runs[0]!.tokens.length === 1) {
      // one token alone: forward's fused dispatches (q, k, v together; w1, w3 together) sync the threads less often
      const logits = first.forward(runs[0]!.tokens[0]!, runs[0]!.pos);
      return [runs[0]!.logits ? logits : undefined];
    }
    if (runs.some((r) => r.session.on !== first.on) || new Set(runs.map((r) => r.session)).size !== runs.length) {
      return runs.map((r) => {
        const logits = r.session.prefill(r.tokens, r.pos);
        return r.logits ? logits : undefined;
      });
    }
    const items: Array<{ st: SessionState; token: number; pos: number; out: SessionState | undefined }> = [];
    for (const r of runs) {
      if (r.tokens.length === 0) throw new InvalidArgumentError('a run needs at least one token', 'tokens');
      r.tokens.forEach((token, t) => {
        const st = r.session.check(token, r.pos + t);
        items.push({ st, token, pos: r.pos + t, out: r.logits && t === r.tokens.length - 1 ? st : undefined });
      });
    }
    const { backend: b, head, finalNorm, classifier } = first.on;
    const c = first.model.config;
    for (let i0 = 0; i0 < items.length; i0 += PREFILL_CHUNK) {
      const chunk = items.slice(i0, i0 + PREFILL_CHUNK);
      const bt = first.runBatch(chunk);
      // the classifier only for the tokens whose logits are asked for
      const X: Vector[] = [];
      const outs: Vector[] = [];
      chunk.forEach((it, t) => {
        if (!it.out) return;
        b.rmsnorm(bt.x[t]!, bt.x[t]!, finalNorm, c.normEps);
        X.push(bt.x[t]!);
        outs.push(it.out.parts[head]!.logits);
      });
      if (X.length > 0) b.matmul(outs, X, classifier);
    }
    return runs.map((r) => (r.logits ? b.read(r.session.s!.parts[head]!.logits) : undefined));
  }

  /** The checks of `forward`: the session's state, when the token and position are valid. */
  private check(token: number, pos: number): SessionState {
    const c = this.model.config;
    if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) {
      throw new InvalidArgumentError(`token id ${token} is outside the vocabulary [0, ${c.vocabSize})`, 'token');
    }
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.maxSeqLen) {
      throw new ContextOverflowError(`position ${pos} is outside the context [0, ${this.maxSeqLen})`);
    }
    const st = this.s;
    if (!st) throw new InvalidArgumentError('this session was disposed; create a new Session', 'session');
    return st;
  }

  /**
   * The layers for up to PREFILL_CHUNK tokens at once, each with its own KV cache and position
   * (one prompt's tokens: the same cache, consecutive positions; or one token of each of several
   * sequences): the seven projections as batched products (`matmul`), RoPE and attention per
   * token. Leaves each token's residual stream in bt.x[t], before the final norm. Tokens that share
   * a cache must come in position order: token t's attention reads the rows written before it.
   */
  private runBatch(items: ReadonlyArray<{ st: SessionState; token: number; pos: number }>): BatchState {
    const c = this.model.config;
    const { parts, layers, tokenEmbedding } = this.on;
    const n = items.length;
    const dim = c.dim;
    const kv = kvDim(c);
    const hs = c.headDim;
    const angles = items.map(({ pos }) => {
      ropeAngles(pos, hs, c.ropeTheta, this.cos, this.sin, c.ropeScaling);
      return [this.cos.slice(), this.sin.slice()] as const;
    });
    let perPart = batches.get(this.on);
    if (!perPart) batches.set(this.on, (perPart = []));
    // as in `forward`: each layer in its part, the residual streams moved when the part changes
    let part = -1;
    let b!: Backend;
    let bt!: BatchState;
    const enter = (next: number) => {
      if (next === part) return;
      const nb = parts[next]!;
      const nbt = (perPart[next] ??= allocateBatch(nb, c));
      for (let t = 0; t < n; t++) {
        if (part < 0) nb.embed(nbt.x[t]!, tokenEmbedding, items[t]!.token);
        else nb.write(nbt.x[t]!, b.read(bt.x[t]!));
        nb.write(nbt.cos[t]!, angles[t]![0]);
        nb.write(nbt.sin[t]!, angles[t]![1]);
      }
      [part, b, bt] = [next, nb, nbt];
    };

    for (let l = 0; l < c.nLayers; l++) {
      const lw = layers[l]!;
      enter(lw.part);
      const take = (vs: Vector[]) => (n === vs.length ? vs : vs.slice(0, n));
      const X = take(bt.x), XB = take(bt.xb), XB2 = take(bt.xb2), Q = take(bt.q), K = take(bt.k), V = take(bt.v), HB = take(bt.hb), HB2 = take(bt.hb2);

      for (let t = 0; t < n; t++) b.rmsnorm(XB[t]!, X[t]!, lw.attnNorm, c.normEps);
      b.matmuls([[Q, lw.wq], [K, lw.wk], [V, lw.wv]], XB); // inputs packed once, one dispatch
      for (let t = 0; t < n; t++) {
        const { st, pos } = items[t]!;
        b.rope(Q[t]!, dim, hs, bt.cos[t]!, bt.sin[t]!);
        b.rope(K[t]!, kv, hs, bt.cos[t]!, bt.sin[t]!);
        b.copy(st.keyCache[l]!, pos * kv, K[t]!);
        b.copy(st.valueCache[l]!, pos * kv, V[t]!);
      }
      // causal: token t attends over positions 0..pos of its own cache (later rows are not read;
      // all of this layer's rows are written above, so the tokens may run in any order, or at once)
      b.attentions(items.map(({ st, pos }, t) => ({ out: XB[t]!, q: Q[t]!, keyCache: st.keyCache[l]!, valueCache: st.valueCache[l]!, att: st.parts[part]!.att, pos })), c);
      b.matmul(XB2, XB, lw.wo);
      for (let t = 0; t < n; t++) b.add(X[t]!, XB2[t]!);

      for (let t = 0; t < n; t++) b.rmsnorm(XB[t]!, X[t]!, lw.ffnNorm, c.normEps);
      b.matmuls([[HB, lw.w1], [HB2, lw.w3]], XB);
      for (let t = 0; t < n; t++) b.siluMul(HB[t]!, HB2[t]!);
      b.matmul(XB, HB, lw.w2);
      for (let t = 0; t < n; t++) b.add(X[t]!, XB[t]!);
    }
    enter(this.on.head);
    return bt;
  }

  /**
   * Give the session's activations and KV cache back to the backend now (a wasm memory cannot
   * shrink, but its freed blocks serve the next sessions). Without it they are returned when the
   * session is garbage-collected, which may be late. The session cannot run after this.
   */
  dispose(): void {
    const st = this.s;
    if (!st) return;
    this.s = undefined;
    const { parts, layers } = this.on;
    st.parts.forEach((a, p) => Object.values(a).forEach((v) => parts[p]!.free(v)));
    layers.forEach(({ part }, l) => (parts[part]!.free(st.keyCache[l]!), parts[part]!.free(st.valueCache[l]!)));
  }
}

/** A session's vectors in the backend's memory (in each part's, for a model split across memories). */
interface SessionState {
  readonly parts: Activations[]; // per part
  readonly keyCache: Vector[]; // per layer (maxSeqLen, kvDim), in the layer's part, of the session's kvCache type
  readonly valueCache: Vector[]; // per layer (maxSeqLen, kvDim)
}

/** One token's activations. */
interface Activations {
  readonly x: Vector; // (dim,) the residual stream
  readonly xb: Vector; // (dim,) inside a residual branch
  readonly xb2: Vector; // (dim,)
  readonly hb: Vector; // (hiddenDim,)
  readonly hb2: Vector; // (hiddenDim,)
  readonly q: Vector; // (dim,) query
  readonly k: Vector; // (kvDim,) key of this position
  readonly v: Vector; // (kvDim,) value of this position
  readonly att: Vector; // (maxSeqLen,) attention scores of one head
  readonly cos: Vector; // (headDim/2,) RoPE angles of this position
  readonly sin: Vector;
  readonly logits: Vector; // (vocabSize,)
}

function allocateState(on: BackendModel, c: ModelConfig, maxSeqLen: number, kvCache: CacheType): SessionState {
  const kv = kvDim(c);
  const parts = on.parts.map((b) => ({
    x: b.vector(c.dim),
    xb: b.vector(c.dim),
    xb2: b.vector(c.dim),
    hb: b.vector(c.hiddenDim),
    hb2: b.vector(c.hiddenDim),
    q: b.vector(c.dim),
    k: b.vector(kv),
    v: b.vector(kv),
    att: b.vector(maxSeqLen),
    cos: b.vector(c.headDim / 2),
    sin: b.vector(c.headDim / 2),
    logits: b.vector(c.vocabSize),
  }));
  return {
    parts,
    keyCache: on.layers.map(({ part }) => on.parts[part]!.cache(maxSeqLen * kv, kvCache)),
    valueCache: on.layers.map(({ part }) => on.parts[part]!.cache(maxSeqLen * kv, kvCache)),
  };
}

/** Prompt tokens per batched pass of `prefill` (each weight is read once per chunk). */
export const PREFILL_CHUNK = 64;

/**
 * The batched passes' activations, per model on a backend and per part: shared by all the
 * model's sessions (a pass runs to its end before the next starts), allocated at the first pass.
 */
const batches = new WeakMap<BackendModel, BatchState[]>();

/** Prefill's activations: PREFILL_CHUNK of each of the single-token vectors, and their RoPE angles. */
interface BatchState {
  readonly x: Vector[];
  readonly xb: Vector[];
  readonly xb2: Vector[];
  readonly hb: Vector[];
  readonly hb2: Vector[];
  readonly q: Vector[];
  readonly k: Vector[];
  readonly v: Vector[];
  readonly cos: Vector[];
  readonly sin: Vector[];
}

function allocateBatch(b: Backend, c: ModelConfig): BatchState {
  const kv = kvDim(c);
  const n = (len: number) => Array.from({ length: PREFILL_CHUNK }, () => b.vector(len));
  return {
    x: n(c.dim), xb: n(c.dim), xb2: n(c.dim), hb: n(c.hiddenDim), hb2: n(c.hiddenDim),
    q: n(c.dim), k: n(kv), v: n(kv), cos: n(c.headDim / 2), sin: n(c.headDim / 2),
  };
}

/** One token of each of several sessions, one weight read for all: see Session.forwardBatch. */
export function forwardBatch(sessions: readonly Session[], tokens: readonly number[], positions: readonly number[]): Float32Array[] {
  return Session.forwardBatch(sessions, tokens, positions);
}

/** Bytes of a session's KV cache for `maxSeqLen` positions, `elementBytes` per value (f32: 4, f16: 2). */
export function kvCacheBytes(c: ModelConfig, maxSeqLen: number, elementBytes = 4): number {
  return c.nLayers * layerKvBytes(c, maxSeqLen, elementBytes);
}
