/**
 * What every tokenizer offers, and `Tokenizer.load`, which picks the reader from the file.
 * Today: the llama2.c format. SentencePiece `tokenizer.model` and `tokenizer.json` come next.
 */
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { readFileBytes } from '../io/file.js';
import { Llama2cTokenizer } from './llama2c.js';

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Token ids of `text`; `bos`/`eos` add those tokens (both default to false). */
  encode(text: string, opts?: { bos?: boolean; eos?: boolean }): number[];
  /** Text of a sequence of ids. */
  decode(ids: readonly number[]): string;
  /** The vocabulary entry of `id`. */
  piece(id: number): string;
  /** Bytes that `id` adds to the text right after `prev` (for streaming; see TextStream). */
  tokenBytes(prev: number, id: number): Uint8Array;
}

export const Tokenizer = {
  /** Load a tokenizer file; the format is detected from its content. */
  load(path: string): Tokenizer {
    const bytes = readFileBytes(path);
    if (bytes.byteLength >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46) {
      throw new UnsupportedModelError(`${path}: GGUF tokenizers are not supported yet; use a llama2.c tokenizer.bin`);
    }
    if (bytes.byteLength >= 1 && bytes[0] === 0x7b) {
      throw new UnsupportedModelError(`${path}: tokenizer.json is not supported yet; use a llama2.c tokenizer.bin`);
    }
    if (bytes.byteLength >= 2 && bytes[0] === 0x0a && path.endsWith('.model')) {
      throw new UnsupportedModelError(`${path}: SentencePiece tokenizer.model is not supported yet; use a llama2.c tokenizer.bin (export it with llama2.c's tokenizer.py)`);
    }
    try {
      return Llama2cTokenizer.parse(bytes, path);
    } catch (e) {
      if (e instanceof FileFormatError) throw e;
      throw new FileFormatError(path, `not a tokenizer llamats can read: ${(e as Error).message}`, { cause: e });
    }
  },
};
