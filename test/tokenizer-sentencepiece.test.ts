/**
 * The SentencePiece tokenizer (tokenizer.model) against SentencePiece 0.1.97: its public vectors,
 * llama.cpp's vectors and Meta's chat prompts (../shared/testdata), small models built here whose
 * expected ids were produced by SentencePiece 0.1.97 (`sp.encode` / `sp.decode`), round trips,
 * streaming, and bad input.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { FileFormatError, InvalidArgumentError, Llama2cTokenizer, SentencePieceTokenizer, TextStream, Tokenizer, UnsupportedModelError } from '../src/index.js';
import { readJsonl, seededRandom, shared, tempDir } from './helpers.js';

// ---- a tiny protobuf encoder, to build ModelProto files (field numbers: see sentencepiece.ts) ----

function varint(n: number): number[] {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 128)) out.push((n % 128) | 0x80);
  out.push(n);
  return out;
}
const pbVarint = (field: number, v: number | boolean) => [...varint(field * 8), ...varint(Number(v))];
const pbBytes = (field: number, b: ArrayLike<number>) => [...varint(field * 8 + 2), ...varint(b.length), ...Array.from(b)];
const pbString = (field: number, s: string) => pbBytes(field, new TextEncoder().encode(s));
function pbFloat(field: number, x: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return [...varint(field * 8 + 5), ...b];
}

/** [piece, score, type?] — type 1 NORMAL (default), 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE. */
type PieceSpec = [string, number, number?];
interface ModelSpec {
  pieces: PieceSpec[];
  modelType: number; // 1 Unigram, 2 BPE, 3 WORD, 4 CHAR
  byteFallback?: boolean;
  addDummyPrefix?: boolean;
  removeExtraWhitespaces?: boolean;
  charsmap?: Uint8Array;
}

function modelProto(m: ModelSpec): Uint8Array {
  const out: number[] = [];
  for (const [piece, score, type] of m.pieces) out.push(...pbBytes(1, [...pbString(1, piece), ...pbFloat(2, score), ...(type === undefined ? [] : pbVarint(3, type))]));
  out.push(...pbBytes(2, [...pbVarint(3, m.modelType), ...(m.byteFallback ? pbVarint(35, true) : [])]));
  const norm = [...pbString(1, m.charsmap ? 'custom' : 'identity')];
  if (m.charsmap) norm.push(...pbBytes(2, m.charsmap));
  if (m.addDummyPrefix !== undefined) norm.push(...pbVarint(3, m.addDummyPrefix));
  if (m.removeExtraWhitespaces !== undefined) norm.push(...pbVarint(4, m.removeExtraWhitespaces));
  out.push(...pbBytes(3, norm));
  return Uint8Array.from(out);
}

