/**
 * Meta's checkpoint directories (meta-llama/llama `Llama.build`): `params.json` and
 * `consolidated.00.pth` … `consolidated.NN.pth`, one per model-parallel rank.
 *
 * params.json: { dim, n_layers, n_heads, n_kv_heads?, vocab_size (-1 = take it from the tokenizer),
 *   multiple_of, ffn_dim_multiplier?, norm_eps, rope_theta? }. The feed-forward width is derived as
 *   Meta's `model.py` does: h = int(2 * 4 * dim / 3); h = int(ffn_dim_multiplier * h) when given;
 *   then rounded up to a multiple of multiple_of.
 *
 * Tensor names (linear weights are [out, in]):
 *   tok_embeddings.weight [vocab, dim]           output.weight [vocab, dim]       norm.weight [dim]
 *   layers.{i}.attention.{wq,wk,wv,wo}.weight    layers.{i}.feed_forward.{w1,w2,w3}.weight
 *   layers.{i}.attention_norm.weight             layers.{i}.ffn_norm.weight       rope.freqs (unused)
 *
 * Model parallelism: with N shards, fairscale split each tensor across ranks along one dim —
 *   tok_embeddings (ParallelEmbedding) along dim 1; wq, wk, wv, w1, w3 and output (ColumnParallel)
 *   along dim 0; wo and w2 (RowParallel) along dim 1; norms are whole on every rank. Loading joins
 *   the pieces back in rank order, one tensor at a time.
 *
 * Dtypes: float32 stays float32; bfloat16 (Meta's released weights) and float16 stay 16-bit in
 * memory and are widened to float32 inside the matrix products; norms are converted to float32.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostPlacement, type Placement } from '../model/placement.js';
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { layerKvBytes, makeConfig, type ModelConfig } from '../model/config.js';
import { f32Matrix, half16Matrix, quantizeMatrix, toF32, type LoadQuantization, type Matrix } from '../model/tensor.js';
import type { LayerWeights, Model } from '../model/weights.js';
import { openPth, type PthFile } from './pth.js';
import { readJsonObjectFile } from '../io/json.js';

export interface MetaParams {
  dim: number;
  n_layers: number;
  n_heads: number;
  n_kv_heads?: number | null;
  vocab_size: number;
  multiple_of: number;
  ffn_dim_multiplier?: number | null;
  norm_eps: number;
  rope_theta?: number;
}

/** Is `dir` a Meta checkpoint directory (has params.json)? */
export function isMetaCheckpointDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'params.json'));
}

/** Read and check params.json. */
export function readMetaParams(dir: string): MetaParams {
  const file = path.join(dir, 'params.json');
  const p = readJsonObjectFile(file, 'no params.json: a Meta checkpoint directory holds params.json and consolidated.*.pth');
  const int = (k: string, required: boolean, dflt?: number): number | undefined => {
    const v = p[k];
    if (v === undefined || v === null) {
      if (required) throw new FileFormatError(file, `missing "${k}" (an integer)`);
      return dflt;
    }
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new FileFormatError(file, `"${k}" must be an integer; found ${JSON.stringify(v)}`);
    return v;
  };
  const num = (k: string, dflt: number | undefined): number | undefined => {
    const v = p[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FileFormatError(file, `"${k}" must be a positive number; found ${JSON.stringify(v)}`);
    return v;
  };
  if (p.use_scaled_rope === true || p.rope_scaling !== undefined) {
    throw new UnsupportedModelError(`${file}: scaled RoPE (Llama 3.1) is not supported yet`);
  }
  const params: MetaParams = {
    dim: int('dim', true)!,
    n_layers: int('n_layers', true)!,
    n_heads: int('n_heads', true)!,
    n_kv_heads: int('n_kv_heads', false) ?? null,
    vocab_size: int('vocab_size', false, -1)!,
    multiple_of: int('multiple_of', false, 256)!,
    ffn_dim_multiplier: num('ffn_dim_multiplier', undefined) ?? null,
    norm_eps: num('norm_eps', 1e-5)!,
    rope_theta: num('rope_theta', 10000)!,
  };
  if (params.multiple_of <= 0) throw new FileFormatError(file, `"multiple_of" must be positive; found ${params.multiple_of}`);
  return params;
}

/** The feed-forward width of Meta's `FeedForward` for these params. */
export function metaHiddenDim(p: MetaParams): number {
  let h = Math.trunc((2 * (4 * p.dim)) / 3);
  if (p.ffn_dim_multiplier != null) h = Math.trunc(p.ffn_dim_multiplier * h);
  return p.multiple_of * Math.ceil(h / p.multiple_of);
}

/** The shard files, in rank order; a gap in the numbering is an error naming the missing file. */
export function metaShards(dir: string): string[] {
  const names = fs.readdirSync(dir).filter((f) => /^consolidated\.\d+\.pth$/.test(f));
  if (names.length === 0) throw new FileFormatError(dir, 'no consolidated.*.pth files: a Meta checkpoint directory holds params.json and consolidated.00.pth …', { code: 'FILE_NOT_FOUND' });
  const ranks = names.map((f) => Number(/\d+/.exec(f)![0])).sort((a, b) => a - b);
  ranks.forEach((r, i) => {
    if (r !== i) throw new FileFormatError(path.join(dir, `consolidated.${String(i).padStart(2, '0')}.pth`), `missing shard: found ${names.length} shards numbered up to ${ranks.at(-1)}`, { code: 'FILE_NOT_FOUND' });
  });
  return ranks.map((r) => path.join(dir, names.find((f) => Number(/\d+/.exec(f)![0]) === r)!));
}

type SplitDim = 0 | 1 | null;

function splitDimOf(name: string): SplitDim {
  if (name === 'tok_embeddings.weight' || /\.(wo|w2)\.weight$/.test(name)) return 1;
  if (name === 'output.weight' || /\.(wq|wk|wv|w1|w3)\.weight$/.test(name)) return 0;
  return null; // norms: the same on every rank
}

const ELEMENT_BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2 };

