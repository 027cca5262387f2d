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
