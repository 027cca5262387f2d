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
   * The shuffle of a store opened by URL when none is given: a global shuffle reads every shard in every batch, which
   * needs the whole store in the cache; 'block' reads windows of whole runs.
   */
  remoteShuffle: 'block',
} as const;
