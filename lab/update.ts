// Applying one optimizer update to weights stored in a low-precision format, and metering how much of it is lost.
//
// The lost-update-mass meter compares, per weight, the intended update u (fp32, from the optimizer) with the change
// of the *effective* weight: the stored weight, or the fp32 master copy when there is one, or stored − compensation
// under Kahan summation (the compensation holds what the stored weight still owes). "Expected" takes the expectation
// over the rounding's randomness (stochastic rounding moves a weight by u on average), "realized" the change that
// actually happened this step. Lost mass = Σ|u − applied| / Σ|u|. A deferred update (SR that did not round up this
// time, a master copy that has not yet crossed a stored grid point) is not lost; an update that round-to-nearest
// maps back onto the same value is.
import { NATIVE_MIN_LENGTH, floatConsts, quantizeScalar, type Format, type Rounding } from '../src/precision/formats.ts';
import { nativeQuant, type QuantKernels } from '../src/precision/native.ts';
import type { Rng } from '../src/precision/rng.ts';
import type { Site } from './dynfixed.ts';

/** One weight tensor's storage: stored values, optional fp32 master copy, optional fp32 Kahan compensation. */
export interface WeightSlot {
  stored: Float32Array;
  master: Float32Array | null;
  /** Kahan compensation c (fp32): the effective weight is stored − c (master − c with a master copy). */
  comp: Float32Array | null;
}

/** Counters of one tensor's update. Masses are sums of absolute values (doubles). */
export interface UpdateMeter {
  /** Elements whose intended update was nonzero. */
  updates: number;
  /** Of those, elements whose stored weight did not change this step (not a loss under SR, master or Kahan). */
  unchanged: number;
  /** Σ|u| over the tensor. */
  mass: number;
  /** Σ|u − E[applied]| (NaN when the site cannot say what its rounding does on average, e.g. dynamic fixed point with SR). */
  lostExpected: number;
  /** Σ|u − applied| this step. */
  lostRealized: number;
  /** Stored values that overflowed or saturated. */
  overflow: number;
}

const F1 = new Float32Array(1);
const U1 = new Uint32Array(F1.buffer);

/**
 * E[round(w + u)] under stochastic rounding of the exact sum to `fmt`, as quantizeSum does it: formats with at most
 * 21 mantissa bits (fixed point up to 22 bits) see the sum rounded to odd in float32 first, then an unbiased choice
 * between its two neighbours (so the expectation is that float32 value); wider formats see the exact sum. Outside the
 * format's range the result is the deterministic overflow value (saturation, ±inf or NaN).
 * @example expectedStochasticSum(BF16, 1, 1e-4) // 1.0001 (to float32), although each draw is 1 or 1.0078125
 */
export function expectedStochasticSum(fmt: Format, w: number, u: number): number {
  const s = w + u;
  const bv = s - w;
  const e = (w - (s - bv)) + (u - bv); // TwoSum: s + e == w + u exactly
  if (fmt.kind === 'fp32') return Math.fround(s);
  const narrow = (fmt.kind === 'float' && fmt.man <= 21) || (fmt.kind === 'fixed' && fmt.bits <= 22);
  let v = s + e;
  if (narrow) {
    v = Math.fround(s);
    if ((v !== s || e !== 0) && s - s === 0) { // an infinite addend: the sum is exactly ±inf (or NaN)
      // round to odd: an inexact float32 result gets its last bit set, toward the exact sum
      F1[0] = v;
      if ((U1[0] & 1) === 0) {
        const up = v !== s ? Math.abs(s) > Math.abs(v) : (s > 0) === (e > 0);
        U1[0] = up ? U1[0] + 1 : U1[0] - 1;
        v = F1[0];
      }
    }
  }
  if (fmt.kind === 'int8') return v; // scaled per tensor: quantizeSum refuses it
  const lo = fmt.kind === 'float' ? -fmt.maxFinite : fmt.minFinite;
  const hi = fmt.maxFinite;
  if (v > hi || v < lo) return quantizeScalar(fmt, v, 'nearest');
  return v;
}

/** Scratch arrays reused across steps (one set per tensor). */
export interface UpdateScratch { y: Float32Array; target: Float32Array; compOld: Float32Array }

/** Scratch arrays for a tensor of `n` elements. */
export function updateScratch(n: number): UpdateScratch {
  return { y: new Float32Array(n), target: new Float32Array(n), compOld: new Float32Array(n) };
}

