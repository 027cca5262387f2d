// IDX (the MNIST file format), plain or gzip-compressed, read as a stream of little-endian row chunks.
// Layout: 0x00 0x00 <type code> <ndims>, then ndims big-endian uint32 dims, then big-endian data in C order.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { type DType, dtypeSize, swapBytes } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';

const TYPE_CODES: Record<number, DType> = {
  0x08: 'uint8', 0x09: 'int8', 0x0b: 'int16', 0x0c: 'int32', 0x0d: 'float32', 0x0e: 'float64',
};
/** Records bigger than this are refused (a header this large is almost certainly corrupt). */
const MAX_ROW_BYTES = 1 << 30;
const MAX_DIMS = 16;
const READ_CHUNK = 1 << 20;

/** What an IDX header says, plus how the file is stored. */
export interface IdxInfo {
  readonly path: string;
  /** The file is gzip-compressed (detected from its magic bytes, not its name). */
  readonly gzip: boolean;
  readonly dtype: DType;
  /** All dims from the header; shape[0] is the record count. */
  readonly shape: readonly number[];
  readonly rows: number;
  /** Shape of one record: shape[1:]. */
  readonly rowShape: readonly number[];
  readonly rowBytes: number;
  /** Bytes of the (uncompressed) header before the first record. */
  readonly headerBytes: number;
  /** Size of the file on disk (compressed size for .gz). */
  readonly fileBytes: number;
}

/** Parse an IDX header from its first bytes; returns null if more bytes are needed. */
export function parseIdxHeader(buf: Uint8Array, file: string): { dtype: DType; shape: number[]; headerBytes: number } | null {
  if (buf.length < 4) return null;
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new SlimfitError('not an IDX file (the first two bytes must be zero)', {
      file, offset: 0, hint: 'expected an MNIST-style IDX file such as train-images-idx3-ubyte (plain or .gz)',
    });
  }
  const dtype = TYPE_CODES[buf[2]];
  if (!dtype) {
    throw new SlimfitError(`unknown IDX type code 0x${buf[2].toString(16).padStart(2, '0')}`, {
      file, offset: 2, hint: 'IDX type codes are 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64; the file is corrupt or not IDX',
    });
  }
  const ndims = buf[3];
  if (ndims < 1 || ndims > MAX_DIMS) {
    throw new SlimfitError(`IDX header has ${ndims} dimensions`, { file, offset: 3, hint: `expected 1 to ${MAX_DIMS}; the file is corrupt` });
  }
  const headerBytes = 4 + 4 * ndims;
  if (buf.length < headerBytes) return null;
  const view = new DataView(buf.buffer, buf.byteOffset, headerBytes);
  const shape: number[] = [];
  for (let i = 0; i < ndims; i++) shape.push(view.getUint32(4 + 4 * i, false));
  let rowBytes = dtypeSize(dtype);
  for (const d of shape.slice(1)) rowBytes *= d;
  if (rowBytes === 0 || rowBytes > MAX_ROW_BYTES) {
    throw new SlimfitError(`IDX header describes records of shape (${shape.slice(1).join(', ')}) = ${rowBytes} bytes each`, {
      file, offset: 4, hint: `records must hold between 1 byte and ${MAX_ROW_BYTES} bytes; the header is corrupt`,
    });
  }
  return { dtype, shape, headerBytes };
}

function describe(path: string, gzip: boolean, fileBytes: number, h: { dtype: DType; shape: number[]; headerBytes: number }): IdxInfo {
  const rowShape = h.shape.slice(1);
  const rowBytes = rowShape.reduce((a, b) => a * b, dtypeSize(h.dtype));
  return { path, gzip, dtype: h.dtype, shape: h.shape, rows: h.shape[0], rowShape, rowBytes, headerBytes: h.headerBytes, fileBytes };
}

/** Inflate a .gz file as a stream of chunks, turning zlib failures into errors that name the file. */
async function* gunzipChunks(path: string): AsyncGenerator<Buffer> {
  const gunzip = createGunzip({ chunkSize: READ_CHUNK });
  const src = createReadStream(path, { highWaterMark: READ_CHUNK });
  src.on('error', (e) => gunzip.destroy(e));
  src.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } finally {
    src.destroy();
    gunzip.destroy();
  }
}

