// HDF5 datasets (and MATLAB v7.3 .mat files, which are HDF5) as a streamed SampleSource, via h5wasm (HDF5 compiled
// to WebAssembly; `h5wasm/node` reads the real file with random access, so rows are read as hyperslabs in chunks).
//
// Decisions (README, convert section):
// - Datasets: --x /path --y /path; defaults: the first of X,x,data,images,features / y,Y,labels,label,targets at
//   the root. Numeric (integer/float) datasets only.
// - Samples axis: y is a vector of n labels; the samples axis of x is its first axis if that has length n, else its
//   last. Each sample keeps the other axes in the file's order (C order), so x[i] (or x[..., i]) as h5py shows it.
// - MATLAB v7.3: MATLAB writes arrays with their dimensions reversed (column-major), so the same rule is applied to
//   MATLAB's own dimensions (as in mat.ts): an n x 784 MATLAB matrix (HDF5 shape 784 x n) gives n samples of 784.
// - y: integer datasets keep their dtype; float labels must be whole numbers and become int64.
// h5wasm runs in its own worker thread WITHOUT tsx: importing its 4 MB module through tsx's loader peaked at ~650 MB
// RSS; in a plain worker the whole process stays near 115 MB. Hyperslabs come back as transferred buffers.
import { Worker } from 'node:worker_threads';
import type { FieldSpec } from '../core/dtype.ts';
import type { DType, TypedArray } from '../core/dtype.ts';
import { dtypeSize, viewAs } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { gather, gatherTable } from './colmajor.ts';
import type { SampleBatch, SampleSource } from '../core/source.ts';

/** Options of the HDF5 reader. */
export interface Hdf5Options {
  /** Dataset path of the samples. */
  x?: string;
  /** Dataset path of the labels. */
  y?: string;
  /** The file is a MATLAB v7.3 .mat: interpret dimensions in MATLAB's (reversed) order. */
  matlab?: boolean;
  /** Samples per batch (default: about 4 MB of x). */
  batchRows?: number;
}

const X_NAMES = ['X', 'x', 'data', 'images', 'features'];
const Y_NAMES = ['y', 'Y', 'labels', 'label', 'targets'];

/** What the worker reports about a dataset. */
interface DatasetInfo { path: string; shape: number[]; type: number; size: number; signed: boolean; /** source files of a virtual dataset */ virtual?: string[]; /** HDF5's reason the object cannot be read */ broken?: string; /** what it is when not a dataset (h5wasm class name) */ other?: string }

