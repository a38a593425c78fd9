/**
 * PyTorch checkpoints written by `torch.save` (torch >= 1.6): Meta's `consolidated.NN.pth`,
 * Hugging Face's `pytorch_model.bin`. Read safely (no Python code is ever run) and one tensor
 * at a time (a 13 GB shard needs only the bytes of the tensor being read).
 *
 * Layout. The file is a zip archive (src/formats/zip.ts; torch writes stored, 64-byte-aligned
 * entries and ZIP64 end records). All entries live in one folder whose name varies
 * (`consolidated.00/`, `archive/`, ...):
 *   <prefix>/data.pkl    the object that was saved, as a pickle (protocol 2 by default)
 *   <prefix>/data/<key>  one entry per storage: its raw bytes, little-endian, element after element
 *   <prefix>/version     the format version as text ("3\n"); torch >= 2.1 also writes
 *   <prefix>/byteorder   "little" or "big", and `.data/serialization_id`.
 *
 * data.pkl. The saved object is a dict (an OrderedDict for `model.state_dict()`) of name → tensor.
 * Each tensor is pickled as a call (GLOBAL + args tuple + REDUCE):
 *   torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 *                                   backward_hooks[, metadata])
 *     storage_offset, size (the shape), stride: in elements; backward_hooks: an empty OrderedDict.
 *   nn.Parameter objects add a wrapper: torch._utils._rebuild_parameter(tensor, requires_grad, hooks).
 * The storage is a persistent id (BINPERSID), a tuple that points into the archive:
 *   ('storage', torch.<Type>Storage, key, location, numel)
 *     <Type>Storage gives the dtype (FloatStorage = float32, BFloat16Storage = bfloat16, ...),
 *     key names the entry <prefix>/data/<key>, location is the device it was saved from ("cpu",
 *     "cuda:0"; ignored), numel is the storage's size in elements. Several tensors may share one
 *     storage (tied weights, views), each at its own storage_offset.
 * Meta's files hold one storage per tensor, contiguous, at offset 0.
 *
 * What this reader accepts: the globals on ALLOWLIST below, nothing else (src/formats/pickle.ts).
 * A top-level dict whose values are tensors; nested dicts ({"model": {...}}, {"state_dict": ...})
 * are flattened with dotted names ("model.tok_embeddings.weight"), and values that are not
 * tensors (ints, strings, lists: an epoch count, hyperparameters) are skipped. Non-contiguous
 * tensors (any strides) are copied into row-major order by `read`. Big-endian archives and the
 * legacy pre-1.6 format (a bare pickle stream, not a zip) are refused with a message.
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../errors.js';
import { describe, unpickle, type PickleGlobal } from './pickle.js';
import { ZipReader } from './zip.js';

export type PthDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export interface PthTensorInfo {
  /** Name in the checkpoint, nested dict keys joined with '.'. */
  readonly name: string;
  readonly dtype: PthDtype;
  /** Shape in elements, outermost first (Linear weights are [out, in]). */
  readonly shape: number[];
  /** Bytes `read` returns: numel × element size. */
  readonly byteLength: number;
}

export interface PthFile {
  readonly path: string;
  /** Every tensor, in the order data.pkl lists them. */
  readonly tensors: Map<string, PthTensorInfo>;
  /** One tensor's bytes, row-major, little-endian, in a fresh buffer (byteOffset 0). */
  read(name: string): Uint8Array;
  close(): void;
}

/** A storage type global (torch.FloatStorage, ...): data only, never called. */
interface StorageType extends PickleGlobal {
  readonly dtype: PthDtype;
  readonly elementSize: number;
}

/** What a persistent id resolves to: one `data/<key>` entry of the archive. */
interface StorageRef {
  readonly entry: string;
  readonly type: StorageType;
  readonly byteLength: number;
}

