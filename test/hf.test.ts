/**
 * Hugging Face model directories (src/formats/hf.ts, safetensors.ts): stories260K's hf/ and hf-tied/
 * against meta-f32 and run.c's greedy output; BF16, sharded and pytorch_model.bin variants written
 * here from hf/'s tensors; bad input, each refused with a typed error naming the file.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { openSafetensors } from '../src/formats/safetensors.js';
import {
  FileFormatError, generateText, loadHfModel, loadModel, readHfConfig, readMetaCheckpoint, Session, Tokenizer, UnsupportedModelError, type Model,
} from '../src/index.js';
import { readJsonl, seededRandom, SHARED, shared, tempDir } from './helpers.js';

const HF = 'models/stories260K/hf';

// ---------------------------------------------------------------------------------------------
// Writers: safetensors, and a torch.save-like zip (stored entries, protocol-2 pickle).

interface Tensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

function readTensors(file: string): Tensor[] {
  const f = openSafetensors(file);
  try {
    return [...f.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: f.read(t.name) }));
  } finally {
    f.close();
  }
}

/** A safetensors file from a header (object or raw text) and data; `headerLength` may lie. */
function writeRaw(file: string, header: unknown, data: Uint8Array, headerLength?: number): string {
  let json = typeof header === 'string' ? header : JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  fs.writeFileSync(file, out);
  return file;
}

function writeSafetensors(file: string, tensors: Tensor[]): string {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  const data = new Uint8Array(off);
  off = 0;
  for (const t of tensors) {
    data.set(t.data, off);
    off += t.data.length;
  }
  return writeRaw(file, header, data);
}

/** float32 → bfloat16, round to nearest even (as torch's .to(torch.bfloat16)). */
function toBf16(t: Tensor): Tensor {
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length / 4);
  const out = Uint16Array.from(bits, (b) => (b + 0x7fff + ((b >>> 16) & 1)) >>> 16);
  return { ...t, dtype: 'BF16', data: new Uint8Array(out.buffer) };
}

/** A zip of stored entries (CRCs left 0: llamats' reader does not check them). */
function writeZip(file: string, entries: Array<[string, Uint8Array]>): void {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let pos = 0;
  for (const [n, data] of entries) {
    const name = new TextEncoder().encode(n);
    const lh = new Uint8Array(30 + name.length);
    const lv = new DataView(lh.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, name.length, true);
    lh.set(name, 30);
    const ch = new Uint8Array(46 + name.length);
    const cv = new DataView(ch.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, pos, true);
    ch.set(name, 46);
    parts.push(lh, data);
    central.push(ch);
    pos += lh.length + data.length;
  }
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, pos, true);
  fs.writeFileSync(file, Buffer.concat([...parts, ...central, eocd]));
}

/** torch.save({name: float32 tensor}) as a zip: archive/data.pkl + archive/data/<i>. */
function writePytorchBin(file: string, tensors: Tensor[]): void {
  const enc = new TextEncoder();
  const str = (s: string) => {
    const b = enc.encode(s);
    return [0x58, ...u32(b.length), ...b]; // BINUNICODE
  };
  const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff];
  const int = (n: number) => [0x4a, ...u32(n)]; // BININT
  const glob = (m: string, n: string) => [0x63, ...enc.encode(`${m}\n${n}\n`)]; // GLOBAL
  const [MARK, TUPLE, REDUCE] = [0x28, 0x74, 0x52];
  const body = tensors.flatMap((t, i) => {
    const stride = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, b) => a * b, 1));
    const numel = t.data.length / 4;
    return [
      ...str(t.name),
      ...glob('torch._utils', '_rebuild_tensor_v2'), MARK,
      MARK, ...str('storage'), ...glob('torch', 'FloatStorage'), ...str(String(i)), ...str('cpu'), ...int(numel), TUPLE, 0x51, // BINPERSID
      ...int(0), MARK, ...t.shape.flatMap(int), TUPLE, MARK, ...stride.flatMap(int), TUPLE, 0x89, // NEWFALSE
      ...glob('collections', 'OrderedDict'), 0x29, REDUCE, // OrderedDict(()) as backward_hooks
      TUPLE, REDUCE,
    ];
  });
  const pkl = new Uint8Array([0x80, 2, 0x7d, MARK, ...body, 0x75, 0x2e]); // PROTO 2, {}, SETITEMS, STOP
  writeZip(file, [['archive/data.pkl', pkl], ...tensors.map((t, i): [string, Uint8Array] => [`archive/data/${i}`, t.data]), ['archive/version', enc.encode('3\n')]]);
}

