/**
 * Worker threads for the wasm backend: the rows of matrix-vector products split across threads
 * that share one WebAssembly memory.
 *
 * Each worker (worker.ts) instantiates the same compiled kernels module on the same shared
 * memory, so a job is only pointers. A dispatch runs one to four products with one
 * synchronization (the wasm backend hands q, k, v together, and w1, w3 together):
 *
 *   main                                  worker t (1 ≤ t < n)
 *   write the products into `ctl`          spin on GEN (bounded, SPIN_US), then Atomics.wait
 *   GEN += 1 (notify if a worker sleeps)   → rows [t·r/n, (t+1)·r/n) of every product
 *   rows [0, r/n) of every product         DONE += 1, notify
 *   spin on DONE (bounded), then wait
 *
 * (A prompt chunk's panel products and attention are claimed in chunks of rows instead, see
 * CLAIMED: measured on 2 threads, stories15M Q4_0 prefill 3578–3646 → 4069–4215 tok/s, stories110M
 * Q8_0 319–325 → 398–453, TinyLlama Q8_0 45.0 → 46.1.)
 *
 * Handing a job to a spinning worker costs well under a microsecond; waking a sleeping one
 * 25–35 µs, so workers spin for SPIN_US after each job before they sleep: between the products of
 * one token they stay awake; between tokens of an idle session, or when another process holds
 * the core, they sleep rather than burn it. Rows are split (or claimed) at multiples of 8 for Q4_0
 * and Q8_0 (their regrouped rows' groups), and every output element is computed by the same kernel over the
 * same row whichever thread runs it: results are bit-identical for any number of threads.
 *
 * Until every worker has entered its loop (READY), the calling thread runs each dispatch alone
 * instead of waiting for their start. Workers are unref'd (they never keep the process alive)
 * and terminated when their backend is garbage-collected.
 */
import { Worker } from 'node:worker_threads';
import type { Kernels, WasmMemory } from './loader.js';

/** Matrix-vector kernels by code, as written into a job. */
export const KERNEL = { f32: 0, f16: 1, bf16: 2, q8: 3, Q8_0: 4, Q4_0: 5, Q4_K: 6, Q6_K: 7, read: 8, mmF32: 9, mmQ8_0: 10, f16Exact: 11, mmQ4_0: 12, mmF16: 13, mmBf16: 14, mmF16Exact: 15, mmQ4_K: 16, mmQ6_K: 17, attnRows: 18, pF32: 19, pF16: 20, pBf16: 21, pF16Exact: 22, pQ8_0: 23, pQ4_0: 24, attnPanels: 25, packF32: 26, quantPanels: 27, pQ4_K: 28, pQ6_K: 29 } as const;

// ctl layout (Int32Array over its own SharedArrayBuffer)
const GEN = 0; // job generation, bumped by main
const DONE = 1; // workers finished with this generation
const SLEEPING = 2; // workers in Atomics.wait on GEN
const COUNT = 3; // products in this job
const STOP = 4; // 1: workers exit
const READY = 5; // workers that have entered their job loop
const JOBS = 8;
const FIELDS = 13; // kernel, out, xq, xs, xb, w, s, rows, cols, gs, rowBytes, nb, x8rows
export const MAX_PRODUCTS = 4;
const NEXT = JOBS + MAX_PRODUCTS * FIELDS; // per product: the next chunk of rows to claim (claimed kernels)
const CTL_INTS = NEXT + MAX_PRODUCTS;

/**
 * Kernels whose rows the threads claim in chunks instead of fixed shares: a prompt chunk's panel
 * products and attention, compute-bound, where one thread that runs slower for a while (a late
 * wake-up, another process on its core) would leave the other waiting at every dispatch.
 * Matrix-vector products (decode) keep fixed shares: they are bound by memory, which both threads share.
 */
const CLAIMED: ReadonlySet<number> = new Set([KERNEL.pF32, KERNEL.pF16, KERNEL.pBf16, KERNEL.pF16Exact, KERNEL.pQ8_0, KERNEL.pQ4_0, KERNEL.pQ4_K, KERNEL.pQ6_K, KERNEL.attnPanels]);
/** Kernels over rows regrouped in eights (Q4_0, Q8_0): a thread's rows start at a multiple of 8. */
const EIGHTS: ReadonlySet<number> = new Set([KERNEL.Q4_0, KERNEL.mmQ4_0, KERNEL.pQ4_0, KERNEL.Q8_0, KERNEL.mmQ8_0, KERNEL.pQ8_0]);
/** Chunks per thread of a claimed product. */
const CHUNKS_PER_THREAD = 4;

