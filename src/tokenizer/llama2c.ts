/**
 * The llama2.c tokenizer (`tokenizer.bin`, `tok512.bin`), encoding and decoding exactly as
 * `run.c` does.
 *
 * File format (little-endian), written by llama2.c's `tokenizer.py`:
 *   int32 max_token_length
 *   then, for every token id 0, 1, 2, …, to the end of the file:
 *     float32 score, int32 len, len bytes of the piece (UTF-8; SentencePiece's "▁" already
 *     replaced by a space)
 * The vocabulary size is not stored: it is the number of entries, and must equal the model's.
 * Ids 0, 1, 2 are <unk>, BOS, EOS; ids 3..258 are the byte-fallback pieces "<0x00>".."<0xFF>".
 *
 * Encoding (run.c's `encode`): optional BOS; a " " dummy prefix when the text is not empty; each
 * UTF-8 character becomes its piece, or its bytes as byte tokens (id = byte + 3) when the
 * vocabulary lacks it; then, repeatedly, the adjacent pair whose concatenation is the
 * highest-scoring piece is merged (leftmost wins ties) until no pair is a piece; optional EOS.
 */
import { FileFormatError, InvalidArgumentError } from '../errors.js';
import { ByteReader } from '../io/file.js';

export const BOS_ID = 1;
export const EOS_ID = 2;
const BYTE_OFFSET = 3;

export class Llama2cTokenizer {
  readonly vocabSize: number;
  readonly bosId = BOS_ID;
  readonly eosId = EOS_ID;
  readonly maxTokenLength: number;
  /** Piece bytes per id. */
  readonly pieces: readonly Uint8Array[];
  readonly scores: Float32Array;
  /** Piece (as a latin1 string: one char per byte) → id. The first id wins for duplicate pieces. */
  private readonly ids = new Map<string, number>();
  /** For ids whose piece is "<0xNN>": the byte; else -1. */
  private readonly byteOf: Int16Array;
  private readonly path: string;

  constructor(pieces: Uint8Array[], scores: Float32Array, maxTokenLength: number, path = '<memory>') {
    this.pieces = pieces;
    this.scores = scores;
    this.vocabSize = pieces.length;
    this.maxTokenLength = maxTokenLength;
    this.path = path;
    this.byteOf = new Int16Array(pieces.length).fill(-1);
    for (let i = 0; i < pieces.length; i++) {
      const key = latin1(pieces[i]!);
      if (!this.ids.has(key)) this.ids.set(key, i);
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(key);
      if (m) this.byteOf[i] = parseInt(m[1]!, 16);
    }
  }

  /** Parse a tokenizer.bin image; `path` names it in errors. */
  static parse(bytes: Uint8Array, path: string): Llama2cTokenizer {
    if (bytes.byteLength === 0) throw new FileFormatError(path, 'the file is empty; expected a llama2.c tokenizer (tokenizer.bin)');
    const r = new ByteReader(bytes, path);
    const maxTokenLength = r.i32('max_token_length');
    if (maxTokenLength < 0) throw new FileFormatError(path, `max_token_length is ${maxTokenLength}; expected a non-negative length (is this a llama2.c tokenizer?)`);
    const pieces: Uint8Array[] = [];
    const scores: number[] = [];
    while (r.remaining > 0) {
      const id = pieces.length;
      const score = r.f32(`score of token ${id}`);
      const len = r.i32(`length of token ${id}`);
      if (len < 0 || len > r.remaining) {
        throw new FileFormatError(path, `token ${id} has length ${len} at offset ${r.offset - 4}, but ${r.remaining} bytes remain (is this a llama2.c tokenizer?)`);
      }
      pieces.push(r.bytesView(len, `token ${id}`));
      scores.push(score);
    }
    if (pieces.length < 3) throw new FileFormatError(path, `the vocabulary has ${pieces.length} tokens; expected at least <unk>, BOS and EOS`);
    return new Llama2cTokenizer(pieces, Float32Array.from(scores), maxTokenLength, path);
  }

  /** Token ids of `text`, as run.c's `encode(text, bos, eos)`. */
  encode(text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
    const bytes = Buffer.from(text, 'utf8');
    const tokens: number[] = [];
    if (opts.bos) tokens.push(BOS_ID);
    const start = tokens.length;
    if (bytes.length > 0) tokens.push(this.lookupOrFail(' ', 'the dummy-prefix space'));
    // one token (or byte tokens) per UTF-8 character; at most 4 bytes are grouped, like run.c
    for (let i = 0; i < bytes.length; ) {
      let end = i + 1;
      while (end < bytes.length && (bytes[end]! & 0xc0) === 0x80 && end - i < 4) end++;
      const id = this.ids.get(latin1(bytes.subarray(i, end)));
      if (id !== undefined) tokens.push(id);
      else for (let b = i; b < end; b++) tokens.push(this.byteToken(bytes[b]!));
      i = end;
    }
    const merged = this.merge(tokens.slice(start));
    tokens.length = start;
    for (const t of merged) tokens.push(t);
    if (opts.eos) tokens.push(EOS_ID);
    return tokens;
  }

