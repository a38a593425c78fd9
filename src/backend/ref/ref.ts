/**
 * The `ref` backend: the plain TypeScript ops of ./ops.ts on ordinary Float32Arrays. A vector is
 * a Float32Array, a weight is the model's own matrix (no copy), so this backend adds nothing to
 * the reference forward pass: it computes exactly what llamats always computed.
 */
import type { Model } from '../../model/weights.js';
import type { Matrix } from '../../model/tensor.js';
import { readRow } from '../../model/tensor.js';
import { f32ToF16 } from '../../quant/ggml.js';
import type { AttentionShape, Backend, Op, Vector, Weight } from '../backend.js';
import * as ops from './ops.js';

const f32 = (v: Vector) => v as Float32Array;
const kv = (v: Vector) => v as ops.CacheArray; // a KV cache: float32, or f16 bit patterns

export function createRefBackend(model: Model): Backend {
  return refBackend(Math.max(model.config.dim, model.config.hiddenDim));
}

/** A ref backend whose int8 scratch fits rows of `maxCols` (longer rows get their own). */
export function refBackend(maxCols: number): Backend {
  // int8 activations for q8 weights, shared by every product (one thread)
  const n = maxCols;
  const xq: ops.QuantizedScratch = { q: new Int8Array(n), s: new Float32Array(n) };
  return {
    name: 'ref',
    supports: (_op: Op) => true,
    vector: (length: number, init?: Float32Array) => (init ? Float32Array.from(init) : new Float32Array(length)),
    upload: (m: Matrix): Weight => ({ rows: m.rows, cols: m.cols, host: m }),
    write: (dst, src, offset = 0) => f32(dst).set(src, offset),
    read: (v) => f32(v),
    free: () => {}, // garbage-collected
    cache: (length, type) => (type === 'f16' ? new Uint16Array(length) : new Float32Array(length)),
    copy: (dst, dstOffset, src) => {
      if (dst instanceof Uint16Array) f32(src).forEach((v, i) => (dst[dstOffset + i] = f32ToF16(v)));
      else f32(dst).set(f32(src), dstOffset);
    },
    embed: (out, table, row) => readRow(table, row, f32(out)),
    matvec: (out, x, w) => ops.matmul(f32(out), f32(x), w.host, xq),
    matmul: (outs, xs, w) => {
      if (outs.length !== xs.length) throw new Error(`internal: matmul of ${xs.length} inputs into ${outs.length} outputs`);
      for (let b = 0; b < xs.length; b++) ops.matmul(f32(outs[b]!), f32(xs[b]!), w.host, xq);
    },
    matmuls: (groups, xs) => {
      for (const [outs, w] of groups) for (let b = 0; b < xs.length; b++) ops.matmul(f32(outs[b]!), f32(xs[b]!), w.host, xq);
    },
    matvecs: (products) => {
      for (const [out, x, w] of products) ops.matmul(f32(out), f32(x), w.host, xq);
    },
    rmsnorm: (out, x, weight, eps) => ops.rmsnorm(f32(out), f32(x), f32(weight), eps),
    rope: (v, n, headDim, cos, sin) => ops.rope(f32(v), n, headDim, f32(cos), f32(sin)),
    attention: (out, q, kc, vc, att, pos, shape: AttentionShape) => ops.attention(f32(out), f32(q), kv(kc), kv(vc), f32(att), pos, shape),
    attentions: (items, shape) => {
      for (const a of items) ops.attention(f32(a.out), f32(a.q), kv(a.keyCache), kv(a.valueCache), f32(a.att), a.pos, shape);
    },
    siluMul: (a, b) => ops.siluMul(f32(a), f32(b)),
    add: (x, y) => ops.add(f32(x), f32(y)),
    softmax: (x, n) => ops.softmax(f32(x), n),
    argmax: (x, n) => ops.argmax(f32(x), n),
  };
}
