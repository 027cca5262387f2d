// Number formats (fp16, bf16, FP8 E4M3/E5M2, generic float, fixed point, int8) and fast quantization over Float32Array.
import type { Rng } from './rng.ts';
import { SlimfitError } from '../core/errors.ts';
import { COUNTS, nativeQuant } from './native.ts';

/** Arrays shorter than this are rounded in JavaScript (a native call costs more than the loop); both give the same bits. */
export const NATIVE_MIN_LENGTH = 64;

/** How a value between two representable neighbours is resolved. */
export type Rounding = 'nearest' | 'stochastic' | 'zero';

/**
 * What a finite value beyond a format's largest finite value becomes: `inf` (IEEE: fp16, bf16, E5M2), `nan` (OCP FP8
 * E4M3 without saturation, which has no infinity: what ml_dtypes and PyTorch's float8_e4m3fn give) or `saturate`
 * (clamped to ±max, the OCP conversion's saturation mode). Round-toward-zero never overflows: it clamps to ±max.
 */
export type Overflow = 'inf' | 'saturate' | 'nan';

/** The float32 bits of the one NaN every quantization returns (positive quiet NaN, payload dropped). */
export const CANONICAL_NAN_BITS = 0x7fc00000;

/** All rounding modes, in display order. */
export const ROUNDINGS: readonly Rounding[] = ['nearest', 'stochastic', 'zero'];

/**
 * A binary floating-point format with `exp` exponent and `man` mantissa bits (plus a sign bit).
 * `special: 'ieee'` reserves the top exponent for inf/NaN; `'fn'` (OCP E4M3 style) has no inf and only
 * the all-ones magnitude is NaN; `'none'` (OCP FP6 E3M2/E2M3 and FP4 E2M1) has neither: every code is a finite
 * number and overflow always saturates. `overflow` says what a finite value beyond the range becomes.
 */
export interface FloatFormat {
  readonly kind: 'float';
  readonly name: string;
  readonly bits: number;
  readonly exp: number;
  readonly man: number;
  readonly bias: number;
  readonly special: 'ieee' | 'fn' | 'none';
  /** Default overflow behaviour (a quantize call may override it with `opts.overflow`). */
  readonly overflow: Overflow;
  /** Exponent of the smallest normal number (1 - bias). */
  readonly emin: number;
  readonly maxFinite: number;
  readonly minNormal: number;
  readonly minSubnormal: number;
}

/** Signed two's complement fixed point with `il` integer bits (sign included) and `fl` fraction bits. */
export interface FixedFormat {
  readonly kind: 'fixed';
  readonly name: string;
  readonly bits: number;
  readonly il: number;
  readonly fl: number;
  /** 2^(il-1) - 2^-fl. */
  readonly maxFinite: number;
  /** -2^(il-1). */
  readonly minFinite: number;
  /** The quantum 2^-fl (smallest positive value). */
  readonly minSubnormal: number;
}

/** Symmetric int8 codes in [-127, 127] times a per-tensor scale (max|x|/127 unless `scale` is fixed). */
export interface Int8Format {
  readonly kind: 'int8';
  readonly name: string;
  readonly bits: 8;
  readonly scale?: number;
}

/** IEEE float32 itself (quantize is the identity). */
export interface Fp32Format {
  readonly kind: 'fp32';
  readonly name: 'fp32';
  readonly bits: 32;
  readonly maxFinite: number;
  readonly minSubnormal: number;
}

/** Any format slimfit can quantize to. */
export type Format = FloatFormat | FixedFormat | Int8Format | Fp32Format;

/** Counters filled by {@link quantize} (added to, so one object can accumulate over many calls). */
export interface QuantStats {
  /** Finite inputs beyond the format's range (became inf, NaN or were saturated). */
  overflow: number;
  /** Nonzero finite inputs that became zero. */
  underflow: number;
  /** NaN inputs (returned as the canonical NaN, payload and sign dropped). */
  nan: number;
  /** The per-tensor scale used by the last int8 quantization. */
  scale?: number;
}

