/**
 * One fuzz target per parser: its seeds, how its inputs are mutated, and what is run on each
 * input. A target runs the parser the way the loader does and then uses the result a little
 * (reads every tensor, loads the model, encodes and decodes text), so that a file which parses
 * but breaks the code after the parser is caught too.
 *
 * The oracle is in harness.ts: every input must return or throw a LlamatsError.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { validateChatRequest, validateCompletionRequest } from '../../src/engine/validate.js';
import { LlamatsError } from '../../src/errors.js';
import { loadGgufModel, readGgufHeader } from '../../src/formats/gguf.js';
import { loadHfModel, readHfConfig } from '../../src/formats/hf.js';
import { parseLlama2cCheckpoint, readLlama2cHeader } from '../../src/formats/llama2c.js';
import { metaHiddenDim, readMetaCheckpoint, readMetaParams } from '../../src/formats/meta.js';
import { describe, unpickle, type PickleGlobal } from '../../src/formats/pickle.js';
import { openPth } from '../../src/formats/pth.js';
import { openSafetensors } from '../../src/formats/safetensors.js';
import { ZipReader } from '../../src/formats/zip.js';
import { LLAMA2_CHAT_TEMPLATE, LLAMA3_CHAT_TEMPLATE, renderChatTemplate, type ChatMessage } from '../../src/generate/template.js';
import { tokenizerFromGgufMetadata } from '../../src/tokenizer/gguf.js';
import { HfTokenizer, sentencePieceToTokenizerJson } from '../../src/tokenizer/hf.js';
import { Llama2cTokenizer, TextStream } from '../../src/tokenizer/llama2c.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/sentencepiece.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { ROOT } from '../helpers.js';
import { jsonDictionary, mutateBytes, mutateJson, mutateText, varint, type JsonDictionary, type Region, type Rng } from './mutate.js';
import {
  TINY, TINY32, TINY_HF_CONFIG, TINY_PARAMS, TINY_VOCAB, ggufAllTypesBytes, ggufGpt2VocabBytes, ggufModelBytes, hfTensors, json, llama2cBytes, metaTensors,
  oddPickles, oneRuleCharsmap, pthBytes, safetensorsBytes, safetensorsHeader, sentencePieceBytes, smallSpPieces, statePickle, text, tinyModel,
  tokenizerBinBytes, zipRegions, type Seed,
} from './seeds.js';
import { parseJsonBody } from '../../src/server/server.js';
import { InvalidRequestError } from '../../src/errors.js';

export interface TargetContext {
  /** ../shared, when the run has it (the test requires it under CI). */
  readonly shared: string | undefined;
  /** A scratch directory for building seeds. */
  readonly tmp: string;
}

/** What the mutators get besides the seed: every seed (for splicing) and a JSON dictionary. */
export interface Corpus {
  readonly seeds: readonly Seed[];
  readonly bytes: readonly Uint8Array[];
  readonly jsonDict: JsonDictionary;
  /** Parsed JSON of each seed (JSON targets), by seed. */
  readonly parsed: ReadonlyMap<Seed, unknown>;
}

export interface Target {
  readonly name: string;
  /** The parser and what is done with its result, for docs/FUZZING.md and messages. */
  readonly what: string;
  /** Inputs per CI run (scaled so that the whole fuzz test stays near two minutes on 2 cores). */
  readonly ciInputs: number;
  /** Files under ../shared that seeds are read from. */
  readonly sharedSeeds: readonly string[];
  /** The input's file name inside the seed's directory, for parsers that read a path; in memory when absent. */
  readonly file?: string;
  /**
   * A bug found here and not fixed yet (in a file owned elsewhere): the CI test is then a TODO
   * (it runs and prints the failures, but does not fail the suite). Remove it with the fix.
   */
  readonly knownIssue?: string;
  /** Slowest acceptable input in ms (default 1000). */
  readonly hangMs?: number;
  /** 'json': mutated as a JSON value (and as bytes); 'text': as a string; 'bytes': as bytes. */
  readonly kind: 'bytes' | 'json' | 'text';
  /** Tokens of the format for the byte mutator. */
  readonly dict?: readonly Uint8Array[];
  seeds(ctx: TargetContext): Seed[];
  /** Files beside inputs of seeds that have no companions of their own (regression seeds). */
  defaultCompanions?(ctx: TargetContext): Record<string, Uint8Array>;
  /** A target-specific mutator; the default one follows `kind`. */
  mutate?(seed: Seed, r: Rng, corpus: Corpus): Uint8Array;
  /** Parse and use one input: `file` is where it was written (or ''), `dir` holds its companions. */
  run(input: Uint8Array, file: string, dir: string): void;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** LlamatsErrors caught inside the current input's run (the harness resets and reads it). */
export const outcome = { refused: 0 };

/**
 * Run `f`; a LlamatsError is an accepted outcome, anything else propagates to the oracle.
 * `count`: whether the error means the input was refused (false for deliberate misuse).
 */
function typed(f: () => void, count = true): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof LlamatsError)) throw e;
    if (count) outcome.refused++;
  }
}

