/**
 * A zip archive reader that reads one entry at a time (torch.save writes zip archives; Meta's 7B
 * shards are 13 GB, so the archive is never read whole).
 *
 * All integers are little-endian. Layout of an archive (PKWARE APPNOTE 6.3):
 *
 *   [local file header + data] ...   one per entry, anywhere before the central directory
 *   central directory                one 46-byte+ record per entry
 *   [zip64 end of central directory record]    only in ZIP64 archives
 *   [zip64 end of central directory locator]   only in ZIP64 archives
 *   end of central directory record (EOCD)     the last 22 bytes + an optional comment (< 64 KiB)
 *
 * Local file header (30 bytes + name + extra), signature 0x04034b50 "PK\3\4":
 *   u32 sig, u16 version, u16 flags, u16 method, u16 time, u16 date, u32 crc32,
 *   u32 compressed size, u32 uncompressed size, u16 name length, u16 extra length.
 *   The data follows the name and extra. Writers that stream (flag bit 3, torch's miniz does)
 *   put zeros in the sizes here and the real ones in the central directory, and torch pads the
 *   extra field so that data starts on a 64-byte boundary: so only the central directory's sizes
 *   are trusted, and the local name/extra lengths are read to find where the data starts.
 * Central directory record (46 bytes + name + extra + comment), signature 0x02014b50 "PK\1\2":
 *   u32 sig, u16 version made by, u16 version needed, u16 flags, u16 method, u16 time, u16 date,
 *   u32 crc32, u32 compressed size, u32 uncompressed size, u16 name length, u16 extra length,
 *   u16 comment length, u16 disk number, u16 internal attrs, u32 external attrs,
 *   u32 local header offset, then name, extra, comment.
 * Extra fields are (u16 id, u16 size, data) records. The ZIP64 one (id 0x0001) holds, as u64 and
 *   in this order, only those of uncompressed size, compressed size, local header offset whose
 *   32-bit field above is 0xffffffff (and a u32 disk number if that field is 0xffff).
 * EOCD (22 bytes + comment), signature 0x06054b50 "PK\5\6":
 *   u32 sig, u16 disk number, u16 disk with central directory, u16 entries on this disk,
 *   u16 total entries, u32 central directory size, u32 central directory offset, u16 comment length.
 * ZIP64 EOCD locator (20 bytes, just before the EOCD), signature 0x07064b50 "PK\6\7":
 *   u32 sig, u32 disk with the zip64 EOCD, u64 offset of the zip64 EOCD, u32 total disks.
 * ZIP64 EOCD record (56 bytes + extensible data), signature 0x06064b50 "PK\6\6":
 *   u32 sig, u64 size of the rest of the record, u16 version made by, u16 version needed,
 *   u32 disk number, u32 disk with central directory, u64 entries on this disk, u64 total entries,
 *   u64 central directory size, u64 central directory offset.
 *
 * Supported: single-disk archives, methods 0 (stored) and 8 (deflate). u64 values are read as
 * JS numbers, exact up to 2^53 bytes (8 PiB); larger ones are refused. CRC-32s are not checked.
 */
import * as fs from 'node:fs';
import * as zlib from 'node:zlib';
import { FileFormatError, OutOfMemoryError, formatBytes } from '../errors.js';
import { statFile } from '../io/file.js';

export interface ZipEntry {
  /** Full name in the archive, with '/' separators (e.g. "consolidated.00/data/0"). */
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  /** Offset of the entry's local file header in the archive. */
  readonly localHeaderOffset: number;
  /** General-purpose flags (bit 0: encrypted). */
  readonly flags: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const SIG_EOCD64 = 0x06064b50;
const EOCD_BYTES = 22;
const MAX_COMMENT = 0xffff;
const CHUNK = 64 * 1024 * 1024; // fs.readSync reads at most 2 GiB per call

export class ZipReader {
  readonly path: string;
  /** Size of the archive file in bytes. */
  readonly size: number;
  /** Entries by name, in central-directory order. */
  readonly entries: ReadonlyMap<string, ZipEntry>;
  private fd: number | undefined;
  private readonly dataStarts = new Map<string, number>();

