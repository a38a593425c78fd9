/**
 * ggml block types (src/quant/ggml.ts): every dequantizer against blocks built by hand from the
 * layout definitions, quantize → dequantize round trips with NMSE bounds, and the reference
 * quantizers against llama-quantize's own output (../shared/models/stories260K/gguf).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import { readGgufHeader } from '../src/formats/gguf.js';
import { GGML_TYPE, GGML_TYPES, dequantizeRow, f32ToBf16, f32ToF16, ggmlRowBytes, quantizeRow } from '../src/quant/ggml.js';
import { nmse, seededRandom, shared } from './helpers.js';

/** A block of `size` bytes with little-endian setters. */
function block(size: number) {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  return {
    b,
    half: (o: number, v: number) => dv.setUint16(o, f32ToF16(v), true),
    u32: (o: number, v: number) => dv.setUint32(o, v >>> 0, true),
    f32: (o: number, v: number) => dv.setFloat32(o, v, true),
    i8: (o: number, v: number) => dv.setInt8(o, v),
  };
}

function dequant(id: number, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  dequantizeRow(id, bytes, out, n);
  return out;
}

/** Compare all `n` values with `expect(i)`, exactly (every value here is exact in float32). */
function assertValues(id: number, got: Float32Array, expect: (i: number) => number): void {
  for (let i = 0; i < got.length; i++) assert.equal(got[i], Math.fround(expect(i)), `${GGML_TYPES.get(id)!.name} weight ${i}`);
}

test('the type table: block sizes and bytes per block as in ggml-common.h', () => {
  const sizes = Object.fromEntries([...GGML_TYPES.values()].map((t) => [t.name, [t.blockSize, t.typeSize]]));
  assert.deepEqual(sizes, {
    F32: [1, 4], F16: [1, 2], BF16: [1, 2], Q4_0: [32, 18], Q4_1: [32, 20], Q5_0: [32, 22], Q5_1: [32, 24], Q8_0: [32, 34],
    Q8_1: [32, 36], Q2_K: [256, 84], Q3_K: [256, 110], Q4_K: [256, 144], Q5_K: [256, 176], Q6_K: [256, 210], Q8_K: [256, 292],
  });
  assert.equal(ggmlRowBytes(GGML_TYPE.Q4_K, 4096), 16 * 144);
});

test('F32, F16 and BF16 rows', () => {
  const f = block(8);
  f.f32(0, 1.5);
  f.f32(4, -2.25);
  assert.deepEqual([...dequant(GGML_TYPE.F32, f.b, 2)], [1.5, -2.25]);
  // half patterns: 1, -2, the largest finite 65504, the smallest subnormal 2^-24
  const h = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]).buffer);
  assert.deepEqual([...dequant(GGML_TYPE.F16, h, 4)], [1, -2, 65504, 2 ** -24]);
  const bf = new Uint8Array(new Uint16Array([0x3f80, 0xc040, 0x4049]).buffer);
  assert.deepEqual([...dequant(GGML_TYPE.BF16, bf, 3)], [1, -3, 3.140625]);
});

test('float32 → F16 / BF16 round to nearest even, with overflow, subnormals and NaN', () => {
  assert.equal(f32ToF16(1), 0x3c00);
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // a tie: stays even
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // a tie: rounds up to even
  assert.equal(f32ToF16(65504), 0x7bff);
  assert.equal(f32ToF16(65519), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00); // rounds to infinity
  assert.equal(f32ToF16(-1e9), 0xfc00);
  assert.equal(f32ToF16(2 ** -24), 0x0001);
  assert.equal(f32ToF16(2 ** -25), 0x0000); // a tie with zero
  assert.equal(f32ToF16(3 * 2 ** -26), 0x0001);
  assert.equal(f32ToF16(2 ** -14 - 2 ** -25), 0x0400); // the largest subnormal rounds up into the normals
  assert.equal(f32ToF16(-0), 0x8000);
  assert.equal(f32ToF16(NaN) & 0x7e00, 0x7e00);
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // a tie: stays even
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(f32ToBf16(NaN) & 0x7fc0, 0x7fc0);
});

test('Q8_0: w = d * q', () => {
  const k = block(34);
  k.half(0, 0.5);
  for (let j = 0; j < 32; j++) k.i8(2 + j, j * 8 - 128); // -128 … 120
  assertValues(GGML_TYPE.Q8_0, dequant(GGML_TYPE.Q8_0, k.b, 32), (j) => 0.5 * (j * 8 - 128));
});

