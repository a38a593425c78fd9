/**
 * safetensors files (Hugging Face's `model.safetensors`), read one tensor at a time.
 *
 * Layout (all integers little-endian):
 *   u64        N, the byte length of the JSON header
 *   N bytes    the header: a UTF-8 JSON object (writers pad it with spaces to a multiple of 8)
 *                { "<name>": { "dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end] },
 *                  ...,
 *                  "__metadata__": { "<key>": "<string>", ... } }      (optional)
 *              `data_offsets` are byte offsets relative to the start of the data (8 + N), end
 *              exclusive; `end - begin` = numel × element size; tensors are row-major, C order.
 *   the data   the tensors' bytes, little-endian, usually in the header's order without gaps.
 *
 * Dtypes: F64 F32 F16 BF16, I64 I32 I16 I8, U64 U32 U16 U8, BOOL, F8_E4M3 F8_E5M2. All are
 * recognized here; the model loader accepts F32, F16 and BF16 and refuses the others by name.
 *
 * Everything is checked before anything is allocated: the header length against the file size
 * (and a 100 MB cap), that the header is a JSON object, every entry's dtype, shape (non-negative
 * integers), data_offsets (inside the data, not overlapping) and that the byte size agrees with
 * dtype × shape. `read` then reads only that tensor's bytes with fs.readSync (never the whole
 * file: Node cannot allocate typed arrays over 4 GiB, and a 70B shard is larger).
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../errors.js';
import { statFile } from '../io/file.js';
import { jsonDepth, MAX_JSON_DEPTH } from '../io/json.js';

export const SAFETENSORS_DTYPE_BYTES = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
} as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  /** Shape in elements, outermost first (Linear weights are [out, in]). */
  readonly shape: number[];
  /** Bytes `read` returns: numel × element size. */
  readonly byteLength: number;
}

export interface SafetensorsFile {
  readonly path: string;
  /** Every tensor, in the header's order. */
  readonly tensors: Map<string, SafetensorsTensorInfo>;
  /** The header's `__metadata__` (string → string), empty when absent. */
  readonly metadata: Record<string, string>;
  /** One tensor's bytes in a fresh buffer (byteOffset 0), so any typed-array view can be made on it. */
  read(name: string): Uint8Array;
  close(): void;
}

/** Headers larger than this are refused before being read (real ones are well under 10 MB). */
const MAX_HEADER = 100_000_000;
const CHUNK = 64 * 1024 * 1024;