/** A model directory: config.json (hf/'s, with `edits`) and the given files. */
function writeHfDir(dir: string, hfDir: string, edits: Record<string, unknown> = {}): string {
  fs.mkdirSync(dir, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(hfDir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, ...edits }));
  return dir;
}

function writeIndex(file: string, weightMap: Record<string, string>): void {
  fs.writeFileSync(file, JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
}

// ---------------------------------------------------------------------------------------------

const TOKENS = readTokens();
function readTokens(): number[] {
  const f = path.join(SHARED, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  return fs.existsSync(f) ? readJsonl<{ token_ids: number[] }>(f)[0]!.token_ids.slice(0, 24) : [1, 403, 407, 261, 378, 432, 383, 286, 261, 370, 400, 428, 395, 392, 412, 444, 426, 392, 412, 444, 401, 396, 267, 337];
}

/** Logits at each position of TOKENS, copied. */
function logits(model: Model): Float32Array[] {
  const s = new Session(model);
  return TOKENS.map((tok, pos) => Float32Array.from(s.forward(tok, pos)));
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((row, i) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - b[i]![j]!)))));
  return m;
}

/** Asserts an error of class `cls` whose message starts with `file` and matches `re`. */
function throwsFor(fn: () => unknown, cls: Function, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.ok((e as Error).message.startsWith(file), `message should start with ${file}: ${(e as Error).message}`);
    if (e instanceof FileFormatError) assert.equal(e.path, file);
    assert.match((e as Error).message, re);
    return true;
  });
}

test('hf/ and hf-tied/ give the logits of meta-f32 (q/k permutation undone), 24 positions', (t) => {
  const hf = shared(t, HF);
  const tied = shared(t, 'models/stories260K/hf-tied');
  const meta = shared(t, 'models/stories260K/meta-f32');
  if (!hf || !tied || !meta) return;
  const ref = logits(readMetaCheckpoint(meta, { maxSeqLen: 512 }));
  const a = loadHfModel(hf);
  const b = loadModel(tied); // through loadModel's directory detection
  assert.equal(a.config.seqLen, 512);
  assert.equal(a.config.sharedClassifier, false);
  assert.equal(b.config.sharedClassifier, true);
  assert.equal(b.weights.classifier, b.weights.tokenEmbedding);
  assert.equal(a.weights.layers[0]!.wq.type, 'f32');
  assert.match(b.source.format, /Hugging Face \(model\.safetensors, f32\)/);
  for (const [name, m] of [['hf', a], ['hf-tied', b]] as const) {
    const d = maxAbsDiff(ref, logits(m));
    t.diagnostic(`${name}: max |logit - meta-f32 logit| = ${d.toExponential(2)} over ${TOKENS.length} positions`);
    assert.ok(d <= 1e-5, `${name}: max abs difference ${d}`);
  }
});

test("hf/ and hf-tied/ generate run.c's greedy text", async (t) => {
  const hf = shared(t, HF);
  const tied = shared(t, 'models/stories260K/hf-tied');
  const tokPath = shared(t, 'models/tok512.bin');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  if (!hf || !tied || !tokPath || !ref) return;
  const tok = Tokenizer.load(tokPath);
  for (const dir of [hf, tied]) {
    const model = loadHfModel(dir);
    for (const c of readJsonl<{ prompt: string; output: string }>(ref)) {
      const r = await generateText(model, tok, { prompt: c.prompt, temperature: 0 });
      assert.equal(r.text + '\n', c.output, `${path.basename(dir)}: ${c.prompt}`);
    }
  }
});

test('BF16 safetensors stay bf16 and equal meta-bf16 exactly', (t) => {
  const hf = shared(t, HF);
  const metaBf16 = shared(t, 'models/stories260K/meta-bf16');
  if (!hf || !metaBf16) return;
  const dir = writeHfDir(path.join(tempDir(t), 'bf16'), hf, { torch_dtype: 'bfloat16' });
  writeSafetensors(path.join(dir, 'model.safetensors'), readTensors(path.join(hf, 'model.safetensors')).map(toBf16));
  const m = loadHfModel(dir, { maxSeqLen: 64 });
  assert.equal(m.config.seqLen, 64);
  assert.equal(m.weights.layers[0]!.wk.type, 'bf16');
  assert.ok(m.weights.finalNorm instanceof Float32Array);
  const d = maxAbsDiff(logits(readMetaCheckpoint(metaBf16, { maxSeqLen: 64 })), logits(m));
  t.diagnostic(`bf16: max |logit - meta-bf16 logit| = ${d}`);
  assert.equal(d, 0);
});

