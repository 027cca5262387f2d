// createLoader: shuffled minibatches from disk, filled by worker threads into a fixed ring of shared buffers.
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { tsWorker } from '../core/worker.ts';
import { type TypedArray, dtypeSize, elementAsNumber, viewAs } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { checkBool, checkInt, checkNumber, checkOneOf, checkOptions, shown } from '../core/options.ts';
import { openNpy } from '../formats/npy.ts';
import { checkShardOnce } from '../store/checksum.ts';
import { isLoadable, type LoadableSource, type PartFile, partOf } from './layout.ts';
import { subsetIndex } from './holdout.ts';
import { type ClassTable, type Plan, type PlanConfig, createPlan, rankPosition, shardCounts } from './plan.ts';
import { type BatchReader, type ReaderInit, createReader, slotLayout } from './reader.ts';
import { gatherAddon } from './native.ts';
import { LOADER_DEFAULTS, defaultWorkers } from './defaults.ts';
import { makeTransformSpec } from './transform.ts';
import { checkAugment } from './augment.ts';
import { type Batch, type Cursor, type DataSource, LOADER_OPTION_KEYS, type Loader, type LoaderOptions } from './types.ts';
import type { FillReply, FillRequest } from './worker.ts';

/** How well a loader shuffles, stated plainly (see {@link ShuffledLoader.shuffleReport}). */
export interface ShuffleReport {
  mode: 'global' | 'block' | 'shard' | 'none';
  /** True when every order of the epoch is equally likely (global mode; block or shard mode whose window is the whole epoch). */
  uniform: boolean;
  /** Block mode: consecutive samples that stay together. */
  blockSamples: number;
  /** Block mode: samples shuffled together in memory; shard mode: about the samples of one window (samples x K / shards). */
  windowSamples: number;
  /** windowSamples / samplesPerEpoch (1 = the whole epoch is one window, which is a uniform shuffle); shard mode: shardWindow / shards. */
  windowFraction: number;
  /** Shard mode: shards per window (at most this many are read at any time). */
  shardWindow: number;
  /** Shard mode: shards (parts) of the source, with samples of it. */
  shards: number;
  /** One readable sentence. */
  note: string;
}

/** A Loader plus what it does (additions to the Loader contract). */
export interface ShuffledLoader extends Loader {
  readonly shuffleReport: ShuffleReport;
  /** Worker threads used (0 = main thread). */
  readonly workers: number;
  /** Batches prepared ahead (ring slots). */
  readonly prefetch: number;
  /** Bytes of the ring of prepared batches. */
  readonly ringBytes: number;
  /** How samples are read (io 'auto' resolved): 'mmap' needs the native addon. */
  readonly io: 'pread' | 'mmap';
  /** Batches requested from the readers and not yet handed out (never more than `prefetch`: the backpressure). */
  readonly ahead: number;
  /**
   * The parts (indices into `source.parts`, i.e. shard files) this loader reads from (epoch, position) to the end of
   * that epoch, in the order of their first read (default: from the cursor). See {@link Plan.shardSchedule}.
   *
   * @example
   * const loader = createLoader(ds.split('train'), { shuffle: 'shard' });
   * const c = loader.cursor();
   * const next = loader.shardSchedule(c.epoch, c.position).slice(0, 16); // part indices: fetch these first
   */
  shardSchedule(epoch?: number, position?: number): number[];
  /** The order as plain data: `createPlan(loader.planConfig)` computes the same sample order in any thread. */
  readonly planConfig: PlanConfig;
}

const MB = 1 << 20;

/** intOpt(v ?? dflt) as a whole number >= min (v was checked by checkLoaderOptions, dflt is ours). */
function intOpt(name: string, v: number | undefined, dflt: number, min: number): number {
  return checkInt('createLoader', name, v, min) ?? dflt;
}

/**
 * Check every loader option's type and range up front, so a bad one is a SlimfitError naming it (`where`: the public
 * function the user called, e.g. 'fit') rather than a RangeError from deep inside or a silently different loader.
 */
