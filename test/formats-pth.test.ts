/**
 * PyTorch checkpoints (src/formats/pth.ts, zip.ts, pickle.ts): the stories260K Meta files checked
 * against llama2.c's stories260K.bin (an independent source of the same weights), hand-built
 * archives and pickles for the edge cases, and bad input that must be refused while parsing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { FileFormatError } from '../src/errors.js';
import { openPth, type PthFile } from '../src/formats/pth.js';
import { UnsafePickleError, unpickle } from '../src/formats/pickle.js';
import { ZipReader } from '../src/formats/zip.js';
import { seededRandom, shared, tempDir } from './helpers.js';

const DIM = 64;
const HIDDEN = 172;
const N_LAYERS = 5;
const VOCAB = 512;
const KV = 32;

/** Every tensor of the MP=1 Meta checkpoint, with its shape, as the README lists them. */
function metaShapes(): Map<string, number[]> {
  const m = new Map<string, number[]>([['tok_embeddings.weight', [VOCAB, DIM]]]);
  for (let i = 0; i < N_LAYERS; i++) {
    const l = `layers.${i}.`;
    m.set(l + 'attention.wq.weight', [DIM, DIM]);
    m.set(l + 'attention.wk.weight', [KV, DIM]);
    m.set(l + 'attention.wv.weight', [KV, DIM]);
    m.set(l + 'attention.wo.weight', [DIM, DIM]);
    m.set(l + 'feed_forward.w1.weight', [HIDDEN, DIM]);
    m.set(l + 'feed_forward.w2.weight', [DIM, HIDDEN]);
    m.set(l + 'feed_forward.w3.weight', [HIDDEN, DIM]);
    m.set(l + 'attention_norm.weight', [DIM]);
    m.set(l + 'ffn_norm.weight', [DIM]);
  }
  m.set('norm.weight', [DIM]);
  m.set('output.weight', [VOCAB, DIM]);
  m.set('rope.freqs', [4]);
  return m;
}

function withPth<T>(file: string, f: (p: PthFile) => T): T {
  const p = openPth(file);
  try {
    return f(p);
  } finally {
    p.close();
  }
}

const f32 = (b: Uint8Array) => new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
const u16 = (b: Uint8Array) => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);

test('meta-f32: every key with its shape, F32, bytes equal to stories260K.bin (llama2.c v0)', (t) => {
  const file = shared(t, 'models/stories260K/meta-f32/consolidated.00.pth');
  const bin = shared(t, 'models/stories260K.bin');
  if (!file || !bin) return;
  const v0 = new Uint8Array(fs.readFileSync(bin));
  withPth(file, (p) => {
    const want = metaShapes();
    assert.deepEqual([...p.tensors.keys()].sort(), [...want.keys()].sort());
    for (const [name, shape] of want) {
      const info = p.tensors.get(name)!;
      assert.deepEqual(info.shape, shape, name);
      assert.equal(info.dtype, 'F32', name);
      assert.equal(info.byteLength, shape.reduce((a, b) => a * b) * 4, name);
    }
    // v0: 28-byte header, token embedding (512, 64), rms_att (5, 64), wq (5, 64, 64), ...
    const emb = p.read('tok_embeddings.weight');
    assert.equal(emb.byteOffset, 0);
    assert.equal(emb.buffer.byteLength, emb.byteLength);
    assert.deepEqual(emb, v0.subarray(28, 28 + VOCAB * DIM * 4));
    const wqAt = 28 + VOCAB * DIM * 4 + N_LAYERS * DIM * 4;
    assert.deepEqual(p.read('layers.0.attention.wq.weight'), v0.subarray(wqAt, wqAt + DIM * DIM * 4));
    assert.deepEqual(p.read('output.weight'), emb); // a separate copy of the tied embedding
    assert.deepEqual([...f32(p.read('rope.freqs'))], [1, 0.1, 0.01, 0.001].map(Math.fround));
    assert.throws(() => p.read('nope'), (e: unknown) => e instanceof FileFormatError && /no tensor named "nope"/.test(e.message));
  });
});

