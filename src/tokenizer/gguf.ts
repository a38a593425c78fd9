/**
 * Tokenizers stored in GGUF files (llama.cpp), built from the file's metadata:
 *
 *   tokenizer.ggml.model        "llama": SentencePiece-style BPE (LLaMA, Llama 2, Mistral):
 *                                 tokens + scores + token_type → SentencePieceTokenizer.fromPieces
 *                               "gpt2": byte-level BPE (Llama 3): tokens + merges → the
 *                                 tokenizer.json pipeline (HfTokenizer), pre-tokenizer chosen by
 *                                 tokenizer.ggml.pre
 *   tokenizer.ggml.tokens       string[]: the vocabulary, by id
 *   tokenizer.ggml.scores       f32[] (llama): merge scores
 *   tokenizer.ggml.token_type   i32[]: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
 *                               6 byte (SentencePiece's types). For gpt2 vocabularies, control
 *                               tokens become special added tokens (their text is plain text
 *                               unless encode(…, { special: true })), user-defined ones
 *                               non-special added tokens, as in the tokenizer.json they came from.
 *   tokenizer.ggml.merges       string[] (gpt2): "a b", by rank
 *   tokenizer.ggml.pre          gpt2 pre-tokenizer: "llama-bpe" / "llama3" / "smaug-bpe" (the Llama 3
 *                               regex, whole words in the vocab are one token), "gpt-2", "qwen2"
 *   tokenizer.ggml.bos_token_id, eos_token_id, unknown_token_id, padding_token_id, eot_token_id,
 *   eom_token_id                u32 ids (0xFFFFFFFF or absent: none)
 *   tokenizer.ggml.add_bos_token, add_eos_token   bool: what llama.cpp adds by default (addBos / addEos)
 *   tokenizer.ggml.add_space_prefix               bool (llama, default true): SentencePiece's dummy prefix
 *   tokenizer.chat_template     the Jinja chat template (chatTemplate)
 *
 * Metadata values may be plain (strings, numbers, bigints, arrays) or the typed `GgufValue`s that
 * src/formats/gguf.ts reads ({ type, value }); both are accepted.
 */
import { FileFormatError, InvalidArgumentError, UnsupportedModelError } from '../errors.js';
import { HfTokenizer, LLAMA3_PATTERN } from './hf.js';
import { SentencePieceTokenizer } from './sentencepiece.js';
import type { Tokenizer } from './tokenizer.js';

const NONE = 0xffffffff;
const CONTROL = 3;
const USER_DEFINED = 4;

/** Regexes of llama.cpp's gpt2 pre-tokenizer types (llama-vocab.cpp). */
const QWEN2_PATTERN = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const PRE_TOKENIZERS: Record<string, { preTokenizer: object; ignoreMerges: boolean }> = {
  'llama-bpe': { preTokenizer: splitThenByteLevel(LLAMA3_PATTERN), ignoreMerges: true },
  llama3: { preTokenizer: splitThenByteLevel(LLAMA3_PATTERN), ignoreMerges: true },
  'smaug-bpe': { preTokenizer: splitThenByteLevel(LLAMA3_PATTERN), ignoreMerges: false },
  qwen2: { preTokenizer: splitThenByteLevel(QWEN2_PATTERN), ignoreMerges: false },
  'gpt-2': { preTokenizer: { type: 'ByteLevel', add_prefix_space: false, use_regex: true }, ignoreMerges: false },
};

function splitThenByteLevel(pattern: string): object {
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, use_regex: false },
    ],
  };
}

/** A metadata value as a plain JS value: GgufValue wrappers and typed arrays unwrapped. */
function plain(v: unknown): unknown {
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v) && 'type' in v && 'value' in v) v = (v as { value: unknown }).value;
  if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<unknown>);
  return v;
}

