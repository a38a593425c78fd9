#!/usr/bin/env node
// The long fuzz run (docs/FUZZING.md): `npm run fuzz -- --n 1000000 --target gguf`.
// Runs the harness of test/fuzz (compiled to dist/test/fuzz) for one target or all of them and
// prints, per target, the inputs run, how many parsed and how many were refused with a typed
// error, the slowest input and every failure with the command that reruns it.
//
//   --target NAME|all   a target (alias --parser), or all (default)
//   --n N               mutated inputs per target (default 20000)
//   --seed S            run seed (default: from the clock, printed)
//   --from I            first iteration (with --n 1: rerun one input of a failure report)
//   --max-failures K    stop a target after K failures (default 10)
//   --shared DIR        the ../shared folder (default: $LLAMATS_SHARED or ../shared)
//   --kill-s S          kill an input running longer than S seconds (default 20)
//   --json FILE         also write the reports as JSON
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { fuzzInChild, formatFailure } = await import(path.join(root, 'dist/test/fuzz/harness.js'));
const { TARGETS } = await import(path.join(root, 'dist/test/fuzz/targets.js'));

const args = process.argv.slice(2);
const opt = (name, alias) => {
  const i = args.findIndex((a) => a === `--${name}` || (alias && a === `--${alias}`));
  return i >= 0 ? args[i + 1] : undefined;
};
const usage = () => {
  console.error(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
  console.error(`targets: ${TARGETS.map((t) => t.name).join(', ')}`);
};
if (args.includes('--help') || args.includes('-h')) {
  usage();
  process.exit(0);
}
const which = opt('target', 'parser') ?? 'all';
const n = Number(opt('n') ?? 20000);
const seed = Number(opt('seed') ?? (Date.now() % 2 ** 31));
const from = Number(opt('from') ?? 0);
const maxFailures = Number(opt('max-failures') ?? 10);
const killMs = Number(opt('kill-s') ?? 20) * 1000;
const sharedDir = opt('shared') ?? process.env.LLAMATS_SHARED ?? path.resolve(root, '../shared');
const targets = which === 'all' ? TARGETS : TARGETS.filter((t) => t.name === which);
if (targets.length === 0 || !Number.isInteger(n) || n < 0 || !Number.isInteger(seed)) {
  usage();
  process.exit(2);
}
const shared = fs.existsSync(sharedDir) ? sharedDir : undefined;
if (!shared) console.log(`note: ${sharedDir} is missing; fuzzing with built seeds only`);
console.log(`fuzz: seed ${seed}, ${n} inputs per target from iteration ${from}`);

const reports = [];
let failed = 0;
for (const t of targets) {
  const started = Date.now();
  const report = await fuzzInChild({
    target: t.name, n, seed, from, shared, maxFailures, killMs, skipRegressions: n === 1 && from > 0,
    onProgress: (done, failures) => process.stderr.write(`\r  ${t.name}: ${done} inputs, ${failures} failures, ${((Date.now() - started) / 1000).toFixed(0)} s   `),
  });
  process.stderr.write('\r' + ' '.repeat(70) + '\r');
  reports.push(report);
  failed += report.failures.length;
  console.log(
    `${t.name.padEnd(15)} ${String(report.inputs).padStart(9)} inputs (${report.regressions} regression) in ${report.seconds.toFixed(1)} s: ` +
      `${report.accepted} accepted, ${report.refused} refused with a LlamatsError, slowest ${report.slowestMs.toFixed(1)} ms (iteration ${report.slowestIteration}), ` +
      `largest growth ${(report.maxGrowth / 2 ** 20).toFixed(1)} MiB (iteration ${report.maxGrowthIteration}), ${report.failures.length} failures`,
  );
  for (const f of report.failures) console.log(formatFailure(f));
}
const out = opt('json');
if (out) fs.writeFileSync(out, JSON.stringify(reports, null, 2));
process.exit(failed > 0 ? 1 : 0);
