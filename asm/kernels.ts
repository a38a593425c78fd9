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
 *   - f32 / f16 / bf16 weights: widened to f32x4 and multiplied with the float32 activations,
 *     four independent accumulators per row (no float64: sums are float32 in SIMD lanes).
 *   - integer weights (llama2.c q8, ggml Q8_0 / Q4_0 / Q4_K / Q6_K): the activations are first
 *     quantized on the fly (llama2.c q8: int8 in the weights' groups, exactly as runq.c; ggml
 *     types: int16 blocks of 32, see below), then each block's dot product is exact integer
 *     arithmetic with `i32x4.dot_i16x8_s` (weights widened to int16), and the block result is
 *     scaled in float32 lanes.
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

/** The same for four halves zero-extended in i32x4 lanes. */
// @ts-ignore: decorator
@inline function h2f4(h: v128): v128 {
  const em = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  const f = f32x4.mul(em, f32x4.splat(reinterpret<f32>(0x77800000)));
  const special = i32x4.ge_s(em, i32x4.splat(0x0f800000));
  const v = v128.bitselect(v128.or(em, i32x4.splat(0x7f800000)), f, special);
  return v128.or(v, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** Exact integer dot product of 16 int8 pairs, as four i32 partial sums. */
// @ts-ignore: decorator
@inline function dot16(a: v128, b: v128): v128 {
  return i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(a), i16x8.extend_low_i8x16_s(b)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(a), i16x8.extend_high_i8x16_s(b)),
  );
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

/** 16-bit weights (`bf16` = 1: bfloat16; 0: IEEE half), widened eight at a time. */
export function matvecHalf(out: usize, x: usize, w: usize, rows: i32, cols: i32, bf16: i32): void {
  const rowBytes = <usize>cols << 1;
  const n8 = cols & ~7;
  const zero = i32x4.splat(0);
  for (let i = 0; i < rows; i++) {
    const r = w + <usize>i * rowBytes;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
    let j = 0;
    if (bf16) {
      for (; j < n8; j += 8) {
        const h = v128.load(r + (<usize>j << 1));
        // a bfloat16 is the top half of a float32: move each 2-byte pattern into the high bytes
        const lo = i8x16.shuffle(zero, h, 0, 1, 16, 17, 0, 1, 18, 19, 0, 1, 20, 21, 0, 1, 22, 23);
        const hi = i8x16.shuffle(zero, h, 0, 1, 24, 25, 0, 1, 26, 27, 0, 1, 28, 29, 0, 1, 30, 31);
        const o = <usize>j << 2;
        a0 = f32x4.add(a0, f32x4.mul(lo, v128.load(x + o)));
        a1 = f32x4.add(a1, f32x4.mul(hi, v128.load(x + o, 16)));
      }
    } else {
      for (; j < n8; j += 8) {
        const h = v128.load(r + (<usize>j << 1));
        const o = <usize>j << 2;
        a0 = f32x4.add(a0, f32x4.mul(h2f4(i32x4.extend_low_i16x8_u(h)), v128.load(x + o)));
        a1 = f32x4.add(a1, f32x4.mul(h2f4(i32x4.extend_high_i16x8_u(h)), v128.load(x + o, 16)));
      }
    }
    let s = hsum(f32x4.add(a0, a1));
    for (; j < cols; j++) {
      const h = <u32>load<u16>(r + (<usize>j << 1));
      const wf = bf16 ? reinterpret<f32>(h << 16) : h2f(h);
      s += wf * load<f32>(x + (<usize>j << 2));
    }
    store<f32>(out + (<usize>i << 2), s);
  }
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

export function quantizeBlocks32(xq: usize, xs: usize, xb: usize, x: usize, n: i32): void {
  for (let b = 0; b < n >> 5; b++) {
    const xp = x + (<usize>b << 7);
    let amax: f32 = 0;
    for (let k = 0; k < 32; k++) amax = max(amax, abs(load<f32>(xp + (<usize>k << 2))));
    const d = amax / 32767;
    const id: f32 = d != 0 ? 1 / d : 0;
    let sum = 0;
    for (let k = 0; k < 32; k++) {
      const q = <i32>nearest(load<f32>(xp + (<usize>k << 2)) * id);
      store<i16>(xq + (<usize>b << 6) + (<usize>k << 1), <i16>q);
      sum += q;
    }
    store<f32>(xs + (<usize>b << 2), d);
    store<i32>(xb + (<usize>b << 2), sum);
  }
}

/** Exact integer dot product of 16 int8 weights with 16 int16 activations at `a`, as four i32 partial sums. */
// @ts-ignore: decorator
@inline function dotW8A16(w: v128, a: usize): v128 {
  return i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(w), v128.load(a)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(w), v128.load(a, 16)),
  );
}

