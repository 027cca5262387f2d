// Turning what the user hands `fit`/`evaluate` (a store path, a DataSource, .npy or .npz files) into sources and loaders.
import { stat } from 'node:fs/promises';
import { SlimfitError } from '../core/errors.ts';
import { openNpy } from '../formats/npy.ts';
import { elementAsNumber, viewAs } from '../core/dtype.ts';
import { createLoader, fromNpy, fromNpz, holdout, openDataset } from '../loader/index.ts';
import { isLoadable } from '../loader/layout.ts';
import { LOADER_DEFAULTS } from '../loader/defaults.ts';
import { type RemoteOptions, isRemote } from '../remote/index.ts';
import { manifestFingerprint } from '../store/fingerprint.ts';
import { type DataSource, LOADER_OPTION_KEYS, type Loader, type LoaderOptions } from '../loader/types.ts';
import { DEFAULTS } from './defaults.ts';

/** Training data as users have it: a store directory, an opened DataSource, a pair of .npy files, or two arrays of an .npz. */
export type DataInput = string | DataSource | { x: string; y: string } | { npz: string; x: string; y: string };

/** Sources resolved from a {@link DataInput}. */
export interface ResolvedData {
  /** The split asked for (train by default). */
  main: DataSource;
  /** The store's `val` split when training from a store that has one, else the part of `main` held out (valFraction). */
  val?: DataSource;
  /** The store's `test` split, when there is one (used by reports). */
  test?: DataSource;
  /** Class count: class names in the manifest, else the largest label + 1 (one pass over y only). */
  classes: number;
  classNames: string[];
  /** Samples per class of `main` (before any hold-out), when the store's manifest records them. */
  classCounts?: number[];
  /** The store directory, when the data is a store. */
  storeDir?: string;
  /** Identity of the store's contents (SHA-256 over its shard checksums), when the data is a store. */
  fingerprint?: string;
  close(): Promise<void>;
}

function isSource(d: DataInput): d is DataSource {
  return typeof d === 'object' && 'samples' in d && 'close' in d;
}

/** Largest integer label + 1 of a plain .npy/.npz y array, read in row chunks (never the whole file at once when large). */
async function countClasses(path: string, base: number, name: string): Promise<number> {
  const y = await openNpy(path, { offset: base, displayName: name });
  try {
    if (y.rowShape.length !== 0) return y.rowShape[y.rowShape.length - 1]; // already one-hot or vectors
    let max = -1;
    const step = 1 << 20;
    for (let s = 0; s < y.rows; s += step) {
      const e = Math.min(y.rows, s + step);
      const t = viewAs(y.dtype, await y.readRows(s, e));
      for (let i = 0; i < e - s; i++) {
        const v = elementAsNumber(y.dtype, t, i);
        if (!Number.isInteger(v) || v < 0) throw new SlimfitError(`label ${v} at row ${s + i} is not a class index (a non-negative integer)`, { file: name, hint: 'classification needs integer labels 0..K-1' });
        if (v > max) max = v;
      }
    }
    return max + 1;
  } finally {
    await y.close();
  }
}

/** With no validation source and 0 < valFraction < 1: hold out that fraction of `main` at random (seeded) as the validation data. */
function withHoldout(rd: ResolvedData, valFraction: number, seed: number): ResolvedData {
  if (rd.val || !(valFraction > 0)) return rd;
  const { train, val } = holdout(rd.main, valFraction, seed);
  return { ...rd, main: train, val };
}

/**
 * Open `data` and pick split `split` (default 'train'); a missing split is a SlimfitError listing the existing ones.
 * `valSplit` names the validation split of a store (default: 'val' when it exists); without one, `valFraction` of the
 * training samples (default 0: none) are held out at random with `seed`, like Keras's validation_split.
 * `verifyChecksums: false` skips the per-process SHA-256 check of a store's shards (see openDataset).
 */