const TEXTS = ['', 'hello world', ' a  b\n\tc ', 'héllo 😀 ½ ﬁ Ⅻ', '<s>[INST] x [/INST]</s><|eot_id|> <user>', 'abcabc'.repeat(12), '\ud800x\udc00 \u0000\u0085\u2028'];

/** Use a tokenizer a little: encode (all flags), decode, stream, look up pieces, odd ids. */
function exercise(tok: Tokenizer): void {
  for (const [i, s] of TEXTS.entries()) {
    typed(() => {
      const ids = tok.encode(s, { bos: i % 2 === 0, eos: i % 3 === 0, special: i % 2 === 1 });
      typed(() => void tok.decode(ids), false);
      typed(() => {
        const stream = new TextStream();
        let prev = -1;
        for (const id of ids) {
          stream.push(tok.tokenBytes(prev, id));
          prev = id;
        }
        stream.flush();
      }, false);
    }, false);
  }
  const n = Math.min(tok.vocabSize, 40);
  typed(() => void tok.decode(Array.from({ length: n }, (_, i) => i)), false);
  for (const id of [0, 1, 2, tok.vocabSize - 1, tok.vocabSize, -1, 1.5]) {
    typed(() => void tok.piece(id), false);
    typed(() => void tok.tokenBytes(-1, id), false);
    typed(() => void tok.tokenBytes(1, id), false);
  }
}

const fromShared = (ctx: TargetContext, rel: string): Uint8Array | undefined => {
  if (!ctx.shared) return undefined;
  const p = path.join(ctx.shared, rel);
  return fs.existsSync(p) ? new Uint8Array(fs.readFileSync(p)) : undefined;
};

/** Seeds from ../shared that exist (the test checks that they do under CI). */
function sharedSeed(ctx: TargetContext, rel: string, weight: number, extra: Partial<Seed> = {}): Seed[] {
  const bytes = fromShared(ctx, rel);
  return bytes ? [{ name: `shared:${rel}`, bytes, weight, ...extra }] : [];
}

