// Streaming per-channel mean/std/min/max of x (float64 sums; one pass, O(channels) memory). NaN and +-inf are left
// out of the statistics and counted, so the caller can warn, refuse (--strict) and record the count.
import { type DType, dtypeSize, halfToFloat, viewAs } from '../core/dtype.ts';
import { countBytes } from '../core/histogram.ts';
import type { FieldSpec, Stats } from './manifest.ts';

/** Channels of a sample shape: the last axis for images ([H,W,C]), else 1. */
export function channelsOf(shape: readonly number[]): number {
  return shape.length >= 3 ? shape[shape.length - 1] : 1;
}

/** Accumulates per-channel statistics over little-endian sample bytes. */
export interface StatsAccumulator {
  add(xBytes: Uint8Array, n: number): void;
  /** For uint8 x: add value counts already taken (countBytes layout) instead of the bytes themselves. */
  addCounts?(counts: Float64Array): void;
  result(split: string): Stats | undefined;
  /** The raw sums so far (plain numbers, JSON-safe), to be joined with other parts' by {@link mergeStatsStates}. */
  state(): StatsState;
  /** Values seen so far that are NaN or +-inf (never for integer dtypes). */
  readonly nonFinite: number;
  /** True while every finite value seen is a whole number (always for integer dtypes). */
  readonly integral: boolean;
  /** Smallest and largest finite value seen so far (Infinity / -Infinity before any). */
  range(): [number, number];
}

/**
 * An accumulator's sums as plain numbers (NaN shift = no value seen; min/max null when none): what a part store keeps
 * so `merge` can give the statistics one conversion of the whole source gives (exactly for uint8, whose value counts
 * add up; up to float64 summation order otherwise).
 */
export interface StatsState {
  sum: number[];
  sq: number[];
  count: number[];
  shift: Array<number | null>;
  min: number | null;
  max: number | null;
  nonFinite: number;
  /** True when every finite value is a whole number (absent in part stores of older versions: not known, taken as false). */
  integral?: boolean;
  /** uint8 only: value counts per channel (256 per channel). */
  hist?: number[];
}

/**
 * Join the states of consecutive parts (in source order) into one: value counts add; shifted sums are moved to the
 * first part's shift (the first value seen, as one pass over the whole source would have chosen).
 *
 * @example
 * const joined = mergeStatsStates([partA.state(), partB.state()]);
 */
export function mergeStatsStates(states: readonly StatsState[]): StatsState {
  const c = states[0].sum.length;
  const out: StatsState = { sum: new Array(c).fill(0), sq: new Array(c).fill(0), count: new Array(c).fill(0), shift: new Array(c).fill(null), min: null, max: null, nonFinite: 0, integral: true };
  if (states[0].hist) out.hist = new Array(states[0].hist.length).fill(0);
  for (const s of states) {
    out.nonFinite += s.nonFinite;
    out.integral &&= s.integral === true;
    if (s.min !== null) out.min = out.min === null ? s.min : Math.min(out.min, s.min);
    if (s.max !== null) out.max = out.max === null ? s.max : Math.max(out.max, s.max);
    if (out.hist && s.hist) for (let i = 0; i < s.hist.length; i++) out.hist[i] += s.hist[i];
    for (let ch = 0; ch < c; ch++) {
      const sh = s.shift[ch];
      if (sh === null || s.count[ch] === 0) continue;
      const to = out.shift[ch] ??= sh;
      const d = sh - to; // values were summed as (v - sh) = (v - to) - d
      out.sum[ch] += s.sum[ch] + s.count[ch] * d;
      out.sq[ch] += s.sq[ch] + 2 * d * s.sum[ch] + s.count[ch] * d * d;
      out.count[ch] += s.count[ch];
    }
  }
  return out;
}

/**
 * Smallest and largest finite value of a state ([Infinity, -Infinity] when it saw none), as
 * {@link StatsAccumulator.range} gives them.
 *
 * @example
 * const [lo, hi] = rangeOfState(mergeStatsStates(states));
 */
