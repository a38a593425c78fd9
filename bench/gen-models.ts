/**
 * Random-weight benchmark models with real shapes (bench/shapes.ts), written into bench/models/:
 *   - llama2.c (version 0) checkpoints: `ensureModel(name)` (the stories shapes);
 *   - GGUF files in F32 / F16 / Q8_0 / Q4_0 with a 32000-token SentencePiece vocabulary, which
 *     both llamats and llama.cpp run: `ensureGguf(name, type)`. Tensors are made one at a time
 *     (random float32, then quantized row by row with the reference quantizers), so even the
 *     Llama-2-7B shape never holds more than one tensor in memory.
 * Usage: node dist/bench/gen-models.js [name ...]   (default: the llama2.c checkpoints)
 * Existing files are kept. Weights are uniform in ±0.05 from a seeded xorshift32 stream.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomModel, Tokenizer, writeLlama2cCheckpoint } from '../src/index.js';
import { ggmlTypeId, llamaGgufMetadata, writeGguf, type GgufTensor, type GgufValue } from '../src/formats/gguf.js';
import { tokenizerGgufMetadata } from '../src/formats/gguf-vocab.js';
import { GGML_TYPE, f32ToF16, ggmlRowBytes, quantizeRow } from '../src/quant/ggml.js';
import type { ModelConfig } from '../src/model/config.js';
import { SHAPES } from './shapes.js';

export const MODELS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/models');
const SHARED = process.env.LLAMATS_SHARED ?? path.resolve(MODELS_DIR, '../../../shared');

/** Path of the random llama2.c checkpoint for `name`, written first if missing. */
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

/** The context length the bench's GGUF files record: at least 1024, so a 512-token prompt fits. */
export const BENCH_CONTEXT = 1024;

/** Path of the random GGUF file for shape `name` and weight type `type` (F32, F16, Q8_0, Q4_0), written first if missing. */
export function ensureGguf(name: string, type: string): string {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown shape ${name}; known: ${Object.keys(SHAPES).join(', ')}`);
  const file = path.join(MODELS_DIR, `${name}-random-${type.toLowerCase()}.gguf`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(MODELS_DIR, { recursive: true });
  const t0 = performance.now();
  const config: ModelConfig = { ...shape, seqLen: Math.max(shape.seqLen, BENCH_CONTEXT), headDim: shape.dim / shape.nHeads, normEps: 1e-5, ropeTheta: 10000 };
  const metadata = llamaGgufMetadata(config, type);
  for (const [k, v] of vocabularyMetadata()) metadata.set(k, v);
  writeGguf(file, { metadata, tensors: randomTensors(config, ggmlTypeId(type)) });
  console.error(`wrote ${file} (${(fs.statSync(file).size / 1e6).toFixed(1)} MB) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return file;
}

let vocab: Map<string, GgufValue> | undefined;
/** llama.cpp needs a vocabulary to load a file: Llama 2's tokenizer.model from ../shared. */
function vocabularyMetadata(): Map<string, GgufValue> {
  const tok = path.join(SHARED, 'models/tokenizer.model');
  if (!fs.existsSync(tok)) throw new Error(`${tok} is missing: the bench's GGUF files embed Llama 2's 32000-token vocabulary (set LLAMATS_SHARED)`);
  return (vocab ??= tokenizerGgufMetadata(Tokenizer.load(tok)));
}

/** The tensors of a llama model as llama.cpp names them, each made (random) when it is written. */
function randomTensors(c: ModelConfig, type: number): GgufTensor[] {
  let seed = 1234;
  const kv = c.nKvHeads * c.headDim;
  const matrix = (name: string, rows: number, cols: number): GgufTensor => {
    const s = seed++;
    return { name, dims: [cols, rows], type, data: () => randomMatrixBytes(rows, cols, type, s) };
  };
  const norm = (name: string): GgufTensor => {
    const s = seed++;
    return { name, dims: [c.dim], type: GGML_TYPE.F32, data: () => new Uint8Array(randomFloats(c.dim, s, 0.5, 1).buffer) };
  };
  const tensors = [matrix('token_embd.weight', c.vocabSize, c.dim), norm('output_norm.weight')];
  if (!c.sharedClassifier) tensors.push(matrix('output.weight', c.vocabSize, c.dim));
  for (let l = 0; l < c.nLayers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      matrix(`${p}attn_q.weight`, c.dim, c.dim), matrix(`${p}attn_k.weight`, kv, c.dim),
      matrix(`${p}attn_v.weight`, kv, c.dim), matrix(`${p}attn_output.weight`, c.dim, c.dim), norm(`${p}attn_norm.weight`),
      matrix(`${p}ffn_gate.weight`, c.hiddenDim, c.dim), matrix(`${p}ffn_down.weight`, c.dim, c.hiddenDim),
      matrix(`${p}ffn_up.weight`, c.hiddenDim, c.dim), norm(`${p}ffn_norm.weight`),
    );
  }
  return tensors;
}

function randomFloats(n: number, seed: number, lo: number, width: number): Float32Array {
  let s = seed >>> 0 || 1;
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    a[i] = lo + (s / 4294967296) * width;
  }
  return a;
}

function randomMatrixBytes(rows: number, cols: number, type: number, seed: number): Uint8Array {
  // Quantized and F16 matrices of the big shapes are made straight in their encoding (random
  // codes, a fixed scale): quantizing billions of floats in JS would take most of an hour, and
  // speed does not depend on the values. Their weights are uniform-like in about ±0.05 too.
  if (rows * cols >= 2 ** 22 && (type === GGML_TYPE.Q8_0 || type === GGML_TYPE.Q4_0 || type === GGML_TYPE.F16)) return randomCodes(rows, cols, type, seed);
  const v = randomFloats(rows * cols, seed, -0.05, 0.1);
  if (type === GGML_TYPE.F32) return new Uint8Array(v.buffer);
  if (type === GGML_TYPE.F16) return new Uint8Array(Uint16Array.from(v, f32ToF16).buffer);
  const rowBytes = ggmlRowBytes(type, cols);
  const out = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) out.set(quantizeRow(type, v.subarray(r * cols, (r + 1) * cols), cols), r * rowBytes);
  return out;
}

/** Random codes in the type's own encoding: F16 halves in ±[0.031, 0.0625), Q8_0 / Q4_0 blocks with scale 0.05/127 or 0.05/8. */
function randomCodes(rows: number, cols: number, type: number, seed: number): Uint8Array {
  const rowBytes = ggmlRowBytes(type, cols);
  const out = new Uint8Array(rows * rowBytes);
  const words = new Uint32Array(out.buffer, 0, out.byteLength >>> 2);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    words[i] = s;
  }
  if (type === GGML_TYPE.F16) {
    const h = new Uint16Array(out.buffer);
    for (let i = 0; i < h.length; i++) h[i] = (h[i]! & 0x83ff) | 0x2800; // sign, mantissa random; exponent of 2^-5
    return out;
  }
  const scale = f32ToF16(type === GGML_TYPE.Q8_0 ? 0.05 / 127 : 0.05 / 8);
  const block = type === GGML_TYPE.Q8_0 ? 34 : 18;
  for (let b = 0; b < out.byteLength; b += block) (out[b] = scale & 0xff), (out[b + 1] = scale >>> 8);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const names = process.argv.slice(2);
  for (const n of names.length ? names : ['stories15M', 'stories110M']) console.log(ensureModel(n));
}