const SPECIALS: PieceSpec[] = [['<unk>', 0, 2], ['<s>', 0, 3], ['</s>', 0, 3]];
const BYTES: PieceSpec[] = Array.from({ length: 256 }, (_, b) => [`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0, 6]);
// Unigram: 'ab' beats 'a'+'b', 'a'+'bc' beats 'abc'; '<sep>' user-defined; 'ca' UNUSED (never used); no 'd'
const UNIGRAM: PieceSpec[] = [...SPECIALS, ['▁', -1], ['a', -2], ['b', -2.5], ['c', -3], ['ab', -1.5], ['▁ab', -1], ['abc', -6], ['bc', -1.2], ['<sep>', 0, 4], ['ca', -0.1, 5], ['日', -4]];
// BPE: 'cd' is UNUSED (merged, then split again unless it becomes part of 'acd'); '▁▁' scores -1e9 as in LLaMA
const BPE: PieceSpec[] = [...SPECIALS, ['▁', -5], ['a', -5], ['b', -5], ['c', -5], ['d', -5], ['ab', -1], ['bc', -2], ['abc', -0.5], ['▁a', -3], ['cd', -0.2, 5], ['acd', -0.3], ['aa', -4], ['<sep>', 0, 4], ['▁▁', -1e9]];
// A precompiled_charsmap compiled by SentencePiece 0.1.97's spm_train from the rules
// A → a, "BC" → "xy", U+2126 (Ohm) → U+03A9 (Omega), é → e + U+0301.
const CHARSMAP = Buffer.from(
  '00040000000001004109000042140100000000804305000006000080a9050000020000808490020009000080a60d00000a0000000d0000000c0000000f0000000e00000011000000100000001300000012000000150000001400000017000000160000001900000018000000' +
    '1b0000001a0000001d0000001c0000001f0000001e000000210000002000000023000000220000002500000024000000270000002600000029000000280000002b0000002a0000002d0000002c0000002f0000002e0000003100000030000000330000003200000035000000' +
    '34000000370000003600000039000000380000003b0000003a0000003d0000003c0000003f0000003e000000410000004000000043000000420000004500000044000000470000004600000049000000480000004b0000004a0000004d0000004c0000004f0000004e000000' +
    '510000005000000053000000520000005500000054000000570000005600000059000000580000005b0000005a0000005d0000005c0000005f0000005e000000610000006000000063000000620000006500000064000000670000006600000069000000680000006b000000' +
    '6a0000006d0000006c0000006f0000006e000000710000007000000073000000720000007500000074000000770000007600000079000000780000007b0000007a0000007d0000007c0000007f0000007e000000810000008000000083000000c3b00000850000008400' +
    '0000870000008600000089000000880000008b0000008a0000008d0000008c0000008f0000008e000000910000009000000093000000920000009500000094000000970000009600000099000000980000009b0000009a0000009d0000009c0000009f0000009e000000' +
    'a1000000a0000000e2b80000a2000000a5000000a4000000a7000000a6000000a9000000a8000000ab000000aa000000ad000000ac000000af000000ae000000b1000000b0000000b3000000b2000000b5000000b4000000b7000000b6000000b9000000b8000000bb000000' +
    'ba000000bd000000bc000000bf000000be000000c1000000c0000000c3000000c2000000c5000000c4000000c7000000c6000000c9000000c8000000cb000000ca000000cd000000cc000000cf000000ce000000d1000000d0000000d3000000d2000000d5000000d4000000' +
    'd7000000d6000000d9000000d8000000db000000da000000dd000000dc000000df000000de000000e1000000e0000000e3000000e2000000e5000000e4000000e7000000e6000000e9000000e8000000eb000000ea000000ed000000ec000000ef000000ee000000f1000000' +
    'f0000000f3000000f2000000f5000000f4000000f7000000f6000000f9000000f8000000fb000000fa000000fd000000fc000000ff000000fe000000610065cc8100787900cea900',
  'hex',
);

const SMALL: Record<string, ModelSpec> = {
  unigram: { pieces: UNIGRAM, modelType: 1, removeExtraWhitespaces: false },
  unigramBytes: { pieces: [...UNIGRAM, ...BYTES], modelType: 1, byteFallback: true, removeExtraWhitespaces: false },
  bpe: { pieces: BPE, modelType: 2 }, // remove_extra_whitespaces defaults to true
  bpeBytes: { pieces: [...BPE, ...BYTES], modelType: 2, byteFallback: true, removeExtraWhitespaces: false },
  charsmap: { pieces: [...BPE, ['x', -5], ['y', -5], ['xy', -1], ['e', -5], ...BYTES], modelType: 2, byteFallback: true, removeExtraWhitespaces: false, charsmap: CHARSMAP },
};

// sp.encode(text) by SentencePiece 0.1.97 for each small model (same order as TEXTS)
const TEXTS = ['ab abc', 'abc<sep>c', 'xyz ab', 'ca', '日本', '', '  ab  ', 'acd cd', 'aaaa', 'ABC BC Ω é', '<sep>', 'a  b\t', 'abcd'];
const EXPECTED: Record<string, number[][]> = {
  unigram: [[8, 8, 6], [8, 6, 11, 6], [3, 0, 8], [3, 6, 4], [3, 13, 0], [], [3, 3, 8, 3, 3], [3, 4, 6, 0, 3, 6, 0], [3, 4, 4, 4, 4], [3, 0, 3, 0, 3, 0, 3, 0], [3, 11], [3, 4, 3, 3, 5, 0], [8, 6, 0]],
  unigramBytes: [[8, 8, 6], [8, 6, 11, 6], [3, 134, 135, 136, 8], [3, 6, 4], [3, 13, 244, 170, 186], [], [3, 3, 8, 3, 3], [3, 4, 6, 114, 3, 6, 114], [3, 4, 4, 4, 4], [3, 79, 80, 81, 3, 80, 81, 3, 220, 183, 3, 209, 183], [3, 11], [3, 4, 3, 3, 5, 23], [8, 6, 114]],
  bpe: [[3, 8, 3, 10], [3, 10, 15, 6], [3, 0, 3, 8], [3, 6, 4], [3, 0], [], [3, 8], [3, 13, 3, 6, 7], [11, 14, 4], [3, 0, 3, 0, 3, 0, 3, 0], [3, 15], [11, 3, 5, 0], [3, 8, 6, 7]],
  bpeBytes: [[3, 8, 3, 10], [3, 10, 15, 6], [3, 137, 138, 139, 3, 8], [3, 6, 4], [3, 247, 168, 182, 247, 173, 189], [], [16, 3, 8, 16], [3, 13, 3, 6, 7], [11, 14, 4], [3, 82, 83, 84, 3, 83, 84, 3, 223, 186, 3, 212, 186], [3, 15], [11, 16, 5, 26], [3, 8, 6, 7]],
  charsmap: [[3, 8, 3, 10], [3, 10, 15, 6], [3, 19, 143, 3, 8], [3, 6, 4], [3, 251, 172, 186, 251, 177, 193], [], [16, 3, 8, 16], [3, 13, 3, 6, 7], [11, 14, 4], [11, 19, 3, 19, 3, 227, 190, 3, 20, 225, 150], [3, 15], [11, 16, 5, 30], [3, 8, 6, 7]],
};
// sp.decode(ids) for [1, 7, 3, 4], [3, 7], [4, 0, 5], [1, 2, 3], [3, 3, 8]
const DECODE_IDS = [[1, 7, 3, 4], [3, 7], [4, 0, 5], [1, 2, 3], [3, 3, 8]];
const DECODED: Record<string, string[]> = {
  unigram: ['ab a', 'ab', 'a ⁇ b', '', '  ab'],
  unigramBytes: ['ab a', 'ab', 'a ⁇ b', '', '  ab'],
  bpe: ['d a', 'd', 'a ⁇ b', '', 'ab'], // remove_extra_whitespaces: every leading "▁" goes
  bpeBytes: ['d a', 'd', 'a ⁇ b', '', ' ab'],
  charsmap: ['d a', 'd', 'a ⁇ b', '', ' ab'],
};

let llamaTokenizer: SentencePieceTokenizer | undefined;
/** The LLaMA tokenizer.model (loaded once), or undefined after marking the test skipped. */
function llama(t: TestContext): SentencePieceTokenizer | undefined {
  const file = shared(t, 'models/tokenizer.model');
  if (file) llamaTokenizer ??= SentencePieceTokenizer.load(file);
  return file ? llamaTokenizer : undefined;
}

// ---- the LLaMA tokenizer.model against SentencePiece 0.1.97 ----

test('LLaMA tokenizer.model: vocabulary and special ids as sp.bos_id() etc.', (t) => {
  const tok = llama(t);
  if (!tok) return;
  assert.equal(tok.vocabSize, 32000);
  assert.equal(tok.modelType, 'bpe');
  assert.deepEqual([tok.unkId, tok.bosId, tok.eosId, tok.padId], [0, 1, 2, -1]);
  assert.deepEqual([0, 1, 2, 3, 13, 259, 29871, 30143].map((i) => tok.piece(i)), ['<unk>', '<s>', '</s>', '<0x00>', '<0x0A>', '▁▁', '▁', '\ufeff']);
});

test('encode, decode and pieces equal SentencePiece 0.1.97 on its public vectors', (t) => {
  const tok = llama(t);
  const ref = shared(t, 'testdata/spm_llama_tokenizer_public.jsonl');
  if (!tok || !ref) return;
  const cases = readJsonl<{ text: string; ids: number[]; decoded: string; pieces: string[] }>(ref);
  assert.equal(cases.length, 20);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, `encode ${JSON.stringify(c.text)}`);
    assert.equal(tok.decode(c.ids), c.decoded, `decode ${JSON.stringify(c.text)}`);
    assert.deepEqual(c.ids.map((id) => tok.piece(id)), c.pieces);
  }
});

test("encode equals llama.cpp's LLaMA SPM vectors (ggml-vocab-llama-spm.gguf.inp/.out)", (t) => {
  const tok = llama(t);
  const inp = shared(t, 'testdata/ggml-vocab-llama-spm.gguf.inp');
  const out = shared(t, 'testdata/ggml-vocab-llama-spm.gguf.out');
  if (!tok || !inp || !out) return;
  // Every input is followed by "\n__ggml_vocab_test__\n": the newline before the separator line is
  // not part of the input (an input that ends in "\n" shows as an extra line). The text after the
  // last separator is empty and is no input.
  const inputs = fs.readFileSync(inp, 'utf8').split('\n__ggml_vocab_test__\n');
  assert.equal(inputs.pop(), '');
  const outputs = fs.readFileSync(out, 'utf8').replace(/\n$/, '').split('\n');
  assert.equal(inputs.length, outputs.length);
  assert.equal(inputs.length, 46);
  for (let i = 0; i < inputs.length; i++) {
    const want = outputs[i]!.trim() === '' ? [] : outputs[i]!.trim().split(/\s+/).map(Number);
    assert.deepEqual(tok.encode(inputs[i]!), want, `input ${i}: ${JSON.stringify(inputs[i])}`);
  }
});

test("Meta's chat prompts: segments encoded with their bos/eos flags, concatenated", (t) => {
  const tok = llama(t);
  const ref = shared(t, 'testdata/meta_chat_prompts_public.jsonl');
  if (!tok || !ref) return;
  const cases = readJsonl<{ prompt_tokens: number[]; segments: { text: string; bos: boolean; eos: boolean }[] }>(ref);
  assert.ok(cases.length > 0);
  for (const c of cases) assert.deepEqual(c.segments.flatMap((s): number[] => tok.encode(s.text, { bos: s.bos, eos: s.eos })), c.prompt_tokens);
});

test('decode equals sp.decode: leading space, control, unknown and byte pieces', (t) => {
  const tok = llama(t);
  if (!tok) return;
  const cases: [number[], string][] = [
    [[1, 15043], 'Hello'], // the dummy-prefix "▁" of the first piece goes
    [[15043, 1, 15043], 'Hello Hello'], // but only while no text has been produced
    [[29871, 15043], ' Hello'], // a lone "▁" first consumes the dummy prefix; the next keeps its space
    [[1, 29871, 15043], ' Hello'],
    [[29871, 29871, 15043], '  Hello'],
    [[13, 15043], '\n Hello'], // a byte piece is text
    [[0, 15043], ' ⁇  Hello'], // unknown → " ⁇ "
    [[243, 162], '\ufffd\ufffd'], // F0 9F: a truncated character is one U+FFFD per byte
    [[243, 162, 29871], '\ufffd\ufffd '],
    [[229, 153, 132, 15043], '▁ Hello'], // bytes E2 96 81 stay "▁"
    [[1, 2], ''],
  ];
  for (const [ids, want] of cases) assert.equal(tok.decode(ids), want, JSON.stringify(ids));
  assert.throws(() => tok.decode([32000]), /outside the vocabulary/);
});

const ROUND_TRIP = [
  'Once upon a time',
  '  two leading spaces and trailing  ',
  ' one leading space',
  'Hello,   world!\n\tTabs and\nnewlines  \r\n',
  '\u00a0\u2002\u2003\u2009\u202f\u205f\u3000\u200b whitespace of many kinds \u1680\u180e\u2028\u2029\u0085\u000b\u000c',
  '\t\t\t\n\n\n    \t \n',
  '12345 67.89 -0.001 1e10 0x1F',
  'function f(x) { return x ** 2; } // code\n  if (a && b) { print("hi") }',
  'naïve café — déjà vu, Grüße',
  'emoji: 🦙🚀👩‍👩‍👧 ✅ 🇫🇷 end',
  '日本語のテキストと中文，还有한국어',
  'مرحبا بالعالم، كيف حالك؟',
  'Ωμέγα и кириллица',
  '\u0000\u0007\u001b control characters',
];

test('decode(encode(s)) == s, and streaming through TextStream never splits a character', (t) => {
  const tok = llama(t);
  if (!tok) return;
  const long = ROUND_TRIP.join(' ').repeat(20);
  for (const s of [...ROUND_TRIP, long]) {
    const ids = tok.encode(s, { bos: true, eos: true });
    assert.equal(ids[0], 1);
    assert.equal(ids.at(-1), 2);
    assert.equal(tok.decode(ids), s, JSON.stringify(s));
    const stream = new TextStream();
    let out = '';
    for (let i = 1; i < ids.length; i++) {
      const chunk = stream.push(tok.tokenBytes(ids[i - 1]!, ids[i]!));
      assert.ok(!chunk.includes('\uFFFD'), `split character in ${JSON.stringify(s)}`);
      out += chunk;
    }
    assert.equal(out + stream.flush(), tok.decode(ids), JSON.stringify(s));
  }
});

test('tokenBytes: "▁" is a space, dropped at the start and after a control token; bytes are raw', (t) => {
  const tok = llama(t);
  if (!tok) return;
  const text = (prev: number, id: number) => Buffer.from(tok.tokenBytes(prev, id)).toString('latin1');
  assert.equal(text(1, 15043), 'Hello');
  assert.equal(text(-1, 15043), 'Hello');
  assert.equal(text(15043, 15043), ' Hello');
  assert.equal(text(15043, 13), '\n');
  assert.equal(text(15043, 243), '\xf0'); // one raw byte of a 4-byte character
  assert.equal(text(15043, 2), '');
  assert.equal(text(15043, 0), ' \xe2\x81\x87 ');
});

test('a 100 KB input encodes in well under a second', (t) => {
  const tok = llama(t);
  if (!tok) return;
  const rnd = seededRandom(7);
  const words = ['the', 'tokenizer', '日本語', '🦙', 'x=1;', '\n', '  ', 'Grüße', 'مرحبا'];
  let s = '';
  while (s.length < 100_000) s += words[Math.floor(rnd() * words.length)] + (rnd() < 0.8 ? ' ' : '');
  const t0 = performance.now();
  const ids = tok.encode(s);
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `encoding 100 KB took ${ms.toFixed(0)} ms`);
  assert.equal(tok.decode(ids), s);
});

// ---- small models built here, expected ids from SentencePiece 0.1.97 ----

for (const [name, spec] of Object.entries(SMALL)) {
  test(`small ${name} model: encode and decode equal SentencePiece 0.1.97`, () => {
    const tok = SentencePieceTokenizer.parse(modelProto(spec), `${name}.model`);
    assert.equal(tok.modelType, spec.modelType === 1 ? 'unigram' : 'bpe');
    TEXTS.forEach((text, i) => assert.deepEqual(tok.encode(text), EXPECTED[name]![i], `${name}: ${JSON.stringify(text)}`));
    DECODE_IDS.forEach((ids, i) => assert.equal(tok.decode(ids), DECODED[name]![i], `${name}: decode ${JSON.stringify(ids)}`));
  });
}

test('Unigram: Viterbi picks the best path, one unk for a run of unknown characters, or their bytes', () => {
  const tok = SentencePieceTokenizer.parse(modelProto(SMALL.unigram!), 'unigram.model');
  const pieces = (s: string) => tok.encode(s).map((id) => tok.piece(id));
  assert.deepEqual(pieces('abc'), ['▁ab', 'c']); // ▁ab + c (-4) beats ▁ + a + bc (-4.2)
  assert.deepEqual(pieces('ca'), ['▁', 'c', 'a']); // 'ca' is UNUSED
  assert.deepEqual(pieces('xyz'), ['▁', '<unk>']); // x, y, z unknown: one unk
  const bytes = SentencePieceTokenizer.parse(modelProto(SMALL.unigramBytes!), 'unigram-bytes.model');
  assert.deepEqual(bytes.encode('xyz').map((id) => bytes.piece(id)), ['▁', '<0x78>', '<0x79>', '<0x7A>']);
  assert.equal(bytes.decode(bytes.encode('日本 x')), '日本 x');
});

test('Tokenizer.load picks SentencePiece for tokenizer.model and llama2.c for tokenizer.bin and tok512.bin', (t) => {
  const model = shared(t, 'models/tokenizer.model');
  const bin = shared(t, 'models/tokenizer.bin');
  const small = shared(t, 'models/tok512.bin');
  if (!model || !bin || !small) return;
  const sp = Tokenizer.load(model);
  assert.ok(sp instanceof SentencePieceTokenizer);
  assert.ok(Tokenizer.load(bin) instanceof Llama2cTokenizer);
  assert.ok(Tokenizer.load(small) instanceof Llama2cTokenizer);
  // both readings of the LLaMA vocabulary agree
  const s = 'Hello, World! 日本語 🦙';
  assert.deepEqual(sp.encode(s, { bos: true }), Tokenizer.load(bin).encode(s, { bos: true }));
});

test('Tokenizer.load still reads a llama2.c tokenizer whose first byte is 0x0a (max_token_length 10)', (t) => {
  const file = path.join(tempDir(t), 'tokenizer.bin');
  const enc = new TextEncoder();
  const entries = ['<unk>', '<s>', '</s>', ' ', 'a'].map((p) => [...new Uint8Array(new Float32Array([0]).buffer), ...new Uint8Array(new Int32Array([p.length]).buffer), ...enc.encode(p)]);
  fs.writeFileSync(file, Uint8Array.from([...new Uint8Array(new Int32Array([10]).buffer), ...entries.flat()]));
  assert.ok(Tokenizer.load(file) instanceof Llama2cTokenizer);
});

// ---- bad input ----

test('a file that is not a valid SentencePiece model is a FileFormatError naming the file', (t) => {
  const dir = tempDir(t);
  const good = modelProto(SMALL.bpe!);
  const withType = (type: number) => modelProto({ ...SMALL.bpe!, pieces: [...BPE, ['z', -1, type]] });
  const cases: Record<string, [Uint8Array, RegExp]> = {
    'empty.model': [new Uint8Array(0), /empty/],
    'garbage.model': [Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3), /length \d+/],
    'truncated.model': [good.subarray(0, good.length - 5), /bytes are left|truncated/],
    'no-pieces.model': [Uint8Array.from(pbBytes(2, pbVarint(3, 2))), /no pieces/],
    'bad-type.model': [withType(9), /type 9/],
    'type-zero.model': [withType(0), /type 0/],
    'no-unk.model': [modelProto({ ...SMALL.bpe!, pieces: BPE.slice(1) }), /UNKNOWN/],
    'duplicate.model': [modelProto({ ...SMALL.bpe!, pieces: [...BPE, ['ab', -1]] }), /repeats/],
    'missing-bytes.model': [modelProto({ ...SMALL.bpeBytes!, pieces: [...BPE, ...BYTES.slice(1)] }), /no BYTE piece for 0x00/],
    'bytes-without-fallback.model': [modelProto({ ...SMALL.bpe!, pieces: [...BPE, ...BYTES] }), /byte_fallback is false/],
    'bad-charsmap.model': [modelProto({ ...SMALL.charsmap!, charsmap: Uint8Array.of(0xff, 0xff, 0, 0, 1, 2) }), /precompiled_charsmap/],
    'bad-wire-type.model': [Uint8Array.of(0x0b, 0x00), /wire type 3/],
  };
  for (const [name, [bytes, why]] of Object.entries(cases)) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes);
    assert.throws(
      () => SentencePieceTokenizer.load(file),
      (e: unknown) => e instanceof FileFormatError && e.message.startsWith(file) && why.test(e.message),
      name,
    );
    // through format detection too (a tokenizer.bin reading may be tried and fail as well)
    assert.throws(() => Tokenizer.load(file), (e: unknown) => e instanceof FileFormatError && e.message.startsWith(file), name);
  }
});

test('WORD and CHAR models are an UnsupportedModelError naming the file', () => {
  for (const modelType of [3, 4]) {
    assert.throws(
      () => SentencePieceTokenizer.parse(modelProto({ ...SMALL.bpe!, modelType }), 'word.model'),
      (e: unknown) => e instanceof UnsupportedModelError && e.message.startsWith('word.model') && /not supported yet/.test(e.message),
    );
  }
});

test('mutated and truncated models never throw an untyped error', () => {
  const rnd = seededRandom(11);
  const good = modelProto(SMALL.charsmap!);
  let loaded = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = good.slice(0, i % 3 === 0 ? Math.floor(rnd() * good.length) : good.length);
    for (let k = 0; k < 3; k++) bytes[Math.floor(rnd() * bytes.length)] = Math.floor(rnd() * 256);
    try {
      const tok = SentencePieceTokenizer.parse(bytes, 'mutant.model');
      tok.decode(tok.encode('ab ABC é 日本'));
      loaded++;
    } catch (e) {
      // InvalidArgumentError: a mutant whose CONTROL piece is the text of a character (see encode)
      assert.ok(e instanceof FileFormatError || e instanceof UnsupportedModelError || e instanceof InvalidArgumentError, `mutant ${i}: ${(e as Error).stack}`);
    }
  }
  assert.ok(loaded > 0);
});
