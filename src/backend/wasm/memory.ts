/**
 * The wasm backend's memory: one or more shared WebAssembly memories ("parts", at most 4 GiB
 * each in Node 20), each with its kernels instance and a first-fit heap.
 *
 * A model larger than one memory is split by layers, as llama.cpp splits a model across GPUs:
 * part 0 holds layers 0..a, part 1 layers a+1..b, …, the last part also the final norm and the
 * classifier. Each part keeps the KV cache of its own layers, so per token only the residual
 * stream (dim floats) crosses from one memory to the next. `planParts` decides the split from the
 * tensor sizes, before anything is read.
 *
 * Loaders put each weight straight into its part (`WasmPlacement.alloc`: a Uint8Array view of the
 * part's memory that the file is read into), so weights exist once, in their final place; the
 * backend recognises such views (`partOf`) and uses them without a copy. Views stay valid when a
 * part grows: growing a shared memory never detaches its earlier buffers.
 */
import type { Placement } from '../../model/placement.js';
import { markRegrouped, type Matrix } from '../../model/tensor.js';
import { GGML_TYPE } from '../../quant/ggml.js';
import { BackendUnavailableError } from '../errors.js';
import { instantiateKernels, kernelModule, wasmApi, type Kernels, type WasmMemory } from './loader.js';

export const PAGE = 65536;
export const MAX_PAGES = 65536; // 4 GiB: the most one WebAssembly memory can hold in Node 20
export const ALIGN = 64;

/**
 * Bytes of a part left for weights: 4 GiB less room for the kernels' static data, a session's
 * activations, the quantized-activation and batch buffers, and growth of the heap's free list.
 */
export const PART_CAPACITY = MAX_PAGES * PAGE - 192 * 2 ** 20;

/**
 * The capacity used: PART_CAPACITY, or LLAMATS_WASM_PART_BYTES when it is a smaller positive
 * integer (tests split small models into parts with it, the way a 7B model is split).
 */
export function partCapacity(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.LLAMATS_WASM_PART_BYTES);
  return Number.isInteger(v) && v > 0 && v < PART_CAPACITY ? v : PART_CAPACITY;
}

export const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;
export const formatMiB = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;

/** First-fit allocator over a memory, growing it as needed, never past 4 GiB. */
export class Heap {
  private free: Array<{ ptr: number; size: number }> = []; // sorted by ptr, coalesced
  private top: number;
  constructor(readonly memory: WasmMemory, base: number) {
    this.top = roundUp(base, ALIGN);
  }

  /** The end of the highest block handed out. */
  get used(): number {
    return this.top;
  }

  alloc(bytes: number): number {
    const size = roundUp(Math.max(bytes, 1), ALIGN);
    const i = this.free.findIndex((b) => b.size >= size);
    if (i >= 0) {
      const b = this.free[i]!;
      const ptr = b.ptr;
      if (b.size === size) this.free.splice(i, 1);
      else this.free[i] = { ptr: b.ptr + size, size: b.size - size };
      new Uint8Array(this.memory.buffer, ptr, size).fill(0);
      return ptr;
    }
    const ptr = this.top;
    const need = Math.ceil((ptr + size) / PAGE) - this.memory.buffer.byteLength / PAGE;
    if (need > 0) {
      const pages = this.memory.buffer.byteLength / PAGE + need;
      if (pages > MAX_PAGES) {
        throw new BackendUnavailableError(`it needs ${formatMiB(ptr + size)} of WebAssembly memory, more than the 4 GiB one memory can hold`);
      }
      this.memory.grow(need); // fresh pages are zero
    }
    this.top = ptr + size;
    return ptr;
  }

  release(ptr: number, bytes: number): void {
    const size = roundUp(Math.max(bytes, 1), ALIGN);
    let i = this.free.findIndex((b) => b.ptr > ptr);
    if (i < 0) i = this.free.length;
    this.free.splice(i, 0, { ptr, size });
    // merge with the next, then the previous block; a block ending at the top lowers the top
    const next = this.free[i + 1];
    if (next && ptr + size === next.ptr) this.free.splice(i + 1, 1), (this.free[i]!.size += next.size);
    const prev = this.free[i - 1];
    if (prev && prev.ptr + prev.size === ptr) prev.size += this.free[i]!.size, this.free.splice(i, 1), i--;
    const last = this.free.at(-1);
    if (last && last.ptr + last.size === this.top) this.top = last.ptr, this.free.pop();
  }
}

