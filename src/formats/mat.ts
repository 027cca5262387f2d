// MATLAB .mat files as a streamed SampleSource. v5 (the default of scipy.io.savemat and MATLAB's -v7) is read
// here; v7.3 files are HDF5 and are handed to hdf5.ts with MATLAB's dimension order.
//
// v5 layout: a 128-byte header, then one element per variable: miMATRIX (uncompressed) or miCOMPRESSED (a zlib
// stream holding an miMATRIX). Numeric arrays are stored COLUMN-MAJOR. Decisions (README, convert section):
// - Variables: --x NAME / --y NAME, else the first of X,x,data,images,features / y,Y,labels,label,targets.
// - Samples axis: y must be a vector of n labels; the samples axis of X is its FIRST axis if that has length n
//   (rows = samples, as numpy users expect, e.g. X of shape (n, 784)), else its LAST axis if that has length n
//   (MATLAB image stacks, e.g. 28x28xn or SVHN's 32x32x3xn). Each sample keeps the remaining axes in the order
//   scipy.io.loadmat shows them (X[i] resp. X[..., i], C order), so values and orientation match scipy exactly.
// - dtype: the MATLAB class (double -> float64, single -> float32, uint8 -> uint8, ...), whatever narrower type
//   MATLAB used on disk. y: integer classes keep their dtype; double/single labels must be whole numbers -> int64.
// - Reading: samples along the last axis are contiguous and are streamed (compressed ones inflate as a stream).
//   Samples along the first axis are strided by n: uncompressed data is read with positioned reads per column;
//   a COMPRESSED variable of that kind is first inflated to a temporary file (removed at close), because zlib has
//   no random access. Memory stays at one chunk of rows either way.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { constants as zc, createInflate, inflateSync } from 'node:zlib';
import type { FieldSpec } from '../core/dtype.ts';
import { type DType, dtypeSize, swapBytes, type TypedArray, viewAs } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import type { SampleBatch, SampleSource } from '../core/source.ts';
import { gather, gatherTable } from './colmajor.ts';

/** Options of the .mat reader. */
export interface MatOptions {
  /** Variable holding the samples. */
  x?: string;
  /** Variable holding the labels. */
  y?: string;
  /** Samples per batch (default: about 4 MB of x). */
  batchRows?: number;
}

const MI: Record<number, { dtype: DType; name: string }> = {
  1: { dtype: 'int8', name: 'miINT8' }, 2: { dtype: 'uint8', name: 'miUINT8' }, 3: { dtype: 'int16', name: 'miINT16' },
  4: { dtype: 'uint16', name: 'miUINT16' }, 5: { dtype: 'int32', name: 'miINT32' }, 6: { dtype: 'uint32', name: 'miUINT32' },
  7: { dtype: 'float32', name: 'miSINGLE' }, 9: { dtype: 'float64', name: 'miDOUBLE' }, 12: { dtype: 'int64', name: 'miINT64' },
  13: { dtype: 'uint64', name: 'miUINT64' },
};
const MX: Record<number, DType> = {
  6: 'float64', 7: 'float32', 8: 'int8', 9: 'uint8', 10: 'int16', 11: 'uint16', 12: 'int32', 13: 'uint32', 14: 'int64', 15: 'uint64',
};
const MX_NAMES: Record<number, string> = { 1: 'cell array', 2: 'struct', 3: 'object', 4: 'char array', 5: 'sparse matrix' };
const MI_MATRIX = 14;
const MI_COMPRESSED = 15;
const X_NAMES = ['X', 'x', 'data', 'images', 'features'];
const Y_NAMES = ['y', 'Y', 'labels', 'label', 'targets'];

/** One top-level variable of a v5 file. */
export interface MatVariable {
  name: string;
  /** MATLAB class number (mxDOUBLE_CLASS = 6 ...). */
  mxClass: number;
  /** Class as a dtype, null for non-numeric classes. */
  dtype: DType | null;
  dims: number[];
  complex: boolean;
  compressed: boolean;
  /** File offset of the element's tag. */
  elementOffset: number;
  /** Bytes of the element after its tag. */
  elementBytes: number;
  /** Storage type of the real part (may be narrower than the class). */
  storage: DType;
  /** Offset of the real part's data: in the file (uncompressed) or in the inflated stream (compressed). */
  dataOffset: number;
  dataBytes: number;
}

interface Reader { le: boolean; u32(b: Uint8Array, o: number): number; i32(b: Uint8Array, o: number): number }

