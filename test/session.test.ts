/**
 * The Session API (one sequence's state over a model) and the test harness's own rule for
 * ../shared.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ContextOverflowError, InvalidArgumentError, kvCacheBytes, loadModel, randomModel, Session, Tokenizer, generate, type Model } from '../src/index.js';
import { nmse, shared } from './helpers.js';
import { startRule } from '../src/backend/wasm/pool.js';

// products on several threads must really be split: dispatches wait for workers still starting
// (by default the calling thread runs them alone until then; tested in conformance.test.ts)
startRule.wait = true;

test('forward refuses tokens outside the vocabulary and positions outside the cache', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  if (!ckpt) return;
  const model = loadModel(ckpt);
  const s = new Session(model, { maxSeqLen: 4 });
  assert.throws(() => s.forward(512, 0), InvalidArgumentError);
  assert.throws(() => s.forward(-1, 0), InvalidArgumentError);
  assert.throws(() => s.forward(1, 4), ContextOverflowError);
  assert.throws(() => new Session(model, { maxSeqLen: 513 }), InvalidArgumentError);
  assert.equal(s.forward(1, 0).length, 512);
});

test('two sessions over one model are independent and agree with each other', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  if (!ckpt) return;
  const model = loadModel(ckpt);
  const a = new Session(model);
  const b = new Session(model);
  const seq = [1, 403, 407, 261, 378];
  const la = seq.map((tok, pos) => Float32Array.from(a.forward(tok, pos)));
  b.forward(1, 0);
  b.forward(9, 1); // a different history in b …
  const other = Float32Array.from(b.forward(400, 2));
  const fresh = new Session(model);
  const lb = seq.map((tok, pos) => Float32Array.from(fresh.forward(tok, pos)));
  assert.deepEqual(lb, la);
  assert.notDeepEqual(other, la[2]);
});

test('generate streams chunks whose text adds up, and stops when aborted', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ckpt || !tokPath) return;
  const model = loadModel(ckpt);
  const tok = Tokenizer.load(tokPath);
  const it = generate(model, tok, { prompt: 'Once upon a time', temperature: 0, steps: 40 });
  const chunks = [];
  let r = await it.next();
  while (!r.done) {
    chunks.push(r.value);
    r = await it.next();
  }
  assert.equal(r.value.stopReason, 'steps');
  assert.equal(chunks.length, 40); // one token per step, as run.c prints them
  assert.deepEqual(chunks.map((c) => c.token), r.value.tokens.slice(1));
  assert.equal(chunks.filter((c) => c.fromPrompt).length, r.value.promptTokens - 1);
  assert.equal(chunks.map((c) => c.text).join(''), tok.decode(r.value.tokens));
  const ac = new AbortController();
  let n = 0;
  const it2 = generate(model, tok, { prompt: 'Once upon a time', temperature: 0, signal: ac.signal });
  for (let x = await it2.next(); !x.done; x = await it2.next()) {
    if (++n === 5) ac.abort();
    if (n > 6) assert.fail('kept going after abort');
  }
  assert.equal(n, 5);
});

test('the harness fails, rather than skips, a test whose ../shared file is missing under CI=true', (t) => {
  assert.throws(() => shared(t, 'no/such/file', { CI: 'true' }), /CI must provide \.\.\/shared/);
});

test('an f16 KV cache (kvCache: f16) gives logits close to the f32 cache on ref and wasm, in half the bytes', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  if (!ckpt) return;
  const model = loadModel(ckpt);
  assert.equal(kvCacheBytes(model.config, 64, 2) * 2, kvCacheBytes(model.config, 64));
  assert.throws(() => new Session(model, { kvCache: 'f8' as 'f16' }), InvalidArgumentError);
  for (const backend of ['ref', 'wasm'] as const) {
    const f32 = new Session(model, { backend });
    const f16 = new Session(model, { backend, kvCache: 'f16' });
    assert.equal(f16.backend, backend, f16.fallbackReason);
    let worst = 0;
    for (let pos = 0; pos < 60; pos++) {
      const token = (pos * 37 + 11) % 512;
      worst = Math.max(worst, nmse(f32.forward(token, pos), f16.forward(token, pos)));
    }
    // a half keeps 11 significant bits (relative rounding ≤ 2^-12): measured ≈2e-7
    assert.ok(worst > 0 && worst < 1e-5, `${backend}: logits nmse f16 vs f32 cache ${worst}`);
    t.diagnostic(`${backend}: logits nmse, f16 vs f32 KV cache, at most ${worst.toExponential(2)}`);
  }
});

test("Session.forwardRuns: prompt chunks and decode tokens of several sessions in one pass equal each one's forward (ref: bit for bit)", () => {
  const shape = { dim: 64, hiddenDim: 160, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 300, seqLen: 90, sharedClassifier: false };
  const model: Model = { ...randomModel(shape, 5, 0.2), source: { path: '(random)', format: 'f32' } };
  const tok = (i: number, pos: number) => (i * 31 + pos * 7 + 3) % shape.vocabSize;
  for (const [backend, threads] of [['ref', 1], ['wasm', 1], ['wasm', 2]] as const) {
    const solo = Array.from({ length: 4 }, () => new Session(model, { backend, threads }));
    const batch = Array.from({ length: 4 }, () => new Session(model, { backend, threads }));
    const pos = [0, 0, 0, 0];
    // per step, tokens per session: prompt chunks of several lengths (70 in one run: over one
    // batched pass of 64), single tokens, sessions that sit a step out; logits asked of some
    const steps: Array<Array<[session: number, n: number, logits: boolean]>> = [
      [[0, 5, true], [1, 70, false], [2, 1, true]],
      [[0, 1, true], [1, 3, true], [3, 9, false], [2, 1, false]],
      [[3, 2, true], [0, 1, true], [1, 1, true], [2, 4, true]],
    ];
    for (const step of steps) {
      const runs = step.map(([i, n, logits]) => ({ session: batch[i]!, tokens: Array.from({ length: n }, (_, t) => tok(i, pos[i]! + t)), pos: pos[i]!, logits }));
      const got = Session.forwardRuns(runs).map((l) => (l ? Float32Array.from(l) : undefined));
      step.forEach(([i, n, logits], j) => {
        let want!: Float32Array;
        for (let t = 0; t < n; t++) want = Float32Array.from(solo[i]!.forward(tok(i, pos[i]! + t), pos[i]! + t));
        // wasm: a pass of ≥ 8 tokens runs float weights as panel products (conformance.test.ts:
        // the plain loop's summation order, not matvec's), equal up to float32 rounding
        if (logits && backend === 'ref') assert.deepEqual(got[j], want, `${backend}: session ${i} at ${pos[i]}`);
        else if (logits) assert.ok(nmse(want, got[j]!) < 1e-10 && got[j]!.indexOf(Math.max(...got[j]!)) === want.indexOf(Math.max(...want)), `${backend} ${threads} threads: session ${i} at ${pos[i]}: nmse ${nmse(want, got[j]!)}`);
        else assert.equal(got[j], undefined);
        pos[i]! += n;
      });
    }
    // a bad token anywhere refuses the whole pass before anything runs
    assert.throws(() => Session.forwardRuns([{ session: batch[0]!, tokens: [1], pos: pos[0]!, logits: true }, { session: batch[1]!, tokens: [1, 300], pos: pos[1]!, logits: true }]), InvalidArgumentError);
    assert.throws(() => Session.forwardRuns([{ session: batch[0]!, tokens: [1, 2], pos: shape.seqLen - 1, logits: true }]), ContextOverflowError);
  }
});
