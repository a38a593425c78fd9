/**
 * Memory planned before loading: `llamats plan`, `--fit auto` / `--fit check`, quantize on load,
 * and the memory readings behind them (fake /proc and /sys trees).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { EXIT_CODES, Llama, loadModel, OutOfMemoryError, randomModel, writeLlama2cCheckpoint } from '../src/index.js';
import { fitModel, planMemory, readMemoryInfo } from '../src/plan.js';
import { runCli, shared, tempDir } from './helpers.js';

test('readMemoryInfo: MemAvailable, cgroup v2 and v1 limits, LLAMATS_MEMORY_LIMIT', (t) => {
  const root = tempDir(t);
  const proc = path.join(root, 'proc');
  const sys = path.join(root, 'sys');
  fs.mkdirSync(proc, { recursive: true });
  fs.writeFileSync(path.join(proc, 'meminfo'), 'MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n');
  assert.deepEqual(readMemoryInfo({ procRoot: proc, sysRoot: sys, env: {} }), { available: 8000000 * 1024, source: `MemAvailable in ${path.join(proc, 'meminfo')}` });
  assert.equal(readMemoryInfo({ procRoot: path.join(root, 'nothing'), sysRoot: sys, env: {} }).source, 'unknown');
  fs.mkdirSync(path.join(sys, 'fs/cgroup'), { recursive: true });
  fs.writeFileSync(path.join(sys, 'fs/cgroup/memory.max'), 'max\n');
  assert.equal(readMemoryInfo({ procRoot: proc, sysRoot: sys, env: {} }).available, 8000000 * 1024, "'max' is no limit");
  fs.writeFileSync(path.join(sys, 'fs/cgroup/memory.max'), String(4 * 1024 ** 3));
  fs.writeFileSync(path.join(sys, 'fs/cgroup/memory.current'), String(1024 ** 3));
  assert.equal(readMemoryInfo({ procRoot: proc, sysRoot: sys, env: {} }).available, 3 * 1024 ** 3);
  fs.rmSync(path.join(sys, 'fs/cgroup/memory.max'));
  fs.mkdirSync(path.join(sys, 'fs/cgroup/memory'));
  fs.writeFileSync(path.join(sys, 'fs/cgroup/memory/memory.limit_in_bytes'), String(2 * 1024 ** 3));
  fs.writeFileSync(path.join(sys, 'fs/cgroup/memory/memory.usage_in_bytes'), String(1024 ** 3));
  assert.equal(readMemoryInfo({ procRoot: proc, sysRoot: sys, env: {} }).available, 1024 ** 3);
  assert.equal(readMemoryInfo({ procRoot: proc, sysRoot: sys, env: { LLAMATS_MEMORY_LIMIT: '1000' } }).available, 1000);
});

function writeModel(dir: string): string {
  // 32000 × 256 embeddings + 4 layers: 36 MB of float32
  const m = randomModel({ dim: 256, hiddenDim: 768, nLayers: 4, nHeads: 8, nKvHeads: 4, vocabSize: 32000, seqLen: 256, sharedClassifier: true }, 7);
  const file = path.join(dir, 'model.bin');
  writeLlama2cCheckpoint(file, m, { version: 0 });
  return file;
}

test('planMemory counts weights, the backend copy, KV cache; a tight machine gets choices that fit', (t) => {
  const file = writeModel(tempDir(t));
  const roomy = planMemory(file, { memory: { available: 2 ** 34, source: 'test' } });
  assert.ok(roomy.fits);
  assert.equal(roomy.rows[0]!.bytes, fs.statSync(file).size - 28);
  const kv = roomy.rows.find((r) => r.item.startsWith('KV cache'))!;
  assert.equal(kv.bytes, 2 * 4 * 256 * 128 * 4); // layers × ctx × kvDim × float32, keys and values
  const tight = planMemory(file, { memory: { available: 160 * 2 ** 20, source: 'test' } });
  assert.equal(tight.fits, false);
  assert.match(tight.choices[0]!.description, /Q8_0 on load/);
  assert.ok(tight.choices.every((c) => c.needed <= 160 * 2 ** 20));
  assert.throws(() => fitModel(file, { ctx: 256, memory: { available: 160 * 2 ** 20, source: 'test' } }), (e: unknown) => e instanceof OutOfMemoryError && /choices that fit: weights quantized to Q8_0/.test(e.message));
  const auto = fitModel(file, { ctx: 256, fit: 'auto', memory: { available: 160 * 2 ** 20, source: 'test' } });
  assert.equal(auto.quantize, 'q8_0');
  assert.match(auto.note!, /--fit auto: .* loading with weights quantized to Q8_0/);
  assert.throws(() => fitModel(file, { ctx: 256, fit: 'auto', memory: { available: 10 * 2 ** 20, source: 'test' } }), /nothing fits/);
});

test('quantize on load keeps every format running close to float32', (t) => {
  const file = writeModel(tempDir(t));
  const q8 = loadModel(file, { quantize: 'q8_0' });
  assert.equal(q8.weights.layers[0]!.w1.type, 'ggml');
  assert.equal(q8.weights.classifier, q8.weights.tokenEmbedding, 'a tied classifier stays tied');
});

test('llamats run: --fit check stops before loading with the choices; --fit auto quantizes and says so', (t) => {
  const tok = shared(t, 'models/tokenizer.bin');
  if (!tok) return;
  const file = writeModel(tempDir(t));
  const env = { LLAMATS_MEMORY_LIMIT: String(160 * 2 ** 20) };
  const check = runCli(['run', file, '-z', tok, '-n', '8', '-i', 'Hello'], { env });
  assert.equal(check.status, EXIT_CODES.OUT_OF_MEMORY, check.stderr);
  assert.equal(check.stdout, '');
  assert.match(check.stderr, /^llamats: .*needs .* but 160\.0 MiB is available \(LLAMATS_MEMORY_LIMIT\); choices that fit: weights quantized to Q8_0 on load.*--fit auto/);
  const auto = runCli(['run', file, '-z', tok, '-n', '8', '-i', 'Hello', '--fit', 'auto'], { env });
  assert.equal(auto.status, 0, auto.stderr);
  assert.match(auto.stderr, /^llamats: --fit auto: .* loading with weights quantized to Q8_0/);
  assert.match(auto.stdout, /^Hello/);
  const plan = runCli(['plan', file], { env });
  assert.equal(plan.status, EXIT_CODES.OUT_OF_MEMORY);
  assert.match(plan.stdout, /does not fit: .* short/);
  assert.match(plan.stdout, /- weights quantized to Q8_0 on load: /);
  const ok = runCli(['plan', file, '--json']);
  assert.equal(ok.status, 0);
  assert.equal(JSON.parse(ok.stdout).fits, true);
  assert.equal(runCli(['plan', file, '--device', 'cuda']).status, EXIT_CODES.INVALID_ARGUMENT);
  assert.equal(runCli(['run', file, '-z', tok, '--fit', 'maybe']).status, EXIT_CODES.INVALID_ARGUMENT);
});

test('Llama.build plans too: maxBatchSize beyond memory is refused before loading, or reduced with fit auto', async (t) => {
  const tok = shared(t, 'models/tokenizer.bin');
  if (!tok) return;
  const file = writeModel(tempDir(t));
  const prev = process.env.LLAMATS_MEMORY_LIMIT;
  process.env.LLAMATS_MEMORY_LIMIT = String(240 * 2 ** 20);
  try {
    const opts = { ckptDir: file, tokenizerPath: tok, maxSeqLen: 256, maxBatchSize: 2000 };
    await assert.rejects(Llama.build(opts), OutOfMemoryError);
    const llama = await Llama.build({ ...opts, fit: 'auto' });
    assert.ok(llama.fitNote);
    assert.ok(llama.maxBatchSize < 2000 || llama.maxSeqLen < 256 || llama.model.weights.layers[0]!.wq.type === 'ggml', llama.fitNote);
  } finally {
    if (prev === undefined) delete process.env.LLAMATS_MEMORY_LIMIT;
    else process.env.LLAMATS_MEMORY_LIMIT = prev;
  }
});

test('llamats serve plans weights + one KV cache per slot: --fit check stops, --fit auto takes fewer slots', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  const env = { LLAMATS_MEMORY_LIMIT: String(100_000_000) };
  const check = runCli(['serve', ckpt, '-z', tok, '--port', '0', '--slots', '64'], { env });
  assert.equal(check.status, EXIT_CODES.OUT_OF_MEMORY, check.stderr);
  assert.match(check.stderr, /64 sequences\) but .* choices that fit: .*sequences/);
  const { startServe } = await import('./server-helpers.js');
  const srv = await startServe(t, [ckpt, '-z', tok, '--slots', '64', '--fit', 'auto'], env);
  assert.match(srv.stderr(), /--fit auto: .* loading with the weights as stored, \d+ sequences/);
  await srv.stop();
});
