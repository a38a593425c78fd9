/**
 * llama2.c checkpoint versions 0, 1 and 2: the same model written in each must run the same
 * (v0/v1 exactly, v2 within int8 error and as runq.c computes it), for any consistent dimensions.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  FileFormatError, generateText, loadModel, randomModel, Session, Tokenizer, writeLlama2cCheckpoint,
  type Model,
} from '../src/index.js';
import { f32Matrix } from '../src/model/tensor.js';
import { FIXTURES, nmse, readJsonl, shared, tempDir } from './helpers.js';
import { createHash } from 'node:crypto';

interface Greedy { prompt: string; token_ids: number[]; num_prompt_tokens: number; output: string }

test('version 1 and a version-0 file with a separate classifier give run.c\'s greedy output', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  if (!ckpt || !tokPath || !ref) return;
  const dir = tempDir(t);
  const m = loadModel(ckpt);
  assert.equal(m.config.sharedClassifier, true);
  const v1 = path.join(dir, 'v1.bin');
  writeLlama2cCheckpoint(v1, m, { version: 1 });
  // the same weights with the classifier stored separately (a copy): negative vocab_size in v0
  const unshared: Model = {
    ...m,
    config: { ...m.config, sharedClassifier: false },
    weights: { ...m.weights, classifier: f32Matrix(Float32Array.from((m.weights.tokenEmbedding as { data: Float32Array }).data), m.config.vocabSize, m.config.dim) },
  };
  const v0u = path.join(dir, 'v0-unshared.bin');
  writeLlama2cCheckpoint(v0u, unshared, { version: 0 });
  assert.equal(Buffer.from(fs.readFileSync(v0u)).readInt32LE(20), -512, 'vocab_size is stored negative');
  assert.equal(fs.statSync(v0u).size, fs.statSync(ckpt).size + 512 * 64 * 4);
  // writing version 0 back reproduces the original file up to the unused freq_cis tables
  const v0 = path.join(dir, 'v0.bin');
  writeLlama2cCheckpoint(v0, m, { version: 0 });
  const freqBytes = m.config.seqLen * m.config.headDim * 4;
  const orig = fs.readFileSync(ckpt);
  assert.equal(fs.statSync(v0).size, orig.length);
  assert.ok(fs.readFileSync(v0).subarray(0, orig.length - freqBytes).equals(orig.subarray(0, orig.length - freqBytes)));
  const tok = Tokenizer.load(tokPath);
  for (const file of [v1, v0u]) {
    const model = loadModel(file);
    assert.equal(model.config.sharedClassifier, file === v1);
    for (const c of readJsonl<Greedy>(ref)) {
      const r = await generateText(model, tok, { prompt: c.prompt, temperature: 0 });
      assert.equal(r.text + '\n', c.output, `${path.basename(file)}: ${c.prompt}`);
    }
  }
});

test('version 2 (int8): greedy output equals float32 for the first 50 tokens of each public prompt', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  if (!ckpt || !tokPath || !ref) return;
  const q = path.join(tempDir(t), 'q80.bin');
  writeLlama2cCheckpoint(q, loadModel(ckpt), { version: 2 });
  const model = loadModel(q);
  assert.match(model.source.format, /v2 \(int8, group size 4\)/);
  assert.equal(model.weights.layers[0]!.wq.type, 'q8');
  const tok = Tokenizer.load(tokPath);
  for (const c of readJsonl<Greedy>(ref)) {
    const r = await generateText(model, tok, { prompt: c.prompt, temperature: 0, steps: c.num_prompt_tokens + 50 });
    assert.deepEqual(r.tokens.slice(0, c.num_prompt_tokens + 50), c.token_ids.slice(0, c.num_prompt_tokens + 50), c.prompt);
  }
});

test('version 2 (int8): the file matches the one runq.c ran, and the logits equal runq.c\'s within float32 rounding', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ckpt || !tokPath) return;
  const fx = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'runq_stories260K_q80_logits.json'), 'utf8')) as {
    quantized_sha256: string;
    cases: Array<{ prompt: string; logits: number[][] }>;
  };
  const q = path.join(tempDir(t), 'q80.bin');
  const f32 = loadModel(ckpt);
  writeLlama2cCheckpoint(q, f32, { version: 2 });
  // the quantizer is deterministic: same bytes as the file runq.c was run on
  assert.equal(createHash('sha256').update(fs.readFileSync(q)).digest('hex'), fx.quantized_sha256);
  const model = loadModel(q);
  const tok = Tokenizer.load(tokPath);
  for (const c of fx.cases) {
    const ids = tok.encode(c.prompt, { bos: true });
    const sq = new Session(model);
    const sf = new Session(f32);
    let worstRunq = 0;
    let worstF32 = 0;
    c.logits.forEach((ref, pos) => {
      const got = sq.forward(ids[pos]!, pos);
      worstRunq = Math.max(worstRunq, nmse(ref, got));
      worstF32 = Math.max(worstF32, nmse(ref, sf.forward(ids[pos]!, pos)));
    });
    // int8 error against float32 is ~1e-4; the difference to runq.c is rounding (float64 sums here)
    assert.ok(worstRunq < 1e-6, `${c.prompt}: nmse vs runq.c ${worstRunq}`);
    assert.ok(worstRunq < worstF32 / 100, `${c.prompt}: vs runq ${worstRunq}, vs f32 ${worstF32}`);
  }
});

test('any consistent dimensions: v0 and v1 give identical logits, v2 is close (NMSE < 1e-3)', (t) => {
  const dir = tempDir(t);
  const shapes = [
    { dim: 48, hiddenDim: 100, nLayers: 2, nHeads: 6, nKvHeads: 2, vocabSize: 300, seqLen: 20, sharedClassifier: false },
    { dim: 12, hiddenDim: 30, nLayers: 3, nHeads: 1, nKvHeads: 1, vocabSize: 7, seqLen: 9, sharedClassifier: true },
    { dim: 40, hiddenDim: 36, nLayers: 1, nHeads: 10, nKvHeads: 10, vocabSize: 259, seqLen: 5, sharedClassifier: true },
  ];
  // awkward dimensions: nothing a multiple of 32, grouped-query attention, tiny vocabularies
  shapes.forEach((shape, i) => {
    const m = randomModel(shape, 100 + i, 0.4);
    const files = ([0, 1, 2] as const).map((version) => {
      const f = path.join(dir, `m${i}-v${version}.bin`);
      writeLlama2cCheckpoint(f, m, { version });
      return loadModel(f);
    });
    const sessions = files.map((f) => new Session(f));
    for (let pos = 0; pos < shape.seqLen; pos++) {
      const token = (pos * 7 + 3) % shape.vocabSize;
      const [l0, l1, l2] = sessions.map((s) => Float32Array.from(s.forward(token, pos)));
      assert.deepEqual(l1, l0, `shape ${i} pos ${pos}: v1 vs v0`);
      assert.ok(nmse(l0!, l2!) < 1e-3, `shape ${i} pos ${pos}: v2 nmse ${nmse(l0!, l2!)}`);
    }
  });
});

test('a group size that does not divide the rows is refused when writing and when reading', (t) => {
  const dir = tempDir(t);
  const m = randomModel({ dim: 48, hiddenDim: 100, nLayers: 1, nHeads: 6, nKvHeads: 2, vocabSize: 10, seqLen: 4, sharedClassifier: true }, 1);
  assert.throws(() => writeLlama2cCheckpoint(path.join(dir, 'x.bin'), m, { version: 2, groupSize: 16 }), FileFormatError);
  assert.deepEqual(fs.readdirSync(dir), [], 'nothing half-written');
  // patch a valid v2 file's group size field (offset 4 + 4 + 28 + 1 = 37) to 64
  const f = path.join(dir, 'ok.bin');
  writeLlama2cCheckpoint(f, m, { version: 2 });
  const bytes = fs.readFileSync(f);
  bytes.writeInt32LE(64, 37);
  fs.writeFileSync(f, bytes);
  assert.throws(() => loadModel(f), (e: unknown) => e instanceof FileFormatError && /group_size 64/.test(e.message));
});
