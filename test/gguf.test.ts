/**
 * GGUF (src/formats/gguf.ts): llama.cpp's own files of stories260K (../shared/models/stories260K/
 * gguf, see its README) read and run; write → read round trips; bad input built byte by byte.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  FileFormatError, Session, Tokenizer, UnsupportedModelError, generateText, loadModel, randomModel,
  type Matrix, type Model,
} from '../src/index.js';
import {
  GGML_TYPE, llamaGgufMetadata, loadGgufModel, modelToGgufTensors, readGgufHeader, writeGguf, writeGgufModel, type GgufValue,
} from '../src/formats/gguf.js';
import { nmse, readJsonl, seededRandom, shared, tempDir } from './helpers.js';

const TYPES = ['f32', 'f16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1'] as const;
const ggufPath = (dir: string, type: string) => path.join(dir, `stories260K-${type}.gguf`);

/** Raw bytes of a matrix or vector as stored in memory (to compare bit for bit). */
function rawBytes(m: Matrix | Float32Array): Uint8Array {
  const a = m instanceof Float32Array ? m : m.type === 'q8' ? m.q : m.data;
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Every tensor of two models, bit for bit (the classifier compared even when tied). */
function assertSameWeights(a: Pick<Model, 'weights'>, b: Pick<Model, 'weights'>, what: string): void {
  const wa = a.weights, wb = b.weights;
  assert.deepEqual(rawBytes(wb.tokenEmbedding), rawBytes(wa.tokenEmbedding), `${what}: token embedding`);
  assert.deepEqual(rawBytes(wb.classifier), rawBytes(wa.classifier), `${what}: classifier`);
  assert.deepEqual(rawBytes(wb.finalNorm), rawBytes(wa.finalNorm), `${what}: final norm`);
  wa.layers.forEach((l, i) => {
    for (const k of ['attnNorm', 'wq', 'wk', 'wv', 'wo', 'ffnNorm', 'w1', 'w2', 'w3'] as const) {
      assert.deepEqual(rawBytes(wb.layers[i]![k]), rawBytes(l[k]), `${what}: layer ${i} ${k}`);
    }
  });
}

/** The worst logits NMSE of `model` against `ref` over a token sequence (position by position). */
function worstLogitsNmse(ref: Pick<Model, 'config' | 'weights'>, model: Pick<Model, 'config' | 'weights'>, tokens: number[]): number {
  const a = new Session(ref as Model), b = new Session(model as Model);
  return Math.max(...tokens.map((t, pos) => nmse(a.forward(t, pos), b.forward(t, pos))));
}

interface Greedy { prompt: string; token_ids: number[]; output: string }

// ---------------------------------------------------------------------------------------------
// llama.cpp's files

test('every stories260K GGUF file: header, metadata and tensor types as its README lists', (t) => {
  const dir = shared(t, 'models/stories260K/gguf');
  if (!dir) return;
  const fileType: Record<string, number | undefined> = { f32: undefined, f16: 1, q8_0: 7, q4_0: 2, q4_1: 3, q5_0: 8, q5_1: 9 };
  for (const type of TYPES) {
    const h = readGgufHeader(ggufPath(dir, type));
    assert.equal(h.version, 3);
    assert.equal(h.alignment, 32);
    assert.equal(h.dataOffset, type === 'f32' ? 14176 : 14240);
    assert.equal(h.tensors.length, 48);
    const counts: Record<string, number> = {};
    for (const x of h.tensors) counts[x.typeName] = (counts[x.typeName] ?? 0) + 1;
    const expected = type === 'f32' ? { F32: 48 } : type === 'f16' ? { F16: 37, F32: 11 } : { [type.toUpperCase()]: 32, F16: 5, F32: 11 };
    assert.deepEqual(counts, expected, type);
    assert.deepEqual(h.tensors.find((x) => x.name === 'token_embd.weight')!.dims, [64, 512]);
    assert.deepEqual(h.tensors.find((x) => x.name === 'blk.0.ffn_down.weight')!.dims, [172, 64]);
    assert.deepEqual(h.tensors.find((x) => x.name === 'blk.0.attn_k.weight')!.dims, [64, 32]);

    const m = h.metadata;
    const scalar = (k: string) => { const v = m.get(k)!; return [v.type, v.value]; };
    assert.deepEqual([...m.keys()].slice(0, 19), [
      'tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type', 'tokenizer.ggml.model', 'general.architecture',
      'general.name', 'tokenizer.ggml.unknown_token_id', 'tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id',
      'tokenizer.ggml.seperator_token_id', 'tokenizer.ggml.padding_token_id', 'llama.context_length', 'llama.embedding_length',
      'llama.feed_forward_length', 'llama.attention.head_count', 'llama.attention.head_count_kv', 'llama.block_count',
      'llama.rope.dimension_count', 'llama.attention.layer_norm_rms_epsilon',
    ]);
    assert.deepEqual(scalar('tokenizer.ggml.model'), ['string', 'llama']);
    assert.deepEqual(scalar('general.architecture'), ['string', 'llama']);
    assert.deepEqual(scalar('tokenizer.ggml.bos_token_id'), ['u32', 1]);
    assert.deepEqual(scalar('tokenizer.ggml.eos_token_id'), ['u32', 2]);
    assert.deepEqual(scalar('tokenizer.ggml.padding_token_id'), ['u32', 4294967295]);
    assert.deepEqual(scalar('llama.context_length'), ['u32', 128]);
    assert.deepEqual(scalar('llama.embedding_length'), ['u32', 64]);
    assert.deepEqual(scalar('llama.feed_forward_length'), ['u32', 172]);
    assert.deepEqual(scalar('llama.attention.head_count'), ['u32', 8]);
    assert.deepEqual(scalar('llama.attention.head_count_kv'), ['u32', 4]);
    assert.deepEqual(scalar('llama.block_count'), ['u32', 5]);
    assert.deepEqual(scalar('llama.rope.dimension_count'), ['u32', 8]);
    assert.deepEqual(scalar('llama.attention.layer_norm_rms_epsilon'), ['f32', Math.fround(1e-5)]);
    assert.deepEqual(m.get('general.file_type')?.value, fileType[type]);
    assert.equal(m.get('general.quantization_version')?.value, type === 'f32' ? undefined : 2); // llama-quantize writes it for F16 too

    const tokens = m.get('tokenizer.ggml.tokens')!, scores = m.get('tokenizer.ggml.scores')!, types = m.get('tokenizer.ggml.token_type')!;
    assert.ok(tokens.type === 'array' && tokens.itemType === 'string' && scores.type === 'array' && types.type === 'array');
    assert.deepEqual((tokens.value as string[]).slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
    assert.ok((tokens.value as string[]).includes('▁the'));
    assert.ok(scores.value instanceof Float32Array && types.value instanceof Int32Array);
    assert.ok(Object.is(scores.value[259], -0) && scores.value[258] === 0 && scores.value[511] === -252);
    assert.deepEqual([...types.value.subarray(0, 4)], [2, 3, 3, 6]);
    assert.equal(types.value.filter((x) => x === 1).length, 253);
  }
});

test('every stories260K GGUF file loads; the F32 one holds exactly the weights of stories260K.bin', (t) => {
  const dir = shared(t, 'models/stories260K/gguf');
  const bin = shared(t, 'models/stories260K.bin');
  if (!dir || !bin) return;
  const ref = loadModel(bin);
  for (const type of TYPES) {
    const m = loadGgufModel(ggufPath(dir, type));
    assert.deepEqual({ ...m.config, seqLen: 512, normEps: 1e-5 }, { ...ref.config, sharedClassifier: false });
    assert.equal(m.config.seqLen, 128); // llama.context_length, as the converter wrote it
    assert.equal(m.source.format, `GGUF v3 (${type.toUpperCase()})`);
    assert.equal(m.weights.layers[0]!.w2.type, type === 'f32' ? 'f32' : 'f16'); // ffn_down fell back to F16
  }
  const f32 = loadGgufModel(ggufPath(dir, 'f32'));
  assertSameWeights(ref, f32, 'stories260K-f32.gguf');
  assert.notEqual(f32.weights.classifier, f32.weights.tokenEmbedding); // a stored copy, not tied
});

test('the F32 GGUF generates exactly what run.c does with stories260K.bin (greedy)', async (t) => {
  const dir = shared(t, 'models/stories260K/gguf');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!dir || !ref || !tokPath) return;
  // the file says context 128 (the converter's default); the model was trained with 512
  const model = loadModel(ggufPath(dir, 'f32'), { maxSeqLen: 512 });
  assert.equal(model.config.seqLen, 512);
  const tok = Tokenizer.load(tokPath);
  const cases = readJsonl<Greedy>(ref);
  assert.equal(cases.length, 3);
  for (const c of cases) {
    const r = await generateText(model, tok, { prompt: c.prompt, temperature: 0 });
    assert.equal(r.text + '\n', c.output, c.prompt);
  }
});

/**
 * Logits of the quantized files against the F32 file over the first 40 tokens of a story, worst
 * position. Measured (weights NMSE of layer 0 in brackets): F16 9.9e-7 (4.4e-8), Q8_0 2.0e-4
 * (3.8e-5), Q5_0 1.7e-2 (2.5e-3), Q5_1 2.4e-2 (1.8e-3), Q4_1 0.17 (7.4e-3), Q4_0 0.18 (9.2e-3).
 * The bounds are about twice those. The 4-bit errors are large because the model is tiny: a
 * 64-wide residual stream, 5 layers, so each weight error of ~1e-2 grows by ~20x to the logits
 * (~5x for the small errors of Q8_0). Greedy text from "Once upon a time" keeps F32's first
 * 257 tokens (BOS included) with F16, 115 with Q8_0, 28 to 74 with the 4- and 5-bit types.
 */
const LOGITS_BOUNDS: Record<string, number> = { f16: 3e-6, q8_0: 5e-4, q5_0: 4e-2, q5_1: 5e-2, q4_1: 0.35, q4_0: 0.35 };

test('quantized GGUF files stay close to the F32 file (logits NMSE per type)', (t) => {
  const dir = shared(t, 'models/stories260K/gguf');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  if (!dir || !ref) return;
  const tokens = readJsonl<Greedy>(ref)[0]!.token_ids.slice(0, 40);
  const f32 = loadGgufModel(ggufPath(dir, 'f32'));
  for (const [type, bound] of Object.entries(LOGITS_BOUNDS)) {
    const e = worstLogitsNmse(f32, loadGgufModel(ggufPath(dir, type)), tokens);
    assert.ok(e < bound, `${type}: worst logits NMSE ${e.toExponential(2)} ≥ ${bound}`);
    assert.ok(e > 0, `${type}: the quantized logits differ from F32`);
  }
});

test('greedy text of the F16 and Q8_0 files follows the F32 file', async (t) => {
  const dir = shared(t, 'models/stories260K/gguf');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!dir || !tokPath) return;
  const tok = Tokenizer.load(tokPath);
  const run = (type: string) => generateText(loadGgufModel(ggufPath(dir, type), { maxSeqLen: 512 }), tok, { prompt: 'Once upon a time', temperature: 0 });
  const ref = (await run('f32')).tokens;
  const common = (a: number[]) => a.findIndex((x, i) => x !== ref[i]);
  assert.deepEqual((await run('f16')).tokens, ref);
  assert.ok(common((await run('q8_0')).tokens) >= 100);
});

