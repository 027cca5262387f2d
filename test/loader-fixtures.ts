// Synthetic stores and .npy files for the loader tests: every sample's x starts with its own index (uint32 LE).
import { writeStore } from '../src/store/write.ts';
import type { SampleSource } from '../src/core/source.ts';
import { createNpyWriter } from '../src/formats/npy.ts';

/** Options for {@link makeStore}. */
export interface SyntheticOptions {
  n: number;
  h?: number;
  w?: number;
  c?: number;
  classes?: number;
  /** Label of sample i (default i % classes). */
  label?: (i: number) => number;
  shardBytes?: number;
  split?: string;
}

/** x bytes of sample i: index as uint32 LE, then a deterministic pattern. */
export function fillSample(i: number, out: Uint8Array): void {
  for (let e = 4; e < out.length; e++) out[e] = (i * 7 + e * 13) & 255;
  out[0] = i & 255; out[1] = (i >>> 8) & 255; out[2] = (i >>> 16) & 255; out[3] = (i >>> 24) & 255;
}

/** A SampleSource of synthetic uint8 images with uint8 labels. */
export function syntheticSource(o: SyntheticOptions): SampleSource {
  const h = o.h ?? 8, w = o.w ?? 8, c = o.c ?? 1, classes = o.classes ?? 10;
  const label = o.label ?? ((i: number) => i % classes);
  const row = h * w * c;
  return {
    name: 'synthetic', x: { dtype: 'uint8', shape: [h, w, c] }, y: { dtype: 'uint8', shape: [] },
    classNames: Array.from({ length: classes }, (_, k) => `c${k}`), count: o.n,
    async *batches() {
      const chunk = 8192;
      for (let s = 0; s < o.n; s += chunk) {
        const m = Math.min(chunk, o.n - s);
        const x = new Uint8Array(m * row), y = new Uint8Array(m);
        for (let k = 0; k < m; k++) { fillSample(s + k, x.subarray(k * row, (k + 1) * row)); y[k] = label(s + k); }
        yield { n: m, x, y };
      }
    },
    async close() {},
  };
}

/** Write a synthetic store with one split (default 'train') into `dir` (created). */
export async function makeStore(dir: string, o: SyntheticOptions): Promise<void> {
  await writeStore(dir, { kind: 'presplit', splits: [{ name: o.split ?? 'train', source: syntheticSource(o) }] }, {
    shardBytes: o.shardBytes ?? 16384, quiet: true, checkDuplicates: false, force: true,
  });
}

/** Write x.npy / y.npy with the synthetic samples. */
export async function makeNpyPair(xPath: string, yPath: string, o: SyntheticOptions): Promise<void> {
  const src = syntheticSource(o);
  const xw = await createNpyWriter(xPath, 'uint8', src.x.shape);
  const yw = await createNpyWriter(yPath, 'uint8', []);
  for await (const b of src.batches()) { await xw.append(b.x); await yw.append(b.y); }
  await xw.close(); await yw.close();
}

/** Sample indices of a batch of raw (uint8, unnormalized) synthetic samples. */
export function idsOf(x: ArrayLike<number>, n: number): number[] {
  const row = x.length / n;
  const out: number[] = [];
  for (let k = 0; k < n; k++) { const o = k * row; out.push((x[o] | (x[o + 1] << 8) | (x[o + 2] << 16) | (x[o + 3] << 24)) >>> 0); }
  return out;
}
