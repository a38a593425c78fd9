/**
 * GGUF files (llama.cpp / ggml), read and written.
 *
 * Byte by byte, versions 2 and 3 (little-endian; version 1 used 32-bit counts and is refused):
 *
 *   u32  magic        "GGUF" (bytes 47 47 55 46)
 *   u32  version      2 or 3 (a big-endian file reads here as 0x02000000 / 0x03000000)
 *   u64  n_tensors
 *   u64  n_kv
 *   n_kv × metadata key-value pair:
 *        string key      (a string is: u64 byte length, then that many UTF-8 bytes, no NUL)
 *        u32    type     0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte),
 *                        8 string, 9 array, 10 u64, 11 i64, 12 f64
 *        value           of that type; an array is: u32 item type, u64 count, the items
 *                        (items may themselves be arrays: nested arrays)
 *   n_tensors × tensor info:
 *        string name
 *        u32    n_dims   1..4
 *        u64    dims[n_dims]   fastest-varying first: a matrix of R rows of C columns is [C, R]
 *        u32    type     a ggml type id (src/quant/ggml.ts)
 *        u64    offset   of the tensor's data, from the start of the data section; a multiple
 *                        of the alignment
 *   padding          zeros up to a multiple of the alignment: `general.alignment` (u32, a power
 *                    of two) when present, else 32
 *   data section     the tensors' bytes (each a row-major array of blocks), padded between tensors
 *
 * Every read is bounds-checked, and every count or length is checked against the bytes left in
 * the file before anything is allocated, so a small malicious file cannot allocate gigabytes or
 * loop for long. Errors are FileFormatError (the file is wrong) or UnsupportedModelError (a
 * well-formed file llamats cannot run), with the path and what was expected and found.
 *
 * Models: architecture `llama` only. Tensor names (GGUF dims in brackets, `L` = block index):
 *   token_embd.weight [dim, vocab]     output_norm.weight [dim]     output.weight [dim, vocab]
 *   blk.L.attn_norm.weight [dim]       blk.L.attn_q.weight [dim, dim]
 *   blk.L.attn_k.weight [dim, kvDim]   blk.L.attn_v.weight [dim, kvDim]   blk.L.attn_output.weight [dim, dim]
 *   blk.L.ffn_norm.weight [dim]        blk.L.ffn_gate.weight [dim, hidden] (Meta's w1)
 *   blk.L.ffn_up.weight [dim, hidden] (w3)   blk.L.ffn_down.weight [hidden, dim] (w2)
 * `output.weight` absent means the classifier is tied to the embedding. llama.cpp's `llama`
 * architecture rotates adjacent pairs like llama2.c and Meta, so q and k are used as stored.
 * Each tensor is read into a buffer of its own (a model may be larger than any one JS buffer)
 * and kept in its file type: F32 as float32, F16/BF16 as 16-bit, block types as blocks.
 */
import * as fs from 'node:fs';
import { FileFormatError, InvalidArgumentError, OutOfMemoryError, UnsupportedModelError, formatBytes } from '../errors.js';
import { statFile } from '../io/file.js';
import { CONFIG_LIMITS, kvDim, layerKvBytes, makeConfig, type ModelConfig } from '../model/config.js';
import { f32Matrix, ggmlData, ggmlMatrix, half16Matrix, isRegrouped, quantizeMatrix, readRow, type LoadQuantization, type Matrix } from '../model/tensor.js';
import type { LayerWeights, Model } from '../model/weights.js';
import { hostPlacement, type Placement } from '../model/placement.js';
import { GGML_OTHER_TYPE_NAMES, GGML_TYPE, GGML_TYPES, canDequantize, canQuantize, dequantizeRow, ggmlRowBytes, quantizeRow } from '../quant/ggml.js';

export { GGML_TYPE, dequantizeRow, quantizeRow } from '../quant/ggml.js';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_DEFAULT_ALIGNMENT = 32;

// ---------------------------------------------------------------------------------------------
// Metadata values

export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
export type GgufValueType = GgufNumberType | 'u64' | 'i64' | 'bool' | 'string' | 'array';

/** A metadata value with its GGUF type (so that writing it back gives the same bytes). */
export type GgufValue =
  | { readonly type: GgufNumberType; readonly value: number }
  | { readonly type: 'u64' | 'i64'; readonly value: bigint }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | GgufArray;

/** Numeric arrays are typed arrays of the item type; bool, string and nested arrays are JS arrays. */
export interface GgufArray {
  readonly type: 'array';
  readonly itemType: GgufValueType;
  readonly value:
    | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
    | BigUint64Array | BigInt64Array | readonly boolean[] | readonly string[] | readonly GgufArray[];
}

type TypedArrayCtor = Uint8ArrayConstructor | Int8ArrayConstructor | Uint16ArrayConstructor | Int16ArrayConstructor | Uint32ArrayConstructor
  | Int32ArrayConstructor | Float32ArrayConstructor | Float64ArrayConstructor | BigUint64ArrayConstructor | BigInt64ArrayConstructor;

/** GGUF value types by id: name, fixed size (strings and arrays: their smallest size), typed array. */
const VALUE_TYPES: ReadonlyArray<{ name: GgufValueType; size: number; array?: TypedArrayCtor }> = [
  { name: 'u8', size: 1, array: Uint8Array },
  { name: 'i8', size: 1, array: Int8Array },
  { name: 'u16', size: 2, array: Uint16Array },
  { name: 'i16', size: 2, array: Int16Array },
  { name: 'u32', size: 4, array: Uint32Array },
  { name: 'i32', size: 4, array: Int32Array },
  { name: 'f32', size: 4, array: Float32Array },
  { name: 'bool', size: 1 },
  { name: 'string', size: 8 },
  { name: 'array', size: 12 },
  { name: 'u64', size: 8, array: BigUint64Array },
  { name: 'i64', size: 8, array: BigInt64Array },
  { name: 'f64', size: 8, array: Float64Array },
];
const typeId = (name: GgufValueType) => VALUE_TYPES.findIndex((t) => t.name === name);

