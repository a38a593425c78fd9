/**
 * Finds and compiles the kernels' WebAssembly module (built from asm/kernels.ts by
 * scripts/build-wasm.mjs next to this file in dist/), once per process. Synchronous, so that a
 * Session can be created without await (Node compiles modules of any size synchronously).
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BackendUnavailableError } from '../errors.js';

/** The exports of asm/kernels.ts: pointers are byte offsets into the imported memory. */
export interface Kernels {
  heapBase(): number;
  readBytes(p: number, n: number): number;
  matvecF32(out: number, x: number, w: number, rows: number, cols: number): void;
  matvecF16(out: number, x: number, w: number, rows: number, cols: number): void;
  matvecBf16(out: number, x: number, w: number, rows: number, cols: number): void;
  matvecF16Exact(out: number, x: number, w: number, rows: number, cols: number): void;
  halfSpecials(p: number, n: number): number;
  blockScaleSpecials(p: number, n: number, blockBytes: number): number;
  quantizeGroups(xq: number, xs: number, x: number, n: number, gs: number): void;
  matvecQ8Groups(out: number, xq: number, xs: number, wq: number, ws: number, rows: number, cols: number, gs: number): void;
  quantizeBlocks32(xq: number, xs: number, xb: number, x: number, n: number): void;
  quantizeBlocks32x4(xq: number, xs: number, xb: number, xTab: number, nv: number, n: number): void;
  quantizeBlocksQ4(xq: number, xs: number, xb: number, xc: number, x: number, n: number): void;
  repackQ4_0x8(w: number, rows: number, cols: number, tmp: number): number;
  ungroupQ4_0x8(w: number, rows: number, cols: number, tmp: number): void;
  matvecQ8_0(out: number, xq: number, xs: number, w: number, rows: number, cols: number): void;
  matvecQ4_0(out: number, xc: number, xq: number, xs: number, xb: number, w: number, rows: number, cols: number, x8rows: number): void;
  matvecQ4_K(out: number, xq: number, xs: number, xb: number, w: number, rows: number, cols: number): void;
  matvecQ6_K(out: number, xq: number, xs: number, w: number, rows: number, cols: number): void;
  matmulF32(outTab: number, outOff: number, nb: number, xTab: number, w: number, rows: number, cols: number): void;
  matmulQ8_0(outTab: number, outOff: number, nb: number, xq: number, xs: number, w: number, rows: number, cols: number): void;
  matmulQ4_0(outTab: number, outOff: number, nb: number, xc: number, xq: number, xs: number, xb: number, w: number, rows: number, cols: number, x8rows: number): void;
  matmulQ4_K(outTab: number, outOff: number, nb: number, xq: number, xs: number, xb: number, w: number, rows: number, cols: number): void;
  matmulQ6_K(outTab: number, outOff: number, nb: number, xq: number, xs: number, w: number, rows: number, cols: number): void;
  matmulF16(outTab: number, outOff: number, nb: number, xTab: number, w: number, rows: number, cols: number): void;
  matmulBf16(outTab: number, outOff: number, nb: number, xTab: number, w: number, rows: number, cols: number): void;
  matmulF16Exact(outTab: number, outOff: number, nb: number, xTab: number, w: number, rows: number, cols: number): void;
  rmsnorm(o: number, x: number, weight: number, n: number, eps: number): void;
  softmax(x: number, n: number): void;
  argmax(x: number, n: number): number;
  rope(v: number, n: number, headDim: number, cos: number, sin: number): void;
  siluMul(a: number, b: number, n: number): void;
  add(x: number, y: number, n: number): void;
  attention(out: number, q: number, kc: number, vc: number, att: number, pos: number, nHeads: number, nKvHeads: number, headDim: number, kvDim: number): void;
  attentionRows(tab: number, r0: number, r1: number, nHeads: number, nKvHeads: number, headDim: number, kvDim: number, half: number): void;
  attentionF16(out: number, q: number, kc: number, vc: number, att: number, pos: number, nHeads: number, nKvHeads: number, headDim: number, kvDim: number): void;
  storeHalves(dst: number, src: number, n: number): void;
  panelScratchBytes(cols: number): number;
  panelBytes(cols: number, float: number): number;
  attentionPanelsScratch(m: number, n: number, headDim: number): number;
  attentionPanels(tab: number, m: number, p0: number, h0: number, h1: number, nHeads: number, nKvHeads: number, headDim: number, kc: number, vc: number, half: number, scratch: number): void;
  packPanelsF32(xp: number, xTab: number, nv: number, cols: number, v0: number, v1: number): void;
  quantizePanels(xp: number, xs: number, tmp: number, xTab: number, nv: number, cols: number, v0: number, v1: number, q4: number): void;
  copyBytes(dst: number, src: number, n: number): void;
  panelF32Product(outTab: number, outOff: number, nv: number, xp: number, w: number, rows: number, cols: number, scratch: number): void;
  panelF16Product(outTab: number, outOff: number, nv: number, xp: number, w: number, rows: number, cols: number, scratch: number): void;
  panelBf16Product(outTab: number, outOff: number, nv: number, xp: number, w: number, rows: number, cols: number, scratch: number): void;
  panelF16ExactProduct(outTab: number, outOff: number, nv: number, xp: number, w: number, rows: number, cols: number, scratch: number): void;
  panelQ8_0Product(outTab: number, outOff: number, nv: number, xp: number, xs: number, w: number, rows: number, cols: number, scratch: number): void;
  panelQ4_KProduct(outTab: number, outOff: number, nv: number, xp: number, w: number, rows: number, cols: number, scratch: number): void;
  panelQ6_KProduct(outTab: number, outOff: number, nv: number, xp: number, w: number, rows: number, cols: number, scratch: number): void;
  panelQ4_0Product(outTab: number, outOff: number, nv: number, xp: number, xs: number, w: number, rows: number, cols: number, scratch: number, x8rows: number): void;
}

/**
 * The few parts of the WebAssembly JS API used here, typed locally (the project's lib settings
 * have no WebAssembly types; declaring them globally could clash with @types/node later).
 */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
  Memory: new (desc: { initial: number; maximum: number; shared?: boolean }) => WasmMemory;
}
/** The engine's WebAssembly object, or undefined where it has none. */
export const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

const WASM_FILE = new URL('./kernels.wasm', import.meta.url);
let compiled: object | BackendUnavailableError | undefined;

/** The compiled module, or a BackendUnavailableError saying why there is none. */
export function kernelModule(): object {
  if (compiled === undefined) compiled = compile();
  if (compiled instanceof BackendUnavailableError) throw compiled;
  return compiled;
}

function compile(): object | BackendUnavailableError {
  if (!wasmApi) return new BackendUnavailableError('this JavaScript engine has no WebAssembly');
  const file = fileURLToPath(WASM_FILE);
  if (!fs.existsSync(file)) return new BackendUnavailableError(`${file} is missing: build the kernels with \`npm run build\``);
  const bytes = fs.readFileSync(file);
  try {
    return new wasmApi.Module(bytes);
  } catch (e) {
    return new BackendUnavailableError(`this JavaScript engine cannot compile the WebAssembly SIMD kernels (${(e as Error).message})`);
  }
}

/** Instantiate the kernels over `memory` (a worker passes the module it was sent). */
export function instantiateKernels(memory: WasmMemory, module: object = kernelModule()): Kernels {
  const instance = new wasmApi!.Instance(module, {
    env: {
      memory,
      abort: () => {
        throw new Error('internal: a WebAssembly kernel aborted');
      },
    },
  });
  return instance.exports as unknown as Kernels;
}
