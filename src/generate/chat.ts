/**
 * run.c's interactive chat loop with the Llama 2 chat format:
 *
 *   first turn, with a system prompt:  [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]
 *   other turns:                       [INST] {user} [/INST]
 *
 * Each user turn is encoded with BOS and forced into the model; the assistant's tokens are
 * sampled and printed until it emits EOS, which is fed back to the model before the next turn.
 * The whole conversation shares one KV cache and ends after `steps` positions or at the end of
 * input. One deliberate difference from run.c: the token sampled right after EOS is not printed.
 */
import { Session, type SessionOptions } from '../model/forward.js';
import type { Model } from '../model/weights.js';
import { TextStream } from '../tokenizer/llama2c.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { checkTokenizer, resolveSteps } from './generate.js';
import { Sampler, type SamplerOptions } from './sampler.js';

export interface ChatIO {
  /** Show `prompt` and read one line (without its newline); null at the end of input. */
  readLine(prompt: string): Promise<string | null>;
  /** Print text (no newline added). */
  write(text: string): void;
}

export interface ChatOptions extends SamplerOptions {
  /** The first user message; otherwise read with the prompt "User: ". */
  readonly userPrompt?: string;
  /** The system prompt; when undefined it is asked for ("Enter system prompt (optional): "). */
  readonly systemPrompt?: string;
  /** Positions for the whole conversation (0 = the context). Default 256. */
  readonly steps?: number;
  /** How the session runs (backend, threads, KV cache type); its maxSeqLen is `steps`. */
  readonly session?: Omit<SessionOptions, 'maxSeqLen'>;
}

/** Render one user turn in the Llama 2 chat format, as run.c does. */
export function renderLlama2Turn(user: string, system?: string): string {
  return system ? `[INST] <<SYS>>\n${system}\n<</SYS>>\n\n${user} [/INST]` : `[INST] ${user} [/INST]`;
}

export async function chat(model: Model, tokenizer: Tokenizer, io: ChatIO, opts: ChatOptions = {}): Promise<void> {
  checkTokenizer(model, tokenizer);
  const steps = resolveSteps(opts.steps, model.config.seqLen);
  const sampler = new Sampler(model.config.vocabSize, opts);
  const session = new Session(model, { ...opts.session, maxSeqLen: steps });
  const eos = tokenizer.eosId;
  let prompt: number[] = [];
  let userIdx = 0;
  let userTurn = true;
  let next = 0;
  let pos = 0;
  let text = new TextStream({ safePrint: true });
  try {
    while (pos < steps) {
      if (userTurn) {
        let system: string | undefined;
        if (pos === 0) system = opts.systemPrompt ?? (await io.readLine('Enter system prompt (optional): ')) ?? '';
        const user = pos === 0 && opts.userPrompt !== undefined ? opts.userPrompt : await io.readLine('User: ');
        if (user === null) break; // end of input
        prompt = tokenizer.encode(renderLlama2Turn(user, pos === 0 ? system : undefined), { bos: true });
        userIdx = 0;
        userTurn = false;
        io.write('Assistant: ');
        text = new TextStream({ safePrint: true });
      }
      const token = userIdx < prompt.length ? prompt[userIdx++]! : next;
      if (token === eos) userTurn = true;
      const logits = session.forward(token, pos);
      next = sampler.sample(logits); // sampled at every step, like run.c, so that seeds agree
      pos++;
      if (userIdx >= prompt.length && next !== eos && !userTurn) io.write(text.push(tokenizer.tokenBytes(token, next)));
      if (next === eos) io.write(text.flush() + '\n');
    }
  } finally {
    session.dispose();
  }
  io.write(text.flush() + '\n');
}