export function checkLoaderOptions(where: string, o: LoaderOptions): void {
  checkInt(where, 'batchSize', o.batchSize, 1);
  checkInt(where, 'seed', o.seed, -(2 ** 52), 2 ** 52);
  checkInt(where, 'worldSize', o.worldSize, 1);
  checkInt(where, 'rank', o.rank, 0);
  if ((o.rank ?? 0) >= (o.worldSize ?? 1)) throw new SlimfitError(`${where}: option rank ${o.rank ?? 0} must be below worldSize ${o.worldSize ?? 1}`);
  checkOneOf(where, 'shuffle', o.shuffle, ['global', 'block', 'shard', false] as const);
  checkOneOf(where, 'rankSplit', o.rankSplit, ['blocks', 'batches'] as const);
  if (o.rankSplit === 'batches' && (o.shuffle ?? LOADER_DEFAULTS.shuffle) === 'block') {
    throw new SlimfitError(`${where}: option rankSplit 'batches' interleaves the ranks in one global order; use it with shuffle 'global', 'shard' or false (block shuffle keeps each rank's windows contiguous: rankSplit 'blocks')`);
  }
  checkBool(where, 'balanced', o.balanced);
  if (o.balanced && (o.shuffle ?? LOADER_DEFAULTS.shuffle) !== 'global') throw new SlimfitError(`${where}: option balanced draws samples at random; use it with shuffle: 'global'`);
  checkBool(where, 'dropLast', o.dropLast);
  checkInt(where, 'workers', o.workers, 0);
  checkInt(where, 'prefetch', o.prefetch, 1);
  checkInt(where, 'memoryBudget', o.memoryBudget, 1);
  checkInt(where, 'shuffleWindow', o.shuffleWindow, 1);
  checkInt(where, 'shuffleBlock', o.shuffleBlock, 1);
  checkInt(where, 'shuffleShards', o.shuffleShards, 1);
  checkBool(where, 'reuseBuffers', o.reuseBuffers);
  checkInt(where, 'labelCacheBytes', o.labelCacheBytes, 0);
  checkNumber(where, 'checkIntervalMs', o.checkIntervalMs, 0, Infinity, { low: true });
  checkOneOf(where, 'io', o.io, ['auto', 'pread', 'mmap'] as const);
  checkBool(where, 'native', o.native);
  checkBool(where, 'verifyChecksums', o.verifyChecksums);
  // Transforms.
  const n = o.normalize;
  if (n !== undefined && n !== false && n !== 'stats') {
    const ok = n !== null && typeof n === 'object' && Number.isFinite((n as { scale?: unknown }).scale) && Number.isFinite((n as { shift?: unknown }).shift);
    if (!ok) throw new SlimfitError(`${where}: option normalize must be 'stats', false or { scale, shift } with finite numbers (e.g. { scale: 1 / 255, shift: 0 }), got ${shown(n)}`);
  }
  // oneHot: 0 has always meant off, like false.
  if (o.oneHot !== undefined && typeof o.oneHot !== 'boolean' && !(typeof o.oneHot === 'number' && Number.isSafeInteger(o.oneHot) && o.oneHot >= 0)) {
    throw new SlimfitError(`${where}: option oneHot must be true, false or a number of classes, got ${shown(o.oneHot)}`);
  }
  checkOneOf(where, 'layout', o.layout, ['nhwc', 'flat'] as const);
  checkNumber(where, 'noise', o.noise, 0);
  checkInt(where, 'shift', o.shift, 0);
  checkAugment(where, o.augment);
}

/** Something that fills batches: a worker thread, or the main thread itself. */
interface Executor {
  /** Fill a group of batches; one promise per request (with the batch's own buffers when the request asked for them). */
  send(rs: FillRequest[]): Promise<Owned | void>[];
  pending(): number;
  setActive(on: boolean): void;
  close(): Promise<void>;
}

/** x and y bytes of a batch filled into fresh buffers (FillRequest.own). */
type Owned = { x: ArrayBuffer; y: ArrayBuffer };

function errorFrom(e: NonNullable<FillReply['error']>): Error {
  if (e.slimfit) {
    const err = new SlimfitError(e.message);
    Object.assign(err, { file: e.file, hint: e.hint });
    return err;
  }
  const err = new Error(`loader worker failed: ${e.message}`);
  if (e.stack) err.stack = e.stack;
  return err;
}

function workerExecutor(init: ReaderInit): Executor {
  const w = tsWorker(new URL('./worker.ts', import.meta.url).href, init);
  const waiting = new Map<number, { resolve: (o: Owned | void) => void; reject: (e: Error) => void }>();
  let dead: Error | null = null;
  const failAll = (e: Error) => {
    dead ??= e;
    for (const p of waiting.values()) p.reject(e);
    waiting.clear();
  };
  w.on('message', (ms: FillReply[]) => {
    for (const m of ms) {
      const p = waiting.get(m.seq);
      if (!p) continue;
      waiting.delete(m.seq);
      if (m.error) p.reject(errorFrom(m.error)); else p.resolve(m.x && m.y ? { x: m.x, y: m.y } : undefined);
    }
  });
  w.on('error', (e) => failAll(new Error(`loader worker crashed: ${e.message}`)));
  let closing = false;
  const exited = new Promise<void>((res) => w.on('exit', (code) => {
    if (!closing) failAll(new Error(`loader worker exited unexpectedly (code ${code})`));
    res();
  }));
  w.unref();
  return {
    send(rs) {
      if (dead) return rs.map(() => Promise.reject(dead!));
      const ps = rs.map((r) => new Promise<Owned | void>((resolve, reject) => { waiting.set(r.seq, { resolve, reject }); }));
      w.postMessage(rs, rs.flatMap((r) => (r.reuse ? [...r.reuse] : [])));
      return ps;
    },
    pending: () => waiting.size,
    setActive(on) { if (on) w.ref(); else w.unref(); },
    async close() {
      closing = true;
      w.postMessage('close');
      const t = setTimeout(() => void w.terminate(), 2000);
      await exited;
      clearTimeout(t);
    },
  };
}

