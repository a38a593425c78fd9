/**
 * Hugging Face tokenizer.json (src/tokenizer/hf.ts): Llama 3 against the public vectors
 * (../shared/testdata) and our own fixtures made by tokenizers-rs and tiktoken (test/fixtures/hf,
 * see its README), a Llama 2 style tokenizer.json built from tokenizer.model against
 * tokenizers-rs and SentencePiece, small pipelines against tokenizers-rs, streaming, speed, and
 * bad input.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  FileFormatError,
  HfTokenizer,
  InvalidArgumentError,
  SentencePieceTokenizer,
  sentencePieceToTokenizerJson,
  TextStream,
  Tokenizer,
  translateRegex,
  UnsupportedModelError,
} from '../src/index.js';
import { FIXTURES, readJsonl, shared, tempDir } from './helpers.js';

interface Row {
  text: string;
  ids: number[];
  ids_special?: number[];
  decoded: string;
  decoded_bos_skip?: string;
  category?: string;
}

const LLAMA3 = 'models/llama3-tokenizer';
const EOT = 128009;
const END_OF_TEXT = 128001;
const BEGIN_OF_TEXT = 128000;

/** Stream ids through TextStream token by token, as generation prints them. */
function stream(tok: Tokenizer, ids: readonly number[], prev = -1): string {
  const s = new TextStream();
  let out = '';
  for (const id of ids) {
    const chunk = s.push(tok.tokenBytes(prev, id));
    // never half a character: a lone surrogate would show a split
    assert.ok(!/[\ud800-\udbff]$/.test(chunk), `a chunk ends inside a character after token ${id}`);
    out += chunk;
    prev = id;
  }
  return out + s.flush();
}

let llama3Cache: HfTokenizer | undefined;
function llama3(t: TestContext): HfTokenizer | undefined {
  const dir = shared(t, LLAMA3);
  if (!dir) return undefined;
  return (llama3Cache ??= HfTokenizer.load(dir));
}

// ---- Llama 3 -------------------------------------------------------------------------------

test('Llama 3: the public vectors, exactly (ids, ids_special, decoded)', (t) => {
  const tok = llama3(t);
  const file = shared(t, 'testdata/llama3_tokenizer_public.jsonl');
  if (!tok || !file) return;
  const rows = readJsonl<Row>(file);
  assert.equal(rows.length, 27);
  let special = 0;
  for (const r of rows) {
    assert.deepEqual(tok.encode(r.text), r.ids, r.text);
    if (r.ids_special) {
      special++;
      assert.deepEqual(tok.encode(r.text, { special: true }), r.ids_special, r.text);
    } else assert.deepEqual(tok.encode(r.text, { special: true }), r.ids, r.text);
    assert.equal(tok.decode(r.ids), r.decoded);
    assert.equal(tok.decode(r.ids), r.text, 'byte-level decoding is lossless');
    assert.equal(stream(tok, r.ids), r.decoded);
  }
  assert.ok(special > 0);
});

test('Llama 3: 174 more texts, ids from tiktoken and tokenizers-rs (test/fixtures/hf)', (t) => {
  const tok = llama3(t);
  if (!tok) return;
  const rows = readJsonl<Row>(path.join(FIXTURES, 'hf/llama3_extra.jsonl'));
  assert.equal(rows.length, 174);
  for (const r of rows) {
    const what = `${r.category}: ${JSON.stringify(r.text).slice(0, 60)}`;
    assert.deepEqual(tok.encode(r.text), r.ids, what);
    assert.deepEqual(tok.encode(r.text, { special: true }), r.ids_special ?? r.ids, what);
    assert.equal(tok.decode(r.ids), r.decoded, what);
    assert.equal(stream(tok, r.ids), r.decoded, what);
  }
});

test('streaming keeps a leading U+FEFF', (t) => {
  const tok = llama3(t);
  if (!tok) return;
  const ids = tok.encode('\ufeffhello');
  assert.equal(tok.decode(ids), '\ufeffhello');
  assert.equal(stream(tok, ids), '\ufeffhello');
});