/** float32 → bfloat16 bits, round to nearest even (what tensor.to(torch.bfloat16) does; no NaNs here). */
function bf16Rne(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  return Uint16Array.from(bits, (b) => (b + 0x7fff + ((b >>> 16) & 1)) >>> 16);
}
const bf16ToF32 = (h: Uint16Array) => new Float32Array(Uint32Array.from(h, (v) => v << 16).buffer);

test('meta-bf16: BF16 tensors equal round-to-nearest-even of the f32 checkpoint', (t) => {
  const file = shared(t, 'models/stories260K/meta-bf16/consolidated.00.pth');
  const f32File = shared(t, 'models/stories260K/meta-f32/consolidated.00.pth');
  if (!file || !f32File) return;
  const ref = openPth(f32File);
  try {
    withPth(file, (p) => {
      assert.deepEqual([...p.tensors.keys()].sort(), [...metaShapes().keys()].sort());
      for (const [name, info] of p.tensors) {
        assert.equal(info.dtype, 'BF16', name);
        assert.deepEqual(info.shape, ref.tensors.get(name)!.shape, name);
        const got = bf16ToF32(u16(p.read(name)));
        assert.deepEqual(got, bf16ToF32(bf16Rne(f32(ref.read(name)))), name);
      }
    });
  } finally {
    ref.close();
  }
});

test('meta-mp2: both shards open, with the halves the README lists, and join back to meta-bf16', (t) => {
  const files = [0, 1].map((r) => shared(t, `models/stories260K/meta-mp2/consolidated.0${r}.pth`));
  const bf16File = shared(t, 'models/stories260K/meta-bf16/consolidated.00.pth');
  if (!files[0] || !files[1] || !bf16File) return;
  const whole = openPth(bf16File);
  const shards = files.map((f) => openPth(f!));
  try {
    // The dimension each tensor is split along (fairscale): -1 = copied whole.
    const splitDim = (name: string) =>
      name === 'tok_embeddings.weight' || /\.(wo|w2)\.weight$/.test(name) ? 1 : /\.(wq|wk|wv|w1|w3)\.weight$|^output\.weight$/.test(name) ? 0 : -1;
    for (const [name, info] of whole.tensors) {
      const d = splitDim(name);
      const half = [...info.shape];
      if (d >= 0) half[d]! /= 2;
      const parts = shards.map((s) => {
        const i = s.tensors.get(name)!;
        assert.equal(i.dtype, 'BF16', name);
        assert.deepEqual(i.shape, half, name);
        return u16(s.read(name));
      });
      const want = u16(whole.read(name));
      if (d < 0) {
        assert.deepEqual(parts[0], want, name);
        assert.deepEqual(parts[1], want, name);
      } else {
        const [rows, cols] = half as [number, number];
        const joined = new Uint16Array(want.length);
        for (let r = 0; r < 2; r++) {
          for (let i = 0; i < rows; i++) {
            const dst = d === 0 ? (r * rows + i) * cols : i * 2 * cols + r * cols;
            joined.set(parts[r]!.subarray(i * cols, (i + 1) * cols), dst);
          }
        }
        assert.deepEqual(joined, want, name);
      }
    }
    assert.deepEqual(shards[0]!.tensors.get('output.weight')!.shape, [256, 64]);
    assert.deepEqual(shards[1]!.tensors.get('layers.4.feed_forward.w2.weight')!.shape, [64, 86]);
  } finally {
    whole.close();
    for (const s of shards) s.close();
  }
});

// ---------------------------------------------------------------------------------------------
// A tiny zip writer (stored or deflated entries; optional ZIP64 records; holes for huge entries)

