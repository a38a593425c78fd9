/**
 * Seeded mutators for the fuzz harness: bytes, JSON values and text. Deterministic: the same
 * (seed corpus, Rng seed) always gives the same input, so a failure is reproduced from its
 * parser name, run seed and iteration alone (see harness.ts).
 *
 * Byte mutations are AFL's "havoc" stage, made a little format-aware by the caller: `hot` regions
 * (a header, a pickle, a central directory) get most of the edits, `dict` holds tokens of the
 * format (magic numbers, opcodes, key names) to insert, and integers are overwritten with
 * boundary values (0, -1, 2^31-1, 2^32-1, 2^63, ...) and with lengths related to the input's size,
 * which is what turns a length field into "huge" or "one past the end".
 * JSON mutations edit the parsed value (replace, retype, delete, rename, duplicate, nest deeply)
 * and then, sometimes, the serialized bytes.
 */

/** A small PRNG (mulberry32) with the helpers the mutators need. */
export class Rng {
  private a: number;
  constructor(seed: number) {
    this.a = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)]!;
  }
  /** Small counts are likely, large ones possible: 1, 2, 4, ... up to 2^maxLog. */
  count(maxLog: number): number {
    return 1 + this.int(1 << this.int(maxLog + 1));
  }
}

/** The seed of iteration `i` of a run seeded with `seed` (a 32-bit mix, so neighbours differ). */
export function iterationSeed(seed: number, i: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(i + 1, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Integers that break length and count checks, as unsigned 64-bit patterns. */
const BOUNDARY: readonly bigint[] = [
  0n, 1n, 2n, 3n, 4n, 7n, 8n, 16n, 32n, 63n, 64n, 100n, 127n, 128n, 255n, 256n, 1000n, 4096n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n,
  0x7fffffffn, 0x80000000n, 0xfffffffen, 0xffffffffn, 0x100000000n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n,
  (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, (1n << 64n) - 2n, (1n << 64n) - 0x100n,
];
const MASKS: Record<number, bigint> = { 1: 0xffn, 2: 0xffffn, 4: 0xffffffffn, 8: (1n << 64n) - 1n };
const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x0a, 0x20, 0x22, 0x2e, 0x30, 0x39, 0x5c, 0x7b, 0x7d, 0x7f, 0x80, 0x81, 0xc0, 0xe2, 0xf0, 0xfe, 0xff];

export interface Region {
  readonly start: number;
  readonly end: number;
}

export interface ByteMutationOptions {
  /** Regions that get most of the edits (a header, a pickle, a directory). */
  readonly hot?: readonly Region[];
  /** Tokens of the format to insert or overwrite with. */
  readonly dict?: readonly Uint8Array[];
  /** Other inputs to splice from. */
  readonly splice?: readonly Uint8Array[];
  /** Upper bound on the output size (default: 2 × input + 64 KiB). */
  readonly maxSize?: number;
}

/** Read / write an unsigned integer of `w` bytes at `pos`. */
function readUint(b: Uint8Array, pos: number, w: number, le: boolean): bigint {
  let v = 0n;
  for (let k = 0; k < w; k++) v |= BigInt(b[pos + k]!) << BigInt(8 * (le ? k : w - 1 - k));
  return v;
}
function writeUint(b: Uint8Array, pos: number, w: number, le: boolean, v: bigint): void {
  v &= MASKS[w]!;
  for (let k = 0; k < w; k++) b[pos + (le ? k : w - 1 - k)] = Number((v >> BigInt(8 * k)) & 0xffn);
}

/** A protobuf varint of an unsigned 64-bit value. */
export function varint(v: bigint): Uint8Array {
  const out: number[] = [];
  v &= MASKS[8]!;
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? b | 0x80 : b);
  } while (v > 0n);
  return Uint8Array.from(out);
}

const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
};

