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
  /** The shuffle for a source whose parts are fetched over the network (`LoadableSource.remote`) when none is given. */
  remoteShuffle: 'shard',
} as const;