const bin = (...b: number[]) => Uint8Array.from(b);
const u32le = (n: number) => bin(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
const head = (n: number): Region[] => [{ start: 0, end: n }];

/** A GGUF string (u64 length + bytes). */
function ggufString(s: string): Uint8Array {
  const b = text(s);
  const out = new Uint8Array(8 + b.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(b.length), true);
  out.set(b, 8);
  return out;
}

/** Allowlist for the bare-unpickler target: the shapes of torch's, with calls that build data. */
const PICKLE_GLOBALS: ReadonlyMap<string, PickleGlobal> = new Map<string, PickleGlobal>([
  ['collections.OrderedDict', { qualifiedName: 'collections.OrderedDict', call: () => new Map() }],
  ['torch._utils._rebuild_tensor_v2', { qualifiedName: 'torch._utils._rebuild_tensor_v2', call: (args) => ({ tensor: args.length }) }],
  ['torch._utils._rebuild_parameter', { qualifiedName: 'torch._utils._rebuild_parameter', call: (args) => args[0] }],
  ['torch.FloatStorage', { qualifiedName: 'torch.FloatStorage' }],
  ['torch.BFloat16Storage', { qualifiedName: 'torch.BFloat16Storage' }],
  ['torch.HalfStorage', { qualifiedName: 'torch.HalfStorage' }],
]);

/** Pickle opcodes and globals for the byte mutator. */
const PICKLE_DICT: Uint8Array[] = [
  ...[0x28, 0x29, 0x2e, 0x30, 0x31, 0x32, 0x4e, 0x51, 0x52, 0x5d, 0x61, 0x62, 0x65, 0x6c, 0x73, 0x74, 0x75, 0x7d, 0x81, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8f, 0x90, 0x91, 0x92, 0x93, 0x94]
    .map((b) => bin(b)),
  bin(0x80, 0x02), bin(0x80, 0x05), bin(0x95, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x00), bin(0x71, 0x00), bin(0x68, 0x00), bin(0x72, 0xff, 0xff, 0xff, 0xff), bin(0x6a, 0xff, 0xff, 0xff, 0x7f),
  bin(0x4a, 0xff, 0xff, 0xff, 0xff), bin(0x4a, 0xff, 0xff, 0xff, 0x7f), bin(0x4b, 0xff), bin(0x4d, 0xff, 0xff), bin(0x8a, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
  bin(0x8b, 0x40, 0, 0, 0), bin(0x58, 0xff, 0xff, 0xff, 0xff), bin(0x8c, 0xff), bin(0x8d, 0, 0, 0, 0, 0, 0, 0x20, 0), bin(0x42, 0xff, 0xff, 0xff, 0x7f), bin(0x54, 0xff, 0xff, 0xff, 0xff),
  text('ccollections\nOrderedDict\n'), text('ctorch._utils\n_rebuild_tensor_v2\n'), text('ctorch\nFloatStorage\n'), text('cos\nsystem\n'), text('ctorch._utils\n_rebuild_parameter\n'),
  text('I99999999999999999999999\n'), text('L-1L\n'), text('F1e400\n'), text('Fnan\n'), text("S'\\x41'\n"), text('V\\U0010ffff\n'), text('V\\U00110000\n'), text('V\\ud800\n'),
  text('p99999999999\n'), text('g0\n'), text('(X\x07\x00\x00\x00storage'),
];

// ---------------------------------------------------------------------------------------------
// The targets

const llama2c: Target = {
  name: 'llama2c',
  what: 'parseLlama2cCheckpoint (in memory) and readLlama2cHeader (from the file)',
  ciInputs: 20000,
  sharedSeeds: ['models/stories260K.bin'],
  file: 'model.bin',
  kind: 'bytes',
  dict: [u32le(0x616b3432), u32le(1), u32le(2), u32le(3), u32le(0xffffffff), u32le(-512)],
  seeds: (ctx) => [
    { name: 'tiny v0', bytes: llama2cBytes(ctx.tmp, 0), weight: 4, hot: head(28) },
    { name: 'tiny v0 shared classifier', bytes: llama2cBytes(ctx.tmp, 0, { ...TINY, sharedClassifier: true }), weight: 2, hot: head(28) },
    { name: 'tiny v1', bytes: llama2cBytes(ctx.tmp, 1), weight: 3, hot: head(256) },
    { name: 'tiny v2', bytes: llama2cBytes(ctx.tmp, 2), weight: 3, hot: head(256) },
    ...sharedSeed(ctx, 'models/stories260K.bin', 1, { hot: head(28) }),
  ],
  run(input, file) {
    typed(() => void parseLlama2cCheckpoint(input, file));
    typed(() => void readLlama2cHeader(file));
  },
};

const tokenizerBin: Target = {
  name: 'tokenizer-bin',
  what: 'Llama2cTokenizer.parse (tokenizer.bin), then encode / decode / stream',
  ciInputs: 20000,
  sharedSeeds: ['models/tok512.bin', 'models/tokenizer.bin'],
  kind: 'bytes',
  dict: [text('<0x41>'), text('<0xZZ>'), u32le(0xffffffff), u32le(0x7fffffff), bin(0, 0, 0x80, 0x7f), bin(0, 0, 0x80, 0xff), bin(0xff, 0xff, 0xff, 0x7f)],
  seeds: (ctx) => [
    { name: 'tiny vocabulary', bytes: tokenizerBinBytes(TINY_VOCAB), weight: 6 },
    ...sharedSeed(ctx, 'models/tok512.bin', 3, { hot: head(2048) }),
    ...sharedSeed(ctx, 'models/tokenizer.bin', 0.05, { hot: head(4096) }),
  ],
  run(input) {
    exercise(Llama2cTokenizer.parse(input, '<fuzz tokenizer.bin>'));
  },
};

const sentencepiece: Target = {
  name: 'sentencepiece',
  what: 'SentencePieceTokenizer.parse (the protobuf ModelProto), then encode / decode / stream',
  ciInputs: 20000,
  sharedSeeds: ['models/tokenizer.model'],
  kind: 'bytes',
  dict: [bin(0x0a), bin(0x12), bin(0x1a), bin(0x2a), bin(0x15), bin(0x18, 0x06), bin(0x18, 0x02), bin(0x98, 0x02, 0x01), bin(0xc0, 0x01, 0x01), bin(0x12, 0x00),
    bin(0x1a, 0x00), varint(0xffffffffn), varint((1n << 64n) - 1n), text('<0x41>'), text('▁'), text('<unk>'), bin(0x0f), bin(0x0e), bin(0x0b), bin(0x0c)],
  seeds(ctx) {
    const big = fromShared(ctx, 'models/tokenizer.model');
    return [
      { name: 'BPE with byte fallback', bytes: sentencePieceBytes(smallSpPieces(true), { byteFallback: true }), weight: 3 },
      { name: 'BPE without byte pieces', bytes: sentencePieceBytes(smallSpPieces(false), { addDummyPrefix: false, removeExtra: false }), weight: 3 },
      { name: 'Unigram with a charsmap rule', bytes: sentencePieceBytes(smallSpPieces(false), { modelType: 1, charsmap: oneRuleCharsmap(0x41, 'a') }), weight: 3 },
      ...(big ? [{ name: 'shared:models/tokenizer.model', bytes: big, weight: 0.03, hot: [{ start: 0, end: 4096 }, { start: big.length - 4096, end: big.length }] }] : []),
    ];
  },
  run(input) {
    exercise(SentencePieceTokenizer.parse(input, '<fuzz tokenizer.model>'));
  },
};

/** data.pkl of a torch.save archive in ../shared. */
function sharedPickle(ctx: TargetContext, rel: string): Seed[] {
  if (!ctx.shared || !fs.existsSync(path.join(ctx.shared, rel))) return [];
  const zip = ZipReader.open(path.join(ctx.shared, rel));
  try {
    const name = [...zip.entries.keys()].find((n) => n.endsWith('/data.pkl'))!;
    return [{ name: `shared:${rel}:data.pkl`, bytes: zip.read(name), weight: 2 }];
  } finally {
    zip.close();
  }
}

const pickle: Target = {
  name: 'pickle',
  what: 'unpickle (the allowlist unpickler) with torch-like globals and persistent ids',
  ciInputs: 20000,
  sharedSeeds: ['models/stories260K/meta-f32/consolidated.00.pth', 'models/stories260K/meta-bf16/consolidated.00.pth'],
  kind: 'bytes',
  dict: PICKLE_DICT,
  seeds: (ctx) => [
    { name: 'tiny state_dict', bytes: statePickle(metaTensors(tinyModel()).map(([n, s]) => [n, s])), weight: 3 },
    ...oddPickles().map(([name, bytes]) => ({ name: `pickle ${name}`, bytes, weight: 2 })),
    ...sharedPickle(ctx, 'models/stories260K/meta-f32/consolidated.00.pth'),
    ...sharedPickle(ctx, 'models/stories260K/meta-bf16/consolidated.00.pth'),
  ],
  run(input) {
    const v = unpickle(input, '<fuzz data.pkl>', { globals: PICKLE_GLOBALS, persistentLoad: (pid) => pid, what: 'data.pkl' });
    describe(v);
  },
};

const ZIP_DICT = [text('PK\x01\x02'), text('PK\x03\x04'), text('PK\x05\x06'), text('PK\x06\x06'), text('PK\x06\x07'), bin(0x01, 0x00, 0x18, 0x00), text('archive/data.pkl'), text('archive/byteorder'), text('big')];

const pth: Target = {
  name: 'pth',
  what: 'openPth (zip + pickle), reading every tensor, then readMetaCheckpoint on the directory (params.json beside it)',
  ciInputs: 20000,
  sharedSeeds: ['models/stories260K/meta-f32/consolidated.00.pth', 'models/stories260K/meta-f32/params.json', 'models/stories260K/meta-mp2/consolidated.00.pth'],
  file: 'consolidated.00.pth',
  kind: 'bytes',
  dict: [...ZIP_DICT, ...PICKLE_DICT],
  seeds(ctx) {
    const tensors = metaTensors(tinyModel());
    const params = { 'params.json': json(TINY_PARAMS) };
    const hot = (b: Uint8Array) => zipRegions(b, /data\.pkl$|byteorder$/);
    const seed = (name: string, bytes: Uint8Array, weight: number, companions = params): Seed => ({ name, bytes, weight, hot: hot(bytes), companions });
    const out = [
      seed('tiny', pthBytes(tensors), 4),
      seed('tiny, deflated entries', pthBytes(tensors, { deflate: true, prefix: 'consolidated.00' }), 2),
      seed('tiny, ZIP64 records', pthBytes(tensors, { zip64: true }), 2),
    ];
    const meta = fromShared(ctx, 'models/stories260K/meta-f32/consolidated.00.pth');
    const metaParams = fromShared(ctx, 'models/stories260K/meta-f32/params.json');
    if (meta && metaParams) out.push(seed('shared:meta-f32/consolidated.00.pth', meta, 0.5, { 'params.json': metaParams }));
    const mp2 = fromShared(ctx, 'models/stories260K/meta-mp2/consolidated.00.pth');
    if (mp2 && metaParams) out.push(seed('shared:meta-mp2/consolidated.00.pth', mp2, 0.5, { 'params.json': metaParams }));
    return out;
  },
  defaultCompanions: () => ({ 'params.json': json(TINY_PARAMS) }),
  run(_input, file, dir) {
    typed(() => {
      const p = openPth(file);
      try {
        for (const name of p.tensors.keys()) typed(() => void p.read(name));
      } finally {
        p.close();
      }
    });
    typed(() => void readMetaCheckpoint(dir, { vocabSize: 16 }));
  },
};

/** The safetensors mutator: half the time the JSON header as JSON (new length, or the old one), else bytes. */
function mutateSafetensors(seed: Seed, r: Rng, corpus: Corpus): Uint8Array {
  const h = safetensorsHeader(seed.bytes);
  if (h && r.chance(0.5)) {
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder().decode(seed.bytes.subarray(h.start, h.end)));
    } catch {
      header = undefined;
    }
    if (header !== undefined && jsonDepth(header) <= 32) {
      const hb = mutateJson(header, r, corpus.jsonDict);
      const data = seed.bytes.subarray(h.end);
      const out = new Uint8Array(8 + hb.length + data.length);
      new DataView(out.buffer).setBigUint64(0, BigInt(r.chance(0.9) ? hb.length : h.end - 8), true);
      out.set(hb, 8);
      out.set(data, 8 + hb.length);
      return out;
    }
  }
  return mutateBytes(seed.bytes, r, { hot: seed.hot ?? [], dict: [text('"dtype"'), text('"shape"'), text('"data_offsets"'), text('"F32"'), text('"__metadata__"'), text('[0,')], splice: corpus.bytes });
}

