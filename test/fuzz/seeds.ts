/**
 * Seed inputs for the fuzz targets: small files built here with the project's own writers (or
 * small writers below, for the formats llamats only reads), and real files from ../shared.
 * Small seeds keep the fuzzer fast; the real ones bring what real writers produce.
 *
 * Writers here: a zip archive (stored or deflated entries, optionally ZIP64 records), a torch.save
 * style pickle of a state_dict, a safetensors file, a SentencePiece ModelProto (with an optional
 * one-rule precompiled_charsmap) and a llama2.c tokenizer.bin.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { writeGguf, writeGgufModel, type GgufValue } from '../../src/formats/gguf.js';
import { tokenizerGgufMetadata } from '../../src/formats/gguf-vocab.js';
import { writeLlama2cCheckpoint } from '../../src/formats/llama2c.js';
import { randomModel, type ModelShape } from '../../src/model/random.js';
import { toF32 } from '../../src/model/tensor.js';
import type { Model } from '../../src/model/weights.js';
import { HfTokenizer } from '../../src/tokenizer/hf.js';
import { Llama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import type { Region } from './mutate.js';

/** One seed input. `companions` are files written beside it (a params.json beside a .pth). */
export interface Seed {
  readonly name: string;
  readonly bytes: Uint8Array;
  /** Relative frequency with which the seed is picked. */
  readonly weight: number;
  readonly hot?: readonly Region[];
  readonly companions?: Readonly<Record<string, Uint8Array>>;
}

const utf8 = new TextEncoder();
export const text = (s: string): Uint8Array => utf8.encode(s);
export const json = (v: unknown, indent?: number): Uint8Array => utf8.encode(JSON.stringify(v, null, indent));

/** Bytes of a file that a writer produced in `dir`. */
function written(dir: string, name: string, write: (file: string) => void): Uint8Array {
  const file = path.join(dir, name);
  write(file);
  const b = new Uint8Array(fs.readFileSync(file));
  fs.rmSync(file);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Tiny models

/** dim 8, 2 heads (1 KV head), hidden 24 (Meta's formula with multiple_of 8), 1 layer, vocab 16. */
export const TINY: ModelShape = { dim: 8, hiddenDim: 24, nLayers: 1, nHeads: 2, nKvHeads: 1, vocabSize: 16, seqLen: 16, sharedClassifier: false };
/** Wide enough for 32-weight quantized blocks. */
export const TINY32: ModelShape = { dim: 32, hiddenDim: 64, nLayers: 1, nHeads: 4, nKvHeads: 2, vocabSize: 16, seqLen: 16, sharedClassifier: true };

export function tinyModel(shape: ModelShape = TINY, seed = 1): Pick<Model, 'config' | 'weights'> {
  return randomModel(shape, seed);
}

/** Meta's params.json for TINY. */
export const TINY_PARAMS = { dim: 8, n_layers: 1, n_heads: 2, n_kv_heads: 1, vocab_size: 16, multiple_of: 8, norm_eps: 1e-5, rope_theta: 10000 };
/** transformers' config.json for TINY. */
export const TINY_HF_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2,
  num_key_value_heads: 1, vocab_size: 16, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null,
  tie_word_embeddings: false, hidden_act: 'silu', bos_token_id: 1, eos_token_id: [2],
};

/** The model's tensors under Meta's names (Linear weights [out, in]). */
export function metaTensors(m: Pick<Model, 'config' | 'weights'>): Array<[string, number[], Float32Array]> {
  const w = m.weights;
  const c = m.config;
  const mat = (x: Parameters<typeof toF32>[0]) => toF32(x);
  const out: Array<[string, number[], Float32Array]> = [['tok_embeddings.weight', [c.vocabSize, c.dim], mat(w.tokenEmbedding)]];
  w.layers.forEach((l, i) => {
    const p = `layers.${i}.`;
    out.push(
      [`${p}attention.wq.weight`, [l.wq.rows, l.wq.cols], mat(l.wq)], [`${p}attention.wk.weight`, [l.wk.rows, l.wk.cols], mat(l.wk)],
      [`${p}attention.wv.weight`, [l.wv.rows, l.wv.cols], mat(l.wv)], [`${p}attention.wo.weight`, [l.wo.rows, l.wo.cols], mat(l.wo)],
      [`${p}feed_forward.w1.weight`, [l.w1.rows, l.w1.cols], mat(l.w1)], [`${p}feed_forward.w2.weight`, [l.w2.rows, l.w2.cols], mat(l.w2)],
      [`${p}feed_forward.w3.weight`, [l.w3.rows, l.w3.cols], mat(l.w3)],
      [`${p}attention_norm.weight`, [c.dim], l.attnNorm], [`${p}ffn_norm.weight`, [c.dim], l.ffnNorm],
    );
  });
  out.push(['norm.weight', [c.dim], w.finalNorm], ['output.weight', [c.vocabSize, c.dim], mat(w.classifier)]);
  return out;
}

