/**
 * Weight matrices as they sit in memory. A matrix has `rows` outputs and `cols` inputs and is
 * stored row-major, so `out = W @ x` reads each row once (the layout of every LLaMA checkpoint).
 *
 * - `f32`: one float32 per weight.
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

export type Matrix = F32Matrix | Q8Matrix;

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

/** Bytes the matrix occupies. */
export function matrixBytes(m: Matrix): number {
  return m.type === 'f32' ? m.data.byteLength : m.q.byteLength + m.s.byteLength;
}

/** Copy row `r` of `m`, as float32, into `out` (length cols). Used for embedding lookups. */
export function readRow(m: Matrix, r: number, out: Float32Array): void {
  const n = m.cols;
  if (m.type === 'f32') {
    out.set(m.data.subarray(r * n, (r + 1) * n));
    return;
  }
  const gs = m.groupSize;
  for (let j = 0; j < n; j++) out[j] = m.q[r * n + j]! * m.s[(r * n + j) / gs | 0]!;
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
