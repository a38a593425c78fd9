/**
 * ggml's tensor types (llama.cpp's block layouts), for GGUF files: what each type id is, and how
 * one row of it becomes float32. Each block of `blockSize` weights takes `typeSize` bytes.
 * The reference definitions are ggml's `dequantize_row_*` in ggml-quants.c.
 */
import { bf16ToF32Table, f16ToF32Table } from '../model/tensor.js';

export interface GgmlTypeInfo {
  readonly id: number;
  readonly name: string;
  /** Weights per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

const T = (id: number, name: string, blockSize: number, typeSize: number): GgmlTypeInfo => ({ id, name, blockSize, typeSize });

/** ggml type ids (enum ggml_type). */
export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map(
  [
    T(0, 'F32', 1, 4),
    T(1, 'F16', 1, 2),
    T(2, 'Q4_0', 32, 18),
    T(3, 'Q4_1', 32, 20),
    T(6, 'Q5_0', 32, 22),
    T(7, 'Q5_1', 32, 24),
    T(8, 'Q8_0', 32, 34),
    T(9, 'Q8_1', 32, 36),
    T(10, 'Q2_K', 256, 84),
    T(11, 'Q3_K', 256, 110),
    T(12, 'Q4_K', 256, 144),
    T(13, 'Q5_K', 256, 176),
    T(14, 'Q6_K', 256, 210),
    T(15, 'Q8_K', 256, 292),
    T(30, 'BF16', 1, 2),
  ].map((t) => [t.id, t]),
);

/** Bytes of one row of `n` weights of type `id` (n must be a multiple of the block size). */
export function ggmlRowBytes(id: number, n: number): number {
  const t = GGML_TYPES.get(id);
  if (!t) throw new Error(`internal: unknown ggml type ${id}`);
  return (n / t.blockSize) * t.typeSize;
}

/** Dequantize one row: `src` holds the row's blocks, `out` receives `n` floats. */
export function dequantizeRow(id: number, src: Uint8Array, out: Float32Array, n: number): void {
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const f16 = f16ToF32Table();
  switch (id) {
    case 0:
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return;
    case 1:
      for (let i = 0; i < n; i++) out[i] = f16[dv.getUint16(i * 2, true)]!;
      return;
    case 30: {
      const bf = bf16ToF32Table();
      for (let i = 0; i < n; i++) out[i] = bf[dv.getUint16(i * 2, true)]!;
      return;
    }
    case 8: // Q8_0: f16 scale d, 32 x int8 q; w = d * q
      for (let b = 0; b < n / 32; b++) {
        const o = b * 34;
        const d = f16[dv.getUint16(o, true)]!;
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * dv.getInt8(o + 2 + j);
      }
      return;
    default:
      throw new Error(`internal: dequantization of ggml type ${GGML_TYPES.get(id)?.name ?? id} is not implemented`);
  }
}