/** What `_rebuild_tensor_v2` returns: a view of a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

const STORAGE_TYPES: Array<[name: string, dtype: PthDtype, elementSize: number]> = [
  ['DoubleStorage', 'F64', 8],
  ['FloatStorage', 'F32', 4],
  ['HalfStorage', 'F16', 2],
  ['BFloat16Storage', 'BF16', 2],
  ['LongStorage', 'I64', 8],
  ['IntStorage', 'I32', 4],
  ['ShortStorage', 'I16', 2],
  ['CharStorage', 'I8', 1],
  ['ByteStorage', 'U8', 1],
  ['BoolStorage', 'BOOL', 1],
];

/** The only globals a checkpoint may name, each mapped to a function that builds data. */
const ALLOWLIST: ReadonlyMap<string, PickleGlobal> = new Map<string, PickleGlobal>([
  // OrderedDict() → a Map (state_dict()s and backward_hooks are OrderedDicts).
  ['collections.OrderedDict', { qualifiedName: 'collections.OrderedDict', call: orderedDict }],
  ['torch._utils._rebuild_tensor_v2', { qualifiedName: 'torch._utils._rebuild_tensor_v2', call: rebuildTensor }],
  // nn.Parameter(tensor): the tensor itself.
  ['torch._utils._rebuild_parameter', { qualifiedName: 'torch._utils._rebuild_parameter', call: (a) => tensorArg(a[0]) }],
  ['torch._utils._rebuild_parameter_with_state', { qualifiedName: 'torch._utils._rebuild_parameter_with_state', call: (a) => tensorArg(a[0]) }],
  ...STORAGE_TYPES.map(([n, dtype, elementSize]): [string, StorageType] => [`torch.${n}`, { qualifiedName: `torch.${n}`, dtype, elementSize }]),
]);

/** Open a torch.save checkpoint and read its tensor list. Throws FileFormatError. */
export function openPth(path: string): PthFile {
  let zip: ZipReader;
  try {
    zip = ZipReader.open(path);
  } catch (e) {
    if (e instanceof FileFormatError && /not a zip archive/.test(e.message) && firstByte(path) === 0x80) {
      throw new FileFormatError(path, 'is a legacy (torch < 1.6) checkpoint, a bare pickle stream; llamats reads the zip format: re-save it with torch.save in torch >= 1.6', { cause: e });
    }
    throw e;
  }
  try {
    return new Pth(zip);
  } catch (e) {
    zip.close();
    throw e;
  }
}

class Pth implements PthFile {
  readonly path: string;
  readonly tensors = new Map<string, PthTensorInfo>();
  private readonly refs = new Map<string, TensorRef>();

  constructor(private readonly zip: ZipReader) {
    const path = (this.path = zip.path);
    const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) {
      throw new FileFormatError(path, `is a zip archive but not a torch.save checkpoint: expected one <folder>/data.pkl entry, found ${pkls.length}${pkls.length ? ` (${pkls.join(', ')})` : ''}`);
    }
    const prefix = pkls[0]!.slice(0, -'data.pkl'.length);
    if (zip.entries.has(`${prefix}byteorder`)) {
      const order = new TextDecoder().decode(zip.read(`${prefix}byteorder`, 0, undefined, 64)).trim();
      if (order !== 'little') throw new FileFormatError(path, `was saved with byte order "${order}"; llamats reads little-endian checkpoints only`);
    }