export function rangeOfState(s: StatsState): [number, number] {
  let lo = s.min ?? Infinity, hi = s.max ?? -Infinity;
  if (s.hist) for (let i = 0; i < s.hist.length; i++) if (s.hist[i] > 0) { const v = i % 256; if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

/** The statistics of a state (undefined when it saw no value), as {@link StatsAccumulator.result} gives them. */
export function statsOfState(s0: StatsState, split: string): Stats | undefined {
  const c = s0.sum.length;
  const sum = [...s0.sum], sq = [...s0.sq], count = [...s0.count];
  const shift = s0.shift.map((v) => v ?? NaN);
  let min = s0.min ?? Infinity, max = s0.max ?? -Infinity;
  if (s0.hist) {
    for (let ch = 0; ch < c; ch++) {
      for (let v = 0; v < 256; v++) {
        const k = s0.hist[ch * 256 + v];
        if (k === 0) continue;
        sum[ch] += k * v; sq[ch] += k * v * v; count[ch] += k;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      shift[ch] = 0;
    }
  }
  if (count[0] === 0) return undefined;
  const dm = sum.map((s, i) => s / count[i]);
  const std = sq.map((s, i) => Math.sqrt(Math.max(0, s / count[i] - dm[i] * dm[i])));
  const mean = dm.map((d, i) => d + shift[i]);
  return { split, mean, std, min, max };
}

/** Start accumulating statistics for field `x` (integer and float dtypes; float16 decoded). */
export function createStats(x: FieldSpec): StatsAccumulator {
  const c = channelsOf(x.shape);
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  const count = new Float64Array(c);
  // Sums are taken around a per-channel shift (the first value seen) so the variance does not cancel catastrophically.
  const shift = new Float64Array(c).fill(NaN);
  let min = Infinity, max = -Infinity;
  let nonFinite = 0;
  let integral = true;
  const dtype: DType = x.dtype;
  const float = dtype === 'float16' || dtype === 'float32' || dtype === 'float64';
  const half = dtype === 'float16';
  // uint8 (images): count values per channel instead of summing; the sums come from the histogram at the end.
  const hist = dtype === 'uint8' ? new Float64Array(256 * c) : null;
  const state = (): StatsState => ({
    sum: [...sum], sq: [...sq], count: [...count], shift: [...shift].map((v) => (Number.isNaN(v) ? null : v)),
    min: min === Infinity ? null : min, max: max === -Infinity ? null : max, nonFinite, integral, ...(hist ? { hist: [...hist] } : {}),
  });
  return {
    get nonFinite() { return nonFinite; },
    state,
    get integral() { return integral; },
    range() { return hist ? rangeOfState({ sum: [], sq: [], count: [], shift: [], min: null, max: null, nonFinite: 0, hist: [...hist] }) : [min, max]; },
    add(bytes) {
      if (hist) { countBytes(bytes, c, hist); return; }
      const a = viewAs(dtype, bytes);
      const len = a.length;
      // Hot loop: per-channel sums in float64 (c is usually 1 or 3, so the modulo is cheap).
      for (let i = 0; i < len; i++) {
        let v: number;
        const raw = a[i];
        if (half) v = halfToFloat(raw as number);
        else v = typeof raw === 'bigint' ? Number(raw) : (raw as number);
        if (v - v !== 0) { nonFinite++; continue; } // NaN or +-inf: counted, left out of the sums
        const ch = c === 1 ? 0 : i % c;
        if (shift[ch] !== shift[ch]) shift[ch] = v;
        const d = v - shift[ch];
        sum[ch] += d; sq[ch] += d * d; count[ch]++;
        if (v < min) min = v;
        if (v > max) max = v;
        if (float && integral && v !== Math.floor(v)) integral = false;
      }
    },
    ...(hist ? { addCounts(counts: Float64Array) { for (let i = 0; i < hist.length; i++) hist[i] += counts[i]; } } : {}),
    result(split) { return statsOfState(state(), split); },
  };
}

/** Index of the first sample in `bytes` (samples of `sampleBytes` each) holding NaN or +-inf, or -1. */
export function firstNonFiniteSample(dtype: DType, bytes: Uint8Array, sampleBytes: number): number {
  if (dtype !== 'float16' && dtype !== 'float32' && dtype !== 'float64') return -1;
  const a = viewAs(dtype, bytes) as ArrayLike<number>;
  const perSample = sampleBytes / dtypeSize(dtype);
  for (let i = 0; i < a.length; i++) {
    const v = dtype === 'float16' ? halfToFloat(a[i]) : a[i];
    if (v - v !== 0) return Math.floor(i / perSample);
  }
  return -1;
}
