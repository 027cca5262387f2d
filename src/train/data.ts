// Turning what the user hands `fit`/`evaluate` (a store path, a DataSource, .npy or .npz files) into sources and loaders.
import { stat } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
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
export async function resolveData(data: DataInput, split = 'train', valSplit?: string, valFraction = 0, seed = 0, opts: { verifyChecksums?: boolean; classNames?: string[]; remote?: RemoteOptions } = {}): Promise<ResolvedData> {
  if (isSource(data)) {
    const given = opts.classNames;
    const names = data.classNames ?? [];
    if (given && names.length && given.join('\n') !== names.join('\n')) {
      throw new SlimfitError(`class names were given (${given.join(', ')}) but the data has its own (${names.join(', ')})`, { file: data.name, hint: 'drop the class names option: they are only for .npy/.npz data, which has none' });
    }
    const parts = (data as { parts?: Array<{ y: { path: string; base: number; name: string } }> }).parts;
    let classes = names.length;
    if (!classes && parts?.length) for (const p of parts) classes = Math.max(classes, await countClasses(p.y.path, p.y.base, p.y.name));
    if (given && !names.length) {
      if (given.length < classes) {
        throw new SlimfitError(`${given.length} class names were given but the labels go up to ${classes - 1} (${classes} classes)`, { file: data.name, hint: `give ${classes} names, one per label 0..${classes - 1}` });
      }
      classes = given.length;
    }
    const shown = given && !names.length ? given : names;
    return withHoldout({ main: data, classes, classNames: shown.length ? shown : Array.from({ length: classes }, (_, i) => String(i)), close: async () => {} }, valFraction, seed);
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
      const names = [...(ds.manifest.classNames ?? [])];
      if (opts.classNames && names.length && opts.classNames.join('\n') !== names.join('\n')) {
        throw new SlimfitError(`class names were given (${opts.classNames.join(', ')}) but the store has its own (${names.join(', ')})`, { file: data, hint: 'drop the class names option (a store keeps the names it was converted with: `slimfit convert --class-names ...`)' });
      }
      const counts = ds.manifest.splits[split]?.classCounts;
      let classes = names.length || counts?.length || 0;
      if (opts.classNames && !names.length) {
        if (opts.classNames.length < classes) throw new SlimfitError(`${opts.classNames.length} class names were given but the store counts ${classes} classes`, { file: data, hint: `give ${classes} names, one per label` });
        names.push(...opts.classNames);
        classes = names.length;
      }
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
  return resolveData(src, split, undefined, valFraction, seed, { classNames: opts.classNames });
}

/**
 * Loader defaults for training: DEFAULTS' batch size and seed, the loader's own shuffle default (global; shard for a
 * source marked remote), prefetch, stats (or 1/255 for uint8) normalization, one-hot
 * labels, and batches lent from the loader's ring (the training loop and evaluation are done with a batch before they ask
 * for the next, so copies would only cost time).
 */
export function trainLoaderOptions(src: DataSource, classes: number, o: LoaderOptions = {}): LoaderOptions {
  const normalize = o.normalize ?? (src.stats ? 'stats' : src.x.dtype === 'uint8' ? { scale: 1 / 255, shift: 0 } : false);
  // Only the loader's own options: `o` may be fit's options (epochs, lr, callbacks...), which createLoader refuses.
  const own = Object.fromEntries(Object.entries(o).filter(([k]) => (LOADER_OPTION_KEYS as readonly string[]).includes(k))) as LoaderOptions;
  return { batchSize: DEFAULTS.batchSize, seed: DEFAULTS.seed, reuseBuffers: true, ...own, normalize, oneHot: classes, layout: 'nhwc' };
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
  return createLoader(src, trainLoaderOptions(src, classes, { ...o, shuffle: false, noise: undefined, shift: undefined, augment: undefined, balanced: false, batchSize }));
}

/**
 * Training on several stores at once (tf.data's sample_from_datasets): the run's data is the first source, `with`
 * lists the others. Validation and test data come from the first source.
 */
export interface MixSpec {
  /** The other stores: a folder (its split is the run's `split`) or { dir, split }. */
  with: Array<string | { dir: string; split?: string }>;
  /** Weights of all sources, the run's data first (default equal); normalized. */
  weights?: number[];
  /** Sources drawn class-balanced, as indices into [data, ...with]. */
  balanced?: number[];
  /** Samples in one epoch (default: the sources' samples added up). */
  epochSamples?: number;
}

/** A MixSpec as a run saves it: absolute folders, every split named, every weight given. */
export interface SavedMix {
  with: Array<{ dir: string; split: string }>;
  weights: number[];
  balanced: number[];
  epochSamples?: number;
}

/** Check a MixSpec and write it out in full (`split`: the run's split, the default of each source). */
export function normalizeMix(spec: MixSpec, split: string): SavedMix {
  const bad = (what: string) => new SlimfitError(`trainRun: option mix ${what}`, { hint: "e.g. { with: ['other-store'], weights: [0.7, 0.3] }" });
  if (!spec || typeof spec !== 'object' || !Array.isArray(spec.with) || spec.with.length === 0) throw bad('needs a non-empty list `with` of other stores');
  const others = spec.with.map((w) => {
    const o = typeof w === 'string' ? { dir: w, split } : w;
    if (!o || typeof o.dir !== 'string' || o.dir === '' || (o.split !== undefined && (typeof o.split !== 'string' || o.split === ''))) throw bad(`has an entry that is neither a store folder nor { dir, split }: ${JSON.stringify(w)}`);
    if (isRemote(o.dir)) throw new SlimfitError(`mixing a store given by URL is not supported yet: ${o.dir}`, { hint: 'copy it with `slimfit pull URL DIR` and mix the folder' });
    return { dir: resolvePath(o.dir), split: o.split ?? split };
  });
  const S = others.length + 1;
  const weights = spec.weights ?? new Array<number>(S).fill(1);
  if (!Array.isArray(weights) || weights.length !== S || !weights.every((w) => typeof w === 'number' && Number.isFinite(w) && w >= 0) || !weights.some((w) => w > 0)) {
    throw bad(`weights must be ${S} non-negative numbers (the run's data first), not all 0; got ${JSON.stringify(spec.weights)}`);
  }
  const balanced = [...new Set(spec.balanced ?? [])].sort((a, b) => a - b);
  if (!balanced.every((i) => Number.isInteger(i) && i >= 0 && i < S)) throw bad(`balanced must list source indices 0..${S - 1}; got ${JSON.stringify(spec.balanced)}`);
  if (spec.epochSamples !== undefined && !(Number.isSafeInteger(spec.epochSamples) && spec.epochSamples > 0)) throw bad(`epochSamples must be a whole number > 0; got ${spec.epochSamples}`);
  return { with: others, weights, balanced, ...(spec.epochSamples !== undefined ? { epochSamples: spec.epochSamples } : {}) };
}

/** The other stores of a mix, opened (with their manifest fingerprints, for `--resume`'s check that the data is unchanged). */
export async function openMixSources(mix: SavedMix, opts: { verifyChecksums?: boolean } = {}): Promise<{ sources: DataSource[]; fingerprints: string[]; classes: number[]; close(): Promise<void> }> {
  const opened: Array<{ close(): Promise<void> }> = [];
  const close = async () => { for (const d of opened) await d.close(); };
  try {
    const sources: DataSource[] = [], fingerprints: string[] = [], classes: number[] = [];
    for (const w of mix.with) {
      const st = await stat(w.dir).catch(() => null);
      if (!st?.isDirectory()) throw new SlimfitError(st ? 'is a file, not a store directory' : 'no such store directory', { file: w.dir, hint: 'mix stores made by `slimfit convert`' });
      const ds = await openDataset(w.dir, { verifyChecksums: opts.verifyChecksums });
      opened.push(ds);
      sources.push(ds.split(w.split));
      fingerprints.push(manifestFingerprint(ds.manifest));
      classes.push(ds.manifest.classNames?.length || ds.manifest.splits[w.split]?.classCounts?.length || 0);
    }
    return { sources, fingerprints, classes, close };
  } catch (e) {
    await close();
    throw e;
  }
}
