/**
 * Request validation: an OpenAI-shaped body (parsed JSON, so `unknown`) becomes a normalized
 * request, or an InvalidRequestError naming the field (`param`) and saying what to send instead.
 *
 * The rule (docs/SERVER.md has the table): a field llamats implements is checked and used; a field
 * that cannot change the result (`user`, `metadata`, `store` …) is accepted and ignored; a field
 * that would change the result and is not implemented (tools, response_format json, images …) is
 * refused, as is any field OpenAI does not define. Nothing is silently dropped that a client
 * could be counting on.
 */
import { InvalidRequestError } from '../errors.js';

/** Chat roles after normalization: `developer` is OpenAI's newer name for `system`. */
export interface NormalizedMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What chat and text completion requests share, normalized. */
export interface NormalizedSampling {
  model: string;
  temperature: number;
  topP: number;
  n: number;
  /** The sampler seed of choice 0 (choice i: seed + i); undefined = random. */
  seed: bigint | undefined;
  stop: string[];
  presencePenalty: number;
  frequencyPenalty: number;
  logitBias: Map<number, number>;
  stream: boolean;
  includeUsage: boolean;
  /** As sent; undefined = the endpoint's default. */
  maxTokens: number | undefined;
}

export interface NormalizedChatRequest extends NormalizedSampling {
  kind: 'chat';
  messages: NormalizedMessage[];
  logprobs: boolean;
  topLogprobs: number;
}

export interface NormalizedCompletionRequest extends NormalizedSampling {
  kind: 'completion';
  /** Each prompt as text or as token ids. */
  prompts: Array<string | number[]>;
  /** undefined: no logprobs; k: the sampled token's and k alternatives. */
  logprobs: number | undefined;
  echo: boolean;
}

export interface ValidationLimits {
  vocabSize: number;
  /** Largest `n` (choices per prompt). */
  maxN: number;
  /** Largest number of sequences one request may ask for (prompts × n). */
  maxSequences: number;
}

/** Fields that cannot change a result: accepted and ignored. */
const IGNORED_CHAT = ['user', 'metadata', 'store', 'service_tier', 'prompt_cache_key', 'safety_identifier', 'parallel_tool_calls'];
const SHARED = ['model', 'temperature', 'top_p', 'n', 'seed', 'stop', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'stream', 'stream_options'];
/** Fields OpenAI defines that llamats refuses unless they carry their neutral value (checked below). */
const REFUSED_CHAT = ['tools', 'tool_choice', 'functions', 'function_call', 'response_format', 'modalities', 'audio', 'prediction', 'reasoning_effort', 'web_search_options', 'verbosity'];
const CHAT_FIELDS = new Set([...SHARED, 'messages', 'max_tokens', 'max_completion_tokens', 'logprobs', 'top_logprobs', ...IGNORED_CHAT, ...REFUSED_CHAT]);
const COMPLETION_FIELDS = new Set([...SHARED, 'prompt', 'max_tokens', 'logprobs', 'echo', 'user', 'suffix', 'best_of']);

type Body = Record<string, unknown>;

function fail(message: string, param?: string): never {
  throw new InvalidRequestError(message, param);
}

function asBody(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('the request body must be a JSON object');
  return body as Body;
}

function checkUnknown(body: Body, allowed: Set<string>, endpoint: string): void {
  for (const k of Object.keys(body)) {
    if (!allowed.has(k)) fail(`unrecognized request argument supplied: ${k} (${endpoint} takes: ${[...allowed].join(', ')})`, k);
  }
}

/** The value of an optional field; null and absent both mean "not given". */
function opt(body: Body, key: string): unknown {
  const v = body[key];
  return v === null ? undefined : v;
}