  private constructor(path: string, size: number, fd: number) {
    this.path = path;
    this.size = size;
    this.fd = fd;
    try {
      this.entries = this.readCentralDirectory();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Open an archive and read its central directory (not its entries). Throws FileFormatError. */
  static open(path: string): ZipReader {
    const size = statFile(path);
    let fd: number;
    try {
      fd = fs.openSync(path, 'r');
    } catch (e) {
      throw new FileFormatError(path, `cannot open: ${(e as Error).message}`, { cause: e, code: 'FILE_NOT_FOUND' });
    }
    return new ZipReader(path, size, fd);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }

  /**
   * The uncompressed bytes of one entry, or of `length` bytes of it from `start`, in a fresh
   * Uint8Array (its own ArrayBuffer, byteOffset 0). Stored entries read only the requested range;
   * deflated ones are inflated whole (refused above `maxBytes`, default: no limit) and then cut.
   */
  read(name: string, start = 0, length?: number, maxBytes = Infinity): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw this.error(`has no entry named "${name}"`);
    const len = length ?? e.uncompressedSize - start;
    if (!isCount(start) || !isCount(len) || start + len > e.uncompressedSize) {
      throw this.error(`reading bytes [${start}, ${start + len}) of entry "${name}", which has ${e.uncompressedSize} bytes`);
    }
    if (e.flags & 1) throw this.error(`entry "${name}" is encrypted; llamats reads unencrypted archives only`);
    const dataStart = this.dataStart(e);
    if (e.method === 0) {
      if (e.compressedSize !== e.uncompressedSize) {
        throw this.error(`stored entry "${name}" has compressed size ${e.compressedSize} but uncompressed size ${e.uncompressedSize}; they must be equal`);
      }
      return this.readAt(dataStart + start, len, `entry "${name}"`);
    }
    if (e.method === 8) {
      if (e.uncompressedSize > maxBytes) {
        throw this.error(`entry "${name}" inflates to ${formatBytes(e.uncompressedSize)}, more than the ${formatBytes(maxBytes)} allowed for it`);
      }
      const packed = this.readAt(dataStart, e.compressedSize, `entry "${name}"`);
      let out: Buffer;
      try {
        // maxOutputLength stops a "zip bomb" that inflates to more than the directory says.
        out = zlib.inflateRawSync(packed, { maxOutputLength: Math.max(1, e.uncompressedSize) });
      } catch (err) {
        throw this.error(`entry "${name}" is not valid deflate data of ${e.uncompressedSize} bytes: ${(err as Error).message}`, err);
      }
      if (out.byteLength !== e.uncompressedSize) {
        throw this.error(`entry "${name}" inflated to ${out.byteLength} bytes, but the central directory says ${e.uncompressedSize}`);
      }
      // A plain Uint8Array on a buffer of its own (a Buffer's slice() would share memory).
      if (start === 0 && len === out.byteLength && out.byteOffset === 0 && out.buffer.byteLength === len) return new Uint8Array(out.buffer);
      return new Uint8Array(out.buffer, out.byteOffset + start, len).slice();
    }
    throw this.error(`entry "${name}" uses compression method ${e.method}; llamats reads methods 0 (stored) and 8 (deflate) only`);
  }

  /** Where an entry's data starts, from its local header (whose name/extra lengths may differ). */
  private dataStart(e: ZipEntry): number {
    const cached = this.dataStarts.get(e.name);
    if (cached !== undefined) return cached;
    const h = this.readAt(e.localHeaderOffset, 30, `the local header of entry "${e.name}"`);
    const v = new DataView(h.buffer);
    if (v.getUint32(0, true) !== SIG_LOCAL) {
      throw this.error(`expected a local file header (PK\\3\\4) for entry "${e.name}" at offset ${e.localHeaderOffset}, found other bytes`);
    }
    const start = e.localHeaderOffset + 30 + v.getUint16(26, true) + v.getUint16(28, true);
    if (start + e.compressedSize > this.size) {
      throw this.error(`entry "${e.name}" extends past the end of the file (truncated?): its ${e.compressedSize} bytes start at offset ${start}, but the file has ${this.size} bytes`);
    }
    this.dataStarts.set(e.name, start);
    return start;
  }

  private readCentralDirectory(): Map<string, ZipEntry> {
    // 1. The EOCD: search backwards for its signature in the last 64 KiB + 22 bytes.
    const tailLen = Math.min(this.size, EOCD_BYTES + MAX_COMMENT);
    const tailStart = this.size - tailLen;
    const tail = this.readAt(tailStart, tailLen, 'the end of the file');
    const tv = new DataView(tail.buffer);
    let at = -1;
    for (let i = tailLen - EOCD_BYTES; i >= 0; i--) {
      // The comment length must reach exactly to the end of the file (else the signature is data).
      if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_BYTES + tv.getUint16(i + 20, true) === tailLen) {
        at = i;
        break;
      }
    }
    if (at < 0) {
      throw this.error(`not a zip archive: no end-of-central-directory record in its last ${tailLen} bytes (truncated, or not a zip file?)`);
    }
    const eocdOffset = tailStart + at;
    let disk = tv.getUint16(at + 4, true);
    let cdDisk = tv.getUint16(at + 6, true);
    let count = tv.getUint16(at + 10, true);
    let cdSize = tv.getUint32(at + 12, true);
    let cdOffset = tv.getUint32(at + 16, true);
    let cdEnd = eocdOffset;

    // 2. ZIP64: a locator just before the EOCD points at the zip64 EOCD record, whose values win.
    if (at >= 20 && tv.getUint32(at - 20, true) === SIG_EOCD64_LOCATOR) {
      const rec64Offset = u64(tv, at - 20 + 8, () => this.error('the zip64 locator has an offset above 2^53'));
      if (rec64Offset + 56 > eocdOffset - 20) {
        throw this.error(`the zip64 end-of-central-directory locator points at offset ${rec64Offset}, past the locator itself at ${eocdOffset - 20}`);
      }
      const rec = this.readAt(rec64Offset, 56, 'the zip64 end-of-central-directory record');
      const rv = new DataView(rec.buffer);
      if (rv.getUint32(0, true) !== SIG_EOCD64) {
        throw this.error(`expected a zip64 end-of-central-directory record (PK\\6\\6) at offset ${rec64Offset}, found other bytes`);
      }
      const big = () => this.error('the zip64 end-of-central-directory record has a value above 2^53');
      disk = rv.getUint32(16, true);
      cdDisk = rv.getUint32(20, true);
      count = u64(rv, 32, big);
      cdSize = u64(rv, 40, big);
      cdOffset = u64(rv, 48, big);
      cdEnd = rec64Offset;
    } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      throw this.error('the end-of-central-directory record says ZIP64, but there is no zip64 locator before it (truncated?)');
    }
    if (disk !== 0 || cdDisk !== 0) throw this.error('is a multi-disk (split) zip archive; join the parts into one file first');
    if (cdOffset + cdSize > cdEnd) {
      throw this.error(`the central directory (${cdSize} bytes at offset ${cdOffset}) extends past where it must end (${cdEnd}); the file is truncated or not a zip archive`);
    }
    if (count * 46 > cdSize) throw this.error(`the central directory claims ${count} entries, but ${cdSize} bytes hold at most ${Math.floor(cdSize / 46)}`);

