/**
 * SentencePiece `tokenizer.model` files (LLaMA / Llama 2 and any other SentencePiece model),
 * encoding and decoding exactly as SentencePiece 0.1.97 (`sp.encode(text)` / `sp.decode(ids)`).
 *
 * ## File format: a protobuf `ModelProto` (sentencepiece_model.proto, proto2)
 * A protobuf message is a sequence of fields. Each starts with a varint key = field << 3 | wire:
 *   varint  : 7 bits per byte, least significant group first, high bit = "more bytes"; at most
 *             10 bytes. int32 values are sign-extended to 64 bits, so -1 takes 10 bytes.
 *   wire 0  : a varint (int32, bool, enum)        wire 1: 8 bytes (fixed64/double; skipped)
 *   wire 2  : a varint length, then that many bytes (string, bytes, an embedded message)
 *   wire 5  : 4 bytes little-endian (float)       wires 3, 4 (groups), 6, 7: not used here
 * Fields may come in any order and may repeat (then the last wins; repeated fields append).
 * Fields we do not know are skipped by their wire type. The fields read here:
 *   ModelProto      1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
 *                   5 denormalizer_spec (a NormalizerSpec; 4 self_test_data is skipped)
 *   SentencePiece   1 piece (string)  2 score (float)  3 type (enum, default NORMAL):
 *                   NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6
 *   TrainerSpec     3 model_type (UNIGRAM=1 default, BPE=2, WORD=3, CHAR=4)
 *                   24 treat_whitespace_as_suffix  35 byte_fallback  44 unk_surface (" ⁇ ")
 *                   45 unk_piece "<unk>"  46 bos_piece "<s>"  47 eos_piece "</s>"  48 pad_piece "<pad>"
 *   NormalizerSpec  1 name  2 precompiled_charsmap (bytes)  3 add_dummy_prefix (default true)
 *                   4 remove_extra_whitespaces (default true)  5 escape_whitespaces (default true)
 * The token id of a piece is its index in `pieces`. Like SentencePiece, bos/eos/pad/unk ids are
 * looked up from the trainer_spec's piece names (bos_id etc. only record what training used).
 *
 * ## Encoding (SentencePieceProcessor::Encode)
 * 1. Normalize (normalizer.cc): the precompiled_charsmap, if any, replaces the longest matching
 *    prefix (a Darts double-array trie over UTF-8 bytes, see CharsMap); user-defined symbols are
 *    copied unchanged; remove_extra_whitespaces drops leading, trailing and repeated spaces;
 *    add_dummy_prefix puts one "▁" in front of non-empty text; every " " becomes "▁".
 *    So nmt_nfkc and custom rules are implemented, not refused.
 * 2. Segment with the model:
 *    BPE (bpe_model.cc): symbols start as single characters (a user-defined symbol is one symbol
 *      that never merges); repeatedly the adjacent pair whose concatenation is a piece of type
 *      NORMAL, USER_DEFINED or UNUSED with the highest score merges, leftmost first on ties (a
 *      heap + linked list). A final symbol that is an UNUSED piece is split back into the two
 *      symbols it was last made from.
 *    Unigram (unigram_model.cc, the "optimized" Viterbi): the best-scoring path through all
 *      pieces that match at each character (UNUSED ones skipped, user-defined ones scored
 *      bytes × max_score − 0.1), with an unknown node (min_score − 10) for a character that no
 *      single-character piece covers. As in SentencePiece, a path's score is summed in double
 *      and kept as float32; that rounding decides between paths that tie.
 *    WORD and CHAR models, and denormalization rules, throw UnsupportedModelError.
 * 3. Map to ids: a symbol's id is its piece's (CONTROL/UNKNOWN/BYTE pieces are looked up first,
 *    as SentencePiece does), else unknown. With byte_fallback an unknown symbol becomes its
 *    UTF-8 bytes as "<0xXX>" pieces; without it, a run of unknown symbols becomes one unk id.
 *    (A symbol whose text is a CONTROL piece makes SentencePiece fail; here too.)
 *
 * Loading rejects what SentencePiece rejects (empty or repeated pieces, not exactly one UNKNOWN
 * piece, BYTE pieces without byte_fallback or not all 256 with it) and bad piece types.
 * All of this was checked against SentencePiece 0.1.97 itself on thousands of random BPE and
 * Unigram models and texts, and on trained nmt_nfkc, nmt_nfkc_cf and custom-rule models.
 *
 * ## Decoding (SentencePieceProcessor::Decode)
 * CONTROL pieces produce nothing, UNKNOWN produces unk_surface (" ⁇ "), runs of BYTE pieces are
 * assembled into UTF-8 where every byte that does not start a valid character becomes U+FFFD,
 * and "▁" becomes " ". While nothing has been produced yet (and add_dummy_prefix or
 * remove_extra_whitespaces is set), the first piece's leading "▁" is dropped — with
 * remove_extra_whitespaces, every leading whitespace piece's is.
 */