test('Llama 3: special-token text is plain text unless { special: true }; BOS/EOS/stop ids', (t) => {
  const tok = llama3(t);
  if (!tok) return;
  assert.equal(tok.vocabSize, 128256);
  assert.equal(tok.bosId, BEGIN_OF_TEXT);
  assert.equal(tok.eosId, EOT, "tokenizer_config.json's eos_token is <|eot_id|>");
  assert.deepEqual([...tok.stopIds].sort(), [END_OF_TEXT, EOT]);
  assert.equal(tok.addBos, true, 'the post-processor template adds <|begin_of_text|>');
  assert.equal(tok.addEos, false);
  assert.ok(tok.chatTemplate?.includes('<|start_header_id|>'));
  const plain = tok.encode('<|begin_of_text|>');
  assert.ok(!plain.includes(BEGIN_OF_TEXT) && plain.length > 1);
  assert.deepEqual(tok.encode('<|begin_of_text|>', { special: true }), [BEGIN_OF_TEXT]);
  assert.deepEqual(tok.encode('Hello', { bos: true, eos: true }), [BEGIN_OF_TEXT, 9906, EOT]);
  assert.equal(tok.piece(9906), 'Hello');
  assert.equal(tok.piece(1917), 'Ġworld');
  assert.equal(tok.piece(EOT), '<|eot_id|>');
  assert.equal(tok.decode([BEGIN_OF_TEXT, 9906, EOT]), '<|begin_of_text|>Hello<|eot_id|>');
  assert.equal(tok.decode([BEGIN_OF_TEXT, 9906, EOT], { skipSpecial: true }), 'Hello');
  assert.equal(stream(tok, [BEGIN_OF_TEXT, 9906, 1917, EOT]), 'Hello world', 'special tokens add nothing to a stream');
  assert.throws(() => tok.piece(128256), InvalidArgumentError);
  assert.throws(() => tok.decode([-1]), InvalidArgumentError);
});

test('Llama 3 without tokenizer_config.json: EOS is <|end_of_text|>, <|eot_id|> still stops', (t) => {
  const dir = shared(t, LLAMA3);
  if (!dir) return;
  const d = tempDir(t);
  fs.copyFileSync(path.join(dir, 'tokenizer.json'), path.join(d, 'tokenizer.json'));
  const tok = Tokenizer.load(path.join(d, 'tokenizer.json')) as HfTokenizer;
  assert.ok(tok instanceof HfTokenizer);
  assert.equal(tok.bosId, BEGIN_OF_TEXT);
  assert.equal(tok.eosId, END_OF_TEXT);
  assert.deepEqual([...tok.stopIds].sort(), [END_OF_TEXT, EOT]);
  assert.equal(tok.chatTemplate, undefined);
});

test('Llama 3: streaming never splits a character (multi-byte characters across tokens)', (t) => {
  const tok = llama3(t);
  if (!tok) return;
  // pieces of multi-byte characters (emoji, CJK) split across tokens
  const ids = tok.encode('😀🎉 中文 𠀀 عربي ' + '🇫🇷'.repeat(5));
  assert.ok(ids.length > 10);
  assert.equal(stream(tok, ids), tok.decode(ids));
  // a lone partial character at the end becomes U+FFFD on flush
  const partial = ids.slice(0, 1);
  assert.equal(stream(tok, partial), tok.decode(partial));
});

test('Llama 3: a 100 kB input encodes in well under a second', (t) => {
  const tok = llama3(t);
  if (!tok) return;
  const rows = readJsonl<Row>(path.join(FIXTURES, 'hf/llama3_extra.jsonl'));
  let text = '';
  for (let i = 0; text.length < 100_000; i++) text += rows[i % rows.length]!.text + ' ';
  text = text.slice(0, 100_000);
  const t0 = performance.now();
  const ids = tok.encode(text + '!'); // a fresh text: nothing cached for the last pre-token
  const ms = performance.now() - t0;
  assert.ok(ms < 1000, `encoding 100 kB took ${ms.toFixed(0)} ms`);
  assert.equal(tok.decode(ids), text + '!');
  // one 100 kB pre-token: every merge goes through the heap
  const word = 'abcdefghijklmnopqrstuvwxyz'.repeat(4000);
  const t1 = performance.now();
  const wordIds = tok.encode(word);
  assert.ok(performance.now() - t1 < 1000, 'a 100 kB word');
  assert.equal(tok.decode(wordIds), word);
});

// ---- Llama 2 style tokenizer.json built from tokenizer.model ---------------------------------