test('a vocabulary-only GGUF (no tensors) reads; loading it as a model says what it is', (t) => {
  const file = shared(t, 'models/ggml-vocab-llama-spm.gguf');
  if (!file) return;
  const h = readGgufHeader(file);
  assert.equal(h.tensors.length, 0);
  assert.equal(h.metadata.get('llama.vocab_size')?.value, 32000);
  assert.throws(() => loadModel(file), (e) => e instanceof FileFormatError && /no tensor token_embd\.weight .* vocabulary-only/.test(e.message));
});

// ---------------------------------------------------------------------------------------------
// Writing

test('write → read: stories260K.bin as F32 GGUF keeps every bit and the logits', (t) => {
  const bin = shared(t, 'models/stories260K.bin');
  if (!bin) return;
  const src = loadModel(bin);
  const file = path.join(tempDir(t), 'f32.gguf');
  writeGgufModel(file, src, { type: 'F32' });
  const back = loadGgufModel(file);
  assert.deepEqual(back.config, { ...src.config, normEps: Math.fround(1e-5) });
  assert.equal(back.weights.classifier, back.weights.tokenEmbedding); // tied: no output.weight written
  assertSameWeights(src, back, 'F32 round trip');
  assert.equal(worstLogitsNmse(src, back, [1, 403, 407, 261, 378, 432]), 0);
  const h = readGgufHeader(file);
  assert.equal(h.tensors.some((x) => x.name === 'output.weight'), false);
  assert.deepEqual(h.metadata.get('llama.rope.dimension_count'), { type: 'u32', value: 8 });
  assert.deepEqual(h.metadata.get('general.file_type'), { type: 'u32', value: 0 });
  // rewriting the reread model gives the same bytes
  const again = path.join(path.dirname(file), 'again.gguf');
  writeGgufModel(again, back, { type: 'F32' });
  assert.deepEqual(fs.readFileSync(again), fs.readFileSync(file));
});

