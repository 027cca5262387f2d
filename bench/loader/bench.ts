// `npm run bench -- loader`: slimfit's loader against numpy memmap gathers and PyTorch DataLoader, same store, same run.
import { spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlimfitError } from '../../src/core/errors.ts';
import { formatBytes } from '../../src/core/rss.ts';
import { gatherAddon } from '../../src/loader/native.ts';
import { openDataset } from '../../src/loader/source.ts';
import { createLoader } from '../../src/loader/loader.ts';
import { LOADER_DEFAULTS } from '../../src/loader/defaults.ts';
import { createPlan } from '../../src/loader/plan.ts';
import { shuffleQuality } from '../../src/loader/quality.ts';
import type { DataSource } from '../../src/loader/types.ts';
import type { BenchChildSpec } from './child.ts';
import { median } from '../../dev/median.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PEERS = join(ROOT, 'bench', 'loader_peers.py');
const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'child.ts');

/** Options for {@link benchLoader}. */
export interface LoaderBenchOptions {
  split?: string;
  batch?: number;
  /** Seconds each contender runs (timed after its first batch); default 15. */
  seconds?: number;
  /** slimfit worker counts to run (default [1, 2]). */
  workers?: number[];
  /** Also run with the store's pages evicted from the page cache before each contender. */
  cold?: boolean;
  /** Rounds over all contenders (interleaved, so load changes hit every contender alike); medians are reported (default 1). */
  repeat?: number;
  /** Also run the PyTorch DataLoader peers (default true). */
  torch?: boolean;
  /** python3 with numpy (default `python3`). */
  python?: string;
  /** python3 with torch (default /usr/bin/python3). */
  torchPython?: string;
  /** slimfit shuffle modes to time (default global, block, shard); all are in the quality table. */
  shuffles?: Array<'global' | 'block' | 'shard'>;
  /** Shard shuffle: shards per window (default LOADER_DEFAULTS.shuffleShards). */
  shuffleShards?: number;
  log?: (line: string) => void;
}

/** One measured contender. */
export interface BenchRow {
  name: string;
  cache: 'warm' | 'cold';
  samples: number;
  seconds: number;
  samplesPerSec: number;
  mbPerSec: number;
  peakRss: number;
  /** Largest child process (DataLoader workers), when any. */
  peakRssChildren?: number;
  /** samplesPerSec / numpy's in the same cache state. */
  ratio?: number;
  /** Samples per CPU-second of the contender's process (all its threads); undefined when worker processes are not counted. */
  samplesPerCpuSec?: number;
  /** samplesPerCpuSec / numpy's. */
  cpuRatio?: number;
  note?: string;
}

export interface Raw { samples: number; seconds: number; cpuSeconds?: number; cpuIncomplete?: boolean; peakRss: number; peakRssChildren?: number; io?: string }

/** Run a bench child (`cmd args`) and parse the JSON line it prints last. */
export function runChild(cmd: string, args: string[]): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0 || !line.startsWith('{')) reject(new Error(`${cmd} ${args[0]} failed (${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`));
      else resolve(JSON.parse(line) as Raw);
    });
  });
}

/** True if `python` can import `module`. */
function canImport(python: string, module: string): boolean {
  const r = spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' });
  return r.status === 0;
}

/** Read files once so they sit in the page cache. */
export async function warm(files: string[]): Promise<void> {
  for (const f of files) await new Promise<void>((res, rej) => createReadStream(f, { highWaterMark: 4 << 20 }).on('data', () => {}).on('end', res).on('error', rej));
}

/** Evict files from the page cache (posix_fadvise DONTNEED on clean pages; no privileges needed). */
export function evict(python: string, files: string[]): void {
  const r = spawnSync(python, ['-c', 'import os,sys\nfor p in sys.argv[1:]:\n  fd=os.open(p,os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)', ...files]);
  if (r.status !== 0) throw new Error(`could not evict the store from the page cache: ${r.stderr}`);
}

/** Bytes of the files still in the page cache (via fincore when available), or NaN. */
function cachedBytes(files: string[]): number {
  const r = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', ...files], { encoding: 'utf8' });
  if (r.status !== 0) return NaN;
  return r.stdout.trim().split('\n').reduce((a, l) => a + Number(l.trim() || 0), 0);
}