test('Llama 2 style tokenizer.json: tokenizers-rs ids, decode, BOS; plain text = SentencePiece', (t) => {
  const model = shared(t, 'models/tokenizer.model');
  if (!model) return;
  const sp = SentencePieceTokenizer.load(model);
  const json = sentencePieceToTokenizerJson(sp);
  const [header, ...rows] = readJsonl<Row & { tokenizer_json_sha256?: string }>(path.join(FIXTURES, 'hf/llama2_hf.jsonl'));
  assert.equal(createHash('sha256').update(JSON.stringify(json)).digest('hex'), header!.tokenizer_json_sha256, 'the fixture was made from this very tokenizer.json');
  const d = tempDir(t);
  fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(json));
  const tok = Tokenizer.load(d) as HfTokenizer;
  assert.ok(tok instanceof HfTokenizer);
  assert.equal(tok.vocabSize, 32000);
  assert.equal(tok.bosId, 1);
  assert.equal(tok.eosId, 2);
  assert.equal(tok.addBos, true);
  assert.equal(rows.length, 174);
  let withSpecialText = 0;
  for (const r of rows) {
    const what = `${r.category}: ${JSON.stringify(r.text).slice(0, 60)}`;
    assert.deepEqual(tok.encode(r.text, { special: true }), r.ids, what); // tokenizers' default
    assert.deepEqual(tok.encode(r.text, { bos: true, special: true }), [1, ...r.ids], what);
    assert.equal(tok.decode(r.ids), r.decoded, what);
    assert.equal(tok.decode([1, ...r.ids], { skipSpecial: true }), r.decoded_bos_skip ?? r.decoded, what);
    // by default "<s>" in the text is text, exactly as SentencePiece encodes it
    const plain = tok.encode(r.text);
    assert.deepEqual(plain, sp.encode(r.text), what);
    if (JSON.stringify(plain) !== JSON.stringify(r.ids)) withSpecialText++;
    // streaming after BOS: the dummy-prefix space is dropped, as SentencePiece's decode does
    if (!r.text.startsWith('\ufeff') && !r.ids.some((id) => id <= 2)) assert.equal(stream(tok, r.ids, 1), r.decoded_bos_skip ?? r.decoded, what);
  }
  assert.equal(withSpecialText, 1);
});

// ---- small pipelines against tokenizers-rs -------------------------------------------------

test('pipeline parts (normalizers, pre-tokenizers, added-token options, unk, byte fallback, decoders) as tokenizers-rs', () => {
  const cases = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'hf/pipeline_cases.json'), 'utf8')) as Record<
    string,
    { tokenizer: Record<string, unknown>; rows: Array<{ text: string; ids: number[]; ids_add_special: number[]; decoded: string; decoded_skip: string }> }
  >;
  assert.deepEqual(Object.keys(cases), ['metaspace', 'bytelevel', 'fallback', 'wordpieceish']);
  for (const [name, c] of Object.entries(cases)) {
    const tok = HfTokenizer.parse(c.tokenizer, { path: name });
    for (const r of c.rows) {
      const what = `${name}: ${JSON.stringify(r.text)}`;
      assert.deepEqual(tok.encode(r.text, { special: true }), r.ids, what);
      // add_special_tokens: what the template adds, through our explicit flags
      assert.deepEqual(tok.encode(r.text, { special: true, bos: tok.addBos, eos: tok.addEos }), r.ids_add_special, what);
      assert.equal(tok.decode(r.ids), r.decoded, what);
      assert.equal(tok.decode(r.ids, { skipSpecial: true }), r.decoded_skip, what);
    }
  }
  // special text stays text by default; a non-special added token ([M]) always matches
  const meta = HfTokenizer.parse(cases.metaspace!.tokenizer);
  assert.deepEqual(meta.encode('ab<sep>ab'), meta.encode('ab<sep>ab').filter((id) => id !== 8));
  assert.ok(!meta.encode('ab<sep>ab').includes(8));
  assert.ok(meta.encode('a [M] b').includes(9));
  // merges written as pairs or as "a b" strings mean the same
  const spec = structuredClone(cases.metaspace!.tokenizer) as { model: { merges: unknown[] } };
  spec.model.merges = (spec.model.merges as string[]).map((m) => m.split(' '));
  const pairs = HfTokenizer.parse(spec);
  for (const r of cases.metaspace!.rows) assert.deepEqual(pairs.encode(r.text, { special: true }), r.ids);
});

