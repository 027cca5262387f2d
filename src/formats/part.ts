// One part of an array source (`convert --part I/N` of .npy/.npz/IDX/.mat/HDF5): a range of its samples.
import { dtypeSize } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { type PartSpec, type SampleBatch, type SampleSource, partRange } from '../core/source.ts';

/** Bytes per sample of a batch's field. */
function sampleBytesOf(n: number, bytes: number): number {
  return n === 0 ? 0 : bytes / n;
}

/**
 * The samples [start, end) of `src` (by {@link partRange} over its count) as a source of their own. A source with
 * `range()` (.npy pairs) reads only those; from others the batches before the range are read and passed over.
 *
 * @example
 * const part = sourcePart(await npzSource('big.npz', { x: 'x', y: 'y' }), { index: 1, count: 3 });
 */
export function sourcePart(src: SampleSource, part: PartSpec): SampleSource {
  if (src.count === undefined) {
    throw new SlimfitError('cannot be converted in parts: its sample count is not known before reading', { file: src.name, hint: 'convert it without --part' });
  }
  const [start, end] = partRange(src.count, part, src.x.shape.reduce((a, d) => a * d, dtypeSize(src.x.dtype)));
  async function* slices<T>(it: AsyncIterable<T>, len: (t: T) => number, cut: (t: T, a: number, b: number) => T, drop: (t: T) => void): AsyncGenerator<T> {
    if (start >= end) return;
    let at = 0;
    for await (const t of it) {
      const n = len(t), from = at;
      at += n;
      if (at <= start) { drop(t); continue; }
      yield from >= start && at <= end ? t : cut(t, Math.max(0, start - from), Math.min(n, end - from));
      if (at >= end) return;
    }
  }
  const cutBatch = (b: SampleBatch, a: number, z: number): SampleBatch => {
    const xb = sampleBytesOf(b.n, b.x.length), yb = sampleBytesOf(b.n, b.y.length);
    // Per-batch value counts cover the whole batch: left out, the writer counts the kept samples itself.
    return {
      n: z - a, x: b.x.subarray(a * xb, z * xb), y: b.y.subarray(a * yb, z * yb),
      ...(b.hashes ? { hashes: b.hashes.subarray(2 * a, 2 * z) } : {}), ...(b.release ? { release: b.release } : {}),
    };
  };
  return {
    name: src.name,
    ...(src.labelsName ? { labelsName: src.labelsName } : {}),
    x: src.x,
    y: src.y,
    ...(src.classNames ? { classNames: src.classNames } : {}),
    count: end - start,
    ...(src.bytes !== undefined ? { bytes: Math.round((src.bytes * (end - start)) / Math.max(1, src.count)) } : {}),
    part,
    // A random-access reader reads just the range; a streamed one (deflated members, .mat, HDF5...) skips to it.
    batches: () => (src.range ? src.range(start, end) : slices(src.batches(), (b) => b.n, cutBatch, (b) => b.release?.())),
    ...(src.rangeLabels ? { labels: () => src.rangeLabels!(start, end) }
      : src.labels ? { labels: () => slices(src.labels!(), (l) => l.length, (l, a, z) => Array.prototype.slice.call(l, a, z) as number[], () => {}) } : {}),
    get skipped() { return src.skipped; },
    close: () => src.close(),
  };
}
