/**
 * A safe unpickler: it interprets Python pickle opcodes (protocols 0-5) as data and never runs
 * anything. Python's pickle module calls whatever `module.name` a pickle names (GLOBAL /
 * STACK_GLOBAL followed by REDUCE), which is how a malicious `.pth` runs `os.system`. Here a
 * global resolves only if the caller's allowlist has it, and then to a plain TypeScript function
 * that builds a data value (for torch: a tensor descriptor). Any other name is refused with
 * UnsafePickleError as soon as the GLOBAL opcode is read, before any argument is even built.
 *
 * A pickle is a program for a stack machine: each opcode is one byte, possibly followed by an
 * argument (fixed-size little-endian ints, length-prefixed strings, or '\n'-terminated text for
 * protocol 0). MARK pushes a marker; TUPLE / LIST / DICT / APPENDS / SETITEMS consume the items
 * above the last marker. PUT/GET store and fetch values in a memo (by index), which is how
 * shared objects are referenced. STOP ends the program; its value is the top of the stack.
 *
 * Python values become: None → null, bool → boolean, int → number (bigint beyond 2^53),
 * float → number, str → string, bytes → Uint8Array, list and tuple → Array, dict → Map,
 * set/frozenset → Set, an allowlisted global → its PickleGlobal, calling it → whatever its
 * `call` returns. Persistent ids (BINPERSID / PERSID; torch's storages) go to `persistentLoad`.
 *
 * Bounds: every argument is checked against the remaining bytes before anything is allocated,
 * each opcode pushes at most one value (so the stack and the memo never hold more values than
 * the pickle has bytes), the memo is a Map (a huge index allocates nothing), and there are no
 * loops, so the work is linear in the pickle's size.
 */
import { FileFormatError } from '../errors.js';

/** A pickle that names a global outside the allowlist (code execution, in Python). */
export class UnsafePickleError extends FileFormatError {
  /** The refused global, as "module.name". */
  readonly global: string;
  constructor(path: string, message: string, global: string) {
    super(path, message);
    this.name = 'UnsafePickleError';
    this.global = global;
  }
}

/** An allowlisted global: a data value, callable (REDUCE / NEWOBJ) only if `call` is given. */
export interface PickleGlobal {
  /** "module.name", as the pickle wrote it. */
  readonly qualifiedName: string;
  /** Builds the value of `global(*args)`. Throw an Error to reject bad arguments. */
  readonly call?: (args: unknown[]) => unknown;
}

export interface UnpickleOptions {
  /** Allowlist: "module.name" → what that global means. Every other global is refused. */
  globals: ReadonlyMap<string, PickleGlobal>;
  /** Resolves a persistent id (BINPERSID / PERSID). Without it, persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Words for messages, e.g. "data.pkl in the archive". */
  what?: string;
}

/** Interpret `bytes` as a pickle and return the value it builds. Throws FileFormatError. */
export function unpickle(bytes: Uint8Array, path: string, opts: UnpickleOptions): unknown {
  return new Unpickler(bytes, path, opts).run();
}

