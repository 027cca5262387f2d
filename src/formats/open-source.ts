// Which reader a `slimfit convert` input needs: decided from the path (folder, extension, magic bytes) and --x/--y.
import { open, readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { SlimfitError, UsageError } from '../core/errors.ts';
import type { SampleSource } from '../core/source.ts';
import { idxPairSource, mnistDirSource, npyPairSource, npzSource } from './sources.ts';
import { listNpz } from './npz.ts';
import { sourcePart } from './part.ts';
import type { PartSpec } from '../core/source.ts';

/** Options shared by every input kind (readers of messy sources take more; they are passed through). */
export interface InputOptions {
  /** x: an .npz member name, an HDF5/.mat dataset path, or (with no SRC) a file. */
  x?: string;
  y?: string;
  /** Options for image/CSV/.mat/HDF5 readers, passed through unchanged. */
  [k: string]: unknown;
}

/** A convert input: one source to split, or a source that comes with its own splits. */
export type OpenedInput =
  | { kind: 'single'; source: SampleSource }
  | { kind: 'presplit'; splits: Array<{ name: string; source: SampleSource }> };

async function isDir(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}

/**
 * Refuse inputs that are neither files nor folders: readers seek and read files twice, which a FIFO, socket or
 * device cannot do (opening a FIFO with no writer would block forever).
 */
async function checkReadable(p: string, fileOnly = false): Promise<void> {
  const s = await stat(p).catch(() => null);
  if (!s) throw new SlimfitError('input not found', { file: p, hint: 'check the path' });
  if (fileOnly && s.isDirectory()) throw new SlimfitError('this is a folder; --x and --y name files', { file: p, hint: 'give the .npy or IDX files themselves, or the folder as SRC' });
  if (!s.isFile() && !s.isDirectory()) {
    const kind = s.isFIFO() ? 'a pipe (FIFO)' : s.isSocket() ? 'a socket' : 'a device';
    throw new SlimfitError(`input is ${kind}, not a regular file; slimfit reads inputs by position and more than once`, { file: p, hint: 'copy it to a regular file first' });
  }
}

/** True if the file starts with an IDX magic (two zero bytes, a known type code, 1..4 dims), or is gzipped (the IDX reader checks inside). */
async function looksLikeIdx(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, 0);
    if (b[0] === 0x1f && b[1] === 0x8b) return true;
    return b[0] === 0 && b[1] === 0 && [0x08, 0x09, 0x0b, 0x0c, 0x0d, 0x0e].includes(b[2]) && b[3] >= 1 && b[3] <= 4;
  } finally {
    await fh.close();
  }
}

/** True when a folder holds MNIST-layout IDX files (train-images-idx3-ubyte and t10k-images-idx3-ubyte, maybe .gz). */
async function hasMnistLayout(dir: string): Promise<boolean> {
  const names = await readdir(dir);
  return names.some((n) => /^train-images[-.]idx3-ubyte(\.gz)?$/.test(n)) && names.some((n) => /^t10k-images[-.]idx3-ubyte(\.gz)?$/.test(n));
}

async function openMessy(path: string, o: InputOptions): Promise<SampleSource | null> {
  // Image trees, archives, CSV, .mat and HDF5 readers live in messy.ts (loaded only when needed).
  return (await import('./messy.ts')).openMessySource(path, o);
}

/** Open one input path as a single source (used for SRC and for --train/--test). */
async function openOne(path: string, o: InputOptions): Promise<OpenedInput> {
  await checkReadable(path);
  if (await isDir(path)) {
    if (await hasMnistLayout(path)) {
      const { train, test } = await mnistDirSource(path);
      return { kind: 'presplit', splits: [{ name: 'train', source: train }, { name: 'test', source: test }] };
    }
  } else if (extname(path).toLowerCase() === '.npz') {
    if (o.x || o.y) {
      if (!o.x || !o.y) throw new SlimfitError('name both arrays of the .npz: --x NAME --y NAME', { file: path });
      return { kind: 'single', source: await npzSource(path, { x: o.x, y: o.y }) };
    }
    const names = (await listNpz(path)).map((m) => m.name);
    if (['x_train', 'y_train', 'x_test', 'y_test'].every((n) => names.includes(n))) {
      return {
        kind: 'presplit', splits: [
          { name: 'train', source: await npzSource(path, { x: 'x_train', y: 'y_train' }) },
          { name: 'test', source: await npzSource(path, { x: 'x_test', y: 'y_test' }) },
        ],
      };
    }
    if (names.includes('x') && names.includes('y')) return { kind: 'single', source: await npzSource(path, { x: 'x', y: 'y' }) };
    throw new SlimfitError(`cannot tell which arrays are samples and labels; the file holds: ${names.join(', ')}`, {
      file: path, hint: 'name them with --x NAME --y NAME',
    });
  }
  const messy = await openMessy(path, o);
  if (messy) return { kind: 'single', source: messy };
  throw new SlimfitError('slimfit does not know how to read this input', {
    file: path,
    hint: 'inputs: a folder with MNIST-style IDX files, an .npz, --x/--y pairs of .npy or IDX files, image folders/archives, CSV, .mat, HDF5',
  });
}

/**
 * Open what `slimfit convert` was given: SRC (a folder, .npz, ...), or --x/--y file pairs when SRC is absent,
 * or --train/--test inputs that are already split.
 */
export async function openInput(src: string | undefined, o: InputOptions & { train?: string; test?: string; part?: PartSpec }): Promise<OpenedInput> {
  const opened = await openWhole(src, o);
  if (!o.part) return opened;
  // Image and text readers cut their own parts (files, lines); array readers are cut here by sample ranges.
  const cut = (s: SampleSource) => (s.part ? s : sourcePart(s, o.part!));
  return opened.kind === 'single' ? { kind: 'single', source: cut(opened.source) } : { kind: 'presplit', splits: opened.splits.map((s) => ({ name: s.name, source: cut(s.source) })) };
}

async function openWhole(src: string | undefined, o: InputOptions & { train?: string; test?: string }): Promise<OpenedInput> {
  if (o.train || o.test) {
    if (!o.train || !o.test || src) throw new UsageError('pre-split inputs need both --train SRC and --test SRC, and no other SRC');
    const splits: Array<{ name: string; source: SampleSource }> = [];
    for (const [name, p] of [['train', o.train], ['test', o.test]] as const) {
      const opened = await openOne(p, o);
      if (opened.kind !== 'single') throw new SlimfitError('this input already holds several splits; give it as SRC instead of --train/--test', { file: p });
      splits.push({ name, source: opened.source });
    }
    return { kind: 'presplit', splits };
  }
  if (src) return openOne(src, o);
  if (!o.x || !o.y) throw new UsageError('nothing to convert', { hint: 'give SRC, or --x FILE --y FILE, or --train SRC --test SRC' });
  for (const p of [o.x, o.y]) await checkReadable(p, true);
  if (extname(o.x).toLowerCase() === '.npy') return { kind: 'single', source: await npyPairSource(o.x, o.y) };
  if (await looksLikeIdx(o.x)) return { kind: 'single', source: await idxPairSource(o.x, o.y) };
  throw new SlimfitError('--x/--y files must be .npy or IDX files', { file: o.x, hint: 'for other formats give the file as SRC' });
}
