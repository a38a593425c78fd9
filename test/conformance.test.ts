/**
 * Backend conformance, after llama.cpp's test-backend-ops: every op × weight type × awkward shape
 * (one row, odd sizes, not multiples of 4 or 32, long rows) on seeded random inputs, each backend
 * against the reference (`ref`, src/backend/ref/ops.ts) by normalized MSE
 * (nmse = mse(ref, got) / mse(ref, 0)) with a bound per weight type. A weight type a backend has
 * no kernel for is reported as a skip with the reason, never as a pass. Then whole models: the
 * greedy golden outputs of run.c, and random models with every weight type.
 *
 * Bounds: float weights (f32, f16, bf16) differ from ref only by float32 sums in SIMD lanes
 * against ref's float64 (≈1e-13); llama2.c q8 quantizes the activations exactly as ref does
 * (runq.c) and differs by float32 scaling; for the ggml types the wasm backend quantizes the
 * activations to int16 blocks of 32 (llama.cpp uses int8, which gives ≈3e-4 here; ref multiplies
 * float32 activations), ≈1e-9 per product and ≈1e-8 on a model's logits.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { BACKEND_NAMES, BackendUnavailableError, createBackend, openBackend, type Backend, type BackendName } from '../src/backend/backend.js';
import { ropeAngles } from '../src/backend/ref/ops.js';
import { loadModel, randomModel, Session, Tokenizer, type Model } from '../src/index.js';
import { forwardBatch } from '../src/model/forward.js';
import { f16ToF32Table, f32Matrix, ggmlData, ggmlMatrix, half16Matrix, isRegrouped, q8Matrix, quantizeQ8, readRow, type GgmlMatrix, type Matrix } from '../src/model/tensor.js';
import { loadGgufModel, writeGgufModel } from '../src/formats/gguf.js';
import { WasmPlacement } from '../src/backend/wasm/memory.js';
import { GGML_TYPE, f32ToBf16, f32ToF16, quantizeRow } from '../src/quant/ggml.js';
import { instantiateKernels, kernelVariant, wasmApi } from '../src/backend/wasm/loader.js';
import { COLD_MIN_BYTES, PANEL_MIN, wakeRule, type WasmBackend } from '../src/backend/wasm/wasm.js';

const MAX_WASM_PAGES = 65536; // the kernels declare a shared memory of at most 4 GiB
import { nmse, readJsonl, seededRandom, shared, tempDir } from './helpers.js';
import { startRule } from '../src/backend/wasm/pool.js';

// products on several threads must really be split: dispatches wait for workers still starting
// (by default the calling thread runs them alone until then; tested in conformance.test.ts)
startRule.wait = true;

const OTHERS = BACKEND_NAMES.filter((n): n is Exclude<BackendName, 'ref'> => n !== 'ref');

/**
 * Q4_0's products quantize their activations to ±1927 (11 bits and a sign, asm/kernels.ts
 * Q4_RANGE; the other ggml types: ±32767): the rounding's variance over the activations' is about
 * (2.2 / 1927)² / 12 ≈ 1e-7 for these roughly normal vectors (measured: 4e-9 … 2.5e-7 on the
 * shapes below, 1e-7 on 1031 rows), more where a short row's terms cancel (another draw of 3x96:
 * 9e-7). llama.cpp's int8 activations would give about 2.5e-5.
 */
const Q4_0_BOUND = 2e-6;

/**
 * With relaxed SIMD (kernels-relaxed.wasm, src/backend/wasm/loader.ts), Q4_0's and Q4_K's panel
 * products (8 or more vectors) take int8 activations (±127, as llama.cpp's Q8_0 activations of its
 * Q4_0 / Q4_K products): about (2.2 / 127)² / 12 ≈ 2.5e-5 of the activations' variance, more where
 * a short row's terms cancel.
 */
const INT8_BOUND = 2e-4;
const RELAXED = kernelVariant() === 'relaxed-simd';

/** int8 activations of a relaxed panel (asm/kernels.ts quantizePanelsQ4r): block b's values and scale. */
function int8Block(x: Float32Array, b: number): { q: number[]; d: number } {
  const f = Math.fround;
  const rne = (v: number) => (Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : Math.round(v));
  let amax = 0;
  for (let k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(x[32 * b + k]!));
  const d = f(amax / 127), id = d !== 0 ? f(1 / d) : 0;
  return { q: Array.from({ length: 32 }, (_, k) => rne(f(x[32 * b + k]! * id))), d };
}

/**
 * The plain twin of the relaxed Q4_0 panel product (asm/kernels.ts quantizePanelsQ4r, panelQ4r):
 * row i of Q4_0 matrix `m` times x, x quantized per block of 32 to int8 (d = amax / 127 in
 * float32, q = x · (1 / d) rounded half to even), the exact integer Σ (nibble − 8) · q per block,
 * then sum += f32(isum) · (d_w · d_x) block after block in float32.
 */
function q4_0Int8Row(m: GgmlMatrix, i: number, x: Float32Array): number {
  const bytes = ggmlData(m), h16 = f16ToF32Table(), f = Math.fround;
  let sum = 0;
  for (let b = 0; b < m.cols / 32; b++) {
    const { q, d } = int8Block(x, b);
    const o = i * m.rowBytes + 18 * b;
    let isum = 0;
    for (let j = 0; j < 16; j++) isum += ((bytes[o + 2 + j]! & 15) - 8) * q[j]! + ((bytes[o + 2 + j]! >> 4) - 8) * q[j + 16]!;
    sum = f(sum + f(f(isum) * f(h16[bytes[o]! | (bytes[o + 1]! << 8)]! * d)));
  }
  return sum;
}

/**
 * The plain twin of the relaxed Q4_K panel product (asm/kernels.ts nibblesQ4_K, panelQ4r with
 * mins): per 32-weight sub-block with scale sc and min m (6 bits each), A = d·sc and M = dmin·m / 8
 * in float32, the exact Σ q · x_q and 8 · Σ x_q, then sum = (sum + f32(isum)·(A·d_x)) − f32(8Σx_q)·(M·d_x).
 */
function q4_KInt8Row(m: GgmlMatrix, i: number, x: Float32Array): number {
  const bytes = ggmlData(m), h16 = f16ToF32Table(), f = Math.fround;
  let sum = 0;
  for (let sb = 0; sb < m.cols / 256; sb++) {
    const o = i * m.rowBytes + 144 * sb;
    const d = h16[bytes[o]! | (bytes[o + 1]! << 8)]!, dmin = h16[bytes[o + 2]! | (bytes[o + 3]! << 8)]!;
    for (let j = 0; j < 8; j++) {
      const sc = j < 4 ? bytes[o + 4 + j]! & 63 : (bytes[o + 8 + j]! & 15) | ((bytes[o + j]! >> 6) << 4);
      const mn = j < 4 ? bytes[o + 8 + j]! & 63 : (bytes[o + 8 + j]! >> 4) | ((bytes[o + 4 + j]! >> 6) << 4);
      const { q, d: dx } = int8Block(x, 8 * sb + j);
      let isum = 0, sx = 0;
      for (let l = 0; l < 32; l++) {
        const qs = bytes[o + 16 + 32 * (j >> 1) + l]!;
        isum += ((j & 1) === 0 ? qs & 15 : qs >> 4) * q[l]!;
        sx += q[l]!;
      }
      const A = f(d * sc), M = f(f(dmin * mn) * 0.125);
      sum = f(f(sum + f(f(isum) * f(A * dx))) - f(f(8 * sx) * f(M * dx)));
    }
  }
  return sum;
}

