/**
 * `llamats serve` as a client sees it: the real server in a child process on 127.0.0.1, driven by
 * the official `openai` npm client, by curl, and by raw HTTP for the SSE format and the error
 * statuses (OpenAI's error JSON).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import OpenAI from 'openai';
import { runCli, shared, tempDir } from './helpers.js';
import { postJson, sseData, startServe } from './server-helpers.js';

const M = 'stories260K';

test('the official openai client: models, chat, streaming, completions, errors', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  const srv = await startServe(t, [ckpt, '-z', tok, '--api-key', 'sekret']);
  const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'sekret', maxRetries: 0, timeout: 20_000 });

  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [M]);

  const chat = await client.chat.completions.create({ model: M, messages: [{ role: 'system', content: 'Tell stories.' }, { role: 'user', content: 'A dog' }], max_tokens: 20, seed: 4, temperature: 0.7 });
  assert.equal(chat.choices[0]!.message.role, 'assistant');
  assert.ok(chat.choices[0]!.message.content!.length > 0);
  assert.equal(chat.usage!.completion_tokens, chat.choices[0]!.finish_reason === 'length' ? 20 : chat.usage!.completion_tokens);

  const stream = await client.chat.completions.create({ model: M, messages: [{ role: 'system', content: 'Tell stories.' }, { role: 'user', content: 'A dog' }], max_tokens: 20, seed: 4, temperature: 0.7, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, chat.choices[0]!.message.content);
  assert.deepEqual(usage, chat.usage);

  const completion = await client.completions.create({ model: M, prompt: 'Once upon a time', max_tokens: 10, temperature: 0 });
  assert.equal(completion.choices[0]!.text, ', there was a little girl named Lily');

  await assert.rejects(client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  await assert.rejects(client.chat.completions.create({ model: M, messages: [{ role: 'user', content: 'x' }], temperature: 9 }), (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'temperature');
  await assert.rejects(client.completions.create({ model: M, prompt: 'x', max_tokens: 100_000 }), (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded');
  const wrongKey = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(wrongKey.models.list(), OpenAI.AuthenticationError);

  // an abort through the client frees the slot
  const ac = new AbortController();
  const long = await client.completions.create({ model: M, prompt: 'Once', max_tokens: 400, stream: true }, { signal: ac.signal });
  let n = 0;
  try {
    for await (const _ of long) if (++n === 2) ac.abort();
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError, String(e)); // (or the stream just ends)
  }
  assert.equal(n, 2);
  const deadline = Date.now() + 5000;
  for (;;) {
    const h = (await (await fetch(`${srv.url}/health`)).json()) as { running: number };
    if (h.running === 0) break;
    assert.ok(Date.now() < deadline, 'the aborted sequence left the batch');
    await new Promise((r) => setTimeout(r, 20));
  }
});

test('raw HTTP: SSE framing, statuses and OpenAI error JSON', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  const srv = await startServe(t, [ckpt, '-z', tok, '--max-body', '4096', '--slots', '2', '--queue', '0']);
  const u = (p: string) => srv.url + p;

  // the page: self-contained, its inline script parses and is the one the CSP allows
  const page = await fetch(u('/'));
  assert.equal(page.status, 200);
  const html = await page.text();
  const csp = page.headers.get('content-security-policy')!;
  assert.match(csp, /default-src 'none'/);
  const script = /<script>([\s\S]*)<\/script>/.exec(html)![1]!;
  new vm.Script(script); // throws on a syntax error
  assert.ok(csp.includes(`'sha256-${createHash('sha256').update(script).digest('base64')}'`));
  assert.doesNotMatch(html, /(src|href)="https?:/, 'nothing loaded from elsewhere');

  const health = await fetch(u('/health'));
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');

  const res = await postJson(u('/v1/chat/completions'), { model: M, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, stream: true });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
  const body = await res.text();
  assert.ok(body.endsWith('data: [DONE]\n\n'));
  const data = sseData(body);
  assert.equal(data.at(-1), '[DONE]');
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d) as { object: string; choices: Array<{ finish_reason: string | null }> });
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  assert.ok(chunks.at(-1)!.choices[0]!.finish_reason !== null);

  const expectError = async (r: Response, status: number, code: string | null, param?: string) => {
    assert.equal(r.status, status, await r.clone().text());
    const j = (await r.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
    assert.equal(typeof j.error.message, 'string');
    assert.equal(typeof j.error.type, 'string');
    assert.equal(j.error.code, code);
    if (param !== undefined) assert.equal(j.error.param, param);
  };
  await expectError(await postJson(u('/v1/chat/completions'), '{"model": '), 400, 'invalid_value');
  await expectError(await postJson(u('/v1/chat/completions'), { model: M, messages: 'hi' }), 400, 'invalid_value', 'messages');
  await expectError(await postJson(u('/v1/completions'), { model: M, prompt: 'x', max_tokens: 1e9 }), 400, 'context_length_exceeded');
  await expectError(await postJson(u('/v1/completions'), { model: 'other', prompt: 'x' }), 404, 'model_not_found', 'model');
  await expectError(await postJson(u('/v1/completions'), { model: M, prompt: 'x'.repeat(10_000) }), 413, 'request_too_large');
  await expectError(await fetch(u('/v1/completions'), { method: 'POST', body: '{}', headers: { 'Content-Type': 'text/plain' } }), 415, 'unsupported_media_type');
  await expectError(await fetch(u('/v1/completions')), 405, 'method_not_allowed');
  await expectError(await fetch(u('/v1/nothing')), 404, 'not_found');
  await expectError(await fetch(u('/etc/passwd')), 404, 'not_found');

  // a Host that is not loopback (DNS rebinding) is refused
  const status = await new Promise<number>((resolve, reject) => {
    const { port } = new URL(srv.url);
    http.get({ host: '127.0.0.1', port, path: '/health', headers: { Host: 'evil.example:80' } }, (r) => resolve(r.statusCode!)).on('error', reject);
  });
  assert.equal(status, 403);

  // the queue: 2 slots, no waiting room: the third concurrent request gets 429 + Retry-After
  const long = (signal: AbortSignal) => postJson(u('/v1/completions'), { model: M, prompt: 'Once', max_tokens: 400, stream: true }, {}, signal);
  const ac = new AbortController();
  const a = await long(ac.signal);
  const b = await long(ac.signal);
  const c = await postJson(u('/v1/completions'), { model: M, prompt: 'Once', max_tokens: 5 });
  assert.equal(c.status, 429);
  assert.ok(Number(c.headers.get('retry-after')) >= 1);
  await expectError(c, 429, 'rate_limit_exceeded');
  ac.abort();
  await Promise.allSettled([a.text(), b.text()]);
});

test('curl: streaming and an error, as the README shows', async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  const curl = spawnSync('curl', ['--version']);
  if (curl.status !== 0) {
    if (process.env.CI === 'true') throw new Error('curl is missing');
    t.skip('curl is not installed');
    return;
  }
  const srv = await startServe(t, [ckpt, '-z', tok]);
  const dir = tempDir(t);
  const bodyFile = path.join(dir, 'req.json');
  fs.writeFileSync(bodyFile, JSON.stringify({ model: M, prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true }));
  const run = (args: string[]) => new Promise<{ status: number | null; stdout: string }>((resolve) => {
    // asynchronously: the server runs in this process's child and must keep answering
    import('node:child_process').then(({ execFile }) => execFile('curl', args, { timeout: 20_000 }, (err, stdout) => resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout })));
  });
  const r = await run(['-sS', '-N', `${srv.url}/v1/completions`, '-H', 'Content-Type: application/json', '-d', `@${bodyFile}`]);
  assert.equal(r.status, 0);
  const texts = sseData(r.stdout).slice(0, -1).map((d) => (JSON.parse(d) as { choices: Array<{ text: string }> }).choices[0]!.text);
  assert.equal(texts.join(''), ', there was a little girl named Lily');
  const e = await run(['-sS', '-w', '%{http_code}', `${srv.url}/v1/chat/completions`, '-H', 'Content-Type: application/json', '-d', '{"model":"stories260K","messages":[]}']);
  assert.match(e.stdout, /"param":"messages".*400$/);
});

test('llamats serve: help, bad flags, and a clean exit on SIGTERM', async (t) => {
  const help = runCli(['serve', '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--api-key/);
  assert.match(runCli(['--help']).stdout, /serve <model>/);
  const missing = runCli(['serve']);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^llamats: expected one <model>/);
  assert.equal(runCli(['serve', 'x.bin', '--port', '70000']).status, 2);
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  for (const [flags, re] of [[['--kv-cache', 'f8'], /--kv-cache must be f32 or f16; got 'f8'/], [['--threads', '0'], /--threads must be ≥ 1; got 0/]] as const) {
    const bad = runCli(['serve', ckpt, '-z', tok, ...flags]);
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, re);
    assert.equal(bad.stdout, '');
  }
  const srv = await startServe(t, [ckpt, '-z', tok]);
  assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/, 'loopback by default');
  await srv.stop();
  assert.equal(srv.child.exitCode, 0);
});
