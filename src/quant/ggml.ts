/**
 * ggml's tensor types (llama.cpp's block layouts), for GGUF files: what each type id is, how one
 * row of it becomes float32 (ggml's `dequantize_row_*`) and how a float32 row becomes it (ggml's
 * reference quantizers `quantize_row_*_ref`, the ones llama-quantize uses without an imatrix).
 *
 * A row of `n` weights is `n / blockSize` blocks of `typeSize` bytes. All multi-byte fields are
 * little-endian; `half` is an IEEE fp16, `w` the reconstructed weight. Layouts (ggml-common.h):
 *
 *   Q4_0  (32 w, 18 B): half d; u8 qs[16]              w[j] = d*((qs[j]&15)-8), w[j+16] = d*((qs[j]>>4)-8)
 *   Q4_1  (32 w, 20 B): half d, m; u8 qs[16]           w[j] = d*(qs[j]&15)+m,   w[j+16] = d*(qs[j]>>4)+m
 *   Q5_0  (32 w, 22 B): half d; u32 qh; u8 qs[16]      5th bit of w[j] is qh bit j (j < 32); w = d*(q-16)
 *   Q5_1  (32 w, 24 B): half d, m; u32 qh; u8 qs[16]   as Q5_0 without the -16, plus m
 *   Q8_0  (32 w, 34 B): half d; i8 qs[32]              w[j] = d*qs[j]
 *   Q8_1  (32 w, 36 B): half d, s; i8 qs[32]           (an activation type: not dequantized here)
 * K-quants: super-blocks of 256 weights in sub-blocks of 16 or 32, whose scales are themselves
 * quantized against the super-block's half `d` (and `dmin` for the types with a minimum):
 *   Q2_K  (84 B):  u8 scales[16] (lo 4 bits scale, hi 4 bits min); u8 qs[64] (2 bits); half d, dmin
 *                  sub-block s (16 w): w = d*sc*q - dmin*m
 *   Q3_K  (110 B): u8 hmask[32] (3rd bit); u8 qs[64] (low 2 bits); u8 scales[12] (16 x 6 bits,
 *                  biased by 32); half d.  w = d*(sc-32)*(q - (high bit clear ? 4 : 0))
 *   Q4_K  (144 B): half d, dmin; u8 scales[12] (8 scales + 8 mins, 6 bits each); u8 qs[128]
 *                  sub-block s (32 w): w = d*sc*q - dmin*m
 *   Q5_K  (176 B): half d, dmin; u8 scales[12]; u8 qh[32] (5th bits); u8 qs[128]; as Q4_K
 *   Q6_K  (210 B): u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits); i8 scales[16]; half d
 *                  sub-block s (16 w): w = d*sc*(q-32)
 *   Q8_K  (292 B): f32 d; i8 qs[256]; i16 bsums[16] (sums of 16 qs each).  w = d*qs
 * The exact bit positions are spelled out in the functions below.
 *
 * Arithmetic: ggml computes in float32. Products of a half scale and a small integer are exact
 * in float64, so storing the float64 result into a Float32Array rounds once, as C does; where
 * a float32 intermediate is rounded in C, `fround` rounds it here.
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

/** ggml type ids (enum ggml_type) that llamats knows the layout of. */
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

/** Type ids by name: `GGML_TYPE.Q4_K` is 12. */
export const GGML_TYPE = Object.freeze(Object.fromEntries([...GGML_TYPES.values()].map((t) => [t.name, t.id]))) as Readonly<
  Record<'F32' | 'F16' | 'BF16' | 'Q4_0' | 'Q4_1' | 'Q5_0' | 'Q5_1' | 'Q8_0' | 'Q8_1' | 'Q2_K' | 'Q3_K' | 'Q4_K' | 'Q5_K' | 'Q6_K' | 'Q8_K', number>
>;

/** Other ggml type ids, known by name only (for messages: llamats cannot read them). */
export const GGML_OTHER_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [4, 'Q4_2 (removed)'], [5, 'Q4_3 (removed)'], [16, 'IQ2_XXS'], [17, 'IQ2_XS'], [18, 'IQ3_XXS'], [19, 'IQ1_S'],
  [20, 'IQ4_NL'], [21, 'IQ3_S'], [22, 'IQ2_S'], [23, 'IQ4_XS'], [24, 'I8'], [25, 'I16'], [26, 'I32'], [27, 'I64'],
  [28, 'F64'], [29, 'IQ1_M'], [31, 'Q4_0_4_4 (removed)'], [32, 'Q4_0_4_8 (removed)'], [33, 'Q4_0_8_8 (removed)'],
  [34, 'TQ1_0'], [35, 'TQ2_0'], [39, 'MXFP4'],
]);

