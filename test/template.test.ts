/**
 * Chat templates (src/generate/template.ts) and encodeDialog's 'llama3' and 'template' formats:
 * Llama 3's own template against the public chat vectors and Meta's ChatFormat; the built-in
 * Llama 2 template against Meta's chat prompts; variables; errors.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  applyChatTemplate,
  ChatTemplateError,
  chatTemplateFor,
  encodeDialog,
  HfTokenizer,
  InvalidArgumentError,
  LLAMA2_CHAT_TEMPLATE,
  LLAMA3_CHAT_TEMPLATE,
  renderChatTemplate,
  SentencePieceTokenizer,
  sentencePieceToTokenizerJson,
  Tokenizer,
  tokenizerFromGgufMetadata,
  type Dialog,
} from '../src/index.js';
import { readJsonl, shared, tempDir } from './helpers.js';

interface ChatRow {
  dialog: Dialog;
  add_generation_prompt: boolean;
  rendered: string;
  ids: number[];
  decoded: string;
}

const LLAMA3 = 'models/llama3-tokenizer';

test('Llama 3: the model\'s template, encodeDialog llama3 and template = the public chat vectors', (t) => {
  const dir = shared(t, LLAMA3);
  const file = shared(t, 'testdata/llama3_chat_prompts_public.jsonl');
  if (!dir || !file) return;
  const tok = Tokenizer.load(dir);
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as { chat_template: string };
  assert.equal(tok.chatTemplate, config.chat_template);
  assert.equal(LLAMA3_CHAT_TEMPLATE, config.chat_template, 'the built-in Llama 3 template is the model\'s');
  const rows = readJsonl<ChatRow>(file);
  assert.equal(rows.length, 2);
  for (const r of rows) {
    const rendered = renderChatTemplate(config.chat_template, r.dialog, { bosToken: '<|begin_of_text|>', eosToken: '<|eot_id|>', addGenerationPrompt: r.add_generation_prompt });
    assert.equal(rendered, r.rendered);
    assert.equal(applyChatTemplate(tok, r.dialog), r.rendered);
    assert.deepEqual(tok.encode(rendered, { special: true }), r.ids);
    assert.deepEqual(encodeDialog(tok, r.dialog, { format: 'llama3' }), r.ids, "Meta's ChatFormat.encode_dialog_prompt");
    assert.deepEqual(encodeDialog(tok, r.dialog, { format: 'template' }), r.ids);
    assert.equal(tok.decode(r.ids), r.decoded);
  }
});

test('Llama 3: encodeDialog llama3 equals the rendered template on more dialogs; special text in content differs', (t) => {
  const dir = shared(t, LLAMA3);
  if (!dir) return;
  const tok = Tokenizer.load(dir);
  const dialogs: Dialog[] = [
    [{ role: 'user', content: '  padded \n\t' }],
    [
      { role: 'system', content: 'Be brief.\n' },
      { role: 'user', content: '日本語で？ 😀' },
      { role: 'assistant', content: ' はい。 ' },
      { role: 'user', content: 'x = 1 + 2\n\nprint(x)' },
    ],
    [{ role: 'assistant', content: 'roles in any order' }, { role: 'assistant', content: '' }],
  ];
  for (const d of dialogs) assert.deepEqual(encodeDialog(tok, d, { format: 'llama3' }), encodeDialog(tok, d, { format: 'template' }));
  // Meta's ChatFormat keeps special-token text in a message as text; the template path (like
  // transformers' apply_chat_template) turns it into the special token
  const injected: Dialog = [{ role: 'user', content: 'hi<|eot_id|>' }];
  const meta = encodeDialog(tok, injected, { format: 'llama3' });
  const viaTemplate = encodeDialog(tok, injected, { format: 'template' });
  assert.equal(meta.filter((id) => id === 128009).length, 1);
  assert.equal(viaTemplate.filter((id) => id === 128009).length, 2);
});

test('the built-in Llama 2 template = Meta\'s chat prompts, with SentencePiece and with tokenizer.json', (t) => {
  const model = shared(t, 'models/tokenizer.model');
  const file = shared(t, 'testdata/meta_chat_prompts_public.jsonl');
  if (!model || !file) return;
  const sp = SentencePieceTokenizer.load(model);
  assert.equal(chatTemplateFor(sp), LLAMA2_CHAT_TEMPLATE);
  const d = tempDir(t);
  fs.writeFileSync(path.join(d, 'tokenizer.json'), JSON.stringify(sentencePieceToTokenizerJson(sp)));
  const hf = Tokenizer.load(d);
  assert.equal(chatTemplateFor(hf), LLAMA2_CHAT_TEMPLATE);
  const rows = readJsonl<{ dialog: Dialog; prompt_tokens: number[] }>(file);
  assert.ok(rows.length >= 3);
  for (const r of rows) {
    assert.deepEqual(encodeDialog(sp, r.dialog), r.prompt_tokens);
    assert.deepEqual(encodeDialog(sp, r.dialog, { format: 'template' }), r.prompt_tokens, JSON.stringify(r.dialog));
    assert.deepEqual(encodeDialog(hf, r.dialog, { format: 'template' }), r.prompt_tokens, JSON.stringify(r.dialog));
  }
});

test('template variables: bos/eos text, add_generation_prompt, tools and date_string', () => {
  const tpl = "{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}|{{ tools is defined }}|{{ date_string | default('none') }}|{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}";
  const msgs = [{ role: 'user', content: 'hi' }];
  assert.equal(renderChatTemplate(tpl, msgs, { bosToken: '<s>', eosToken: '</s>' }), '<s>|</s>|true|false|none|user:hi;');
  assert.equal(renderChatTemplate(tpl, msgs, { addGenerationPrompt: false, tools: [{ name: 'f' }], extra: { date_string: '26 Jul 2024' } }), '||false|true|26 Jul 2024|user:hi;');
  // the GGUF chat template is the tokenizer's
  const tok = tokenizerFromGgufMetadata(
    new Map<string, unknown>([
      ['tokenizer.ggml.model', 'gpt2'],
      ['tokenizer.ggml.pre', 'gpt-2'],
      ['tokenizer.ggml.tokens', ['a', 'b', 'ab', '<s>']],
      ['tokenizer.ggml.token_type', [1, 1, 1, 3]],
      ['tokenizer.ggml.merges', ['a b']],
      ['tokenizer.ggml.bos_token_id', 3],
      ['tokenizer.chat_template', '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}'],
    ]),
    'x.gguf',
  );
  assert.equal(applyChatTemplate(tok, [{ role: 'user', content: 'abab' }]), '<s>abab');
  assert.deepEqual(encodeDialog(tok, [{ role: 'user', content: 'abab' }], { format: 'template' }), [3, 2, 2]);
  assert.deepEqual(encodeDialog(tok, [{ role: 'user', content: 'x' }], { format: 'template', template: '{{ messages[0].role }}' }), tok.encode('user'));
});

test('template errors: a syntax error or a failing render → ChatTemplateError naming the first line; raise_exception → InvalidArgumentError', () => {
  const msgs = [{ role: 'user', content: 'hi' }];
  assert.throws(
    () => renderChatTemplate('{% for m in messages %}{{ m.content }\nsecond line', msgs),
    (e: unknown) => e instanceof ChatTemplateError && e.code === 'BAD_FORMAT' && e.templateFirstLine === '{% for m in messages %}{{ m.content }' && e.message.includes('{% for m in messages %}'),
  );
  assert.throws(() => renderChatTemplate('{{ messages | no_such_filter }}', msgs), (e: unknown) => e instanceof ChatTemplateError && /no_such_filter|filter/i.test(e.message));
  assert.throws(
    () => renderChatTemplate(LLAMA2_CHAT_TEMPLATE, [{ role: 'assistant', content: 'hi' }]),
    (e: unknown) => e instanceof InvalidArgumentError && /roles must alternate/.test(e.message),
  );
});

test("encodeDialog: 'llama3' needs a Llama 3 tokenizer; unknown formats are refused", (t) => {
  const model = shared(t, 'models/tokenizer.model');
  if (!model) return;
  const sp = Tokenizer.load(model);
  assert.throws(() => encodeDialog(sp, [{ role: 'user', content: 'hi' }], { format: 'llama3' }), (e: unknown) => e instanceof InvalidArgumentError && /<\|start_header_id\|>/.test(e.message));
  assert.throws(() => encodeDialog(sp, [{ role: 'user', content: 'hi' }], { format: 'chatml' as 'llama2' }), InvalidArgumentError);
  const dir = shared(t, LLAMA3);
  if (!dir) return;
  // a Llama 3 tokenizer.json without its config: the built-in Llama 3 template
  const d = tempDir(t);
  fs.copyFileSync(path.join(dir, 'tokenizer.json'), path.join(d, 'tokenizer.json'));
  const bare = Tokenizer.load(d) as HfTokenizer;
  assert.equal(bare.chatTemplate, undefined);
  assert.equal(chatTemplateFor(bare), LLAMA3_CHAT_TEMPLATE);
  const dialog: Dialog = [{ role: 'user', content: 'Hello! Who are you?' }];
  assert.deepEqual(encodeDialog(bare, dialog, { format: 'template' }), encodeDialog(bare, dialog, { format: 'llama3' }));
});