interface ZipIn {
  name: string;
  data?: Uint8Array;
  /** Without data: an entry of this many zero bytes, left as a hole in a sparse file. */
  size?: number;
  deflate?: boolean;
  /** Size the central directory claims, when it must lie. */
  claimedSize?: number;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function writeZip(file: string, entries: ZipIn[], zip64 = false): void {
  const fd = fs.openSync(file, 'w');
  let pos = 0;
  const put = (b: Uint8Array) => {
    fs.writeSync(fd, b, 0, b.byteLength, pos);
    pos += b.byteLength;
  };
  const rec = (n: number) => {
    const b = new Uint8Array(n);
    return { b, v: new DataView(b.buffer) };
  };
  const setU64 = (v: DataView, at: number, x: number) => {
    v.setUint32(at, x % 2 ** 32, true);
    v.setUint32(at + 4, Math.floor(x / 2 ** 32), true);
  };
  const central: Uint8Array[] = [];
  for (const e of entries) {
    const name = new TextEncoder().encode(e.name);
    const raw = e.data ?? new Uint8Array(0);
    const data = e.deflate ? new Uint8Array(zlib.deflateRawSync(raw)) : raw;
    const usize = e.claimedSize ?? e.data?.byteLength ?? e.size!;
    const csize = e.deflate ? data.byteLength : usize;
    const crc = e.data ? crc32(raw) : 0;
    const offset = pos;
    // Local header: sizes left 0 with flag bit 3, as torch's writer does; 4 bytes of padding extra.
    const { b: lh, v: lv } = rec(30 + name.length + 8);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(6, 8, true);
    lv.setUint16(8, e.deflate ? 8 : 0, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 8, true);
    lh.set(name, 30);
    lv.setUint16(30 + name.length, 0x4246, true); // "FB" padding field, like torch
    lv.setUint16(32 + name.length, 4, true);
    put(lh);
    if (e.data) put(data);
    else pos += e.size!; // a hole
    const extra = zip64 ? 28 : 0;
    const { b: ch, v: cv } = rec(46 + name.length + extra);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(8, 8, true);
    cv.setUint16(10, e.deflate ? 8 : 0, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, zip64 ? 0xffffffff : csize, true);
    cv.setUint32(24, zip64 ? 0xffffffff : usize, true);
    cv.setUint16(28, name.length, true);
    cv.setUint16(30, extra, true);
    cv.setUint32(42, zip64 ? 0xffffffff : offset, true);
    ch.set(name, 46);
    if (zip64) {
      const x = 46 + name.length;
      cv.setUint16(x, 1, true);
      cv.setUint16(x + 2, 24, true);
      setU64(cv, x + 4, usize); // order: uncompressed, compressed, offset
      setU64(cv, x + 12, csize);
      setU64(cv, x + 20, offset);
    }
    central.push(ch);
  }
  const cdOffset = pos;
  for (const c of central) put(c);
  const cdSize = pos - cdOffset;
  if (zip64) {
    const rec64 = pos;
    const { b: r, v } = rec(56);
    v.setUint32(0, 0x06064b50, true);
    setU64(v, 4, 44);
    setU64(v, 24, entries.length);
    setU64(v, 32, entries.length);
    setU64(v, 40, cdSize);
    setU64(v, 48, cdOffset);
    put(r);
    const { b: l, v: lv } = rec(20);
    lv.setUint32(0, 0x07064b50, true);
    setU64(lv, 8, rec64);
    lv.setUint32(16, 1, true);
    put(l);
  }
  const { b: eocd, v } = rec(22);
  v.setUint32(0, 0x06054b50, true);
  v.setUint16(8, zip64 ? 0xffff : entries.length, true);
  v.setUint16(10, zip64 ? 0xffff : entries.length, true);
  v.setUint32(12, zip64 ? 0xffffffff : cdSize, true);
  v.setUint32(16, zip64 ? 0xffffffff : cdOffset, true);
  put(eocd);
  fs.closeSync(fd);
}

// ---------------------------------------------------------------------------------------------
// A tiny pickle writer: torch.save's protocol-2 opcodes, enough to hand-build state dicts.

const enc = new TextEncoder();
const OP = { PROTO2: [0x80, 2], MARK: 0x28, TUPLE: 0x74, REDUCE: 0x52, BINPERSID: 0x51, EMPTY_DICT: 0x7d, EMPTY_TUPLE: 0x29, SETITEMS: 0x75, STOP: 0x2e, NEWFALSE: 0x89 };
const pStr = (s: string) => {
  const b = enc.encode(s);
  return [0x58, b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b];
};
const pInt = (n: number) => (n < 256 ? [0x4b, n] : [0x4a, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff]);
const pGlobal = (module: string, name: string) => [0x63, ...enc.encode(`${module}\n${name}\n`)];

interface TensorSpec {
  key: string;
  type?: string;
  numel: number;
  offset?: number;
  shape: number[];
  stride?: number[];
}
function pTensor(s: TensorSpec): number[] {
  const stride = s.stride ?? s.shape.map((_, i) => s.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  return [
    ...pGlobal('torch._utils', '_rebuild_tensor_v2'), OP.MARK,
    OP.MARK, ...pStr('storage'), ...pGlobal('torch', s.type ?? 'FloatStorage'), ...pStr(s.key), ...pStr('cpu'), ...pInt(s.numel), OP.TUPLE, OP.BINPERSID,
    ...pInt(s.offset ?? 0), OP.MARK, ...s.shape.flatMap(pInt), OP.TUPLE, OP.MARK, ...stride.flatMap(pInt), OP.TUPLE, OP.NEWFALSE,
    ...pGlobal('collections', 'OrderedDict'), OP.EMPTY_TUPLE, OP.REDUCE,
    OP.TUPLE, OP.REDUCE,
  ];
}
/** A pickled dict of name → value, where each value is already a list of opcode bytes. */
function pDict(items: Array<[string, number[]]>): number[] {
  return [OP.EMPTY_DICT, OP.MARK, ...items.flatMap(([k, v]) => [...pStr(k), ...v]), OP.SETITEMS];
}
const pickleOf = (body: number[]) => new Uint8Array([...OP.PROTO2, ...body, OP.STOP]);

/** Write a torch.save-like archive: archive/data.pkl, archive/data/<key> for each storage. */
function writePth(file: string, pkl: Uint8Array, storages: Record<string, Uint8Array>, zip64 = false): string {
  writeZip(file, [
    { name: 'archive/data.pkl', data: pkl },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
    { name: 'archive/version', data: enc.encode('3\n') },
  ], zip64);
  return file;
}
const f32Bytes = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

/** Asserts a FileFormatError (or subclass) for `file` whose message matches `re`. */
function throwsFormat(fn: () => unknown, file: string, re: RegExp, cls: Function = FileFormatError): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    assert.equal((e as FileFormatError).path, file);
    assert.ok((e as Error).message.startsWith(file), (e as Error).message);
    assert.match((e as Error).message, re);
    return true;
  });
}