/**
 * Apply the intended update `u` (fp32) to `slot`: add it to the master copy (fp32) and round that into the stored
 * format, or round the exact sum stored + u once into the format; with Kahan, u − c is added and the new c (fp32)
 * keeps what the rounding lost. Updates `slot.master`/`slot.comp` in place and returns the new stored values (a new
 * array) with the tensor's meter. `fmt` is the site's format when it is a plain format (needed for the expectation of
 * stochastic rounding), else null.
 * @example const { next, meter } = applyUpdate({ stored, master: null, comp: null }, u, staticSite(BF16), BF16, 'nearest', rng, updateScratch(u.length))
 */
export function applyUpdate(slot: WeightSlot, u: Float32Array, site: Site, fmt: Format | null, rounding: Rounding, rng: Rng, scratch: UpdateScratch): { next: Float32Array; meter: UpdateMeter } {
  const n = u.length;
  const k = n >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) return applyUpdateNative(k, slot, u, site, fmt, rounding, rng, scratch);
  const old = slot.stored, comp = slot.comp, master = slot.master;
  const { y, target, compOld } = scratch;
  if (comp) { compOld.set(comp); for (let i = 0; i < n; i++) y[i] = u[i] - comp[i]; } else y.set(u);
  const wst = { overflow: 0, underflow: 0, nan: 0 };
  let next: Float32Array;
  // applied[i] (realized, effective weight) is computed into `target` after the stored values are known
  let mass = 0, lostE = 0, lostR = 0, upd = 0, unchanged = 0;
  if (master) {
    for (let i = 0; i < n; i++) target[i] = master[i] + y[i]; // one float32 rounding of the exact sum
    if (comp) for (let i = 0; i < n; i++) comp[i] = (target[i] - master[i]) - y[i];
    for (let i = 0; i < n; i++) {
      // effective weight master − c: its change is deterministic
      const applied = comp ? (target[i] - comp[i]) - (master[i] - compOld[i]) : target[i] - master[i];
      const d = Math.abs(u[i] - applied);
      mass += Math.abs(u[i]); lostE += d; lostR += d;
    }
    master.set(target);
    next = site.quantize(master, { rounding, rng, out: new Float32Array(n), stats: wst });
  } else {
    // the exact sum w + y rounded once to the weight format (no float32 rounding in between)
    next = site.quantizeSum(old, y, { rounding, rng, out: new Float32Array(n), stats: wst });
    if (comp) for (let i = 0; i < n; i++) comp[i] = (next[i] - old[i]) - y[i]; // compensation kept in fp32
    const sr = rounding === 'stochastic' && !comp;
    for (let i = 0; i < n; i++) {
      const r = directTerms(u, y, old, next, comp, compOld, sr, fmt, i);
      mass += r[0]; lostR += r[2]; lostE += r[1];
    }
    if (sr && !fmt) lostE = NaN;
  }
  for (let i = 0; i < n; i++) if (u[i] !== 0) { upd++; if (next[i] === old[i]) unchanged++; }
  slot.stored = next;
  return { next, meter: { updates: upd, unchanged, mass, lostExpected: lostE, lostRealized: lostR, overflow: wst.overflow } };
}

const TERMS = new Float64Array(3);

/** Element i's terms of a direct update's meter: |u|, its expected loss (0 where not metered) and its realized loss. */
function directTerms(u: Float32Array, y: Float32Array, old: Float32Array, next: Float32Array, comp: Float32Array | null, compOld: Float32Array, sr: boolean, fmt: Format | null, i: number): Float64Array {
  const applied = comp ? (next[i] - comp[i]) - (old[i] - compOld[i]) : next[i] - old[i];
  TERMS[0] = Math.abs(u[i]);
  TERMS[2] = Math.abs(u[i] - applied);
  TERMS[1] = !sr ? TERMS[2] : fmt ? Math.abs(u[i] - (expectedStochasticSum(fmt, old[i], y[i]) - old[i])) : 0;
  return TERMS;
}

