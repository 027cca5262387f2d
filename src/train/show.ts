// A PNG grid of samples with their labels, so people can look at their data (`slimfit show`).
import { encode } from 'fast-png';
import type { TypedArray } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { createLoader } from '../loader/index.ts';
import type { AugmentOptions } from '../loader/types.ts';
import { checkAugment, formatAugment, parseAugmentSpec } from '../loader/augment.ts';
import { createTransformer, makeTransformSpec, rawView } from '../loader/transform.ts';
import type { RemoteOptions } from '../remote/index.ts';
import { resolveData, type DataInput } from './data.ts';
import { DEFAULTS } from './defaults.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { svgToPng } from './plot.ts';

/** Options of {@link writeSampleGrid}. */
export interface ShowOptions {
  split?: string;
  /** How many samples (default DEFAULTS.gridSamples). */
  n?: number;
  /** Seed of the random draw (default DEFAULTS.seed): the same seed draws the same samples. */
  seed?: number;
  /** The first n samples in stored order instead of a random draw (a class-sorted store shows one class then). */
  first?: boolean;
  /** Pixel magnification (default: images about 84 px wide). */
  scale?: number;
  /** Check the store's shard checksums first (default true). */
  verifyChecksums?: boolean;
  /**
   * Show what training sees: each row is one (seeded random) sample, first as stored, then augmented with independent
   * draws (an `--augment` spec or AugmentOptions). Default: no augmentation.
   */
  augment?: string | AugmentOptions;
  /** A store given by URL: cache folder and limit, S3 endpoint, retries (see openDataset). */
  remote?: RemoteOptions;
}

/** Columns of an augmentation grid: the sample as stored, then 7 draws. */
const AUG_COLS = 8;

/** 8-bit gray or RGB pixels of one sample, min-max scaled when the data is not uint8, upscaled by `k` (nearest). */
function samplePixels(x: TypedArray, off: number, h: number, w: number, c: number, k: number, raw8: boolean): { data: Uint8Array; channels: number } {
  const ch = c === 3 ? 3 : 1;
  let lo = 0, hi = 255;
  if (!raw8) {
    lo = Infinity; hi = -Infinity;
    for (let i = 0; i < h * w * c; i++) { const v = Number(x[off + i]); if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!(hi > lo)) hi = lo + 1;
  }
  const out = new Uint8Array(h * k * w * k * ch);
  for (let r = 0; r < h * k; r++) {
    for (let q = 0; q < w * k; q++) {
      const src = off + ((Math.floor(r / k) * w + Math.floor(q / k)) * c);
      for (let j = 0; j < ch; j++) out[(r * w * k + q) * ch + j] = Math.max(0, Math.min(255, Math.round((255 * (Number(x[src + j]) - lo)) / (hi - lo))));
    }
  }
  return { data: out, channels: ch };
}

