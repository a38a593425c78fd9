/**
 * What every tokenizer offers, and `Tokenizer.load`, which picks the reader from the file.
 * Today: the llama2.c format and SentencePiece `tokenizer.model`. `tokenizer.json` comes next.
 */
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { readFileBytes } from '../io/file.js';
import { Llama2cTokenizer } from './llama2c.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

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
      throw new UnsupportedModelError(`${path}: GGUF tokenizers are not supported yet; use a llama2.c tokenizer.bin or a SentencePiece tokenizer.model`);
    }
    if (bytes.byteLength >= 1 && bytes[0] === 0x7b) {
      throw new UnsupportedModelError(`${path}: tokenizer.json is not supported yet; use a llama2.c tokenizer.bin or a SentencePiece tokenizer.model`);
    }
    // A SentencePiece ModelProto starts with field 1 (pieces), key byte 0x0a. A tokenizer.bin whose
    // int32 max_token_length has 0x0a as low byte does too, so on failure try llama2.c as well.
    if (bytes.byteLength >= 1 && bytes[0] === 0x0a) {
      try {
        return SentencePieceTokenizer.parse(bytes, path);
      } catch (spError) {
        if (!(spError instanceof FileFormatError)) throw spError;
        try {
          return Llama2cTokenizer.parse(bytes, path);
        } catch {
          throw spError;
        }
      }
    }
    try {
      return Llama2cTokenizer.parse(bytes, path);
    } catch (e) {
      if (e instanceof FileFormatError) throw e;
      throw new FileFormatError(path, `not a tokenizer llamats can read: ${(e as Error).message}`, { cause: e });
    }
  },
};