/** The types `dequantizeRow` reads (every known one except the activation type Q8_1). */
export function canDequantize(id: number): boolean {
  return GGML_TYPES.has(id) && id !== 9;
}

/** The types `quantizeRow` writes. */
export function canQuantize(id: number): boolean {
  return canDequantize(id);
}

function info(id: number): GgmlTypeInfo {
  const t = GGML_TYPES.get(id);
  if (!t) throw new Error(`internal: unknown ggml type ${id}`);
  return t;
}

/** Bytes of one row of `n` weights of type `id` (n must be a multiple of the block size). */
export function ggmlRowBytes(id: number, n: number): number {
  const t = info(id);
  return (n / t.blockSize) * t.typeSize;
}

// ---------------------------------------------------------------------------------------------
// Dequantization

/** Dequantize one row: `src` holds the row's blocks, `out` receives `n` floats. */
export function dequantizeRow(id: number, src: Uint8Array, out: Float32Array, n: number): void {
  const t = info(id);
  if (n % t.blockSize !== 0 || src.byteLength < (n / t.blockSize) * t.typeSize || out.length < n) {
    throw new Error(`internal: dequantizeRow ${t.name} of ${n} weights given ${src.byteLength} bytes, ${out.length} outputs`);
  }
  const h16 = f16ToF32Table();
  const half = (o: number) => h16[src[o]! | (src[o + 1]! << 8)]!;
  const i8 = (o: number) => (src[o]! << 24) >> 24;
  const nb = n / t.blockSize;
  switch (id) {
    case 0: {
      const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return;
    }
    case 1:
      for (let i = 0; i < n; i++) out[i] = half(2 * i);
      return;
    case 30: {
      const bf = bf16ToF32Table();
      for (let i = 0; i < n; i++) out[i] = bf[src[2 * i]! | (src[2 * i + 1]! << 8)]!;
      return;
    }
    case 2: // Q4_0
      for (let b = 0; b < nb; b++) {
        const o = b * 18, y = b * 32, d = half(o);
        for (let j = 0; j < 16; j++) {
          const q = src[o + 2 + j]!;
          out[y + j] = ((q & 15) - 8) * d;
          out[y + j + 16] = ((q >> 4) - 8) * d;
        }
      }
      return;
    case 3: // Q4_1
      for (let b = 0; b < nb; b++) {
        const o = b * 20, y = b * 32, d = half(o), m = half(o + 2);
        for (let j = 0; j < 16; j++) {
          const q = src[o + 4 + j]!;
          out[y + j] = (q & 15) * d + m;
          out[y + j + 16] = (q >> 4) * d + m;
        }
      }
      return;
    case 6: // Q5_0
    case 7: {
      // Q5_1
      const hasMin = id === 7;
      const size = hasMin ? 24 : 22;
      for (let b = 0; b < nb; b++) {
        const o = b * size, y = b * 32, d = half(o), m = hasMin ? half(o + 2) : 0;
        const qhAt = o + (hasMin ? 4 : 2);
        const qh = (src[qhAt]! | (src[qhAt + 1]! << 8) | (src[qhAt + 2]! << 16) | (src[qhAt + 3]! << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const q = src[qhAt + 4 + j]!;
          const q0 = (q & 15) | (((qh >>> j) & 1) << 4);
          const q1 = (q >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          out[y + j] = hasMin ? q0 * d + m : (q0 - 16) * d;
          out[y + j + 16] = hasMin ? q1 * d + m : (q1 - 16) * d;
        }
      }
      return;
    }
    case 8: // Q8_0
      for (let b = 0; b < nb; b++) {
        const o = b * 34, d = half(o);
        for (let j = 0; j < 32; j++) out[b * 32 + j] = i8(o + 2 + j) * d;
      }
      return;
    case 10: // Q2_K: 2 halves of 128; in each, 4 bit-planes (shift 0,2,4,6) x 2 sub-blocks of 16
      for (let b = 0; b < nb; b++) {
        const o = b * 84, d = half(o + 80), dmin = half(o + 82);
        let y = b * 256;
        for (let h = 0; h < 2; h++) {
          const q = o + 16 + 32 * h;
          for (let j = 0; j < 4; j++) {
            for (let k = 0; k < 2; k++) {
              const sc = src[o + 8 * h + 2 * j + k]!;
              const dl = d * (sc & 15), ml = dmin * (sc >> 4);
              for (let l = 0; l < 16; l++) out[y++] = dl * ((src[q + 16 * k + l]! >> (2 * j)) & 3) - ml;
            }
          }
        }
      }
      return;
    case 11: // Q3_K: as Q2_K's planes; hmask bit (4h+j) of byte l is the 3rd bit
      for (let b = 0; b < nb; b++) {
        const o = b * 110, d = half(o + 108), sc = o + 96;
        // 16 six-bit scales: low 4 bits from bytes 0..7 (low nibble for 0..7, high for 8..15),
        // high 2 bits from bytes 8..11 (byte 8 + s%4, bit pair s/4)
        const scale = (s: number) =>
          ((s < 8 ? src[sc + s]! & 15 : src[sc + s - 8]! >> 4) | (((src[sc + 8 + (s & 3)]! >> (2 * (s >> 2))) & 3) << 4)) - 32;
        let y = b * 256;
        for (let h = 0; h < 2; h++) {
          const q = o + 32 + 32 * h;
          for (let j = 0; j < 4; j++) {
            const bit = 1 << (4 * h + j);
            for (let k = 0; k < 2; k++) {
              const dl = d * scale(8 * h + 2 * j + k);
              for (let l = 16 * k; l < 16 * k + 16; l++) {
                const low = (src[q + l]! >> (2 * j)) & 3;
                out[y++] = dl * (low - (src[o + l]! & bit ? 0 : 4));
              }
            }
          }
        }
      }
      return;
    case 12: // Q4_K: 4 chunks of 64 = 32 bytes of qs; low nibbles are sub-block 2c, high 2c+1
    case 13: {
      // Q5_K: the same plus qh: bit 2c (low nibble) / 2c+1 (high nibble) of qh[l] is the 5th bit
      const five = id === 13;
      const size = five ? 176 : 144;
      for (let b = 0; b < nb; b++) {
        const o = b * size, d = half(o), dmin = half(o + 2), qs = o + (five ? 48 : 16), qh = o + 16;
        let y = b * 256;
        for (let c = 0; c < 4; c++) {
          for (let k = 0; k < 2; k++) {
            const [sc, m] = scaleMinK4(src, o + 4, 2 * c + k);
            const dl = d * sc, ml = dmin * m;
            const hiBit = 1 << (2 * c + k);
            for (let l = 0; l < 32; l++) {
              const byte = src[qs + 32 * c + l]!;
              const q = (k === 0 ? byte & 15 : byte >> 4) + (five && src[qh + l]! & hiBit ? 16 : 0);
              out[y++] = dl * q - ml;
            }
          }
        }
      }
      return;
    }
    case 14: // Q6_K: 2 halves of 128: ql 64 bytes, qh 32 bytes, 8 scales each
      for (let b = 0; b < nb; b++) {
        const o = b * 210, d = half(o + 208);
        for (let h = 0; h < 2; h++) {
          const ql = o + 64 * h, qh = o + 128 + 32 * h, sc = o + 192 + 8 * h, y = b * 256 + 128 * h;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const hb = src[qh + l]!;
            const q1 = ((src[ql + l]! & 15) | ((hb & 3) << 4)) - 32;
            const q2 = ((src[ql + l + 32]! & 15) | (((hb >> 2) & 3) << 4)) - 32;
            const q3 = ((src[ql + l]! >> 4) | (((hb >> 4) & 3) << 4)) - 32;
            const q4 = ((src[ql + l + 32]! >> 4) | (((hb >> 6) & 3) << 4)) - 32;
            out[y + l] = Math.fround(d * i8(sc + is)) * q1;
            out[y + l + 32] = Math.fround(d * i8(sc + is + 2)) * q2;
            out[y + l + 64] = Math.fround(d * i8(sc + is + 4)) * q3;
            out[y + l + 96] = Math.fround(d * i8(sc + is + 6)) * q4;
          }
        }
      }
      return;
    case 15: {
      // Q8_K
      const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
      for (let b = 0; b < nb; b++) {
        const o = b * 292, d = dv.getFloat32(o, true);
        for (let j = 0; j < 256; j++) out[b * 256 + j] = d * i8(o + 4 + j);
      }
      return;
    }
    default:
      throw new Error(`internal: dequantization of ggml type ${t.name} is not implemented`);
  }
}

/**
 * Scale and min of sub-block j (0..7) of a Q4_K/Q5_K block, 6 bits each in 12 bytes at `at`:
 * j < 4: scale = s[j] & 63, min = s[j+4] & 63; j ≥ 4: the low 4 bits come from byte j+4 (scale in
 * the low nibble, min in the high one) and the top 2 bits from the top bits of bytes j-4 and j.
 */
function scaleMinK4(s: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [s[at + j]! & 63, s[at + j + 4]! & 63];
  return [(s[at + j + 4]! & 15) | ((s[at + j - 4]! >> 6) << 4), (s[at + j + 4]! >> 4) | ((s[at + j]! >> 6) << 4)];
}

// ---------------------------------------------------------------------------------------------
// float32 → 16-bit floats

const f32Bits = new Float32Array(1);
const u32Bits = new Uint32Array(f32Bits.buffer);

/** IEEE half bit pattern of `v`, rounded to nearest even (overflow → ±inf, NaN stays NaN). */
export function f32ToF16(v: number): number {
  f32Bits[0] = v;
  const x = u32Bits[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 112; // the half exponent field (127 - 15 = 112)
  if (e >= 31) return sign | 0x7c00;
  // keep `shift` fewer bits of the 24-bit significand, rounding half to even; a carry out of the
  // mantissa correctly bumps the exponent (up to inf)
  const [sig, shift, base] = e <= 0 ? [mant | 0x800000, 14 - e, 0] : [mant, 13, e << 10];
  if (shift > 24) return sign; // below half the smallest subnormal
  let h = sig >>> shift;
  const rem = sig & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rem > halfway || (rem === halfway && h & 1)) h++;
  return sign | (base + h);
}

/** bfloat16 bit pattern of `v`, rounded to nearest even (NaN stays a quiet NaN), as ggml. */
export function f32ToBf16(v: number): number {
  f32Bits[0] = v;
  const x = u32Bits[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 64) & 0xffff;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---------------------------------------------------------------------------------------------
// Quantization (ggml's reference quantizers)

const f = Math.fround;
const GROUP_MAX_EPS = 1e-15;

/** ggml's nearest_int: round a float32 to the nearest integer, ties to even. */
function nearestInt(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** C's (int) cast: toward zero. */
const trunc = Math.trunc;

/** Quantize one row of `n` floats to type `id`: the row's bytes, as llama-quantize writes them. */
export function quantizeRow(id: number, x: Float32Array, n: number): Uint8Array {
  const t = info(id);
  if (!canQuantize(id)) throw new Error(`internal: quantization to ${t.name} is not implemented`);
  if (n % t.blockSize !== 0 || x.length < n) throw new Error(`internal: quantizeRow ${t.name} of ${n} weights (block ${t.blockSize}) given ${x.length}`);
  const out = new Uint8Array((n / t.blockSize) * t.typeSize);
  const dv = new DataView(out.buffer);
  const setHalf = (o: number, v: number) => dv.setUint16(o, f32ToF16(v), true);
  const nb = n / t.blockSize;
  switch (id) {
    case 0:
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, x[i]!, true);
      break;
    case 1:
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToF16(x[i]!), true);
      break;
    case 30:
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToBf16(x[i]!), true);
      break;
    case 8: // Q8_0: d = amax/127, q = round(x/d) (half away from zero, as C's roundf)
      for (let b = 0; b < nb; b++) {
        const xb = x.subarray(b * 32, b * 32 + 32), o = b * 34;
        let amax = 0;
        for (const v of xb) amax = Math.max(amax, Math.abs(v));
        const d = f(amax / 127), id8 = d ? f(1 / d) : 0;
        setHalf(o, d);
        for (let j = 0; j < 32; j++) {
          const v = f(xb[j]! * id8);
          dv.setInt8(o + 2 + j, Math.sign(v) * Math.round(Math.abs(v)));
        }
      }
      break;
    case 2: // Q4_0 and Q5_0: d = (the value of largest magnitude) / -8 (or -16)
    case 6:
      for (let b = 0; b < nb; b++) {
        const xb = x.subarray(b * 32, b * 32 + 32);
        const five = id === 6, o = b * (five ? 22 : 18), qs = o + (five ? 6 : 2);
        let amax = 0, max = 0;
        for (const v of xb) if (amax < Math.abs(v)) [amax, max] = [Math.abs(v), v];
        const d = f(max / (five ? -16 : -8)), idq = d ? f(1 / d) : 0;
        const top = five ? 31 : 15, bias = five ? 16.5 : 8.5;
        setHalf(o, d);
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          const q0 = Math.min(top, trunc(f(f(xb[j]! * idq) + bias)));
          const q1 = Math.min(top, trunc(f(f(xb[j + 16]! * idq) + bias)));
          out[qs + j] = (q0 & 15) | ((q1 & 15) << 4);
          qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
        }
        if (five) dv.setUint32(o + 2, qh >>> 0, true);
      }
      break;
    case 3: // Q4_1 and Q5_1: d = (max - min) / 15 (or 31), m = min
    case 7:
      for (let b = 0; b < nb; b++) {
        const xb = x.subarray(b * 32, b * 32 + 32);
        const five = id === 7, o = b * (five ? 24 : 20), qs = o + (five ? 8 : 4);
        let min = Infinity, max = -Infinity;
        for (const v of xb) {
          if (v < min) min = v;
          if (v > max) max = v;
        }
        const d = f(f(max - min) / (five ? 31 : 15)), idq = d ? f(1 / d) : 0;
        setHalf(o, d);
        setHalf(o + 2, min);
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          let q0 = trunc(f(f(f(xb[j]! - min) * idq) + 0.5));
          let q1 = trunc(f(f(f(xb[j + 16]! - min) * idq) + 0.5));
          if (five) [q0, q1] = [q0 & 255, q1 & 255]; // C's (uint8_t) cast
          else [q0, q1] = [Math.min(15, q0), Math.min(15, q1)];
          out[qs + j] = (q0 & 15) | ((q1 & 15) << 4);
          qh |= (((q0 >> 4) & 1) << j) | (((q1 >> 4) & 1) << (j + 16));
        }
        if (five) dv.setUint32(o + 4, qh >>> 0, true);
      }
      break;
    case 10:
      for (let b = 0; b < nb; b++) quantizeQ2K(x.subarray(b * 256, b * 256 + 256), out.subarray(b * 84, b * 84 + 84));
      break;
    case 11:
      for (let b = 0; b < nb; b++) quantizeQ3K(x.subarray(b * 256, b * 256 + 256), out.subarray(b * 110, b * 110 + 110));
      break;
    case 12:
    case 13: {
      const size = t.typeSize;
      for (let b = 0; b < nb; b++) quantizeQ45K(x.subarray(b * 256, b * 256 + 256), out.subarray(b * size, b * size + size), id === 13);
      break;
    }
    case 14:
      for (let b = 0; b < nb; b++) quantizeQ6K(x.subarray(b * 256, b * 256 + 256), out.subarray(b * 210, b * 210 + 210));
      break;
    case 15: // Q8_K: d = -max/127 for the value of largest magnitude; bsums for the dot products
      for (let b = 0; b < nb; b++) {
        const xb = x.subarray(b * 256, b * 256 + 256), o = b * 292;
        let amax = 0, max = 0;
        for (const v of xb) if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
        if (!amax) continue; // all zero: d = 0, qs = 0
        const iscale = f(-127 / max);
        dv.setFloat32(o, f(1 / iscale), true);
        for (let j = 0; j < 256; j++) dv.setInt8(o + 4 + j, Math.min(127, nearestInt(f(iscale * xb[j]!))));
        for (let j = 0; j < 16; j++) {
          let sum = 0;
          for (let k = 0; k < 16; k++) sum += dv.getInt8(o + 4 + 16 * j + k);
          dv.setInt16(o + 260 + 2 * j, sum, true);
        }
      }
      break;
  }
  return out;
}