/** Weight types: the bound on NMSE against ref, and the (rows, cols) shapes each is tried on. */
const WEIGHT_CASES: Array<{ type: string; bound: number; shapes: Array<[number, number]> }> = [
  { type: 'f32', bound: 1e-10, shapes: [[1, 1], [1, 7], [3, 5], [7, 33], [17, 67], [33, 128], [5, 4096], [2, 4099]] },
  { type: 'f16', bound: 1e-10, shapes: [[1, 1], [1, 7], [3, 5], [7, 33], [17, 67], [5, 4096], [2, 4099]] },
  { type: 'bf16', bound: 1e-10, shapes: [[1, 1], [1, 7], [3, 5], [7, 33], [17, 67], [5, 4096], [2, 4099]] },
  { type: 'q8:4', bound: 1e-10, shapes: [[1, 4], [3, 12], [5, 36], [2, 4100]] },
  { type: 'q8:24', bound: 1e-10, shapes: [[1, 24], [3, 72], [2, 4104]] },
  { type: 'q8:32', bound: 1e-10, shapes: [[1, 32], [3, 96], [2, 4096]] },
  { type: 'q8:64', bound: 1e-10, shapes: [[1, 64], [7, 192], [3, 4096], [1, 11008]] },
  // Q8_0 and Q4_0: rows regrouped in eights, and the last rows % 8 in ggml's layout (asm/kernels.ts groupsQ8x8, matvecQ4_0)
  { type: 'Q8_0', bound: 5e-8, shapes: [[1, 32], [8, 32], [3, 96], [7, 160], [9, 224], [20, 96], [5, 4096], [2, 11008], [13, 11008]] },
  { type: 'Q4_0', bound: Q4_0_BOUND, shapes: [[1, 32], [8, 32], [3, 96], [7, 160], [9, 224], [20, 96], [5, 4096], [2, 11008], [13, 11008]] },
  { type: 'Q4_K', bound: 5e-8, shapes: [[1, 256], [3, 512], [5, 4096], [2, 11008]] },
  { type: 'Q6_K', bound: 5e-8, shapes: [[1, 256], [3, 512], [5, 4096], [2, 11008]] },
  // types without a wasm kernel: reported as skipped (the backend runs the reference op)
  { type: 'Q5_K', bound: 5e-8, shapes: [[2, 256]] },
  { type: 'Q4_1', bound: 5e-8, shapes: [[2, 64]] },
];

/** Bound for the small ops: ref's rounding is followed step by step, so ≈0 or an ulp of exp. */
const OP_BOUND = 1e-12;

function randomArray(rnd: () => number, n: number, scale = 1): Float32Array {
  // sums of uniforms: roughly normal, with the occasional large value quantizers must handle
  return Float32Array.from({ length: n }, () => scale * (rnd() + rnd() + rnd() - 1.5));
}

/** A random matrix of `type` ('f32', 'f16', 'bf16', 'q8:GS', or a ggml type name). */
function randomMatrix(type: string, rows: number, cols: number, rnd: () => number): Matrix {
  const v = randomArray(rnd, rows * cols);
  return toType(type, v, rows, cols);
}

/** `base` (a random f32 model) with every matrix but the embedding table in weight type `type`. */
function withType(base: Omit<Model, 'source'>, type: string): Model {
  const conv = (m: Matrix) => (m.type === 'f32' ? toType(type, m.data, m.rows, m.cols) : m);
  const w = base.weights;
  return {
    config: base.config,
    source: { path: '(random)', format: type },
    weights: {
      ...w,
      classifier: conv(w.classifier),
      layers: w.layers.map((l) => ({ ...l, wq: conv(l.wq), wk: conv(l.wk), wv: conv(l.wv), wo: conv(l.wo), w1: conv(l.w1), w2: conv(l.w2), w3: conv(l.w3) })),
    },
  };
}

function toType(type: string, v: Float32Array, rows: number, cols: number): Matrix {
  if (type === 'f32') return f32Matrix(v, rows, cols);
  if (type === 'f16' || type === 'bf16') return half16Matrix(type, Uint16Array.from(v, type === 'f16' ? f32ToF16 : f32ToBf16), rows, cols);
  if (type.startsWith('q8:')) {
    const gs = Number(type.slice(3));
    const { q, s } = quantizeQ8(v, gs);
    return q8Matrix(q, s, rows, cols, gs);
  }
  const id = GGML_TYPE[type as keyof typeof GGML_TYPE];
  const data = new Uint8Array(rows * quantizeRow(id, v.subarray(0, cols), cols).length);
  let at = 0;
  for (let r = 0; r < rows; r++) {
    const row = quantizeRow(id, v.subarray(r * cols, (r + 1) * cols), cols);
    data.set(row, at);
    at += row.length;
  }
  return ggmlMatrix(id, data, rows, cols);
}

function backends(name: BackendName, maxCols: number): { ref: Backend; be: Backend } {
  const sizing = { maxCols, weightBytes: 64 * 2 ** 20 };
  return { ref: createBackend('ref', sizing), be: createBackend(name, sizing) };
}

/** Run `op` on both backends with the same host inputs; returns the outputs (copies). */
function both(b: { ref: Backend; be: Backend }, op: (b: Backend) => Float32Array): [Float32Array, Float32Array] {
  return [Float32Array.from(op(b.ref)), Float32Array.from(op(b.be))];
}

function check(t: TestContext, what: string, ref: Float32Array, got: Float32Array, bound: number): number {
  assert.equal(got.length, ref.length);
  const e = ref.every((v) => v === 0) ? (got.every((v) => v === 0) ? 0 : Infinity) : nmse(ref, got);
  assert.ok(e <= bound, `${what}: nmse ${e} > ${bound}`);
  t.diagnostic(`${what}: nmse ${e.toExponential(2)}`);
  return e;
}

