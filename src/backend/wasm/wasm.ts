/**
 * The `wasm` backend: WebAssembly SIMD kernels (asm/kernels.ts), on one or more threads.
 *
 * Memory (memory.ts): a WasmBackend runs on one part, a shared WebAssembly memory of at most
 * 4 GiB with a first-fit heap; a model larger than that gets one backend per part, split by
 * layers (`createWasmBackend`). Loaders read weights straight into the parts (WasmPlacement), and
 * `upload` uses them where they lie; a model built elsewhere (random, quantized at load) is copied
 * in once. Sessions allocate their activations, KV cache and scratch in the parts once; a vector's
 * block returns to the heap when the vector is garbage-collected.
 *
 * Per token, the TypeScript side only passes pointers: the time goes into the kernels, mostly the
 * matrix-vector products. With `threads` > 1 the memory is shared with worker threads (pool.ts)
 * and the rows of each product (or of q, k, v together: `matvecs`) are split across them; a
 * dispatch with fewer than MIN_PARALLEL_WEIGHTS weights stays on the calling thread, where
 * the synchronization would cost more than it saves. Weight types without a kernel (Q4_1, Q5_K, …) run the reference op on
 * float32 views of this memory.
 */
import type { Model } from '../../model/weights.js';
import { layerKvBytes } from '../../model/config.js';
import { isRegrouped, markRegrouped, matrixBytes, readRow, type Matrix } from '../../model/tensor.js';
import { GGML_TYPE } from '../../quant/ggml.js';
import type { AttentionItem, AttentionShape, Backend, CacheType, Op, Vector, Weight } from '../backend.js';
import { BackendUnavailableError } from '../errors.js';
import * as ops from '../ref/ops.js';
import { kernelModule, type Kernels, type WasmMemory } from './loader.js';
import { ALIGN, createPart, formatMiB, Heap, partOf, planParts, regroup, REGROUPED_TYPES, roundUp, type Part } from './memory.js';
import { KERNEL, MAX_PRODUCTS, runRows, SPIN_US, ThreadPool, type Product } from './pool.js';


/**
 * The smallest dispatch (weights of all its products together) whose rows are split across
 * threads. Measured on the 2-core bench machine (a matvec repeated, 1 vs 2 threads): up to about
 * 300K weights (288×288) two threads are slower (15–25 µs of work against a hand-off, an uneven
 * finish and, when the other core is busy, a 25–35 µs wake-up); from 768×768 (590K) they break
 * even and above 1.5M weights gain 1.4–2×. So a stories15M token runs its layers on one thread
 * and only its classifier on two; TinyLlama and larger run every product on all threads.
 */
export const MIN_PARALLEL_WEIGHTS = 512 * 1024;

/**
 * When the workers are asleep (no dispatch in the last SPIN_US), waking one costs far more than
 * the 25–35 µs of a bare-metal core on the bench machine, a virtual one: a 16 MB f32 matvec took
 * 0.96 ms on 2 threads back to back, 1.38–1.44 ms after a 2–5 ms pause (1 thread: 1.4–2.2 ms) —
 * about 0.4 ms to wake. So for a model whose token reads fewer than COLD_MIN_BYTES in products
 * large enough to split (stories15M: only its classifier, 9.8 MB at Q8_0), a dispatch that finds
 * the workers asleep runs on the calling thread unless it alone reads that much. A prompt chunk's
 * panel products and attention always take the pool (`poolFor`).
 */
export const COLD_MIN_BYTES = 24 * 2 ** 20;

/** The threshold in use (tests set it to 0 to split every eligible product of small models). */
export const wakeRule = { coldMinBytes: COLD_MIN_BYTES };

/** Matrix-vector kernels, by weight type (see asm/kernels.ts). */
type Kind = 'f32' | 'f16' | 'bf16' | 'q8' | 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K';
const GGML_KINDS = new Map<number, Kind>([
  [GGML_TYPE.Q8_0, 'Q8_0'],
  [GGML_TYPE.Q4_0, 'Q4_0'],
  [GGML_TYPE.Q4_K, 'Q4_K'],
  [GGML_TYPE.Q6_K, 'Q6_K'],
]);

function kindOf(m: Matrix): Kind | undefined {
  return m.type === 'ggml' ? GGML_KINDS.get(m.ggmlType) : m.type;
}

/** The weight types with a batched (matmul) kernel here; the others loop over matvec. */
export const WASM_MATMUL_TYPES: readonly string[] = ['f32', 'f16', 'bf16', 'Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'];

/** Vectors per batched kernel dispatch (a longer matmul is split). */
export const MAX_BATCH = 64;

/**
 * From this many vectors on, a batched product of f32 / f16 / bf16 / Q8_0 / Q4_0 / Q4_K / Q6_K
 * weights runs as panel products (asm/kernels.ts: vectors packed in panels of 8, 4 rows × 8
 * vectors per register tile); below it, the row-wise tiles. Q8_0 / Q4_0 panels equal matvec bit
 * for bit; float and K-quant panels sum each output's float32 terms column by column, the plain
 * reference loop's order, not matvec's SIMD lanes.
 */
export const PANEL_MIN = 8;
/** The most scratch per thread for a prompt chunk's attention as panel products (else token by token). */
const ATTN_PANEL_MAX_BYTES = 64 * 2 ** 20;
/** Vectors per dispatch of a batch of n: at most MAX_BATCH, all dispatches of equal size (so each has PANEL_MIN when the batch has). */
const batchPer = (n: number) => Math.ceil(n / Math.ceil(n / MAX_BATCH));

