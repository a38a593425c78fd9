/**
 * The reference forward pass of a LLaMA-family transformer, in plain TypeScript.
 *
 * This is the definition that every faster backend is checked against, so it is written for
 * reading: one function per block, plain loops, the same order of operations as llama2.c's
 * `run.c`. Activations live in float32 arrays (every stored value is rounded to float32, as in
 * run.c); dot products accumulate in float64, which is at least as accurate.
 *
 *   x = embedding[token]
 *   for each layer:
 *     x += Wo · attention(RoPE(Wq · rmsnorm(x)), RoPE(Wk · rmsnorm(x)), Wv · rmsnorm(x))
 *     x += W2 · (silu(W1 · rmsnorm(x)) * (W3 · rmsnorm(x)))
 *   logits = Wcls · rmsnorm(x)
 *
 * Where the time goes: the matrix-vector products (`matmul`), which read every weight once per
 * token; attention grows with the position.
 */
import { ContextOverflowError, InvalidArgumentError, OutOfMemoryError, formatBytes } from '../errors.js';
import * as os from 'node:os';
import { kvDim, type ModelConfig, type RopeScaling } from './config.js';
import { half16Table, readRow, type Matrix } from './tensor.js';
import type { Model } from './weights.js';

// ---------------------------------------------------------------------------------------------
// Blocks

/** o = weight * x / sqrt(mean(x²) + eps). `o` may be `x`. */
export function rmsnorm(o: Float32Array, x: Float32Array, weight: Float32Array, eps: number): void {
  const n = x.length;
  let ss = 0;
  for (let j = 0; j < n; j++) ss += x[j]! * x[j]!;
  ss = Math.fround(1 / Math.sqrt(Math.fround(Math.fround(ss / n) + Math.fround(eps))));
  for (let j = 0; j < n; j++) o[j] = weight[j]! * Math.fround(ss * x[j]!);
}

/** In-place softmax over x[0..size). */
export function softmax(x: Float32Array, size: number = x.length): void {
  let max = x[0]!;
  for (let i = 1; i < size; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    x[i] = Math.exp(x[i]! - max);
    sum += x[i]!;
  }
  for (let i = 0; i < size; i++) x[i] = x[i]! / sum;
}

/**
 * out = W · x, with W of shape (out.length, x.length).
 * For int8 weights, x is first quantized to int8 in the same groups (as runq.c does), the group
 * dot products are exact integers, and each is scaled by both groups' scales.
 */
export function matmul(out: Float32Array, x: Float32Array, w: Matrix, xq?: { q: Int8Array; s: Float32Array }): void {
  const n = w.cols;
  const d = w.rows;
  if (x.length < n || out.length < d) throw new Error(`internal: matmul ${d}x${n} given x of ${x.length}, out of ${out.length}`);
  if (w.type === 'f32') {
    const W = w.data;
    const n4 = n & ~3;
    for (let i = 0; i < d; i++) {
      const row = i * n;
      // four partial sums break the add chain; the order differs from run.c only in float64
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      let j = 0;
      for (; j < n4; j += 4) {
        a0 += W[row + j]! * x[j]!;
        a1 += W[row + j + 1]! * x[j + 1]!;
        a2 += W[row + j + 2]! * x[j + 2]!;
        a3 += W[row + j + 3]! * x[j + 3]!;
      }
      for (; j < n; j++) a0 += W[row + j]! * x[j]!;
      out[i] = a0 + a1 + (a2 + a3);
    }
    return;
  }
  if (w.type === 'q8') {
    const gs = w.groupSize;
    const buf = xq ?? { q: new Int8Array(n), s: new Float32Array(n / gs) };
    quantizeActivations(x, n, gs, buf.q, buf.s);
    const { q: wq, s: ws } = w;
    const { q: aq, s: as } = buf;
    for (let i = 0; i < d; i++) {
      const row = i * n;
      let val = 0;
      for (let j = 0; j < n; j += gs) {
        let ival = 0;
        for (let k = 0; k < gs; k++) ival += aq[j + k]! * wq[row + j + k]!;
        val += ival * ws[(row + j) / gs]! * as[j / gs]!;
      }
      out[i] = val;
    }
    return;
  }
  if (w.type === 'ggml') {
    // reference path for ggml block types: dequantize one row at a time, then a plain dot product
    const row = scratchRow(n);
    for (let i = 0; i < d; i++) {
      readRow(w, i, row);
      let a0 = 0;
      for (let j = 0; j < n; j++) a0 += row[j]! * x[j]!;
      out[i] = a0;
    }
    return;
  }
  // 16-bit weights are widened through a 65536-entry table as they are read
  const W = w.data;
  const t = half16Table(w.type);
  for (let i = 0; i < d; i++) {
    const row = i * n;
    let a0 = 0, a1 = 0;
    let j = 0;
    for (; j + 1 < n; j += 2) {
      a0 += t[W[row + j]!]! * x[j]!;
      a1 += t[W[row + j + 1]!]! * x[j + 1]!;
    }
    if (j < n) a0 += t[W[row + j]!]! * x[j]!;
    out[i] = a0 + a1;
  }
}