function localExecutor(init: ReaderInit): Executor {
  const reader: BatchReader = createReader(init);
  return {
    send(rs) {
      return rs.map((r) => { try { reader.fill(r.epoch, r.start, r.n, r.slot); return Promise.resolve(); } catch (e) { return Promise.reject(e); } });
    },
    pending: () => 0,
    setActive() {},
    async close() { reader.close(); },
  };
}

/** Samples held by a source's files (more than `samples` for a subset). */
function storedSamples(src: LoadableSource): number {
  return src.subset?.total ?? src.samples;
}

/** Read all labels (raw bytes, stored order) into shared memory, part by part. */
async function readAllLabels(src: LoadableSource, yRow: number): Promise<Uint8Array> {
  const out = new Uint8Array(new SharedArrayBuffer(Math.max(8, storedSamples(src) * yRow)));
  for (const p of src.parts) {
    const npy = await openNpy(p.y.path, { offset: p.y.base, displayName: p.y.name });
    try {
      const chunk = Math.max(1, Math.floor((4 * MB) / Math.max(1, yRow)));
      for (let r = 0; r < p.samples; r += chunk) {
        const end = Math.min(p.samples, r + chunk);
        await npy.readRows(r, end, out.subarray((p.start + r) * yRow, (p.start + end) * yRow));
      }
    } finally { await npy.close(); }
  }
  return out;
}

/** Group sample ids (stored ids, also for a subset) by class (labels must be non-negative integers). */
function classTable(src: LoadableSource, labels: Uint8Array): ClassTable {
  const y = src.y;
  if (y.shape.length !== 0 || y.dtype.startsWith('float')) {
    throw new SlimfitError(`balanced sampling needs one integer class label per sample, but y is ${y.dtype} [${y.shape.join(', ')}]`, { file: src.name, hint: 'drop the balanced option' });
  }
  const view: TypedArray = viewAs(y.dtype, labels.subarray(0, storedSamples(src) * dtypeSize(y.dtype)));
  const id = src.subset ? subsetIndex(src.subset) : (i: number) => i;
  const counts: number[] = [];
  for (let i = 0; i < src.samples; i++) {
    const v = elementAsNumber(y.dtype, view, id(i));
    if (!(Number.isInteger(v) && v >= 0 && v < 1 << 20)) throw new SlimfitError(`label ${v} of sample ${i} is not a class index`, { file: src.name, hint: 'balanced sampling needs class labels 0..C-1' });
    while (counts.length <= v) counts.push(0);
    counts[v]++;
  }
  const offsets = new Float64Array(new SharedArrayBuffer(8 * (counts.length + 1)));
  for (let c = 0; c < counts.length; c++) offsets[c + 1] = offsets[c] + counts[c];
  const big = src.samples > 0xffffffff;
  const ids = big ? new Float64Array(new SharedArrayBuffer(8 * src.samples)) : new Uint32Array(new SharedArrayBuffer(4 * Math.max(1, src.samples)));
  const fill = Array.from(offsets.subarray(0, counts.length));
  for (let i = 0; i < src.samples; i++) { const j = id(i); ids[fill[elementAsNumber(y.dtype, view, j)]++] = j; }
  return { offsets, ids };
}

/**
 * Check every store shard of `source` against its manifest checksum now (once per process; a loader over it later
 * finds the work done). For callers that want a damaged store refused before they create anything of their own.
 */
export async function verifySource(source: DataSource): Promise<void> {
  if (!isLoadable(source)) return;
  for (const p of source.parts) for (const f of [p.x, p.y]) if (f.checksum) await checkShardOnce(f.path, f.checksum, f.checksum.store);
}

/**
 * The io a loader uses (internal; exported for tests): 'mmap' when asked for, or for 'auto' when the distinct x files of `src` take at most LOADER_DEFAULTS.mapMaxBytes
 * (whole files are mapped, so that bounds the mapped pages in RSS); 'pread' otherwise or when mapping is impossible.
 */
export function chooseIo(src: LoadableSource, io: 'auto' | 'pread' | 'mmap', canMap: boolean): 'pread' | 'mmap' {
  if (!canMap || io === 'pread') return 'pread';
  if (io === 'mmap') return 'mmap';
  let bytes = 0;
  for (const path of new Set(src.parts.map((p) => p.x.path))) {
    const f = src.parts.find((p) => p.x.path === path)!.x;
    try { bytes += f.fileBytes ?? statSync(path).size; } catch { return 'pread'; } // the reader names the missing file
    if (bytes > LOADER_DEFAULTS.mapMaxBytes) return 'pread';
  }
  return 'mmap';
}

/** Kept for callers of the first version: every option now lives in LoaderOptions. */
export type ExtraLoaderOptions = Pick<LoaderOptions, 'reuseBuffers' | 'labelCacheBytes' | 'shuffleBlock' | 'checkIntervalMs' | 'io' | 'native'>;