    // Parse data.pkl. Storages are resolved (and their entries checked) as the pickle names them.
    const storages = new Map<string, StorageRef>();
    const persistentLoad = (pid: unknown): StorageRef => {
      if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
        throw new FileFormatError(path, `${prefix}data.pkl: expected a persistent id ('storage', type, key, location, numel), found ${describe(pid)}`);
      }
      const [, type, key, , numel] = pid as unknown[];
      if (!isStorageType(type)) throw new FileFormatError(path, `${prefix}data.pkl: a storage of type ${describe(type)}; expected one of ${STORAGE_TYPES.map((s) => `torch.${s[0]}`).join(', ')}`);
      if (typeof key !== 'string' || !isCount(numel)) throw new FileFormatError(path, `${prefix}data.pkl: a storage with key ${describe(key)} and size ${describe(numel)}; expected a string and a count`);
      const entry = `${prefix}data/${key}`;
      const e = zip.entries.get(entry);
      if (!e) throw new FileFormatError(path, `${prefix}data.pkl refers to storage "${key}", but the archive has no entry ${entry} (truncated or incomplete checkpoint?)`);
      const byteLength = numel * type.elementSize;
      if (e.uncompressedSize < byteLength) {
        throw new FileFormatError(path, `storage ${entry} has ${e.uncompressedSize} bytes, but data.pkl says it holds ${numel} ${type.dtype} elements (${byteLength} bytes)`);
      }
      const ref = storages.get(entry) ?? { entry, type, byteLength };
      storages.set(entry, ref);
      return ref;
    };
    const pkl = zip.read(`${prefix}data.pkl`, 0, undefined, 1 << 30);
    const top = unpickle(pkl, path, { globals: ALLOWLIST, persistentLoad, what: `${prefix}data.pkl` });
    if (!(top instanceof Map)) {
      throw new FileFormatError(path, `${prefix}data.pkl holds ${describe(top)}; expected a dict of name → tensor (a state_dict)`);
    }
    this.collect(top, '', 0, new Set());
    if (this.tensors.size === 0) throw new FileFormatError(path, `${prefix}data.pkl holds a dict without tensors; expected a dict of name → tensor (a state_dict)`);
  }

  /** Walk (nested) dicts and check every tensor against its storage. */
  private collect(d: Map<unknown, unknown>, prefix: string, depth: number, seen: Set<unknown>): void {
    if (depth > 16) throw new FileFormatError(this.path, `data.pkl nests dicts more than 16 deep at "${prefix}"; expected a state_dict`);
    seen.add(d);
    for (const [k, v] of d) {
      const name = prefix + (typeof k === 'string' ? k : describe(k)); // (String() of a deeply nested tuple overflows the stack)
      if (v instanceof Map && !seen.has(v)) this.collect(v, name + '.', depth + 1, seen);
      if (!(v instanceof TensorRef)) continue; // not a weight: skipped (see the top of the file)
      const { storage: s, offset, shape, stride } = v;
      const es = s.type.elementSize;
      let numel = 1;
      let last = offset; // index of the last element the view touches
      for (let i = 0; i < shape.length; i++) {
        numel *= shape[i]!;
        last += (shape[i]! - 1) * stride[i]!;
      }
      if (!Number.isSafeInteger(numel * es)) throw new FileFormatError(this.path, `tensor "${name}" has shape [${shape}], too large to address`);
      if (numel > 0 && (last + 1) * es > s.byteLength) {
        throw new FileFormatError(
          this.path,
          `tensor "${name}" (${s.type.dtype} [${shape}], stride [${stride}], offset ${offset}) needs ${(last + 1) * es} bytes of storage ${s.entry}, but the storage has ${s.byteLength}`,
        );
      }
      // only broadcast or overlapping views (stride 0) hold more elements than their storage: a
      // few bytes of file would make `read` allocate gigabytes, and no checkpoint saves weights so
      if (numel * es > s.byteLength) {
        throw new FileFormatError(
          this.path,
          `tensor "${name}" (${s.type.dtype} [${shape}], stride [${stride}]) has ${numel} elements, more than its storage ${s.entry} holds (${s.byteLength / es}); broadcast or overlapping views are not supported: save the tensor with .contiguous().clone()`,
        );
      }
      if (this.tensors.has(name)) throw new FileFormatError(this.path, `has two tensors named "${name}"`);
      this.refs.set(name, v);
      this.tensors.set(name, { name, dtype: s.type.dtype, shape: [...shape], byteLength: numel * es });
    }
  }

  read(name: string): Uint8Array {
    const t = this.refs.get(name);
    if (!t) throw new FileFormatError(this.path, `has no tensor named "${name}" (it has ${this.tensors.size}, e.g. ${[...this.tensors.keys()].slice(0, 3).join(', ')})`);
    const es = t.storage.type.elementSize;
    const numel = this.tensors.get(name)!.byteLength / es;
    if (numel === 0) return new Uint8Array(0);
    if (isContiguous(t.shape, t.stride)) return this.zip.read(t.storage.entry, t.offset * es, numel * es);
    // Strided: read the span the view touches, then gather element by element in row-major order.
    let last = t.offset;
    for (let i = 0; i < t.shape.length; i++) last += (t.shape[i]! - 1) * t.stride[i]!;
    const span = this.zip.read(t.storage.entry, t.offset * es, (last - t.offset + 1) * es);
    const out = new Uint8Array(numel * es);
    const idx = new Array<number>(t.shape.length).fill(0);
    for (let o = 0, src = 0; o < numel; o++) {
      for (let b = 0; b < es; b++) out[o * es + b] = span[src * es + b]!;
      for (let d = t.shape.length - 1; d >= 0; d--) {
        // odometer: advance the innermost index, carry outwards
        if (++idx[d]! < t.shape[d]!) {
          src += t.stride[d]!;
          break;
        }
        src -= (t.shape[d]! - 1) * t.stride[d]!;
        idx[d] = 0;
      }
    }
    return out;
  }

  close(): void {
    this.zip.close();
  }
}