for (const name of OTHERS) {
  test(`${name} backend starts (a build that cannot run its kernels fails here, not silently)`, () => {
    try {
      createBackend(name, { maxCols: 16, weightBytes: 0 });
    } catch (e) {
      if (e instanceof BackendUnavailableError) assert.fail(`${name} backend unavailable: ${e.message}`);
      throw e;
    }
  });

  for (const wc of WEIGHT_CASES) {
    test(`${name} vs ref: matvec ${wc.type}`, async (t) => {
      const typeName = wc.type.startsWith('q8:') ? 'q8' : wc.type;
      const probe = createBackend(name, { maxCols: 16, weightBytes: 0 });
      if (!probe.supports('matvec', typeName)) {
        t.skip(`not supported: the ${name} backend has no ${typeName} kernel and runs the reference op`);
        return;
      }
      const rnd = seededRandom(0xc0ffee ^ wc.type.length);
      let worst = 0;
      for (const [rows, cols] of wc.shapes) {
        const m = randomMatrix(wc.type, rows, cols, rnd);
        const x = randomArray(rnd, cols);
        const b = backends(name, cols);
        const [r, g] = both(b, (be) => {
          const out = be.vector(rows);
          be.matvec(out, be.vector(cols, x), be.upload(m));
          return be.read(out);
        });
        worst = Math.max(worst, check(t, `${wc.type} ${rows}x${cols}`, r, g, wc.bound));
      }
      t.diagnostic(`${wc.type}: worst nmse ${worst.toExponential(2)} (bound ${wc.bound})`);
    });
  }

  test(`${name} vs ref: rmsnorm, add, siluMul, softmax, argmax on odd and long vectors`, (t) => {
    const rnd = seededRandom(7);
    for (const n of [1, 3, 7, 64, 4097]) {
      const b = backends(name, n);
      const x = randomArray(rnd, n, 3);
      const y = randomArray(rnd, n, 3);
      const g = randomArray(rnd, n);
      check(t, `rmsnorm ${n}`, ...both(b, (be) => {
        const out = be.vector(n);
        be.rmsnorm(out, be.vector(n, x), be.vector(n, g), 1e-5);
        return be.read(out);
      }), OP_BOUND);
      check(t, `rmsnorm in place ${n}`, ...both(b, (be) => {
        const v = be.vector(n, x);
        be.rmsnorm(v, v, be.vector(n, g), 1e-6);
        return be.read(v);
      }), OP_BOUND);
      check(t, `add ${n}`, ...both(b, (be) => {
        const v = be.vector(n, x);
        be.add(v, be.vector(n, y));
        return be.read(v);
      }), 0);
      check(t, `siluMul ${n}`, ...both(b, (be) => {
        const v = be.vector(n, x);
        be.siluMul(v, be.vector(n, y));
        return be.read(v);
      }), OP_BOUND);
      check(t, `softmax ${n} (first n-1)`, ...both(b, (be) => {
        const v = be.vector(n, x);
        be.softmax(v, Math.max(1, n - 1));
        return be.read(v);
      }), OP_BOUND);
      const withTies = Float32Array.from(x, (v, i) => (i % 5 === 3 ? 100 : v));
      const am = both(b, (be) => Float32Array.of(be.argmax(be.vector(n, withTies), n), be.argmax(be.vector(n, x), n)));
      assert.deepEqual(am[1], am[0], `argmax ${n}`);
    }
  });

  test(`${name} vs ref: rope for head sizes 2 … 128 at positions 0 … 4000`, (t) => {
    const rnd = seededRandom(11);
    for (const [n, headDim, pos] of [[2, 2, 0], [12, 4, 1], [48, 12, 17], [256, 64, 255], [4096, 128, 4000]] as const) {
      const cos = new Float32Array(headDim / 2);
      const sin = new Float32Array(headDim / 2);
      ropeAngles(pos, headDim, 10000, cos, sin);
      const v = randomArray(rnd, n);
      const b = backends(name, n);
      check(t, `rope n=${n} headDim=${headDim} pos=${pos}`, ...both(b, (be) => {
        const x = be.vector(n, v);
        be.rope(x, n, headDim, be.vector(headDim / 2, cos), be.vector(headDim / 2, sin));
        return be.read(x);
      }), OP_BOUND);
    }
  });

  test(`${name} vs ref: attention over the KV cache (grouped-query, odd head sizes, long contexts)`, (t) => {
    const rnd = seededRandom(13);
    const shapes = [
      { nHeads: 1, nKvHeads: 1, headDim: 4 },
      { nHeads: 6, nKvHeads: 2, headDim: 8 },
      { nHeads: 2, nKvHeads: 1, headDim: 12 },
      { nHeads: 10, nKvHeads: 10, headDim: 5 },
      { nHeads: 8, nKvHeads: 2, headDim: 128 },
    ];
    for (const s of shapes) {
      for (const pos of [0, 5, 300]) {
        const kv = s.nKvHeads * s.headDim;
        const dim = s.nHeads * s.headDim;
        const seq = pos + 3; // the cache is longer than the positions used
        const q = randomArray(rnd, dim);
        const kc = randomArray(rnd, seq * kv);
        const vc = randomArray(rnd, seq * kv);
        const b = backends(name, dim);
        // float32 scores and sums (ref: float64) over up to 301 positions
        check(t, `attention ${s.nHeads}/${s.nKvHeads}x${s.headDim} pos ${pos}`, ...both(b, (be) => {
          const out = be.vector(dim);
          be.attention(out, be.vector(dim, q), be.vector(seq * kv, kc), be.vector(seq * kv, vc), be.vector(seq), pos, s);
          return be.read(out);
        }), 1e-10);
      }
    }
  });

  test(`${name} vs ref: attention over f16 caches (values stored by copy, rounded to halves)`, (t) => {
    const rnd = seededRandom(31);
    for (const s of [{ nHeads: 1, nKvHeads: 1, headDim: 4 }, { nHeads: 6, nKvHeads: 2, headDim: 8 }, { nHeads: 10, nKvHeads: 10, headDim: 5 }, { nHeads: 8, nKvHeads: 2, headDim: 128 }]) {
      for (const pos of [0, 5, 300]) {
        const kv = s.nKvHeads * s.headDim;
        const dim = s.nHeads * s.headDim;
        const seq = pos + 3;
        const q = randomArray(rnd, dim);
        const rows = Array.from({ length: seq }, () => [randomArray(rnd, kv, 4), randomArray(rnd, kv, 4)] as const);
        const b = backends(name, dim);
        check(t, `attention f16 cache ${s.nHeads}/${s.nKvHeads}x${s.headDim} pos ${pos}`, ...both(b, (be) => {
          const kc = be.cache(seq * kv, 'f16');
          const vc = be.cache(seq * kv, 'f16');
          const row = be.vector(kv);
          rows.forEach(([k, v], r) => {
            be.write(row, k);
            be.copy(kc, r * kv, row);
            be.write(row, v);
            be.copy(vc, r * kv, row);
          });
          const out = be.vector(dim);
          be.attention(out, be.vector(dim, q), kc, vc, be.vector(seq), pos, s);
          return be.read(out);
        }), 1e-10);
      }
    }
  });

  test(`${name} vs ref: copy into the cache, write, embed`, () => {
    const b = backends(name, 8);
    const rnd = seededRandom(17);
    const table = f32Matrix(randomArray(rnd, 5 * 6), 5, 6);
    const [r, g] = both(b, (be) => {
      const cache = be.vector(20);
      const k = be.vector(6);
      be.embed(k, table, 3);
      be.copy(cache, 12, k);
      be.write(cache, Float32Array.of(1, 2), 1);
      return be.read(cache);
    });
    assert.deepEqual(g, r);
  });

  test(`${name}: a disposed session gives its memory back, refuses to run, and a new one starts clean`, () => {
    const m: Model = { ...randomModel({ dim: 48, hiddenDim: 100, nLayers: 2, nHeads: 6, nKvHeads: 2, vocabSize: 50, seqLen: 8, sharedClassifier: true }, 3), source: { path: '(random)', format: 'f32' } };
    const first = new Session(m, { backend: name });
    const a = [3, 5, 7].map((tok, pos) => Float32Array.from(first.forward(tok, pos)));
    first.dispose();
    first.dispose(); // idempotent
    assert.throws(() => first.forward(3, 0), /disposed/);
    for (let i = 0; i < 20; i++) new Session(m, { backend: name }).dispose();
    const again = new Session(m, { backend: name });
    assert.equal(again.backend, name);
    assert.deepEqual([3, 5, 7].map((tok, pos) => Float32Array.from(again.forward(tok, pos))), a);
  });

  test(`${name}: greedy generation reproduces run.c's golden outputs (stories260K)`, (t) => {
    const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
    const ckpt = shared(t, 'models/stories260K.bin');
    const tokPath = shared(t, 'models/tok512.bin');
    if (!ref || !ckpt || !tokPath) return;
    const model = loadModel(ckpt);
    const tok = Tokenizer.load(tokPath);
    let worst = 0;
    for (const c of readJsonl<{ prompt: string; steps: number; num_prompt_tokens: number; token_ids: number[] }>(ref)) {
      const s = new Session(model, { backend: name, maxSeqLen: c.steps });
      const r = new Session(model, { backend: 'ref', maxSeqLen: c.steps });
      assert.equal(s.backend, name, s.fallbackReason);
      const prompt = tok.encode(c.prompt, { bos: true });
      const tokens = [prompt[0]!];
      for (let pos = 0; pos < c.steps - 1; pos++) {
        const logits = s.forward(tokens[pos]!, pos);
        worst = Math.max(worst, nmse(r.forward(tokens[pos]!, pos), logits));
        const next = pos + 1 < prompt.length ? prompt[pos + 1]! : argmaxOf(logits);
        tokens.push(next);
        if (next === 1) break;
      }
      // run.c's list ends with the BOS that stopped it, as ours does here
      assert.deepEqual(tokens, c.token_ids, c.prompt);
    }
    assert.ok(worst < 1e-9, `logits nmse vs ref ${worst}`);
    t.diagnostic(`token ids identical to run.c; logits nmse vs ref at most ${worst.toExponential(2)}`);
  });

  test(`${name} vs ref: whole random models with every weight type (logits at 40 positions)`, (t) => {
    // K-quants need rows that are whole 256-blocks: dim 256, hidden 768; grouped-query attention
    const shape = { dim: 256, hiddenDim: 768, nLayers: 2, nHeads: 8, nKvHeads: 2, vocabSize: 300, seqLen: 40, sharedClassifier: false };
    const base = randomModel(shape, 5, 0.2);
    // Q4_0: 11-bit activations (Q4_0_BOUND), measured 4e-6
    const bounds: Record<string, number> = { f32: 1e-10, f16: 1e-10, bf16: 1e-10, 'q8:64': 1e-9, Q8_0: 1e-7, Q4_0: 1e-5, Q4_K: 1e-7, Q6_K: 1e-7 };
    for (const [type, bound] of Object.entries(bounds)) {
      const model = withType(base, type);
      const s = new Session(model, { backend: name });
      const r = new Session(model, { backend: 'ref' });
      assert.equal(s.backend, name, s.fallbackReason);
      let worst = 0;
      for (let pos = 0; pos < shape.seqLen; pos++) {
        const token = (pos * 37 + 11) % shape.vocabSize;
        worst = Math.max(worst, nmse(r.forward(token, pos), s.forward(token, pos)));
      }
      assert.ok(worst < bound, `${type}: logits nmse ${worst} ≥ ${bound}`);
      t.diagnostic(`${type}: logits nmse vs ref at most ${worst.toExponential(2)} (bound ${bound})`);
    }
  });
}

