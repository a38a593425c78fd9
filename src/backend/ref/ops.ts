/**
 * The reference ops, in plain TypeScript: the living definition of every kernel. The reference
 * forward pass (src/model/forward.ts through the `ref` backend) runs exactly these, and every
 * faster backend is held to them op by op (test/conformance.test.ts).
 *
 * Activations are float32 arrays (every stored value rounded to float32, as in llama2.c's run.c);
 * dot products accumulate in float64, which is at least as accurate.
 */
import type { RopeScaling } from '../../model/config.js';
import { half16Table, readRow, type Matrix } from '../../model/tensor.js';
import { GGML_TYPES } from '../../quant/ggml.js';

/** The name of a matrix's weight type, as backends' `supports` and the conformance suite use it. */
export function weightType(m: Matrix): string {
  return m.type === 'ggml' ? (GGML_TYPES.get(m.ggmlType)?.name ?? `ggml type ${m.ggmlType}`) : m.type;
}

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

/** Index of the first largest of x[0..n). */
export function argmax(x: Float32Array, n: number = x.length): number {
  let best = 0;
  let max = x[0]!;
  for (let i = 1; i < n; i++) {
    if (x[i]! > max) {
      max = x[i]!;
      best = i;
    }
  }
  return best;
}

/** Scratch for int8 activations (runq.c's QuantizedTensor of x). */
export interface QuantizedScratch {
  q: Int8Array;
  s: Float32Array;
}

/**
 * out = W · x, with W of shape (out.length, x.length).
 * For int8 weights, x is first quantized to int8 in the same groups (as runq.c does), the group
 * dot products are exact integers, and each is scaled by both groups' scales.
 */
export function matmul(out: Float32Array, x: Float32Array, w: Matrix, xq?: QuantizedScratch): void {
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
    const buf = xq && xq.q.length >= n ? xq : { q: new Int8Array(n), s: new Float32Array(n / gs) };
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

/** The head layout attention needs. */
export interface AttentionShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
}

/** A KV cache's values: float32, or IEEE half bit patterns (an f16 cache). */
export type CacheArray = Float32Array | Uint16Array;

/**
 * Causal attention of position `pos`: each query head (in q, nHeads * headDim) attends over rows
 * 0..pos of its key/value head's cache (keyCache, valueCache: (maxSeqLen, nKvHeads * headDim));
 * the heads' outputs go to `out` (nHeads * headDim). `att` is scratch of at least pos + 1 floats.
 * An f16 cache's values are widened exactly to float32 as they are read.
 */
export function attention(
  out: Float32Array, q: Float32Array, keyCache: CacheArray, valueCache: CacheArray, att: Float32Array,
  pos: number, shape: AttentionShape,
): void {
  if (keyCache instanceof Uint16Array || valueCache instanceof Uint16Array) {
    // the plain definition: the same attention over rows 0..pos of the caches widened to float32
    const t = half16Table('f16');
    const rows = (pos + 1) * shape.nKvHeads * shape.headDim;
    const widen = (c: CacheArray) => (c instanceof Uint16Array ? Float32Array.from(c.subarray(0, rows), (h) => t[h]!) : c);
    return attention(out, q, widen(keyCache), widen(valueCache), att, pos, shape);
  }
  const { nHeads, nKvHeads, headDim: hs } = shape;
  const kv = nKvHeads * hs;
  const kvMul = nHeads / nKvHeads; // query heads per key/value head
  const scale = 1 / Math.sqrt(hs);
  for (let h = 0; h < nHeads; h++) {
    const qo = h * hs;
    const kvo = ((h / kvMul) | 0) * hs;
    for (let t = 0; t <= pos; t++) {
      let score = 0;
      for (let i = 0; i < hs; i++) score += q[qo + i]! * keyCache[t * kv + kvo + i]!;
      att[t] = score * scale;
    }
    softmax(att, pos + 1);
    for (let i = 0; i < hs; i++) out[qo + i] = 0;
    for (let t = 0; t <= pos; t++) {
      const a = att[t]!;
      for (let i = 0; i < hs; i++) out[qo + i] = out[qo + i]! + a * valueCache[t * kv + kvo + i]!;
    }
  }
}

/** a[i] = silu(a[i]) * b[i], silu(g) = g / (1 + e^-g): the SwiGLU feed-forward's gate. */
export function siluMul(a: Float32Array, b: Float32Array, n: number = a.length): void {
  for (let i = 0; i < n; i++) {
    const g = a[i]!;
    a[i] = Math.fround(g / (1 + Math.exp(-g))) * b[i]!;
  }
}

/** x[i] += y[i]: the residual connection. */
export function add(x: Float32Array, y: Float32Array, n: number = x.length): void {
  for (let i = 0; i < n; i++) x[i] = x[i]! + y[i]!;
}
