/**
 * Chat templates: the Jinja `chat_template` of tokenizer_config.json or of a GGUF file
 * (`tokenizer.chat_template`), rendered with @huggingface/jinja as transformers'
 * `apply_chat_template` renders it, then encoded.
 *
 * Variables passed, as transformers passes them: `messages`, `add_generation_prompt`, `tools` and
 * `documents` (undefined unless given), the special tokens' text (`bos_token`, `eos_token`, and
 * `unk_token` / `pad_token` where given), and any `extra` variables (`date_string` when given;
 * templates such as Llama 3.1's pick their own default when it is undefined). `raise_exception`
 * (a template refusing the dialog) throws InvalidArgumentError; a template that does not parse or
 * fails to render throws ChatTemplateError naming the template by its first line.
 *
 * Built in, for tokenizers without a template: LLAMA2_CHAT_TEMPLATE (transformers' Llama 2 chat
 * template) and LLAMA3_CHAT_TEMPLATE (Meta-Llama-3-8B-Instruct's tokenizer_config.json).
 *
 * Encoding the rendered text: the text of special tokens in it ("<|eot_id|>", "<s>") must become
 * their ids, and nothing else must. Tokenizers that recognize special tokens (tokenizer.json,
 * GGUF byte-level) encode it with { special: true }; for the others (SentencePiece, llama2.c) the
 * text is split at the BOS / EOS text and each part encoded, which is what a tokenizer.json made
 * from the same tokenizer.model does. No BOS is added beyond what the template writes.
 *
 * A template comes with the model file, so rendering is bounded: at most MAX_RENDER_STEPS
 * evaluations, range() of at most MAX_RANGE numbers, strings and lists of at most
 * MAX_VALUE_LENGTH; a template that runs away throws ChatTemplateError instead of hanging.
 */
import { Interpreter, Template } from '@huggingface/jinja';
import { InvalidArgumentError, LlamatsError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

/** A chat template that does not parse or fails while rendering (not a refused dialog). */
export class ChatTemplateError extends LlamatsError {
  /** The template's first line, to tell which template failed. */
  readonly templateFirstLine: string;
  constructor(message: string, template: string, options?: { cause?: unknown }) {
    const firstLine = template.split('\n', 1)[0]!.slice(0, 120);
    super('BAD_FORMAT', `chat template ${JSON.stringify(firstLine)}${template.includes('\n') || firstLine.length < template.length ? '…' : ''}: ${message}; fix the template or pass another one`, options);
    this.name = 'ChatTemplateError';
    this.templateFirstLine = firstLine;
  }
}

/** transformers' chat template for Llama 2 chat models (meta-llama/Llama-2-7b-chat-hf). */
export const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/** Meta-Llama-3-8B-Instruct's chat template (its tokenizer_config.json). */
export const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderOptions {
  /** End with the header of an assistant turn (default true: the model is to answer). */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
  unkToken?: string;
  padToken?: string;
  tools?: unknown;
  documents?: unknown;
  /** More template variables (e.g. date_string). */
  extra?: Record<string, unknown>;
}

const compiled = new Map<string, Template>();

/** Thrown by the template's raise_exception, to tell it from the template's own failures. */
class Raised extends Error {}

/**
 * Budgets of one render. A template comes with the model file, so it must not hang or exhaust
 * memory: `{% for i in range(99999999) %}` would do both. Real templates take 20 to 50 evaluation
 * steps per message and call range() on the message count at most; a step costs up to ~5 µs
 * (a loop iteration), so the budget allows thousands of messages and stops a runaway in ~0.5 s.
 */
const MAX_RENDER_STEPS = 100_000; // evaluations, plus the numbers range() makes
const MAX_RANGE = 100_000;
const MAX_VALUE_LENGTH = 1 << 22; // characters of a string, items of a list (a doubling loop gets there fast)

/** Steps left in the render under way (renders are synchronous: one at a time). */
let stepsLeft = 0;

/** Python's range(), refusing more than MAX_RANGE numbers (the library's builds any array asked for). */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() step must not be zero');
  const n = Math.ceil((stop - start) / step);
  if (!(n <= MAX_RANGE)) throw new Error(`range(${start}, ${stop}, ${step}) would make more than ${MAX_RANGE} numbers`);
  stepsLeft -= Math.max(0, n);
  return Array.from({ length: Math.max(0, n) }, (_, i) => start + i * step);
}

/**
 * t.render(vars) within the budgets: Interpreter.evaluate is wrapped while it runs, to count
 * steps and check the size of every value made.
 */
function renderWithBudget(t: Template, vars: Record<string, unknown>): string {
  const evaluate = Interpreter.prototype.evaluate;
  stepsLeft = MAX_RENDER_STEPS;
  Interpreter.prototype.evaluate = function (this: Interpreter, ...args: Parameters<Interpreter['evaluate']>) {
    if (--stepsLeft < 0) throw new Error(`rendering takes more than ${MAX_RENDER_STEPS} steps (a loop that does not end?)`);
    const v = evaluate.apply(this, args);
    const length = (v.value as { length?: unknown } | null)?.length;
    if (typeof length === 'number' && length > MAX_VALUE_LENGTH) throw new Error(`a value of ${length} characters or items, above the ${MAX_VALUE_LENGTH} allowed`);
    return v;
  };
  try {
    return t.render(vars);
  } finally {
    Interpreter.prototype.evaluate = evaluate;
  }
}

