/**
 * Tokenizers from GGUF metadata (src/tokenizer/gguf.ts): llama.cpp's own vocabulary file and
 * test vectors for the SentencePiece ("llama") kind; a byte-level ("gpt2", llama-bpe) GGUF written
 * here from Llama 3's tokenizer.json against the Llama 3 vectors; plain metadata values; bad input.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  FileFormatError,
  GgufSpmTokenizer,
  HfTokenizer,
  readGgufHeader,
  SentencePieceTokenizer,
  TextStream,
  Tokenizer,
  tokenizerFromGgufMetadata,
  UnsupportedModelError,
  writeGguf,
  type GgufValue,
} from '../src/index.js';
import { FIXTURES, readJsonl, shared, tempDir } from './helpers.js';

const SPM_GGUF = 'models/ggml-vocab-llama-spm.gguf';
const BOM_TOKEN = 30143; // the LLaMA vocabulary's "\ufeff" piece

/** llama.cpp's vectors: inputs separated by lines "__ggml_vocab_test__", one line of ids each. */
function ggmlVectors(inpFile: string, outFile: string): Array<{ text: string; ids: number[] }> {
  const inputs = fs.readFileSync(inpFile, 'utf8').split('\n__ggml_vocab_test__\n');
  assert.equal(inputs.pop(), '', 'the file ends with a separator');
  const lines = fs.readFileSync(outFile, 'utf8').split('\n');
  assert.equal(lines.pop(), '');
  assert.equal(lines.length, inputs.length);
  return inputs.map((text, i) => ({ text, ids: lines[i]!.trim() === '' ? [] : lines[i]!.trim().split(/\s+/).map(Number) }));
}

/** The metadata of the vocabulary GGUF (token 30143 is a bare U+FEFF, which must survive decoding). */
function spmMetadata(file: string): Map<string, GgufValue> {
  const metadata = readGgufHeader(file).metadata;
  assert.equal((metadata.get('tokenizer.ggml.tokens')!.value as string[])[BOM_TOKEN], '\ufeff');
  return metadata;
}

function stream(tok: Tokenizer, ids: readonly number[]): string {
  const s = new TextStream();
  let out = '';
  let prev = -1;
  for (const id of ids) {
    out += s.push(tok.tokenBytes(prev, id));
    prev = id;
  }
  return out + s.flush();
}

test('GGUF llama (SentencePiece) vocabulary: llama.cpp\'s 46 test vectors, exactly', (t) => {
  const file = shared(t, SPM_GGUF);
  const inp = shared(t, 'testdata/ggml-vocab-llama-spm.gguf.inp');
  const out = shared(t, 'testdata/ggml-vocab-llama-spm.gguf.out');
  if (!file || !inp || !out) return;
  const tok = tokenizerFromGgufMetadata(spmMetadata(file), file);
  assert.ok(tok instanceof GgufSpmTokenizer);
  assert.equal(tok.vocabSize, 32000);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.deepEqual(tok.stopIds, [2]);
  assert.equal(tok.addBos, true);
  assert.equal(tok.addEos, false);
  const vectors = ggmlVectors(inp, out);
  assert.equal(vectors.length, 46);
  for (const { text, ids } of vectors) {
    assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
    assert.deepEqual(tok.encode(text, { bos: true, eos: true }), [1, ...ids, 2]);
  }
  // the same vocabulary as tokenizer.model: decoding and streaming agree with SentencePiece
  const model = shared(t, 'models/tokenizer.model');
  if (!model) return;
  const sp = SentencePieceTokenizer.load(model);
  for (const { text, ids } of vectors) {
    assert.deepEqual(sp.encode(text), ids);
    assert.equal(tok.decode(ids), sp.decode(ids));
    assert.equal(tok.piece(ids[0] ?? 1), sp.piece(ids[0] ?? 1));
    if (!text.startsWith('\ufeff')) assert.equal(stream(tok, ids), sp.decode(ids), JSON.stringify(text));
  }
});

