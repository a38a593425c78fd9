import { dequantizeRow, ggmlRowBytes, GGML_TYPE, quantizeRow } from '../quant/ggml.js';

/**
 * Weight matrices as they sit in memory. A matrix has `rows` outputs and `cols` inputs and is
 * stored row-major, so `out = W @ x` reads each row once (the layout of every LLaMA checkpoint).
 *
 * - `f32`: one float32 per weight.
 * - `bf16` / `f16`: one 16-bit float per weight (Meta's released checkpoints are bf16), kept as
 *   16-bit in memory and widened to float32 as they are read.
 * - `ggml`: one of llama.cpp's block layouts (Q8_0, Q4_0, Q4_K, …) as stored in GGUF files.
 * - `q8`: llama2.c's version-2 layout (and what runq.c computes with): symmetric int8 in groups of
 *   `groupSize` consecutive weights of a row, each group with one float32 scale:
 *   w[i] ≈ q[i] * s[i / groupSize]. `groupSize` divides `cols`, so no group straddles two rows.
 */
export interface F32Matrix {
  readonly type: 'f32';
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array; // (rows, cols)
}

export interface Q8Matrix {
  readonly type: 'q8';
  readonly rows: number;
  readonly cols: number;
  readonly groupSize: number;
  readonly q: Int8Array; // (rows, cols)
  readonly s: Float32Array; // (rows * cols / groupSize)
}

export interface Half16Matrix {
  readonly type: 'bf16' | 'f16';
  readonly rows: number;
  readonly cols: number;
  readonly data: Uint16Array; // (rows, cols) raw 16-bit patterns
}

/**
 * A matrix in one of ggml's block layouts (from GGUF files): each row is `cols / blockSize` blocks,
 * kept as they are in the file; rows are dequantized as they are read (src/quant/ggml.ts).
 */
export interface GgmlMatrix {
  readonly type: 'ggml';
  readonly ggmlType: number; // ggml type id (GGML_TYPES)
  readonly rows: number;
  readonly cols: number;
  readonly rowBytes: number;
  readonly data: Uint8Array; // (rows, rowBytes)
}

export type Matrix = F32Matrix | Half16Matrix | Q8Matrix | GgmlMatrix;

export function ggmlMatrix(ggmlType: number, data: Uint8Array, rows: number, cols: number): GgmlMatrix {
  const rowBytes = ggmlRowBytes(ggmlType, cols);
  if (data.byteLength !== rows * rowBytes) throw new Error(`internal: ggml matrix of ${rows}x${cols} given ${data.byteLength} bytes`);
  return { type: 'ggml', ggmlType, rows, cols, rowBytes, data };
}

export function half16Matrix(type: 'bf16' | 'f16', data: Uint16Array, rows: number, cols: number): Half16Matrix {
  if (data.length !== rows * cols) throw new Error(`internal: ${type} matrix of ${rows}x${cols} given ${data.length} values`);
  return { type, rows, cols, data };
}

let bf16Table: Float32Array | undefined;
let f16Table: Float32Array | undefined;

/** float32 value of every bfloat16 bit pattern (the top half of a float32). */
export function bf16ToF32Table(): Float32Array {
  if (!bf16Table) {
    const bits = new Uint32Array(65536);
    for (let i = 0; i < 65536; i++) bits[i] = i << 16;
    bf16Table = new Float32Array(bits.buffer);
  }
  return bf16Table;
}

/** float32 value of every IEEE half-precision bit pattern. */
export function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    // in float32 bits (a tenth of the time of computing each value with powers of two): normal
    // halves rebias the exponent; subnormals are frac · 2^-24 (exact in float32); exponent 31 is
    // inf / NaN (the NaN keeps its payload's top bits, as the float32 of ggml's conversion)
    const bits = new Uint32Array(65536);
    f16Table = new Float32Array(bits.buffer);
    for (let h = 0; h < 65536; h++) {
      const sign = (h & 0x8000) << 16, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
      if (exp === 0) f16Table[h] = (sign ? -frac : frac) * 2 ** -24;
      else bits[h] = sign | (exp === 31 ? 0x7f800000 : (exp + 112) << 23) | (frac << 13);
    }
  }
  return f16Table;
}

/** The widening table of a 16-bit matrix type. */
export function half16Table(type: 'bf16' | 'f16'): Float32Array {
  return type === 'bf16' ? bf16ToF32Table() : f16ToF32Table();
}

