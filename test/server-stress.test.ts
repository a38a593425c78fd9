/**
 * Reliability of `llamats serve` under load (bounded: a few seconds with stories260K): 200
 * requests at concurrency 32 against the real server, some aborted by the client mid-stream and
 * some malformed. Every well-formed request must give exactly the text it gives alone (no lost,
 * duplicated or interleaved tokens) or, when aborted, a prefix of it; every malformed one a 4xx
 * with OpenAI's error JSON; the server must stay up, end with an empty batch and queue, and come
 * back to its memory baseline.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { seededRandom, shared } from './helpers.js';
import { postJson, rssBytes, sseData, startServe } from './server-helpers.js';

const M = 'stories260K';
const PROMPTS = ['Once upon a time', 'Tom and his dog', 'The little bird sang', 'Mia found a box'];
const LENGTHS = [8, 24, 48];

type Variant = { kind: 'chat' | 'completion'; prompt: number; maxTokens: number; sampled: boolean };

function body(v: Variant, stream: boolean): Record<string, unknown> {
  const sampling = v.sampled ? { temperature: 0.9, seed: 1000 + v.prompt } : { temperature: 0 };
  const common = { model: M, max_tokens: v.maxTokens, stream, ...sampling };
  return v.kind === 'chat' ? { ...common, messages: [{ role: 'user', content: PROMPTS[v.prompt] }] } : { ...common, prompt: PROMPTS[v.prompt] };
}

const key = (v: Variant) => `${v.kind}/${v.prompt}/${v.maxTokens}/${v.sampled}`;

/** Text of an SSE response (chat deltas or completion texts), whether it ended with [DONE], and the finish reason. */
function streamText(raw: string): { text: string; done: boolean; finish: string | null; ids: Set<string> } {
  let text = '';
  let done = false;
  let finish: string | null = null;
  const ids = new Set<string>();
  for (const d of sseData(raw)) {
    if (d === '[DONE]') {
      done = true;
      continue;
    }
    const c = JSON.parse(d) as { id: string; choices: Array<{ text?: string; delta?: { content?: string }; finish_reason: string | null }> };
    ids.add(c.id);
    const ch = c.choices[0];
    if (!ch) continue;
    text += ch.text ?? ch.delta?.content ?? '';
    finish = ch.finish_reason ?? finish;
  }
  return { text, done, finish, ids };
}