/** Read and validate an IDX header (plain or gzip); for plain files also check the file size matches it exactly. */
export async function openIdx(path: string): Promise<IdxInfo> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new SlimfitError(`cannot open: ${e.code ?? e.message}`, { file: path, hint: 'check the path and its permissions' });
  });
  let fileBytes: number;
  const head = Buffer.alloc(4 + 4 * MAX_DIMS);
  let got: number;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new SlimfitError('not a regular file', { file: path, hint: 'give the IDX file itself (a folder in MNIST layout is given as SRC)' });
    fileBytes = st.size;
    got = (await fh.read(head, 0, head.length, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  const gzip = got >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  if (!gzip) {
    const h = parseIdxHeader(head.subarray(0, got), path);
    if (!h) throw new SlimfitError(`file ends inside the IDX header (${fileBytes} bytes)`, { file: path, offset: got, hint: 'the file is empty or truncated' });
    const info = describe(path, false, fileBytes, h);
    const want = info.headerBytes + info.rows * info.rowBytes;
    if (fileBytes !== want) {
      const whole = Math.floor((fileBytes - info.headerBytes) / info.rowBytes);
      throw new SlimfitError(
        fileBytes < want
          ? `truncated IDX file: the header promises ${info.rows} records of ${info.rowBytes} bytes (${want} bytes in all) but the file has ${fileBytes} bytes, which ends in record ${whole}`
          : `IDX file has ${fileBytes - want} bytes after the ${info.rows} records its header describes`,
        { file: path, offset: Math.min(fileBytes, want), hint: 'the file is incomplete or corrupt; download it again' },
      );
    }
    return info;
  }
  // gzip: inflate just enough for the header.
  let buf = Buffer.alloc(0);
  for await (const chunk of gunzipIdx(path)) {
    buf = Buffer.concat([buf, chunk.subarray(0, 4 + 4 * MAX_DIMS)]);
    const h = parseIdxHeader(buf, path);
    if (h) return describe(path, true, fileBytes, h);
    if (buf.length >= 4 + 4 * MAX_DIMS) break;
  }
  throw new SlimfitError('gzip data ends inside the IDX header', { file: path, hint: 'the file is empty or truncated; download it again' });
}

/** gunzipChunks with zlib errors (truncation, bad CRC, not gzip) as SlimfitErrors; `where` describes the position reached. */
async function* gunzipIdx(path: string, where: () => string = () => 'in the header'): AsyncGenerator<Buffer> {
  try {
    yield* gunzipChunks(path);
  } catch (e) {
    if (e instanceof SlimfitError) throw e;
    const msg = (e as Error).message;
    const truncated = /unexpected end/i.test(msg);
    throw new SlimfitError(`${truncated ? 'gzip stream ended early' : `cannot decompress (${msg})`} ${where()}`, {
      file: path, hint: truncated ? 'the .gz file is truncated (interrupted download?); download it again' : 'the .gz file is corrupt; download it again',
    });
  }
}

/**
 * Stream the records of an IDX file as chunks of whole records (at most `rowsPerChunk` each), converted to
 * little-endian. Each chunk is a fresh buffer the caller may keep. Truncation is reported with the record it hit.
 * `from`/`to`: only records [from, to) of a plain (not gzipped) file, read from their place.
 */
export async function* idxChunks(info: IdxInfo, rowsPerChunk: number, from = 0, to = info.rows): AsyncGenerator<Uint8Array> {
  const { path, rows, rowBytes } = info;
  const per = Math.max(1, Math.floor(rowsPerChunk));
  const elem = dtypeSize(info.dtype);
  const finish = (chunk: Uint8Array): Uint8Array => {
    if (elem > 1) swapBytes(chunk, elem);
    return chunk;
  };
  if ((from !== 0 || to !== rows) && info.gzip) throw new Error('internal: a record range of a gzipped IDX file');
  if (!info.gzip) {
    const fh = await open(path, 'r');
    try {
      for (let r = from; r < to; r += per) {
        const n = Math.min(per, to - r);
        const chunk = new Uint8Array(Buffer.allocUnsafeSlow(n * rowBytes).buffer); // fully overwritten below
        let done = 0;
        const pos = info.headerBytes + r * rowBytes;
        while (done < chunk.length) {
          const { bytesRead } = await fh.read(chunk, done, Math.min(chunk.length - done, 1 << 30), pos + done);
          if (bytesRead === 0) {
            throw new SlimfitError(`file ended early, in record ${r + Math.floor(done / rowBytes)} of ${rows}`, {
              file: path, offset: pos + done, hint: 'the file was truncated or changed while being read',
            });
          }
          done += bytesRead;
        }
        yield finish(chunk);
      }
    } finally {
      await fh.close();
    }
    return;
  }
  // gzip: copy inflated bytes into record-aligned chunks.
  let skip = info.headerBytes; // header bytes still to discard
  let row = 0; // records completed and yielded or being filled
  let chunk: Uint8Array | null = null;
  let fill = 0;
  let extra = 0;
  const where = () => `in record ${row + Math.floor(fill / rowBytes)} of ${rows}`;
  for await (const data of gunzipIdx(path, where)) {
    let off = 0;
    if (skip > 0) {
      off = Math.min(skip, data.length);
      skip -= off;
    }
    while (off < data.length) {
      if (row >= rows) { extra += data.length - off; break; }
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
        yield finish(out);
      }
    }
  }
  if (row < rows) {
    throw new SlimfitError(`gzip data ended early ${where()} (the header promises ${rows} records)`, {
      file: path, hint: 'the .gz file is truncated or its header is wrong; download it again',
    });
  }
  if (extra > 0) {
    throw new SlimfitError(`IDX data has ${extra} bytes after the ${rows} records its header describes`, {
      file: path, hint: 'the file is corrupt; download it again',
    });
  }
}