test('Q4_0 and Q4_1: low nibbles are weights 0..15, high nibbles 16..31', () => {
  const a = block(18);
  a.half(0, 2);
  for (let j = 0; j < 16; j++) a.b[2 + j] = j | ((15 - j) << 4);
  const q40 = dequant(GGML_TYPE.Q4_0, a.b, 32);
  assert.equal(q40[0], -16); // 2 * (0 - 8)
  assert.equal(q40[16], 14); // 2 * (15 - 8)
  assertValues(GGML_TYPE.Q4_0, q40, (i) => (i < 16 ? 2 * (i - 8) : 2 * (15 - (i - 16) - 8)));

  const b = block(20);
  b.half(0, 0.5);
  b.half(2, -1);
  for (let j = 0; j < 16; j++) b.b[4 + j] = j | ((15 - j) << 4);
  const q41 = dequant(GGML_TYPE.Q4_1, b.b, 32);
  assert.equal(q41[3], 0.5); // 0.5 * 3 - 1
  assertValues(GGML_TYPE.Q4_1, q41, (i) => (i < 16 ? 0.5 * i - 1 : 0.5 * (31 - i) - 1));
});

test('Q5_0 and Q5_1: bit j of qh is the 5th bit of weight j', () => {
  const a = block(22);
  a.half(0, 1);
  a.u32(2, 0xaaaaaaaa); // odd weights have the 5th bit
  for (let j = 0; j < 16; j++) a.b[6 + j] = j | (j << 4);
  const q50 = dequant(GGML_TYPE.Q5_0, a.b, 32);
  assert.deepEqual([...q50.subarray(0, 4)], [-16, 1, -14, 3]);
  assertValues(GGML_TYPE.Q5_0, q50, (i) => (i % 16) + (i % 2 ? 16 : 0) - 16);

  const b = block(24);
  b.half(0, 0.25);
  b.half(2, 1);
  b.u32(4, 0xffff0000); // weights 16..31 have the 5th bit
  for (let j = 0; j < 16; j++) b.b[8 + j] = j | (j << 4);
  assertValues(GGML_TYPE.Q5_1, dequant(GGML_TYPE.Q5_1, b.b, 32), (i) => 0.25 * i + 1);
});

/** Sub-block s, bit plane j (0..3), half h of a 256-weight K block for weight i. */
const kIndex = (i: number) => ({ h: i >> 7, plane: (i >> 5) & 3, l: i & 31, s: i >> 4 });

test('Q2_K: 16 sub-blocks of 16, 4-bit scale and min each, 2-bit weights in 4 bit planes', () => {
  const k = block(84);
  const sc = (s: number) => (s + 1) & 15;
  const mn = (s: number) => 15 - s;
  for (let s = 0; s < 16; s++) k.b[s] = sc(s) | (mn(s) << 4);
  for (let i = 0; i < 64; i++) k.b[16 + i] = (i * 37 + 11) & 255; // qs
  k.half(80, 0.5); // d
  k.half(82, 0.25); // dmin
  const expect = (i: number) => {
    const { h, plane, l, s } = kIndex(i);
    const q = (k.b[16 + 32 * h + l]! >> (2 * plane)) & 3;
    return 0.5 * sc(s) * q - 0.25 * mn(s);
  };
  const w = dequant(GGML_TYPE.Q2_K, k.b, 256);
  assert.equal(w[0], 0.5 * 1 * ((11 >> 0) & 3) - 0.25 * 15); // -2.25
  assertValues(GGML_TYPE.Q2_K, w, expect);
});

test('Q3_K: 6-bit scales biased by 32, 2 low bits in planes, the 3rd bit in hmask', () => {
  const k = block(110);
  const raw = (s: number) => 24 + s; // scale s - 8
  for (let s = 0; s < 16; s++) {
    if (s < 8) k.b[96 + s] = raw(s) & 15;
    else k.b[96 + s - 8]! |= (raw(s) & 15) << 4;
    k.b[96 + 8 + (s % 4)]! |= (raw(s) >> 4) << (2 * Math.floor(s / 4));
  }
  for (let i = 0; i < 32; i++) k.b[i] = (i * 73 + 5) & 255; // hmask
  for (let i = 0; i < 64; i++) k.b[32 + i] = (i * 29 + 3) & 255; // qs
  k.half(108, 0.5);
  const expect = (i: number) => {
    const { h, plane, l, s } = kIndex(i);
    const low = (k.b[32 + 32 * h + l]! >> (2 * plane)) & 3;
    const high = (k.b[l]! >> (4 * h + plane)) & 1;
    return 0.5 * (raw(s) - 32) * (low - (high ? 0 : 4));
  };
  const w = dequant(GGML_TYPE.Q3_K, k.b, 256);
  assert.equal(w[0], 0.5 * -8 * (((3 >> 0) & 3) - ((5 & 1) ? 0 : 4))); // -12
  assertValues(GGML_TYPE.Q3_K, w, expect);
});

