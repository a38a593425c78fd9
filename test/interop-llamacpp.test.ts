/**
 * Interop with llama.cpp itself (node-llama-cpp 3.21.1, its prebuilt CPU build): stories260K
 * converted to GGUF by `llamats convert` loads in llama.cpp, and llama.cpp's greedy tokens equal
 * llamats' on the same file for 100 tokens (F32). For Q8_0 the two programs' arithmetic differs
 * (llama.cpp also quantizes the activations to 8 bits, llamats' reference does not), and this tiny
 * model amplifies that into different tokens after a while; so the check there is that llama.cpp
 * runs our Q8_0 file exactly as the Q8_0 file its own llama-quantize wrote (../shared), and how
 * far llamats and llama.cpp agree is reported.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { argmax, loadModel, Session, Tokenizer } from '../src/index.js';
import { convertToGguf } from '../src/cli/models.js';
import { readJsonl, shared, tempDir } from './helpers.js';

const N = 100;

async function llamaCppGreedy(file: string, prompts: number[][]): Promise<number[][]> {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath: file });
  const out: number[][] = [];
  try {
    for (const prompt of prompts) {
      const ctx = await model.createContext({ contextSize: 512, threads: 1 });
      const seq = ctx.getSequence();
      const toks: number[] = [];
      for await (const t of seq.evaluate(prompt as never, { temperature: 0 })) {
        toks.push(Number(t));
        if (toks.length >= N) break;
      }
      out.push(toks);
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
  return out;
}

function llamatsGreedy(file: string, prompts: number[][]): number[][] {
  const model = loadModel(file, { maxSeqLen: 512 });
  return prompts.map((prompt) => {
    const s = new Session(model);
    let logits!: Float32Array;
    prompt.forEach((t, pos) => (logits = s.forward(t, pos)));
    const toks: number[] = [];
    for (let pos = prompt.length; toks.length < N; pos++) {
      const next = argmax(logits);
      toks.push(next);
      logits = s.forward(next, pos);
    }
    return toks;
  });
}

test('GGUF written by llamats convert runs in llama.cpp with the same greedy tokens (F32: 100 of 100)', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tokPath = shared(t, 'models/tok512.bin');
  const ref = shared(t, 'testdata/llama2c_stories260K_greedy_public.jsonl');
  if (!ckpt || !tokPath || !ref) return;
  const dir = tempDir(t);
  const tok = Tokenizer.load(tokPath);
  const prompts = readJsonl<{ prompt: string }>(ref).map((c) => tok.encode(c.prompt, { bos: true }));
  const agreement = (a: number[], b: number[]) => {
    const i = a.findIndex((x, j) => x !== b[j]);
    return i === -1 ? N : i;
  };
  const f32 = path.join(dir, 'stories260K-f32.gguf');
  convertToGguf(ckpt, f32, { type: 'f32', tokenizerPath: tokPath });
  const ours = llamatsGreedy(f32, prompts);
  const theirs = await llamaCppGreedy(f32, prompts);
  prompts.forEach((_, i) => assert.equal(agreement(ours[i]!, theirs[i]!), N, `f32 prompt ${i}`));

  const q8 = path.join(dir, 'stories260K-q8_0.gguf');
  convertToGguf(ckpt, q8, { type: 'q8_0', tokenizerPath: tokPath });
  const theirsQ8 = await llamaCppGreedy(q8, prompts);
  const cppQ8 = shared(t, 'models/stories260K/gguf/stories260K-q8_0.gguf');
  if (!cppQ8) return;
  const theirOwnQ8 = await llamaCppGreedy(cppQ8, prompts);
  const oursQ8 = llamatsGreedy(q8, prompts);
  prompts.forEach((_, i) => {
    assert.equal(agreement(theirsQ8[i]!, theirOwnQ8[i]!), N, `llama.cpp on our q8_0 file vs its own, prompt ${i}`);
    t.diagnostic(`q8_0 prompt ${i}: llamats (reference backend) and llama.cpp agree on the first ${agreement(oursQ8[i]!, theirsQ8[i]!)} of ${N} tokens`);
  });
});