/** A zeroed {@link QuantStats}. */
export function newStats(): QuantStats {
  return { overflow: 0, underflow: 0, nan: 0 };
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
function f32bits(x: number): number {
  F32[0] = x;
  return U32[0];
}

/**
 * Generic float(exp, man): 2 <= exp <= 8, 1 <= man <= 22, so every value is exact in float32. The default overflow is
 * `inf` for ieee formats and `nan` for fn formats (which have no infinity).
 * @example floatFormat(4, 3, { special: 'fn', overflow: 'saturate' }) // OCP E4M3 in saturation mode
 */
export function floatFormat(exp: number, man: number, opts: { special?: 'ieee' | 'fn' | 'none'; overflow?: Overflow; name?: string } = {}): FloatFormat {
  if (!Number.isInteger(exp) || exp < 2 || exp > 8) throw new SlimfitError(`float format: exponent bits must be an integer in 2..8, got ${exp}`);
  if (!Number.isInteger(man) || man < 1 || man > 22) throw new SlimfitError(`float format: mantissa bits must be an integer in 1..22, got ${man}`);
  const special = opts.special ?? 'ieee';
  if (special === 'fn' && opts.overflow === 'inf') throw new SlimfitError(`float(e${exp},m${man},fn) has no infinity: its overflow can be 'nan' or 'saturate'`);
  if (special === 'none' && opts.overflow !== undefined && opts.overflow !== 'saturate') throw new SlimfitError(`float(e${exp},m${man},none) has no infinity and no NaN: its overflow can only be 'saturate'`);
  const bias = 2 ** (exp - 1) - 1;
  const emin = 1 - bias;
  // ieee: top exponent field reserved; fn: only the all-ones code (exponent and mantissa) is NaN.
  const maxFinite = special === 'ieee'
    ? (2 - 2 ** -man) * 2 ** (2 ** exp - 2 - bias)
    : special === 'fn' ? (2 - 2 ** (1 - man)) * 2 ** (2 ** exp - 1 - bias) : (2 - 2 ** -man) * 2 ** (2 ** exp - 1 - bias);
  return {
    kind: 'float', name: opts.name ?? `float(e${exp},m${man}${special === 'ieee' ? '' : `,${special}`})`, bits: 1 + exp + man,
    exp, man, bias, special, overflow: opts.overflow ?? (special === 'ieee' ? 'inf' : special === 'fn' ? 'nan' : 'saturate'),
    emin, maxFinite, minNormal: 2 ** emin, minSubnormal: 2 ** (emin - man),
  };
}

/** IEEE 754 binary16: 1/5/10, max 65504, subnormals down to 2^-24, overflow to inf (as numpy). */
export const FP16 = floatFormat(5, 10, { name: 'fp16' });
/** bfloat16: 1/8/7, the float32 exponent range, overflow to inf (as PyTorch). */
export const BF16 = floatFormat(8, 7, { name: 'bf16' });
/**
 * OCP FP8 E4M3: bias 7, max 448, no inf, NaN = S.1111.111. Overflow (and ±inf) become NaN, the OCP non-saturating
 * conversion (ml_dtypes, PyTorch float8_e4m3fn); `withOverflow(E4M3, 'saturate')` is the saturation mode.
 */
export const E4M3 = floatFormat(4, 3, { special: 'fn', name: 'e4m3' });
/** OCP FP8 E5M2: bias 15, max 57344, IEEE-like inf/NaN; overflow to inf (non-saturating). */
export const E5M2 = floatFormat(5, 2, { name: 'e5m2' });
/** OCP FP6 E3M2 (an MXFP6 element): bias 3, max 28, no inf/NaN, saturating. */
export const E3M2 = floatFormat(3, 2, { special: 'none', name: 'e3m2' });
/** OCP FP6 E2M3 (an MXFP6 element): bias 1, max 7.5, no inf/NaN, saturating. */
export const E2M3 = floatFormat(2, 3, { special: 'none', name: 'e2m3' });
/** OCP FP4 E2M1 (the MXFP4 element): bias 1, values 0, 0.5, 1, 1.5, 2, 3, 4, 6, no inf/NaN, saturating. */
export const E2M1 = floatFormat(2, 1, { special: 'none', name: 'e2m1' });

/**
 * The same float format with another default overflow behaviour; its name says so (e.g. `e4m3(sat)`).
 * @example quantize(withOverflow(E4M3, 'saturate'), Float32Array.of(1000)) // [448]
 */
export function withOverflow(fmt: FloatFormat, overflow: Overflow): FloatFormat {
  if (overflow === fmt.overflow) return fmt;
  if (overflow === 'inf' && fmt.special === 'fn') throw new SlimfitError(`${fmt.name} has no infinity: its overflow can be 'nan' or 'saturate'`);
  if (fmt.special === 'none') throw new SlimfitError(`${fmt.name} has no infinity and no NaN: its overflow can only be 'saturate'`);
  const base = fmt.name.replace(/\((sat|inf|nan)\)$/, '');
  const dflt = fmt.special === 'ieee' ? 'inf' : 'nan';
  return { ...fmt, overflow, name: overflow === dflt ? base : `${base}(${overflow === 'saturate' ? 'sat' : overflow})` };
}

/**
 * One phrase naming what overflow does in `fmt` (for table captions).
 * @example overflowNote(E4M3) // 'e4m3: overflow to NaN'
 */
export function overflowNote(fmt: Format): string {
  if (fmt.kind === 'fp32') return 'fp32: overflow to inf';
  if (fmt.kind !== 'float') return `${fmt.name}: saturates`;
  return `${fmt.name}: overflow ${fmt.overflow === 'saturate' ? 'saturates to ±max' : fmt.overflow === 'inf' ? 'to ±inf' : 'to NaN'}`;
}
/** float32 (identity). */
export const FP32: Fp32Format = { kind: 'fp32', name: 'fp32', bits: 32, maxFinite: 3.4028234663852886e38, minSubnormal: 2 ** -149 };

/** Signed fixed point <il, fl>: range [-2^(il-1), 2^(il-1) - 2^-fl], saturating; il + fl <= 32. */
export function fixedFormat(il: number, fl: number, name?: string): FixedFormat {
  if (!Number.isInteger(il) || !Number.isInteger(fl) || il < 1 || fl < 0 || il + fl > 32 || il + fl < 2) {
    throw new SlimfitError(`fixed point <${il},${fl}>: need integers il >= 1, fl >= 0, 2 <= il + fl <= 32`);
  }
  return {
    kind: 'fixed', name: name ?? `fixed<${il},${fl}>`, bits: il + fl, il, fl,
    maxFinite: 2 ** (il - 1) - 2 ** -fl, minFinite: -(2 ** (il - 1)), minSubnormal: 2 ** -fl,
  };
}

/** int8 with a per-tensor scale (computed as max|x|/127 on each call unless `scale` is given). */
export function int8Format(scale?: number): Int8Format {
  if (scale !== undefined && !(scale > 0 && Number.isFinite(scale))) throw new SlimfitError(`int8 scale must be a positive finite number, got ${scale}`);
  return scale === undefined ? { kind: 'int8', name: 'int8', bits: 8 } : { kind: 'int8', name: `int8(scale=${scale})`, bits: 8, scale };
}

/**
 * Parse a format name: fp32, fp16, bf16, e4m3, e5m2, e3m2, e2m3, e2m1 (fp4), int8, fixed<IL,FL> (or fixedIL.FL),
 * float(E,M) / float(E,M,fn) / float(E,M,none).
 */
export function parseFormat(s: string): Format {
  const sfx = /^(.*?)\s*[:(]\s*(sat|saturate|nan|inf)\s*\)?$/.exec(s.trim().toLowerCase());
  if (sfx) {
    const f = parseFormat(sfx[1]);
    if (f.kind !== 'float') throw new SlimfitError(`"${s}": an overflow mode applies to float formats only`, { hint: 'fixed point and int8 always saturate' });
    return withOverflow(f, sfx[2] === 'sat' || sfx[2] === 'saturate' ? 'saturate' : sfx[2] as Overflow);
  }
  const t = s.trim().toLowerCase();
  const named: Record<string, Format> = { fp32: FP32, float32: FP32, fp16: FP16, float16: FP16, half: FP16, bf16: BF16, bfloat16: BF16, e4m3: E4M3, fp8: E4M3, 'fp8-e4m3': E4M3, e5m2: E5M2, 'fp8-e5m2': E5M2, e3m2: E3M2, 'fp6-e3m2': E3M2, e2m3: E2M3, 'fp6-e2m3': E2M3, e2m1: E2M1, 'fp4-e2m1': E2M1, fp4: E2M1, int8: int8Format() };
  if (named[t]) return named[t];
  let m = /^fixed\s*[<(]?\s*(\d+)\s*[,.]\s*(\d+)\s*[>)]?$/.exec(t);
  if (m) return fixedFormat(Number(m[1]), Number(m[2]));
  m = /^float\s*\(\s*e?(\d+)\s*,\s*m?(\d+)\s*(?:,\s*(ieee|fn|none))?\s*\)$/.exec(t);
  if (m) return floatFormat(Number(m[1]), Number(m[2]), { special: (m[3] as 'ieee' | 'fn' | 'none' | undefined) ?? 'ieee' });
  throw new SlimfitError(`unknown number format "${s}"`, { hint: 'use fp32, fp16, bf16, e4m3, e5m2, e3m2, e2m3, e2m1, int8, fixed<IL,FL> or float(E,M[,fn|none]); a float format may end in :sat, :inf or :nan (overflow mode)' });
}

/** Bytes one value occupies when stored in `fmt` (bits / 8). */
export function bytesPer(fmt: Format): number {
  return fmt.bits / 8;
}

/** Smallest positive representable magnitude (NaN for int8, whose step depends on the tensor). */
export function smallestPositive(fmt: Format): number {
  return fmt.kind === 'int8' ? (fmt.scale ?? NaN) : fmt.minSubnormal;
}

// 2^k for k in [-400, 400], so loops never call Math.pow.
const P2_OFF = 400;
const P2 = new Float64Array(801);
for (let k = -400; k <= 400; k++) P2[k + P2_OFF] = 2 ** k;

/** Quantization options: rounding mode (default nearest-even), PRNG for stochastic, output array, counters. */
export interface QuantizeOptions {
  rounding?: Rounding;
  /** Overrides the float format's default overflow behaviour (fixed point and int8 always saturate). */
  overflow?: Overflow;
  rng?: Rng;
  /** Where to write (may be the input itself for in-place); a new array when omitted. */
  out?: Float32Array;
  stats?: QuantStats;
}

/**
 * Round every element of `x` to the nearest representable value of `fmt` (per `rounding`), written as float32.
 * Nearest is round-half-to-even; stochastic rounds up with probability equal to the remainder's fraction of the
 * step (exact for remainders resolvable in 32 random bits); zero truncates. The input is float32, so this is one
 * rounding; for doubles or sums use {@link quantizeScalar}, {@link quantizeF64} or {@link quantizeSum}. Every NaN
 * becomes the canonical NaN ({@link CANONICAL_NAN_BITS}). Returns the output array.
 * @example quantize(BF16, Float32Array.of(1.00390625)) // [1] (tie to even)
 */
export function quantize(fmt: Format, x: Float32Array, opts: QuantizeOptions = {}): Float32Array {
  const out = opts.out ?? new Float32Array(x.length);
  if (out.length !== x.length) throw new Error(`quantize: output length ${out.length} != input length ${x.length}`);
  const rounding = opts.rounding ?? 'nearest';
  if (rounding === 'stochastic' && !opts.rng) throw new Error('quantize: stochastic rounding needs opts.rng');
  const st = opts.stats ?? newStats();
  switch (fmt.kind) {
    case 'fp32':
      if (out !== x) out.set(x);
      for (let i = 0; i < x.length; i++) if (x[i] !== x[i]) { st.nan++; out[i] = NaN; }
      return out;
    case 'float': {
      if (opts.overflow && opts.overflow !== fmt.overflow) fmt = withOverflow(fmt, opts.overflow);
      const inp = new Uint32Array(x.buffer, x.byteOffset, x.length);
      const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
      const k = x.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
      if (k) {
        const c = floatConsts(fmt);
        const mode = rounding === 'nearest' ? 0 : rounding === 'zero' ? 1 : 2;
        k.quantFloat(inp, o, mode, c.shift, c.notMask, c.minNormBits, c.maxBits, c.ovBits, c.infBits, c.sub0, c.qExp, mode === 2 ? opts.rng!.state : null, COUNTS);
        st.overflow += COUNTS[0]; st.underflow += COUNTS[1]; st.nan += COUNTS[2];
      } else if (rounding === 'nearest') qFloatNearest(fmt, inp, o, st);
      else if (rounding === 'zero') qFloatZero(fmt, inp, o, st);
      else qFloatStochastic(fmt, inp, o, st, opts.rng!);
      return out;
    }
    case 'fixed':
      qFixed(fmt.fl, -(2 ** (fmt.bits - 1)), 2 ** (fmt.bits - 1) - 1, x, out, rounding, opts.rng, st);
      return out;
    case 'int8': {
      let scale = fmt.scale;
      if (scale === undefined) {
        let mx = 0;
        for (let i = 0; i < x.length; i++) { const a = Math.abs(x[i]); if (a > mx) mx = a; }
        scale = mx > 0 && Number.isFinite(mx) ? mx / 127 : 1;
      }
      st.scale = scale;
      qScaled(scale, -127, 127, x, out, rounding, opts.rng, st);
      return out;
    }
  }
}

/** Constants shared by the float loops (and handed to the native ones). */
export function floatConsts(f: FloatFormat) {
  const shift = 23 - f.man;
  const eminB = f.emin + 127; // float32 biased exponent of the format's smallest normal (>= 1)
  const maxBits = f32bits(f.maxFinite);
  return {
    shift, notMask: ~((1 << shift) - 1), eminB, minNormBits: eminB << 23, maxBits,
    ovBits: f.overflow === 'inf' ? 0x7f800000 : f.overflow === 'saturate' ? maxBits : 0x7fc00000,
    // float32 bits for an infinite input: kept by ieee formats; fn formats have no inf (NaN, or ±max when saturating).
    infBits: f.special === 'ieee' ? 0x7f800000 : f.overflow === 'saturate' ? maxBits : 0x7fc00000,
    sub0: shift + eminB, qExp: f.emin - f.man,
  };
}

/** float32 bits of q * 2^qExp for a small positive integer q (exactly representable). */
function bitsOfMultiple(q: number, qExp: number): number {
  const p = 31 - Math.clz32(q);
  const be = p + qExp + 127;
  return be >= 1 ? (be << 23) | ((q << (23 - p)) & 0x7fffff) : q << (qExp + 149);
}

function qFloatNearest(f: FloatFormat, inp: Uint32Array, out: Uint32Array, st: QuantStats): void {
  const { shift, notMask, minNormBits, maxBits, ovBits, infBits, sub0, qExp } = floatConsts(f);
  const hb = (1 << (shift - 1)) - 1;
  let ov = 0, uf = 0, nan = 0;
  for (let i = 0; i < inp.length; i++) {
    const b = inp[i];
    const a = b & 0x7fffffff;
    const s = b & 0x80000000;
    let r: number;
    if (a >= minNormBits) {
      if (a >= 0x7f800000) {
        if (a > 0x7f800000) { out[i] = CANONICAL_NAN_BITS; nan++; } else out[i] = infBits === CANONICAL_NAN_BITS ? infBits : s | infBits; // a NaN result is the canonical one, unsigned
        continue;
      }
      r = (a + hb + ((a >>> shift) & 1)) & notMask;
      if (r > maxBits) { r = ovBits; ov++; }
    } else {
      const e = a >>> 23;
      const m = e ? (a & 0x7fffff) | 0x800000 : a;
      const sh = sub0 - (e || 1);
      let q = 0;
      if (sh < 25) {
        q = m >>> sh;
        const rem = m & ((1 << sh) - 1);
        const half = 1 << (sh - 1);
        if (rem > half || (rem === half && (q & 1))) q++;
      }
      if (q === 0) { r = 0; if (a !== 0) uf++; } else r = bitsOfMultiple(q, qExp);
    }
    out[i] = r === CANONICAL_NAN_BITS ? r : s | r;
  }
  st.overflow += ov; st.underflow += uf; st.nan += nan;
}

function qFloatZero(f: FloatFormat, inp: Uint32Array, out: Uint32Array, st: QuantStats): void {
  const { notMask, minNormBits, maxBits, infBits, sub0, qExp } = floatConsts(f);
  let ov = 0, uf = 0, nan = 0;
  for (let i = 0; i < inp.length; i++) {
    const b = inp[i];
    const a = b & 0x7fffffff;
    const s = b & 0x80000000;
    let r: number;
    if (a >= minNormBits) {
      if (a >= 0x7f800000) {
        if (a > 0x7f800000) { out[i] = CANONICAL_NAN_BITS; nan++; } else out[i] = infBits === CANONICAL_NAN_BITS ? infBits : s | infBits;
        continue;
      }
      r = a & notMask;
      if (r > maxBits) { r = maxBits; ov++; } // toward zero never rounds up to inf: saturate
    } else {
      const e = a >>> 23;
      const m = e ? (a & 0x7fffff) | 0x800000 : a;
      const sh = sub0 - (e || 1);
      const q = sh < 25 ? m >>> sh : 0;
      if (q === 0) { r = 0; if (a !== 0) uf++; } else r = bitsOfMultiple(q, qExp);
    }
    out[i] = r === CANONICAL_NAN_BITS ? r : s | r;
  }
  st.overflow += ov; st.underflow += uf; st.nan += nan;
}

function qFloatStochastic(f: FloatFormat, inp: Uint32Array, out: Uint32Array, st: QuantStats, rng: Rng): void {
  const { shift, notMask, minNormBits, maxBits, ovBits, infBits, sub0, qExp } = floatConsts(f);
  const rs = 32 - shift;
  const ss = rng.state;
  let s0 = ss[0], s1 = ss[1], s2 = ss[2], s3 = ss[3];
  let ov = 0, uf = 0, nan = 0;
  for (let i = 0; i < inp.length; i++) {
    // inlined xoshiro128** step (same stream as rng.u32())
    const mm = Math.imul(s1, 5);
    const rnd = Math.imul((mm << 7) | (mm >>> 25), 9) >>> 0;
    const t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
    const b = inp[i];
    const a = b & 0x7fffffff;
    const s = b & 0x80000000;
    let r: number;
    if (a >= minNormBits) {
      if (a >= 0x7f800000) {
        if (a > 0x7f800000) { out[i] = CANONICAL_NAN_BITS; nan++; } else out[i] = infBits === CANONICAL_NAN_BITS ? infBits : s | infBits;
        continue;
      }
      r = (a + (rnd >>> rs)) & notMask; // up with probability remainder / step
      if (r > maxBits) { r = ovBits; ov++; }
    } else {
      const e = a >>> 23;
      const m = e ? (a & 0x7fffff) | 0x800000 : a;
      const sh = sub0 - (e || 1);
      let q: number, rem: number;
      if (sh < 32) { q = m >>> sh; rem = m & ((1 << sh) - 1); } else { q = 0; rem = m; }
      if (rnd < rem * P2[P2_OFF + 32 - sh]) q++;
      if (q === 0) { r = 0; if (a !== 0) uf++; } else r = bitsOfMultiple(q, qExp);
    }
    out[i] = r === CANONICAL_NAN_BITS ? r : s | r;
  }
  ss[0] = s0; ss[1] = s1; ss[2] = s2; ss[3] = s3;
  st.overflow += ov; st.underflow += uf; st.nan += nan;
}

const MAGIC = 6755399441055744; // 2^52 + 2^51: (y + MAGIC) - MAGIC rounds half-to-even for |y| < 2^51

/** Fixed point: integer codes q in [lo, hi], value q * 2^-fl. */
function qFixed(fl: number, lo: number, hi: number, x: Float32Array, out: Float32Array, rounding: Rounding, rng: Rng | undefined, st: QuantStats): void {
  qScaledCore(P2[P2_OFF + fl], P2[P2_OFF - fl], lo, hi, x, out, rounding, rng, st);
}

/** Integer codes times a scale: q = round(x / scale) clamped to [lo, hi]. */
function qScaled(scale: number, lo: number, hi: number, x: Float32Array, out: Float32Array, rounding: Rounding, rng: Rng | undefined, st: QuantStats): void {
  qScaledCore(1 / scale, scale, lo, hi, x, out, rounding, rng, st, true);
}

function qScaledCore(mul: number, step: number, lo: number, hi: number, x: Float32Array, out: Float32Array, rounding: Rounding, rng: Rng | undefined, st: QuantStats, divide = false): void {
  const k = x.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) {
    k.quantScaled(x, out, mul, step, lo, hi, rounding === 'nearest' ? 0 : rounding === 'zero' ? 1 : 2, divide ? 1 : 0, rng ? rng.state : null, COUNTS);
    st.overflow += COUNTS[0]; st.underflow += COUNTS[1]; st.nan += COUNTS[2];
    return;
  }
  let ov = 0, uf = 0, nan = 0;
  const div = step; // for int8 (divide=true) y = x / scale exactly as a double division
  const mode = rounding === 'nearest' ? 0 : rounding === 'zero' ? 1 : 2;
  const ss = rng ? rng.state : new Uint32Array(4);
  let s0 = ss[0], s1 = ss[1], s2 = ss[2], s3 = ss[3];
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (v !== v) { out[i] = NaN; nan++; continue; }
    const y = divide ? v / div : v * mul;
    let q: number;
    if (mode === 0) {
      if (y >= hi + 0.5) { q = hi; ov++; } else if (y < lo - 0.5) { q = lo; ov++; } else q = (y + MAGIC) - MAGIC;
    } else if (mode === 1) {
      if (y >= hi + 1) { q = hi; ov++; } else if (y <= lo - 1) { q = lo; ov++; } else q = Math.trunc(y);
    } else {
      // inlined xoshiro128** step (same stream as rng.u32())
      const mm = Math.imul(s1, 5);
      const rnd = Math.imul((mm << 7) | (mm >>> 25), 9) >>> 0;
      const t = s1 << 9;
      s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
      if (y > hi) { q = hi; ov++; } else if (y < lo) { q = lo; ov++; } else {
        const fl0 = Math.floor(y);
        q = fl0 + (rnd < (y - fl0) * 4294967296 ? 1 : 0);
      }
    }
    if (q === 0 && v !== 0) uf++;
    out[i] = q * step + 0; // + 0 turns -0 into +0 (fixed point has one zero)
  }
  if (rng) { ss[0] = s0; ss[1] = s1; ss[2] = s2; ss[3] = s3; }
  st.overflow += ov; st.underflow += uf; st.nan += nan;
}

