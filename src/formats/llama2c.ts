/**
 * llama2.c checkpoints (karpathy/llama2.c `export.py`), read and written.
 *
 * All integers and floats are little-endian. `L` = nLayers, `kv` = nKvHeads * headDim.
 *
 * Version 0 ("legacy", what `run.c` reads; stories15M.bin, stories260K.bin):
 *   header  7 x int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *           (28 bytes; a negative vocab_size means the classifier is stored separately)
 *   float32 token_embedding (vocab, dim)
 *           rms_att (L, dim), wq (L, dim, dim), wk (L, kv, dim), wv (L, kv, dim), wo (L, dim, dim)
 *           rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden), w3 (L, hidden, dim)
 *           rms_final (dim)
 *           freq_cis_real, freq_cis_imag (seq_len, head_dim / 2) each — unused, RoPE is computed
 *           wcls (vocab, dim) only when vocab_size was negative
 *
 * Version 1 (fp32) and version 2 (int8) share a 256-byte header, zero-padded:
 *   uint32 magic 0x616b3432 ("ak42"), int32 version, the 7 int32 above (vocab_size positive),
 *   uint8 shared_classifier, and for version 2 only int32 group_size.
 * Version 1 body, float32: rms_att (L, dim), rms_ffn (L, dim), rms_final (dim), token_embedding,
 *   wq, wk, wv, wo, w1, w2, w3 (each (L, rows, cols) as above), then wcls unless shared.
 * Version 2 body: the three norms as float32 as in version 1; then token_embedding, wq[0..L),
 *   wk[..], wv[..], wo[..], w1[..], w2[..], w3[..], and wcls unless shared, each tensor written as
 *   its int8 values followed by its float32 scales, one scale per `group_size` consecutive values
 *   (symmetric: w = q * scale). `runq.c` computes with this layout; group_size must divide dim and
 *   hidden_dim so that no group straddles two rows.
 */
import * as fs from 'node:fs';
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { ByteReader, readFileBytes, statFile } from '../io/file.js';
import { hostPlacement, type Placement } from '../model/placement.js';
import { makeConfig, kvDim, type ModelConfig } from '../model/config.js';
import { f32Matrix, q8Matrix, quantizeQ8, toF32, type Matrix } from '../model/tensor.js';
import type { LayerWeights, Model, ModelWeights } from '../model/weights.js';

export const LLAMA2C_MAGIC = 0x616b3432;
const V0_HEADER_BYTES = 28;
const V12_HEADER_BYTES = 256;

/** Read a llama2.c checkpoint of any version. Throws FileFormatError / UnsupportedModelError. */
/**
 * Read a llama2.c checkpoint. Its matrices are views of the file's bytes, read once into
 * `placement` (the weights' final place: see src/model/placement.ts) as one block.
 */
export function readLlama2cCheckpoint(path: string, placement: Placement = hostPlacement): Model {
  const bytes = readFileBytes(path, (size) => {
    placement.plan([], size, 0);
    return placement.alloc(size, 'head');
  });
  return parseLlama2cCheckpoint(bytes, path);
}