  /**
   * Merge adjacent pairs, best score first, leftmost on ties — run.c's loop, with a heap and a
   * linked list instead of rescanning the whole sequence after every merge.
   */
  private merge(init: number[]): number[] {
    const n = init.length;
    if (n < 2) return init;
    const tok = Int32Array.from(init);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const alive = new Uint8Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    // heap entries: [score, left index, left token, right token, merged id]
    type Cand = { score: number; left: number; lt: number; rt: number; id: number };
    const heap: Cand[] = [];
    const better = (a: Cand, b: Cand) => a.score > b.score || (a.score === b.score && a.left < b.left);
    const push = (c: Cand) => {
      heap.push(c);
      let i = heap.length - 1;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!better(heap[i]!, heap[p]!)) break;
        [heap[i], heap[p]] = [heap[p]!, heap[i]!];
        i = p;
      }
    };
    const pop = (): Cand => {
      const top = heap[0]!;
      const last = heap.pop()!;
      if (heap.length > 0) {
        heap[0] = last;
        let i = 0;
        for (;;) {
          const l = 2 * i + 1;
          const r = l + 1;
          let b = i;
          if (l < heap.length && better(heap[l]!, heap[b]!)) b = l;
          if (r < heap.length && better(heap[r]!, heap[b]!)) b = r;
          if (b === i) break;
          [heap[i], heap[b]] = [heap[b]!, heap[i]!];
          i = b;
        }
      }
      return top;
    };
    const consider = (left: number) => {
      const right = next[left]!;
      if (left < 0 || right < 0) return;
      const id = this.ids.get(latin1(this.pieces[tok[left]!]!) + latin1(this.pieces[tok[right]!]!));
      // run.c starts its search at a best score of -1e10: pieces scored lower never merge
      if (id !== undefined && this.scores[id]! > -1e10) push({ score: this.scores[id]!, left, lt: tok[left]!, rt: tok[right]!, id });
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.length > 0) {
      const c = pop();
      const right = next[c.left]!;
      // stale: one side was merged away or changed since this candidate was made
      if (!alive[c.left] || right < 0 || tok[c.left] !== c.lt || tok[right] !== c.rt) continue;
      tok[c.left] = c.id;
      alive[right] = 0;
      next[c.left] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = c.left;
      consider(prev[c.left]!);
      consider(c.left);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(tok[i]!);
    return out;
  }

  private lookupOrFail(s: string, what: string): number {
    const id = this.ids.get(s);
    if (id === undefined) throw new InvalidArgumentError(`${this.path}: the vocabulary has no piece for ${what}; cannot encode text with it`);
    return id;
  }

  private byteToken(b: number): number {
    const id = b + BYTE_OFFSET;
    if (id >= this.vocabSize || this.byteOf[id] !== b) {
      throw new InvalidArgumentError(`${this.path}: the vocabulary has no byte token for 0x${b.toString(16).padStart(2, '0')}; cannot encode this text`);
    }
    return id;
  }

  /** The piece of `id` as text (byte pieces stay "<0xNN>"). */
  piece(id: number): string {
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(this.pieceBytes(id));
  }

  pieceBytes(id: number): Uint8Array {
    const p = this.pieces[id];
    if (p === undefined) throw new InvalidArgumentError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`, 'token');
    return p;
  }

  /**
   * The bytes that token `id` adds to the text when it follows token `prev` (run.c's `decode`):
   * a leading space is dropped right after BOS, and "<0xNN>" pieces become the byte NN.
   */
  tokenBytes(prev: number, id: number): Uint8Array {
    let p = this.pieceBytes(id);
    if (prev === BOS_ID && p[0] === 0x20) p = p.subarray(1);
    const b = this.byteOf[id]!;
    return b >= 0 ? Uint8Array.of(b) : p;
  }

  /** Text of a token sequence, as SentencePiece decodes it: BOS/EOS produce nothing. */
  decode(ids: readonly number[]): string {
    const out = new TextStream();
    let text = '';
    let prev = BOS_ID; // a sequence decodes as if it followed BOS: no leading space
    for (const id of ids) {
      if (id === BOS_ID || id === EOS_ID) {
        prev = id;
        continue;
      }
      text += out.push(this.tokenBytes(prev, id));
      prev = id;
    }
    return text + out.flush();
  }
}

/**
 * Streaming text from token bytes: whole UTF-8 characters only, never split across tokens.
 * With `safePrint` (what run.c prints), single-byte control pieces that run.c's `safe_printf`
 * drops (not printable, not whitespace) are dropped too; bytes ≥ 0x80 are always assembled into
 * characters, where run.c drops them.
 */
export class TextStream {
  private decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
  private readonly safePrint: boolean;

  constructor(opts: { safePrint?: boolean } = {}) {
    this.safePrint = opts.safePrint ?? false;
  }

  push(bytes: Uint8Array): string {
    if (bytes.length === 0) return '';
    if (this.safePrint && bytes.length === 1) {
      const b = bytes[0]!;
      const printable = b >= 0x20 && b <= 0x7e;
      const space = b === 0x20 || (b >= 0x09 && b <= 0x0d);
      if (b < 0x80 && !printable && !space) return '';
    }
    return this.decoder.decode(bytes, { stream: true });
  }

  /** Whatever is pending (an unfinished character becomes U+FFFD). */
  flush(): string {
    return this.decoder.decode();
  }
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}
