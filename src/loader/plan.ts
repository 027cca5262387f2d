// The sample order of an epoch as a pure function of (seed, epoch, rank, position): shared by the main thread and workers.
import { type Permutation, permutation } from '../core/permutation.ts';
import { TAG_SUBSET, subsetIndex } from './holdout.ts';
import type { Subset } from './layout.ts';

/** Plain-data description of an order (passed to worker threads). */
export interface PlanConfig {
  /** Samples in the source (in the subset, when there is one). */
  n: number;
  /** The source is a random subset of its files' samples: sample ids are mapped to the parent's ids. */
  subset?: Subset;
  mode: 'global' | 'block' | 'shard' | 'none';
  /** Draw classes equally often (global mode only). */
  balanced: boolean;
  seed: number;
  rank: number;
  worldSize: number;
  /** Samples per epoch for each rank: floor(n / worldSize) (the n % worldSize left over change every epoch). */
  perRank: number;
  /**
   * 0: rank r reads positions [r x perRank, (r + 1) x perRank) of the epoch's order. b > 0 (rankSplit 'batches', b = the
   * per-rank batch): rank r reads the r-th b positions of every run of b x worldSize, so the ranks' k-th batches
   * together are the k-th batch of one process with batch b x worldSize (the last, partial one split evenly).
   */
  rankBatch?: number;
  /** Block mode: consecutive samples kept together (block order is shuffled). */
  blockSamples: number;
  /** Block mode: samples shuffled together in memory (a window of consecutive blocks). */
  windowSamples: number;
  /**
   * The parts (shard files) as sample-id ranges of the stored files: part i holds ids shardStarts[i]..shardStarts[i+1]
   * (the parent's ids for a subset). Needed by shard mode and {@link Plan.shardSchedule}; omitted = one part.
   */
  shardStarts?: number[];
  /** Samples of this source in each part (a subset's members per part: {@link shardCounts}); omitted = the part sizes. */
  shardSamples?: number[];
  /** Shard mode: shards per window (the shuffle unit; at most this many shards are being read at any time). */
  shardWindow?: number;
}

/** Samples of each class for balanced sampling: ids (the parent's, for a subset) grouped by class, `offsets[c]..offsets[c+1]` for class c. */
export interface ClassTable {
  offsets: Float64Array;
  ids: Float64Array | Uint32Array;
}

/** Computes which sample sits at each position of an epoch. */
export interface Plan {
  readonly config: PlanConfig;
  /** out[k] = sample id (in the files: a subset's ids are mapped) at this rank's position start + k of `epoch`, for k < n. */
  samples(epoch: number, start: number, n: number, out: Float64Array): void;
  /**
   * The permutation P when `samples(epoch, start, n)` is exactly P.at(rank * perRank + start + k) (global, not balanced,
   * no subset), else null: lets native code compute a batch's ids.
   */
  globalOrder(epoch: number): Permutation | null;
  /** Epoch-wide stream position of this rank's position q (used to seed per-sample augmentation). */
  streamPosition(q: number): number;
  /** Block mode: the window holding this rank's position q. */
  windowOf(q: number): number;
  /** Block mode: this rank's positions [a, b) of window w. */
  windowRange(w: number): [number, number];
  /** Block mode: runs of consecutive sample ids filling window w in stored order (slot i = window position a + i before in-window shuffling). */
  windowRuns(epoch: number, w: number): Array<[first: number, count: number]>;
  /** Block mode: slot (in stored order) of this rank's position q inside its window. */
  windowSlot(epoch: number, q: number): number;
  /**
   * The window schedule, for prefetching: the parts (indices into `shardStarts`, i.e. the loader's `parts`) that this
   * rank reads from its `position` of `epoch` to the end of that epoch, each listed once, in the order of their first
   * read. Pure: the same (config, epoch, position) always gives the same list, in any thread.
   *
   * Shard mode computes it window by window (~K ln K permutation lookups per window, plus the size of any shard not met in the
   * first 64 x shardWindow positions of its window); other modes scan the remaining positions until every part has
   * appeared (global mode needs nearly all shards at once). In shard mode each part is read only inside its window and
   * the parts of a window are consecutive in the schedule: at most `shardWindow` parts are being read at any position,
   * and none of them is read again once the stream has read a part of a later window.
   *
   * @example
   * const plan = createPlan(config);
   * const next = plan.shardSchedule(cursor.epoch, cursor.position).slice(0, 2 * config.shardWindow!); // download these
   */
  shardSchedule(epoch: number, position: number): number[];
}

/**
 * Samples of a source in each part: the part sizes, or for a subset the number of its members stored in each part
 * (one pass over the parent's ids; O(total) time, O(parts) memory).
 *
 * @example
 * shardCounts([0, 100, 200, 250]) // [100, 100, 50]
 */
