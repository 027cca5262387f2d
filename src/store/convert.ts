// `convert` for library users: what `slimfit convert` does, from code (open any supported input, write a store).
import { SlimfitError } from '../core/errors.ts';
import type { SampleSource } from '../core/source.ts';
import type { MessyOptions } from '../formats/messy.ts';
import { openInput } from '../formats/open-source.ts';
import { type SplitRatios, parseSplitSpec } from './split.ts';
import { type ConversionReport, type StoreInput, type WriteStoreOptions, writeStore } from './write.ts';

/** Options of {@link convert}: the store writer's, the readers' (images, CSV, .mat, HDF5) and how to split. */
export interface ConvertOptions extends WriteStoreOptions, MessyOptions {
  /** Split one input by class-stratified fractions: 'train=0.9,test=0.1' or [{ name, fraction }] (default: all train). */
  split?: string | SplitRatios;
  /** Seed of `split` (default 0). */
  seed?: number;
  /** Inputs that are already the train and test splits (then `src` is undefined). */
  train?: string;
  test?: string;
}

/**
 * Convert `src` (a folder of MNIST IDX files or images, .npz, .npy, IDX, .tar.gz, .zip, CSV, .mat or HDF5 file)
 * into a store at `out`, as `slimfit convert SRC OUT` does. With `src` undefined, `x`/`y` name .npy or IDX files,
 * or `train`/`test` name inputs that are already split.
 *
 * @example
 * import { convert, openDataset } from 'slimfit';
 * await convert('train.csv', 'my-store', { split: 'train=0.9,test=0.1', quiet: true });
 * const ds = await openDataset('my-store');
 */
export async function convert(src: string | undefined, out: string, opts: ConvertOptions = {}): Promise<ConversionReport> {
  const ratios = typeof opts.split === 'string' ? parseSplitSpec(opts.split) : opts.split ?? null;
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new SlimfitError(`convert: seed must be an integer, got ${seed}`, { hint: 'pass a whole number as seed' });
  const input = await openInput(src, { ...opts });
  const sources: SampleSource[] = input.kind === 'single' ? [input.source] : input.splits.map((s) => s.source);
  try {
    let plan: StoreInput;
    if (input.kind === 'single') {
      plan = { kind: 'ratio', source: input.source, ratios: ratios ?? [{ name: 'train', fraction: 1 }], seed };
    } else {
      if (ratios) throw new SlimfitError('this input comes with its own train/test split; leave out the split option to keep it', { file: src ?? opts.train });
      plan = { kind: 'presplit', splits: input.splits };
    }
    return await writeStore(out, plan, opts);
  } finally {
    for (const s of sources) await s.close();
  }
}