const safetensors: Target = {
  name: 'safetensors',
  what: 'openSafetensors, reading every tensor, then loadHfModel on the directory (config.json beside it)',
  ciInputs: 20000,
  sharedSeeds: ['models/stories260K/hf/model.safetensors', 'models/stories260K/hf/config.json', 'models/stories260K/hf-tied/model.safetensors', 'models/stories260K/hf-tied/config.json'],
  file: 'model.safetensors',
  kind: 'bytes',
  seeds(ctx) {
    const m = tinyModel();
    const tensors = hfTensors(m);
    const tied = hfTensors(tinyModel({ ...TINY, sharedClassifier: true })).filter(([n]) => n !== 'lm_head.weight');
    const seed = (name: string, bytes: Uint8Array, weight: number, config: unknown): Seed => {
      const h = safetensorsHeader(bytes);
      return { name, bytes, weight, hot: h ? [{ start: 0, end: h.end }] : [], companions: { 'config.json': config instanceof Uint8Array ? config : json(config) } };
    };
    const out = [
      seed('tiny', safetensorsBytes(tensors, { format: 'pt' }), 4, TINY_HF_CONFIG),
      seed('tiny, tied embeddings', safetensorsBytes(tied), 2, { ...TINY_HF_CONFIG, tie_word_embeddings: true }),
    ];
    for (const dir of ['hf', 'hf-tied']) {
      const st = fromShared(ctx, `models/stories260K/${dir}/model.safetensors`);
      const config = fromShared(ctx, `models/stories260K/${dir}/config.json`);
      if (st && config) out.push(seed(`shared:${dir}/model.safetensors`, st, 0.3, config));
    }
    return out;
  },
  defaultCompanions: () => ({ 'config.json': json(TINY_HF_CONFIG) }),
  mutate: mutateSafetensors,
  run(_input, file, dir) {
    typed(() => {
      const st = openSafetensors(file);
      try {
        for (const name of st.tensors.keys()) typed(() => void st.read(name));
      } finally {
        st.close();
      }
    });
    typed(() => void loadHfModel(dir));
  },
};

