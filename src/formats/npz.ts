// numpy .npz (a zip of .npy members): list members, open stored members in place, stream deflated ones.
import type { Readable } from 'node:stream';
import { createReadStream } from 'node:fs';
import { crc32, createInflateRaw } from 'node:zlib';
import yauzl from 'yauzl';
import { dtypeSize, swapBytes } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { type NpyFile, type NpyHeader, openNpy, parseNpyHeader } from './npy.ts';

/** Rows bigger than this are refused when streaming (a header this large is almost certainly corrupt). */
const MAX_ROW_BYTES = 1 << 30;
const MAX_HEADER_BYTES = (1 << 20) + 12;
/** Read and inflate granularity when streaming members. */
const STREAM_CHUNK = 1 << 20;

/** One array inside a .npz. */
export interface NpzMember {
  /** Array name as numpy's np.load(...)[name] knows it (the member file name without `.npy`). */
  name: string;
  /** The zip member's file name, e.g. `x.npy`. */
  fileName: string;
  /** True for deflated members (np.savez_compressed); false for stored ones (np.savez). */
  compressed: boolean;
  /** Zip compression method (0 stored, 8 deflate). */
  compressionMethod: number;
  compressedSize: number;
  uncompressedSize: number;
  /** CRC-32 of the uncompressed member, from the central directory. */
  crc32: number;
  /** Absolute file offset of the member's (compressed or stored) bytes; for stored members, where its .npy starts. */
  dataOffset: number;
}

/** `${path}:${name}.npy`, how members are named in messages. */
export function memberDisplayName(path: string, name: string): string {
  return `${path}:${name}.npy`;
}

async function openZip(path: string): Promise<yauzl.ZipFile> {
  try {
    // Sizes are checked in readMembers, after the encryption check (yauzl's own check runs first and calls an
    // encrypted member's sizes a mismatch: "152 != 152").
    return await yauzl.openPromise(path, { autoClose: false, lazyEntries: true, decodeStrings: true, validateEntrySizes: false });
  } catch (e) {
    const msg = (e as Error).message;
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw new SlimfitError(`cannot open: ${code}`, { file: path, hint: 'check the path and its permissions' });
    throw new SlimfitError(`cannot read as a .npz (zip) file: ${msg}`, {
      file: path, hint: 'the file is truncated (interrupted copy/download?) or not a .npz; re-create it with np.savez',
    });
  }
}

async function readMembers(path: string, zip: yauzl.ZipFile): Promise<Array<{ member: NpzMember; entry: yauzl.Entry }>> {
  const out: Array<{ member: NpzMember; entry: yauzl.Entry }> = [];
  try {
    for await (const entry of zip.eachEntry()) {
      if (entry.fileName.endsWith('/')) continue; // directory entry
      if (entry.isEncrypted()) {
        throw new SlimfitError(`member ${entry.fileName} is encrypted`, { file: path, hint: 'numpy cannot read it either; save it without encryption (np.savez)' });
      }
      if (entry.compressionMethod === 0 && entry.compressedSize !== entry.uncompressedSize) {
        throw new SlimfitError(`member ${entry.fileName} is stored uncompressed but the zip directory gives it ${entry.compressedSize} bytes on disk and ${entry.uncompressedSize} unpacked`, {
          file: path, hint: 'the .npz is corrupt; re-create it with np.savez',
        });
      }
      const { fileDataStart } = await zip.readLocalFileHeaderPromise(entry, { minimal: true });
      const name = entry.fileName.endsWith('.npy') ? entry.fileName.slice(0, -4) : entry.fileName;
      if (out.some((m) => m.member.name === name)) {
        // numpy's np.load would silently use the last of them (zipfile keeps the last name); which one was meant is unknowable.
        throw new SlimfitError(`the .npz holds two members named ${entry.fileName}`, { file: path, hint: 'numpy would read the last one; re-create the .npz with each array saved once' });
      }
      out.push({
        entry,
        member: {
          name, fileName: entry.fileName, compressed: entry.compressionMethod !== 0, compressionMethod: entry.compressionMethod,
          compressedSize: entry.compressedSize, uncompressedSize: entry.uncompressedSize, crc32: entry.crc32, dataOffset: fileDataStart,
        },
      });
    }
  } catch (e) {
    if (e instanceof SlimfitError) throw e;
    throw new SlimfitError(`broken zip structure: ${(e as Error).message}`, {
      file: path, hint: 'the .npz is corrupt or truncated; re-create it with np.savez',
    });
  }
  return out;
}