// ---- rounding from doubles and exact sums (one rounding, never via float32 first) ----

const D64 = new Float64Array(1);
const D32 = new Uint32Array(D64.buffer);

/** Per-call state of the double-input rounding. */
interface DState { fmt: Format; rounding: Rounding; rng: Rng | undefined; st: QuantStats; overflow: Overflow; lo: number; hi: number; mul: number; step: number }

function dState(fmt: Format, opts: QuantizeOptions): DState {
  const rounding = opts.rounding ?? 'nearest';
  if (rounding === 'stochastic' && !opts.rng) throw new Error('quantize: stochastic rounding needs opts.rng');
  const st = opts.stats ?? newStats();
  let lo = 0, hi = 0, mul = 1, step = 1;
  if (fmt.kind === 'fixed') { lo = -(2 ** (fmt.bits - 1)); hi = 2 ** (fmt.bits - 1) - 1; mul = 2 ** fmt.fl; step = 2 ** -fmt.fl; }
  if (fmt.kind === 'int8') throw new SlimfitError('int8 has a per-tensor scale: quantize the float32 array with quantize()');
  if (fmt.kind === 'float' && fmt.special === 'none' && opts.overflow !== undefined && opts.overflow !== 'saturate') throw new SlimfitError(`${fmt.name} has no infinity and no NaN: its overflow can only be 'saturate'`);
  if (fmt.kind === 'float' && fmt.special === 'fn' && opts.overflow === 'inf') throw new SlimfitError(`${fmt.name} has no infinity: its overflow can be 'nan' or 'saturate'`);
  return { fmt, rounding, rng: opts.rng, st, overflow: opts.overflow ?? (fmt.kind === 'float' ? fmt.overflow : 'inf'), lo, hi, mul, step };
}

