// Streaming .npz writer: stored (uncompressed) .npy members written one after another, zip64 where needed so
// files and members past 4 GB work. Row counts may be unknown until a member ends: its .npy header and zip local
// header are patched in place, and the CRC-32 of the final header is combined with the CRC of the streamed data.
import { open, rename, rm } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { type DType, dtypeSize } from '../core/dtype.ts';
import { encodeNpyHeader } from './npy.ts';

const WRITE_BUFFER = 4 << 20;
/** Placeholder row count for sizing the reserved .npy header (room for any count below 10^20). */
const RESERVED_ROWS = 1e20;
const U32 = 0xffffffff;
/** Size of the zip64 extended-information extra field we reserve in every local header (like numpy's force_zip64). */
const LOCAL_ZIP64_EXTRA = 20;

// ---- CRC-32 combination (zlib's crc32_combine): CRC of A||B from CRC(A), CRC(B) and |B|. ----
function gf2Times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  let i = 0;
  vec >>>= 0;
  while (vec !== 0) {
    if (vec & 1) sum ^= mat[i];
    vec >>>= 1;
    i++;
  }
  return sum >>> 0;
}
function gf2Square(square: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(mat, mat[n]);
}

/** CRC-32 of the concatenation A||B given crc32(A), crc32(B) and B's length in bytes (zlib's crc32_combine). */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB <= 0) return crcA >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320; // the CRC-32 polynomial: operator for one zero bit
  for (let n = 1, row = 1; n < 32; n++, row *= 2) odd[n] = row;
  gf2Square(even, odd); // two zero bits
  gf2Square(odd, even); // four zero bits
  let crc = crcA >>> 0;
  let len = lengthB;
  // Apply len zero bytes to crcA, squaring the operator for each bit of len (first square: one zero byte).
  for (;;) {
    gf2Square(even, odd);
    if (len % 2 === 1) crc = gf2Times(even, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
    gf2Square(odd, even);
    if (len % 2 === 1) crc = gf2Times(odd, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
  }
  return (crc ^ crcB) >>> 0;
}

/** One member being written; rows are counted from the bytes appended. */
export interface NpzMemberWriter {
  /** Array name (the zip member is `${name}.npy`). */
  readonly name: string;
  readonly rowBytes: number;
  /** Rows appended so far. */
  readonly rows: number;
  /** Append whole rows as little-endian bytes (or a typed array of the member's dtype). */
  append(data: ArrayBufferView): Promise<void>;
  /** Finish the member: fix its .npy header (row count) and zip header (sizes, CRC-32). */
  end(): Promise<void>;
}

/** A .npz being written; members are written one at a time, in order. */
export interface NpzWriter {
  /** Final path (the file appears there only after close). */
  readonly path: string;
  /** Start a member holding rows of `rowShape` elements of `dtype`; the row count is whatever gets appended. */
  beginMember(name: string, dtype: DType, rowShape: readonly number[]): Promise<NpzMemberWriter>;
  /** Write the central directory, fsync and rename into place; returns the file size. */
  close(): Promise<number>;
  /** Delete the partial file. */
  abort(): Promise<void>;
}

/** Options for {@link createNpzWriter}. */
export interface NpzWriterOptions {
  /** Use zip64 records in the central directory and end records even when nothing needs them (for testing readers). */
  forceZip64?: boolean;
}

interface DoneMember {
  nameBytes: Buffer;
  flags: number;
  crc: number;
  size: number;
  localOffset: number;
}

function dosDateTime(d: Date): { time: number; date: number } {
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | Math.floor(d.getSeconds() / 2),
    date: (Math.max(0, d.getFullYear() - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

function writeU64(b: Buffer, v: number, at: number): void {
  b.writeBigUInt64LE(BigInt(v), at);
}

/** Start writing a .npz at `path` (via a temporary file renamed into place at close). numpy's np.load reads the result. */
export async function createNpzWriter(path: string, opts: NpzWriterOptions = {}): Promise<NpzWriter> {
  const force = opts.forceZip64 ?? false;
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  const { time, date } = dosDateTime(new Date());
  let pos = 0;
  let pending = Buffer.allocUnsafe(WRITE_BUFFER);
  let fill = 0;
  let current: NpzMemberWriter | null = null;
  let closed = false;
  const done: DoneMember[] = [];

  async function writeAt(bytes: Uint8Array, at: number): Promise<void> {
    let off = 0;
    while (off < bytes.length) {
      const { bytesWritten } = await fh.write(bytes, off, bytes.length - off, at + off);
      off += bytesWritten;
    }
  }
  async function flush(): Promise<void> {
    if (fill > 0) {
      await writeAt(pending.subarray(0, fill), pos - fill);
      fill = 0;
    }
  }
  /** Append bytes at the end of the file (buffered). */
  async function put(bytes: Uint8Array): Promise<void> {
    if (fill + bytes.length <= pending.length) {
      pending.set(bytes, fill);
      fill += bytes.length;
      pos += bytes.length;
      return;
    }
    await flush();
    if (bytes.length >= pending.length) {
      await writeAt(bytes, pos);
      pos += bytes.length;
    } else {
      pending.set(bytes, 0);
      fill = bytes.length;
      pos += bytes.length;
    }
  }

  const writer: NpzWriter = {
    path,
    async beginMember(name, dtype, rowShape) {
      if (closed) throw new Error(`${path}: beginMember after close`);
      if (current) throw new Error(`${path}: member ${current.name} is still open; end() it first`);
      const rowBytes = rowShape.reduce((a, b) => a * b, dtypeSize(dtype));
      if (rowBytes === 0) throw new RangeError(`${path}: rows of shape (${rowShape.join(', ')}) hold no data; cannot stream them`);
      const nameBytes = Buffer.from(`${name}.npy`, 'utf8');
      const flags = /^[\x20-\x7e]*$/.test(name) ? 0 : 0x0800; // bit 11: UTF-8 name
      const localOffset = pos;
      const local = Buffer.alloc(30 + nameBytes.length + LOCAL_ZIP64_EXTRA);
      local.writeUInt32LE(0x04034b50, 0);
      local.writeUInt16LE(45, 4); // version needed: 4.5 (zip64)
      local.writeUInt16LE(flags, 6);
      local.writeUInt16LE(0, 8); // stored
      local.writeUInt16LE(time, 10);
      local.writeUInt16LE(date, 12);
      // crc (14) patched at end; sizes say "see zip64 extra"
      local.writeUInt32LE(U32, 18);
      local.writeUInt32LE(U32, 22);
      local.writeUInt16LE(nameBytes.length, 26);
      local.writeUInt16LE(LOCAL_ZIP64_EXTRA, 28);
      nameBytes.copy(local, 30);
      const extraAt = 30 + nameBytes.length;
      local.writeUInt16LE(0x0001, extraAt);
      local.writeUInt16LE(16, extraAt + 2);
      await put(local);
      const headerLength = encodeNpyHeader(dtype, [RESERVED_ROWS, ...rowShape]).length;
      const npyAt = pos;
      await put(Buffer.alloc(headerLength, 0x20)); // reserved; the real header is written at end()
      let rows = 0;
      let dataCrc = 0;
      let dataBytes = 0;
      let ended = false;
      const m: NpzMemberWriter = {
        name, rowBytes,
        get rows() { return rows; },
        async append(data) {
          if (ended) throw new Error(`${path}: append to ended member ${name}`);
          const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
          if (bytes.length % rowBytes !== 0) {
            throw new RangeError(`${path}:${name}: appended ${bytes.length} bytes, not a whole number of ${rowBytes}-byte rows`);
          }
          rows += bytes.length / rowBytes;
          dataCrc = crc32(bytes, dataCrc);
          dataBytes += bytes.length;
          await put(bytes);
        },
        async end() {
          if (ended) throw new Error(`${path}: member ${name} ended twice`);
          ended = true;
          await flush();
          const header = encodeNpyHeader(dtype, [rows, ...rowShape], headerLength);
          await writeAt(header, npyAt);
          const size = headerLength + dataBytes;
          const crc = crc32Combine(crc32(header), dataCrc, dataBytes);
          const patch = Buffer.alloc(4);
          patch.writeUInt32LE(crc, 0);
          await writeAt(patch, localOffset + 14);
          const sizes = Buffer.alloc(16);
          writeU64(sizes, size, 0);
          writeU64(sizes, size, 8);
          await writeAt(sizes, localOffset + extraAt + 4);
          done.push({ nameBytes, flags, crc, size, localOffset });
          current = null;
        },
      };
      current = m;
      return m;
    },
    async close() {
      if (closed) throw new Error(`${path}: closed twice`);
      if (current) throw new Error(`${path}: member ${current.name} is still open; end() it first`);
      closed = true;
      try {
        const cdStart = pos;
        for (const d of done) {
          const big = [d.size >= U32 || force, d.size >= U32 || force, d.localOffset >= U32 || force];
          const extraLen = big.some(Boolean) ? 4 + 8 * big.filter(Boolean).length : 0;
          const e = Buffer.alloc(46 + d.nameBytes.length + extraLen);
          e.writeUInt32LE(0x02014b50, 0);
          e.writeUInt16LE((3 << 8) | 45, 4); // made by: unix, 4.5
          e.writeUInt16LE(45, 6);
          e.writeUInt16LE(d.flags, 8);
          e.writeUInt16LE(0, 10);
          e.writeUInt16LE(time, 12);
          e.writeUInt16LE(date, 14);
          e.writeUInt32LE(d.crc, 16);
          e.writeUInt32LE(big[1] ? U32 : d.size, 20);
          e.writeUInt32LE(big[0] ? U32 : d.size, 24);
          e.writeUInt16LE(d.nameBytes.length, 28);
          e.writeUInt16LE(extraLen, 30);
          // comment length, disk number, internal attributes: 0
          e.writeUInt32LE((0o100644 << 16) >>> 0, 38); // external attributes: a regular file, rw-r--r--
          e.writeUInt32LE(big[2] ? U32 : d.localOffset, 42);
          d.nameBytes.copy(e, 46);
          if (extraLen) {
            let at = 46 + d.nameBytes.length;
            e.writeUInt16LE(0x0001, at);
            e.writeUInt16LE(extraLen - 4, at + 2);
            at += 4;
            if (big[0]) { writeU64(e, d.size, at); at += 8; }
            if (big[1]) { writeU64(e, d.size, at); at += 8; }
            if (big[2]) { writeU64(e, d.localOffset, at); at += 8; }
          }
          await put(e);
        }
        const cdSize = pos - cdStart;
        const zip64 = force || done.length >= 0xffff || cdStart >= U32 || cdSize >= U32;
        if (zip64) {
          const eocd64At = pos;
          const r = Buffer.alloc(56 + 20);
          r.writeUInt32LE(0x06064b50, 0);
          writeU64(r, 44, 4); // size of the rest of this record
          r.writeUInt16LE((3 << 8) | 45, 12);
          r.writeUInt16LE(45, 14);
          // disk numbers (16, 20): 0
          writeU64(r, done.length, 24);
          writeU64(r, done.length, 32);
          writeU64(r, cdSize, 40);
          writeU64(r, cdStart, 48);
          r.writeUInt32LE(0x07064b50, 56); // zip64 end of central directory locator
          // disk with the zip64 end record (60): 0
          writeU64(r, eocd64At, 64);
          r.writeUInt32LE(1, 72); // total disks
          await put(r);
        }
        const end = Buffer.alloc(22);
        end.writeUInt32LE(0x06054b50, 0);
        end.writeUInt16LE(zip64 ? 0xffff : done.length, 8);
        end.writeUInt16LE(zip64 ? 0xffff : done.length, 10);
        end.writeUInt32LE(zip64 ? U32 : cdSize, 12);
        end.writeUInt32LE(zip64 ? U32 : cdStart, 16);
        await put(end);
        await flush();
        await fh.datasync();
      } finally {
        await fh.close();
        pending = Buffer.alloc(0);
      }
      await rename(tmp, path);
      return pos;
    },
    async abort() {
      if (!closed) {
        closed = true;
        await fh.close().catch(() => {});
      }
      await rm(tmp, { force: true });
    },
  };
  return writer;
}