/** Where a GGUF file's data section starts (its header is the part worth mutating). */
function ggufHeaderRegion(dir: string, bytes: Uint8Array): Region[] {
  const f = path.join(dir, 'region.gguf');
  fs.writeFileSync(f, bytes);
  try {
    return [{ start: 0, end: readGgufHeader(f).dataOffset }];
  } finally {
    fs.rmSync(f);
  }
}

const GGUF_KEYS = ['general.architecture', 'general.alignment', 'llama.embedding_length', 'llama.block_count', 'llama.context_length', 'llama.feed_forward_length',
  'llama.attention.head_count', 'llama.attention.head_count_kv', 'llama.rope.dimension_count', 'llama.vocab_size', 'llama.expert_count', 'llama.rope.scaling.type',
  'tokenizer.ggml.model', 'tokenizer.ggml.tokens', 'tokenizer.ggml.scores', 'tokenizer.ggml.token_type', 'tokenizer.ggml.merges', 'tokenizer.ggml.pre',
  'tokenizer.ggml.bos_token_id', 'tokenizer.chat_template', 'token_embd.weight', 'output.weight', 'rope_freqs.weight', 'llama', 'gpt2'];

const gguf: Target = {
  name: 'gguf',
  what: 'readGgufHeader, loadGgufModel, and the GGUF vocabulary (tokenizerFromGgufMetadata) encoding / decoding',
  ciInputs: 20000,
  sharedSeeds: ['models/stories260K/gguf/stories260K-q4_0.gguf', 'models/ggml-vocab-llama-spm.gguf'],
  file: 'model.gguf',
  kind: 'bytes',
  dict: [text('GGUF'), ...GGUF_KEYS.map(ggufString), ...[0, 1, 4, 5, 6, 7, 8, 9, 10, 12, 13, 0xffffffff].map(u32le), bin(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0)],
  seeds(ctx) {
    const pipeline = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/hf/pipeline_cases.json'), 'utf8')) as Record<string, { tokenizer: unknown }>;
    const seed = (name: string, bytes: Uint8Array, weight: number): Seed => ({ name, bytes, weight, hot: ggufHeaderRegion(ctx.tmp, bytes) });
    const out = [
      seed('tiny F32', ggufModelBytes(ctx.tmp, 'F32'), 3),
      seed('tiny F16', ggufModelBytes(ctx.tmp, 'F16'), 1),
      seed('tiny32 Q8_0', ggufModelBytes(ctx.tmp, 'Q8_0', TINY32), 1),
      seed('tiny32 Q4_K (falls back to Q5_0)', ggufModelBytes(ctx.tmp, 'Q4_K', TINY32), 1),
      seed('every metadata type', ggufAllTypesBytes(ctx.tmp), 2),
      seed('gpt2 vocabulary', ggufGpt2VocabBytes(ctx.tmp, pipeline.bytelevel!.tokenizer), 2),
    ];
    const q4 = fromShared(ctx, 'models/stories260K/gguf/stories260K-q4_0.gguf');
    if (q4) out.push(seed('shared:stories260K-q4_0.gguf', q4, 0.3));
    const vocab = fromShared(ctx, 'models/ggml-vocab-llama-spm.gguf');
    if (vocab) out.push({ name: 'shared:ggml-vocab-llama-spm.gguf', bytes: vocab, weight: 0.03, hot: head(4096) });
    return out;
  },
  run(_input, file) {
    const h = readGgufHeader(file);
    typed(() => void loadGgufModel(file));
    typed(() => exercise(tokenizerFromGgufMetadata(h.metadata, file)));
  },
};