/** One havoc round: 1 to 8 stacked byte edits of a copy of `src`. */
export function mutateBytes(src: Uint8Array, r: Rng, opts: ByteMutationOptions = {}): Uint8Array {
  let b: Uint8Array = src.slice();
  const maxSize = opts.maxSize ?? src.length * 2 + 65536;
  const hot = opts.hot?.filter((h) => h.end > h.start) ?? [];
  /** A position in [0, len): usually inside a hot region. */
  const pos = (len: number, width = 1): number => {
    const n = Math.max(1, len - width + 1);
    if (hot.length > 0 && r.chance(0.8)) {
      const h = r.pick(hot);
      const p = h.start + r.int(h.end - h.start);
      return Math.min(p, n - 1);
    }
    return r.int(n);
  };
  const edits = r.count(3);
  for (let e = 0; e < edits; e++) {
    const len = b.length;
    const op = r.int(16);
    if (len === 0 && op < 12) {
      b = Uint8Array.from({ length: r.count(5) }, () => r.int(256));
      continue;
    }
    switch (op) {
      case 0: { // flip a bit
        const p = pos(len);
        b[p]! ^= 1 << r.int(8);
        break;
      }
      case 1: // an interesting or random byte
        b[pos(len)] = r.chance(0.5) ? r.pick(INTERESTING_BYTES) : r.int(256);
        break;
      case 2:
      case 3:
      case 4: { // overwrite an integer: a boundary value, a size of this input, or old ± delta
        const w = r.pick([1, 2, 4, 4, 8, 8]);
        if (len < w) break;
        let p = pos(len, w);
        if (r.chance(0.5)) p -= p % w;
        const le = r.chance(0.9);
        const old = readUint(b, p, w, le);
        const choice = r.int(4);
        let v: bigint;
        if (choice === 0) v = old + BigInt(r.int(35) + 1) * (r.chance(0.5) ? 1n : -1n);
        else if (choice === 1) v = BigInt(len - p) + BigInt(r.int(9) - 4); // "the rest of the file" ± 4
        else v = r.pick(BOUNDARY);
        if (r.chance(0.1)) v = -v; // two's complement of it: -1, -2^31, ...
        writeUint(b, p, w, le, v);
        break;
      }
      case 5: { // delete a range
        const p = pos(len);
        const n = Math.min(len - p, r.chance(0.8) ? r.count(4) : r.count(14));
        b = concat(b.subarray(0, p), b.subarray(p + n));
        break;
      }
      case 6: { // insert random bytes
        const p = pos(len + 1);
        b = concat(b.subarray(0, p), Uint8Array.from({ length: r.count(4) }, () => r.int(256)), b.subarray(p));
        break;
      }
      case 7: { // repeat a short chunk many times (deep nesting, long runs, big counts)
        const p = pos(len);
        const chunk = b.slice(p, p + r.count(3));
        const times = r.chance(0.9) ? r.count(5) : r.count(16);
        const rep = new Uint8Array(chunk.length * times);
        for (let k = 0; k < times; k++) rep.set(chunk, k * chunk.length);
        b = concat(b.subarray(0, p), rep, b.subarray(p));
        break;
      }
      case 8: { // copy a chunk of the input over another place
        const from = pos(len);
        const to = pos(len);
        const n = Math.min(r.count(8), len - from, len - to);
        b.copyWithin(to, from, from + n);
        break;
      }
      case 9:
      case 10: { // insert or overwrite with a dictionary token
        if (!opts.dict?.length) break;
        const t = r.pick(opts.dict);
        const p = pos(len + 1);
        if (r.chance(0.5)) b = concat(b.subarray(0, p), t, b.subarray(p));
        else if (p + t.length <= len) b.set(t, p);
        break;
      }
      case 11: { // splice: a piece of another input replaces a piece of this one
        if (!opts.splice?.length) break;
        const other = r.pick(opts.splice);
        if (other.length === 0) break;
        const from = r.int(other.length);
        const piece = other.subarray(from, from + r.count(10));
        const p = pos(len + 1);
        b = concat(b.subarray(0, p), piece, b.subarray(Math.min(len, p + (r.chance(0.5) ? piece.length : 0))));
        break;
      }
      case 12: // truncate
        b = b.slice(0, pos(len + 1));
        break;
      case 13: { // insert a varint (protobuf) or a decimal number (text formats)
        const v = r.pick(BOUNDARY);
        const p = pos(len + 1);
        const t = r.chance(0.5) ? varint(v) : new TextEncoder().encode((r.chance(0.3) ? '-' : '') + v.toString());
        b = concat(b.subarray(0, p), t, b.subarray(p));
        break;
      }
      case 14: { // swap two chunks of the same size
        const n = r.count(5);
        if (len < 2 * n) break;
        const p = pos(len - n + 1);
        const q = pos(len - n + 1);
        const a = b.slice(p, p + n);
        b.copyWithin(p, q, q + n);
        b.set(a.subarray(0, Math.min(n, len - q)), q);
        break;
      }
      default: { // a run of one byte value (zeros, 0xff) over a region
        const p = pos(len);
        b.fill(r.chance(0.5) ? 0 : r.pick(INTERESTING_BYTES), p, p + r.count(6));
        break;
      }
    }
    if (b.length > maxSize) b = b.slice(0, maxSize);
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// JSON

type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

/** Marks a spot that becomes deep nesting after serialization (JSON.stringify cannot write it). */
const DEEP = '\u0000llamats-fuzz-deep:';

const INTERESTING_NUMBERS = [0, -0, 1, -1, 2, 3, 0.5, -0.5, 1.5, 7, 255, 256, 65535, 65536, 2 ** 24, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53 + 2, 2 ** 63, -(2 ** 63), 1e300, -1e300, 5e-324, 1e-40];
const INTERESTING_STRINGS = [
  '', ' ', 'a', '▁', 'Ġ', '<unk>', '<s>', '</s>', '<0x41>', '<|eot_id|>', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
  '\u0000', '\ud800', '\udc00x', '😀', '\\', '(', ')', '[', '(?i:', '(?>a)', '\\p{', '\\x{110000}', '.*', '(a*)*b', '{2,}', '\\', '%', '{{', '{%',
  'F32', 'F16', 'BF16', 'I64', 'U8', 'F8_E4M3', 'BPE', 'Unigram', 'WordPiece', 'Sequence', 'ByteLevel', 'Metaspace', 'Split', 'Replace', 'Strip',
  'ByteFallback', 'Fuse', 'Prepend', 'NFKC', 'Lowercase', 'Digits', 'Whitespace', 'WhitespaceSplit', 'TemplateProcessing', 'Isolated', 'Removed',
  'MergedWithPrevious', 'MergedWithNext', 'Contiguous', 'always', 'first', 'never', 'llama', 'LlamaForCausalLM', 'llama3', 'default', 'silu',
];

/** The JSON mutator's state for one seed corpus: keys seen in the seeds, to add and rename with. */
export interface JsonDictionary {
  readonly keys: readonly string[];
  readonly strings: readonly string[];
}

/** Every key and (short) string in `values`, for JsonDictionary. */
export function jsonDictionary(values: readonly unknown[], extraKeys: readonly string[] = []): JsonDictionary {
  const keys = new Set<string>(extraKeys);
  const strings = new Set<string>(INTERESTING_STRINGS);
  const stack: unknown[] = [...values];
  let budget = 20000; // large vocabularies: a sample is enough
  while (stack.length > 0 && budget-- > 0) {
    const v = stack.pop();
    if (Array.isArray(v)) stack.push(...v.slice(0, 50));
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v).slice(0, 50)) {
        keys.add(k);
        stack.push(x);
      }
    } else if (typeof v === 'string' && v.length < 40) strings.add(v);
  }
  return { keys: [...keys], strings: [...strings] };
}