/**
 * Round the exact real number s + e (s a double, e its error term with |e| <= ulp(s)/2, as from TwoSum) once to the
 * format. Returns a float32-exact double (or ±inf / NaN).
 */
function roundExact(d: DState, s: number, e: number): number {
  const st = d.st;
  if (s !== s) { st.nan++; return NaN; }
  const fmt = d.fmt;
  if (fmt.kind === 'int8') throw new Error('roundExact: int8 is scaled per tensor');
  if (s === Infinity || s === -Infinity) {
    if (fmt.kind === 'fixed') return s > 0 ? fmt.maxFinite : fmt.minFinite;
    if (fmt.kind === 'fp32' || fmt.special === 'ieee') return s;
    return d.overflow === 'saturate' ? (s > 0 ? fmt.maxFinite : -fmt.maxFinite) : NaN;
  }
  if (fmt.kind === 'fixed') return roundFixed(d, s, e);
  const f = fmt.kind === 'fp32' ? F32_AS_FLOAT : fmt;
  const neg = s < 0 || (s === 0 && 1 / s < 0);
  const a = Math.abs(s);
  const ea = neg ? -e : e; // error term in the direction of |s|
  if (a === 0) return neg ? -0 : 0; // an exact zero sum has e = 0
  D64[0] = a;
  const E = (D32[1] >>> 20) - 1023; // exponent of a (double subnormals: far below every format, treated as tiny)
  const ex = Math.max(E, f.emin);
  const quantum = P2x(ex - f.man);
  const q = a / quantum; // exact: a power-of-two scaling
  let k = Math.floor(q);
  const frac = q - k; // exact: q < 2^(man+1) when E >= emin, else q < 2^man
  if (d.rounding === 'nearest') {
    if (frac > 0.5 || (frac === 0.5 && (ea > 0 || (ea === 0 && (k & 1) === 1)))) k++;
  } else if (d.rounding === 'zero') {
    if (frac === 0 && ea < 0) {
      // just below a grid point: one step down (a finer step when the point starts a binade)
      if (k === 2 ** f.man && ex > f.emin) return sign(neg, a - quantum / 2);
      k--;
    }
  } else {
    const p = frac + ea / quantum; // probability of rounding up (ea shifts it by < 2^-52 relative)
    if (p > 0 && d.rng!.u32() < p * 4294967296) k++;
  }
  const r = k * quantum;
  if (r > f.maxFinite) {
    st.overflow++;
    if (d.rounding === 'zero' || d.overflow === 'saturate') return sign(neg, f.maxFinite);
    return d.overflow === 'inf' ? (neg ? -Infinity : Infinity) : NaN;
  }
  if (r === 0) st.underflow++;
  return sign(neg, r);
}