import { FileFormatError, InvalidArgumentError, UnsupportedModelError } from '../errors.js';
import { readFileBytes } from '../io/file.js';

// Piece types (ModelProto.SentencePiece.Type).
const NORMAL = 1;
const UNKNOWN = 2;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;
const BYTE = 6;
const MODEL_TYPES: Record<number, string> = { 1: 'Unigram', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };

const SPACE = '\u2581'; // "▁", SentencePiece's visible space
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // keep a leading U+FEFF: it is a piece

// ---------------------------------------------------------------------------------------------
// Protobuf wire format
// ---------------------------------------------------------------------------------------------

/** Reads one protobuf message (bytes [start, end) of the file); every read is bounds-checked. */
class ProtoReader {
  pos: number;
  constructor(
    private readonly bytes: Uint8Array,
    private readonly path: string,
    private readonly what: string,
    start = 0,
    private readonly end = bytes.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  fail(message: string): never {
    throw new FileFormatError(this.path, `${message} at byte ${this.pos} in ${this.what}; expected a SentencePiece model (tokenizer.model) — is the file truncated or of another kind?`);
  }

  /** A varint as [value (exact below 2^53), its low 32 bits as a signed int32]. */
  private varint(): [number, number] {
    let value = 0;
    let low = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.bytes[this.pos++]!;
      if (i < 5) low |= (b & 0x7f) << (7 * i); // bits past 32 fall off, as int32 wants
      value += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) return [value, low];
    }
    this.fail('varint longer than 10 bytes');
  }

  /** The next field's number and wire type. */
  key(): { field: number; wire: number } {
    const [k] = this.varint();
    const field = Math.floor(k / 8);
    if (field === 0) this.fail(`field number 0 (key 0x${k.toString(16)})`);
    return { field, wire: k % 8 };
  }

  /** Throw unless a field has the wire type its declared type needs. */
  private expect(wire: number, want: number, what: string): void {
    if (wire !== want) this.fail(`${what} has wire type ${wire}; expected ${want}`);
  }

  int32(wire: number, what: string): number {
    this.expect(wire, 0, what);
    return this.varint()[1];
  }

  bool(wire: number, what: string): boolean {
    this.expect(wire, 0, what);
    return this.varint()[0] !== 0;
  }

  float(wire: number, what: string): number {
    this.expect(wire, 5, what);
    if (this.end - this.pos < 4) this.fail(`truncated ${what}`);
    const v = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field's bytes (a view, no copy). */
  bytesField(wire: number, what: string): Uint8Array {
    this.expect(wire, 2, what);
    const [n] = this.varint();
    if (n > this.end - this.pos) this.fail(`${what} has length ${n}, but only ${this.end - this.pos} bytes are left`);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  string(wire: number, what: string): string {
    const b = this.bytesField(wire, what);
    try {
      return utf8Strict.decode(b);
    } catch {
      this.fail(`${what} is not valid UTF-8`);
    }
  }

  /** A reader over an embedded message. */
  message(wire: number, what: string): ProtoReader {
    const b = this.bytesField(wire, what);
    const start = b.byteOffset - this.bytes.byteOffset;
    return new ProtoReader(this.bytes, this.path, what, start, start + b.length);
  }

  /** Skip a field we do not read, by its wire type. */
  skip(wire: number, field: number): void {
    if (wire === 0) this.varint();
    else if (wire === 2) this.bytesField(2, `field ${field}`);
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (this.end - this.pos < n) this.fail(`truncated field ${field}`);
      this.pos += n;
    } else this.fail(`field ${field} has wire type ${wire}; expected 0, 1, 2 or 5`);
  }
}

interface Piece {
  piece: string;
  score: number;
  type: number;
}

interface TrainerSpec {
  modelType: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkSurface: string;
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
  padPiece: string;
}

