// Defaults of the loader's options, written once: createLoader applies them, and the training layer and the CLI
// take theirs from here (src/train/defaults.ts).

/** What createLoader uses for an option left out. */
export const LOADER_DEFAULTS = {
  /** Samples per batch. */
  batchSize: 128,
  /** With the epoch, fixes the sample order. */
  seed: 0,
  shuffle: 'global',
  /** io 'auto': map the x files (numpy-memmap speed) when they take at most this many bytes together, else pread. */
  mapMaxBytes: 64 * 1024 * 1024,
} as const;