test("write → read: stories260K.bin as Q8_0, Q4_0 and Q4_K GGUF holds llama-quantize's tensors", (t) => {
  const bin = shared(t, 'models/stories260K.bin');
  const dir = shared(t, 'models/stories260K/gguf');
  if (!bin || !dir) return;
  const src = loadModel(bin);
  // llama-quantize --pure Q4_K falls back to Q5_0 for these 64-wide rows (README): same bytes
  for (const [type, theirs] of [['Q8_0', 'q8_0'], ['Q4_0', 'q4_0'], ['Q4_K', 'q5_0']] as const) {
    const file = path.join(tempDir(t), `${type}.gguf`);
    writeGgufModel(file, src, { type });
    const ours = loadGgufModel(file), ref = loadGgufModel(ggufPath(dir, theirs));
    assertSameWeights({ weights: { ...ref.weights, classifier: ref.weights.tokenEmbedding } }, ours, `${type} vs llama.cpp's ${theirs}`);
    assert.equal(readGgufHeader(file).metadata.get('general.file_type')?.value, { Q8_0: 7, Q4_0: 2, Q4_K: 15 }[type]);
  }
});

/**
 * K-quants on a random model (uniform weights) whose rows are multiples of 256. Measured worst
 * logits NMSE over 12 positions: Q8_0 1.1e-4, Q6_K 2.1e-3, Q4_K 3.3e-2, Q4_0 4.0e-2; bounds
 * about twice those, and the order must follow the bits (Q4_K, with its per-32 scales and mins,
 * beats Q4_0).
 */