export function shardCounts(shardStarts: readonly number[], subset?: Subset): number[] {
  const P = shardStarts.length - 1;
  const counts = Array.from({ length: P }, (_, i) => shardStarts[i + 1] - shardStarts[i]);
  if (!subset) return counts;
  const inv = subsetMember(subset);
  counts.fill(0);
  for (let i = 0; i < P; i++) for (let j = shardStarts[i]; j < shardStarts[i + 1]; j++) if (inv(j) >= 0) counts[i]++;
  return counts;
}

/** For a subset: parent id -> local index, or -1 when the parent sample is not in the subset. */
function subsetMember(s: Subset): (parent: number) => number {
  const p = permutation(s.total, s.seed, TAG_SUBSET);
  return (j) => { const k = p.indexOf(j) - s.offset; return k >= 0 && k < s.count ? k : -1; };
}

const TAG_BLOCK = 0xb10c, TAG_WINDOW = 0x57a1, TAG_CLASS = 0xc1a5, TAG_GLOBAL = 0x610b, TAG_SHARD = 0x5a4d, TAG_SHARD_WINDOW = 0x5a4e;

/** The epoch-wide position of `rank`'s position q under `config` (its rank split, see PlanConfig.rankBatch). */
export function rankPosition(config: Pick<PlanConfig, 'n' | 'rank' | 'worldSize' | 'perRank' | 'rankBatch'>, q: number): number {
  const { n, rank, worldSize: N, perRank } = config;
  const b = config.rankBatch ?? 0;
  if (!(b > 0) || N === 1) return rank * perRank + q;
  const G = b * N, full = Math.floor(n / G);
  if (q < full * b) {
    const k = Math.floor(q / b);
    return k * G + rank * b + (q - k * b);
  }
  const tail = Math.floor((n - full * G) / N); // the last, partial global batch: an equal share per rank
  return full * G + rank * tail + (q - full * b);
}