/** Run the benchmark on split `split` of the store in `dir`; returns rows and a markdown table. */
export async function benchLoader(dir: string, opts: LoaderBenchOptions = {}): Promise<{ rows: BenchRow[]; notes: string[]; markdown: string }> {
  const log = opts.log ?? (() => {});
  const ds = await openDataset(dir);
  const split = opts.split ?? (ds.splits.includes('train') ? 'train' : ds.splits[0]);
  const src = ds.split(split);
  await ds.close();
  const m = ds.manifest;
  if (m.fields.x.dtype !== 'uint8') throw new SlimfitError(`the loader bench expects uint8 images, this store has ${m.fields.x.dtype}`, { file: dir });
  const info = m.splits[split];
  const xFiles = info.shards.map((s) => join(ds.dir, s.x.file)), yFiles = info.shards.map((s) => join(ds.dir, s.y.file));
  const files = [...xFiles, ...yFiles];
  const sampleBytes = m.fields.x.shape.reduce((a, d) => a * d, 1) + info.shards[0].y.bytes / Math.max(1, info.shards[0].samples);
  const totalBytes = info.shards.reduce((a, s) => a + s.x.bytes + s.y.bytes, 0);
  const batch = opts.batch ?? 128, seconds = opts.seconds ?? 15, repeat = opts.repeat ?? 1;
  const python = opts.python ?? 'python3', torchPy = opts.torchPython ?? '/usr/bin/python3';
  const haveNumpy = canImport(python, 'numpy');
  const haveTorch = opts.torch !== false && existsSync(torchPy) && canImport(torchPy, 'torch');
  const shuffles = opts.shuffles ?? ['global', 'block', 'shard'];
  const shuffleShards = opts.shuffleShards ?? LOADER_DEFAULTS.shuffleShards;
  const notes: string[] = [];
  if (!haveNumpy) notes.push(`numpy peer skipped: \`${python}\` cannot import numpy`);
  if (!haveTorch && opts.torch !== false) notes.push(`PyTorch peers skipped: \`${torchPy}\` cannot import torch`);

  type Contender = { name: string; run: () => Promise<Raw>; note?: string };
  const peerSpec = (workers: number) => JSON.stringify({ x: xFiles, y: yFiles, batch, seconds, seed: 0, workers });
  const addon = gatherAddon() !== null;
  if (!addon) notes.push('the native gather addon is not built (npm install builds it): slimfit used plain JS positioned reads and could not run io: mmap');
  const slim = (workers: number, shuffle: 'global' | 'block' | 'shard', io: 'auto' | 'pread' | 'mmap', native = true, reuse = false): Contender => ({
    name: `slimfit ${shuffle} shuffle${shuffle === 'shard' ? ` (${shuffleShards} shards per window)` : ''}, ${shuffle === 'block' ? 'sequential windows' : !native ? 'pread (plain JS)' : io === 'auto' ? 'default io (auto)' : `io: ${io}`}, ${workers} worker${workers === 1 ? '' : 's'}, ${reuse ? 'lent ring buffers (the trainer\'s setting)' : 'owned copies (the default)'}`,
    run: () => runChild(process.execPath, ['--import', 'tsx', CHILD, JSON.stringify({ dir: ds.dir, split, batch, seconds, workers, shuffle, reuse, io, native, shuffleShards } satisfies BenchChildSpec)]),
  });
  const contenders = (cache: 'warm' | 'cold'): Contender[] => {
    const c: Contender[] = [];
    const ws = opts.workers ?? [1, 2];
    const wl = ws[ws.length - 1];
    if (haveNumpy) c.push({ name: 'numpy memmap + fancy-index gather', run: () => runChild(python, [PEERS, 'numpy', peerSpec(0)]) });
    if (shuffles.includes('global')) {
      for (const w of ws) for (const reuse of [false, true]) c.push(slim(w, 'global', 'auto', true, reuse));
      if (addon) for (const reuse of [false, true]) c.push(slim(wl, 'global', 'pread', true, reuse));
      if (addon && cache === 'warm') c.push(slim(wl, 'global', 'mmap', true, true));
      if (cache === 'warm') c.push(slim(wl, 'global', 'pread', false));
    }
    if (shuffles.includes('block')) for (const w of ws) c.push(slim(w, 'block', 'pread'));
    if (shuffles.includes('shard')) for (const w of ws) c.push(slim(w, 'shard', 'auto'));
    if (haveTorch) {
      for (const w of cache === 'warm' ? [0, 2] : [2]) c.push({ name: `PyTorch DataLoader (per-sample __getitem__), num_workers=${w}`, run: () => runChild(torchPy, [PEERS, 'torch', peerSpec(w)]) });
      c.push({ name: 'PyTorch DataLoader (batched sampler + fancy index), num_workers=2', run: () => runChild(torchPy, [PEERS, 'torch-batched', peerSpec(2)]) });
    }
    return c;
  };

  const rows: BenchRow[] = [];
  const loadBefore = loadavg()[0];
  for (const cache of opts.cold ? (['warm', 'cold'] as const) : (['warm'] as const)) {
    const list = contenders(cache);
    const runs = list.map(() => [] as Raw[]);
    const failed = new Set<number>();
    for (let r = 0; r < repeat; r++) {
      for (const [i, c] of list.entries()) {
        if (failed.has(i)) continue;
        if (cache === 'warm') await warm(files);
        else {
          evict(python, files);
          const left = cachedBytes(files);
          if (r === 0 && Number.isFinite(left)) log(`  page cache holds ${formatBytes(left)} of the ${formatBytes(totalBytes)} store before the run`);
        }
        log(`${cache}: ${c.name} (round ${r + 1}/${repeat}, load ${loadavg()[0].toFixed(1)})`);
        try {
          const res = await c.run();
          runs[i].push(res);
          log(`  ${Math.round(res.samples / res.seconds)} samples/s${res.cpuSeconds ? `, ${Math.round(res.samples / res.cpuSeconds)} per CPU-s` : ''}, peak RSS ${formatBytes(res.peakRss)}${res.io ? `, io ${res.io}` : ''}`);
        } catch (e) {
          log(`  failed: ${(e as Error).message}`);
          notes.push(`${c.name} (${cache}) failed: ${(e as Error).message.slice(0, 300)}`);
          failed.add(i);
        }
      }
    }
    for (const [i, c] of list.entries()) {
      const rs = runs[i];
      if (rs.length === 0) continue;
      const sps = median(rs.map((x) => x.samples / x.seconds));
      const cpuOk = rs.every((x) => x.cpuSeconds && !x.cpuIncomplete);
      const perCpu = cpuOk ? median(rs.map((x) => x.samples / x.cpuSeconds!)) : undefined;
      const samples = rs.reduce((a, x) => a + x.samples, 0), secs = rs.reduce((a, x) => a + x.seconds, 0);
      rows.push({ name: c.name, cache, samples, seconds: secs, samplesPerSec: sps, mbPerSec: (sps * sampleBytes) / 1e6, peakRss: Math.max(...rs.map((x) => x.peakRss)), peakRssChildren: Math.max(0, ...rs.map((x) => x.peakRssChildren ?? 0)) || undefined, samplesPerCpuSec: perCpu });
    }
  }
  for (const r of rows) {
    const base = rows.find((b) => b.cache === r.cache && b.name.startsWith('numpy'));
    if (base) r.ratio = r.samplesPerSec / base.samplesPerSec;
    if (base?.samplesPerCpuSec && r.samplesPerCpuSec) r.cpuRatio = r.samplesPerCpuSec / base.samplesPerCpuSec;
  }
  const loadAfter = loadavg()[0];
  const quality = qualityTable(src, batch, shuffleShards);
  const lines = [
    `Shuffled float32 batches (x/255) of ${m.fields.x.shape.join('x')} uint8 samples, batch ${batch}, split '${split}' of ${ds.dir}: ` +
      `${src.samples} samples, ${formatBytes(totalBytes)} in ${info.shards.length} shard pair(s). Each contender runs ${seconds} s per round (timed from its first batch), ${repeat} round(s) interleaved; medians shown, peak RSS the largest. ` +
      `Machine: ${cpus().length} cores, 1-minute load average ${loadBefore.toFixed(1)} before and ${loadAfter.toFixed(1)} after the runs.`,
    '',
    '| contender | cache | samples/s | MB/s | peak RSS | ratio vs numpy | samples per CPU-s | CPU-efficiency vs numpy |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${r.cache} | ${Math.round(r.samplesPerSec).toLocaleString('en-US')} | ${r.mbPerSec.toFixed(1)} | ${formatBytes(r.peakRss)}${r.peakRssChildren ? ` (+ ${formatBytes(r.peakRssChildren)} largest worker)` : ''} | ${r.ratio !== undefined ? `${r.ratio.toFixed(2)}x` : '-'} | ${r.samplesPerCpuSec ? Math.round(r.samplesPerCpuSec).toLocaleString('en-US') : '-'} | ${r.cpuRatio !== undefined ? `${r.cpuRatio.toFixed(2)}x` : '-'} |`),
    '',
    'slimfit batches are copies the caller owns (the default) or \'lent ring buffers\' (reuseBuffers: true: views valid until the next batch; what `slimfit train` uses). ' +
      `default io (auto) maps the x files when they take at most ${formatBytes(LOADER_DEFAULTS.mapMaxBytes)} together, else reads with pread. ` +
      'warm = the store was read once just before (page cache); cold = its pages were evicted with posix_fadvise(DONTNEED) just before. ' +
      'MB/s counts stored sample bytes (x + y). Peak RSS (VmHWM) includes memory-mapped file pages touched: numpy, PyTorch and slimfit io: mmap; ' +
      'slimfit pread and block keep the data out of the process (page cache only).',
    'Samples per CPU-second counts every thread of the contender\'s process (slimfit: main + worker threads); it is the fairer number on a busy machine. ' +
      'It is left out for DataLoader with worker processes, whose CPU time is not visible to the parent while they run.',
    ...notes.map((n) => `- ${n}`),
    '',
    ...quality,
  ];
  return { rows, notes, markdown: lines.join('\n') };
}

