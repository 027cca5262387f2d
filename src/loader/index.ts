// The standard batch generator: sources (store split, .npy, .npz), createLoader, and the tf.data adapter.
export type { Batch, Cursor, DataSource, Loader, LoaderOptions, TransformOptions } from './types.ts';
export { type Dataset, fromNpy, fromNpz, openDataset, type OpenDatasetOptions } from './source.ts';
export { type Holdout, holdout } from './holdout.ts';
export { LOADER_DEFAULTS } from './defaults.ts';
export { type ExtraLoaderOptions, type ShuffleReport, type ShuffledLoader, createLoader, verifySource } from './loader.ts';
export { type TfDatasetOptions, toTfDataset } from './tf.ts';
export { type MixBatch, type MixCursor, type MixedLoader, type MixEntry, type MixOptions, checkMixable, mixSources } from './mix.ts';
export { type ShuffleQuality, shuffleQuality } from './quality.ts';