test('sharded safetensors (index + 3 shards) and pytorch_model.bin (single and sharded) equal hf/ exactly', (t) => {
  const hf = shared(t, HF);
  if (!hf) return;
  const tensors = readTensors(path.join(hf, 'model.safetensors'));
  const ref = logits(loadHfModel(hf));
  const tmp = tempDir(t);
  const shardsOf = (n: number) => Array.from({ length: n }, (_, s) => tensors.filter((_, i) => i % n === s));

  const st = writeHfDir(path.join(tmp, 'st'), hf);
  const stMap: Record<string, string> = {};
  shardsOf(3).forEach((part, s) => {
    const name = `model-0000${s + 1}-of-00003.safetensors`;
    writeSafetensors(path.join(st, name), part);
    for (const x of part) stMap[x.name] = name;
  });
  writeIndex(path.join(st, 'model.safetensors.index.json'), stMap);

  const bin = writeHfDir(path.join(tmp, 'bin'), hf);
  writePytorchBin(path.join(bin, 'pytorch_model.bin'), tensors);

  const binSharded = writeHfDir(path.join(tmp, 'bin-sharded'), hf);
  const binMap: Record<string, string> = {};
  shardsOf(2).forEach((part, s) => {
    const name = `pytorch_model-0000${s + 1}-of-00002.bin`;
    writePytorchBin(path.join(binSharded, name), part);
    for (const x of part) binMap[x.name] = name;
  });
  writeIndex(path.join(binSharded, 'pytorch_model.bin.index.json'), binMap);

  for (const dir of [st, bin, binSharded]) {
    const m = loadHfModel(dir);
    assert.deepEqual(logits(m), ref, dir);
    t.diagnostic(`${path.basename(dir)}: ${m.source.format}`);
  }
});