test('write → read: a random model as F32, Q8_0, Q6_K, Q4_K and Q4_0', (t) => {
  const src = randomModel({ dim: 256, hiddenDim: 256, nLayers: 2, nHeads: 4, nKvHeads: 2, vocabSize: 96, seqLen: 16, sharedClassifier: false }, 7);
  const dir = tempDir(t);
  const tokens = [1, 5, 9, 17, 33, 65, 2, 90, 44, 3, 0, 95];
  const bounds: Array<[string, number, string]> = [['F32', 0, 'f32'], ['Q8_0', 3e-4, 'ggml'], ['Q6_K', 5e-3, 'ggml'], ['Q4_K', 7e-2, 'ggml'], ['Q4_0', 8e-2, 'ggml']];
  const errors: number[] = [];
  for (const [type, bound, matrixType] of bounds) {
    const file = path.join(dir, `${type}.gguf`);
    writeGgufModel(file, src, { type });
    const back = loadGgufModel(file);
    assert.deepEqual(back.config, { ...src.config, normEps: Math.fround(1e-5) });
    assert.equal(back.weights.layers[1]!.w2.type, matrixType);
    if (type === 'F32') assertSameWeights(src, back, 'F32 round trip');
    for (const x of readGgufHeader(file).tensors) assert.equal(x.typeName, x.dims.length === 1 ? 'F32' : type, x.name);
    const e = worstLogitsNmse(src, back, tokens);
    assert.ok(e <= bound, `${type}: worst logits NMSE ${e.toExponential(2)} > ${bound}`);
    errors.push(e);
  }
  assert.ok(errors.every((e, i) => i === 0 || e > errors[i - 1]!), `errors grow as bits shrink: ${errors.map((e) => e.toExponential(1))}`);
});