/** Llama 3's tokenizer.json cut down to its first 600 ids and the merges among them. */
function smallLlama3(ctx: TargetContext): Seed[] {
  const bytes = fromShared(ctx, 'models/llama3-tokenizer/tokenizer.json');
  if (!bytes) return [];
  const j = JSON.parse(new TextDecoder().decode(bytes)) as { model: { vocab: Record<string, number>; merges: Array<string | string[]> }; added_tokens: Array<{ id: number }> };
  const vocab = Object.fromEntries(Object.entries(j.model.vocab).filter(([, id]) => id < 600));
  const merges = j.model.merges.filter((m) => {
    const [a, b] = typeof m === 'string' ? m.split(' ') : m;
    return a! in vocab && b! in vocab && a! + b! in vocab;
  });
  const added = j.added_tokens.slice(0, 12).map((t, i) => ({ ...t, id: 600 + i }));
  const small = { ...j, model: { ...j.model, vocab, merges }, added_tokens: added };
  return [{ name: 'shared:llama3 tokenizer.json (first 600 ids)', bytes: json(small), weight: 2 }];
}

const tokenizerJson: Target = {
  name: 'tokenizer-json',
  what: 'HfTokenizer.parse (tokenizer.json), then encode / decode / stream',
  ciInputs: 20000,
  sharedSeeds: ['models/llama3-tokenizer/tokenizer.json'],
  kind: 'json',
  seeds(ctx) {
    const pipeline = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/hf/pipeline_cases.json'), 'utf8')) as Record<string, { tokenizer: unknown }>;
    const sp = SentencePieceTokenizer.parse(sentencePieceBytes(smallSpPieces(true), { byteFallback: true }));
    return [
      ...Object.entries(pipeline).map(([name, c]) => ({ name: `pipeline case ${name}`, bytes: json(c.tokenizer), weight: 3 })),
      { name: 'Llama 2 style (from a SentencePiece model)', bytes: json(sentencePieceToTokenizerJson(sp)), weight: 2 },
      ...smallLlama3(ctx),
    ];
  },
  run(input) {
    exercise(HfTokenizer.parse(input, { path: '<fuzz tokenizer.json>' }));
  },
};

const paramsJson: Target = {
  name: 'params-json',
  what: 'readMetaParams (params.json), metaHiddenDim, then readMetaCheckpoint with a consolidated.00.pth beside it',
  ciInputs: 20000,
  sharedSeeds: ['models/stories260K/meta-f32/params.json', 'models/stories260K/meta-f32/consolidated.00.pth'],
  file: 'params.json',
  kind: 'json',
  seeds(ctx) {
    const pthTiny = { 'consolidated.00.pth': pthBytes(metaTensors(tinyModel())) };
    const out: Seed[] = [
      { name: 'tiny', bytes: json(TINY_PARAMS), weight: 4, companions: pthTiny },
      { name: 'tiny, vocab_size -1, n_kv_heads null, ffn_dim_multiplier', bytes: json({ ...TINY_PARAMS, vocab_size: -1, n_kv_heads: null, ffn_dim_multiplier: 1.0 }), weight: 2, companions: pthTiny },
    ];
    const p = fromShared(ctx, 'models/stories260K/meta-f32/params.json');
    const w = fromShared(ctx, 'models/stories260K/meta-f32/consolidated.00.pth');
    if (p && w) out.push({ name: 'shared:meta-f32/params.json', bytes: p, weight: 0.5, companions: { 'consolidated.00.pth': w } });
    return out;
  },
  defaultCompanions: () => ({ 'consolidated.00.pth': pthBytes(metaTensors(tinyModel())) }),
  run(_input, _file, dir) {
    typed(() => void metaHiddenDim(readMetaParams(dir)));
    typed(() => void readMetaCheckpoint(dir, { vocabSize: 16 }));
  },
};

const configJson: Target = {
  name: 'config-json',
  what: 'readHfConfig (config.json), then loadHfModel with a model.safetensors beside it',
  ciInputs: 20000,
  sharedSeeds: ['models/stories260K/hf/config.json', 'models/stories260K/hf/model.safetensors'],
  file: 'config.json',
  kind: 'json',
  seeds(ctx) {
    const st = { 'model.safetensors': safetensorsBytes(hfTensors(tinyModel())) };
    const out: Seed[] = [
      { name: 'tiny', bytes: json(TINY_HF_CONFIG, 2), weight: 4, companions: st },
      { name: 'tiny, Llama 3.1 rope_scaling', bytes: json({ ...TINY_HF_CONFIG, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 } }), weight: 2, companions: st },
      { name: 'tiny, model_type only', bytes: json({ ...TINY_HF_CONFIG, architectures: undefined, head_dim: 4 }), weight: 1, companions: st },
    ];
    const c = fromShared(ctx, 'models/stories260K/hf/config.json');
    const w = fromShared(ctx, 'models/stories260K/hf/model.safetensors');
    if (c && w) out.push({ name: 'shared:hf/config.json', bytes: c, weight: 0.5, companions: { 'model.safetensors': w } });
    return out;
  },
  defaultCompanions: () => ({ 'model.safetensors': safetensorsBytes(hfTensors(tinyModel())) }),
  run(_input, _file, dir) {
    typed(() => void readHfConfig(dir));
    typed(() => void loadHfModel(dir));
  },
};