/** Bytes of one row of a weight with a kernel (f32, 16-bit, or ggml blocks). */
function rowBytesOf(w: WasmWeight): number {
  if (w.kind === 'f32') return 4 * w.cols;
  if (w.kind === 'f16' || w.kind === 'bf16') return 2 * w.cols;
  return (w.host as { rowBytes: number }).rowBytes;
}

const PANEL_KERNELS: Partial<Record<string, number>> = { f32: KERNEL.pF32, f16: KERNEL.pF16, bf16: KERNEL.pBf16, Q8_0: KERNEL.pQ8_0, Q4_0: KERNEL.pQ4_0, Q4_K: KERNEL.pQ4_K, Q6_K: KERNEL.pQ6_K };

/** The weight types with a matvec kernel here. */
export const WASM_WEIGHT_TYPES: readonly string[] = ['f32', 'f16', 'bf16', 'q8', 'Q8_0', 'Q4_0', 'Q4_K', 'Q6_K'];

class WasmVector implements Vector {
  view: Float32Array; // empty for an f16 cache
  /** `half`: an f16 KV cache (2 bytes per element), written by `copy` and read by `attention` only. */
  constructor(readonly ptr: number, readonly length: number, buffer: ArrayBuffer, readonly half = false) {
    this.view = new Float32Array(buffer, ptr, half ? 0 : length);
  }

  get bytes(): number {
    return (this.half ? 2 : 4) * this.length;
  }
}

interface WasmWeight extends Weight {
  readonly kind: Kind | undefined; // undefined: no kernel, the reference op runs on the host matrix
  readonly ptr: number; // the matrix (q8: its int8 values)
  readonly sPtr: number; // q8: its scales
  readonly x8rows: number; // Q4_0, Q8_0: rows regrouped in eights (see `upload`)
}

/** Bytes of a matrix in a wasm memory (0 for types without a kernel, which stay on the host). */
function placedBytes(m: Matrix): number {
  return kindOf(m) ? roundUp(matrixBytes(m), ALIGN) + ALIGN : 0;
}

/** Bytes the backend holds in its memories for `model`'s weights (the matrices with a kernel). */
export function wasmWeightBytes(model: Model): number {
  const w = model.weights;
  const mats = new Set<Matrix>([w.classifier, ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3])]);
  let bytes = 0;
  for (const m of mats) bytes += placedBytes(m);
  return bytes;
}

/** A model's weights on wasm backends, one per part (memory); see memory.ts. */
export interface WasmSplit {
  readonly backends: WasmBackend[];
  readonly layerPart: number[];
  readonly headPart: number;
}

/**
 * Wasm backends for `model` on `threads` threads. Weights a loader already placed in wasm parts
 * (WasmPlacement) are used where they lie; the others are copied into parts planned here, split by
 * layers when they pass one memory. Throws BackendUnavailableError when it cannot start.
 */
export function createWasmBackend(model: Model, threads = 1): WasmSplit {
  const c = model.config;
  const w = model.weights;
  const maxCols = Math.max(c.dim, c.hiddenDim);
  const layerMats = w.layers.map((l) => [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3]);
  // the bytes a token reads in dispatches large enough to split (q, k, v together; w1, w3 together)
  const big = (ms: Matrix[]) => (ms.reduce((n, m) => n + m.rows * m.cols, 0) >= MIN_PARALLEL_WEIGHTS ? ms.reduce((n, m) => n + matrixBytes(m), 0) : 0);
  const tokenBytes = w.layers.reduce((n, l) => n + big([l.wq, l.wk, l.wv]) + big([l.wo]) + big([l.w1, l.w3]) + big([l.w2]), 0) + big([w.classifier]);
  const placed = (m: Matrix) => partOf(m.type === 'q8' ? m.q : m.data);
  const backends = new Map<Part, WasmBackend>();
  const on = (part: Part) => {
    let b = backends.get(part);
    if (!b) backends.set(part, (b = new WasmBackend(part, maxCols, threads, tokenBytes)));
    return b;
  };
  if (layerMats.every((ms) => ms.every((m) => !kindOf(m) || placed(m))) && (!kindOf(w.classifier) || placed(w.classifier))) {
    // every weight is in place: the part of a layer is the part of its first placed matrix
    const partOfAll = (ms: Matrix[]) => ms.map(placed).find((p) => p);
    const fallback = placed(w.classifier) ?? partOfAll(layerMats.flat()) ?? createPart(0);
    const layerParts = layerMats.map((ms) => on(partOfAll(ms) ?? fallback));
    const head = on(placed(w.classifier) ?? fallback);
    const list = [...backends.values()];
    return { backends: list, layerPart: layerParts.map((b) => list.indexOf(b)), headPart: list.indexOf(head) };
  }
  kernelModule(); // the reason, before planning, when there is no WebAssembly or the kernels are missing
  const kv = layerKvBytes(c);
  const plan = planParts(
    layerMats.map((ms) => ms.reduce((n, m) => n + placedBytes(m), 0)),
    placedBytes(w.classifier),
    Math.min(kv, 256 * 2 ** 20),
  );
  const list = plan.partBytes.map((bytes) => new WasmBackend(createPart(bytes), maxCols, threads, tokenBytes));
  return { backends: list, layerPart: plan.layerPart, headPart: plan.headPart };
}