    // 3. The central directory records.
    const cd = this.readAt(cdOffset, cdSize, 'the central directory');
    const v = new DataView(cd.buffer);
    const utf8 = new TextDecoder('utf-8');
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      const where = `central directory entry ${i} (offset ${cdOffset + p})`;
      if (p + 46 > cdSize || v.getUint32(p, true) !== SIG_CENTRAL) throw this.error(`${where}: expected a central directory record (PK\\1\\2)`);
      const nameLen = v.getUint16(p + 28, true);
      const extraLen = v.getUint16(p + 30, true);
      const commentLen = v.getUint16(p + 32, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw this.error(`${where}: runs past the end of the central directory`);
      const name = utf8.decode(cd.subarray(p + 46, p + 46 + nameLen));
      let usize = v.getUint32(p + 24, true);
      let csize = v.getUint32(p + 20, true);
      let offset = v.getUint32(p + 42, true);
      // ZIP64 extra field: u64 values for exactly those 32-bit fields that are 0xffffffff.
      for (let x = p + 46 + nameLen, xEnd = x + extraLen; x + 4 <= xEnd; ) {
        const id = v.getUint16(x, true);
        const len = v.getUint16(x + 2, true);
        if (x + 4 + len > xEnd) throw this.error(`${where} ("${name}"): an extra field runs past its record`);
        if (id === 0x0001) {
          let q = x + 4;
          const next = (field: string): number => {
            if (q + 8 > x + 4 + len) throw this.error(`${where} ("${name}"): the zip64 extra field lacks the ${field}`);
            const val = u64(v, q, () => this.error(`${where} ("${name}"): the zip64 ${field} is above 2^53`));
            q += 8;
            return val;
          };
          if (usize === 0xffffffff) usize = next('uncompressed size');
          if (csize === 0xffffffff) csize = next('compressed size');
          if (offset === 0xffffffff) offset = next('local header offset');
        }
        x += 4 + len;
      }
      if (offset + 30 + csize > cdOffset) {
        throw this.error(`entry "${name}" extends past the end of the file data (truncated?): ${csize} bytes at offset ${offset}, but the central directory starts at ${cdOffset}`);
      }
      if (entries.has(name)) throw this.error(`has two entries named "${name}"`);
      entries.set(name, { name, method: v.getUint16(p + 10, true), compressedSize: csize, uncompressedSize: usize, localHeaderOffset: offset, flags: v.getUint16(p + 8, true) });
      p += 46 + nameLen + extraLen + commentLen;
    }
    return entries;
  }

