/**
 * Write random-weight llama2.c (version 0) checkpoints with real model shapes into bench/models/.
 * Usage: node dist/bench/gen-models.js [name ...]   (default: every shape in shapes.ts)
 * Existing files are kept. Weights are uniform in ±0.05 from a fixed seed; norms are 1.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeLlama2cCheckpoint, type ModelConfig, type ModelWeights } from '../src/index.js';
import { f32Matrix } from '../src/model/tensor.js';
import { SHAPES, type Shape } from './shapes.js';

export const MODELS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/models');

function randomWeights(shape: Shape, seed: number): { config: ModelConfig; weights: ModelWeights } {
  const config: ModelConfig = { ...shape, headDim: shape.dim / shape.nHeads, normEps: 1e-5, ropeTheta: 10000 };
  let s = seed >>> 0;
  const fill = (n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; // xorshift32
      a[i] = (s / 4294967296 - 0.5) * 0.1;
    }
    return a;
  };
  const c = config;
  const kv = c.nKvHeads * c.headDim;
  const mat = (rows: number, cols: number) => f32Matrix(fill(rows * cols), rows, cols);
  const ones = () => new Float32Array(c.dim).fill(1);
  const tokenEmbedding = mat(c.vocabSize, c.dim);
  return {
    config,
    weights: {
      tokenEmbedding,
      layers: Array.from({ length: c.nLayers }, () => ({
        attnNorm: ones(), wq: mat(c.dim, c.dim), wk: mat(kv, c.dim), wv: mat(kv, c.dim), wo: mat(c.dim, c.dim),
        ffnNorm: ones(), w1: mat(c.hiddenDim, c.dim), w2: mat(c.dim, c.hiddenDim), w3: mat(c.hiddenDim, c.dim),
      })),
      finalNorm: ones(),
      classifier: c.sharedClassifier ? tokenEmbedding : mat(c.vocabSize, c.dim),
    },
  };
}

/** Path of the random checkpoint for `name`, written first if missing. */
export function ensureModel(name: string): string {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape ${name}; known: ${Object.keys(SHAPES).join(', ')}`);
  const file = path.join(MODELS_DIR, `${name}-random.bin`);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(MODELS_DIR, { recursive: true });
    const t0 = performance.now();
    writeLlama2cCheckpoint(file, randomWeights(shape, 1234), { version: 0 });
    console.error(`wrote ${file} (${(fs.statSync(file).size / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  return file;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const names = process.argv.slice(2);
  for (const n of names.length ? names : Object.keys(SHAPES)) console.log(ensureModel(n));
}
