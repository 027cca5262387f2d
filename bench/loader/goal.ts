// `npm run bench -- loader DIR --goal`: the loader's default (and owned batches given back, and lent ones) against
// numpy's memmap gather on two stores, in one run:
// the given store (mapped by io 'auto') and the same samples repeated past LOADER_DEFAULTS.mapMaxBytes (read with pread).
import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlimfitError } from '../../src/core/errors.ts';
import { formatBytes } from '../../src/core/rss.ts';
import type { SampleSource } from '../../src/core/source.ts';
import { openNpy } from '../../src/formats/npy.ts';
import { LOADER_DEFAULTS } from '../../src/loader/defaults.ts';
import { openDataset } from '../../src/loader/source.ts';
import { writeStore } from '../../src/store/write.ts';
import type { BenchChildSpec } from './child.ts';
import { median } from '../../dev/median.ts';
import { type Raw, evict, runChild, warm } from './bench.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEERS = join(ROOT, 'bench', 'loader_peers.py');
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'child.ts');

/** Options for {@link benchLoaderGoal}. */
export interface GoalBenchOptions {
  split?: string;
  batch?: number;
  /** Seconds per contender and round (default 8). */
  seconds?: number;
  /** Interleaved rounds; medians are reported (default 3). */
  repeat?: number;
  /** Also measure with the stores evicted from the page cache before each contender (default true). */
  cold?: boolean;
  /** Where the repeated store is built once (default: `<dir>-x<times>` next to the store). */
  bigDir?: string;
  /** How often the big store repeats the given split (default 10). */
  times?: number;
  python?: string;
  log?: (line: string) => void;
}

/** The split's samples `times` times over, in stored order (uint8 x and y read into memory once). */
async function repeated(dir: string, split: string, times: number): Promise<SampleSource> {
  const ds = await openDataset(dir);
  const m = ds.manifest;
  const info = m.splits[split];
  const xs: Uint8Array[] = [], ys: Uint8Array[] = [], ns: number[] = [];
  for (const s of info.shards) {
    ns.push(s.samples);
    for (const [file, into] of [[s.x.file, xs], [s.y.file, ys]] as const) {
      const f = await openNpy(join(ds.dir, file));
      try { into.push(await f.readRows(0, s.samples)); } finally { await f.close(); }
    }
  }
  await ds.close();
  const n = info.shards.reduce((a, s) => a + s.samples, 0);
  return {
    name: `${dir}:${split} x${times}`, x: m.fields.x, y: m.fields.y, classNames: m.classNames, count: n * times,
    async *batches() {
      for (let t = 0; t < times; t++) for (let i = 0; i < xs.length; i++) yield { n: ns[i], x: xs[i], y: ys[i] };
    },
    async close() {},
  };
}

interface Store { label: string; dir: string; x: string[]; y: string[]; bytes: number }

async function storeOf(dir: string, split: string, label: string): Promise<Store> {
  const ds = await openDataset(dir);
  const info = ds.manifest.splits[split];
  await ds.close();
  return {
    label, dir: ds.dir, x: info.shards.map((s) => join(ds.dir, s.x.file)), y: info.shards.map((s) => join(ds.dir, s.y.file)),
    bytes: info.shards.reduce((a, s) => a + s.x.bytes + s.y.bytes, 0),
  };
}

/** One row of the goal table. */
export interface GoalRow { store: string; who: string; cache: 'warm' | 'cold'; samplesPerSec: number; perCpuSec: number; peakRss: number; io?: string; ratio?: number; cpuRatio?: number }

/**
 * Run the goal table: on each store, slimfit's default loader (owned copies) and lent ring buffers (the trainer's
 * setting) against numpy's memmap gather, interleaved rounds, medians; warm and (optionally) cold page cache.
 */