const esc = (s: string) => s.replace(/[&<>"]/g, (m) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[m]!);

/** What {@link writeSampleGrid} drew. */
export interface SampleGrid {
  /** Samples drawn. */
  count: number;
  /** Their labels, in draw order. */
  labels: number[];
  /** The seed of the draw (null with `first`). */
  seed: number | null;
  /** Augmented draws shown beside each sample (0 without `augment`). */
  draws: number;
}

/**
 * Write a PNG grid of `n` samples of `data` labelled with class names: a seeded uniform random draw (without
 * replacement), or the first n with `first`. With `augment`: n/8 rows of one sample each, as stored and then in 7
 * augmented draws.
 *
 * @example
 * const g = await writeSampleGrid('mnist-store', 'samples.png', { n: 64, seed: 1 });
 * console.log(`${g.count} samples, labels ${g.labels.join(' ')}`);
 * await writeSampleGrid('mnist-store', 'aug.png', { augment: 'rotate=10,scale=0.1,erase=0.5', seed: 1 });
 */
export async function writeSampleGrid(data: DataInput, out: string, opts: ShowOptions = {}): Promise<SampleGrid> {
  const n = opts.n ?? DEFAULTS.gridSamples;
  if (!Number.isInteger(n) || n < 1 || n > 4096) throw new SlimfitError(`-n must be an integer in 1..4096, got ${n}`);
  const rd = await resolveData(data, opts.split ?? 'train', undefined, 0, 0, { verifyChecksums: opts.verifyChecksums, remote: opts.remote });
  try {
    const shape = rd.main.x.shape;
    if (shape.length < 2 || shape.length > 3 || (shape.length === 3 && ![1, 3, 4].includes(shape[2]))) {
      throw new SlimfitError(`samples of shape [${shape.join(',')}] are not images ([h, w] or [h, w, 1|3|4])`, { file: rd.main.name });
    }
    const [h, w] = shape;
    const c = shape[2] ?? 1;
    const k = opts.scale ?? Math.max(1, Math.round(84 / Math.max(h, w)));
    let aug: AugmentOptions | undefined;
    if (typeof opts.augment === 'string') aug = parseAugmentSpec(opts.augment);
    else if (opts.augment !== undefined) { checkAugment('writeSampleGrid', opts.augment); aug = opts.augment; }
    if (aug && !formatAugment(aug)) aug = undefined;
    const rowsAug = aug ? Math.max(1, Math.ceil(n / AUG_COLS)) : 0;
    const count = aug ? Math.min(rowsAug, rd.main.samples) : Math.min(n, rd.main.samples);
    const seed = opts.seed ?? DEFAULTS.seed;
    // A random draw is the first `count` positions of a seeded shuffle of the split: a uniform permutation locally; for a
    // store given by URL the loader's remote default (a window of shards), so only that window is downloaded.
    const loader = createLoader(rd.main, { batchSize: count, shuffle: opts.first ? false : undefined, seed, workers: 0, verifyChecksums: opts.verifyChecksums });
    let batch;
    try {
      for await (const b of loader) { batch = b; break; }
    } finally {
      await loader.close();
    }
    if (!batch) throw new SlimfitError(`split '${opts.split ?? 'train'}' is empty`, { file: rd.main.name });
    const per = h * w * c;
    let cells = count, xs: TypedArray = batch.x, labels: (i: number) => string;
    const labelsDrawn = Array.from({ length: count }, (_, i) => Number(batch.y[i]));
    const nameOf = (i: number) => rd.classNames[labelsDrawn[i]] ?? String(labelsDrawn[i]);
    let cols: number;
    if (aug) {
      // Draw j of sample i uses stream key i * 8 + j of epoch 0: the same transformer the loader's workers run.
      cols = AUG_COLS;
      cells = count * cols;
      const spec = makeTransformSpec(rd.main, { augment: aug }, seed);
      const t = createTransformer(spec);
      const out = new Uint8Array(cells * spec.xOutBytes);
      t.setOutput(out, new Uint8Array(8));
      const rawIn = rawView(rd.main.x.dtype, new Uint8Array(batch.x.buffer, batch.x.byteOffset, batch.x.byteLength));
      const copy = createTransformer(makeTransformSpec(rd.main, { normalize: spec.xOut === 'float32' ? { scale: 1, shift: 0 } : false }, 0));
      copy.setOutput(out, new Uint8Array(8));
      for (let i = 0; i < count; i++) {
        copy.x(i * cols, rawIn, i, 0, 0);
        for (let j = 1; j < cols; j++) t.x(i * cols + j, rawIn, i, 0, i * cols + j);
      }
      xs = rawView(spec.xOut === 'float32' ? 'float32' : rd.main.x.dtype, out).t;
      labels = (q) => (q % cols === 0 ? nameOf(q / cols) : `draw ${q % cols}`);
    } else {
      cols = Math.ceil(Math.sqrt(count));
      labels = nameOf;
    }
    const rows = Math.ceil(cells / cols);
    const cw = w * k + 8, chh = h * k + 22;
    const parts: string[] = [];
    const raw8 = rd.main.x.dtype === 'uint8';
    for (let i = 0; i < cells; i++) {
      const { data: px, channels } = samplePixels(xs, i * per, h, w, c, k, raw8);
      const png = Buffer.from(encode({ width: w * k, height: h * k, data: px, channels, depth: 8 })).toString('base64');
      const x0 = (i % cols) * cw + 4, y0 = Math.floor(i / cols) * chh + 4;
      const name = labels(i);
      parts.push(`<image x="${x0}" y="${y0}" width="${w * k}" height="${h * k}" href="data:image/png;base64,${png}"/>`);
      parts.push(`<text x="${x0 + (w * k) / 2}" y="${y0 + h * k + 14}" font-family="DejaVu Sans, sans-serif" font-size="12" text-anchor="middle">${esc(name)}</text>`);
    }
    const W = cols * cw + 8, H = rows * chh + 8;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>`;
    await writeAtomic(out, svgToPng(svg, 1));
    return { count, labels: labelsDrawn, seed: opts.first ? null : seed, draws: aug ? AUG_COLS - 1 : 0 };
  } finally {
    await rd.close();
  }
}