/** A float16 round trip: the value a half field stores. */
const viaHalf = (v: number) => f16ToF32Table()[f32ToF16(v)]!;

/**
 * ggml's make_qkx2_quants: levels L[i] in [0, nmax] and (scale, min ≥ 0) with x ≈ scale*L - min,
 * minimizing the weighted squared (or absolute) error over a few trial scales.
 */
function makeQkx2Quants(
  x: Float32Array, w: Float32Array, nmax: number, L: Uint8Array, rmin: number, rdelta: number, nstep: number, useMad: boolean,
): { scale: number; min: number } {
  const n = x.length;
  let min = x[0]!, max = x[0]!, sumW = w[0]!, sumX = f(sumW * x[0]!);
  for (let i = 1; i < n; i++) {
    if (x[i]! < min) min = x[i]!;
    if (x[i]! > max) max = x[i]!;
    sumW = f(sumW + w[i]!);
    sumX = f(sumX + f(w[i]! * x[i]!));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, 0, n);
    return { scale: 0, min: -min };
  }
  const err = (scale: number, mn: number, levels: ArrayLike<number>) => {
    let e = 0;
    for (let i = 0; i < n; i++) {
      const diff = f(f(f(scale * levels[i]!) + mn) - x[i]!);
      e = f(e + f(w[i]! * (useMad ? Math.abs(diff) : f(diff * diff))));
    }
    return e;
  };
  let iscale = f(nmax / f(max - min));
  let scale = f(1 / iscale);
  for (let i = 0; i < n; i++) L[i] = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[i]! - min)))));
  let best = err(scale, min, L);
  const aux = new Uint8Array(n);
  for (let is = 0; is <= nstep; is++) {
    iscale = f(f(f(rmin + f(rdelta * is)) + nmax) / f(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(f(iscale * f(x[i]! - min)))));
      aux[i] = l;
      sumL = f(sumL + f(w[i]! * l));
      sumL2 = f(sumL2 + f(f(w[i]! * l) * l));
      sumXL = f(sumXL + f(f(w[i]! * l) * x[i]!));
    }
    const D = f(f(sumW * sumL2) - f(sumL * sumL));
    if (D > 0) {
      let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / D);
      let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / D);
      if (thisMin > 0) [thisMin, thisScale] = [0, f(sumXL / sumL2)];
      const e = err(thisScale, thisMin, aux);
      if (e < best) {
        L.set(aux);
        [best, scale, min] = [e, thisScale, thisMin];
      }
    }
  }
  return { scale, min: -min };
}