test('hand-built archive: storage offsets, shared storages, transposed strides, nested dicts, deflate', (t) => {
  const dir = tempDir(t);
  const pkl = pickleOf(pDict([
    ['m', pTensor({ key: '0', numel: 6, shape: [2, 3] })],
    ['slice', pTensor({ key: '0', numel: 6, offset: 2, shape: [3] })], // shares storage 0
    ['mT', pTensor({ key: '0', numel: 6, shape: [3, 2], stride: [1, 3] })], // m transposed
    ['col', pTensor({ key: '0', numel: 6, offset: 1, shape: [2, 1], stride: [3, 7] })], // size-1 dim: any stride
    ['empty', pTensor({ key: '1', numel: 0, shape: [0, 4] })],
    ['model', pDict([['h', pTensor({ key: '2', type: 'HalfStorage', numel: 2, shape: [2] })], ['epoch', pInt(3)]])],
  ]));
  const file = writePth(path.join(dir, 'a.pth'), pkl, { 0: f32Bytes([0, 1, 2, 3, 4, 5]), 1: new Uint8Array(0), 2: new Uint8Array([0, 0x3c, 0, 0xc0]) });
  withPth(file, (p) => {
    assert.deepEqual([...p.tensors.keys()], ['m', 'slice', 'mT', 'col', 'empty', 'model.h']);
    assert.deepEqual([...f32(p.read('m'))], [0, 1, 2, 3, 4, 5]);
    assert.deepEqual([...f32(p.read('slice'))], [2, 3, 4]);
    assert.deepEqual([...f32(p.read('mT'))], [0, 3, 1, 4, 2, 5]);
    assert.deepEqual([...f32(p.read('col'))], [1, 4]);
    assert.equal(p.read('empty').byteLength, 0);
    assert.deepEqual(p.tensors.get('model.h'), { name: 'model.h', dtype: 'F16', shape: [2], byteLength: 4 });
    assert.deepEqual([...p.read('model.h')], [0, 0x3c, 0, 0xc0]); // 1.0, -2.0 in float16
  });
  // The same data.pkl deflated, and the zip reader's ranges.
  const z = path.join(dir, 'deflated.zip');
  const big = new Uint8Array(100_000).map((_, i) => (i * 7) % 251);
  writeZip(z, [{ name: 'archive/data.pkl', data: pkl, deflate: true }, { name: 'x', data: big, deflate: true }, { name: 'y', data: big }]);
  const zr = ZipReader.open(z);
  try {
    assert.deepEqual(zr.read('archive/data.pkl'), pkl);
    assert.deepEqual(zr.read('x', 1000, 10), big.slice(1000, 1010));
    assert.deepEqual(zr.read('y', 99_990), big.slice(99_990));
    assert.equal(zr.read('y', 5, 3).byteOffset, 0);
  } finally {
    zr.close();
  }
});