/** The 12 scale bytes of Q4_K/Q5_K for 8 six-bit scales and mins. */
function packScalesK4(sc: number[], mn: number[]): Uint8Array {
  const b = new Uint8Array(12);
  for (let j = 0; j < 4; j++) {
    b[j] = (sc[j]! & 63) | ((sc[j + 4]! >> 4) << 6);
    b[j + 4] = (mn[j]! & 63) | ((mn[j + 4]! >> 4) << 6);
    b[j + 8] = (sc[j + 4]! & 15) | ((mn[j + 4]! & 15) << 4);
  }
  return b;
}

test('Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins', () => {
  const sc = [10, 17, 24, 31, 38, 45, 52, 59];
  const mn = [63, 58, 53, 48, 43, 38, 33, 28];
  // Q4_K: chunk c of 64 weights = 32 bytes of qs; low nibbles are sub-block 2c, high nibbles 2c+1
  const k = block(144);
  k.half(0, 0.5);
  k.half(2, 0.25);
  k.b.set(packScalesK4(sc, mn), 4);
  for (let i = 0; i < 128; i++) k.b[16 + i] = (i * 7 + 1) & 255;
  const nibble = (qs: Uint8Array, at: number, i: number) => {
    const byte = qs[at + 32 * (i >> 6) + (i & 31)]!;
    return (i >> 5) & 1 ? byte >> 4 : byte & 15;
  };
  const w4 = dequant(GGML_TYPE.Q4_K, k.b, 256);
  assert.equal(w4[0], 0.5 * 10 * 1 - 0.25 * 63); // -10.75
  assertValues(GGML_TYPE.Q4_K, w4, (i) => 0.5 * sc[i >> 5]! * nibble(k.b, 16, i) - 0.25 * mn[i >> 5]!);

  // Q5_K: the same, qs after 32 bytes of qh; bit (i >> 5) of qh[i & 31] is the 5th bit
  const k5 = block(176);
  k5.half(0, 0.5);
  k5.half(2, 0.25);
  k5.b.set(packScalesK4(sc, mn), 4);
  for (let i = 0; i < 32; i++) k5.b[16 + i] = (i * 53 + 9) & 255;
  for (let i = 0; i < 128; i++) k5.b[48 + i] = (i * 7 + 1) & 255;
  const w5 = dequant(GGML_TYPE.Q5_K, k5.b, 256);
  assertValues(GGML_TYPE.Q5_K, w5, (i) => {
    const q = nibble(k5.b, 48, i) + (((k5.b[16 + (i & 31)]! >> (i >> 5)) & 1) << 4);
    return 0.5 * sc[i >> 5]! * q - 0.25 * mn[i >> 5]!;
  });
});

test('Q6_K: 16 sub-blocks of 16 with int8 scales; 4 low bits in ql, 2 high bits in qh', () => {
  const k = block(210);
  for (let i = 0; i < 128; i++) k.b[i] = (i * 11 + 7) & 255; // ql
  for (let i = 0; i < 64; i++) k.b[128 + i] = (i * 59 + 2) & 255; // qh
  for (let s = 0; s < 16; s++) k.i8(192 + s, s * 9 - 70);
  k.half(208, 0.125);
  const expect = (i: number) => {
    // half h of 128: group g of 32 takes ql[64h + l (+32 for g odd)], low nibble for g < 2;
    // qh[32h + l] bits 2g..2g+1; scale 8h + 2g + l/16
    const h = i >> 7, g = (i >> 5) & 3, l = i & 31;
    const qlByte = k.b[64 * h + l + (g & 1 ? 32 : 0)]!;
    const low = g < 2 ? qlByte & 15 : qlByte >> 4;
    const high = (k.b[128 + 32 * h + l]! >> (2 * g)) & 3;
    const s = 8 * h + 2 * g + (l >> 4);
    return 0.125 * (s * 9 - 70) * ((low | (high << 4)) - 32);
  };
  const w = dequant(GGML_TYPE.Q6_K, k.b, 256);
  assert.equal(w[0], 0.125 * -70 * ((7 | ((2 & 3) << 4)) - 32)); // 0.125 * -70 * 7
  assertValues(GGML_TYPE.Q6_K, w, expect);
});

test('Q8_K: float32 d, int8 weights (bsums are not needed to dequantize)', () => {
  const k = block(292);
  k.f32(0, 0.375);
  for (let i = 0; i < 256; i++) k.i8(4 + i, i - 128);
  assertValues(GGML_TYPE.Q8_K, dequant(GGML_TYPE.Q8_K, k.b, 256), (i) => 0.375 * (i - 128));
});

