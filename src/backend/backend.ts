/**
 * The backend interface between the model code and the kernels, and the registry that picks one.
 *
 * A backend owns its memory: weights are uploaded to it once per model (`upload`), activations,
 * KV cache and scratch are allocated in it once per session (`vector`), and the ops take those
 * handles, never host arrays — so a GPU backend can implement the same interface with device
 * buffers, and the model code (src/model/forward.ts) never imports a backend: it asks
 * `openBackend(model, choice)` here.
 *
 *   ref   plain TypeScript (src/backend/ref/): the definition every other backend is held to
 *   wasm  WebAssembly SIMD kernels compiled from asm/ (src/backend/wasm/), on `threads` threads
 *
 * The default (`auto`, or the LLAMATS_BACKEND environment variable) is the fastest backend that
 * starts: wasm, which falls back to ref with a reason when it cannot (no SIMD, kernels not built,
 * a layer larger than one 4 GiB WebAssembly memory). An op or weight type a backend has no kernel
 * for is its own business: the wasm backend runs the reference op on views of its memory.
 *
 * Threads (wasm): worker threads over one shared WebAssembly memory split the rows of the
 * matrix-vector products. The default is the number of physical cores (`defaultThreads`), or
 * LLAMATS_THREADS; results are bit-identical for any number.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import type { Matrix } from '../model/tensor.js';
import type { Model } from '../model/weights.js';
import type { AttentionShape } from './ref/ops.js';
import { InvalidArgumentError } from '../errors.js';
import { BackendUnavailableError } from './errors.js';
import { createRefBackend, refBackend } from './ref/ref.js';
import { createWasmBackend, wasmBackend } from './wasm/wasm.js';
import { WasmPlacement } from './wasm/memory.js';
import { kernelModule } from './wasm/loader.js';
import { hostPlacement, type Placement } from '../model/placement.js';

export type { AttentionShape } from './ref/ops.js';
export { weightType } from './ref/ops.js';
export { BackendUnavailableError } from './errors.js';

export type BackendName = 'ref' | 'wasm';
export type BackendChoice = BackendName | 'auto';
export const BACKEND_NAMES: readonly BackendName[] = ['ref', 'wasm'];

/** A float32 vector owned by a backend (activations, KV cache, norm gains). Opaque to the model code. */
export interface Vector {
  readonly length: number;
}

/**
 * Element type of a KV cache: float32, or IEEE half (half the memory and the bytes attention
 * reads; each value rounded to the nearest half, ties to even, as numpy and ggml do, when stored).
 */
export type CacheType = 'f32' | 'f16';
export const CACHE_TYPES: readonly CacheType[] = ['f32', 'f16'];

/** A weight matrix uploaded to a backend. `host` is the model's own matrix (for fallbacks and rows). */
export interface Weight {
  readonly rows: number;
  readonly cols: number;
  readonly host: Matrix;
}

/** One token's attention: the arguments of `Backend.attention`. */
export interface AttentionItem {
  readonly out: Vector;
  readonly q: Vector;
  readonly keyCache: Vector;
  readonly valueCache: Vector;
  readonly att: Vector;
  readonly pos: number;
}

/** The ops of the interface, as `supports` names them. */
export type Op = 'matvec' | 'matmul' | 'rmsnorm' | 'rope' | 'attention' | 'siluMul' | 'add' | 'softmax' | 'argmax';

export interface Backend {
  readonly name: BackendName;
  /**
   * Whether `op` (for matvec and matmul: on weights of `weightType`, e.g. 'f32', 'q8', 'Q4_K') runs
   * in this backend's own kernels; a matmul without its own kernel loops over matvec.
   */
  supports(op: Op, weightType?: string): boolean;

  // memory: allocated once per model or session, never per token
  /** A zero-filled vector, or a copy of `init`. */
  vector(length: number, init?: Float32Array): Vector;
  /**
   * A zero-filled KV cache of `length` elements of `type` ('f32': a plain vector). An f16 cache is
   * only written by `copy` and read by `attention` (not by `read` or `write`).
   */
  cache(length: number, type: CacheType): Vector;
  /** Place a weight matrix in the backend's memory (once per model). */
  upload(m: Matrix): Weight;
  /** Copy `src` into `dst` starting at element `offset`. */
  write(dst: Vector, src: Float32Array, offset?: number): void;
  /** The vector's contents as float32 (a view where the memory is host memory; reused by the next op). */
  read(v: Vector): Float32Array;
  /** Return a vector's memory now (otherwise when the vector is garbage-collected); the vector is dead after. */
  free(v: Vector): void;
  /** dst[dstOffset ..] = src (storing k and v into the cache; into an f16 cache rounded to halves). */
  copy(dst: Vector, dstOffset: number, src: Vector): void;

