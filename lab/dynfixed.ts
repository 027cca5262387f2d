// Where the lab's trainer rounds values: a fixed format, or dynamic fixed point (Courbariaux, Bengio & David 2014,
// "Training deep neural networks with low precision multiplications"): WL-bit integers times a per-tensor power of two
// 2^-FL, FL moved after every rounding so that at most `maxOverflowRate` of the values saturate.
import { fixedFormat, NATIVE_MIN_LENGTH, quantize, quantizeSum, smallestPositive, withOverflow, type FloatFormat, type Format, type QuantizeOptions } from '../src/precision/formats.ts';
import { nativeQuant } from '../src/precision/native.ts';

// The sites' elementwise loops, each with its native twin (native/quant.cc: the same double arithmetic, so the same bits).

/** out[i] = x[i]·s (float32 of the double product); out may be x. */
function scaleInto(x: Float32Array, out: Float32Array, s: number): Float32Array {
  const k = x.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) k.scaleF32(x, out, s);
  else for (let i = 0; i < x.length; i++) out[i] = x[i] * s;
  return out;
}

/** A new array of a[i] + b[i] (float32 of the double sum). */
function sumOf(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const k = a.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) k.addF32(a, b, out);
  else for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** How many |x[i]| >= t. */
function countAbsGe(x: Float32Array, t: number): number {
  const k = x.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) return k.countAbsGe(x, t);
  let c = 0;
  for (let i = 0; i < x.length; i++) if (Math.abs(x[i]) >= t) c++;
  return c;
}

/** The largest |x[i]| from 0 up (NaN never counts; with skipInf, neither does ±inf). */
function absMax(x: Float32Array, skipInf: boolean): number {
  const k = x.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) return k.absMax(x, skipInf ? 1 : 0);
  let amax = 0;
  for (let i = 0; i < x.length; i++) { const a = Math.abs(x[i]); if (a > amax && (!skipInf || a !== Infinity)) amax = a; }
  return amax;
}

/** One rounding site (a tensor group: a layer's weights, its gradients, its outputs or its back-propagated errors). */
export interface Site {
  /** Round `x` (float32) into the site's current format; adapts a dynamic site afterwards. */
  quantize(x: Float32Array, opts: QuantizeOptions): Float32Array;
  /** Round the exact sums a + b once; adapts a dynamic site afterwards. */
  quantizeSum(a: Float32Array, b: Float32Array, opts: QuantizeOptions): Float32Array;
  /** Smallest positive value the site represents right now. */
  minPositive(): number;
  /** Current format (for dynamic sites, the fixed point the next rounding uses). */
  describe(): string;
  /** The format a static site always rounds to (lets lab/update.ts fuse its loops with the rounding). */
  readonly format?: Format;
}

/** A site that always rounds to `fmt`. */
export function staticSite(fmt: Format): Site {
  return {
    format: fmt,
    quantize: (x, o) => quantize(fmt, x, o),
    quantizeSum: (a, b, o) => quantizeSum(fmt, a, b, o),
    minPositive: () => smallestPositive(fmt),
    describe: () => fmt.name,
  };
}

/** Dynamic fixed point settings. */
export interface DynamicSpec { wl: number; maxOverflowRate?: number; initFl?: number }

/**
 * Dynamic fixed point: codes in [-2^(WL-1), 2^(WL-1) - 1] times 2^-FL with any integer FL (FL > WL - 1 for small
 * gradients). After each rounding FL drops by one when more than `maxOverflowRate` of the values saturated, and rises
 * by one when the values would also fit a range half as wide with no more than that rate saturating.
 * @example const s = new DynamicFixedSite({ wl: 16 }); s.quantize(Float32Array.of(1e-3, 300), {})
 */
export class DynamicFixedSite implements Site {
  fl: number;
  private readonly unit: Format;
  private readonly max: number;
  constructor(readonly spec: DynamicSpec) {
    this.fl = spec.initFl ?? spec.wl - 4;
    this.unit = fixedFormat(1, spec.wl - 1); // codes times 2^-(WL-1): range [-1, 1)
    this.max = spec.maxOverflowRate ?? 1e-4;
  }

  private scaleIn(): number { return 2 ** (this.fl - (this.spec.wl - 1)); }

