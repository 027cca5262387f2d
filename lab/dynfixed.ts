// Where the lab's trainer rounds values: a fixed format, or dynamic fixed point (Courbariaux, Bengio & David 2014,
// "Training deep neural networks with low precision multiplications"): WL-bit integers times a per-tensor power of two
// 2^-FL, FL moved after every rounding so that at most `maxOverflowRate` of the values saturate.
import { fixedFormat, quantize, quantizeSum, smallestPositive, withOverflow, type FloatFormat, type Format, type QuantizeOptions } from '../src/precision/formats.ts';

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
    let beyond = 0;
    for (let i = 0; i < n; i++) if (Math.abs(out[i]) >= half) beyond++;
    if (beyond / n <= this.max) this.fl++;
  }

  quantize(x: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scaleIn(), inv = 1 / s;
    const out = opts.out ?? new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] * s; // exact: a power of two (float32 range is ample here)
    const st = { overflow: 0, underflow: 0, nan: 0 };
    quantize(this.unit, out, { ...opts, out, stats: st });
    for (let i = 0; i < out.length; i++) out[i] *= inv;
    if (opts.stats) { opts.stats.overflow += st.overflow; opts.stats.underflow += st.underflow; opts.stats.nan += st.nan; }
    this.adapt(out, st.overflow);
    return out;
  }

  quantizeSum(a: Float32Array, b: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scaleIn(), inv = 1 / s;
    const as = Float32Array.from(a, (v) => v * s), bs = Float32Array.from(b, (v) => v * s);
    const st = { overflow: 0, underflow: 0, nan: 0 };
    const out = quantizeSum(this.unit, as, bs, { ...opts, stats: st });
    for (let i = 0; i < out.length; i++) out[i] *= inv;
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
    if (!this.hist.length && current) for (let i = 0; i < current.length; i++) { const a = Math.abs(current[i]); if (a > amax && a !== Infinity) amax = a; }
    if (!(amax > 0) || !Number.isFinite(amax)) return 1;
    return 2 ** (Math.floor(Math.log2(this.fmt.maxFinite / amax)) - this.margin);
  }

  private record(x: Float32Array): void {
    let amax = 0;
    for (let i = 0; i < x.length; i++) { const a = Math.abs(x[i]); if (a > amax) amax = a; }
    if (Number.isFinite(amax)) { this.hist.push(amax); if (this.hist.length > this.len) this.hist.shift(); }
  }

  quantize(x: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scale(x), inv = 1 / s;
    const out = opts.out ?? new Float32Array(x.length);
    this.record(x);
    for (let i = 0; i < x.length; i++) out[i] = x[i] * s;
    quantize(this.fmt, out, { ...opts, out });
    for (let i = 0; i < out.length; i++) out[i] *= inv;
    return out;
  }

  /** Round with the current scale without adding to the history (inference). */
  quantizeFrozen(x: Float32Array, opts: QuantizeOptions): Float32Array {
    const s = this.scale(x), inv = 1 / s;
    const out = opts.out ?? new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] * s;
    quantize(this.fmt, out, { ...opts, out });
    for (let i = 0; i < out.length; i++) out[i] *= inv;
    return out;
  }

  quantizeSum(a: Float32Array, b: Float32Array, opts: QuantizeOptions): Float32Array {
    const sum = Float32Array.from(a, (v, i) => v + b[i]);
    return this.quantize(sum, opts);
  }

  minPositive(): number { return this.fmt.minSubnormal / this.scale(); }

  describe(): string { return `${this.fmt.name} x 2^${Math.log2(this.scale())}`; }
}