/** Arrays inside arrays deeper than this are refused (each level costs a stack frame). */
const MAX_ARRAY_DEPTH = 8;

// ---------------------------------------------------------------------------------------------
// Reading the header

export interface GgufTensorInfo {
  readonly name: string;
  /** Fastest-varying first, as in the file. */
  readonly dims: readonly number[];
  /** ggml type id. */
  readonly type: number;
  readonly typeName: string;
  /** Offset of the data from the start of the data section. */
  readonly offset: number;
  readonly byteSize: number;
}

export interface GgufHeader {
  readonly path: string;
  readonly version: number;
  readonly metadata: Map<string, GgufValue>;
  readonly tensors: GgufTensorInfo[];
  /** Absolute file offset of the data section. */
  readonly dataOffset: number;
  readonly alignment: number;
  readonly fileSize: number;
}

const CHUNK = 1 << 20;

/** Sequential bounds-checked reads from an open file, through a window of at most `CHUNK` bytes. */
class FileCursor {
  pos = 0;
  private buf = new Uint8Array(0);
  private bufStart = 0; // file offset of buf[0]
  private bufLen = 0; // bytes of buf read from the file (buf may be larger)
  private view = new DataView(this.buf.buffer);
  /** Leave arrays of strings (the vocabulary) unread: for loading weights, which never use them. */
  skipStrings = false;
  constructor(readonly fd: number, readonly size: number, readonly path: string) {}

  get remaining(): number {
    return this.size - this.pos;
  }
  fail(msg: string): never {
    throw new FileFormatError(this.path, msg);
  }
  /** Make bytes [pos, pos + n) readable, or throw naming `what`. Returns their index in `buf`. */
  private need(n: number, what: string): number {
    if (n > this.remaining) {
      this.fail(`truncated: ${what} needs ${n} bytes at offset ${this.pos}, but the file has ${this.size} bytes; the file is incomplete or not GGUF`);
    }
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.bufLen) {
      const len = Math.min(Math.max(n, CHUNK), this.remaining);
      if (this.buf.byteLength < len) this.buf = new Uint8Array(len);
      let got = 0;
      while (got < len) {
        const k = fs.readSync(this.fd, this.buf, got, len - got, this.pos + got);
        if (k === 0) this.fail(`file shrank while reading at offset ${this.pos + got}`);
        got += k;
      }
      this.bufStart = this.pos;
      this.bufLen = len;
      this.view = new DataView(this.buf.buffer, 0, len);
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }
  u32(what: string): number {
    return this.view.getUint32(this.need(4, what), true);
  }
  /** A u64 as a number; values above 2^53 are refused (no file is that large). */
  u64(what: string): number {
    const at = this.need(8, what);
    const hi = this.view.getUint32(at + 4, true);
    if (hi >= 2 ** 21) this.fail(`${what} is ${this.view.getBigUint64(at, true)}, larger than any file; the file is corrupt`);
    return hi * 2 ** 32 + this.view.getUint32(at, true);
  }
  /** A copy of the next n bytes (a fresh buffer at offset 0, so typed arrays can view it). */
  bytes(n: number, what: string): Uint8Array<ArrayBuffer> {
    const at = this.need(n, what);
    return this.buf.slice(at, at + n);
  }
  /** A count of items of at least `minBytes` each, checked against the bytes left. */
  count(what: string, minBytes: number): number {
    const n = this.u64(what);
    if (n * minBytes > this.remaining) {
      this.fail(`${what} is ${n}, but ${n} entries need at least ${n * minBytes} bytes and only ${this.remaining} remain after offset ${this.pos}; the file is corrupt or truncated`);
    }
    return n;
  }
  /** The length of the next string, checked against the bytes left. */
  stringLength(what: string): number {
    const n = this.u64(`length of ${what}`);
    if (n > this.remaining) this.fail(`${what}: string length ${n} at offset ${this.pos - 8} runs past the end of the file (${this.remaining} bytes remain)`);
    return n;
  }
  string(what: string): string {
    const n = this.stringLength(what);
    const at = this.need(n, what);
    // short ASCII strings (most vocabulary entries) without TextDecoder's per-call cost
    if (n <= 64) {
      let ascii = true;
      for (let i = at; i < at + n; i++) if (this.buf[i]! >= 0x80) ascii = false;
      if (ascii) return String.fromCharCode.apply(null, this.buf.subarray(at, at + n) as unknown as number[]);
    }
    return utf8.decode(this.buf.subarray(at, at + n));
  }
  /**
   * Step over n strings: within the bytes already read, each length straight from the buffer
   * (checked against the file's end like `stringLength`); at the window's edge, the checked path.
   */
  private skipStringItems(n: number, item: string): void {
    for (let i = 0; i < n; i++) {
      const at = this.pos - this.bufStart;
      if (at >= 0 && at + 8 <= this.bufLen) {
        const hi = this.view.getUint32(at + 4, true);
        const len = hi * 2 ** 32 + this.view.getUint32(at, true);
        if (len > this.size - this.pos - 8) {
          this.pos += 8;
          this.fail(`${item}: string length ${len} at offset ${this.pos - 8} runs past the end of the file (${this.remaining} bytes remain)`);
        }
        this.pos += 8 + len;
      } else {
        const len = this.stringLength(item); // (read before `pos`: reading the length moves it)
        this.pos += len;
      }
    }
  }