function reader(le: boolean): Reader {
  return {
    le,
    u32: (b, o) => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(o, le),
    i32: (b, o) => new DataView(b.buffer, b.byteOffset, b.byteLength).getInt32(o, le),
  };
}

/** Parse the subelements of an miMATRIX whose data starts at `b[0]` (`base` = its offset in file/stream). */
function parseMatrixHeader(b: Uint8Array, base: number, r: Reader, file: string, at: number): Omit<MatVariable, 'compressed' | 'elementOffset' | 'elementBytes'> {
  const fail = (what: string): never => { throw new SlimfitError(`malformed MATLAB array: ${what}`, { file, offset: at, hint: 'the file is corrupt or not a MATLAB v5 file' }); };
  let o = 0;
  const sub = (): { type: number; n: number; data: number; next: number } => {
    if (o + 8 > b.length) fail('header cut short');
    let type = r.u32(b, o);
    let n: number;
    let data: number;
    let next: number;
    if (type >>> 16 !== 0) { n = type >>> 16; type &= 0xffff; data = o + 4; next = o + 8; }
    else { n = r.u32(b, o + 4); data = o + 8; next = o + 8 + Math.ceil(n / 8) * 8; }
    o = next;
    return { type, n, data, next };
  };
  const flags = sub();
  if (flags.type !== 6 || flags.n < 8) fail('missing array flags');
  const f0 = r.u32(b, flags.data);
  const mxClass = f0 & 0xff;
  const complex = (f0 & 0x800) !== 0;
  if (MX_NAMES[mxClass]) {
    // Non-numeric: we only need its name to list it.
    const dimsE = sub();
    const nameE = sub();
    void dimsE;
    const name = Buffer.from(b.buffer, b.byteOffset + nameE.data, nameE.n).toString('latin1');
    return { name, mxClass, dtype: null, dims: [], complex, storage: 'uint8', dataOffset: 0, dataBytes: 0 };
  }
  const dimsE = sub();
  if (dimsE.type !== 5 || dimsE.n % 4 !== 0 || dimsE.n / 4 > 32 || dimsE.n < 8) fail('bad dimensions');
  const dims: number[] = [];
  for (let i = 0; i < dimsE.n / 4; i++) {
    const d = r.i32(b, dimsE.data + 4 * i);
    if (d < 0) fail(`negative dimension ${d}`);
    dims.push(d);
  }
  const nameE = sub();
  if (nameE.type !== 1 && nameE.type !== 2) fail('bad array name');
  if (nameE.data + nameE.n > b.length) fail('name cut short');
  const name = Buffer.from(b.buffer, b.byteOffset + nameE.data, nameE.n).toString('latin1');
  const real = sub();
  const storage = MI[real.type]?.dtype;
  if (!storage) fail(`unsupported data type ${real.type} in variable ${name}`);
  const dtype = MX[mxClass] ?? null;
  const numel = dims.reduce((a, c) => a * c, 1);
  if (dtype && numel * dtypeSize(storage!) !== real.n) {
    fail(`variable ${name}: ${dims.join('x')} elements of ${MI[real.type].name} need ${numel * dtypeSize(storage!)} bytes but the element holds ${real.n}`);
  }
  return { name, mxClass, dtype, dims, complex, storage: storage!, dataOffset: base + real.data, dataBytes: real.n };
}

/** A top-level element that is not a MATLAB array: the file is damaged or not what its header says. */
function notAnArray(path: string, off: number, type: number, where: string): SlimfitError {
  return new SlimfitError(`the element at byte ${off}${where} has data type ${type}, not a MATLAB array (miMATRIX, type 14)`, {
    file: path, offset: off, hint: 'the file is corrupt, or not written by MATLAB or scipy.io.savemat',
  });
}