export function f32Matrix(data: Float32Array, rows: number, cols: number): F32Matrix {
  if (data.length !== rows * cols) throw new Error(`internal: f32 matrix of ${rows}x${cols} given ${data.length} values`);
  return { type: 'f32', rows, cols, data };
}

export function q8Matrix(q: Int8Array, s: Float32Array, rows: number, cols: number, groupSize: number): Q8Matrix {
  if (q.length !== rows * cols || cols % groupSize !== 0 || s.length !== (rows * cols) / groupSize) {
    throw new Error(`internal: q8 matrix of ${rows}x${cols} (group ${groupSize}) given ${q.length} values and ${s.length} scales`);
  }
  return { type: 'q8', rows, cols, groupSize, q, s };
}

/**
 * Q4_0 and Q8_0 matrices the wasm backend regrouped in place (asm/kernels.ts `repackQ4_0x8` and
 * `repackQ8_0x8`; why: there, above `matvecQ4_0` and `groupsQ8x8`): each eight rows 8g … 8g+7
 * (all but the last rows % 8) became one stream of blocks of the eight rows, block b holding their
 * scales (row r's at 2r) and then their quant bytes:
 *   Q4_0 (144 B): four 32-byte pieces t, row r's bytes 4t … 4t+3 at 16 + 32t + 4r, bit 7 of the odd ones flipped;
 *   Q8_0 (272 B): sixteen 16-byte pieces j, row r's bytes 2j, 2j+1 at 16 + 16j + 2r;
 * the group takes the bytes of its eight rows. Known by the matrix's `data` view (the bytes are what
 * changed: copies of the matrix object share the view). The readers here (readRow, ggmlData)
 * read such a matrix as ggml's layout; the wasm kernels read it as it is.
 */
const regrouped = new WeakSet<Uint8Array>();

/** Record that `m`'s bytes were regrouped (the wasm backend, right after it did so). */
export function markRegrouped(m: GgmlMatrix): void {
  if (m.ggmlType !== GGML_TYPE.Q4_0 && m.ggmlType !== GGML_TYPE.Q8_0) throw new Error(`internal: ggml type ${m.ggmlType} marked as regrouped`);
  regrouped.add(m.data);
}

/** Whether `m` is a Q4_0 or Q8_0 matrix whose bytes were regrouped (see markRegrouped). */
export function isRegrouped(m: Matrix): boolean {
  return m.type === 'ggml' && regrouped.has(m.data);
}

/** Row r of `m` in ggml's layout: a view, or for a regrouped row a copy into `scratch` (rowBytes). */
function ggmlRow(m: GgmlMatrix, r: number, scratch: () => Uint8Array): Uint8Array {
  const n = m.rowBytes;
  if (!regrouped.has(m.data) || r >= (m.rows & ~7)) return m.data.subarray(r * n, (r + 1) * n);
  const out = scratch();
  const g = (r >> 3) * 8 * n, l = r & 7;
  if (m.ggmlType === GGML_TYPE.Q8_0) {
    for (let b = 0; b < n / 34; b++) {
      const o = g + 272 * b;
      out[34 * b] = m.data[o + 2 * l]!;
      out[34 * b + 1] = m.data[o + 2 * l + 1]!;
      for (let k = 0; k < 32; k++) out[34 * b + 2 + k] = m.data[o + 16 + 16 * (k >> 1) + 2 * l + (k & 1)]!;
    }
    return out;
  }
  for (let b = 0; b < n / 18; b++) {
    const o = g + 144 * b;
    out[18 * b] = m.data[o + 2 * l]!;
    out[18 * b + 1] = m.data[o + 2 * l + 1]!;
    for (let k = 0; k < 16; k++) out[18 * b + 2 + k] = m.data[o + 16 + 32 * (k >> 2) + 4 * l + (k & 3)]! ^ (k & 1 ? 0x80 : 0);
  }
  return out;
}

let rowBytesScratch = new Uint8Array(0);

/** The matrix's bytes in ggml's layout: its data, or for a regrouped matrix a copy put back in row order. */
export function ggmlData(m: GgmlMatrix): Uint8Array {
  if (!regrouped.has(m.data)) return m.data;
  const out = new Uint8Array(m.data.byteLength);
  for (let r = 0; r < m.rows; r++) out.set(ggmlRow(m, r, () => out.subarray(r * m.rowBytes, (r + 1) * m.rowBytes)), r * m.rowBytes);
  return out;
}

