// The contract between format readers (src/formats) and the store writer (src/store): a stream of samples.
import type { FieldSpec } from '../core/dtype.ts';

/** Consecutive samples: `n` samples of x and of y as little-endian bytes in the source's order. */
export interface SampleBatch {
  n: number;
  x: Uint8Array;
  y: Uint8Array;
  /** hash64 of each sample's x bytes ([lo, hi] per sample, src/core/hash64.ts) when the source computed them off the main thread. */
  hashes?: Uint32Array;
  /** For uint8 x: per-channel value counts of the whole batch (src/core/histogram.ts layout), taken off the main thread. */
  counts?: Float64Array;
  /**
   * Optional: the consumer calls it once it no longer reads this batch (x, y, hashes, counts); the source may then
   * reuse their memory for a later batch. Consumers that keep batches simply never call it.
   */
  release?: () => void;
}

/** An input skipped during reading (bad image, malformed line...), with where and why. */
export interface SkippedInput {
  path: string;
  reason: string;
}

/** A readable dataset: field specs up front, then samples streamed in a deterministic order. */
export interface SampleSource {
  /** What to call it in messages, e.g. the file name. */
  readonly name: string;
  /** What to call the labels in messages when they come from a file of their own (an x/y pair); default `name`. */
  readonly labelsName?: string;
  readonly x: FieldSpec;
  readonly y: FieldSpec;
  /** Class names, index = label value, when known. */
  readonly classNames?: string[];
  /** Number of samples, when known before reading. */
  readonly count?: number;
  /** Total input bytes, when known (for progress in bytes/s). */
  readonly bytes?: number;
  /** Input bytes consumed so far in the current pass, when the source can tell (progress and ETA without a count). */
  readonly bytesRead?: number;
  /** Stream every sample once, in order. May be called again for a second pass. A batch's buffers may be reused once the next batch is requested. */
  batches(): AsyncIterable<SampleBatch>;
  /** Cheap pass over the labels only (no x decoding), for stratified splits; same order as batches(). */
  labels?(): AsyncIterable<ArrayLike<number>>;
  /** Samples [start, end) only, read without reading those before (random-access files); for parts of a source. */
  range?(start: number, end: number): AsyncIterable<SampleBatch>;
  /** Labels of samples [start, end) only (with range()). */
  rangeLabels?(start: number, end: number): AsyncIterable<ArrayLike<number>>;
  /** Set when this source yields only one part of its input (`convert --part`): which part it is. */
  readonly part?: PartSpec;
  /** Inputs skipped so far (complete after batches() finished). */
  readonly skipped?: SkippedInput[];
  close(): Promise<void>;
}

/**
 * Part `index` (0-based) of `count` parts of a source (`slimfit convert --part I/N`). `shardBytes`: the store's
 * target x shard size; sample ranges then start on multiples of its samples per shard (so each part's shards are
 * the shards one conversion writes) whenever every part still gets at least one shard's worth.
 */
export interface PartSpec { index: number; count: number; shardBytes?: number }

/**
 * The items [start, end) of `total` that part `p` holds: consecutive ranges in order, disjoint, together all items,
 * depending only on `total`, `p` and `sampleBytes` (bytes of one sample's x; never on the machine).
 *
 * @example
 * partRange(10, { index: 1, count: 3 }); // [3, 6]
 */
export function partRange(total: number, p: PartSpec, sampleBytes = 1): [number, number] {
  const a = p.shardBytes ? Math.max(1, Math.floor(p.shardBytes / Math.max(1, sampleBytes))) : 1; // as samplesPerShard
  const cut = (k: number): number => {
    const even = Math.floor((k * total) / p.count);
    if (k >= p.count) return total;
    return a > 1 && total >= p.count * a ? Math.min(total, Math.round(even / a) * a) : even;
  };
  return [cut(p.index), cut(p.index + 1)];
}