const HF_NAMES: Record<string, string> = {
  'tok_embeddings.weight': 'model.embed_tokens.weight', 'norm.weight': 'model.norm.weight', 'output.weight': 'lm_head.weight',
  'attention.wq.weight': 'self_attn.q_proj.weight', 'attention.wk.weight': 'self_attn.k_proj.weight', 'attention.wv.weight': 'self_attn.v_proj.weight',
  'attention.wo.weight': 'self_attn.o_proj.weight', 'feed_forward.w1.weight': 'mlp.gate_proj.weight', 'feed_forward.w2.weight': 'mlp.down_proj.weight',
  'feed_forward.w3.weight': 'mlp.up_proj.weight', 'attention_norm.weight': 'input_layernorm.weight', 'ffn_norm.weight': 'post_attention_layernorm.weight',
};

/** The same tensors under transformers' names. */
export function hfTensors(m: Pick<Model, 'config' | 'weights'>): Array<[string, number[], Float32Array]> {
  return metaTensors(m).map(([name, shape, data]) => {
    const layer = /^layers\.(\d+)\.(.*)$/.exec(name);
    return [layer ? `model.layers.${layer[1]}.${HF_NAMES[layer[2]!]}` : HF_NAMES[name]!, shape, data];
  });
}

// ---------------------------------------------------------------------------------------------
// safetensors

export function safetensorsBytes(tensors: Array<[string, number[], Float32Array]>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let off = 0;
  for (const [name, shape, data] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + data.byteLength] };
    off += data.byteLength;
  }
  let h = JSON.stringify(header);
  h += ' '.repeat((8 - (h.length % 8)) % 8);
  const hb = text(h);
  const out = new Uint8Array(8 + hb.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let o = 8 + hb.length;
  for (const [, , data] of tensors) {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), o);
    o += data.byteLength;
  }
  return out;
}

/** Where the JSON header of a safetensors file is (for hot regions and JSON mutation). */
export function safetensorsHeader(b: Uint8Array): Region | undefined {
  if (b.length < 8) return undefined;
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  return n <= b.length - 8 ? { start: 8, end: 8 + n } : undefined;
}

// ---------------------------------------------------------------------------------------------
// zip + pickle (torch.save)

