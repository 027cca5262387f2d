// The sample order of an epoch as a pure function of (seed, epoch, rank, position): shared by the main thread and workers.
import { type Permutation, permutation } from '../core/permutation.ts';
import { subsetIndex } from './holdout.ts';
import type { Subset } from './layout.ts';

/** Plain-data description of an order (passed to worker threads). */
export interface PlanConfig {
  /** Samples in the source (in the subset, when there is one). */
  n: number;
  /** The source is a random subset of its files' samples: sample ids are mapped to the parent's ids. */
  subset?: Subset;
  mode: 'global' | 'block' | 'none';
  /** Draw classes equally often (global mode only). */
  balanced: boolean;
  seed: number;
  rank: number;
  worldSize: number;
  /** Samples per epoch for each rank: floor(n / worldSize) (the n % worldSize left over change every epoch). */
  perRank: number;
  /** Block mode: consecutive samples kept together (block order is shuffled). */
  blockSamples: number;
  /** Block mode: samples shuffled together in memory (a window of consecutive blocks). */
  windowSamples: number;
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
}

const TAG_BLOCK = 0xb10c, TAG_WINDOW = 0x57a1, TAG_CLASS = 0xc1a5, TAG_GLOBAL = 0x610b;

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

  const plan: Plan = {
    config,
    globalOrder: (epoch) => (config.mode === 'global' && !config.balanced && !toParent ? globalPerm(epoch) : null),
    streamPosition: (q) => rank * perRank + q,
    samples(epoch, start, count, out) {
      const base = rank * perRank + start;
      if (config.mode === 'none') {
        for (let k = 0; k < count; k++) out[k] = base + k;
      } else if (config.mode === 'global') {
        if (config.balanced) for (let k = 0; k < count; k++) out[k] = balancedSample(epoch, base + k);
        else {
          const p = globalPerm(epoch);
          for (let k = 0; k < count; k++) out[k] = p.at(base + k);
        }
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
  };
  return plan;
}
