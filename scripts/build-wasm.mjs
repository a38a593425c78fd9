/**
 * Compile the AssemblyScript kernels (asm/kernels.ts) into dist/src/backend/wasm/kernels.wasm and
 * kernels-relaxed.wasm (the same source with relaxed SIMD enabled), where
 * src/backend/wasm/loader.ts finds them and picks one. Run by `npm run build` (and so by `npm ci`'s
 * `prepare`); the .wasm files are build outputs, never committed.
 *
 * Flags: -O3 speed; SIMD (fixed-width v128, in every Node ≥ 16); the stub runtime, since the
 * kernels never allocate; the memory is imported, so JavaScript creates it (up to 4 GiB) and owns
 * every allocation in it. The memory is declared shared (maximum 65536 pages = 4 GiB, threads
 * enabled for that): the worker threads of src/backend/wasm/pool.ts instantiate the same module
 * on the same memory, so a matrix-vector product's rows can be split across threads.
 */
import asc from 'assemblyscript/asc';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(ROOT, 'asm/kernels.ts');
const outFile = path.join(ROOT, 'dist/src/backend/wasm/kernels.wasm');
fs.mkdirSync(path.dirname(outFile), { recursive: true });

// twice: kernels.wasm with fixed-width SIMD (every Node ≥ 16), and kernels-relaxed.wasm with
// relaxed SIMD too (ASC_FEATURE_RELAXED_SIMD is true there: Q4_0's panels multiply int8 by
// nibbles, asm/kernels.ts panelQ4r); src/backend/wasm/loader.ts picks one at run time
for (const [name, features] of [['kernels.wasm', 'simd,threads'], ['kernels-relaxed.wasm', 'simd,threads,relaxed-simd']]) {
  const out = path.join(path.dirname(outFile), name);
  const { error, stderr } = await asc.main([
    path.relative(process.cwd(), src),
    '--outFile', path.relative(process.cwd(), out),
    '-O3', '--noAssert',
    '--runtime', 'stub',
    '--importMemory',
    '--sharedMemory', '--maximumMemory', '65536',
    '--enable', features,
  ]);
  if (error) {
    console.error(stderr.toString());
    console.error(`build-wasm: compiling ${src} (${features}) failed: ${error.message}`);
    process.exit(1);
  }
  console.error(`build-wasm: wrote ${path.relative(ROOT, out)} (${fs.statSync(out).size} bytes)`);
}
