/**
 * The Engine: a model, its tokenizer and the batching scheduler behind OpenAI's API shape, as
 * mlc-ai/web-llm and openai-node spell it:
 *
 *   const engine = Engine.load('stories260K.bin', { tokenizer: 'tok512.bin' });
 *   const r = await engine.chat.completions.create({ model: engine.name, messages: [{ role: 'user', content: 'Hi' }] });
 *   for await (const chunk of await engine.chat.completions.create({ ...req, stream: true })) …
 *   await engine.completions.create({ model: engine.name, prompt: 'Once upon a time', max_tokens: 32 });
 *
 * Every request is validated up front (validate.ts: InvalidRequestError naming the field), its
 * prompt built (chat: the model's chat template), checked against the context (prompt +
 * max_tokens must fit: ContextOverflowError), and its sequences (n per prompt) queued on the
 * scheduler, which runs all requests' sequences together. `stream: true` gives an AsyncIterable
 * of chunks; `{ signal }` (or leaving the loop early) cancels the request and frees its slots.
 * The HTTP server (src/server/) only translates: JSON in, this call, JSON or SSE out.
 */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { ContextOverflowError, InvalidArgumentError, InvalidRequestError } from '../errors.js';
import { encodeDialog, type DialogFormat } from '../generate/dialog.js';
import { checkTokenizer } from '../generate/generate.js';
import { specialId } from '../generate/template.js';
import { defaultTokenizerPath } from '../llama.js';
import { loadModel } from '../model/load.js';
import type { Model } from '../model/weights.js';
import { Tokenizer } from '../tokenizer/tokenizer.js';
import { Scheduler, type SchedulerOptions, type SchedulerStats } from './scheduler.js';
import { Sequence, type SequenceEvent, type SequenceParams, type TokenLogprob } from './sequence.js';
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionCreateParams,
  ChatCompletionCreateParamsNonStreaming,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionTokenLogprob,
  Completion,
  CompletionChoice,
  CompletionCreateParams,
  CompletionCreateParamsNonStreaming,
  CompletionCreateParamsStreaming,
  CompletionLogprobs,
  CompletionUsage,
  FinishReason,
  ModelInfo,
  ModelList,
  RequestOptions,
} from './types.js';
import { validateChatRequest, validateCompletionRequest, type NormalizedSampling, type ValidationLimits } from './validate.js';
import type { LoadQuantization } from '../model/tensor.js';

export interface EngineOptions extends SchedulerOptions {
  /** The model id requests must name (`model`) and /v1/models lists. Default: the model file's name without extension. */
  name?: string;
  /**
   * How chat messages become the prompt: 'template' (the tokenizer's Jinja chat template, or
   * `chatTemplate`), 'llama3' or 'llama2' (Meta's formats). Default: 'template' when the tokenizer
   * has a template, else 'llama3' for a Llama 3 vocabulary, else 'llama2'.
   */
  chatFormat?: DialogFormat;
  /** A Jinja chat template to use instead of the tokenizer's (implies chatFormat 'template'). */
  chatTemplate?: string;
  /** Largest `n` per request. Default: slots. */
  maxN?: number;
}

export interface EngineStats extends SchedulerStats {
  model: string;
  contextLength: number;
}

const FINGERPRINT = 'llamats';
/** Default positions per slot: the model's context, at most this (a 128k-context model would need GiBs of KV cache per slot). */
export const DEFAULT_MAX_CONTEXT = 4096;

export class Engine {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  /** The model id clients send. */
  readonly name: string;
  readonly chatFormat: DialogFormat;
  /** Unix seconds when the engine started (the model's `created`). */
  readonly created = Math.floor(Date.now() / 1000);
  readonly chat: { readonly completions: ChatCompletions };
  readonly completions: Completions;
  readonly models: { list(): ModelList; retrieve(id: string): ModelInfo };
  readonly scheduler: Scheduler;
  private readonly chatTemplate: string | undefined;
  private readonly limits: ValidationLimits;
  private readonly stopIds: number[];

