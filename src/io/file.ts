/**
 * Reading whole files into memory, and a bounds-checked little-endian reader over bytes.
 *
 * Files are read with `fs.readSync` in chunks into one freshly allocated ArrayBuffer, so that
 * (1) the data starts at offset 0 and typed-array views of any element size can be made on it,
 * and (2) files over 2 GiB work (`fs.readFileSync` refuses those).
 */
import * as fs from 'node:fs';
import { FileFormatError, OutOfMemoryError, formatBytes } from '../errors.js';

const CHUNK = 64 * 1024 * 1024;

/** Size of a regular file, or a typed error that says what is wrong with the path. */
export function statFile(path: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    throw fileError(path, e);
  }
  if (!st.isFile()) throw new FileFormatError(path, 'is not a regular file (a directory?); pass the path of the file itself');
  return st.size;
}

/** The whole file as bytes in a buffer of its own (byteOffset 0), or in the buffer `alloc` gives. */
export function readFileBytes(path: string, alloc: (size: number) => Uint8Array = (size) => new Uint8Array(size)): Uint8Array {
  const size = statFile(path);
  let bytes: Uint8Array;
  try {
    bytes = alloc(size);
  } catch (e) {
    throw new OutOfMemoryError(`${path}: cannot allocate ${formatBytes(size)} to read the file`, size, 0);
  }
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw fileError(path, e);
  }
  try {
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, bytes, off, Math.min(CHUNK, size - off), off);
      if (n === 0) throw new FileFormatError(path, `file shrank while reading: expected ${size} bytes, got ${off}`);
      off += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return bytes;
}

function fileError(path: string, e: unknown): FileFormatError {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new FileFormatError(path, 'no such file; check the path', { cause: e, code: 'FILE_NOT_FOUND' });
  if (code === 'EACCES' || code === 'EPERM') return new FileFormatError(path, 'permission denied; make the file readable', { cause: e, code: 'FILE_NOT_FOUND' });
  if (code === 'EISDIR') return new FileFormatError(path, 'is a directory; pass the path of the file itself', { cause: e, code: 'FILE_NOT_FOUND' });
  return new FileFormatError(path, `cannot read: ${(e as Error)?.message ?? String(e)}`, { cause: e, code: 'FILE_NOT_FOUND' });
}

/**
 * Sequential little-endian reader. Every read checks that the bytes exist and otherwise throws
 * a FileFormatError naming the file, the field and the offset.
 */
export class ByteReader {
  readonly bytes: Uint8Array;
  readonly path: string;
  private readonly view: DataView;
  offset = 0;

  constructor(bytes: Uint8Array, path: string) {
    this.bytes = bytes;
    this.path = path;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.byteLength - this.offset;
  }

  /** Throws unless `n` more bytes can be read; `what` names the field for the message. */
  need(n: number, what: string): void {
    if (n < 0 || this.offset + n > this.bytes.byteLength) {
      throw new FileFormatError(
        this.path,
        `truncated: reading ${what} needs ${n} bytes at offset ${this.offset}, but the file has ${this.bytes.byteLength} bytes`,
      );
    }
  }

  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.offset++);
  }
  i32(what: string): number {
    this.need(4, what);
    const v = this.view.getInt32(this.offset, true);
    this.offset += 4;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }
  f32(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.offset, true);
    this.offset += 4;
    return v;
  }
  /** A view (no copy) of the next `n` bytes. */
  bytesView(n: number, what: string): Uint8Array {
    this.need(n, what);
    const v = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  /**
   * The next `n` float32 values: a zero-copy view when the offset is 4-aligned (it is in every
   * llama2.c layout except after odd-sized int8 blocks), else a copy.
   */
  f32Array(n: number, what: string): Float32Array {
    this.need(n * 4, what);
    const abs = this.bytes.byteOffset + this.offset;
    let out: Float32Array;
    if (abs % 4 === 0) out = new Float32Array(this.bytes.buffer, abs, n);
    else out = new Float32Array(this.bytes.slice(this.offset, this.offset + n * 4).buffer);
    this.offset += n * 4;
    return out;
  }
  /** The next `n` int8 values, as a view. */
  i8Array(n: number, what: string): Int8Array {
    this.need(n, what);
    const out = new Int8Array(this.bytes.buffer, this.bytes.byteOffset + this.offset, n);
    this.offset += n;
    return out;
  }
}
