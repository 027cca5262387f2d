// Deterministic, class-stratified assignment of a single source's samples to named splits (O(classes) memory).
import { UsageError } from '../core/errors.ts';
import { type Permutation, permutation } from '../core/permutation.ts';

/** Named fractions, e.g. {train: 0.9, test: 0.1}. */
export type SplitRatios = Array<{ name: string; fraction: number }>;

/** Parse `train=0.9,test=0.1` (fractions must be positive and sum to 1 within 1e-6). */
export function parseSplitSpec(spec: string): SplitRatios {
  const parts = spec.split(',').map((s) => s.trim()).filter(Boolean);
  const out: SplitRatios = [];
  for (const p of parts) {
    const m = /^([A-Za-z][\w-]*)=([0-9.]+)$/.exec(p);
    if (!m || !(Number(m[2]) > 0)) {
      throw new UsageError(`cannot read split '${p}'`, { hint: 'write splits as name=fraction pairs, e.g. --split train=0.9,test=0.1' });
    }
    if (out.some((o) => o.name === m[1])) throw new UsageError(`split '${m[1]}' is named twice in --split ${spec}`);
    out.push({ name: m[1], fraction: Number(m[2]) });
  }
  const total = out.reduce((a, o) => a + o.fraction, 0);
  if (out.length < 1 || Math.abs(total - 1) > 1e-6) {
    throw new UsageError(`split fractions add up to ${total}, not 1`, { hint: 'e.g. --split train=0.9,test=0.1' });
  }
  return out;
}

/** Largest-remainder rounding of n * fractions to integers summing to n. */
export function apportion(n: number, fractions: readonly number[]): number[] {
  const raw = fractions.map((f) => n * f);
  const out = raw.map(Math.floor);
  let left = n - out.reduce((a, b) => a + b, 0);
  const order = raw.map((r, i) => ({ i, rem: r - Math.floor(r) })).sort((a, b) => b.rem - a.rem || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) out[order[k].i]++;
  return out;
}

/** Assigns the k-th sample of each class to a split: seeded per-class permutation, then cut by apportioned counts. */
export interface SplitAssigner {
  /** Split index for the next sample of class `label` (call in source order). */
  next(label: number): number;
  /** Planned samples per split. */
  readonly planned: number[];
}

/**
 * Plan a stratified split from per-class counts (`classCounts[c]` samples of class c in the source).
 * Class c's samples are shuffled by permutation(n_c, seed, c) and split by apportion(n_c, fractions).
 * `startAt[c]`: samples of class c that come before the first one this assigner sees (a part of a source that starts
 * mid-way: part I of `convert --part` passes the counts of parts 0..I-1, so its samples get the splits one
 * conversion of the whole source gives them).
 */
export function createSplitAssigner(classCounts: readonly number[], ratios: SplitRatios, seed: number, startAt?: readonly number[]): SplitAssigner {
  const fractions = ratios.map((r) => r.fraction);
  const perms: Permutation[] = [];
  const cuts: number[][] = [];
  const seen = classCounts.map((_, c) => startAt?.[c] ?? 0);
  const planned = new Array<number>(ratios.length).fill(0);
  classCounts.forEach((n, c) => {
    perms.push(permutation(n, seed, c));
    const counts = apportion(n, fractions);
    counts.forEach((k, s) => (planned[s] += k));
    const cum: number[] = [];
    let acc = 0;
    for (const k of counts) cum.push((acc += k));
    cuts.push(cum);
  });
  return {
    planned,
    next(label) {
      const k = seen[label]++;
      const p = perms[label].at(k);
      const cum = cuts[label];
      let s = 0;
      while (p >= cum[s]) s++;
      return s;
    },
  };
}
