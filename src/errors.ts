/**
 * The one small hierarchy of errors that llamats throws on purpose.
 *
 * Every error has a stable `code` (for programs), a message that says what was expected,
 * what was found and what to do (for people), and an optional `cause`. The CLI prints the
 * message on one line and exits with `exitCode`; nothing else in the project picks exit codes.
 */

export type ErrorCode =
  | 'INVALID_ARGUMENT' // a flag, option or API argument is out of range or malformed
  | 'FILE_NOT_FOUND' // a path that should name a readable file does not
  | 'BAD_FORMAT' // a file exists but is not what it claims to be (truncated, garbage, inconsistent)
  | 'UNSUPPORTED_MODEL' // a well-formed file that llamats cannot run (yet)
  | 'TOKENIZER_MISMATCH' // tokenizer and model do not belong together
  | 'CONTEXT_OVERFLOW' // a prompt or request longer than the model's context
  | 'OUT_OF_MEMORY' // the plan needs more memory than the machine has
  | 'MODEL_NOT_FOUND' // a request names a model that this engine does not serve
  | 'RATE_LIMITED'; // the server's queue is full: retry later

/** Exit code of the CLI for each error class; 1 is left for unexpected failures. */
export const EXIT_CODES: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 2,
  FILE_NOT_FOUND: 3,
  BAD_FORMAT: 4,
  UNSUPPORTED_MODEL: 5,
  TOKENIZER_MISMATCH: 6,
  CONTEXT_OVERFLOW: 7,
  OUT_OF_MEMORY: 8,
  MODEL_NOT_FOUND: 2,
  RATE_LIMITED: 9,
};

/** HTTP status of each error class for `llamats serve` (src/server/); 500 is left for unexpected failures. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  FILE_NOT_FOUND: 500, // requests never name files: a missing file is the server's problem
  BAD_FORMAT: 500, // e.g. the model's chat template fails to render
  UNSUPPORTED_MODEL: 500,
  TOKENIZER_MISMATCH: 500,
  CONTEXT_OVERFLOW: 400,
  OUT_OF_MEMORY: 503,
  MODEL_NOT_FOUND: 404,
  RATE_LIMITED: 429,
};

export class LlamatsError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LlamatsError';
    this.code = code;
  }
  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

/** A CLI flag or API option has a bad value. `option` names it as the user wrote it. */
export class InvalidArgumentError extends LlamatsError {
  readonly option: string | undefined;
  constructor(message: string, option?: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'InvalidArgumentError';
    this.option = option;
  }
}

/** Something is wrong with a file: missing, unreadable, truncated, inconsistent. */
export class FileFormatError extends LlamatsError {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown; code?: 'FILE_NOT_FOUND' | 'BAD_FORMAT' }) {
    super(options?.code ?? 'BAD_FORMAT', `${path}: ${message}`, options);
    this.name = 'FileFormatError';
    this.path = path;
  }
}

/** A well-formed model that this version cannot run. */
export class UnsupportedModelError extends LlamatsError {
  constructor(message: string) {
    super('UNSUPPORTED_MODEL', message);
    this.name = 'UnsupportedModelError';
  }
}

/** The tokenizer does not belong to the model (different vocabulary size, for instance). */
export class TokenizerMismatchError extends LlamatsError {
  constructor(message: string) {
    super('TOKENIZER_MISMATCH', message);
    this.name = 'TokenizerMismatchError';
  }
}

/** A prompt (or prompt + generation) that does not fit the context window. */
export class ContextOverflowError extends LlamatsError {
  constructor(message: string) {
    super('CONTEXT_OVERFLOW', message);
    this.name = 'ContextOverflowError';
  }
}

/** Allocating what a request needs would exceed the memory the machine has. */
export class OutOfMemoryError extends LlamatsError {
  readonly neededBytes: number;
  readonly availableBytes: number;
  constructor(message: string, neededBytes: number, availableBytes: number) {
    super('OUT_OF_MEMORY', message);
    this.name = 'OutOfMemoryError';
    this.neededBytes = neededBytes;
    this.availableBytes = availableBytes;
  }
}

/**
 * A request to the engine (an OpenAI-shaped body) that is malformed or asks for something
 * unsupported. `param` names the offending field as OpenAI's error JSON does ("messages[1].role").
 */
export class InvalidRequestError extends LlamatsError {
  readonly param: string | undefined;
  constructor(message: string, param?: string, code: 'INVALID_ARGUMENT' | 'CONTEXT_OVERFLOW' | 'MODEL_NOT_FOUND' = 'INVALID_ARGUMENT') {
    super(code, message);
    this.name = 'InvalidRequestError';
    this.param = param;
  }
}

/** The engine's waiting queue is full; `retryAfterSeconds` is a hint for the client. */
export class RateLimitError extends LlamatsError {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super('RATE_LIMITED', message);
    this.name = 'RateLimitError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Human-readable byte count, for messages. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