// The f16 KV cache's store: storeHalves (SIMD, the float32 adder does the rounding) against
// f32ToF16 (plain, round to nearest even), bit for bit, on the awkward values and on random
// float32 bit patterns of every exponent.
test('wasm: storeHalves rounds float32 to halves exactly as f32ToF16 (ties to even, subnormals, overflow, NaN)', () => {
  const memory = new wasmApi!.Memory({ initial: 64, maximum: MAX_WASM_PAGES, shared: true });
  const k = instantiateKernels(memory);
  const bits = new Uint32Array(1 << 16);
  const rnd = seededRandom(37);
  for (let i = 0; i < bits.length; i++) bits[i] = Math.floor(rnd() * 2 ** 32) >>> 0;
  const edge = [0, -0, 1, -1, 65504, 65519.99, 65520, -65520, 1e9, Infinity, -Infinity, NaN, 2 ** -14, 2 ** -24, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -26, 3 * 2 ** -25, 5.960464477539063e-8, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2049, 2051, 1e-40];
  const x = new Float32Array(bits.buffer);
  x.set(edge);
  const src = 1 << 16;
  const dst = src + 4 * x.length;
  new Float32Array(memory.buffer, src, x.length).set(x);
  for (const n of [x.length, 13]) {
    k.storeHalves(dst, src, n); // n = 13: the scalar tail after one 8-wide step
    const got = new Uint16Array(memory.buffer, dst, n);
    for (let i = 0; i < n; i++) assert.equal(got[i], f32ToF16(x[i]!), `x = ${x[i]} (bits 0x${bits[i]!.toString(16)})`);
  }
});

// Threads: the wasm backend splits the rows of products across worker threads over a shared
// memory. Each row is computed by the same kernel either way, so outputs must be bit-identical.
test('wasm: matvec on 3 threads equals 1 thread bit for bit, every weight type (products large enough to split)', (t) => {
  const rnd = seededRandom(23);
  const [rows, cols] = [1031, 1024]; // over MIN_PARALLEL_WEIGHTS, rows not a multiple of the threads
  for (const type of ['f32', 'f16', 'bf16', 'q8:64', 'Q8_0', 'Q4_0', 'Q4_K', 'Q6_K']) {
    const m = randomMatrix(type, rows, cols, rnd);
    const x = randomArray(rnd, cols);
    const run = (threads: number) => {
      const be = createBackend('wasm', { maxCols: cols, weightBytes: 8 * rows * cols, threads });
      const out = be.vector(rows);
      const w = be.upload(m);
      const xv = be.vector(cols, x);
      be.matvecs([[out, xv, w], [be.vector(rows), xv, w]]); // two products in one dispatch
      be.matvec(out, xv, w);
      return Float32Array.from(be.read(out));
    };
    const one = run(1);
    assert.deepEqual(run(3), one, type);
    const ref = createBackend('ref', { maxCols: cols, weightBytes: 0 });
    const r = ref.vector(rows);
    ref.matvec(r, ref.vector(cols, x), ref.upload(m));
    check(t, `${type} ${rows}x${cols} on 3 threads`, Float32Array.from(ref.read(r)), one, type === 'Q4_0' ? Q4_0_BOUND : 5e-8);
  }
});

