/**
 * llamats' WebAssembly SIMD kernels, in AssemblyScript (compiled by scripts/build-wasm.mjs into
 * dist/src/backend/wasm/kernels.wasm; the .wasm is a build output, never committed).
 *
 * Every function works on raw byte addresses in the one imported memory: the TypeScript side
 * (src/backend/wasm/wasm.ts) owns the allocation and passes pointers. Nothing here allocates.
 * Each kernel has a plain TypeScript twin in src/backend/ref/ops.ts (the definition), and
 * test/conformance.test.ts holds every kernel to its twin by NMSE.
 *
 * Where the time goes: the matrix-vector products, which stream every weight once per token.
 * They are written so that the weights are read in one pass with 16-byte SIMD loads and the
 * arithmetic keeps up with memory:
 *   - f32 / f16 / bf16 weights: widened to f32x4 and multiplied with the float32 activations
 *     (no float64: sums are float32 in SIMD lanes); f32 four accumulators per row, f16 / bf16
 *     four rows at a time sharing each activation load.
 *   - integer weights (llama2.c q8, ggml Q8_0 / Q4_0 / Q4_K / Q6_K): the activations are first
 *     quantized on the fly (llama2.c q8: int8 in the weights' groups, exactly as runq.c; ggml
 *     types: int16 blocks of 32, see below), then each block's dot product is exact integer
 *     arithmetic with `i32x4.dot_i16x8_s` (weights widened to int16; Q4_0: four nibbles to a
 *     16-bit lane, its rows regrouped in eights once, see matvecQ4_0), and the block result is
 *     scaled in float32 lanes (Q8_0 / Q4_0: four rows' blocks in the four lanes).
 * The small ops (rmsnorm, rope, softmax, silu) follow the reference's float64/float32 rounding
 * step by step, so they agree with it to the last bit except where `exp` differs by an ulp.
 */

// ---------------------------------------------------------------------------------------------
// Helpers

/** Sum of the four lanes of an f32x4. */
// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/** IEEE half (16-bit pattern) → f32: shift into place, rescale the exponent by 2^112 (subnormals too). */
// @ts-ignore: decorator
@inline function h2f(h: u32): f32 {
  const em = (h & 0x7fff) << 13;
  let f = reinterpret<f32>(em) * reinterpret<f32>(0x77800000); // 2^112
  if (em >= 0x0f800000) f = reinterpret<f32>(em | 0x7f800000); // inf / NaN
  return reinterpret<f32>(reinterpret<u32>(f) | ((h & 0x8000) << 16));
}

/** Exact integer dot product of 16 int8 pairs, as four i32 partial sums. */
// @ts-ignore: decorator
@inline function dot16(a: v128, b: v128): v128 {
  return i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), i16x8.extend_low_i8x16_s(b)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), i16x8.extend_high_i8x16_s(b)),
  );
}

/**
 * Copy n bytes (n a multiple of 4; the areas apart) in 16-byte SIMD moves: copies into the KV
 * cache. Both JavaScript views of the shared memory and `memory.copy` (on a shared memory V8 moves
 * it with relaxed atomics) measured several times slower.
 */
export function copyBytes(dst: usize, src: usize, n: usize): void {
  let i: usize = 0;
  for (; i + 16 <= n; i += 16) v128.store(dst + i, v128.load(src + i));
  for (; i < n; i += 4) store<u32>(dst + i, load<u32>(src + i));
}

/** n floats at p set to 0 in SIMD stores (`memory.fill` on a shared memory is a slow runtime call). */
// @ts-ignore: decorator
@inline function zeroFloats(p: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(p + (<usize>i << 2), f32x4.splat(0));
  for (; i < n; i++) store<f32>(p + (<usize>i << 2), 0);
}

/** Where the JS side may start allocating (after this module's static data). */
export function heapBase(): usize {
  return __heap_base;
}

/**
 * Read `n` bytes at `p` (n a multiple of 64) and return their xor as a checksum: the fastest a
 * kernel can stream memory, which the bench reports as the machine's read bandwidth.
 */
export function readBytes(p: usize, n: usize): i32 {
  let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
  for (let o: usize = 0; o < n; o += 64) {
    a0 = v128.xor(a0, v128.load(p + o));
    a1 = v128.xor(a1, v128.load(p + o, 16));
    a2 = v128.xor(a2, v128.load(p + o, 32));
    a3 = v128.xor(a3, v128.load(p + o, 48));
  }
  const a = v128.xor(v128.xor(a0, a1), v128.xor(a2, a3));
  return i32x4.extract_lane(a, 0) ^ i32x4.extract_lane(a, 1) ^ i32x4.extract_lane(a, 2) ^ i32x4.extract_lane(a, 3);
}

// ---------------------------------------------------------------------------------------------
// Float weights: out[i] = Σ_j W[i, j] · x[j]

/** One row of matvecF32: Σ_j r[j] · x[j] in four f32x4 accumulators (the order every f32 product uses). */
// @ts-ignore: decorator
@inline function rowF32(r: usize, x: usize, cols: i32): f32 {
  const n16 = cols & ~15;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let j = 0;
  for (; j < n16; j += 16) {
    const o = <usize>j << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(r + o), v128.load(x + o)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(r + o, 16), v128.load(x + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(r + o, 32), v128.load(x + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(r + o, 48), v128.load(x + o, 48)));
  }
  for (; j + 4 <= cols; j += 4) {
    const o = <usize>j << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(r + o), v128.load(x + o)));
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; j < cols; j++) s += load<f32>(r + (<usize>j << 2)) * load<f32>(x + (<usize>j << 2));
  return s;
}

export function matvecF32(out: usize, x: usize, w: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  for (let i = 0; i < rows; i++) store<f32>(out + (<usize>i << 2), rowF32(w + <usize>i * rowBytes, x, cols));
}

// 16-bit weights. Each u16 is first moved into the high half of an i32 lane (one interleave with
// zero, `hiHalves`), which is a bfloat16's float32 already. An IEEE half there is turned into
// float32 with an arithmetic shift by 3 (exponent and mantissa into float32's places, the sign
// kept in bit 31), a mask, and a multiply by 2^112 that rebiases the exponent (subnormals
// included): three SIMD ops for four weights. That is exact for every finite half; a matrix
// holding inf or NaN halves (`halfSpecials` finds them once per matrix) takes a variant that also
// sets the exponent of those (HALF_F16_EXACT).
//
// Order of a row's sum (every 16-bit product, matvec or matmul, follows it, so they agree bit for
// bit): one f32x4 accumulator over 8 columns at a time (the low 4, then the high 4), its lanes
// added as `hsum`, then the remaining columns one by one.

const HALF_BF16: i32 = 1;
const HALF_F16: i32 = 0; // finite halves only
const HALF_F16_EXACT: i32 = 2; // any half (inf, NaN)

/** Lanes 0–3 (`high` = 0) or 4–7 (1) of 8 u16 as i32 lanes holding u16 << 16. */
// @ts-ignore: decorator
@inline function hiHalves(h: v128, high: i32): v128 {
  const z = i32x4.splat(0);
  return high
    ? i8x16.shuffle(z, h, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31)
    : i8x16.shuffle(z, h, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
}

/** Four 16-bit weights (as `hiHalves` gives them) as float32, by `mode`. */
// @ts-ignore: decorator
@inline function halfToF32(v: v128, mode: i32): v128 {
  if (mode == HALF_BF16) return v;
  const f = f32x4.mul(v128.and(i32x4.shr_s(v, 3), i32x4.splat(0x8fffe000)), f32x4.splat(reinterpret<f32>(0x77800000)));
  if (mode != HALF_F16_EXACT) return f;
  // inf / NaN (exponent 31) came out as ±2^16·1.m: setting the exponent bits gives ±inf / NaN with m kept
  return v128.or(f, v128.and(f32x4.ge(f32x4.abs(f), f32x4.splat(65536)), i32x4.splat(0x7f800000)));
}

/** One 16-bit weight (at address p) as float32: exact, for the columns after the last 8. */
// @ts-ignore: decorator
@inline function halfAt(p: usize, mode: i32): f32 {
  const h = <u32>load<u16>(p);
  return mode == HALF_BF16 ? reinterpret<f32>(h << 16) : h2f(h);
}

/** 1 when any of the n halves at p is inf or NaN (exponent all ones), else 0 (f16 may use the fast widening). */
export function halfSpecials(p: usize, n: i32): i32 {
  const e = i16x8.splat(0x7c00);
  let c = i16x8.splat(0);
  let j = 0;
  for (; j + 8 <= n; j += 8) c = v128.or(c, i16x8.eq(v128.and(v128.load(p + (<usize>j << 1)), e), e));
  let any = v128.any_true(c) ? 1 : 0;
  for (; j < n; j++) if ((load<u16>(p + (<usize>j << 1)) & 0x7c00) == 0x7c00) any = 1;
  return any;
}

/** 1 when the half at the start of any of `n` blocks of `blockBytes` at p (a ggml block scale) is inf or NaN, else 0. */
export function blockScaleSpecials(p: usize, n: i32, blockBytes: i32): i32 {
  let any = 0;
  for (let b = 0; b < n; b++) any |= <i32>((load<u16>(p + <usize>b * <usize>blockBytes) & 0x7c00) == 0x7c00);
  return any;
}

/** The tail of one 16-bit product: hsum(acc) plus the columns from n8 on, one by one. */
// @ts-ignore: decorator
@inline function halfTail(acc: v128, r: usize, x: usize, n8: i32, cols: i32, mode: i32): f32 {
  let s = hsum(acc);
  for (let j = n8; j < cols; j++) s += halfAt(r + (<usize>j << 1), mode) * load<f32>(x + (<usize>j << 2));
  return s;
}

/**
 * out = W · x for 16-bit weights, four rows at a time sharing each load of x: rows i, i + q,
 * i + 2q, i + 3q as in matvecQ4Q8 (four streams in separate pages).
 */
// @ts-ignore: decorator
@inline function matvecHalfBy(out: usize, x: usize, w: usize, rows: i32, cols: i32, mode: i32): void {
  const rowBytes = <usize>cols << 1;
  const n8 = cols & ~7;
  const q = (rows + 3) >> 2;
  for (let i = 0; i < q; i++) {
    const i1 = i + q < rows ? i + q : i, i2 = i + 2 * q < rows ? i + 2 * q : i, i3 = i + 3 * q < rows ? i + 3 * q : i;
    const r0 = w + <usize>i * rowBytes;
    const r1 = w + <usize>i1 * rowBytes;
    const r2 = w + <usize>i2 * rowBytes;
    const r3 = w + <usize>i3 * rowBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (let j = 0; j < n8; j += 8) {
      const o = <usize>j << 1;
      const xl = v128.load(x + (o << 1));
      const xh = v128.load(x + (o << 1), 16);
      const h0 = v128.load(r0 + o), h1 = v128.load(r1 + o), h2 = v128.load(r2 + o), h3 = v128.load(r3 + o);
      a0 = f32x4.add(f32x4.add(a0, f32x4.mul(halfToF32(hiHalves(h0, 0), mode), xl)), f32x4.mul(halfToF32(hiHalves(h0, 1), mode), xh));
      a1 = f32x4.add(f32x4.add(a1, f32x4.mul(halfToF32(hiHalves(h1, 0), mode), xl)), f32x4.mul(halfToF32(hiHalves(h1, 1), mode), xh));
      a2 = f32x4.add(f32x4.add(a2, f32x4.mul(halfToF32(hiHalves(h2, 0), mode), xl)), f32x4.mul(halfToF32(hiHalves(h2, 1), mode), xh));
      a3 = f32x4.add(f32x4.add(a3, f32x4.mul(halfToF32(hiHalves(h3, 0), mode), xl)), f32x4.mul(halfToF32(hiHalves(h3, 1), mode), xh));
    }
    store<f32>(out + (<usize>i3 << 2), halfTail(a3, r3, x, n8, cols, mode));
    store<f32>(out + (<usize>i2 << 2), halfTail(a2, r2, x, n8, cols, mode));
    store<f32>(out + (<usize>i1 << 2), halfTail(a1, r1, x, n8, cols, mode));
    store<f32>(out + (<usize>i << 2), halfTail(a0, r0, x, n8, cols, mode));
  }
}

/** 16-bit weights: IEEE half (finite only), bfloat16, IEEE half with inf / NaN (one function each, so each inner loop is specialized). */
export function matvecF16(out: usize, x: usize, w: usize, rows: i32, cols: i32): void {
  matvecHalfBy(out, x, w, rows, cols, HALF_F16);
}

export function matvecBf16(out: usize, x: usize, w: usize, rows: i32, cols: i32): void {
  matvecHalfBy(out, x, w, rows, cols, HALF_BF16);
}

export function matvecF16Exact(out: usize, x: usize, w: usize, rows: i32, cols: i32): void {
  matvecHalfBy(out, x, w, rows, cols, HALF_F16_EXACT);
}

// ---------------------------------------------------------------------------------------------
// llama2.c int8 groups (runq.c): W[i, j] ≈ q[i, j] · s[(i·cols + j) / gs]

/**
 * runq.c's `quantize`: per group of `gs`, scale = max|x| / 127 and q = round(x / scale), C's
 * roundf (half away from zero). Writes `xq` (n int8) and `xs` (n / gs float32 scales).
 */
export function quantizeGroups(xq: usize, xs: usize, x: usize, n: i32, gs: i32): void {
  for (let g = 0; g < n / gs; g++) {
    const base = <usize>(g * gs);
    let wmax: f32 = 0;
    for (let k = 0; k < gs; k++) wmax = max(wmax, abs(load<f32>(x + ((base + k) << 2))));
    const scale = wmax / 127;
    store<f32>(xs + (<usize>g << 2), scale);
    for (let k = 0; k < gs; k++) {
      const v = scale == 0 ? <f32>0 : load<f32>(x + ((base + k) << 2)) / scale;
      const t = trunc(v);
      store<i8>(xq + base + k, <i8>(abs(v - t) >= 0.5 ? t + (v < 0 ? -1 : 1) : t));
    }
  }
}

/** out = W · x for q8 weights, x already quantized by `quantizeGroups` with the same gs. */
export function matvecQ8Groups(out: usize, xq: usize, xs: usize, wq: usize, ws: usize, rows: i32, cols: i32, gs: i32): void {
  const groups = cols / gs;
  for (let i = 0; i < rows; i++) {
    const r = wq + <usize>i * <usize>cols;
    const rs = ws + (<usize>(i * groups) << 2);
    if ((gs & 15) == 0) {
      // whole 16-byte chunks: exact int32 group sums, scaled in float32 lanes
      let acc = f32x4.splat(0);
      for (let g = 0; g < groups; g++) {
        const o = <usize>(g * gs);
        let isum = i32x4.splat(0);
        for (let k = 0; k < gs; k += 16) isum = i32x4.add(isum, dot16(v128.load(r + o + k), v128.load(xq + o + k)));
        const sc = load<f32>(rs + (<usize>g << 2)) * load<f32>(xs + (<usize>g << 2));
        acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(sc)));
      }
      store<f32>(out + (<usize>i << 2), hsum(acc));
    } else {
      // small groups (stories260K uses 4): plain integer loops
      let val: f32 = 0;
      for (let g = 0; g < groups; g++) {
        const o = <usize>(g * gs);
        let ival: i32 = 0;
        for (let k = 0; k < gs; k++) ival += <i32>load<i8>(r + o + k) * <i32>load<i8>(xq + o + k);
        val += <f32>ival * load<f32>(rs + (<usize>g << 2)) * load<f32>(xs + (<usize>g << 2));
      }
      store<f32>(out + (<usize>i << 2), val);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// ggml blocks. The activations are quantized once per product into blocks of 32 int16 values
// with a float32 scale each: xq (n int16), xs (n/32 float32 scales), xb (n/32 int32 sums of each
// block's q, for the K-quants' minimums). llama.cpp quantizes activations to int8 because x86's
// u8×i8 multiply-add is its fastest instruction; WebAssembly (without relaxed SIMD) widens int8 to
// int16 before `i32x4.dot_i16x8_s` anyway, so int16 activations cost nothing extra here (one load
// instead of a load and a widening) and are 256 times finer: the products stay exact in int32
// (|w| ≤ 128, |q| ≤ 32767, 8 products per lane per block).
//
// Q4_0 takes its activations at ±Q4_RANGE = ±1927 (11 bits and a sign, still 15 times finer than
// llama.cpp's int8): its matvec multiplies 16-bit lanes holding four nibbles each by differences
// x_b − 16·x_a, which must fit int16 (17 · 1927 ≤ 32767; see matvecQ4_0). Every Q4_0 product
// (matvec, the row tiles, the panels) quantizes at that range, so they agree bit for bit.

const Q8_RANGE: f32 = 32767;
const Q4_RANGE: f32 = 1927;

export function quantizeBlocks32(xq: usize, xs: usize, xb: usize, x: usize, n: i32): void {
  quantizeBlocksBy(xq, xs, xb, x, n, 64, 4, Q8_RANGE);
}

/**
 * quantizeBlocks32 with block b's values at xq + b·qStep and its scale and sum at xs / xb + b·sStep,
 * the values in ±range.
 */
// @ts-ignore: decorator
@inline function quantizeBlocksBy(xq: usize, xs: usize, xb: usize, x: usize, n: i32, qStep: usize, sStep: usize, range: f32): void {
  // in SIMD lanes, with the scalar definition's values: the largest |x| (max is exact in any
  // order), q = nearest(x · id) (f32x4.nearest rounds half to even as `nearest`), the sum exact
  for (let b = 0; b < n >> 5; b++) {
    const xp = x + (<usize>b << 7);
    let m = f32x4.splat(0);
    for (let k = 0; k < 32; k += 4) m = f32x4.max(m, f32x4.abs(v128.load(xp + (<usize>k << 2))));
    const amax = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
    const d = amax / range;
    const id = f32x4.splat(d != 0 ? 1 / d : 0);
    let sum = i32x4.splat(0);
    const qp = xq + <usize>b * qStep;
    for (let k = 0; k < 32; k += 8) {
      const p = xp + (<usize>k << 2);
      const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), id)));
      const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), id)));
      v128.store(qp + (<usize>k << 1), i16x8.narrow_i32x4_s(q0, q1));
      sum = i32x4.add(sum, i32x4.add(q0, q1));
    }
    store<f32>(xs + <usize>b * sStep, d);
    store<i32>(xb + <usize>b * sStep, i32x4.extract_lane(sum, 0) + i32x4.extract_lane(sum, 1) + i32x4.extract_lane(sum, 2) + i32x4.extract_lane(sum, 3));
  }
}

/**
 * The nv vectors of the table xTab, quantized as quantizeBlocks32 for matmulQ8_0: in groups of
 * four (the last one filled up with the last vector), each group's blocks interleaved, block b of
 * vector v at xq + g·8n + b·256 + v·64 (int16 values) and xs / xb + g·n/2 + b·16 + v·4 (scale,
 * sum), so one pointer walks the four vectors' blocks together.
 */
export function quantizeBlocks32x4(xq: usize, xs: usize, xb: usize, xTab: usize, nv: i32, n: i32): void {
  for (let v = 0; v < ((nv + 3) & ~3); v++) {
    const g = <usize>(v >> 2), l = <usize>(v & 3);
    quantizeBlocksBy(xq + g * (<usize>n << 3) + (l << 6), xs + g * (<usize>n >> 1) + (l << 2), xb + g * (<usize>n >> 1) + (l << 2), entry(xTab, v, nv), n, 256, 16, Q8_RANGE);
  }
}