/**
 * ggml's make_qx_quants with rmse_type 1 (weights x²): symmetric levels L[i] in [0, 2*nmax)
 * (stored with +nmax) and the scale, trying 18 scales around -nmax/max.
 */
function makeQxQuants(x: Float32Array, nmax: number, L: Uint8Array): number {
  const n = x.length;
  let amax = 0, max = 0;
  for (const v of x) if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, 0, n);
    return 0;
  }
  const levels = (iscale: number) => {
    let sumlx = 0, suml2 = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[i]!))));
      const w = f(x[i]! * x[i]!);
      sumlx = f(sumlx + f(f(w * x[i]!) * l));
      suml2 = f(suml2 + f(f(w * l) * l));
    }
    return [sumlx, suml2] as const;
  };
  const fill = (iscale: number) => {
    for (let i = 0; i < n; i++) L[i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[i]!))));
  };
  let iscale = f(-nmax / max);
  let [sumlx, suml2] = levels(iscale);
  fill(iscale);
  let scale = suml2 ? f(sumlx / suml2) : 0;
  let best = f(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = f(-f(nmax + f(0.1 * is)) / max);
    [sumlx, suml2] = levels(iscale);
    if (suml2 > 0 && f(sumlx * sumlx) > f(best * suml2)) {
      fill(iscale);
      scale = f(sumlx / suml2);
      best = f(scale * sumlx);
    }
  }
  return scale;
}