class Unpickler {
  private readonly view: DataView;
  private pos = 0;
  private opStart = 0;
  private stack: unknown[] = [];
  private readonly marks: unknown[][] = [];
  private readonly memo = new Map<number, unknown>();
  private readonly what: string;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly path: string,
    private readonly opts: UnpickleOptions,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.what = opts.what ?? 'pickle';
  }

  run(): unknown {
    for (;;) {
      this.opStart = this.pos;
      const op = this.u8();
      if (op === 0x2e /* . STOP */) {
        if (this.marks.length > 0) throw this.fail('STOP with an unclosed MARK');
        return this.pop();
      }
      this.step(op);
    }
  }

  // prettier-ignore
  private step(op: number): void {
    switch (op) {
      // --- framing and protocol
      case 0x80: { const p = this.u8(); if (p > 5) throw this.fail(`protocol ${p}; llamats reads pickle protocols 0-5`); return; } // PROTO
      case 0x95: { const n = this.u64(); this.need(n, 'FRAME'); return; } // FRAME: a length hint only
      // --- constants
      case 0x4e: this.push(null); return; // N NONE
      case 0x88: this.push(true); return; // NEWTRUE
      case 0x89: this.push(false); return; // NEWFALSE
      // --- integers and floats
      case 0x4a: this.push(this.view.getInt32(this.take(4), true)); return; // J BININT
      case 0x4b: this.push(this.u8()); return; // K BININT1
      case 0x4d: this.push(this.view.getUint16(this.take(2), true)); return; // M BININT2
      case 0x8a: this.push(this.long(this.u8())); return; // LONG1
      case 0x8b: { const n = this.view.getInt32(this.take(4), true); if (n < 0 || n > 64) throw this.fail(`LONG4 of ${n} bytes; llamats reads integers up to 64 bytes`); this.push(this.long(n)); return; }
      case 0x47: this.push(this.view.getFloat64(this.take(8), false)); return; // G BINFLOAT (big-endian)
      case 0x49: { const t = this.line(); this.push(t === '00' ? false : t === '01' ? true : this.int(t)); return; } // I INT
      case 0x4c: this.push(this.int(this.line().replace(/L$/, ''))); return; // L LONG
      case 0x46: this.push(this.float(this.line())); return; // F FLOAT
      // --- strings and bytes
      case 0x58: this.push(this.utf8(this.u32())); return; // X BINUNICODE
      case 0x8c: this.push(this.utf8(this.u8())); return; // SHORT_BINUNICODE
      case 0x8d: this.push(this.utf8(this.u64())); return; // BINUNICODE8
      case 0x54: { const n = this.view.getInt32(this.take(4), true); if (n < 0) throw this.fail('BINSTRING with a negative length'); this.push(this.latin1(n)); return; } // T BINSTRING
      case 0x55: this.push(this.latin1(this.u8())); return; // U SHORT_BINSTRING
      case 0x42: this.push(this.raw(this.u32())); return; // B BINBYTES
      case 0x43: this.push(this.raw(this.u8())); return; // C SHORT_BINBYTES
      case 0x8e: case 0x96: this.push(this.raw(this.u64())); return; // BINBYTES8, BYTEARRAY8
      case 0x56: { const s = rawUnicodeEscape(this.line()); if (s === undefined) throw this.fail('UNICODE with a \\U escape above U+10FFFF'); this.push(s); return; } // V UNICODE (protocol 0)
      case 0x53: this.push(this.quoted(this.line())); return; // S STRING (protocol 0, a Python repr)
      // --- containers
      case 0x7d: this.push(new Map()); return; // } EMPTY_DICT
      case 0x5d: this.push([]); return; // ] EMPTY_LIST
      case 0x29: this.push([]); return; // ) EMPTY_TUPLE
      case 0x8f: this.push(new Set()); return; // EMPTY_SET
      case 0x28: this.marks.push(this.stack); this.stack = []; return; // ( MARK
      case 0x74: case 0x6c: this.push(this.popMark()); return; // t TUPLE, l LIST
      case 0x85: this.push([this.pop()]); return; // TUPLE1
      case 0x86: { const b = this.pop(); this.push([this.pop(), b]); return; } // TUPLE2
      case 0x87: { const c = this.pop(); const b = this.pop(); this.push([this.pop(), b, c]); return; } // TUPLE3
      case 0x91: this.push(new Set(this.popMark())); return; // FROZENSET
      case 0x64: { const d = new Map(); this.setItems(d, this.popMark()); this.push(d); return; } // d DICT
      case 0x61: { const v = this.pop(); this.list(this.top()).push(v); return; } // a APPEND
      case 0x65: { const items = this.popMark(); const l = this.list(this.top()); for (const x of items) l.push(x); return; } // e APPENDS
      case 0x73: { const v = this.pop(); const k = this.pop(); this.setItems(this.top(), [k, v]); return; } // s SETITEM
      case 0x75: { const items = this.popMark(); this.setItems(this.top(), items); return; } // u SETITEMS
      case 0x90: { const items = this.popMark(); const set = this.top(); if (!(set instanceof Set)) throw this.fail('ADDITEMS on a value that is not a set'); for (const x of items) set.add(x); return; }
      // --- stack and memo
      case 0x30: this.pop(); return; // 0 POP
      case 0x31: this.popMark(); return; // 1 POP_MARK
      case 0x32: this.push(this.top()); return; // 2 DUP
      case 0x71: this.put(this.u8()); return; // q BINPUT
      case 0x72: this.put(this.u32()); return; // r LONG_BINPUT
      case 0x70: this.put(this.index(this.line())); return; // p PUT
      case 0x94: this.put(this.memo.size); return; // MEMOIZE
      case 0x68: this.push(this.get(this.u8())); return; // h BINGET
      case 0x6a: this.push(this.get(this.u32())); return; // j LONG_BINGET
      case 0x67: this.push(this.get(this.index(this.line()))); return; // g GET
      // --- globals and calls: only the allowlist, only data
      case 0x63: { const module = this.line(); this.push(this.global(module, this.line())); return; } // c GLOBAL
      case 0x93: { const name = this.pop(); const module = this.pop(); if (typeof module !== 'string' || typeof name !== 'string') throw this.fail('STACK_GLOBAL with non-string names'); this.push(this.global(module, name)); return; }
      case 0x69: { const module = this.line(); const g = this.global(module, this.line()); this.push(this.call(g, this.popMark())); return; } // i INST
      case 0x6f: { const items = this.popMark(); if (items.length === 0) throw this.fail('OBJ without a class'); this.push(this.call(items[0], items.slice(1))); return; } // o OBJ
      case 0x52: { const args = this.pop(); const f = this.pop(); this.push(this.call(f, this.tuple(args))); return; } // R REDUCE
      case 0x81: { const args = this.pop(); const cls = this.pop(); this.push(this.call(cls, this.tuple(args))); return; } // NEWOBJ
      case 0x92: { const kw = this.pop(); const args = this.pop(); const cls = this.pop(); if (!(kw instanceof Map) || kw.size > 0) throw this.fail('NEWOBJ_EX with keyword arguments'); this.push(this.call(cls, this.tuple(args))); return; }
      case 0x62: this.build(this.pop(), this.top()); return; // b BUILD
      case 0x51: this.push(this.persistent(this.pop())); return; // Q BINPERSID
      case 0x50: this.push(this.persistent(this.line())); return; // P PERSID
      case 0x82: case 0x83: case 0x84: throw this.fail('EXT1/EXT2/EXT4 (the copyreg extension registry), which torch.save never writes');
      case 0x97: case 0x98: throw this.fail('out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER), which torch.save never writes');
      default:
        throw this.fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}${op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : ''}; this is not a pickle llamats can read (corrupt, or a newer protocol?)`);
    }
  }

  /** The allowlist check: the only place a name becomes a value. */
  private global(module: string, name: string): PickleGlobal {
    const q = `${module}.${name}`;
    const g = this.opts.globals.get(q);
    if (g) return g;
    const allowed = [...this.opts.globals.keys()].join(', ');
    throw new UnsafePickleError(
      this.path,
      `${this.what} refers to ${q} (offset ${this.opStart}), which is not on llamats' allowlist (${allowed}); ` +
        'refusing to load it: in Python, loading this file would run that code. Re-save the weights as plain tensors or safetensors.',
      q,
    );
  }

  private call(f: unknown, args: unknown[]): unknown {
    if (!isGlobal(f) || !f.call) throw this.fail(`a call to ${isGlobal(f) ? f.qualifiedName : describe(f)}, which llamats does not know how to call`);
    try {
      return f.call(args);
    } catch (e) {
      if (e instanceof FileFormatError) throw e;
      throw this.fail(`${f.qualifiedName}(${args.length} arguments): ${(e as Error).message}`);
    }
  }

  /** BUILD (obj.__setstate__): only a dict's attributes (OrderedDict._metadata), which are ignored. */
  private build(state: unknown, obj: unknown): void {
    if (obj instanceof Map && (state === null || state instanceof Map)) return;
    throw this.fail(`BUILD (setting the state of ${describe(obj)}), which llamats does not support`);
  }

  private persistent(pid: unknown): unknown {
    if (!this.opts.persistentLoad) throw this.fail('a persistent id, which this kind of pickle may not contain');
    try {
      return this.opts.persistentLoad(pid);
    } catch (e) {
      if (e instanceof FileFormatError) throw e;
      throw this.fail(`persistent id ${describe(pid)}: ${(e as Error).message}`);
    }
  }

  private setItems(d: unknown, items: unknown[]): void {
    if (!(d instanceof Map)) throw this.fail(`setting items on ${describe(d)}, which is not a dict`);
    if (items.length % 2 !== 0) throw this.fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  }

  private list(x: unknown): unknown[] {
    if (!Array.isArray(x)) throw this.fail(`appending to ${describe(x)}, which is not a list`);
    return x;
  }

  private tuple(x: unknown): unknown[] {
    if (!Array.isArray(x)) throw this.fail(`call arguments that are ${describe(x)}, not a tuple`);
    return x;
  }

  private put(i: number): void {
    if (this.stack.length === 0) throw this.fail('PUT with an empty stack');
    this.memo.set(i, this.top());
  }

  private get(i: number): unknown {
    if (!this.memo.has(i)) throw this.fail(`GET of memo slot ${i}, which was never PUT`);
    return this.memo.get(i);
  }

  /** Not `this.stack.push(x)`: popMark() in `x` replaces this.stack after that was read. */
  private push(v: unknown): void {
    this.stack.push(v);
  }

  private pop(): unknown {
    if (this.stack.length === 0) throw this.fail('an opcode needs a value, but the stack is empty');
    return this.stack.pop();
  }

  private top(): unknown {
    if (this.stack.length === 0) throw this.fail('an opcode needs a value, but the stack is empty');
    return this.stack[this.stack.length - 1];
  }

  private popMark(): unknown[] {
    const outer = this.marks.pop();
    if (!outer) throw this.fail('an opcode needs a MARK, but there is none');
    const items = this.stack;
    this.stack = outer;
    return items;
  }

  // --- reading arguments (all bounds-checked against the remaining bytes)

  private need(n: number, what: string): void {
    if (n > this.bytes.byteLength - this.pos) {
      throw this.fail(`${what} needs ${n} bytes, but only ${this.bytes.byteLength - this.pos} remain (truncated?)`);
    }
  }
  private take(n: number): number {
    this.need(n, this.pos === this.opStart ? 'the next opcode' : `opcode 0x${this.bytes[this.opStart]!.toString(16)}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  private u8(): number {
    return this.view.getUint8(this.take(1));
  }
  private u32(): number {
    return this.view.getUint32(this.take(4), true);
  }
  private u64(): number {
    const at = this.take(8);
    const hi = this.view.getUint32(at + 4, true);
    if (hi >= 0x200000) throw this.fail('a 64-bit length above 2^53');
    return hi * 0x100000000 + this.view.getUint32(at, true);
  }
  private raw(n: number): Uint8Array {
    const at = this.take(n);
    return this.bytes.slice(at, at + n);
  }
  private utf8(n: number): string {
    const at = this.take(n);
    return new TextDecoder('utf-8').decode(this.bytes.subarray(at, at + n));
  }
  private latin1(n: number): string {
    const at = this.take(n);
    return new TextDecoder('latin1').decode(this.bytes.subarray(at, at + n));
  }
  /** Little-endian two's-complement integer of n bytes (LONG1 / LONG4). */
  private long(n: number): number | bigint {
    const at = this.take(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.bytes[at + i]!);
    if (this.bytes[at + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
    return narrow(v);
  }
  /** A protocol-0 argument: text up to '\n'. */
  private line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail('a text argument without its terminating newline (truncated?)');
    const t = new TextDecoder('latin1').decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return t;
  }
  private int(t: string): number | bigint {
    if (!/^[+-]?\d+$/.test(t)) throw this.fail(`${JSON.stringify(t.slice(0, 40))} where an integer was expected`);
    return narrow(BigInt(t));
  }
  /** A protocol-0 memo index. */
  private index(t: string): number {
    const i = this.int(t);
    if (typeof i !== 'number' || i < 0) throw this.fail(`memo index ${JSON.stringify(t.slice(0, 40))}`);
    return i;
  }
  /** Protocol-0 FLOAT: Python's repr of a float. */
  private float(t: string): number {
    const f = /^[+-]?inf$/i.test(t) ? (t[0] === '-' ? -Infinity : Infinity) : Number(t);
    if (t.trim() === '' || (Number.isNaN(f) && !/^[+-]?nan$/i.test(t))) throw this.fail(`${JSON.stringify(t.slice(0, 40))} where a float was expected`);
    return f;
  }
  /** Protocol-0 STRING: a Python repr in quotes; simple escapes only. */
  private quoted(t: string): string {
    const q = t[0];
    if (t.length < 2 || (q !== "'" && q !== '"') || t[t.length - 1] !== q) throw this.fail('STRING argument not in quotes');
    return t.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|[\\'"nrt])/g, (_, e: string) =>
      e[0] === 'x' ? String.fromCharCode(parseInt(e.slice(1), 16)) : ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[e] ?? e,
    );
  }

  private fail(message: string): FileFormatError {
    return new FileFormatError(this.path, `${this.what}: ${message} (at offset ${this.opStart})`);
  }
}

function isGlobal(x: unknown): x is PickleGlobal {
  return typeof x === 'object' && x !== null && typeof (x as PickleGlobal).qualifiedName === 'string';
}

/** A number when exact, else a bigint. */
function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Python's raw-unicode-escape: only \uXXXX and \UXXXXXXXX are escapes; bytes are latin-1.
 * Undefined for an escape above U+10FFFF (Python refuses it too).
 */
function rawUnicodeEscape(t: string): string | undefined {
  let bad = false;
  const s = t.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, u?: string, U?: string) => {
    const cp = parseInt((u ?? U)!, 16);
    if (cp > 0x10ffff) bad = true;
    return bad ? '' : String.fromCodePoint(cp);
  });
  return bad ? undefined : s;
}

/** A short description of a value for messages (never recursive). */
export function describe(x: unknown): string {
  if (x === null) return 'None';
  if (Array.isArray(x)) return `a tuple/list of ${x.length}`;
  if (x instanceof Map) return `a dict of ${x.size}`;
  if (x instanceof Uint8Array) return `${x.byteLength} bytes`;
  if (typeof x === 'string') return JSON.stringify(x.length > 60 ? x.slice(0, 60) + '…' : x);
  if (isGlobal(x)) return x.qualifiedName;
  if (typeof x === 'object') return 'an object';
  return String(x);
}
