/**
 * What every tokenizer offers, and `Tokenizer.load`, which picks the reader from the file:
 * the llama2.c format (tokenizer.bin), SentencePiece (tokenizer.model), Hugging Face
 * tokenizer.json (with tokenizer_config.json beside it), the vocabulary of a GGUF file, or a
 * directory holding tokenizer.json, else tokenizer.model.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { FileFormatError } from '../errors.js';
import { readGgufHeader } from '../formats/gguf.js';
import { readFileBytes } from '../io/file.js';
import { tokenizerFromGgufMetadata } from './gguf.js';
import { HfTokenizer, readConfigBeside } from './hf.js';
import { Llama2cTokenizer } from './llama2c.js';
import { SentencePieceTokenizer } from './sentencepiece.js';

export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /**
   * Token ids of `text`; `bos`/`eos` add those tokens (both default to false). `special: true`
   * lets the text of special tokens ("<|eot_id|>") become their ids; by default it is plain text
   * (tokenizers without special tokens in their text ignore the flag).
   */
  encode(text: string, opts?: { bos?: boolean; eos?: boolean; special?: boolean }): number[];
  /** Text of a sequence of ids. */
  decode(ids: readonly number[]): string;
  /** The vocabulary entry of `id`. */
  piece(id: number): string;
  /** Bytes that `id` adds to the text right after `prev` (for streaming; see TextStream). */
  tokenBytes(prev: number, id: number): Uint8Array;
  /** Tokens that end a generation (Llama 3: <|end_of_text|> and <|eot_id|>); absent means [eosId]. */
  readonly stopIds?: readonly number[];
  /** The Jinja chat template stored with the tokenizer (tokenizer_config.json, GGUF), if any. */
  readonly chatTemplate?: string | undefined;
}

export const Tokenizer = {
  /**
   * Load a tokenizer file, or a directory holding tokenizer.json (else tokenizer.model); the
   * format of a file is detected from its content.
   */
  load(path: string): Tokenizer {
    if (isDirectory(path)) {
      for (const name of ['tokenizer.json', 'tokenizer.model']) {
        const file = nodePath.join(path, name);
        if (fs.existsSync(file)) return Tokenizer.load(file);
      }
      throw new FileFormatError(path, 'is a directory without tokenizer.json or tokenizer.model; pass the tokenizer file itself', { code: 'FILE_NOT_FOUND' });
    }
    // GGUF: only the header is read (a model file may be many gigabytes)
    if (startsWithGguf(path)) return tokenizerFromGgufMetadata(readGgufHeader(path).metadata, path);
    const bytes = readFileBytes(path);
    // tokenizer.json: JSON text starting with "{" (after optional whitespace / a UTF-8 BOM)
    let first = 0;
    if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) first = 3;
    while (first < bytes.length && (bytes[first] === 0x20 || bytes[first] === 0x0a || bytes[first] === 0x0d || bytes[first] === 0x09)) first++;
    if (bytes[first] === 0x7b) {
      // (a tokenizer.bin whose max_token_length is 123 starts with "{" too: 7b 00 00 00)
      const binary = first === 0 && bytes.byteLength >= 4 && bytes[1] === 0 && bytes[2] === 0 && bytes[3] === 0;
      if (!binary) return HfTokenizer.parse(bytes.subarray(first), { path, ...withConfig(path) });
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

function withConfig(path: string): { config?: NonNullable<ReturnType<typeof readConfigBeside>> } {
  const config = readConfigBeside(path);
  return config ? { config } : {};
}

function isDirectory(path: string): boolean {
  try {
    return fs.statSync(path).isDirectory();
  } catch {
    return false; // a missing path gets its error from readFileBytes
  }
}

/** Whether the file starts with the GGUF magic "GGUF". */
function startsWithGguf(path: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const head = new Uint8Array(4);
    const n = fs.readSync(fd, head, 0, 4, 0);
    return n === 4 && head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46;
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
  }
}
