// A PNG grid of samples with their labels, so people can look at their data (`slimfit show`).
import { encode } from 'fast-png';
import type { TypedArray } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { createLoader } from '../loader/index.ts';
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
  /** Random samples drawn with this seed instead of the first n. */
  seed?: number;
  /** Pixel magnification (default: images about 84 px wide). */
  scale?: number;
  /** Check the store's shard checksums first (default true). */
  verifyChecksums?: boolean;
  /** A store given by URL: cache folder and limit, S3 endpoint, retries (see openDataset). */
  remote?: RemoteOptions;
}

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
      for (let j = 0; j < ch; j++) out[(r * w * k + q) * ch + j] = Math.round((255 * (Number(x[src + j]) - lo)) / (hi - lo));
    }
  }
  return { data: out, channels: ch };
}

const esc = (s: string) => s.replace(/[&<>"]/g, (m) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[m]!);

/** Write a PNG grid of `n` samples of `data` (first ones, or random with `seed`) labelled with class names; returns the count. */
export async function writeSampleGrid(data: DataInput, out: string, opts: ShowOptions = {}): Promise<number> {
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
    const count = Math.min(n, rd.main.samples);
    const loader = createLoader(rd.main, { batchSize: count, shuffle: opts.seed === undefined ? false : 'global', seed: opts.seed ?? DEFAULTS.seed, workers: 0, verifyChecksums: opts.verifyChecksums });
    let batch;
    try {
      for await (const b of loader) { batch = b; break; }
    } finally {
      await loader.close();
    }
    if (!batch) throw new SlimfitError(`split '${opts.split ?? 'train'}' is empty`, { file: rd.main.name });
    const cols = Math.ceil(Math.sqrt(count));
    const rows = Math.ceil(count / cols);
    const cw = w * k + 8, chh = h * k + 22;
    const parts: string[] = [];
    const raw8 = rd.main.x.dtype === 'uint8';
    const per = h * w * c;
    for (let i = 0; i < count; i++) {
      const { data: px, channels } = samplePixels(batch.x, i * per, h, w, c, k, raw8);
      const png = Buffer.from(encode({ width: w * k, height: h * k, data: px, channels, depth: 8 })).toString('base64');
      const x0 = (i % cols) * cw + 4, y0 = Math.floor(i / cols) * chh + 4;
      const label = Number(batch.y[i]);
      const name = rd.classNames[label] ?? String(label);
      parts.push(`<image x="${x0}" y="${y0}" width="${w * k}" height="${h * k}" href="data:image/png;base64,${png}"/>`);
      parts.push(`<text x="${x0 + (w * k) / 2}" y="${y0 + h * k + 14}" font-family="DejaVu Sans, sans-serif" font-size="12" text-anchor="middle">${esc(name)}</text>`);
    }
    const W = cols * cw + 8, H = rows * chh + 8;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>`;
    await writeAtomic(out, svgToPng(svg, 1));
    return count;
  } finally {
    await rd.close();
  }
}