const JINJA_TOKENS = [
  '{%', '%}', '{{', '}}', '{#', '#}', '{%-', '-%}', ' for x in ', ' in ', 'range(', '999999999', 'range(99999999)', '{% for i in range(1000) %}', '{% endfor %}', '-1', ')', '(', '[', ']', ':', ',', '.', '|', '~', '+', '*', '**', '//', '%', '==',
  ' if ', ' else ', 'endif', 'endfor', 'elif', 'set ', ' = ', 'macro m(a)', 'endmacro', 'call', 'endcall', 'filter', 'endfilter', 'namespace(', 'loop.index0', 'loop.last',
  'messages', 'message', "message['content']", "messages[0]['role']", 'bos_token', 'eos_token', 'add_generation_prompt', 'tools', 'raise_exception(', 'none', 'None', 'true',
  'trim', 'tojson', 'length', 'upper', 'lower', 'join', 'map', 'selectattr', 'first', 'last', 'items()', 'strip()', 'split(', 'startswith(', '"', "'", '\\', '\n', 'is defined',
  'not ', ' and ', ' or ', 'x', '1', '0', '1e308', 'strftime_now(', 'break', 'continue', 'recursive', 'loop(',
  // whole statements, so that insertions often still parse
  "{% for i in range(99999999) %}{% endfor %}", '{{ range(100000) | length }}', '{% for m in messages %}{{ m.content }}{% endfor %}', '{{ messages | tojson }}',
  "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}", "{{ 'x' | center(1000) }}",
  '{{ tools | tojson(indent=4) }}', "{{ raise_exception('no') }}", '{% if messages[0] is defined %}{{ messages[0].role }}{% endif %}', '{{ (1, 2)[5] }}',
  '{% macro r(n) %}{{ r(n) }}{% endmacro %}{{ r(1) }}', "{{ messages[0]['content'][::-1] }}", '{{ 10 ** 400 }}', '{{ 1 // 0 }}', '{{ x.y.z }}',
];

const chatTemplate: Target = {
  name: 'chat-template',
  what: 'renderChatTemplate (parse + render with @huggingface/jinja) on a three-message dialog and an empty one',
  ciInputs: 20000,
  hangMs: 3000, // a runaway template stops at its step budget, in about a second on a quiet machine (two renders)
  sharedSeeds: ['models/llama3-tokenizer/tokenizer_config.json'],
  kind: 'text',
  seeds(ctx) {
    const t = (name: string, s: string, weight = 2): Seed => ({ name, bytes: text(s), weight });
    const out = [
      t('Llama 2 (built in)', LLAMA2_CHAT_TEMPLATE),
      t('Llama 3 (built in)', LLAMA3_CHAT_TEMPLATE),
      t('macros, namespace, filters',
        "{%- macro fmt(m) -%}{{ m['role'] | upper }}: {{ m['content'] | trim }}{%- endmacro -%}{% set ns = namespace(n=0) %}{% for m in messages if m.role != 'system' %}{% set ns.n = ns.n + 1 %}{{ fmt(m) ~ '\\n' }}{% endfor %}{{ ns.n }}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"),
      t('tools and tojson', "{{ bos_token }}{% if tools is not none %}{{ tools | tojson(indent=2) }}{% endif %}{% for m in messages %}{{ m.content | length }}{{ loop.index }}/{{ messages | length }}{% endfor %}{{ messages[-1:] | map(attribute='role') | join(',') }}"),
      t('raise_exception', "{% if messages | length == 0 %}{{ raise_exception('empty') }}{% endif %}{{ messages[0]['content'][1:3] }}{{ (messages | selectattr('role', 'equalto', 'user') | list)[0].content.split(' ') }}"),
    ];
    const cfg = fromShared(ctx, 'models/llama3-tokenizer/tokenizer_config.json');
    if (cfg) out.push(t('shared:llama3 tokenizer_config.json chat_template', (JSON.parse(new TextDecoder().decode(cfg)) as { chat_template: string }).chat_template, 2));
    return out;
  },
  mutate(seed, r, corpus) {
    const splice = corpus.seeds.map((s) => new TextDecoder().decode(s.bytes));
    const dict = r.chance(0.2) ? [...JINJA_TOKENS, ...splice.map((s) => { const a = r.int(s.length); return s.slice(a, a + 1 + r.int(40)); })] : JINJA_TOKENS;
    return text(mutateText(new TextDecoder().decode(seed.bytes), r, dict));
  },
  run(input) {
    const template = new TextDecoder().decode(input);
    for (const messages of [CHAT, []]) {
      typed(() => void renderChatTemplate(template, messages, { bosToken: '<s>', eosToken: '</s>', tools: [{ type: 'function', function: { name: 'f', parameters: {} } }], extra: { date_string: '26 Jul 2024' } }));
    }
  },
};
const CHAT: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: ' Hello, <s> who are you? ' },
  { role: 'assistant', content: 'A model.' },
];