/**
 * `wait`: a dispatch waits for workers still starting instead of running alone (tests that
 * compare thread counts set it, so that their products really are split).
 */
export const startRule = { wait: false };

/** How long a thread spins on a shared counter before it sleeps (µs). */
export const SPIN_US = 200;

/**
 * One product: out = W · x, with the activations already quantized where the kernel needs it.
 * Batched kernels (mm*): out_b = W · x_b for `nb` vectors; `out` is a table of nb output
 * pointers, and `xq` a table of nb input pointers (mmF32, mmF16, mmBf16) or nb quantized vectors back to
 * back (xs, xb likewise). Panel kernels (p*): `xq` the packed panels (`xs` their block scales),
 * `s` the threads' scratch, `gs` bytes of scratch per thread.
 */
export interface Product {
  kernel: number;
  out: number;
  xq: number; // f32 kernels: x itself
  xs: number;
  xb: number;
  w: number;
  s: number; // q8: the scales
  rows: number;
  cols: number;
  gs: number; // q8 group size
  rowBytes: number; // bytes of one row of w
  nb?: number; // batched kernels: vectors
  x8rows?: number; // Q4_0 and Q8_0 kernels: the rows regrouped in eights (asm/kernels.ts, matvecQ4_0, groupsQ8x8); Q4_0's `s`: the activation records
}

/** Rows [r0, r1) of `p` (pointers moved to row r0) on thread `t`. Shared by the main thread and the workers. */
export function runRows(k: Kernels, p: Product, r0: number, r1: number, t = 0): void {
  const n = r1 - r0;
  if (n <= 0) return;
  // attention of a batch's tokens: out = the table, rows = tokens, cols = heads, gs = kv heads,
  // rowBytes = head size, s = kv dim, nb = 1 for an f16 cache
  if (p.kernel === KERNEL.attnRows) return k.attentionRows(p.out, r0, r1, p.cols, p.gs, p.rowBytes, p.s, p.nb ?? 0);
  // a prompt chunk's attention (attentionPanels): rows = heads, out = the table, xq / xs = the
  // caches, xb = the first position, w = 1 for f16 caches, nb = tokens, s / gs = scratch
  // a batch's inputs into panels (rows = panel slots; out = the input table, xq / xs = the panels)
  if (p.kernel === KERNEL.packF32) return k.packPanelsF32(p.xq, p.out, p.nb!, p.cols, r0, r1);
  if (p.kernel === KERNEL.quantPanels) return k.quantizePanels(p.xq, p.xs, p.s + t * p.gs, p.out, p.nb!, p.cols, r0, r1, p.w); // w: 1 for Q4_0's range
  if (p.kernel === KERNEL.attnPanels) return k.attentionPanels(p.out, p.nb!, p.xb, r0, r1, p.rows, p.cols, p.rowBytes, p.xq, p.xs, p.w, p.s + t * p.gs);
  const out = p.out + 4 * r0;
  const w = p.w + r0 * p.rowBytes;
  switch (p.kernel) {
    case KERNEL.f32: return k.matvecF32(out, p.xq, w, n, p.cols);
    case KERNEL.f16: return k.matvecF16(out, p.xq, w, n, p.cols);
    case KERNEL.bf16: return k.matvecBf16(out, p.xq, w, n, p.cols);
    case KERNEL.f16Exact: return k.matvecF16Exact(out, p.xq, w, n, p.cols);
    case KERNEL.q8: return k.matvecQ8Groups(out, p.xq, p.xs, w, p.s + 4 * r0 * (p.cols / p.gs), n, p.cols, p.gs);
    case KERNEL.Q8_0: return k.matvecQ8_0(out, p.xq, p.xs, w, n, p.cols, x8Rows(p, r0, n));
    case KERNEL.Q4_0: return k.matvecQ4_0(out, p.s, p.xq, p.xs, p.xb, w, n, p.cols, x8Rows(p, r0, n));
    case KERNEL.Q4_K: return k.matvecQ4_K(out, p.xq, p.xs, p.xb, w, n, p.cols);
    case KERNEL.Q6_K: return k.matvecQ6_K(out, p.xq, p.xs, w, n, p.cols);
    case KERNEL.read: return void k.readBytes(w, n * p.rowBytes);
    case KERNEL.mmF32: return k.matmulF32(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols);
    case KERNEL.mmQ8_0: return k.matmulQ8_0(p.out, 4 * r0, p.nb!, p.xq, p.xs, w, n, p.cols, x8Rows(p, r0, n));
    case KERNEL.mmQ4_0: return k.matmulQ4_0(p.out, 4 * r0, p.nb!, p.s, p.xq, p.xs, p.xb, w, n, p.cols, x8Rows(p, r0, n));
    case KERNEL.mmQ4_K: return k.matmulQ4_K(p.out, 4 * r0, p.nb!, p.xq, p.xs, p.xb, w, n, p.cols);
    case KERNEL.mmQ6_K: return k.matmulQ6_K(p.out, 4 * r0, p.nb!, p.xq, p.xs, w, n, p.cols);
    case KERNEL.mmF16: return k.matmulF16(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols);
    case KERNEL.mmBf16: return k.matmulBf16(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols);
    case KERNEL.mmF16Exact: return k.matmulF16Exact(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols);
    case KERNEL.pF32: return k.panelF32Product(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols, p.s + t * p.gs);
    case KERNEL.pF16: return k.panelF16Product(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols, p.s + t * p.gs);
    case KERNEL.pBf16: return k.panelBf16Product(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols, p.s + t * p.gs);
    case KERNEL.pF16Exact: return k.panelF16ExactProduct(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols, p.s + t * p.gs);
    case KERNEL.pQ8_0: return k.panelQ8_0Product(p.out, 4 * r0, p.nb!, p.xq, p.xs, w, n, p.cols, p.s + t * p.gs, x8Rows(p, r0, n));
    case KERNEL.pQ4_0: return k.panelQ4_0Product(p.out, 4 * r0, p.nb!, p.xq, p.xs, w, n, p.cols, p.s + t * p.gs, x8Rows(p, r0, n));
    case KERNEL.pQ4_K: return k.panelQ4_KProduct(p.out, 4 * r0, p.nb!, p.xq, p.xs, w, n, p.cols, p.s + t * p.gs);
    case KERNEL.pQ6_K: return k.panelQ6_KProduct(p.out, 4 * r0, p.nb!, p.xq, w, n, p.cols, p.s + t * p.gs);
  }
}