/**
 * How well each mode shuffles one epoch of this store (seed 0, epoch 0), from the plan alone (no data read): position
 * correlation and displacement (uniform: 0 and 1/3), equal-class runs if the store were sorted by class (10 classes
 * of equal size: the worst case for a windowed shuffle; uniform ~1.11), and how many shards a batch and the whole
 * reading front touch.
 */
function qualityTable(src: DataSource, batch: number, shuffleShards: number): string[] {
  const modes = [['none', false], ['global', 'global'], ['block', 'block'], ['shard', 'shard']] as const;
  const rows: string[] = [];
  for (const [name, shuffle] of modes) {
    const loader = createLoader(src, { shuffle, batchSize: batch, workers: 0, shuffleShards, verifyChecksums: false });
    const cfg = loader.planConfig;
    void loader.close();
    const n = cfg.perRank, ids = new Float64Array(n);
    const t0 = performance.now();
    createPlan(cfg).samples(0, 0, n, ids);
    const planMs = performance.now() - t0;
    const q = shuffleQuality(ids, (i) => Math.floor((10 * i) / n));
    const starts = cfg.shardStarts!;
    const partOf = (id: number) => { let lo = 0, hi = starts.length - 2; while (lo < hi) { const m = (lo + hi + 1) >> 1; if (starts[m] <= id) lo = m; else hi = m - 1; } return lo; };
    const parts = Int32Array.from(ids, partOf);
    let perBatch = 0, batches = 0;
    for (let s = 0; s < n; s += batch) { perBatch += new Set(parts.subarray(s, Math.min(n, s + batch))).size; batches++; }
    // Shards being read at once: a shard counts from its first read to its last.
    const first = new Map<number, number>(), last = new Map<number, number>();
    parts.forEach((p, i) => { if (!first.has(p)) first.set(p, i); last.set(p, i); });
    const delta = new Int32Array(n + 1);
    for (const [p, f] of first) { delta[f]++; delta[last.get(p)! + 1]--; }
    let live = 0, most = 0;
    for (const d of delta) { live += d; most = Math.max(most, live); }
    const r = loader.shuffleReport;
    rows.push(`| ${name}${name === 'shard' ? ` (${shuffleShards} shards per window)` : name === 'block' ? ` (${r.blockSamples}-sample blocks, ${r.windowSamples}-sample windows)` : ''} | ${q.positionCorrelation.toFixed(4)} | ${q.meanDisplacement.toFixed(4)} | ${q.classRunMean!.toFixed(2)} (uniform ${q.classRunUniform!.toFixed(2)}) | ${(perBatch / batches).toFixed(1)} | ${most} of ${starts.length - 1} | ${Math.round(planMs)} |`);
  }
  return [
    `Shuffle quality of one epoch (seed 0) of the same store, computed from each mode's plan (no data read): shards are the store's ${src.name} parts.`,
    '',
    '| mode | position correlation (uniform 0) | mean displacement / n (uniform 0.333) | equal-class run length if the store were class-sorted | shards per batch | shards read at once (max) | plan ms for the epoch |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ];
}
