// Defaults of the loader's options, written once: createLoader applies them, and the training layer and the CLI
// take theirs from here (src/train/defaults.ts).

/** What createLoader uses for an option left out. */
export const LOADER_DEFAULTS = {
  /** Samples per batch. */
  batchSize: 128,
  /** With the epoch, fixes the sample order. */
  seed: 0,
  shuffle: 'global',
  /**
   * shuffle: 'shard': shards per window. A store's shards are ~64 MB, so 8 is a ~512 MB working set (a remote cache
   * holding the current window and the next one being prefetched needs ~1 GB).
   */
  shuffleShards: 8,
  /**
   * The shuffle of a store opened by URL when none is given: a global shuffle reads every shard in every batch, which
   * needs the whole store in the cache; 'shard' reads a window of whole shards at a time.
   */
  remoteShuffle: 'shard',
  /** io 'auto': map the x files (numpy-memmap speed) when they take at most this many bytes together, else pread. */
  mapMaxBytes: 64 * 1024 * 1024,
} as const;

/** What decides the default number of loader worker threads. */
export interface WorkerContext {
  /** How the x files are read ('mmap' only when io 'auto' mapped them: within LOADER_DEFAULTS.mapMaxBytes). */
  io: 'mmap' | 'pread';
  /** The labels are read once into memory (else each batch preads its labels). */
  labelsCached: boolean;
  /** The store is fetched over HTTP/S3 (reads wait on the cache). */
  remote: boolean;
  /** Per-sample work beyond gather + normalize: augmentation, noise or shifts. */
  heavyTransforms: boolean;
  /** Cores of this machine. */
  cores: number;
}

/**
 * Default worker threads (PyTorch's DataLoader also defaults to loading on the main thread): none when a batch is a
 * gather from a store that io 'auto' maps, with labels in memory, plus normalization — a memcpy-sized job that a hand-off to another thread costs more
 * than, and a worker would take a core from the engine's threads — else one per core but one, so preads, remote
 * reads and augmentation overlap with training.
 */
export function defaultWorkers(c: WorkerContext): number {
  if (c.io === 'mmap' && c.labelsCached && !c.remote && !c.heavyTransforms) return 0;
  return Math.max(1, c.cores - 1);
}