function sign(neg: boolean, v: number): number {
  return neg ? -v : v;
}

function P2x(k: number): number {
  return k >= -400 && k <= 400 ? P2[k + P2_OFF] : 2 ** k;
}

/** float32 as a generic float (exponent 8, mantissa 23) for the double path only. */
const F32_AS_FLOAT: FloatFormat = {
  kind: 'float', name: 'fp32', bits: 32, exp: 8, man: 23, bias: 127, special: 'ieee', overflow: 'inf',
  emin: -126, maxFinite: 3.4028234663852886e38, minNormal: 2 ** -126, minSubnormal: 2 ** -149,
};

function roundFixed(d: DState, s: number, e: number): number {
  const { lo, hi, mul, step, st } = d;
  const y = s * mul, ye = e * mul; // exact power-of-two scalings
  let q: number;
  if (y > hi + 1 || y < lo - 1) { st.overflow++; return (y > 0 ? hi : lo) * step + 0; }
  const k0 = Math.floor(y);
  const frac = y - k0;
  if (d.rounding === 'nearest') {
    q = frac > 0.5 || (frac === 0.5 && (ye > 0 || (ye === 0 && (k0 & 1) === 1))) ? k0 + 1 : k0;
  } else if (d.rounding === 'zero') {
    if (y >= 0) q = frac === 0 && ye < 0 ? k0 - 1 : k0;
    else q = frac === 0 ? (ye > 0 ? k0 + 1 : k0) : k0 + 1;
  } else {
    const p = frac + ye;
    q = p > 0 && d.rng!.u32() < p * 4294967296 ? k0 + 1 : k0;
  }
  if (q > hi) { st.overflow++; q = hi; } else if (q < lo) { st.overflow++; q = lo; }
  if (q === 0 && s !== 0) st.underflow++;
  return q * step + 0;
}

