/**
 * A tokenizer as GGUF metadata (`tokenizer.ggml.*`), so that a converted file carries its
 * vocabulary and chat template as llama.cpp expects:
 *   tokenizer.ggml.model        "llama" (SentencePiece-style: pieces with "▁" for spaces, scores, types)
 *   tokenizer.ggml.tokens       string[]        tokenizer.ggml.scores   f32[]
 *   tokenizer.ggml.token_type   i32[] (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte)
 *   tokenizer.ggml.{bos,eos,unknown,padding}_token_id   u32
 *   tokenizer.chat_template     string (when there is one)
 * llama2.c tokenizers are written the way llama.cpp's own llama2.c converter writes them (its
 * files in ../shared/models/stories260K/gguf are the reference): " " → "▁", ids 0–2 as
 * <unk>, <s>, </s>. Byte-level BPE tokenizer.json files (Llama 3) become model "gpt2" with
 *   tokenizer.ggml.merges  string[] "a b" by rank     tokenizer.ggml.pre  "llama-bpe" | "gpt-2"
 * and types 1 normal, 3 control (special added tokens), 4 user-defined (other added tokens).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileFormatError, UnsupportedModelError } from '../errors.js';
import { GPT2_PATTERN, HfTokenizer, LLAMA3_PATTERN } from '../tokenizer/hf.js';
import { Llama2cTokenizer } from '../tokenizer/llama2c.js';
import { SentencePieceTokenizer } from '../tokenizer/sentencepiece.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { GgufValue } from './gguf.js';

const TYPE = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;

export function tokenizerGgufMetadata(tokenizer: Tokenizer, chatTemplate?: string): Map<string, GgufValue> {
  const m = new Map<string, GgufValue>();
  let tokens: string[];
  let scores: Float32Array;
  let types: Int32Array;
  let unk = 0;
  let pad = -1;
  if (tokenizer instanceof Llama2cTokenizer) {
    tokens = [];
    types = new Int32Array(tokenizer.vocabSize);
    for (let i = 0; i < tokenizer.vocabSize; i++) {
      const p = tokenizer.piece(i);
      if (i === 0) tokens.push('<unk>'), (types[i] = TYPE.unknown);
      else if (i === tokenizer.bosId) tokens.push('<s>'), (types[i] = TYPE.control);
      else if (i === tokenizer.eosId) tokens.push('</s>'), (types[i] = TYPE.control);
      else tokens.push(p.replaceAll(' ', '▁')), (types[i] = /^<0x[0-9A-Fa-f]{2}>$/.test(p) ? TYPE.byte : TYPE.normal);
    }
    scores = Float32Array.from(tokenizer.scores);
  } else if (tokenizer instanceof SentencePieceTokenizer) {
    if (tokenizer.modelType !== 'bpe') throw new UnsupportedModelError('only BPE SentencePiece models can be written to GGUF (llama.cpp reads no Unigram "llama" vocabularies)');
    tokens = [...tokenizer.pieces];
    scores = Float32Array.from(tokenizer.scores);
    types = Int32Array.from(tokenizer.types);
    unk = tokenizer.unkId;
    pad = tokenizer.padId;
  } else if (tokenizer instanceof HfTokenizer) {
    return hfGgufMetadata(tokenizer, chatTemplate ?? tokenizer.chatTemplate);
  } else {
    throw new UnsupportedModelError('writing this tokenizer type into GGUF is not supported yet; llamats writes llama2.c, SentencePiece and byte-level BPE tokenizer.json vocabularies');
  }
  m.set('tokenizer.ggml.model', { type: 'string', value: 'llama' });
  m.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens });
  m.set('tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: scores });
  m.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types });
  m.set('tokenizer.ggml.unknown_token_id', { type: 'u32', value: unk });
  m.set('tokenizer.ggml.bos_token_id', { type: 'u32', value: tokenizer.bosId });
  m.set('tokenizer.ggml.eos_token_id', { type: 'u32', value: tokenizer.eosId });
  if (pad >= 0) m.set('tokenizer.ggml.padding_token_id', { type: 'u32', value: pad });
  if (chatTemplate) m.set('tokenizer.chat_template', { type: 'string', value: chatTemplate });
  return m;
}

/** A byte-level BPE tokenizer.json (read again from its file) as llama.cpp's "gpt2" vocabulary. */
function hfGgufMetadata(tok: HfTokenizer, chatTemplate: string | undefined): Map<string, GgufValue> {
  const file = fs.statSync(tok.path).isDirectory() ? path.join(tok.path, 'tokenizer.json') : tok.path;
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    model?: { type?: string; vocab?: Record<string, number>; merges?: Array<string | [string, string]>; byte_fallback?: boolean };
    pre_tokenizer?: unknown;
    added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
  };
  const model = j.model;
  if (!model || model.type !== 'BPE' || !model.vocab || !model.merges) throw new FileFormatError(file, 'expected a BPE model with vocab and merges');
  const pre = JSON.stringify(j.pre_tokenizer ?? null);
  if (model.byte_fallback || !pre.includes('ByteLevel')) {
    throw new UnsupportedModelError(`${file}: only byte-level BPE tokenizer.json files can be written as GGUF; for a SentencePiece-style one (Llama 2) convert with its tokenizer.model (-z)`);
  }
  const preName = pre.includes(JSON.stringify(LLAMA3_PATTERN).slice(1, -1)) ? 'llama-bpe' : pre.includes('Split') && !pre.includes(JSON.stringify(GPT2_PATTERN).slice(1, -1)) ? undefined : 'gpt-2';
  if (!preName) throw new UnsupportedModelError(`${file}: its pre-tokenizer regex is neither Llama 3's nor GPT-2's; llama.cpp would need a matching tokenizer.ggml.pre`);
  const tokens = new Array<string>(tok.vocabSize).fill('');
  const types = new Int32Array(tok.vocabSize).fill(TYPE.normal);
  for (const [t, id] of Object.entries(model.vocab)) tokens[id] = t;
  for (const a of j.added_tokens ?? []) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? TYPE.control : 4;
  }
  const m = new Map<string, GgufValue>();
  m.set('tokenizer.ggml.model', { type: 'string', value: 'gpt2' });
  m.set('tokenizer.ggml.pre', { type: 'string', value: preName });
  m.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tokens });
  m.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: types });
  m.set('tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: model.merges.map((x) => (typeof x === 'string' ? x : x.join(' '))) });
  m.set('tokenizer.ggml.bos_token_id', { type: 'u32', value: tok.bosId });
  m.set('tokenizer.ggml.eos_token_id', { type: 'u32', value: tok.eosId });
  m.set('tokenizer.ggml.add_bos_token', { type: 'bool', value: tok.addBos });
  if (chatTemplate) m.set('tokenizer.chat_template', { type: 'string', value: chatTemplate });
  return m;
}