test('ZIP64 records: a small archive with zip64 extra fields and end records', (t) => {
  const dir = tempDir(t);
  const pkl = pickleOf(pDict([['w', pTensor({ key: '0', numel: 3, shape: [3] })]]));
  const file = writePth(path.join(dir, 'z64.pth'), pkl, { 0: f32Bytes([1.5, -2, 3]) }, true);
  withPth(file, (p) => assert.deepEqual([...f32(p.read('w'))], [1.5, -2, 3]));
});

test('ZIP64 beyond 4 GiB: an entry larger than 4 GiB and one stored after it (sparse file)', (t) => {
  const dir = tempDir(t);
  // Only where holes cost no disk: probe with a 1 GiB hole first.
  const probe = path.join(dir, 'probe');
  const fd = fs.openSync(probe, 'w');
  fs.writeSync(fd, new Uint8Array(1), 0, 1, 2 ** 30);
  fs.closeSync(fd);
  const sparse = fs.statSync(probe).blocks * 512 < 2 ** 20;
  fs.rmSync(probe);
  if (!sparse) return t.skip('the temporary directory does not support sparse files');
  const file = path.join(dir, 'big.zip');
  const hole = 2 ** 32 + 12345; // > 4 GiB of zeros
  const tail = enc.encode('after the hole');
  writeZip(file, [{ name: 'big', size: hole }, { name: 'small', data: tail }], true);
  const zr = ZipReader.open(file);
  try {
    assert.equal(zr.entries.get('big')!.uncompressedSize, hole);
    assert.ok(zr.entries.get('small')!.localHeaderOffset > 2 ** 32);
    assert.deepEqual(zr.read('small'), tail);
    assert.deepEqual(zr.read('big', hole - 16, 16), new Uint8Array(16));
  } finally {
    zr.close();
  }
});