/** ggml's make_q3_quants (do_rmse): levels in [-nmax, nmax) refined coordinate by coordinate; stored +nmax. */
function makeQ3Quants(x: Float32Array, nmax: number, L: Int8Array): number {
  const n = x.length;
  let amax = 0, max = 0;
  for (const v of x) if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, 0, n);
    return 0;
  }
  const iscale = f(-nmax / max);
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(iscale * x[i]!))));
    L[i] = l;
    const w = f(x[i]! * x[i]!);
    sumlx = f(sumlx + f(f(w * x[i]!) * l));
    suml2 = f(suml2 + f(f(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const w = f(x[i]! * x[i]!);
      let slx = f(sumlx - f(f(w * x[i]!) * L[i]!));
      if (slx > 0) {
        let sl2 = f(suml2 - f(f(w * L[i]!) * L[i]!));
        const nl = Math.max(-nmax, Math.min(nmax - 1, nearestInt(f(f(x[i]! * sl2) / slx))));
        if (nl !== L[i]) {
          slx = f(slx + f(f(w * x[i]!) * nl));
          sl2 = f(sl2 + f(f(w * nl) * nl));
          if (sl2 > 0 && f(f(slx * slx) * suml2) > f(f(sumlx * sumlx) * sl2)) {
            L[i] = nl;
            [sumlx, suml2] = [slx, sl2];
            changed++;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (let i = 0; i < n; i++) L[i] = L[i]! + nmax;
  return suml2 > 0 ? f(sumlx / suml2) : 0;
}

/** Pack 256 2-bit levels as Q2_K/Q3_K do: byte 32h+l holds L[128h+l+32p] in bits 2p..2p+1. */
function pack2(L: ArrayLike<number>, out: Uint8Array, at: number): void {
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const j = 128 * h + l;
      out[at + 32 * h + l] = L[j]! | (L[j + 32]! << 2) | (L[j + 64]! << 4) | (L[j + 96]! << 6);
    }
  }
}

function quantizeQ2K(x: Float32Array, y: Uint8Array): void {
  const dv = new DataView(y.buffer, y.byteOffset, y.byteLength);
  const L = new Uint8Array(256);
  const scales = new Float32Array(16), mins = new Float32Array(16), w = new Float32Array(16);
  let maxScale = 0, maxMin = 0;
  for (let j = 0; j < 16; j++) {
    const xs = x.subarray(16 * j, 16 * j + 16);
    for (let l = 0; l < 16; l++) w[l] = Math.abs(xs[l]!);
    const r = makeQkx2Quants(xs, w, 3, L.subarray(16 * j, 16 * j + 16), -0.5, 0.1, 15, true);
    [scales[j], mins[j]] = [r.scale, r.min];
    maxScale = Math.max(maxScale, scales[j]!);
    maxMin = Math.max(maxMin, mins[j]!);
  }
  const iscale = maxScale > 0 ? f(15 / maxScale) : 0, imin = maxMin > 0 ? f(15 / maxMin) : 0;
  for (let j = 0; j < 16; j++) y[j] = (nearestInt(f(iscale * scales[j]!)) | (nearestInt(f(imin * mins[j]!)) << 4)) & 255;
  dv.setUint16(80, f32ToF16(maxScale > 0 ? f(maxScale / 15) : 0), true);
  dv.setUint16(82, f32ToF16(maxMin > 0 ? f(maxMin / 15) : 0), true);
  const d = f16ToF32Table()[dv.getUint16(80, true)]!, dmin = f16ToF32Table()[dv.getUint16(82, true)]!;
  for (let j = 0; j < 16; j++) {
    const dl = f(d * (y[j]! & 15));
    if (!dl) continue;
    const ml = f(dmin * (y[j]! >> 4));
    for (let i = 0; i < 16; i++) L[16 * j + i] = Math.max(0, Math.min(3, nearestInt(f(f(x[16 * j + i]! + ml) / dl))));
  }
  pack2(L, y, 16);
}

function quantizeQ3K(x: Float32Array, y: Uint8Array): void {
  const dv = new DataView(y.buffer, y.byteOffset, y.byteLength);
  const L = new Int8Array(256);
  const scales = new Float32Array(16);
  let amax = 0, maxScale = 0;
  for (let j = 0; j < 16; j++) {
    scales[j] = makeQ3Quants(x.subarray(16 * j, 16 * j + 16), 4, L.subarray(16 * j, 16 * j + 16));
    if (Math.abs(scales[j]!) > amax) [amax, maxScale] = [Math.abs(scales[j]!), scales[j]!];
  }
  const sc = 96; // the 12 scale bytes; see the layout of `scale` in dequantizeRow
  y.fill(0, sc, sc + 12);
  if (maxScale) {
    const iscale = f(-32 / maxScale);
    for (let j = 0; j < 16; j++) {
      const l = Math.max(-32, Math.min(31, nearestInt(f(iscale * scales[j]!)))) + 32;
      if (j < 8) y[sc + j] = l & 15;
      else y[sc + j - 8] |= (l & 15) << 4;
      y[sc + 8 + (j & 3)] |= (l >> 4) << (2 * (j >> 2));
    }
    dv.setUint16(108, f32ToF16(f(1 / iscale)), true);
  } else dv.setUint16(108, 0, true);
  const d = f16ToF32Table()[dv.getUint16(108, true)]!;
  for (let j = 0; j < 16; j++) {
    const s = ((j < 8 ? y[sc + j]! & 15 : y[sc + j - 8]! >> 4) | (((y[sc + 8 + (j & 3)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
    const dl = f(d * s);
    if (!dl) continue;
    for (let i = 0; i < 16; i++) L[16 * j + i] = Math.max(-4, Math.min(3, nearestInt(f(x[16 * j + i]! / dl)))) + 4;
  }
  // the 3rd bit of level j goes to hmask byte j % 32, bit j / 32
  y.fill(0, 0, 32);
  for (let j = 0; j < 256; j++) {
    if (L[j]! > 3) {
      y[j & 31] |= 1 << (j >> 5);
      L[j] = L[j]! - 4;
    }
  }
  pack2(L, y, 32);
}

/** Q4_K (five = false) and Q5_K: per 32-weight sub-block a scale and a min, both 6-bit. */
function quantizeQ45K(x: Float32Array, y: Uint8Array, five: boolean): void {
  const dv = new DataView(y.buffer, y.byteOffset, y.byteLength);
  const nmax = five ? 31 : 15;
  const L = new Uint8Array(256);
  const scales = new Float32Array(8), mins = new Float32Array(8), w = new Float32Array(32);
  let maxScale = 0, maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const xs = x.subarray(32 * j, 32 * j + 32);
    let sumX2 = 0;
    for (const v of xs) sumX2 = f(sumX2 + f(v * v));
    const avX = f(Math.sqrt(f(sumX2 / 32)));
    for (let l = 0; l < 32; l++) w[l] = f(avX + Math.abs(xs[l]!));
    const r = five
      ? makeQkx2Quants(xs, w, 31, L.subarray(32 * j, 32 * j + 32), -0.5, 0.1, 15, false)
      : makeQkx2Quants(xs, w, 15, L.subarray(32 * j, 32 * j + 32), -1, 0.1, 20, false);
    [scales[j], mins[j]] = [r.scale, r.min];
    maxScale = Math.max(maxScale, scales[j]!);
    maxMin = Math.max(maxMin, mins[j]!);
  }
  const iscale = maxScale > 0 ? f(63 / maxScale) : 0, imin = maxMin > 0 ? f(63 / maxMin) : 0;
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(f(iscale * scales[j]!)) & 255);
    const lm = Math.min(63, nearestInt(f(imin * mins[j]!)) & 255);
    if (j < 4) {
      y[4 + j] = ls;
      y[4 + j + 4] = lm;
    } else {
      y[4 + j + 4] = (ls & 15) | ((lm & 15) << 4);
      y[4 + j - 4] |= (ls >> 4) << 6;
      y[4 + j] |= (lm >> 4) << 6;
    }
  }
  dv.setUint16(0, f32ToF16(f(maxScale / 63)), true);
  dv.setUint16(2, f32ToF16(f(maxMin / 63)), true);
  const d = viaHalf(f(maxScale / 63)), dmin = viaHalf(f(maxMin / 63));
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(y, 4, j);
    const dl = f(d * sc);
    if (!dl) continue;
    const ml = f(dmin * m);
    for (let i = 0; i < 32; i++) L[32 * j + i] = Math.max(0, Math.min(nmax, nearestInt(f(f(x[32 * j + i]! + ml) / dl))));
  }
  // chunk c of 64 levels: the first 32 in the low nibbles of 32 bytes, the next 32 in the high
  // nibbles; Q5_K puts their 5th bits in qh[l] bits 2c and 2c+1
  const qs = five ? 48 : 16;
  if (five) y.fill(0, 16, 48);
  for (let c = 0; c < 4; c++) {
    for (let l = 0; l < 32; l++) {
      const l1 = L[64 * c + l]!, l2 = L[64 * c + l + 32]!;
      y[qs + 32 * c + l] = (l1 & 15) | ((l2 & 15) << 4);
      if (five) y[16 + l] |= ((l1 >> 4) << (2 * c)) | ((l2 >> 4) << (2 * c + 1));
    }
  }
}

function quantizeQ6K(x: Float32Array, y: Uint8Array): void {
  const dv = new DataView(y.buffer, y.byteOffset, y.byteLength);
  const L = new Uint8Array(256);
  const scales = new Float32Array(16);
  let maxAbs = 0, maxScale = 0;
  for (let j = 0; j < 16; j++) {
    scales[j] = makeQxQuants(x.subarray(16 * j, 16 * j + 16), 32, L.subarray(16 * j, 16 * j + 16));
    if (Math.abs(scales[j]!) > maxAbs) [maxAbs, maxScale] = [Math.abs(scales[j]!), scales[j]!];
  }
  if (maxAbs < GROUP_MAX_EPS) {
    y.fill(0);
    return;
  }
  const iscale = f(-128 / maxScale);
  dv.setUint16(208, f32ToF16(f(1 / iscale)), true);
  for (let j = 0; j < 16; j++) dv.setInt8(192 + j, Math.min(127, nearestInt(f(iscale * scales[j]!))));
  const d = f16ToF32Table()[dv.getUint16(208, true)]!;
  for (let j = 0; j < 16; j++) {
    const dl = f(d * dv.getInt8(192 + j));
    if (!dl) continue;
    for (let i = 0; i < 16; i++) L[16 * j + i] = Math.max(-32, Math.min(31, nearestInt(f(x[16 * j + i]! / dl)))) + 32;
  }
  // half h: ql[64h + l] holds levels 128h+l (low nibble) and 128h+l+64 (high); ql[64h+l+32]
  // levels +32 and +96; qh[32h + l] holds the top 2 bits of the four, in that order
  for (let h = 0; h < 2; h++) {
    for (let l = 0; l < 32; l++) {
      const j = 128 * h + l;
      const [a, b, c, e] = [L[j]!, L[j + 32]!, L[j + 64]!, L[j + 96]!];
      y[64 * h + l] = (a & 15) | ((c & 15) << 4);
      y[64 * h + l + 32] = (b & 15) | ((e & 15) << 4);
      y[128 + 32 * h + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
    }
  }
}