/** Of rows [r0, r0 + n) of a Q4_0 or Q8_0 product, how many are regrouped (from r0 on; r0 is a multiple of 8). */
function x8Rows(p: Product, r0: number, n: number): number {
  return Math.max(0, Math.min(n, (p.x8rows ?? 0) - r0));
}

/**
 * Thread t's rows of a product of `rows` rows on `n` threads; for a Q4_0 or Q8_0 kernel the shares
 * start at multiples of 8 (their regrouped rows come in eights).
 */
export function share(rows: number, t: number, n: number, kernel = -1): [number, number] {
  const a = EIGHTS.has(kernel) ? 8 : 1;
  const at = (u: number) => (u === n ? rows : Math.floor(Math.floor((rows * u) / n) / a) * a);
  return [at(t), at(t + 1)];
}

/** Rows per claimed chunk: a multiple of 8 rows (Q4_0's and Q8_0's groups, whole tiles), or 1 head. */
function chunkRows(p: Product, n: number): number {
  const a = p.kernel === KERNEL.attnPanels ? 1 : 8;
  return Math.max(a, Math.ceil(p.rows / (n * CHUNKS_PER_THREAD) / a) * a);
}

/** Thread t's part of product i: claimed chunks (CLAIMED kernels) or its fixed share. */
function runPart(k: Kernels, ctl: Int32Array, i: number, p: Product, t: number, n: number): void {
  if (!CLAIMED.has(p.kernel)) {
    const [r0, r1] = share(p.rows, t, n, p.kernel);
    return runRows(k, p, r0, r1, t);
  }
  const c = chunkRows(p, n);
  for (;;) {
    const r0 = Atomics.add(ctl, NEXT + i, 1) * c;
    if (r0 >= p.rows) return;
    runRows(k, p, r0, Math.min(p.rows, r0 + c), t);
  }
}

function readProduct(ctl: Int32Array, i: number): Product {
  const o = JOBS + i * FIELDS;
  return {
    kernel: ctl[o]!, out: ctl[o + 1]! >>> 0, xq: ctl[o + 2]! >>> 0, xs: ctl[o + 3]! >>> 0, xb: ctl[o + 4]! >>> 0,
    w: ctl[o + 5]! >>> 0, s: ctl[o + 6]! >>> 0, rows: ctl[o + 7]!, cols: ctl[o + 8]!, gs: ctl[o + 9]!, rowBytes: ctl[o + 10]!, nb: ctl[o + 11]!, x8rows: ctl[o + 12]!,
  };
}