/** One shared WebAssembly memory with the main thread's kernels on it and its heap. */
export interface Part {
  readonly memory: WasmMemory;
  readonly kernels: Kernels;
  readonly heap: Heap;
}

/** The part each buffer of a part's memory belongs to (a shared memory's buffer object changes as it grows). */
const parts = new WeakMap<ArrayBufferLike, Part>();

/** A new part, its memory first sized for `bytes`. Throws BackendUnavailableError without WebAssembly or kernels. */
export function createPart(bytes: number): Part {
  const module = kernelModule(); // throws the reason when there is no WebAssembly or the kernels are missing
  const initial = Math.min(MAX_PAGES, Math.ceil((bytes + 4 * 2 ** 20) / PAGE));
  // shared, so that worker threads can run the same kernels on it (the kernels declare it shared)
  const memory = new wasmApi!.Memory({ initial, maximum: MAX_PAGES, shared: true });
  const kernels = instantiateKernels(memory, module);
  const part: Part = { memory, kernels, heap: new Heap(memory, Math.max(kernels.heapBase() >>> 0, 1024)) };
  parts.set(memory.buffer, part);
  return part;
}

/** The part whose memory `view` lies in, if any. */
export function partOf(view: ArrayBufferView): Part | undefined {
  return parts.get(view.buffer);
}

/** Allocate `bytes` in `part` and return the view of them (zero-filled). */
export function allocView(part: Part, bytes: number): Uint8Array {
  const ptr = part.heap.alloc(bytes);
  const buffer = part.memory.buffer;
  parts.set(buffer, part); // the buffer may be new after growing
  return new Uint8Array(buffer, ptr, bytes);
}

/**
 * Which part each layer goes into (the head, i.e. final norm and classifier, into the last):
 * layers in order, a new part whenever the next layer's weights plus `reservePerLayer` (its KV
 * cache) would pass `capacity`. Throws BackendUnavailableError when one layer alone does not fit.
 */
export function planParts(layerBytes: readonly number[], headBytes: number, reservePerLayer: number, capacity = partCapacity()): { layerPart: number[]; headPart: number; partBytes: number[] } {
  const layerPart: number[] = [];
  const partBytes: number[] = [0];
  const place = (bytes: number, what: string): number => {
    if (bytes > capacity) throw new BackendUnavailableError(`${what} needs ${formatMiB(bytes)}, more than one 4 GiB WebAssembly memory holds`);
    if (partBytes.at(-1)! + bytes > capacity) partBytes.push(0);
    partBytes[partBytes.length - 1]! += bytes;
    return partBytes.length - 1;
  };
  layerBytes.forEach((b, l) => layerPart.push(place(b + reservePerLayer, `layer ${l}`)));
  const headPart = place(headBytes, 'the classifier');
  return { layerPart, headPart, partBytes };
}

/**
 * Weights placed straight into wasm parts, split by layers as `planParts` decides; in host
 * buffers when the plan fails (a layer larger than a memory: the backend will say so later).
 */
export class WasmPlacement implements Placement {
  private parts: Part[] = [];
  private layerPart: number[] = [];
  private headPart = 0;

  constructor(private readonly capacity = partCapacity()) {}

  /** The memories planned (for tests and tools). */
  get partCount(): number {
    return this.parts.length;
  }

  plan(layerBytes: readonly number[], headBytes: number, reservePerLayer: number): void {
    try {
      const p = planParts(layerBytes, headBytes, reservePerLayer, this.capacity);
      this.layerPart = p.layerPart;
      this.headPart = p.headPart;
      this.parts = p.partBytes.map((bytes) => createPart(bytes));
    } catch (e) {
      if (!(e instanceof BackendUnavailableError)) throw e;
      this.parts = [];
    }
  }

  alloc(bytes: number, layer: number | 'head' | 'host'): Uint8Array {
    if (layer === 'host' || this.parts.length === 0) return new Uint8Array(bytes);
    const part = this.parts[layer === 'head' ? this.headPart : this.layerPart[layer]!];
    if (!part) return new Uint8Array(bytes); // not planned for: on the host
    return allocView(part, bytes);
  }