/**
 * Read a Meta checkpoint directory. `vocabSize` is needed when params.json says -1 (Meta's
 * released files), `maxSeqLen` becomes the config's context (Meta's code takes it from the caller).
 */
export function readMetaCheckpoint(dir: string, opts: { vocabSize?: number; maxSeqLen?: number; quantize?: LoadQuantization; placement?: Placement } = {}): Model {
  const p = readMetaParams(dir);
  const shardPaths = metaShards(dir);
  let vocabSize = p.vocab_size;
  if (vocabSize === -1) {
    if (opts.vocabSize === undefined) throw new FileFormatError(path.join(dir, 'params.json'), 'vocab_size is -1 (take it from the tokenizer), but no tokenizer was given; pass one');
    vocabSize = opts.vocabSize;
  }
  const config: ModelConfig = makeConfig(path.join(dir, 'params.json'), {
    dim: p.dim,
    hiddenDim: metaHiddenDim(p),
    nLayers: p.n_layers,
    nHeads: p.n_heads,
    nKvHeads: p.n_kv_heads ?? p.n_heads,
    vocabSize,
    seqLen: opts.maxSeqLen ?? 2048,
    sharedClassifier: false,
    normEps: p.norm_eps,
    ropeTheta: p.rope_theta ?? 10000,
  });
  const shards: PthFile[] = [];
  try {
    for (const s of shardPaths) shards.push(openPth(s));
    // Each weight goes once into its final place (a tensor at a time passes through a read buffer).
    const placement = opts.quantize ? hostPlacement : (opts.placement ?? hostPlacement);
    const bytesOf = (name: string) => shards.reduce((n, s) => n + (s.tensors.get(name)?.byteLength ?? 0), 0);
    const layerNames = ['attention.wq', 'attention.wk', 'attention.wv', 'attention.wo', 'feed_forward.w1', 'feed_forward.w2', 'feed_forward.w3'];
    placement.plan(
      Array.from({ length: config.nLayers }, (_, i) => layerNames.reduce((n, t) => n + bytesOf(`layers.${i}.${t}.weight`), 0)),
      bytesOf('output.weight'),
      layerKvBytes(config),
    );
    let where: number | 'head' | 'host' = 'host';
    // with opts.quantize each weight is quantized as soon as it is read: one full-precision tensor at a time
    const get = (name: string, rows: number, cols: number): Matrix => {
      const m = joinMatrix(shards, shardPaths, name, rows, cols, (bytes) => placement.alloc(bytes, where));
      return opts.quantize ? quantizeMatrix(m, opts.quantize) : m;
    };
    const getVector = (name: string, n: number): Float32Array => toF32(joinMatrix(shards, shardPaths, name, 1, n));
    const c = config;
    const kv = c.nKvHeads * c.headDim;
    const layers: LayerWeights[] = [];
    for (let i = 0; i < c.nLayers; i++) {
      const pre = `layers.${i}`;
      where = i;
      layers.push({
        attnNorm: getVector(`${pre}.attention_norm.weight`, c.dim),
        wq: get(`${pre}.attention.wq.weight`, c.dim, c.dim),
        wk: get(`${pre}.attention.wk.weight`, kv, c.dim),
        wv: get(`${pre}.attention.wv.weight`, kv, c.dim),
        wo: get(`${pre}.attention.wo.weight`, c.dim, c.dim),
        ffnNorm: getVector(`${pre}.ffn_norm.weight`, c.dim),
        w1: get(`${pre}.feed_forward.w1.weight`, c.hiddenDim, c.dim),
        w2: get(`${pre}.feed_forward.w2.weight`, c.dim, c.hiddenDim),
        w3: get(`${pre}.feed_forward.w3.weight`, c.hiddenDim, c.dim),
      });
    }
    where = 'host';
    const tokenEmbedding = get('tok_embeddings.weight', c.vocabSize, c.dim);
    where = 'head';
    const weights = { tokenEmbedding, layers, finalNorm: getVector('norm.weight', c.dim), classifier: get('output.weight', c.vocabSize, c.dim) };
    const dtype = weights.layers[0]?.wq.type ?? 'f32';
    return { config, weights, source: { path: dir, format: `Meta checkpoint (${shards.length} shard${shards.length > 1 ? 's' : ''}, ${dtype})` } };
  } finally {
    for (const s of shards) s.close();
  }
}