  value(type: number, what: string, depth = 0): GgufValue {
    const t = VALUE_TYPES[type];
    if (!t) this.fail(`${what} has value type ${type}; expected 0..12 (u8 … f64)`);
    if (t.name === 'string') return { type: 'string', value: this.string(what) };
    if (t.name === 'array') {
      if (depth >= MAX_ARRAY_DEPTH) this.fail(`${what}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
      const itemTypeId = this.u32(`item type of ${what}`);
      const it = VALUE_TYPES[itemTypeId];
      if (!it) this.fail(`${what}: array item type ${itemTypeId}; expected 0..12`);
      const n = this.count(`item count of ${what}`, it.size);
      let value: GgufArray['value'];
      if (it.array) {
        value = new it.array(this.bytes(n * it.size, what).buffer, 0, n);
      } else if (it.name === 'bool') {
        value = Array.from(this.bytes(n, what), (b) => b !== 0);
      } else if (it.name === 'string') {
        const items: string[] = new Array(n); // holes when skipped
        const item = `${what}[…]`; // the label of an item (a label per item would cost more than the read)
        if (this.skipStrings) this.skipStringItems(n, item);
        else for (let i = 0; i < n; i++) items[i] = this.string(item);
        value = items;
      } else {
        value = Array.from({ length: n }, (_, i) => this.value(itemTypeId, `${what}[${i}]`, depth + 1) as GgufArray);
      }
      return { type: 'array', itemType: it.name, value };
    }
    const b = this.bytes(t.size, what);
    const dv = new DataView(b.buffer);
    switch (t.name) {
      case 'u8': return { type: t.name, value: dv.getUint8(0) };
      case 'i8': return { type: t.name, value: dv.getInt8(0) };
      case 'u16': return { type: t.name, value: dv.getUint16(0, true) };
      case 'i16': return { type: t.name, value: dv.getInt16(0, true) };
      case 'u32': return { type: t.name, value: dv.getUint32(0, true) };
      case 'i32': return { type: t.name, value: dv.getInt32(0, true) };
      case 'f32': return { type: t.name, value: dv.getFloat32(0, true) };
      case 'f64': return { type: t.name, value: dv.getFloat64(0, true) };
      case 'u64': return { type: t.name, value: dv.getBigUint64(0, true) };
      case 'i64': return { type: t.name, value: dv.getBigInt64(0, true) };
      default: return { type: 'bool', value: dv.getUint8(0) !== 0 };
    }
  }
}

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/**
 * Read a GGUF file's header: metadata and tensor infos. Tensor data is not read; with
 * `skipStrings`, neither are the strings of string arrays (the vocabulary: arrays of holes).
 */
export function readGgufHeader(path: string, opts: { skipStrings?: boolean } = {}): GgufHeader {
  const size = statFile(path);
  const fd = fs.openSync(path, 'r');
  try {
    const cursor = new FileCursor(fd, size, path);
    cursor.skipStrings = opts.skipStrings ?? false;
    return parseHeader(cursor);
  } finally {
    fs.closeSync(fd);
  }
}

function parseHeader(r: FileCursor): GgufHeader {
  const head = r.bytes(Math.min(8, r.size), 'the magic and version');
  const magic = String.fromCharCode(...head.subarray(0, 4));
  if (magic === 'FUGG') r.fail('is a big-endian GGUF file; llamats reads little-endian GGUF only (re-convert without --bigendian)');
  if (magic !== GGUF_MAGIC) {
    r.fail(`expected the GGUF magic "GGUF" (47 47 55 46) at offset 0, found ${[...head.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ') || 'nothing'}; not a GGUF file`);
  }
  if (head.byteLength < 8) r.fail(`truncated: the file has ${r.size} bytes, fewer than the 24-byte GGUF header`);
  const version = new DataView(head.buffer).getUint32(4, true);
  if (version !== 0 && (version & 0xffff) === 0) {
    r.fail(`version field reads 0x${version.toString(16)}: a big-endian GGUF file (version ${version >>> 24}); llamats reads little-endian GGUF only`);
  }
  if (version !== 2 && version !== 3) {
    r.fail(`GGUF version ${version} is not supported; expected 2 or 3${version === 1 ? ' (version 1 is the 2023 draft format; re-convert the model with a current llama.cpp)' : ''}`);
  }
  const nTensors = r.count('tensor count', 24); // the smallest tensor info: empty name, 0 dims
  const nKv = r.count('metadata key-value count', 13); // empty key, type, 1-byte value

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = r.string(`key of metadata entry ${i}`);
    if (metadata.has(key)) r.fail(`metadata key "${key}" appears twice`);
    metadata.set(key, r.value(r.u32(`type of ${key}`), key));
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = r.string(`name of tensor ${i}`);
    if (names.has(name)) r.fail(`tensor "${name}" appears twice`);
    names.add(name);
    const nDims = r.u32(`n_dims of ${name}`);
    if (nDims < 1 || nDims > 4) r.fail(`tensor ${name} has ${nDims} dimensions; expected 1 to 4`);
    const dims: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      dims.push(r.u64(`dim ${d} of ${name}`));
      elements *= dims[d]!;
      if (elements > r.size * 8) r.fail(`tensor ${name} has dims [${dims.join(', ')}…], more weights than the file could hold`);
    }
    const type = r.u32(`type of ${name}`);
    const t = GGML_TYPES.get(type);
    if (!t) {
      const other = GGML_OTHER_TYPE_NAMES.get(type);
      if (other) throw new UnsupportedModelError(`${r.path}: tensor ${name} has ggml type ${other} (${type}), which llamats cannot read; use a file quantized to F32, F16, BF16, Q4_0…Q8_0 or Q2_K…Q6_K`);
      r.fail(`tensor ${name} has unknown ggml type ${type}; expected one of ${[...GGML_TYPES.keys(), ...GGML_OTHER_TYPE_NAMES.keys()].sort((a, b) => a - b).join(', ')}`);
    }
    if (dims[0]! % t.blockSize !== 0) r.fail(`tensor ${name} is ${t.name} with rows of ${dims[0]} weights, not a multiple of its block size ${t.blockSize}`);
    const offset = r.u64(`offset of ${name}`);
    tensors.push({ name, dims, type, typeName: t.name, offset, byteSize: (elements / t.blockSize) * t.typeSize });
  }

  const alignment = alignmentOf(r, metadata);
  const dataOffset = alignUp(r.pos, alignment);
  const dataSize = r.size - dataOffset;
  if (tensors.length > 0 && dataSize < 0) r.fail(`truncated: the data section would start at offset ${dataOffset}, past the end of the file (${r.size} bytes)`);
  for (const t of tensors) {
    if (t.offset % alignment !== 0) r.fail(`tensor ${t.name} starts at data offset ${t.offset}, not a multiple of the alignment ${alignment}`);
    if (t.offset + t.byteSize > dataSize) {
      r.fail(`tensor ${t.name} (${t.typeName} [${t.dims.join(', ')}], ${t.byteSize} bytes at data offset ${t.offset}) ends past the data section (${Math.max(0, dataSize)} bytes from offset ${dataOffset}); the file is truncated or corrupt`);
    }
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1]!, sorted[i]!];
    if (a.offset + a.byteSize > b.offset) r.fail(`tensors ${a.name} (data offset ${a.offset}, ${a.byteSize} bytes) and ${b.name} (data offset ${b.offset}) overlap`);
  }
  return { path: r.path, version, metadata, tensors, dataOffset, alignment, fileSize: r.size };
}

