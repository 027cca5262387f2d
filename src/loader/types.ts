// The loader's public contract: data sources, options, batches, cursors. Implementations live beside this file.
import type { TypedArray } from '../core/dtype.ts';
import type { FieldSpec, Stats } from '../store/manifest.ts';

/** Samples a loader can read by index: a store split, or the user's own .npy/.npz files. */
export interface DataSource {
  /** What to call it in messages (a path, or `dir:split`). */
  readonly name: string;
  readonly samples: number;
  readonly x: FieldSpec;
  readonly y: FieldSpec;
  readonly classNames?: string[];
  /** Per-channel mean/std (from the store manifest), for `normalize: 'stats'`. */
  readonly stats?: Stats;
  close(): Promise<void>;
}

/** Declarative per-batch transforms, run in the loader's workers. */
export interface TransformOptions {
  /** x as float32: 'stats' = (x - mean) / std per channel from the manifest; {scale, shift} = x * scale + shift; false = keep dtype. Default false. */
  normalize?: 'stats' | { scale: number; shift: number } | false;
  /** y as one-hot float32 with this many classes (true = number of class names). Default false (labels as int32). */
  oneHot?: number | boolean;
  /** 'nhwc' keeps the per-sample shape (e.g. [28,28,1]); 'flat' gives [n, prod(shape)]. Default 'nhwc'. */
  layout?: 'nhwc' | 'flat';
  /** Seeded Gaussian noise with this std added after normalization (the same as augment.noise). */
  noise?: number;
  /** Seeded random shift by up to this many pixels in H and W, zero fill (the same as augment.shift). */
  shift?: number;
  /**
   * Seeded random augmentation of each training sample, drawn from (seed, epoch, stream position): the same bytes for
   * any number of workers. Default none. See {@link AugmentOptions}.
   */
  augment?: AugmentOptions;
}

/**
 * Random augmentation per sample (Keras RandomAffine/RandomErasing-style; torchvision RandomAffine, RandomErasing,
 * ColorJitter). Shift, rotate, scale, shear and flip make one affine warp (bilinear, the area outside the image
 * filled with 0 in stored units, which normalization turns into the normalized zero); then brightness/contrast (in
 * stored units), normalization, noise, erasing. Geometric ops, flip and erase need image samples [H, W] or [H, W, C].
 *
 * @example
 * createLoader(ds.split('train'), { normalize: 'stats', augment: { rotate: 10, scale: 0.1, shift: 2, erase: 0.5 } });
 */
export interface AugmentOptions {
  /** Shift by a whole number of pixels drawn uniformly from -shift..shift, in H and in W. */
  shift?: number;
  /** Rotate by an angle in degrees drawn uniformly from [-rotate, rotate] (positive: counterclockwise as displayed). At most 180. */
  rotate?: number;
  /** Zoom by a factor drawn uniformly from [1 - scale, 1 + scale]. Below 1. */
  scale?: number;
  /** Shear along W by an angle in degrees drawn uniformly from [-shear, shear] (torchvision's x-shear). Below 90. */
  shear?: number;
  /** Add Gaussian noise of this std after normalization. */
  noise?: number;
  /** Probability (0..1) of erasing one rectangle of 2-33% of the image, aspect 0.3-3.3 (torchvision RandomErasing), to 0 in stored units. */
  erase?: number;
  /** Mirror left-right with probability 1/2 (off by default: digits and letters are not mirror-symmetric). */
  flip?: boolean;
  /** Add delta x range, delta uniform in [-brightness, brightness]; range is 255 for uint8 samples (then clipped to 0..255), else 1. At most 1. */
  brightness?: number;
  /** Scale each channel about its mean by a factor uniform in [1 - contrast, 1 + contrast] (Keras RandomContrast). At most 1. */
  contrast?: number;
}

