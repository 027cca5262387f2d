// Loader benchmark (not a test): builds a >= 2 GB synthetic store of 28x28 uint8 images in 64 MB shards (convert's
// default, so the shard shuffle has shards to order), once, then runs `npm run bench -- loader` on it: slimfit's
// shuffle modes vs numpy memmap gather vs PyTorch DataLoader, warm and cold page cache, and each mode's shuffle quality.
// Usage: node --import tsx bench/loader.ts [STORE_DIR] [--seconds S] [--repeat R] [--no-cold] [--workers 1,2]
//   [--shuffle global,block,shard] [--shuffle-shards K] [--no-torch]
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SampleSource } from '../src/core/source.ts';
import { benchLoader } from './loader/bench.ts';
import { writeStore } from '../src/store/write.ts';

const args = process.argv.slice(2);
const flag = (name: string, dflt: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const dir = args[0] && !args[0].startsWith('--') ? args[0] : join('.cache', 'bench-loader-2g-64mb');
const N = 2_750_000; // x 2.16 GB
const H = 28, W = 28, ROW = H * W;

/** Synthetic Fashion-MNIST-sized images: smooth blobs whose position depends on the class, plus per-sample texture. */
function source(): SampleSource {
  return {
    name: 'synthetic-28x28', x: { dtype: 'uint8', shape: [H, W, 1] }, y: { dtype: 'uint8', shape: [] },
    classNames: Array.from({ length: 10 }, (_, i) => `class${i}`), count: N, bytes: N * (ROW + 1),
    async *batches() {
      const chunk = 16384;
      for (let s = 0; s < N; s += chunk) {
        const m = Math.min(chunk, N - s);
        const x = new Uint8Array(m * ROW), y = new Uint8Array(m);
        for (let k = 0; k < m; k++) {
          const i = s + k, c = (i * 2654435761) % 10 >>> 0;
          y[k] = c;
          const cy = 6 + (c % 4) * 5, cx = 6 + Math.floor(c / 4) * 7;
          for (let r = 0; r < H; r++) for (let q = 0; q < W; q++) {
            const d2 = (r - cy) ** 2 + (q - cx) ** 2;
            x[k * ROW + r * W + q] = Math.min(255, Math.round(255 * Math.exp(-d2 / 40)) + ((i * 31 + r * 7 + q * 13) & 31));
          }
        }
        yield { n: m, x, y };
      }
    },
    async close() {},
  };
}

if (!existsSync(join(dir, 'dataset.json'))) {
  mkdirSync(join(dir, '..'), { recursive: true });
  console.error(`building the synthetic store in ${dir} (${N} samples in 64 MB shards, ~2.2 GB)...`);
  await writeStore(dir, { kind: 'presplit', splits: [{ name: 'train', source: source() }] }, { shardBytes: 64e6, checkDuplicates: false, quiet: false });
}
const res = await benchLoader(dir, {
  seconds: Number(flag('--seconds', '15')), repeat: Number(flag('--repeat', '1')), cold: !args.includes('--no-cold'),
  workers: flag('--workers', '1,2').split(',').map(Number), log: (l) => console.error(l),
  shuffles: flag('--shuffle', 'global,block,shard').split(',') as Array<'global' | 'block' | 'shard'>,
  shuffleShards: args.includes('--shuffle-shards') ? Number(flag('--shuffle-shards', '8')) : undefined, torch: !args.includes('--no-torch'),
});
console.log(res.markdown);
mkdirSync(join('bench', 'out'), { recursive: true });
writeFileSync(join('bench', 'out', 'loader.md'), `${res.markdown}\n`);