function alignmentOf(r: FileCursor, metadata: Map<string, GgufValue>): number {
  const v = metadata.get('general.alignment');
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  if (v.type !== 'u32' || v.value === 0 || (v.value & (v.value - 1)) !== 0) {
    r.fail(`general.alignment is ${v.type} ${String(v.value)}; expected a u32 power of two`);
  }
  return v.value;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

// ---------------------------------------------------------------------------------------------
// Loading a model

export interface GgufLoadOptions {
  /**
   * Context length to plan for, instead of `llama.context_length` (which some converters set
   * wrong: llama.cpp's llama2.c converter writes 128 for every model).
   */
  maxSeqLen?: number;
  /** Quantize F32/F16/BF16 (and larger block) weights to this type while loading. */
  quantize?: LoadQuantization;
  /** Where the weights are read into (default: host buffers); see src/model/placement.ts. */
  placement?: Placement;
}

/** Load a GGUF model of architecture `llama`. */
export function loadGgufModel(path: string, opts: GgufLoadOptions = {}): Model {
  const h = readGgufHeader(path, { skipStrings: true }); // the weights need no vocabulary
  const meta = new GgufMetadata(h);
  const arch = meta.string('general.architecture');
  if (arch !== 'llama') throw new UnsupportedModelError(`${path}: GGUF architecture "${arch}" is not supported; llamats runs "llama" models`);
  if (meta.int('llama.expert_count', 0, Number.MAX_SAFE_INTEGER, 0) > 0) throw new UnsupportedModelError(`${path}: mixture-of-experts models (llama.expert_count) are not supported`);
  const scaling = meta.get('llama.rope.scaling.type');
  if (scaling && !(scaling.type === 'string' && scaling.value === 'none')) {
    throw new UnsupportedModelError(`${path}: RoPE scaling (llama.rope.scaling.type ${String(scaling.value)}) is not supported`);
  }
  const byName = new Map(h.tensors.map((t) => [t.name, t]));
  if (byName.has('rope_freqs.weight')) throw new UnsupportedModelError(`${path}: RoPE frequency factors (rope_freqs.weight, Llama 3.1 scaling) are not supported in GGUF files yet`);
  const embd = byName.get('token_embd.weight');
  if (!embd) throw new FileFormatError(path, `has no tensor token_embd.weight (${h.tensors.length} tensors); a vocabulary-only file, or not a llama model`);

  const dim = meta.int('llama.embedding_length', undefined, CONFIG_LIMITS.dim);
  const nHeads = meta.int('llama.attention.head_count', undefined, CONFIG_LIMITS.nHeads);
  const vocabSize = embd.dims[1] ?? 0;
  if (embd.dims.length !== 2 || vocabSize < 1 || vocabSize > CONFIG_LIMITS.vocabSize) {
    throw new FileFormatError(path, `token_embd.weight has dims [${embd.dims.join(', ')}]; expected [dim, vocab] with a vocabulary of 1 to ${CONFIG_LIMITS.vocabSize}`);
  }
  const vocabKey = meta.int('llama.vocab_size', vocabSize, CONFIG_LIMITS.vocabSize);
  if (vocabKey !== vocabSize) throw new FileFormatError(path, `llama.vocab_size is ${vocabKey} but token_embd.weight has ${vocabSize} rows; the file is inconsistent`);
  const seqLen = opts.maxSeqLen ?? meta.int('llama.context_length', undefined, CONFIG_LIMITS.seqLen);
  const config = makeConfig(path, {
    dim,
    hiddenDim: meta.int('llama.feed_forward_length', undefined, CONFIG_LIMITS.hiddenDim),
    nLayers: meta.int('llama.block_count', undefined, CONFIG_LIMITS.nLayers),
    nHeads,
    nKvHeads: meta.int('llama.attention.head_count_kv', nHeads, CONFIG_LIMITS.nHeads),
    vocabSize,
    seqLen,
    sharedClassifier: !byName.has('output.weight'),
    normEps: meta.float('llama.attention.layer_norm_rms_epsilon', 1e-5),
    ropeTheta: meta.float('llama.rope.freq_base', 10000),
  });
  const ropeDims = meta.int('llama.rope.dimension_count', config.headDim);
  if (ropeDims !== config.headDim) throw new UnsupportedModelError(`${path}: llama.rope.dimension_count is ${ropeDims} but the head size is ${config.headDim}; partial rotary embeddings are not supported`);

  // Each weight is read once into its final place: plan the placement from the tensor sizes
  // (with opts.quantize the file's tensors are only read on the way to their quantized form).
  const placement = opts.quantize ? hostPlacement : (opts.placement ?? hostPlacement);
  const sizeOf = (name: string) => byName.get(name)?.byteSize ?? 0;
  const layerNames = ['attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_gate', 'ffn_down', 'ffn_up'];
  placement.plan(
    Array.from({ length: config.nLayers }, (_, l) => layerNames.reduce((n, t) => n + sizeOf(`blk.${l}.${t}.weight`), 0)),
    sizeOf(config.sharedClassifier ? 'token_embd.weight' : 'output.weight'),
    layerKvBytes(config),
  );

  const fd = fs.openSync(path, 'r');
  try {
    const read = (name: string, dims: number[], where: number | 'head' | 'host', matrix?: MatrixOf): { info: GgufTensorInfo; bytes: Uint8Array } => {
      const info = byName.get(name);
      if (!info) throw new FileFormatError(path, `missing tensor ${name}; a llama model with ${config.nLayers} blocks has it`);
      if (info.dims.length !== dims.length || info.dims.some((d, i) => d !== dims[i])) {
        throw new FileFormatError(path, `tensor ${name} has dims [${info.dims.join(', ')}], but the metadata implies [${dims.join(', ')}]; the file is inconsistent`);
      }
      return { info, bytes: readTensorBytes(fd, h, info, where === 'host' ? hostPlacement : placement, where, matrix) };
    };
    const matrix = (name: string, rows: number, cols: number, where: number | 'head' | 'host'): Matrix => {
      const m = readMatrix(name, rows, cols, where);
      // with opts.quantize each weight is quantized as soon as it is read: one tensor at a time
      return opts.quantize ? quantizeMatrix(m, opts.quantize) : m;
    };
    const readMatrix = (name: string, rows: number, cols: number, where: number | 'head' | 'host'): Matrix => {
      // a ggml matrix in the placement, told as its rows arrive (`placed`)
      let made: Matrix | undefined;
      const ggml: MatrixOf | undefined = placement.placed && where !== 'host' && !opts.quantize
        ? (info, bytes) => (isGgmlBlocks(info.type) ? (made = ggmlMatrix(info.type, bytes, rows, cols)) : undefined)
        : undefined;
      const { info, bytes } = read(name, [cols, rows], where, ggml);
      if (made) return made;
      if (info.type === GGML_TYPE.F32) return f32Matrix(new Float32Array(bytes.buffer, bytes.byteOffset, rows * cols), rows, cols);
      if (info.type === GGML_TYPE.F16 || info.type === GGML_TYPE.BF16) {
        return half16Matrix(info.type === GGML_TYPE.F16 ? 'f16' : 'bf16', new Uint16Array(bytes.buffer, bytes.byteOffset, rows * cols), rows, cols);
      }
      if (!canDequantize(info.type)) throw new UnsupportedModelError(`${path}: tensor ${name} has type ${info.typeName}, which llamats cannot compute with`);
      return ggmlMatrix(info.type, bytes, rows, cols);
    };
    const vector = (name: string): Float32Array => {
      const { info, bytes } = read(name, [config.dim], 'host');
      if (!canDequantize(info.type)) throw new UnsupportedModelError(`${path}: tensor ${name} has type ${info.typeName}, which llamats cannot read`);
      // f32 (as llama.cpp writes norms) straight from the bytes: dequantizeRow's first call would
      // compile its whole switch and build the f16 table, ~5 ms of a small model's load
      if (info.type === GGML_TYPE.F32) return new Float32Array(bytes.slice(0, 4 * config.dim).buffer);
      const out = new Float32Array(config.dim);
      dequantizeRow(info.type, bytes, out, config.dim);
      return out;
    };
    const c = config;
    const kv = kvDim(c);
    const layers: LayerWeights[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const p = `blk.${l}.`;
      layers.push({
        attnNorm: vector(`${p}attn_norm.weight`),
        wq: matrix(`${p}attn_q.weight`, c.dim, c.dim, l),
        wk: matrix(`${p}attn_k.weight`, kv, c.dim, l),
        wv: matrix(`${p}attn_v.weight`, kv, c.dim, l),
        wo: matrix(`${p}attn_output.weight`, c.dim, c.dim, l),
        ffnNorm: vector(`${p}ffn_norm.weight`),
        w1: matrix(`${p}ffn_gate.weight`, c.hiddenDim, c.dim, l),
        w2: matrix(`${p}ffn_down.weight`, c.dim, c.hiddenDim, l),
        w3: matrix(`${p}ffn_up.weight`, c.hiddenDim, c.dim, l),
      });
    }
    const tokenEmbedding = matrix('token_embd.weight', c.vocabSize, c.dim, c.sharedClassifier ? 'head' : 'host');
    const weights = {
      tokenEmbedding,
      layers,
      finalNorm: vector('output_norm.weight'),
      classifier: c.sharedClassifier ? tokenEmbedding : matrix('output.weight', c.vocabSize, c.dim, 'head'),
    };
    const typeName = byName.get('blk.0.attn_q.weight')?.typeName ?? embd.typeName;
    return { config, weights, source: { path, format: `GGUF v${h.version} (${typeName})` } };
  } finally {
    fs.closeSync(fd);
  }
}

/** The matrix a tensor's bytes (not yet read) will hold, or undefined (a tensor read as it is). */
type MatrixOf = (info: GgufTensorInfo, bytes: Uint8Array) => Matrix | undefined;

/** Whether tensors of this type become ggml matrices (block types llamats computes with). */
function isGgmlBlocks(type: number): boolean {
  return type !== GGML_TYPE.F32 && type !== GGML_TYPE.F16 && type !== GGML_TYPE.BF16 && canDequantize(type);
}

/**
 * One tensor's bytes, read with fs.readSync into its place; for a matrix (`matrix`) when the
 * placement wants to know (Placement.placed), about a megabyte of whole rows (a multiple of 8)
 * at a time, each chunk `placed` once it is read.
 */
function readTensorBytes(fd: number, h: GgufHeader, info: GgufTensorInfo, placement: Placement, where: number | 'head' | 'host', matrix?: MatrixOf): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = placement.alloc(info.byteSize, where);
  } catch {
    throw new OutOfMemoryError(`${h.path}: cannot allocate ${formatBytes(info.byteSize)} for tensor ${info.name}`, info.byteSize, 0);
  }
  const start = h.dataOffset + info.offset;
  const readInto = (into: Uint8Array, at: number, n: number, pos: number) => {
    for (let got = 0; got < n; ) {
      const k = fs.readSync(fd, into, at + got, n - got, pos + got);
      if (k === 0) throw new FileFormatError(h.path, `file shrank while reading tensor ${info.name}`);
      got += k;
    }
  };
  const m = matrix?.(info, bytes);
  if (!m || !placement.placed) {
    for (let got = 0; got < info.byteSize; got += 64 << 20) readInto(bytes, got, Math.min(64 << 20, info.byteSize - got), start + got);
    return bytes;
  }
  const rowBytes = info.byteSize / m.rows;
  const chunkRows = Math.max(1, Math.floor(2 ** 20 / rowBytes / 8)) * 8;
  for (let r0 = 0; r0 < m.rows; r0 += chunkRows) {
    const r1 = Math.min(m.rows, r0 + chunkRows);
    readInto(bytes, r0 * rowBytes, (r1 - r0) * rowBytes, start + r0 * rowBytes);
    placement.placed(m, r0, r1);
  }
  return bytes;
}