export async function benchLoaderGoal(dir: string, opts: GoalBenchOptions = {}): Promise<{ rows: GoalRow[]; notes: string[]; markdown: string }> {
  const log = opts.log ?? (() => {});
  const split = opts.split ?? 'train', batch = opts.batch ?? 128, seconds = opts.seconds ?? 8, repeat = opts.repeat ?? 3;
  const times = opts.times ?? 10, python = opts.python ?? 'python3';
  const small = await storeOf(dir, split, 'mapped');
  if (small.bytes > LOADER_DEFAULTS.mapMaxBytes) throw new SlimfitError(`the goal bench wants a store that io 'auto' maps (at most ${formatBytes(LOADER_DEFAULTS.mapMaxBytes)}), this one has ${formatBytes(small.bytes)}`, { file: dir });
  const bigDir = opts.bigDir ?? `${small.dir.replace(/\/+$/, '')}-x${times}`;
  if (!existsSync(join(bigDir, 'dataset.json'))) {
    log(`building ${bigDir}: split '${split}' of ${dir} repeated ${times} times, one shard (numpy's fastest case: one memmap)...`);
    await writeStore(bigDir, { kind: 'presplit', splits: [{ name: split, source: await repeated(dir, split, times) }] }, { shardBytes: 1e12, checkDuplicates: false, quiet: true });
  }
  const big = await storeOf(bigDir, split, `repeated x${times}`);
  if (big.bytes <= LOADER_DEFAULTS.mapMaxBytes) throw new SlimfitError(`${bigDir} has ${formatBytes(big.bytes)}, not more than the mapping bound ${formatBytes(LOADER_DEFAULTS.mapMaxBytes)}`, { hint: 'use a larger --times' });

  type C = { store: Store; who: string; run: () => Promise<Raw> };
  const cs: C[] = [];
  for (const st of [small, big]) {
    cs.push({ store: st, who: 'numpy memmap + fancy-index gather', run: () => runChild(python, [PEERS, 'numpy', JSON.stringify({ x: st.x, y: st.y, batch, seconds, seed: 0, workers: 0 })]) });
    for (const [who, reuse, release] of [['slimfit default (owned copies)', false, false], ['slimfit owned copies, each given back with release()', false, true], ['slimfit, lent ring buffers (reuseBuffers: true)', true, false]] as const) {
      const spec: BenchChildSpec = { dir: st.dir, split, batch, seconds, shuffle: 'global', reuse, release, io: 'auto', native: true };
      cs.push({ store: st, who, run: () => runChild(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify(spec)]) });
    }
  }
  const rows: GoalRow[] = [];
  const load0 = loadavg();
  for (const cache of opts.cold === false ? (['warm'] as const) : (['warm', 'cold'] as const)) {
    const runs = cs.map(() => [] as Raw[]);
    for (let r = 0; r < repeat; r++) {
      for (const [i, c] of cs.entries()) {
        const files = [...c.store.x, ...c.store.y];
        if (cache === 'warm') await warm(files); else evict(python, files);
        log(`${cache} ${r + 1}/${repeat}: ${c.store.label}: ${c.who} (load ${loadavg()[0].toFixed(1)})`);
        const res = await c.run();
        runs[i].push(res);
        log(`  ${Math.round(res.samples / res.seconds)} samples/s, ${res.cpuSeconds ? Math.round(res.samples / res.cpuSeconds) : '-'} per CPU-s, peak RSS ${formatBytes(res.peakRss)}${res.io ? `, io ${res.io}` : ''}`);
      }
    }
    for (const [i, c] of cs.entries()) {
      const rs = runs[i];
      rows.push({
        store: c.store.label, who: c.who, cache, samplesPerSec: median(rs.map((x) => x.samples / x.seconds)), perCpuSec: median(rs.map((x) => x.samples / (x.cpuSeconds ?? NaN))),
        peakRss: Math.max(...rs.map((x) => x.peakRss)), io: rs[0].io,
      });
    }
  }
  for (const r of rows) {
    const np = rows.find((b) => b.store === r.store && b.cache === r.cache && b.who.startsWith('numpy'))!;
    r.ratio = r.samplesPerSec / np.samplesPerSec;
    r.cpuRatio = r.perCpuSec / np.perCpuSec;
  }
  const load1 = loadavg();
  const fmt = (v: number) => Math.round(v).toLocaleString('en-US');
  const md = [
    `Shuffled float32 batches (x/255) of batch ${batch}, global shuffle, from '${split}' of two stores: ${small.dir} (${formatBytes(small.bytes)}; io 'auto' maps it) and ` +
      `${big.dir} (the same samples ${times}x in one shard, ${formatBytes(big.bytes)}; past the ${formatBytes(LOADER_DEFAULTS.mapMaxBytes)} mapping bound, so io 'auto' reads with pread). ` +
      `${seconds} s per contender, ${repeat} interleaved round(s), medians (peak RSS: the largest). ${cpus().length} cores (${cpus()[0]?.model.trim()}), load average ${load0.map((l) => l.toFixed(1)).join(' ')} before, ${load1.map((l) => l.toFixed(1)).join(' ')} after. Ratios compare with numpy on the same store in the same cache state.`,
    '',
    '| store | contender | cache | io | samples/s | vs numpy | samples per CPU-s | vs numpy | peak RSS |',
    '|---|---|---|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.store} | ${r.who} | ${r.cache} | ${r.io ?? 'memmap'} | ${fmt(r.samplesPerSec)} | ${r.ratio!.toFixed(2)}x | ${fmt(r.perCpuSec)} | ${r.cpuRatio!.toFixed(2)}x | ${formatBytes(r.peakRss)} |`),
  ].join('\n');
  return { rows, notes: [], markdown: md };
}