/** Read `name` from every shard and join the pieces along the dim fairscale split it. */
function joinMatrix(shards: PthFile[], paths: string[], name: string, rows: number, cols: number, alloc: (bytes: number) => Uint8Array = (bytes) => new Uint8Array(bytes)): Matrix {
  const n = shards.length;
  const dim = n === 1 ? null : splitDimOf(name);
  const infos = shards.map((s, r) => {
    const info = s.tensors.get(name);
    if (!info) throw new FileFormatError(paths[r]!, `missing tensor ${name}`);
    return info;
  });
  const dtype = infos[0]!.dtype;
  const size = ELEMENT_BYTES[dtype];
  if (size === undefined) throw new UnsupportedModelError(`${paths[0]}: tensor ${name} has dtype ${dtype}; llamats reads F32, BF16 and F16`);
  // the shape each shard must have
  const want = dim === 0 ? [rows / n, cols] : dim === 1 ? [rows, cols / n] : [rows, cols];
  if (!Number.isInteger(want[0]) || !Number.isInteger(want[1])) {
    throw new FileFormatError(paths[0]!, `${name}: the model's shape [${rows}, ${cols}] cannot be split evenly across ${n} shards`);
  }
  infos.forEach((info, r) => {
    const shape = info.shape.length === 1 ? [1, info.shape[0]!] : info.shape;
    if (info.dtype !== dtype) throw new FileFormatError(paths[r]!, `${name} is ${info.dtype} here but ${dtype} in ${paths[0]}; shards must agree`);
    if (shape.length !== 2 || shape[0] !== want[0] || shape[1] !== want[1]) {
      throw new FileFormatError(
        paths[r]!,
        `${name} has shape [${info.shape.join(', ')}], but params.json implies [${want.join(', ')}]${n > 1 ? ` per shard (of ${n})` : ''}; params.json disagrees with the tensors`,
      );
    }
  });
  let bytes: Uint8Array;
  if (dim === null) {
    const read = shards[0]!.read(name);
    bytes = alloc(read.byteLength);
    bytes.set(read);
  } else if (dim === 0) {
    bytes = alloc(rows * cols * size);
    let off = 0;
    shards.forEach((s) => {
      const part = s.read(name);
      bytes.set(part, off);
      off += part.byteLength;
    });
  } else {
    bytes = alloc(rows * cols * size);
    const pieceRow = (cols / n) * size;
    shards.forEach((s, r) => {
      const part = s.read(name);
      for (let i = 0; i < rows; i++) bytes.set(part.subarray(i * pieceRow, (i + 1) * pieceRow), i * cols * size + r * pieceRow);
    });
  }
  if (dtype === 'F32') return f32Matrix(new Float32Array(bytes.buffer, bytes.byteOffset, rows * cols), rows, cols);
  return half16Matrix(dtype === 'BF16' ? 'bf16' : 'f16', new Uint16Array(bytes.buffer, bytes.byteOffset, rows * cols), rows, cols);
}