/** The header of a llama2.c checkpoint, read without the weights (for `llamats inspect`). */
export function readLlama2cHeader(path: string): { version: 0 | 1 | 2; config: ModelConfig; groupSize?: number; fileSize: number } {
  const fileSize = statFile(path);
  const head = new Uint8Array(Math.min(fileSize, V12_HEADER_BYTES));
  const fd = fs.openSync(path, 'r');
  try {
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (fileSize < V0_HEADER_BYTES) throw new FileFormatError(path, `the file has ${fileSize} bytes; a llama2.c checkpoint has a header of at least 28 bytes`);
  const r = new ByteReader(head, path);
  if (r.u32('magic') !== LLAMA2C_MAGIC) {
    r.offset = 0;
    const h = readHeaderInts(r);
    return { version: 0, fileSize, config: makeConfig(path, { ...h, vocabSize: Math.abs(h.vocabSize), sharedClassifier: h.vocabSize > 0 }) };
  }
  const version = r.i32('version');
  if (version !== 1 && version !== 2) throw new UnsupportedModelError(`${path}: llama2.c checkpoint version ${version} is not supported; llamats reads versions 0, 1 (float32) and 2 (int8)`);
  const h = readHeaderInts(r);
  const config = makeConfig(path, { ...h, sharedClassifier: r.u8('shared_classifier') === 1 });
  return version === 2 ? { version, fileSize, config, groupSize: r.i32('group_size') } : { version, fileSize, config };
}

export function parseLlama2cCheckpoint(bytes: Uint8Array, path: string): Model {
  if (bytes.byteLength === 0) throw new FileFormatError(path, 'the file is empty; expected a llama2.c checkpoint');
  const r = new ByteReader(bytes, path);
  if (bytes.byteLength < V0_HEADER_BYTES) {
    throw new FileFormatError(path, `the file has ${bytes.byteLength} bytes; a llama2.c checkpoint has a header of at least 28 bytes`);
  }
  const magic = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  if (magic === LLAMA2C_MAGIC) return parseVersioned(r);
  return parseV0(r);
}

function readHeaderInts(r: ByteReader) {
  return {
    dim: r.i32('dim'),
    hiddenDim: r.i32('hidden_dim'),
    nLayers: r.i32('n_layers'),
    nHeads: r.i32('n_heads'),
    nKvHeads: r.i32('n_kv_heads'),
    vocabSize: r.i32('vocab_size'),
    seqLen: r.i32('seq_len'),
  };
}

/** Number of float32 values in the matrices of all layers, in file order. */
function layerMatrixShapes(c: ModelConfig): Array<[name: keyof LayerWeights, rows: number, cols: number]> {
  const kv = kvDim(c);
  return [
    ['wq', c.dim, c.dim],
    ['wk', kv, c.dim],
    ['wv', kv, c.dim],
    ['wo', c.dim, c.dim],
    ['w1', c.hiddenDim, c.dim],
    ['w2', c.dim, c.hiddenDim],
    ['w3', c.hiddenDim, c.dim],
  ];
}

function checkSize(r: ByteReader, expected: number, c: ModelConfig, what: string): void {
  const found = r.bytes.byteLength;
  if (found !== expected) {
    const desc = `dim ${c.dim}, hidden_dim ${c.hiddenDim}, n_layers ${c.nLayers}, n_heads ${c.nHeads}, n_kv_heads ${c.nKvHeads}, vocab_size ${c.vocabSize}, seq_len ${c.seqLen}`;
    throw new FileFormatError(
      r.path,
      `${what} header (${desc}) implies ${expected} bytes, but the file has ${found}` +
        (found < expected ? ' (truncated?)' : ' (trailing data?)') +
        '; the file is not a consistent llama2.c checkpoint',
    );
  }
}

function parseV0(r: ByteReader): Model {
  const h = readHeaderInts(r);
  const shared = h.vocabSize > 0;
  const c = makeConfig(r.path, { ...h, vocabSize: Math.abs(h.vocabSize), sharedClassifier: shared });
  const kv = kvDim(c);
  const L = c.nLayers;
  const floats =
    c.vocabSize * c.dim +
    L * (2 * c.dim + 2 * c.dim * c.dim + 2 * kv * c.dim + 3 * c.hiddenDim * c.dim) +
    c.dim +
    c.seqLen * c.headDim +
    (shared ? 0 : c.vocabSize * c.dim);
  checkSize(r, V0_HEADER_BYTES + 4 * floats, c, 'the version-0');

  const tokenEmbedding = f32Matrix(r.f32Array(c.vocabSize * c.dim, 'token_embedding'), c.vocabSize, c.dim);
  const attnNorm = r.f32Array(L * c.dim, 'rms_att');
  const stacked: Partial<Record<keyof LayerWeights, Float32Array>> = {};
  for (const [name, rows, cols] of layerMatrixShapes(c).slice(0, 4)) stacked[name] = r.f32Array(L * rows * cols, name);
  const ffnNorm = r.f32Array(L * c.dim, 'rms_ffn');
  for (const [name, rows, cols] of layerMatrixShapes(c).slice(4)) stacked[name] = r.f32Array(L * rows * cols, name);
  const finalNorm = r.f32Array(c.dim, 'rms_final');
  r.f32Array(c.seqLen * c.headDim, 'freq_cis (unused)');
  const classifier = shared ? tokenEmbedding : f32Matrix(r.f32Array(c.vocabSize * c.dim, 'wcls'), c.vocabSize, c.dim);
  return {
    config: c,
    weights: assembleF32(c, tokenEmbedding, attnNorm, ffnNorm, stacked, finalNorm, classifier),
    source: { path: r.path, format: 'llama2.c v0 (float32)' },
  };
}

function assembleF32(
  c: ModelConfig,
  tokenEmbedding: Matrix,
  attnNorm: Float32Array,
  ffnNorm: Float32Array,
  stacked: Partial<Record<keyof LayerWeights, Float32Array>>,
  finalNorm: Float32Array,
  classifier: Matrix,
): ModelWeights {
  const shapes = layerMatrixShapes(c);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const m: Record<string, Matrix> = {};
    for (const [name, rows, cols] of shapes) {
      m[name] = f32Matrix(stacked[name]!.subarray(l * rows * cols, (l + 1) * rows * cols), rows, cols);
    }
    layers.push({
      attnNorm: attnNorm.subarray(l * c.dim, (l + 1) * c.dim),
      ffnNorm: ffnNorm.subarray(l * c.dim, (l + 1) * c.dim),
      wq: m.wq!, wk: m.wk!, wv: m.wv!, wo: m.wo!, w1: m.w1!, w2: m.w2!, w3: m.w3!,
    });
  }
  return { tokenEmbedding, layers, finalNorm, classifier };
}

