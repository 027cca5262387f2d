// The native twins of the per-element rounding loops (native/quant.cc, part of the engine addon): bit-identical to the
// JavaScript loops in formats.ts (and lab/update.ts, lab/train.ts), several times faster. Off with the engine
// (SLIMFIT_DISABLE=engine or native) or alone (SLIMFIT_DISABLE=quant); tests switch in-process with setNativeQuant.
import { featureEnabled } from '../core/config.ts';
import { loadAddon } from '../engine/addon.ts';

/** The kernels of native/quant.cc; see there for each argument. Counters come back in Float64Arrays. */
export interface QuantKernels {
  quantScaled(x: Float32Array, out: Float32Array, mul: number, step: number, lo: number, hi: number, mode: number, divide: number, state: Uint32Array | null, counts: Float64Array): void;
  quantFloat(x: Uint32Array, out: Uint32Array, mode: number, shift: number, notMask: number, minNormBits: number, maxBits: number, ovBits: number, infBits: number, sub0: number, qExp: number, state: Uint32Array | null, counts: Float64Array): void;
  sumOdd(a: Float32Array, b: Float32Array, out: Float32Array): void;
  updateMaster(u: Float32Array, y: Float32Array, master: Float32Array, target: Float32Array, comp: Float32Array | null, compOld: Float32Array, acc: Float64Array): void;
  updateDirect(u: Float32Array, y: Float32Array, old: Float32Array, next: Float32Array, comp: Float32Array | null, compOld: Float32Array | null, sr: number, ess: number, lo: number, hi: number, start: number, acc: Float64Array): number;
  updateFused(u: Float32Array, old: Float32Array, next: Float32Array, par: Float64Array, state: Uint32Array | null, acc: Float64Array, counts: Float64Array): number;
  updateCount(u: Float32Array, old: Float32Array, next: Float32Array, acc: Float64Array): void;
  updateComp(u: Float32Array, comp: Float32Array, compOld: Float32Array, y: Float32Array): void;
  directComp(next: Float32Array, old: Float32Array, y: Float32Array, comp: Float32Array): void;
  gradCount(raw: Float32Array, minPos: number, acc: Float64Array): void;
  gradScale(g: Float32Array, inv: number): boolean;
  mxQuantize(x: Float32Array, out: Float32Array, par: Float64Array, counts: Float64Array): void;
  scaleF32(x: Float32Array, out: Float32Array, s: number): void;
  addF32(a: Float32Array, b: Float32Array, out: Float32Array): void;
  countAbsGe(x: Float32Array, t: number): number;
  absMax(x: Float32Array, skipInf: number): number;
  optimStep(phase: number, g: Float32Array | null, d: Float32Array | null, m: Float32Array | null, v: Float32Array | null, lr: number, p1: number, p2: number, p3: number, p4: number): void;
}

let loaded: QuantKernels | null | undefined;
let enabled = true;

/**
 * The native rounding kernels, or null (engine addon off, missing, or built before native/quant.cc; SLIMFIT_DISABLE=quant;
 * or switched off with {@link setNativeQuant}): callers then run their JavaScript loops, which give the same bits.
 * @example const k = nativeQuant(); if (k) k.sumOdd(a, b, out); else sumOddJs(a, b, out);
 */
export function nativeQuant(): QuantKernels | null {
  if (!enabled) return null;
  if (loaded === undefined) loaded = featureEnabled('quant') ? ((loadAddon().addon as { quant?: QuantKernels } | null)?.quant ?? null) : null;
  return loaded;
}

/**
 * Use the native kernels when available (true, the default) or always the JavaScript loops (false); returns the
 * previous setting. For tests and benchmarks that compare the two in one process.
 * @example const was = setNativeQuant(false); try { runJs(); } finally { setNativeQuant(was); }
 */
export function setNativeQuant(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/** One scratch array for counters coming back from the kernels (single-threaded use). */
export const COUNTS = new Float64Array(4);