test('modelToGgufTensors: llama.cpp names, GGUF dims, F16 fallback for rows that blocks do not fit', () => {
  const src = randomModel({ dim: 64, hiddenDim: 172, nLayers: 1, nHeads: 8, nKvHeads: 4, vocabSize: 32, seqLen: 8, sharedClassifier: true }, 3);
  const tensors = modelToGgufTensors(src, 'Q6_K');
  assert.deepEqual(tensors.map((x) => [x.name, x.dims.join('x'), x.type]), [
    ['token_embd.weight', '64x32', GGML_TYPE.Q8_0], ['output_norm.weight', '64', GGML_TYPE.F32],
    ['blk.0.attn_q.weight', '64x64', GGML_TYPE.Q8_0], ['blk.0.attn_k.weight', '64x32', GGML_TYPE.Q8_0],
    ['blk.0.attn_v.weight', '64x32', GGML_TYPE.Q8_0], ['blk.0.attn_output.weight', '64x64', GGML_TYPE.Q8_0],
    ['blk.0.attn_norm.weight', '64', GGML_TYPE.F32], ['blk.0.ffn_gate.weight', '64x172', GGML_TYPE.Q8_0],
    ['blk.0.ffn_down.weight', '172x64', GGML_TYPE.F16], ['blk.0.ffn_up.weight', '64x172', GGML_TYPE.Q8_0],
    ['blk.0.ffn_norm.weight', '64', GGML_TYPE.F32],
  ]);
});

test('metadata of every value type, nested arrays included, and the extraMetadata hook survive a round trip', (t) => {
  const file = path.join(tempDir(t), 'meta.gguf');
  const src = randomModel({ dim: 32, hiddenDim: 64, nLayers: 1, nHeads: 2, nKvHeads: 2, vocabSize: 8, seqLen: 8, sharedClassifier: true }, 1);
  const extra: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', { type: 'string', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: ['<unk>', '▁the', 'é', ''] }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: Float32Array.of(0, -0, -1.5) }],
    ['t.u8', { type: 'u8', value: 255 }], ['t.i8', { type: 'i8', value: -128 }], ['t.u16', { type: 'u16', value: 65535 }],
    ['t.i16', { type: 'i16', value: -32768 }], ['t.i32', { type: 'i32', value: -5 }], ['t.f64', { type: 'f64', value: Math.PI }],
    ['t.u64', { type: 'u64', value: 2n ** 64n - 1n }], ['t.i64', { type: 'i64', value: -(2n ** 63n) }], ['t.bool', { type: 'bool', value: true }],
    ['t.bools', { type: 'array', itemType: 'bool', value: [true, false, true] }],
    ['t.i64s', { type: 'array', itemType: 'i64', value: BigInt64Array.of(-1n, 5n) }],
    ['t.nested', { type: 'array', itemType: 'array', value: [
      { type: 'array', itemType: 'u16', value: Uint16Array.of(1, 2) },
      { type: 'array', itemType: 'array', value: [{ type: 'array', itemType: 'string', value: ['deep'] }] },
    ] }],
    ['t.empty', { type: 'array', itemType: 'f64', value: new Float64Array(0) }],
  ];
  writeGgufModel(file, src, { type: 'F16', extraMetadata: extra });
  const h = readGgufHeader(file);
  for (const [k, v] of extra) assert.deepEqual(h.metadata.get(k), v, k);
  assert.deepEqual([...h.metadata.keys()].slice(0, 3), ['general.architecture', 'general.name', 'general.file_type']);
  assert.equal(loadGgufModel(file).weights.layers[0]!.wq.type, 'f16');
});