/** Build the plan for `config` (classes needed when config.balanced). */
export function createPlan(config: PlanConfig, classes?: ClassTable): Plan {
  const { n, seed, rank, perRank, blockSamples: K, windowSamples: W } = config;
  const nBlocks = Math.ceil(n / K);
  const lastBlock = n - (nBlocks - 1) * K; // size of the final (possibly partial) block
  const permCache = new Map<string, Permutation>();
  const perm = (size: number, ...key: number[]): Permutation => {
    const k = `${size}:${key.join(',')}`;
    let p = permCache.get(k);
    if (!p) {
      if (permCache.size > 64) permCache.clear();
      p = permutation(size, seed, ...key);
      permCache.set(k, p);
    }
    return p;
  };

  // Small explicit caches: these are hit once per sample, so no string keys on the hot path.
  let globalCache: { epoch: number; p: Permutation } | null = null;
  const globalPerm = (epoch: number): Permutation => {
    if (!globalCache || globalCache.epoch !== epoch) globalCache = { epoch, p: permutation(n, seed, TAG_GLOBAL, epoch) };
    return globalCache.p;
  };
  let blockCache: { epoch: number; order: Permutation; t: number } | null = null;
  let windowCache: { epoch: number; w: number; a: number; p: Permutation } | null = null;

  /** Block mode: sample id at epoch stream position g (blocks in shuffled order; the partial block stays whole). */
  const blockSample = (epoch: number, g: number): number => {
    if (!blockCache || blockCache.epoch !== epoch) {
      const order = permutation(nBlocks, seed, TAG_BLOCK, epoch);
      blockCache = { epoch, order, t: order.indexOf(nBlocks - 1) }; // t = stream slot of the partial block
    }
    const { order, t } = blockCache;
    let slot: number, off: number;
    if (g < t * K) { slot = Math.floor(g / K); off = g - slot * K; }
    else if (g < t * K + lastBlock) { slot = t; off = g - t * K; }
    else { const r = g - t * K - lastBlock; slot = t + 1 + Math.floor(r / K); off = r - (slot - t - 1) * K; }
    return order.at(slot) * K + off;
  };

  const toParent = config.subset ? subsetIndex(config.subset) : null;

  const nonEmpty: number[] = [];
  if (classes) for (let c = 0; c + 1 < classes.offsets.length; c++) if (classes.offsets[c + 1] > classes.offsets[c]) nonEmpty.push(c);

  const balancedSample = (epoch: number, g: number): number => {
    const C = nonEmpty.length;
    const q = globalPerm(epoch).at(g);
    const c = nonEmpty[q % C];
    const k = Math.floor(q / C);
    const lo = classes!.offsets[c], count = classes!.offsets[c + 1] - lo;
    const cycle = Math.floor(k / count);
    return classes!.ids[lo + perm(count, TAG_CLASS, epoch, c, cycle).at(k - cycle * count)];
  };

  // Shard mode: parts in a seeded order per epoch, grouped into windows of S consecutive parts; the stream is window
  // after window, each window's samples in a seeded uniform order. Positions are epoch-wide (independent of worldSize).
  const starts = config.shardStarts ?? [0, config.subset?.total ?? n];
  const P = starts.length - 1;
  const counts = config.shardSamples ?? shardCounts(starts);
  const S = Math.max(1, config.shardWindow ?? 1);
  const nWin = Math.ceil(P / S);
  const member = config.subset ? subsetMember(config.subset) : null;
  let shardCache: { epoch: number; order: Permutation; winStart: Float64Array } | null = null;
  const shardOrder = (epoch: number) => {
    if (!shardCache || shardCache.epoch !== epoch) {
      const order = permutation(P, seed, TAG_SHARD, epoch);
      const winStart = new Float64Array(nWin + 1);
      for (let w = 0; w < nWin; w++) {
        let sum = 0;
        for (let j = w * S; j < Math.min(P, (w + 1) * S); j++) sum += counts[order.at(j)];
        winStart[w + 1] = winStart[w] + sum;
      }
      shardCache = { epoch, order, winStart };
    }
    return shardCache;
  };
  /** One window: its parts (in shuffled order), their sample counts' prefix, its uniform order, and for a subset its members. */
  interface ShardWindow { epoch: number; w: number; a: number; size: number; parts: number[]; pre: number[]; perm: Permutation; ids: Float64Array | null }
  let swCache: ShardWindow | null = null;
  const shardWindowAt = (epoch: number, w: number): ShardWindow => {
    if (swCache && swCache.epoch === epoch && swCache.w === w) return swCache;
    const { order, winStart } = shardOrder(epoch);
    const parts: number[] = [], pre = [0];
    for (let j = w * S; j < Math.min(P, (w + 1) * S); j++) { const pi = order.at(j); parts.push(pi); pre.push(pre[pre.length - 1] + counts[pi]); }
    const size = winStart[w + 1] - winStart[w];
    let ids: Float64Array | null = null;
    if (member) {
      // A subset's members are scattered in the parent's parts: list them (parent ids, ascending per part).
      ids = new Float64Array(size);
      let k = 0;
      for (const pi of parts) for (let j = starts[pi]; j < starts[pi + 1]; j++) if (member(j) >= 0) ids[k++] = j;
    }
    swCache = { epoch, w, a: winStart[w], size, parts, pre, perm: permutation(size, seed, TAG_SHARD_WINDOW, epoch, w), ids };
    return swCache;
  };
  /** Index (into win.parts) of the part holding window slot `slot` (stored order inside the window). */
  const partInWindow = (win: ShardWindow, slot: number): number => {
    let lo = 0, hi = win.parts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (win.pre[mid] <= slot) lo = mid; else hi = mid - 1; }
    return lo;
  };
  /** Window holding epoch stream position g. */
  const windowAt = (epoch: number, g: number): number => {
    const { winStart } = shardOrder(epoch);
    let lo = 0, hi = nWin - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (winStart[mid] <= g) lo = mid; else hi = mid - 1; }
    return lo;
  };
  /** Part holding file id `id` (binary search over part starts). */
  const partAt = (id: number): number => {
    let lo = 0, hi = P - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= id) lo = mid; else hi = mid - 1; }
    return lo;
  };
  /** Parent-file id of the sample at window slot `slot`. */
  const shardSample = (win: ShardWindow, slot: number): number => {
    if (win.ids) return win.ids[slot];
    const j = partInWindow(win, slot);
    return starts[win.parts[j]] + slot - win.pre[j];
  };

  const pos = (q: number): number => rankPosition(config, q);
  const plan: Plan = {
    config,
    // Contiguous positions only: rankSplit 'batches' maps a rank's positions through rankPosition.
    globalOrder: (epoch) => (config.mode === 'global' && !config.balanced && !toParent && !config.rankBatch ? globalPerm(epoch) : null),
    streamPosition: (q) => pos(q),
    samples(epoch, start, count, out) {
      if (config.mode === 'none') {
        for (let k = 0; k < count; k++) out[k] = pos(start + k);
      } else if (config.mode === 'global') {
        if (config.balanced) for (let k = 0; k < count; k++) out[k] = balancedSample(epoch, pos(start + k));
        else {
          const p = globalPerm(epoch);
          for (let k = 0; k < count; k++) out[k] = p.at(pos(start + k));
        }
      } else if (config.mode === 'shard') {
        if (count <= 0) return;
        let win = shardWindowAt(epoch, windowAt(epoch, pos(start)));
        for (let k = 0; k < count; k++) {
          const g = pos(start + k);
          if (g < win.a || g >= win.a + win.size) win = shardWindowAt(epoch, windowAt(epoch, g));
          out[k] = shardSample(win, win.perm.at(g - win.a));
        }
        return; // already ids in the files (a subset's members are listed as parent ids)
      } else {
        for (let k = 0; k < count; k++) {
          const q = start + k;
          const w = Math.floor(q / W);
          out[k] = blockSample(epoch, rank * perRank + w * W + plan.windowSlot(epoch, q));
        }
      }
      if (toParent && !(config.mode === 'global' && config.balanced)) for (let k = 0; k < count; k++) out[k] = toParent(out[k]);
    },
    windowOf: (q) => Math.floor(q / W),
    windowRange: (w) => [w * W, Math.min((w + 1) * W, perRank)],
    windowRuns(epoch, w) {
      const [a, b] = plan.windowRange(w);
      const runs: Array<[number, number]> = [];
      let g = rank * perRank + a;
      const end = rank * perRank + b;
      while (g < end) {
        const first = blockSample(epoch, g);
        // Extend while ids stay consecutive (within one block, and across blocks that happen to be adjacent).
        const blockEnd = Math.min((Math.floor(first / K) + 1) * K, n);
        const len = Math.min(blockEnd - first, end - g);
        const last = runs[runs.length - 1];
        if (last && last[0] + last[1] === first) last[1] += len;
        else runs.push([first, len]);
        g += len;
      }
      if (!toParent) return runs;
      // A subset's consecutive ids are scattered in the files: map them one by one, keeping runs that stay adjacent.
      const mapped: Array<[number, number]> = [];
      for (const [first, len] of runs) {
        for (let i = first; i < first + len; i++) {
          const id = toParent(i), last = mapped[mapped.length - 1];
          if (last && last[0] + last[1] === id) last[1]++;
          else mapped.push([id, 1]);
        }
      }
      return mapped;
    },
    windowSlot(epoch, q) {
      const w = Math.floor(q / W);
      if (!windowCache || windowCache.epoch !== epoch || windowCache.w !== w) {
        const [a, b] = plan.windowRange(w);
        windowCache = { epoch, w, a, p: permutation(b - a, seed, TAG_WINDOW, epoch, rank, w) };
      }
      return windowCache.p.at(q - windowCache.a);
    },
    shardSchedule(epoch, position) {
      // Under rankSplit 'batches' every rank reads from the whole epoch's stream, window after window, as one process.
      const g0 = pos(position), g1 = config.rankBatch ? config.worldSize * perRank : (rank + 1) * perRank;
      const out: number[] = [];
      if (g0 >= g1 || P === 0) return out;
      if (config.mode !== 'shard') {
        // Scan the remaining positions in order until every part holding samples of this source has appeared.
        const want = counts.filter((c) => c > 0).length;
        const seen = new Set<number>();
        const buf = new Float64Array(4096);
        for (let q = position; q < perRank && seen.size < want; q += buf.length) {
          const m = Math.min(buf.length, perRank - q);
          plan.samples(epoch, q, m, buf);
          for (let k = 0; k < m; k++) {
            const pi = partAt(buf[k]);
            if (!seen.has(pi)) { seen.add(pi); out.push(pi); }
          }
        }
        return out;
      }
      for (let w = windowAt(epoch, g0); w < nWin; w++) {
        const win = shardWindowAt(epoch, w);
        if (win.a >= g1) break;
        const lo = Math.max(g0, win.a), hi = Math.min(g1, win.a + win.size);
        const want = win.parts.filter((_, j) => win.pre[j + 1] > win.pre[j]).length;
        const seen = new Set<number>();
        // Most parts turn up within a few positions; a part still missing after 64 S positions (a small one) is
        // placed exactly by its first position in the window's order.
        const scanEnd = Math.min(hi, lo + 64 * S);
        for (let g = lo; g < scanEnd && seen.size < want; g++) {
          const j = partInWindow(win, win.perm.at(g - win.a));
          if (!seen.has(j)) { seen.add(j); out.push(win.parts[j]); }
        }
        if (seen.size < want && scanEnd < hi) {
          const late: Array<[first: number, part: number]> = [];
          for (let j = 0; j < win.parts.length; j++) {
            if (seen.has(j) || win.pre[j + 1] === win.pre[j]) continue;
            let first = Infinity;
            // Not met in [lo, scanEnd): its next read is its first position at or after lo.
            for (let slot = win.pre[j]; slot < win.pre[j + 1]; slot++) { const g = win.a + win.perm.indexOf(slot); if (g >= lo && g < first) first = g; }
            if (first < hi) late.push([first, win.parts[j]]);
          }
          late.sort((x, y) => x[0] - y[0]);
          for (const [, pi] of late) out.push(pi);
        }
      }
      return out;
    },
  };
  return plan;
}
