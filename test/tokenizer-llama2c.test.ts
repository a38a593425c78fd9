/**
 * The llama2.c tokenizer against run.c's `encode` (fixture) and SentencePiece 0.1.97
 * (../shared/testdata), plus round trips and streaming decode.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { FileFormatError, Llama2cTokenizer, TextStream, Tokenizer } from '../src/index.js';
import { FIXTURES, readJsonl, shared, tempDir } from './helpers.js';

test('encode equals run.c encode() for tokenizer.bin and tok512.bin on 47 varied strings', (t) => {
  const big = shared(t, 'models/tokenizer.bin');
  const small = shared(t, 'models/tok512.bin');
  if (!big || !small) return;
  const toks: Record<string, Tokenizer> = { 'tokenizer.bin': Tokenizer.load(big), 'tok512.bin': Tokenizer.load(small) };
  const cases = readJsonl<{ tokenizer: string; text: string; ids: number[] }>(path.join(FIXTURES, 'runc_tok_encode.jsonl'));
  assert.ok(cases.length >= 90);
  for (const c of cases) assert.deepEqual(toks[c.tokenizer]!.encode(c.text, { bos: true }), c.ids, `${c.tokenizer}: ${JSON.stringify(c.text)}`);
});

test('encode and decode equal SentencePiece 0.1.97 on its public vectors (tokenizer.bin)', (t) => {
  const big = shared(t, 'models/tokenizer.bin');
  const ref = shared(t, 'testdata/spm_llama_tokenizer_public.jsonl');
  if (!big || !ref) return;
  const tok = Tokenizer.load(big);
  const cases = readJsonl<{ text: string; ids: number[]; decoded: string; pieces: string[] }>(ref);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, `encode ${JSON.stringify(c.text)}`);
    assert.equal(tok.decode(c.ids), c.decoded, `decode ${JSON.stringify(c.text)}`);
    assert.deepEqual(c.ids.map((id) => tok.piece(id)), c.pieces.map((p) => p.replaceAll('▁', ' ')));
  }
});

const ROUND_TRIP = [
  'Once upon a time',
  'Hello,   world!\n\tTabs and\nnewlines  ',
  'naïve café — déjà vu',
  '日本語のテキストと中文',
  'emoji: 🦙🚀👩‍👩‍👧 end',
  'مرحبا بالعالم',
  'x = [i**2 for i in range(10)]  # code',
  '12345 67.89 -0.001',
];

test('decode(encode(s)) == s, and streaming never splits a character (both vocabularies)', (t) => {
  const big = shared(t, 'models/tokenizer.bin');
  const small = shared(t, 'models/tok512.bin');
  if (!big || !small) return;
  for (const file of [big, small]) {
    const tok = Tokenizer.load(file);
    for (const s of ROUND_TRIP) {
      const ids = tok.encode(s, { bos: true, eos: true });
      assert.equal(ids[0], 1);
      assert.equal(ids.at(-1), 2);
      assert.equal(tok.decode(ids), s, `${path.basename(file)}: ${s}`);
      // stream token by token: every chunk is whole characters, never U+FFFD
      const stream = new TextStream();
      let out = '';
      for (let i = 1; i < ids.length - 1; i++) {
        const chunk = stream.push(tok.tokenBytes(ids[i - 1]!, ids[i]!));
        assert.ok(!chunk.includes('\uFFFD'), `split character in ${JSON.stringify(s)}`);
        out += chunk;
      }
      assert.equal(out + stream.flush(), s);
    }
  }
});

test('tok512 falls back to byte tokens for characters it lacks, and they decode to whole characters', (t) => {
  const small = shared(t, 'models/tok512.bin');
  if (!small) return;
  const tok = Tokenizer.load(small);
  const ids = tok.encode('ж🦙');
  // ' ' dummy prefix, then the 2 + 4 UTF-8 bytes as byte tokens (byte + 3)
  const bytes = [...Buffer.from('ж🦙', 'utf8')];
  assert.deepEqual(ids, [tok.encode(' ')[0], ...bytes.map((b) => b + 3)]);
  assert.equal(tok.decode(ids), 'ж🦙');
});

test('the safe_printf stream drops control bytes like run.c; plain decode keeps them', () => {
  const s = new TextStream({ safePrint: true });
  assert.equal(s.push(Uint8Array.of(0x07)), '');
  assert.equal(s.push(Uint8Array.of(0x0a)), '\n');
  assert.equal(s.push(Uint8Array.of(0xc3)), ''); // first half of é waits
  assert.equal(s.push(Uint8Array.of(0xa9)), 'é');
  assert.equal(s.push(Uint8Array.of(0xe2)), '');
  assert.equal(s.flush(), '\uFFFD'); // an unfinished character at the end is not silently lost
  assert.equal(new TextStream().push(Uint8Array.of(0x07)), '\u0007');
});

test('a tokenizer file that is empty, truncated or garbage is a FileFormatError naming the file', (t) => {
  const dir = tempDir(t);
  const cases: Record<string, Uint8Array> = {
    'empty.bin': new Uint8Array(0),
    'short.bin': Uint8Array.of(1, 2),
    'negative-max.bin': new Uint8Array(new Int32Array([-5]).buffer),
    // max_len 10, one token: score 0, length 1000 but only 3 bytes follow
    'truncated.bin': new Uint8Array(new Int32Array([10, 0, 1000, 0]).buffer),
  };
  for (const [name, bytes] of Object.entries(cases)) {
    const p = path.join(dir, name);
    fs.writeFileSync(p, bytes);
    assert.throws(() => Tokenizer.load(p), (e: unknown) => e instanceof FileFormatError && e.message.startsWith(p), name);
  }
  assert.throws(() => Tokenizer.load(path.join(dir, 'missing.bin')), (e: unknown) => e instanceof FileFormatError && e.code === 'FILE_NOT_FOUND');
});

test('merges pick the best-scoring pair, leftmost first on ties (hand-made vocabulary)', () => {
  const enc = new TextEncoder();
  const pieces = ['<unk>', '<s>', '</s>', ' ', 'a', 'b', 'ab', 'ba', ' a', 'aba'].map((p) => enc.encode(p));
  // scores: 'ab' and 'ba' tie; ' a' is best; 'aba' exists
  const scores = Float32Array.from([0, 0, 0, 0, 0, 0, -1, -1, 5, -0.5]);
  const tok = new Llama2cTokenizer(pieces, scores, 3);
  // " abab": [' ', a, b, a, b] → ' a' first (score 5) → [' a', b, a, b] → 'ba'(-1) vs 'ab'(-1): leftmost is 'ba' at 1
  // → [' a', 'ba', b]; then no more pieces (' aba', 'bab' absent)
  assert.deepEqual(tok.encode('abab').map((i) => tok.piece(i)), [' a', 'ba', 'b']);
  // "bab": [' ', b, a, b] → ' b' absent; 'ba' and 'ab' tie → leftmost 'ba' → [' ', 'ba', 'b']
  assert.deepEqual(tok.encode('bab').map((i) => tok.piece(i)), [' ', 'ba', 'b']);
});
