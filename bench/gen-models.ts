/**
 * Write random-weight llama2.c (version 0) checkpoints with real model shapes into bench/models/.
 * Usage: node dist/bench/gen-models.js [name ...]   (default: every shape in shapes.ts)
 * Existing files are kept. Weights come from randomModel (src/model/random.ts) with a fixed seed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomModel, writeLlama2cCheckpoint } from '../src/index.js';
import { SHAPES } from './shapes.js';

export const MODELS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/models');

/** Path of the random checkpoint for `name`, written first if missing. */
export function ensureModel(name: string): string {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape ${name}; known: ${Object.keys(SHAPES).join(', ')}`);
  const file = path.join(MODELS_DIR, `${name}-random.bin`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(MODELS_DIR, { recursive: true });
    const t0 = performance.now();
    writeLlama2cCheckpoint(file, randomModel(shape, 1234), { version: 0 });
    console.error(`wrote ${file} (${(fs.statSync(file).size / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return file;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const names = process.argv.slice(2);
  for (const n of names.length ? names : Object.keys(SHAPES)) console.log(ensureModel(n));
}
