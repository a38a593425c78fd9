/**
 * The sampler: run.c's xorshift generator (fixture made by run.c's own functions) and the three
 * sampling rules on hand-computed distributions.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { argmax, InvalidArgumentError, Sampler, XorShiftRng } from '../src/index.js';
import { sampleMult, sampleTopp, softmaxF32 } from '../src/generate/sampler.js';
import { FIXTURES } from './helpers.js';

test('XorShiftRng gives run.c random_u32 and random_f32 for seeds 42 and 1', () => {
  const ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'runc_rng.json'), 'utf8')) as Record<string, { u32: number[]; f32: number[] }>;
  for (const seed of ['42', '1']) {
    const a = new XorShiftRng(BigInt(seed));
    assert.deepEqual(ref[seed]!.u32.map(() => a.nextU32()), ref[seed]!.u32);
    const b = new XorShiftRng(BigInt(seed));
    assert.deepEqual(ref[seed]!.f32.map(() => b.nextF32()), ref[seed]!.f32.map((x) => Math.fround(x)));
  }
  assert.throws(() => new XorShiftRng(0), InvalidArgumentError);
});

test('argmax returns the first of equal maxima', () => {
  assert.equal(argmax(Float32Array.from([1, 3, 3, 2])), 1);
  assert.equal(argmax(Float32Array.from([-5, -1, -1])), 1);
});

test('softmax of log(1,2,7) is (0.1, 0.2, 0.7)', () => {
  const x = Float32Array.from([Math.log(1), Math.log(2), Math.log(7)]);
  softmaxF32(x, 3);
  [0.1, 0.2, 0.7].forEach((p, i) => assert.ok(Math.abs(x[i]! - p) < 1e-6, `p[${i}] = ${x[i]}`));
});

test('multinomial sampling walks the cumulative distribution', () => {
  const p = Float32Array.from([0.5, 0.3, 0.2]);
  // cdf = 0.5, 0.8, 1.0
  assert.equal(sampleMult(p, 3, 0.0), 0);
  assert.equal(sampleMult(p, 3, 0.49), 0);
  assert.equal(sampleMult(p, 3, 0.5), 1);
  assert.equal(sampleMult(p, 3, 0.79), 1);
  assert.equal(sampleMult(p, 3, 0.81), 2);
  assert.equal(sampleMult(Float32Array.from([0.2, 0.2]), 2, 0.99), 1); // rounding: last index
});

test('top-p keeps the smallest prefix above p and rescales the coin by its mass', () => {
  // sorted: idx3 0.4, idx1 0.3, idx0 0.2, idx2 0.1
  const p = Float32Array.from([0.2, 0.3, 0.1, 0.4]);
  // topp 0.6: 0.4 → 0.7 > 0.6, so the nucleus is {3, 1} with mass 0.7
  // coin 0.5 → r = 0.35 → 0.35 < 0.4 → idx 3
  assert.equal(sampleTopp(p, 4, 0.6, 0.5), 3);
  // coin 0.6 → r = 0.42 → ≥ 0.4, < 0.7 → idx 1
  assert.equal(sampleTopp(p, 4, 0.6, 0.6), 1);
  // coin 0.999 → r ≈ 0.699 < 0.7 → idx 1; idx 0 and 2 are never reachable
  assert.equal(sampleTopp(p, 4, 0.6, 0.999), 1);
  // topp 0.95: cutoff (1-0.95)/3 = 0.0167 keeps all; nucleus is all four, mass 1.0
  assert.equal(sampleTopp(p, 4, 0.95, 0.95), 2);
  // the cutoff drops tiny probabilities before sorting: with topp 0.5 the cutoff is 0.5/3 ≈ 0.167,
  // so idx2 (0.1) is not a candidate; nucleus {3, 1}
  assert.equal(sampleTopp(p, 4, 0.5, 0.99), 1);
});

test('Sampler: temperature 0 is argmax and leaves the logits alone; temperatures scale the logits', () => {
  const logits = Float32Array.from([0.1, 2, 1.9]);
  assert.equal(new Sampler(3, { temperature: 0, seed: 1 }).sample(logits), 1);
  assert.deepEqual([...logits], [...Float32Array.from([0.1, 2, 1.9])]);
  // at temperature 2 the probabilities are softmax(logits / 2)
  const s = new Sampler(3, { temperature: 2, topp: 0, seed: 5 });
  const l2 = Float32Array.from([0, Math.log(4), Math.log(16)]); // /2 → log(1), log(2), log(4) → 1/7, 2/7, 4/7
  const coin = new XorShiftRng(5).nextF32();
  const expected = coin < 1 / 7 ? 0 : coin < 3 / 7 ? 1 : 2;
  assert.equal(s.sample(l2), expected);
  [1 / 7, 2 / 7, 4 / 7].forEach((q, i) => assert.ok(Math.abs(l2[i]! - q) < 1e-6));
});

test('Sampler refuses negative temperature and top-p outside [0, 1]', () => {
  assert.throws(() => new Sampler(3, { temperature: -0.1 }), InvalidArgumentError);
  assert.throws(() => new Sampler(3, { topp: 1.5 }), InvalidArgumentError);
  assert.throws(() => new Sampler(3, { topp: -0.5 }), InvalidArgumentError);
  assert.throws(() => new Sampler(3, { temperature: NaN }), InvalidArgumentError);
});
