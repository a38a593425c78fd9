/**
 * The fuzz loop and its oracle.
 *
 * For one target, seeded with `seed`: input i is a mutation of a seed picked by an Rng seeded
 * with iterationSeed(seed, i), so any single input is rebuilt from (target, seed, i) alone — no
 * corpus state carries over between inputs. Before the mutated inputs, every file under
 * test/fuzz/regressions/<target>/ (inputs that once failed) is run as is.
 *
 * The oracle, for every input:
 *   - the parser returns, or throws a LlamatsError (FileFormatError, UnsupportedModelError, ...);
 *     anything else (TypeError, RangeError, a stack overflow, a SyntaxError escaping) fails;
 *   - it takes at most `hangMs` (1 s; a slow input is run again before it counts as a failure);
 *     a watchdog in the parent process kills the child after `killMs` (a real infinite loop);
 *   - memory (process rss and arrayBuffers) grows by at most `memoryLimit` (256 MiB) over the
 *     input, confirmed after a GC; the child's heap is capped (2 GiB), so running out kills the
 *     child and is reported as a failure of the input it was on;
 *   - open file descriptors do not pile up (checked every 500 inputs and at the end).
 * A failure prints the target, seed, iteration and seed name, a dump of the input (hex, or the
 * text of JSON and templates), writes the whole input under $TMPDIR/llamats-fuzz/, and says how
 * to rerun exactly that input.
 *
 * The loop runs in a child process (fuzzInChild): its heap is capped, so an input that exhausts it
 * kills the child only, and the parent, which watches a progress file, reports that input.
 */
import { fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { LlamatsError } from '../../src/errors.js';
import { ROOT } from '../helpers.js';
import { Rng, iterationSeed } from './mutate.js';
import type { Seed } from './seeds.js';
import { buildCorpus, mutate, outcome, targetByName, type Corpus, type Target, type TargetContext } from './targets.js';

export interface FuzzOptions {
  readonly target: string;
  /** Mutated inputs to run (regression inputs come on top). */
  readonly n: number;
  readonly seed: number;
  /** First iteration (to rerun one input: from = i, n = 1). */
  readonly from?: number;
  /** ../shared, or undefined to use built seeds only. */
  readonly shared: string | undefined;
  readonly hangMs?: number;
  readonly killMs?: number;
  readonly memoryLimit?: number;
  /** Stop after this many failures (default 10). */
  readonly maxFailures?: number;
  /** Skip the regression inputs (when rerunning one iteration). */
  readonly skipRegressions?: boolean;
  /** Called about every two seconds with the number of inputs done. */
  readonly onProgress?: (done: number, failures: number) => void;
}

export interface Failure {
  readonly target: string;
  readonly seed: number;
  /** The iteration, or -1 - k for regression input k. */
  readonly iteration: number;
  readonly seedName: string;
  readonly kind: 'exception' | 'hang' | 'memory' | 'fd-leak' | 'crash';
  readonly message: string;
  readonly size: number;
  /** A readable dump of the start of the input. */
  readonly dump: string;
  /** Where the whole input was written. */
  readonly file: string;
  /** How to run exactly this input again. */
  readonly reproduce: string;
}

export interface FuzzReport {
  readonly target: string;
  readonly seed: number;
  readonly from: number;
  /** Inputs run, regression inputs included. */
  readonly inputs: number;
  readonly regressions: number;
  /** Inputs that went through without an error, and those refused (somewhere) with a LlamatsError. */
  readonly accepted: number;
  readonly refused: number;
  readonly failures: Failure[];
  readonly seconds: number;
  /** The slowest input, in ms, and the largest memory growth over one input, in bytes (and their iterations). */
  readonly slowestMs: number;
  readonly slowestIteration: number;
  readonly maxGrowth: number;
  readonly maxGrowthIteration: number;
  readonly seeds: ReadonlyArray<{ name: string; size: number }>;
}

const MiB = 1024 * 1024;
export const FAILURE_DIR = path.join(os.tmpdir(), 'llamats-fuzz');
export const REGRESSION_DIR = path.join(ROOT, 'test/fuzz/regressions');

/** The rerun command for one input. */
export function reproduceCommand(target: string, seed: number, iteration: number): string {
  return iteration < 0 ? `npm run fuzz -- --target ${target} --n 0` : `npm run fuzz -- --target ${target} --seed ${seed} --from ${iteration} --n 1`;
}

/** A readable dump: text for JSON / templates, else hex + ASCII of the first 256 bytes. */
export function dumpInput(target: Target, input: Uint8Array): string {
  if (target.kind !== 'bytes') {
    const s = new TextDecoder().decode(input);
    return JSON.stringify(s.length > 800 ? `${s.slice(0, 800)}…` : s) + ` (${input.length} bytes)`;
  }
  const lines: string[] = [];
  for (let o = 0; o < Math.min(input.length, 256); o += 16) {
    const row = input.subarray(o, o + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    lines.push(`${o.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${[...row].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('')}`);
  }
  if (input.length > 256) lines.push(`… (${input.length} bytes in all)`);
  return lines.join('\n');
}

export function formatFailure(f: Failure): string {
  return [
    `FUZZ FAILURE [${f.target}] ${f.kind}: ${f.message}`,
    `  seed ${f.seed}, iteration ${f.iteration}, mutated from "${f.seedName}", ${f.size} bytes; input saved to ${f.file}`,
    `  rerun: ${f.reproduce}`,
    ...f.dump.split('\n').map((l) => `  ${l}`),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// In the child process: the loop

interface Prepared {
  target: Target;
  seeds: Seed[];
  regressions: Seed[];
  corpus: Corpus;
  /** Per seed: its directory (companion files written once); inputs are written there. */
  dirs: Map<Seed, string>;
  tmp: string;
}

function regressionSeeds(target: Target): Seed[] {
  const dir = path.join(REGRESSION_DIR, target.name);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).sort().map((f) => ({ name: `regression:${f}`, bytes: new Uint8Array(fs.readFileSync(path.join(dir, f))), weight: 0.5 }));
}

/** A scratch directory, in memory (/dev/shm) where there is one: every input is written to a file. */
function scratchDir(name: string): string {
  for (const base of ['/dev/shm', os.tmpdir()]) {
    try {
      return fs.mkdtempSync(path.join(base, `llamats-fuzz-${name}-`));
    } catch {
      // not there or not writable: the next one
    }
  }
  throw new Error('no writable temporary directory');
}

export function prepare(opts: Pick<FuzzOptions, 'target' | 'shared'>): Prepared {
  const target = targetByName(opts.target);
  const tmp = scratchDir(target.name);
  const ctx: TargetContext = { shared: opts.shared, tmp };
  const regressions = regressionSeeds(target);
  const seeds = target.seeds(ctx); // (regression inputs run as they are, not as mutation bases: some are slow by design)
  const corpus = buildCorpus(target, seeds);
  const dirs = new Map<Seed, string>();
  const defaults = target.defaultCompanions?.(ctx) ?? {};
  [...seeds, ...regressions].forEach((s, i) => {
    const dir = path.join(tmp, `seed-${i}`);
    fs.mkdirSync(dir);
    for (const [name, bytes] of Object.entries(s.companions ?? defaults)) fs.writeFileSync(path.join(dir, name), bytes);
    dirs.set(s, dir);
  });
  return { target, seeds, regressions, corpus, dirs, tmp };
}

/** The seed and the input of iteration i. */
export function inputAt(p: Prepared, seed: number, i: number): { seed: Seed; input: Uint8Array } {
  const r = new Rng(iterationSeed(seed, i));
  const total = p.seeds.reduce((a, s) => a + s.weight, 0);
  let x = r.next() * total;
  let s = p.seeds[p.seeds.length - 1]!;
  for (const c of p.seeds) {
    x -= c.weight;
    if (x < 0) {
      s = c;
      break;
    }
  }
  return { seed: s, input: mutate(p.target, s, r, p.corpus) };
}

function saveInput(target: string, seed: number, iteration: number, input: Uint8Array): string {
  fs.mkdirSync(FAILURE_DIR, { recursive: true });
  const file = path.join(FAILURE_DIR, `${target}-seed${seed}-${iteration < 0 ? 'regression' : `i${iteration}`}.bin`);
  fs.writeFileSync(file, input);
  return file;
}

export function makeFailure(p: Prepared, seed: number, iteration: number, s: Seed, input: Uint8Array, kind: Failure['kind'], message: string): Failure {
  return {
    target: p.target.name, seed, iteration, seedName: s.name, kind, message, size: input.length,
    dump: dumpInput(p.target, input), file: saveInput(p.target.name, seed, iteration, input), reproduce: reproduceCommand(p.target.name, seed, iteration),
  };
}

function describeError(e: unknown): string {
  if (e instanceof Error) {
    const where = e.stack?.split('\n').slice(1, 4).map((l) => l.trim()).join(' / ') ?? '';
    return `${e.name}: ${e.message.slice(0, 300)}${where ? ` (${where})` : ''}`;
  }
  return `a thrown ${typeof e}: ${String(e).slice(0, 200)}`;
}

/** A GC function (the child runs with --expose-gc; else through V8 flags), to tell garbage from a real allocation. */
function gcFunction(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

function openFds(): number {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return 0; // not Linux: not checked
  }
}

/**
 * Where the loop is, for the watchdog: `start(i)` before input i is made and run (-1 - k for
 * regression input k), `end(done, failures)` after it.
 */
export interface Progress {
  start(iteration: number): void;
  end(done: number, failures: number): void;
}

/** Run the loop here (in the child process). */
export function fuzzLoop(opts: FuzzOptions, progress: Progress): FuzzReport {
  const t0 = performance.now();
  const p = prepare(opts);
  const gc = gcFunction();
  const hangMs = opts.hangMs ?? p.target.hangMs ?? 1000;
  const memoryLimit = opts.memoryLimit ?? 256 * MiB;
  const maxFailures = opts.maxFailures ?? 10;
  const from = opts.from ?? 0;
  const failures: Failure[] = [];
  let accepted = 0;
  let refused = 0;
  let inputs = 0;
  let slowestMs = 0;
  let slowestIteration = NaN;
  let maxGrowth = 0;
  let maxGrowthIteration = NaN;

  /** Run one input: its time, the memory it added, its untyped error if any, and whether a LlamatsError refused it. */
  const once = (input: Uint8Array, s: Seed): { ms: number; growth: number; error?: unknown; typedError: boolean } => {
    const dir = p.dirs.get(s)!;
    const file = p.target.file ? path.join(dir, p.target.file) : '';
    if (file) fs.writeFileSync(file, input);
    const before = process.memoryUsage();
    const start = performance.now();
    let error: unknown;
    let typedError = false;
    outcome.refused = 0;
    try {
      p.target.run(input, file, dir);
    } catch (e) {
      if (e instanceof LlamatsError) typedError = true;
      else error = e ?? new Error(`threw ${String(e)}`);
    }
    typedError ||= outcome.refused > 0;
    const ms = performance.now() - start;
    const after = process.memoryUsage();
    const growth = Math.max(after.rss - before.rss, after.arrayBuffers - before.arrayBuffers);
    return error === undefined ? { ms, growth, typedError } : { ms, growth, error, typedError };
  };

  const check = (iteration: number, s: Seed, input: Uint8Array): void => {
    progress.start(iteration);
    let res = once(input, s);
    inputs++;
    if (res.ms > hangMs || res.growth > memoryLimit) {
      gc(); // a slow or big input: measure again from a clean heap before calling it a failure
      const again = once(input, s);
      res = { ms: Math.min(res.ms, again.ms), growth: Math.min(res.growth, again.growth), typedError: res.typedError, ...(res.error !== undefined ? { error: res.error } : {}) };
    }
    if (res.ms > slowestMs) [slowestMs, slowestIteration] = [res.ms, iteration];
    if (res.growth > maxGrowth) [maxGrowth, maxGrowthIteration] = [res.growth, iteration];
    if (res.error !== undefined) failures.push(makeFailure(p, opts.seed, iteration, s, input, 'exception', describeError(res.error)));
    else if (res.typedError) refused++;
    else accepted++;
    if (res.ms > hangMs) failures.push(makeFailure(p, opts.seed, iteration, s, input, 'hang', `took ${res.ms.toFixed(0)} ms (limit ${hangMs} ms), twice`));
    if (res.growth > memoryLimit) failures.push(makeFailure(p, opts.seed, iteration, s, input, 'memory', `memory grew by ${(res.growth / MiB).toFixed(0)} MiB over one ${input.length}-byte input (limit ${memoryLimit / MiB} MiB), twice`));
    progress.end(inputs, failures.length);
  };

  try {
    const fds = openFds();
    if (!opts.skipRegressions) p.regressions.forEach((s, k) => check(-1 - k, s, s.bytes));
    for (let i = from; i < from + opts.n && failures.length < maxFailures; i++) {
      progress.start(i); // (before mutating: a mutator that dies is reported on the right input)
      const { seed, input } = inputAt(p, opts.seed, i);
      check(i, seed, input);
      if ((i - from) % 500 === 499 && openFds() > fds + 64) {
        failures.push(makeFailure(p, opts.seed, i, seed, input, 'fd-leak', `open file descriptors grew from ${fds} to ${openFds()} by iteration ${i}`));
        break;
      }
    }
    if (openFds() > fds + 64) failures.push(makeFailure(p, opts.seed, from, p.seeds[0]!, new Uint8Array(0), 'fd-leak', `open file descriptors grew from ${fds} to ${openFds()}`));
  } finally {
    fs.rmSync(p.tmp, { recursive: true, force: true });
  }
  return {
    target: p.target.name, seed: opts.seed, from, inputs, regressions: opts.skipRegressions ? 0 : p.regressions.length, accepted, refused, failures,
    seconds: (performance.now() - t0) / 1000, slowestMs, slowestIteration, maxGrowth, maxGrowthIteration, seeds: p.seeds.map((s) => ({ name: s.name, size: s.bytes.length })),
  };
}

// ---------------------------------------------------------------------------------------------
// In the parent: the child process and its watchdog

/** The progress file: float64 [iteration, start time (ms; 0 between inputs), inputs done, failures]. */
export const PROGRESS_SLOTS = 4;

/** Run one target's loop in a child process, killing it if one input runs longer than killMs. */
export function fuzzInChild(opts: FuzzOptions): Promise<FuzzReport> {
  const { onProgress, ...data } = opts;
  const progressFile = path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `llamats-fuzz-progress-${process.pid}-${Date.now()}`);
  fs.writeFileSync(progressFile, new Uint8Array(Float64Array.of(NaN, 0, 0, 0).buffer));
  const child = fork(fileURLToPath(new URL('./child.js', import.meta.url)), [], {
    env: { ...process.env, LLAMATS_FUZZ_OPTIONS: JSON.stringify(data), LLAMATS_FUZZ_PROGRESS: progressFile },
    execArgv: ['--max-old-space-size=2048', '--expose-gc'],
    serialization: 'advanced', // (the report holds NaN)
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const killMs = opts.killMs ?? 20_000;
  const t0 = performance.now();
  const read = (): Float64Array => {
    const b = new Uint8Array(8 * PROGRESS_SLOTS);
    try {
      const fd = fs.openSync(progressFile, 'r');
      fs.readSync(fd, b, 0, b.length, 0);
      fs.closeSync(fd);
    } catch {
      // the file is gone: nothing to read
    }
    return new Float64Array(b.buffer);
  };
  return new Promise<FuzzReport>((resolve) => {
    let settled = false;
    let lastProgress = 0;
    const finish = (r: FuzzReport) => {
      settled = true;
      clearInterval(watch);
      fs.rmSync(progressFile, { force: true });
      resolve(r);
    };
    /** The child died or hung: rebuild the input it was on (deterministic) and report it. */
    const died = (kind: Failure['kind'], message: string) => {
      if (settled) return;
      const [iteration, , done] = read();
      let p: Prepared;
      try {
        p = prepare(opts);
      } catch (e) {
        // the seeds themselves cannot be built here: report without the input
        const failure: Failure = {
          target: opts.target, seed: opts.seed, iteration: iteration!, seedName: '?', kind, message: `${message}; preparing the seeds failed too (${describeError(e)})`,
          size: 0, dump: '', file: '', reproduce: reproduceCommand(opts.target, opts.seed, iteration!),
        };
        finish({
          target: opts.target, seed: opts.seed, from: opts.from ?? 0, inputs: done!, regressions: 0, accepted: 0, refused: 0, failures: [failure],
          seconds: (performance.now() - t0) / 1000, slowestMs: NaN, slowestIteration: NaN, maxGrowth: NaN, maxGrowthIteration: NaN, seeds: [],
        });
        return;
      }
      try {
        const regression = iteration! < 0 ? p.regressions[-1 - iteration!] : undefined;
        let seed = regression ?? p.seeds[0]!;
        let input = regression?.bytes ?? new Uint8Array(0);
        try {
          if (iteration! >= 0) ({ seed, input } = inputAt(p, opts.seed, iteration!));
        } catch (e) {
          message += `; rebuilding the input failed too (${describeError(e)})`;
        }
        const tail = stderr.split('\n').filter((l) => /error|fatal|heap/i.test(l)).slice(-3).join(' / ');
        const failure = makeFailure(p, opts.seed, iteration!, seed, input, kind, `${message} (on iteration ${iteration})${tail ? `: ${tail}` : ''}`);
        finish({
          target: opts.target, seed: opts.seed, from: opts.from ?? 0, inputs: done!, regressions: 0, accepted: 0, refused: 0, failures: [failure],
          seconds: (performance.now() - t0) / 1000, slowestMs: NaN, slowestIteration: NaN, maxGrowth: NaN, maxGrowthIteration: NaN,
          seeds: p.seeds.map((s) => ({ name: s.name, size: s.bytes.length })),
        });
      } finally {
        fs.rmSync(p.tmp, { recursive: true, force: true });
      }
    };
    const watch = setInterval(() => {
      const [, started, done, failures] = read();
      if (started! > 0 && Date.now() - started! > killMs) {
        child.kill('SIGKILL');
        died('hang', `one input ran for more than ${killMs / 1000} s; the child was killed`);
      } else if (onProgress && Date.now() - lastProgress > 2000) {
        lastProgress = Date.now();
        onProgress(done!, failures!);
      }
    }, 250);
    child.on('message', (m: { report: FuzzReport }) => {
      if (!settled) finish(m.report);
    });
    child.on('exit', (code, signal) => died('crash', `the child process exited (${signal ?? `code ${code}`}) before reporting`));
  });
}