test('readHfConfig: special tokens, rope_scaling llama3, defaults, model_type without architectures', (t) => {
  const hf = shared(t, HF);
  if (!hf) return;
  const base = readHfConfig(hf);
  assert.equal(base.bosTokenId, 1);
  assert.deepEqual(base.eosTokenIds, [2]);
  assert.equal(base.config.nKvHeads, 4);
  assert.equal(base.config.normEps, 1e-5);
  assert.equal(base.config.ropeScaling, undefined);
  const dir = writeHfDir(path.join(tempDir(t), 'c'), hf, {
    architectures: undefined, num_key_value_heads: undefined, rope_theta: 500000, eos_token_id: [2, 7], bos_token_id: null,
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  });
  const c = readHfConfig(dir, { maxSeqLen: 100 });
  assert.deepEqual(c.config.ropeScaling, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
  assert.equal(c.config.nKvHeads, 8);
  assert.equal(c.config.ropeTheta, 500000);
  assert.equal(c.config.seqLen, 100);
  assert.equal(c.bosTokenId, undefined);
  assert.deepEqual(c.eosTokenIds, [2, 7]);
});

// ---------------------------------------------------------------------------------------------
// Bad input

/** A small valid safetensors file: a F32 [2, 3] at [0, 24], b F16 [4] at [24, 32]. */
const SMALL = { a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, b: { dtype: 'F16', shape: [4], data_offsets: [24, 32] } };

test('bad safetensors: each refused with a FileFormatError naming the file', (t) => {
  const dir = tempDir(t);
  const data = new Uint8Array(32);
  const f = (name: string) => path.join(dir, name);
  const ok = openSafetensors(writeRaw(f('ok.safetensors'), { ...SMALL, __metadata__: { format: 'pt' } }, data));
  assert.deepEqual(ok.metadata, { format: 'pt' });
  assert.deepEqual(ok.tensors.get('b'), { name: 'b', dtype: 'F16', shape: [4], byteLength: 8 });
  const read = ok.read('a');
  assert.equal(read.byteOffset, 0);
  assert.equal(read.byteLength, 24);
  ok.close();

  const cases: Array<[string, () => string, RegExp]> = [
    ['header length larger than the file', () => writeRaw(f('len.safetensors'), SMALL, data, 10_000), /header length is 10000 bytes, but only \d+ bytes follow/],
    ['too short for the length', () => (fs.writeFileSync(f('short.safetensors'), new Uint8Array(5)), f('short.safetensors')), /truncated/],
    ['header not JSON', () => writeRaw(f('json.safetensors'), '{"a": ', data), /not valid UTF-8 JSON/],
    ['header not an object', () => writeRaw(f('array.safetensors'), [1, 2], data), /expected a JSON object/],
    ['unknown dtype', () => writeRaw(f('dtype.safetensors'), { ...SMALL, a: { ...SMALL.a, dtype: 'F4' } }, data), /dtype "F4"; expected one of F64, F32/],
    ['negative shape', () => writeRaw(f('shape.safetensors'), { ...SMALL, a: { ...SMALL.a, shape: [-2, -3] } }, data), /shape \[-2,-3\]; expected a list of non-negative/],
    ['overlapping data_offsets', () => writeRaw(f('overlap.safetensors'), { ...SMALL, b: { ...SMALL.b, data_offsets: [16, 24] } }, data), /tensor "b" .*overlaps tensor "a"/],
    ['data_offsets past the data', () => writeRaw(f('range.safetensors'), { ...SMALL, b: { ...SMALL.b, data_offsets: [24, 40] } }, data), /past the end of the data \(32 bytes/],
    ['dtype × shape ≠ byte size', () => writeRaw(f('size.safetensors'), { ...SMALL, a: { ...SMALL.a, data_offsets: [0, 20] } }, data), /F32 \[2, 3\], 24 bytes, but its data_offsets \[0, 20\] span 20 bytes/],
    ['bad __metadata__', () => writeRaw(f('meta.safetensors'), { ...SMALL, __metadata__: { n: 1 } }, data), /__metadata__.*string → string/],
  ];
  for (const [what, make, re] of cases) {
    const file = make();
    assert.throws(() => openSafetensors(file), (e: unknown) => {
      assert.ok(e instanceof FileFormatError, `${what}: ${String(e)}`);
      assert.equal(e.path, file, what);
      assert.match(e.message, re, what);
      return true;
    });
  }
});

test('bad model directories: missing shard, config.json disagreeing or invalid, unsupported architecture and dtypes', (t) => {
  const hf = shared(t, HF);
  if (!hf) return;
  const tmp = tempDir(t);
  const tensors = readTensors(path.join(hf, 'model.safetensors'));
  const withWeights = (name: string, edits: Record<string, unknown> = {}, ts = tensors): string => {
    const dir = writeHfDir(path.join(tmp, name), hf, edits);
    writeSafetensors(path.join(dir, 'model.safetensors'), ts);
    return dir;
  };

  // An index naming a shard that is not there.
  const missing = writeHfDir(path.join(tmp, 'missing'), hf);
  writeSafetensors(path.join(missing, 'model-00001-of-00002.safetensors'), tensors.slice(0, 10));
  writeIndex(path.join(missing, 'model.safetensors.index.json'), Object.fromEntries(tensors.map((x, i) => [x.name, `model-0000${i < 10 ? 1 : 2}-of-00002.safetensors`])));
  const shard2 = path.join(missing, 'model-00002-of-00002.safetensors');
  throwsFor(() => loadHfModel(missing), FileFormatError, shard2, /missing shard: model\.safetensors\.index\.json maps tensors to it/);
  assert.throws(() => loadModel(missing), (e: unknown) => e instanceof FileFormatError && e.code === 'FILE_NOT_FOUND');

  // config.json disagrees with the tensors.
  const ffn = withWeights('ffn', { intermediate_size: 176 });
  throwsFor(() => loadHfModel(ffn), FileFormatError, path.join(ffn, 'model.safetensors'), /model\.layers\.0\.mlp\.gate_proj\.weight has shape \[172, 64\], but config\.json implies \[176, 64\]/);
  const kv = withWeights('kv', { num_key_value_heads: 8 });
  throwsFor(() => loadHfModel(kv), FileFormatError, path.join(kv, 'model.safetensors'), /k_proj\.weight has shape \[32, 64\], but config\.json implies \[64, 64\]/);
  const layers = withWeights('layers', { num_hidden_layers: 4 });
  throwsFor(() => loadHfModel(layers), FileFormatError, path.join(layers, 'model.safetensors'), /model\.layers\.4\..* num_hidden_layers is 4/);
  const noNorm = withWeights('no-norm', {}, tensors.filter((x) => x.name !== 'model.norm.weight'));
  throwsFor(() => loadHfModel(noNorm), FileFormatError, path.join(noNorm, 'model.safetensors'), /missing tensor model\.norm\.weight/);

  // config.json itself.
  const badJson = withWeights('bad-json');
  fs.writeFileSync(path.join(badJson, 'config.json'), '{"architectures": ["LlamaForCausalLM"],');
  throwsFor(() => loadModel(badJson), FileFormatError, path.join(badJson, 'config.json'), /is not valid JSON/);
  const mistral = withWeights('mistral', { architectures: ['MistralForCausalLM'], model_type: 'mistral' });
  throwsFor(() => loadHfModel(mistral), UnsupportedModelError, path.join(mistral, 'config.json'), /architecture MistralForCausalLM is not supported/);
  const linear = withWeights('linear', { rope_scaling: { type: 'linear', factor: 2 } });
  throwsFor(() => loadHfModel(linear), UnsupportedModelError, path.join(linear, 'config.json'), /rope_scaling type "linear"/);
  const bias = withWeights('bias', { attention_bias: true });
  throwsFor(() => loadHfModel(bias), UnsupportedModelError, path.join(bias, 'config.json'), /attention_bias/);

  // Tensors llamats cannot use.
  const i32 = withWeights('i32', {}, tensors.map((x) => (x.name === 'model.embed_tokens.weight' ? { ...x, dtype: 'I32' } : x)));
  throwsFor(() => loadHfModel(i32), UnsupportedModelError, path.join(i32, 'model.safetensors'), /embed_tokens\.weight has dtype I32; llamats reads F32, BF16 and F16/);
  const extra = withWeights('extra', {}, [...tensors, { name: 'model.layers.0.self_attn.q_proj.bias', dtype: 'F32', shape: [64], data: new Uint8Array(256) }]);
  throwsFor(() => loadHfModel(extra), UnsupportedModelError, path.join(extra, 'model.safetensors'), /q_proj\.bias is not part of a Llama model/);
  const empty = writeHfDir(path.join(tmp, 'empty'), hf);
  throwsFor(() => loadHfModel(empty), FileFormatError, empty, /no weights: expected model\.safetensors/);
});

test('mutated safetensors headers: 3000 seeded random byte mutations give only FileFormatErrors', (t) => {
  const dir = tempDir(t);
  const base = fs.readFileSync(writeRaw(path.join(dir, 'base'), { ...SMALL, __metadata__: { format: 'pt' } }, new Uint8Array(32).fill(7)));
  const headerEnd = base.length - 32;
  const rnd = seededRandom(1234);
  const file = path.join(dir, 'm.safetensors');
  const start = Date.now();
  let opened = 0;
  for (let i = 0; i < 3000; i++) {
    const m = Uint8Array.from(base);
    const n = 1 + Math.floor(rnd() * 4);
    for (let k = 0; k < n; k++) {
      // Mostly the JSON; sometimes the length field.
      const at = rnd() < 0.1 ? Math.floor(rnd() * 8) : 8 + Math.floor(rnd() * (headerEnd - 8));
      m[at] = rnd() < 0.5 ? Math.floor(rnd() * 256) : '{}[]",:0123456789-e. '.charCodeAt(Math.floor(rnd() * 21));
    }
    fs.writeFileSync(file, m);
    try {
      const f = openSafetensors(file);
      for (const name of f.tensors.keys()) assert.equal(f.read(name).byteLength, f.tensors.get(name)!.byteLength);
      f.close();
      opened++;
    } catch (e) {
      if (!(e instanceof FileFormatError)) throw new Error(`mutation ${i}: ${String(e)}`, { cause: e });
      assert.equal(e.path, file);
    }
  }
  assert.ok(Date.now() - start < 30_000, 'bounded time');
  t.diagnostic(`${opened} of 3000 mutated files still opened (the rest: FileFormatError) in ${Date.now() - start} ms`);
  assert.ok(opened > 0 && opened < 3000);
});
