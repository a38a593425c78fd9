/**
 * The fuzz harness in CI (test/fuzz/, docs/FUZZING.md). Every parser gets a bounded number of
 * mutated inputs (its `ciInputs`; LLAMATS_FUZZ_N overrides), from a fixed seed so that CI is
 * deterministic (LLAMATS_FUZZ_SEED overrides), plus every input under test/fuzz/regressions/.
 * A crash, hang, untyped exception or memory blow-up fails the test with the input dumped and
 * the command that reruns it. The long run is one command: `npm run fuzz -- --n 1000000 --target gguf`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatFailure, fuzzInChild } from './fuzz/harness.js';
import { TARGETS } from './fuzz/targets.js';
import { SHARED, shared } from './helpers.js';

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${v}: expected a non-negative integer`);
  return n;
}

const N = envInt('LLAMATS_FUZZ_N');
const SEED = envInt('LLAMATS_FUZZ_SEED') ?? 1;

for (const target of TARGETS) {
  const n = N ?? target.ciInputs;
  test(`fuzz ${target.name} (${n} inputs): ${target.what}`, { timeout: 600_000, ...(target.knownIssue ? { todo: target.knownIssue } : {}) }, async (t) => {
    for (const rel of target.sharedSeeds) if (!shared(t, rel)) return;
    const r = await fuzzInChild({ target: target.name, n, seed: SEED, shared: SHARED });
    t.diagnostic(
      `${r.inputs} inputs (${r.regressions} regression) in ${r.seconds.toFixed(1)} s: ${r.accepted} accepted, ${r.refused} refused with a LlamatsError; ` +
        `slowest ${r.slowestMs.toFixed(1)} ms, largest growth ${(r.maxGrowth / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.equal(r.failures.length, 0, `\n${r.failures.map(formatFailure).join('\n\n')}`);
    assert.equal(r.inputs, n + r.regressions);
  });
}