/** @huggingface/jinja declares its own raise_exception and range; this prefix rebinds them to ours. */
const RAISE_PREFIX = '{% set raise_exception = __llamats_raise_exception %}{% set range = __llamats_range %}';

/** Render a chat template (see the file comment for the variables). */
export function renderChatTemplate(template: string, messages: readonly ChatMessage[], opts: RenderOptions = {}): string {
  let t = compiled.get(template);
  if (!t) {
    try {
      t = new Template(RAISE_PREFIX + template);
    } catch (e) {
      throw new ChatTemplateError(`does not parse: ${(e as Error).message}`, template, { cause: e });
    }
    if (compiled.size > 32) compiled.clear();
    compiled.set(template, t);
  }
  const vars: Record<string, unknown> = {
    messages: messages.map((m) => ({ ...m })),
    add_generation_prompt: opts.addGenerationPrompt ?? true,
    tools: opts.tools,
    documents: opts.documents,
    bos_token: opts.bosToken ?? '',
    eos_token: opts.eosToken ?? '',
    ...(opts.unkToken !== undefined ? { unk_token: opts.unkToken } : {}),
    ...(opts.padToken !== undefined ? { pad_token: opts.padToken } : {}),
    ...opts.extra,
    __llamats_range: boundedRange,
    __llamats_raise_exception: (message: unknown) => {
      throw new Raised(String(message));
    },
  };
  try {
    return renderWithBudget(t, vars);
  } catch (e) {
    if (e instanceof Raised) throw new InvalidArgumentError(`the chat template refused the dialog: ${e.message}`, 'dialog');
    throw new ChatTemplateError(`fails to render: ${(e as Error | undefined)?.message ?? String(e)}`, template, { cause: e });
  }
}

/** The tokenizer's own template, else the built-in one for its family (Llama 3 if it has <|start_header_id|>, else Llama 2). */
export function chatTemplateFor(tokenizer: Tokenizer): string {
  if (tokenizer.chatTemplate) return tokenizer.chatTemplate;
  return specialId(tokenizer, '<|start_header_id|>') !== undefined ? LLAMA3_CHAT_TEMPLATE : LLAMA2_CHAT_TEMPLATE;
}

/**
 * The id of a special token's text, or undefined: the one id that `encode(text, { special: true })`
 * gives when its piece is that text.
 */
export function specialId(tokenizer: Tokenizer, text: string): number | undefined {
  const ids = tokenizer.encode(text, { special: true });
  return ids.length === 1 && tokenizer.piece(ids[0]!) === text ? ids[0] : undefined;
}

/** Text of a token id, or undefined when there is none. */
function pieceOrUndefined(tokenizer: Tokenizer, id: number): string | undefined {
  return id >= 0 && id < tokenizer.vocabSize ? tokenizer.piece(id) : undefined;
}

/** Render `messages` with `template` (default: chatTemplateFor) and the tokenizer's BOS / EOS text. */
export function applyChatTemplate(tokenizer: Tokenizer, messages: readonly ChatMessage[], opts: RenderOptions & { template?: string } = {}): string {
  const { template, ...render } = opts;
  const bosToken = render.bosToken ?? pieceOrUndefined(tokenizer, tokenizer.bosId);
  const eosToken = render.eosToken ?? pieceOrUndefined(tokenizer, tokenizer.eosId);
  return renderChatTemplate(template ?? chatTemplateFor(tokenizer), messages, {
    ...render,
    ...(bosToken !== undefined ? { bosToken } : {}),
    ...(eosToken !== undefined ? { eosToken } : {}),
  });
}

/** Encode a rendered chat prompt: special-token text becomes ids, no BOS is added (see the file comment). */
export function encodeRendered(tokenizer: Tokenizer, text: string): number[] {
  // does encode(…, { special: true }) turn the BOS (or EOS) text into its id?
  const probe = [tokenizer.bosId, tokenizer.eosId].map((id) => pieceOrUndefined(tokenizer, id)).find((p) => p !== undefined);
  if (probe !== undefined && specialId(tokenizer, probe) !== undefined) return tokenizer.encode(text, { special: true });
  // a tokenizer that never matches special tokens: split at the BOS / EOS text ourselves
  const specials = new Map<string, number>();
  for (const id of [tokenizer.bosId, tokenizer.eosId]) {
    const p = pieceOrUndefined(tokenizer, id);
    if (p) specials.set(p, id);
  }
  if (specials.size === 0) return tokenizer.encode(text);
  const re = new RegExp([...specials.keys()].map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  const ids: number[] = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (m.index! > last) ids.push(...tokenizer.encode(text.slice(last, m.index)));
    ids.push(specials.get(m[0])!);
    last = m.index! + m[0].length;
  }
  if (last < text.length) ids.push(...tokenizer.encode(text.slice(last)));
  return ids;
}
