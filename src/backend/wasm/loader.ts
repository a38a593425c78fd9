/**
 * Finds and compiles the kernels' WebAssembly module (built from asm/kernels.ts by
 * scripts/build-wasm.mjs next to this file in dist/), once per process. Synchronous, so that a
 * Session can be created without await (Node compiles modules of any size synchronously).
 *
 * Two builds of the same source: kernels-relaxed.wasm uses relaxed SIMD (Q4_0's and Q4_K's panel
 * products multiply int8 by nibbles, 1.6–1.7× the int16 tile; asm/kernels.ts panelQ4r),
 * kernels.wasm only fixed-width SIMD. The relaxed one is used where the engine accepts it: by default in Node ≥ 22;
 * Node 20's V8 (11.3) has it behind `--experimental-wasm-relaxed-simd`, which this loader turns on
 * (`v8.setFlagsFromString`, before its first compile; it only lets wasm modules use more
 * instructions) and then checks with `relaxedSelfTest` before it trusts the module.
 * LLAMATS_RELAXED_SIMD=0 keeps the fixed-width module (=1: the relaxed one or an error).
 */
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';
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
  repackQ8_0x8(w: number, rows: number, cols: number, tmp: number): number;
  ungroupQ8_0x8(w: number, rows: number, cols: number, tmp: number): void;
  matvecQ8_0(out: number, xq: number, xs: number, w: number, rows: number, cols: number, x8rows: number): void;
  matvecQ4_0(out: number, xc: number, xq: number, xs: number, xb: number, w: number, rows: number, cols: number, x8rows: number): void;
  matvecQ4_K(out: number, xq: number, xs: number, xb: number, w: number, rows: number, cols: number): void;
  matvecQ6_K(out: number, xq: number, xs: number, w: number, rows: number, cols: number): void;
  matmulF32(outTab: number, outOff: number, nb: number, xTab: number, w: number, rows: number, cols: number): void;
  matmulQ8_0(outTab: number, outOff: number, nb: number, xq: number, xs: number, w: number, rows: number, cols: number, x8rows: number): void;
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
  panelQ8_0Product(outTab: number, outOff: number, nv: number, xp: number, xs: number, w: number, rows: number, cols: number, scratch: number, x8rows: number): void;
  panelQ4_KProduct(outTab: number, outOff: number, nv: number, xp: number, xs: number, w: number, rows: number, cols: number, scratch: number): void;
  panelQ6_KProduct(outTab: number, outOff: number, nv: number, xp: number, w: number, rows: number, cols: number, scratch: number): void;
  panelQ4_0Product(outTab: number, outOff: number, nv: number, xp: number, xs: number, w: number, rows: number, cols: number, scratch: number, x8rows: number): void;
  relaxedSimd(): number;
  relaxedSelfTest(): number;
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
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: object };
  Memory: new (desc: { initial: number; maximum: number; shared?: boolean }) => WasmMemory;
}
/** The engine's WebAssembly object, or undefined where it has none. */
export const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

const WASM_FILES = { simd: new URL('./kernels.wasm', import.meta.url), 'relaxed-simd': new URL('./kernels-relaxed.wasm', import.meta.url) };
/** Which build of the kernels runs: fixed-width SIMD, or with relaxed SIMD (see the top). */
export type KernelVariant = keyof typeof WASM_FILES;
let compiled: { module: object; variant: KernelVariant } | BackendUnavailableError | undefined;

/** The compiled module, or a BackendUnavailableError saying why there is none. */
export function kernelModule(): object {
  return load().module;
}

/** Which kernels module this process runs (compiling it if need be). */
export function kernelVariant(): KernelVariant {
  return load().variant;
}

function load(): { module: object; variant: KernelVariant } {
  if (compiled === undefined) compiled = compile();
  if (compiled instanceof BackendUnavailableError) throw compiled;
  return compiled;
}

function compile(): { module: object; variant: KernelVariant } | BackendUnavailableError {
  if (!wasmApi) return new BackendUnavailableError('this JavaScript engine has no WebAssembly');
  const want = process.env.LLAMATS_RELAXED_SIMD;
  if (want !== '0') {
    const relaxed = compileRelaxed();
    if (typeof relaxed !== 'string') return { module: relaxed, variant: 'relaxed-simd' };
    if (want === '1') return new BackendUnavailableError(`LLAMATS_RELAXED_SIMD=1, but ${relaxed}; unset it to use the fixed-width SIMD kernels`);
  }
  const bytes = readKernels('simd');
  if (bytes instanceof BackendUnavailableError) return bytes;
  try {
    return { module: new wasmApi.Module(bytes), variant: 'simd' };
  } catch (e) {
    return new BackendUnavailableError(`this JavaScript engine cannot compile the WebAssembly SIMD kernels (${(e as Error).message})`);
  }
}

function readKernels(variant: KernelVariant): Uint8Array | BackendUnavailableError {
  const file = fileURLToPath(WASM_FILES[variant]);
  if (!fs.existsSync(file)) return new BackendUnavailableError(`${file} is missing: build the kernels with \`npm run build\``);
  return fs.readFileSync(file);
}

/** The relaxed-SIMD module, checked, or why not (a sentence). */
function compileRelaxed(): object | string {
  const bytes = readKernels('relaxed-simd');
  if (bytes instanceof BackendUnavailableError) return bytes.message;
  if (!wasmApi!.validate(bytes)) {
    // Node 20 (V8 11.3): the feature is there behind a flag; later engines either have it or not
    try {
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      // not a V8 engine
    }
    if (!wasmApi!.validate(bytes)) return 'this JavaScript engine has no relaxed SIMD';
  }
  try {
    const module = new wasmApi!.Module(bytes);
    const probe = new wasmApi!.Memory({ initial: 1, maximum: 65536, shared: true });
    if (instantiateKernels(probe, module).relaxedSelfTest() !== 1) return 'this engine\'s relaxed SIMD dot product failed its check';
    return module;
  } catch (e) {
    return `the relaxed SIMD kernels did not compile (${(e as Error).message})`;
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