  private adapt(out: Float32Array, overflow: number): void {
    const n = out.length;
    if (!n) return;
    if (overflow / n > this.max) { this.fl--; return; }
    const half = 2 ** (this.spec.wl - 2 - this.fl); // half the current range
    if (countAbsGe(out, half) / n <= this.max) this.fl++;
  }

  quantize(x: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scaleIn(), inv = 1 / s;
    const out = scaleInto(x, opts.out ?? new Float32Array(x.length), s); // exact: a power of two (float32 range is ample here)
    const st = { overflow: 0, underflow: 0, nan: 0 };
    quantize(this.unit, out, { ...opts, out, stats: st });
    scaleInto(out, out, inv);
    if (opts.stats) { opts.stats.overflow += st.overflow; opts.stats.underflow += st.underflow; opts.stats.nan += st.nan; }
    this.adapt(out, st.overflow);
    return out;
  }

  quantizeSum(a: Float32Array, b: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scaleIn(), inv = 1 / s;
    const as = scaleInto(a, new Float32Array(a.length), s), bs = scaleInto(b, new Float32Array(b.length), s);
    const st = { overflow: 0, underflow: 0, nan: 0 };
    const out = quantizeSum(this.unit, as, bs, { ...opts, stats: st });
    scaleInto(out, out, inv);
    if (opts.stats) { opts.stats.overflow += st.overflow; opts.stats.underflow += st.underflow; opts.stats.nan += st.nan; }
    this.adapt(out, st.overflow);
    return out;
  }

  minPositive(): number { return 2 ** -this.fl; }

  describe(): string { return `dfxp(WL=${this.spec.wl}, FL=${this.fl})`; }
}

/** Per-tensor delayed scaling settings (FP8 training, Micikevicius et al. 2022). */
export interface ScaledSpec { history?: number; margin?: number }

/**
 * Per-tensor delayed scaling for a narrow float format: values are multiplied by a power of two chosen from the
 * largest |value| of the previous `history` roundings (the first rounding uses its own), so that this amax lands just
 * below the format's largest value (2^-margin below it), rounded with saturation, then scaled back. Power-of-two
 * scales keep the scaling exact.
 * @example const s = new DelayedScaledSite(E4M3, {}); s.quantize(Float32Array.of(1e-3, 2e-3), {}) // fine steps near 1e-3
 */
export class DelayedScaledSite implements Site {
  private readonly hist: number[] = [];
  private readonly fmt: FloatFormat;
  private readonly len: number;
  private readonly margin: number;
  constructor(fmt: FloatFormat, spec: ScaledSpec) {
    this.fmt = withOverflow(fmt, 'saturate');
    this.len = spec.history ?? 16;
    this.margin = spec.margin ?? 0;
  }

  /** The scale the next rounding uses (1 before any history). */
  scale(current?: Float32Array): number {
    let amax = this.hist.length ? Math.max(...this.hist) : 0;
    if (!this.hist.length && current) amax = absMax(current, true);
    if (!(amax > 0) || !Number.isFinite(amax)) return 1;
    return 2 ** (Math.floor(Math.log2(this.fmt.maxFinite / amax)) - this.margin);
  }

  private record(x: Float32Array): void {
    const amax = absMax(x, false);
    if (Number.isFinite(amax)) { this.hist.push(amax); if (this.hist.length > this.len) this.hist.shift(); }
  }

  quantize(x: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scale(x), inv = 1 / s;
    const out = opts.out ?? new Float32Array(x.length);
    this.record(x);
    scaleInto(x, out, s);
    quantize(this.fmt, out, { ...opts, out });
    return scaleInto(out, out, inv);
  }

  /** Round with the current scale without adding to the history (inference). */
  quantizeFrozen(x: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scale(x), inv = 1 / s;
    const out = scaleInto(x, opts.out ?? new Float32Array(x.length), s);
    quantize(this.fmt, out, { ...opts, out });
    return scaleInto(out, out, inv);
  }

  quantizeSum(a: Float32Array, b: Float32Array, opts: QuantizeOptions): Float32Array {
    return this.quantize(sumOf(a, b), opts);
  }

  minPositive(): number { return this.fmt.minSubnormal / this.scale(); }

  describe(): string { return `${this.fmt.name} x 2^${Math.log2(this.scale())}`; }
}