test('200 requests at concurrency 32 with client aborts and malformed bodies', { timeout: 120_000 }, async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  const srv = await startServe(t, [ckpt, '-z', tok, '--slots', '16', '--max-body', '65536']);
  const url = (p: string) => srv.url + p;

  // what each well-formed request must give: the same request alone, not streamed
  const variants: Variant[] = [];
  for (const kind of ['chat', 'completion'] as const) for (let prompt = 0; prompt < PROMPTS.length; prompt++) for (const maxTokens of LENGTHS) for (const sampled of [false, true]) variants.push({ kind, prompt, maxTokens, sampled });
  const expected = new Map<string, { text: string; finish: string }>();
  for (const v of variants) {
    const r = await postJson(url(v.kind === 'chat' ? '/v1/chat/completions' : '/v1/completions'), body(v, false));
    assert.equal(r.status, 200);
    const j = (await r.json()) as { choices: Array<{ text?: string; message?: { content: string }; finish_reason: string }> };
    expected.set(key(v), { text: j.choices[0]!.text ?? j.choices[0]!.message!.content, finish: j.choices[0]!.finish_reason });
  }

  const rand = seededRandom(2024);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
  const malformed: Array<() => Promise<Response>> = [
    () => postJson(url('/v1/chat/completions'), '{"model": "stories260K", "messages": ['),
    () => postJson(url('/v1/chat/completions'), { model: M, messages: [{ role: 'user', content: 42 }] }),
    () => postJson(url('/v1/completions'), { model: M, prompt: 'x', temperature: 'warm' }),
    () => postJson(url('/v1/completions'), { model: M, prompt: 'x', max_tokens: 1e12 }),
    () => postJson(url('/v1/chat/completions'), { model: M, messages: [{ role: 'user', content: 'x' }], max_tokens: 100_000, stream: true }),
    () => postJson(url('/v1/completions'), { model: M, prompt: 'x'.repeat(100_000) }),
    () => postJson(url('/v1/completions'), { model: 'gpt-4', prompt: 'x' }),
    () => postJson(url('/v1/completions'), '[]'),
    () => postJson(url('/v1/completions'), { model: M, prompt: 'x', n: 'many' }),
  ];

  type Outcome = 'complete' | 'aborted' | 'rejected';
  const outcomes: Record<Outcome, number> = { complete: 0, aborted: 0, rejected: 0 };
  const one = async (): Promise<void> => {
    if (rand() < 0.25) {
      const r = await pick(malformed)();
      const j = (await r.json()) as { error?: { message: string; type: string } };
      assert.ok(r.status >= 400 && r.status < 500, `malformed request got ${r.status}`);
      assert.equal(typeof j.error?.message, 'string');
      outcomes.rejected++;
      return;
    }
    const v = pick(variants);
    const want = expected.get(key(v))!;
    const stream = rand() < 0.8;
    const path = v.kind === 'chat' ? '/v1/chat/completions' : '/v1/completions';
    if (!stream) {
      const r = await postJson(url(path), body(v, false));
      assert.equal(r.status, 200);
      const j = (await r.json()) as { choices: Array<{ text?: string; message?: { content: string } }> };
      assert.equal(j.choices[0]!.text ?? j.choices[0]!.message!.content, want.text, key(v));
      outcomes.complete++;
      return;
    }
    const abortAfter = rand() < 0.3 ? 1 + Math.floor(rand() * 5) : Infinity;
    const ac = new AbortController();
    const r = await postJson(url(path), body(v, true), {}, ac.signal);
    assert.equal(r.status, 200);
    const reader = r.body!.getReader();
    const dec = new TextDecoder();
    let raw = '';
    let reads = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        raw += dec.decode(value, { stream: true });
        if (++reads >= abortAfter) {
          ac.abort();
          break;
        }
      }
    } catch (e) {
      assert.equal((e as Error).name, 'AbortError');
    }
    const cut = raw.lastIndexOf('\n\n');
    const got = streamText(raw.slice(0, cut + 2));
    assert.ok(got.ids.size <= 1, 'one id per stream');
    if (ac.signal.aborted) {
      assert.ok(want.text.startsWith(got.text), `${key(v)}: aborted stream ${JSON.stringify(got.text)} is a prefix of ${JSON.stringify(want.text)}`);
      outcomes.aborted++;
    } else {
      assert.ok(got.done, 'ends with [DONE]');
      assert.equal(got.text, want.text, key(v));
      assert.equal(got.finish, want.finish);
      outcomes.complete++;
    }
  };

  const storm = async (count: number, concurrency: number) => {
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        await one();
      }
    }));
  };
  const idle = async () => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const h = (await (await fetch(url('/health'))).json()) as { running: number; waiting: number; sessions: number; slots: number };
      if (h.running === 0 && h.waiting === 0) return h;
      assert.ok(Date.now() < deadline, `the batch empties: ${JSON.stringify(h)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  // warm-up: every slot allocated, code paths compiled; then the baseline
  await storm(48, 32);
  await idle();
  const baseline = rssBytes(srv.child.pid!);

  const started = performance.now();
  await storm(200, 32);
  const seconds = (performance.now() - started) / 1000;
  const h = await idle();
  assert.ok(h.sessions <= h.slots, `KV caches stay within the slots: ${h.sessions} ≤ ${h.slots}`);
  assert.ok(outcomes.aborted > 10 && outcomes.rejected > 10 && outcomes.complete > 50, JSON.stringify(outcomes));
  assert.equal(srv.child.exitCode, null, 'the server is still up');
  assert.equal((await fetch(url('/health'))).status, 200);

  const after = rssBytes(srv.child.pid!);
  if (baseline !== undefined && after !== undefined) {
    const grew = (after - baseline) / 2 ** 20;
    t.diagnostic(`200 requests in ${seconds.toFixed(1)} s; RSS ${(baseline / 2 ** 20).toFixed(0)} → ${(after / 2 ** 20).toFixed(0)} MiB; ${JSON.stringify(outcomes)}`);
    assert.ok(grew < 48, `memory returns to its baseline: grew ${grew.toFixed(1)} MiB`);
  }
  assert.doesNotMatch(srv.stderr(), /internal error/);
});