function parseVersioned(r: ByteReader): Model {
  r.need(V12_HEADER_BYTES, 'the 256-byte header');
  r.u32('magic');
  const version = r.i32('version');
  if (version !== 1 && version !== 2) {
    throw new UnsupportedModelError(
      `${r.path}: llama2.c checkpoint version ${version} is not supported; llamats reads versions 0, 1 (float32) and 2 (int8)`,
    );
  }
  const h = readHeaderInts(r);
  const sharedByte = r.u8('shared_classifier');
  if (sharedByte > 1) throw new FileFormatError(r.path, `shared_classifier is ${sharedByte}; expected 0 or 1`);
  const c = makeConfig(r.path, { ...h, sharedClassifier: sharedByte === 1 });
  const groupSize = version === 2 ? r.i32('group_size') : 0;
  const L = c.nLayers;
  const shapes = layerMatrixShapes(c);
  const normFloats = 2 * L * c.dim + c.dim;

  if (version === 1) {
    const floats =
      normFloats + c.vocabSize * c.dim + L * shapes.reduce((a, [, rows, cols]) => a + rows * cols, 0) + (c.sharedClassifier ? 0 : c.vocabSize * c.dim);
    checkSize(r, V12_HEADER_BYTES + 4 * floats, c, 'the version-1');
    r.offset = V12_HEADER_BYTES;
    const attnNorm = r.f32Array(L * c.dim, 'rms_att');
    const ffnNorm = r.f32Array(L * c.dim, 'rms_ffn');
    const finalNorm = r.f32Array(c.dim, 'rms_final');
    const tokenEmbedding = f32Matrix(r.f32Array(c.vocabSize * c.dim, 'token_embedding'), c.vocabSize, c.dim);
    const stacked: Partial<Record<keyof LayerWeights, Float32Array>> = {};
    for (const [name, rows, cols] of shapes) stacked[name] = r.f32Array(L * rows * cols, name);
    const classifier = c.sharedClassifier ? tokenEmbedding : f32Matrix(r.f32Array(c.vocabSize * c.dim, 'wcls'), c.vocabSize, c.dim);
    return {
      config: c,
      weights: assembleF32(c, tokenEmbedding, attnNorm, ffnNorm, stacked, finalNorm, classifier),
      source: { path: r.path, format: 'llama2.c v1 (float32)' },
    };
  }

  // version 2: int8 groups
  if (groupSize <= 0 || c.dim % groupSize !== 0 || c.hiddenDim % groupSize !== 0) {
    throw new FileFormatError(
      r.path,
      `group_size ${groupSize} must be positive and divide dim ${c.dim} and hidden_dim ${c.hiddenDim}; re-export with a group size that divides both`,
    );
  }
  const qBytes = (n: number) => n + (4 * n) / groupSize;
  const bytes =
    V12_HEADER_BYTES +
    4 * normFloats +
    qBytes(c.vocabSize * c.dim) +
    L * shapes.reduce((a, [, rows, cols]) => a + qBytes(rows * cols), 0) +
    (c.sharedClassifier ? 0 : qBytes(c.vocabSize * c.dim));
  checkSize(r, bytes, c, `the version-2 (group_size ${groupSize})`);
  r.offset = V12_HEADER_BYTES;
  const attnNorm = r.f32Array(L * c.dim, 'rms_att');
  const ffnNorm = r.f32Array(L * c.dim, 'rms_ffn');
  const finalNorm = r.f32Array(c.dim, 'rms_final');
  const readQ = (rows: number, cols: number, what: string) => {
    const q = r.i8Array(rows * cols, what);
    const s = r.f32Array((rows * cols) / groupSize, `${what} scales`);
    return q8Matrix(q, s, rows, cols, groupSize);
  };
  const tokenEmbedding = readQ(c.vocabSize, c.dim, 'token_embedding');
  const perLayer: Record<string, Matrix[]> = {};
  for (const [name, rows, cols] of shapes) {
    perLayer[name] = [];
    for (let l = 0; l < L; l++) perLayer[name]!.push(readQ(rows, cols, `${name}[${l}]`));
  }
  const classifier = c.sharedClassifier ? tokenEmbedding : readQ(c.vocabSize, c.dim, 'wcls');
  const layers: LayerWeights[] = [];
  for (let l = 0; l < L; l++) {
    layers.push({
      attnNorm: attnNorm.subarray(l * c.dim, (l + 1) * c.dim),
      ffnNorm: ffnNorm.subarray(l * c.dim, (l + 1) * c.dim),
      wq: perLayer.wq![l]!, wk: perLayer.wk![l]!, wv: perLayer.wv![l]!, wo: perLayer.wo![l]!,
      w1: perLayer.w1![l]!, w2: perLayer.w2![l]!, w3: perLayer.w3![l]!,
    });
  }
  return {
    config: c,
    weights: { tokenEmbedding, layers, finalNorm, classifier },
    source: { path: r.path, format: `llama2.c v2 (int8, group size ${groupSize})` },
  };
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface WriteLlama2cOptions {
  /** 0 (legacy float32, what run.c reads), 1 (float32) or 2 (int8 groups, what runq.c reads). */
  readonly version: 0 | 1 | 2;
  /** Version 2 only: values per scale. Default: the largest power of two ≤ 64 dividing dim and hidden_dim. */
  readonly groupSize?: number;
}

/** The group size `export.py` would pick, but also dividing hidden_dim so that groups stay in their row. */
export function defaultGroupSize(c: ModelConfig): number {
  let gs = 64;
  while (gs > 1 && (c.dim % gs !== 0 || c.hiddenDim % gs !== 0)) gs /= 2;
  return gs;
}

/**
 * Write `model` as a llama2.c checkpoint. The file appears complete or not at all: it is written
 * to a temporary name beside `path` and renamed when done.
 */
export function writeLlama2cCheckpoint(path: string, model: Pick<Model, 'config' | 'weights'>, opts: WriteLlama2cOptions): void {
  const c = model.config;
  const w = model.weights;
  const gs = opts.groupSize ?? defaultGroupSize(c);
  if (opts.version === 2 && (gs <= 0 || c.dim % gs !== 0 || c.hiddenDim % gs !== 0)) {
    throw new FileFormatError(path, `group size ${gs} must divide dim ${c.dim} and hidden_dim ${c.hiddenDim}`);
  }
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    const put = (a: ArrayBufferView) => {
      const u8 = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
      let off = 0;
      while (off < u8.byteLength) off += fs.writeSync(fd, u8, off, Math.min(u8.byteLength - off, 1 << 26));
    };
    const header = new DataView(new ArrayBuffer(opts.version === 0 ? V0_HEADER_BYTES : V12_HEADER_BYTES));
    let o = 0;
    if (opts.version !== 0) {
      header.setUint32(o, LLAMA2C_MAGIC, true); o += 4;
      header.setInt32(o, opts.version, true); o += 4;
    }
    const vocabField = opts.version === 0 && !c.sharedClassifier ? -c.vocabSize : c.vocabSize;
    for (const v of [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, vocabField, c.seqLen]) {
      header.setInt32(o, v, true); o += 4;
    }
    if (opts.version !== 0) {
      header.setUint8(o, c.sharedClassifier ? 1 : 0); o += 1;
      if (opts.version === 2) header.setInt32(o, gs, true);
    }
    put(header);

    const f32 = (m: Matrix) => toF32(m);
    const allLayers = (name: keyof LayerWeights) => w.layers.map((l) => l[name] as Matrix);
    const mats = ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as const;
    if (opts.version === 0) {
      put(f32(w.tokenEmbedding));
      for (const l of w.layers) put(l.attnNorm);
      for (const name of mats.slice(0, 4)) for (const m of allLayers(name)) put(f32(m));
      for (const l of w.layers) put(l.ffnNorm);
      for (const name of mats.slice(4)) for (const m of allLayers(name)) put(f32(m));
      put(w.finalNorm);
      put(freqCis(c));
      if (!c.sharedClassifier) put(f32(w.classifier));
    } else {
      for (const l of w.layers) put(l.attnNorm);
      for (const l of w.layers) put(l.ffnNorm);
      put(w.finalNorm);
      const emit = opts.version === 1 ? (m: Matrix) => put(f32(m)) : (m: Matrix) => {
        const { q, s } = quantizeQ8(f32(m), gs);
        put(q);
        put(s);
      };
      emit(w.tokenEmbedding);
      for (const name of mats) for (const m of allLayers(name)) emit(m);
      if (!c.sharedClassifier) emit(w.classifier);
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, path);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** The unused freq_cis tables of version 0, filled as export.py filled them (cos, then sin). */
function freqCis(c: ModelConfig): Float32Array {
  const half = c.headDim / 2;
  const out = new Float32Array(c.seqLen * c.headDim);
  for (let p = 0; p < c.seqLen; p++) {
    for (let i = 0; i < half; i++) {
      const f = p / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
      out[p * half + i] = Math.cos(f);
      out[c.seqLen * half + p * half + i] = Math.sin(f);
    }
  }
  return out;
}