  constructor(model: Model, tokenizer: Tokenizer, opts: EngineOptions = {}) {
    checkTokenizer(model, tokenizer);
    const slots = opts.slots ?? 16;
    for (const [k, v, min] of [['slots', slots, 1], ['maxQueue', opts.maxQueue, 0], ['prefillChunk', opts.prefillChunk, 1], ['maxN', opts.maxN, 1]] as const) {
      if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new InvalidArgumentError(`${k} must be an integer ≥ ${min}; got ${v}`, k);
    }
    const ctx = opts.contextLength ?? Math.min(model.config.seqLen, DEFAULT_MAX_CONTEXT);
    if (!Number.isInteger(ctx) || ctx < 2 || ctx > model.config.seqLen) {
      throw new InvalidArgumentError(`contextLength must be an integer in [2, ${model.config.seqLen}] (the model's context); got ${ctx}`, 'contextLength');
    }
    this.model = model;
    this.tokenizer = tokenizer;
    this.name = opts.name ?? path.basename(model.source.path).replace(/\.[^.]*$/, '');
    this.chatTemplate = opts.chatTemplate;
    this.chatFormat = opts.chatFormat ?? (opts.chatTemplate !== undefined || tokenizer.chatTemplate ? 'template' : specialId(tokenizer, '<|start_header_id|>') !== undefined ? 'llama3' : 'llama2');
    this.scheduler = new Scheduler(model, { ...opts, slots, contextLength: ctx });
    const maxN = opts.maxN ?? slots;
    this.limits = { vocabSize: model.config.vocabSize, maxN, maxSequences: Math.max(maxN, this.scheduler.maxQueue) };
    // the tokenizer's stop ids (Llama 3: <|end_of_text|>, <|eot_id|>), else EOS; and BOS, which
    // starts a new text (llama2.c's models emit it between stories)
    this.stopIds = [...new Set([...(tokenizer.stopIds?.length ? tokenizer.stopIds : [tokenizer.eosId]), tokenizer.bosId])];
    this.chat = { completions: new ChatCompletions(this) };
    this.completions = new Completions(this);
    const info = (): ModelInfo => ({ id: this.name, object: 'model', created: this.created, owned_by: 'llamats' });
    this.models = {
      list: () => ({ object: 'list', data: [info()] }),
      retrieve: (id: string) => {
        if (id !== this.name) throw new InvalidRequestError(`the model '${id}' does not exist; this server serves '${this.name}'`, 'model', 'MODEL_NOT_FOUND');
        return info();
      },
    };
  }

  /** Load a model and its tokenizer (beside it, or `tokenizer`), as `llamats serve` does. */
  static load(modelPath: string, opts: EngineOptions & { tokenizer?: string; quantize?: LoadQuantization } = {}): Engine {
    const { tokenizer: tokPath, quantize, ...rest } = opts;
    const tokenizer = Tokenizer.load(tokPath ?? defaultTokenizerPath(modelPath));
    const model = loadModel(modelPath, {
      vocabSize: tokenizer.vocabSize,
      ...(opts.contextLength !== undefined ? { maxSeqLen: opts.contextLength } : {}),
      ...(quantize ? { quantize } : {}),
    });
    return new Engine(model, tokenizer, rest);
  }

  get contextLength(): number {
    return this.scheduler.contextLength;
  }

  stats(): EngineStats {
    return { model: this.name, contextLength: this.contextLength, ...this.scheduler.stats() };
  }

  /** Cancel every request and free the KV caches. */
  close(): void {
    this.scheduler.close();
  }