/**
 * Quantize one number, a double, with a single rounding (never rounded to float32 first).
 * @example quantizeScalar(FP16, 1 + 2 ** -11 + 2 ** -40) // 1.0009765625, as numpy's np.float16(...)
 */
export function quantizeScalar(fmt: Format, v: number, rounding: Rounding = 'nearest', rng?: Rng, opts: { overflow?: Overflow; stats?: QuantStats } = {}): number {
  if (fmt.kind === 'int8') return quantize(fmt, Float32Array.of(v), { rounding, rng })[0];
  return roundExact(dState(fmt, { rounding, rng, ...opts }), v, 0);
}

/**
 * Quantize float64 values with one rounding each (a double is not rounded to float32 first), into float32.
 * @example quantizeF64(BF16, Float64Array.of(1 + 2 ** -8 + 2 ** -30)) // [1.0078125]
 */
export function quantizeF64(fmt: Format, x: Float64Array, opts: QuantizeOptions = {}): Float32Array {
  const out = opts.out ?? new Float32Array(x.length);
  if (out.length !== x.length) throw new Error(`quantizeF64: output length ${out.length} != input length ${x.length}`);
  const d = dState(fmt, opts);
  for (let i = 0; i < x.length; i++) out[i] = roundExact(d, x[i], 0);
  return out;
}