/** List the arrays in a .npz (reads only the zip directory and local headers). */
export async function listNpz(path: string): Promise<NpzMember[]> {
  const zip = await openZip(path);
  try {
    return (await readMembers(path, zip)).map((m) => m.member);
  } finally {
    zip.close();
  }
}

function findMember<T extends { member: NpzMember }>(path: string, members: T[], name: string): T {
  const want = name.endsWith('.npy') ? name.slice(0, -4) : name;
  const found = members.find((m) => m.member.name === want);
  if (!found) {
    throw new SlimfitError(`no array named '${want}'`, {
      file: path, hint: `the .npz holds: ${members.map((m) => m.member.name).join(', ') || '(nothing)'}`,
    });
  }
  return found;
}

/** Open a STORED member for random-access row reads in place (no copy, no decompression). Deflated members: use {@link streamNpyRows}. */
export async function openNpzMember(path: string, name: string): Promise<NpyFile> {
  const members = await listNpz(path);
  const { member } = findMember(path, members.map((member) => ({ member })), name);
  const display = memberDisplayName(path, member.name);
  if (member.compressed) {
    throw new SlimfitError('member is compressed and cannot be read in place', {
      file: display, hint: 'stream it with streamNpyRows, or re-save the arrays with np.savez (not savez_compressed) for random access',
    });
  }
  try {
    return await openNpy(path, { offset: member.dataOffset, length: member.compressedSize, displayName: display });
  } catch (e) {
    throw await corruptOr(path, member, e);
  }
}

/** True when the member's bytes (inflated if deflated) match its CRC-32; false on a mismatch or a broken deflate stream. */
async function memberCrcOk(path: string, member: NpzMember): Promise<boolean> {
  if (member.compressedSize === 0) return member.uncompressedSize === 0;
  const raw = createReadStream(path, { start: member.dataOffset, end: member.dataOffset + member.compressedSize - 1, highWaterMark: STREAM_CHUNK });
  const stream: Readable = member.compressionMethod === 8 ? raw.pipe(createInflateRaw({ chunkSize: STREAM_CHUNK })) : raw;
  let crc = 0, n = 0;
  try {
    for await (const c of stream as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > member.uncompressedSize) return false;
      crc = crc32(c, crc);
    }
    return n === member.uncompressedSize && (crc >>> 0) === (member.crc32 >>> 0);
  } catch {
    return false;
  } finally {
    stream.destroy();
    raw.destroy();
  }
}

/**
 * What to throw for an error found while reading a member's .npy header: when the member fails its CRC-32 the
 * header is damage, not a format question, and saying so beats quoting binary noise.
 */
async function corruptOr(path: string, member: NpzMember, e: unknown): Promise<unknown> {
  if (!(e instanceof SlimfitError) || (await memberCrcOk(path, member))) return e;
  return new SlimfitError(`member ${member.fileName} is corrupt: its bytes do not match the CRC-32 in the zip directory (its .npy header reads: ${e.file && e.message.startsWith(`${e.file}: `) ? e.message.slice(e.file.length + 2) : e.message})`, {
    file: path, hint: 'the .npz was damaged (disk, copy, download); re-create it with numpy',
  });
}

/** A member streamed as whole-row chunks: its header first, then the rows. */
export interface NpyRowStream {
  header: NpyHeader;
  rows: number;
  rowShape: number[];
  rowBytes: number;
  member: NpzMember;
  /** Chunks of exactly rowsPerChunk whole rows (the last may be shorter), little-endian, fresh buffers; CRC and length are checked at the end. */
  chunks: AsyncIterable<Uint8Array>;
  /** Release the zip without reading (or after partly reading) the rows; iterating to the end releases it too. */
  close(): void;
}