/** List the variables of a v5 .mat file (cheap: reads tags and the first bytes of compressed variables). */
export async function listMatVariables(path: string): Promise<{ le: boolean; vars: MatVariable[] }> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const head = Buffer.alloc(128);
    await fh.read(head, 0, 128, 0);
    if (head.toString('latin1', 0, 10) !== 'MATLAB 5.0') {
      throw new SlimfitError('not a MATLAB v5 .mat file', { file: path, offset: 0, hint: 'expected a file written by scipy.io.savemat or MATLAB save' });
    }
    const ind = head.toString('latin1', 126, 128);
    if (ind !== 'IM' && ind !== 'MI') {
      const hex = head.subarray(126, 128).toString('hex');
      throw new SlimfitError(`bad endian indicator (bytes 0x${hex}, expected "IM" or "MI")`, { file: path, offset: 126, hint: 'the header is corrupt' });
    }
    const r = reader(ind === 'IM');
    const vars: MatVariable[] = [];
    let off = 128;
    const tag = Buffer.alloc(8);
    while (off + 8 <= size) {
      await fh.read(tag, 0, 8, off);
      const type = r.u32(tag, 0);
      const n = r.u32(tag, 4);
      if (off + 8 + n > size) {
        throw new SlimfitError(`element at byte ${off} claims ${n} bytes but the file ends after ${size - off - 8}`, { file: path, offset: off, hint: 'the file is truncated' });
      }
      if (type === MI_MATRIX) {
        const b = Buffer.alloc(Math.min(n, 64 << 10));
        await fh.read(b, 0, b.length, off + 8);
        if (n > 0) vars.push({ ...parseMatrixHeader(b, off + 8, r, path, off), compressed: false, elementOffset: off, elementBytes: n });
        off += 8 + Math.ceil(n / 8) * 8;
      } else if (type === MI_COMPRESSED) {
        const b = Buffer.alloc(Math.min(n, 4096));
        await fh.read(b, 0, b.length, off + 8);
        let inflated: Buffer;
        try {
          inflated = inflateSync(b, { finishFlush: zc.Z_SYNC_FLUSH });
        } catch (e) {
          throw new SlimfitError(`cannot inflate the compressed variable at byte ${off}: ${(e as Error).message}`, { file: path, offset: off, hint: 'the file is corrupt' });
        }
        const mtype = inflated.length >= 8 ? r.u32(inflated, 0) : -1;
        if (mtype !== MI_MATRIX) throw notAnArray(path, off, mtype, ' inside a compressed element');
        vars.push({ ...parseMatrixHeader(inflated.subarray(8), 8, r, path, off), compressed: true, elementOffset: off, elementBytes: n });
        off += 8 + n;
      } else {
        // scipy.io.loadmat refuses these too: skipping them could hide the variable the user asked for.
        throw notAnArray(path, off, type, '');
      }
    }
    return { le: r.le, vars };
  } finally {
    await fh.close();
  }
}

/** Sequential reader of a variable's real-part bytes, from the file or from its inflated stream. */
interface ByteStream { read(n: number): Promise<Uint8Array>; close(): Promise<void> }