let rowScratch = new Float32Array(0);
function scratchRow(n: number): Float32Array {
  if (rowScratch.length < n) rowScratch = new Float32Array(n);
  return rowScratch;
}

/** Symmetric int8 quantization of x[0..n) in groups, as runq.c's `quantize` (C round: half away from zero). */
export function quantizeActivations(x: Float32Array, n: number, gs: number, q: Int8Array, s: Float32Array): void {
  for (let g = 0; g < n / gs; g++) {
    let wmax = 0;
    for (let k = 0; k < gs; k++) wmax = Math.max(wmax, Math.abs(x[g * gs + k]!));
    const scale = Math.fround(wmax / 127);
    s[g] = scale;
    for (let k = 0; k < gs; k++) {
      const v = scale === 0 ? 0 : Math.fround(x[g * gs + k]! / scale);
      q[g * gs + k] = Math.sign(v) * Math.round(Math.abs(v));
    }
  }
}

/**
 * RoPE on interleaved pairs: each (v[2i], v[2i+1]) of every head is rotated by the angle
 * pos * theta^(-2i/headDim). `cos`/`sin` hold the headDim/2 angles of this position.
 */
export function rope(v: Float32Array, n: number, headDim: number, cos: Float32Array, sin: Float32Array): void {
  for (let i = 0; i < n; i += 2) {
    const f = (i % headDim) >> 1;
    const v0 = v[i]!;
    const v1 = v[i + 1]!;
    v[i] = Math.fround(v0 * cos[f]!) - Math.fround(v1 * sin[f]!);
    v[i + 1] = Math.fround(v0 * sin[f]!) + Math.fround(v1 * cos[f]!);
  }
}

/**
 * The angles of one position, computed in float32 as run.c does (it matters for long contexts),
 * with Llama 3.1's frequency scaling when the model has it.
 */
export function ropeAngles(pos: number, headDim: number, theta: number, cos: Float32Array, sin: Float32Array, scaling?: RopeScaling): void {
  for (let i = 0; i < headDim; i += 2) {
    let freq = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround(i / headDim))));
    if (scaling) freq = Math.fround(scaleRopeFrequency(freq, scaling));
    const val = Math.fround(pos * freq);
    cos[i >> 1] = Math.cos(val);
    sin[i >> 1] = Math.sin(val);
  }
}

/** Meta's `apply_scaling` (Llama 3.1) for one frequency. */
export function scaleRopeFrequency(freq: number, s: RopeScaling): number {
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  const wavelen = (2 * Math.PI) / freq;
  if (wavelen < highFreqWavelen) return freq;
  if (wavelen > lowFreqWavelen) return freq / s.factor;
  const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
  return ((1 - smooth) * freq) / s.factor + smooth * freq;
}

// ---------------------------------------------------------------------------------------------
// State and the forward pass

/**
 * One sequence's activations and key/value cache, allocated once. A Session belongs to one
 * model; several sessions can share a model.
 */
export class Session {
  readonly model: Model;
  /** Positions the KV cache holds: 0 ≤ pos < maxSeqLen. */
  readonly maxSeqLen: number;
  readonly x: Float32Array; // (dim,) the residual stream
  readonly xb: Float32Array; // (dim,) inside a residual branch
  readonly xb2: Float32Array; // (dim,)
  readonly hb: Float32Array; // (hiddenDim,)
  readonly hb2: Float32Array; // (hiddenDim,)
  readonly q: Float32Array; // (dim,) query
  readonly k: Float32Array; // (kvDim,) key of this position
  readonly v: Float32Array; // (kvDim,) value of this position
  readonly att: Float32Array; // (maxSeqLen,) attention scores of one head
  readonly logits: Float32Array; // (vocabSize,)
  readonly keyCache: Float32Array[]; // per layer (maxSeqLen, kvDim)
  readonly valueCache: Float32Array[]; // per layer (maxSeqLen, kvDim)
  private readonly cos: Float32Array; // (headDim/2,)
  private readonly sin: Float32Array;
  private readonly xq: { q: Int8Array; s: Float32Array }; // scratch for int8 activations