/** Typed access to metadata values, with messages naming the key and the file. */
class GgufMetadata {
  constructor(private readonly h: GgufHeader) {}
  get(key: string): GgufValue | undefined {
    return this.h.metadata.get(key);
  }
  private missing(key: string, what: string): never {
    throw new FileFormatError(this.h.path, `missing metadata ${key} (${what})`);
  }
  string(key: string): string {
    const v = this.get(key);
    if (!v) this.missing(key, 'a string');
    if (v.type !== 'string') throw new FileFormatError(this.h.path, `metadata ${key} is a ${v.type}; expected a string`);
    return v.value;
  }
  /** An integer of any integer type in [min, limit], or `dflt` when absent. */
  int(key: string, dflt?: number, limit = Number.MAX_SAFE_INTEGER, min = 1): number {
    const v = this.get(key);
    if (!v) return dflt ?? this.missing(key, 'a positive integer');
    const n = v.type === 'u64' || v.type === 'i64' ? Number(v.value) : typeof v.value === 'number' && v.type !== 'f32' && v.type !== 'f64' ? v.value : NaN;
    if (!Number.isInteger(n) || n < min || n > limit) {
      throw new FileFormatError(this.h.path, `metadata ${key} is ${v.type} ${String(v.value)}; expected an integer in [${min}, ${limit}]`);
    }
    return n;
  }
  float(key: string, dflt: number): number {
    const v = this.get(key);
    if (!v) return dflt;
    if ((v.type !== 'f32' && v.type !== 'f64') || !(v.value > 0) || !Number.isFinite(v.value)) {
      throw new FileFormatError(this.h.path, `metadata ${key} is ${v.type} ${String(v.value)}; expected a positive f32`);
    }
    return v.value;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

export interface GgufTensor {
  readonly name: string;
  /** Fastest-varying first. */
  readonly dims: readonly number[];
  /** ggml type id. */
  readonly type: number;
  /** The bytes, or a function that makes them when they are written (to hold one tensor at a time). */
  readonly data: Uint8Array | (() => Uint8Array);
}

/**
 * Write a GGUF version 3 file. `general.alignment` in the metadata sets the alignment (default
 * 32). The file appears complete or not at all: it is written to a temporary name and renamed.
 */
export function writeGguf(path: string, file: { metadata: Iterable<[string, GgufValue]>; tensors: readonly GgufTensor[] }): void {
  const out = new ByteSink();
  const metadata = new Map(file.metadata);
  const av = metadata.get('general.alignment');
  const alignment = av === undefined ? GGUF_DEFAULT_ALIGNMENT : av.type === 'u32' && av.value > 0 && (av.value & (av.value - 1)) === 0 ? av.value : 0;
  if (!alignment) throw new InvalidArgumentError(`general.alignment must be a u32 power of two`, 'metadata');
  out.raw(new TextEncoder().encode(GGUF_MAGIC));
  out.u32(3);
  out.u64(file.tensors.length);
  out.u64(metadata.size);
  for (const [key, v] of metadata) {
    out.string(key);
    out.u32(typeId(v.type));
    out.value(v);
  }
  let offset = 0;
  const sizes: number[] = [];
  const names = new Set<string>();
  for (const t of file.tensors) {
    const info = GGML_TYPES.get(t.type);
    if (!info) throw new InvalidArgumentError(`tensor ${t.name}: unknown ggml type ${t.type}`, 'type');
    if (names.has(t.name)) throw new InvalidArgumentError(`tensor ${t.name} is given twice`, 'tensors');
    names.add(t.name);
    if (t.dims.length < 1 || t.dims.length > 4 || t.dims.some((d) => !Number.isInteger(d) || d < 1) || t.dims[0]! % info.blockSize !== 0) {
      throw new InvalidArgumentError(`tensor ${t.name}: dims [${t.dims.join(', ')}] must be 1 to 4 positive integers, the first a multiple of ${info.blockSize} for ${info.name}`, 'dims');
    }
    out.string(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(t.type);
    out.u64(offset);
    sizes.push((t.dims.reduce((a, b) => a * b, 1) / info.blockSize) * info.typeSize);
    offset += alignUp(sizes.at(-1)!, alignment);
  }
  out.pad(alignment);

  const tmp = `${path}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    const put = (u8: Uint8Array) => {
      for (let o = 0; o < u8.byteLength; ) o += fs.writeSync(fd, u8, o, Math.min(u8.byteLength - o, 1 << 26));
    };
    put(out.concat());
    file.tensors.forEach((t, i) => {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (data.byteLength !== sizes[i]) throw new InvalidArgumentError(`tensor ${t.name}: ${data.byteLength} bytes given, ${sizes[i]} expected for ${GGML_TYPES.get(t.type)!.name} [${t.dims.join(', ')}]`, 'data');
      put(data);
      put(new Uint8Array(alignUp(data.byteLength, alignment) - data.byteLength));
    });
    fs.closeSync(fd);
    fs.renameSync(tmp, path);
  } catch (e) {
    try { fs.closeSync(fd); } catch { /* already closed */ }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** Little-endian encoding of the header, in pieces. */
class ByteSink {
  private parts: Uint8Array[] = [];
  private length = 0;
  raw(b: Uint8Array): void {
    this.parts.push(b);
    this.length += b.byteLength;
  }
  private fixed(n: number, set: (dv: DataView) => void): void {
    const b = new Uint8Array(n);
    set(new DataView(b.buffer));
    this.raw(b);
  }
  u32(v: number): void {
    this.fixed(4, (dv) => dv.setUint32(0, v, true));
  }
  u64(v: number | bigint): void {
    this.fixed(8, (dv) => dv.setBigUint64(0, BigInt(v), true));
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.byteLength);
    this.raw(b);
  }
  value(v: GgufValue): void {
    switch (v.type) {
      case 'string': return this.string(v.value);
      case 'bool': return this.raw(Uint8Array.of(v.value ? 1 : 0));
      case 'array': {
        const it = VALUE_TYPES[typeId(v.itemType)]!;
        this.u32(typeId(v.itemType));
        this.u64(v.value.length);
        if (it.array) {
          if (!(v.value instanceof it.array)) throw new InvalidArgumentError(`a GGUF array of ${v.itemType} must be a ${it.array.name}`, 'metadata');
          const a = v.value as Exclude<GgufArray['value'], readonly unknown[]>;
          return this.raw(new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)));
        }
        if (v.itemType === 'bool') return this.raw(Uint8Array.from(v.value as readonly boolean[], (b) => (b ? 1 : 0)));
        if (v.itemType === 'string') return (v.value as readonly string[]).forEach((s) => this.string(s));
        return (v.value as readonly GgufArray[]).forEach((a) => this.value(a));
      }
      default: {
        const it = VALUE_TYPES[typeId(v.type)]!;
        const a = new it.array!(1);
        a[0] = v.value as never;
        return this.raw(new Uint8Array(a.buffer));
      }
    }
  }
  pad(alignment: number): void {
    this.raw(new Uint8Array(alignUp(this.length, alignment) - this.length));
  }
  concat(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing a model

/** Resolve a ggml type given by id or name ("Q4_K"). */
export function ggmlTypeId(type: number | string): number {
  const id = typeof type === 'number' ? type : GGML_TYPE[type.toUpperCase() as keyof typeof GGML_TYPE];
  if (id === undefined || !canQuantize(id) || id === GGML_TYPE.Q8_K) {
    throw new InvalidArgumentError(`cannot write weights as ggml type ${type}; use F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K or Q6_K`, 'type');
  }
  return id;
}

/**
 * The type a matrix with rows of `cols` weights gets when `type` is asked for, as llama-quantize
 * chooses: K-quants whose 256-weight blocks do not fit a row fall back to a 32-weight type
 * (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0; Q2_K/Q3_K → Q4_0, where llama.cpp uses IQ4_NL, which
 * llamats lacks), and anything that still does not fit becomes F16.
 */
export function ggufTypeForRow(type: number, cols: number): number {
  const fits = (t: number) => cols % GGML_TYPES.get(t)!.blockSize === 0;
  if (fits(type)) return type;
  const fallback = { [GGML_TYPE.Q2_K]: GGML_TYPE.Q4_0, [GGML_TYPE.Q3_K]: GGML_TYPE.Q4_0, [GGML_TYPE.Q4_K]: GGML_TYPE.Q5_0, [GGML_TYPE.Q5_K]: GGML_TYPE.Q5_1, [GGML_TYPE.Q6_K]: GGML_TYPE.Q8_0 }[type];
  return fallback !== undefined && fits(fallback) ? fallback : GGML_TYPE.F16;
}

/** A matrix as a GGUF tensor of `type` (kept byte for byte when it already has that type). */
function matrixTensor(name: string, m: Matrix, type: number): GgufTensor {
  const t = ggufTypeForRow(type, m.cols);
  const dims = [m.cols, m.rows];
  // a Q4_0 or Q8_0 matrix the wasm backend regrouped: put back in ggml's layout when it is written
  if (m.type === 'ggml' && m.ggmlType === t) return { name, dims, type: t, data: isRegrouped(m) ? () => ggmlData(m) : m.data };
  if (m.type === 'f32' && t === GGML_TYPE.F32) return { name, dims, type: t, data: new Uint8Array(m.data.buffer, m.data.byteOffset, m.data.byteLength) };
  const data = () => {
    const rowBytes = ggmlRowBytes(t, m.cols);
    const out = new Uint8Array(m.rows * rowBytes);
    const row = new Float32Array(m.cols);
    for (let r = 0; r < m.rows; r++) {
      readRow(m, r, row);
      out.set(quantizeRow(t, row, m.cols), r * rowBytes);
    }
    return out;
  };
  return { name, dims, type: t, data };
}

/**
 * The tensors of a llama model as llama.cpp names and lays them out, 2-D weights in `type`
 * (with llama-quantize's fallbacks, see ggufTypeForRow), norms F32. Data is made lazily.
 */
export function modelToGgufTensors(model: Pick<Model, 'config' | 'weights'>, type: number | string): GgufTensor[] {
  const id = ggmlTypeId(type);
  const w = model.weights;
  const c = model.config;
  const norm = (name: string, v: Float32Array): GgufTensor => ({ name, dims: [v.length], type: GGML_TYPE.F32, data: new Uint8Array(v.slice().buffer) });
  const tensors = [matrixTensor('token_embd.weight', w.tokenEmbedding, id), norm('output_norm.weight', w.finalNorm)];
  if (!c.sharedClassifier) tensors.push(matrixTensor('output.weight', w.classifier, id));
  w.layers.forEach((l, i) => {
    const p = `blk.${i}.`;
    tensors.push(
      matrixTensor(`${p}attn_q.weight`, l.wq, id), matrixTensor(`${p}attn_k.weight`, l.wk, id),
      matrixTensor(`${p}attn_v.weight`, l.wv, id), matrixTensor(`${p}attn_output.weight`, l.wo, id),
      norm(`${p}attn_norm.weight`, l.attnNorm),
      matrixTensor(`${p}ffn_gate.weight`, l.w1, id), matrixTensor(`${p}ffn_down.weight`, l.w2, id),
      matrixTensor(`${p}ffn_up.weight`, l.w3, id), norm(`${p}ffn_norm.weight`, l.ffnNorm),
    );
  });
  return tensors;
}

/** llama.cpp's llama_ftype for a file whose weights are `type` (K-quants: the _M mixes' ids). */
const FILE_TYPE: Record<number, number> = { 0: 0, 1: 1, 2: 2, 3: 3, 8: 7, 6: 8, 7: 9, 10: 10, 11: 12, 12: 15, 13: 17, 14: 18, 30: 32 };

/** The `general.*` and `llama.*` metadata of a model whose weights are `type`. */
export function llamaGgufMetadata(config: ModelConfig, type: number | string): Map<string, GgufValue> {
  const id = ggmlTypeId(type);
  if (config.ropeScaling) throw new UnsupportedModelError('writing Llama 3.1 RoPE scaling (rope_freqs) to GGUF is not supported yet');
  const u32 = (value: number): GgufValue => ({ type: 'u32', value });
  const f32 = (value: number): GgufValue => ({ type: 'f32', value: Math.fround(value) });
  const m = new Map<string, GgufValue>([
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.name', { type: 'string', value: 'llama' }],
    ['general.file_type', u32(FILE_TYPE[id]!)],
  ]);
  if (id !== GGML_TYPE.F32 && id !== GGML_TYPE.F16 && id !== GGML_TYPE.BF16) m.set('general.quantization_version', u32(2));
  m.set('llama.vocab_size', u32(config.vocabSize));
  m.set('llama.context_length', u32(config.seqLen));
  m.set('llama.embedding_length', u32(config.dim));
  m.set('llama.feed_forward_length', u32(config.hiddenDim));
  m.set('llama.block_count', u32(config.nLayers));
  m.set('llama.attention.head_count', u32(config.nHeads));
  m.set('llama.attention.head_count_kv', u32(config.nKvHeads));
  m.set('llama.rope.dimension_count', u32(config.headDim));
  m.set('llama.rope.freq_base', f32(config.ropeTheta));
  m.set('llama.attention.layer_norm_rms_epsilon', f32(config.normEps));
  return m;
}

export interface WriteGgufModelOptions {
  /** Weight type by id or name ("F32", "Q8_0", "Q4_K", …). */
  readonly type: number | string;
  /**
   * More metadata, written after (and overriding) the model's keys: the hook for the tokenizer
   * (`tokenizer.ggml.*`), which llama.cpp needs to run the file.
   */
  readonly extraMetadata?: Iterable<[string, GgufValue]>;
}

/** Write `model` as a GGUF file llama.cpp can load (given the tokenizer in `extraMetadata`). */
export function writeGgufModel(path: string, model: Pick<Model, 'config' | 'weights'>, opts: WriteGgufModelOptions): void {
  const metadata = llamaGgufMetadata(model.config, opts.type);
  for (const [k, v] of opts.extraMetadata ?? []) metadata.set(k, v);
  writeGguf(path, { metadata, tensors: modelToGgufTensors(model, opts.type) });
}
