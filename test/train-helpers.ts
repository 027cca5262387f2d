// Test-only helpers for the training tests: a small in-memory Loader (same contract as src/loader) and MNIST slices.
import { openSync, readSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import type { DataSource, Batch, Cursor, Loader } from '../src/loader/types.ts';
import { MNIST_DIR } from '../dev/helpers.ts';

/** `n` real MNIST samples starting at `start` of the train (or t10k) IDX files, pixels scaled to [0, 1]. */
export function mnistSlice(n: number, start = 0, set: 'train' | 't10k' = 'train'): { x: Float32Array; y: Int32Array } {
  const read = (file: string, offset: number, len: number) => {
    const fd = openSync(join(MNIST_DIR, file), 'r');
    try {
      const b = Buffer.alloc(len);
      readSync(fd, b, 0, len, offset);
      return b;
    } finally { closeSync(fd); }
  };
  const px = read(`${set}-images-idx3-ubyte`, 16 + start * 784, n * 784);
  const lb = read(`${set}-labels-idx1-ubyte`, 8 + start, n);
  const x = new Float32Array(n * 784);
  for (let i = 0; i < x.length; i++) x[i] = px[i] / 255;
  return { x, y: Int32Array.from(lb) };
}

function mulberry(seed: number) {
  let a = seed >>> 0;
  return () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

/** An in-memory Loader over x [N, ...shape] / integer y [N], shuffled per (seed, epoch), with an exact cursor. */
export function memLoader(x: Float32Array, y: Int32Array, shape: number[], opts: { batchSize?: number; seed?: number; shuffle?: boolean; classes?: number } = {}): Loader & { batchesServed: number } {
  const N = y.length;
  const per = shape.reduce((a, d) => a * d, 1);
  const bs = opts.batchSize ?? 32;
  const seed = opts.seed ?? 0;
  let epoch = 0, position = 0;
  const order = (e: number) => {
    const idx = Array.from({ length: N }, (_, i) => i);
    if (opts.shuffle === false) return idx;
    const r = mulberry(seed * 7919 + e);
    for (let i = N - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [idx[i], idx[j]] = [idx[j], idx[i]]; }
    return idx;
  };
  const source: DataSource = {
    name: 'memory', samples: N, x: { dtype: 'float32', shape }, y: { dtype: 'int32', shape: [] },
    classNames: Array.from({ length: opts.classes ?? 10 }, (_, i) => String(i)), async close() {},
  };
  const self = {
    source, batchesPerEpoch: Math.ceil(N / bs), samplesPerEpoch: N, batchesServed: 0,
    cursor: (): Cursor => ({ seed, epoch, position, rank: 0, worldSize: 1 }),
    resume(c: Cursor) { epoch = c.epoch; position = c.position; },
    async close() {},
    async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
      const ord = order(epoch);
      while (position < N) {
        const n = Math.min(bs, N - position);
        const bx = new Float32Array(n * per);
        const by = new Int32Array(n);
        for (let i = 0; i < n; i++) {
          const s = ord[position + i];
          bx.set(x.subarray(s * per, (s + 1) * per), i * per);
          by[i] = y[s];
        }
        const index = Math.floor(position / bs);
        position += n;
        self.batchesServed++;
        yield { n, x: bx, xShape: [n, ...shape], y: by, yShape: [n], epoch, index };
      }
      epoch++;
      position = 0;
    },
  };
  return self;
}