test('streaming with byte fallback: "<0xNN>" pieces give single bytes, characters are never split', () => {
  const cases = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'hf/pipeline_cases.json'), 'utf8'));
  const tok = HfTokenizer.parse(cases.fallback.tokenizer);
  const ids = tok.encode('héllo 😀 ½');
  assert.deepEqual(Array.from(tok.tokenBytes(-1, ids[1]!)), [0xc3]);
  // the Strip decoder's right side is unknown while streaming: compare without the text's end
  assert.equal(stream(tok, ids), tok.decode(ids));
});

// ---- regexes -------------------------------------------------------------------------------

test('translateRegex: Unicode \\s as Oniguruma / Rust regex, (?i:…) groups, refusals', () => {
  /** Whether the whole of `s` matches (the translated regexes are global: reset lastIndex). */
  const full = (pattern: string, s: string) => {
    const re = translateRegex(`^(?:${pattern})$`);
    re.lastIndex = 0;
    return re.test(s);
  };
  for (const w of ['\u0085', '\u3000', '\u2028', '\u00a0', '\u1680', '\t', '\v']) assert.ok(full('\\s', w), `\\s matches U+${w.codePointAt(0)!.toString(16)}`);
  assert.ok(!full('\\s', '\ufeff'), "U+FEFF is not White_Space (JavaScript's \\s says it is)");
  assert.ok(!full('\\s', '\u200b'));
  assert.ok(full('\\S', '\ufeff'));
  assert.ok(full("(?i:'s|'ll)", "'LL") && full("(?i:'s|'ll)", "'S") && full("(?i:'s|'ll)", "'lL"));
  assert.ok(!full("(?i:'s)x", "'SX"), 'case-insensitivity ends with its group');
  assert.ok(full('\\p{Han}+', '中文'));
  assert.ok(full('[^\\s\\p{L}]', '!') && !full('[^\\s\\p{L}]', '\u0085'));
  assert.ok(full('\\d+', '٣٤') && full('\\w+', 'é_1'));
  assert.ok(full("\\'s\\x{41}", "'sA"), 'identity escapes and \\x{…}');
  assert.throws(() => translateRegex('a++'), (e: unknown) => e instanceof UnsupportedModelError && /possessive/.test(e.message));
  assert.throws(() => translateRegex('(?>ab)'), UnsupportedModelError);
});

test('lone surrogates encode as U+FFFD', (t) => {
  const tok = llama3(t);
  if (!tok) return;
  assert.deepEqual(tok.encode('a\ud800b'), tok.encode('a\ufffdb'));
});

// ---- loading and bad input -----------------------------------------------------------------

