/**
 * `loadModel(path)`: open a checkpoint in any supported format: a Meta checkpoint directory, or a
 * file whose format is detected from its first bytes.
 */
import * as fs from 'node:fs';
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { readLlama2cCheckpoint } from '../formats/llama2c.js';
import { isMetaCheckpointDir, readMetaCheckpoint } from '../formats/meta.js';
import { isHfModelDir, loadHfModel } from '../formats/hf.js';
import { loadGgufModel } from '../formats/gguf.js';
import { statFile } from '../io/file.js';
import { quantizeMatrix, type LoadQuantization, type Matrix } from './tensor.js';
import type { Model } from './weights.js';
import type { Placement } from './placement.js';
import { weightPlacement } from '../backend/backend.js';

export interface LoadOptions {
  /** For Meta directories whose params.json has vocab_size -1: the tokenizer's vocabulary size. */
  vocabSize?: number;
  /**
   * The context length to plan for (Meta's max_seq_len). Default: the model's own (config.json's
   * max_position_embeddings, GGUF's llama.context_length), 2048 for Meta directories.
   */
  maxSeqLen?: number;
  /**
   * Quantize the weights to llama.cpp's Q8_0 or Q4_0 blocks while loading, tensor by tensor (the
   * full-precision copy of one tensor at a time; a llama2.c file is read whole first).
   */
  quantize?: LoadQuantization;
  /**
   * Where the weights are read into. Default: the memory of the backend that will run them
   * (`weightPlacement()`: the wasm backend's memories unless LLAMATS_BACKEND=ref), so that they
   * are read once into their final place.
   */
  placement?: Placement;
}

export function loadModel(path: string, opts: LoadOptions = {}): Model {
  if (fs.existsSync(path) && fs.statSync(path).isDirectory()) {
    if (isMetaCheckpointDir(path)) return readMetaCheckpoint(path, { ...opts, placement: opts.placement ?? weightPlacement() });
    if (isHfModelDir(path)) return loadHfModel(path, { ...opts, placement: opts.placement ?? weightPlacement() }); // maxSeqLen default: config.json's max_position_embeddings
    throw new UnsupportedModelError(
      `${path}: is a directory without params.json or config.json; llamats reads Meta checkpoint directories (params.json + consolidated.*.pth), Hugging Face directories (config.json + model.safetensors) and llama2.c .bin files`,
    );
  }
  const size = statFile(path);
  const head = Buffer.alloc(Math.min(size, 8));
  const fd = fs.openSync(path, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  const magic = head.subarray(0, 4).toString('latin1');
  if (magic === 'GGUF') return loadGgufModel(path, { ...opts, placement: opts.placement ?? weightPlacement() }); // maxSeqLen default: llama.context_length
  if (magic.startsWith('PK')) {
    throw new UnsupportedModelError(`${path}: a PyTorch zip file on its own; pass the directory that holds it with params.json (Meta) or config.json (Hugging Face)`);
  }
  if (size >= 8 && head.readBigUInt64LE(0) < BigInt(size) && path.endsWith('.safetensors')) {
    throw new UnsupportedModelError(`${path}: a safetensors file on its own; pass the directory that holds it with config.json`);
  }
  if (size === 0) throw new FileFormatError(path, 'the file is empty; expected a model checkpoint');
  const model = readLlama2cCheckpoint(path, opts.quantize ? undefined : (opts.placement ?? weightPlacement()));
  return opts.quantize ? quantizeModel(model, opts.quantize) : model;
}

/** Every weight matrix of `model` quantized (the classifier stays tied when it was). */
function quantizeModel(model: Model, type: LoadQuantization): Model {
  const w = model.weights;
  const q = (m: Matrix) => quantizeMatrix(m, type);
  const tokenEmbedding = q(w.tokenEmbedding);
  return {
    ...model,
    weights: {
      tokenEmbedding,
      layers: w.layers.map((l) => ({ ...l, wq: q(l.wq), wk: q(l.wk), wv: q(l.wv), wo: q(l.wo), w1: q(l.w1), w2: q(l.w2), w3: q(l.w3) })),
      finalNorm: w.finalNorm,
      classifier: w.classifier === w.tokenEmbedding ? tokenEmbedding : q(w.classifier),
    },
  };
}
