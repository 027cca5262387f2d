// Where the lab's trainer rounds values: a fixed format, or dynamic fixed point (Courbariaux, Bengio & David 2014,
// "Training deep neural networks with low precision multiplications"): WL-bit integers times a per-tensor power of two
// 2^-FL, FL moved after every rounding so that at most `maxOverflowRate` of the values saturate.
import { fixedFormat, quantize, quantizeSum, smallestPositive, type Format, type QuantizeOptions } from '../src/precision/formats.ts';

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
}

/** A site that always rounds to `fmt`. */
export function staticSite(fmt: Format): Site {
  return {
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
