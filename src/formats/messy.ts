// Entry point for the "messy" sources of `slimfit convert`: image folder trees, image archives (.tar/.tar.gz/.tgz/
// .zip), numeric text (CSV/TSV/whitespace), MATLAB .mat (v5 and v7.3) and HDF5. Detection is by magic bytes first,
// extension second; anything else returns null so the caller can try its other readers.
import { open, stat } from 'node:fs/promises';
import { extname } from 'node:path';
import type { DType } from '../core/dtype.ts';
import { SlimfitError, UsageError } from '../core/errors.ts';
import { parseResize, resizeProblem } from './images.ts';
import type { SampleSource } from '../core/source.ts';

/** Options of the messy readers (mirroring `slimfit convert` flags). */
export interface MessyOptions {
  /** --grayscale: convert images to one channel (Rec.709 luma). */
  grayscale?: boolean;
  /** --resize WxH: stretch images to exactly this size (Triangle/bilinear filter). */
  resize?: { width: number; height: number };
  /** --strict: first unreadable image / malformed line is fatal instead of skipped. */
  strict?: boolean;
  /** --workers: image decode threads (default cores - 1, min 1; 0 = main thread); for text, parser threads (default 1; 0 = main thread). */
  workers?: number;
  /** --label-col: CSV label column, 0-based index (negative counts from the end) or header name (default 0). */
  labelCol?: string | number;
  /** --shape 28,28: per-sample shape of the CSV feature columns (default: [number of feature columns]). */
  shape?: number[];
  /** --x-dtype: dtype to store CSV features as (default float32). */
  xDtype?: DType;
  /** --header / --no-header for CSV (default: detected from the first line). */
  header?: boolean;
  /** --delimiter for CSV: ',', '\t', ';', ' ' (any whitespace); default: detected from the first line. */
  delimiter?: string;
  /** --x: variable name (.mat) or dataset path (HDF5) of the samples. */
  x?: string;
  /** --y: variable name (.mat) or dataset path (HDF5) of the labels. */
  y?: string;
}

/** Which messy reader handles `path`, or null. */
export type MessyKind = 'image-tree' | 'archive' | 'csv' | 'mat' | 'hdf5';


const TEXT_EXT = new Set(['.csv', '.tsv', '.txt', '.dat', '.data']);
const HDF5_MAGIC = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Decide which messy reader applies to `path` (magic bytes, then extension); null if none. */
export async function detectMessy(path: string): Promise<MessyKind | null> {
  const s = await stat(path).catch(() => null);
  if (!s) return null;
  if (s.isDirectory()) {
    const { looksLikeImageTree } = await import('./image-tree.ts');
    return (await looksLikeImageTree(path)) ? 'image-tree' : null;
  }
  const head = Buffer.alloc(1024);
  const fh = await open(path, 'r');
  let n: number;
  try {
    n = (await fh.read(head, 0, head.length, 0)).bytesRead;
  } finally {
    await fh.close();
  }
  const b = head.subarray(0, n);
  if (b.length >= 10 && b.toString('latin1', 0, 7) === 'MATLAB ') return 'mat'; // v5, or v7.3 (HDF5 after 512 bytes)
  if (b.length >= 8 && b.subarray(0, 8).equals(HDF5_MAGIC)) return 'hdf5';
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) {
    const lower = path.toLowerCase();
    if (lower.endsWith('.tar.gz') || lower.endsWith('.tgz')) return 'archive';
    return null; // other .gz (IDX .gz, csv.gz) belong to other readers
  }
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 3 && b[3] === 4) {
    return path.toLowerCase().endsWith('.npz') ? null : 'archive';
  }
  if (b.length >= 262 && b.toString('latin1', 257, 262) === 'ustar') return 'archive';
  if (TEXT_EXT.has(extname(path).toLowerCase())) return 'csv';
  // A damaged file keeps its name: with its magic bytes gone, the extension still says which reader should explain
  // what is wrong with it (rather than "slimfit does not know how to read this input").
  const lower = path.toLowerCase();
  if (/\.(tar|tar\.gz|tgz|zip)$/.test(lower)) return 'archive';
  if (lower.endsWith('.mat')) return 'mat';
  if (/\.(h5|hdf5|he5|hdf)$/.test(lower)) return 'hdf5';
  return null;
}

/** Open `path` with the messy reader that applies; null if it is not one of these formats. */
export async function openMessySource(path: string, opts: MessyOptions = {}): Promise<SampleSource | null> {
  const kind = await detectMessy(path);
  switch (kind) {
    case null:
      return null;
    case 'image-tree': {
      const { openImageTree } = await import('./image-tree.ts');
      return openImageTree(path, opts);
    }
    case 'archive': {
      const { openImageArchive } = await import('./archive.ts');
      const src = await openImageArchive(path, opts);
      if (!src) throw new SlimfitError('not a tar or zip archive', { file: path });
      return src;
    }
    case 'csv': {
      const { openCsv } = await import('./csv.ts');
      return openCsv(path, opts);
    }
    case 'mat': {
      const { openMat } = await import('./mat.ts');
      return openMat(path, opts);
    }
    case 'hdf5': {
      const { openHdf5 } = await import('./hdf5.ts');
      return openHdf5(path, opts);
    }
  }
}

/** Turn `slimfit convert` flag values (strings from commander) into {@link MessyOptions}, checking each. */
export function messyOptionsFromCli(o: Record<string, unknown>): MessyOptions {
  const out: MessyOptions = {};
  const str = (k: string): string | undefined => (o[k] === undefined ? undefined : String(o[k]));
  if (o.grayscale) out.grayscale = true;
  if (o.strict) out.strict = true;
  if (o.header !== undefined) out.header = Boolean(o.header);
  const resize = str('resize');
  if (resize !== undefined) {
    const r = parseResize(resize);
    if (!r) throw new UsageError(`cannot read --resize ${resize}`, { hint: 'give WIDTHxHEIGHT, e.g. --resize 28x28' });
    const tooLarge = resizeProblem(r);
    if (tooLarge) throw new UsageError(tooLarge, { hint: 'choose a smaller size' });
    out.resize = r;
  }
  const workers = str('workers');
  if (workers !== undefined) {
    if (!/^\d+$/.test(workers)) throw new UsageError(`--workers must be a whole number, got ${workers}`);
    out.workers = Number(workers);
  }
  const shape = str('shape');
  if (shape !== undefined) {
    const dims = shape.split(/[,x]/).map((s) => s.trim());
    if (dims.some((d) => !/^\d+$/.test(d) || Number(d) < 1)) throw new UsageError(`cannot read --shape ${shape}`, { hint: 'give positive sizes separated by commas, e.g. --shape 28,28' });
    out.shape = dims.map(Number);
  }
  const xDtype = str('xDtype');
  if (xDtype !== undefined) {
    if (!['uint8', 'float16', 'float32', 'float64'].includes(xDtype)) throw new UsageError(`--x-dtype ${xDtype} is not supported`, { hint: 'use uint8, float16, float32 or float64' });
    out.xDtype = xDtype as DType;
  }
  const labelCol = str('labelCol');
  if (labelCol !== undefined) out.labelCol = /^-?\d+$/.test(labelCol) ? Number(labelCol) : labelCol;
  const delimiter = str('delimiter');
  if (delimiter !== undefined) out.delimiter = delimiter;
  if (o.x !== undefined) out.x = String(o.x);
  if (o.y !== undefined) out.y = String(o.y);
  return out;
}
