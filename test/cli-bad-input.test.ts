/**
 * Bad input to `llamats run`: every case exits non-zero with one line on stderr that names the
 * file or flag and the problem, no stack trace, and no generated text on stdout.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { EXIT_CODES } from '../src/index.js';
import { runCli, seededRandom, shared, tempDir } from './helpers.js';

function assertCleanFailure(r: ReturnType<typeof runCli>, code: number, mentions: Array<string | RegExp>, what: string): void {
  assert.equal(r.status, code, `${what}: exit status (stderr: ${r.stderr})`);
  assert.equal(r.stdout, '', `${what}: no output on stdout`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `${what}: one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^llamats: /, what);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
  for (const m of mentions) {
    if (typeof m === 'string') assert.ok(lines[0]!.includes(m), `${what}: '${m}' in: ${lines[0]}`);
    else assert.match(lines[0]!, m, what);
  }
}

function header(ints: number[]): Buffer {
  return Buffer.from(new Int32Array(ints).buffer);
}

test('bad checkpoints: missing, empty, truncated, garbage, bad header fields, unsupported version', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  const dir = tempDir(t);
  const good = fs.readFileSync(ckpt);
  const rnd = seededRandom(7);
  const files: Record<string, Buffer> = {
    'empty.bin': Buffer.alloc(0),
    'tiny.bin': Buffer.from([1, 2, 3]),
    'truncated.bin': good.subarray(0, good.length >> 1),
    'trailing.bin': Buffer.concat([good, Buffer.alloc(10)]),
    'garbage.bin': Buffer.from(Array.from({ length: 100_000 }, () => Math.floor(rnd() * 256))),
    'zero-dim.bin': Buffer.concat([header([0, 172, 5, 8, 4, 512, 512]), good.subarray(28)]),
    'negative-layers.bin': Buffer.concat([header([64, 172, -5, 8, 4, 512, 512]), good.subarray(28)]),
    'absurd-dim.bin': Buffer.concat([header([1 << 30, 172, 5, 8, 4, 512, 512]), good.subarray(28)]),
    'dim-not-divisible.bin': Buffer.concat([header([64, 172, 5, 7, 7, 512, 512]), good.subarray(28)]),
    'kv-gt-heads.bin': Buffer.concat([header([64, 172, 5, 8, 16, 512, 512]), good.subarray(28)]),
    'vocab-2e30.bin': Buffer.concat([header([64, 172, 5, 8, 4, 1 << 30, 512]), good.subarray(28)]),
  };
  const expect: Record<string, RegExp> = {
    'empty.bin': /empty/,
    'tiny.bin': /3 bytes/,
    'truncated.bin': /truncated/,
    'trailing.bin': /trailing/,
    'garbage.bin': /header|expected/,
    'zero-dim.bin': /dim is 0/,
    'negative-layers.bin': /nLayers is -5/,
    'absurd-dim.bin': /dim is 1073741824, above/,
    'dim-not-divisible.bin': /not divisible by nHeads 7/,
    'kv-gt-heads.bin': /nKvHeads 16 must divide nHeads 8/,
    'vocab-2e30.bin': /vocabSize is 1073741824, above/,
  };
  for (const [name, bytes] of Object.entries(files)) {
    const p = path.join(dir, name);
    fs.writeFileSync(p, bytes);
    assertCleanFailure(runCli(['run', p, '-z', tok]), EXIT_CODES.BAD_FORMAT, [p, expect[name]!], name);
  }
  // a versioned header with an unknown version
  const v9 = path.join(dir, 'v9.bin');
  const h = Buffer.alloc(256);
  h.writeUInt32LE(0x616b3432, 0);
  h.writeInt32LE(9, 4);
  fs.writeFileSync(v9, h);
  assertCleanFailure(runCli(['run', v9, '-z', tok]), EXIT_CODES.UNSUPPORTED_MODEL, [v9, 'version 9'], 'v9');
  const missing = path.join(dir, 'nope.bin');
  assertCleanFailure(runCli(['run', missing, '-z', tok]), EXIT_CODES.FILE_NOT_FOUND, [missing, 'no such file'], 'missing');
  assertCleanFailure(runCli(['run', dir, '-z', tok]), EXIT_CODES.UNSUPPORTED_MODEL, [dir, 'directory'], 'directory');
  const gguf = path.join(dir, 'm.gguf');
  fs.writeFileSync(gguf, Buffer.from('GGUF\x03\x00\x00\x00'));
  assertCleanFailure(runCli(['run', gguf, '-z', tok]), EXIT_CODES.BAD_FORMAT, [gguf, 'truncated'], 'gguf header cut short');
});

test('bad tokenizers: wrong vocabulary for the model, missing, garbage', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const big = shared(t, 'models/tokenizer.bin');
  if (!ckpt || !big) return;
  const dir = tempDir(t);
  assertCleanFailure(runCli(['run', ckpt, '-z', big]), EXIT_CODES.TOKENIZER_MISMATCH, [big, '32000', '512', '-z'], 'mismatch');
  const missing = path.join(dir, 'tok.bin');
  assertCleanFailure(runCli(['run', ckpt, '-z', missing]), EXIT_CODES.FILE_NOT_FOUND, [missing], 'missing tokenizer');
  fs.writeFileSync(missing, Buffer.from('this is not a tokenizer at all, just some text'));
  assertCleanFailure(runCli(['run', ckpt, '-z', missing]), EXIT_CODES.BAD_FORMAT, [missing], 'garbage tokenizer');
  // no -z and no tokenizer.bin beside the checkpoint or in the working directory
  const lonely = path.join(dir, 'model.bin');
  fs.copyFileSync(ckpt, lonely);
  assertCleanFailure(runCli(['run', lonely], { cwd: dir }), EXIT_CODES.INVALID_ARGUMENT, ['-z', 'tokenizer.bin'], 'no tokenizer');
});

test('bad flags: unknown, missing value, out of range, not a number; a prompt longer than the context', (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  const bad: Array<[string[], string | RegExp]> = [
    [['--frobnicate', '3'], '--frobnicate'],
    [['-x', '3'], '-x'],
    [['-t'], '-t'],
    [['-t', '-1'], /-t .*≥ 0/],
    [['-t', 'abc'], /-t expects a number/],
    [['-p', '1.5'], /-p .*\[0, 1\]/],
    [['-p', '-0.1'], /-p /],
    [['-n', '-1'], /-n .*≥ 0/],
    [['-n', '2.5'], /-n expects an integer/],
    [['-s', 'x'], /-s expects a number/],
    [['-m', 'dance'], /-m .*generate.*chat/],
    [['--kv-cache', 'f8'], /--kv-cache must be f32 or f16; got 'f8'/],
    [['--threads', '0'], /--threads must be ≥ 1/],
  ];
  for (const [flags, mention] of bad) {
    assertCleanFailure(runCli(['run', ckpt, '-z', tok, ...flags]), EXIT_CODES.INVALID_ARGUMENT, [mention], flags.join(' '));
  }
  assertCleanFailure(runCli(['run']), EXIT_CODES.INVALID_ARGUMENT, ['<checkpoint>'], 'no checkpoint');
  assertCleanFailure(runCli(['run', ckpt, 'extra']), EXIT_CODES.INVALID_ARGUMENT, ['extra'], 'extra argument');
  const long = 'Once upon a time there was a little dog. '.repeat(60);
  assertCleanFailure(runCli(['run', ckpt, '-z', tok, '-i', long]), EXIT_CODES.CONTEXT_OVERFLOW, [/prompt is \d+ tokens/, '512'], 'long prompt');
  const r = runCli(['frobnicate']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command 'frobnicate'/);
});

test('--help lists every flag of run with its default; --version prints the version', () => {
  for (const args of [['--help'], ['run', '--help']]) {
    const r = runCli(args);
    assert.equal(r.status, 0);
    for (const [flag, def] of [['-t', '1.0'], ['-p', '0.9'], ['-s', 'time'], ['-n', '256'], ['-i', 'none'], ['-z', 'tokenizer.bin'], ['-m', 'generate'], ['-y', 'asked on stdin']]) {
      const line = r.stdout.split('\n').find((l) => l.trimStart().startsWith(`${flag},`));
      assert.ok(line, `${args.join(' ')}: a line for ${flag}`);
      assert.ok(line.includes(`(default: ${def}`), `${flag} default ${def}: ${line}`);
    }
  }
  const v = runCli(['--version']);
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
});