/** Limits as the engine passes them for a small model. */
const REQUEST_LIMITS = { vocabSize: 512, maxN: 8, maxSequences: 16 };

const serverRequest: Target = {
  name: 'server-request',
  what: "the server's request parsing: the body's JSON.parse (as src/server reads it), then validateChatRequest and validateCompletionRequest (src/engine/validate.ts)",
  ciInputs: 20000,
  sharedSeeds: [],
  kind: 'json',
  seeds: () => [
    { name: 'chat', bytes: json({ model: 'stories260K', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }], temperature: 0.7, max_tokens: 16 }), weight: 3 },
    { name: 'chat, streaming, every sampling field', bytes: json({
      model: 'm', messages: [{ role: 'developer', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }, { role: 'user', content: 'x' }, { role: 'assistant', content: 'y', refusal: null }],
      stream: true, stream_options: { include_usage: true }, n: 2, seed: 42, stop: ['\n', 'END'], top_p: 0.9, presence_penalty: 0.5, frequency_penalty: -0.5,
      logit_bias: { '1': -100, '2': 5 }, logprobs: true, top_logprobs: 3, max_completion_tokens: 8, user: 'u', tools: [], tool_choice: 'none', response_format: { type: 'text' }, modalities: ['text'],
    }), weight: 3 },
    { name: 'completion, string prompt', bytes: json({ model: 'm', prompt: 'Once upon a time', max_tokens: 32, logprobs: 2, echo: true, suffix: '', best_of: 1 }), weight: 2 },
    { name: 'completion, token ids', bytes: json({ model: 'm', prompt: [[1, 2, 3], [4, 5]], n: 2, stop: 'x', temperature: 0 }), weight: 2 },
  ],
  run(input) {
    let body: unknown;
    try {
      body = parseJsonBody(new TextDecoder().decode(input)); // exactly as src/server reads a body
    } catch (e) {
      if (!(e instanceof InvalidRequestError)) throw e;
      outcome.refused++; // the server answers 400 for a body that is not JSON or nests too deep
      return;
    }
    // both validators see every body; the one for its endpoint decides whether it was refused
    const chat = typeof body === 'object' && body !== null && 'messages' in body;
    typed(() => void validateChatRequest(body, REQUEST_LIMITS), chat);
    typed(() => void validateCompletionRequest(body, REQUEST_LIMITS), !chat);
  },
};

export const TARGETS: readonly Target[] = [llama2c, tokenizerBin, sentencepiece, pickle, pth, safetensors, gguf, tokenizerJson, paramsJson, configJson, chatTemplate, serverRequest];

export function targetByName(name: string): Target {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`unknown fuzz target "${name}"; targets: ${TARGETS.map((x) => x.name).join(', ')}`);
  return t;
}

/** Build a target's corpus: its seeds, their bytes and a JSON dictionary from them. */
export function buildCorpus(target: Target, seeds: Seed[]): Corpus {
  const parsed = new Map<Seed, unknown>();
  if (target.kind === 'json') {
    for (const s of seeds) {
      try {
        const v: unknown = JSON.parse(new TextDecoder().decode(s.bytes));
        if (jsonDepth(v) <= 32) parsed.set(s, v);
      } catch {
        // not JSON (a regression seed): mutated as bytes only
      }
    }
  }
  const headers: unknown[] = [];
  if (target.name === 'safetensors') {
    for (const s of seeds) {
      const h = safetensorsHeader(s.bytes);
      if (h) {
        try {
          headers.push(JSON.parse(new TextDecoder().decode(s.bytes.subarray(h.start, h.end))));
        } catch {
          // not JSON: nothing to learn from it
        }
      }
    }
  }
  const jsonDict = jsonDictionary([...parsed.values(), ...headers], ['architectures', 'hidden_size', 'vocab_size', 'n_heads', 'dim', 'type', 'model', 'vocab', 'merges', 'added_tokens', 'pattern', 'Regex', 'String', 'content', 'id', 'special']);
  return { seeds, bytes: seeds.map((s) => s.bytes), jsonDict, parsed };
}

/** Nesting depth of a JSON value (iterative), to keep very deep regression seeds away from structuredClone. */
function jsonDepth(v: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    max = Math.max(max, d);
    for (const y of Object.values(x)) stack.push([y, d + 1]);
  }
  return max;
}

/** One mutated input from `seed`. */
export function mutate(target: Target, seed: Seed, r: Rng, corpus: Corpus): Uint8Array {
  if (target.mutate) return target.mutate(seed, r, corpus);
  if (target.kind === 'json' && corpus.parsed.has(seed) && r.chance(0.85)) return mutateJson(corpus.parsed.get(seed), r, corpus.jsonDict);
  return mutateBytes(seed.bytes, r, { hot: seed.hot ?? [], dict: target.dict ?? [], splice: corpus.bytes });
}
