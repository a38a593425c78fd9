/**
 * A worker thread of the wasm backend (see pool.ts): the kernels module instantiated on the
 * shared memory it is sent, then the job loop until the pool stops it.
 */
import { workerData } from 'node:worker_threads';
import { instantiateKernels, type WasmMemory } from './loader.js';
import { workerLoop } from './pool.js';

const { memory, module, ctl, index, nThreads } = workerData as { memory: WasmMemory; module: object; ctl: Int32Array; index: number; nThreads: number };
workerLoop(instantiateKernels(memory, module), ctl, index, nThreads);