  /**
   * A Q4_0 or Q8_0 matrix in a part is regrouped for the kernels (asm/kernels.ts repackQ4_0x8,
   * repackQ8_0x8) as the
   * loader reads it, a megabyte of rows at a time, each in place right after its read while it is
   * in the cache, its scales checked for inf / NaN in the same pass (the first product used to
   * read every scale for that). Measured (hot page cache): TinyLlama's 600 MB regrouped in 55–85
   * ms of a 360–450 ms load, Llama-2-7B's 3.8 GB in 350 ms of ~3 s; each whole tensor after its
   * read took longer (8 GB/s, not 11–14: it has left the L2 cache), at upload from memory about
   * twice as long, and through a buffer the read fills, regrouped from there into place, longer
   * still (the regrouping's stores then fault the fresh pages in, not the read). A matrix with an
   * inf or NaN block scale ends as it was (the reference op runs on it). `regrouping`: the
   * matrices partly read, false once one has shown such a scale.
   */
  placed(m: Matrix, r0: number, r1: number): void {
    if (m.type !== 'ggml' || !REGROUPED_TYPES.has(m.ggmlType) || m.rows < 8) return;
    const part = partOf(m.data);
    if (!part) return;
    const x8rows = m.rows & ~7, ptr = m.data.byteOffset;
    let ok = this.regrouping.get(m) ?? true;
    const end = Math.min(r1, x8rows);
    if (ok && end > r0 && !regroupRows(part, m.ggmlType, ptr + r0 * m.rowBytes, end - r0, m.cols, m.rowBytes, 'regroup')) {
      regroupRows(part, m.ggmlType, ptr, r0, m.cols, m.rowBytes, 'ungroup'); // the rows so far back as they were
      ok = false;
    }
    if (r1 < m.rows) {
      this.regrouping.set(m, ok);
      return;
    }
    this.regrouping.delete(m);
    if (ok && tailSpecials(part, ptr, m.rows, m.cols, m.rowBytes)) {
      regroupRows(part, m.ggmlType, ptr, x8rows, m.cols, m.rowBytes, 'ungroup');
      ok = false;
    }
    if (ok) markRegrouped(m);
  }

  private readonly regrouping = new WeakMap<Matrix, boolean>();
}

/** The ggml types the wasm kernels read regrouped in eights of rows. */
export const REGROUPED_TYPES: ReadonlySet<number> = new Set([GGML_TYPE.Q4_0, GGML_TYPE.Q8_0]);

/**
 * Regroup (asm/kernels.ts repackQ4_0x8 / repackQ8_0x8) or put back (ungroupQ4_0x8 / ungroupQ8_0x8)
 * `rows` rows of a Q4_0 or Q8_0 matrix at ptr; false when regrouping met an inf or NaN scale.
 */
function regroupRows(part: Part, type: number, ptr: number, rows: number, cols: number, rowBytes: number, how: 'regroup' | 'ungroup'): boolean {
  if (rows === 0) return true;
  const bytes = 8 * rowBytes + 256; // eight rows, and ungroupQ8_0x8's transpose buffer
  const tmp = part.heap.alloc(bytes);
  const k = part.kernels, q8 = type === GGML_TYPE.Q8_0;
  try {
    if (how === 'ungroup') (q8 ? k.ungroupQ8_0x8 : k.ungroupQ4_0x8)(ptr, rows, cols, tmp);
    else return (q8 ? k.repackQ8_0x8 : k.repackQ4_0x8)(ptr, rows, cols, tmp) === 0;
    return true;
  } finally {
    part.heap.release(tmp, bytes);
  }
}

/** Whether the rows after the last whole eight (left in ggml's layout) hold an inf or NaN block scale. */
function tailSpecials(part: Part, ptr: number, rows: number, cols: number, rowBytes: number): boolean {
  const x8rows = rows & ~7;
  return rows > x8rows && part.kernels.blockScaleSpecials(ptr + x8rows * rowBytes, ((rows - x8rows) * cols) / 32, rowBytes / (cols / 32)) !== 0;
}

/**
 * Regroup the Q4_0 or Q8_0 (`type`) matrix at `ptr` in `part` in eights of rows, in place, for the
 * wasm kernels (asm/kernels.ts `repackQ4_0x8`, `repackQ8_0x8`; the last rows % 8 stay as they
 * are). Returns false, leaving it as it is, when it has fewer than 8 rows or an inf / NaN block
 * scale (the reference op runs on such a matrix).
 */
export function regroup(part: Part, type: number, ptr: number, rows: number, cols: number, rowBytes: number): boolean {
  const x8rows = rows & ~7;
  if (x8rows === 0) return false;
  if (tailSpecials(part, ptr, rows, cols, rowBytes)) return false;
  return regroupRows(part, type, ptr, x8rows, cols, rowBytes, 'regroup');
}