// Until its workers have started, a pool's calling thread runs each dispatch alone (pool.ts,
// startRule): the first products of a fresh 2-thread session, whether or not the workers are up
// yet, equal 1 thread's bit for bit, and the workers are started.
test('wasm: a fresh 2-thread backend runs its first dispatches without waiting for its workers, with 1 thread\'s results', (t) => {
  startRule.wait = false;
  t.after(() => void (startRule.wait = true));
  const rnd = seededRandom(41);
  const [rows, cols] = [1031, 1024]; // over MIN_PARALLEL_WEIGHTS
  for (const type of ['f32', 'Q8_0', 'Q4_0']) {
    const m = randomMatrix(type, rows, cols, rnd);
    const x = randomArray(rnd, cols);
    const run = (threads: number) => {
      const be = createBackend('wasm', { maxCols: cols, weightBytes: 8 * rows * cols, threads }) as WasmBackend;
      const w = be.upload(m);
      const xv = be.vector(cols, x);
      const outs = Array.from({ length: 5 }, () => be.vector(rows));
      for (const out of outs) be.matvec(out, xv, w); // the first ones before the worker is up
      return { outs: outs.map((o) => Float32Array.from(be.read(o))), started: be.threadsStarted };
    };
    const one = run(1).outs[0]!;
    const two = run(2);
    assert.ok(two.started, `${type}: the workers were started`);
    for (const o of two.outs) assert.deepEqual(o, one, type);
  }
});

// matmul: B vectors × one weight. Against ref by NMSE, and against the backend's own matvec bit
// for bit (prefill relies on it), for B of 1, odd sizes and more than one kernel dispatch (> 64),
// with the rows split across threads. NMSE over all B outputs together; the ggml bounds are looser
// than matvec's (a few outputs of one row can cancel); equality with matvec is the strict check.
test('wasm vs ref: matmul (B vectors × one weight) for B = 1 … 67, 1 and 3 threads', (t) => {
  const rnd = seededRandom(0xba7c4);
  const cases: Array<[type: string, bound: number, rows: number, cols: number]> = [
    ['f32', 1e-10, 1, 1], ['f32', 1e-10, 7, 33], ['f32', 1e-10, 17, 67], ['f32', 1e-10, 300, 288], ['f32', 1e-10, 5, 4099],
    ['Q8_0', 1e-6, 1, 32], ['Q8_0', 1e-6, 9, 64], ['Q8_0', 1e-6, 7, 160], ['Q8_0', 1e-6, 300, 288], ['Q8_0', 1e-6, 3, 4096], ['Q8_0', 1e-6, 8, 11008],
    ['f16', 1e-10, 1, 1], ['f16', 1e-10, 7, 33], ['f16', 1e-10, 17, 67], ['f16', 1e-10, 300, 288], ['f16', 1e-10, 5, 4099],
    ['bf16', 1e-10, 1, 7], ['bf16', 1e-10, 17, 67], ['bf16', 1e-10, 300, 288],
    ['Q4_0', 2e-6, 1, 32], ['Q4_0', 2e-6, 9, 64], ['Q4_0', 2e-6, 7, 160], ['Q4_0', 2e-6, 300, 288], ['Q4_0', 2e-6, 3, 4096], ['Q4_0', 2e-6, 8, 11008],
    ['Q4_K', 1e-6, 1, 256], ['Q4_K', 1e-6, 3, 512], ['Q4_K', 1e-6, 300, 512], ['Q6_K', 1e-6, 1, 256], ['Q6_K', 1e-6, 3, 512], ['Q6_K', 1e-6, 300, 256],
    // no batched kernel: matvec
    ['q8:32', 1e-10, 5, 96], ['Q5_K', 1e-6, 2, 256],
  ];
  for (const [type, bound, rows, cols] of cases) {
    const m = randomMatrix(type, rows, cols, rnd);
    for (const nb of [1, 2, 3, 4, 5, 7, 8, 9, 67]) {
      const xs = Array.from({ length: nb }, () => randomArray(rnd, cols));
      const ref = createBackend('ref', { maxCols: cols, weightBytes: 0 });
      const rw = ref.upload(m);
      const rOuts = xs.map(() => ref.vector(rows));
      ref.matmul(rOuts, xs.map((x) => ref.vector(cols, x)), rw);
      for (const threads of [1, 3]) {
        const be = createBackend('wasm', { maxCols: cols, weightBytes: 4 * rows * cols + 4096, threads });
        const w = be.upload(m);
        const xv = xs.map((x) => be.vector(cols, x));
        const outs = xs.map(() => be.vector(rows));
        be.matmul(outs, xv, w);
        const one = be.vector(rows);
        const all = new Float32Array(nb * rows);
        const allRef = new Float32Array(nb * rows);
        // float and K-quant weights in panels (B ≥ PANEL_MIN) sum their float32 values column by
        // column, as the plain loop `s += w[k]·x[k]` in float32 (run.c's matmul) does (K-quants:
        // dequantized as readRow does); everything else equals matvec
        // Q4_0 and Q4_K panels with relaxed SIMD: int8 activations, equal to their plain twin instead
        const int8 = RELAXED && nb >= PANEL_MIN && (type === 'Q4_0' || type === 'Q4_K');
        const sequential = !int8 && nb >= PANEL_MIN && ['f32', 'f16', 'bf16', 'Q4_K', 'Q6_K'].includes(type);
        for (let b = 0; b < nb; b++) {
          const got = Float32Array.from(be.read(outs[b]!));
          if (int8) {
            const twin = type === 'Q4_0' ? q4_0Int8Row : q4_KInt8Row;
            const want = Float32Array.from({ length: rows }, (_, i) => twin(m as GgmlMatrix, i, xs[b]!));
            assert.deepEqual(got, want, `${type} ${rows}x${cols} B=${nb} vector ${b}: relaxed panel product ≠ its plain twin`);
          } else if (sequential) {
            const row = new Float32Array(cols);
            const want = Float32Array.from({ length: rows }, (_, i) => {
              readRow(m, i, row);
              let acc = 0;
              for (let k = 0; k < cols; k++) acc = Math.fround(acc + Math.fround(row[k]! * xs[b]![k]!));
              return acc;
            });
            assert.deepEqual(got, want, `${type} ${rows}x${cols} B=${nb} vector ${b}: panel product ≠ the float32 loop`);
          } else {
            be.matvec(one, xv[b]!, w);
            assert.deepEqual(got, Float32Array.from(be.read(one)), `${type} ${rows}x${cols} B=${nb} vector ${b}: matmul ≠ matvec`);
          }
          all.set(got, b * rows);
          allRef.set(ref.read(rOuts[b]!), b * rows);
        }
        const e = nmse(allRef, all);
        const limit = int8 ? INT8_BOUND : bound;
        assert.ok(e <= limit, `${type} ${rows}x${cols} B=${nb} (${threads} threads): nmse ${e} > ${limit}`);
      }
    }
    t.diagnostic(`${type} ${rows}x${cols}: B = 1 … 67 within ${bound}, equal to matvec (float panels: to the float32 loop${RELAXED ? '; Q4_0 / Q4_K panels: to their int8 twin' : ''}) bit for bit`);
  }
});

