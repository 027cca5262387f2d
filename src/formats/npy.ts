// numpy .npy: header parse/encode, random-access row reader and streaming row writer.
// Hand-written because no npm library reads .npy by position or writes it as a stream.
import { createSha256 } from '../core/sha256.ts';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { type DType, descrOf, dtypeSize, parseDescr, swapBytes } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { writeAtomic } from '../core/write-atomic.ts';

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
/** Headers bigger than this are refused rather than allocated (numpy itself refuses > 10 kB by default). */
const MAX_HEADER_BYTES = 1 << 20;
/** Reads are split so one call never asks the OS for more than this. */
const MAX_READ = 1 << 30;

/** What a .npy header says. Data is C-order rows of `shape[1:]` elements starting at `dataOffset`. */
export interface NpyHeader {
  version: [number, number];
  dtype: DType;
  /** The file stores big-endian values; readers here convert to little-endian. */
  bigEndian: boolean;
  fortranOrder: boolean;
  shape: number[];
  /** Bytes from the start of the .npy to its first data byte. */
  dataOffset: number;
}

/** Bytes of the fixed preamble (magic, version, header length) needed before the header text. */
export function npyPreambleLength(version: number): number {
  return version === 1 ? 10 : 12;
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Parse a .npy header from the first bytes of a file; `file` names it in errors. Needs at least the whole header. */
export function parseNpyHeader(buf: Uint8Array, file: string): NpyHeader {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 10 || !b.subarray(0, 6).equals(MAGIC)) {
    throw new SlimfitError('not a .npy file (wrong magic bytes)', {
      file, offset: 0, hint: 'expected a file written by numpy.save; check the path and that the file is not compressed or truncated',
    });
  }
  const major = b[6], minor = b[7];
  if (major < 1 || major > 3) {
    throw new SlimfitError(`unsupported .npy format version ${major}.${minor}`, { file, offset: 6, hint: 'slimfit reads versions 1.0, 2.0 and 3.0' });
  }
  const pre = npyPreambleLength(major);
  if (b.length < pre) throw new SlimfitError('file ends inside the .npy header', { file, offset: b.length, hint: 'the file is truncated' });
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  if (hlen > MAX_HEADER_BYTES) {
    throw new SlimfitError(`.npy header claims ${hlen} bytes, more than the ${MAX_HEADER_BYTES} slimfit accepts`, { file, offset: 8, hint: 'the file is corrupt' });
  }
  if (b.length < pre + hlen) throw new SlimfitError('file ends inside the .npy header', { file, offset: b.length, hint: 'the file is truncated' });
  const text = b.subarray(pre, pre + hlen).toString(major === 3 ? 'utf8' : 'latin1');
  const bad = (what: string): never => {
    // Non-ASCII bytes are shown as '?': a corrupt header is mostly binary noise.
    const shown = text.trim().slice(0, 200).replace(/[^\x20-\x7e]/g, '?');
    throw new SlimfitError(`cannot read the .npy header: ${what.replace(/[^\x20-\x7e]/g, '?')}`, { file, offset: pre, hint: `header text was "${shown}"` });
  };
  const dict = parseHeaderDict(text);
  if (typeof dict === 'string') bad(dict);
  const d = dict as Map<string, HeaderValue>;
  const descr = d.get('descr');
  if (Array.isArray(descr) && descr.length > 0 && typeof descr[0] !== 'number') {
    throw new SlimfitError('structured (record) arrays are not supported', { file, offset: pre, hint: 'save each field as its own array, e.g. np.save("x.npy", a["x"])' });
  }
  for (const k of d.keys()) if (!['descr', 'fortran_order', 'shape'].includes(k)) bad(`unexpected key '${k}' (numpy refuses it too)`);
  if (typeof descr !== 'string') bad("no 'descr' string");
  const parsed = parseDescr(descr as string);
  if (!parsed) {
    throw new SlimfitError(`unsupported dtype '${descr}'`, {
      file, offset: pre, hint: 'supported: bool, (u)int8/16/32/64, float16/32/64; convert with arr.astype(...) before saving',
    });
  }
  const fort = d.get('fortran_order');
  if (typeof fort !== 'boolean') bad("no 'fortran_order' True/False");
  const shapeV = d.get('shape');
  if (!Array.isArray(shapeV) || !shapeV.every((v) => typeof v === 'number')) bad("no 'shape' tuple of whole numbers");
  const shape = (shapeV as number[]).map((n) => {
    if (!Number.isSafeInteger(n)) bad(`shape entry ${n} is too large`);
    return n;
  });
  const fortranOrder = fort as boolean;
  if (fortranOrder && shape.filter((d) => d !== 1).length > 1) {
    throw new SlimfitError('Fortran-ordered (column-major) arrays are not supported', {
      file, offset: pre, hint: 'save a C-ordered copy with np.save(path, np.ascontiguousarray(a))',
    });
  }
  if (!Number.isSafeInteger(product(shape) * dtypeSize(parsed.dtype))) bad(`shape (${shape.join(', ')}) is impossibly large`);
  return { version: [major, minor], dtype: parsed.dtype, bigEndian: parsed.bigEndian, fortranOrder, shape, dataOffset: pre + hlen };
}

