// How a DataSource's samples lie on disk: plain-data "parts" that worker threads can open and read by themselves.
import type { DataSource } from './types.ts';

/** One .npy holding a field of a part: a file path, where the .npy starts inside it, and what to check on open. */
export interface PartFile {
  /** Absolute path of the file on disk. */
  path: string;
  /** What to call it in errors (e.g. `shard train/x-00003.npy`). */
  name: string;
  /** Byte position of the .npy magic in the file (0, or the member data offset inside an .npz). */
  base: number;
  /** Exact file size the file must have (store shards: from the manifest); undefined = no size check. */
  fileBytes?: number;
  /** Extra advice for errors about this file. */
  hint: string;
  /** Store shards: the manifest's SHA-256 and the store folder; the loader checks it once per process before reading. */
  checksum?: { sha256: string; bytes: number; store: string };
  /**
   * A verified cache copy of a remote shard: it may be evicted (unlinked) once the batches that need it are done and
   * come back later with the same bytes, so a reader closes such a file when it is unlinked instead of failing.
   */
  cached?: boolean;
}

/** `samples` consecutive samples (global indices start..start+samples) stored as a pair of .npy arrays. */
export interface Part {
  start: number;
  samples: number;
  x: PartFile;
  y: PartFile;
}

/**
 * A seeded random subset of a source (see `holdout`): local sample i is the parent's sample
 * permutation(total, seed).at(offset + i), for i < count. O(1) memory whatever the size.
 */
export interface Subset {
  /** Samples of the parent source (its parts hold this many). */
  total: number;
  seed: number;
  offset: number;
  count: number;
}

/**
 * Makes the files of a remote source's parts local (openDataset on a URL): the loader acquires the parts each batch
 * reads before a reader touches them, releases them when the batch is handed out, and asks for the parts its plan
 * needs next to be fetched meanwhile.
 */
export interface PartFetcher {
  /** Fetch (or find in the cache) and check the files of these parts (`'y'`: label files only), kept until release(). */
  acquire(parts: readonly number[], fields?: 'xy' | 'y'): Promise<() => void>;
  /** Start fetching these parts' files in this order, as far as the cache limit allows beside the files in use. */
  prefetch(parts: readonly number[]): void;
  /** Bytes of these parts' files. */
  bytesOf(parts: readonly number[]): number;
  /** Bytes of the largest part's files. */
  readonly maxPartBytes: number;
  /** Bytes the cache may hold, and bytes of all the parts' files. */
  readonly limitBytes: number;
  readonly totalBytes: number;
  /** Where the data comes from (for messages). */
  readonly url: string;
}

/** A DataSource the loader can read: it also carries its on-disk layout. */
export interface LoadableSource extends DataSource {
  /** Parts in sample order; their sample counts add up to `samples` (to `subset.total` for a subset). */
  readonly parts: readonly Part[];
  /** Set when this source is a random subset of the samples its parts hold. */
  readonly subset?: Subset;
  /**
   * True when the parts are fetched over the network (read from a local cache): with no `shuffle` option the loader
   * then uses LOADER_DEFAULTS.remoteShuffle ('shard'), which reads a bounded window of shards at a time.
   */
  readonly remote?: boolean;
  /** Set for a remote store: parts' files exist only while acquired through it. */
  readonly fetcher?: PartFetcher;
}

/** True if `s` carries a layout (made by openDataset, fromNpy or fromNpz). */
export function isLoadable(s: DataSource): s is LoadableSource {
  return Array.isArray((s as LoadableSource).parts);
}

/** Index of the part holding global sample `s` (binary search over part starts). */
export function partOf(parts: readonly Part[], s: number): number {
  let lo = 0, hi = parts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (parts[mid].start <= s) lo = mid; else hi = mid - 1;
  }
  return lo;
}