test('headers larger than the 1 MiB read window: long arrays across window edges', (t) => {
  const file = path.join(tempDir(t), 'big-header.gguf');
  const rnd = seededRandom(5);
  const words = Array.from({ length: 150_000 }, (_, i) => `w${i}${'x'.repeat(Math.floor(rnd() * 12))}`);
  const floats = Float32Array.from({ length: 400_000 }, () => rnd()); // one 1.6 MB read, then small ones
  const metadata: Array<[string, GgufValue]> = [
    ['a.words', { type: 'array', itemType: 'string', value: words }],
    ['b.floats', { type: 'array', itemType: 'f32', value: floats }],
    ['c.words', { type: 'array', itemType: 'string', value: words.slice(0, 70_000) }],
    ['d.last', { type: 'string', value: 'the end' }],
  ];
  writeGguf(file, { metadata, tensors: [{ name: 't', dims: [32], type: GGML_TYPE.Q8_0, data: new Uint8Array(34).fill(7) }] });
  const h = readGgufHeader(file);
  assert.ok(h.dataOffset > 3 << 20);
  for (const [k, v] of metadata) assert.deepEqual(h.metadata.get(k), v, k);
  assert.deepEqual(h.tensors[0], { name: 't', dims: [32], type: GGML_TYPE.Q8_0, typeName: 'Q8_0', offset: 0, byteSize: 34 });
});