/**
 * out[i] = round(a[i] + b[i]) with the exact sum rounded once (TwoSum gives the double sum and its error term), as a
 * weight update w + Δ should be: rounding the float32 or double sum first and then to the format can differ at ties
 * (double rounding). An infinite addend gives what quantize() gives for ±inf (an infinite sum is exact, not an
 * overflow); a finite sum beyond the format's range counts one overflow. `out` may be `a`.
 * @example quantizeSum(BF16, Float32Array.of(1), Float32Array.of(2 ** -8 + 2 ** -30)) // [1.0078125]
 */
export function quantizeSum(fmt: Format, a: Float32Array, b: Float32Array, opts: QuantizeOptions = {}): Float32Array {
  const out = opts.out ?? new Float32Array(a.length);
  if (b.length !== a.length || out.length !== a.length) throw new Error(`quantizeSum: lengths ${a.length}, ${b.length}, ${out.length} differ`);
  if (fmt.kind === 'int8') throw new SlimfitError('int8 has a per-tensor scale: form the sum in float32 and quantize() it');
  const d = dState(fmt, opts);
  if (fmt.kind === 'fp32') {
    // float32 is at least 2p + 2 bits narrower than double, so fround(x + y) is the correctly rounded sum
    for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
    return out;
  }
  if ((fmt.kind === 'float' && fmt.man > 21) || (fmt.kind === 'fixed' && fmt.bits > 22)) {
    for (let i = 0; i < a.length; i++) out[i] = roundExact(d, ...twoSum(a[i], b[i]));
    return out;
  }
  // Round the exact sum to float32 with round-to-odd (inexact results get their last bit set), then to the format:
  // with at least 2 more bits than the format, round-to-odd followed by rounding is the correct single rounding
  // (Boldo & Melquiond 2008) for nearest and toward zero; stochastic rounding sees the sum to within 2^(man-23) step.
  const k = a.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) {
    k.sumOdd(a, b, out);
    return quantize(fmt, out, { ...opts, out, stats: d.st });
  }
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    const s = x + y;
    const bv = s - x;
    const e = (x - (s - bv)) + (y - bv); // TwoSum (Knuth): s + e == x + y exactly
    const f = Math.fround(s);
    out[i] = f;
    // an infinite addend makes s infinite and e NaN: the sum is exactly ±inf (or NaN), nothing to round
    if ((f !== s || e !== 0) && s - s === 0 && (u[i] & 1) === 0) {
      const up = f !== s ? Math.abs(s) > Math.abs(f) : (s > 0) === (e > 0); // exact |sum| above |f|?
      u[i] = up ? u[i] + 1 : u[i] - 1;
    }
  }
  return quantize(fmt, out, { ...opts, out, stats: d.st });
}