/**
 * Q4_0's activations: quantizeBlocks32 at ±Q4_RANGE into xq, xs, xb (for the rows a matvec takes
 * block by block, see matvecQ4_0), and the same values as matvecQ4_0's 72-byte records at
 * xc + 72b: for each 4-byte piece t (0 … 3) of a row's 16 quant bytes and each of its two 16-bit
 * lanes e (bytes 4t+2e, 4t+2e+1), whose nibbles are the weights j, j+16, j+1, j+17 (j = 4t+2e),
 * the int16 values x_j, x_{j+16} − 16·x_j, x_{j+1} − 16·x_{j+16}, x_{j+17} − 16·x_{j+1} at
 * 16t + 4i + 2e (i = 0 … 3); then the block's scale (f32) at 64 and 8 · (Σ q − Σ of the eight
 * x_{j+17}) (i32) at 68. n: a multiple of 32.
 */
export function quantizeBlocksQ4(xq: usize, xs: usize, xb: usize, xc: usize, x: usize, n: i32): void {
  quantizeBlocksBy(xq, xs, xb, x, n, 64, 4, Q4_RANGE);
  for (let b = 0; b < n >> 5; b++) {
    const q = xq + (<usize>b << 6);
    const q0 = v128.load(q), q1 = v128.load(q, 16), q2 = v128.load(q, 32), q3 = v128.load(q, 48);
    // lane k = 2t + e of each: x_{2k}, x_{2k+1}, x_{2k+16}, x_{2k+17}
    const ev = i8x16.shuffle(q0, q1, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
    const od = i8x16.shuffle(q0, q1, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    const ev2 = i8x16.shuffle(q2, q3, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
    const od2 = i8x16.shuffle(q2, q3, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
    const r = xc + <usize>b * 72;
    // lane pair t of the four, transposed: piece t's record at r + 16t
    storeT4(r, ev, i16x8.sub(ev2, i16x8.shl(ev, 4)), i16x8.sub(od, i16x8.shl(ev2, 4)), i16x8.sub(od2, i16x8.shl(od, 4)));
    const top = i32x4.extadd_pairwise_i16x8_s(od2);
    const topSum = i32x4.extract_lane(top, 0) + i32x4.extract_lane(top, 1) + i32x4.extract_lane(top, 2) + i32x4.extract_lane(top, 3);
    store<f32>(r, load<f32>(xs + (<usize>b << 2)), 64);
    store<i32>(r, (load<i32>(xb + (<usize>b << 2)) - topSum) << 3, 68);
  }
}

// Q8_0 and Q4_0: the order of a row's sum (matvec and matmul follow it, so they agree bit for bit):
// per block b, the exact integer dot product isum_b of the block's weights with the int16
// activations, then, in float32, sum += f32(isum_b) · (d_b · xs_b), block after block. The
// kernels keep four such sums in the lanes of one f32x4: four rows (matvec, sharing each load of
// the activations) or four vectors (matmul, sharing each load and unpacking of the weights). Each
// row's or vector's integer partial sums are folded into its lane by `hsum4i` (Q4_0's matvec:
// its lanes are rows already), and matvec's four scales d come out of one `halves4` (the fast
// widening: a matrix with an inf or NaN scale, found once by `blockScaleSpecials`, runs the
// reference op instead), so nothing per block is scalar.
//
// Their loops take the fast widening's two constants as loaded values (HALF_CONSTS, read once per
// call): V8 rematerializes a v128.const at every use in a loop (movabs, vmovq, vpunpcklqdq: three
// instructions per constant per iteration, 9 of the ~115 of a Q4_0 matvec iteration measured here).

const HALF_CONSTS = memory.data<i32>([0x8fffe000, 0x8fffe000, 0x8fffe000, 0x8fffe000, 0x77800000, 0x77800000, 0x77800000, 0x77800000], 16);

/** halfToF32(v, HALF_F16) with its mask and multiplier passed in (HALF_CONSTS). */
// @ts-ignore: decorator
@inline function halfToF32c(v: v128, mask: v128, mul: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shr_s(v, 3), mask), mul);
}

/** [Σ lanes of a, Σ b, Σ c, Σ d] (i32). */
// @ts-ignore: decorator
@inline function hsum4i(a: v128, b: v128, c: v128, d: v128): v128 {
  return fold4(fold2(a, b), fold2(c, d));
}

/** hsum4i's first step: [a0 + a2, a1 + a3, b0 + b2, b1 + b3]. */
// @ts-ignore: decorator
@inline function fold2(a: v128, b: v128): v128 {
  return i32x4.add(i8x16.shuffle(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), i8x16.shuffle(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
}

/** hsum4i's second step, from fold2(a, b) and fold2(c, d). */
// @ts-ignore: decorator
@inline function fold4(ab: v128, cd: v128): v128 {
  return i32x4.add(
    i8x16.shuffle(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27),
    i8x16.shuffle(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31),
  );
}

/** The four halves at p0 … p3 as float32 lanes (`mode`: HALF_F16 finite only, or HALF_F16_EXACT). */
// @ts-ignore: decorator
@inline function halves4(p0: usize, p1: usize, p2: usize, p3: usize, mode: i32): v128 {
  return halfToF32(gather4(p0, p1, p2, p3), mode);
}

/** The four halves at p0 … p3, each in the high half of an i32 lane, as `hiHalves` gives them. */
// @ts-ignore: decorator
@inline function gather4(p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  let h = v128.load16_lane(p0, i32x4.splat(0), 1);
  h = v128.load16_lane(p1, h, 3);
  h = v128.load16_lane(p2, h, 5);
  return v128.load16_lane(p3, h, 7);
}

/** Q8_0 block at p (34 B: half d; i8 qs[32]) · the int16 activation block a0..a3: four i32 partial sums. */
// @ts-ignore: decorator
@inline function dotQ8_0(p: usize, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(p, 2), a0), i32x4.dot_i16x8_s(v128.load8x8_s(p, 10), a1)),
    i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(p, 18), a2), i32x4.dot_i16x8_s(v128.load8x8_s(p, 26), a3)),
  );
}

/**
 * Q4_0 block at p (18 B: half d; u8 qs[16]; w[j] = d·((qs[j]&15) − 8), w[j+16] = d·((qs[j]>>4) − 8))
 * · the activation block, without the −8: the caller subtracts 8 · (the block's activation sum).
 * Each half of the 16 bytes is widened to u16 by its load, where the nibbles come apart with one
 * mask and one shift.
 */
// @ts-ignore: decorator
@inline function dotQ4_0(p: usize, a0: v128, a1: v128, a2: v128, a3: v128): v128 {
  const lo = v128.load8x8_u(p, 2), hi = v128.load8x8_u(p, 10);
  const m4 = i16x8.splat(15);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(lo, m4), a0), i32x4.dot_i16x8_s(v128.and(hi, m4), a1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.shr_u(lo, 4), a2), i32x4.dot_i16x8_s(i16x8.shr_u(hi, 4), a3)),
  );
}

/**
 * Q8_0 matvec, and Q4_0's on rows in ggml's layout (the last rows % 8 of a matrix, see
 * matvecQ4_0), four rows at a time: rows i, i + q, i + 2q, i + 3q (q = rows / 4 rounded up; a row
 * past the end repeats row i), so that the four streams lie in separate pages.
 */
// @ts-ignore: decorator
@inline function matvecQ4Q8(out: usize, xq: usize, xs: usize, xb: usize, w: usize, rows: i32, cols: i32, q4: bool): void {
  const nb = cols >> 5;
  const blockBytes: usize = q4 ? 18 : 34;
  const rowBytes = <usize>nb * blockBytes;
  const mask = v128.load(HALF_CONSTS), mul = v128.load(HALF_CONSTS, 16);
  const q = (rows + 3) >> 2;
  for (let i = 0; i < q; i++) {
    const i1 = i + q < rows ? i + q : i, i2 = i + 2 * q < rows ? i + 2 * q : i, i3 = i + 3 * q < rows ? i + 3 * q : i;
    let p0 = w + <usize>i * rowBytes;
    let p1 = w + <usize>i1 * rowBytes;
    let p2 = w + <usize>i2 * rowBytes;
    let p3 = w + <usize>i3 * rowBytes;
    let a = xq, sp = xs, bp = xb;
    const end = xs + (<usize>nb << 2);
    const o = out + (<usize>i << 2);
    let acc = f32x4.splat(0);
    while (sp < end) {
      const a0 = v128.load(a), a1 = v128.load(a, 16), a2 = v128.load(a, 32), a3 = v128.load(a, 48);
      // each row's sum is stored (into this group's first output, rewritten at the end) before the
      // next row is loaded: V8 issues a block's loads in order and its arithmetic as late as it can,
      // so without the stores all four rows' weights would be live at once and spill (a lane
      // stored as f32: one vmovss, where an i32 lane goes through a general register)
      let isum: v128;
      if (q4) {
        const s0 = dotQ4_0(p0, a0, a1, a2, a3);
        store<f32>(o, f32x4.extract_lane(s0, 0));
        const s1 = dotQ4_0(p1, a0, a1, a2, a3);
        store<f32>(o, f32x4.extract_lane(s1, 0));
        const s2 = dotQ4_0(p2, a0, a1, a2, a3);
        store<f32>(o, f32x4.extract_lane(s2, 0));
        const s3 = dotQ4_0(p3, a0, a1, a2, a3);
        isum = i32x4.sub(hsum4i(s0, s1, s2, s3), i32x4.shl(v128.load32_splat(bp), 3));
      } else {
        const s0 = dotQ8_0(p0, a0, a1, a2, a3);
        store<f32>(o, f32x4.extract_lane(s0, 0));
        const s1 = dotQ8_0(p1, a0, a1, a2, a3);
        store<f32>(o, f32x4.extract_lane(s1, 0));
        const s2 = dotQ8_0(p2, a0, a1, a2, a3);
        store<f32>(o, f32x4.extract_lane(s2, 0));
        const s3 = dotQ8_0(p3, a0, a1, a2, a3);
        isum = hsum4i(s0, s1, s2, s3);
      }
      const d = halfToF32c(gather4(p0, p1, p2, p3), mask, mul);
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.mul(d, v128.load32_splat(sp))));
      p0 += blockBytes; p1 += blockBytes; p2 += blockBytes; p3 += blockBytes;
      a += 64; sp += 4; bp += 4;
    }
    store<f32>(out + (<usize>i3 << 2), f32x4.extract_lane(acc, 3));
    store<f32>(out + (<usize>i2 << 2), f32x4.extract_lane(acc, 2));
    store<f32>(out + (<usize>i1 << 2), f32x4.extract_lane(acc, 1));
    store<f32>(o, f32x4.extract_lane(acc, 0));
  }
}

/**
 * Q8_0: rows [0, x8rows) regrouped in eights (x8rows a multiple of 8, see groupsQ8x8), the rows
 * after them in ggml's layout; activations from quantizeBlocks32.
 */
export function matvecQ8_0(out: usize, xq: usize, xs: usize, w: usize, rows: i32, cols: i32, x8rows: i32): void {
  groupsQ8x8(out, xq, xs, w, x8rows >> 3, cols >> 5, 64, 4);
  if (rows > x8rows) matvecQ4Q8(out + (<usize>x8rows << 2), xq, xs, 0, w + <usize>x8rows * <usize>(cols >> 5) * 34, rows - x8rows, cols, false);
}

// Q8_0 in groups of eight rows, as Q4_0 (below): its matvec on ggml's rows spends, per row and
// block, 11 SIMD ops on the products (four widening loads, four dots, three adds) and about 8
// more folding four rows' sums into lanes (`hsum4i`), gathering their scales and scaling. So the
// backend regroups a Q8_0 matrix once, in place, as it does Q4_0's (`repackQ8_0x8`): each eight
// rows 8g … 8g+7 (the last rows % 8 stay as they are) become one stream of 272-byte blocks,
//   bytes 0–15:   the eight rows' scales d (halves), row r's at 2r;
//   bytes 16–271: sixteen 16-byte pieces j = 0 … 15, row r's quant bytes 2j, 2j+1 at 16 + 16j + 2r;
// the same bytes as the eight rows. Half a piece widened to int16 (one load8x8_s) holds rows
// 4h … 4h+3's column pair j, so one `i32x4.dot_i16x8_s` against the pair (x_2j, x_2j+1)
// broadcast to every lane gives four rows' partial sums in their own lanes: no hsum4i, one
// 16-byte load for eight scales. Each block's sum is the same exact integer dot product as before,
// scaled in the same float32 operations, so the result equals the ggml-layout kernel's bit for
// bit. Measured on one thread (4096 columns, old and new alternating in one process, best of 100
// in L2 / 3 from memory): 26.6–27.2 GB/s against 23.1–23.4 in L2, 21.6–23.0 against 18.2–19.9
// from memory; a row and block now cost 4 widening loads, 4 dots, 4 adds and an eighth of the
// block's 16 broadcasts and its scaling.

/**
 * out[0 … 8·groups) for `groups` regrouped eight-row Q8_0 groups at w (nb blocks a row); the
 * activations' block b at xq + b·aStep (32 int16) with its scale at xs + b·sStep (one vector of
 * quantizeBlocks32: 64 and 4; of quantizeBlocks32x4's interleaved groups: 256 and 16).
 */
function groupsQ8x8(out: usize, xq: usize, xs: usize, w: usize, groups: i32, nb: i32, aStep: usize, sStep: usize): void {
  const groupBytes = <usize>nb * 272;
  const end = xs + <usize>nb * sStep;
  const mask = v128.load(HALF_CONSTS), mul = v128.load(HALF_CONSTS, 16);
  for (let g = 0; g < groups; g++) {
    let p = w + <usize>g * groupBytes, a = xq, sp = xs;
    const o = out + (<usize>g << 5);
    let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
    while (sp < end) {
      // the sixteen pieces written out, a lane stored after every four (as groupsQ4x8: without
      // the stores V8 issues the block's loads first and they spill; measured 0.8× the speed,
      // and with a store after every one or two pieces 0.9×; a loop over four quarters of four
      // pieces: 0.94×)
      let s0 = i32x4.splat(0), s1 = i32x4.splat(0), c: v128;
    c = v128.load32_splat(a, 0);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 16), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 24), c));
    c = v128.load32_splat(a, 4);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 32), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 40), c));
    c = v128.load32_splat(a, 8);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 48), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 56), c));
    c = v128.load32_splat(a, 12);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 64), c));
    store<f32>(o, f32x4.extract_lane(s0, 0));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 72), c));
    store<f32>(o, f32x4.extract_lane(s1, 0));
    c = v128.load32_splat(a, 16);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 80), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 88), c));
    c = v128.load32_splat(a, 20);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 96), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 104), c));
    c = v128.load32_splat(a, 24);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 112), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 120), c));
    c = v128.load32_splat(a, 28);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 128), c));
    store<f32>(o, f32x4.extract_lane(s0, 0));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 136), c));
    store<f32>(o, f32x4.extract_lane(s1, 0));
    c = v128.load32_splat(a, 32);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 144), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 152), c));
    c = v128.load32_splat(a, 36);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 160), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 168), c));
    c = v128.load32_splat(a, 40);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 176), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 184), c));
    c = v128.load32_splat(a, 44);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 192), c));
    store<f32>(o, f32x4.extract_lane(s0, 0));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 200), c));
    store<f32>(o, f32x4.extract_lane(s1, 0));
    c = v128.load32_splat(a, 48);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 208), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 216), c));
    c = v128.load32_splat(a, 52);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 224), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 232), c));
    c = v128.load32_splat(a, 56);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 240), c));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 248), c));
    c = v128.load32_splat(a, 60);
    s0 = i32x4.add(s0, i32x4.dot_i16x8_s(v128.load8x8_s(p, 256), c));
    store<f32>(o, f32x4.extract_lane(s0, 0));
    s1 = i32x4.add(s1, i32x4.dot_i16x8_s(v128.load8x8_s(p, 264), c));
      const x = v128.load32_splat(sp);
      const h = v128.load(p);
      const d0 = halfToF32c(hiHalves(h, 0), mask, mul), d1 = halfToF32c(hiHalves(h, 1), mask, mul);
      acc0 = f32x4.add(acc0, f32x4.mul(f32x4.convert_i32x4_s(s0), f32x4.mul(d0, x)));
      acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(s1), f32x4.mul(d1, x)));
      p += 272; a += aStep; sp += sStep;
    }
    v128.store(o, acc0);
    v128.store(o, acc1, 16);
  }
}

