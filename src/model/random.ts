/**
 * Random-weight models with any shape: for benchmarks (speed does not depend on the values) and
 * for tests of awkward dimensions. Deterministic for a seed.
 */
import type { ModelConfig } from './config.js';
import { f32Matrix } from './tensor.js';
import type { Model } from './weights.js';

export type ModelShape = Omit<ModelConfig, 'headDim' | 'normEps' | 'ropeTheta'>;

/** Weights uniform in ±scale/2 and RMSNorm gains in [0.5, 1.5), from a xorshift32 stream. */
export function randomModel(shape: ModelShape, seed: number, scale = 0.1): Pick<Model, 'config' | 'weights'> {
  const c: ModelConfig = { ...shape, headDim: shape.dim / shape.nHeads, normEps: 1e-5, ropeTheta: 10000 };
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 4294967296;
  };
  const fill = (n: number, lo: number, width: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = lo + next() * width;
    return a;
  };
  const kv = c.nKvHeads * c.headDim;
  const mat = (rows: number, cols: number) => f32Matrix(fill(rows * cols, -scale / 2, scale), rows, cols);
  const norm = () => fill(c.dim, 0.5, 1);
  const tokenEmbedding = mat(c.vocabSize, c.dim);
  return {
    config: c,
    weights: {
      tokenEmbedding,
      layers: Array.from({ length: c.nLayers }, () => ({
        attnNorm: norm(), wq: mat(c.dim, c.dim), wk: mat(kv, c.dim), wv: mat(kv, c.dim), wo: mat(c.dim, c.dim),
        ffnNorm: norm(), w1: mat(c.hiddenDim, c.dim), w2: mat(c.dim, c.hiddenDim), w3: mat(c.hiddenDim, c.dim),
      })),
      finalNorm: norm(),
      classifier: c.sharedClassifier ? tokenEmbedding : mat(c.vocabSize, c.dim),
    },
  };
}