// The f16 kernels widen halves with SIMD bit operations (a fast widening for finite halves, an
// exact one when a matrix holds inf / NaN): every one of the 65536 halves, alone in its row at
// each of the 8 positions of a SIMD step and in the column tail, against ref's table, bit for bit.
test('wasm: f16 widening is exact for every half (finite-only and inf / NaN matrices), matvec and matmul', () => {
  for (const withSpecials of [false, true]) {
    const halves = Array.from({ length: 65536 }, (_, h) => h).filter((h) => withSpecials || (h & 0x7c00) !== 0x7c00);
    const cols = 11; // one 8-wide step and a 3-column tail
    const rows = halves.length;
    const data = new Uint16Array(rows * cols);
    halves.forEach((h, r) => (data[r * cols + (r % cols)] = h));
    const m = half16Matrix('f16', data, rows, cols);
    const x = Float32Array.from({ length: cols }, (_, j) => [1, -2, 0.5, 3, -1, 0.25, 2, -0.5, 4, 1.5, -3][j]!);
    const ref = createBackend('ref', { maxCols: cols, weightBytes: 0 });
    const r = ref.vector(rows);
    ref.matvec(r, ref.vector(cols, x), ref.upload(m));
    const be = createBackend('wasm', { maxCols: cols, weightBytes: 2 * rows * cols + 4096 });
    const w = be.upload(m);
    const xv = be.vector(cols, x);
    const out = be.vector(rows);
    be.matvec(out, xv, w);
    const got = Float32Array.from(be.read(out));
    // Object.is per value: equal bits, except that NaNs (whose payloads differ) are equal
    const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
    assert.ok(same(got, ref.read(r)), `matvec, ${withSpecials ? 'with' : 'without'} inf / NaN`);
    const outs = [be.vector(rows), be.vector(rows)];
    be.matmul(outs, [xv, xv], w);
    for (const o of outs) assert.ok(same(be.read(o), got), 'matmul = matvec');
  }
});

test('wasm: Q8_0 / Q4_0 matrices with an inf or NaN block scale run the reference op (matvec and matmul)', () => {
  const rnd = seededRandom(29);
  // 17 rows: the inf in the second group of eight (the first is regrouped, then put back)
  for (const [type, blockBytes, rows, block] of [['Q8_0', 34, 6, 3], ['Q8_0', 34, 17, 19], ['Q4_0', 18, 6, 3], ['Q4_0', 18, 17, 19]] as const) {
    const cols = 64;
    const m = randomMatrix(type, rows, cols, rnd);
    if (m.type !== 'ggml') throw new Error('not a ggml matrix');
    new DataView(m.data.buffer, m.data.byteOffset).setUint16(block * blockBytes, 0x7c00, true); // d = inf
    const x = randomArray(rnd, cols);
    const ref = createBackend('ref', { maxCols: cols, weightBytes: 0 });
    const r = ref.vector(rows);
    ref.matvec(r, ref.vector(cols, x), ref.upload(m));
    const be = createBackend('wasm', { maxCols: cols, weightBytes: 4 * rows * cols });
    const w = be.upload(m);
    const out = be.vector(rows);
    be.matvec(out, be.vector(cols, x), w);
    assert.deepEqual(Float32Array.from(be.read(out)), Float32Array.from(ref.read(r)), type);
    const outs = [be.vector(rows)];
    be.matmul(outs, [be.vector(cols, x)], w);
    assert.deepEqual(Float32Array.from(be.read(outs[0]!)), Float32Array.from(ref.read(r)), `${type} matmul`);
  }
});

// The wasm backend regroups Q4_0 and Q8_0 matrices in eights of rows (asm/kernels.ts, matvecQ4_0, groupsQ8x8): in
// place where the loader put the weights into its memory (as they are read), or in its copy at
// upload. Everything else that reads such a matrix must still see ggml's layout: embedding lookups
// of a shared classifier, the reference backend on the same model, the GGUF writer, a second
// session. A matrix with an inf or NaN scale stays as it was.
for (const type of ['Q4_0', 'Q8_0'] as const) test(`wasm: ${type} regrouped in place as it loads; readRow, the reference backend and the GGUF writer still read ggml's layout`, (t) => {
  // 301 classifier rows (296 regrouped, 5 as they were), tied to the embedding table
  const shape = { dim: 96, hiddenDim: 224, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 301, seqLen: 8, sharedClassifier: true };
  const file = path.join(tempDir(t), 'model.gguf');
  writeGgufModel(file, randomModel(shape, 17), { type });
  const host = loadGgufModel(file); // host buffers: the wasm backend regroups copies
  const placed = loadGgufModel(file, { placement: new WasmPlacement() });
  const mats = (m: Model) => [m.weights.classifier, ...m.weights.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3])] as GgmlMatrix[];
  mats(placed).forEach((m, i) => {
    const theirs = mats(host)[i]!;
    assert.ok(isRegrouped(m), `matrix ${i} regrouped`);
    assert.notDeepEqual(m.data, theirs.data, `matrix ${i}: its bytes moved`);
    assert.deepEqual(ggmlData(m), theirs.data, `matrix ${i}: ggml's layout back`);
    const a = new Float32Array(m.cols), b = new Float32Array(m.cols);
    for (let r = 0; r < m.rows; r++) {
      readRow(m, r, a);
      readRow(theirs, r, b);
      assert.deepEqual(a, b, `matrix ${i} row ${r}`);
    }
  });
  const tokens = [5, 300, 17, 0, 299, 42];
  const logits = (s: Session) => tokens.map((tok, pos) => Float32Array.from(s.forward(tok, pos)));
  const wasm = logits(new Session(placed, { backend: 'wasm' }));
  assert.ok(!mats(host).some(isRegrouped));
  assert.deepEqual(logits(new Session(placed, { backend: 'wasm' })), wasm, 'a second session on the regrouped weights');
  assert.deepEqual(logits(new Session(host, { backend: 'wasm' })), wasm, 'a session on host weights (regrouped copies)');
  assert.ok(!mats(host).some(isRegrouped), 'host weights untouched');
  assert.deepEqual(logits(new Session(placed, { backend: 'ref' })), logits(new Session(host, { backend: 'ref' })), 'ref on the regrouped weights');
  const again = path.join(tempDir(t), 'again.gguf');
  writeGgufModel(again, placed, { type });
  assert.deepEqual(fs.readFileSync(again), fs.readFileSync(file), 'written back byte for byte');

  // read in chunks, `placed` after each: regrouped; with an inf scale in the third group of eight
  // rows (the first two regrouped, then put back) or in the last rows % 8, as it was
  const rnd = seededRandom(31);
  for (const badRow of [-1, 17, 24]) {
    const m = randomMatrix(type, 27, 64, rnd) as GgmlMatrix;
    if (badRow >= 0) new DataView(m.data.buffer, m.data.byteOffset).setUint16(badRow * m.rowBytes + m.rowBytes / 2, 0x7c00, true); // block 1: d = inf
    const placement = new WasmPlacement();
    placement.plan([m.data.byteLength], 0, 0);
    const pm = ggmlMatrix(GGML_TYPE[type], placement.alloc(m.data.byteLength, 0), m.rows, m.cols);
    for (const [r0, r1] of [[0, 8], [8, 24], [24, 27]] as const) {
      pm.data.set(m.data.subarray(r0 * m.rowBytes, r1 * m.rowBytes), r0 * m.rowBytes);
      placement.placed(pm, r0, r1);
    }
    assert.equal(isRegrouped(pm), badRow < 0, `inf scale in row ${badRow}`);
    assert.deepEqual(ggmlData(pm), m.data, `inf scale in row ${badRow}: the bytes`);
    if (badRow >= 0) assert.deepEqual(pm.data, m.data, `inf scale in row ${badRow}: as they were`);
  }
});