test('GGUF string values keep a leading U+FEFF (token 30143 of the LLaMA vocabulary)', (t) => {
  const file = shared(t, SPM_GGUF);
  if (!file) return;
  const tokens = readGgufHeader(file).metadata.get('tokenizer.ggml.tokens')!.value as string[];
  assert.equal(tokens[BOM_TOKEN], '\ufeff');
  assert.equal(Tokenizer.load(file).vocabSize, 32000);
});

test('GGUF model files carry their tokenizer: stories260K (512 pieces)', (t) => {
  const file = shared(t, 'models/stories260K/gguf/stories260K-q8_0.gguf');
  if (!file) return;
  const tok = Tokenizer.load(file);
  assert.ok(tok instanceof GgufSpmTokenizer);
  assert.equal(tok.vocabSize, 512);
  assert.equal(tok.bosId, 1);
  const ids = tok.encode('Once upon a time, there was a little girl.');
  assert.equal(tok.decode(ids), 'Once upon a time, there was a little girl.');
});

// ---- gpt2 (byte-level) vocabularies -------------------------------------------------------------

/** A vocabulary-only GGUF holding Llama 3's tokenizer, as llama.cpp's converter writes it. */
function writeLlama3Gguf(t: TestContext, dir: string, extra: Array<[string, GgufValue]> = []): string {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number>; merges: string[] };
    added_tokens: Array<{ id: number; content: string }>;
  };
  const tokens: string[] = [];
  for (const [tok, id] of Object.entries(json.model.vocab)) tokens[id] = tok;
  const types = new Int32Array(128256).fill(1);
  for (const a of json.added_tokens) {
    tokens[a.id] = a.content;
    types[a.id] = 3; // control
  }
  const file = path.join(tempDir(t), 'llama3-vocab.gguf');
  writeGguf(file, {
    metadata: [
      ['general.architecture', { type: 'string', value: 'llama' }],
      ['tokenizer.ggml.model', { type: 'string', value: 'gpt2' }],
      ['tokenizer.ggml.pre', { type: 'string', value: 'llama-bpe' }],
      ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens }],
      ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types }],
      ['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: json.model.merges }],
      ['tokenizer.ggml.bos_token_id', { type: 'u32', value: 128000 }],
      ['tokenizer.ggml.eos_token_id', { type: 'u32', value: 128001 }],
      ['tokenizer.ggml.eot_token_id', { type: 'u32', value: 128009 }],
      ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
      ...extra,
    ],
    tensors: [],
  });
  return file;
}

test('GGUF gpt2 vocabulary (llama-bpe) written from Llama 3: the public and our own vectors, exactly', (t) => {
  const dir = shared(t, 'models/llama3-tokenizer');
  const vectors = shared(t, 'testdata/llama3_tokenizer_public.jsonl');
  if (!dir || !vectors) return;
  const file = writeLlama3Gguf(t, dir, [['tokenizer.chat_template', { type: 'string', value: '{{ bos_token }}' }]]);
  const tok = Tokenizer.load(file);
  assert.ok(tok instanceof HfTokenizer);
  assert.equal(tok.vocabSize, 128256);
  assert.equal(tok.bosId, 128000);
  assert.equal(tok.eosId, 128001);
  assert.deepEqual([...tok.stopIds].sort(), [128001, 128009]);
  assert.equal(tok.addBos, true);
  assert.equal(tok.chatTemplate, '{{ bos_token }}');
  const rows = [
    ...readJsonl<{ text: string; ids: number[]; ids_special?: number[]; decoded: string }>(vectors),
    ...readJsonl<{ text: string; ids: number[]; ids_special?: number[]; decoded: string }>(path.join(FIXTURES, 'hf/llama3_extra.jsonl')),
  ];
  assert.equal(rows.length, 27 + 174);
  for (const r of rows) {
    assert.deepEqual(tok.encode(r.text), r.ids, JSON.stringify(r.text).slice(0, 60));
    assert.deepEqual(tok.encode(r.text, { special: true }), r.ids_special ?? r.ids);
    assert.equal(tok.decode(r.ids), r.decoded);
  }
});