/** A value of a .npy header dict: a string, True/False, or a tuple/list (of numbers or nested values). */
type HeaderValue = string | boolean | number | HeaderValue[];

/**
 * Parse the Python dict literal of a .npy header the way numpy's ast.literal_eval sees it (a key given twice keeps
 * its last value, as in Python): string keys; values are strings, True/False, whole numbers (a trailing L allowed)
 * and tuples/lists of them. Returns the entries, or what is wrong.
 */
function parseHeaderDict(text: string): Map<string, HeaderValue> | string {
  let i = 0;
  const ws = () => { while (i < text.length && /\s/.test(text[i])) i++; };
  const fail = (what: string): never => { throw new Error(`${what} at character ${i}`); };
  const value = (): HeaderValue => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end < 0) fail('unterminated string');
      const v = text.slice(i + 1, end);
      i = end + 1;
      return v;
    }
    if (c === '(' || c === '[') {
      const close = c === '(' ? ')' : ']';
      i++;
      const out: HeaderValue[] = [];
      for (;;) {
        ws();
        if (text[i] === close) { i++; return out; }
        out.push(value());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] !== close) fail(`expected ',' or '${close}'`);
      }
    }
    const m = /^(True|False|\d+L?)/.exec(text.slice(i, i + 32));
    if (!m) fail('expected a value');
    i += m![0].length;
    return m![0] === 'True' ? true : m![0] === 'False' ? false : Number(m![0].replace(/L$/, ''));
  };
  try {
    const out = new Map<string, HeaderValue>();
    ws();
    if (text[i] !== '{') fail("expected '{'");
    i++;
    for (;;) {
      ws();
      if (text[i] === '}') { i++; break; }
      const k = value();
      if (typeof k !== 'string') fail('expected a string key');
      ws();
      if (text[i] !== ':') fail("expected ':'");
      i++;
      out.set(k as string, value());
      ws();
      if (text[i] === ',') i++;
      else if (text[i] !== '}') fail("expected ',' or '}'");
    }
    ws();
    if (i < text.length) fail('unexpected text after the dict');
    return out;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Python tuple text for a shape: (), (5,), (5, 28, 28). */
function shapeText(shape: readonly number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/**
 * Encode a version 1.0 .npy header (2.0 if it must be longer), padded with spaces so data starts 64-byte aligned.
 * With `totalLength`, pad to exactly that many bytes (used to rewrite a reserved header in place).
 */
export function encodeNpyHeader(dtype: DType, shape: readonly number[], totalLength?: number): Buffer {
  const dict = `{'descr': '${descrOf(dtype)}', 'fortran_order': False, 'shape': ${shapeText(shape)}, }`;
  let version = 1;
  let pre = 10;
  let total = totalLength ?? Math.ceil((pre + dict.length + 1) / 64) * 64;
  if (total - pre > 0xffff) {
    version = 2;
    pre = 12;
    total = totalLength ?? Math.ceil((pre + dict.length + 1) / 64) * 64;
  }
  const hlen = total - pre;
  if (hlen < dict.length + 1) throw new RangeError(`npy header for shape ${shapeText(shape)} does not fit in ${total} bytes`);
  const out = Buffer.alloc(total, 0x20);
  MAGIC.copy(out, 0);
  out[6] = version;
  out[7] = 0;
  if (version === 1) out.writeUInt16LE(hlen, 8);
  else out.writeUInt32LE(hlen, 8);
  out.write(dict, pre, 'latin1');
  out[total - 1] = 0x0a;
  return out;
}

/** An open .npy (or a .npy stored inside another file, e.g. an uncompressed .npz member), read by rows. */
export interface NpyFile {
  readonly path: string;
  readonly header: NpyHeader;
  readonly dtype: DType;
  /** Full array shape; shape[0] is the row count (1 for a 0-d array). */
  readonly shape: readonly number[];
  /** Shape of one row: shape[1:]. */
  readonly rowShape: readonly number[];
  readonly rows: number;
  /** Bytes per row. */
  readonly rowBytes: number;
  /** Absolute file position of row 0. */
  readonly dataStart: number;
  /** The OS file descriptor (for synchronous positioned reads in worker threads). */
  readonly fd: number;
  /** Read rows [start, end) into `into` (or a new aligned buffer), converted to little-endian. */
  readRows(start: number, end: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Read the listed rows in the listed order; runs of consecutive indices become one read. */
  readRowList(indices: ArrayLike<number>, into?: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** Fill `into[0..len)` from `fh` at `position`, failing clearly if the file ends first. */
export async function readFully(fh: FileHandle, into: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(into.length - done, MAX_READ);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0) {
      throw new SlimfitError(`file ended early: needed ${into.length} bytes, got ${done}`, {
        file, offset: position + done, hint: 'the file was truncated or changed while being read',
      });
    }
    done += bytesRead;
  }
}

/** Options for {@link openNpy}: where the .npy lives inside a larger file. */
export interface OpenNpyOptions {
  /** Byte position of the .npy's magic within the file (default 0). */
  offset?: number;
  /** Bytes the .npy occupies (default: to the end of the file). */
  length?: number;
  /** Name used in error messages (default: the path). */
  displayName?: string;
}

/** Open a .npy for random-access row reads; validates the header against the file size before any data allocation. */
export async function openNpy(path: string, opts: OpenNpyOptions = {}): Promise<NpyFile> {
  const name = opts.displayName ?? path;
  const base = opts.offset ?? 0;
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new SlimfitError(`cannot open: ${e.code ?? e.message}`, { file: name, hint: 'check the path and its permissions' });
  });
  try {
    const size = (await fh.stat()).size;
    if (base > size) throw new SlimfitError(`the .npy is said to start at byte ${base} but the file has only ${size} bytes`, { file: name, offset: base, hint: 'the file is truncated' });
    const avail = Math.min(opts.length ?? size - base, size - base);
    const first = Buffer.alloc(Math.min(avail, 4096));
    await readFully(fh, first, base, name).catch(() => {
      throw new SlimfitError('file is too short to be a .npy', { file: name, offset: 0, hint: 'the file is empty or truncated' });
    });
    let headBuf: Buffer = first;
    if (first.length >= 12 && first.subarray(0, 6).equals(MAGIC)) {
      const major = first[6];
      const hlen = major === 1 ? first.readUInt16LE(8) : first.readUInt32LE(8);
      const need = npyPreambleLength(major) + hlen;
      if (need > first.length && need <= MAX_HEADER_BYTES + 12 && need <= avail) {
        headBuf = Buffer.alloc(need);
        await readFully(fh, headBuf, base, name);
      }
    }
    const header = parseNpyHeader(headBuf, name);
    const shape = header.shape;
    const rows = shape.length === 0 ? 1 : shape[0];
    const rowShape = shape.slice(1);
    const rowBytes = product(rowShape) * dtypeSize(header.dtype);
    const dataBytes = rows * rowBytes;
    const have = avail - header.dataOffset;
    if (dataBytes > have) {
      throw new SlimfitError(
        `truncated or lying header: shape (${shape.join(', ')}) of ${header.dtype} needs ${dataBytes} data bytes but only ${Math.max(0, have)} follow the header`,
        { file: name, offset: base + header.dataOffset, hint: 'the file is incomplete (interrupted copy/download?) or corrupt; re-create it with numpy.save' },
      );
    }
    const dataStart = base + header.dataOffset;
    const swap = header.bigEndian ? dtypeSize(header.dtype) : 0;
    const check = (start: number, end: number) => {
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= rows)) {
        throw new RangeError(`${name}: rows [${start}, ${end}) are outside 0..${rows}`);
      }
    };
    const out = (n: number, into?: Uint8Array): Uint8Array => {
      if (into) {
        if (into.length < n) throw new RangeError(`buffer of ${into.length} bytes is too small for ${n}`);
        return into.subarray(0, n);
      }
      return new Uint8Array(Buffer.allocUnsafeSlow(n).buffer, 0, n); // fully overwritten by the read
    };
    return {
      path, header, dtype: header.dtype, shape, rowShape, rows, rowBytes, dataStart, fd: fh.fd,
      async readRows(start, end, into) {
        check(start, end);
        const buf = out((end - start) * rowBytes, into);
        await readFully(fh, buf, dataStart + start * rowBytes, name);
        if (swap) swapBytes(buf, swap);
        return buf;
      },
      async readRowList(indices, into) {
        const n = indices.length;
        const buf = out(n * rowBytes, into);
        let i = 0;
        while (i < n) {
          const first = indices[i];
          let j = i + 1;
          while (j < n && indices[j] === indices[j - 1] + 1) j++;
          check(first, first + (j - i));
          await readFully(fh, buf.subarray(i * rowBytes, j * rowBytes), dataStart + first * rowBytes, name);
          i = j;
        }
        if (swap) swapBytes(buf, swap);
        return buf;
      },
      close: () => fh.close(),
    };
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** A .npy being written row by row; the row count is fixed into the header at close. */
export interface NpyWriter {
  /** Final path (the file appears there only after close). */
  readonly path: string;
  readonly dtype: DType;
  readonly rowShape: readonly number[];
  readonly rowBytes: number;
  /** Rows appended so far. */
  readonly rows: number;
  /** SHA-256 (hex) of the closed file when `checksumRows` was given and matched; else null. */
  readonly sha256: string | null;
  /** Append whole rows given as little-endian bytes (or a typed array of the writer's dtype). */
  append(data: ArrayBufferView): Promise<void>;
  /** Write out buffered rows and hand the write buffers to the next writer; only close() or abort() may follow. */
  drain(): Promise<void>;
  /** Flush, write the final header, fsync and rename into place. Returns the total file size. */
  close(): Promise<number>;
  /** Delete the partial file. */
  abort(): Promise<void>;
}

/** Room reserved in the header for the row count, enough for any count below 10^20. */
const RESERVED_ROWS = 99_999_999_999_999_999_999;
const WRITE_BUFFER = 1 << 20;
/** Write buffers of closed writers, reused by the next ones (at most MAX_WRITE_BUFFERS kept). */
const writeBuffers: Buffer[] = [];
const MAX_WRITE_BUFFERS = 8;

/** Options for {@link createNpyWriter}. */
export interface NpyWriterOptions {
  /** Write to `path.tmp-PID` and rename at close (default true); false writes `path` directly. */
  atomic?: boolean;
  /**
   * Compute the file's SHA-256 while writing, assuming it will end with this many rows (the header is hashed first);
   * `sha256` is then set at close, or left null if the row count differs (the caller re-reads the file instead).
   */
  checksumRows?: number;
}

/** Start a streaming .npy writer for rows of `rowShape` elements of `dtype` (row count unknown until close). */
export async function createNpyWriter(path: string, dtype: DType, rowShape: readonly number[], opts: NpyWriterOptions = {}): Promise<NpyWriter> {
  const atomic = opts.atomic ?? true;
  const tmp = atomic ? `${path}.tmp-${process.pid}` : path;
  const headerLength = encodeNpyHeader(dtype, [RESERVED_ROWS, ...rowShape]).length;
  const rowBytes = product(rowShape) * dtypeSize(dtype);
  if (rowBytes === 0) throw new RangeError(`${path}: rows of shape (${rowShape.join(', ')}) hold no data; cannot stream them`);
  const fh = await open(tmp, 'w');
  let pos = headerLength;
  let rows = 0;
  // Two buffers: one filling while the other is being written (writes overlap with the caller's work). A file known
  // to stay small (a shard's labels: 20k rows of 1 byte) gets buffers of its size, not two pooled megabytes.
  const expected = opts.checksumRows !== undefined ? opts.checksumRows * rowBytes : Infinity;
  const take = () => expected < WRITE_BUFFER / 2 ? Buffer.allocUnsafe(Math.max(4096, expected)) : writeBuffers.pop() ?? Buffer.allocUnsafe(WRITE_BUFFER);
  let pending = take();
  let spare = take();
  let drained = false;
  let inflight: Promise<void> = Promise.resolve();
  let fill = 0;
  let closed = false;
  let sha256: string | null = null;
  const hasher = opts.checksumRows !== undefined ? createSha256() : null;
  // The header hashed is the one the file will have if it ends with checksumRows rows.
  let hashing: Promise<void> = hasher ? hasher.update(encodeNpyHeader(dtype, [opts.checksumRows!, ...rowShape], headerLength)) : Promise.resolve();
  hashing.catch(() => {}); // surfaced through `inflight`

  async function writeAt(bytes: Uint8Array, at: number): Promise<void> {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, at + done);
      done += bytesWritten;
    }
  }
  /** Start writing `bytes` at the end of the file after the previous write finished; returns without waiting for it. */
  async function queue(bytes: Uint8Array): Promise<void> {
    await inflight;
    // Hashing (off this thread when the addon is built) and writing both read `bytes`; the buffer is reused only
    // after both settled.
    if (hasher) hashing = hashing.then(() => hasher.update(bytes));
    const p = Promise.all([writeAt(bytes, pos), hashing]).then(() => {});
    pos += bytes.length;
    p.catch(() => {}); // surfaced by the next await of `inflight`
    inflight = p;
  }
  async function flush(): Promise<void> {
    if (fill === 0) return;
    const bytes = pending.subarray(0, fill);
    await queue(bytes);
    [pending, spare] = [spare, pending];
    fill = 0;
  }

  const w: NpyWriter = {
    path, dtype, rowShape, rowBytes,
    get rows() { return rows; },
    get sha256() { return sha256; },
    async append(data) {
      if (closed || drained) throw new Error(`${path}: append after close`);
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      if (bytes.length % rowBytes !== 0) {
        throw new RangeError(`${path}: appended ${bytes.length} bytes, not a whole number of ${rowBytes}-byte rows`);
      }
      rows += bytes.length / rowBytes;
      if (fill + bytes.length <= pending.length) {
        pending.set(bytes, fill);
        fill += bytes.length;
        return;
      }
      await flush();
      if (bytes.length >= pending.length) {
        // Too big to buffer: the caller's bytes are written before append returns (the caller may reuse them after).
        await queue(bytes);
        await inflight;
      } else { pending.set(bytes, 0); fill = bytes.length; }
    },
    async drain() {
      if (drained) return;
      drained = true;
      await flush();
      await inflight;
      // Not needed any more: handed to the next writer before the (slow) sync to disk. Left to the garbage
      // collector, every finished shard's buffers stayed in RSS for a while (a 10x conversion has 10x the shards).
      for (const b of [pending, spare]) if (writeBuffers.length < MAX_WRITE_BUFFERS && b.length === WRITE_BUFFER) writeBuffers.push(b);
      pending = spare = Buffer.alloc(0);
    },
    async close() {
      if (closed) throw new Error(`${path}: closed twice`);
      closed = true;
      try {
        await w.drain();
        const header = encodeNpyHeader(dtype, [rows, ...rowShape], headerLength);
        await fh.write(header, 0, header.length, 0);
        await fh.datasync();
        if (hasher && rows === opts.checksumRows) { await hashing; sha256 = hasher.digest(); }
      } finally {
        await fh.close();
      }
      if (atomic) await rename(tmp, path);
      return pos;
    },
    async abort() {
      if (!closed) { closed = true; await inflight.catch(() => {}); await fh.close().catch(() => {}); }
      await rm(tmp, { force: true });
    },
  };
  return w;
}

/** Write a whole (small) array as a .npy in one call (any shape, including 0-d and empty arrays). */
export async function saveNpy(path: string, dtype: DType, shape: readonly number[], data: ArrayBufferView): Promise<void> {
  if (shape.length === 0 || product(shape.slice(1)) === 0) {
    // No streamable rows (a scalar, or rows of zero elements): write header and data in one go.
    const want = product(shape) * dtypeSize(dtype);
    if (data.byteLength !== want) throw new RangeError(`${path}: data holds ${data.byteLength} bytes, shape (${shape.join(', ')}) needs ${want}`);
    await writeAtomic(path, Buffer.concat([encodeNpyHeader(dtype, shape), new Uint8Array(data.buffer, data.byteOffset, data.byteLength)]));
    return;
  }
  const w = await createNpyWriter(path, dtype, shape.slice(1));
  try {
    await w.append(data);
    if (shape.length > 0 && w.rows !== shape[0]) throw new RangeError(`${path}: data holds ${w.rows} rows, shape says ${shape[0]}`);
    await w.close();
  } catch (e) {
    await w.abort();
    throw e;
  }
}