/** The worker's loop (worker.ts): wait for a generation, run its rows, report, forever. */
export function workerLoop(k: Kernels, ctl: Int32Array, index: number, nThreads: number): void {
  let seen = 0; // the pool starts at generation 0; a job posted before this thread ran is not missed
  Atomics.add(ctl, READY, 1);
  for (;;) {
    waitWhile(ctl, GEN, seen, true);
    seen = Atomics.load(ctl, GEN);
    if (Atomics.load(ctl, STOP)) return;
    const count = ctl[COUNT]!;
    for (let i = 0; i < count; i++) runPart(k, ctl, i, readProduct(ctl, i), index, nThreads);
    Atomics.add(ctl, DONE, 1);
    Atomics.notify(ctl, DONE);
  }
}

/** Spin while ctl[i] === value for up to SPIN_US, then sleep until it changes. */
function waitWhile(ctl: Int32Array, i: number, value: number, countSleep: boolean): void {
  if (Atomics.load(ctl, i) !== value) return;
  const t0 = performance.now();
  for (let n = 1; ; n++) {
    if (Atomics.load(ctl, i) !== value) return;
    if ((n & 255) === 0 && performance.now() - t0 > SPIN_US / 1000) break;
  }
  if (countSleep) Atomics.add(ctl, SLEEPING, 1);
  while (Atomics.load(ctl, i) === value) Atomics.wait(ctl, i, value);
  if (countSleep) Atomics.sub(ctl, SLEEPING, 1);
}

/** `nThreads − 1` workers on `memory`; the calling thread is thread 0. */
export class ThreadPool {
  private readonly ctl: Int32Array;
  private readonly workers: Worker[];

  constructor(readonly nThreads: number, memory: WasmMemory, module: object, private readonly k: Kernels) {
    this.ctl = new Int32Array(new SharedArrayBuffer(4 * CTL_INTS));
    const url = new URL('./worker.js', import.meta.url);
    this.workers = Array.from({ length: nThreads - 1 }, (_, i) => {
      const w = new Worker(url, { workerData: { memory, module, ctl: this.ctl, index: i + 1, nThreads } });
      w.unref();
      return w;
    });
  }

  /** Run the products, their rows split across all threads; returns when every row is done. */
  run(products: readonly Product[]): void {
    const { ctl } = this;
    if (products.length > MAX_PRODUCTS) throw new Error(`internal: ${products.length} products in one dispatch`);
    // until every worker has started, this thread runs the whole dispatch itself rather than wait:
    // a worker's start (its isolate, its modules, the kernels' instance) took ~100 ms here, and
    // a session's first token on 2 threads waited for it (stories110M Q8_0: 112–125 ms against
    // 13–21 ms on 1 thread). Every row is computed by the same kernel either way.
    if (!startRule.wait && Atomics.load(ctl, READY) < this.nThreads - 1) {
      for (const p of products) runRows(this.k, p, 0, p.rows, 0);
      return;
    }
    products.forEach((p, i) => {
      const o = JOBS + i * FIELDS;
      ctl[o] = p.kernel; ctl[o + 1] = p.out; ctl[o + 2] = p.xq; ctl[o + 3] = p.xs; ctl[o + 4] = p.xb;
      ctl[o + 5] = p.w; ctl[o + 6] = p.s; ctl[o + 7] = p.rows; ctl[o + 8] = p.cols; ctl[o + 9] = p.gs; ctl[o + 10] = p.rowBytes; ctl[o + 11] = p.nb ?? 0; ctl[o + 12] = p.x8rows ?? 0;
      ctl[NEXT + i] = 0;
    });
    ctl[COUNT] = products.length;
    Atomics.store(ctl, DONE, 0);
    Atomics.add(ctl, GEN, 1);
    if (Atomics.load(ctl, SLEEPING) > 0) Atomics.notify(ctl, GEN);
    products.forEach((p, i) => runPart(this.k, ctl, i, p, 0, this.nThreads));
    const others = this.nThreads - 1;
    for (let d = Atomics.load(ctl, DONE); d < others; d = Atomics.load(ctl, DONE)) waitWhile(ctl, DONE, d, false);
  }

  /** Stop the workers (their thread exits at the next generation). */
  close(): void {
    Atomics.store(this.ctl, STOP, 1);
    Atomics.add(this.ctl, GEN, 1);
    Atomics.notify(this.ctl, GEN);
    for (const w of this.workers) void w.terminate();
  }
}