interface NormalizerSpec {
  name: string;
  charsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

interface ModelProto {
  pieces: Piece[];
  trainer: TrainerSpec;
  normalizer: NormalizerSpec;
  denormalizer: NormalizerSpec | undefined;
}

function readPiece(r: ProtoReader, id: number): Piece {
  const p: Piece = { piece: '', score: 0, type: NORMAL };
  while (!r.done) {
    const { field, wire } = r.key();
    if (field === 1) p.piece = r.string(wire, `piece ${id}'s text`);
    else if (field === 2) p.score = r.float(wire, `piece ${id}'s score`);
    else if (field === 3) p.type = r.int32(wire, `piece ${id}'s type`);
    else r.skip(wire, field);
  }
  return p;
}

/** Fields of a TrainerSpec message, read into `t` (a repeated message merges into the first). */
function readTrainerSpec(r: ProtoReader, t: TrainerSpec): void {
  while (!r.done) {
    const { field, wire } = r.key();
    const what = `trainer_spec field ${field}`;
    if (field === 3) t.modelType = r.int32(wire, what);
    else if (field === 24) t.treatWhitespaceAsSuffix = r.bool(wire, what);
    else if (field === 35) t.byteFallback = r.bool(wire, what);
    else if (field === 44) t.unkSurface = r.string(wire, what);
    else if (field === 45) t.unkPiece = r.string(wire, what);
    else if (field === 46) t.bosPiece = r.string(wire, what);
    else if (field === 47) t.eosPiece = r.string(wire, what);
    else if (field === 48) t.padPiece = r.string(wire, what);
    else r.skip(wire, field);
  }
}

function readNormalizerSpec(r: ProtoReader, n: NormalizerSpec): void {
  while (!r.done) {
    const { field, wire } = r.key();
    const what = `normalizer_spec field ${field}`;
    if (field === 1) n.name = r.string(wire, what);
    else if (field === 2) n.charsmap = r.bytesField(wire, what);
    else if (field === 3) n.addDummyPrefix = r.bool(wire, what);
    else if (field === 4) n.removeExtraWhitespaces = r.bool(wire, what);
    else if (field === 5) n.escapeWhitespaces = r.bool(wire, what);
    else r.skip(wire, field);
  }
}

/** A NormalizerSpec with the proto defaults. */
function defaultNormalizer(): NormalizerSpec {
  return { name: '', charsmap: new Uint8Array(0), addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };
}

function readModelProto(bytes: Uint8Array, path: string): ModelProto {
  const m: ModelProto = {
    pieces: [],
    trainer: { modelType: 1, byteFallback: false, treatWhitespaceAsSuffix: false, unkSurface: ' \u2047 ', unkPiece: '', bosPiece: '', eosPiece: '', padPiece: '' },
    normalizer: defaultNormalizer(),
    denormalizer: undefined,
  };
  const r = new ProtoReader(bytes, path, 'ModelProto');
  while (!r.done) {
    const { field, wire } = r.key();
    const id = m.pieces.length;
    if (field === 1) m.pieces.push(readPiece(r.message(wire, `piece ${id}`), id));
    else if (field === 2) readTrainerSpec(r.message(wire, 'trainer_spec'), m.trainer);
    else if (field === 3) readNormalizerSpec(r.message(wire, 'normalizer_spec'), m.normalizer);
    else if (field === 5) readNormalizerSpec(r.message(wire, 'denormalizer_spec'), (m.denormalizer ??= defaultNormalizer()));
    else r.skip(wire, field);
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Small parts: a prefix trie, the precompiled charsmap, a heap, UTF-8 helpers
// ---------------------------------------------------------------------------------------------

/** Strings → ids, walked one UTF-16 code unit at a time to find every piece that starts at a position. */
class PrefixTrie {
  private readonly root: TrieNode = { next: new Map(), id: -1 };

  add(s: string, id: number): void {
    let node = this.root;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      let child = node.next.get(c);
      if (!child) node.next.set(c, (child = { next: new Map(), id: -1 }));
      node = child;
    }
    node.id = id;
  }

  /** Calls `found(end, id)` for every stored string equal to text[pos, end), shortest first. */
  prefixes(text: string, pos: number, found: (end: number, id: number) => void): void {
    let node: TrieNode | undefined = this.root;
    for (let i = pos; i < text.length; i++) {
      node = node.next.get(text.charCodeAt(i));
      if (!node) return;
      if (node.id >= 0) found(i + 1, node.id);
    }
  }

  /** Length of the longest stored string at `pos`, or 0. */
  longest(text: string, pos: number): number {
    let best = 0;
    this.prefixes(text, pos, (end) => (best = end - pos));
    return best;
  }
}
interface TrieNode {
  next: Map<number, TrieNode>;
  id: number;
}

/**
 * A NormalizerSpec's precompiled_charsmap: uint32 LE trie size, a Darts-clone double array of
 * that many bytes (uint32 LE units), then NUL-terminated replacement strings. A unit holds
 * has_leaf (bit 8), value (bits 0-30, on leaf units), label (bits 0-7 and 31) and an offset
 * (bits 10-31, shifted left by 8 when bit 9 is set). Walking byte b from node p goes to
 * p ^ offset(p) ^ b, and is valid when that unit's label is b.
 */
class CharsMap {
  private readonly units: Uint32Array;
  private readonly strings: Uint8Array;
  private readonly cache = new Map<number, string>();

  constructor(blob: Uint8Array, path: string) {
    const fail: (msg: string) => never = (msg) => {
      throw new FileFormatError(path, `normalizer precompiled_charsmap: ${msg}`);
    };
    if (blob.length <= 4) fail(`${blob.length} bytes; expected a 4-byte trie size and a trie`);
    const size = new DataView(blob.buffer, blob.byteOffset, 4).getUint32(0, true);
    if (size > blob.length - 4) fail(`trie size ${size} exceeds the ${blob.length - 4} bytes that follow`);
    const trie = blob.slice(4, 4 + size - (size % 4)); // copied: aligned for Uint32Array
    this.units = new Uint32Array(trie.buffer, 0, trie.length / 4);
    this.strings = blob.subarray(4 + size);
  }

  /** The longest rule matching bytes[pos..]: [its length in bytes, its replacement], or undefined. */
  longest(bytes: Uint8Array, pos: number): [number, string] | undefined {
    const u = this.units;
    const offset = (unit: number) => (unit >>> 10) << ((unit & (1 << 9)) >>> 6);
    if (u.length === 0) return undefined;
    let node = offset(u[0]!);
    let best: [number, string] | undefined;
    for (let i = pos; i < bytes.length; i++) {
      node ^= bytes[i]!;
      const unit = u[node];
      // a corrupt trie cannot crash us: leaving the array ends the search
      if (unit === undefined || (unit & ((1 << 31) | 0xff)) >>> 0 !== bytes[i]) break;
      node ^= offset(unit);
      if ((unit >>> 8) & 1) {
        const leaf = u[node];
        if (leaf === undefined) break;
        best = [i + 1 - pos, this.replacement(leaf & 0x7fffffff)];
      }
    }
    return best;
  }

  private replacement(at: number): string {
    let s = this.cache.get(at);
    if (s === undefined) {
      let end = Math.min(at, this.strings.length);
      while (end < this.strings.length && this.strings[end] !== 0) end++;
      s = new TextDecoder('utf-8', { ignoreBOM: true }).decode(this.strings.subarray(Math.min(at, end), end));
      this.cache.set(at, s);
    }
    return s;
  }
}

/** A binary heap; `before(a, b)` is true when `a` must come out first. */
class Heap<T> {
  private readonly items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  push(x: T): void {
    const h = this.items;
    let i = h.length;
    h.push(x);
    // move parents down until x's place is found
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(x, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = x;
  }

  pop(): T {
    const h = this.items;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length === 0) return top;
    // move the better child up until the last item's place is found
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= h.length) break;
      if (c + 1 < h.length && this.before(h[c + 1]!, h[c]!)) c++;
      if (!this.before(h[c]!, last)) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }
}

/** UTF-16 length of the character at `i` (2 for a surrogate pair). */
function charLength(s: string, i: number): number {
  const c = s.charCodeAt(i);
  return c >= 0xd800 && c < 0xdc00 && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
}

/** UTF-8 length of s[from, to). */
function utf8Length(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : (c & 0xfc00) === 0xd800 || (c & 0xfc00) === 0xdc00 ? 2 : 3;
  }
  return n;
}