// The worker: plain JavaScript (no TypeScript), one open file, answering info/slice/close requests.
// - HDF5 can point outside the file: external storage (raw data in any other file), external links and virtual
//   datasets. The worker's file system lets HDF5 open only the input itself; any other open is refused and
//   recorded, and a request that tried one answers {outside: [paths]} (a virtual dataset's missing source would
//   otherwise read as fill values, silently). 'info' reads one element so external storage shows up front.
// - HDF5's own diagnostics (dozens of HDF5-DIAG lines per failure) are kept, not printed; the last of them
//   completes an error message.
const WORKER_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const diag = [];
const keep = (...a) => { diag.push(a.join(' ')); if (diag.length > 200) diag.splice(0, 100); };
console.error = keep; console.warn = keep; console.log = keep;
process.stderr.write = (s) => { keep(String(s)); return true; };
// h5wasm's file system reaches the host's stderr (fd 2) directly through fs.writeSync (this thread's own fs module).
const fs = require('node:fs');
const writeSync = fs.writeSync;
fs.writeSync = function (fd, buf, ...rest) {
  if (fd !== 2) return writeSync.call(this, fd, buf, ...rest);
  const off = typeof rest[0] === 'number' ? rest[0] : 0;
  const len = typeof rest[1] === 'number' ? rest[1] : buf.length - off;
  keep(typeof buf === 'string' ? buf : Buffer.from(buf.buffer, buf.byteOffset + off, len).toString());
  return len;
};
import(workerData.h5url).then(async (mod) => {
  const h5 = mod.default;
  await h5.ready;
  const FS = mod.FS; // a live export, set once the module is ready
  const path = require('node:path');
  const own = new Set([workerData.path, path.resolve(workerData.path)]);
  const outside = [];
  const open = FS.open;
  FS.open = function (p, ...rest) {
    if (typeof p === 'string' && !own.has(p) && !own.has(path.resolve(p)) && !p.startsWith('/dev/')) {
      if (!outside.includes(p)) outside.push(p);
      throw new FS.ErrnoError(44); // ENOENT
    }
    return open.call(this, p, ...rest);
  };
  let f = null;
  try { f = new h5.File(workerData.path, 'r'); } catch (e) { f = null; }
  const ok = f !== null && typeof f.file_id === 'bigint' && f.file_id >= 0n;
  // The innermost frame of HDF5's error stack says what was wrong, e.g. "truncated file: eof = 2000, ...".
  const lastDiag = () => {
    const frames = diag.join('').split('\\n').filter((l) => /#\\d+:/.test(l));
    const last = frames[frames.length - 1] || '';
    return last.includes('(): ') ? last.slice(last.indexOf('(): ') + 4).trim() : '';
  };
  parentPort.on('message', ({ id, op, args }) => {
    outside.length = 0;
    try {
      let result = null; const transfer = [];
      if (op === 'keys') result = f.keys();
      else if (op === 'info') {
        // get() gives null for a name that is not there and throws when the object's header cannot be read.
        let e = null; try { e = f.get(args.path); } catch (err) { if (!(err instanceof TypeError)) result = { path: args.path, broken: lastDiag() || String(err && err.message) }; else throw err; }
        if (e && !(e instanceof h5.Dataset)) result = { path: args.path, other: e.constructor.name, broken: lastDiag() };
        if (e instanceof h5.Dataset) {
          const m = e.metadata;
          result = { path: e.path, shape: e.shape || [], type: m.type, size: m.size, signed: m.signed };
          if (m.virtual_sources) result.virtual = m.virtual_sources.map((v) => v.file_name);
          else if (result.shape.every((d) => d > 0)) { try { e.slice(result.shape.map(() => [0, 1])); } catch { /* reported below */ } }
        }
      } else if (op === 'slice') {
        const a = f.get(args.path).slice(args.ranges);
        if (a && ArrayBuffer.isView(a)) { result = a.slice(); transfer.push(result.buffer); }
      } else if (op === 'close') { if (f) f.close(); f = null; result = true; }
      if (outside.length) parentPort.postMessage({ id, outside: outside.slice() });
      else parentPort.postMessage({ id, result }, transfer);
    } catch (e) {
      // A JavaScript mistake (TypeError, RangeError...) is a bug, reported as such; HDF5's own failures come as
      // plain Errors, and the innermost diagnostic says more than h5wasm's wrapper text.
      if (outside.length) parentPort.postMessage({ id, outside: outside.slice() });
      else if (e && e.constructor !== Error) parentPort.postMessage({ id, internal: String((e && e.stack) || e) });
      else parentPort.postMessage({ id, error: lastDiag() || String((e && e.message) || e) });
    }
    diag.length = 0;
  });
  parentPort.postMessage({ id: 0, result: ok || lastDiag() || false });
  diag.length = 0;
}).catch((e) => parentPort.postMessage({ id: 0, error: String((e && e.message) || e) }));
`;

/** A request/response channel to an h5wasm worker holding `path` open. */
interface H5Client { ok: boolean; /** HDF5's reason when the file did not open */ detail: string; call<T>(op: string, args?: unknown): Promise<T>; close(): Promise<void> }

async function h5Client(path: string): Promise<H5Client> {
  const w = new Worker(WORKER_CODE, { eval: true, execArgv: [], workerData: { path, h5url: import.meta.resolve('h5wasm/node') } });
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let next = 1;
  let dead: Error | null = null;
  const failAll = (e: Error) => { dead = e; for (const p of waiting.values()) p.reject(e); waiting.clear(); };
  w.on('message', (m: { id: number; result?: unknown; error?: string; outside?: string[]; internal?: string }) => {
    const p = waiting.get(m.id);
    if (!p) return;
    waiting.delete(m.id);
    if (m.outside) {
      p.reject(new SlimfitError(`the data refers to another file (${m.outside.slice(0, 3).join(', ')}) through external storage, an external link or a virtual dataset; slimfit reads only the file it was given`, {
        file: path, hint: 'copy the data into the file itself (e.g. h5py: f2.create_dataset(name, data=f[name][()])) and convert that',
      }));
    } else if (m.internal !== undefined) p.reject(new Error(`HDF5 worker: ${m.internal}`));
    else if (m.error !== undefined) p.reject(new SlimfitError(`HDF5 library: ${m.error}`, { file: path, hint: 'the file is corrupt or truncated' }));
    else p.resolve(m.result);
  });
  w.on('error', failAll);
  w.on('exit', () => failAll(new Error('HDF5 worker exited')));
  const request = <T>(id: number, op?: string, args?: unknown) => new Promise<T>((resolve, reject) => {
    if (dead) return reject(dead);
    waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
    if (op) w.postMessage({ id, op, args });
  });
  const opened = await request<boolean | string>(0);
  return {
    ok: opened === true,
    detail: typeof opened === 'string' ? opened : '',
    call: <T>(op: string, args?: unknown) => request<T>(next++, op, args),
    async close() {
      if (!dead) await request(next++, 'close').catch(() => {});
      await w.terminate();
    },
  };
}

function dtypeOf(m: DatasetInfo): DType | null {
  if (m.type === 0) {
    const map: Record<number, [DType, DType]> = { 1: ['int8', 'uint8'], 2: ['int16', 'uint16'], 4: ['int32', 'uint32'], 8: ['int64', 'uint64'] };
    const e = map[m.size];
    return e ? (m.signed ? e[0] : e[1]) : null;
  }
  if (m.type === 1) return m.size === 4 ? 'float32' : m.size === 8 ? 'float64' : m.size === 2 ? 'float16' : null;
  return null;
}

function asBytes(a: unknown, what: string, file: string): Uint8Array {
  if (ArrayBuffer.isView(a)) return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  throw new SlimfitError(`${what}: unexpected data returned by the HDF5 library`, { file });
}

/** Row-major strides (in elements) of `shape`. */
function cStrides(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let k = shape.length - 2; k >= 0; k--) s[k] = s[k + 1] * shape[k + 1];
  return s;
}

/** Open datasets of an HDF5 file (or a v7.3 .mat with `matlab`) as a SampleSource. */
export async function openHdf5(path: string, opts: Hdf5Options = {}): Promise<SampleSource> {
  const h5 = await h5Client(path);
  if (!h5.ok) {
    await h5.close();
    throw new SlimfitError(`cannot open as HDF5${h5.detail ? ` (${h5.detail})` : ''}`, { file: path, hint: 'the file is corrupt, truncated or not HDF5' });
  }
  const kind = opts.matlab ? 'variable' : 'dataset';
  const get = async (want: string | undefined, defaults: string[], flag: string): Promise<DatasetInfo> => {
    const names = want !== undefined ? [want] : defaults;
    for (const n of names) {
      const info = await h5.call<DatasetInfo | null>('info', { path: n });
      // An HDF5 error while looking the name up: the file's structure is damaged (h5wasm then reports any type).
      if (info?.broken) throw new SlimfitError(`cannot look up ${n} (HDF5: ${info.broken})`, { file: path, hint: 'the file is corrupt or truncated' });
      if (info?.other && want === undefined) continue; // a default name that is a group: try the next
      if (info?.other) {
        throw new SlimfitError(`${n} is ${info.other === 'BrokenSoftLink' ? 'a link to nothing' : `a ${info.other}`}, not a ${kind}`, { file: path, hint: `name a ${kind} with --${flag}` });
      }
      if (info?.virtual) {
        throw new SlimfitError(`${kind} ${info.path} is a virtual dataset made of other files (${info.virtual.slice(0, 3).join(', ')}); slimfit reads only the file it was given`, {
          file: path, hint: 'copy the data into the file itself and convert that',
        });
      }
      if (info) return info;
    }
    const have = (await h5.call<string[]>('keys')).join(', ') || '(none)';
    throw new SlimfitError(want !== undefined ? `no ${kind} ${JSON.stringify(want)}` : `no ${flag === 'x' ? 'samples' : 'labels'} ${kind} found (looked for ${defaults.join(', ')})`, {
      file: path, hint: `top-level entries: ${have}; choose with --${flag} ${opts.matlab ? 'NAME' : '/path'}`,
    });
  };
  try {
    const xd = await get(opts.x, X_NAMES, 'x');
    const yd = await get(opts.y, Y_NAMES, 'y');
    const xDtype = dtypeOf(xd);
    const yDt = dtypeOf(yd);
    if (!xDtype || xDtype === 'float16') throw new SlimfitError(`${kind} ${xd.path} is not a supported numeric type`, { file: path, hint: 'integer or float32/float64 data is supported' });
    if (!yDt || yDt === 'float16') throw new SlimfitError(`${kind} ${yd.path} is not a supported numeric type`, { file: path });
    const H = xd.shape;
    const Hy = yd.shape;
    if (H.length === 0) throw new SlimfitError(`${kind} ${xd.path} is a scalar`, { file: path });
    if (Hy.filter((d) => d !== 1).length > 1) throw new SlimfitError(`labels ${yd.path} have shape ${Hy.join('x')}, not a vector`, { file: path, hint: 'give one label per sample' });
    const n = Hy.reduce((a, b) => a * b, 1);
    const yAxis = Math.max(0, Hy.findIndex((d) => d !== 1));
    // User-facing dims (MATLAB's order for v7.3) and the samples axis among them.
    const U = opts.matlab ? [...H].reverse() : H;
    let uAxis: number;
    if (U[0] === n) uAxis = 0;
    else if (U[U.length - 1] === n) uAxis = U.length - 1;
    else {
      throw new SlimfitError(`${xd.path} has shape ${U.join('x')} but ${yd.path} has ${n} labels: neither the first nor the last axis has length ${n}`, {
        file: path, hint: 'samples must lie along the first or last axis',
      });
    }
    const hAxis = opts.matlab ? H.length - 1 - uAxis : uAxis;
    const sampleShape = U.filter((_, k) => k !== uAxis);
    const P = sampleShape.reduce((a, b) => a * b, 1);
    const xSize = dtypeSize(xDtype);
    const yInteger = !(yDt === 'float32' || yDt === 'float64');
    const yDtype: DType = yInteger ? yDt : 'int64';
    const x: FieldSpec = { dtype: xDtype, shape: sampleShape };
    const y: FieldSpec = { dtype: yDtype, shape: [] };
    const rows = Math.max(1, opts.batchRows ?? Math.floor((4 << 20) / Math.max(1, P * xSize)));

    const readY = async (a: number, m: number): Promise<Uint8Array> => {
      const ranges = Hy.map((_, k): [] | [number, number] => (k === yAxis ? [a, a + m] : []));
      const v = await h5.call<TypedArray>('slice', { path: yd.path, ranges });
      if (yInteger) return asBytes(v, yd.path, path);
      const out = new BigInt64Array(m);
      for (let i = 0; i < m; i++) {
        const val = Number(v[i]);
        if (!Number.isInteger(val)) throw new SlimfitError(`label ${a + i + 1} of ${yd.path} is ${val}, not a whole number`, { file: path, hint: 'labels must be class indices' });
        out[i] = BigInt(val);
      }
      return new Uint8Array(out.buffer);
    };

    async function* batches(): AsyncGenerator<SampleBatch> {
      for (let a = 0; a < n; a += rows) {
        const m = Math.min(rows, n - a);
        const ranges = H.map((_, k): [] | [number, number] => (k === hAxis ? [a, a + m] : []));
        const block = await h5.call<TypedArray>('slice', { path: xd.path, ranges });
        if (!block || block.length !== m * P) throw new SlimfitError(`reading rows ${a}..${a + m} of ${xd.path} failed`, { file: path, hint: 'the file may be truncated' });
        // Strides of the block (H with the samples axis cut to m), then the user's order of the other axes.
        const bs = cStrides(H.map((d, k) => (k === hAxis ? m : d)));
        const otherH = H.map((_, k) => k).filter((k) => k !== hAxis);
        const userAxes = opts.matlab ? [...otherH].reverse() : otherH;
        const t = gatherTable(sampleShape, userAxes.map((k) => bs[k]));
        const out = new Uint8Array(m * P * xSize);
        gather(block, viewAs(xDtype!, out), m, bs[hAxis], t);
        yield { n: m, x: out, y: await readY(a, m) };
      }
    }
    async function* labels(): AsyncGenerator<ArrayLike<number>> {
      for (let a = 0; a < n; a += 65536) {
        const m = Math.min(65536, n - a);
        yield Array.from(viewAs(yDtype, await readY(a, m)) as ArrayLike<number | bigint>, Number);
      }
    }
    return {
      name: path,
      x,
      y,
      count: n,
      batches,
      labels,
      skipped: [],
      close: () => h5.close(),
    };
  } catch (e) {
    await h5.close();
    throw e;
  }
}