test('the writer refuses what it cannot write, and leaves no file behind', (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'x.gguf');
  const src = randomModel({ dim: 32, hiddenDim: 64, nLayers: 1, nHeads: 2, nKvHeads: 2, vocabSize: 8, seqLen: 8, sharedClassifier: true }, 1);
  assert.throws(() => writeGgufModel(file, src, { type: 'Q8_K' }), /cannot write weights as ggml type Q8_K/);
  assert.throws(() => writeGguf(file, { metadata: [], tensors: [{ name: 'a', dims: [32], type: 8, data: new Uint8Array(33) }] }), /33 bytes given, 34 expected/);
  assert.throws(() => writeGguf(file, { metadata: [], tensors: [{ name: 'a', dims: [33], type: 8, data: new Uint8Array(34) }] }), /multiple of 32/);
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('tensors that disagree with the metadata are a FileFormatError naming the tensor', (t) => {
  const file = path.join(tempDir(t), 'bad-shape.gguf');
  const src = randomModel({ dim: 32, hiddenDim: 64, nLayers: 1, nHeads: 2, nKvHeads: 2, vocabSize: 8, seqLen: 8, sharedClassifier: true }, 1);
  const metadata = llamaGgufMetadata(src.config, 'F32');
  metadata.set('llama.feed_forward_length', { type: 'u32', value: 96 });
  writeGguf(file, { metadata, tensors: modelToGgufTensors(src, 'F32') });
  assert.throws(() => loadGgufModel(file), (e) => e instanceof FileFormatError && /blk\.0\.ffn_gate\.weight has dims \[32, 64\], but the metadata implies \[32, 96\]/.test(e.message));
  metadata.set('llama.feed_forward_length', { type: 'u32', value: 64 });
  metadata.set('general.architecture', { type: 'string', value: 'gpt2' });
  writeGguf(file, { metadata, tensors: modelToGgufTensors(src, 'F32') });
  assert.throws(() => loadGgufModel(file), (e) => e instanceof UnsupportedModelError && /architecture "gpt2"/.test(e.message));
});

// ---------------------------------------------------------------------------------------------
// Bad input

interface TinyOptions {
  magic?: string;
  version?: number;
  bigEndianVersion?: boolean;
  nTensors?: bigint;
  keyLength?: bigint;
  arrayCount?: bigint;
  tensorType?: number;
  tensorOffset?: bigint;
}

/**
 * A small GGUF file built field by field (not with writeGguf): 2 metadata entries (a string and
 * an i32 array), tensor "a" F32 [32, 2] at data offset 0 and tensor "b" Q8_0 [32] at offset 256.
 */
function tinyGguf(o: TinyOptions = {}): Uint8Array {
  const parts: number[] = [];
  const u8 = (...b: number[]) => parts.push(...b);
  const u32 = (v: number, be = false) => { const d = new DataView(new ArrayBuffer(4)); d.setUint32(0, v, !be); u8(...new Uint8Array(d.buffer)); };
  const u64 = (v: bigint) => { const d = new DataView(new ArrayBuffer(8)); d.setBigUint64(0, v, true); u8(...new Uint8Array(d.buffer)); };
  const str = (s: string, len = BigInt(s.length)) => { u64(len); u8(...Buffer.from(s)); };
  u8(...Buffer.from(o.magic ?? 'GGUF'));
  u32(o.version ?? 3, o.bigEndianVersion);
  u64(o.nTensors ?? 2n);
  u64(2n);
  str('general.architecture', o.keyLength);
  u32(8);
  str('llama');
  str('test.array');
  u32(9);
  u32(5);
  u64(o.arrayCount ?? 3n);
  u32(1); u32(2); u32(3);
  str('a'); u32(2); u64(32n); u64(2n); u32(0); u64(0n);
  str('b'); u32(1); u64(32n); u32(o.tensorType ?? 8); u64(o.tensorOffset ?? 256n);
  while (parts.length % 32) u8(0);
  for (let i = 0; i < 256 + 34; i++) u8(i & 255);
  while (parts.length % 32) u8(0);
  return Uint8Array.from(parts);
}

function assertFileError(file: string, pattern: RegExp, cls: typeof FileFormatError | typeof UnsupportedModelError = FileFormatError): void {
  for (const read of [readGgufHeader, loadGgufModel]) {
    assert.throws(() => read(file), (e: unknown) => {
      assert.ok(e instanceof cls, `${read.name}: expected ${cls.name}, got ${String(e)}`);
      assert.ok(e.message.includes(file), `the message names the file: ${e.message}`);
      if (e instanceof FileFormatError) assert.equal(e.path, file);
      assert.match(e.message, pattern);
      return true;
    });
  }
}

test('the hand-built tiny file reads', (t) => {
  const file = path.join(tempDir(t), 'tiny.gguf');
  fs.writeFileSync(file, tinyGguf());
  const h = readGgufHeader(file);
  assert.deepEqual(h.metadata.get('test.array'), { type: 'array', itemType: 'i32', value: Int32Array.of(1, 2, 3) });
  assert.deepEqual(h.tensors.map((x) => [x.name, x.typeName, x.dims, x.offset, x.byteSize]), [['a', 'F32', [32, 2], 0, 256], ['b', 'Q8_0', [32], 256, 34]]);
  assert.equal(h.dataOffset % 32, 0);
  assert.throws(() => loadGgufModel(file), (e) => e instanceof FileFormatError && /has no tensor token_embd\.weight/.test(e.message));
});

test('bad GGUF files are FileFormatErrors naming the file and what was expected', (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['wrong magic', tinyGguf({ magic: 'GGML' }), /expected the GGUF magic "GGUF" .* found 47 47 4d 4c/],
    ['big-endian', tinyGguf({ bigEndianVersion: true }), /big-endian/],
    ['version 1', tinyGguf({ version: 1 }), /GGUF version 1 is not supported; expected 2 or 3/],
    ['version 4', tinyGguf({ version: 4 }), /GGUF version 4 is not supported/],
    ['tensor count 2^40', tinyGguf({ nTensors: 2n ** 40n }), /tensor count is 1099511627776/],
    ['string length past the end', tinyGguf({ keyLength: 1n << 20n }), /string length 1048576 .* past the end of the file/],
    ['string length 2^63', tinyGguf({ keyLength: 2n ** 63n }), /larger than any file/],
    ['array count past the end', tinyGguf({ arrayCount: 2n ** 40n }), /item count of test\.array is 1099511627776/],
    ['offset outside the data', tinyGguf({ tensorOffset: 4096n }), /tensor b .* ends past the data section/],
    ['misaligned offset', tinyGguf({ tensorOffset: 260n }), /tensor b starts at data offset 260, not a multiple of the alignment 32/],
    ['overlapping tensors', tinyGguf({ tensorOffset: 224n }), /tensors a .* and b .* overlap/],
    ['unknown tensor type', tinyGguf({ tensorType: 99 }), /tensor b has unknown ggml type 99/],
    ['empty file', new Uint8Array(0), /expected the GGUF magic/],
  ];
  for (const [name, bytes, pattern] of cases) {
    const file = path.join(dir, `${name.replace(/\W+/g, '-')}.gguf`);
    fs.writeFileSync(file, bytes);
    assert.doesNotThrow(() => assertFileError(file, pattern), name);
  }
  // truncated anywhere: in the header, in the tensor infos, in the data
  const whole = tinyGguf();
  for (const len of [3, 6, 20, 40, 100, 150, whole.length - 40]) {
    const file = path.join(dir, `truncated-${len}.gguf`);
    fs.writeFileSync(file, whole.subarray(0, len));
    assertFileError(file, /truncated|past the data section|fewer than/);
  }
  // a real ggml type that llamats cannot read
  const iq = path.join(dir, 'iq2.gguf');
  fs.writeFileSync(iq, tinyGguf({ tensorType: 16 }));
  assertFileError(iq, /IQ2_XXS \(16\)/, UnsupportedModelError);
});

