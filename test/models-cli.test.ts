/**
 * `llamats inspect`, `convert` and `quantize` on every input format, and their bad input.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { generateText, loadModel, readGgufHeader, Session, Tokenizer } from '../src/index.js';
import { readJsonl, runCli, shared, tempDir } from './helpers.js';

test('inspect reports every format without loading weights', (t) => {
  const paths = ['models/stories260K.bin', 'models/stories260K/meta-mp2', 'models/stories260K/hf-tied', 'models/stories260K/gguf/stories260K-q4_0.gguf'].map((p) => shared(t, p));
  const tok = shared(t, 'models/tok512.bin');
  if (paths.some((p) => !p) || !tok) return;
  const expectTypes = [{ F32: 47 }, { BF16: 49 }, { F32: 47 }, { Q4_0: 32, F16: 5, F32: 11 }];
  paths.forEach((p, i) => {
    const r = runCli(['inspect', p!, '-z', tok, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(r.stdout);
    assert.equal(rep.config.dim, 64);
    assert.equal(rep.config.hiddenDim, 172);
    assert.equal(rep.config.nLayers, 5);
    assert.equal(rep.config.nKvHeads, 4);
    assert.equal(rep.config.vocabSize, 512);
    assert.deepEqual(rep.tensorTypes, expectTypes[i], p);
    assert.equal(rep.tokenizer.vocabSize, 512);
  });
  const text = runCli(['inspect', paths[3]!]);
  assert.match(text.stdout, /format\s+GGUF v3/);
  assert.match(text.stdout, /tensor types\s+32 Q4_0, 11 F32, 5 F16|tensor types\s+.*32 Q4_0/);
});

test('convert writes GGUF from llama2.c, Meta and Hugging Face inputs; quantize requantizes; outputs run', async (t) => {
  const bin = shared(t, 'models/stories260K.bin');
  const mp2 = shared(t, 'models/stories260K/meta-mp2');
  const hf = shared(t, 'models/stories260K/hf');
  const tok = shared(t, 'models/tok512.bin');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  if (!bin || !mp2 || !hf || !tok || !ref) return;
  const dir = tempDir(t);
  const f32 = path.join(dir, 'f32.gguf');
  let r = runCli(['convert', bin, f32, '--type', 'f32', '-z', tok]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^wrote .*f32\.gguf/);
  // the converted file holds its tokenizer: run it with nothing else
  const model = loadModel(f32, { maxSeqLen: 512 });
  const h = readGgufHeader(f32);
  assert.equal(h.metadata.get('tokenizer.ggml.model')?.value, 'llama');
  const cases = readJsonl<{ prompt: string; output: string }>(ref);
  const tokenizer = Tokenizer.load(tok);
  const out = await generateText(model, tokenizer, { prompt: cases[0]!.prompt, temperature: 0 });
  assert.equal(out.text + '\n', cases[0]!.output);

  for (const [input, type, extra] of [[mp2, 'q8_0', ['-z', tok]], [hf, 'f16', ['-z', tok]], [f32, 'bf16', []]] as const) {
    const o = path.join(dir, `${path.basename(input)}-${type}.gguf`);
    r = runCli(['convert', input, o, '--type', type, ...extra]);
    assert.equal(r.status, 0, r.stderr);
    const rep = JSON.parse(runCli(['inspect', o, '--json']).stdout);
    assert.ok(rep.tensorTypes[type.toUpperCase()] >= 31, `${type}: ${JSON.stringify(rep.tensorTypes)}`);
    // logits stay close to the float32 source
    const a = new Session(loadModel(o, { maxSeqLen: 16 }));
    const b = new Session(model);
    let num = 0;
    let den = 0;
    [1, 403, 407, 261].forEach((tokId, pos) => {
      const la = a.forward(tokId, pos);
      const lb = b.forward(tokId, pos);
      la.forEach((v, k) => ((num += (v - lb[k]!) ** 2), (den += lb[k]! ** 2)));
    });
    assert.ok(num / den < 1e-2, `${type} from ${path.basename(input)}: nmse ${num / den}`);
  }
  const q4k = path.join(dir, 'q4k.gguf');
  r = runCli(['quantize', f32, q4k, 'q4_k']);
  assert.equal(r.status, 0, r.stderr);
  const rep = JSON.parse(runCli(['inspect', q4k, '--json']).stdout);
  // rows of 64 are too short for 256-weight K blocks: llama-quantize's fallback (Q5_0), F16 for rows of 172
  assert.deepEqual(rep.tensorTypes, { F32: 11, Q5_0: 31, F16: 5 });
  assert.equal(rep.tokenizer.vocabSize, 512, 'the tokenizer is carried over');
});

test('convert/quantize/inspect refuse bad input with one clean line', (t) => {
  const bin = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!bin || !tok) return;
  const dir = tempDir(t);
  const out = path.join(dir, 'o.gguf');
  for (const [args, code, re] of [
    [['convert', bin, out, '--type', 'q9_9', '-z', tok], 2, /q9_9/],
    [['convert', bin], 2, /<input> <output\.gguf>/],
    [['convert', bin, bin, '-z', tok], 2, /must not be the input/],
    [['quantize', bin, out, 'q8_0'], 2, /reads GGUF files/],
    [['quantize', out, out], 2, /<in\.gguf> <out\.gguf> <type>/],
    [['inspect', path.join(dir, 'missing.gguf')], 3, /no such file/],
    [['inspect', dir], 5, /directory without params\.json or config\.json/],
  ] as const) {
    const r = runCli([...args]);
    assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1);
  }
  assert.deepEqual(fs.readdirSync(dir), [], 'nothing written');
});

test('a byte-level tokenizer.json (Llama 3) written as GGUF metadata reads back as the same tokenizer', async (t) => {
  const dir = shared(t, 'models/llama3-tokenizer');
  const ref = shared(t, 'testdata/llama3_tokenizer_public.jsonl');
  if (!dir || !ref) return;
  const { tokenizerGgufMetadata } = await import('../src/formats/gguf-vocab.js');
  const { tokenizerFromGgufMetadata, writeGguf } = await import('../src/index.js');
  const hf = Tokenizer.load(dir);
  const meta = tokenizerGgufMetadata(hf);
  assert.equal(meta.get('tokenizer.ggml.pre')?.value, 'llama-bpe');
  assert.ok(meta.has('tokenizer.chat_template'));
  const file = path.join(tempDir(t), 'vocab.gguf');
  writeGguf(file, { metadata: meta, tensors: [] });
  const back = tokenizerFromGgufMetadata(readGgufHeader(file).metadata, file);
  assert.equal(back.vocabSize, hf.vocabSize);
  for (const c of readJsonl<{ text: string; ids: number[] }>(ref)) assert.deepEqual(back.encode(c.text), c.ids, c.text);
});