export interface ZipInput {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

/** A zip archive; `zip64` writes ZIP64 extra fields and end records as torch does for big files. */
export function zipBytes(entries: readonly ZipInput[], opts: { zip64?: boolean; comment?: string } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let off = 0;
  const push = (b: Uint8Array) => {
    parts.push(b);
    off += b.length;
  };
  for (const e of entries) {
    const name = text(e.name);
    const packed = e.deflate ? new Uint8Array(zlib.deflateRawSync(e.data)) : e.data;
    const crc = zlib.crc32(e.data) >>> 0;
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(8, e.deflate ? 8 : 0, true);
    local.setUint32(14, crc, true);
    local.setUint32(18, packed.length, true);
    local.setUint32(22, e.data.length, true);
    local.setUint16(26, name.length, true);
    const localOffset = off;
    push(new Uint8Array(local.buffer));
    push(name);
    push(packed);
    const extra = opts.zip64 ? new DataView(new ArrayBuffer(28)) : undefined;
    if (extra) {
      extra.setUint16(0, 1, true);
      extra.setUint16(2, 24, true);
      extra.setBigUint64(4, BigInt(e.data.length), true);
      extra.setBigUint64(12, BigInt(packed.length), true);
      extra.setBigUint64(20, BigInt(localOffset), true);
    }
    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, 0x02014b50, true);
    cd.setUint16(4, 45, true);
    cd.setUint16(6, 20, true);
    cd.setUint16(10, e.deflate ? 8 : 0, true);
    cd.setUint32(16, crc, true);
    cd.setUint32(20, extra ? 0xffffffff : packed.length, true);
    cd.setUint32(24, extra ? 0xffffffff : e.data.length, true);
    cd.setUint16(28, name.length, true);
    cd.setUint16(30, extra ? 28 : 0, true);
    cd.setUint32(42, extra ? 0xffffffff : localOffset, true);
    central.push(new Uint8Array(cd.buffer), name, ...(extra ? [new Uint8Array(extra.buffer)] : []));
  }
  const cdOffset = off;
  for (const c of central) push(c);
  const cdSize = off - cdOffset;
  if (opts.zip64) {
    const rec = new DataView(new ArrayBuffer(56));
    rec.setUint32(0, 0x06064b50, true);
    rec.setBigUint64(4, 44n, true);
    rec.setUint16(12, 45, true);
    rec.setUint16(14, 45, true);
    rec.setBigUint64(24, BigInt(entries.length), true);
    rec.setBigUint64(32, BigInt(entries.length), true);
    rec.setBigUint64(40, BigInt(cdSize), true);
    rec.setBigUint64(48, BigInt(cdOffset), true);
    const recOffset = off;
    push(new Uint8Array(rec.buffer));
    const loc = new DataView(new ArrayBuffer(20));
    loc.setUint32(0, 0x07064b50, true);
    loc.setBigUint64(8, BigInt(recOffset), true);
    loc.setUint32(16, 1, true);
    push(new Uint8Array(loc.buffer));
  }
  const comment = text(opts.comment ?? '');
  const eocd = new DataView(new ArrayBuffer(22));
  eocd.setUint32(0, 0x06054b50, true);
  eocd.setUint16(8, opts.zip64 ? 0xffff : entries.length, true);
  eocd.setUint16(10, opts.zip64 ? 0xffff : entries.length, true);
  eocd.setUint32(12, opts.zip64 ? 0xffffffff : cdSize, true);
  eocd.setUint32(16, opts.zip64 ? 0xffffffff : cdOffset, true);
  eocd.setUint16(20, comment.length, true);
  push(new Uint8Array(eocd.buffer));
  push(comment);
  const out = new Uint8Array(off);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Regions of a zip archive worth mutating: every entry named `hotEntry`, and the directory at the end. */
export function zipRegions(b: Uint8Array, hotEntries: RegExp): Region[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const regions: Region[] = [];
  for (let i = b.length - 22; i >= 0; i--) {
    if (v.getUint32(i, true) !== 0x06054b50) continue;
    const cdOffset = v.getUint32(i + 16, true);
    let cdStart = cdOffset === 0xffffffff ? i - 96 : cdOffset; // ZIP64: approximate (records + locator)
    // walk the central directory (32-bit fields; ZIP64 archives: names only)
    for (let p = Math.max(0, cdStart); p + 46 <= i && v.getUint32(p, true) === 0x02014b50; ) {
      const nameLen = v.getUint16(p + 28, true);
      const extraLen = v.getUint16(p + 30, true);
      const commentLen = v.getUint16(p + 32, true);
      const name = new TextDecoder().decode(b.subarray(p + 46, p + 46 + nameLen));
      let local = v.getUint32(p + 42, true);
      let size = v.getUint32(p + 20, true);
      if (local === 0xffffffff && extraLen >= 28) {
        size = Number(v.getBigUint64(p + 46 + nameLen + 12, true));
        local = Number(v.getBigUint64(p + 46 + nameLen + 20, true));
      }
      if (hotEntries.test(name) && local < b.length) regions.push({ start: local, end: Math.min(b.length, local + 30 + nameLen + 64 + size) });
      p += 46 + nameLen + extraLen + commentLen;
    }
    cdStart = Math.max(0, Math.min(cdStart, i));
    regions.push({ start: cdStart, end: b.length });
    break;
  }
  return regions;
}

/** The bytes of a pickle, written opcode by opcode (protocol 2, as torch.save writes). */
class PickleWriter {
  private readonly out: number[] = [0x80, 0x02];
  private memo = 0;
  op(...b: number[]): this {
    this.out.push(...b);
    return this;
  }
  put(): this {
    return this.memo < 256 ? this.op(0x71, this.memo++) : this.op(0x72, ...u32(this.memo++));
  }
  str(s: string): this {
    const b = text(s);
    return this.op(0x58, ...u32(b.length), ...b).put();
  }
  int(n: number): this {
    if (n < 256) return this.op(0x4b, n);
    if (n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    return this.op(0x4a, ...u32(n));
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...text(`${module}\n${name}\n`)).put();
  }
  tuple(items: number[]): this {
    this.op(0x28);
    for (const n of items) this.int(n);
    return this.op(0x74).put();
  }
  bytes(): Uint8Array {
    return Uint8Array.from([...this.out, 0x2e]);
  }
}
const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

/** data.pkl of torch.save(state_dict): an OrderedDict of name → _rebuild_tensor_v2(storage key i). */
export function statePickle(tensors: ReadonlyArray<[string, number[]]>, storage = 'FloatStorage'): Uint8Array {
  const w = new PickleWriter();
  w.global('collections', 'OrderedDict').op(0x29).op(0x52).put().op(0x28);
  tensors.forEach(([name, shape], i) => {
    const numel = shape.reduce((a, b) => a * b, 1);
    const stride = shape.map((_, d) => shape.slice(d + 1).reduce((a, b) => a * b, 1));
    w.str(name).global('torch._utils', '_rebuild_tensor_v2').op(0x28);
    w.op(0x28).str('storage').global('torch', storage).str(String(i)).str('cpu').int(numel).op(0x74).put().op(0x51).put();
    w.int(0).tuple(shape).tuple(stride).op(0x89);
    w.global('collections', 'OrderedDict').op(0x29).op(0x52).put();
    w.op(0x74).put().op(0x52).put();
  });
  return w.op(0x75).bytes();
}

/** A torch.save zip of float32 tensors under folder `prefix`. */
export function pthBytes(tensors: Array<[string, number[], Float32Array]>, opts: { prefix?: string; zip64?: boolean; deflate?: boolean } = {}): Uint8Array {
  const prefix = opts.prefix ?? 'archive';
  const entries: ZipInput[] = [{ name: `${prefix}/data.pkl`, data: statePickle(tensors.map(([n, s]) => [n, s])), deflate: opts.deflate ?? false }];
  tensors.forEach(([, , data], i) => entries.push({ name: `${prefix}/data/${i}`, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), deflate: opts.deflate === true && i % 2 === 0 }));
  entries.push({ name: `${prefix}/version`, data: text('3\n') }, { name: `${prefix}/byteorder`, data: text('little') });
  return zipBytes(entries, opts.zip64 ? { zip64: true } : {});
}

