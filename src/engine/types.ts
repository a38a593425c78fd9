/**
 * The OpenAI-shaped types of the engine: requests and responses of `chat.completions.create` and
 * `completions.create`, the subset llamats supports (docs/SERVER.md lists every field: supported,
 * ignored or refused). Field names are OpenAI's (snake_case), so a body a client sends, the object
 * the library takes and what the server answers are the same JSON.
 */

export type ChatRole = 'system' | 'developer' | 'user' | 'assistant';

export interface ChatTextPart {
  type: 'text';
  text: string;
}

export interface ChatMessageParam {
  role: ChatRole;
  /** A string, or text parts (joined with no separator, as OpenAI does). */
  content: string | ChatTextPart[];
}

export interface StreamOptions {
  /** Send one more chunk before `data: [DONE]`, with `usage` and no choices; every other chunk has `usage: null`. */
  include_usage?: boolean;
}

/** What chat and text completions share. */
interface SamplingParams {
  model: string;
  /** Default 1. 0 = greedy (argmax). In [0, 2]. */
  temperature?: number | null;
  /** Nucleus mass in (0, 1]; default 1 (plain multinomial sampling). */
  top_p?: number | null;
  /** Choices per prompt, each its own sequence in the batch; default 1. */
  n?: number | null;
  /** Seeds the sampler: choice i uses seed + i. Default: random. */
  seed?: number | null;
  /** Up to 4 strings; the text stops before the first one (which is not returned). */
  stop?: string | string[] | null;
  /** In [-2, 2]: logits[t] -= presence_penalty if t was generated before. */
  presence_penalty?: number | null;
  /** In [-2, 2]: logits[t] -= frequency_penalty × (times t was generated). */
  frequency_penalty?: number | null;
  /** Token id (as a string) → bias in [-100, 100] added to its logit. */
  logit_bias?: Record<string, number> | null;
  stream?: boolean | null;
  stream_options?: StreamOptions | null;
  /** Accepted and ignored (it does not change results). */
  user?: string;
}

export interface ChatCompletionCreateParamsBase extends SamplingParams {
  messages: ChatMessageParam[];
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  /** Return the log-probability of each output token. */
  logprobs?: boolean | null;
  /** 0–20 most likely alternatives at each position (needs logprobs: true). */
  top_logprobs?: number | null;
}
export interface ChatCompletionCreateParamsStreaming extends ChatCompletionCreateParamsBase {
  stream: true;
}
export interface ChatCompletionCreateParamsNonStreaming extends ChatCompletionCreateParamsBase {
  stream?: false | null;
}
export type ChatCompletionCreateParams = ChatCompletionCreateParamsStreaming | ChatCompletionCreateParamsNonStreaming;

export interface CompletionCreateParamsBase extends SamplingParams {
  /** A string, several strings, token ids, or several arrays of token ids. */
  prompt: string | string[] | number[] | number[][];
  /** Default 16 (OpenAI's). 0 is allowed with echo (score the prompt). */
  max_tokens?: number | null;
  /** 0–5: log-probability of each token plus that many alternatives. */
  logprobs?: number | null;
  /** Return the prompt before the completion (with its logprobs when `logprobs` is set). */
  echo?: boolean | null;
}
export interface CompletionCreateParamsStreaming extends CompletionCreateParamsBase {
  stream: true;
}
export interface CompletionCreateParamsNonStreaming extends CompletionCreateParamsBase {
  stream?: false | null;
}
export type CompletionCreateParams = CompletionCreateParamsStreaming | CompletionCreateParamsNonStreaming;

/** Options of a call that are not part of the request body. */
export interface RequestOptions {
  /** Cancels the request: its sequences leave the batch at once and the call rejects (or the stream throws) with an AbortError. */
  signal?: AbortSignal;
}

export type FinishReason = 'stop' | 'length';

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
}
export interface ChatCompletionTokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}
export interface ChoiceLogprobs {
  content: ChatCompletionTokenLogprob[] | null;
  refusal: null;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    message: { role: 'assistant'; content: string; refusal: null };
    logprobs: ChoiceLogprobs | null;
    finish_reason: FinishReason;
  }>;
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string };
    logprobs: ChoiceLogprobs | null;
    finish_reason: FinishReason | null;
  }>;
  /** Only with stream_options.include_usage: null on every chunk but the last. */
  usage?: CompletionUsage | null;
}

/** The legacy completions logprobs: parallel arrays; text_offset indexes the choice's text. */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: Array<number | null>;
  top_logprobs: Array<Record<string, number> | null>;
  text_offset: number[];
}

export interface CompletionChoice {
  index: number;
  text: string;
  logprobs: CompletionLogprobs | null;
  finish_reason: FinishReason | null;
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: CompletionChoice[];
  usage?: CompletionUsage | null;
}

export interface ModelInfo {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}
export interface ModelList {
  object: 'list';
  data: ModelInfo[];
}