test('Session.prefill and forwardBatch equal forward token by token (ref: bit for bit; wasm: to float32 rounding; 1 and 2 threads, chunks over 64)', () => {
  const shape = { dim: 64, hiddenDim: 160, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 300, seqLen: 80, sharedClassifier: false };
  const base = randomModel(shape, 11, 0.2);
  for (const type of ['f32', 'f16', 'Q8_0', 'Q4_0']) {
    const model = withType(base, type);
    const tokens = Array.from({ length: 75 }, (_, i) => (i * 37 + 3) % shape.vocabSize);
    for (const [backend, threads] of [['ref', 1], ['wasm', 1], ['wasm', 2]] as const) {
      const s = new Session(model, { backend, threads });
      let want!: Float32Array;
      tokens.forEach((tok, pos) => (want = Float32Array.from(s.forward(tok, pos))));
      const p = new Session(model, { backend, threads });
      p.prefill(tokens.slice(0, 5), 0);
      const got = Float32Array.from(p.prefill(tokens.slice(5), 5)); // 70 tokens: chunks of 64 and 6
      // wasm: a chunk of ≥ PANEL_MIN tokens runs its attention (and float weights) as panel
      // products, which sum in the plain loop's order where `attention` and matvec sum in SIMD
      // lanes: equal up to float32 rounding
      const exact = backend === 'ref';
      const same = (a: Float32Array, b: Float32Array, what: string) => {
        if (exact) return assert.deepEqual(a, b, what);
        // int16 activations of Q8_0 / Q4_0 turn the rounding differences into a step of their grid;
        // with relaxed SIMD, Q4_0's prompt chunks take int8 activations (INT8_BOUND)
        const bound = type === 'Q4_0' && RELAXED ? INT8_BOUND : type === 'Q8_0' || type === 'Q4_0' ? 1e-8 : 1e-10;
        assert.ok(nmse(b, a) < bound, `${what}: nmse ${nmse(b, a)}`);
        assert.equal(a.indexOf(Math.max(...a)), b.indexOf(Math.max(...b)), `${what}: argmax`);
      };
      same(got, want, `${type} on ${backend}, ${threads} threads`);
      // and decoding goes on from the prefilled cache
      same(Float32Array.from(p.forward(7, 75)), Float32Array.from(s.forward(7, 75)), `${type} on ${backend}: decode after prefill`);
      // forwardBatch: one token of each of 5 sessions at different positions equals each one's forward
      const solo = Array.from({ length: 5 }, () => new Session(model, { backend, threads }));
      const batch = Array.from({ length: 5 }, () => new Session(model, { backend, threads }));
      for (let pos = 0; pos < 6; pos++) {
        const live = [0, 1, 2, 3, 4].filter((i) => pos >= i % 3); // sessions join at different steps
        const toks = live.map((i) => (i * 31 + pos * 7) % shape.vocabSize);
        const got = forwardBatch(live.map((i) => batch[i]!), toks, live.map((i) => pos - (i % 3))).map((l) => Float32Array.from(l));
        live.forEach((i, j) => assert.deepEqual(got[j], Float32Array.from(solo[i]!.forward(toks[j]!, pos - (i % 3))), `${type} on ${backend}: forwardBatch session ${i} at step ${pos}`));
      }
    }
  }
});

test('wasm: a whole model gives the same logits on 1 and 2 threads', (t) => {
  const shape = { dim: 512, hiddenDim: 1536, nLayers: 2, nHeads: 8, nKvHeads: 4, vocabSize: 1200, seqLen: 12, sharedClassifier: false };
  const base = randomModel(shape, 9, 0.2);
  // a model this small reads less than COLD_MIN_BYTES per token: split its products anyway
  wakeRule.coldMinBytes = 0;
  t.after(() => void (wakeRule.coldMinBytes = COLD_MIN_BYTES));
  for (const type of ['f32', 'Q4_0']) {
    const model = withType(base, type);
    const logits = (threads: number) => {
      const s = new Session(model, { backend: 'wasm', threads });
      assert.equal(s.backend, 'wasm', s.fallbackReason);
      assert.equal(s.threads, threads);
      return Array.from({ length: shape.seqLen }, (_, pos) => Float32Array.from(s.forward((pos * 13 + 5) % shape.vocabSize, pos)));
    };
    assert.deepEqual(logits(2), logits(1), type);
    assert.ok((openBackend(model, 'wasm', 2).backend as WasmBackend).threadsStarted, `${type}: the products ran on 2 threads`);
  }
});

test('wasm: a model reading under COLD_MIN_BYTES per token does not wake worker threads to decode; a prefill chunk does', async () => {
  // splittable per token: q, k, v (3.1 MB), w1 + w3 (6.3 MB), w2 (3.1 MB), the 4000 × 512 classifier (8.2 MB)
  const shape = { dim: 512, hiddenDim: 1536, nLayers: 1, nHeads: 8, nKvHeads: 8, vocabSize: 4000, seqLen: 80, sharedClassifier: false };
  const model: Model = { ...randomModel(shape, 3, 0.2), source: { path: '(random)', format: 'f32' } };
  const s = new Session(model, { backend: 'wasm', threads: 2 });
  const one = new Session(model, { backend: 'wasm', threads: 1 });
  const b = openBackend(model, 'wasm', 2).backend as WasmBackend;
  for (let pos = 0; pos < 6; pos++) {
    await new Promise((r) => setTimeout(r, 2)); // the workers would be asleep by now
    assert.deepEqual(s.forward(pos + 7, pos), Float32Array.from(one.forward(pos + 7, pos)));
  }
  assert.equal(b.threadsStarted, false, 'decode stayed on the calling thread');
  const prompt = Array.from({ length: 64 }, (_, i) => (i * 11 + 3) % shape.vocabSize);
  assert.deepEqual(s.prefill(prompt, 6), Float32Array.from(one.prefill(prompt, 6)));
  assert.equal(b.threadsStarted, true, 'a 64-token chunk (64 × the weights) is split');
});

