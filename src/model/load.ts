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
import type { Model } from './weights.js';

export interface LoadOptions {
  /** For Meta directories whose params.json has vocab_size -1: the tokenizer's vocabulary size. */
  vocabSize?: number;
  /**
   * The context length to plan for (Meta's max_seq_len). Default: the model's own (config.json's
   * max_position_embeddings, GGUF's llama.context_length), 2048 for Meta directories.
   */
  maxSeqLen?: number;
}

export function loadModel(path: string, opts: LoadOptions = {}): Model {
  if (fs.existsSync(path) && fs.statSync(path).isDirectory()) {
    if (isMetaCheckpointDir(path)) return readMetaCheckpoint(path, opts);
    if (isHfModelDir(path)) return loadHfModel(path, opts); // maxSeqLen default: config.json's max_position_embeddings
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
  if (magic === 'GGUF') return loadGgufModel(path, opts); // maxSeqLen default: llama.context_length
  if (magic.startsWith('PK')) {
    throw new UnsupportedModelError(`${path}: PyTorch (.pth/.bin zip) checkpoints are not supported yet; pass a llama2.c .bin checkpoint`);
  }
  if (size === 0) throw new FileFormatError(path, 'the file is empty; expected a model checkpoint');
  return readLlama2cCheckpoint(path);
}
