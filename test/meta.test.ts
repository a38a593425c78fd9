/**
 * Meta's side: checkpoints (f32, bf16, 2-way model-parallel), `generate()` against Meta's own
 * outputs, the Llama 2 chat format against Meta's `chat_completion` encoding, and bad input.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  ContextOverflowError, encodeDialog, FileFormatError, generateText, InvalidArgumentError, isUnsafeDialog, Llama, loadModel,
  metaHiddenDim, metaSampleTopP, readMetaCheckpoint, Session, Tokenizer, XorShiftRng, type Dialog,
} from '../src/index.js';
import { readJsonl, runCli, shared, tempDir } from './helpers.js';

interface MetaCase {
  case: string;
  prompt_tokens: number[][];
  max_gen_len: number;
  temperature: number;
  top_p: number;
  logprobs: boolean;
  echo: boolean;
  out_tokens: number[][];
  out_logprobs: number[][] | null;
  max_seq_len: number;
  max_batch_size: number;
}

test("generate() equals Meta's own generate(): tokens exact, logprobs within 1e-4 (meta-f32 and the llama2.c file)", async (t) => {
  const ref = shared(t, 'testdata/meta_generate_public.jsonl');
  const dir = shared(t, 'models/stories260K/meta-f32');
  const bin = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ref || !dir || !bin || !tok) return;
  const cases = readJsonl<MetaCase>(ref);
  assert.equal(cases.length, 3);
  for (const ckptDir of [dir, bin]) {
    for (const c of cases) {
      const llama = await Llama.build({ ckptDir, tokenizerPath: tok, maxSeqLen: c.max_seq_len, maxBatchSize: c.max_batch_size });
      const r = await llama.generate(c.prompt_tokens, { maxGenLen: c.max_gen_len, temperature: c.temperature, topP: c.top_p, logprobs: c.logprobs, echo: c.echo });
      assert.deepEqual(r.tokens, c.out_tokens, `${c.case} tokens (${path.basename(ckptDir)})`);
      if (c.out_logprobs) {
        assert.ok(r.logprobs);
        c.out_logprobs.forEach((row, i) => {
          assert.equal(r.logprobs![i]!.length, row.length);
          row.forEach((v, j) => assert.ok(Math.abs(v - r.logprobs![i]![j]!) < 1e-4, `${c.case} logprob [${i}][${j}]: ${r.logprobs![i]![j]} vs ${v}`));
        });
      } else assert.equal(r.logprobs, undefined);
    }
  }
});

test('meta-f32 runs exactly as stories260K.bin: same greedy output as run.c', async (t) => {
  const dir = shared(t, 'models/stories260K/meta-f32');
  const tokPath = shared(t, 'models/tok512.bin');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  if (!dir || !tokPath || !ref) return;
  const model = readMetaCheckpoint(dir, { maxSeqLen: 512 });
  assert.equal(model.config.hiddenDim, 172);
  assert.equal(model.config.sharedClassifier, false);
  const tok = Tokenizer.load(tokPath);
  for (const c of readJsonl<{ prompt: string; output: string }>(ref)) {
    const r = await generateText(model, tok, { prompt: c.prompt, temperature: 0 });
    assert.equal(r.text + '\n', c.output);
  }
});

test('meta-bf16 keeps bf16 weights; the 2-way model-parallel shards join to exactly the same model', (t) => {
  const bf16 = shared(t, 'models/stories260K/meta-bf16');
  const mp2 = shared(t, 'models/stories260K/meta-mp2');
  if (!bf16 || !mp2) return;
  const a = readMetaCheckpoint(bf16, { maxSeqLen: 64 });
  const b = readMetaCheckpoint(mp2, { maxSeqLen: 64 });
  assert.equal(a.weights.layers[0]!.wq.type, 'bf16');
  assert.match(b.source.format, /2 shards, bf16/);
  const sa = new Session(a);
  const sb = new Session(b);
  for (const [pos, token] of [1, 403, 407, 261, 378, 432, 383, 286].entries()) {
    assert.deepEqual(Float32Array.from(sb.forward(token, pos)), Float32Array.from(sa.forward(token, pos)), `position ${pos}`);
  }
});

test("Meta's FFN width rule: 172 for stories260K, 11008 for Llama-2-7B, 28672 for Llama-2-70B", () => {
  assert.equal(metaHiddenDim({ dim: 64, multiple_of: 4, n_layers: 1, n_heads: 1, vocab_size: 1, norm_eps: 1e-5 }), 172);
  assert.equal(metaHiddenDim({ dim: 4096, multiple_of: 256, n_layers: 1, n_heads: 1, vocab_size: 1, norm_eps: 1e-5 }), 11008);
  assert.equal(metaHiddenDim({ dim: 8192, multiple_of: 4096, ffn_dim_multiplier: 1.3, n_layers: 1, n_heads: 1, vocab_size: 1, norm_eps: 1e-5 }), 28672);
});

interface ChatCase {
  dialog: Dialog;
  prompt_tokens: number[];
  unsafe: boolean;
}

test("encodeDialog equals Meta's chat_completion prompt tokens (tokenizer.model)", (t) => {
  const ref = shared(t, 'testdata/meta_chat_prompts_public.jsonl');
  const tm = shared(t, 'models/tokenizer.model');
  if (!ref || !tm) return;
  const tok = Tokenizer.load(tm);
  for (const c of readJsonl<ChatCase>(ref)) {
    assert.deepEqual(encodeDialog(tok, c.dialog, { format: 'llama2' }), c.prompt_tokens, JSON.stringify(c.dialog));
    assert.equal(isUnsafeDialog(c.dialog), c.unsafe);
  }
});

test('encodeDialog refuses dialogs Meta refuses, with typed errors', (t) => {
  const tokPath = shared(t, 'models/tokenizer.bin');
  if (!tokPath) return;
  const tok = Tokenizer.load(tokPath);
  const bad: Dialog[] = [
    [],
    [{ role: 'assistant', content: 'hi' }],
    [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }],
    [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }],
    [{ role: 'system', content: 's' }],
    [{ role: 'user', content: 'a' }, { role: 'system', content: 's' }, { role: 'user', content: 'b' }],
  ];
  for (const d of bad) assert.throws(() => encodeDialog(tok, d), InvalidArgumentError, JSON.stringify(d));
  assert.deepEqual(
    encodeDialog(tok, [{ role: 'user', content: '  \u2003hi\t\n' }]),
    tok.encode('[INST] hi [/INST]', { bos: true }),
    "contents are stripped as Python's str.strip()",
  );
});

test('chatCompletion answers unsafe dialogs with the error text; sampling is reproducible with a seed', async (t) => {
  const dir = shared(t, 'models/stories260K/meta-f32');
  const tok = shared(t, 'models/tok512.bin');
  if (!dir || !tok) return;
  const llama = await Llama.build({ ckptDir: dir, tokenizerPath: tok, maxSeqLen: 256, maxBatchSize: 2 });
  const dialogs: Dialog[] = [[{ role: 'user', content: 'Tell me a story' }], [{ role: 'user', content: 'Unsafe [INST] tag' }]];
  const r = await llama.chatCompletion(dialogs, { maxGenLen: 20, temperature: 0.8, seed: 5 });
  assert.equal(r[1]!.generation.content, 'Error: special tags are not allowed as part of the prompt.');
  assert.equal(r[0]!.generation.role, 'assistant');
  const again = await llama.chatCompletion(dialogs, { maxGenLen: 20, temperature: 0.8, seed: 5 });
  assert.deepEqual(again, r);
  const other = await llama.textCompletion(['Once upon a time'], { maxGenLen: 30, temperature: 1, seed: 6, logprobs: true });
  const other2 = await llama.textCompletion(['Once upon a time'], { maxGenLen: 30, temperature: 1, seed: 7, logprobs: true });
  assert.notDeepEqual(other, other2);
  assert.equal(other[0]!.tokens!.length, other[0]!.logprobs!.length);
});

test("metaSampleTopP: Meta's mask keeps tokens until the mass before them exceeds p", () => {
  // probabilities 0.5, 0.3, 0.15, 0.05 (logits = log p at temperature 1)
  const logits = Float32Array.from([0.15, 0.5, 0.05, 0.3].map(Math.log));
  // p = 0.6: cumulative before each sorted token: 0, 0.5, 0.8 → keep {1 (0.5), 3 (0.3)}, mass 0.8
  assert.equal(metaSampleTopP(logits, 4, 1, 0.6, 0.0), 1);
  assert.equal(metaSampleTopP(logits, 4, 1, 0.6, 0.62), 1); // r = 0.496 < 0.5
  assert.equal(metaSampleTopP(logits, 4, 1, 0.6, 0.63), 3); // r = 0.504
  assert.equal(metaSampleTopP(logits, 4, 1, 0.6, 0.9999), 3);
  // p = 0.85: keeps 0.5, 0.3, 0.15 (mass before 0.05 is 0.95 > 0.85)
  assert.equal(metaSampleTopP(logits, 4, 1, 0.85, 0.99), 0);
  // a seeded generator gives the same draws
  const a = new XorShiftRng(3);
  const b = new XorShiftRng(3);
  assert.equal(metaSampleTopP(logits, 4, 0.7, 0.9, a.nextF32()), metaSampleTopP(logits, 4, 0.7, 0.9, b.nextF32()));
});

test('generate refuses too large a batch, too long a prompt, empty prompts and bad ids', async (t) => {
  const bin = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!bin || !tok) return;
  const llama = await Llama.build({ ckptDir: bin, tokenizerPath: tok, maxSeqLen: 16, maxBatchSize: 2 });
  await assert.rejects(llama.generate([[1], [1], [1]], { maxGenLen: 4 }), InvalidArgumentError);
  await assert.rejects(llama.generate([new Array(17).fill(1)], { maxGenLen: 4 }), ContextOverflowError);
  await assert.rejects(llama.generate([[]], { maxGenLen: 4 }), InvalidArgumentError);
  await assert.rejects(llama.generate([[1, 9999]], { maxGenLen: 4 }), InvalidArgumentError);
  await assert.rejects(llama.generate([[1]], { maxGenLen: -1 }), InvalidArgumentError);
  await assert.rejects(Llama.build({ ckptDir: bin, tokenizerPath: tok, maxSeqLen: 4096, maxBatchSize: 1 }), InvalidArgumentError);
  // total_len = min(max_seq_len, max_gen_len + longest prompt): capped here at 16
  const r = await llama.generate([[1, 403, 407]], { maxGenLen: 100, temperature: 0 });
  assert.equal(r.tokens[0]!.length, 13);
});

function copyDir(from: string, to: string, skip: string[] = []): void {
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(from)) if (!skip.includes(f)) fs.copyFileSync(path.join(from, f), path.join(to, f));
}

test('bad Meta checkpoints: a missing shard, shards that disagree, params.json that disagrees or is broken', (t) => {
  const mp2 = shared(t, 'models/stories260K/meta-mp2');
  const f32 = shared(t, 'models/stories260K/meta-f32');
  if (!mp2 || !f32) return;
  const dir = tempDir(t);
  const fails = (d: string, re: RegExp, what: string) =>
    assert.throws(() => loadModel(d, { maxSeqLen: 64 }), (e: unknown) => e instanceof FileFormatError && re.test(e.message), what);

  const missing = path.join(dir, 'missing');
  copyDir(mp2, missing, ['consolidated.00.pth']);
  fails(missing, /consolidated\.00\.pth: missing shard/, 'missing shard');

  const mixed = path.join(dir, 'mixed'); // rank 1 taken from an f32, unsplit checkpoint
  copyDir(mp2, mixed, ['consolidated.01.pth']);
  fs.copyFileSync(path.join(f32, 'consolidated.00.pth'), path.join(mixed, 'consolidated.01.pth'));
  fails(mixed, /shards must agree|shape/, 'inconsistent shards');

  const params = JSON.parse(fs.readFileSync(path.join(f32, 'params.json'), 'utf8'));
  for (const [name, patch, re] of [
    ['dim', { dim: 32, n_heads: 4, n_kv_heads: 2 }, /params\.json disagrees with the tensors/],
    ['layers', { n_layers: 6 }, /missing tensor layers\.5/],
    ['multiple_of', { multiple_of: 64 }, /feed_forward.*params\.json disagrees/],
    ['type', { dim: '64' }, /"dim" must be an integer/],
  ] as const) {
    const d = path.join(dir, name);
    copyDir(f32, d);
    fs.writeFileSync(path.join(d, 'params.json'), JSON.stringify({ ...params, ...patch }));
    fails(d, re, name);
  }
  const broken = path.join(dir, 'broken');
  copyDir(f32, broken);
  fs.writeFileSync(path.join(broken, 'params.json'), '{"dim": 64,');
  fails(broken, /not valid JSON/, 'broken json');
  const noVocab = path.join(dir, 'novocab');
  copyDir(f32, noVocab);
  fs.writeFileSync(path.join(noVocab, 'params.json'), JSON.stringify({ ...params, vocab_size: -1 }));
  fails(noVocab, /vocab_size is -1/, 'vocab -1 without a tokenizer');
  assert.equal(loadModel(noVocab, { vocabSize: 512, maxSeqLen: 64 }).config.vocabSize, 512);
});

test('llamats complete prints like example_text_completion.py; --json gives tokens and logprobs; bad flags fail cleanly', (t) => {
  const dir = shared(t, 'models/stories260K/meta-f32');
  const tok = shared(t, 'models/tok512.bin');
  if (!dir || !tok) return;
  const base = ['complete', '--ckpt_dir', dir, '--tokenizer_path', tok, '--temperature', '0', '--max_gen_len', '12'];
  const r = runCli([...base, 'Once upon a time', 'The cat']);
  assert.equal(r.status, 0, r.stderr);
  const blocks = r.stdout.split('\n\n==================================\n\n');
  assert.equal(blocks.length, 3);
  assert.match(blocks[0]!, /^Once upon a time\n> \S/);
  assert.match(blocks[1]!, /^The cat\n> /);
  const j = runCli([...base, '--json', 'Once upon a time']);
  const out = JSON.parse(j.stdout) as Array<{ prompt: string; generation: string; tokens: string[]; logprobs: number[] }>;
  assert.equal(out[0]!.tokens.length, 12);
  assert.equal(out[0]!.logprobs.length, 12);
  assert.ok(out[0]!.logprobs.every((x) => x <= 0));
  assert.equal(blocks[0]!.split('\n> ')[1], out[0]!.generation);
  for (const [args, re] of [
    [['complete', '--tokenizer_path', tok], /--ckpt_dir/],
    [['complete', '--ckpt_dir', dir, '--tokenizer_path', tok, '--top_p', '2'], /--top_p/],
    [['chat', '--ckpt_dir', dir, '--tokenizer_path', tok, '--dialogs', '/nonexistent.json'], /--dialogs/],
    [['complete', '--ckpt_dir', dir, '--tokenizer_path', tok, '--kv-cache', 'f8'], /--kv-cache must be f32 or f16; got 'f8'/],
    [['chat', '--ckpt_dir', dir, '--tokenizer_path', tok, '--threads', '0'], /--threads must be ≥ 1; got 0/],
  ] as const) {
    const b = runCli([...args]);
    assert.equal(b.status, 2, b.stderr);
    assert.match(b.stderr, re);
    assert.equal(b.stdout, '');
  }
});

test('a checkpoint whose pickle names a forbidden global is refused through the CLI, without running it', (t) => {
  const f32 = shared(t, 'models/stories260K/meta-f32');
  const tok = shared(t, 'models/tok512.bin');
  if (!f32 || !tok) return;
  const dir = path.join(tempDir(t), 'evil');
  copyDir(f32, dir);
  // swap collections.OrderedDict for subprocess.check_output: same length, so the zip stays valid
  const file = path.join(dir, 'consolidated.00.pth');
  const bytes = fs.readFileSync(file);
  const at = bytes.indexOf('collections\nOrderedDict');
  assert.ok(at > 0);
  bytes.write('subprocess\ncheck_output', at, 'latin1');
  fs.writeFileSync(file, bytes);
  const r = runCli(['complete', '--ckpt_dir', dir, '--tokenizer_path', tok, 'Hello']);
  assert.equal(r.status, 4, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^llamats: .*consolidated\.00\.pth: .*subprocess\.check_output.*not on llamats' allowlist.*\n$/);
});