/** Hand-written pickles of the less common opcodes (protocol 0 text, memo, sets, longs, ...). */
export function oddPickles(): Array<[string, Uint8Array]> {
  const b = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
  return [
    // protocol 0: a dict built with MARK/DICT, INT, LONG, FLOAT, STRING, UNICODE, PUT/GET
    ['proto0', b("(dp0\nS'a'\np1\nI42\nsS'b'\nL12345678901234567890L\nsVu\\u00e9\\U0001F600\nF1.5\nsg1\n(I1\nI2\nlp2\ns.")],
    // protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, EMPTY_SET + ADDITEMS, FROZENSET, LONG1, BINFLOAT, TUPLE1..3
    ['proto4', Uint8Array.from([0x80, 0x04, 0x95, 0x30, 0, 0, 0, 0, 0, 0, 0, 0x7d, 0x94, 0x28, 0x8c, 0x01, 0x61, 0x94, 0x8f, 0x94, 0x28, 0x4b, 0x01, 0x4b, 0x02, 0x90,
      0x8c, 0x01, 0x62, 0x28, 0x4b, 0x03, 0x91, 0x8c, 0x01, 0x63, 0x8a, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x8c, 0x01, 0x64, 0x47, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0,
      0x8c, 0x01, 0x65, 0x4b, 1, 0x85, 0x4b, 2, 0x4b, 3, 0x86, 0x4b, 4, 0x4b, 5, 0x4b, 6, 0x87, 0x87, 0x75, 0x2e])],
    // BINBYTES, SHORT_BINBYTES, BINSTRING, NEWTRUE/NEWFALSE/NONE, APPEND(S), POP, DUP, POP_MARK
    ['binary', Uint8Array.from([0x80, 0x02, 0x5d, 0x71, 0x00, 0x42, 2, 0, 0, 0, 0xde, 0xad, 0x61, 0x43, 1, 0x41, 0x61, 0x54, 1, 0, 0, 0, 0x7a, 0x61, 0x28, 0x88, 0x89, 0x4e, 0x65,
      0x32, 0x30, 0x28, 0x4b, 1, 0x31, 0x2e])],
  ];
}