/** Q8_0 (34 B per 32 weights: half d; i8 qs[32]); w = d · q. */
export function matvecQ8_0(out: usize, xq: usize, xs: usize, w: usize, rows: i32, cols: i32): void {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 34;
  for (let i = 0; i < rows; i++) store<f32>(out + (<usize>i << 2), rowQ8_0(w + <usize>i * rowBytes, xq, xs, nb));
}

/** Q4_0 (18 B per 32 weights: half d; u8 qs[16]); w[j] = d·((qs[j]&15) − 8), w[j+16] = d·((qs[j]>>4) − 8). */
export function matvecQ4_0(out: usize, xq: usize, xs: usize, w: usize, rows: i32, cols: i32): void {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 18;
  const m4 = i8x16.splat(15);
  const eight = i8x16.splat(8);
  for (let i = 0; i < rows; i++) {
    const r = w + <usize>i * rowBytes;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const p = r + <usize>b * 18;
      const a = xq + (<usize>b << 6);
      const qs = v128.load(p, 2);
      const lo = i8x16.sub(v128.and(qs, m4), eight);
      const hi = i8x16.sub(i8x16.shr_u(qs, 4), eight);
      const isum = i32x4.add(dotW8A16(lo, a), dotW8A16(hi, a + 32));
      const sc = h2f(<u32>load<u16>(p)) * load<f32>(xs + (<usize>b << 2));
      acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(sc)));
    }
    store<f32>(out + (<usize>i << 2), hsum(acc));
  }
}

/**
 * Q4_K (144 B per 256 weights: half d, dmin; u8 scales[12]; u8 qs[128]). Sub-block s (32 weights)
 * has a 6-bit scale sc and min m: w = d·sc·q − dmin·m. Chunk c (32 bytes of qs) holds sub-block 2c
 * in its low nibbles and 2c+1 in its high nibbles. Per sub-block, with activation block scale xs
 * and sum bsum:  Σ w·x = xs·(d·sc·Σ q·xq − dmin·m·bsum).
 */
export function matvecQ4_K(out: usize, xq: usize, xs: usize, xb: usize, w: usize, rows: i32, cols: i32): void {
  const nb = cols >> 8;
  const rowBytes = <usize>nb * 144;
  const m4 = i8x16.splat(15);
  for (let i = 0; i < rows; i++) {
    const r = w + <usize>i * rowBytes;
    let acc = f32x4.splat(0);
    let mins: f32 = 0;
    for (let b = 0; b < nb; b++) {
      const p = r + <usize>b * 144;
      const d = h2f(<u32>load<u16>(p));
      const dmin = h2f(<u32>load<u16>(p, 2));
      const sp = p + 4;
      for (let c = 0; c < 4; c++) {
        const q = p + 16 + (<usize>c << 5);
        const qa = v128.load(q);
        const qb = v128.load(q, 16);
        for (let k = 0; k < 2; k++) {
          const s = 2 * c + k;
          // 6-bit scale and min of sub-block s (see scaleMinK4 in src/quant/ggml.ts)
          let sc: u32, m: u32;
          if (s < 4) {
            sc = load<u8>(sp + s) & 63;
            m = load<u8>(sp + s + 4) & 63;
          } else {
            sc = (load<u8>(sp + s + 4) & 15) | ((load<u8>(sp + s - 4) >> 6) << 4);
            m = (load<u8>(sp + s + 4) >> 4) | ((load<u8>(sp + s) >> 6) << 4);
          }
          const ab = (b << 3) + s; // activation block of this sub-block
          const a = xq + (<usize>ab << 6);
          const wa = k == 0 ? v128.and(qa, m4) : i8x16.shr_u(qa, 4);
          const wb = k == 0 ? v128.and(qb, m4) : i8x16.shr_u(qb, 4);
          const isum = i32x4.add(dotW8A16(wa, a), dotW8A16(wb, a + 32));
          const x_s = load<f32>(xs + (<usize>ab << 2));
          acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(d * <f32>sc * x_s)));
          mins += dmin * <f32>m * x_s * <f32>load<i32>(xb + (<usize>ab << 2));
        }
      }
    }
    store<f32>(out + (<usize>i << 2), hsum(acc) - mins);
  }
}