export async function resolveData(data: DataInput, split = 'train', valSplit?: string, valFraction = 0, seed = 0, opts: { verifyChecksums?: boolean; remote?: RemoteOptions } = {}): Promise<ResolvedData> {
  if (isSource(data)) {
    const names = data.classNames ?? [];
    const parts = (data as { parts?: Array<{ y: { path: string; base: number; name: string } }> }).parts;
    let classes = names.length;
    if (!classes && parts?.length) for (const p of parts) classes = Math.max(classes, await countClasses(p.y.path, p.y.base, p.y.name));
    return withHoldout({ main: data, classes, classNames: names.length ? names : Array.from({ length: classes }, (_, i) => String(i)), close: async () => {} }, valFraction, seed);
  }
  if (typeof data === 'string') {
    const st = isRemote(data) ? { isDirectory: () => true } : await stat(data).catch(() => null);
    if (!st) throw new SlimfitError('no such file or directory', { file: data, hint: 'pass a store directory made by `slimfit convert`, or .npy/.npz files' });
    if (!st.isDirectory()) {
      throw new SlimfitError('is a file, not a store directory', { file: data, hint: 'for plain arrays pass {x: "x.npy", y: "y.npy"} or {npz, x, y}; or convert once with `slimfit convert`' });
    }
    const ds = await openDataset(data, { verifyChecksums: opts.verifyChecksums, remote: opts.remote });
    try {
      const main = ds.split(split);
      const names = ds.manifest.classNames ?? [];
      const counts = ds.manifest.splits[split]?.classCounts;
      const classes = names.length || counts?.length || 0;
      if (!classes) throw new SlimfitError('the store has no class names or class counts, so the number of classes is unknown', { file: data, hint: 're-run `slimfit convert` with integer class labels' });
      return withHoldout({
        main, classes, classNames: names.length ? names : Array.from({ length: classes }, (_, i) => String(i)), classCounts: counts,
        val: valSplit ? ds.split(valSplit) : split !== 'val' && ds.splits.includes('val') ? ds.split('val') : undefined,
        test: split !== 'test' && ds.splits.includes('test') ? ds.split('test') : undefined,
        storeDir: ds.dir, fingerprint: manifestFingerprint(ds.manifest), close: () => ds.close(),
      }, valFraction, seed);
    } catch (e) {
      await ds.close();
      throw e;
    }
  }
  const src = 'npz' in data ? await fromNpz(data.npz, { x: data.x, y: data.y }) : await fromNpy({ x: data.x, y: data.y });
  return resolveData(src, split, undefined, valFraction, seed);
}

/**
 * Loader defaults for training: DEFAULTS' batch size, shuffle and seed, prefetch, stats (or 1/255 for uint8) normalization, one-hot
 * labels, and batches lent from the loader's ring (the training loop and evaluation are done with a batch before they ask
 * for the next, so copies would only cost time).
 */
export function trainLoaderOptions(src: DataSource, classes: number, o: LoaderOptions = {}): LoaderOptions {
  const normalize = o.normalize ?? (src.stats ? 'stats' : src.x.dtype === 'uint8' ? { scale: 1 / 255, shift: 0 } : false);
  // Only the loader's own options: `o` may be fit's options (epochs, lr, callbacks...), which createLoader refuses.
  const own = Object.fromEntries(Object.entries(o).filter(([k]) => (LOADER_OPTION_KEYS as readonly string[]).includes(k))) as LoaderOptions;
  // A store read by URL defaults to the loader's remote shuffle (a global one needs the whole store in the cache).
  const shuffle = isLoadable(src) && src.fetcher ? LOADER_DEFAULTS.remoteShuffle : DEFAULTS.shuffle;
  return { batchSize: DEFAULTS.batchSize, shuffle, seed: DEFAULTS.seed, reuseBuffers: true, ...own, normalize, oneHot: classes, layout: 'nhwc' };
}

/** A loader over `src` with {@link trainLoaderOptions}. */
export function makeLoader(src: DataSource, classes: number, o: LoaderOptions = {}): Loader {
  return createLoader(src, trainLoaderOptions(src, classes, o));
}

/**
 * A loader that streams `src` once in stored order (evaluation): same normalization as training, no shuffle, no
 * augmentation, batches of `batchSize` (default DEFAULTS.evalBatchSize; `o.batchSize`, a training batch size, is not used).
 */
export function makeEvalLoader(src: DataSource, classes: number, o: LoaderOptions = {}, batchSize: number = DEFAULTS.evalBatchSize): Loader {
  return createLoader(src, trainLoaderOptions(src, classes, { ...o, shuffle: false, noise: 0, shift: 0, balanced: false, batchSize }));
}