test('rows of several blocks: each block uses its own scales', () => {
  const row = new Uint8Array(3 * 34);
  const dv = new DataView(row.buffer);
  for (let b = 0; b < 3; b++) {
    dv.setUint16(b * 34, f32ToF16(b + 1), true);
    for (let j = 0; j < 32; j++) dv.setInt8(b * 34 + 2 + j, j - 16);
  }
  assertValues(GGML_TYPE.Q8_0, dequant(GGML_TYPE.Q8_0, row, 96), (i) => ((i >> 5) + 1) * ((i & 31) - 16));
  // two Q6_K blocks: the second is the first scaled by 2
  const x = gaussianRow(seededRandom(7), 256, 1); // sigma 1 keeps d a normal half (0.02 makes it subnormal)
  const two = Float32Array.from([...x, ...x.map((v) => 2 * v)]);
  const w = dequant(GGML_TYPE.Q6_K, quantizeRow(GGML_TYPE.Q6_K, two, 512), 512);
  for (let i = 0; i < 256; i++) assert.ok(Math.abs(w[256 + i]! - 2 * w[i]!) <= 1e-3 * Math.abs(w[i]!) + 1e-6, `weight ${i}`);
});

function gaussianRow(rnd: () => number, n: number, sigma = 0.02): Float32Array {
  return Float32Array.from({ length: n }, () => sigma * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd()));
}

/**
 * quantize → dequantize of seeded Gaussian rows of 1024 weights (4 K-blocks, 32 small blocks).
 * Bounds are about 1.5x the worst NMSE measured over 20 rows (mean in the comment); they match
 * the bits per weight: each extra bit divides the error by about 4.
 */
const ROUND_TRIP_BOUNDS: Array<[keyof typeof GGML_TYPE, number]> = [
  ['F32', 0],
  ['F16', 1e-7], // 4.3e-8
  ['BF16', 5e-6], // 2.7e-6
  ['Q8_0', 5e-5], // 2.9e-5
  ['Q8_K', 1.2e-4], // 4.9e-5
  ['Q6_K', 5e-4], // 3.1e-4
  ['Q5_1', 2.5e-3], // 1.4e-3
  ['Q5_K', 2.5e-3], // 1.3e-3
  ['Q5_0', 3e-3], // 1.8e-3
  ['Q4_K', 9e-3], // 5.1e-3
  ['Q4_1', 1e-2], // 6.1e-3
  ['Q4_0', 1.2e-2], // 7.3e-3
  ['Q3_K', 4e-2], // 2.3e-2
  ['Q2_K', 0.15], // 8.7e-2
];

test('quantize → dequantize round trips stay within per-type NMSE bounds', () => {
  for (const [name, bound] of ROUND_TRIP_BOUNDS) {
    const id = GGML_TYPE[name];
    const rnd = seededRandom(1000 + id);
    for (let r = 0; r < 20; r++) {
      const x = gaussianRow(rnd, 1024);
      const q = quantizeRow(id, x, 1024);
      assert.equal(q.byteLength, ggmlRowBytes(id, 1024));
      const e = nmse(x, dequant(id, q, 1024));
      assert.ok(e <= bound, `${name}: NMSE ${e.toExponential(2)} above ${bound}`);
    }
  }
});

test('quantizers on awkward rows: zeros, a constant, one outlier, all negative', () => {
  for (const [name] of ROUND_TRIP_BOUNDS) {
    const id = GGML_TYPE[name];
    assert.ok(dequant(id, quantizeRow(id, new Float32Array(256), 256), 256).every((v) => v === 0), `${name} of zeros`);
    const cases = [new Float32Array(256).fill(0.3), Float32Array.from({ length: 256 }, (_, i) => (i === 77 ? 50 : (i % 7) * 0.01)), Float32Array.from({ length: 256 }, (_, i) => -0.01 - i * 1e-4)];
    for (const x of cases) {
      const y = dequant(id, quantizeRow(id, x, 256), 256);
      assert.ok(y.every(Number.isFinite), `${name}: finite`);
      assert.ok(nmse(x, y) < 0.2, `${name}: NMSE ${nmse(x, y)}`);
    }
  }
});

test("reference quantizers reproduce llama-quantize's bytes (F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)", (t) => {
  const dir = shared(t, 'models/stories260K/gguf');
  if (!dir) return;
  const read = (file: string) => {
    const h = readGgufHeader(`${dir}/${file}`);
    const bytes = fs.readFileSync(h.path);
    return { h, get: (name: string) => {
      const info = h.tensors.find((x) => x.name === name)!;
      return { info, data: new Uint8Array(bytes.buffer, bytes.byteOffset + h.dataOffset + info.offset, info.byteSize) };
    } };
  };
  const f32 = read('stories260K-f32.gguf');
  for (const type of ['f16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1']) {
    const q = read(`stories260K-${type}.gguf`);
    for (const { name } of q.h.tensors) {
      const { info, data } = q.get(name);
      const src = f32.get(name).data;
      const x = new Float32Array(src.slice().buffer);
      assert.deepEqual(quantizeRow(info.type, x, x.length), data, `${type}: ${name} (${info.typeName})`);
    }
  }
});