/**
 * Q6_K (210 B per 256 weights: u8 ql[128]; u8 qh[64]; i8 scales[16]; half d). Two halves of 128;
 * in half h, for l < 32 the four weights l, l+32, l+64, l+96 take 4 low bits from ql (low / high
 * nibble of ql[l] and ql[l+32]) and 2 high bits from qh[l]; w = d·sc·(q − 32), one scale per 16.
 */
export function matvecQ6_K(out: usize, xq: usize, xs: usize, w: usize, rows: i32, cols: i32): void {
  const nb = cols >> 8;
  const rowBytes = <usize>nb * 210;
  const m4 = i8x16.splat(15);
  const m30 = i8x16.splat(0x30);
  const k32 = i8x16.splat(32);
  for (let i = 0; i < rows; i++) {
    const r = w + <usize>i * rowBytes;
    let acc = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const p = r + <usize>b * 210;
      const d = h2f(<u32>load<u16>(p, 208));
      for (let h = 0; h < 2; h++) {
        const ql = p + (<usize>h << 6);
        const qh = p + 128 + (<usize>h << 5);
        const sc = p + 192 + (<usize>h << 3);
        const y = (b << 8) + (h << 7); // first weight of this half
        for (let lc = 0; lc < 32; lc += 16) {
          const la = v128.load(ql + lc);
          const lb = v128.load(ql + lc, 32);
          const hb = v128.load(qh + lc);
          const q1 = i8x16.sub(v128.or(v128.and(la, m4), v128.and(i8x16.shl(hb, 4), m30)), k32);
          const q2 = i8x16.sub(v128.or(v128.and(lb, m4), v128.and(i8x16.shl(hb, 2), m30)), k32);
          const q3 = i8x16.sub(v128.or(i8x16.shr_u(la, 4), v128.and(hb, m30)), k32);
          const q4 = i8x16.sub(v128.or(i8x16.shr_u(lb, 4), v128.and(i8x16.shr_u(hb, 2), m30)), k32);
          const is = lc >> 4;
          // weights y+lc+32k .. +16 lie in activation block (y + 32k) / 32, half lc / 16 of it
          const ab = y >> 5;
          const a = xq + (<usize>(y + lc) << 1);
          const s1 = d * <f32>load<i8>(sc + is) * load<f32>(xs + (<usize>ab << 2));
          const s2 = d * <f32>load<i8>(sc + is + 2) * load<f32>(xs + (<usize>(ab + 1) << 2));
          const s3 = d * <f32>load<i8>(sc + is + 4) * load<f32>(xs + (<usize>(ab + 2) << 2));
          const s4 = d * <f32>load<i8>(sc + is + 6) * load<f32>(xs + (<usize>(ab + 3) << 2));
          acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(dotW8A16(q1, a)), f32x4.splat(s1)));
          acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(dotW8A16(q2, a + 64)), f32x4.splat(s2)));
          acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(dotW8A16(q3, a + 128)), f32x4.splat(s3)));
          acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(dotW8A16(q4, a + 192)), f32x4.splat(s4)));
        }
      }
    }
    store<f32>(out + (<usize>i << 2), hsum(acc));
  }
}

