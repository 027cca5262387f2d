// Child process of `npm run bench -- loader`: iterate shuffled float32 batches for a while, print rate and peak RSS as JSON.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { peakRssBytes } from '../../src/core/rss.ts';
import { createLoader, openDataset } from '../../src/loader/index.ts';

/** What one timed run does. */
export interface BenchChildSpec {
  dir: string;
  split: string;
  batch: number;
  seconds: number;
  /** Worker threads; left out = the loader's default. */
  workers?: number;
  shuffle: 'global' | 'block' | 'shard';
  /** Shard shuffle: shards per window. */
  shuffleShards?: number;
  reuse: boolean;
  /** Owned batches: give each back with Batch.release() once used. */
  release?: boolean;
  io: 'auto' | 'pread' | 'mmap';
  native: boolean;
  /** A store URL's cache folder and limit (and S3 endpoint). */
  remote?: { cacheDir?: string; cacheLimit?: number; endpoint?: string };
  shuffleWindow?: number;
}

const spec = JSON.parse(process.argv[2]) as BenchChildSpec;
const ds = await openDataset(spec.dir, spec.remote ? { remote: spec.remote } : {});
const loader = createLoader(ds.split(spec.split), {
  batchSize: spec.batch, shuffle: spec.shuffle, workers: spec.workers, normalize: { scale: 1 / 255, shift: 0 }, reuseBuffers: spec.reuse, seed: 0, io: spec.io, native: spec.native, shuffleShards: spec.shuffleShards,
  ...(spec.shuffleWindow ? { shuffleWindow: spec.shuffleWindow } : {}),
});
let n = 0, check = 0, cachePeak = 0;
const shards = spec.remote?.cacheDir ? join(spec.remote.cacheDir, 'shards') : null;
const diskNow = () => (shards ? readdirSync(shards).reduce((a, f) => { try { return a + statSync(join(shards, f)).size; } catch { return a; } }, 0) : 0);
let lastSample = 0;
let t0 = 0;
let cpu0 = process.cpuUsage();
// Epoch after epoch until the time is up (a small store such as MNIST takes well under a second per epoch).
run: for (;;) {
  for await (const b of loader) {
    check += b.x[0] as number;
    if (spec.release) b.release?.();
    if (shards && performance.now() - lastSample > 20) { cachePeak = Math.max(cachePeak, diskNow()); lastSample = performance.now(); }
    if (t0 === 0) { t0 = performance.now(); cpu0 = process.cpuUsage(); continue; } // timed from the first batch on, like the peers
    n += b.n;
    if (performance.now() - t0 > spec.seconds * 1000) break run;
  }
}
const seconds = (performance.now() - t0) / 1000;
const used = process.cpuUsage(cpu0);
const cpuSeconds = (used.user + used.system) / 1e6; // all threads of this process
await loader.close();
await ds.close();
process.stdout.write(`${JSON.stringify({ samples: n, seconds, peakRss: peakRssBytes(), cpuSeconds, check, io: loader.io, cachePeak })}\n`);