/**
 * Bytes to text as SentencePiece does (util.cc DecodeUTF8): strict UTF-8 (no overlongs, no
 * surrogates, nothing above U+10FFFF), and each byte that does not start a valid character
 * becomes one U+FFFD. (TextDecoder differs: it replaces a truncated sequence by one U+FFFD.)
 */
function decodeBytes(b: readonly number[]): string {
  let out = '';
  for (let i = 0; i < b.length; ) {
    const [cp, n] = decodeChar(b, i);
    out += cp < 0 ? '\ufffd' : String.fromCodePoint(cp);
    i += cp < 0 ? 1 : n;
  }
  return out;
}

/** The code point of the UTF-8 character at b[i] and its length, or [-1, 1] when it is invalid. */
function decodeChar(b: readonly number[], i: number): [number, number] {
  const c = b[i]!;
  const n = c < 0x80 ? 1 : (c & 0xe0) === 0xc0 ? 2 : (c & 0xf0) === 0xe0 ? 3 : (c & 0xf8) === 0xf0 ? 4 : 0;
  if (n === 0 || i + n > b.length) return [-1, 1];
  let cp = n === 1 ? c : c & (0x7f >> n);
  for (let k = 1; k < n; k++) {
    if ((b[i + k]! & 0xc0) !== 0x80) return [-1, 1];
    cp = (cp << 6) | (b[i + k]! & 0x3f);
  }
  const min = [0, 0, 0x80, 0x800, 0x10000][n]!; // shorter encodings (overlongs) are invalid
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return [-1, 1];
  return [cp, n];
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

export class SentencePieceTokenizer {
  readonly vocabSize: number;
  /** sp.bos_id() etc.: the id of the trainer_spec's piece name if it has the right type, else -1. */
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  readonly padId: number;
  readonly modelType: 'bpe' | 'unigram';
  /** Per id: the piece, its score and its type (1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE). */
  readonly pieces: readonly string[];
  readonly scores: Float32Array;
  readonly types: Uint8Array;

  private readonly path: string;
  private readonly trainer: TrainerSpec;
  private readonly normalizer: NormalizerSpec;
  private readonly charsmap: CharsMap | undefined;
  /** NORMAL, USER_DEFINED and UNUSED pieces (the ones segmentation uses): SentencePiece's pieces_. */
  private readonly normalIds = new Map<string, number>();
  /** CONTROL, UNKNOWN and BYTE pieces: SentencePiece's reserved_id_map_, looked up first. */
  private readonly reservedIds = new Map<string, number>();
  /** The UNKNOWN piece: what segmentation gives a symbol that is no piece. */
  private readonly unknownId: number;
  /** Id of "<0xXX>" for each byte (byte fallback), and the byte of each BYTE piece (else -1). */
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteOf: Int16Array;
  private readonly userDefined: PrefixTrie | undefined;
  /** Longest piece in normalIds, in UTF-16 units: longer pairs need no lookup. */
  private readonly maxPieceLength: number = 0;
  /** Unigram: every segmentation piece, and the score range of NORMAL pieces. */
  private readonly trie: PrefixTrie | undefined;
  private readonly minScore: number = 3.4028234663852886e38; // FLT_MAX, as unigram_model.cc starts
  private readonly maxScore: number = 1.1754943508222875e-38; // FLT_MIN

  /** Read a tokenizer.model file. */
  static load(path: string): SentencePieceTokenizer {
    return SentencePieceTokenizer.parse(readFileBytes(path), path);
  }

  /** Parse a ModelProto image; `path` names it in errors. */
  static parse(bytes: Uint8Array, path = '<memory>'): SentencePieceTokenizer {
    if (bytes.length === 0) throw new FileFormatError(path, 'the file is empty; expected a SentencePiece model (tokenizer.model)');
    return new SentencePieceTokenizer(readModelProto(bytes, path), path);
  }

  /**
   * A BPE model from its pieces alone (a GGUF `llama` vocabulary): byte fallback when it has
   * BYTE pieces, no precompiled normalization, spaces kept as they are (llama.cpp's SPM
   * tokenizer does not collapse them), a dummy prefix unless `addDummyPrefix` is false.
   */
  static fromPieces(
    pieces: ReadonlyArray<{ piece: string; score: number; type: number }>,
    opts: { addDummyPrefix?: boolean; unkPiece?: string; bosPiece?: string; eosPiece?: string; padPiece?: string } = {},
    path = '<memory>',
  ): SentencePieceTokenizer {
    const normalizer = { ...defaultNormalizer(), name: 'identity', addDummyPrefix: opts.addDummyPrefix ?? true, removeExtraWhitespaces: false };
    const trainer: TrainerSpec = {
      modelType: 2,
      byteFallback: pieces.some((p) => p.type === BYTE),
      treatWhitespaceAsSuffix: false,
      unkSurface: ' \u2047 ',
      unkPiece: opts.unkPiece ?? '',
      bosPiece: opts.bosPiece ?? '',
      eosPiece: opts.eosPiece ?? '',
      padPiece: opts.padPiece ?? '',
    };
    return new SentencePieceTokenizer({ pieces: pieces.map((p) => ({ ...p })), trainer, normalizer, denormalizer: undefined }, path);
  }

  private constructor(m: ModelProto, path: string) {
    const bad: (msg: string) => never = (msg) => {
      throw new FileFormatError(path, `${msg}; expected a valid SentencePiece model (tokenizer.model)`);
    };
    this.path = path;
    this.trainer = m.trainer;
    this.normalizer = m.normalizer;
    if (m.pieces.length === 0) bad('the model has no pieces');
    const kind = MODEL_TYPES[m.trainer.modelType];
    if (kind === undefined) bad(`trainer_spec.model_type is ${m.trainer.modelType}; expected 1 (Unigram), 2 (BPE), 3 (WORD) or 4 (CHAR)`);
    if (kind !== 'BPE' && kind !== 'Unigram') throw new UnsupportedModelError(`${path}: SentencePiece ${kind} models are not supported yet; BPE (LLaMA) and Unigram models are`);
    if (m.denormalizer && m.denormalizer.charsmap.length > 0) throw new UnsupportedModelError(`${path}: SentencePiece models with denormalization rules are not supported yet`);
    this.modelType = kind === 'BPE' ? 'bpe' : 'unigram';
    this.charsmap = m.normalizer.charsmap.length > 0 ? new CharsMap(m.normalizer.charsmap, path) : undefined;

    // The checks of ModelInterface::InitializePieces, with the same maps.
    const n = m.pieces.length;
    this.vocabSize = n;
    this.pieces = m.pieces.map((p) => p.piece);
    this.scores = Float32Array.from(m.pieces, (p) => p.score);
    this.types = Uint8Array.from(m.pieces, (p) => p.type);
    this.byteOf = new Int16Array(n).fill(-1);
    let unknownId = -1;
    let userDefined: PrefixTrie | undefined;
    for (let id = 0; id < n; id++) {
      const { piece, type } = m.pieces[id]!;
      if (piece === '') bad(`piece ${id} is empty`);
      if (!(type >= NORMAL && type <= BYTE)) bad(`piece ${id} (${JSON.stringify(piece)}) has type ${type}; expected 1..6 (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE)`);
      const map = type === NORMAL || type === USER_DEFINED || type === UNUSED ? this.normalIds : this.reservedIds;
      const dup = map.get(piece);
      if (dup !== undefined) bad(`piece ${id} (${JSON.stringify(piece)}) repeats piece ${dup}`);
      map.set(piece, id);
      if (map === this.normalIds) this.maxPieceLength = Math.max(this.maxPieceLength, piece.length);
      if (type === USER_DEFINED) (userDefined ??= new PrefixTrie()).add(piece, id);
      if (type === UNKNOWN) {
        if (unknownId >= 0) bad(`pieces ${unknownId} and ${id} are both of type UNKNOWN`);
        unknownId = id;
      }
      if (type === BYTE) {
        if (!m.trainer.byteFallback) bad(`piece ${id} (${piece}) is a BYTE piece but trainer_spec.byte_fallback is false`);
        const match = /^<0x([0-9A-F]{2})>$/.exec(piece);
        if (!match) bad(`BYTE piece ${id} is ${JSON.stringify(piece)}; expected <0x00>..<0xFF>`);
        this.byteOf[id] = parseInt(match[1]!, 16);
      }
      if (type === NORMAL) {
        this.minScore = Math.min(this.minScore, this.scores[id]!);
        this.maxScore = Math.max(this.maxScore, this.scores[id]!);
      }
    }
    if (unknownId < 0) bad('no piece has type UNKNOWN');
    this.unknownId = unknownId;
    this.userDefined = userDefined;
    if (m.trainer.byteFallback) {
      for (let b = 0; b < 256; b++) {
        const id = this.pieceToId(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
        if (this.types[id] !== BYTE) bad(`trainer_spec.byte_fallback is true but there is no BYTE piece for 0x${b.toString(16).padStart(2, '0')}`);
        this.byteIds[b] = id;
      }
    }
    if (this.modelType === 'unigram') {
      this.trie = new PrefixTrie();
      for (const [piece, id] of this.normalIds) this.trie.add(piece, id);
    }
    const special = (name: string, fallback: string, type: number) => {
      const id = this.pieceToId(name || fallback);
      return this.types[id] === type ? id : -1;
    };
    this.unkId = special(m.trainer.unkPiece, '<unk>', UNKNOWN);
    this.bosId = special(m.trainer.bosPiece, '<s>', CONTROL);
    this.eosId = special(m.trainer.eosPiece, '</s>', CONTROL);
    this.padId = special(m.trainer.padPiece, '<pad>', CONTROL);
  }

  /** SentencePiece's PieceToId: reserved pieces first, then the others, else the unknown id. */
  private pieceToId(piece: string): number {
    return this.reservedIds.get(piece) ?? this.normalIds.get(piece) ?? this.unknownId;
  }

  // ---- encoding ------------------------------------------------------------------------------

  /** Token ids of `text`, as sp.encode(text); `bos`/`eos` add those tokens. */
  encode(text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
    const ids: number[] = [];
    if (opts.bos) ids.push(this.special(this.bosId, 'BOS'));
    const normalized = this.normalize(text);
    const segments = this.modelType === 'bpe' ? this.segmentBpe(normalized) : this.segmentUnigram(normalized);
    let prevUnknown = false;
    for (const [piece, id] of segments) {
      // a symbol equal to a CONTROL piece (possible only in odd models): SentencePiece fails too
      if (this.types[id] === CONTROL) throw new InvalidArgumentError(`${this.path}: cannot encode ${JSON.stringify(piece)}: it is the text of CONTROL piece ${id}`);
      const unknown = this.types[id] === UNKNOWN;
      if (unknown && this.trainer.byteFallback) for (const b of utf8.encode(piece)) ids.push(this.byteIds[b]!);
      else if (!(unknown && prevUnknown)) ids.push(id); // a run of unknown symbols is one unk
      prevUnknown = unknown;
    }
    if (opts.eos) ids.push(this.special(this.eosId, 'EOS'));
    return ids;
  }

  private special(id: number, what: string): number {
    if (id < 0) throw new InvalidArgumentError(`${this.path}: this SentencePiece model has no ${what} token`);
    return id;
  }

  /** Normalizer::Normalize: the text the model segments (see the file comment). */
  normalize(input: string): string {
    // JS strings may hold lone surrogates; as UTF-8 they are U+FFFD, which is what SentencePiece sees
    const text = input.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
    if (text === '') return '';
    const { addDummyPrefix, removeExtraWhitespaces: removeExtra, escapeWhitespaces: escape } = this.normalizer;
    const suffix = this.trainer.treatWhitespaceAsSuffix;
    const space = escape ? SPACE : ' ';
    // byte offset of every UTF-16 position, for the charsmap (which matches UTF-8 bytes)
    let bytes: Uint8Array | undefined;
    let byteAt: Int32Array | undefined;
    if (this.charsmap) {
      bytes = utf8.encode(text);
      byteAt = new Int32Array(text.length + 1);
      for (let i = 0; i < text.length; i++) byteAt[i + 1] = byteAt[i]! + utf8Length(text, i, i + 1);
    }
    // NormalizePrefix: [normalized text of the longest rule at pos, UTF-16 units consumed]
    const prefix = (pos: number): [string, number] => {
      const ud = this.userDefined?.longest(text, pos) ?? 0;
      if (ud > 0) return [text.substr(pos, ud), ud];
      const rule = bytes && byteAt ? this.charsmap!.longest(bytes, byteAt[pos]!) : undefined;
      if (rule) {
        let end = pos;
        while (byteAt![end]! - byteAt![pos]! < rule[0]) end++;
        return [rule[1], end - pos];
      }
      const n = charLength(text, pos);
      return [text.substr(pos, n), n];
    };

    let pos = 0;
    if (removeExtra) {
      for (let p = prefix(0); pos < text.length && p[0] === ' '; p = prefix(pos)) pos += p[1];
      if (pos >= text.length) return '';
    }
    let out = addDummyPrefix && !suffix ? space : '';
    let prevSpace = removeExtra;
    while (pos < text.length) {
      let [s, n] = prefix(pos);
      if (prevSpace) s = s.replace(/^ +/, '');
      if (s !== '') {
        out += escape ? s.replaceAll(' ', SPACE) : s;
        prevSpace = s.endsWith(' ');
      }
      if (!removeExtra) prevSpace = false;
      pos += n;
    }
    if (removeExtra) while (out.endsWith(space)) out = out.slice(0, -space.length);
    if (addDummyPrefix && suffix) out += space;
    return out;
  }

  /** bpe_model.cc Model::Encode: [piece, id] segments of normalized text. */
  private segmentBpe(text: string): Array<[string, number]> {
    // Symbols: spans of `text` in a doubly linked list; a merged-away symbol has length 0.
    const start = new Int32Array(text.length);
    const len = new Int32Array(text.length);
    const frozen = new Uint8Array(text.length); // user-defined symbols never merge
    let n = 0;
    for (let i = 0; i < text.length; i += len[n++]!) {
      const ud = this.userDefined?.longest(text, i) ?? 0;
      start[n] = i;
      len[n] = ud || charLength(text, i);
      frozen[n] = ud > 0 ? 1 : 0;
    }
    if (n === 0) return [];
    const prev = new Int32Array(n).map((_, i) => i - 1);
    const next = new Int32Array(n).map((_, i) => (i + 1 < n ? i + 1 : -1));

    // Candidate merges, best score first, then leftmost. `size` detects stale entries: symbols
    // only grow, so a pair whose lengths no longer add up to `size` has changed since.
    type Pair = { score: number; left: number; right: number; size: number };
    const agenda = new Heap<Pair>((a, b) => a.score > b.score || (a.score === b.score && a.left < b.left));
    // For UNUSED pieces: the two symbols it was last made from, to split it again at the end.
    const unmerge = new Map<string, [string, string]>();
    const consider = (left: number, right: number) => {
      if (left < 0 || right < 0 || frozen[left] || frozen[right] || len[left]! + len[right]! > this.maxPieceLength) return;
      const piece = text.substr(start[left]!, len[left]! + len[right]!);
      const id = this.normalIds.get(piece);
      if (id === undefined) return;
      agenda.push({ score: this.scores[id]!, left, right, size: piece.length });
      if (this.types[id] === UNUSED) unmerge.set(piece, [text.substr(start[left]!, len[left]!), text.substr(start[right]!, len[right]!)]);
    };
    for (let i = 1; i < n; i++) consider(i - 1, i);
    while (agenda.size > 0) {
      const { left, right, size } = agenda.pop();
      if (len[left] === 0 || len[right] === 0 || len[left]! + len[right]! !== size) continue;
      len[left] = size;
      len[right] = 0;
      next[left] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = left;
      consider(prev[left]!, left);
      consider(left, next[left]!);
    }

    const out: Array<[string, number]> = [];
    const resegment = (w: string) => {
      const id = this.pieceToId(w);
      const split = this.types[id] === UNUSED ? unmerge.get(w) : undefined;
      if (split) {
        resegment(split[0]);
        resegment(split[1]);
      } else out.push([w, id]);
    };
    for (let i = 0; i >= 0; i = next[i]!) resegment(text.substr(start[i]!, len[i]!));
    return out;
  }

  /** unigram_model.cc Model::EncodeOptimized: the Viterbi path, [piece, id] segments. */
  private segmentUnigram(text: string): Array<[string, number]> {
    const n = text.length;
    if (n === 0) return [];
    const f32 = Math.fround;
    const unkScore = f32(this.minScore - 10);
    // best path ending at each position: its score (a float32), where its last piece starts, and that piece
    const best = new Float64Array(n + 1);
    const from = new Int32Array(n + 1).fill(-1);
    const ids = new Int32Array(n + 1).fill(-1);
    const offer = (end: number, pos: number, score: number, id: number) => {
      if (from[end] === -1 || score > best[end]!) {
        best[end] = f32(score);
        from[end] = pos;
        ids[end] = id;
      }
    };
    for (let pos = 0; pos < n; ) {
      const here = best[pos]!;
      const charLen = charLength(text, pos);
      let single = false;
      this.trie!.prefixes(text, pos, (end, id) => {
        const type = this.types[id];
        if (type === UNUSED) return;
        // user-defined symbols get a bonus so that they always win (length in UTF-8 bytes). The
        // sum is a double (SentencePiece's `auto score` is a double), compared with the stored
        // float32: that rounding decides between paths whose scores tie.
        const score = type === USER_DEFINED ? f32(utf8Length(text, pos, end) * this.maxScore) - 0.1 : this.scores[id]!;
        offer(end, pos, score + here, id);
        if (end - pos === charLen) single = true;
      });
      if (!single) offer(pos + charLen, pos, f32(unkScore + here), this.unknownId); // float32 sum here
      pos += charLen;
    }
    const out: Array<[string, number]> = [];
    for (let end = n; end > 0; end = from[end]!) out.push([text.slice(from[end]!, end), ids[end]!]);
    return out.reverse();
  }

  // ---- decoding ------------------------------------------------------------------------------

  /** The vocabulary entry of `id`, as stored ("▁" for spaces, "<0x0A>" for byte pieces). */
  piece(id: number): string {
    const p = this.pieces[id];
    if (p === undefined) throw new InvalidArgumentError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`, 'token');
    return p;
  }

  /** Type of `id` as SentencePiece's Decode sees it (it looks the piece up again: reserved first). */
  private decodeType(id: number): [number, number] {
    const canonical = this.pieceToId(this.piece(id));
    return [canonical, this.types[canonical]!];
  }

  /** Whether a leading "▁" may be dropped at the start of the text. */
  private get stripsLeadingSpace(): boolean {
    return this.normalizer.addDummyPrefix || this.normalizer.removeExtraWhitespaces;
  }

  /** Text of a token sequence, as sp.decode(ids). */
  decode(ids: readonly number[]): string {
    let text = '';
    let bytes: number[] = [];
    let atStart = true; // no visible text yet: a leading "▁" is the dummy prefix
    let spaceDropped = false;
    for (const id of ids) {
      const [canonical, type] = this.decodeType(id);
      if (type === BYTE) {
        bytes.push(this.byteOf[canonical]!);
        continue;
      }
      text += decodeBytes(bytes);
      bytes = [];
      if (spaceDropped || text !== '') atStart = false;
      spaceDropped = false;
      if (type === CONTROL) continue;
      if (type === UNKNOWN) {
        text += this.trainer.unkSurface;
        continue;
      }
      let p = this.pieces[canonical]!;
      if (atStart && this.stripsLeadingSpace && p.startsWith(SPACE)) {
        p = p.slice(1);
        // with remove_extra_whitespaces every leading space piece loses its "▁"
        spaceDropped = !this.normalizer.removeExtraWhitespaces;
      }
      text += p.replaceAll(SPACE, ' ');
    }
    return text + decodeBytes(bytes);
  }

  /**
   * The UTF-8 bytes that token `id` adds to the text after token `prev` (for streaming through
   * TextStream): "▁" → space, byte pieces → their byte, control tokens → nothing, and the leading
   * space dropped at the start (`prev` < 0) and right after a control token such as BOS (as
   * run.c does). Streaming a sequence this way gives decode(ids), except: after a control token
   * that follows text (decode keeps the space there), with remove_extra_whitespaces (decode drops
   * the "▁" of every leading whitespace piece), and for invalid UTF-8 byte runs (TextStream
   * replaces a maximal invalid sequence by one U+FFFD, decode each byte).
   */
  tokenBytes(prev: number, id: number): Uint8Array {
    const [canonical, type] = this.decodeType(id);
    if (type === CONTROL) return new Uint8Array(0);
    if (type === BYTE) return Uint8Array.of(this.byteOf[canonical]!);
    if (type === UNKNOWN) return utf8.encode(this.trainer.unkSurface);
    let p = this.pieces[canonical]!;
    const start = prev < 0 || this.decodeType(prev)[1] === CONTROL;
    if (start && this.stripsLeadingSpace && p.startsWith(SPACE)) p = p.slice(1);
    return utf8.encode(p.replaceAll(SPACE, ' '));
  }
}