  // ops (shapes as in src/backend/ref/ops.ts, each op's definition)
  /** out = row `row` of the token embedding table (read from the host matrix). */
  embed(out: Vector, table: Matrix, row: number): void;
  /** out = W · x. */
  matvec(out: Vector, x: Vector, w: Weight): void;
  /**
   * outs[b] = W · xs[b] for every b: one pass over the weights serves all the vectors (a prompt's
   * tokens, or several sequences' tokens). Equal to a loop of matvec up to float32 rounding (the
   * wasm kernels: bit for bit, but for float and K-quant weights with 8 or more vectors, which sum
   * in the plain loop's order).
   */
  matmul(outs: readonly Vector[], xs: readonly Vector[], w: Weight): void;
  /** A matmul of each weight with the same inputs (q, k, v; w1, w3): at most 4, one dispatch on threaded backends. */
  matmuls(groups: ReadonlyArray<readonly [outs: readonly Vector[], w: Weight]>, xs: readonly Vector[]): void;
  /** Several independent products (at most 4 per dispatch on threaded backends: one synchronization). */
  matvecs(products: ReadonlyArray<readonly [out: Vector, x: Vector, w: Weight]>): void;
  rmsnorm(out: Vector, x: Vector, weight: Vector, eps: number): void;
  /** RoPE on v[0..n) with this position's angles (headDim / 2 each). */
  rope(v: Vector, n: number, headDim: number, cos: Vector, sin: Vector): void;
  /** Causal attention over rows 0..pos of the caches (both of one CacheType). */
  attention(out: Vector, q: Vector, keyCache: Vector, valueCache: Vector, att: Vector, pos: number, shape: AttentionShape): void;
  /**
   * `attention` for each of several tokens (a prefill chunk, or one token of each of several
   * sequences), with the same results up to float32 rounding (the wasm backend runs a run of 8 or
   * more consecutive positions of one sequence as panel products; other tokens bit for bit); a
   * threaded backend splits the work across its threads.
   */
  attentions(items: ReadonlyArray<AttentionItem>, shape: AttentionShape): void;
  /** a = silu(a) * b. */
  siluMul(a: Vector, b: Vector): void;
  /** x += y. */
  add(x: Vector, y: Vector): void;
  softmax(x: Vector, n: number): void;
  argmax(x: Vector, n: number): number;
}

/**
 * A model's weights uploaded to a backend: what the forward pass runs on. A model larger than one
 * memory of the backend is split by layers into parts (the wasm backend's 4 GiB memories), each
 * part a Backend of its own: layer l runs on `parts[layers[l].part]`, the final norm and the
 * classifier on `backend`; the residual stream is copied from part to part.
 */
export interface BackendModel {
  /** The part of the head (final norm, classifier); the only one for most models. */
  readonly backend: Backend;
  readonly parts: readonly Backend[];
  /** Its index in `parts`. */
  readonly head: number;
  /** Why the requested backend is not the one running, when it is not. */
  readonly fallbackReason?: string;
  readonly tokenEmbedding: Matrix; // (vocabSize, dim) rows are read on the host
  readonly layers: ReadonlyArray<{
    readonly part: number;
    readonly attnNorm: Vector;
    readonly wq: Weight;
    readonly wk: Weight;
    readonly wv: Weight;
    readonly wo: Weight;
    readonly ffnNorm: Vector;
    readonly w1: Weight;
    readonly w2: Weight;
    readonly w3: Weight;
  }>;
  readonly finalNorm: Vector;
  readonly classifier: Weight;
}

/** What a backend must be sized for when it is not made for one model (tests, tools). */
export interface BackendSizing {
  /** The longest row (columns) of any matrix it will multiply. */
  readonly maxCols: number;
  /** Bytes of the weights that will be uploaded. */
  readonly weightBytes: number;
  /** Threads of the products (wasm; default 1). */
  readonly threads?: number;
}

/** A model's backends: one per part, and the part of each layer and of the head. */
interface Split {
  readonly backends: readonly Backend[];
  readonly layerPart: readonly number[];
  readonly headPart: number;
}

const FACTORIES: Record<BackendName, { forModel: (model: Model, threads: number) => Split; sized: (s: BackendSizing) => Backend }> = {
  ref: {
    forModel: (model) => ({ backends: [createRefBackend(model)], layerPart: model.weights.layers.map(() => 0), headPart: 0 }),
    sized: (s) => refBackend(s.maxCols),
  },
  wasm: { forModel: createWasmBackend, sized: wasmBackend },
};