// --- the allowlisted calls: they check their arguments and build plain data

function orderedDict(args: unknown[]): Map<unknown, unknown> {
  const m = new Map<unknown, unknown>();
  if (args.length === 0) return m;
  if (args.length === 1 && Array.isArray(args[0])) {
    for (const kv of args[0]) {
      if (!Array.isArray(kv) || kv.length !== 2) throw new Error('expected (key, value) pairs');
      m.set(kv[0], kv[1]);
    }
    return m;
  }
  throw new Error('expected no arguments or a list of (key, value) pairs');
}

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (args.length < 6 || args.length > 7) throw new Error(`expected 6 or 7 arguments (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`);
  if (!isStorageRef(storage)) throw new Error(`the storage is ${describe(storage)}, not a persistent storage id`);
  if (!isCount(offset)) throw new Error(`storage_offset ${describe(offset)} is not a non-negative integer`);
  if (!isCounts(size) || !isCounts(stride) || size.length !== stride.length) {
    throw new Error(`size ${describe(size)} and stride ${describe(stride)} must be tuples of non-negative integers of the same length`);
  }
  if (size.some((n) => n > 2 ** 40)) throw new Error(`size [${size}] has an implausible dimension`);
  return new TensorRef(storage, offset, [...size], [...stride]);
}

function tensorArg(x: unknown): TensorRef {
  if (!(x instanceof TensorRef)) throw new Error(`expected a tensor, found ${describe(x)}`);
  return x;
}

// --- small helpers

/** Row-major contiguous: each dimension's stride is the product of the later sizes (size-1 dims excepted). */
function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function isCounts(x: unknown): x is number[] {
  return Array.isArray(x) && x.length <= 64 && x.every(isCount);
}

function isStorageType(x: unknown): x is StorageType {
  return typeof x === 'object' && x !== null && 'elementSize' in x;
}

function isStorageRef(x: unknown): x is StorageRef {
  return typeof x === 'object' && x !== null && 'entry' in x && 'byteLength' in x;
}

function firstByte(path: string): number | undefined {
  try {
    const fd = fs.openSync(path, 'r');
    try {
      const b = new Uint8Array(1);
      return fs.readSync(fd, b, 0, 1, 0) === 1 ? b[0] : undefined;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}