test('GGUF metadata as plain JS values (numbers, bigints, arrays) works too', () => {
  const tokens = ['<unk>', '<s>', '</s>', '▁', 'a', 'b', '▁a', 'ab', '▁ab'];
  const metadata = new Map<string, unknown>([
    ['tokenizer.ggml.model', 'llama'],
    ['tokenizer.ggml.tokens', tokens],
    ['tokenizer.ggml.scores', [0, 0, 0, -5, -5, -5, -3, -1, -0.5]],
    ['tokenizer.ggml.token_type', [2, 3, 3, 1, 1, 1, 1, 1, 1]],
    ['tokenizer.ggml.bos_token_id', 1n],
    ['tokenizer.ggml.eos_token_id', 2],
    ['tokenizer.ggml.padding_token_id', 0xffffffff],
    ['tokenizer.ggml.add_bos_token', false],
  ]);
  const tok = tokenizerFromGgufMetadata(metadata, '<test>');
  assert.deepEqual(tok.encode('ab ab', { bos: true }), [1, 8, 8]);
  assert.equal(tok.decode([1, 8, 8]), 'ab ab');
  assert.equal((tok as GgufSpmTokenizer).addBos, false);
  // no dummy prefix
  metadata.set('tokenizer.ggml.add_space_prefix', false);
  assert.deepEqual(tokenizerFromGgufMetadata(metadata, '<test>').encode('ab ab'), [7, 8]);
});

test('bad GGUF tokenizer metadata: named errors', () => {
  const base = () =>
    new Map<string, unknown>([
      ['tokenizer.ggml.model', 'gpt2'],
      ['tokenizer.ggml.pre', 'llama-bpe'],
      ['tokenizer.ggml.tokens', ['a', 'b', 'ab']],
      ['tokenizer.ggml.merges', ['a b']],
    ]);
  const ok = tokenizerFromGgufMetadata(base(), 'x.gguf');
  assert.deepEqual(ok.encode('abab'), [2, 2]);
  const without = base();
  without.delete('tokenizer.ggml.model');
  assert.throws(() => tokenizerFromGgufMetadata(without, 'x.gguf'), (e: unknown) => e instanceof FileFormatError && /no tokenizer\.ggml\.model/.test(e.message));
  const bert = base();
  bert.set('tokenizer.ggml.model', 'bert');
  assert.throws(() => tokenizerFromGgufMetadata(bert, 'x.gguf'), (e: unknown) => e instanceof UnsupportedModelError && /'bert'/.test(e.message));
  const pre = base();
  pre.set('tokenizer.ggml.pre', 'deepseek-llm');
  assert.throws(() => tokenizerFromGgufMetadata(pre, 'x.gguf'), (e: unknown) => e instanceof UnsupportedModelError && /'deepseek-llm'/.test(e.message));
  const merges = base();
  merges.set('tokenizer.ggml.merges', ['a c']);
  assert.throws(() => tokenizerFromGgufMetadata(merges, 'x.gguf'), (e: unknown) => e instanceof FileFormatError && /"c", which is not in the vocabulary/.test(e.message));
  const bos = base();
  bos.set('tokenizer.ggml.bos_token_id', 7);
  assert.throws(() => tokenizerFromGgufMetadata(bos, 'x.gguf'), /bos_token_id is 7, outside the vocabulary \[0, 3\)/);
  const types = base();
  types.set('tokenizer.ggml.token_type', [1, 1]);
  assert.throws(() => tokenizerFromGgufMetadata(types, 'x.gguf'), /token_type has 2 entries for 3 tokens/);
  const notStrings = base();
  notStrings.set('tokenizer.ggml.tokens', [1, 2, 3]);
  assert.throws(() => tokenizerFromGgufMetadata(notStrings, 'x.gguf'), /tokenizer\.ggml\.tokens is an array of 3; expected an array of strings/);
});