// ---------------------------------------------------------------------------------------------
// SentencePiece ModelProto

function pbKey(field: number, wire: number): number[] {
  return [...pbVarint((field << 3) | wire)];
}
function pbVarint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(n));
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? b | 0x80 : b);
  } while (v > 0n);
  return out;
}
function pbBytes(field: number, b: Uint8Array | number[]): number[] {
  return [...pbKey(field, 2), ...pbVarint(b.length), ...b];
}
function pbFloat(field: number, f: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, f, true);
  return [...pbKey(field, 5), ...b];
}

export interface SpPiece {
  piece: string;
  score: number;
  type: number;
}

/** A ModelProto: pieces, trainer_spec (model type, byte fallback) and normalizer_spec. */
export function sentencePieceBytes(pieces: readonly SpPiece[], opts: { modelType?: number; byteFallback?: boolean; charsmap?: Uint8Array; addDummyPrefix?: boolean; removeExtra?: boolean } = {}): Uint8Array {
  const out: number[] = [];
  for (const p of pieces) out.push(...pbBytes(1, [...pbBytes(1, text(p.piece)), ...pbFloat(2, p.score), ...pbKey(3, 0), ...pbVarint(p.type)]));
  const trainer = [...pbKey(3, 0), ...pbVarint(opts.modelType ?? 2), ...pbKey(35, 0), opts.byteFallback ? 1 : 0, ...pbBytes(45, text('<unk>')), ...pbBytes(46, text('<s>')), ...pbBytes(47, text('</s>'))];
  out.push(...pbBytes(2, trainer));
  const normalizer = [...pbBytes(1, text(opts.charsmap ? 'nmt_nfkc' : 'identity')), ...(opts.charsmap ? pbBytes(2, opts.charsmap) : []),
    ...pbKey(3, 0), opts.addDummyPrefix === false ? 0 : 1, ...pbKey(4, 0), opts.removeExtra === false ? 0 : 1, ...pbKey(5, 0), 1];
  out.push(...pbBytes(3, normalizer));
  return Uint8Array.from(out);
}

/**
 * A precompiled_charsmap with one rule, `from` (one byte) → `to`: a Darts double array of 66
 * units (root offset 1; the byte's unit at 1 ^ byte has the leaf flag and offset 1; the leaf unit
 * holds the replacement's index) and the NUL-terminated replacement.
 */
export function oneRuleCharsmap(from: number, to: string): Uint8Array {
  const units = new Uint32Array(256);
  units[0] = 1 << 10;
  const node = 1 ^ from;
  units[node] = (1 << 10) | (1 << 8) | from;
  units[node ^ 1] = 0; // leaf: replacement at strings[0]
  const trie = new Uint8Array(units.buffer);
  const repl = text(to + '\0');
  const out = new Uint8Array(4 + trie.length + repl.length);
  new DataView(out.buffer).setUint32(0, trie.length, true);
  out.set(trie, 4);
  out.set(repl, 4 + trie.length);
  return out;
}