  /** `length` bytes at `offset` of the file, bounds-checked, in a fresh buffer. */
  private readAt(offset: number, length: number, what: string): Uint8Array {
    if (this.fd === undefined) throw this.error('is closed');
    if (offset + length > this.size) {
      throw this.error(`${what} extends past the end of the file (truncated?): ${length} bytes at offset ${offset}, but the file has ${this.size} bytes`);
    }
    let out: Uint8Array;
    try {
      out = new Uint8Array(length);
    } catch {
      throw new OutOfMemoryError(`${this.path}: cannot allocate ${formatBytes(length)} to read ${what}`, length, 0);
    }
    for (let done = 0; done < length; ) {
      const n = fs.readSync(this.fd, out, done, Math.min(CHUNK, length - done), offset + done);
      if (n === 0) throw this.error(`the file shrank while reading ${what}`);
      done += n;
    }
    return out;
  }

  private error(message: string, cause?: unknown): FileFormatError {
    return new FileFormatError(this.path, message, cause === undefined ? {} : { cause });
  }
}

/** A non-negative safe integer. */
function isCount(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/** An unsigned 64-bit little-endian value as an exact number, or `tooBig()` thrown above 2^53. */
function u64(v: DataView, at: number, tooBig: () => Error): number {
  const lo = v.getUint32(at, true);
  const hi = v.getUint32(at + 4, true);
  if (hi >= 0x200000) throw tooBig();
  return hi * 0x100000000 + lo;
}
