/**
 * Dialogs and their prompt tokens, in three formats:
 *   'llama2'   Meta's Llama 2 `chat_completion` (below)
 *   'llama3'   Meta's Llama 3 `ChatFormat.encode_dialog_prompt`: <|begin_of_text|>, then per
 *              message <|start_header_id|>{role}<|end_header_id|>\n\n{content stripped}<|eot_id|>,
 *              then the assistant header; contents are plain text (special-token text in them
 *              stays text); no role order is enforced (Meta enforces none)
 *   'template' the tokenizer's own chat template (tokenizer_config.json / GGUF), or `template`,
 *              or the built-in one for its family (generate/template.ts), rendered and encoded
 *
 * The Llama 2 chat format, as Meta's `Llama.chat_completion` builds the prompt:
 *
 *   a leading system message is folded into the first user message:
 *       "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + user
 *   every (user, assistant) pair, with BOS and EOS:   "[INST] {user} [/INST] {answer} "
 *   the last user message, with BOS only:             "[INST] {user} [/INST]"
 *
 * (contents stripped of surrounding whitespace as Python's str.strip() does). Roles must be
 * [system], user, assistant, user, … ending with user. A message containing one of the format's
 * tags is "unsafe": Meta still encodes it but answers with an error instead of the generation.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { applyChatTemplate, encodeRendered, specialId } from './template.js';

export type Role = 'system' | 'user' | 'assistant';
export interface Message {
  role: Role;
  content: string;
}
export type Dialog = Message[];

export const B_INST = '[INST]';
export const E_INST = '[/INST]';
export const B_SYS = '<<SYS>>\n';
export const E_SYS = '\n<</SYS>>\n\n';
const SPECIAL_TAGS = [B_INST, E_INST, '<<SYS>>', '<</SYS>>'];
export const UNSAFE_ERROR = 'Error: special tags are not allowed as part of the prompt.';

/** Python's str.strip(): the characters for which str.isspace() is true. */
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_STRIP = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');
export function pyStrip(s: string): string {
  return s.replace(PY_STRIP, '');
}

/** Does any message contain one of the chat format's tags? */
export function isUnsafeDialog(dialog: Dialog): boolean {
  return dialog.some((m) => SPECIAL_TAGS.some((tag) => m.content.includes(tag)));
}

function checkDialog(dialog: Dialog): void {
  if (!Array.isArray(dialog) || dialog.length === 0) throw new InvalidArgumentError('a dialog needs at least one message', 'dialog');
  dialog.forEach((m, i) => {
    if (typeof m !== 'object' || m === null || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role)) {
      throw new InvalidArgumentError(`message ${i} must be { role: 'system' | 'user' | 'assistant', content: string }; got ${JSON.stringify(m)}`, 'dialog');
    }
  });
}

export type DialogFormat = 'llama2' | 'llama3' | 'template';
export interface EncodeDialogOptions {
  format: DialogFormat;
  /** For 'template': a Jinja chat template to use instead of the tokenizer's. */
  template?: string;
}

/** The prompt tokens for `dialog` in `format` (default 'llama2', Meta's Llama 2 `chat_completion`). */
export function encodeDialog(tokenizer: Tokenizer, dialog: Dialog, opts: EncodeDialogOptions = { format: 'llama2' }): number[] {
  if (!['llama2', 'llama3', 'template'].includes(opts.format)) throw new InvalidArgumentError(`unknown dialog format '${String(opts.format)}'; supported: 'llama2', 'llama3', 'template'`, 'format');
  checkDialog(dialog);
  if (opts.format === 'llama3') return encodeLlama3Dialog(tokenizer, dialog);
  if (opts.format === 'template') {
    const text = applyChatTemplate(tokenizer, dialog, { addGenerationPrompt: true, ...(opts.template !== undefined ? { template: opts.template } : {}) });
    return encodeRendered(tokenizer, text);
  }
  let msgs = dialog;
  if (msgs[0]!.role === 'system') {
    if (msgs.length < 2) throw new InvalidArgumentError('a system message must be followed by a user message', 'dialog');
    msgs = [{ role: msgs[1]!.role, content: B_SYS + msgs[0]!.content + E_SYS + msgs[1]!.content }, ...msgs.slice(2)];
  }
  msgs.forEach((m, i) => {
    const want = i % 2 === 0 ? 'user' : 'assistant';
    if (m.role !== want) {
      throw new InvalidArgumentError(
        `model only supports 'system', 'user' and 'assistant' roles, starting with 'system', then 'user' and alternating (u/a/u/a/u…); message ${i + (msgs === dialog ? 0 : 1)} is '${m.role}' where '${want}' was expected`,
        'dialog',
      );
    }
  });
  const last = msgs[msgs.length - 1]!;
  if (last.role !== 'user') throw new InvalidArgumentError(`the last message must be from the user, got '${last.role}'`, 'dialog');
  const tokens: number[] = [];
  for (let i = 0; i + 1 < msgs.length; i += 2) {
    const text = `${B_INST} ${pyStrip(msgs[i]!.content)} ${E_INST} ${pyStrip(msgs[i + 1]!.content)} `;
    tokens.push(...tokenizer.encode(text, { bos: true, eos: true }));
  }
  tokens.push(...tokenizer.encode(`${B_INST} ${pyStrip(last.content)} ${E_INST}`, { bos: true }));
  return tokens;
}

/** Meta's Llama 3 `ChatFormat.encode_dialog_prompt` (see the file comment). */
function encodeLlama3Dialog(tokenizer: Tokenizer, dialog: Dialog): number[] {
  const special = (text: string) => {
    const id = specialId(tokenizer, text);
    if (id === undefined) throw new InvalidArgumentError(`the 'llama3' dialog format needs the special token ${text}, which this tokenizer lacks; use a Llama 3 tokenizer or format 'llama2'`, 'format');
    return id;
  };
  const [start, end, eot] = [special('<|start_header_id|>'), special('<|end_header_id|>'), special('<|eot_id|>')];
  const header = (role: string) => [start, ...tokenizer.encode(role), end, ...tokenizer.encode('\n\n')];
  const tokens = [special('<|begin_of_text|>')];
  for (const m of dialog) tokens.push(...header(m.role), ...tokenizer.encode(pyStrip(m.content)), eot);
  tokens.push(...header('assistant'));
  return tokens;
}