/** Reads typed fields of the metadata, with errors that name the key. */
class Meta {
  constructor(
    private readonly m: Map<string, unknown>,
    private readonly path: string,
  ) {}
  has(key: string): boolean {
    return this.m.has(key);
  }
  private bad(key: string, v: unknown, want: string): never {
    const shown = Array.isArray(v) ? `an array of ${v.length}` : typeof v === 'bigint' ? String(v) : JSON.stringify(v)?.slice(0, 60);
    throw new FileFormatError(this.path, `GGUF metadata ${key} is ${shown}; expected ${want}`);
  }
  string(key: string): string | undefined {
    const v = plain(this.m.get(key));
    if (v === undefined) return undefined;
    return typeof v === 'string' ? v : this.bad(key, v, 'a string');
  }
  number(key: string): number | undefined {
    let v = plain(this.m.get(key));
    if (v === undefined) return undefined;
    if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= 0n) v = Number(v);
    return typeof v === 'number' && Number.isFinite(v) ? v : this.bad(key, v, 'a number');
  }
  bool(key: string): boolean | undefined {
    const v = plain(this.m.get(key));
    if (v === undefined) return undefined;
    return typeof v === 'boolean' ? v : this.bad(key, v, 'a bool');
  }
  strings(key: string): string[] | undefined {
    const v = plain(this.m.get(key));
    if (v === undefined) return undefined;
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : this.bad(key, v, 'an array of strings');
  }
  numbers(key: string): number[] | undefined {
    const v = plain(this.m.get(key));
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) return this.bad(key, v, 'an array of numbers');
    return v.map((x) => (typeof x === 'number' ? x : typeof x === 'bigint' ? Number(x) : this.bad(key, v, 'an array of numbers')));
  }
  /** A token id, or -1 when absent or 0xFFFFFFFF (none); out of range → error. */
  tokenId(key: string, nTokens: number): number {
    const id = this.number(key);
    if (id === undefined || id === NONE || id === -1) return -1;
    if (!Number.isInteger(id) || id < 0 || id >= nTokens) throw new FileFormatError(this.path, `GGUF metadata ${key} is ${id}, outside the vocabulary [0, ${nTokens})`);
    return id;
  }
}