function argmaxOf(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

test('wasm: attentions (a batch of tokens split across 3 threads) equals attention on each token, bit for bit; f32 and f16 caches', () => {
  const shape = { nHeads: 8, nKvHeads: 2, headDim: 64 };
  const kvDim = shape.nKvHeads * shape.headDim;
  const seqLen = 300;
  const rand = seededRandom(17);
  const fill = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
  for (const type of ['f32', 'f16'] as const) {
    const b = createBackend('wasm', { maxCols: 512, weightBytes: 0, threads: 3 }) as WasmBackend;
    const kc = b.cache(seqLen * kvDim, type);
    const vc = b.cache(seqLen * kvDim, type);
    for (let pos = 0; pos < seqLen; pos++) {
      b.copy(kc, pos * kvDim, b.vector(kvDim, fill(kvDim)));
      b.copy(vc, pos * kvDim, b.vector(kvDim, fill(kvDim)));
    }
    const positions = [0, 1, 299, 150, 7, 64, 65, 200, 298, 3, 100, 250, 33];
    const qs = positions.map(() => b.vector(shape.nHeads * shape.headDim, fill(shape.nHeads * shape.headDim)));
    const att = b.vector(seqLen);
    const want = positions.map((pos, i) => {
      const out = b.vector(shape.nHeads * shape.headDim);
      b.attention(out, qs[i]!, kc, vc, att, pos, shape);
      return Float32Array.from(b.read(out));
    });
    const outs = positions.map(() => b.vector(shape.nHeads * shape.headDim));
    b.attentions(positions.map((pos, i) => ({ out: outs[i]!, q: qs[i]!, keyCache: kc, valueCache: vc, att, pos })), shape);
    assert.ok(b.threadsStarted, 'the batch ran on the threads');
    positions.forEach((pos, i) => assert.deepEqual(Float32Array.from(b.read(outs[i]!)), want[i], `${type} cache, position ${pos}`));
  }
});

test('wasm: matmuls (several weights, the same inputs, one dispatch) equals a matmul of each, bit for bit; 1 and 3 threads', () => {
  const rnd = seededRandom(0x3a7);
  const cols = 96;
  // one panel format each (float; int), and a mix of formats (each weight on its own)
  const sets = [['f32', 'f16', 'bf16'], ['Q8_0', 'Q4_0', 'Q8_0'], ['Q8_0', 'f32']];
  for (const types of sets) {
    const ms = types.map((type, i) => randomMatrix(type, 5 + 4 * i, cols, rnd));
    for (const nb of [3, 9, 70]) {
      const xs = Array.from({ length: nb }, () => randomArray(rnd, cols));
      for (const threads of [1, 3]) {
        const be = createBackend('wasm', { maxCols: cols, weightBytes: 1 << 16, threads });
        const ws = ms.map((m) => be.upload(m));
        const xv = xs.map((x) => be.vector(cols, x));
        const together = ms.map((m) => xs.map(() => be.vector(m.rows)));
        be.matmuls(ws.map((w, i) => [together[i]!, w] as const), xv);
        ms.forEach((m, i) => {
          const alone = xs.map(() => be.vector(m.rows));
          be.matmul(alone, xv, ws[i]!);
          for (let b = 0; b < nb; b++) {
            assert.deepEqual(Float32Array.from(be.read(together[i]![b]!)), Float32Array.from(be.read(alone[b]!)), `${types.join('+')} weight ${i} B=${nb} ${threads} threads vector ${b}`);
          }
        });
      }
    }
  }
});

test('wasm: a prompt chunk\'s attention as panel products (runs of ≥ 8 consecutive positions) equals attention token by token to float32 rounding; GQA, odd head sizes, f16 caches, 1 and 3 threads', () => {
  const rand = seededRandom(23);
  const fill = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
  const shapes = [{ nHeads: 8, nKvHeads: 2, headDim: 64 }, { nHeads: 3, nKvHeads: 3, headDim: 12 }, { nHeads: 4, nKvHeads: 1, headDim: 4 }];
  // [first position, tokens]: from 0; not a multiple of 8; after a long prefix
  const runs: Array<[number, number]> = [[0, 8], [0, 37], [5, 19], [130, 64], [200, 9]];
  for (const shape of shapes) {
    const dim = shape.nHeads * shape.headDim, kvDim = shape.nKvHeads * shape.headDim;
    for (const type of ['f32', 'f16'] as const) {
      for (const threads of [1, 3]) {
        const b = createBackend('wasm', { maxCols: 512, weightBytes: 0, threads }) as WasmBackend;
        const seqLen = 260;
        const kc = b.cache(seqLen * kvDim, type), vc = b.cache(seqLen * kvDim, type);
        for (let pos = 0; pos < seqLen; pos++) {
          b.copy(kc, pos * kvDim, b.vector(kvDim, fill(kvDim)));
          b.copy(vc, pos * kvDim, b.vector(kvDim, fill(kvDim)));
        }
        const att = b.vector(seqLen);
        for (const [p0, m] of runs) {
          const qs = Array.from({ length: m }, () => b.vector(dim, fill(dim)));
          // plus one token of another position, which runs token by token
          const lone = { q: b.vector(dim, fill(dim)), pos: 3 };
          const want = [...qs.map((q, t) => [q, p0 + t] as const), [lone.q, lone.pos] as const].map(([q, pos]) => {
            const out = b.vector(dim);
            b.attention(out, q, kc, vc, att, pos, shape);
            return Float32Array.from(b.read(out));
          });
          const outs = want.map(() => b.vector(dim));
          const items = qs.map((q, t) => ({ out: outs[t]!, q, keyCache: kc, valueCache: vc, att, pos: p0 + t }));
          b.attentions([...items, { out: outs[m]!, q: lone.q, keyCache: kc, valueCache: vc, att, pos: lone.pos }], shape);
          const got = new Float32Array(want.length * dim), ref = new Float32Array(want.length * dim);
          want.forEach((w, i) => (ref.set(w, i * dim), got.set(b.read(outs[i]!), i * dim)));
          const e = nmse(ref, got);
          assert.ok(e < 1e-11, `${type} ${shape.nHeads}/${shape.nKvHeads}x${shape.headDim} run ${p0}+${m}, ${threads} threads: nmse ${e}`);
          // the lone token ran exactly as attention
          assert.deepEqual(Float32Array.from(b.read(outs[m]!)), want[m], 'the lone token');
        }
      }
    }
  }
});