/** applyUpdate's loops in native/quant.cc (the same arithmetic in the same order, so the same bits and sums). */
function applyUpdateNative(k: QuantKernels, slot: WeightSlot, u: Float32Array, site: Site, fmt: Format | null, rounding: Rounding, rng: Rng, scratch: UpdateScratch): { next: Float32Array; meter: UpdateMeter } {
  const n = u.length;
  const old = slot.stored, comp = slot.comp, master = slot.master;
  const { y, target, compOld } = scratch;
  const fused = !master && !comp ? fusedParams(site, fmt, rounding) : null;
  if (fused) {
    // quantizeSum, the meter and the counts in one pass (y would be u)
    const next = new Float32Array(n);
    const acc = new Float64Array(5), counts = new Float64Array(3);
    const sr = rounding === 'stochastic';
    for (let i = 0; i < n;) {
      fused[2] = i;
      i = k.updateFused(u, old, next, fused, sr ? rng.state : null, acc, counts);
      if (i < n) {
        // an expectation beyond the format's range: rounded here (quantizeScalar), then the kernel goes on after it
        const r = directTerms(u, u, old, next, null, compOld, sr, fmt, i);
        acc[0] += r[0]; acc[2] += r[2]; acc[1] += r[1];
        i++;
      }
    }
    slot.stored = next;
    return { next, meter: { updates: acc[3], unchanged: acc[4], mass: acc[0], lostExpected: acc[1], lostRealized: acc[2], overflow: counts[0] } };
  }
  if (comp) k.updateComp(u, comp, compOld, y); else y.set(u);
  const wst = { overflow: 0, underflow: 0, nan: 0 };
  const acc = new Float64Array(3); // mass, lost (expected), lost (realized)
  let next: Float32Array;
  let lostNaN = false;
  if (master) {
    k.updateMaster(u, y, master, target, comp, compOld, acc);
    master.set(target);
    next = site.quantize(master, { rounding, rng, out: new Float32Array(n), stats: wst });
  } else {
    next = site.quantizeSum(old, y, { rounding, rng, out: new Float32Array(n), stats: wst });
    if (comp) k.directComp(next, old, y, comp);
    const sr = rounding === 'stochastic' && !comp;
    // how the kernel forms E[round(w + y)] under stochastic rounding (see expectedStochasticSum)
    let ess = 0, lo = 0, hi = 0;
    if (sr && fmt) {
      ess = fmt.kind === 'fp32' ? 1 : fmt.kind === 'int8' ? 4 : (fmt.kind === 'float' && fmt.man <= 21) || (fmt.kind === 'fixed' && fmt.bits <= 22) ? 2 : 3;
      if (fmt.kind === 'float' || fmt.kind === 'fixed') { lo = fmt.kind === 'float' ? -fmt.maxFinite : fmt.minFinite; hi = fmt.maxFinite; }
    }
    for (let i = 0; i < n;) {
      i = k.updateDirect(u, y, old, next, comp, comp ? compOld : null, sr ? 1 : 0, ess, lo, hi, i, acc);
      if (i < n) {
        // an expectation beyond the format's range: rounded here (quantizeScalar), then the kernel goes on after it
        const r = directTerms(u, y, old, next, comp, compOld, sr, fmt, i);
        acc[0] += r[0]; acc[2] += r[2]; acc[1] += r[1];
        i++;
      }
    }
    lostNaN = sr && !fmt;
  }
  k.updateCount(u, old, next, TERMS);
  const upd = TERMS[0], unchanged = TERMS[1];
  slot.stored = next;
  return { next, meter: { updates: upd, unchanged, mass: acc[0], lostExpected: lostNaN ? NaN : acc[1], lostRealized: acc[2], overflow: wst.overflow } };
}

/**
 * The parameters of native updateFused for a static site of a fixed point (up to 22 bits) or float (up to 21 mantissa
 * bits) format, where quantizeSum rounds the round-to-odd float32 sum, or null (then the update runs loop by loop).
 */
function fusedParams(site: Site, fmt: Format | null, rounding: Rounding): Float64Array | null {
  if (!fmt || site.format !== fmt) return null;
  const mode = rounding === 'nearest' ? 0 : rounding === 'zero' ? 1 : 2;
  if (fmt.kind === 'fixed' && fmt.bits <= 22) {
    return Float64Array.of(0, mode, 0, fmt.minFinite, fmt.maxFinite, 2 ** fmt.fl, 2 ** -fmt.fl, -(2 ** (fmt.bits - 1)), 2 ** (fmt.bits - 1) - 1);
  }
  if (fmt.kind === 'float' && fmt.man <= 21) {
    const c = floatConsts(fmt);
    return Float64Array.of(1, mode, 0, -fmt.maxFinite, fmt.maxFinite, c.shift, c.notMask, c.minNormBits, c.maxBits, c.ovBits, c.infBits, c.sub0, c.qExp);
  }
  return null;
}