function twoSum(x: number, y: number): [number, number] {
  const s = x + y;
  const bv = s - x;
  const e = (x - (s - bv)) + (y - bv);
  return [s, e === e ? e : 0];
}

// ---- codes (bit patterns of the stored format) ----

/** Typed array holding codes of a format with at most 16 bits. */
export type Codes = Uint8Array | Uint16Array;

/**
 * Encode values as codes of a float format (<= 16 bits): values are first rounded to nearest-even (overflow per the
 * format's default). Every NaN becomes the format's canonical NaN code: the positive quiet NaN (fp16 0x7e00, bf16
 * 0x7fc0, e5m2 0x7e) or, for fn formats, 0x7f; formats without NaN (`special: 'none'`) refuse a NaN.
 * @example encode(FP16, Float32Array.of(1, NaN)) // Uint16Array [0x3c00, 0x7e00]
 */
export function encode(fmt: FloatFormat, x: Float32Array, out?: Codes): Codes {
  if (fmt.bits > 16) throw new SlimfitError(`encode: ${fmt.name} has ${fmt.bits} bits; codes are supported up to 16 bits`);
  const codes = out ?? (fmt.bits <= 8 ? new Uint8Array(x.length) : new Uint16Array(x.length));
  const q = quantize(fmt, x);
  const u = new Uint32Array(q.buffer, q.byteOffset, q.length);
  const { shift, minNormBits, sub0 } = floatConsts(fmt);
  const M = fmt.man;
  const signBit = 1 << (fmt.exp + M);
  const expOnes = ((1 << fmt.exp) - 1) << M;
  const manMask = (1 << M) - 1;
  const allOnes = expOnes | manMask;
  for (let i = 0; i < u.length; i++) {
    const b = u[i];
    const a = b & 0x7fffffff;
    const s = b >>> 31 ? signBit : 0;
    let c: number;
    if (a > 0x7f800000) {
      if (fmt.special === 'none') throw new SlimfitError(`encode: ${fmt.name} has no NaN code, and element ${i} is NaN`, { hint: 'an MX block carries NaN in its E8M0 scale (mxEncode); replace NaNs before encoding plain FP6/FP4 codes' });
      codes[i] = fmt.special === 'fn' ? allOnes : expOnes | (1 << (M - 1));
      continue;
    } else if (a === 0x7f800000) c = fmt.special === 'ieee' ? expOnes : allOnes;
    else if (a >= minNormBits) c = ((((a >>> 23) - 127 + fmt.bias) << M) | ((a >>> shift) & manMask));
    else {
      const e = a >>> 23;
      const m = e ? (a & 0x7fffff) | 0x800000 : a;
      const sh = sub0 - (e || 1);
      c = sh < 32 ? m >>> sh : 0;
    }
    codes[i] = s | c;
  }
  return codes;
}

const decodeTables = new Map<string, Uint32Array>();

/** float32 bits of every code of a float format (every NaN code decodes to the canonical NaN). */
function decodeTable(fmt: FloatFormat): Uint32Array {
  const key = `${fmt.exp}/${fmt.man}/${fmt.special}`;
  let t = decodeTables.get(key);
  if (t) return t;
  const n = 1 << fmt.bits;
  t = new Uint32Array(n);
  const M = fmt.man;
  const manMask = (1 << M) - 1;
  const expMax = (1 << fmt.exp) - 1;
  for (let c = 0; c < n; c++) {
    const s = (c >>> (fmt.exp + M)) & 1;
    const e = (c >>> M) & expMax;
    const m = c & manMask;
    let bits: number;
    if ((fmt.special === 'ieee' && e === expMax && m !== 0) || (fmt.special === 'fn' && e === expMax && m === manMask)) { t[c] = CANONICAL_NAN_BITS; continue; }
    if (fmt.special === 'ieee' && e === expMax) bits = 0x7f800000;
    else bits = f32bits(e === 0 ? m * 2 ** (fmt.emin - M) : (1 + m / 2 ** M) * 2 ** (e - fmt.bias));
    t[c] = (s ? 0x80000000 | bits : bits) >>> 0;
  }
  decodeTables.set(key, t);
  return t;
}

/**
 * Decode codes of a float format (<= 16 bits) to float32 values (NaN codes to the canonical NaN).
 * @example decode(FP16, Uint16Array.of(0x3c00)) // Float32Array [1]
 */
export function decode(fmt: FloatFormat, codes: Codes, out?: Float32Array): Float32Array {
  if (fmt.bits > 16) throw new SlimfitError(`decode: ${fmt.name} has ${fmt.bits} bits; codes are supported up to 16 bits`);
  const res = out ?? new Float32Array(codes.length);
  const u = new Uint32Array(res.buffer, res.byteOffset, res.length);
  const t = decodeTable(fmt);
  const mask = (1 << fmt.bits) - 1;
  for (let i = 0; i < codes.length; i++) u[i] = t[codes[i] & mask];
  return res;
}