/** A small BPE vocabulary: <unk> <s> </s>, the 256 byte pieces (optional) and a few merges. */
export function smallSpPieces(bytePieces: boolean): SpPiece[] {
  const p: SpPiece[] = [{ piece: '<unk>', score: 0, type: 2 }, { piece: '<s>', score: 0, type: 3 }, { piece: '</s>', score: 0, type: 3 }];
  if (bytePieces) for (let b = 0; b < 256; b++) p.push({ piece: `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, score: 0, type: 6 });
  const normal = ['▁', 'a', 'b', 'c', 'e', 'h', 'l', 'o', 'ab', '▁a', '▁ab', 'he', 'll', 'hell', 'hello', '▁hello', 'é', '😀', '<user>'];
  normal.forEach((s, i) => p.push({ piece: s, score: -i, type: s === '<user>' ? 4 : 1 }));
  p.push({ piece: 'abc', score: -1.5, type: 5 });
  return p;
}

// ---------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin

export function tokenizerBinBytes(pieces: ReadonlyArray<[string, number]>, maxTokenLength?: number): Uint8Array {
  const parts: number[] = [];
  const i32 = (n: number) => u32(n >>> 0);
  const f32 = (f: number) => [...new Uint8Array(Float32Array.of(f).buffer)];
  let max = 0;
  for (const [s, score] of pieces) {
    const b = text(s);
    max = Math.max(max, b.length);
    parts.push(...f32(score), ...i32(b.length), ...b);
  }
  return Uint8Array.from([...i32(maxTokenLength ?? max), ...parts]);
}

/** The vocabulary of TINY (16 entries): <unk> <s> </s>, single letters and merges. */
export const TINY_VOCAB: Array<[string, number]> = [
  ['<unk>', 0], ['\n<s>\n', 0], ['\n</s>\n', 0], [' ', -1], ['a', -2], ['b', -3], ['c', -4], ['<0x41>', 0], [' a', -5], ['ab', -6], [' ab', -7],
  ['é', -8], ['x', -9], ['<0x0A>', 0], ['abc', -10], ['  ', -11],
];

// ---------------------------------------------------------------------------------------------
// GGUF

/** A GGUF with metadata of every value type (nested arrays included) and one tensor. */
export function ggufAllTypesBytes(dir: string): Uint8Array {
  const md: Array<[string, GgufValue]> = [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['t.u8', { type: 'u8', value: 255 }], ['t.i8', { type: 'i8', value: -1 }], ['t.u16', { type: 'u16', value: 65535 }], ['t.i16', { type: 'i16', value: -2 }],
    ['t.u32', { type: 'u32', value: 4294967295 }], ['t.i32', { type: 'i32', value: -3 }], ['t.f32', { type: 'f32', value: 0.5 }], ['t.f64', { type: 'f64', value: 1e300 }],
    ['t.u64', { type: 'u64', value: 18446744073709551615n }], ['t.i64', { type: 'i64', value: -4n }], ['t.bool', { type: 'bool', value: true }],
    ['t.arr_u8', { type: 'array', itemType: 'u8', value: Uint8Array.of(1, 2, 3) }], ['t.arr_str', { type: 'array', itemType: 'string', value: ['a', '', 'ü'] }],
    ['t.arr_bool', { type: 'array', itemType: 'bool', value: [true, false] }], ['t.arr_u64', { type: 'array', itemType: 'u64', value: BigUint64Array.of(1n, 2n) }],
    ['t.nested', { type: 'array', itemType: 'array', value: [{ type: 'array', itemType: 'i32', value: Int32Array.of(7, 8) }, { type: 'array', itemType: 'string', value: ['x'] }] }],
    ['general.alignment', { type: 'u32', value: 64 }],
  ];
  const data = new Uint8Array(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8).buffer);
  return written(dir, 'all-types.gguf', (f) => writeGguf(f, { metadata: md, tensors: [{ name: 'token_embd.weight', dims: [8, 1], type: 0, data }] }));
}

/** GGUF models of TINY / TINY32 with a llama2.c-style ("llama") vocabulary. */
export function ggufModelBytes(dir: string, type: string, shape: ModelShape = TINY): Uint8Array {
  const tok = new Llama2cTokenizer(TINY_VOCAB.map(([s]) => text(s)), Float32Array.from(TINY_VOCAB, ([, sc]) => sc), 8);
  const extra = tokenizerGgufMetadata(tok, '{% for m in messages %}{{ m.content }}{% endfor %}');
  return written(dir, `tiny-${type}.gguf`, (f) => writeGgufModel(f, tinyModel(shape), { type, extraMetadata: extra }));
}

/** A GGUF with a byte-level ("gpt2") vocabulary from a tokenizer.json, and no tensors. */
export function ggufGpt2VocabBytes(dir: string, tokenizerJson: unknown): Uint8Array {
  const file = path.join(dir, 'gpt2-tokenizer.json');
  fs.writeFileSync(file, JSON.stringify(tokenizerJson));
  const md = tokenizerGgufMetadata(HfTokenizer.load(file));
  fs.rmSync(file);
  md.set('general.architecture', { type: 'string', value: 'llama' });
  return written(dir, 'gpt2-vocab.gguf', (f) => writeGguf(f, { metadata: md, tensors: [] }));
}

/** llama2.c checkpoints of TINY: versions 0, 1, 2. */
export function llama2cBytes(dir: string, version: 0 | 1 | 2, shape: ModelShape = TINY): Uint8Array {
  return written(dir, `tiny-v${version}.bin`, (f) => writeLlama2cCheckpoint(f, tinyModel(shape), version === 2 ? { version, groupSize: 8 } : { version }));
}