/** A random interesting value, scalar or small container. */
function randomValue(r: Rng, d: JsonDictionary): JsonValue {
  switch (r.int(9)) {
    case 0: return null;
    case 1: return r.chance(0.5);
    case 2:
    case 3: return r.pick(INTERESTING_NUMBERS);
    case 4: return r.pick(d.strings);
    case 5: return r.pick(d.keys);
    case 6: return r.chance(0.5) ? [] : {};
    case 7: return `${DEEP}${r.chance(0.9) ? r.count(6) : r.pick([65, 5000, 100000])}`;
    default: return r.chance(0.5) ? 'x'.repeat(r.count(12)) : Array.from({ length: r.count(8) }, () => r.pick(INTERESTING_NUMBERS));
  }
}

/** A container in `root` reached by a random walk, and one of its keys (or indices). */
function randomSlot(root: JsonValue, r: Rng): [Record<string, JsonValue> | JsonValue[], string | number] | undefined {
  let parent: Record<string, JsonValue> | JsonValue[] | undefined;
  let key: string | number | undefined;
  let node = root;
  for (let depth = 0; depth < 64; depth++) {
    if (node === null || typeof node !== 'object') break;
    const keys: Array<string | number> = Array.isArray(node) ? node.map((_, i) => i) : Object.keys(node);
    if (keys.length === 0 || (parent !== undefined && r.chance(0.3))) break;
    parent = node;
    key = keys[r.int(keys.length)]!;
    node = (node as Record<string | number, JsonValue>)[key]!;
  }
  return parent === undefined ? undefined : [parent, key!];
}

