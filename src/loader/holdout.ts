// Keras's validation_split for data with no validation split: a seeded random part of a source held out, as two views.
import { SlimfitError } from '../core/errors.ts';
import { permutation } from '../core/permutation.ts';
import { isLoadable, type LoadableSource, type Subset } from './layout.ts';
import type { DataSource } from './types.ts';

/** Key of the subset permutation (shared with plan.ts, which inverts it to find a subset's samples in a part). */
export const TAG_SUBSET = 0x5b5e;

/** Maps a subset's local sample index to its parent's index (build once, call per sample). */
export function subsetIndex(s: Subset): (i: number) => number {
  const p = permutation(s.total, s.seed, TAG_SUBSET);
  return (i) => p.at(s.offset + i);
}

/** The two views made by {@link holdout}. */
export interface Holdout { train: DataSource; val: DataSource }

/**
 * Split `source` into a training view and a validation view of round(fraction x N) samples drawn uniformly at random
 * (seeded; not the last samples as in Keras, so a class-sorted store is held out fairly). Nothing is copied: both views
 * read the parent's files; the loader reads a view's samples by position like any other source.
 */
export function holdout(source: DataSource, fraction: number, seed = 0): Holdout {
  if (!isLoadable(source)) throw new TypeError('holdout needs a DataSource made by openDataset(dir).split(name), fromNpy or fromNpz');
  if (source.subset) throw new TypeError('holdout of a held-out view is not supported; hold out from the whole source');
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`the validation fraction must be between 0 and 1, got ${fraction}`);
  const N = source.samples, k = Math.round(fraction * N);
  if (k < 1 || k >= N) {
    throw new SlimfitError(`holding out ${fraction} of ${N} samples leaves ${k} for validation and ${N - k} for training`, {
      file: source.name, hint: 'pick a fraction that leaves samples on both sides, or make a validation split with `slimfit convert --split train=0.9,val=0.1`',
    });
  }
  const view = (label: string, offset: number, count: number): LoadableSource => ({
    ...source, name: `${source.name} (${label})`, samples: count, subset: { total: N, seed, offset, count }, close: async () => {},
  });
  const pct = `${+(100 * fraction).toFixed(2)}%`;
  return { train: view(`${N - k} samples, ${pct} held out`, 0, N - k), val: view(`held-out ${pct}: ${k} samples`, N - k, k) };
}
