/**
 * Weights read straight into the wasm backend's memory, and models split across several memories.
 *
 * A Llama-2-7B model (7 GB at Q8_0, 13.5 GB at F16) does not fit one 4 GiB WebAssembly memory,
 * so the wasm backend splits it by layers into parts (src/backend/wasm/memory.ts). The same code
 * runs here on stories260K with a tiny part capacity, so that every layer boundary is a part
 * boundary: the outputs must be those of the model in one memory, bit for bit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, Session } from '../src/index.js';
import { openBackend } from '../src/backend/backend.js';
import { PART_CAPACITY, partCapacity, partOf, planParts, WasmPlacement } from '../src/backend/wasm/memory.js';
import type { Matrix } from '../src/model/tensor.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { readJsonl, shared } from './helpers.js';
import { startRule } from '../src/backend/wasm/pool.js';

// products on several threads must really be split: dispatches wait for workers still starting
// (by default the calling thread runs them alone until then; tested in conformance.test.ts)
startRule.wait = true;

const dataOf = (m: Matrix) => (m.type === 'q8' ? m.q : m.data);

test('LLAMATS_WASM_PART_BYTES: a smaller positive integer sets the part capacity; anything else keeps 4 GiB less 192 MiB', () => {
  assert.equal(partCapacity({ LLAMATS_WASM_PART_BYTES: '1048576' }), 1048576);
  for (const bad of [undefined, '', 'x', '-5', '0', '1.5', String(2 ** 33)]) assert.equal(partCapacity({ LLAMATS_WASM_PART_BYTES: bad }), PART_CAPACITY, String(bad));
});

test('planParts: layers in order, a new part when the next layer would pass the capacity', () => {
  assert.deepEqual(planParts([10, 10, 10], 5, 0, 100), { layerPart: [0, 0, 0], headPart: 0, partBytes: [35] });
  assert.deepEqual(planParts([40, 40, 40, 40], 30, 5, 100), { layerPart: [0, 0, 1, 1], headPart: 2, partBytes: [90, 90, 30] });
  assert.deepEqual(planParts([60, 60], 40, 0, 100), { layerPart: [0, 1], headPart: 1, partBytes: [60, 100] });
  assert.throws(() => planParts([150], 5, 0, 100), /layer 0 needs/);
});

for (const [file, label] of [
  ['models/stories260K/gguf/stories260K-f32.gguf', 'GGUF F32'],
  ['models/stories260K/gguf/stories260K-q8_0.gguf', 'GGUF Q8_0'],
  ['models/stories260K.bin', 'llama2.c'],
  ['models/stories260K/meta-mp2', 'Meta (2 shards, joined)'],
  ['models/stories260K/meta-bf16', 'Meta bf16'],
  ['models/stories260K/hf', 'Hugging Face (q/k unpermuted)'],
] as const) {
  test(`${label}: weights are read straight into the wasm memory and used there without a copy`, (t) => {
    const path = shared(t, file);
    if (!path) return;
    const placement = new WasmPlacement();
    const model = loadModel(path, { placement });
    assert.equal(placement.partCount, 1);
    const l0 = model.weights.layers[0]!;
    const part = partOf(dataOf(l0.wq));
    assert.ok(part, 'layer 0 wq lies in a wasm memory');
    assert.equal(partOf(dataOf(model.weights.classifier)), part);
    const before = part.heap.used;
    const on = openBackend(model, 'wasm', 1);
    assert.equal(on.parts.length, 1);
    // the backend adds its own scratch (activation slots, norms), never a second copy of the weights
    const added = part.heap.used - before;
    const weightBytes = model.weights.layers.reduce((n, l) => n + [l.wq, l.wk, l.wv, l.wo, l.w1, l.w2, l.w3].reduce((k, m) => k + dataOf(m).byteLength, 0), 0);
    assert.ok(added < weightBytes / 2, `upload added ${added} bytes for ${weightBytes} bytes of layer weights`);
  });
}

test('a model split across wasm memories by layers: run.c golden tokens, and logits equal to one memory bit for bit', (t) => {
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  const ggufPath = shared(t, 'models/stories260K/gguf/stories260K-f32.gguf');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ref || !ggufPath || !tokPath) return;
  const whole = loadModel(ggufPath, { maxSeqLen: 512, placement: new WasmPlacement() });
  // 320 KB per memory: one layer (about 180 KB of weights and 128 KB of KV reserve) per part
  const placement = new WasmPlacement(320 * 1024);
  const split = loadModel(ggufPath, { maxSeqLen: 512, placement });
  assert.ok(placement.partCount >= 5, `${placement.partCount} parts`);
  const partsOfLayers = new Set(split.weights.layers.map((l) => partOf(dataOf(l.wq))));
  assert.equal(partsOfLayers.size, split.config.nLayers, 'each layer in its own memory');
  for (const threads of [1, 2]) {
    const on = openBackend(split, 'wasm', threads);
    assert.equal(on.parts.length, placement.partCount);
    assert.deepEqual(on.layers.map((l) => l.part), [0, 1, 2, 3, 4]);
  }

  const tok = Tokenizer.load(tokPath);
  for (const c of readJsonl<{ prompt: string; steps: number; token_ids: number[] }>(ref)) {
    const a = new Session(whole, { backend: 'wasm', maxSeqLen: c.steps, threads: 1 });
    const b = new Session(split, { backend: 'wasm', maxSeqLen: c.steps, threads: 2 });
    assert.equal(b.backend, 'wasm', b.fallbackReason);
    const prompt = tok.encode(c.prompt, { bos: true });
    const tokens = [prompt[0]!];
    for (let pos = 0; pos < c.steps - 1; pos++) {
      const la = Float32Array.from(a.forward(tokens[pos]!, pos));
      const lb = b.forward(tokens[pos]!, pos);
      assert.deepEqual(lb, la, `logits at position ${pos} of "${c.prompt}"`);
      let next = pos + 1 < prompt.length ? prompt[pos + 1]! : 0;
      if (pos + 1 >= prompt.length) for (let i = 1; i < la.length; i++) if (la[i]! > la[next]!) next = i;
      tokens.push(next);
      if (next === 1) break;
    }
    assert.deepEqual(tokens, c.token_ids, c.prompt);
    a.dispose();
    b.dispose();
  }

  // prefill (batched products) and forwardBatch cross the memories too
  const prompt = tok.encode('Once upon a time, there was a little girl', { bos: true });
  const one = new Session(whole, { backend: 'wasm', threads: 1 });
  const expect = Float32Array.from(one.prefill(prompt, 0));
  const s1 = new Session(split, { backend: 'wasm', threads: 2 });
  assert.deepEqual(s1.prefill(prompt, 0), expect);
  const s2 = new Session(split, { backend: 'wasm', threads: 2 });
  const s3 = new Session(split, { backend: 'wasm', threads: 2 });
  s2.prefill(prompt.slice(0, 5), 0);
  s3.prefill(prompt.slice(0, 7), 0);
  const one2 = new Session(whole, { backend: 'wasm', threads: 1 });
  one2.prefill(prompt.slice(0, 5), 0);
  const want2 = Float32Array.from(one2.forward(prompt[5]!, 5));
  const got = Session.forwardBatch([s2, s3], [prompt[5]!, prompt[7]!], [5, 7]);
  assert.deepEqual(got[0], want2);
  for (const s of [one, one2, s1, s2, s3]) s.dispose();
});

test('a model built in host memory is copied into parts planned by the backend (LLAMATS_WASM_PART_BYTES)', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  if (!ckpt) return;
  const model = loadModel(ckpt, { placement: { plan: () => {}, alloc: (n) => new Uint8Array(n) } });
  assert.equal(partOf(dataOf(model.weights.layers[0]!.wq)), undefined);
  const whole = new Session(model, { backend: 'wasm', threads: 1 });
  const saved = process.env.LLAMATS_WASM_PART_BYTES;
  process.env.LLAMATS_WASM_PART_BYTES = String(400 * 1024);
  let s: Session;
  try {
    s = new Session(model, { backend: 'wasm', threads: 2 });
  } finally {
    if (saved === undefined) delete process.env.LLAMATS_WASM_PART_BYTES;
    else process.env.LLAMATS_WASM_PART_BYTES = saved;
  }
  assert.ok(openBackend(model, 'wasm', 2).parts.length > 1);
  for (let pos = 0; pos < 12; pos++) {
    const tok = (pos * 37 + 1) % model.config.vocabSize;
    assert.deepEqual(s.forward(tok, pos), Float32Array.from(whole.forward(tok, pos)));
  }
});
