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
import { BackendUnavailableError, defaultThreads, openBackend, type Backend, type BackendChoice, type BackendModel, type BackendName, type Vector } from '../backend/backend.js';
import { ropeAngles } from '../backend/ref/ops.js';
import { kvDim, type ModelConfig } from './config.js';
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
    const cacheBytes = kvCacheBytes(c, maxSeqLen);
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
      s = allocateState(on.backend, c, maxSeqLen);
    } catch (e) {
      // the backend's memory is full (a wasm memory holds 4 GiB): this session runs on ref
      if (!(e instanceof BackendUnavailableError) || on.backend.name === 'ref') throw e;
      on = { ...openBackend(model, 'ref'), fallbackReason: `${on.backend.name} backend unavailable for this session: ${e.message}` };
      s = allocateState(on.backend, c, maxSeqLen);
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
    if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) {
      throw new InvalidArgumentError(`token id ${token} is outside the vocabulary [0, ${c.vocabSize})`, 'token');
    }
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.maxSeqLen) {
      throw new ContextOverflowError(`position ${pos} is outside the context [0, ${this.maxSeqLen})`);
    }
    const st = this.s;
    if (!st) throw new InvalidArgumentError('this session was disposed; create a new Session', 'session');
    const { backend: b, layers, tokenEmbedding, finalNorm, classifier } = this.on;
    const { x, xb, xb2, hb, hb2, q, k, v, att, cos, sin, logits } = st;
    const dim = c.dim;
    const kv = kvDim(c);
    const hs = c.headDim;

    b.embed(x, tokenEmbedding, token);
    ropeAngles(pos, hs, c.ropeTheta, this.cos, this.sin, c.ropeScaling);
    b.write(cos, this.cos);
    b.write(sin, this.sin);

    for (let l = 0; l < c.nLayers; l++) {
      const lw = layers[l]!;
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

    b.rmsnorm(x, x, finalNorm, c.normEps);
    b.matvec(logits, x, classifier);
    return b.read(logits);
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
    const b = this.on.backend;
    for (const v of Object.values(st).flat()) b.free(v);
  }
}

/** A session's vectors in the backend's memory. */
interface SessionState {
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
  readonly keyCache: Vector[]; // per layer (maxSeqLen, kvDim)
  readonly valueCache: Vector[]; // per layer (maxSeqLen, kvDim)
}

function allocateState(b: Backend, c: ModelConfig, maxSeqLen: number): SessionState {
  const kv = kvDim(c);
  return {
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
    keyCache: Array.from({ length: c.nLayers }, () => b.vector(maxSeqLen * kv)),
    valueCache: Array.from({ length: c.nLayers }, () => b.vector(maxSeqLen * kv)),
  };
}

/** Bytes of a session's KV cache for `maxSeqLen` positions. */
export function kvCacheBytes(c: ModelConfig, maxSeqLen: number): number {
  return 2 * c.nLayers * maxSeqLen * kvDim(c) * 4;
}