// ---------------------------------------------------------------------------------------------
// Batched products: out_b = W · x_b for nb vectors, one pass over the weights. The rows are taken
// in tiles of about MM_TILE bytes that stay in cache while every vector passes over them, and the
// vectors two (f32) or four (Q8_0) at a time share each weight load and its widening. Each
// output is computed with exactly the arithmetic of the matvec kernel (same lanes, same order),
// so a batched product equals its matvecs bit for bit.
//
// `outTab` holds nb u32 pointers to the outputs (each advanced by `outOff` bytes: the first row
// of this thread's share); f32 inputs are a table `xTab` of nb pointers; Q8_0 inputs are nb
// vectors quantized by quantizeBlocks32 back to back (xq: 2·cols bytes each, xs: cols/8 bytes).

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

/** One row of matvecQ8_0 against one quantized vector. */
// @ts-ignore: decorator
@inline function rowQ8_0(r: usize, xq: usize, xs: usize, nb: i32): f32 {
  let acc = f32x4.splat(0);
  for (let b = 0; b < nb; b++) {
    const p = r + <usize>b * 34;
    const a = xq + (<usize>b << 6);
    const isum = i32x4.add(dotW8A16(v128.load(p, 2), a), dotW8A16(v128.load(p, 18), a + 32));
    const sc = h2f(<u32>load<u16>(p)) * load<f32>(xs + (<usize>b << 2));
    acc = f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(isum), f32x4.splat(sc)));
  }
  return hsum(acc);
}

/** dotW8A16 with the weights already widened to int16 (lo, hi: the low and high 8 of 16). */
// @ts-ignore: decorator
@inline function dotW16A16(lo: v128, hi: v128, a: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(a)), i32x4.dot_i16x8_s(hi, v128.load(a, 16)));
}

