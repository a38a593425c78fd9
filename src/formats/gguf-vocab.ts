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
 * <unk>, <s>, </s>.
 */
import { UnsupportedModelError } from '../errors.js';
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
  } else {
    throw new UnsupportedModelError('writing this tokenizer type into GGUF is not supported yet; llamats writes llama2.c and SentencePiece vocabularies');
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