async function openByteStream(path: string, v: MatVariable): Promise<ByteStream> {
  const truncated = () => new SlimfitError(`variable ${v.name}: data ends early`, { file: path, offset: v.elementOffset, hint: 'the file is truncated or corrupt' });
  if (!v.compressed) {
    const fh = await open(path, 'r');
    let pos = v.dataOffset;
    return {
      async read(n) {
        const out = new Uint8Array(n);
        const { bytesRead } = await fh.read(out, 0, n, pos);
        if (bytesRead !== n) throw truncated();
        pos += n;
        return out;
      },
      close: () => fh.close(),
    };
  }
  const raw = createReadStream(path, { start: v.elementOffset + 8, end: v.elementOffset + 8 + v.elementBytes - 1, highWaterMark: 1 << 20 });
  const inflate = createInflate();
  raw.pipe(inflate);
  raw.on('error', (e) => inflate.destroy(e));
  const it = (inflate as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  const fill = async (want: number) => {
    while (buf.length < want) {
      let r: IteratorResult<Buffer>;
      try {
        r = await it.next();
      } catch (e) {
        throw new SlimfitError(`variable ${v.name}: cannot inflate: ${(e as Error).message}`, { file: path, offset: v.elementOffset, hint: 'the file is truncated or corrupt' });
      }
      if (r.done) throw truncated();
      buf = buf.length === 0 ? r.value : Buffer.concat([buf, r.value]);
    }
  };
  // Skip to the real part.
  let skip = v.dataOffset;
  while (skip > 0) {
    await fill(1);
    const k = Math.min(skip, buf.length);
    buf = buf.subarray(k);
    skip -= k;
  }
  return {
    async read(n) {
      await fill(n);
      const out = new Uint8Array(n);
      out.set(buf.subarray(0, n));
      buf = buf.subarray(n);
      return out;
    },
    async close() { raw.destroy(); inflate.destroy(); await it.return?.(); },
  };
}

/** Convert storage-typed elements (little-endian bytes) to `to`, element by element (only when they differ). */
function convert(bytes: Uint8Array, from: DType, to: DType): Uint8Array {
  if (from === to) return bytes;
  const src = viewAs(from, bytes);
  const n = src.length;
  const out = new Uint8Array(n * dtypeSize(to));
  const dst = viewAs(to, out);
  const big = to === 'int64' || to === 'uint64';
  for (let i = 0; i < n; i++) {
    const v = src[i];
    if (big) (dst as BigInt64Array)[i] = typeof v === 'bigint' ? v : BigInt(v);
    else (dst as Float64Array)[i] = Number(v);
  }
  return out;
}

function pick(vars: MatVariable[], want: string | undefined, defaults: string[], what: string, path: string): MatVariable {
  const names = vars.map((v) => v.name);
  // A default name held by a non-numeric variable is reported as such below, not as "not found".
  const v = want !== undefined ? vars.find((c) => c.name === want)
    : vars.find((c) => defaults.includes(c.name) && c.dtype) ?? vars.find((c) => defaults.includes(c.name));
  if (!v) {
    throw new SlimfitError(want !== undefined ? `no variable named ${JSON.stringify(want)}` : `no ${what} variable found (looked for ${defaults.join(', ')})`, {
      file: path, hint: `variables in the file: ${names.join(', ') || '(none)'}; choose with --${what === 'samples' ? 'x' : 'y'} NAME`,
    });
  }
  if (!v.dtype) throw new SlimfitError(`variable ${v.name} is a ${MX_NAMES[v.mxClass] ?? `class ${v.mxClass}`}, not a numeric array`, { file: path, hint: 'save the data as a numeric matrix' });
  if (v.complex) throw new SlimfitError(`variable ${v.name} is complex; slimfit reads real arrays`, { file: path, hint: 'save real(X) (and imag(X) separately if needed)' });
  return v;
}

/** Open a .mat file (v5 here, v7.3 via HDF5) as a SampleSource; see the rules at the top of this file. */
export async function openMat(path: string, opts: MatOptions = {}): Promise<SampleSource> {
  const fh = await open(path, 'r');
  const head = Buffer.alloc(128);
  try { await fh.read(head, 0, 128, 0); } finally { await fh.close(); }
  if (/^MATLAB 7\.3/.test(head.toString('latin1', 0, 116))) {
    const { openHdf5 } = await import('./hdf5.ts');
    return openHdf5(path, { ...opts, matlab: true });
  }
  const { le, vars } = await listMatVariables(path);
  const xv = pick(vars, opts.x, X_NAMES, 'samples', path);
  const yv = pick(vars, opts.y, Y_NAMES, 'labels', path);
  const yLen = yv.dims.reduce((a, b) => a * b, 1);
  if (yv.dims.filter((d) => d !== 1).length > 1) {
    throw new SlimfitError(`labels ${yv.name} are ${yv.dims.join('x')}, not a vector`, { file: path, hint: 'give one label per sample (n x 1 or 1 x n)' });
  }
  const D = xv.dims;
  const n = yLen;
  let axis: 0 | -1;
  if (D[0] === n) axis = 0;
  else if (D[D.length - 1] === n) axis = -1;
  else {
    throw new SlimfitError(`${xv.name} is ${D.join('x')} but ${yv.name} has ${n} labels: neither the first nor the last axis of ${xv.name} has length ${n}`, {
      file: path, hint: 'samples must lie along the first (n x ...) or last (... x n) axis',
    });
  }
  const other = axis === 0 ? D.slice(1) : D.slice(0, -1);
  const P = other.reduce((a, b) => a * b, 1);
  // Column-major strides of the other axes, in elements (sample axis excluded).
  const colStride: number[] = [];
  let acc = 1;
  for (const d of other) { colStride.push(acc); acc *= d; }
  const xDtype = xv.dtype!;
  const xSize = dtypeSize(xDtype);
  const stSize = dtypeSize(xv.storage);
  const yInteger = !(yv.dtype === 'float32' || yv.dtype === 'float64');
  const yDtype: DType = yInteger ? yv.dtype! : 'int64';
  const x: FieldSpec = { dtype: xDtype, shape: other };
  const y: FieldSpec = { dtype: yDtype, shape: [] };
  const rows = Math.max(1, opts.batchRows ?? Math.floor((4 << 20) / Math.max(1, P * xSize)));
  const strided = axis === 0 && P > 1;
  const temp: { dir: string | null } = { dir: null };

  async function yLabels(ys: ByteStream, m: number, first: number): Promise<Uint8Array> {
    const raw = await ys.read(m * dtypeSize(yv.storage));
    if (!le) swapBytes(raw, dtypeSize(yv.storage));
    if (yInteger) return convert(raw, yv.storage, yDtype);
    const v = viewAs(yv.storage, raw);
    const out = new BigInt64Array(m);
    for (let i = 0; i < m; i++) {
      const f = Number(v[i]);
      if (!Number.isInteger(f)) {
        throw new SlimfitError(`label ${first + i + 1} of ${yv.name} is ${f}, not a whole number`, { file: path, hint: 'labels must be class indices; use --y to pick another variable' });
      }
      out[i] = BigInt(f);
    }
    return new Uint8Array(out.buffer);
  }

  /** A positioned reader over the real part of X (inflating a compressed variable to a temp file first). */
  async function randomAccess(): Promise<{ fh: FileHandle; base: number }> {
    if (!xv.compressed) return { fh: await open(path, 'r'), base: xv.dataOffset };
    if (temp.dir) return { fh: await open(join(temp.dir, 'x.bin'), 'r'), base: 0 }; // inflated by an earlier pass
    const dir = await mkdtemp(join(tmpdir(), 'slimfit-mat-'));
    const file = join(dir, 'x.bin');
    const bs = await openByteStream(path, xv);
    try {
      await pipeline(async function* () {
        let left = xv.dataBytes;
        while (left > 0) { const k = Math.min(left, 4 << 20); yield await bs.read(k); left -= k; }
      }, createWriteStream(file));
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    } finally { await bs.close(); }
    temp.dir = dir;
    return { fh: await open(file, 'r'), base: 0 };
  }

  async function* batches(): AsyncGenerator<SampleBatch> {
    const ys = await openByteStream(path, yv);
    try {
      if (!strided) {
        // Samples are contiguous blocks of P elements (column-major inside): stream them.
        const xs = await openByteStream(path, xv);
        const table = gatherTable(other, colStride);
        try {
          for (let a = 0; a < n; a += rows) {
            const m = Math.min(rows, n - a);
            const raw = await xs.read(m * P * stSize);
            if (!le) swapBytes(raw, stSize);
            const block = convert(raw, xv.storage, xDtype);
            const out = new Uint8Array(m * P * xSize);
            gather(viewAs(xDtype, block), viewAs(xDtype, out), m, P, table);
            yield { n: m, x: out, y: await yLabels(ys, m, a) };
          }
        } finally { await xs.close(); }
        return;
      }
      // Samples along the first axis: element (i, q) is at i + n * colmajor(q). Read a run of rows per column.
      const { fh, base } = await randomAccess();
      try {
        for (let a = 0; a < n; a += rows) {
          const m = Math.min(rows, n - a);
          const raw = new Uint8Array(m * P * stSize);
          for (let c = 0; c < P; c++) {
            const want = m * stSize;
            const { bytesRead } = await fh.read(raw, c * want, want, base + (c * n + a) * stSize);
            if (bytesRead !== want) throw new SlimfitError(`variable ${xv.name}: data ends early`, { file: path, hint: 'the file is truncated' });
          }
          if (!le) swapBytes(raw, stSize);
          const block = convert(raw, xv.storage, xDtype);
          // In the block, column c holds rows a..a+m: offset of (r, q) is colmajor(q) * m + r.
          const table = gatherTable(other, colStride.map((s) => s * m));
          const out = new Uint8Array(m * P * xSize);
          gather(viewAs(xDtype, block), viewAs(xDtype, out), m, 1, table);
          yield { n: m, x: out, y: await yLabels(ys, m, a) };
        }
      } finally { await fh.close(); }
    } finally {
      await ys.close();
    }
  }

  async function* labels(): AsyncGenerator<ArrayLike<number>> {
    const ys = await openByteStream(path, yv);
    try {
      for (let a = 0; a < n; a += 65536) {
        const m = Math.min(65536, n - a);
        const b = await yLabels(ys, m, a);
        const v = viewAs(yDtype, b);
        yield Array.from(v as ArrayLike<number | bigint>, Number);
      }
    } finally { await ys.close(); }
  }

  return {
    name: path,
    x,
    y,
    count: n,
    bytes: xv.elementBytes + yv.elementBytes,
    batches,
    labels,
    skipped: [],
    close: async () => { if (temp.dir) await rm(temp.dir, { recursive: true, force: true }); },
  };
}