/** Options for {@link Loader} creation. */
export interface LoaderOptions extends TransformOptions {
  /** Samples per batch (default 128). */
  batchSize?: number;
  /**
   * 'global' = uniform permutation per epoch (default); 'block' = shuffled blocks + byte-sized window; 'shard' = shards
   * in random order, read `shuffleShards` at a time, samples shuffled within each such window (for remote stores);
   * false = file order.
   */
  shuffle?: 'global' | 'block' | 'shard' | false;
  /** Seed; (seed, epoch) fully determines the order. Default 0. */
  seed?: number;
  /** Drop a final partial batch (default false). */
  dropLast?: boolean;
  /** Reader/transform worker threads (0 = the main thread). Default: 0 for a mapped local store without augmentation, noise or shifts, else cores - 1 (at least 1); see defaultWorkers. */
  workers?: number;
  /** Batches prepared ahead (default from memoryBudget, else about 16 MB of batches: 4 x workers to 64). */
  prefetch?: number;
  /** Bytes the loader may use for prepared batches; sizes prefetch. */
  memoryBudget?: number;
  /** Bytes of the in-memory shuffle window for shuffle: 'block'. */
  shuffleWindow?: number;
  /** Sample classes equally often (with replacement within each epoch). */
  balanced?: boolean;
  /** This process's rank and the number of ranks: each epoch splits into disjoint equal-sized per-rank streams. */
  rank?: number;
  worldSize?: number;
  /**
   * How an epoch's order is split between ranks: 'blocks' (default) gives rank r one contiguous part; 'batches' gives
   * rank r the r-th batchSize samples of every global batch of batchSize x worldSize, so the ranks' k-th batches
   * together are exactly the k-th batch of one process with that global batch (data-parallel training: same order,
   * same augmentation, for any worldSize). Not with shuffle 'block'.
   */
  rankSplit?: 'blocks' | 'batches';
  /** Hand out batches whose arrays are views into the ring, valid until the next batch is requested (no copy). Default false: owned copies. */
  reuseBuffers?: boolean;
  /** Keep all labels in shared memory when they take at most this many bytes (default 64 MB; 0 = read them with each batch). */
  labelCacheBytes?: number;
  /** Block shuffle: bytes of one block of consecutive samples (default 1 MB, at most a quarter of the window). */
  shuffleBlock?: number;
  /** Shard shuffle: shards (parts) per window, shuffled together; at most this many are read at any time (default 8). */
  shuffleShards?: number;
  /** How often readers re-check open files for deletion or truncation, in ms (default 250). */
  checkIntervalMs?: number;
  /**
   * 'auto' (default): 'mmap' when the source's x files take at most 64 MB together (so the mapped pages that count in
   * RSS stay under 64 MB whatever the store), else 'pread'. 'pread': positioned reads; peak RSS does not grow with the
   * data. 'mmap': gather from memory-mapped files (native addon; numpy-memmap speed, and the mapped pages touched count
   * in RSS as with numpy). Without the addon every choice reads with 'pread'; block shuffle always reads sequential windows.
   */
  io?: 'auto' | 'pread' | 'mmap';
  /** Use the native gather addon when it is built (default true); false = plain JS positioned reads. */
  native?: boolean;
  /**
   * Check each store shard's SHA-256 against the manifest before the first batch (default true; once per shard per
   * process, on this thread, so worker threads never re-hash); false trusts the bytes.
   */
  verifyChecksums?: boolean;
}

/** The names of {@link LoaderOptions}: createLoader refuses others (a misspelt `batchsize` would silently be ignored). */
export const LOADER_OPTION_KEYS = [
  'normalize', 'oneHot', 'layout', 'noise', 'shift', 'augment', 'batchSize', 'shuffle', 'seed', 'dropLast', 'workers', 'prefetch', 'memoryBudget',
  'shuffleWindow', 'balanced', 'rank', 'worldSize', 'rankSplit', 'reuseBuffers', 'labelCacheBytes', 'shuffleBlock', 'checkIntervalMs', 'io', 'native',
  'verifyChecksums', 'shuffleShards',
] as const satisfies ReadonlyArray<keyof LoaderOptions>;
// Compile-time check the other way: an option added to LoaderOptions but not to the list above fails here.
const allLoaderKeys: Record<keyof LoaderOptions, true> = Object.fromEntries(LOADER_OPTION_KEYS.map((k) => [k, true])) as Record<(typeof LOADER_OPTION_KEYS)[number], true>;
void allLoaderKeys;

/** One minibatch: row-major typed arrays plus shapes, ready for any framework (owned copies unless `reuseBuffers`). */
export interface Batch {
  /** Samples in the batch (the last one may be partial unless dropLast). */
  n: number;
  x: TypedArray;
  /** [n, ...per-sample shape] after transforms. */
  xShape: number[];
  y: TypedArray;
  yShape: number[];
  epoch: number;
  /** Index of this batch within the epoch (for this rank). */
  index: number;
  /**
   * Give this batch's memory back to the loader for a later batch (owned copies, made by worker threads or on the main
   * thread; absent for lent batches). The arrays are detached at once (length 0, so a later read is empty rather than
   * another batch's data). A batch never released stays the caller's. Calling it again does nothing. Release only once
   * nothing made from `x`/`y` is still in use: tfjs's wasm backend copies typed arrays into tensors, its cpu backend
   * keeps them (dispose such tensors first).
   *
   * @example
   * for await (const b of loader) {
   *   const xs = tf.tensor(b.x, b.xShape), ys = tf.tensor(b.y, b.yShape);
   *   await model.trainOnBatch(xs, ys);
   *   tf.dispose([xs, ys]);
   *   b.release?.();
   * }
   */
  release?(): void;
}

/** Where a loader is: enough to continue at the next unseen sample (small, JSON-serializable). */
export interface Cursor {
  seed: number;
  epoch: number;
  /** Samples of this epoch (for this rank) already handed out. */
  position: number;
  rank: number;
  worldSize: number;
}

/** A batch generator over a DataSource. Iterating it yields one epoch, then advances to the next epoch. */
export interface Loader extends AsyncIterable<Batch> {
  readonly source: DataSource;
  /** Batches per epoch for this rank. */
  readonly batchesPerEpoch: number;
  /** Samples per epoch for this rank. */
  readonly samplesPerEpoch: number;
  /** The next unseen sample. */
  cursor(): Cursor;
  /** Continue from a cursor: the next iteration starts exactly at its position. */
  resume(c: Cursor): void;
  /** Stop workers and close files. */
  close(): Promise<void>;
}
