/**
 * Golden tests against llama2.c's run.c: greedy outputs from ../shared/testdata (made by run.c)
 * and seeded sampling and chat outputs from test/fixtures (made by run.c, see its README).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { generateText, loadModel, Tokenizer } from '../src/index.js';
import { FIXTURES, readJsonl, ROOT, runCli, shared } from './helpers.js';

interface Greedy {
  prompt: string;
  steps: number;
  temperature: number;
  num_prompt_tokens: number;
  token_ids: number[];
  output: string;
}

test('greedy generation equals run.c: token ids and text (library)', async (t) => {
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ref || !ckpt || !tokPath) return;
  const model = loadModel(ckpt);
  const tok = Tokenizer.load(tokPath);
  const cases = readJsonl<Greedy>(ref);
  assert.equal(cases.length, 3);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.prompt, { bos: true }), c.token_ids.slice(0, c.num_prompt_tokens), `prompt tokens of ${c.prompt}`);
    const r = await generateText(model, tok, { prompt: c.prompt, steps: c.steps, temperature: c.temperature });
    // run.c's list ends with the BOS that stopped it; ours holds the tokens before it
    const expected = c.token_ids.at(-1) === 1 ? c.token_ids.slice(0, -1) : c.token_ids;
    assert.deepEqual(r.tokens, expected, `tokens of ${c.prompt}`);
    assert.equal(r.stopReason, c.token_ids.at(-1) === 1 ? 'bos' : 'steps');
    assert.equal(r.text + '\n', c.output, `text of ${c.prompt}`);
  }
});

test('greedy generation equals run.c: stdout of llamats run, and the tok/s line on stderr', (t) => {
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ref || !ckpt || !tokPath) return;
  for (const c of readJsonl<Greedy>(ref)) {
    const r = runCli(['run', ckpt, '-z', tokPath, '-t', '0', '-n', String(c.steps), '-i', c.prompt]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, c.output);
    const lines = r.stderr.trimEnd().split('\n');
    assert.match(lines.at(-1)!, /^achieved tok\/s: \d+\.\d{6}$/);
    // threads never change the output; an f16 KV cache runs (its logits differ by a half's rounding)
    const two = runCli(['run', ckpt, '-z', tokPath, '-t', '0', '-n', String(c.steps), '-i', c.prompt, '--threads', '2']);
    assert.equal(two.stdout, c.output);
    const half = runCli(['run', ckpt, '-z', tokPath, '-t', '0', '-n', String(c.steps), '-i', c.prompt, '--kv-cache', 'f16']);
    assert.equal(half.status, 0, half.stderr);
    assert.ok(half.stdout.startsWith(c.prompt), half.stdout);
  }
});

test("the README's main command: `npx llamats run …` from the project (the built CLI is executable) prints run.c's greedy text", (t) => {
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ref || !ckpt || !tokPath) return;
  const c = readJsonl<Greedy>(ref)[0]!;
  // `npm exec --no` is npx without asking to install: it runs this package's own bin, as npx does
  const r = spawnSync('npm', ['exec', '--no', '--', 'llamats', 'run', ckpt, '-z', tokPath, '-t', '0', '-n', String(c.steps), '-i', c.prompt], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, c.output);
});

interface Sampled {
  prompt: string | null;
  temperature: number;
  topp: number;
  seed: number;
  steps: number;
  token_ids: number[];
  output: string;
}

test('seeded sampling equals run.c for every temperature/top-p/seed case (library and CLI)', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ckpt || !tokPath) return;
  const model = loadModel(ckpt);
  const tok = Tokenizer.load(tokPath);
  const cases = readJsonl<Sampled>(path.join(FIXTURES, 'runc_stories260K_sampled.jsonl'));
  assert.ok(cases.length >= 14);
  const settings = new Set(cases.map((c) => `${c.temperature}/${c.topp}`));
  assert.ok(settings.has('0.8/0') && settings.has('1/0.9'), 'covers multinomial and top-p');
  for (const c of cases) {
    const opts = { steps: c.steps, temperature: c.temperature, topp: c.topp, seed: c.seed, ...(c.prompt !== null ? { prompt: c.prompt } : {}) };
    const r = await generateText(model, tok, opts);
    const expected = c.token_ids.at(-1) === 1 ? c.token_ids.slice(0, -1) : c.token_ids;
    assert.deepEqual(r.tokens, expected, `tokens for ${JSON.stringify(opts)}`);
    assert.equal(r.text + '\n', c.output, `text for ${JSON.stringify(opts)}`);
  }
  // and through the CLI, for two of them
  for (const c of cases.slice(0, 2)) {
    const args = ['run', ckpt, '-z', tokPath, '-s', String(c.seed), '-t', String(c.temperature), '-p', String(c.topp), '-n', String(c.steps)];
    if (c.prompt !== null) args.push('-i', c.prompt);
    const r = runCli(args);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, c.output);
  }
});

interface Chat {
  args: string[];
  stdin: string;
  output: string;
}

test('chat mode prints what run.c prints for the same system prompt, user prompt and input', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  if (!ckpt || !tokPath) return;
  const cases = readJsonl<Chat>(path.join(FIXTURES, 'runc_stories260K_chat.jsonl'));
  assert.ok(cases.length >= 3);
  for (const c of cases) {
    const args = c.args.map((a) => (a === 'stories260K.bin' ? ckpt : a === 'tok512.bin' ? tokPath : a));
    const r = runCli(['run', ...args], { input: c.stdin });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, c.output, `chat ${c.args.join(' ')}`);
  }
});