test('pickle: values of protocols 0 and 4 (as Python 3.11 wrote them)', () => {
  const none = { globals: new Map() };
  const p4 = Buffer.from(
    '8004956c000000000000007d94288c0161945d94284b014afeffffff47400c0000000000004e88898c05c3a9e282ac9443027879944b014b0286948a090000000000000000404ad4feffff4a701101008a060000000000ff294b0785944b014b024b038794658c0162947d948c016e948c01789473752e',
    'hex',
  );
  assert.deepEqual(
    unpickle(new Uint8Array(p4), 'p4', none),
    new Map<string, unknown>([
      ['a', [1, -2, 3.5, null, true, false, 'é€', new Uint8Array([0x78, 0x79]), [1, 2], 2n ** 70n, -300, 70000, -(2 ** 40), [], [7], [1, 2, 3]]],
      ['b', new Map([['n', 'x']])],
    ]),
  );
  const p0 = Buffer.from(
    '286470300a56610a70310a286c70320a49310a61492d320a6146332e350a614e614930310a6156e95c75323061630a70330a612849310a49320a7470340a614c313138303539313632303731373431313330333432344c0a61492d3330300a614937303030300a617356620a70350a286470360a566e0a70370a56780a70380a73732e',
    'hex',
  );
  assert.deepEqual(
    unpickle(new Uint8Array(p0), 'p0', none),
    new Map<string, unknown>([
      ['a', [1, -2, 3.5, null, true, 'é€', [1, 2], 2n ** 70n, -300, 70000]],
      ['b', new Map([['n', 'x']])],
    ]),
  );
});

test('bad input: truncated, not a zip, legacy format, lying central directory', (t) => {
  const dir = tempDir(t);
  const rnd = seededRandom(7);
  const junk = path.join(dir, 'junk.pth');
  fs.writeFileSync(junk, new Uint8Array(5000).map(() => Math.floor(rnd() * 256)));
  throwsFormat(() => openPth(junk), junk, /not a zip archive: no end-of-central-directory record .*truncated/);
  const legacy = path.join(dir, 'legacy.pth');
  fs.writeFileSync(legacy, new Uint8Array([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]));
  throwsFormat(() => openPth(legacy), legacy, /legacy \(torch < 1\.6\)/);
  const lying = path.join(dir, 'lying.zip');
  writeZip(lying, [{ name: 'archive/data/0', data: new Uint8Array(10), claimedSize: 1_000_000 }]);
  throwsFormat(() => ZipReader.open(lying), lying, /entry "archive\/data\/0" extends past the end of the file data \(truncated\?\)/);
  const missing = path.join(dir, 'nopkl.zip');
  writeZip(missing, [{ name: 'x/y', data: new Uint8Array(1) }]);
  throwsFormat(() => openPth(missing), missing, /not a torch\.save checkpoint: expected one <folder>\/data\.pkl entry, found 0/);

  const real = shared(t, 'models/stories260K/meta-f32/consolidated.00.pth');
  if (!real) return;
  const bytes = fs.readFileSync(real);
  const cut = path.join(dir, 'cut.pth');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length >> 1));
  throwsFormat(() => openPth(cut), cut, /not a zip archive: no end-of-central-directory record in its last 65557 bytes \(truncated/);
});