/**
 * A wasm backend (one part) for matrices of at most `maxCols` columns, its memory sized up front
 * for `weightBytes` of uploads, running products on `threads` threads (default 1). Throws
 * BackendUnavailableError when it cannot start.
 */
export function wasmBackend(opts: { maxCols: number; weightBytes: number; threads?: number }): WasmBackend {
  kernelModule(); // throws the reason when there is no WebAssembly or the kernels are missing
  if (opts.weightBytes > MAX_WEIGHT_BYTES) {
    throw new BackendUnavailableError(`the weights need ${formatMiB(opts.weightBytes)}, more than one 4 GiB WebAssembly memory holds next to activations and KV cache`);
  }
  return new WasmBackend(createPart(opts.weightBytes), opts.maxCols, opts.threads ?? 1);
}

const MAX_WEIGHT_BYTES = 4 * 2 ** 30 - 64 * 2 ** 20;

/** Terminates a backend's workers when the backend is garbage-collected. */
const pools = new FinalizationRegistry<ThreadPool>((pool) => pool.close());

/** Activation buffers for one product's quantized input. */
interface Slot {
  xq: number;
  xs: number;
  xb: number;
  xc: number; // Q4_0: quantizeBlocksQ4's records
  /** What they hold now: the input's pointer and the scheme ('ggml', 'Q4_0' or 'q8:<gs>'), to quantize once per input. */
  x: number;
  scheme: string;
}