export function matmulQ8_0(outTab: usize, outOff: usize, nv: i32, xq: usize, xs: usize, w: usize, rows: i32, cols: i32): void {
  const nb = cols >> 5;
  const rowBytes = <usize>nb * 34;
  const qStride = <usize>cols << 1;
  const sStride = <usize>nb << 2;
  const tile = tileRows(rowBytes);
  for (let i0 = 0; i0 < rows; i0 += tile) {
    const i1 = min(i0 + tile, rows);
    let v = 0;
    for (; v + 4 <= nv; v += 4) {
      const q0 = xq + <usize>v * qStride, q1 = q0 + qStride, q2 = q1 + qStride, q3 = q2 + qStride;
      const s0 = xs + <usize>v * sStride, s1 = s0 + sStride, s2 = s1 + sStride, s3 = s2 + sStride;
      for (let i = i0; i < i1; i++) {
        const r = w + <usize>i * rowBytes;
        let acc0 = f32x4.splat(0), acc1 = f32x4.splat(0), acc2 = f32x4.splat(0), acc3 = f32x4.splat(0);
        for (let b = 0; b < nb; b++) {
          const p = r + <usize>b * 34;
          const wa = v128.load(p, 2), wb = v128.load(p, 18);
          const al = i16x8.extend_low_i8x16_s(wa), ah = i16x8.extend_high_i8x16_s(wa);
          const bl = i16x8.extend_low_i8x16_s(wb), bh = i16x8.extend_high_i8x16_s(wb);
          const d = h2f(<u32>load<u16>(p));
          const ao = <usize>b << 6;
          const so = <usize>b << 2;
          acc0 = f32x4.add(acc0, f32x4.mul(f32x4.convert_i32x4_s(i32x4.add(dotW16A16(al, ah, q0 + ao), dotW16A16(bl, bh, q0 + ao + 32))), f32x4.splat(d * load<f32>(s0 + so))));
          acc1 = f32x4.add(acc1, f32x4.mul(f32x4.convert_i32x4_s(i32x4.add(dotW16A16(al, ah, q1 + ao), dotW16A16(bl, bh, q1 + ao + 32))), f32x4.splat(d * load<f32>(s1 + so))));
          acc2 = f32x4.add(acc2, f32x4.mul(f32x4.convert_i32x4_s(i32x4.add(dotW16A16(al, ah, q2 + ao), dotW16A16(bl, bh, q2 + ao + 32))), f32x4.splat(d * load<f32>(s2 + so))));
          acc3 = f32x4.add(acc3, f32x4.mul(f32x4.convert_i32x4_s(i32x4.add(dotW16A16(al, ah, q3 + ao), dotW16A16(bl, bh, q3 + ao + 32))), f32x4.splat(d * load<f32>(s3 + so))));
        }
        const oi = outOff + (<usize>i << 2);
        store<f32>(<usize>load<u32>(outTab + (<usize>v << 2)) + oi, hsum(acc0));
        store<f32>(<usize>load<u32>(outTab + (<usize>v << 2), 4) + oi, hsum(acc1));
        store<f32>(<usize>load<u32>(outTab + (<usize>v << 2), 8) + oi, hsum(acc2));
        store<f32>(<usize>load<u32>(outTab + (<usize>v << 2), 12) + oi, hsum(acc3));
      }
    }
    for (; v < nv; v++) {
      const q0 = xq + <usize>v * qStride;
      const s0 = xs + <usize>v * sStride;
      const o0 = <usize>load<u32>(outTab + (<usize>v << 2)) + outOff;
      for (let i = i0; i < i1; i++) store<f32>(o0 + (<usize>i << 2), rowQ8_0(w + <usize>i * rowBytes, q0, s0, nb));
    }
  }
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

/** In-place softmax over x[0..n). */
export function softmax(x: usize, n: i32): void {
  let mx = load<f32>(x);
  for (let i = 1; i < n; i++) mx = max(mx, load<f32>(x + (<usize>i << 2)));
  let sum: f64 = 0;
  for (let i = 0; i < n; i++) {
    const p = x + (<usize>i << 2);
    const e = <f32>Math.exp(<f64>load<f32>(p) - <f64>mx);
    store<f32>(p, e);
    sum += e;
  }
  for (let i = 0; i < n; i++) {
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

/** a[i] = silu(a[i]) · b[i], silu(g) = g / (1 + e^−g) (float64 inside, as the reference). */
export function siluMul(a: usize, b: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const p = <usize>i << 2;
    const g = <f64>load<f32>(a + p);
    store<f32>(a + p, <f32>(g / (1 + Math.exp(-g))) * load<f32>(b + p));
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

/**
 * Causal attention of one position over the KV cache (rows 0..pos of `kc` and `vc`, each row
 * kvDim floats). Query head h uses key/value head h / (nHeads / nKvHeads). `att` is scratch of
 * pos + 1 floats. Scores and the weighted sum of values are float32 SIMD.
 */
export function attention(
  out: usize, q: usize, kc: usize, vc: usize, att: usize,
  pos: i32, nHeads: i32, nKvHeads: i32, headDim: i32, kvDim: i32,
): void {
  const kvMul = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(<f64>headDim);
  const h4 = headDim & ~3;
  const rowBytes = <usize>kvDim << 2;
  for (let h = 0; h < nHeads; h++) {
    const qh = q + (<usize>(h * headDim) << 2);
    const kvo = <usize>((h / kvMul) * headDim) << 2;
    for (let t = 0; t <= pos; t++) {
      const k = kc + <usize>t * rowBytes + kvo;
      let a = f32x4.splat(0);
      let i = 0;
      for (; i < h4; i += 4) a = f32x4.add(a, f32x4.mul(v128.load(qh + (<usize>i << 2)), v128.load(k + (<usize>i << 2))));
      let s = hsum(a);
      for (; i < headDim; i++) s += load<f32>(qh + (<usize>i << 2)) * load<f32>(k + (<usize>i << 2));
      store<f32>(att + (<usize>t << 2), <f32>(<f64>s * scale));
    }
    softmax(att, pos + 1);
    const oh = out + (<usize>(h * headDim) << 2);
    memory.fill(oh, 0, <usize>headDim << 2);
    for (let t = 0; t <= pos; t++) {
      const v = vc + <usize>t * rowBytes + kvo;
      const w = load<f32>(att + (<usize>t << 2));
      const wv = f32x4.splat(w);
      let i = 0;
      for (; i < h4; i += 4) {
        const p = <usize>i << 2;
        v128.store(oh + p, f32x4.add(v128.load(oh + p), f32x4.mul(wv, v128.load(v + p))));
      }
      for (; i < headDim; i++) {
        const p = <usize>i << 2;
        store<f32>(oh + p, load<f32>(oh + p) + w * load<f32>(v + p));
      }
    }
  }
}