function zipError(display: string, e: unknown, where: string): SlimfitError {
  if (e instanceof SlimfitError) return e;
  const msg = (e as Error).message;
  const what = (e as NodeJS.ErrnoException).code?.startsWith('Z_') ? `has corrupt compressed data (zlib: ${msg})` : `cannot be read: ${msg}`;
  return new SlimfitError(`member ${what} ${where}`, {
    file: display, hint: 'the .npz is corrupt or truncated; re-create it with np.savez_compressed',
  });
}

/**
 * Stream any member (deflated or stored) of a .npz row by row, never holding the whole member: the .npy header is parsed
 * from the inflated stream, then rows come in chunks. The member's CRC-32 is checked when the stream ends.
 */
export async function streamNpyRows(path: string, name: string, rowsPerChunk: number): Promise<NpyRowStream> {
  const members = await listNpz(path);
  const { member } = findMember(path, members.map((m) => ({ member: m })), name);
  const display = memberDisplayName(path, member.name);
  if (member.compressionMethod !== 0 && member.compressionMethod !== 8) {
    throw new SlimfitError(`zip compression method ${member.compressionMethod} is not supported`, {
      file: display, hint: 'save with np.savez or np.savez_compressed (deflate)',
    });
  }
  if (member.compressedSize === 0) throw new SlimfitError('member is empty', { file: display, hint: 'the .npz is corrupt; re-create it' });
  // Our own 1 MB reads and inflate chunks (yauzl's stream yields ~16 kB pieces, 2-3x slower end to end).
  const raw = createReadStream(path, {
    start: member.dataOffset, end: member.dataOffset + member.compressedSize - 1, highWaterMark: STREAM_CHUNK,
  });
  let stream: Readable = raw;
  if (member.compressionMethod === 8) {
    const inflate = createInflateRaw({ chunkSize: STREAM_CHUNK });
    raw.on('error', (e) => inflate.destroy(e));
    raw.pipe(inflate);
    stream = inflate;
  }
  let iter: AsyncIterator<Buffer> | undefined;
  try {
    iter = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
    let crc = 0;
    let seen = 0; // inflated bytes so far
    // Gather the header.
    let head = Buffer.alloc(0);
    let header: NpyHeader | undefined;
    while (!header) {
      let r: IteratorResult<Buffer>;
      try {
        r = await iter.next();
      } catch (e) {
        throw zipError(display, e, 'in the .npy header');
      }
      if (r.done) throw new SlimfitError('member ends inside its .npy header', { file: display, offset: seen, hint: 'the member is truncated or not a .npy' });
      crc = crc32(r.value, crc);
      seen += r.value.length;
      head = Buffer.concat([head, r.value]);
      if (head.length >= 12 || head.length >= 10 && head[6] === 1) {
        const major = head[6];
        const need = (major === 1 ? 10 + head.readUInt16LE(8) : 12 + head.readUInt32LE(8));
        if (head.length >= need || need > MAX_HEADER_BYTES || head.subarray(0, 6).toString('latin1') !== '\x93NUMPY') {
          try { header = parseNpyHeader(head, display); } catch (e) { throw await corruptOr(path, member, e); }
        }
      }
    }
    const shape = header.shape;
    const rows = shape.length === 0 ? 1 : shape[0];
    const rowShape = shape.slice(1);
    const rowBytes = rowShape.reduce((a, b) => a * b, dtypeSize(header.dtype));
    const want = header.dataOffset + rows * rowBytes;
    if (want !== member.uncompressedSize) {
      throw await corruptOr(path, member, new SlimfitError(
        `truncated or lying header: shape (${shape.join(', ')}) of ${header.dtype} needs ${want} bytes but the member holds ${member.uncompressedSize}`,
        { file: display, hint: 'the .npz is corrupt; re-create it with numpy' },
      ));
    }
    if (rows > 0 && (rowBytes === 0 || rowBytes > MAX_ROW_BYTES)) {
      throw new SlimfitError(`rows of shape (${rowShape.join(', ')}) = ${rowBytes} bytes cannot be streamed`, {
        file: display, hint: `rows must hold 1 to ${MAX_ROW_BYTES} bytes`,
      });
    }
    const per = Math.max(1, Math.floor(rowsPerChunk));
    const swap = header.bigEndian ? dtypeSize(header.dtype) : 0;
    const first = head.subarray(header.dataOffset);
    const it = iter;
    const src = stream;
    let started = false;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      if (started) throw new Error(`${display}: streamNpyRows chunks can be iterated only once`);
      started = true;
      let row = 0;
      let chunk: Uint8Array | null = null;
      let fill = 0;
      const where = () => `in row ${row + Math.floor(fill / rowBytes)} of ${rows}`;
      try {
        let data: Buffer = first;
        for (;;) {
          let off = 0;
          while (off < data.length) {
            if (row >= rows) throw new SlimfitError(`member has bytes after its ${rows} rows`, { file: display, hint: 'the .npz is corrupt' });
            if (!chunk) chunk = new Uint8Array(Buffer.allocUnsafeSlow(Math.min(per, rows - row) * rowBytes).buffer);
            const take = Math.min(chunk.length - fill, data.length - off);
            chunk.set(data.subarray(off, off + take), fill);
            fill += take;
            off += take;
            if (fill === chunk.length) {
              row += chunk.length / rowBytes;
              const out = chunk;
              chunk = null;
              fill = 0;
              if (swap) swapBytes(out, swap);
              yield out;
            }
          }
          let r: IteratorResult<Buffer>;
          try {
            r = await it.next();
          } catch (e) {
            throw zipError(display, e, where());
          }
          if (r.done) break;
          crc = crc32(r.value, crc);
          seen += r.value.length;
          data = r.value;
        }
        if (row < rows) throw new SlimfitError(`member ended early ${where()}`, { file: display, hint: 'the .npz is truncated or corrupt' });
        if ((crc >>> 0) !== (member.crc32 >>> 0)) {
          throw new SlimfitError(`CRC-32 mismatch (data 0x${(crc >>> 0).toString(16)}, zip directory 0x${(member.crc32 >>> 0).toString(16)})`, {
            file: display, hint: 'the member is corrupt; re-create the .npz',
          });
        }
      } finally {
        src.destroy();
        raw.destroy();
      }
    }
    const close = () => { src.destroy(); raw.destroy(); };
    return { header, rows, rowShape, rowBytes, member, chunks: chunks(), close };
  } catch (e) {
    stream.destroy();
    raw.destroy();
    throw e;
  }
}

/** Incremental CRC-32 check of a stored member read in order: feed raw (on-disk byte order) bytes from its start. */
export function memberCrcChecker(path: string, member: NpzMember): { update(raw: Uint8Array): void; finish(): void } {
  let crc = 0;
  let n = 0;
  return {
    update(raw) { crc = crc32(raw, crc); n += raw.length; },
    finish() {
      if (n !== member.uncompressedSize) throw new Error(`internal: CRC fed ${n} of ${member.uncompressedSize} bytes`);
      if ((crc >>> 0) !== (member.crc32 >>> 0)) {
        throw new SlimfitError(`CRC-32 mismatch (data 0x${(crc >>> 0).toString(16)}, zip directory 0x${(member.crc32 >>> 0).toString(16)})`, {
          file: memberDisplayName(path, member.name), hint: 'the member is corrupt; re-create the .npz',
        });
      }
    },
  };
}

/** Swap a little-endian copy back to on-disk order for CRC purposes (only needed for big-endian members). */
export function toDiskOrder(le: Uint8Array, header: NpyHeader): Uint8Array {
  if (!header.bigEndian) return le;
  const copy = new Uint8Array(le);
  swapBytes(copy, dtypeSize(header.dtype));
  return copy;
}
