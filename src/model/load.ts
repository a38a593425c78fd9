/**
 * `loadModel(path)`: open a checkpoint in any supported format, detected from its first bytes.
 */
import * as fs from 'node:fs';
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { readLlama2cCheckpoint } from '../formats/llama2c.js';
import { statFile } from '../io/file.js';
import type { Model } from './weights.js';

export function loadModel(path: string): Model {
  if (fs.existsSync(path) && fs.statSync(path).isDirectory()) {
    throw new UnsupportedModelError(
      `${path}: is a directory; model directories (Meta params.json + consolidated.*.pth, Hugging Face) are not supported yet — pass a llama2.c .bin checkpoint`,
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
  if (magic === 'GGUF') throw new UnsupportedModelError(`${path}: GGUF models are not supported yet; pass a llama2.c .bin checkpoint`);
  if (magic.startsWith('PK')) {
    throw new UnsupportedModelError(`${path}: PyTorch (.pth/.bin zip) checkpoints are not supported yet; pass a llama2.c .bin checkpoint`);
  }
  if (size === 0) throw new FileFormatError(path, 'the file is empty; expected a model checkpoint');
  return readLlama2cCheckpoint(path);
}
