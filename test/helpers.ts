/**
 * Test helpers: where ../shared and the fixtures are, a CLI runner, and temporary directories.
 *
 * Files under ../shared are inputs made by other programs. A test that needs one fails when
 * CI=true and it is missing (CI must have it), and elsewhere skips with a visible message.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

/** The repository root (tests run from dist/test/). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED = process.env.LLAMATS_SHARED ?? path.resolve(ROOT, '../shared');
export const FIXTURES = path.join(ROOT, 'test/fixtures');
export const CLI = path.join(ROOT, 'dist/src/cli/main.js');

/**
 * The absolute path of `rel` under ../shared, or undefined after marking the test skipped.
 * Under CI=true a missing file is a failure.
 */
export function shared(t: TestContext, rel: string, env: NodeJS.ProcessEnv = process.env, root: string = SHARED): string | undefined {
  const p = path.join(root, rel);
  if (fs.existsSync(p)) return p;
  const msg = `${p} is missing: tests that need ../shared (models and reference outputs) cannot run`;
  if (env.CI === 'true') throw new Error(`${msg}; CI must provide ../shared`);
  t.skip(msg);
  return undefined;
}

export function readJsonl<T = Record<string, unknown>>(file: string): T[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run the compiled CLI as a user would. */
export function runCli(args: readonly string[], opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input: opts.input ?? '',
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh temporary directory, removed when the test ends. */
export function tempDir(t: TestContext): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'llamats-test-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Seeded PRNG (mulberry32) for random test inputs. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Normalized mean squared error, as llama.cpp's test-backend-ops: mse(a, b) / mse(a, 0). */
export function nmse(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (ref[i]! - got[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return num / den;
}