/** Bytes the matrix occupies. */
export function matrixBytes(m: Matrix): number {
  return m.type === 'q8' ? m.q.byteLength + m.s.byteLength : m.data.byteLength;
}

/** Copy row `r` of `m`, as float32, into `out` (length cols). Used for embedding lookups. */
export function readRow(m: Matrix, r: number, out: Float32Array): void {
  const n = m.cols;
  if (m.type === 'f32') {
    out.set(m.data.subarray(r * n, (r + 1) * n));
    return;
  }
  if (m.type === 'q8') {
    const gs = m.groupSize;
    for (let j = 0; j < n; j++) out[j] = m.q[r * n + j]! * m.s[(r * n + j) / gs | 0]!;
    return;
  }
  if (m.type === 'ggml') {
    const row = ggmlRow(m, r, () => (rowBytesScratch.length >= m.rowBytes ? rowBytesScratch : (rowBytesScratch = new Uint8Array(m.rowBytes))));
    dequantizeRow(m.ggmlType, row, out, n);
    return;
  }
  const table = half16Table(m.type);
  for (let j = 0; j < n; j++) out[j] = table[m.data[r * n + j]!]!;
}

/** All values of a matrix as float32 (a view for f32, dequantized for q8). */
export function toF32(m: Matrix): Float32Array {
  if (m.type === 'f32') return m.data;
  if (m.type === 'bf16' || m.type === 'f16') {
    const t = half16Table(m.type);
    return Float32Array.from(m.data, (h) => t[h]!);
  }
  const out = new Float32Array(m.rows * m.cols);
  const row = new Float32Array(m.cols);
  for (let r = 0; r < m.rows; r++) {
    readRow(m, r, row);
    out.set(row, r * m.cols);
  }
  return out;
}

/**
 * Symmetric int8 quantization of `x` in groups of `groupSize`, as llama2.c's export.py does for
 * weights (torch.round: half to even) — scale = max|x| / 127, q = round(x / scale).
 * A group of zeros gets scale 0 and q 0.
 */
export function quantizeQ8(x: Float32Array, groupSize: number): { q: Int8Array; s: Float32Array } {
  if (x.length % groupSize !== 0) throw new Error(`internal: ${x.length} values are not whole groups of ${groupSize}`);
  const q = new Int8Array(x.length);
  const s = new Float32Array(x.length / groupSize);
  for (let g = 0; g < s.length; g++) {
    let wmax = 0;
    for (let k = 0; k < groupSize; k++) wmax = Math.max(wmax, Math.abs(x[g * groupSize + k]!));
    const scale = Math.fround(wmax / 127);
    s[g] = scale;
    if (scale === 0) continue;
    for (let k = 0; k < groupSize; k++) {
      q[g * groupSize + k] = roundHalfEven(Math.fround(x[g * groupSize + k]! / scale));
    }
  }
  return { q, s };
}

function roundHalfEven(v: number): number {
  const r = Math.round(v); // rounds .5 up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Weight types a model can be quantized to while it loads (`--fit auto`, LoadOptions.quantize). */
export type LoadQuantization = 'q8_0' | 'q4_0';

/**
 * `m` in llama.cpp's Q8_0 or Q4_0 blocks, one row at a time (only one float32 row extra).
 * Matrices whose rows are not whole 32-weight blocks, and matrices already at least as small,
 * stay as they are.
 */
export function quantizeMatrix(m: Matrix, type: LoadQuantization): Matrix {
  const id = type === 'q8_0' ? GGML_TYPE.Q8_0 : GGML_TYPE.Q4_0;
  if (m.cols % 32 !== 0 || m.rows === 1) return m;
  if (m.type === 'ggml' && (m.ggmlType === id || ggmlRowBytes(m.ggmlType, m.cols) <= ggmlRowBytes(id, m.cols))) return m;
  const rowBytes = ggmlRowBytes(id, m.cols);
  const data = new Uint8Array(m.rows * rowBytes);
  const row = new Float32Array(m.cols);
  for (let r = 0; r < m.rows; r++) {
    readRow(m, r, row);
    data.set(quantizeRow(id, row, m.cols), r * rowBytes);
  }
  return ggmlMatrix(id, data, m.rows, m.cols);
}