  constructor(model: Model, opts: { maxSeqLen?: number } = {}) {
    const c = model.config;
    const maxSeqLen = opts.maxSeqLen ?? c.seqLen;
    if (!Number.isInteger(maxSeqLen) || maxSeqLen < 1 || maxSeqLen > c.seqLen) {
      throw new InvalidArgumentError(`maxSeqLen must be an integer in [1, ${c.seqLen}] (the model's context); got ${maxSeqLen}`, 'maxSeqLen');
    }
    const kv = kvDim(c);
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
    this.x = new Float32Array(c.dim);
    this.xb = new Float32Array(c.dim);
    this.xb2 = new Float32Array(c.dim);
    this.hb = new Float32Array(c.hiddenDim);
    this.hb2 = new Float32Array(c.hiddenDim);
    this.q = new Float32Array(c.dim);
    this.k = new Float32Array(kv);
    this.v = new Float32Array(kv);
    this.att = new Float32Array(maxSeqLen);
    this.logits = new Float32Array(c.vocabSize);
    this.keyCache = Array.from({ length: c.nLayers }, () => new Float32Array(maxSeqLen * kv));
    this.valueCache = Array.from({ length: c.nLayers }, () => new Float32Array(maxSeqLen * kv));
    this.cos = new Float32Array(c.headDim / 2);
    this.sin = new Float32Array(c.headDim / 2);
    const n = Math.max(c.dim, c.hiddenDim);
    this.xq = { q: new Int8Array(n), s: new Float32Array(n) };
  }

  /**
   * Run `token` at position `pos` (the KV cache must hold positions 0..pos-1 of this sequence)
   * and return the logits for the next token. The returned array is reused by the next call.
   */
  forward(token: number, pos: number): Float32Array {
    const { config: c, weights: w } = this.model;
    if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) {
      throw new InvalidArgumentError(`token id ${token} is outside the vocabulary [0, ${c.vocabSize})`, 'token');
    }
    if (!Number.isInteger(pos) || pos < 0 || pos >= this.maxSeqLen) {
      throw new ContextOverflowError(`position ${pos} is outside the context [0, ${this.maxSeqLen})`);
    }
    const { x, xb, xb2, hb, hb2, q, k, v, att, xq } = this;
    const dim = c.dim;
    const kv = kvDim(c);
    const hs = c.headDim;
    const kvMul = c.nHeads / c.nKvHeads; // query heads per key/value head
    const scale = 1 / Math.sqrt(hs);

    readRow(w.tokenEmbedding, token, x);
    ropeAngles(pos, hs, c.ropeTheta, this.cos, this.sin, c.ropeScaling);

    for (let l = 0; l < c.nLayers; l++) {
      const lw = w.layers[l]!;
      const kc = this.keyCache[l]!;
      const vc = this.valueCache[l]!;

      // attention: q, k, v for this position; k and v go into the cache
      rmsnorm(xb, x, lw.attnNorm, c.normEps);
      matmul(q, xb, lw.wq, xq);
      matmul(k, xb, lw.wk, xq);
      matmul(v, xb, lw.wv, xq);
      rope(q, dim, hs, this.cos, this.sin);
      rope(k, kv, hs, this.cos, this.sin);
      kc.set(k, pos * kv);
      vc.set(v, pos * kv);

      // each query head attends over positions 0..pos of its key/value head
      for (let h = 0; h < c.nHeads; h++) {
        const qo = h * hs;
        const kvo = ((h / kvMul) | 0) * hs;
        for (let t = 0; t <= pos; t++) {
          let score = 0;
          for (let i = 0; i < hs; i++) score += q[qo + i]! * kc[t * kv + kvo + i]!;
          att[t] = score * scale;
        }
        softmax(att, pos + 1);
        for (let i = 0; i < hs; i++) xb[qo + i] = 0;
        for (let t = 0; t <= pos; t++) {
          const a = att[t]!;
          for (let i = 0; i < hs; i++) xb[qo + i] = xb[qo + i]! + a * vc[t * kv + kvo + i]!;
        }
      }
      matmul(xb2, xb, lw.wo, xq);
      for (let i = 0; i < dim; i++) x[i] = x[i]! + xb2[i]!;

      // feed-forward: w2(silu(w1(x)) * w3(x))
      rmsnorm(xb, x, lw.ffnNorm, c.normEps);
      matmul(hb, xb, lw.w1, xq);
      matmul(hb2, xb, lw.w3, xq);
      for (let i = 0; i < c.hiddenDim; i++) {
        const g = hb[i]!;
        hb[i] = Math.fround(g / (1 + Math.exp(-g))) * hb2[i]!;
      }
      matmul(xb, hb, lw.w2, xq);
      for (let i = 0; i < dim; i++) x[i] = x[i]! + xb[i]!;
    }

    rmsnorm(x, x, w.finalNorm, c.normEps);
    matmul(this.logits, x, w.classifier, xq);
    return this.logits;
  }
}

/** Bytes of a session's KV cache for `maxSeqLen` positions. */
export function kvCacheBytes(c: ModelConfig, maxSeqLen: number): number {
  return 2 * c.nLayers * maxSeqLen * kvDim(c) * 4;
}
