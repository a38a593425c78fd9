/**
 * The two builds of the wasm kernels (src/backend/wasm/loader.ts): kernels-relaxed.wasm, which
 * this process uses where the engine has relaxed SIMD, and kernels.wasm (fixed-width SIMD only).
 * test/conformance.test.ts runs on whichever this process picked; here it runs again in a child
 * with LLAMATS_RELAXED_SIMD=0, so that both modules stay checked against the reference.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kernelVariant } from '../src/backend/wasm/loader.js';
import { tempDir } from './helpers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const loader = new URL('../src/backend/wasm/loader.js', import.meta.url).href;

/** kernelVariant() in a fresh process with LLAMATS_RELAXED_SIMD set to `value` (of the loader at `from`): its output and status. */
function variantWith(value: string, from = loader): { status: number | null; out: string } {
  const code = `import(${JSON.stringify(from)}).then((m) => { try { console.log(m.kernelVariant()); } catch (e) { console.log('error: ' + e.message); process.exitCode = 3; } })`;
  const r = spawnSync(process.execPath, ['-e', code], { env: { ...process.env, LLAMATS_RELAXED_SIMD: value }, encoding: 'utf8' });
  return { status: r.status, out: r.stdout.trim() };
}

test('kernel variants: LLAMATS_RELAXED_SIMD=0 picks the fixed-width module; =1 the relaxed one or a typed error saying why', () => {
  assert.deepEqual(variantWith('0'), { status: 0, out: 'simd' });
  const relaxed = variantWith('1');
  if (kernelVariant() === 'relaxed-simd') assert.deepEqual(relaxed, { status: 0, out: 'relaxed-simd' });
  else assert.match(relaxed.out, /^error: LLAMATS_RELAXED_SIMD=1, but .+; unset it/);
  // unset: the relaxed module where this engine (Node 20: with the flag the loader sets) takes it
  assert.equal(variantWith('').out, kernelVariant());
});

test('kernel variants: the conformance suite passes on the fixed-width module too (LLAMATS_RELAXED_SIMD=0)', () => {
  // (without NODE_TEST_CONTEXT, which would make the child report to this runner instead of stdout)
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const out = execFileSync(process.execPath, ['--test', '--test-reporter=tap', path.join(here, 'conformance.test.js')], {
    env: { ...env, LLAMATS_RELAXED_SIMD: '0' },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  assert.match(out, /^# fail 0$/m);
  assert.match(out, /^# pass [1-9]\d*$/m);
});

test('kernel variants: without kernels-relaxed.wasm, auto falls back to fixed-width SIMD and LLAMATS_RELAXED_SIMD=1 says what is missing', (t) => {
  // a copy of the built sources without the relaxed module (a partial build)
  const dist = path.join(tempDir(t), 'src');
  fs.cpSync(path.join(here, '../src'), dist, { recursive: true });
  fs.rmSync(path.join(dist, 'backend/wasm/kernels-relaxed.wasm'));
  const copy = new URL(`file://${path.join(dist, 'backend/wasm/loader.js')}`).href;
  assert.deepEqual(variantWith('', copy), { status: 0, out: 'simd' });
  const strict = variantWith('1', copy);
  assert.equal(strict.status, 3);
  assert.match(strict.out, /^error: LLAMATS_RELAXED_SIMD=1, but .*kernels-relaxed\.wasm is missing: build the kernels with `npm run build`; unset it to use the fixed-width SIMD kernels$/);
});