/** Transpose eight vectors of eight 16-bit lanes (lane k of v_r → lane r of out_k), out_k stored at dst + 16k. */
// @ts-ignore: decorator
@inline function transpose16x8(dst: usize, v0: v128, v1: v128, v2: v128, v3: v128, v4: v128, v5: v128, v6: v128, v7: v128): void {
  const a0 = i8x16.shuffle(v0, v1, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const a1 = i8x16.shuffle(v0, v1, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  const a2 = i8x16.shuffle(v2, v3, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const a3 = i8x16.shuffle(v2, v3, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  const a4 = i8x16.shuffle(v4, v5, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const a5 = i8x16.shuffle(v4, v5, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  const a6 = i8x16.shuffle(v6, v7, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const a7 = i8x16.shuffle(v6, v7, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  // lanes 0–3 of rows 0–3: b0 = [k0: r0..r3, k1: r0..r3], b1 = k2, k3; b2, b3 from lanes 4–7
  const b0 = i8x16.shuffle(a0, a2, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const b1 = i8x16.shuffle(a0, a2, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const b2 = i8x16.shuffle(a1, a3, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const b3 = i8x16.shuffle(a1, a3, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const c0 = i8x16.shuffle(a4, a6, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const c1 = i8x16.shuffle(a4, a6, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const c2 = i8x16.shuffle(a5, a7, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const c3 = i8x16.shuffle(a5, a7, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  v128.store(dst, i8x16.shuffle(b0, c0, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
  v128.store(dst, i8x16.shuffle(b0, c0, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 16);
  v128.store(dst, i8x16.shuffle(b1, c1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), 32);
  v128.store(dst, i8x16.shuffle(b1, c1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 48);
  v128.store(dst, i8x16.shuffle(b2, c2, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), 64);
  v128.store(dst, i8x16.shuffle(b2, c2, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 80);
  v128.store(dst, i8x16.shuffle(b3, c3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), 96);
  v128.store(dst, i8x16.shuffle(b3, c3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 112);
}

/**
 * Regroup rows [0, rows) (a multiple of 8) of a Q8_0 matrix at w in place, as groupsQ8x8 reads
 * them; tmp: eight rows' bytes of scratch. Returns 1, with the rows as they were, when one of
 * their block scales is inf or NaN (the reference op runs on such a matrix), else 0.
 */
export function repackQ8_0x8(w: usize, rows: i32, cols: i32, tmp: usize): i32 {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 34, groupBytes = rowBytes << 3;
  const e = i16x8.splat(0x7c00);
  for (let g = 0; g < rows >> 3; g++) {
    const r0 = w + <usize>g * groupBytes;
    let bad = i16x8.splat(0);
    for (let b = 0; b < nb; b++) {
      const s = r0 + <usize>b * 34, o = tmp + <usize>b * 272;
      const d = scales8(s, rowBytes);
      v128.store(o, d);
      bad = v128.or(bad, i16x8.eq(v128.and(d, e), e));
      // row r's pairs 0–7 (then 8–15) as the eight lanes of one vector, transposed: piece j holds lane j of each row
      for (let k: usize = 0; k < 32; k += 16) {
        const q = s + 2 + k;
        transpose16x8(o + 16 + (k << 3), v128.load(q), v128.load(q + rowBytes), v128.load(q + 2 * rowBytes), v128.load(q + 3 * rowBytes),
          v128.load(q + 4 * rowBytes), v128.load(q + 5 * rowBytes), v128.load(q + 6 * rowBytes), v128.load(q + 7 * rowBytes));
      }
    }
    if (v128.any_true(bad)) {
      ungroupQ8_0x8(w, g << 3, cols, tmp);
      return 1;
    }
    move16(r0, tmp, groupBytes);
  }
  return 0;
}

/** The inverse of repackQ8_0x8: rows [0, rows) (a multiple of 8) at w back in ggml's layout. */
export function ungroupQ8_0x8(w: usize, rows: i32, cols: i32, tmp: usize): void {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 34, groupBytes = rowBytes << 3;
  for (let g = 0; g < rows >> 3; g++) {
    const p = w + <usize>g * groupBytes;
    move16(tmp, p, groupBytes);
    for (let b = 0; b < nb; b++) {
      const o = tmp + <usize>b * 272;
      // pieces 0–7 (then 8–15) transposed back: row r's pairs, into a 128-byte buffer past the group
      const buf = tmp + groupBytes;
      for (let k: usize = 0; k < 2; k++) {
        const q = o + 16 + (k << 7);
        transpose16x8(buf + (k << 7), v128.load(q), v128.load(q, 16), v128.load(q, 32), v128.load(q, 48), v128.load(q, 64), v128.load(q, 80), v128.load(q, 96), v128.load(q, 112));
      }
      for (let r: usize = 0; r < 8; r++) {
        const d = p + r * rowBytes + <usize>b * 34;
        store<u16>(d, load<u16>(o + (r << 1)));
        v128.store(d + 2, v128.load(buf + (r << 4)));
        v128.store(d + 18, v128.load(buf + 128 + (r << 4)));
      }
    }
  }
}

// Q4_0 in groups of eight rows. A Q4_0 matvec spent ~14 SIMD ops per row and block unpacking and
// multiplying (load, two widenings, two masks, two shifts, four dots, three adds) and ~10 more per
// row and block folding four rows' sums into lanes (`hsum4i`), gathering their scales and
// scaling: 9–10 GB/s of weights on one thread of the bench machine, compute-bound. So the
// backend regroups a Q4_0 matrix once, in place, as the GGUF loader reads it or else when it is
// uploaded (`repackQ4_0x8`; src/backend/wasm/memory.ts WasmPlacement.placed): each eight
// rows 8g … 8g+7 (the last rows % 8 stay as they are) become one stream of 144-byte blocks,
//   bytes 0–15:  the eight rows' scales d (halves), row r's at 2r;
//   bytes 16–143: four 32-byte pieces t = 0 … 3, row r's at 16 + 32t + 4r: its quant bytes
//                 4t … 4t+3 as in ggml, but with bit 7 of bytes 4t+1 and 4t+3 flipped;
// the same bytes as the eight rows, so the group starts where row 8g did. Half a piece (rows
// 0–3 or 4–7) is eight 16-bit lanes, two per row, lanes 2r and 2r+1 holding four nibbles each;
// with the flipped bit the top nibble, read as part of a signed int16, is its weight q − 8. For a
// lane L = n0 + 16·n1 + 256·n2 + 4096·(n3 − 8) and arithmetic shifts h1 = L >> 4, h2 = L >> 8,
// h3 = L >> 12:
//   n0·x0 + n1·x1 + n2·x2 + (n3 − 8)·x3 = L·x0 + h1·(x1 − 16·x0) + h2·(x2 − 16·x1) + h3·(x3 − 16·x2),
// so half a piece is three shifts and four `i32x4.dot_i16x8_s`, each against one activation pair
// broadcast to the lanes (quantizeBlocksQ4's records; the eight rows share the broadcasts), and
// the dots' i32 lanes are the rows' sums already: no hsum4i, one 16-byte load for the scales, one
// pointer. Less the block's 8 · Σ x of the nibbles 0–2 (their −8), each block's sum is the exact
// integer dot product as before, scaled in the same float32 operations. Measured on one thread
// (256 … 32000 rows × 2048 or 5632 columns, old and new kernels alternating in one process, best
// of 15): 14.7–16.0 GB/s against 8.6–10.3 (1.55–1.8×); groups of four rows reached 1.4×, a
// layout that keeps ggml's rows 1.2× (the same 16-bit lanes, sums folded by hsum4i). A row and
// block now cost 3 shifts, 4 dots and 4 adds, and an eighth of the block's 16 broadcasts and its
// scaling. The int16 products stay exact: |L·x0| ≤ 32768·1927, and a lane's total stays below 2^31.

/** Half h (rows 4h … 4h+3) of piece t of the group block at p, times the activation pairs c0 … c3: their i32 sums. */
// @ts-ignore: decorator
@inline function halfPieceQ4x8(p: usize, t: i32, h: i32, c0: v128, c1: v128, c2: v128, c3: v128): v128 {
  const l = v128.load(p + 16 + (<usize>t << 5) + (<usize>h << 4));
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(l, c0), i32x4.dot_i16x8_s(i16x8.shr_s(l, 4), c1)),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.shr_s(l, 8), c2), i32x4.dot_i16x8_s(i16x8.shr_s(l, 12), c3)),
  );
}

/**
 * out[0 … 8·groups) for `groups` regrouped eight-row groups at w (nb blocks a row), activations
 * from quantizeBlocksQ4's records at xc.
 */
function groupsQ4x8(out: usize, xc: usize, w: usize, groups: i32, nb: i32): void {
  const groupBytes = <usize>nb * 144;
  const end = xc + <usize>nb * 72;
  const mask = v128.load(HALF_CONSTS), mul = v128.load(HALF_CONSTS, 16);
  for (let g = 0; g < groups; g++) {
    let p = w + <usize>g * groupBytes, a = xc;
    const o = out + (<usize>g << 5);
    let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
    while (a < end) {
      // the four pieces written out, a lane stored after each half piece, as in matvecQ4Q8: V8
      // would issue every load and broadcast of the block first, and they spill (measured: 0.6×
      // the speed; a loop over the pieces costs a counter and V8's stack check each time)
      let c = v128.load32_splat(a), d = v128.load32_splat(a, 4), e = v128.load32_splat(a, 8), f = v128.load32_splat(a, 12);
      let s0 = halfPieceQ4x8(p, 0, 0, c, d, e, f);
      store<f32>(o, f32x4.extract_lane(s0, 0));
      let s1 = halfPieceQ4x8(p, 0, 1, c, d, e, f);
      store<f32>(o, f32x4.extract_lane(s1, 0));
      c = v128.load32_splat(a, 16); d = v128.load32_splat(a, 20); e = v128.load32_splat(a, 24); f = v128.load32_splat(a, 28);
      s0 = i32x4.add(s0, halfPieceQ4x8(p, 1, 0, c, d, e, f));
      store<f32>(o, f32x4.extract_lane(s0, 0));
      s1 = i32x4.add(s1, halfPieceQ4x8(p, 1, 1, c, d, e, f));
      store<f32>(o, f32x4.extract_lane(s1, 0));
      c = v128.load32_splat(a, 32); d = v128.load32_splat(a, 36); e = v128.load32_splat(a, 40); f = v128.load32_splat(a, 44);
      s0 = i32x4.add(s0, halfPieceQ4x8(p, 2, 0, c, d, e, f));
      store<f32>(o, f32x4.extract_lane(s0, 0));
      s1 = i32x4.add(s1, halfPieceQ4x8(p, 2, 1, c, d, e, f));
      store<f32>(o, f32x4.extract_lane(s1, 0));
      c = v128.load32_splat(a, 48); d = v128.load32_splat(a, 52); e = v128.load32_splat(a, 56); f = v128.load32_splat(a, 60);
      s0 = i32x4.add(s0, halfPieceQ4x8(p, 3, 0, c, d, e, f));
      store<f32>(o, f32x4.extract_lane(s0, 0));
      s1 = i32x4.add(s1, halfPieceQ4x8(p, 3, 1, c, d, e, f));
      const corr = v128.load32_splat(a, 68), xs = v128.load32_splat(a, 64);
      const h = v128.load(p);
      const d0 = halfToF32c(hiHalves(h, 0), mask, mul), d1 = halfToF32c(hiHalves(h, 1), mask, mul);
      acc0 = f32x4.add(acc0, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(s0, corr)), f32x4.mul(d0, xs)));
      acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(s1, corr)), f32x4.mul(d1, xs)));
      p += 144;
      a += 72;
    }
    v128.store(o, acc0);
    v128.store(o, acc1, 16);
  }
}

/**
 * Q4_0: rows [0, x8rows) regrouped (x8rows a multiple of 8), activations from quantizeBlocksQ4's
 * records at xc; the rows after them in ggml's layout, from its xq, xs, xb.
 */
export function matvecQ4_0(out: usize, xc: usize, xq: usize, xs: usize, xb: usize, w: usize, rows: i32, cols: i32, x8rows: i32): void {
  groupsQ4x8(out, xc, w, x8rows >> 3, cols >> 5);
  if (rows > x8rows) matvecQ4Q8(out + (<usize>x8rows << 2), xq, xs, xb, w + <usize>x8rows * <usize>(cols >> 5) * 18, rows - x8rows, cols, true);
}

/**
 * The eight halves at p, p + rowBytes, … p + 7·rowBytes (eight rows' block scales) as one v128,
 * gathered in general registers: eight 2-byte stores, read back by the 16-byte moves of the
 * repacks, stall store forwarding, and eight lane inserts into one v128 are a chain of dependent
 * shuffles (measured in cache for repackQ4_0x8: 7.8, 9.7 and then 14 GB/s).
 */
// @ts-ignore: decorator
@inline function scales8(p: usize, rowBytes: usize): v128 {
  const lo = <u64>load<u16>(p) | (<u64>load<u16>(p + rowBytes) << 16) | (<u64>load<u16>(p + 2 * rowBytes) << 32) | (<u64>load<u16>(p + 3 * rowBytes) << 48);
  const hi = <u64>load<u16>(p + 4 * rowBytes) | (<u64>load<u16>(p + 5 * rowBytes) << 16) | (<u64>load<u16>(p + 6 * rowBytes) << 32) | (<u64>load<u16>(p + 7 * rowBytes) << 48);
  return i64x2.replace_lane(i64x2.splat(lo), 1, hi);
}

/**
 * Eight rows of nb Q4_0 blocks from r0 on (rowBytes apart) regrouped into dst (one group, 144·nb
 * bytes), as matvecQ4_0 reads them; 1 when one of their scales is inf or NaN, else 0.
 */
// @ts-ignore: decorator
@inline function regroup8(dst: usize, r0: usize, rowBytes: usize, nb: i32): i32 {
  const flip = i16x8.splat(-32768); // bit 7 of each odd byte
  const e = i16x8.splat(0x7c00);
  let bad = i16x8.splat(0);
  for (let b = 0; b < nb; b++) {
    const s = r0 + <usize>b * 18, o = dst + <usize>b * 144;
    const d = scales8(s, rowBytes);
    v128.store(o, d);
    bad = v128.or(bad, i16x8.eq(v128.and(d, e), e));
    for (let h = 0; h < 2; h++) {
      const q = s + <usize>(h << 2) * rowBytes;
      const q0 = v128.xor(v128.load(q, 2), flip), q1 = v128.xor(v128.load(q + rowBytes, 2), flip);
      const q2 = v128.xor(v128.load(q + 2 * rowBytes, 2), flip), q3 = v128.xor(v128.load(q + 3 * rowBytes, 2), flip);
      storeT4By32(o + 16 + (<usize>h << 4), q0, q1, q2, q3);
    }
  }
  return v128.any_true(bad) ? 1 : 0;
}

/** The inverse of regroup8: the group at src (144·nb bytes) back into eight rows from r0 on. */
// @ts-ignore: decorator
@inline function ungroup8(r0: usize, rowBytes: usize, src: usize, nb: i32): void {
  const flip = i16x8.splat(-32768);
  for (let b = 0; b < nb; b++) {
    const o = src + <usize>b * 144;
    for (let r = 0; r < 8; r++) {
      const d = r0 + <usize>r * rowBytes + <usize>b * 18, q = o + 16 + (<usize>r << 2);
      store<u16>(d, load<u16>(o + (<usize>r << 1)));
      const v = v128.load32_lane(q + 96, v128.load32_lane(q + 64, v128.load32_lane(q + 32, v128.load32_zero(q), 1), 2), 3);
      v128.store(d + 2, v128.xor(v, flip));
    }
  }
}

/** n bytes (a multiple of 16) from src to dst with SIMD moves (memory.copy on a shared memory is a slow runtime call). */
// @ts-ignore: decorator
@inline function move16(dst: usize, src: usize, n: usize): void {
  for (let k: usize = 0; k < n; k += 16) v128.store(dst + k, v128.load(src + k));
}

/**
 * Regroup rows [0, rows) (a multiple of 8) of a Q4_0 matrix at w in place, as matvecQ4_0 reads
 * them (see above); tmp: eight rows' bytes of scratch. Returns 1, with the rows as they were,
 * when one of their block scales is inf or NaN (the reference op runs on such a matrix), else 0:
 * the check costs nothing here, where a pass of its own over the scales reads the whole matrix.
 * 14 GB/s in cache on one thread of the bench machine, 6 from memory.
 */
export function repackQ4_0x8(w: usize, rows: i32, cols: i32, tmp: usize): i32 {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 18, groupBytes = rowBytes << 3;
  for (let g = 0; g < rows >> 3; g++) {
    const r0 = w + <usize>g * groupBytes;
    if (regroup8(tmp, r0, rowBytes, nb)) {
      ungroupQ4_0x8(w, g << 3, cols, tmp);
      return 1;
    }
    move16(r0, tmp, groupBytes);
  }
  return 0;
}

/** The inverse of repackQ4_0x8: rows [0, rows) (a multiple of 8) at w back in ggml's layout. */
export function ungroupQ4_0x8(w: usize, rows: i32, cols: i32, tmp: usize): void {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 18, groupBytes = rowBytes << 3;
  for (let g = 0; g < rows >> 3; g++) {
    const p = w + <usize>g * groupBytes;
    move16(tmp, p, groupBytes);
    ungroup8(p, rowBytes, tmp, nb);
  }
}

/**
 * Q4_K (144 B per 256 weights: half d, dmin; u8 scales[12]; u8 qs[128]). Sub-block s (32 weights)
 * has a 6-bit scale sc and min m: w = d·sc·q − dmin·m. Chunk c (32 bytes of qs) holds sub-block 2c
 * in its low nibbles and 2c+1 in its high nibbles. Per sub-block, with activation block scale xs
 * and sum bsum:  Σ w·x = xs·(d·sc·Σ q·xq − dmin·m·bsum).
 *
 * Four rows at a time (a quarter of the matrix apart, as matvecQ4Q8), in the lanes of f32x4
 * sums: each row's sum is Σ over sub-blocks of f32(isum)·((d·sc)·xs), less Σ (dmin·m)·(xs·bsum),
 * in that order. The 6-bit scales and mins are unpacked for the four rows together in SIMD
 * (`scalesK4`), not one by one.
 */
export function matvecQ4_K(out: usize, xq: usize, xs: usize, xb: usize, w: usize, rows: i32, cols: i32): void {
  const nb = cols >> 8;
  const rowBytes = <usize>nb * 144;
  const q = (rows + 3) >> 2;
  for (let i = 0; i < q; i++) {
    const i1 = i + q < rows ? i + q : i, i2 = i + 2 * q < rows ? i + 2 * q : i, i3 = i + 3 * q < rows ? i + 3 * q : i;
    let p0 = w + <usize>i * rowBytes, p1 = w + <usize>i1 * rowBytes, p2 = w + <usize>i2 * rowBytes, p3 = w + <usize>i3 * rowBytes;
    const o = out + (<usize>i << 2);
    let acc = f32x4.splat(0), mins = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const d = halves4(p0, p1, p2, p3, HALF_F16_EXACT);
      const dmin = halves4(p0 + 2, p1 + 2, p2 + 2, p3 + 2, HALF_F16_EXACT);
      // 4×4 transpose of the rows' unpacked scales: lane r of scLo = row r's sc0..sc3 (a byte each)
      const s0 = scalesK4(p0), s1 = scalesK4(p1), s2 = scalesK4(p2), s3 = scalesK4(p3);
      const t01l = i8x16.shuffle(s0, s1, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
      const t01h = i8x16.shuffle(s0, s1, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
      const t23l = i8x16.shuffle(s2, s3, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
      const t23h = i8x16.shuffle(s2, s3, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
      const scLo = i8x16.shuffle(t01l, t23l, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      const scHi = i8x16.shuffle(t01l, t23l, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
      const mLo = i8x16.shuffle(t01h, t23h, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      const mHi = i8x16.shuffle(t01h, t23h, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
      // the eight sub-blocks written out, so that every shift and lane choice is a constant
      const ab = xq + (<usize>b << 9), sb = xs + (<usize>b << 5), bb = xb + (<usize>b << 5);
      // the four 32-byte chunks, each its two sub-blocks (low nibbles 2c, high 2c+1), in order
      acc = pairQ4K(acc, 0, p0, p1, p2, p3, o, ab, sb, d, scLo);
      acc = pairQ4K(acc, 1, p0, p1, p2, p3, o, ab, sb, d, scLo);
      acc = pairQ4K(acc, 2, p0, p1, p2, p3, o, ab, sb, d, scHi);
      acc = pairQ4K(acc, 3, p0, p1, p2, p3, o, ab, sb, d, scHi);
      mins = minsQ4K(mins, 0, sb, bb, dmin, mLo);
      mins = minsQ4K(mins, 1, sb, bb, dmin, mLo);
      mins = minsQ4K(mins, 2, sb, bb, dmin, mLo);
      mins = minsQ4K(mins, 3, sb, bb, dmin, mLo);
      mins = minsQ4K(mins, 4, sb, bb, dmin, mHi);
      mins = minsQ4K(mins, 5, sb, bb, dmin, mHi);
      mins = minsQ4K(mins, 6, sb, bb, dmin, mHi);
      mins = minsQ4K(mins, 7, sb, bb, dmin, mHi);
      p0 += 144; p1 += 144; p2 += 144; p3 += 144;
    }
    const r = f32x4.sub(acc, mins);
    store<f32>(out + (<usize>i3 << 2), f32x4.extract_lane(r, 3));
    store<f32>(out + (<usize>i2 << 2), f32x4.extract_lane(r, 2));
    store<f32>(out + (<usize>i1 << 2), f32x4.extract_lane(r, 1));
    store<f32>(o, f32x4.extract_lane(r, 0));
  }
}


/** The low nibbles of the 32-byte Q4_K chunk at q (one sub-block) · the activation block at a: four i32 partial sums. */
// @ts-ignore: decorator
@inline function nibLo(q: usize, a: usize, m4: v128): v128 {
  const qa = v128.load(q), qb = v128.load(q, 16);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(v128.and(i16x8.extend_low_i8x16_u(qa), m4), v128.load(a)), i32x4.dot_i16x8_s(v128.and(i16x8.extend_high_i8x16_u(qa), m4), v128.load(a, 16))),
    i32x4.add(i32x4.dot_i16x8_s(v128.and(i16x8.extend_low_i8x16_u(qb), m4), v128.load(a, 32)), i32x4.dot_i16x8_s(v128.and(i16x8.extend_high_i8x16_u(qb), m4), v128.load(a, 48))),
  );
}
/** The high nibbles of the chunk at q (the next sub-block) · the activation block at a + 64 (a shift, no mask: the bytes were widened unsigned). */
// @ts-ignore: decorator
@inline function nibHi(q: usize, a: usize): v128 {
  const qa = v128.load(q), qb = v128.load(q, 16);
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(i16x8.shr_u(i16x8.extend_low_i8x16_u(qa), 4), v128.load(a, 64)), i32x4.dot_i16x8_s(i16x8.shr_u(i16x8.extend_high_i8x16_u(qa), 4), v128.load(a, 80))),
    i32x4.add(i32x4.dot_i16x8_s(i16x8.shr_u(i16x8.extend_low_i8x16_u(qb), 4), v128.load(a, 96)), i32x4.dot_i16x8_s(i16x8.shr_u(i16x8.extend_high_i8x16_u(qb), 4), v128.load(a, 112))),
  );
}
/**
 * Q4_K chunk c (sub-blocks 2c and 2c+1: its low and high nibbles) of four rows' super-blocks at
 * p0 … p3 (activation blocks from ab, their scales from sb): acc + f32(isum)·((d·sc)·xs) for
 * sub-block 2c, then for 2c+1. Each row's two partial sums are folded with the next row's as soon
 * as both exist (hsum4i in two steps), and a lane is stored after each pair of rows (`o`, as
 * matvecQ4Q8), so that few sums are live at once. Measured (1 thread, 2048 columns, each build
 * run 3 s first so that V8 has optimized it, then alternating; best of 200 in L2 / 3 from memory):
 * 6.6 GB/s in L2 and 4.9–5.0 from memory, against 5.8 and 4.2–4.3 for a sub-block at a time;
 * loading and widening each row's chunk once for both sub-blocks: 5.2 and 3.4–4.0.
 */
// @ts-ignore: decorator
@inline function pairQ4K(acc: v128, c: i32, p0: usize, p1: usize, p2: usize, p3: usize, o: usize, ab: usize, sb: usize, d: v128, scs: v128): v128 {
  const a = ab + (<usize>c << 7);
  const qo = 16 + (<usize>c << 5);
  const m4 = i16x8.splat(15);
  const l01 = fold2(nibLo(p0 + qo, a, m4), nibLo(p1 + qo, a, m4));
  store<i32>(o, i32x4.extract_lane(l01, 0));
  const l23 = fold2(nibLo(p2 + qo, a, m4), nibLo(p3 + qo, a, m4));
  store<i32>(o, i32x4.extract_lane(l23, 0));
  const h01 = fold2(nibHi(p0 + qo, a), nibHi(p1 + qo, a));
  store<i32>(o, i32x4.extract_lane(h01, 0));
  const h23 = fold2(nibHi(p2 + qo, a), nibHi(p3 + qo, a));
  const s = c << 1;
  const sc0 = f32x4.mul(f32x4.mul(d, byteLanes(scs, s & 3)), f32x4.splat(load<f32>(sb + (<usize>s << 2))));
  acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(fold4(l01, l23)), sc0));
  const sc1 = f32x4.mul(f32x4.mul(d, byteLanes(scs, (s + 1) & 3)), f32x4.splat(load<f32>(sb + (<usize>(s + 1) << 2))));
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(fold4(h01, h23)), sc1));
}



/** Byte `j` (0 … 3) of each i32 lane of v, as f32 lanes. */
// @ts-ignore: decorator
@inline function byteLanes(v: v128, j: i32): v128 {
  return f32x4.convert_i32x4_s(v128.and(i32x4.shr_u(v, j << 3), i32x4.splat(0xff)));
}


/** The mins of sub-block `s`: mins + (dmin·m)·(xs·bsum). */
// @ts-ignore: decorator
@inline function minsQ4K(mins: v128, s: i32, sb: usize, bb: usize, dmin: v128, ms: v128): v128 {
  const xsum = load<f32>(sb + (<usize>s << 2)) * <f32>load<i32>(bb + (<usize>s << 2));
  return f32x4.add(mins, f32x4.mul(f32x4.mul(dmin, byteLanes(ms, s & 3)), f32x4.splat(xsum)));
}

/**
 * The 6-bit scales and mins of the Q4_K block at p, as bytes [sc0..sc7, m0..m7] (scaleMinK4 in
 * src/quant/ggml.ts): sc_j = q[j] & 63, m_j = q[j+4] & 63 for j < 4; for j ≥ 4 the low 4 bits come
 * from q[j+4] (sc: low nibble, m: high nibble) and the top 2 from the top bits of q[j−4] / q[j].
 */
// @ts-ignore: decorator
@inline function scalesK4(p: usize): v128 {
  const qv = v128.load(p, 4); // scales[0..12) and 4 bytes of qs, unused
  const t = i8x16.shuffle(qv, qv, 0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
  const lowMask = i8x16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0);
  const highNib = v128.and(i16x8.shr_u(t, 4), i8x16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15));
  const low = v128.or(v128.and(t, lowMask), highNib);
  const u = i8x16.shuffle(qv, i8x16.splat(0), 16, 16, 16, 16, 0, 1, 2, 3, 16, 16, 16, 16, 4, 5, 6, 7);
  return v128.or(low, i16x8.shr_u(v128.and(u, i8x16.splat(<i8>0xc0)), 2));
}


/**
 * Q6_K (210 B per 256 weights: u8 ql[128]; u8 qh[64]; i8 scales[16]; half d). Two halves of 128;
 * in half h, for l < 32 the four weights l, l+32, l+64, l+96 take 4 low bits from ql (low / high
 * nibble of ql[l] and ql[l+32]) and 2 high bits from qh[l]; w = d·sc·(q − 32), one scale per 16.
 *
 * Four rows at a time (a quarter of the matrix apart, as matvecQ4Q8) in f32x4 lanes: each row's
 * sum is Σ over its 16-weight groups, in the order below, of f32(isum)·((d·sc)·xs). The signed
 * scales are transposed for the four rows in SIMD, and the 16 groups are written out.
 */
export function matvecQ6_K(out: usize, xq: usize, xs: usize, w: usize, rows: i32, cols: i32): void {
  const nb = cols >> 8;
  const rowBytes = <usize>nb * 210;
  const q = (rows + 3) >> 2;
  for (let i = 0; i < q; i++) {
    const i1 = i + q < rows ? i + q : i, i2 = i + 2 * q < rows ? i + 2 * q : i, i3 = i + 3 * q < rows ? i + 3 * q : i;
    let p0 = w + <usize>i * rowBytes, p1 = w + <usize>i1 * rowBytes, p2 = w + <usize>i2 * rowBytes, p3 = w + <usize>i3 * rowBytes;
    const o = out + (<usize>i << 2);
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const d = halves4(p0 + 208, p1 + 208, p2 + 208, p3 + 208, HALF_F16_EXACT);
      // 4×4 transpose of the rows' 16 scales: lane r of sc0 = row r's scales 0..3 (a byte each), …
      const s0 = v128.load(p0, 192), s1 = v128.load(p1, 192), s2 = v128.load(p2, 192), s3 = v128.load(p3, 192);
      const t01l = i8x16.shuffle(s0, s1, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
      const t01h = i8x16.shuffle(s0, s1, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
      const t23l = i8x16.shuffle(s2, s3, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
      const t23h = i8x16.shuffle(s2, s3, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
      const sc0 = i8x16.shuffle(t01l, t23l, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      const sc1 = i8x16.shuffle(t01l, t23l, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
      const sc2 = i8x16.shuffle(t01h, t23h, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      const sc3 = i8x16.shuffle(t01h, t23h, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
      const a = xq + (<usize>b << 9), sb = xs + (<usize>b << 5);
      // half 0 (scales 0..7), then half 1 (8..15); in each, l = 0..15 then 16..31, groups k = 0..3
      acc = stepQ6K(acc, 0, 0, 0, p0, p1, p2, p3, o, a, sb, d, sc0);
      acc = stepQ6K(acc, 0, 0, 1, p0, p1, p2, p3, o, a, sb, d, sc0);
      acc = stepQ6K(acc, 0, 0, 2, p0, p1, p2, p3, o, a, sb, d, sc1);
      acc = stepQ6K(acc, 0, 0, 3, p0, p1, p2, p3, o, a, sb, d, sc1);
      acc = stepQ6K(acc, 0, 16, 0, p0, p1, p2, p3, o, a, sb, d, sc0);
      acc = stepQ6K(acc, 0, 16, 1, p0, p1, p2, p3, o, a, sb, d, sc0);
      acc = stepQ6K(acc, 0, 16, 2, p0, p1, p2, p3, o, a, sb, d, sc1);
      acc = stepQ6K(acc, 0, 16, 3, p0, p1, p2, p3, o, a, sb, d, sc1);
      acc = stepQ6K(acc, 1, 0, 0, p0, p1, p2, p3, o, a, sb, d, sc2);
      acc = stepQ6K(acc, 1, 0, 1, p0, p1, p2, p3, o, a, sb, d, sc2);
      acc = stepQ6K(acc, 1, 0, 2, p0, p1, p2, p3, o, a, sb, d, sc3);
      acc = stepQ6K(acc, 1, 0, 3, p0, p1, p2, p3, o, a, sb, d, sc3);
      acc = stepQ6K(acc, 1, 16, 0, p0, p1, p2, p3, o, a, sb, d, sc2);
      acc = stepQ6K(acc, 1, 16, 1, p0, p1, p2, p3, o, a, sb, d, sc2);
      acc = stepQ6K(acc, 1, 16, 2, p0, p1, p2, p3, o, a, sb, d, sc3);
      acc = stepQ6K(acc, 1, 16, 3, p0, p1, p2, p3, o, a, sb, d, sc3);
      p0 += 210; p1 += 210; p2 += 210; p3 += 210;
    }
    store<f32>(out + (<usize>i3 << 2), f32x4.extract_lane(acc, 3));
    store<f32>(out + (<usize>i2 << 2), f32x4.extract_lane(acc, 2));
    store<f32>(out + (<usize>i1 << 2), f32x4.extract_lane(acc, 1));
    store<f32>(o, f32x4.extract_lane(acc, 0));
  }
}

/**
 * Group k (0 … 3: weights l + 32k) for l = lc … lc + 15 of half h of a Q6_K super-block at p, as 16
 * int8 weights q − 32.
 */
// @ts-ignore: decorator
@inline function weightsQ6K(p: usize, h: i32, lc: i32, k: i32): v128 {
  const ql = p + (<usize>h << 6) + <usize>lc;
  const hb = v128.load(p + 128 + (<usize>h << 5) + <usize>lc);
  const l = v128.load(ql + (k & 1 ? 32 : 0)); // k = 0, 2: ql[l]; 1, 3: ql[l + 32]
  // shifts in i16 lanes (native, unlike i8x16's): the bits they carry across bytes are masked off
  const low = v128.and(k < 2 ? l : i16x8.shr_u(l, 4), i8x16.splat(15));
  // the two high bits: qh bits 2k, 2k+1 moved to bits 4, 5
  const high = k == 0 ? i16x8.shl(hb, 4) : k == 1 ? i16x8.shl(hb, 2) : k == 2 ? hb : i16x8.shr_u(hb, 2);
  return i8x16.sub(v128.or(low, v128.and(high, i8x16.splat(0x30))), i8x16.splat(32));
}

/**
 * One Q6_K group (16 weights) of four rows: acc + f32(isum)·((d·sc)·xs), with sc from byte
 * (scale index & 3) of `scs` (the transposed scales) and the activations' half-block.
 */
// @ts-ignore: decorator
@inline function stepQ6K(acc: v128, h: i32, lc: i32, k: i32, p0: usize, p1: usize, p2: usize, p3: usize, o: usize, a: usize, sb: usize, d: v128, scs: v128): v128 {
  const y = (h << 7) + (k << 5) + lc; // first weight of the group in the super-block
  const ap = a + (<usize>y << 1);
  const x0 = v128.load(ap), x1 = v128.load(ap, 16);
  const r0 = dotW8A16(weightsQ6K(p0, h, lc, k), x0, x1);
  store<i32>(o, i32x4.extract_lane(r0, 0));
  const r1 = dotW8A16(weightsQ6K(p1, h, lc, k), x0, x1);
  store<i32>(o, i32x4.extract_lane(r1, 0));
  const r2 = dotW8A16(weightsQ6K(p2, h, lc, k), x0, x1);
  store<i32>(o, i32x4.extract_lane(r2, 0));
  const r3 = dotW8A16(weightsQ6K(p3, h, lc, k), x0, x1);
  const isum = hsum4i(r0, r1, r2, r3);
  const j = ((h << 3) + (lc >> 4) + (k << 1)) & 3; // the scale's byte in each lane
  const sc = f32x4.convert_i32x4_s(i32x4.shr_s(i32x4.shl(scs, 24 - (j << 3)), 24)); // signed
  const scale = f32x4.mul(f32x4.mul(d, sc), f32x4.splat(load<f32>(sb + (<usize>(y >> 5) << 2))));
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), scale));
}

/** Exact integer dot product of 16 int8 weights with 16 int16 activations (x0: the first 8, x1: the next 8), as four i32 partial sums. */
// @ts-ignore: decorator
@inline function dotW8A16(w: v128, x0: v128, x1: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), x0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), x1));
}

// ---------------------------------------------------------------------------------------------
// Batched products: out_b = W · x_b for nb vectors, one pass over the weights. The rows are taken
// in tiles that stay in cache while every vector passes over them; f32 takes the vectors two at
// a time and f16 / bf16 four at a time, sharing each weight load and its widening; Q8_0 two
// rows × four vectors; Q4_0, Q4_K and Q6_K run matvec's loop per vector over each tile. Each
// output is computed with exactly the arithmetic of the matvec kernel (same lanes, same order),
// so a batched product equals its matvecs bit for bit.
//
// `outTab` holds nb u32 pointers to the outputs (each advanced by `outOff` bytes: the first row
// of this thread's share); f32 / 16-bit inputs are a table `xTab` of nb pointers; Q8_0 inputs
// are quantizeBlocks32x4's interleaved groups of four vectors; Q4_K / Q6_K inputs are nb vectors
// quantized by quantizeBlocks32 back to back (xq: 2·cols bytes each, xs and xb: cols/8 bytes
// each), Q4_0's by quantizeBlocksQ4.

const MM_TILE: i32 = 16384;

// @ts-ignore: decorator
@inline function tileRows(rowBytes: usize): i32 {
  const t = <i32>(<usize>MM_TILE / rowBytes);
  return t < 1 ? 1 : t;
}

export function matmulF32(outTab: usize, outOff: usize, nb: i32, xTab: usize, w: usize, rows: i32, cols: i32): void {
  const rowBytes = <usize>cols << 2;
  const tile = tileRows(rowBytes);
  const n16 = cols & ~15;
  for (let i0 = 0; i0 < rows; i0 += tile) {
    const i1 = min(i0 + tile, rows);
    let b = 0;
    for (; b + 2 <= nb; b += 2) {
      const o0 = <usize>load<u32>(outTab + (<usize>b << 2)) + outOff;
      const o1 = <usize>load<u32>(outTab + (<usize>b << 2), 4) + outOff;
      const x0 = <usize>load<u32>(xTab + (<usize>b << 2));
      const x1 = <usize>load<u32>(xTab + (<usize>b << 2), 4);
      for (let i = i0; i < i1; i++) {
        const r = w + <usize>i * rowBytes;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
        let j = 0;
        for (; j < n16; j += 16) {
          const o = <usize>j << 2;
          const w0 = v128.load(r + o), w1 = v128.load(r + o, 16), w2 = v128.load(r + o, 32), w3 = v128.load(r + o, 48);
          a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(x0 + o)));
          a1 = f32x4.add(a1, f32x4.mul(w1, v128.load(x0 + o, 16)));
          a2 = f32x4.add(a2, f32x4.mul(w2, v128.load(x0 + o, 32)));
          a3 = f32x4.add(a3, f32x4.mul(w3, v128.load(x0 + o, 48)));
          c0 = f32x4.add(c0, f32x4.mul(w0, v128.load(x1 + o)));
          c1 = f32x4.add(c1, f32x4.mul(w1, v128.load(x1 + o, 16)));
          c2 = f32x4.add(c2, f32x4.mul(w2, v128.load(x1 + o, 32)));
          c3 = f32x4.add(c3, f32x4.mul(w3, v128.load(x1 + o, 48)));
        }
        for (; j + 4 <= cols; j += 4) {
          const o = <usize>j << 2;
          const w0 = v128.load(r + o);
          a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(x0 + o)));
          c0 = f32x4.add(c0, f32x4.mul(w0, v128.load(x1 + o)));
        }
        let s0 = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
        let s1 = hsum(f32x4.add(f32x4.add(c0, c1), f32x4.add(c2, c3)));
        for (; j < cols; j++) {
          const wj = load<f32>(r + (<usize>j << 2));
          s0 += wj * load<f32>(x0 + (<usize>j << 2));
          s1 += wj * load<f32>(x1 + (<usize>j << 2));
        }
        store<f32>(o0 + (<usize>i << 2), s0);
        store<f32>(o1 + (<usize>i << 2), s1);
      }
    }
    if (b < nb) {
      const o0 = <usize>load<u32>(outTab + (<usize>b << 2)) + outOff;
      const x0 = <usize>load<u32>(xTab + (<usize>b << 2));
      for (let i = i0; i < i1; i++) store<f32>(o0 + (<usize>i << 2), rowF32(w + <usize>i * rowBytes, x0, cols));
    }
  }
}

/** Four vector pointers from the table at `tab`, from entry v (past nv: the last one again). */
// @ts-ignore: decorator
@inline function entry(tab: usize, v: i32, nv: i32): usize {
  return <usize>load<u32>(tab + (<usize>min(v, nv - 1) << 2));
}

/**
 * Q8_0 batched: the rows in tiles of about MM_TILE_Q bytes that stay in cache while every group of
 * four vectors passes over them, two rows × four vectors at a time: each weight chunk is loaded
 * and widened once for the four vectors, each activation chunk loaded once for the two rows, and
 * the eight integer dot products of a block are folded into two f32x4 sums (lanes: the four
 * vectors) by `hsum4i`. Per output that is matvec's arithmetic in matvec's order (the same exact
 * block sums, then sum += f32(isum) · (d · xs) block after block), so a batched product equals its
 * matvecs bit for bit. Inputs: quantizeBlocks32x4's interleaved groups.
 */
export function matmulQ8_0(outTab: usize, outOff: usize, nv: i32, xq: usize, xs: usize, w: usize, rows: i32, cols: i32, x8rows: i32): void {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 34;
  const gq = <usize>cols << 3, gs = <usize>cols >> 1;
  // regrouped rows [0, x8rows): tiles of whole groups in cache while each vector runs matvec's
  // loop over them (its blocks 256 bytes apart in the interleaved groups, as matmulQ4_0)
  const tile8 = max(8, <i32>(<usize>MM_TILE_Q / rowBytes) & ~7);
  for (let i0 = 0; i0 < x8rows; i0 += tile8) {
    const n = min(tile8, x8rows - i0);
    for (let v = 0; v < nv; v++) {
      const l = <usize>(v & 3) << 6, g = <usize>(v >> 2);
      groupsQ8x8(entry(outTab, v, nv) + outOff + (<usize>i0 << 2), xq + g * gq + l, xs + g * gs + (l >> 4), w + <usize>i0 * rowBytes, n >> 3, nb, 256, 16);
    }
  }
  const tile = max(2, <i32>(<usize>MM_TILE_Q / rowBytes) & ~1);
  for (let i0 = x8rows; i0 < rows; i0 += tile) {
    const i1 = min(i0 + tile, rows);
    for (let v = 0; v < nv; v += 4) {
      const g = <usize>(v >> 2);
      for (let i = i0; i < i1; i += 2) {
        const j = i + 1 < i1 ? i + 1 : i; // an odd last row is computed twice, stored once
        tileQ8_0(outTab, outOff, v, nv, xq + g * gq, xs + g * gs, w + <usize>i * rowBytes, w + <usize>j * rowBytes, i, j, nb);
      }
    }
  }
}

/** Rows i (weights at p0) and j (p1) × vectors v … v+3 (one interleaved group at aq, as). */
// @ts-ignore: decorator
@inline function tileQ8_0(outTab: usize, outOff: usize, v: i32, nv: i32, aq: usize, as: usize, p0: usize, p1: usize, i: i32, j: i32, nb: i32): void {
  const end = as + (<usize>nb << 4);
  const mask = v128.load(HALF_CONSTS), mul = v128.load(HALF_CONSTS, 16);
  let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0);
  while (as < end) {
    // chunk k (8 weights) of both rows times chunk k of each vector, in a loop rather than
    // written out: V8 issues every load of a straight-line block first, and 24 loaded chunks
    // with 8 sums do not fit in the 16 SIMD registers
    let s00 = i32x4.splat(0), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00;
    for (let k = 0; k < 4; k++) {
      const w0 = v128.load8x8_s(p0 + 2 + (<usize>k << 3)), w1 = v128.load8x8_s(p1 + 2 + (<usize>k << 3));
      const ak = aq + (<usize>k << 4);
      let a = v128.load(ak);
      s00 = i32x4.add(s00, i32x4.dot_i16x8_s(w0, a)); s10 = i32x4.add(s10, i32x4.dot_i16x8_s(w1, a));
      a = v128.load(ak, 64);
      s01 = i32x4.add(s01, i32x4.dot_i16x8_s(w0, a)); s11 = i32x4.add(s11, i32x4.dot_i16x8_s(w1, a));
      a = v128.load(ak, 128);
      s02 = i32x4.add(s02, i32x4.dot_i16x8_s(w0, a)); s12 = i32x4.add(s12, i32x4.dot_i16x8_s(w1, a));
      a = v128.load(ak, 192);
      s03 = i32x4.add(s03, i32x4.dot_i16x8_s(w0, a)); s13 = i32x4.add(s13, i32x4.dot_i16x8_s(w1, a));
    }
    const isum0 = hsum4i(s00, s01, s02, s03), isum1 = hsum4i(s10, s11, s12, s13);
    // the two rows' scales d in lanes 0 and 1, each times the four vectors' scales
    const d = halfToF32c(v128.load16_lane(p1, v128.load16_lane(p0, i32x4.splat(0), 1), 3), mask, mul);
    const xsv = v128.load(as);
    const d0 = i8x16.shuffle(d, d, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    const d1 = i8x16.shuffle(d, d, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7);
    acc0 = f32x4.add(acc0, f32x4.mul(f32x4.convert_i32x4_s(isum0), f32x4.mul(d0, xsv)));
    acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(isum1), f32x4.mul(d1, xsv)));
    p0 += 34; p1 += 34;
    aq += 256; as += 16;
  }
  const oi = outOff + (<usize>i << 2), oj = outOff + (<usize>j << 2);
  store<f32>(entry(outTab, v, nv) + oj, f32x4.extract_lane(acc1, 0));
  store<f32>(entry(outTab, v, nv) + oi, f32x4.extract_lane(acc0, 0));
  if (v + 1 < nv) { store<f32>(entry(outTab, v + 1, nv) + oj, f32x4.extract_lane(acc1, 1)); store<f32>(entry(outTab, v + 1, nv) + oi, f32x4.extract_lane(acc0, 1)); }
  if (v + 2 < nv) { store<f32>(entry(outTab, v + 2, nv) + oj, f32x4.extract_lane(acc1, 2)); store<f32>(entry(outTab, v + 2, nv) + oi, f32x4.extract_lane(acc0, 2)); }
  if (v + 3 < nv) { store<f32>(entry(outTab, v + 3, nv) + oj, f32x4.extract_lane(acc1, 3)); store<f32>(entry(outTab, v + 3, nv) + oi, f32x4.extract_lane(acc0, 3)); }
}

const MM_TILE_Q: i32 = 65536;

/**
 * Q4_0 batched, as Q4_K / Q6_K: the regrouped rows in tiles of about MM_TILE_Q bytes (whole
 * groups) that stay in cache while each vector runs matvecQ4_0's loop over them (the unpacking is
 * three shifts per 32 weights of four rows: little to share between vectors), then the rows in
 * ggml's layout one vector at a time. Inputs: nv vectors quantized by quantizeBlocksQ4 back to
 * back (xc: 72·cols/32 bytes each, xq: 2·cols, xs and xb: cols/8).
 */
export function matmulQ4_0(outTab: usize, outOff: usize, nv: i32, xc: usize, xq: usize, xs: usize, xb: usize, w: usize, rows: i32, cols: i32, x8rows: i32): void {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 18;
  const cStride = <usize>nb * 72, qStride = <usize>cols << 1, sStride = <usize>cols >> 3;
  const tile = max(8, <i32>(<usize>MM_TILE_Q / rowBytes) & ~7);
  for (let i0 = 0; i0 < x8rows; i0 += tile) {
    const n = min(tile, x8rows - i0);
    for (let v = 0; v < nv; v++) groupsQ4x8(entry(outTab, v, nv) + outOff + (<usize>i0 << 2), xc + <usize>v * cStride, w + <usize>i0 * rowBytes, n >> 3, nb);
  }
  if (rows > x8rows) {
    for (let v = 0; v < nv; v++) {
      const o = entry(outTab, v, nv) + outOff + (<usize>x8rows << 2);
      matvecQ4Q8(o, xq + <usize>v * qStride, xs + <usize>v * sStride, xb + <usize>v * sStride, w + <usize>x8rows * rowBytes, rows - x8rows, cols, true);
    }
  }
}

/** Q4_K and Q6_K batched as Q4_0: row tiles in cache, each vector with matvec's own loop. */
export function matmulQ4_K(outTab: usize, outOff: usize, nv: i32, xq: usize, xs: usize, xb: usize, w: usize, rows: i32, cols: i32): void {
  matmulK(outTab, outOff, nv, xq, xs, xb, w, rows, cols, 144);
}

export function matmulQ6_K(outTab: usize, outOff: usize, nv: i32, xq: usize, xs: usize, w: usize, rows: i32, cols: i32): void {
  matmulK(outTab, outOff, nv, xq, xs, 0, w, rows, cols, 210);
}

// @ts-ignore: decorator
@inline function matmulK(outTab: usize, outOff: usize, nv: i32, xq: usize, xs: usize, xb: usize, w: usize, rows: i32, cols: i32, blockBytes: usize): void {
  const rowBytes = <usize>(cols >> 8) * blockBytes;
  const qStride = <usize>cols << 1;
  const sStride = <usize>cols >> 3;
  const tile = max(4, <i32>(<usize>MM_TILE_Q / rowBytes) & ~3);
  for (let i0 = 0; i0 < rows; i0 += tile) {
    const n = min(tile, rows - i0);
    for (let v = 0; v < nv; v++) {
      const o = <usize>load<u32>(outTab + (<usize>v << 2)) + outOff + (<usize>i0 << 2);
      const r = w + <usize>i0 * rowBytes;
      if (blockBytes == 144) matvecQ4_K(o, xq + <usize>v * qStride, xs + <usize>v * sStride, xb + <usize>v * sStride, r, n, cols);
      else matvecQ6_K(o, xq + <usize>v * qStride, xs + <usize>v * sStride, r, n, cols);
    }
  }
}

/**
 * 16-bit weights batched: one row × four vectors (xTab: nv input pointers), each 8 weights widened
 * once for the four, in matvecHalfBy's order.
 */
// @ts-ignore: decorator
@inline function matmulHalfBy(outTab: usize, outOff: usize, nv: i32, xTab: usize, w: usize, rows: i32, cols: i32, mode: i32): void {
  const rowBytes = <usize>cols << 1;
  const tile = tileRows(rowBytes);
  const n8 = cols & ~7;
  for (let i0 = 0; i0 < rows; i0 += tile) {
    const i1 = min(i0 + tile, rows);
    for (let v = 0; v < nv; v += 4) {
      const x0 = entry(xTab, v, nv), x1 = entry(xTab, v + 1, nv), x2 = entry(xTab, v + 2, nv), x3 = entry(xTab, v + 3, nv);
      for (let i = i0; i < i1; i++) {
        const r = w + <usize>i * rowBytes;
        let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
        for (let j = 0; j < n8; j += 8) {
          const h = v128.load(r + (<usize>j << 1));
          const lo = halfToF32(hiHalves(h, 0), mode), hi = halfToF32(hiHalves(h, 1), mode);
          const o = <usize>j << 2;
          a0 = f32x4.add(f32x4.add(a0, f32x4.mul(lo, v128.load(x0 + o))), f32x4.mul(hi, v128.load(x0 + o, 16)));
          a1 = f32x4.add(f32x4.add(a1, f32x4.mul(lo, v128.load(x1 + o))), f32x4.mul(hi, v128.load(x1 + o, 16)));
          a2 = f32x4.add(f32x4.add(a2, f32x4.mul(lo, v128.load(x2 + o))), f32x4.mul(hi, v128.load(x2 + o, 16)));
          a3 = f32x4.add(f32x4.add(a3, f32x4.mul(lo, v128.load(x3 + o))), f32x4.mul(hi, v128.load(x3 + o, 16)));
        }
        const oi = outOff + (<usize>i << 2);
        store<f32>(entry(outTab, v, nv) + oi, halfTail(a0, r, x0, n8, cols, mode));
        if (v + 1 < nv) store<f32>(entry(outTab, v + 1, nv) + oi, halfTail(a1, r, x1, n8, cols, mode));
        if (v + 2 < nv) store<f32>(entry(outTab, v + 2, nv) + oi, halfTail(a2, r, x2, n8, cols, mode));
        if (v + 3 < nv) store<f32>(entry(outTab, v + 3, nv) + oi, halfTail(a3, r, x3, n8, cols, mode));
      }
    }
  }
}

/** matmul for 16-bit weights, one function per kind as for matvec. */
export function matmulF16(outTab: usize, outOff: usize, nv: i32, xTab: usize, w: usize, rows: i32, cols: i32): void {
  matmulHalfBy(outTab, outOff, nv, xTab, w, rows, cols, HALF_F16);
}

export function matmulBf16(outTab: usize, outOff: usize, nv: i32, xTab: usize, w: usize, rows: i32, cols: i32): void {
  matmulHalfBy(outTab, outOff, nv, xTab, w, rows, cols, HALF_BF16);
}

export function matmulF16Exact(outTab: usize, outOff: usize, nv: i32, xTab: usize, w: usize, rows: i32, cols: i32): void {
  matmulHalfBy(outTab, outOff, nv, xTab, w, rows, cols, HALF_F16_EXACT);
}

// ---------------------------------------------------------------------------------------------
// The small ops, in the reference's rounding (float64 where it sums, float32 where it stores)

/** o = weight · x / sqrt(mean(x²) + eps); `o` may be `x`. */
export function rmsnorm(o: usize, x: usize, weight: usize, n: i32, eps: f32): void {
  let ss: f64 = 0;
  for (let j = 0; j < n; j++) {
    const v = <f64>load<f32>(x + (<usize>j << 2));
    ss += v * v;
  }
  const s = <f32>(1 / Math.sqrt(<f64>(<f32>(<f32>(ss / n) + eps))));
  for (let j = 0; j < n; j++) {
    const p = <usize>j << 2;
    store<f32>(o + p, load<f32>(weight + p) * (s * load<f32>(x + p)));
  }
}

/**
 * e^x in four float32 lanes (Cephes' expf): x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by a
 * degree-6 polynomial, 2^n put into the exponent bits. Within 2 ulp of the exact value for
 * −87.3 ≤ x ≤ 88.7; below, 0; above, +inf; NaN stays NaN. llama.cpp's SIMD softmax and SiLU use
 * an approximation like this one instead of the C library's exp.
 */
// @ts-ignore: decorator
@inline function exp4(x: v128): v128 {
  const c = f32x4.min(f32x4.max(x, f32x4.splat(-87.33654)), f32x4.splat(88.37626));
  const n = f32x4.nearest(f32x4.mul(c, f32x4.splat(1.44269504088896341)));
  const r = f32x4.sub(f32x4.sub(c, f32x4.mul(n, f32x4.splat(0.693359375))), f32x4.mul(n, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.add(f32x4.mul(f32x4.splat(1.9875691500e-4), r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  p = f32x4.add(f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), r), f32x4.splat(1));
  const e = f32x4.mul(p, i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23));
  // under the range: 0; over it: +inf (NaN compares false both ways and stays NaN)
  return v128.bitselect(f32x4.splat(Infinity), v128.andnot(e, f32x4.lt(x, f32x4.splat(-87.33654))), f32x4.gt(x, f32x4.splat(88.72283)));
}

/** In-place softmax over x[0..n): e^(x − max) in float32 SIMD (exp4), their sum in float64, each divided in float64. */
export function softmax(x: usize, n: i32): void {
  let mx = load<f32>(x);
  let i = 0;
  if (n >= 4) {
    let m = v128.load(x);
    for (i = 4; i + 4 <= n; i += 4) m = f32x4.max(m, v128.load(x + (<usize>i << 2)));
    mx = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  }
  for (; i < n; i++) mx = max(mx, load<f32>(x + (<usize>i << 2)));
  const mv = f32x4.splat(mx);
  let s2 = f64x2.splat(0);
  for (i = 0; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    const e = exp4(f32x4.sub(v128.load(p), mv));
    v128.store(p, e);
    s2 = f64x2.add(s2, f64x2.add(f64x2.promote_low_f32x4(e), f64x2.promote_low_f32x4(i8x16.shuffle(e, e, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7))));
  }
  let sum = f64x2.extract_lane(s2, 0) + f64x2.extract_lane(s2, 1);
  for (; i < n; i++) {
    const p = x + (<usize>i << 2);
    const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(p) - mx)), 0);
    store<f32>(p, e);
    sum += e;
  }
  const sv = f64x2.splat(sum);
  for (i = 0; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    const e = v128.load(p);
    const lo = f64x2.div(f64x2.promote_low_f32x4(e), sv), hi = f64x2.div(f64x2.promote_low_f32x4(i8x16.shuffle(e, e, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)), sv);
    v128.store(p, i8x16.shuffle(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
  }
  for (; i < n; i++) {
    const p = x + (<usize>i << 2);
    store<f32>(p, <f32>(<f64>load<f32>(p) / sum));
  }
}

/** Index of the first largest of x[0..n). */
export function argmax(x: usize, n: i32): i32 {
  let best = 0;
  let mx = load<f32>(x);
  for (let i = 1; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    if (v > mx) {
      mx = v;
      best = i;
    }
  }
  return best;
}

/** RoPE on interleaved pairs of v[0..n): each pair of each head rotated by this position's angles. */
export function rope(v: usize, n: i32, headDim: i32, cos: usize, sin: usize): void {
  for (let i = 0; i < n; i += 2) {
    const f = <usize>((i % headDim) >> 1) << 2;
    const p = v + (<usize>i << 2);
    const v0 = load<f32>(p);
    const v1 = load<f32>(p, 4);
    const c = load<f32>(cos + f);
    const s = load<f32>(sin + f);
    store<f32>(p, v0 * c - v1 * s);
    store<f32>(p, v0 * s + v1 * c, 4);
  }
}

/** a[i] = silu(a[i]) · b[i], silu(g) = g / (1 + e^−g), in float32 SIMD (exp4). */
export function siluMul(a: usize, b: usize, n: i32): void {
  let i = 0;
  const one = f32x4.splat(1);
  for (; i + 4 <= n; i += 4) {
    const p = <usize>i << 2;
    const g = v128.load(a + p);
    v128.store(a + p, f32x4.mul(f32x4.div(g, f32x4.add(one, exp4(f32x4.neg(g)))), v128.load(b + p)));
  }
  for (; i < n; i++) {
    const p = <usize>i << 2;
    const g = load<f32>(a + p);
    store<f32>(a + p, g / (1 + f32x4.extract_lane(exp4(f32x4.splat(-g)), 0)) * load<f32>(b + p));
  }
}

/** x[i] += y[i] (the residual connection). */
export function add(x: usize, y: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const p = <usize>i << 2;
    v128.store(x + p, f32x4.add(v128.load(x + p), v128.load(y + p)));
  }
  for (; i < n; i++) {
    const p = <usize>i << 2;
    store<f32>(x + p, load<f32>(x + p) + load<f32>(y + p));
  }
}

// ---------------------------------------------------------------------------------------------
// The KV cache in IEEE halves (f16): values rounded to nearest even as they are stored, widened
// exactly as attention reads them.

/**
 * Four float32 lanes → their IEEE half bit patterns (in i32 lanes), rounded to nearest even, with
 * overflow to ±inf, subnormals, and NaN kept quiet with its top payload bits (f32ToF16 in
 * src/quant/ggml.ts). The rounding is done by the float32 adder (Maratyszcza's FP16 method, also
 * ggml's fallback): the value is scaled so that float32's own rounding drops exactly the bits a
 * half does not keep.
 */
// @ts-ignore: decorator
@inline function f32ToHalves(x: v128): v128 {
  const shl1 = i32x4.add(x, x);
  const bias = i32x4.max_u(v128.and(shl1, i32x4.splat(0xff000000)), i32x4.splat(0x71000000));
  let base = f32x4.mul(f32x4.mul(f32x4.abs(x), f32x4.splat(reinterpret<f32>(0x77800000))), f32x4.splat(reinterpret<f32>(0x08800000)));
  base = f32x4.add(i32x4.add(i32x4.shr_u(bias, 1), i32x4.splat(0x07800000)), base);
  const nonsign = i32x4.add(v128.and(i32x4.shr_u(base, 13), i32x4.splat(0x7c00)), v128.and(base, i32x4.splat(0x0fff)));
  const nan = v128.or(i32x4.splat(0x7e00), v128.and(i32x4.shr_u(x, 13), i32x4.splat(0x3ff)));
  const h = v128.bitselect(nan, nonsign, i32x4.gt_u(shl1, i32x4.splat(0xff000000)));
  return v128.or(h, v128.and(i32x4.shr_u(x, 16), i32x4.splat(0x8000)));
}

/** dst[0..n) = the n float32 at src as halves (storing k and v into an f16 cache). */
export function storeHalves(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const lo = f32ToHalves(v128.load(src + (<usize>i << 2)));
    const hi = f32ToHalves(v128.load(src + (<usize>i << 2), 16));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(lo, hi));
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>i32x4.extract_lane(f32ToHalves(f32x4.splat(load<f32>(src + (<usize>i << 2)))), 0));
}

/**
 * Causal attention of one position over the KV cache (rows 0..pos of `kc` and `vc`, each row
 * kvDim floats). Query head h uses key/value head h / (nHeads / nKvHeads). `att` is scratch of
 * nHeads · (pos + 1) floats (every head's scores). Scores and the weighted sum of values are
 * float32 SIMD.
 */
export function attention(
  out: usize, q: usize, kc: usize, vc: usize, att: usize,
  pos: i32, nHeads: i32, nKvHeads: i32, headDim: i32, kvDim: i32,
): void {
  attentionBy(out, q, kc, vc, att, pos, nHeads, nKvHeads, headDim, kvDim, false);
}

/** attention over an f16 cache: the same arithmetic on the exactly widened halves. */
/**
 * Attention for tokens r0..r1 of a batch (prefill: threads take disjoint ranges): entry t of the
 * table at `tab` is six u32 — out, q, key cache, value cache, score scratch, position — and each
 * token runs exactly `attention` (or `attentionF16` when `half` is 1).
 */
export function attentionRows(tab: usize, r0: i32, r1: i32, nHeads: i32, nKvHeads: i32, headDim: i32, kvDim: i32, half: i32): void {
  for (let t = r0; t < r1; t++) {
    const e = tab + <usize>t * 24;
    const out = <usize>load<u32>(e), q = <usize>load<u32>(e, 4), kc = <usize>load<u32>(e, 8);
    const vc = <usize>load<u32>(e, 12), att = <usize>load<u32>(e, 16), pos = <i32>load<u32>(e, 20);
    if (half) attentionBy(out, q, kc, vc, att, pos, nHeads, nKvHeads, headDim, kvDim, true);
    else attentionBy(out, q, kc, vc, att, pos, nHeads, nKvHeads, headDim, kvDim, false);
  }
}

export function attentionF16(
  out: usize, q: usize, kc: usize, vc: usize, att: usize,
  pos: i32, nHeads: i32, nKvHeads: i32, headDim: i32, kvDim: i32,
): void {
  attentionBy(out, q, kc, vc, att, pos, nHeads, nKvHeads, headDim, kvDim, true);
}

/** Four cache values at p (f32, or halves widened) as f32x4. */
// @ts-ignore: decorator
@inline function cache4(p: usize, half: bool): v128 {
  return half ? halfToF32(hiHalves(v128.load64_zero(p), 0), HALF_F16_EXACT) : v128.load(p);
}

/** One cache value at p. */
// @ts-ignore: decorator
@inline function cache1(p: usize, half: bool): f32 {
  return half ? h2f(<u32>load<u16>(p)) : load<f32>(p);
}

// @ts-ignore: decorator
@inline function attentionBy(
  out: usize, q: usize, kc: usize, vc: usize, att: usize,
  pos: i32, nHeads: i32, nKvHeads: i32, headDim: i32, kvDim: i32, half: bool,
): void {
  const shift: usize = half ? 1 : 2; // log2 of a cache value's bytes
  const kvMul = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(<f64>headDim);
  const h4 = headDim & ~3, h16 = headDim & ~15;
  const rowBytes = <usize>kvDim << shift;
  const n = pos + 1;
  const attBytes = <usize>n << 2; // one head's scores
  // scores, position after position: each cache row is read once, front to back, for every head
  // (head by head, the rows' slices would be read a row apart and miss the cache each time);
  // four sums in flight per score (one would wait on each add's latency)
  for (let t = 0; t < n; t++) {
    const kt = kc + <usize>t * rowBytes;
    for (let h = 0; h < nHeads; h++) {
      const qh = q + (<usize>(h * headDim) << 2);
      const k = kt + (<usize>((h / kvMul) * headDim) << shift);
      let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
      let i = 0;
      for (; i < h16; i += 16) {
        const qp = qh + (<usize>i << 2), kp = k + (<usize>i << shift);
        a0 = f32x4.add(a0, f32x4.mul(v128.load(qp), cache4(kp, half)));
        a1 = f32x4.add(a1, f32x4.mul(v128.load(qp, 16), cache4(kp + (<usize>4 << shift), half)));
        a2 = f32x4.add(a2, f32x4.mul(v128.load(qp, 32), cache4(kp + (<usize>8 << shift), half)));
        a3 = f32x4.add(a3, f32x4.mul(v128.load(qp, 48), cache4(kp + (<usize>12 << shift), half)));
      }
      for (; i < h4; i += 4) a0 = f32x4.add(a0, f32x4.mul(v128.load(qh + (<usize>i << 2)), cache4(k + (<usize>i << shift), half)));
      let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
      for (; i < headDim; i++) s += load<f32>(qh + (<usize>i << 2)) * cache1(k + (<usize>i << shift), half);
      store<f32>(att + <usize>h * attBytes + (<usize>t << 2), <f32>(<f64>s * scale));
    }
  }
  for (let h = 0; h < nHeads; h++) softmax(att + <usize>h * attBytes, n);
  // out_h = Σ_t att_h[t]·v_t, position after position, again one pass over the cache rows; four
  // positions per pass over the output (the same additions in the same order, one load and store
  // of the output instead of four)
  zeroFloats(out, nHeads * headDim);
  let t = 0;
  for (; t + 4 <= n; t += 4) {
    const vt = vc + <usize>t * rowBytes;
    for (let h = 0; h < nHeads; h++) {
      const oh = out + (<usize>(h * headDim) << 2);
      const v0 = vt + (<usize>((h / kvMul) * headDim) << shift), v1 = v0 + rowBytes, v2 = v1 + rowBytes, v3 = v2 + rowBytes;
      const ap = att + <usize>h * attBytes + (<usize>t << 2);
      const w0 = load<f32>(ap), w1 = load<f32>(ap, 4), w2 = load<f32>(ap, 8), w3 = load<f32>(ap, 12);
      const x0 = f32x4.splat(w0), x1 = f32x4.splat(w1), x2 = f32x4.splat(w2), x3 = f32x4.splat(w3);
      let i = 0;
      for (; i < h4; i += 4) {
        const p = <usize>i << 2, c = <usize>i << shift;
        let o = f32x4.add(v128.load(oh + p), f32x4.mul(x0, cache4(v0 + c, half)));
        o = f32x4.add(o, f32x4.mul(x1, cache4(v1 + c, half)));
        o = f32x4.add(o, f32x4.mul(x2, cache4(v2 + c, half)));
        v128.store(oh + p, f32x4.add(o, f32x4.mul(x3, cache4(v3 + c, half))));
      }
      for (; i < headDim; i++) {
        const p = <usize>i << 2, c = <usize>i << shift;
        let o = load<f32>(oh + p) + w0 * cache1(v0 + c, half);
        o += w1 * cache1(v1 + c, half);
        o += w2 * cache1(v2 + c, half);
        store<f32>(oh + p, o + w3 * cache1(v3 + c, half));
      }
    }
  }
  for (; t < n; t++) {
    const vt = vc + <usize>t * rowBytes;
    for (let h = 0; h < nHeads; h++) {
      const oh = out + (<usize>(h * headDim) << 2);
      const v = vt + (<usize>((h / kvMul) * headDim) << shift);
      const w = load<f32>(att + <usize>h * attBytes + (<usize>t << 2));
      const wv = f32x4.splat(w);
      let i = 0;
      for (; i < h4; i += 4) {
        const p = <usize>i << 2;
        v128.store(oh + p, f32x4.add(v128.load(oh + p), f32x4.mul(wv, cache4(v + (<usize>i << shift), half))));
      }
      for (; i < headDim; i++) {
        const p = <usize>i << 2;
        store<f32>(oh + p, load<f32>(oh + p) + w * cache1(v + (<usize>i << shift), half));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Panel products: a batch of at least PANEL vectors (prefill). matvec and the tiles above take the
// dot product of a row with a vector along the row (16 columns in SIMD lanes, then a horizontal
// sum); with many vectors it pays to turn the product around, as BLAS does: the vectors are packed
// into "panels" of 8, column k of all 8 side by side, and a register tile of 4 rows × 8 vectors
// (eight f32x4 or i32x4 sums, lanes = vectors) is updated by one weight of each row (broadcast)
// times one column of the panel. That is 16 arithmetic ops per 32 multiply-adds with 6 loads,
// against 32 ops and 24 loads along the rows. No horizontal sums, and any number of columns.
//   - float weights (f32; f16 / bf16 widened first, four rows at a time, into the thread's
//     scratch): each output is Σ_k w[k]·x[k] in float32, k = 0, 1, 2, … one by one: the order of
//     the plain reference loop (run.c's matmul), not matvec's 16 lanes.
//   - Q8_0 / Q4_0: the activations quantized as quantizeBlocks32 (int16 blocks of 32; Q4_0 at
//     its ±Q4_RANGE), in panels of column pairs for `i32x4.dot_i16x8_s`; the four rows' weights
//     widened to int16 (Q4_0: minus 8, from its regrouped rows or ggml's) into the scratch. Per block, the exact integer sums, then, in float32,
//     sum += f32(isum) · (d · xs): matvec's arithmetic in matvec's order, so these agree with
//     matvec bit for bit.
// Rows go in tiles of PANEL_TILE (the tile's weights stay in the L2 cache while every panel
// passes over them); scratch: one thread's `panelScratchBytes(cols)` bytes.

const PANEL_TILE: i32 = 16;
const PANEL_K: i32 = 256; // columns per chunk (int16: twice as many)
const PANEL_MAX: i32 = 8; // panels per call at most (64 vectors)
// padding after each panel and each group of rows in the scratch: strides that are multiples of
// 4 KiB would put every panel's and group's chunk in the same L1 sets (measured: 1.4× slower)
const PANEL_PAD: i32 = 192;
const GROUP_PAD: i32 = 320;

/** Bytes of one panel of `cols` columns: f32 (`float` 1) or int16 pairs (0). */
export function panelBytes(cols: i32, float: i32): i32 {
  return (float ? cols << 5 : cols << 4) + PANEL_PAD;
}

/** Bytes of one thread's scratch for the panel products of `cols` columns. */
export function panelScratchBytes(cols: i32): i32 {
  return ((PANEL_TILE >> 2) * ((cols << 4) + GROUP_PAD) + 2 * PANEL_TILE * (cols >> 5) * 4 + (PANEL_TILE >> 2) * PANEL_MAX * 128 + 4096 + 63) & ~63;
}

/**
 * f32 panels of the nv vectors in xTab: panel p at xp + p·panelBytes(cols, 1), x_t[k] at + (8k + t)·4;
 * slots [v0, v1) of the (nv + 7) & ~7 (past nv: the last vector again), so threads can share the work.
 */
export function packPanelsF32(xp: usize, xTab: usize, nv: i32, cols: i32, v0: i32, v1: i32): void {
  for (let v = v0; v < v1; v++) {
    const x = entry(xTab, v, nv);
    const p = xp + <usize>(v >> 3) * <usize>panelBytes(cols, 1) + (<usize>(v & 7) << 2);
    for (let k = 0; k < cols; k++) store<f32>(p + (<usize>k << 5), load<f32>(x + (<usize>k << 2)));
  }
}

/**
 * int16 panels (quantizeBlocks32's values and scales; `q4` 1: Q4_0's, at ±Q4_RANGE): panel p's
 * pair (x_t[2m], x_t[2m+1]) at xp + p·panelBytes(cols, 0) + (8m + t)·4, its block b's scale at
 * xs + p·cols + (8b + t)·4. Slots [v0, v1) as packPanelsF32; tmp: 3·cols bytes (the thread's own).
 */
export function quantizePanels(xp: usize, xs: usize, tmp: usize, xTab: usize, nv: i32, cols: i32, v0: i32, v1: i32, q4: i32): void {
  if (ASC_FEATURE_RELAXED_SIMD && q4) {
    quantizePanelsQ4r(xp, xs, tmp, xTab, nv, cols, v0, v1);
    return;
  }
  for (let v = v0; v < v1; v++) {
    const p = <usize>(v >> 3), t = <usize>(v & 7) << 2;
    quantizeBlocksBy(tmp, xs + p * <usize>cols + t, tmp + (<usize>cols << 1), entry(xTab, v, nv), cols, 64, 32, q4 ? Q4_RANGE : Q8_RANGE);
    const q = xp + p * <usize>panelBytes(cols, 0) + t;
    for (let m = 0; m < cols >> 1; m++) store<u32>(q + (<usize>m << 5), load<u32>(tmp + (<usize>m << 2)));
  }
}

/**
 * A group of 4 rows, interleaved (row r's weight k at q + 16k + 4r, f32), columns [0, n) × panel pp
 * (its same columns) added to acc (8 f32x4: [row][vectors]), column after column.
 */
// @ts-ignore: decorator
@inline function panelF32(q: usize, pp: usize, n: i32, acc: usize): void {
  let a0 = v128.load(acc), a1 = v128.load(acc, 16), b0 = v128.load(acc, 32), b1 = v128.load(acc, 48);
  let c0 = v128.load(acc, 64), c1 = v128.load(acc, 80), d0 = v128.load(acc, 96), d1 = v128.load(acc, 112);
  const end = q + (<usize>n << 4);
  let p = pp;
  for (; q < end; q += 16) {
    const x0 = v128.load(p), x1 = v128.load(p, 16);
    let s = v128.load32_splat(q);
    a0 = f32x4.add(a0, f32x4.mul(s, x0)); a1 = f32x4.add(a1, f32x4.mul(s, x1));
    s = v128.load32_splat(q, 4);
    b0 = f32x4.add(b0, f32x4.mul(s, x0)); b1 = f32x4.add(b1, f32x4.mul(s, x1));
    s = v128.load32_splat(q, 8);
    c0 = f32x4.add(c0, f32x4.mul(s, x0)); c1 = f32x4.add(c1, f32x4.mul(s, x1));
    s = v128.load32_splat(q, 12);
    d0 = f32x4.add(d0, f32x4.mul(s, x0)); d1 = f32x4.add(d1, f32x4.mul(s, x1));
    p += 32;
  }
  v128.store(acc, a0); v128.store(acc, a1, 16); v128.store(acc, b0, 32); v128.store(acc, b1, 48);
  v128.store(acc, c0, 64); v128.store(acc, c1, 80); v128.store(acc, d0, 96); v128.store(acc, d1, 112);
}

/**
 * A group of 4 rows as int16, interleaved (row r's pair m at q + 16m + 4r; block scales at ds,
 * [b][row] f32), blocks [0, nb) × int16 panel pp (scales at ps) added to acc (8 f32x4), block
 * after block in matvec's order.
 */
// @ts-ignore: decorator
@inline function panelQ(q: usize, ds: usize, pp: usize, ps: usize, nb: i32, acc: usize): void {
  let p = pp;
  for (let b = 0; b < nb; b++) {
    let a0 = i32x4.splat(0), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
    const end = q + 256;
    for (; q < end; q += 16) {
      const x0 = v128.load(p), x1 = v128.load(p, 16);
      let s = v128.load32_splat(q);
      a0 = i32x4.add(a0, i32x4.dot_i16x8_s(s, x0)); a1 = i32x4.add(a1, i32x4.dot_i16x8_s(s, x1));
      s = v128.load32_splat(q, 4);
      b0 = i32x4.add(b0, i32x4.dot_i16x8_s(s, x0)); b1 = i32x4.add(b1, i32x4.dot_i16x8_s(s, x1));
      s = v128.load32_splat(q, 8);
      c0 = i32x4.add(c0, i32x4.dot_i16x8_s(s, x0)); c1 = i32x4.add(c1, i32x4.dot_i16x8_s(s, x1));
      s = v128.load32_splat(q, 12);
      d0 = i32x4.add(d0, i32x4.dot_i16x8_s(s, x0)); d1 = i32x4.add(d1, i32x4.dot_i16x8_s(s, x1));
      p += 32;
    }
    const xs = ps + (<usize>b << 5), xs0 = v128.load(xs), xs1 = v128.load(xs, 16);
    const dp = ds + (<usize>b << 4);
    finishQ(acc, a0, a1, v128.load32_splat(dp), xs0, xs1);
    finishQ(acc + 32, b0, b1, v128.load32_splat(dp, 4), xs0, xs1);
    finishQ(acc + 64, c0, c1, v128.load32_splat(dp, 8), xs0, xs1);
    finishQ(acc + 96, d0, d1, v128.load32_splat(dp, 12), xs0, xs1);
  }
}

/** One row's block sums (i32, eight vectors in s0, s1) into acc[0 … 32): acc += f32(isum) · (d · xs), matvec's arithmetic. */
// @ts-ignore: decorator
@inline function finishQ(acc: usize, s0: v128, s1: v128, d: v128, xs0: v128, xs1: v128): void {
  v128.store(acc, f32x4.add(v128.load(acc), f32x4.mul(f32x4.convert_i32x4_s(s0), f32x4.mul(d, xs0))));
  v128.store(acc, f32x4.add(v128.load(acc, 16), f32x4.mul(f32x4.convert_i32x4_s(s1), f32x4.mul(d, xs1))), 16);
}

/** The 4 rows × 8 vectors in acc ([row][vector] f32) into the outputs (rows past n and vectors past nv skipped). */
// @ts-ignore: decorator
@inline function panelStore(acc: usize, outTab: usize, outOff: usize, v0: i32, nv: i32, i: i32, n: i32): void {
  for (let t = 0; t < 8 && v0 + t < nv; t++) {
    const o = <usize>load<u32>(outTab + (<usize>(v0 + t) << 2)) + outOff + (<usize>i << 2);
    const a = acc + (<usize>t << 2);
    if (i + 4 <= n) {
      v128.store(o, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(load<f32>(a)), 1, load<f32>(a, 32)), 2, load<f32>(a, 64)), 3, load<f32>(a, 96)));
    } else {
      for (let r = 0; r < n - i; r++) store<f32>(o + (<usize>r << 2), load<f32>(a + (<usize>r << 5)));
    }
  }
}

/**
 * The weights go into the scratch one tile of rows at a time, in groups of four rows interleaved
 * (a short last group repeats its last row): `kind` 0 f32, 1..3 16-bit (HALF_* + 1) widened to
 * f32, 4 Q8_0 / 5 Q4_0 as int16 (Q4_0: q − 8) with f32 scales [b][row], 6 Q4_K / 7 Q6_K
 * dequantized to f32 (as the reference's dequantizeRow, bit for bit). Q4_0 and Q8_0: rows
 * [0, x8rows) regrouped (matvecQ4_0, groupsQ8x8), the rest in ggml's layout.
 */
// @ts-ignore: decorator
@inline function panelProduct(outTab: usize, outOff: usize, nv: i32, xp: usize, xs: usize, w: usize, rows: i32, cols: i32, scratch: usize, kind: i32, x8rows: i32): void {
  const nb = cols >> 5;
  // relaxed SIMD: Q4_0 and Q4_K as nibbles × int8 activations (panelQ4r), not as floats or int16
  const r4 = ASC_FEATURE_RELAXED_SIMD && (kind == 5 || kind == 6);
  const float = !r4 && (kind <= 3 || kind >= 6);
  const rowBytes: usize = kind == 0 ? <usize>cols << 2 : kind <= 3 ? <usize>cols << 1 : kind <= 5 ? <usize>nb * (kind == 4 ? 34 : 18) : <usize>(cols >> 8) * (kind == 6 ? 144 : 210);
  const groupBytes: usize = (float ? <usize>cols << 4 : <usize>cols << 3) + GROUP_PAD; // 4 rows in the scratch
  const sd = scratch + <usize>(PANEL_TILE >> 2) * groupBytes; // scales: PANEL_TILE/4 groups of nb·16 bytes
  const sm = sd + <usize>PANEL_TILE * (<usize>nb << 2); // Q4_K's mins (panelQ4r), as the scales
  const acc = sm + <usize>PANEL_TILE * (<usize>nb << 2);
  const kbuf = acc + <usize>((PANEL_TILE >> 2) * PANEL_MAX) * 128; // K-quants: 4 rows' block, dequantized
  const pq = <usize>panelBytes(cols, float ? 1 : 0);
  for (let i0 = 0; i0 < rows; i0 += PANEL_TILE) {
    const i1 = min(i0 + PANEL_TILE, rows);
    for (let i = i0; i < i1; i += 4) {
      const g = <usize>(i - i0) >> 2;
      const s0 = w + <usize>i * rowBytes, s1 = w + <usize>min(i + 1, i1 - 1) * rowBytes;
      const s2 = w + <usize>min(i + 2, i1 - 1) * rowBytes, s3 = w + <usize>min(i + 3, i1 - 1) * rowBytes;
      const dst = scratch + g * groupBytes;
      if (kind <= 3) interleaveFloats(dst, s0, s1, s2, s3, cols, kind == 0 ? -1 : kind - 1);
      else if (r4 && kind == 6) nibblesQ4_K(dst, sd + g * (<usize>nb << 4), sm + g * (<usize>nb << 4), s0, s1, s2, s3, cols >> 8);
      else if (r4 && i + 4 <= x8rows) nibblesQ4x8(dst, sd + g * (<usize>nb << 4), w + <usize>(i & ~7) * rowBytes, (i >> 2) & 1, nb);
      else if (r4) nibblesQ4_0(dst, sd + g * (<usize>nb << 4), s0, s1, s2, s3, nb);
      else if (kind == 5 && i + 4 <= x8rows) interleaveQ4x8(dst, sd + g * (<usize>nb << 4), w + <usize>(i & ~7) * rowBytes, (i >> 2) & 1, nb);
      else if (kind == 4 && i + 4 <= x8rows) interleaveQ8x8(dst, sd + g * (<usize>nb << 4), w + <usize>(i & ~7) * rowBytes, (i >> 2) & 1, nb);
      else if (kind <= 5) interleaveBlocks(dst, sd + g * (<usize>nb << 4), s0, s1, s2, s3, nb, kind == 5);
      else interleaveK(dst, kbuf, s0, s1, s2, s3, cols >> 8, kind == 6);
    }
    // columns in chunks of PANEL_K (a chunk of the tile's weights and of one panel fit in L1),
    // every panel over the tile's groups; the sums of every group × panel wait in acc
    const ng = (i1 - i0 + 3) >> 2, np = (nv + 7) >> 3;
    zeroFloats(acc, (ng * np) << 5);
    const kc = float ? PANEL_K : PANEL_K << 1;
    for (let k0 = 0; k0 < cols; k0 += kc) {
      const n = min(kc, cols - k0);
      for (let v = 0; v < np; v++) {
        for (let g = 0; g < ng; g++) {
          const a = acc + (<usize>(g * np + v) << 7);
          const q = scratch + <usize>g * groupBytes;
          if (float) panelF32(q + (<usize>k0 << 4), xp + <usize>v * pq + (<usize>k0 << 5), n, a);
          else if (r4) {
            const o = <usize>g * (<usize>nb << 4) + (<usize>(k0 >> 5) << 4);
            const pv = xp + <usize>v * pq;
            panelQ4r(q + (<usize>k0 << 2), sd + o, sm + o, pv + (<usize>k0 << 3), xs + <usize>v * <usize>cols + (<usize>(k0 >> 5) << 5), pv + (<usize>cols << 3) + (<usize>(k0 >> 5) << 5), n >> 5, a, kind == 6);
          }
          else panelQ(q + (<usize>k0 << 3), sd + <usize>g * (<usize>nb << 4) + (<usize>(k0 >> 5) << 4), xp + <usize>v * pq + (<usize>k0 << 4), xs + <usize>v * <usize>cols + (<usize>(k0 >> 5) << 5), n >> 5, a);
        }
      }
    }
    for (let v = 0; v < np; v++) {
      for (let g = 0; g < ng; g++) panelStore(acc + (<usize>(g * np + v) << 7), outTab, outOff, v << 3, nv, i0 + (g << 2), i1);
    }
  }
}

/**
 * Four rows of nbk Q4_K (`q4k`) / Q6_K blocks dequantized to f32 and interleaved as
 * interleaveFloats, one 256-weight block of the four at a time through `buf` (4 KiB).
 */
// @ts-ignore: decorator
@inline function interleaveK(dst: usize, buf: usize, s0: usize, s1: usize, s2: usize, s3: usize, nbk: i32, q4k: bool): void {
  const bb: usize = q4k ? 144 : 210;
  for (let b = 0; b < nbk; b++) {
    const o = <usize>b * bb;
    for (let r = 0; r < 4; r++) {
      const src = (r == 0 ? s0 : r == 1 ? s1 : r == 2 ? s2 : s3) + o;
      if (q4k) dequantQ4_K(buf + (<usize>r << 10), src);
      else dequantQ6_K(buf + (<usize>r << 10), src);
    }
    const d = dst + (<usize>b << 12);
    for (let k = 0; k < 256; k += 4) {
      const c = <usize>k << 2;
      storeT4(d + (<usize>k << 4), v128.load(buf + c), v128.load(buf + 1024 + c), v128.load(buf + 2048 + c), v128.load(buf + 3072 + c));
    }
  }
}

/** Sub-block j (0 … 7) of the Q4_K block at p: its 6-bit scale | its 6-bit min << 8 (ggml's get_scale_min_k4). */
// @ts-ignore: decorator
@inline function scaleMinK4(p: usize, j: i32): u32 {
  if (j < 4) return (<u32>load<u8>(p + 4 + <usize>j) & 63) | ((<u32>load<u8>(p + 8 + <usize>j) & 63) << 8);
  const sc = (<u32>load<u8>(p + 8 + <usize>j) & 15) | ((<u32>load<u8>(p + <usize>j) >> 6) << 4);
  const m = (<u32>load<u8>(p + 8 + <usize>j) >> 4) | ((<u32>load<u8>(p + 4 + <usize>j) >> 6) << 4);
  return sc | (m << 8);
}

/** One Q4_K block (layout: matvecQ4_K) as 256 f32 at y: (d·sc)·q − dmin·m, as the reference's dequantizeRow. */
// @ts-ignore: decorator
@inline function dequantQ4_K(y: usize, p: usize): void {
  const d = h2f(<u32>load<u16>(p)), dmin = h2f(<u32>load<u16>(p, 2));
  for (let c = 0; c < 4; c++) {
    for (let k = 0; k < 2; k++) {
      const j = 2 * c + k;
      const sm = scaleMinK4(p, j);
      const dl = f32x4.splat(d * <f32>(sm & 63)), ml = f32x4.splat(dmin * <f32>(sm >> 8));
      const qs = p + 16 + (<usize>c << 5), out = y + (<usize>j << 7);
      for (let l = 0; l < 32; l += 8) {
        const b8 = v128.load8x8_u(qs + <usize>l);
        const q16 = k == 0 ? v128.and(b8, i16x8.splat(15)) : i16x8.shr_u(b8, 4);
        v128.store(out + (<usize>l << 2), f32x4.sub(f32x4.mul(dl, f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(q16))), ml));
        v128.store(out + (<usize>l << 2), f32x4.sub(f32x4.mul(dl, f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(q16))), ml), 16);
      }
    }
  }
}

/** One Q6_K block (layout: matvecQ6_K) as 256 f32 at y: f32(d·sc)·(q − 32), as the reference's dequantizeRow. */
// @ts-ignore: decorator
@inline function dequantQ6_K(y: usize, p: usize): void {
  const d = h2f(<u32>load<u16>(p, 208));
  for (let h = 0; h < 2; h++) {
    const ql = p + (<usize>h << 6), qh = p + 128 + (<usize>h << 5), sc = p + 192 + (<usize>h << 3), yo = y + (<usize>h << 9);
    for (let l = 0; l < 32; l++) {
      const is = <usize>(l >> 4);
      const hb = <i32>load<u8>(qh + <usize>l);
      const a = <i32>load<u8>(ql + <usize>l), b = <i32>load<u8>(ql + <usize>l + 32);
      const o = yo + (<usize>l << 2);
      store<f32>(o, d * <f32>load<i8>(sc + is) * <f32>(((a & 15) | ((hb & 3) << 4)) - 32));
      store<f32>(o, d * <f32>load<i8>(sc + is + 2) * <f32>(((b & 15) | (((hb >> 2) & 3) << 4)) - 32), 128);
      store<f32>(o, d * <f32>load<i8>(sc + is + 4) * <f32>(((a >> 4) | (((hb >> 4) & 3) << 4)) - 32), 256);
      store<f32>(o, d * <f32>load<i8>(sc + is + 6) * <f32>(((b >> 4) | (((hb >> 6) & 3) << 4)) - 32), 384);
    }
  }
}

/** Store a, b, c, d (one row's four lanes each) transposed: lane j of the four at dst + 16j. */
// @ts-ignore: decorator
@inline function storeT4(dst: usize, a: v128, b: v128, c: v128, d: v128): void {
  const t0 = i8x16.shuffle(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const t1 = i8x16.shuffle(c, d, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const t2 = i8x16.shuffle(a, b, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const t3 = i8x16.shuffle(c, d, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  v128.store(dst, i8x16.shuffle(t0, t1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
  v128.store(dst, i8x16.shuffle(t0, t1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 16);
  v128.store(dst, i8x16.shuffle(t2, t3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), 32);
  v128.store(dst, i8x16.shuffle(t2, t3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 48);
}

/** storeT4 with lane j of the four at dst + 32j. */
// @ts-ignore: decorator
@inline function storeT4By32(dst: usize, a: v128, b: v128, c: v128, d: v128): void {
  const t0 = i8x16.shuffle(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const t1 = i8x16.shuffle(c, d, 0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const t2 = i8x16.shuffle(a, b, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const t3 = i8x16.shuffle(c, d, 8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  v128.store(dst, i8x16.shuffle(t0, t1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
  v128.store(dst, i8x16.shuffle(t0, t1, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 32);
  v128.store(dst, i8x16.shuffle(t2, t3, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23), 64);
  v128.store(dst, i8x16.shuffle(t2, t3, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31), 96);
}

/** Four rows of n weights (f32, or 16-bit by `mode` = HALF_*, or −1 for f32) as f32, interleaved: row r's k at dst + 16k + 4r. */
// @ts-ignore: decorator
@inline function interleaveFloats(dst: usize, s0: usize, s1: usize, s2: usize, s3: usize, n: i32, mode: i32): void {
  let k = 0;
  if (mode < 0) {
    for (; k + 4 <= n; k += 4) {
      const o = <usize>k << 2;
      storeT4(dst + (<usize>k << 4), v128.load(s0 + o), v128.load(s1 + o), v128.load(s2 + o), v128.load(s3 + o));
    }
    for (; k < n; k++) {
      const o = <usize>k << 2, d = dst + (<usize>k << 4);
      store<f32>(d, load<f32>(s0 + o)); store<f32>(d, load<f32>(s1 + o), 4); store<f32>(d, load<f32>(s2 + o), 8); store<f32>(d, load<f32>(s3 + o), 12);
    }
    return;
  }
  for (; k + 8 <= n; k += 8) {
    const o = <usize>k << 1, d = dst + (<usize>k << 4);
    const h0 = v128.load(s0 + o), h1 = v128.load(s1 + o), h2 = v128.load(s2 + o), h3 = v128.load(s3 + o);
    storeT4(d, halfToF32(hiHalves(h0, 0), mode), halfToF32(hiHalves(h1, 0), mode), halfToF32(hiHalves(h2, 0), mode), halfToF32(hiHalves(h3, 0), mode));
    storeT4(d + 64, halfToF32(hiHalves(h0, 1), mode), halfToF32(hiHalves(h1, 1), mode), halfToF32(hiHalves(h2, 1), mode), halfToF32(hiHalves(h3, 1), mode));
  }
  for (; k < n; k++) {
    const o = <usize>k << 1, d = dst + (<usize>k << 4);
    store<f32>(d, halfAt(s0 + o, mode)); store<f32>(d, halfAt(s1 + o, mode), 4); store<f32>(d, halfAt(s2 + o, mode), 8); store<f32>(d, halfAt(s3 + o, mode), 12);
  }
}

/** The halves at p0 … p3 (four rows' block scales) as f32 at d, d + 4, d + 8, d + 12. */
// @ts-ignore: decorator
@inline function scales4(d: usize, p0: usize, p1: usize, p2: usize, p3: usize): void {
  store<f32>(d, h2f(<u32>load<u16>(p0))); store<f32>(d, h2f(<u32>load<u16>(p1)), 4);
  store<f32>(d, h2f(<u32>load<u16>(p2)), 8); store<f32>(d, h2f(<u32>load<u16>(p3)), 12);
}

/** One Q8_0 / Q4_0 block at p as int16 (Q4_0: q − 8): its chunk c (8 weights) of 4. */
// @ts-ignore: decorator
@inline function blockChunk(p: usize, c: i32, q4: bool): v128 {
  if (!q4) return v128.load8x8_s(p + 2 + (<usize>c << 3));
  const h = v128.load8x8_u(p + 2 + (<usize>(c & 1) << 3));
  return i16x8.sub(c < 2 ? v128.and(h, i16x8.splat(15)) : i16x8.shr_u(h, 4), i16x8.splat(8));
}

/**
 * Four rows of nb Q8_0 / Q4_0 blocks as int16, interleaved by column pairs (row r's pair m at
 * dst + 16m + 4r), their block scales as f32 at ds + 16b + 4r.
 */
// @ts-ignore: decorator
@inline function interleaveBlocks(dst: usize, ds: usize, s0: usize, s1: usize, s2: usize, s3: usize, nb: i32, q4: bool): void {
  const bb: usize = q4 ? 18 : 34;
  for (let b = 0; b < nb; b++) {
    const o = <usize>b * bb, q = dst + (<usize>b << 8), d = ds + (<usize>b << 4);
    scales4(d, s0 + o, s1 + o, s2 + o, s3 + o);
    for (let c = 0; c < 4; c++) {
      storeT4(q + (<usize>c << 6), blockChunk(s0 + o, c, q4), blockChunk(s1 + o, c, q4), blockChunk(s2 + o, c, q4), blockChunk(s3 + o, c, q4));
    }
  }
}

/**
 * Rows 4h … 4h+3 of the regrouped Q4_0 group at p (matvecQ4_0) as interleaveBlocks gives four
 * rows: row r's chunk c (8 weights) comes from its pieces 2(c & 1) and 2(c & 1) + 1, bit 7 of the
 * odd bytes flipped back.
 */
// @ts-ignore: decorator
@inline function interleaveQ4x8(dst: usize, ds: usize, p: usize, h: i32, nb: i32): void {
  const flip = i16x8.splat(-32768);
  for (let b = 0; b < nb; b++) {
    const o = p + <usize>b * 144, q = dst + (<usize>b << 8), d = ds + (<usize>b << 4);
    const sc = o + (<usize>h << 3); // rows 4h … 4h+3's scales
    scales4(d, sc, sc + 2, sc + 4, sc + 6);
    for (let c = 0; c < 4; c++) {
      const piece = o + 16 + (<usize>(c & 1) << 6) + (<usize>h << 4); // row 4h's piece 2(c & 1)
      storeT4(q + (<usize>c << 6), x8Chunk(piece, c, flip), x8Chunk(piece + 4, c, flip), x8Chunk(piece + 8, c, flip), x8Chunk(piece + 12, c, flip));
    }
  }
}

/**
 * Rows 4h … 4h+3 of the regrouped Q8_0 group at p (groupsQ8x8) as interleaveBlocks gives four
 * rows: half of piece j widened is their column pair j, row r's at 4r already.
 */
// @ts-ignore: decorator
@inline function interleaveQ8x8(dst: usize, ds: usize, p: usize, h: i32, nb: i32): void {
  for (let b = 0; b < nb; b++) {
    const o = p + <usize>b * 272, q = dst + (<usize>b << 8), d = ds + (<usize>b << 4);
    const sc = o + (<usize>h << 3); // rows 4h … 4h+3's scales
    scales4(d, sc, sc + 2, sc + 4, sc + 6);
    const src = o + 16 + (<usize>h << 3);
    for (let j: usize = 0; j < 16; j++) v128.store(q + (j << 4), v128.load8x8_s(src + (j << 4)));
  }
}

/** Chunk c of one row of a regrouped Q4_0 block, its pieces at p and p + 32, as int16 q − 8. */
// @ts-ignore: decorator
@inline function x8Chunk(p: usize, c: i32, flip: v128): v128 {
  const h = i16x8.extend_low_i8x16_u(v128.xor(v128.load32_lane(p + 32, v128.load32_zero(p), 1), flip));
  return i16x8.sub(c < 2 ? v128.and(h, i16x8.splat(15)) : i16x8.shr_u(h, 4), i16x8.splat(8));
}


// ---------------------------------------------------------------------------------------------
// Q4_0 and Q4_K panels with relaxed SIMD (kernels-relaxed.wasm only: ASC_FEATURE_RELAXED_SIMD is a
// compile-time constant; scripts/build-wasm.mjs builds this file twice, src/backend/wasm/loader.ts
// picks the module). `i16x8.relaxed_dot_i8x16_i7x16_s` multiplies 16 int8 activations by 16
// weights of 7 bits (Q4_0's nibbles 0 … 15 are) and adds adjacent pairs into int16 lanes: 16
// multiply-adds per instruction where `i32x4.dot_i16x8_s` does 8 (x86: pmaddubsw against
// pmaddwd). Measured in L1 on the bench machine, a 4 rows × 8 vectors tile: 89–99 against 51–61
// GOP/s for the int16 tile. The activations are int8 (±127, one float32 scale per block of 32, as
// llama.cpp's Q8_0 activations for its Q4_0 products) rather than int16 at ±Q4_RANGE, so these
// panels do not equal matvec bit for bit (test/conformance.test.ts checks them bit for bit against
// a plain twin of their arithmetic instead). Exact integers: a block's int16 lane sums 16 products
// of at most 15 · 127 (30480 < 32767), and the −8 of the nibbles is taken off in int32.
//   panel (quantizePanelsQ4r): quad m (columns 4m … 4m+3) of vector t at xp + p·panelBytes + 32m + 4t
//     (int8), block b's scale at xs + p·cols + 32b + 4t (as quantizePanels), and 8 · Σ q of the
//     block at xp + p·panelBytes + 8·cols + 32b + 4t (int32);
//   scratch (nibblesQ4_0 / nibblesQ4x8 / nibblesQ4_K): row r's quad m as four bytes 0 … 15 at
//     q + 16m + 4r, the rows' scales as f32 at ds + 16b + 4r (as interleaveBlocks); Q4_K: a
//     32-weight sub-block per block, d·sc at ds and dmin·m / 8 at dm (the min term: its product
//     with the panel's 8 · Σ q, taken off in float32).

/** int8 panels for panelQ4r (layout above): slots [v0, v1) as quantizePanels; tmp: 3·cols bytes. */
function quantizePanelsQ4r(xp: usize, xs: usize, tmp: usize, xTab: usize, nv: i32, cols: i32, v0: i32, v1: i32): void {
  const pb = <usize>panelBytes(cols, 0);
  for (let v = v0; v < v1; v++) {
    const p = <usize>(v >> 3), t = <usize>(v & 7) << 2;
    const panel = xp + p * pb;
    // int16 values in tmp, scales into the panel's scales, Σ q into the panel's sums (int32)
    quantizeBlocksBy(tmp, xs + p * <usize>cols + t, panel + (<usize>cols << 3) + t, entry(xTab, v, nv), cols, 64, 32, 127);
    for (let m = 0; m < cols >> 2; m += 4) {
      const b = i8x16.narrow_i16x8_s(v128.load(tmp + (<usize>m << 3)), v128.load(tmp + (<usize>m << 3), 16));
      v128.store32_lane(panel + (<usize>m << 5) + t, b, 0);
      v128.store32_lane(panel + (<usize>(m + 1) << 5) + t, b, 1);
      v128.store32_lane(panel + (<usize>(m + 2) << 5) + t, b, 2);
      v128.store32_lane(panel + (<usize>(m + 3) << 5) + t, b, 3);
    }
    for (let b = 0; b < cols >> 5; b++) {
      const at = panel + (<usize>cols << 3) + (<usize>b << 5) + t;
      store<i32>(at, load<i32>(at) << 3);
    }
  }
}

/** Four rows' 16 quant bytes a … d as nibble quads (storeT4): the low nibbles at lo, the high ones at hi. */
// @ts-ignore: decorator
@inline function nibbleQuads(lo: usize, hi: usize, a: v128, b: v128, c: v128, d: v128, m4: v128): void {
  storeT4(lo, v128.and(a, m4), v128.and(b, m4), v128.and(c, m4), v128.and(d, m4));
  storeT4(hi, v128.and(i16x8.shr_u(a, 4), m4), v128.and(i16x8.shr_u(b, 4), m4), v128.and(i16x8.shr_u(c, 4), m4), v128.and(i16x8.shr_u(d, 4), m4));
}

/** Four Q4_0 rows in ggml's layout (nb blocks) as nibble quads (layout above), scales as f32. */
// @ts-ignore: decorator
@inline function nibblesQ4_0(dst: usize, ds: usize, s0: usize, s1: usize, s2: usize, s3: usize, nb: i32): void {
  const m4 = i8x16.splat(15);
  for (let b = 0; b < nb; b++) {
    const o = <usize>b * 18, q = dst + (<usize>b << 7), d = ds + (<usize>b << 4);
    scales4(d, s0 + o, s1 + o, s2 + o, s3 + o);
    const a = v128.load(s0 + o + 2), e = v128.load(s1 + o + 2), c = v128.load(s2 + o + 2), f = v128.load(s3 + o + 2);
    // quads 0 … 3: the low nibbles (weights 0 … 15); quads 4 … 7: the high ones (16 … 31)
    nibbleQuads(q, q + 64, a, e, c, f, m4);
  }
}

/**
 * Rows 4h … 4h+3 of the regrouped Q4_0 group at p (matvecQ4_0) as nibble quads: piece t's half h
 * already holds the four rows' bytes 4t … 4t+3 side by side, so its low nibbles are quad t and
 * its high nibbles quad 4 + t (bit 7 of the odd bytes flipped back).
 */
// @ts-ignore: decorator
@inline function nibblesQ4x8(dst: usize, ds: usize, p: usize, h: i32, nb: i32): void {
  const flip = i16x8.splat(-32768), m4 = i8x16.splat(15);
  for (let b = 0; b < nb; b++) {
    const o = p + <usize>b * 144, q = dst + (<usize>b << 7), d = ds + (<usize>b << 4);
    const sc = o + (<usize>h << 3);
    scales4(d, sc, sc + 2, sc + 4, sc + 6);
    for (let t = 0; t < 4; t++) {
      const v = v128.xor(v128.load(o + 16 + (<usize>t << 5) + (<usize>h << 4)), flip);
      v128.store(q + (<usize>t << 4), v128.and(v, m4));
      v128.store(q + (<usize>(t + 4) << 4), v128.and(i16x8.shr_u(v, 4), m4));
    }
  }
}

const ONES16 = memory.data<i32>([0x00010001, 0x00010001, 0x00010001, 0x00010001], 16);

/**
 * panelQ for nibble quads × int8 panels (layout above): blocks [0, nb) of a group of 4 rows (q,
 * scales ds) × panel pp (scales ps, sums pc) added to acc, block after block: per block the exact
 * integer sums less 8 · Σ q, then sum += f32(isum) · (d · xs), as panelQ.
 */
// @ts-ignore: decorator
@inline function panelQ4r(q: usize, ds: usize, dm: usize, pp: usize, ps: usize, pc: usize, nb: i32, acc: usize, mins: bool): void {
  let p = pp;
  const ones = v128.load(ONES16);
  for (let b = 0; b < nb; b++) {
    let a0 = i16x8.splat(0), a1 = a0, b0 = a0, b1 = a0, c0_ = a0, c1_ = a0, d0 = a0, d1 = a0;
    const end = q + 128;
    for (; q < end; q += 16) {
      const x0 = v128.load(p), x1 = v128.load(p, 16);
      let s = v128.load32_splat(q);
      a0 = i16x8.add(a0, i16x8.relaxed_dot_i8x16_i7x16_s(x0, s)); a1 = i16x8.add(a1, i16x8.relaxed_dot_i8x16_i7x16_s(x1, s));
      s = v128.load32_splat(q, 4);
      b0 = i16x8.add(b0, i16x8.relaxed_dot_i8x16_i7x16_s(x0, s)); b1 = i16x8.add(b1, i16x8.relaxed_dot_i8x16_i7x16_s(x1, s));
      s = v128.load32_splat(q, 8);
      c0_ = i16x8.add(c0_, i16x8.relaxed_dot_i8x16_i7x16_s(x0, s)); c1_ = i16x8.add(c1_, i16x8.relaxed_dot_i8x16_i7x16_s(x1, s));
      s = v128.load32_splat(q, 12);
      d0 = i16x8.add(d0, i16x8.relaxed_dot_i8x16_i7x16_s(x0, s)); d1 = i16x8.add(d1, i16x8.relaxed_dot_i8x16_i7x16_s(x1, s));
      p += 32;
    }
    const xs = ps + (<usize>b << 5), xs0 = v128.load(xs), xs1 = v128.load(xs, 16);
    const cs = pc + (<usize>b << 5), cs0 = v128.load(cs), cs1 = v128.load(cs, 16);
    const dp = ds + (<usize>b << 4), mp = dm + (<usize>b << 4);
    if (mins) {
      // Q4_K: Σ (A·q − dmin·m)·x = A·Σ q·x − (dmin·m / 8)·(8·Σ x), A = d·sc, both per row and block
      const c0 = f32x4.convert_i32x4_s(cs0), c1 = f32x4.convert_i32x4_s(cs1);
      finishK(acc, a0, a1, v128.load32_splat(dp), v128.load32_splat(mp), xs0, xs1, c0, c1, ones);
      finishK(acc + 32, b0, b1, v128.load32_splat(dp, 4), v128.load32_splat(mp, 4), xs0, xs1, c0, c1, ones);
      finishK(acc + 64, c0_, c1_, v128.load32_splat(dp, 8), v128.load32_splat(mp, 8), xs0, xs1, c0, c1, ones);
      finishK(acc + 96, d0, d1, v128.load32_splat(dp, 12), v128.load32_splat(mp, 12), xs0, xs1, c0, c1, ones);
      continue;
    }
    // Q4_0: the sums less 8 · Σ q (the nibbles' −8), then panelQ's arithmetic
    finishQ(acc, i32x4.sub(i32x4.dot_i16x8_s(a0, ones), cs0), i32x4.sub(i32x4.dot_i16x8_s(a1, ones), cs1), v128.load32_splat(dp), xs0, xs1);
    finishQ(acc + 32, i32x4.sub(i32x4.dot_i16x8_s(b0, ones), cs0), i32x4.sub(i32x4.dot_i16x8_s(b1, ones), cs1), v128.load32_splat(dp, 4), xs0, xs1);
    finishQ(acc + 64, i32x4.sub(i32x4.dot_i16x8_s(c0_, ones), cs0), i32x4.sub(i32x4.dot_i16x8_s(c1_, ones), cs1), v128.load32_splat(dp, 8), xs0, xs1);
    finishQ(acc + 96, i32x4.sub(i32x4.dot_i16x8_s(d0, ones), cs0), i32x4.sub(i32x4.dot_i16x8_s(d1, ones), cs1), v128.load32_splat(dp, 12), xs0, xs1);
  }
}

/** One row's 8 sums of a Q4_K block (int16 pairs s0, s1) into acc[0 … 32): (acc + f32(isum)·(A·xs)) − f32(8Σx)·(m·xs). */
// @ts-ignore: decorator
@inline function finishK(acc: usize, s0: v128, s1: v128, a: v128, m: v128, xs0: v128, xs1: v128, c0: v128, c1: v128, ones: v128): void {
  v128.store(acc, f32x4.sub(f32x4.add(v128.load(acc), f32x4.mul(f32x4.convert_i32x4_s(i32x4.dot_i16x8_s(s0, ones)), f32x4.mul(a, xs0))), f32x4.mul(c0, f32x4.mul(m, xs0))));
  v128.store(acc, f32x4.sub(f32x4.add(v128.load(acc, 16), f32x4.mul(f32x4.convert_i32x4_s(i32x4.dot_i16x8_s(s1, ones)), f32x4.mul(a, xs1))), f32x4.mul(c1, f32x4.mul(m, xs1))), 16);
}

/**
 * Four Q4_K rows (nbk blocks of 256) as nibble quads (layout above, a 32-weight sub-block per
 * block of the scratch), each row's sub-block factors as f32: A = d·sc at ds + 16b + 4r and
 * dmin·m / 8 at dm + 16b + 4r (sc, m: the 6-bit scale and min, as dequantQ4_K reads them).
 */
// @ts-ignore: decorator
@inline function nibblesQ4_K(dst: usize, ds: usize, dm: usize, s0: usize, s1: usize, s2: usize, s3: usize, nbk: i32): void {
  const m4 = i8x16.splat(15);
  for (let b = 0; b < nbk; b++) {
    const o = <usize>b * 144;
    for (let r = 0; r < 4; r++) {
      const p = (r == 0 ? s0 : r == 1 ? s1 : r == 2 ? s2 : s3) + o;
      const d = h2f(<u32>load<u16>(p)), dmin = h2f(<u32>load<u16>(p, 2));
      for (let j = 0; j < 8; j++) {
        const sm = scaleMinK4(p, j);
        const at = (<usize>((b << 3) + j) << 4) + (<usize>r << 2);
        store<f32>(ds + at, d * <f32>(sm & 63));
        store<f32>(dm + at, (dmin * <f32>(sm >> 8)) * 0.125);
      }
    }
    // qs[32c … 32c+31]: low nibbles sub-block 2c, high nibbles 2c + 1; each 16 bytes four quads
    for (let c = 0; c < 4; c++) {
      for (let h = 0; h < 2; h++) {
        const at = o + 16 + (<usize>c << 5) + (<usize>h << 4);
        const a = v128.load(s0 + at), e = v128.load(s1 + at), f = v128.load(s2 + at), g = v128.load(s3 + at);
        const lo = dst + (<usize>((b << 3) + 2 * c) << 7) + (<usize>h << 6);
        nibbleQuads(lo, lo + 128, a, e, f, g, m4);
      }
    }
  }
}

/** 1 in kernels-relaxed.wasm, 0 in kernels.wasm: which Q4_0 panels run (above). */
export function relaxedSimd(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

/**
 * A check of the engine's relaxed dot product on values of the panels' range (int8 ±127 by
 * nibbles 0 … 15): 1 when its int16 pair sums are exact. The loader runs it before it trusts the
 * relaxed module (V8 11.3 computed the i32x4 `…_add_s` form wrongly in its baseline compiler).
 */
export function relaxedSelfTest(): i32 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    let ok = true;
    for (let r = 0; r < 16; r++) {
      const a = i8x16.add(i8x16(-127, 127, -1, 5, 100, -100, 17, -33, 64, -64, 3, 0, 127, -126, 91, -7), i8x16.splat(<i8>(r & 1)));
      const got = i16x8.relaxed_dot_i8x16_i7x16_s(a, i8x16.splat(<i8>r));
      ok = ok && i16x8.all_true(i16x8.eq(got, i16x8.mul(i16x8.extadd_pairwise_i8x16_s(a), i16x8.splat(<i16>r))));
    }
    return ok ? 1 : 0;
  }
  return 0;
}

/** Panel products (see above): `xp` from packPanelsF32 (float kinds) or quantizePanels (xs: its scales). */
export function panelF32Product(outTab: usize, outOff: usize, nv: i32, xp: usize, w: usize, rows: i32, cols: i32, scratch: usize): void {
  panelProduct(outTab, outOff, nv, xp, 0, w, rows, cols, scratch, 0, 0);
}
export function panelF16Product(outTab: usize, outOff: usize, nv: i32, xp: usize, w: usize, rows: i32, cols: i32, scratch: usize): void {
  panelProduct(outTab, outOff, nv, xp, 0, w, rows, cols, scratch, HALF_F16 + 1, 0);
}
export function panelBf16Product(outTab: usize, outOff: usize, nv: i32, xp: usize, w: usize, rows: i32, cols: i32, scratch: usize): void {
  panelProduct(outTab, outOff, nv, xp, 0, w, rows, cols, scratch, HALF_BF16 + 1, 0);
}
export function panelF16ExactProduct(outTab: usize, outOff: usize, nv: i32, xp: usize, w: usize, rows: i32, cols: i32, scratch: usize): void {
  panelProduct(outTab, outOff, nv, xp, 0, w, rows, cols, scratch, HALF_F16_EXACT + 1, 0);
}
/** Q8_0: rows [0, x8rows) regrouped (groupsQ8x8), the rest in ggml's layout. */
export function panelQ8_0Product(outTab: usize, outOff: usize, nv: i32, xp: usize, xs: usize, w: usize, rows: i32, cols: i32, scratch: usize, x8rows: i32): void {
  panelProduct(outTab, outOff, nv, xp, xs, w, rows, cols, scratch, 4, x8rows);
}
/** Q4_K: `xp` float panels, or with relaxed SIMD int8 ones (quantizePanels, q4 = 1; xs: their scales). */
export function panelQ4_KProduct(outTab: usize, outOff: usize, nv: i32, xp: usize, xs: usize, w: usize, rows: i32, cols: i32, scratch: usize): void {
  panelProduct(outTab, outOff, nv, xp, xs, w, rows, cols, scratch, 6, 0);
}
export function panelQ6_KProduct(outTab: usize, outOff: usize, nv: i32, xp: usize, w: usize, rows: i32, cols: i32, scratch: usize): void {
  panelProduct(outTab, outOff, nv, xp, 0, w, rows, cols, scratch, 7, 0);
}
/** Q4_0: rows [0, x8rows) regrouped (matvecQ4_0), the rest in ggml's layout. */
export function panelQ4_0Product(outTab: usize, outOff: usize, nv: i32, xp: usize, xs: usize, w: usize, rows: i32, cols: i32, scratch: usize, x8rows: i32): void {
  panelProduct(outTab, outOff, nv, xp, xs, w, rows, cols, scratch, 5, x8rows);
}


// ---------------------------------------------------------------------------------------------
// Attention of a prompt chunk as panel products: m queries at positions p0 … p0+m−1 of one
// sequence over its n = p0 + m cached keys, head by head. Token by token, each score is a dot
// product of headDim values with a horizontal sum, and each output a pass over the values per
// token; here the scores of 4 keys × 8 queries come out of one register tile (`panelF32`: keys
// interleaved as weights, the queries packed as a panel) and so do the outputs (4 dimensions ×
// 8 queries, the values interleaved, the probabilities packed). Scores are summed dimension by
// dimension, outputs key by key (the plain loop's order, not `attention`'s SIMD lanes): equal to
// `attention` up to float32 rounding. Causal: a query panel reads keys up to its last position;
// the probabilities past each query's own position are zero.

/** Bytes of one thread's scratch for attentionPanels: m queries, n keys, headDim. */
export function attentionPanelsScratch(m: i32, n: i32, headDim: i32): i32 {
  const n4 = (n + 3) & ~3, np = (m + 7) >> 3;
  return (n4 * headDim * 4 + PANEL_PAD) * 2 + m * (n4 * 4 + PANEL_PAD) + np * (headDim * 32 + PANEL_PAD) + np * (n4 * 32 + PANEL_PAD) + 128 + 64;
}

/**
 * Heads [h0, h1) of the m queries (tab: m output pointers, then m query pointers) at positions
 * p0 … over the caches kc, vc (`half` 1: f16), into each output's slice of those heads.
 */
export function attentionPanels(tab: usize, m: i32, p0: i32, h0: i32, h1: i32, nHeads: i32, nKvHeads: i32, headDim: i32, kc: usize, vc: usize, half: i32, scratch: usize): void {
  if (half) attentionPanelsBy(tab, m, p0, h0, h1, nHeads, nKvHeads, headDim, kc, vc, true, scratch);
  else attentionPanelsBy(tab, m, p0, h0, h1, nHeads, nKvHeads, headDim, kc, vc, false, scratch);
}

// @ts-ignore: decorator
@inline function attentionPanelsBy(tab: usize, m: i32, p0: i32, h0: i32, h1: i32, nHeads: i32, nKvHeads: i32, headDim: i32, kc: usize, vc: usize, half: bool, scratch: usize): void {
  const shift: usize = half ? 1 : 2;
  const kvMul = nHeads / nKvHeads;
  const rowBytes = <usize>(nKvHeads * headDim) << shift;
  const scale = 1 / Math.sqrt(<f64>headDim);
  const n = p0 + m, n4 = (n + 3) & ~3, np = (m + 7) >> 3;
  const hb = <usize>headDim << 2;
  // scratch: keys interleaved by 4 ([key group][d][4]); values by 4 dimensions ([dim group][key][4]);
  // scores (a row of n4 per query); query panels; probability panels; one tile's sums
  const K = scratch, V = K + <usize>n4 * hb + PANEL_PAD;
  const S = V + <usize>n4 * hb + PANEL_PAD, sRow = (<usize>n4 << 2) + PANEL_PAD;
  const QP = S + <usize>m * sRow, qpBytes = (<usize>headDim << 5) + PANEL_PAD;
  const PP = QP + <usize>np * qpBytes, ppBytes = (<usize>n4 << 5) + PANEL_PAD;
  const acc = PP + <usize>np * ppBytes;
  let g0 = -1;
  for (let h = h0; h < h1; h++) {
    const g = h / kvMul;
    if (g != g0) {
      g0 = g;
      const kg = kc + (<usize>(g * headDim) << shift), vg = vc + (<usize>(g * headDim) << shift);
      for (let j = 0; j < n4; j += 4) {
        const r0 = <usize>j * rowBytes, r1 = <usize>min(j + 1, n - 1) * rowBytes, r2 = <usize>min(j + 2, n - 1) * rowBytes, r3 = <usize>min(j + 3, n - 1) * rowBytes;
        const kd = K + <usize>j * hb;
        for (let d = 0; d < headDim; d += 4) {
          const c = <usize>d << shift;
          storeT4(kd + (<usize>d << 4), cache4(kg + r0 + c, half), cache4(kg + r1 + c, half), cache4(kg + r2 + c, half), cache4(kg + r3 + c, half));
        }
      }
      for (let j = 0; j < n; j++) {
        const r = vg + <usize>j * rowBytes;
        for (let d = 0; d < headDim; d += 4) v128.store(V + <usize>d * (<usize>n4 << 2) + (<usize>j << 4), cache4(r + (<usize>d << shift), half));
      }
    }
    // the queries' head h, in panels of 8 (past m: the last query again)
    for (let t = 0; t < np << 3; t++) {
      const q = <usize>load<u32>(tab + (<usize>(m + min(t, m - 1)) << 2)) + <usize>h * hb;
      const p = QP + <usize>(t >> 3) * qpBytes + (<usize>(t & 7) << 2);
      for (let d = 0; d < headDim; d++) store<f32>(p + (<usize>d << 5), load<f32>(q + (<usize>d << 2)));
    }
    // scores: 4 keys × 8 queries per tile, keys up to the panel's last position
    for (let v = 0; v < np; v++) {
      const last = p0 + min(8 * v + 7, m - 1);
      for (let j = 0; j <= last; j += 4) {
        zeroFloats(acc, 32);
        panelF32(K + <usize>j * hb, QP + <usize>v * qpBytes, headDim, acc);
        for (let t = 8 * v; t < min(8 * v + 8, m); t++) {
          const srow = S + <usize>t * sRow + (<usize>j << 2), a = acc + (<usize>(t & 7) << 2);
          for (let r = 0; r < 4 && j + r < n; r++) store<f32>(srow + (<usize>r << 2), <f32>(<f64>load<f32>(a + (<usize>r << 5)) * scale));
        }
      }
    }
    // probabilities: each query's softmax over its positions, zeros after, packed in panels
    for (let t = 0; t < m; t++) {
      const srow = S + <usize>t * sRow, len = p0 + t + 1;
      softmax(srow, len);
      for (let j = len; j < n4; j++) store<f32>(srow + (<usize>j << 2), 0);
    }
    for (let v = 0; v < np; v++) {
      const keys = min(p0 + 8 * v + 8, n);
      for (let tt = 0; tt < 8; tt++) {
        const srow = S + <usize>min(8 * v + tt, m - 1) * sRow;
        const p = PP + <usize>v * ppBytes + (<usize>tt << 2);
        for (let j = 0; j < keys; j++) store<f32>(p + (<usize>j << 5), load<f32>(srow + (<usize>j << 2)));
      }
    }
    // outputs: 4 dimensions × 8 queries per tile, over the panel's keys
    for (let v = 0; v < np; v++) {
      const keys = min(p0 + 8 * v + 8, n);
      for (let d = 0; d < headDim; d += 4) {
        zeroFloats(acc, 32);
        panelF32(V + <usize>d * (<usize>n4 << 2), PP + <usize>v * ppBytes, keys, acc);
        panelStore(acc, tab, <usize>h * hb, 8 * v, m, d, headDim);
      }
    }
  }
}
