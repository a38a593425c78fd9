import type { Matrix } from './tensor.js';

/**
 * Where a loader puts weight bytes, so that each weight is read once into its final place.
 *
 * The default is host memory (a buffer per tensor). The wasm backend gives a placement into its
 * WebAssembly memories (src/backend/wasm/memory.ts), planned from the tensor sizes before anything
 * is read, and later uses the weights where they lie: no second copy of the model. Loaders call
 * `plan` once with the bytes of each layer's matrices, then `alloc` for each tensor they read, and
 * may tell `placed` as the rows of a matrix arrive.
 */
export interface Placement {
  /**
   * The sizes to plan for: each layer's matrices, the head's (the classifier; also the embedding
   * table when the classifier shares it), and room each layer needs besides (its KV cache).
   */
  plan(layerBytes: readonly number[], headBytes: number, reservePerLayer: number): void;
  /** A zero-filled buffer of `bytes` for a tensor of `layer` ('head': the classifier; 'host': stays on the host). */
  alloc(bytes: number, layer: number | 'head' | 'host'): Uint8Array;
  /**
   * Rows [r0, r1) of matrix `m` have just been read into `alloc`'s bytes: called in row order,
   * r0 a multiple of 8 (the wasm placement regroups Q4_0 matrices for its kernels then, while the
   * rows are in the cache: src/backend/wasm/memory.ts). A loader that calls it reads a matrix
   * about a megabyte of rows at a time.
   */
  placed?(m: Matrix, r0: number, r1: number): void;
}

/** Every tensor in its own host buffer. */
export const hostPlacement: Placement = {
  plan: () => {},
  alloc: (bytes) => new Uint8Array(bytes),
};
