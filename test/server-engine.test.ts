/**
 * The Engine (src/engine/) in process, on stories260K: OpenAI-shaped results against the
 * reference paths (run.c's sampler through generate(), Meta's generate() logprobs and echo),
 * streaming = non-streaming, stop strings across token boundaries, penalties and bias, batching
 * that does not change any sequence's tokens, cancellation that frees slots, the queue bound,
 * the context check and request validation.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Engine } from '../src/engine/engine.js';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionCreateParamsNonStreaming, Completion } from '../src/engine/types.js';
import { ContextOverflowError, InvalidRequestError, RateLimitError } from '../src/errors.js';
import { encodeDialog } from '../src/generate/dialog.js';
import { generateText } from '../src/generate/generate.js';
import { LLAMA2_CHAT_TEMPLATE } from '../src/generate/template.js';
import { Llama } from '../src/llama.js';
import { loadModel } from '../src/model/load.js';
import type { Model } from '../src/model/weights.js';
import { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { shared } from './helpers.js';

let cached: { model: Model; tokenizer: Tokenizer } | undefined;
function stories(t: TestContext): { model: Model; tokenizer: Tokenizer } | undefined {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return undefined;
  cached ??= { model: loadModel(ckpt), tokenizer: Tokenizer.load(tok) };
  return cached;
}

function engineFor(t: TestContext, opts: ConstructorParameters<typeof Engine>[2] = {}): Engine | undefined {
  const s = stories(t);
  if (!s) return undefined;
  const e = new Engine(s.model, s.tokenizer, { name: 'stories260K', ...opts });
  t.after(() => e.close());
  return e;
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const M = 'stories260K';

test('completions: the same tokens as generate() (run.c sampler) for the same seed, temperature and top_p', async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const s = stories(t)!;
  for (const [temperature, topp, seed] of [[0.8, 0.9, 42], [1, 1, 7], [0, 0.9, 1]] as const) {
    const ref = await generateText(s.model, s.tokenizer, { prompt: 'Once upon a time', temperature, topp, seed, steps: 60 });
    const r: Completion = await e.completions.create({ model: M, prompt: 'Once upon a time', echo: true, temperature, top_p: topp, seed, max_tokens: 60 - ref.promptTokens + 1 }); // generate() runs `steps` positions: L - 1 prompt tokens forced
    assert.equal(r.choices[0]!.text, ref.text, `t=${temperature} p=${topp} seed=${seed}`);
    assert.equal(r.object, 'text_completion');
    assert.match(r.id, /^cmpl-/);
    assert.equal(r.usage!.prompt_tokens, ref.promptTokens);
  }
});

test("completions echo + logprobs: Meta's generate() log-probabilities of prompt and generated tokens", async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const s = stories(t)!;
  const llama = new Llama(s.model, s.tokenizer, { maxSeqLen: 512, maxBatchSize: 1 });
  const prompt = s.tokenizer.encode('Lily and Ben went to the park', { bos: true });
  const meta = await llama.generate([prompt], { maxGenLen: 6, temperature: 0, logprobs: true, echo: true });
  const r = await e.completions.create({ model: M, prompt, max_tokens: 6, temperature: 0, echo: true, logprobs: 2 });
  const lp = r.choices[0]!.logprobs!;
  assert.equal(lp.token_logprobs.length, meta.tokens[0]!.length);
  assert.equal(lp.token_logprobs[0], null, 'the first token has no logprob (Meta: 0)');
  for (let i = 1; i < lp.token_logprobs.length; i++) assert.ok(Math.abs(lp.token_logprobs[i]! - meta.logprobs![0]![i]!) < 1e-9, `token ${i}`);
  // the generated tokens are Meta's greedy ones; text_offset points into the text
  const text = r.choices[0]!.text;
  assert.equal(text, s.tokenizer.decode(meta.tokens[0]!));
  lp.tokens.forEach((tok, i) => assert.equal(text.slice(lp.text_offset[i]!, lp.text_offset[i]! + tok.length), tok, `offset of token ${i}`));
  // top alternatives: 2 per token, the sampled (greedy) one first for generated tokens
  const gen = prompt.length;
  assert.equal(Object.keys(lp.top_logprobs[gen]!).length, 2);
  assert.equal(Object.values(lp.top_logprobs[gen]!)[0], lp.token_logprobs[gen]);
  // max_tokens 0 with echo scores the prompt alone
  const score = await e.completions.create({ model: M, prompt, max_tokens: 0, echo: true, logprobs: 0 });
  assert.deepEqual(score.choices[0]!.logprobs!.token_logprobs, lp.token_logprobs.slice(0, prompt.length));
  assert.equal(score.usage!.completion_tokens, 0);
});

test('chat: streaming gives the non-streaming answer; usage chunk; ids, roles, finish reasons', async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const req = { model: M, messages: [{ role: 'system' as const, content: 'You tell stories.' }, { role: 'user' as const, content: 'Tell me about a cat.' }], seed: 3, max_tokens: 40, temperature: 0.9, logprobs: true, top_logprobs: 1 };
  const full = await e.chat.completions.create(req);
  assert.equal(full.object, 'chat.completion');
  assert.match(full.id, /^chatcmpl-/);
  assert.equal(full.choices[0]!.message.role, 'assistant');
  const chunks = await collect(await e.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } }));
  const text = chunks.map((c: ChatCompletionChunk) => c.choices[0]?.delta.content ?? '').join('');
  assert.equal(text, full.choices[0]!.message.content);
  assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
  const last = chunks.at(-1)!;
  assert.deepEqual(last.choices, []);
  assert.deepEqual(last.usage, full.usage);
  assert.ok(chunks.slice(0, -1).every((c) => c.usage === null && c.id === chunks[0]!.id));
  assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, full.choices[0]!.finish_reason);
  const lps = chunks.flatMap((c) => c.choices[0]?.logprobs?.content ?? []);
  assert.deepEqual(lps, full.choices[0]!.logprobs!.content);
  assert.equal(lps.map((l) => l.token).join(''), text);
  assert.equal(full.usage.completion_tokens, full.choices[0]!.finish_reason === 'length' ? 40 : lps.length + 1);
  // the system message is in the prompt: Meta's Llama 2 chat format
  const s = stories(t)!;
  assert.equal(full.usage.prompt_tokens, encodeDialog(s.tokenizer, req.messages, { format: 'llama2' }).length);
});

test('chat templates: a Jinja template replaces the Llama 2 format', async (t) => {
  const s = stories(t);
  if (!s) return;
  const messages = [{ role: 'system' as const, content: 'Be kind.' }, { role: 'user' as const, content: 'Hello' }];
  const e = engineFor(t, { chatTemplate: LLAMA2_CHAT_TEMPLATE });
  assert.equal(e!.chatFormat, 'template');
  const r = await e!.chat.completions.create({ model: M, messages, max_tokens: 1 });
  assert.equal(r.usage.prompt_tokens, encodeDialog(s.tokenizer, messages, { format: 'template', template: LLAMA2_CHAT_TEMPLATE }).length);
  const plain = engineFor(t, { chatTemplate: '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:' });
  const r2 = await plain!.chat.completions.create({ model: M, messages, max_tokens: 1 });
  assert.equal(r2.usage.prompt_tokens, s.tokenizer.encode('system: Be kind.\nuser: Hello\nassistant:').length);
});

test('stop strings: matched across token boundaries, never sent, streamed or not', async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const base = { model: M, prompt: 'Once upon a time', max_tokens: 30, temperature: 0 };
  const free = (await e.completions.create(base)).choices[0]!;
  assert.match(free.text, /little girl/);
  for (const stop of ['le gi', ['zzz', 'e gir', 'little'], '.']) {
    const stops = typeof stop === 'string' ? [stop] : stop;
    const at = Math.min(...stops.map((s) => free.text.indexOf(s)).filter((i) => i >= 0));
    const r: Completion['choices'][number] = (await e.completions.create({ ...base, stop })).choices[0]!;
    assert.equal(r.text, free.text.slice(0, at), JSON.stringify(stop));
    assert.equal(r.finish_reason, 'stop');
    const chunks: Completion[] = await collect(await e.completions.create({ ...base, stop, stream: true }));
    assert.equal(chunks.map((c: Completion) => c.choices[0]!.text).join(''), r.text);
    assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'stop');
  }
  // a held-back prefix that does not complete is sent after all
  const r = (await e.completions.create({ ...base, stop: 'little boy' })).choices[0]!;
  assert.equal(r.text, free.text);
  assert.equal(r.finish_reason, 'length');
});

test('stop strings with logprobs: a token the stop string cuts has no entry; every entry lies in the text sent', async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const base = { model: M, prompt: 'Once upon a time', max_tokens: 40, temperature: 0, logprobs: 1 };
  const free = (await e.completions.create(base)).choices[0]!;
  const lp = free.logprobs!;
  const ends = lp.tokens.map((tok, i) => lp.text_offset[i]! + tok.length);
  // stop strings that start inside a token: one ending inside a later token, one inside the
  // same token; and one that starts exactly where a token starts
  const first = (stop: string, at: number) => free.text.indexOf(stop) === at;
  const k = lp.tokens.findIndex((tok, i) => i > 1 && tok.length >= 3 && lp.tokens[i + 1]!.length >= 2 && first(free.text.slice(lp.text_offset[i]! + 1, ends[i + 1]! - 1), lp.text_offset[i]! + 1));
  const h = lp.tokens.findIndex((tok, i) => i > 1 && tok.length >= 4 && first(tok.slice(1, -1), lp.text_offset[i]! + 1));
  const j = lp.tokens.findIndex((tok, i) => i > 1 && first(tok + lp.tokens[i + 1]!, lp.text_offset[i]!));
  assert.ok(k > 0 && h > 0 && j > 0, `no tokens to cut in ${JSON.stringify(lp.tokens)}`);
  const cases: Array<[stop: string, cut: number | undefined]> = [
    [free.text.slice(lp.text_offset[k]! + 1, ends[k + 1]! - 1), k],
    [lp.tokens[h]!.slice(1, -1), h],
    [lp.tokens[j]! + lp.tokens[j + 1]!, undefined],
  ];
  for (const [stop, cutToken] of cases) {
    const at = free.text.indexOf(stop);
    const r: Completion['choices'][number] = (await e.completions.create({ ...base, stop })).choices[0]!;
    assert.equal(r.text, free.text.slice(0, at));
    assert.equal(r.finish_reason, 'stop');
    // the entries: exactly the free run's tokens whose text ends at or before the stop string
    const keep = ends.filter((end) => end <= at).length;
    assert.equal(keep, cutToken ?? j);
    assert.deepEqual(r.logprobs!.tokens, lp.tokens.slice(0, keep), JSON.stringify(stop));
    assert.deepEqual(r.logprobs!.token_logprobs, lp.token_logprobs.slice(0, keep));
    assert.deepEqual(r.logprobs!.text_offset, lp.text_offset.slice(0, keep));
    r.logprobs!.tokens.forEach((tok, i) => assert.equal(r.text.slice(r.logprobs!.text_offset[i]!, r.logprobs!.text_offset[i]! + tok.length), tok));
    // the head of the cut token is in the text, with no entry: the entries' text is the text up to it
    assert.equal(r.logprobs!.tokens.join(''), free.text.slice(0, cutToken !== undefined ? lp.text_offset[cutToken]! : at));
    // streamed: the same text and entries
    const chunks: Completion[] = await collect(await e.completions.create({ ...base, stop, stream: true }));
    assert.equal(chunks.map((c) => c.choices[0]!.text).join(''), r.text);
    assert.deepEqual(chunks.flatMap((c) => c.choices[0]!.logprobs?.tokens ?? []), r.logprobs!.tokens);
  }
  // chat: the same rule for logprobs.content
  const req = { model: M, messages: [{ role: 'user' as const, content: 'Tell me a story.' }], max_tokens: 40, temperature: 0, logprobs: true };
  const chat = (await e.chat.completions.create(req)).choices[0]!;
  const content = chat.logprobs!.content!;
  let off = 0;
  const cEnds = content.map((c) => (off += c.token.length));
  const m = content.findIndex((c, i) => i > 0 && c.token.length >= 2 && chat.message.content!.indexOf(chat.message.content!.slice(cEnds[i]! - c.token.length + 1, cEnds[i]! + 1)) === cEnds[i]! - c.token.length + 1 && i + 1 < content.length);
  assert.ok(m > 0);
  const stop = chat.message.content!.slice(cEnds[m]! - content[m]!.token.length + 1, cEnds[m]! + 1);
  const cut = (await e.chat.completions.create({ ...req, stop })).choices[0]!;
  assert.equal(cut.message.content, chat.message.content!.slice(0, cEnds[m]! - content[m]!.token.length + 1));
  assert.deepEqual(cut.logprobs!.content, content.slice(0, m));
});

test('penalties and logit_bias change the logits as OpenAI documents', async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const s = stories(t)!;
  const base = { model: M, prompt: 'Once upon a time', max_tokens: 40, temperature: 0 };
  const plain = (await e.completions.create(base)).choices[0]!.text;
  const freq = (await e.completions.create({ ...base, frequency_penalty: 2 })).choices[0]!.text;
  const pres = (await e.completions.create({ ...base, presence_penalty: 2 })).choices[0]!.text;
  assert.notEqual(freq, plain);
  assert.notEqual(pres, plain);
  const distinct = (text: string) => new Set(s.tokenizer.encode(text)).size / s.tokenizer.encode(text).length;
  assert.ok(distinct(freq) > distinct(plain), 'a frequency penalty makes repeats rarer');
  const id = s.tokenizer.encode('cat')[0]!;
  const biased = await e.completions.create({ ...base, max_tokens: 5, logit_bias: { [id]: 100 }, logprobs: 0 });
  const toks = biased.choices[0]!.logprobs!.tokens;
  assert.equal(toks.length, 5);
  assert.equal(toks[1], new TextDecoder().decode(s.tokenizer.tokenBytes(id, id)), 'every token is the biased one');
  assert.ok(toks.slice(1).every((x) => x === toks[1]));
});

test('n choices: choice i is the single request with seed + i', async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const req = { model: M, messages: [{ role: 'user' as const, content: 'A story' }], max_tokens: 20, temperature: 1, seed: 11 };
  const many = await e.chat.completions.create({ ...req, n: 3 });
  assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2]);
  for (let i = 0; i < 3; i++) {
    const one: ChatCompletion = await e.chat.completions.create({ ...req, seed: 11 + i });
    assert.equal(many.choices[i]!.message.content, one.choices[0]!.message.content);
  }
  const prompts = await e.completions.create({ model: M, prompt: ['One day', 'The sun'], n: 2, max_tokens: 5, temperature: 0 });
  assert.equal(prompts.choices.length, 4);
  assert.equal(prompts.choices[0]!.text, prompts.choices[1]!.text);
  assert.notEqual(prompts.choices[0]!.text, prompts.choices[2]!.text);
});

test('continuous batching does not change any sequence: concurrent = alone', async (t) => {
  const e = engineFor(t, { slots: 4, prefillChunk: 5 });
  if (!e) return;
  const reqs = Array.from({ length: 10 }, (_, i) => ({ model: M, prompt: ['Once upon a time', 'Tom had a dog', 'The big red ball', 'She was'][i % 4]!, max_tokens: 10 + 7 * i, temperature: i % 2 ? 0 : 0.8, seed: i + 1 }));
  const alone: string[] = [];
  for (const r of reqs) alone.push((await e.completions.create(r)).choices[0]!.text);
  const together = await Promise.all(reqs.map(async (r) => (await collect(await e.completions.create({ ...r, stream: true }))).map((c) => c.choices[0]?.text ?? '').join('')));
  assert.deepEqual(together, alone);
  const st = e.stats();
  assert.equal(st.running, 0);
  assert.equal(st.waiting, 0);
  assert.ok(st.sessions <= 4, `at most one KV cache per slot (${st.sessions})`);
});

test('prompt budget per step: --prefill-chunk while others decode, 4× when none does', async (t) => {
  const e = engineFor(t, { slots: 4, prefillChunk: 4 });
  if (!e) return;
  const s = stories(t)!;
  const six = s.tokenizer.encode('Once upon a time there', { bos: true });
  assert.equal(six.length, 6);
  const prompt = [...six, ...six, ...six]; // 18 tokens
  const req = { model: M, prompt, max_tokens: 1, temperature: 0 };
  // nothing decoding: 16 prompt tokens in the first step, 2 in the second (its token comes there)
  let before = e.stats().steps;
  await e.completions.create(req);
  assert.equal(e.stats().steps - before, 2);
  // three prompts sent together share the same budget: 16 + 2 tokens
  before = e.stats().steps;
  await Promise.all([0, 1, 2].map(() => e.completions.create({ ...req, prompt: six })));
  assert.equal(e.stats().steps - before, 2);
  // while another sequence decodes: 4 prompt tokens per step, 5 steps for 18
  let steps = -1;
  for await (const c of await e.completions.create({ model: M, prompt: [1], max_tokens: 30, temperature: 0, stream: true })) {
    if (steps === -1 && c.choices[0]?.text) {
      before = e.stats().steps;
      await e.completions.create(req);
      steps = e.stats().steps - before;
    }
  }
  assert.equal(steps, 5);
});

test('cancellation: an abort or leaving the loop frees the slot at once', async (t) => {
  const e = engineFor(t, { slots: 2 });
  if (!e) return;
  const ac = new AbortController();
  const stream = await e.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'Go on' }], max_tokens: 400, stream: true }, { signal: ac.signal });
  let n = 0;
  await assert.rejects(async () => {
    for await (const _ of stream) if (++n === 3) ac.abort();
  }, { name: 'AbortError' });
  assert.equal(e.stats().running, 0);
  const again = await e.completions.create({ model: M, prompt: 'Hi', max_tokens: 400, stream: true });
  for await (const _ of again) break;
  assert.equal(e.stats().running, 0);
  assert.equal(e.stats().waiting, 0);
  await assert.rejects(e.completions.create({ model: M, prompt: 'x' }, { signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('the queue is bounded: RateLimitError beyond it', async (t) => {
  const e = engineFor(t, { slots: 1, maxQueue: 1 });
  if (!e) return;
  const req = { model: M, prompt: 'Once', max_tokens: 50, stream: true as const };
  const a = await e.completions.create(req);
  const b = await e.completions.create(req);
  await assert.rejects(e.completions.create(req), (err: unknown) => err instanceof RateLimitError && err.code === 'RATE_LIMITED' && err.retryAfterSeconds >= 1);
  await Promise.all([collect(a), collect(b)]);
  await collect(await e.completions.create(req)); // room again
});

test('prompt + max_tokens beyond the context is refused up front', async (t) => {
  const e = engineFor(t, { contextLength: 64 });
  if (!e) return;
  const L = stories(t)!.tokenizer.encode('Once', { bos: true }).length;
  await assert.rejects(e.completions.create({ model: M, prompt: 'Once', max_tokens: 64 - L + 1 }), ContextOverflowError);
  await assert.rejects(e.completions.create({ model: M, prompt: Array(64).fill(5) }), ContextOverflowError);
  const ok = await e.completions.create({ model: M, prompt: 'Once', max_tokens: 64 - L, temperature: 0, logit_bias: { 1: -100, 2: -100 } });
  assert.equal(ok.usage!.total_tokens, 64, 'prompt + max_tokens = the context exactly');
  // without max_tokens, chat gets the rest of the context
  const r = await e.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'Hi' }], temperature: 0 });
  assert.ok(r.usage.total_tokens <= 64);
});

test('request validation: named errors for malformed and unsupported fields', async (t) => {
  const e = engineFor(t);
  if (!e) return;
  const chat = { model: M, messages: [{ role: 'user', content: 'Hi' }] };
  const bad: Array<[unknown, string | undefined]> = [
    [null, undefined],
    [[1, 2], undefined],
    [{ messages: chat.messages }, 'model'],
    [{ ...chat, messages: [] }, 'messages'],
    [{ ...chat, messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
    [{ ...chat, messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
    [{ ...chat, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0].type'],
    [{ ...chat, messages: [{ role: 'user', content: 'x', name: 'bob' }] }, 'messages[0].name'],
    [{ ...chat, messages: [{ role: 'assistant', content: 'x' }] }, 'messages'],
    [{ ...chat, temperature: 'hot' }, 'temperature'],
    [{ ...chat, temperature: 3 }, 'temperature'],
    [{ ...chat, top_p: 0 }, 'top_p'],
    [{ ...chat, n: 0 }, 'n'],
    [{ ...chat, n: 1.5 }, 'n'],
    [{ ...chat, max_tokens: -1 }, 'max_tokens'],
    [{ ...chat, max_tokens: '5' }, 'max_tokens'],
    [{ ...chat, seed: 1.5 }, 'seed'],
    [{ ...chat, stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop'],
    [{ ...chat, stop: [''] }, 'stop'],
    [{ ...chat, presence_penalty: 5 }, 'presence_penalty'],
    [{ ...chat, logit_bias: { 99999: 1 } }, 'logit_bias'],
    [{ ...chat, logit_bias: { 5: 200 } }, 'logit_bias'],
    [{ ...chat, top_logprobs: 3 }, 'top_logprobs'],
    [{ ...chat, stream_options: { include_usage: true } }, 'stream_options'],
    [{ ...chat, tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    [{ ...chat, response_format: { type: 'json_object' } }, 'response_format'],
    [{ ...chat, frobnicate: 1 }, 'frobnicate'],
    [{ ...chat, stream: 'yes' }, 'stream'],
  ];
  for (const [body, param] of bad) {
    await assert.rejects(e.chat.completions.create(body as never), (err: unknown) => err instanceof InvalidRequestError && err.code === 'INVALID_ARGUMENT' && err.param === param, JSON.stringify(body));
  }
  await assert.rejects(e.chat.completions.create({ ...chat, model: 'gpt-4o' } as never), (err: unknown) => err instanceof InvalidRequestError && err.code === 'MODEL_NOT_FOUND');
  const completion = { model: M, prompt: 'x' };
  for (const [body, param] of [
    [{ ...completion, prompt: 5 }, 'prompt'],
    [{ ...completion, prompt: [1, 'a'] }, 'prompt'],
    [{ ...completion, prompt: [99999] }, 'prompt'],
    [{ ...completion, suffix: 'end' }, 'suffix'],
    [{ ...completion, best_of: 3 }, 'best_of'],
    [{ ...completion, logprobs: 6 }, 'logprobs'],
    [{ ...completion, max_tokens: 0 }, 'max_tokens'],
  ] as Array<[unknown, string]>) {
    await assert.rejects(e.completions.create(body as never), (err: unknown) => err instanceof InvalidRequestError && err.param === param, JSON.stringify(body));
  }
  // ignored fields and neutral values of refused ones are accepted
  const ok = await e.chat.completions.create({ ...chat, max_tokens: 2, user: 'u', metadata: { a: 'b' }, store: false, tools: [], tool_choice: 'none', response_format: { type: 'text' }, modalities: ['text'], top_p: null } as unknown as ChatCompletionCreateParamsNonStreaming);
  assert.equal(ok.choices.length, 1);
  const dev = await e.chat.completions.create({ model: M, messages: [{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }], max_tokens: 1, stream: false });
  assert.equal(dev.choices.length, 1);
});