/** Structure-aware edits of a JSON value (a fresh copy), serialized; sometimes byte-mutated too. */
export function mutateJson(seed: unknown, r: Rng, d: JsonDictionary): Uint8Array {
  const root = structuredClone(seed) as JsonValue;
  const wrapper: { v: JsonValue } = { v: root };
  const edits = r.count(3);
  for (let e = 0; e < edits; e++) {
    const slot = r.chance(0.05) ? ([wrapper as unknown as Record<string, JsonValue>, 'v'] as const) : randomSlot(wrapper.v, r);
    if (!slot) {
      wrapper.v = randomValue(r, d);
      continue;
    }
    const [parent, key] = slot;
    const get = () => (parent as Record<string | number, JsonValue>)[key]!;
    const set = (v: JsonValue) => ((parent as Record<string | number, JsonValue>)[key] = v);
    const old = get();
    switch (r.int(10)) {
      case 0:
      case 1: set(randomValue(r, d)); break;
      case 2: // change the type, keeping the "value"
        set(typeof old === 'number' ? String(old) : typeof old === 'string' ? (Number(old) || old.length) : Array.isArray(old) ? Object.fromEntries(old.map((x, i) => [String(i), x])) : old !== null && typeof old === 'object' ? Object.values(old) : [old]);
        break;
      case 3: // delete
        if (Array.isArray(parent)) parent.splice(key as number, 1);
        else delete parent[key as string];
        break;
      case 4: // rename or add a key
        if (!Array.isArray(parent)) {
          const k = r.pick(d.keys);
          if (r.chance(0.5)) delete parent[key as string];
          parent[r.chance(0.8) ? k : r.pick(d.strings)] = r.chance(0.5) ? old : randomValue(r, d);
        } else parent.push(old);
        break;
      case 5: // numbers: nudge or boundary
        set(typeof old === 'number' ? (r.chance(0.5) ? old + r.int(5) - 2 : old * r.pick([-1, 2, 1000, 1e9, 0.5])) : randomValue(r, d));
        break;
      case 6: // strings: edit
        if (typeof old === 'string') set(mutateText(old, r, d.strings));
        else set(r.pick(d.strings));
        break;
      case 7: // arrays: duplicate, drop or reverse elements
        if (Array.isArray(old)) {
          if (old.length > 0 && r.chance(0.4)) old.splice(r.int(old.length), 1);
          else if (old.length > 0 && r.chance(0.5)) old.splice(r.int(old.length), 0, structuredClone(old[r.int(old.length)]!));
          else old.reverse();
        } else set([old]);
        break;
      case 8: { // copy another part of the document here
        const other = randomSlot(wrapper.v, r);
        if (other) set(structuredClone((other[0] as Record<string | number, JsonValue>)[other[1]]!));
        break;
      }
      default: // nest deeply
        set(`${DEEP}${r.chance(0.8) ? r.count(6) : r.pick([65, 5000, 100000])}`);
    }
  }
  let text = JSON.stringify(wrapper.v) ?? 'null';
  text = text.replace(/"\\u0000llamats-fuzz-deep:(\d+)"/g, (_, n: string) => {
    const depth = Math.min(Number(n), 100000) || 1; // (a string edit may have grown the number)
    const [open, close] = r.chance(0.5) ? ['[', ']'] : ['{"a":', '}'];
    return open.repeat(depth) + '1' + close.repeat(depth);
  });
  const bytes = new TextEncoder().encode(text);
  return r.chance(0.2) ? mutateBytes(bytes, r, { dict: JSON_TOKENS }) : bytes;
}

const JSON_TOKENS = ['{', '}', '[', ']', '"', ':', ',', 'null', 'true', '1e999', '-0', '"__proto__"', '\\u0000', '\\ud800', '"\\', '{"a":'].map((s) => new TextEncoder().encode(s));

// ---------------------------------------------------------------------------------------------
// Text

/** Edits of a string at the character level, with tokens of the language from `dict`. */
export function mutateText(src: string, r: Rng, dict: readonly string[]): string {
  let s = src;
  const edits = r.count(3);
  for (let e = 0; e < edits; e++) {
    const p = r.int(s.length + 1);
    switch (r.int(8)) {
      case 0:
      case 1: s = s.slice(0, p) + r.pick(dict) + s.slice(p); break;
      case 2: s = s.slice(0, p) + s.slice(p + r.count(5)); break;
      case 3: { // replace a token-sized piece with a dictionary token
        s = s.slice(0, p) + r.pick(dict) + s.slice(p + r.count(3));
        break;
      }
      case 4: { // duplicate a piece, sometimes many times
        const piece = s.slice(p, p + r.count(6));
        s = s.slice(0, p) + piece.repeat(r.chance(0.9) ? r.count(3) : r.count(12)) + s.slice(p);
        break;
      }
      case 5: s = s.slice(0, p) + String.fromCharCode(r.chance(0.8) ? r.int(128) : r.int(0x10000)) + s.slice(p + (r.chance(0.5) ? 1 : 0)); break;
      case 6: { // move a piece
        const q = r.int(s.length + 1);
        const piece = s.slice(p, p + r.count(7));
        s = s.slice(0, p) + s.slice(p + piece.length);
        s = s.slice(0, q) + piece + s.slice(q);
        break;
      }
      default: s = s.slice(0, p); // truncate
    }
  }
  return s;
}