/** Open a safetensors file and check its header. Throws FileFormatError. */
export function openSafetensors(path: string): SafetensorsFile {
  const size = statFile(path);
  const fd = fs.openSync(path, 'r');
  try {
    return new Safetensors(path, size, fd);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

class Safetensors implements SafetensorsFile {
  readonly tensors = new Map<string, SafetensorsTensorInfo>();
  readonly metadata: Record<string, string> = {};
  private readonly begins = new Map<string, number>();
  private readonly dataStart: number;
  private fd: number | undefined;

  constructor(readonly path: string, size: number, fd: number) {
    this.fd = fd;
    const bad = (msg: string) => new FileFormatError(path, msg);
    if (size < 8) throw bad(`truncated: a safetensors file starts with an 8-byte header length, but the file has ${size} bytes`);
    const lenBytes = readAt(fd, path, 0, 8);
    const view = new DataView(lenBytes.buffer);
    const n = view.getUint32(0, true) + view.getUint32(4, true) * 2 ** 32;
    if (n > size - 8) throw bad(`header length is ${n} bytes, but only ${size - 8} bytes follow it; expected a safetensors file (truncated?)`);
    if (n > MAX_HEADER) throw bad(`header length is ${n} bytes, above the ${MAX_HEADER}-byte limit; expected a safetensors file`);
    this.dataStart = 8 + n;
    const dataSize = size - this.dataStart;

    let header: unknown;
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(readAt(fd, path, 8, n));
      // (deeper is garbage, and messages could not even describe it: JSON.stringify recurses)
      if (jsonDepth(text) > MAX_JSON_DEPTH) throw new Error(`arrays / objects nest more than ${MAX_JSON_DEPTH} deep`);
      header = JSON.parse(text);
    } catch (e) {
      throw new FileFormatError(path, `the ${n}-byte header is not valid UTF-8 JSON (${(e as Error).message}); expected a safetensors file`, { cause: e });
    }
    if (!isObject(header)) throw bad(`the header is ${describe(header)}; expected a JSON object of name → { dtype, shape, data_offsets }`);

    const spans: Array<[begin: number, end: number, name: string]> = [];
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === 'string')) {
          throw bad(`__metadata__ is ${describe(entry)}; expected an object of string → string`);
        }
        Object.assign(this.metadata, entry);
        continue;
      }
      const what = `tensor "${name}"`;
      if (!isObject(entry)) throw bad(`${what} is ${describe(entry)}; expected { dtype, shape, data_offsets }`);
      const { dtype, shape, data_offsets: offs } = entry;
      if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_BYTES, dtype)) {
        throw bad(`${what} has dtype ${describe(dtype)}; expected one of ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(', ')}`);
      }
      if (!Array.isArray(shape) || shape.length > 64 || !shape.every(isCount)) throw bad(`${what} has shape ${describe(shape)}; expected a list of non-negative integers`);
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount) || offs[0] > offs[1]) {
        throw bad(`${what} has data_offsets ${describe(offs)}; expected [begin, end] with 0 <= begin <= end`);
      }
      const [begin, end] = offs as [number, number];
      if (end > dataSize) throw bad(`${what} has data_offsets [${begin}, ${end}], past the end of the data (${dataSize} bytes after the header); truncated file?`);
      const numel = (shape as number[]).reduce((a, b) => a * b, 1);
      const byteLength = numel * SAFETENSORS_DTYPE_BYTES[dtype as SafetensorsDtype];
      if (byteLength !== end - begin) {
        throw bad(`${what} is ${dtype} [${shape.join(', ')}], ${byteLength} bytes, but its data_offsets [${begin}, ${end}] span ${end - begin} bytes`);
      }
      this.tensors.set(name, { name, dtype: dtype as SafetensorsDtype, shape: [...(shape as number[])], byteLength });
      this.begins.set(name, begin);
      spans.push([begin, end, name]);
    }
    // No two tensors may share bytes (empty tensors take none).
    spans.sort((a, b) => a[0] - b[0]);
    let last: [number, number, string] | undefined; // the span reaching furthest so far
    for (const span of spans) {
      const [b, e, name] = span;
      if (b === e) continue;
      if (last && b < last[1]) throw bad(`tensor "${name}" (data_offsets [${b}, ${e}]) overlaps tensor "${last[2]}" ([${last[0]}, ${last[1]}]); expected disjoint tensors`);
      last = span;
    }
  }

  read(name: string): Uint8Array {
    const info = this.tensors.get(name);
    if (!info) throw new FileFormatError(this.path, `has no tensor named "${name}" (it has ${this.tensors.size}, e.g. ${[...this.tensors.keys()].slice(0, 3).join(', ')})`);
    if (this.fd === undefined) throw new Error(`internal: ${this.path} read after close`);
    return readAt(this.fd, this.path, this.dataStart + this.begins.get(name)!, info.byteLength);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** `n` bytes at `offset`, in chunks (readSync reads at most 2 GiB per call). */
function readAt(fd: number, path: string, offset: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; ) {
    const got = fs.readSync(fd, out, off, Math.min(CHUNK, n - off), offset + off);
    if (got === 0) throw new FileFormatError(path, `truncated: expected ${n} bytes at offset ${offset}, the file ended after ${off}`);
    off += got;
  }
  return out;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isCount(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** A short rendering of a JSON value for messages. */
function describe(x: unknown): string {
  const s = JSON.stringify(x) ?? String(x);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