/**
 * The default number of threads: LLAMATS_THREADS when it is a positive integer, else the
 * physical cores (Linux: distinct (physical id, core id) pairs of /proc/cpuinfo, so SMT siblings
 * count once; elsewhere os.availableParallelism()). More threads than cores only fight over them.
 */
export function defaultThreads(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.LLAMATS_THREADS);
  if (Number.isInteger(v) && v >= 1) return v;
  return physicalCores();
}

let cores: number | undefined;
function physicalCores(): number {
  if (cores !== undefined) return cores;
  const logical = os.availableParallelism();
  cores = logical;
  try {
    const pairs = new Set<string>();
    let phys = '0';
    for (const line of fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n')) {
      const m = /^(physical id|core id)\s*:\s*(\d+)/.exec(line);
      if (m?.[1] === 'physical id') phys = m[2]!;
      else if (m) pairs.add(`${phys}:${m[2]}`);
    }
    if (pairs.size > 0) cores = Math.min(logical, pairs.size);
  } catch {
    // no /proc/cpuinfo: the logical count
  }
  return cores;
}

/**
 * Where loaders should put weights for `choice`: the wasm backend's memories (read once into
 * their final place), or host buffers for ref or where WebAssembly cannot start.
 */
export function weightPlacement(choice: BackendChoice = defaultBackendChoice()): Placement {
  if (choice === 'ref') return hostPlacement;
  try {
    kernelModule();
  } catch {
    return hostPlacement;
  }
  return new WasmPlacement();
}

/** A bare backend (no model uploaded), e.g. for the conformance suite; throws BackendUnavailableError. */
export function createBackend(name: BackendName, sizing: BackendSizing): Backend {
  return FACTORIES[name].sized(sizing);
}

/** The default choice: LLAMATS_BACKEND when set to a backend name, else auto. */
export function defaultBackendChoice(env: NodeJS.ProcessEnv = process.env): BackendChoice {
  const v = env.LLAMATS_BACKEND;
  return v === 'ref' || v === 'wasm' || v === 'auto' ? v : 'auto';
}

const opened = new WeakMap<Model, Map<string, BackendModel>>();

/**
 * The model's weights on the chosen backend, uploaded on first use and shared by every session
 * of the model with the same choice and threads. A backend that cannot start falls back to ref,
 * with `fallbackReason` set.
 */
export function openBackend(model: Model, choice: BackendChoice = defaultBackendChoice(), threads = defaultThreads()): BackendModel {
  if (!Number.isInteger(threads) || threads < 1) throw new InvalidArgumentError(`threads must be a positive integer; got ${threads}`, 'threads');
  const name: BackendName = choice === 'auto' ? 'wasm' : choice;
  const key = name === 'ref' ? name : `${name}:${threads}`; // ref runs on one thread
  let perModel = opened.get(model);
  if (!perModel) opened.set(model, (perModel = new Map()));
  const have = perModel.get(key);
  if (have) return have;
  let bm: BackendModel;
  try {
    bm = uploadModel(FACTORIES[name].forModel(model, threads), model);
  } catch (e) {
    if (name === 'ref' || !(e instanceof BackendUnavailableError)) throw e;
    bm = { ...openBackend(model, 'ref'), fallbackReason: `${name} backend unavailable: ${e.message}` };
  }
  perModel.set(key, bm);
  return bm;
}

/** Upload every tensor the forward pass uses to its part (a matrix shared by two fields is uploaded once per part). */
function uploadModel(split: Split, model: Model): BackendModel {
  const w = model.weights;
  const seen = new Map<Backend, Map<Matrix, Weight>>(split.backends.map((b) => [b, new Map()]));
  let backend!: Backend;
  const up = (m: Matrix): Weight => {
    const mine = seen.get(backend)!;
    let u = mine.get(m);
    if (!u) mine.set(m, (u = backend.upload(m)));
    return u;
  };
  const layers = w.layers.map((l, i) => {
    const part = split.layerPart[i]!;
    backend = split.backends[part]!;
    return {
      part,
      attnNorm: backend.vector(l.attnNorm.length, l.attnNorm),
      wq: up(l.wq),
      wk: up(l.wk),
      wv: up(l.wv),
      wo: up(l.wo),
      ffnNorm: backend.vector(l.ffnNorm.length, l.ffnNorm),
      w1: up(l.w1),
      w2: up(l.w2),
      w3: up(l.w3),
    };
  });
  backend = split.backends[split.headPart]!;
  return {
    backend,
    parts: split.backends,
    head: split.headPart,
    tokenEmbedding: w.tokenEmbedding,
    layers,
    finalNorm: backend.vector(w.finalNorm.length, w.finalNorm),
    classifier: up(w.classifier),
  };
}