test('bad input: a pickle that names os.system is refused while parsing, nothing runs', (t) => {
  const dir = tempDir(t);
  const marker = path.join(dir, 'pwned');
  // GLOBAL 'os\nsystem\n', MARK, BINUNICODE 'touch <marker>', TUPLE, REDUCE: os.system('touch ...') in Python.
  const evil = pickleOf([...pGlobal('os', 'system'), OP.MARK, ...pStr(`touch ${marker}`), OP.TUPLE, OP.REDUCE]);
  const file = writePth(path.join(dir, 'evil.pth'), evil, {});
  throwsFormat(() => openPth(file), file, /archive\/data\.pkl refers to os\.system \(offset 2\), which is not on llamats' allowlist \(collections\.OrderedDict, .*torch\.FloatStorage.*\); refusing to load it/, UnsafePickleError);
  assert.equal(fs.existsSync(marker), false);
  // The same hidden inside a tensor's arguments, via protocol 4's STACK_GLOBAL.
  const hidden = pickleOf(pDict([['w', [0x8c, 8, ...enc.encode('builtins'), 0x8c, 4, ...enc.encode('eval'), 0x93, ...pStr('1+1'), 0x85, OP.REDUCE]]]));
  const file2 = writePth(path.join(dir, 'evil2.pth'), hidden, {});
  assert.throws(() => openPth(file2), (e: unknown) => e instanceof UnsafePickleError && e.global === 'builtins.eval' && /refers to builtins\.eval/.test(e.message));
});

test('bad input: unknown opcode, oversized lengths, broken structure', (t) => {
  const dir = tempDir(t);
  const cases: Array<[string, number[], RegExp]> = [
    ['opcode', [...OP.PROTO2, OP.EMPTY_DICT, 0xff, OP.STOP], /unknown opcode 0xff; .*\(at offset 3\)/],
    ['bigstr', [...OP.PROTO2, 0x58, 0xff, 0xff, 0xff, 0xff, 0x41], /needs 4294967295 bytes, but only 1 remain \(truncated\?\) \(at offset 2\)/],
    ['nostop', [...OP.PROTO2, OP.EMPTY_DICT], /needs 1 bytes, but only 0 remain/],
    ['empty', [...OP.PROTO2, OP.STOP], /the stack is empty/],
    ['get', [...OP.PROTO2, 0x6a, 0xff, 0xff, 0xff, 0xff, OP.STOP], /GET of memo slot 4294967295, which was never PUT/],
    ['list', [...OP.PROTO2, ...pInt(1), ...pInt(2), 0x61, OP.STOP], /appending to 1, which is not a list/],
    ['notdict', [...OP.PROTO2, ...pStr('hi'), OP.STOP], /holds "hi"; expected a dict of name → tensor/],
  ];
  for (const [name, body, re] of cases) {
    const file = writePth(path.join(dir, `${name}.pth`), new Uint8Array(body), {});
    throwsFormat(() => openPth(file), file, re);
  }
});

test('bad input: a missing storage entry, and a shape larger than its storage', (t) => {
  const dir = tempDir(t);
  const six = f32Bytes([0, 1, 2, 3, 4, 5]);
  const missing = writePth(path.join(dir, 'missing.pth'), pickleOf(pDict([['w', pTensor({ key: '7', numel: 6, shape: [6] })]])), { 0: six });
  throwsFormat(() => openPth(missing), missing, /refers to storage "7", but the archive has no entry archive\/data\/7/);
  const big = writePth(path.join(dir, 'big.pth'), pickleOf(pDict([['w', pTensor({ key: '0', numel: 6, shape: [4, 4] })]])), { 0: six });
  throwsFormat(() => openPth(big), big, /tensor "w" \(F32 \[4,4\], stride \[4,1\], offset 0\) needs 64 bytes of storage archive\/data\/0, but the storage has 24/);
  const offset = writePth(path.join(dir, 'offset.pth'), pickleOf(pDict([['w', pTensor({ key: '0', numel: 6, offset: 5, shape: [2] })]])), { 0: six });
  throwsFormat(() => openPth(offset), offset, /needs 28 bytes of storage archive\/data\/0, but the storage has 24/);
  const numel = writePth(path.join(dir, 'numel.pth'), pickleOf(pDict([['w', pTensor({ key: '0', numel: 60, shape: [6] })]])), { 0: six });
  throwsFormat(() => openPth(numel), numel, /storage archive\/data\/0 has 24 bytes, but data\.pkl says it holds 60 F32 elements \(240 bytes\)/);
});