function num(body: Body, key: string, min: number, max: number, def: number, integer = false): number {
  const v = opt(body, key);
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${key} must be a number; got ${JSON.stringify(v)}`, key);
  if (integer && !Number.isInteger(v)) fail(`${key} must be an integer; got ${v}`, key);
  if (v < min || v > max) fail(`${key} must be in [${min}, ${max}]; got ${v}`, key);
  return v;
}

function bool(body: Body, key: string, def: boolean): boolean {
  const v = opt(body, key);
  if (v === undefined) return def;
  if (typeof v !== 'boolean') fail(`${key} must be true or false; got ${JSON.stringify(v)}`, key);
  return v;
}

function shared(body: Body, limits: ValidationLimits, maxTokensMin: number): NormalizedSampling {
  const model = body.model;
  if (typeof model !== 'string' || model === '') fail(`model is required: a string naming the served model (GET /v1/models lists it); got ${JSON.stringify(model)}`, 'model');
  const temperature = num(body, 'temperature', 0, 2, 1);
  const topP = num(body, 'top_p', 0, 1, 1);
  if (topP === 0) fail('top_p must be greater than 0 (1 = off); for greedy decoding send temperature: 0', 'top_p');
  const n = num(body, 'n', 1, limits.maxN, 1, true);
  const seedValue = opt(body, 'seed');
  let seed: bigint | undefined;
  if (seedValue !== undefined) {
    if (typeof seedValue !== 'number' || !Number.isSafeInteger(seedValue)) fail(`seed must be an integer; got ${JSON.stringify(seedValue)}`, 'seed');
    seed = BigInt(seedValue);
  }
  const stop = stopStrings(opt(body, 'stop'));
  const presencePenalty = num(body, 'presence_penalty', -2, 2, 0);
  const frequencyPenalty = num(body, 'frequency_penalty', -2, 2, 0);
  const logitBias = bias(opt(body, 'logit_bias'), limits.vocabSize);
  const stream = bool(body, 'stream', false);
  const so = opt(body, 'stream_options');
  let includeUsage = false;
  if (so !== undefined) {
    if (!stream) fail('stream_options is only allowed with stream: true', 'stream_options');
    if (typeof so !== 'object' || Array.isArray(so)) fail('stream_options must be an object like { "include_usage": true }', 'stream_options');
    for (const k of Object.keys(so as object)) if (k !== 'include_usage') fail(`stream_options.${k} is not supported; only include_usage is`, `stream_options.${k}`);
    includeUsage = bool(so as Body, 'include_usage', false);
  }
  const mt = opt(body, 'max_tokens');
  let maxTokens: number | undefined;
  if (mt !== undefined) {
    if (typeof mt !== 'number' || !Number.isInteger(mt) || mt < maxTokensMin) fail(`max_tokens must be an integer ≥ ${maxTokensMin}; got ${JSON.stringify(mt)}`, 'max_tokens');
    maxTokens = mt;
  }
  return { model, temperature, topP, n, seed, stop, presencePenalty, frequencyPenalty, logitBias, stream, includeUsage, maxTokens };
}

function stopStrings(v: unknown): string[] {
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) fail('stop must be a string or an array of up to 4 strings', 'stop');
  if (list.length > 4) fail(`stop takes at most 4 strings; got ${list.length}`, 'stop');
  for (const s of list as string[]) {
    if (s === '') fail('stop strings must not be empty', 'stop');
    if (s.length > 512) fail('stop strings must be at most 512 characters', 'stop');
  }
  return list as string[];
}

function bias(v: unknown, vocabSize: number): Map<number, number> {
  const m = new Map<number, number>();
  if (v === undefined) return m;
  if (typeof v !== 'object' || Array.isArray(v)) fail('logit_bias must be an object mapping token ids to numbers in [-100, 100]', 'logit_bias');
  for (const [k, b] of Object.entries(v as object)) {
    const id = Number(k);
    if (!/^\d+$/.test(k) || id >= vocabSize) fail(`logit_bias key ${JSON.stringify(k)} is not a token id of this model's vocabulary [0, ${vocabSize})`, 'logit_bias');
    if (typeof b !== 'number' || !Number.isFinite(b) || b < -100 || b > 100) fail(`logit_bias[${k}] must be a number in [-100, 100]; got ${JSON.stringify(b)}`, 'logit_bias');
    m.set(id, b);
  }
  return m;
}

/** A chat completion request (POST /v1/chat/completions). */
export function validateChatRequest(raw: unknown, limits: ValidationLimits): NormalizedChatRequest {
  const body = asBody(raw);
  checkUnknown(body, CHAT_FIELDS, 'chat.completions');
  refuseUnlessNeutral(body);
  const mct = opt(body, 'max_completion_tokens');
  const mt = opt(body, 'max_tokens');
  if (mct !== undefined && mt !== undefined && mct !== mt) fail('send max_completion_tokens or max_tokens, not both with different values', 'max_completion_tokens');
  const base = shared(mct !== undefined ? { ...body, max_tokens: mct } : body, limits, 1);
  const logprobs = bool(body, 'logprobs', false);
  const topLogprobs = num(body, 'top_logprobs', 0, 20, 0, true);
  if (opt(body, 'top_logprobs') !== undefined && !logprobs) fail('top_logprobs needs logprobs: true', 'top_logprobs');
  return { ...base, kind: 'chat', messages: messages(body.messages), logprobs, topLogprobs };
}

function refuseUnlessNeutral(body: Body): void {
  const v = (k: string) => opt(body, k);
  const tools = v('tools');
  if (tools !== undefined && !(Array.isArray(tools) && tools.length === 0)) fail('tools (function calling) are not supported by this server; send the request without tools', 'tools');
  const tc = v('tool_choice');
  if (tc !== undefined && tc !== 'none' && tc !== 'auto') fail("tool_choice is not supported (no tools); leave it out or send 'none'", 'tool_choice');
  if (v('functions') !== undefined) fail('functions (function calling) are not supported; leave them out', 'functions');
  const fc = v('function_call');
  if (fc !== undefined && fc !== 'none' && fc !== 'auto') fail("function_call is not supported; leave it out or send 'none'", 'function_call');
  const rf = v('response_format');
  if (rf !== undefined && !(typeof rf === 'object' && rf !== null && (rf as Body).type === 'text' && Object.keys(rf).length === 1)) {
    fail('response_format other than { "type": "text" } (JSON mode, JSON schema) is not supported; leave it out', 'response_format');
  }
  const mod = v('modalities');
  if (mod !== undefined && !(Array.isArray(mod) && mod.length === 1 && mod[0] === 'text')) fail('only the text modality is supported; leave modalities out or send ["text"]', 'modalities');
  for (const k of ['audio', 'prediction', 'reasoning_effort', 'web_search_options', 'verbosity']) {
    if (v(k) !== undefined) fail(`${k} is not supported by this server; leave it out`, k);
  }
}