/** Build the tokenizer that a GGUF file's metadata describes. */
export function tokenizerFromGgufMetadata(metadata: Map<string, unknown>, path: string): Tokenizer {
  const m = new Meta(metadata, path);
  const model = m.string('tokenizer.ggml.model');
  if (model === undefined) throw new FileFormatError(path, 'has no tokenizer.ggml.model metadata: this GGUF file holds no tokenizer; pass a tokenizer file with --tokenizer');
  const tokens = m.strings('tokenizer.ggml.tokens');
  if (!tokens || tokens.length === 0) throw new FileFormatError(path, 'has no tokenizer.ggml.tokens (the vocabulary)');
  const n = tokens.length;
  const types = m.numbers('tokenizer.ggml.token_type') ?? new Array<number>(n).fill(1);
  if (types.length !== n) throw new FileFormatError(path, `tokenizer.ggml.token_type has ${types.length} entries for ${n} tokens`);
  const ids = {
    bos: m.tokenId('tokenizer.ggml.bos_token_id', n),
    eos: m.tokenId('tokenizer.ggml.eos_token_id', n),
    unk: m.tokenId('tokenizer.ggml.unknown_token_id', n),
    pad: m.tokenId('tokenizer.ggml.padding_token_id', n),
    eot: m.tokenId('tokenizer.ggml.eot_token_id', n),
    eom: m.tokenId('tokenizer.ggml.eom_token_id', n),
  };
  const chatTemplate = m.string('tokenizer.chat_template');

  if (model === 'llama') {
    const scores = m.numbers('tokenizer.ggml.scores') ?? new Array<number>(n).fill(0);
    if (scores.length !== n) throw new FileFormatError(path, `tokenizer.ggml.scores has ${scores.length} entries for ${n} tokens`);
    const name = (id: number) => (id >= 0 ? tokens[id]! : '');
    const sp = SentencePieceTokenizer.fromPieces(
      tokens.map((piece, i) => ({ piece, score: scores[i]!, type: types[i]! })),
      { addDummyPrefix: m.bool('tokenizer.ggml.add_space_prefix') ?? true, unkPiece: name(ids.unk), bosPiece: name(ids.bos), eosPiece: name(ids.eos), padPiece: name(ids.pad) },
      path,
    );
    return new GgufSpmTokenizer(sp, {
      bosId: ids.bos >= 0 ? ids.bos : sp.bosId,
      eosId: ids.eos >= 0 ? ids.eos : sp.eosId,
      addBos: m.bool('tokenizer.ggml.add_bos_token') ?? true,
      addEos: m.bool('tokenizer.ggml.add_eos_token') ?? false,
      extraStops: [ids.eot, ids.eom],
      chatTemplate,
    });
  }

  if (model === 'gpt2') {
    const pre = m.string('tokenizer.ggml.pre') ?? 'gpt-2';
    const preSpec = PRE_TOKENIZERS[pre];
    if (!preSpec) throw new UnsupportedModelError(`${path}: GGUF pre-tokenizer type '${pre}' (tokenizer.ggml.pre) is not supported; llamats supports ${Object.keys(PRE_TOKENIZERS).join(', ')}`);
    const merges = m.strings('tokenizer.ggml.merges');
    if (!merges) throw new FileFormatError(path, 'has a gpt2 vocabulary without tokenizer.ggml.merges');
    // the model's vocabulary holds the regular tokens; control and user-defined ones are added tokens
    const vocab = Object.create(null) as Record<string, number>; // no inherited keys ("constructor")
    const added: object[] = [];
    tokens.forEach((t, id) => {
      const type = types[id]!;
      if (type === CONTROL || type === USER_DEFINED) {
        added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === CONTROL });
      } else if (!(t in vocab)) vocab[t] = id;
    });
    const json = {
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: preSpec.preTokenizer,
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: { type: 'BPE', dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, ignore_merges: preSpec.ignoreMerges, vocab, merges },
    };
    const token = (id: number) => (id >= 0 ? tokens[id]! : undefined);
    return HfTokenizer.parse(json, {
      path,
      config: {
        bos_token: token(ids.bos),
        eos_token: token(ids.eos),
        add_bos_token: m.bool('tokenizer.ggml.add_bos_token') ?? false,
        add_eos_token: m.bool('tokenizer.ggml.add_eos_token') ?? false,
        chat_template: chatTemplate,
      },
      extraStopIds: [ids.eot, ids.eom],
    });
  }

  throw new UnsupportedModelError(`${path}: GGUF tokenizer model '${model}' (tokenizer.ggml.model) is not supported; llamats supports 'llama' (SentencePiece BPE) and 'gpt2' (byte-level BPE)`);
}

/**
 * A SentencePiece vocabulary from GGUF, with the file's BOS / EOS ids and defaults. Encoding and
 * decoding are SentencePieceTokenizer's.
 */
export class GgufSpmTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly stopIds: readonly number[];
  /** Whether llama.cpp adds BOS / EOS by default (tokenizer.ggml.add_bos_token / add_eos_token). */
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly chatTemplate: string | undefined;

  constructor(
    readonly sp: SentencePieceTokenizer,
    o: { bosId: number; eosId: number; addBos: boolean; addEos: boolean; extraStops: number[]; chatTemplate: string | undefined },
  ) {
    this.vocabSize = sp.vocabSize;
    this.bosId = o.bosId;
    this.eosId = o.eosId;
    this.addBos = o.addBos;
    this.addEos = o.addEos;
    this.stopIds = [...new Set([o.eosId, ...o.extraStops].filter((id) => id >= 0))];
    this.chatTemplate = o.chatTemplate;
  }

  encode(text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
    const ids = this.sp.encode(text);
    if (opts.bos) ids.unshift(this.required(this.bosId, 'BOS'));
    if (opts.eos) ids.push(this.required(this.eosId, 'EOS'));
    return ids;
  }

  private required(id: number, what: string): number {
    if (id < 0) throw new InvalidArgumentError(`this GGUF vocabulary has no ${what} token (tokenizer.ggml.${what.toLowerCase()}_token_id)`);
    return id;
  }

  decode(ids: readonly number[]): string {
    return this.sp.decode(ids);
  }

  piece(id: number): string {
    return this.sp.piece(id);
  }

  tokenBytes(prev: number, id: number): Uint8Array {
    return this.sp.tokenBytes(prev, id);
  }
}