  /** @internal chat.completions.create */
  async runChat(raw: unknown, opts: RequestOptions): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    opts.signal?.throwIfAborted();
    const req = validateChatRequest(raw, this.limits);
    this.checkModel(req.model);
    let prompt: number[];
    try {
      prompt = encodeDialog(this.tokenizer, req.messages, { format: this.chatFormat, ...(this.chatTemplate !== undefined ? { template: this.chatTemplate } : {}) });
    } catch (e) {
      if (e instanceof InvalidArgumentError) throw new InvalidRequestError(`messages: ${e.message}`, 'messages');
      throw e;
    }
    const maxTokens = this.resolveMaxTokens(prompt.length, req.maxTokens, this.contextLength - prompt.length);
    const job = this.start([prompt], req, (i) => ({
      maxTokens,
      logprobs: req.logprobs,
      topLogprobs: req.topLogprobs,
      promptLogprobs: false,
      textAfter: this.tokenizer.bosId,
      seed: seedOf(req.seed, i),
    }), opts);
    return req.stream ? chatStream(job, req.includeUsage) : chatResult(job);
  }

  /** @internal completions.create */
  async runCompletion(raw: unknown, opts: RequestOptions): Promise<Completion | AsyncIterable<Completion>> {
    opts.signal?.throwIfAborted();
    const req = validateCompletionRequest(raw, this.limits);
    this.checkModel(req.model);
    const prompts = req.prompts.map((p) => (typeof p === 'string' ? this.tokenizer.encode(p, { bos: true }) : p));
    const maxTokens = prompts.map((p) => this.resolveMaxTokens(p.length, req.maxTokens, Math.min(16, this.contextLength - p.length)));
    const lp = req.logprobs !== undefined;
    const job = this.start(prompts, req, (i, p) => ({
      maxTokens: maxTokens[p]!,
      logprobs: lp,
      topLogprobs: req.logprobs ?? 0,
      promptLogprobs: lp && req.echo,
      textAfter: prompts[p]![prompts[p]!.length - 1]!,
      seed: seedOf(req.seed, i % req.n),
    }), opts);
    const echo = req.echo ? req.prompts.map((p, i) => (typeof p === 'string' ? p : this.tokenizer.decode(prompts[i]!))) : undefined;
    return req.stream ? completionStream(job, req.includeUsage, echo) : completionResult(job, echo);
  }

  private checkModel(model: string): void {
    if (model !== this.name) throw new InvalidRequestError(`the model '${model}' does not exist; this server serves '${this.name}' (GET /v1/models)`, 'model', 'MODEL_NOT_FOUND');
  }

  /** max_tokens as asked (prompt + max_tokens must fit the context), or the default (at least one position must be left). */
  private resolveMaxTokens(promptLength: number, asked: number | undefined, def: number): number {
    const ctx = this.contextLength;
    if (promptLength >= ctx) {
      throw new ContextOverflowError(`the prompt is ${promptLength} tokens but the context is ${ctx}, which leaves no room for an answer; shorten the prompt`);
    }
    if (asked === undefined) return def;
    if (promptLength + asked > ctx) {
      throw new ContextOverflowError(`the prompt (${promptLength} tokens) plus max_tokens (${asked}) is ${promptLength + asked} tokens, more than the context of ${ctx}; lower max_tokens to at most ${ctx - promptLength} or shorten the prompt`);
    }
    return asked;
  }

  /** Queue n sequences per prompt; choice index = prompt × n + j, as OpenAI numbers them. */
  private start(
    prompts: number[][],
    req: NormalizedSampling,
    perChoice: (choice: number, prompt: number) => Pick<SequenceParams, 'maxTokens' | 'logprobs' | 'topLogprobs' | 'promptLogprobs' | 'textAfter' | 'seed'>,
    opts: RequestOptions,
  ): Job {
    const job = new Job(this, prompts.reduce((a, p) => a + p.length, 0));
    prompts.forEach((prompt, p) => {
      for (let j = 0; j < req.n; j++) {
        const index = p * req.n + j;
        const params: SequenceParams = {
          temperature: req.temperature,
          topP: req.topP,
          presencePenalty: req.presencePenalty,
          frequencyPenalty: req.frequencyPenalty,
          logitBias: req.logitBias,
          stop: req.stop,
          stopIds: this.stopIds,
          ...perChoice(index, p),
        };
        job.sequences.push(new Sequence(this.tokenizer, prompt, params, (ev) => job.onEvent(index, ev)));
      }
    });
    this.scheduler.submit(job.sequences); // throws RateLimitError when the queue is full
    job.watch(opts.signal);
    return job;
  }
}

/** choice i's seed: the request's + i, or random. */
function seedOf(seed: bigint | undefined, i: number): bigint {
  if (seed !== undefined) return seed + BigInt(i);
  return randomBytes(8).readBigUInt64LE();
}

class ChatCompletions {
  constructor(private readonly engine: Engine) {}
  create(body: ChatCompletionCreateParamsStreaming, opts?: RequestOptions): Promise<AsyncIterable<ChatCompletionChunk>>;
  create(body: ChatCompletionCreateParamsNonStreaming, opts?: RequestOptions): Promise<ChatCompletion>;
  create(body: ChatCompletionCreateParams, opts?: RequestOptions): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
  create(body: ChatCompletionCreateParams, opts: RequestOptions = {}): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    return this.engine.runChat(body, opts);
  }
}

class Completions {
  constructor(private readonly engine: Engine) {}
  create(body: CompletionCreateParamsStreaming, opts?: RequestOptions): Promise<AsyncIterable<Completion>>;
  create(body: CompletionCreateParamsNonStreaming, opts?: RequestOptions): Promise<Completion>;
  create(body: CompletionCreateParams, opts?: RequestOptions): Promise<Completion | AsyncIterable<Completion>>;
  create(body: CompletionCreateParams, opts: RequestOptions = {}): Promise<Completion | AsyncIterable<Completion>> {
    return this.engine.runCompletion(body, opts);
  }
}

// -------------------------------------------------------------------------------------------
// A request in flight: its sequences' events, in order, for one consumer

type JobEvent = { index: number } & SequenceEvent;