function writeJson(t: TestContext, content: string | object): string {
  const p = path.join(tempDir(t), 'tokenizer.json');
  fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

const TINY = {
  model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a b'] },
  pre_tokenizer: null,
  decoder: null,
  added_tokens: [],
};

test('Tokenizer.load: a directory prefers tokenizer.json, else tokenizer.model', (t) => {
  const model = shared(t, 'models/tokenizer.model');
  if (!model) return;
  const d = tempDir(t);
  fs.copyFileSync(model, path.join(d, 'tokenizer.model'));
  assert.ok(Tokenizer.load(d) instanceof SentencePieceTokenizer);
  fs.writeFileSync(path.join(d, 'tokenizer.json'), ' \n' + JSON.stringify(TINY)); // leading whitespace is fine
  const tok = Tokenizer.load(d);
  assert.ok(tok instanceof HfTokenizer);
  assert.deepEqual(tok.encode('abab'), [2, 2]);
  assert.equal(tok.bosId, -1);
  assert.throws(() => tok.encode('a', { bos: true }), InvalidArgumentError);
  const empty = tempDir(t);
  assert.throws(() => Tokenizer.load(empty), (e: unknown) => e instanceof FileFormatError && /tokenizer\.json or tokenizer\.model/.test(e.message));
});

test('bad tokenizer.json: not JSON, unknown types named, merges with unknown tokens', (t) => {
  assert.throws(() => Tokenizer.load(writeJson(t, '{"model": {')), (e: unknown) => e instanceof FileFormatError && /not valid JSON/.test(e.message));
  assert.throws(() => Tokenizer.load(writeJson(t, '[1, 2]')), FileFormatError);
  const bad = (patch: Record<string, unknown>) => ({ ...TINY, ...patch });
  assert.throws(
    () => Tokenizer.load(writeJson(t, bad({ model: { type: 'WordPiece', vocab: {} } }))),
    (e: unknown) => e instanceof UnsupportedModelError && /model type: "WordPiece"/.test(e.message),
  );
  assert.throws(
    () => HfTokenizer.parse(bad({ pre_tokenizer: { type: 'BertPreTokenizer' } })),
    (e: unknown) => e instanceof UnsupportedModelError && /pre-tokenizer type: "BertPreTokenizer"/.test(e.message),
  );
  assert.throws(() => HfTokenizer.parse(bad({ normalizer: { type: 'Precompiled' } })), (e: unknown) => e instanceof UnsupportedModelError && /normalizer type: "Precompiled"/.test(e.message));
  assert.throws(() => HfTokenizer.parse(bad({ decoder: { type: 'CTC' } })), (e: unknown) => e instanceof UnsupportedModelError && /decoder type: "CTC"/.test(e.message));
  assert.throws(() => HfTokenizer.parse(bad({ post_processor: { type: 'Magic' } })), (e: unknown) => e instanceof UnsupportedModelError && /"Magic"/.test(e.message));
  assert.throws(
    () => HfTokenizer.parse(bad({ model: { type: 'BPE', vocab: { a: 0, b: 1, ab: 2 }, merges: ['a c'] } })),
    (e: unknown) => e instanceof FileFormatError && /merge 0 .*"c", which is not in the vocabulary/.test(e.message),
  );
  assert.throws(
    () => HfTokenizer.parse(bad({ model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: ['a b'] } })),
    (e: unknown) => e instanceof FileFormatError && /"ab", which is not in the vocabulary/.test(e.message),
  );
  assert.throws(() => HfTokenizer.parse(bad({ model: { type: 'BPE', vocab: { a: 0 }, merges: ['a b c'] } })), FileFormatError);
  assert.throws(() => HfTokenizer.parse(bad({ model: { type: 'BPE', vocab: { a: 0 }, merges: [], unk_token: '<unk>' } })), /unk_token "<unk>" is not in the vocabulary/);
  assert.throws(() => HfTokenizer.parse(bad({ model: { type: 'BPE', vocab: { a: -1 }, merges: [] } })), FileFormatError);
  assert.throws(() => HfTokenizer.parse(bad({ model: { type: 'BPE', vocab: {}, merges: [], dropout: 0.1 } })), UnsupportedModelError);
  assert.throws(() => HfTokenizer.parse(bad({ pre_tokenizer: { type: 'Split', pattern: { Regex: 'a++' }, behavior: 'Isolated' } })), UnsupportedModelError);
  assert.throws(() => HfTokenizer.parse(bad({ pre_tokenizer: { type: 'Split', pattern: { Regex: 'a' }, behavior: 'Sideways' } })), /Split\.behavior/);
  // a bad tokenizer_config.json beside it is named
  const p = writeJson(t, TINY);
  fs.writeFileSync(path.join(path.dirname(p), 'tokenizer_config.json'), 'nope');
  assert.throws(() => Tokenizer.load(p), (e: unknown) => e instanceof FileFormatError && /tokenizer_config\.json/.test(e.message));
});

test('a llama2.c tokenizer.bin whose first byte is "{" is still read as llama2.c', (t) => {
  // max_token_length = 123 (7b 00 00 00), then three tokens
  const parts: number[] = [0x7b, 0, 0, 0];
  for (const piece of ['<unk>', '\n<s>\n', '\n</s>\n']) {
    const b = Buffer.from(piece);
    const rec = Buffer.alloc(8);
    rec.writeFloatLE(0, 0);
    rec.writeInt32LE(b.length, 4);
    parts.push(...rec, ...b);
  }
  const p = path.join(tempDir(t), 'tokenizer.bin');
  fs.writeFileSync(p, Uint8Array.from(parts));
  assert.equal(Tokenizer.load(p).vocabSize, 3);
});