export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  private readonly heap: Heap;
  private readonly freed: FinalizationRegistry<{ ptr: number; bytes: number }>;
  // quantized activations, one slot per product of a dispatch: values (q8: int8; ggml: int16),
  // float32 scales, int32 block sums
  private readonly slots: Slot[];
  // the reference op's scratch, for weight types without a kernel
  private readonly refScratch: ops.QuantizedScratch;
  private pool: ThreadPool | undefined; // started at the first dispatch large enough to split
  private attnBatch: { tab: number; scratch: number; n: number; per: number } | undefined; // attentions' table and scratch
  private attnPanel: { tab: number; scratch: number; m: number; per: number } | undefined; // attentionPanels' table and per-thread scratch
  private lastDispatch = -Infinity; // when the last split dispatch ended (its workers spin SPIN_US after it)
  private readonly maxCols: number;
  // matmul: tables of output / input pointers and MAX_BATCH quantized vectors, at the first use
  private batch: { outTab: number; xTab: number; xq: number; xs: number; xb: number; xc: number } | undefined;
  // panel products: MAX_BATCH vectors' panels and block scales, the quantizer's scratch, and
  // each thread's scratch (`scratch` bytes apart), at the first use
  private panels: { xp: number; xs: number; scratch: number; per: number } | undefined;
  private readonly specials = new WeakMap<Weight, boolean>(); // see `special`
  private att: { ptr: number; n: number } | undefined; // attention scores of every head (`scores`)

  readonly memory: WasmMemory;
  private readonly k: Kernels;
  private readonly relaxed: boolean; // kernels-relaxed.wasm (loader.ts): Q4_K's panels are int8 too

  /**
   * `tokenBytes`: the bytes a token of the model reads in dispatches large enough to split; under
   * COLD_MIN_BYTES, waking the workers each token costs more than they save, so a dispatch that
   * finds them asleep runs here unless it is itself that large (prefill's batched products are).
   */
  constructor(readonly part: Part, maxCols: number, readonly threads: number, private readonly tokenBytes = Infinity) {
    if (!Number.isInteger(threads) || threads < 1) throw new Error(`internal: ${threads} threads`);
    this.memory = part.memory;
    this.k = part.kernels;
    this.relaxed = this.k.relaxedSimd() === 1;
    this.heap = part.heap;
    const heap = this.heap;
    this.freed = new FinalizationRegistry(({ ptr, bytes }) => heap.release(ptr, bytes));
    const n = roundUp(maxCols, 256);
    this.maxCols = n;
    this.slots = Array.from({ length: MAX_PRODUCTS }, () => ({
      xq: heap.alloc(2 * n),
      xs: heap.alloc(4 * n), // one scale per group; q8 groups may be as small as 4
      xb: heap.alloc(n / 8),
      xc: heap.alloc((n / 32) * 72),
      x: -1,
      scheme: '',
    }));
    this.refScratch = { q: new Int8Array(n), s: new Float32Array(n) };
  }

  /** Whether the worker threads were started (at the first dispatch worth splitting). */
  get threadsStarted(): boolean {
    return this.pool !== undefined;
  }

  private threadPool(): ThreadPool | undefined {
    if (this.threads === 1) return undefined;
    if (!this.pool) {
      this.pool = new ThreadPool(this.threads, this.memory, kernelModule(), this.k);
      pools.register(this, this.pool);
    }
    return this.pool;
  }

  supports(op: Op, weightType?: string): boolean {
    if (op === 'matmul') return weightType !== undefined && WASM_MATMUL_TYPES.includes(weightType);
    return op !== 'matvec' || (weightType !== undefined && WASM_WEIGHT_TYPES.includes(weightType));
  }

  // -------------------------------------------------------------------------------------------
  // memory

  vector(length: number, init?: Float32Array): Vector {
    const bytes = 4 * length;
    const v = new WasmVector(this.heap.alloc(bytes), length, this.memory.buffer);
    this.freed.register(v, { ptr: v.ptr, bytes }, v);
    if (init) this.view(v).set(init);
    return v;
  }

  cache(length: number, type: CacheType): Vector {
    if (type === 'f32') return this.vector(length);
    const v = new WasmVector(this.heap.alloc(2 * length), length, this.memory.buffer, true);
    this.freed.register(v, { ptr: v.ptr, bytes: v.bytes }, v);
    return v;
  }

  /**
   * A Q4_0 or Q8_0 matrix is regrouped in eights of rows (asm/kernels.ts `repackQ4_0x8`,
   * `repackQ8_0x8`: their matvecs run 1.55–1.8× and 1.15× faster on them), once: where the
   * loader placed it, as it was read (WasmPlacement.placed), or else here, a copy made here, or
   * the matrix itself in this part, which is then marked (src/model/tensor.ts `markRegrouped`)
   * so that host-side readers and later uploads know. A
   * matrix with an inf or NaN block scale stays as it is (the reference op runs on it).
   */
  upload(m: Matrix): WasmWeight {
    const kind = kindOf(m);
    const w: WasmWeight = { rows: m.rows, cols: m.cols, host: m, kind, ptr: 0, sPtr: 0, x8rows: 0 };
    if (!kind) return w;
    const copy = (src: ArrayBufferView): number => {
      if (partOf(src) === this.part) return src.byteOffset; // placed here by the loader: no copy
      const ptr = this.heap.alloc(src.byteLength);
      new Uint8Array(this.memory.buffer, ptr, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
      return ptr;
    };
    if (m.type === 'q8') return { ...w, ptr: copy(m.q), sPtr: copy(m.s) } satisfies WasmWeight;
    const ptr = copy(m.data);
    if (m.type !== 'ggml' || !REGROUPED_TYPES.has(m.ggmlType) || m.rows < 8) return { ...w, ptr } satisfies WasmWeight;
    const regrouped = isRegrouped(m); // its bytes (so also a copy of them)
    if (!regrouped && !regroup(this.part, m.ggmlType, ptr, m.rows, m.cols, m.rowBytes)) return { ...w, ptr }; // an inf or NaN scale: `special`
    if (!regrouped && partOf(m.data) === this.part) markRegrouped(m); // in place: the host's bytes changed
    const x8: WasmWeight = { ...w, ptr, x8rows: m.rows & ~7 };
    this.specials.set(x8, false); // only matrices without inf / NaN scales are regrouped
    return x8;
  }

  /** A float32 view of the vector, remade when the memory has grown (growing detaches old views). */
  private view(v: Vector): Float32Array {
    const wv = v as WasmVector;
    if (wv.half) throw new Error('internal: an f16 cache has no float32 view');
    if (wv.view.buffer !== this.memory.buffer) wv.view = new Float32Array(this.memory.buffer, wv.ptr, wv.length);
    return wv.view;
  }

  free(v: Vector): void {
    const wv = v as WasmVector;
    if (this.freed.unregister(wv)) this.heap.release(wv.ptr, wv.bytes);
  }

  write(dst: Vector, src: Float32Array, offset = 0): void {
    this.view(dst).set(src, offset);
  }

  read(v: Vector): Float32Array {
    return this.view(v);
  }

  copy(dst: Vector, dstOffset: number, src: Vector): void {
    const s = src as WasmVector;
    const d = dst as WasmVector;
    if (dstOffset + s.length > d.length) throw new Error(`internal: copy of ${s.length} floats at ${dstOffset} into ${d.length}`);
    if (d.half) return this.k.storeHalves(d.ptr + 2 * dstOffset, s.ptr, s.length);
    this.k.copyBytes(d.ptr + 4 * dstOffset, s.ptr, 4 * s.length);
  }

  // -------------------------------------------------------------------------------------------
  // ops

  embed(out: Vector, table: Matrix, row: number): void {
    readRow(table, row, this.view(out));
  }

  matvec(out: Vector, x: Vector, w: Weight): void {
    this.matvecs([[out, x, w]]);
  }

  matmul(outs: readonly Vector[], xs: readonly Vector[], w: Weight): void {
    if (outs.length !== xs.length) throw new Error(`internal: matmul of ${xs.length} inputs into ${outs.length} outputs`);
    const ww = w as WasmWeight;
    if (!ww.kind || !WASM_MATMUL_TYPES.includes(ww.kind) || ((ww.kind === 'Q8_0' || ww.kind === 'Q4_0') && this.special(ww))) {
      // no batched kernel: matvecs, four products per dispatch
      for (let i = 0; i < xs.length; i += MAX_PRODUCTS) {
        this.matvecs(xs.slice(i, i + MAX_PRODUCTS).map((x, j) => [outs[i + j]!, x, w] as const));
      }
      return;
    }
    if (ww.cols > this.maxCols) throw new Error(`internal: matmul of ${ww.cols} columns on a backend sized for ${this.maxCols}`);
    if (xs.length >= PANEL_MIN && this.panelFormat(ww)) return this.matmuls([[outs, w]], xs);
    const bt = this.batchBuffers();
    const per = batchPer(xs.length);
    for (let b0 = 0; b0 < xs.length; b0 += per) {
      const nb = Math.min(per, xs.length - b0);
      this.pointers(bt.outTab, outs, b0, nb);
      this.pointers(bt.xTab, xs, b0, nb);
      const { rows, cols } = ww;
      const base = { out: bt.outTab, xq: bt.xTab, xs: 0, xb: 0, w: ww.ptr, s: 0, rows, cols, gs: 0, nb, rowBytes: rowBytesOf(ww) };
      let p: Product;
      if (ww.kind === 'f32' || ww.kind === 'f16' || ww.kind === 'bf16') {
        p = { ...base, kernel: ww.kind === 'f32' ? KERNEL.mmF32 : this.halfKernels(ww)[1] };
      } else {
        if (ww.kind === 'Q8_0') {
          // ggml blocks, four vectors' blocks interleaved (quantizeBlocks32x4)
          this.k.quantizeBlocks32x4(bt.xq, bt.xs, bt.xb, bt.xTab, nb, cols);
        } else if (ww.kind === 'Q4_0') {
          // each vector into its own blocks and records, back to back
          for (let b = 0; b < nb; b++) this.k.quantizeBlocksQ4(bt.xq + b * 2 * cols, bt.xs + b * (cols / 8), bt.xb + b * (cols / 8), bt.xc + b * (cols / 32) * 72, ptr(xs[b0 + b]!), cols);
        } else {
          // ggml blocks: each vector quantized into its own blocks, back to back
          for (let b = 0; b < nb; b++) this.k.quantizeBlocks32(bt.xq + b * 2 * cols, bt.xs + b * (cols / 8), bt.xb + b * (cols / 8), ptr(xs[b0 + b]!), cols);
        }
        const kernel = { Q8_0: KERNEL.mmQ8_0, Q4_0: KERNEL.mmQ4_0, Q4_K: KERNEL.mmQ4_K, Q6_K: KERNEL.mmQ6_K }[ww.kind as 'Q8_0' | 'Q4_0' | 'Q4_K' | 'Q6_K'];
        p = { ...base, kernel, xq: bt.xq, xs: bt.xs, xb: bt.xb, s: bt.xc, x8rows: ww.x8rows };
      }
      this.runOn(this.poolFor(rows * cols * nb, rows * p.rowBytes * nb), [p]);
    }
  }

  /**
   * Products of several weights with the same inputs (q, k and v; w1 and w3): as a matmul of
   * each, but with at least PANEL_MIN vectors and weights of one panel format the inputs are
   * packed into panels once and the products run in one dispatch.
   */
  matmuls(groups: ReadonlyArray<readonly [outs: readonly Vector[], w: Weight]>, xs: readonly Vector[]): void {
    const ws = groups.map(([, w]) => w as WasmWeight);
    const format = ws.length > 0 ? this.panelFormat(ws[0]!) : undefined;
    const cols = ws[0]?.cols ?? 0;
    if (xs.length < PANEL_MIN || !format || ws.length > MAX_PRODUCTS || ws.some((w) => this.panelFormat(w) !== format || w.cols !== cols || w.cols > this.maxCols)) {
      for (const [outs, w] of groups) this.matmul(outs, xs, w);
      return;
    }
    for (const [outs] of groups) if (outs.length !== xs.length) throw new Error(`internal: matmul of ${xs.length} inputs into ${outs.length} outputs`);
    const bt = this.batchBuffers();
    const pn = this.panelBuffers();
    const per = batchPer(xs.length); // each dispatch has PANEL_MIN vectors or more
    for (let b0 = 0; b0 < xs.length; b0 += per) {
      const nb = Math.min(per, xs.length - b0);
      this.pointers(bt.xTab, xs, b0, nb);
      let weights = 0, bytes = 0;
      const jobs = groups.map(([outs], i): Product => {
        const w = ws[i]!;
        const outTab = bt.outTab + 4 * MAX_BATCH * i;
        this.pointers(outTab, outs, b0, nb);
        const kernel = w.kind === 'f16' && this.special(w) ? KERNEL.pF16Exact : PANEL_KERNELS[w.kind!]!;
        const rowBytes = rowBytesOf(w);
        weights += w.rows * cols * nb;
        bytes += w.rows * rowBytes * nb;
        return { kernel, out: outTab, xq: pn.xp, xs: pn.xs, xb: 0, w: w.ptr, s: pn.scratch, rows: w.rows, cols, gs: pn.per, rowBytes, nb, x8rows: w.x8rows };
      });
      const pool = this.poolFor(weights, bytes, true);
      // the inputs into panels first: a dispatch of its own, the slots split across the threads
      const slots = (nb + 7) & ~7;
      const pack: Product = { kernel: format === 'float' ? KERNEL.packF32 : KERNEL.quantPanels, out: bt.xTab, xq: pn.xp, xs: pn.xs, xb: 0, w: format === 'int4' ? 1 : 0, s: pn.scratch, rows: slots, cols, gs: pn.per, rowBytes: 0, nb };
      this.runOn(pool, [pack]);
      this.runOn(pool, jobs);
    }
  }

  /**
   * The panels a weight's panel product takes, or undefined without one: 'float' (f32 / f16 /
   * bf16; Q4_K / Q6_K, dequantized to f32 in the scratch), 'int' (Q8_0) or 'int4' (Q4_0, whose
   * activations are quantized to ±1927; with relaxed SIMD to int8, and Q4_K's too), both with
   * finite scales.
   */
  private panelFormat(w: WasmWeight): 'float' | 'int' | 'int4' | undefined {
    // with relaxed SIMD Q4_K takes int8 panels too (asm/kernels.ts panelQ4r, nibblesQ4_K)
    if (w.kind === 'Q4_K' && this.relaxed) return 'int4';
    if (w.kind === 'f32' || w.kind === 'f16' || w.kind === 'bf16' || w.kind === 'Q4_K' || w.kind === 'Q6_K') return 'float';
    if ((w.kind === 'Q8_0' || w.kind === 'Q4_0') && !this.special(w)) return w.kind === 'Q4_0' ? 'int4' : 'int';
    return undefined;
  }

  /** The batched products' tables (MAX_PRODUCTS output tables, one input table) and quantized inputs, at the first use. */
  private batchBuffers(): NonNullable<WasmBackend['batch']> {
    const n = this.maxCols;
    return (this.batch ??= {
      outTab: this.heap.alloc(4 * MAX_BATCH * MAX_PRODUCTS),
      xTab: this.heap.alloc(4 * MAX_BATCH),
      xq: this.heap.alloc(2 * n * MAX_BATCH),
      xs: this.heap.alloc((n / 8) * MAX_BATCH),
      xb: this.heap.alloc((n / 8) * MAX_BATCH),
      xc: this.heap.alloc((n / 32) * 72 * MAX_BATCH),
    });
  }

  /** The panel products' buffers (allocated at the first use; per-thread scratch for every thread). */
  private panelBuffers(): NonNullable<WasmBackend['panels']> {
    if (!this.panels) {
      const n = this.maxCols;
      const per = this.k.panelScratchBytes(n);
      this.panels = {
        xp: this.heap.alloc((MAX_BATCH / 8) * this.k.panelBytes(n, 1)),
        xs: this.heap.alloc((MAX_BATCH / 8) * n),
        scratch: this.heap.alloc(per * this.threads),
        per,
      };
    }
    return this.panels;
  }

  /**
   * Whether a weight holds values the fast kernels do not widen exactly (looked at once per
   * weight): f16 inf / NaN halves (the exact f16 kernels run), or Q8_0 / Q4_0 block scales that
   * are inf / NaN (the reference op runs).
   */
  private special(w: WasmWeight): boolean {
    let s = this.specials.get(w);
    if (s === undefined) {
      if (w.kind === 'f16') s = this.k.halfSpecials(w.ptr, w.rows * w.cols) !== 0;
      else if (w.kind === 'Q8_0' || w.kind === 'Q4_0') s = this.k.blockScaleSpecials(w.ptr, (w.rows * w.cols) / 32, w.kind === 'Q8_0' ? 34 : 18) !== 0;
      else s = false;
      this.specials.set(w, s);
    }
    return s;
  }

  /** The matvec and matmul kernels of a 16-bit weight. */
  private halfKernels(w: WasmWeight): readonly [number, number] {
    if (w.kind === 'bf16') return [KERNEL.bf16, KERNEL.mmBf16];
    return this.special(w) ? [KERNEL.f16Exact, KERNEL.mmF16Exact] : [KERNEL.f16, KERNEL.mmF16];
  }

  matvecs(products: ReadonlyArray<readonly [out: Vector, x: Vector, w: Weight]>): void {
    if (products.length > MAX_PRODUCTS) {
      for (let i = 0; i < products.length; i += MAX_PRODUCTS) this.matvecs(products.slice(i, i + MAX_PRODUCTS));
      return;
    }
    const jobs: Product[] = [];
    let weights = 0;
    for (const s of this.slots) s.x = -1;
    products.forEach(([out, x, w], i) => {
      const p = this.product(out, x, w as WasmWeight, this.slots[i]!);
      if (p) jobs.push(p), (weights += p.rows * p.cols);
    });
    const pool = this.poolFor(weights, jobs.reduce((n, p) => n + p.rows * p.rowBytes, 0));
    this.runOn(pool, jobs);
  }

  /**
   * The pool for a dispatch of `weights` weights in `bytes` bytes, or undefined to run it here (see
   * COLD_MIN_BYTES). A prompt chunk's panel products (`chunk`) always take the pool: the first one
   * may wake the workers, the thirty or so after it find them spinning. (Run here, they left the
   * workers asleep for the next one too: a stories15M prefill ran its products on one thread.)
   */
  private poolFor(weights: number, bytes: number, chunk = false): ThreadPool | undefined {
    if (this.threads === 1 || weights < MIN_PARALLEL_WEIGHTS) return undefined;
    const min = wakeRule.coldMinBytes;
    const cold = !chunk && this.tokenBytes < min && bytes < min && performance.now() - this.lastDispatch >= SPIN_US / 1000;
    return cold ? undefined : this.threadPool();
  }

  /** Run the jobs on the pool (rows split across its threads), or here when there is none. */
  private runOn(pool: ThreadPool | undefined, jobs: Product[]): void {
    if (!pool) {
      for (const p of jobs) runRows(this.k, p, 0, p.rows);
      return;
    }
    pool.run(jobs);
    this.lastDispatch = performance.now();
  }

  /** Write the pointers of vs[b0 .. b0 + n) into the u32 table at `at`. */
  private pointers(at: number, vs: readonly Vector[], b0: number, n: number): void {
    const tab = new Uint32Array(this.memory.buffer, at, n);
    for (let b = 0; b < n; b++) tab[b] = ptr(vs[b0 + b]!);
  }

  /**
   * The kernel job for out = W · x, the activations quantized into `slot` (or into the slot of an
   * earlier product with the same input and scheme); undefined when the reference op ran instead.
   */
  private product(out: Vector, x: Vector, w: WasmWeight, slot: Slot): Product | undefined {
    const o = (out as WasmVector).ptr;
    const xp = (x as WasmVector).ptr;
    const { kind, ptr, rows, cols } = w;
    const base = { out: o, w: ptr, s: w.sPtr, rows, cols, xq: xp, xs: 0, xb: 0, gs: 0 };
    switch (kind) {
      case 'f32':
        return { ...base, kernel: KERNEL.f32, rowBytes: 4 * cols };
      case 'f16':
      case 'bf16':
        return { ...base, kernel: this.halfKernels(w)[0], rowBytes: 2 * cols };
      case 'q8': {
        const gs = (w.host as { groupSize: number }).groupSize;
        const q = this.quantized(xp, `q8:${gs}`, slot, (s) => this.k.quantizeGroups(s.xq, s.xs, xp, cols, gs));
        return { ...base, kernel: KERNEL.q8, xq: q.xq, xs: q.xs, gs, rowBytes: cols };
      }
      case 'Q4_0': {
        if (this.special(w)) return this.refProduct(out, x, w);
        const q = this.quantized(xp, 'Q4_0', slot, (s) => this.k.quantizeBlocksQ4(s.xq, s.xs, s.xb, s.xc, xp, cols));
        return { ...base, kernel: KERNEL.Q4_0, xq: q.xq, xs: q.xs, xb: q.xb, s: q.xc, rowBytes: rowBytesOf(w), x8rows: w.x8rows };
      }
      case 'Q8_0':
      case 'Q4_K':
      case 'Q6_K': {
        if (kind === 'Q8_0' && this.special(w)) return this.refProduct(out, x, w);
        const q = this.quantized(xp, 'ggml', slot, (s) => this.k.quantizeBlocks32(s.xq, s.xs, s.xb, xp, cols));
        return { ...base, kernel: KERNEL[kind], xq: q.xq, xs: q.xs, xb: q.xb, rowBytes: rowBytesOf(w), x8rows: w.x8rows };
      }
      case undefined:
        return this.refProduct(out, x, w);
    }
  }

  private refProduct(out: Vector, x: Vector, w: WasmWeight): undefined {
    ops.matmul(this.view(out), this.view(x), w.host, this.refScratch);
    return undefined;
  }

  private quantized(x: number, scheme: string, slot: Slot, quantize: (s: Slot) => void): Slot {
    const have = this.slots.find((s) => s.x === x && s.scheme === scheme);
    if (have) return have;
    quantize(slot);
    slot.x = x;
    slot.scheme = scheme;
    return slot;
  }

  /**
   * Stream `bytes` of this backend's memory on all its threads and return bytes per second (the
   * bench's read bandwidth; best of `repeats`).
   */
  readBandwidth(bytes: number, repeats = 5): number {
    const rowBytes = 1 << 16;
    const rows = Math.ceil(bytes / rowBytes);
    const p: Product = { kernel: KERNEL.read, out: 0, xq: 0, xs: 0, xb: 0, w: this.heap.alloc(rows * rowBytes), s: 0, rows, cols: 0, gs: 0, rowBytes };
    // written first: untouched pages all map the kernel's one zero page, which reads from cache
    new Uint8Array(this.memory.buffer, p.w, rows * rowBytes).fill(1);
    let best = Infinity;
    for (let i = 0; i < repeats; i++) {
      const t = performance.now();
      const pool = this.threadPool();
      if (pool) pool.run([p]);
      else runRows(this.k, p, 0, rows);
      best = Math.min(best, performance.now() - t);
    }
    this.heap.release(p.w, rows * rowBytes);
    return (rows * rowBytes) / (best / 1000);
  }

  rmsnorm(out: Vector, x: Vector, weight: Vector, eps: number): void {
    this.k.rmsnorm(ptr(out), ptr(x), ptr(weight), x.length, eps);
  }

  rope(v: Vector, n: number, headDim: number, cos: Vector, sin: Vector): void {
    this.k.rope(ptr(v), n, headDim, ptr(cos), ptr(sin));
  }

  attention(out: Vector, q: Vector, keyCache: Vector, valueCache: Vector, _att: Vector, pos: number, s: AttentionShape): void {
    const half = (keyCache as WasmVector).half;
    if (half !== (valueCache as WasmVector).half) throw new Error('internal: attention over an f16 and an f32 cache');
    (half ? this.k.attentionF16 : this.k.attention)(ptr(out), ptr(q), ptr(keyCache), ptr(valueCache), this.scores(s.nHeads * (pos + 1)), pos, s.nHeads, s.nKvHeads, s.headDim, s.nKvHeads * s.headDim);
  }

  /**
   * Each item's `attention`: runs of PANEL_MIN or more consecutive positions of one sequence (a
   * prompt chunk) as panel products (`attentionPanels`, equal up to float32 rounding), the other
   * tokens as `attention` itself, split across the threads (`attentionRows`).
   */
  attentions(items: ReadonlyArray<AttentionItem>, s: AttentionShape): void {
    // runs of ≥ PANEL_MIN consecutive positions of one sequence (a prompt chunk): panel products
    const rest: AttentionItem[] = [];
    for (let i = 0; i < items.length; ) {
      let j = i + 1;
      const a = items[i]!;
      while (j < items.length && items[j]!.keyCache === a.keyCache && items[j]!.valueCache === a.valueCache && items[j]!.pos === a.pos + (j - i)) j++;
      if (j - i < PANEL_MIN || s.headDim % 4 !== 0 || !this.attentionPanels(items.slice(i, j), s)) rest.push(...items.slice(i, j));
      i = j;
    }
    this.attentionRows(rest, s);
  }

  /**
   * A prompt chunk's attention (m consecutive positions of one sequence) as panel products, the
   * heads split across the threads; false (nothing done) when its scratch would pass
   * ATTN_PANEL_MAX_BYTES per thread (very long contexts: token by token instead).
   */
  private attentionPanels(items: readonly AttentionItem[], s: AttentionShape): boolean {
    const m = items.length, p0 = items[0]!.pos;
    const per = roundUp(this.k.attentionPanelsScratch(m, p0 + m, s.headDim), 64);
    if (per > ATTN_PANEL_MAX_BYTES) return false;
    const half = (items[0]!.keyCache as WasmVector).half;
    if (half !== (items[0]!.valueCache as WasmVector).half) throw new Error('internal: attention over an f16 and an f32 cache');
    if (!this.attnPanel || this.attnPanel.m < m || this.attnPanel.per < per) {
      if (this.attnPanel) this.heap.release(this.attnPanel.tab, 8 * this.attnPanel.m), this.heap.release(this.attnPanel.scratch, this.attnPanel.per * this.threads);
      const size = { m: Math.max(m, this.attnPanel?.m ?? 0), per: Math.max(per, this.attnPanel?.per ?? 0) };
      this.attnPanel = { ...size, tab: this.heap.alloc(8 * size.m), scratch: this.heap.alloc(size.per * this.threads) };
    }
    const bt = this.attnPanel;
    const tab = new Uint32Array(this.memory.buffer, bt.tab, 2 * m);
    items.forEach((a, t) => ((tab[t] = ptr(a.out)), (tab[m + t] = ptr(a.q))));
    const p: Product = {
      kernel: KERNEL.attnPanels, out: bt.tab, xq: ptr(items[0]!.keyCache), xs: ptr(items[0]!.valueCache), xb: p0, w: half ? 1 : 0,
      s: bt.scratch, gs: bt.per, rows: s.nHeads, cols: s.nKvHeads, rowBytes: s.headDim, nb: m,
    };
    const macs = 2 * m * s.nHeads * (p0 + m) * s.headDim;
    const pool = this.poolFor(macs, 4 * macs, true);
    this.runOn(pool, [p]);
    return true;
  }

  /**
   * Each item's `attention`, the tokens split across the threads (each with its own score
   * scratch); bit-identical to calling `attention` on each. Tokens go into the job's table in the
   * order first, last, second, second to last, … so that each thread's contiguous share holds
   * short and long positions alike.
   */
  private attentionRows(items: readonly AttentionItem[], s: AttentionShape): void {
    const n = items.length;
    if (n === 0) return;
    const half = (items[0]!.keyCache as WasmVector).half;
    let maxPos = 0;
    let macs = 0;
    for (const a of items) {
      if ((a.keyCache as WasmVector).half !== half || (a.valueCache as WasmVector).half !== half) throw new Error('internal: attention over f16 and f32 caches');
      maxPos = Math.max(maxPos, a.pos);
      macs += 2 * s.nHeads * (a.pos + 1) * s.headDim;
    }
    const per = roundUp(s.nHeads * (maxPos + 1), 16); // floats of one token's scores
    if (!this.attnBatch || this.attnBatch.n < n || this.attnBatch.per < per) {
      if (this.attnBatch) this.heap.release(this.attnBatch.tab, 24 * this.attnBatch.n), this.heap.release(this.attnBatch.scratch, 4 * this.attnBatch.per * this.attnBatch.n);
      const size = { n: Math.max(n, this.attnBatch?.n ?? 0), per: Math.max(per, this.attnBatch?.per ?? 0) };
      this.attnBatch = { ...size, tab: this.heap.alloc(24 * size.n), scratch: this.heap.alloc(4 * size.per * size.n) };
    }
    const bt = this.attnBatch;
    const tab = new Uint32Array(this.memory.buffer, bt.tab, 6 * n);
    for (let j = 0; j < n; j++) {
      const a = items[j % 2 === 0 ? j / 2 : n - 1 - (j - 1) / 2]!;
      tab.set([ptr(a.out), ptr(a.q), ptr(a.keyCache), ptr(a.valueCache), bt.scratch + 4 * bt.per * j, a.pos], 6 * j);
    }
    const kvDim = s.nKvHeads * s.headDim;
    const p: Product = { kernel: KERNEL.attnRows, out: bt.tab, xq: 0, xs: 0, xb: 0, w: 0, s: kvDim, rows: n, cols: s.nHeads, gs: s.nKvHeads, rowBytes: s.headDim, nb: half ? 1 : 0 };
    this.runOn(n > 1 ? this.poolFor(macs, 4 * macs) : undefined, [p]);
  }

  /**
   * Scratch for `n` attention scores: the kernel scores every head over each cache row in one pass,
   * so it needs all heads' scores at once, more than the session's one-head `att` vector.
   */
  private scores(n: number): number {
    if (!this.att || this.att.n < n) {
      if (this.att) this.heap.release(this.att.ptr, 4 * this.att.n);
      const size = roundUp(n, 4096);
      this.att = { ptr: this.heap.alloc(4 * size), n: size };
    }
    return this.att.ptr;
  }

  siluMul(a: Vector, b: Vector): void {
    this.k.siluMul(ptr(a), ptr(b), a.length);
  }

  add(x: Vector, y: Vector): void {
    this.k.add(ptr(x), ptr(y), x.length);
  }

  softmax(x: Vector, n: number): void {
    this.k.softmax(ptr(x), n);
  }

  argmax(x: Vector, n: number): number {
    return this.k.argmax(ptr(x), n);
  }
}

const ptr = (v: Vector) => (v as WasmVector).ptr;