class Job {
  readonly id = randomBytes(12).toString('hex');
  readonly created = Math.floor(Date.now() / 1000);
  readonly sequences: Sequence[] = [];
  readonly usage: CompletionUsage;
  private readonly events: JobEvent[] = [];
  private wake: (() => void) | undefined;
  private failure: { error: unknown } | undefined;
  private open: number | undefined; // sequences not done yet
  private readonly engine: Engine;
  private unwatch: (() => void) | undefined;

  constructor(engine: Engine, promptTokens: number) {
    this.engine = engine;
    this.usage = { prompt_tokens: promptTokens, completion_tokens: 0, total_tokens: promptTokens };
  }

  get model(): string {
    return this.engine.name;
  }

  onEvent(index: number, ev: SequenceEvent): void {
    if (ev.type === 'error') return this.fail(ev.error);
    if (ev.type === 'done') {
      this.usage.completion_tokens += ev.completionTokens;
      this.usage.total_tokens += ev.completionTokens;
    }
    this.events.push({ index, ...ev });
    this.wake?.();
  }

  watch(signal: AbortSignal | undefined): void {
    this.open = this.sequences.length;
    if (!signal) return;
    const onAbort = () => this.fail(signal.reason ?? new DOMException('This operation was aborted', 'AbortError'));
    signal.addEventListener('abort', onAbort, { once: true });
    this.unwatch = () => signal.removeEventListener('abort', onAbort);
  }

  /** Stop every sequence still running (abort, error, consumer gone). */
  cancel(): void {
    for (const s of this.sequences) if (s.state !== 'done' || s.session) this.engine.scheduler.cancel(s);
    this.unwatch?.();
  }

  private fail(error: unknown): void {
    if (this.failure) return;
    this.failure = { error };
    this.cancel();
    this.wake?.();
  }

  /** The events in order; ends when every sequence is done, throws on abort or failure. Leaving early cancels. */
  async *drain(): AsyncGenerator<JobEvent> {
    try {
      for (;;) {
        if (this.failure) throw this.failure.error;
        const ev = this.events.shift();
        if (ev) {
          if (ev.type === 'done') this.open!--;
          yield ev;
          continue;
        }
        if (this.open === 0) return;
        await new Promise<void>((r) => (this.wake = r));
        this.wake = undefined;
      }
    } finally {
      this.cancel();
    }
  }
}

// -------------------------------------------------------------------------------------------
// Chat completions: result and chunks

function chatLogprobs(tokens: TokenLogprob[]): ChatCompletionTokenLogprob[] {
  return tokens.map((t) => ({
    token: t.text,
    logprob: t.logprob ?? 0,
    bytes: t.bytes,
    top_logprobs: t.top.map((a) => ({ token: a.text, logprob: a.logprob, bytes: a.bytes })),
  }));
}

async function chatResult(job: Job): Promise<ChatCompletion> {
  const n = job.sequences.length;
  const wantLp = job.sequences[0]!.params.logprobs;
  const choices = Array.from({ length: n }, (_, index) => ({
    index,
    message: { role: 'assistant' as const, content: '', refusal: null },
    logprobs: wantLp ? { content: [] as ChatCompletionTokenLogprob[], refusal: null } : null,
    finish_reason: 'length' as FinishReason,
  }));
  for await (const ev of job.drain()) {
    const c = choices[ev.index]!;
    if (ev.type === 'text') {
      c.message.content += ev.text;
      c.logprobs?.content.push(...chatLogprobs(ev.tokens));
    } else if (ev.type === 'done') c.finish_reason = ev.finishReason;
  }
  return { id: `chatcmpl-${job.id}`, object: 'chat.completion', created: job.created, model: job.model, system_fingerprint: FINGERPRINT, choices, usage: { ...job.usage } };
}

function chatStream(job: Job, includeUsage: boolean): AsyncIterable<ChatCompletionChunk> {
  const wantLp = job.sequences[0]!.params.logprobs;
  const base = () => ({ id: `chatcmpl-${job.id}`, object: 'chat.completion.chunk' as const, created: job.created, model: job.model, system_fingerprint: FINGERPRINT, ...(includeUsage ? { usage: null } : {}) });
  const started = new Set<number>();
  return {
    async *[Symbol.asyncIterator]() {
      for await (const ev of job.drain()) {
        const first = !started.has(ev.index);
        started.add(ev.index);
        const role = first ? { role: 'assistant' as const } : {};
        if (ev.type === 'text') {
          if (ev.text === '' && ev.tokens.length === 0 && !first) continue;
          yield { ...base(), choices: [{ index: ev.index, delta: { ...role, content: ev.text }, logprobs: wantLp ? { content: chatLogprobs(ev.tokens), refusal: null } : null, finish_reason: null }] };
        } else if (ev.type === 'done') {
          yield { ...base(), choices: [{ index: ev.index, delta: first ? { ...role, content: '' } : {}, logprobs: null, finish_reason: ev.finishReason }] };
        }
      }
      if (includeUsage) yield { ...base(), choices: [], usage: { ...job.usage } };
    },
  };
}