function messages(v: unknown): NormalizedMessage[] {
  if (!Array.isArray(v) || v.length === 0) fail('messages must be a non-empty array of { role, content }', 'messages');
  return v.map((m, i): NormalizedMessage => {
    const p = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) fail(`${p} must be an object { role, content }`, p);
    const msg = m as Body;
    for (const k of Object.keys(msg)) {
      if (k === 'name') fail(`${p}.name is not supported (the chat template has no place for it); put the name in the content`, `${p}.name`);
      if (k === 'tool_calls' || k === 'function_call' || k === 'tool_call_id' || k === 'audio') fail(`${p}.${k} is not supported (no tools or audio)`, `${p}.${k}`);
      if (k !== 'role' && k !== 'content' && k !== 'refusal') fail(`${p}.${k} is not a message field; messages take role and content`, `${p}.${k}`);
    }
    const role = msg.role;
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant') {
      fail(`${p}.role must be 'system', 'developer', 'user' or 'assistant'; got ${JSON.stringify(role)}${role === 'tool' || role === 'function' ? ' (tools are not supported)' : ''}`, `${p}.role`);
    }
    return { role: role === 'developer' ? 'system' : role, content: content(msg.content, `${p}.content`) };
  });
}

function content(v: unknown, p: string): string {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) fail(`${p} must be a string or an array of text parts; got ${JSON.stringify(v)}`, p);
  return v
    .map((part, j) => {
      const pp = `${p}[${j}]`;
      if (typeof part !== 'object' || part === null) fail(`${pp} must be { type: 'text', text }`, pp);
      const o = part as Body;
      if (o.type !== 'text') fail(`${pp}.type ${JSON.stringify(o.type)} is not supported; only text parts are (this model reads no images, audio or files)`, `${pp}.type`);
      if (typeof o.text !== 'string') fail(`${pp}.text must be a string`, `${pp}.text`);
      return o.text;
    })
    .join('');
}

/** A text completion request (POST /v1/completions). */
export function validateCompletionRequest(raw: unknown, limits: ValidationLimits): NormalizedCompletionRequest {
  const body = asBody(raw);
  checkUnknown(body, COMPLETION_FIELDS, 'completions');
  const echo = bool(body, 'echo', false);
  const base = shared(body, limits, echo ? 0 : 1);
  const suffix = opt(body, 'suffix');
  if (suffix !== undefined && suffix !== '') fail('suffix (fill-in-the-middle) is not supported; leave it out', 'suffix');
  const bestOf = opt(body, 'best_of');
  if (bestOf !== undefined && bestOf !== base.n) fail(`best_of is not supported (it would generate ${JSON.stringify(bestOf)} and return the best); leave it out or set it equal to n`, 'best_of');
  const lp = opt(body, 'logprobs');
  let logprobs: number | undefined;
  if (lp !== undefined) {
    if (typeof lp !== 'number' || !Number.isInteger(lp) || lp < 0 || lp > 5) fail(`logprobs must be an integer in [0, 5] (alternatives per token); got ${JSON.stringify(lp)}`, 'logprobs');
    logprobs = lp;
  }
  const prompts = promptList(body.prompt, limits.vocabSize);
  if (prompts.length * base.n > limits.maxSequences) fail(`${prompts.length} prompts × n ${base.n} = ${prompts.length * base.n} sequences; at most ${limits.maxSequences} per request`, 'prompt');
  return { ...base, kind: 'completion', prompts, logprobs, echo };
}

function promptList(v: unknown, vocabSize: number): Array<string | number[]> {
  const ids = (a: unknown[], p: string): number[] => {
    a.forEach((t, i) => {
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= vocabSize) fail(`${p}[${i}] must be a token id in [0, ${vocabSize}); got ${JSON.stringify(t)}`, 'prompt');
    });
    return a as number[];
  };
  if (typeof v === 'string') return [v];
  if (!Array.isArray(v) || v.length === 0) fail('prompt must be a string, an array of strings, an array of token ids or an array of such arrays', 'prompt');
  if (v.every((x) => typeof x === 'string')) return v as string[];
  if (v.every((x) => typeof x === 'number')) return [ids(v, 'prompt')];
  if (v.every((x) => Array.isArray(x))) {
    return (v as unknown[][]).map((a, i) => {
      if (a.length === 0) fail(`prompt[${i}] is empty`, 'prompt');
      return ids(a, `prompt[${i}]`);
    });
  }
  fail('prompt must be a string, an array of strings, an array of token ids or an array of such arrays (not a mix)', 'prompt');
}