/**
 * Create a batch generator over `source` (see LoaderOptions; nothing is read until the first iteration).
 *
 * @example
 * const ds = await openDataset('mnist-store');
 * const loader = createLoader(ds.split('train'), { batchSize: 128, normalize: 'stats', oneHot: true, seed: 1 });
 * for await (const b of loader) { // one shuffled epoch per for-await
 *   // b.x: Float32Array [b.n, ...shape], b.y: Float32Array [b.n, classes]
 * }
 * await loader.close();
 */
export function createLoader(source: DataSource, opts: LoaderOptions = {}): ShuffledLoader {
  if (!isLoadable(source)) throw new TypeError('createLoader needs a DataSource made by openDataset(dir).split(name), fromNpy or fromNpz');
  checkOptions('createLoader', opts, LOADER_OPTION_KEYS);
  checkLoaderOptions('createLoader', opts);
  const src = source;
  const B = intOpt('batchSize', opts.batchSize, LOADER_DEFAULTS.batchSize, 1);
  const seed = intOpt('seed', opts.seed, LOADER_DEFAULTS.seed, -(2 ** 52));
  const worldSize = intOpt('worldSize', opts.worldSize, 1, 1);
  const rank = intOpt('rank', opts.rank, 0, 0);
  const fetcher = src.fetcher;
  const mode = opts.shuffle === false ? 'none' : (opts.shuffle ?? ((src.remote || fetcher) && !opts.balanced ? LOADER_DEFAULTS.remoteShuffle : LOADER_DEFAULTS.shuffle));
  if (fetcher && mode === 'global' && fetcher.totalBytes > fetcher.limitBytes) {
    throw new SlimfitError(`a global shuffle reads every shard in every batch, but the ${fetcher.totalBytes} bytes of ${fetcher.url} do not fit the cache limit of ${fetcher.limitBytes} bytes`, {
      hint: "use shuffle: 'shard' (--shuffle shard; the default for remote stores) or raise cacheLimit (--cache-limit) above the store's size",
    });
  }
  const balanced = opts.balanced ?? false;
  const spec = makeTransformSpec(src, opts, seed);
  const N = src.samples;
  const perRank = Math.floor(N / worldSize);
  const dropLast = opts.dropLast ?? false;
  const batchesPerEpoch = dropLast ? Math.floor(perRank / B) : Math.ceil(perRank / B);
  const xRow = src.x.shape.reduce((p, d) => p * d, 1) * dtypeSize(src.x.dtype);
  const yRow = src.y.shape.reduce((p, d) => p * d, 1) * dtypeSize(src.y.dtype);

  // Block mode geometry: the window is sized in bytes; blocks are at most a quarter of it.
  // A remote store's window, unless given, is sized to the cache: a window of k blocks reads up to 2k parts (a block
  // can straddle two) and the files of unfilled batches stay within half the cache, so k = limit / (4 x largest part)
  // blocks (at least one: then a window is one run of consecutive samples, which the shuffle report says).
  const blockBytes = intOpt('shuffleBlock', opts.shuffleBlock, MB, 1);
  let windowBytes = intOpt('shuffleWindow', opts.shuffleWindow, 64 * MB, 1);
  let minBlocks = 4;
  if (fetcher && opts.shuffleWindow === undefined) {
    const k = Math.max(1, Math.floor(fetcher.limitBytes / (4 * Math.max(1, fetcher.maxPartBytes))));
    windowBytes = Math.max(1, Math.min(64 * MB, Math.floor(fetcher.limitBytes / 4), k * blockBytes));
    minBlocks = Math.min(4, k);
  }
  const windowSamples = Math.max(1, Math.min(Math.max(1, perRank), Math.floor(windowBytes / Math.max(1, xRow + yRow))));
  const blockSamples = Math.max(1, Math.min(Math.floor(blockBytes / Math.max(1, xRow)), Math.floor(windowSamples / minBlocks)));
  // Shard mode geometry: windows of `shardWindow` parts; a subset counts its own members in each part. For a remote
  // store the window and the next one (being prefetched) must fit the cache: the default shrinks to fit it, a window
  // given that cannot fit is an error.
  const shardStarts = [...src.parts.map((p) => p.start), storedSamples(src)];
  let shardWindow = intOpt('shuffleShards', opts.shuffleShards, LOADER_DEFAULTS.shuffleShards, 1);
  if (fetcher && mode === 'shard') {
    const fits = Math.max(1, Math.floor(fetcher.limitBytes / (2 * Math.max(1, fetcher.maxPartBytes))));
    if (opts.shuffleShards === undefined) shardWindow = Math.min(shardWindow, fits);
    else if (shardWindow > fits) {
      throw new SlimfitError(`a shard window of ${shardWindow} shards (and the next one, prefetched) does not fit the cache limit of ${fetcher.limitBytes} bytes for ${fetcher.url}: its shards take up to ${fetcher.maxPartBytes} bytes each`, {
        hint: `use --shuffle-shards ${fits} or less, or raise --cache-limit to at least ${2 * shardWindow * fetcher.maxPartBytes} bytes`,
      });
    }
  }
  const shardSamples = mode === 'shard' ? shardCounts(shardStarts, src.subset) : undefined;
  const rankBatch = opts.rankSplit === 'batches' && worldSize > 1 ? B : 0;
  const plan: PlanConfig = { n: N, subset: src.subset, mode, balanced, seed, rank, worldSize, perRank, rankBatch, blockSamples, windowSamples, shardStarts, shardSamples, shardWindow };

  // Cached copies of remote shards are evicted while a loader runs: read them with preads (a mapping pins the file).
  const io = chooseIo(src, opts.io ?? 'auto', mode !== 'block' && !fetcher && opts.native !== false && gatherAddon() !== null);
  const labelCacheBytes = intOpt('labelCacheBytes', opts.labelCacheBytes, 64 * MB, 0);
  const heavyTransforms = Boolean(opts.augment) || (opts.noise ?? 0) > 0 || (opts.shift ?? 0) > 0;
  const workers = intOpt('workers', opts.workers, defaultWorkers({
    io: io === 'mmap' && (opts.io ?? 'auto') === 'auto' ? 'mmap' : 'pread', remote: Boolean(fetcher), heavyTransforms, cores: availableParallelism(),
    labelsCached: labelCacheBytes > 0 && storedSamples(src) * yRow <= labelCacheBytes,
  }), 0);
  const layout = slotLayout(spec, B);
  let prefetch: number;
  if (opts.prefetch !== undefined) prefetch = intOpt('prefetch', opts.prefetch, 4, 1);
  else if (opts.memoryBudget !== undefined) prefetch = Math.max(1, Math.min(1024, Math.floor(intOpt('memoryBudget', opts.memoryBudget, 0, 1) / layout.bytes)));
  // Default: about 16 MB of prepared batches (at most 64, at least 4 per worker). Deep rings let each worker message
  // carry many batches (one cross-thread wake-up per group instead of per batch: ~2x the rate for MNIST-sized batches).
  else prefetch = Math.max(4 * workers, 2, Math.min(64, Math.floor((16 * MB) / layout.bytes)));
  if (workers === 0) prefetch = 1;
  const reuse = opts.reuseBuffers ?? false;

  const frac = perRank > 0 ? windowSamples / perRank : 1;
  const shards = shardSamples ? shardSamples.filter((c) => c > 0).length : 0;
  const shardFrac = shards > 0 ? Math.min(1, shardWindow / shards) : 1;
  const pct = (f: number) => `${(100 * Math.min(1, f)).toFixed(f < 0.01 ? 3 : 1)}%`;
  const shuffleReport: ShuffleReport = {
    mode, uniform: mode === 'global' || (mode === 'block' && frac >= 1 && blockSamples === 1) || (mode === 'shard' && shardWindow >= shardStarts.length - 1),
    blockSamples: mode === 'block' ? blockSamples : 0,
    windowSamples: mode === 'block' ? windowSamples : mode === 'shard' ? Math.round(N * shardFrac) : 0,
    windowFraction: mode === 'block' ? frac : mode === 'shard' ? shardFrac : 0,
    shardWindow: mode === 'shard' ? shardWindow : 0, shards,
    note: mode === 'global' ? (balanced ? 'global: classes drawn equally often (with replacement inside a class once it runs out), order uniform' : 'global: a uniform random permutation of all samples every epoch')
      : mode === 'none' ? 'no shuffle: samples in stored order'
      : mode === 'shard' ? (shardWindow >= shardStarts.length - 1
        ? `shard: all ${shards} shard(s) form one window, so this is a uniform shuffle`
        : `shard: ${shards} shards in random order, read ${shardWindow} at a time, samples shuffled inside each window of ${shardWindow} shards (${pct(shardFrac)} of an epoch); samples never move between windows, so this is NOT a uniform shuffle`)
      : `block: runs of ${blockSamples} consecutive samples in random order, shuffled inside windows of ${windowSamples} samples (${pct(frac)} of an epoch); samples never move between windows, so this is ${frac >= 1 ? 'close to' : 'NOT'} a uniform shuffle`,
  };
  // The window schedule on this thread (a plan of its own; balanced sampling needs the class table made by start()).
  let schedulePlan: Plan | null = null;
  let classTab: ClassTable | undefined;

  let epoch = 0, position = 0;
  let executors: Executor[] | null = null;
  let starting: Promise<Executor[]> | null = null;
  let slots: SharedArrayBuffer[] = [];
  let running = false;
  let closed = false;
  let ahead = 0;
  let mainPlan: Plan | null = null;

  // Before any byte of a shard is used: its checksum (once per process; later loaders over the same shards wait on the
  // same check). A shuffled epoch touches every shard at once, so all are checked up front; reading in stored order
  // (evaluation, `show`) checks x shards as the reads reach them, so a look at the first samples hashes only the first shard.
  const verify = opts.verifyChecksums !== false;
  const lazyX = verify && mode === 'none' && !src.subset;
  const check = async (f: PartFile) => { if (f.checksum) await checkShardOnce(f.path, f.checksum, f.checksum.store); };
  let checkedX = 0; // lazyX: parts [0, checkedX) have their x checked
  const checkXUpTo = async (sampleEnd: number) => {
    if (!lazyX || sampleEnd <= 0 || src.parts.length === 0) return;
    const last = partOf(src.parts, sampleEnd - 1);
    for (; checkedX <= last; checkedX++) await check(src.parts[checkedX].x);
  };

  const start = async (): Promise<Executor[]> => {
    if (verify) for (const p of src.parts) { if (!lazyX) await check(p.x); await check(p.y); }
    let labels: Uint8Array | undefined;
    let classes: ClassTable | undefined;
    const stored = storedSamples(src);
    if (N > 0 && (balanced || (stored * yRow <= labelCacheBytes && labelCacheBytes > 0))) {
      const rel = fetcher ? await fetcher.acquire(src.parts.map((_, i) => i), 'y') : null;
      try { labels = await readAllLabels(src, yRow); } finally { rel?.(); }
    }
    if (balanced && labels) classes = classTab = classTable(src, labels);
    if (labels && stored * yRow > labelCacheBytes) labels = undefined; // read only for the class table
    if (fetcher) mainPlan = createPlan(plan, classes);
    slots = Array.from({ length: prefetch }, () => new SharedArrayBuffer(layout.bytes));
    const init: ReaderInit = {
      parts: src.parts.map((p) => ({ ...p, x: { ...p.x }, y: { ...p.y } })), plan, classes, labels, spec, batchSize: B, slots,
      checkMs: opts.checkIntervalMs ?? 250, maxOpen: 256, io, native: opts.native ?? true,
    };
    return workers === 0 ? [localExecutor(init)] : Array.from({ length: workers }, () => workerExecutor(init));
  };

  const normalize = () => {
    const left = perRank - position;
    if (position > 0 && (left <= 0 || (dropLast && left < B))) { epoch++; position = 0; }
  };

  // A lent batch: views into its ring slot (owned batches are copied out of it in iterate()).
  const view = (slot: number, n: number): { x: TypedArray; y: TypedArray } => {
    const xd = spec.xOut === 'float32' ? 'float32' : src.x.dtype;
    const yd = spec.yOut === 'int32' ? 'int32' : 'float32';
    return { x: viewAs(xd, new Uint8Array(slots[slot], 0, n * spec.xOutBytes)), y: viewAs(yd, new Uint8Array(slots[slot], layout.yOffset, n * spec.yOutBytes)) };
  };

  const ownedView = (o: Owned): { x: TypedArray; y: TypedArray } => ({
    x: viewAs(spec.xOut === 'float32' ? 'float32' : src.x.dtype, new Uint8Array(o.x)),
    y: viewAs(spec.yOut === 'int32' ? 'int32' : 'float32', new Uint8Array(o.y)),
  });

  // Remote stores: which parts a batch reads. Block mode: a reader loads a window whole when a batch first needs it and
  // then reads no file until the next window, so a batch needs the parts of the windows its executor does not hold
  // yet (`held`: the window each executor loaded last; the reader keeps one).
  const idBuf = new Float64Array(B);
  let winParts: { epoch: number; w: number; parts: number[] } | null = null;
  const partsOf = (ep: number, s: number, n: number, into: Set<number>, held?: Map<Executor, string>, e?: Executor) => {
    const pl = mainPlan!;
    if (mode === 'block') {
      for (let w = pl.windowOf(s); w <= pl.windowOf(s + n - 1); w++) {
        if (held && e) {
          if (held.get(e) === `${ep}:${w}`) continue;
          held.set(e, `${ep}:${w}`);
        }
        if (!winParts || winParts.epoch !== ep || winParts.w !== w) {
          const ps = new Set<number>();
          for (const [first, count] of pl.windowRuns(ep, w)) for (let i = partOf(src.parts, first); i <= partOf(src.parts, first + count - 1); i++) ps.add(i);
          winParts = { epoch: ep, w, parts: [...ps].sort((a, b) => a - b) };
        }
        for (const i of winParts.parts) into.add(i);
      }
      return;
    }
    pl.samples(ep, s, n, idBuf);
    for (let k = 0; k < n; k++) into.add(partOf(src.parts, idBuf[k]));
  };

  async function* iterate(): AsyncGenerator<Batch> {
    if (closed) throw new Error('the loader is closed');
    if (running) throw new Error('this loader is already being iterated; finish or break that loop first');
    running = true;
    const inflight = new Map<number, { slot: number; done: Promise<Owned | void> }>();
    // Copies the caller owns are made by the worker threads into fresh buffers that move to this thread, so the
    // main thread never copies a batch (copying out of a ring slot another core just wrote cost ~100 us per MNIST batch).
    const owned = !reuse && workers > 0;
    try {
      if (!executors) { starting ??= start(); executors = await starting; }
      const ex = executors;
      for (const e of ex) e.setActive(true);
      normalize();
      const ep = epoch, first = position;
      const starts: number[] = [];
      for (let s = first; s < perRank; s += B) {
        if (dropLast && perRank - s < B) break;
        starts.push(s);
      }
      const indexBase = Math.ceil(first / B);
      const free = Array.from({ length: prefetch }, (_, i) => i);
      // Owned batches the caller released (Batch.release): their buffers go to the next requests of the same size.
      const spare: Array<readonly [ArrayBuffer, ArrayBuffer]> = [];
      const takeSpare = (xb: number, yb: number): readonly [ArrayBuffer, ArrayBuffer] | undefined => {
        const i = spare.findIndex((s) => s[0].byteLength === xb && s[1].byteLength === yb);
        return i < 0 ? undefined : spare.splice(i, 1)[0];
      };
      let next = 0;
      // Up to `group` consecutive batches go to one executor in one message.
      const group = Math.max(1, Math.floor(prefetch / (2 * ex.length)));
      // lazyX: check the x shards the batches about to be requested read (stored order: sample = rank offset + position).
      const ready = async () => {
        const upTo = Math.min(starts.length, next + free.length) - 1;
        if (upTo >= next) await checkXUpTo(rankPosition(plan, Math.min(perRank, starts[upTo] + B) - 1) + 1);
      };
      // Remote stores: a group is sent once the parts it reads are in the cache (acquired in dispatch order, so sends
      // keep their order); they stay pinned until its last batch is handed out. Meanwhile the parts of the batches
      // after the ring are fetched ahead.
      // Pinned files of unfilled groups stay within half the cache (one group may exceed it alone): later groups wait.
      let sendChain: Promise<unknown> = Promise.resolve();
      const held = new Map<Executor, string>();
      let pinnedBytes = 0;
      let wake: (() => void) | null = null;
      const budget = fetcher ? fetcher.limitBytes / 2 : 0;
      const gate = async (need: number) => {
        while (pinnedBytes > 0 && pinnedBytes + need > budget) await new Promise<void>((r) => { wake = r; });
      };
      let lookedAt = -Infinity;
      const lookahead = (from: number) => {
        if (!fetcher || from - lookedAt < 4) return;
        lookedAt = from;
        if (mode === 'shard') {
          // The shards of the current window and the next one, in the order the plan first reads them.
          fetcher.prefetch(mainPlan!.shardSchedule(ep, starts[from]).slice(0, 2 * shardWindow));
          return;
        }
        const span = mode === 'block' ? Math.ceil(windowSamples / B) + 1 : 2 * prefetch;
        const want = new Set<number>();
        for (let k = from; k < Math.min(starts.length, from + span) && want.size < 16; k++) partsOf(ep, starts[k], Math.min(B, perRank - starts[k]), want);
        fetcher.prefetch([...want]);
      };
      const dispatch = () => {
        while (free.length > 0 && next < starts.length) {
          const s0 = starts[next];
          let e: Executor;
          if (mode === 'block') e = ex[Math.floor(s0 / windowSamples) % ex.length];
          else e = ex.reduce((best, c) => (c.pending() < best.pending() ? c : best), ex[0]);
          const reqs: FillRequest[] = [];
          while (reqs.length < group && free.length > 0 && next < starts.length) {
            const s = starts[next];
            if (mode === 'block' && Math.floor(s / windowSamples) !== Math.floor(s0 / windowSamples)) break;
            const n = Math.min(B, perRank - s);
            const own = owned ? [n * spec.xOutBytes, n * spec.yOutBytes] as const : undefined;
            reqs.push({ seq: next++, epoch: ep, start: s, n, slot: free.shift()!, own, reuse: own && takeSpare(own[0], own[1]) });
          }
          let done: Promise<Owned | void>[];
          if (fetcher) {
            const need = new Set<number>();
            for (const r of reqs) partsOf(ep, r.start, r.n, need, held, e);
            const ps = [...need].sort((a, b) => a - b);
            const bytes = fetcher.bytesOf(ps);
            const from = reqs[0].seq;
            const f = fetcher;
            const got = sendChain.catch(() => {}).then(async () => {
              await gate(bytes);
              lookahead(from);
              const rel = await f.acquire(ps);
              pinnedBytes += bytes;
              return () => { rel(); pinnedBytes -= bytes; const w = wake; wake = null; w?.(); };
            });
            const ex1 = e;
            const sent = Promise.all([sendChain.catch(() => {}), got]).then(() => ex1.send(reqs));
            sendChain = sent;
            done = reqs.map((_, i) => sent.then((d) => d[i]));
            // Filled batches need their files no more: unpinned (evictable) as soon as the whole group is filled.
            void Promise.allSettled(done).then(() => got.then((r) => r(), () => {}));
          } else done = e.send(reqs);
          ahead = inflight.size + reqs.length;
          reqs.forEach((r, i) => { done[i].catch(() => {}); inflight.set(r.seq, { slot: r.slot, done: done[i] }); });
        }
      };
      // A freed slot is refilled once a whole group of slots is free (or the epoch's last batches are being asked for):
      // one message per group instead of one per batch (a message cost ~18 us against ~50 us to fill an MNIST batch).
      // Never starves: with fewer than `group` slots free, at least prefetch - group + 1 batches are ready or in flight.
      const release = async (slot: number) => {
        free.push(slot);
        if (free.length < group && next + free.length < starts.length) return;
        if (lazyX && checkedX < src.parts.length) await ready();
        dispatch();
      };
      if (lazyX) await ready();
      dispatch();
      for (let k = 0; k < starts.length; k++) {
        const t = inflight.get(k)!;
        const got = await t.done;
        inflight.delete(k);
        ahead = inflight.size;
        const n = Math.min(B, perRank - starts[k]);
        let owner: Owned | void = got;
        if (!got && !reuse) {
          // A copy on this thread (no workers): into a buffer the caller gave back if there is one, else a new one.
          const xb = n * spec.xOutBytes, yb = n * spec.yOutBytes;
          const sp = takeSpare(xb, yb);
          const { slot } = t;
          const ox = sp ? sp[0] : new ArrayBuffer(xb), oy = sp ? sp[1] : new ArrayBuffer(yb);
          new Uint8Array(ox).set(new Uint8Array(slots[slot], 0, xb));
          new Uint8Array(oy).set(new Uint8Array(slots[slot], layout.yOffset, yb));
          owner = { x: ox, y: oy };
        }
        const { x, y } = owner ? ownedView(owner) : view(t.slot, n);
        if (!reuse) await release(t.slot);
        position = starts[k] + n;
        const b: Batch = { n, x, xShape: [n, ...spec.xShape], y, yShape: [n, ...spec.yShape], epoch: ep, index: indexBase + k };
        if (owner) {
          const got = owner;
          let given = false;
          b.release = () => {
            if (given) return;
            given = true;
            // Detach the caller's views now (a transfer keeps the memory, no copy); a buffer the caller already
            // transferred elsewhere cannot be taken back and stays out of the pool.
            let back: readonly [ArrayBuffer, ArrayBuffer];
            try { back = structuredClone([got.x, got.y], { transfer: [got.x, got.y] }) as [ArrayBuffer, ArrayBuffer]; } catch { return; }
            if (spare.length < prefetch) spare.push(back);
          };
        }
        yield b;
        if (reuse) await release(t.slot);
      }
      normalize();
      if (position === 0 && starts.length === 0 && first === 0) epoch++; // an empty epoch still advances
    } finally {
      await Promise.allSettled([...inflight.values()].map((t) => t.done));
      ahead = 0;
      for (const e of executors ?? []) e.setActive(false);
      running = false;
    }
  }

  function cursorNow(): Cursor {
    const left = perRank - position;
    const end = position > 0 && (left <= 0 || (dropLast && left < B));
    return { seed, epoch: end ? epoch + 1 : epoch, position: end ? 0 : position, rank, worldSize };
  }

  return {
    source: src, batchesPerEpoch, samplesPerEpoch: perRank, shuffleReport, workers, prefetch, ringBytes: prefetch * layout.bytes, io,
    get ahead() { return ahead; },
    planConfig: plan,
    shardSchedule(ep?: number, pos?: number) {
      const c = cursorNow();
      const e = ep ?? c.epoch, p = pos ?? c.position;
      if (!(Number.isSafeInteger(e) && e >= 0 && Number.isSafeInteger(p) && p >= 0 && p <= perRank)) {
        throw new SlimfitError(`shardSchedule: epoch ${e} / position ${p} is outside this loader's epochs of ${perRank} samples`);
      }
      if (balanced && !classTab) throw new SlimfitError('shardSchedule: with balanced sampling the schedule is known only after the first batch (it needs the class table)');
      schedulePlan ??= createPlan(plan, classTab);
      return schedulePlan.shardSchedule(e, p);
    },
    [Symbol.asyncIterator]: () => iterate(),
    cursor: cursorNow,
    resume(c: Cursor) {
      if (running) throw new Error('cannot resume while the loader is being iterated');
      if (c.seed !== seed || c.rank !== rank || c.worldSize !== worldSize) {
        throw new SlimfitError(`the cursor is for seed ${c.seed}, rank ${c.rank}/${c.worldSize} but this loader has seed ${seed}, rank ${rank}/${worldSize}`, {
          hint: 'create the loader with the same seed, rank and worldSize as the run that saved the cursor',
        });
      }
      if (!(Number.isSafeInteger(c.epoch) && c.epoch >= 0 && Number.isSafeInteger(c.position) && c.position >= 0 && c.position <= perRank)) {
        throw new SlimfitError(`the cursor's epoch ${c.epoch} / position ${c.position} is outside this loader's epochs of ${perRank} samples`, { hint: 'the cursor belongs to a different dataset or rank split' });
      }
      epoch = c.epoch; position = c.position;
    },
    async close() {
      if (closed) return;
      closed = true;
      const ex = executors ?? (starting ? await starting.catch(() => null) : null);
      executors = null;
      if (ex) await Promise.all(ex.map((e) => e.close()));
    },
  };
}
