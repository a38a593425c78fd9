/**
 * Model hyperparameters, named as in the Llama papers and Meta's `ModelArgs`.
 * One naming convention for the whole project: camelCase, `n` prefix for counts.
 */
import { FileFormatError } from '../errors.js';

export interface ModelConfig {
  /** Width of the residual stream (Meta: dim; HF: hidden_size). */
  readonly dim: number;
  /** Width of the SwiGLU feed-forward layer (HF: intermediate_size). */
  readonly hiddenDim: number;
  readonly nLayers: number;
  /** Number of query heads. */
  readonly nHeads: number;
  /** Number of key/value heads: nHeads for multi-head, fewer for grouped-query attention. */
  readonly nKvHeads: number;
  readonly vocabSize: number;
  /** Longest sequence the model was trained for (the context window). */
  readonly seqLen: number;
  /** dim / nHeads. */
  readonly headDim: number;
  /** Epsilon inside RMSNorm's square root. */
  readonly normEps: number;
  /** Base of RoPE's frequencies. */
  readonly ropeTheta: number;
  /** True when the classifier reuses the token embedding matrix. */
  readonly sharedClassifier: boolean;
  /** Llama 3.1's RoPE frequency scaling (HF rope_scaling type "llama3"), when the model uses it. */
  readonly ropeScaling?: RopeScaling;
}

/** Llama 3.1 RoPE scaling: long wavelengths slowed by `factor`, short kept, a smooth ramp between. */
export interface RopeScaling {
  readonly factor: number;
  readonly lowFreqFactor: number;
  readonly highFreqFactor: number;
  readonly originalMaxPositionEmbeddings: number;
}

/** Limits far above any real LLaMA-family model, to refuse garbage before allocating anything. */
export const CONFIG_LIMITS = {
  dim: 65536,
  hiddenDim: 1 << 20,
  nLayers: 4096,
  nHeads: 4096,
  vocabSize: 1 << 22,
  seqLen: 1 << 24,
} as const;

/**
 * Build a config from raw header integers and check that it is one a transformer can have.
 * `path` names the file for messages.
 */
export function makeConfig(
  path: string,
  raw: {
    dim: number;
    hiddenDim: number;
    nLayers: number;
    nHeads: number;
    nKvHeads: number;
    vocabSize: number;
    seqLen: number;
    sharedClassifier: boolean;
    normEps?: number;
    ropeTheta?: number;
    ropeScaling?: RopeScaling;
  },
): ModelConfig {
  const fields = ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen'] as const;
  for (const f of fields) {
    const v = raw[f];
    if (!Number.isInteger(v) || v <= 0) {
      throw new FileFormatError(path, `header field ${f} is ${v}; expected a positive integer (is this a llama2.c checkpoint?)`);
    }
    const limit = f === 'nKvHeads' ? CONFIG_LIMITS.nHeads : CONFIG_LIMITS[f];
    if (v > limit) {
      throw new FileFormatError(path, `header field ${f} is ${v}, above the plausible limit ${limit} (is this a llama2.c checkpoint?)`);
    }
  }
  if (raw.dim % raw.nHeads !== 0) {
    throw new FileFormatError(path, `dim ${raw.dim} is not divisible by nHeads ${raw.nHeads}; the header is inconsistent`);
  }
  if (raw.nKvHeads > raw.nHeads || raw.nHeads % raw.nKvHeads !== 0) {
    throw new FileFormatError(
      path,
      `nKvHeads ${raw.nKvHeads} must divide nHeads ${raw.nHeads} (and not exceed it); the header is inconsistent`,
    );
  }
  const headDim = raw.dim / raw.nHeads;
  if (headDim % 2 !== 0) {
    throw new FileFormatError(path, `head size ${headDim} (dim/nHeads) is odd; RoPE needs pairs, so the header is inconsistent`);
  }
  return {
    dim: raw.dim,
    hiddenDim: raw.hiddenDim,
    nLayers: raw.nLayers,
    nHeads: raw.nHeads,
    nKvHeads: raw.nKvHeads,
    vocabSize: raw.vocabSize,
    seqLen: raw.seqLen,
    headDim,
    normEps: raw.normEps ?? 1e-5,
    ropeTheta: raw.ropeTheta ?? 10000,
    sharedClassifier: raw.sharedClassifier,
    ...(raw.ropeScaling ? { ropeScaling: raw.ropeScaling } : {}),
  };
}

/** Width of the key/value projections: nKvHeads * headDim. */
export function kvDim(c: ModelConfig): number {
  return c.nKvHeads * c.headDim;
}

/** Bytes of one layer's KV cache (keys and values) for `maxSeqLen` positions, `elementBytes` per value. */
export function layerKvBytes(c: ModelConfig, maxSeqLen: number = c.seqLen, elementBytes = 4): number {
  return 2 * maxSeqLen * kvDim(c) * elementBytes;
}

/** Number of weights (parameters) of a model with this config. */
export function parameterCount(c: ModelConfig): number {
  const kv = kvDim(c);
  const perLayer = 2 * c.dim + c.dim * c.dim * 2 + c.dim * kv * 2 + 3 * c.dim * c.hiddenDim;
  return c.vocabSize * c.dim * (c.sharedClassifier ? 1 : 2) + c.nLayers * perLayer + c.dim;
}
