/**
 * The weights of a LLaMA-family transformer, independent of the file they came from.
 * Shapes are (rows, cols) = (outputs, inputs); `headDim = dim / nHeads`, `kvDim = nKvHeads * headDim`.
 */
import type { ModelConfig } from './config.js';
import type { Matrix } from './tensor.js';

export interface LayerWeights {
  readonly attnNorm: Float32Array; // (dim,) RMSNorm gain before attention
  readonly wq: Matrix; // (nHeads * headDim, dim) query projection
  readonly wk: Matrix; // (kvDim, dim) key projection
  readonly wv: Matrix; // (kvDim, dim) value projection
  readonly wo: Matrix; // (dim, nHeads * headDim) attention output projection
  readonly ffnNorm: Float32Array; // (dim,) RMSNorm gain before the feed-forward
  readonly w1: Matrix; // (hiddenDim, dim) gate projection (goes through SiLU)
  readonly w2: Matrix; // (dim, hiddenDim) down projection
  readonly w3: Matrix; // (hiddenDim, dim) up projection
}

export interface ModelWeights {
  readonly tokenEmbedding: Matrix; // (vocabSize, dim)
  readonly layers: readonly LayerWeights[]; // nLayers
  readonly finalNorm: Float32Array; // (dim,)
  readonly classifier: Matrix; // (vocabSize, dim); the same object as tokenEmbedding when shared
}

/** A loaded model: what it is, its weights, and where it came from. */
export interface Model {
  readonly config: ModelConfig;
  readonly weights: ModelWeights;
  /** Path of the checkpoint and a short description of its format, for messages and `--verbose`. */
  readonly source: { readonly path: string; readonly format: string };
}