// -------------------------------------------------------------------------------------------
// Text completions (legacy): result and chunks

/** Legacy logprobs for `tokens`, whose text starts at `offset` of the choice's text. */
function completionLogprobs(tokens: TokenLogprob[], offset: number): CompletionLogprobs {
  const lp: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const t of tokens) {
    lp.tokens.push(t.text);
    lp.token_logprobs.push(t.logprob);
    lp.top_logprobs.push(t.logprob === null ? null : Object.fromEntries(t.top.map((a) => [a.text, a.logprob])));
    lp.text_offset.push(offset);
    offset += t.text.length;
  }
  return lp;
}

/** Per choice: where the next generated token's text starts in the choice's text (text_offset). */
class ChoiceText {
  constructor(public offset: number) {}
}

async function completionResult(job: Job, echo: string[] | undefined): Promise<Completion> {
  const n = job.sequences.length;
  const echoOf = (i: number) => (echo ? echo[Math.floor(i / (n / echo.length))]! : '');
  const wantLp = job.sequences[0]!.params.logprobs;
  const choices: CompletionChoice[] = Array.from({ length: n }, (_, index) => ({ index, text: echoOf(index), logprobs: wantLp ? emptyLogprobs() : null, finish_reason: 'length' }));
  const texts = Array.from({ length: n }, (_, i) => new ChoiceText(echoOf(i).length));
  for await (const ev of job.drain()) {
    const c = choices[ev.index]!;
    if (ev.type === 'text') appendCompletion(c, texts[ev.index]!, ev);
    else if (ev.type === 'done') c.finish_reason = ev.finishReason;
  }
  return { id: `cmpl-${job.id}`, object: 'text_completion', created: job.created, model: job.model, system_fingerprint: FINGERPRINT, choices, usage: { ...job.usage } };
}

function emptyLogprobs(): CompletionLogprobs {
  return { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
}

/** Add an event's text and token logprobs to a choice: prompt tokens (echo) count from 0, generated ones from the choice's offset. */
function appendCompletion(c: CompletionChoice, t: ChoiceText, ev: { text: string; tokens: TokenLogprob[]; prompt?: true }): void {
  if (c.logprobs) {
    const lp = completionLogprobs(ev.tokens, ev.prompt ? 0 : t.offset);
    c.logprobs.tokens.push(...lp.tokens);
    c.logprobs.token_logprobs.push(...lp.token_logprobs);
    c.logprobs.top_logprobs.push(...lp.top_logprobs);
    c.logprobs.text_offset.push(...lp.text_offset);
  }
  c.text += ev.text;
  if (!ev.prompt) t.offset += ev.tokens.length > 0 ? ev.tokens.reduce((a, x) => a + x.text.length, 0) : ev.text.length;
}

function completionStream(job: Job, includeUsage: boolean, echo: string[] | undefined): AsyncIterable<Completion> {
  const n = job.sequences.length;
  const echoOf = (i: number) => (echo ? echo[Math.floor(i / (n / echo.length))]! : '');
  const wantLp = job.sequences[0]!.params.logprobs;
  const texts = Array.from({ length: n }, (_, i) => new ChoiceText(echoOf(i).length));
  const base = () => ({ id: `cmpl-${job.id}`, object: 'text_completion' as const, created: job.created, model: job.model, system_fingerprint: FINGERPRINT, ...(includeUsage ? { usage: null } : {}) });
  return {
    async *[Symbol.asyncIterator]() {
      const echoed = new Set<number>();
      for await (const ev of job.drain()) {
        const i = ev.index;
        const c: CompletionChoice = { index: i, text: '', logprobs: wantLp ? emptyLogprobs() : null, finish_reason: null };
        if (echo && !echoed.has(i)) {
          echoed.add(i); // the prompt goes first, with the choice's first chunk
          c.text = echoOf(i);
        }
        if (ev.type === 'text') {
          appendCompletion(c, texts[i]!, ev);
          if (c.text === '' && (!c.logprobs || c.logprobs.tokens.length === 0)) continue;
        } else if (ev.type === 'done') c.finish_reason = ev.finishReason;
        yield { ...base(), choices: [c] };
      }
      if (includeUsage) yield { ...base(), choices: [], usage: { ...job.usage } };
    },
  };
}