test('fuzz: 3000 seeded random mutations of a real GGUF file give only typed errors, quickly', (t) => {
  const src = shared(t, 'models/stories260K/gguf/stories260K-q8_0.gguf');
  if (!src) return;
  const base = fs.readFileSync(src);
  const headerEnd = readGgufHeader(src).dataOffset;
  const file = path.join(tempDir(t), 'fuzz.gguf');
  const rnd = seededRandom(20240601);
  const pick = (n: number) => Math.floor(rnd() * n);
  const outcome = { loaded: 0, FileFormatError: 0, UnsupportedModelError: 0 };
  let slowest = 0;
  const start = performance.now();
  for (let i = 0; i < 3000; i++) {
    let bytes = Buffer.from(base);
    const kind = pick(10);
    if (kind === 0) bytes = bytes.subarray(0, pick(bytes.length)); // truncation
    else {
      // 1-4 bytes changed, mostly in the header; sometimes a byte set to 0xff to make counts huge
      for (let k = 1 + pick(4); k > 0; k--) bytes[pick(kind < 8 ? headerEnd : bytes.length)] = kind === 1 ? 0xff : pick(256);
    }
    fs.writeFileSync(file, bytes);
    const t0 = performance.now();
    try {
      loadGgufModel(file);
      outcome.loaded++;
    } catch (e) {
      if (!(e instanceof FileFormatError || e instanceof UnsupportedModelError)) {
        assert.fail(`mutation ${i} (kind ${kind}): untyped ${String((e as Error)?.stack ?? e)}`);
      }
      outcome[e.name as 'FileFormatError']++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  const total = performance.now() - start;
  t.diagnostic(`${JSON.stringify(outcome)}; slowest ${slowest.toFixed(1)} ms, total ${(total / 1000).toFixed(1)} s`);
  assert.ok(slowest < 2000, `one mutation took ${slowest} ms`);
  assert.ok(outcome.FileFormatError > 500 && outcome.loaded > 100, JSON.stringify(outcome));
});

test('a string array item whose length runs past the end is a FileFormatError, whether the strings are read or skipped', (t) => {
  const parts: number[] = [];
  const u8 = (...b: number[]) => parts.push(...b);
  const u32 = (v: number) => { const d = new DataView(new ArrayBuffer(4)); d.setUint32(0, v, true); u8(...new Uint8Array(d.buffer)); };
  const u64 = (v: bigint) => { const d = new DataView(new ArrayBuffer(8)); d.setBigUint64(0, v, true); u8(...new Uint8Array(d.buffer)); };
  const str = (s: string, len = BigInt(s.length)) => { u64(len); u8(...Buffer.from(s)); };
  u8(...Buffer.from('GGUF')); u32(3); u64(0n); u64(1n);
  str('tokenizer.ggml.tokens'); u32(9); u32(8); u64(3n);
  str('ab'); str('c'); str('d', 1n << 20n);
  const file = path.join(tempDir(t), 'bad-vocab.gguf');
  fs.writeFileSync(file, Uint8Array.from(parts));
  for (const skipStrings of [false, true]) {
    assert.throws(() => readGgufHeader(file, { skipStrings }), (e) => e instanceof FileFormatError && /tokenizer\.ggml\.tokens\[…\]: string length 1048576 at offset \d+ runs past the end of the file/.test(e.message), `skipStrings ${skipStrings}`);
  }
  // the same array, whole: both ways read it (skipped strings are holes)
  parts.splice(parts.length - 9);
  str('d');
  fs.writeFileSync(file, Uint8Array.from(parts));
  assert.deepEqual(readGgufHeader(file).metadata.get('tokenizer.ggml.tokens'), { type: 'array', itemType: 'string', value: ['ab', 'c', 'd'] });
  assert.equal((readGgufHeader(file, { skipStrings: true }).metadata.get('tokenizer.ggml.tokens')!.value as string[]).length, 3);
});
