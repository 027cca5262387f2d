// OCP Microscaling (MX) v1.0 formats: blocks of 32 elements along one axis share an E8M0 (power-of-two) scale.
// MXFP8 (E4M3, E5M2), MXFP6 (E3M2, E2M3), MXFP4 (E2M1) and MXINT8, as fake quantization (float32 in, float32 out)
// and as codes (E8M0 scale bytes + element codes).
import { SlimfitError } from '../core/errors.ts';
import { E2M1, E2M3, E3M2, E4M3, E5M2, NATIVE_MIN_LENGTH, newStats, withOverflow, encode, type FloatFormat, type QuantStats } from './formats.ts';
import { nativeQuant } from './native.ts';

/** The E8M0 code of NaN (the only special E8M0 value; E8M0 has no zero and no infinity). */
export const E8M0_NAN = 0xff;
/** E8M0 exponent bias: code c means 2^(c - 127), c in 0..254. */
export const E8M0_BIAS = 127;

/**
 * An MX format: `blockSize` elements share one E8M0 scale 2^shared_exp. `element` is the element float format (null
 * for MXINT8, whose elements are two's-complement int8 codes k times 2^-6, clamped to ±127 as Rouhani et al. 2023
 * and microsoft/microxcaling do). `emax` is the exponent of the largest power of two the element type represents.
 */
export interface MxFormat {
  readonly kind: 'mx';
  readonly name: string;
  readonly element: FloatFormat | null;
  readonly elementBits: number;
  readonly emax: number;
  /** Largest element magnitude (E4M3 448, E5M2 57344, E3M2 28, E2M3 7.5, E2M1 6, INT8 127/64). */
  readonly maxNormal: number;
  readonly blockSize: number;
}

function mxFloat(name: string, el: FloatFormat): MxFormat {
  const e = el.special === 'none' ? el : withOverflow(el, 'saturate');
  return { kind: 'mx', name, element: e, elementBits: el.bits, emax: Math.floor(Math.log2(el.maxFinite)), maxNormal: el.maxFinite, blockSize: 32 };
}

/** MXFP8 with E4M3 elements (emax 8, max 448). */
export const MXFP8_E4M3 = mxFloat('mxfp8(e4m3)', E4M3);
/** MXFP8 with E5M2 elements (emax 15, max 57344). */
export const MXFP8_E5M2 = mxFloat('mxfp8(e5m2)', E5M2);
/** MXFP6 with E3M2 elements (emax 4, max 28). */
export const MXFP6_E3M2 = mxFloat('mxfp6(e3m2)', E3M2);
/** MXFP6 with E2M3 elements (emax 2, max 7.5). */
export const MXFP6_E2M3 = mxFloat('mxfp6(e2m3)', E2M3);
/** MXFP4 with E2M1 elements (emax 2, max 6). */
export const MXFP4_E2M1 = mxFloat('mxfp4(e2m1)', E2M1);
/** MXINT8: int8 elements with an implicit 2^-6 (values k/64, |k| <= 127; emax 0). */
export const MXINT8: MxFormat = { kind: 'mx', name: 'mxint8', element: null, elementBits: 8, emax: 0, maxNormal: 127 / 64, blockSize: 32 };

/** The six concrete MX formats of the OCP v1.0 spec, by name. */
export const MX_FORMATS: Readonly<Record<string, MxFormat>> = {
  'mxfp8-e4m3': MXFP8_E4M3, 'mxfp8-e5m2': MXFP8_E5M2, 'mxfp6-e3m2': MXFP6_E3M2, 'mxfp6-e2m3': MXFP6_E2M3,
  'mxfp4-e2m1': MXFP4_E2M1, mxfp4: MXFP4_E2M1, mxint8: MXINT8,
};

/**
 * Look an MX format up by name (mxfp8-e4m3, mxfp8-e5m2, mxfp6-e3m2, mxfp6-e2m3, mxfp4[-e2m1], mxint8).
 * @example mxFormat('mxfp4').maxNormal // 6
 */
export function mxFormat(name: string): MxFormat {
  const f = MX_FORMATS[name.trim().toLowerCase().replace(/[()]/g, (c) => (c === '(' ? '-' : ''))];
  if (!f) throw new SlimfitError(`unknown MX format "${name}"`, { hint: `use one of ${Object.keys(MX_FORMATS).join(', ')}` });
  return f;
}

/**
 * Average storage bits per element: element bits plus the 8-bit scale shared by a block.
 * @example mxBitsPerElement(MXFP4_E2M1) // 4.25
 */
export function mxBitsPerElement(fmt: MxFormat): number {
  return fmt.elementBits + 8 / fmt.blockSize;
}

/** Where the blocks run: a row-major tensor of `shape`, blocked along `axis` (e.g. a GEMM's reduction axis K). */
export interface MxLayout { shape: readonly number[]; axis: number }

interface Geometry { outer: number; len: number; inner: number; blocks: number }

function geometry(fmt: MxFormat, n: number, layout: MxLayout): Geometry {
  const { shape, axis } = layout;
  if (!Number.isInteger(axis) || axis < 0 || axis >= shape.length) throw new SlimfitError(`MX blocking axis ${axis} is outside a tensor of rank ${shape.length}`);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw new SlimfitError(`MX layout: shape [${shape.join(', ')}] must be non-negative integers`);
  const size = shape.reduce((a, b) => a * b, 1);
  if (size !== n) throw new SlimfitError(`MX layout: shape [${shape.join(', ')}] has ${size} elements but the array has ${n}`);
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const len = shape[axis];
  return { outer, len, inner, blocks: Math.ceil(len / fmt.blockSize) };
}

const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
const P2 = new Float64Array(601);
for (let k = -300; k <= 300; k++) P2[k + 300] = 2 ** k;
const MAGIC = 6755399441055744; // (y + MAGIC) - MAGIC rounds half to even for |y| < 2^51

/** floor(log2|v|) of a float32 value from its bits; -Infinity for 0, +Infinity for inf/NaN. */
function expOf(bits: number): number {
  const e = (bits >>> 23) & 0xff;
  if (e === 0xff) return Infinity;
  if (e) return e - 127;
  const m = bits & 0x7fffff;
  return m ? 31 - Math.clz32(m) - 149 : -Infinity;
}

/**
 * Shared exponent of a block from its largest element exponent: floor(log2 max|x|) - emax, clamped below at -127 (the
 * smallest E8M0 scale); an all-zero block uses log2 of float32's smallest normal (-126), as microxcaling does. NaN for
 * a block holding NaN or ±inf: 2^inf is no E8M0 value, and E8M0's one special code is NaN.
 */
function sharedExp(maxExp: number, emax: number): number {
  if (maxExp === Infinity) return NaN;
  const e = (maxExp === -Infinity ? -126 : maxExp) - emax;
  return e < -E8M0_BIAS ? -E8M0_BIAS : e;
}

/** One element rounded: |x| scaled by 2^-se, to nearest-even on the element grid, clamped to the max normal. */
function roundElement(fmt: MxFormat, x: number, ex: number, se: number, st: QuantStats): number {
  if (x === 0) return fmt.element ? x : 0;
  const a = Math.abs(x);
  let qe: number; // exponent of the element quantum, relative to the scale
  if (fmt.element) {
    const el = fmt.element;
    const ey = ex - se;
    qe = (ey > el.emin ? ey : el.emin) - el.man;
  } else qe = -6;
  const sh = se + qe;
  let k = (a * P2[300 - sh] + MAGIC) - MAGIC;
  let r: number;
  const kmax = fmt.maxNormal * P2[300 - qe];
  if (k > kmax) { k = kmax; st.overflow++; }
  r = k * P2[300 + sh];
  if (r === 0) st.underflow++;
  if (!fmt.element) return x < 0 && r !== 0 ? -r : r;
  return x < 0 ? -r : r;
}

/**
 * Per-block loop shared by quantize and encode: writes every rounded element to `out` and, when given, each block's
 * shared exponent to `scaleExp` (indexed (outer * blocks + block) * inner + innerIndex; NaN for a NaN block).
 */
function quantizeBlocks(fmt: MxFormat, x: Float32Array, g: Geometry, st: QuantStats, out: Float32Array, scaleExp: Float64Array | null): void {
  const { outer, len, inner, blocks } = g;
  const B = fmt.blockSize;
  const maxE = new Float64Array(inner);
  const xb = new Uint32Array(x.buffer, x.byteOffset, x.length);
  for (let o = 0; o < outer; o++) {
    for (let b = 0; b < blocks; b++) {
      const j0 = b * B, j1 = Math.min(len, j0 + B);
      maxE.fill(-Infinity);
      for (let j = j0; j < j1; j++) {
        const base = (o * len + j) * inner;
        for (let i = 0; i < inner; i++) { const e = expOf(xb[base + i]); if (e > maxE[i]) maxE[i] = e; }
      }
      for (let i = 0; i < inner; i++) maxE[i] = sharedExp(maxE[i], fmt.emax);
      if (scaleExp) scaleExp.set(maxE, (o * blocks + b) * inner);
      for (let j = j0; j < j1; j++) {
        const base = (o * len + j) * inner;
        for (let i = 0; i < inner; i++) {
          const se = maxE[i], at = base + i;
          if (se !== se) { out[at] = NaN; st.nan++; continue; }
          out[at] = roundElement(fmt, x[at], expOf(xb[at]), se, st);
        }
      }
    }
  }
}

/** Options of {@link mxQuantize}. */
export interface MxQuantizeOptions {
  /** Where to write (may be the input); a new array when omitted. */
  out?: Float32Array;
  /** Counters: clamped elements (overflow), nonzero elements that became 0 (underflow), elements of NaN blocks (nan). */
  stats?: QuantStats;
}

/**
 * Quantize a float32 tensor to an MX format and back (fake quantization), blocks of 32 along `layout.axis`; the last
 * block of a row may be shorter. Per the OCP MX v1.0 spec (section 6.3): the shared scale is 2^(floor(log2 max|x|) -
 * emax) (an E8M0 value, clamped below at 2^-127); elements x / scale are rounded to nearest-even in the element type
 * and clamped to its max normal, keeping the sign. A block holding NaN or ±inf gets the NaN scale: every element
 * of it comes out NaN. Zeros keep their sign (MXINT8 has one zero: +0).
 * @example mxQuantize(MXFP4_E2M1, Float32Array.of(1, 0.3, -5, 0.1), { shape: [4], axis: 0 }) // [1, 0.5, -4, 0] (scale 2^0; 5 is a tie)
 */
export function mxQuantize(fmt: MxFormat, x: Float32Array, layout: MxLayout, opts: MxQuantizeOptions = {}): Float32Array {
  const g = geometry(fmt, x.length, layout);
  const out = opts.out ?? new Float32Array(x.length);
  if (out.length !== x.length) throw new Error(`mxQuantize: output length ${out.length} != input length ${x.length}`);
  const st = opts.stats ?? newStats();
  const k = x.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
  if (k) {
    // the same blocks and arithmetic in native/quant.cc (it reads a block before writing it, so out may be x)
    const el = fmt.element;
    const counts = new Float64Array(3);
    k.mxQuantize(x, out, Float64Array.of(g.outer, g.len, g.inner, fmt.blockSize, el ? 1 : 0, el ? el.emin : 0, el ? el.man : 0, fmt.emax, fmt.maxNormal), counts);
    st.overflow += counts[0]; st.underflow += counts[1]; st.nan += counts[2];
    return out;
  }
  quantizeBlocks(fmt, out === x ? x.slice() : x, g, st, out, null);
  return out;
}

/** An MX-encoded tensor: one E8M0 scale code per block and one element code per element (int8: two's complement). */
export interface MxEncoded {
  format: string;
  shape: number[];
  axis: number;
  /** E8M0 codes (shared exponent + 127; 0xff = NaN), indexed (outer * blocks + block) * inner + innerIndex. */
  scales: Uint8Array;
  /** Element codes in the tensor's order: FP8/FP6/FP4 bit patterns (sign in the top bit of `elementBits`) or int8 bytes. Elements of a NaN block are 0. */
  elements: Uint8Array;
}

/**
 * Encode a float32 tensor as MX codes (what hardware stores): E8M0 scales and element codes.
 * @example mxEncode(MXFP4_E2M1, Float32Array.of(6, -0.5), { shape: [2], axis: 0 }).elements // [0b0111, 0b1001]
 */
export function mxEncode(fmt: MxFormat, x: Float32Array, layout: MxLayout): MxEncoded {
  const g = geometry(fmt, x.length, layout);
  const nb = g.outer * g.blocks * g.inner;
  const se = new Float64Array(nb);
  const vals = new Float32Array(x.length);
  quantizeBlocks(fmt, x, g, newStats(), vals, se);
  const scales = Uint8Array.from(se, (e) => (e !== e ? E8M0_NAN : e + E8M0_BIAS));
  // each element's block exponent
  const seOf = new Float64Array(x.length);
  for (let o = 0; o < g.outer; o++) for (let j = 0; j < g.len; j++) for (let i = 0; i < g.inner; i++) seOf[(o * g.len + j) * g.inner + i] = se[(o * g.blocks + Math.floor(j / fmt.blockSize)) * g.inner + i];
  const nanBlock = Uint8Array.from(seOf, (e) => (e !== e ? 1 : 0));
  const elements = new Uint8Array(x.length);
  if (fmt.element) {
    const scaled = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) scaled[i] = nanBlock[i] ? 0 : vals[i] * P2[300 - seOf[i]];
    elements.set(encode(fmt.element, scaled) as Uint8Array);
  } else {
    for (let i = 0; i < x.length; i++) elements[i] = nanBlock[i] ? 0 : Math.round(vals[i] * P2[300 - seOf[i] + 6]) & 0xff;
  }
  return { format: fmt.name, shape: [...layout.shape], axis: layout.axis, scales, elements };
}

/**
 * Decode MX codes back to float32 (NaN scale: the whole block is NaN).
 * @example mxDecode(MXFP4_E2M1, mxEncode(MXFP4_E2M1, x, layout)) // equals mxQuantize(MXFP4_E2M1, x, layout)
 */
export function mxDecode(fmt: MxFormat, enc: MxEncoded): Float32Array {
  if (enc.format !== fmt.name) throw new SlimfitError(`mxDecode: codes are ${enc.format}, not ${fmt.name}`);
  const g = geometry(fmt, enc.elements.length, enc);
  if (enc.scales.length !== g.outer * g.blocks * g.inner) throw new SlimfitError(`mxDecode: ${enc.scales.length} scales for ${g.outer * g.blocks * g.inner} blocks`);
  const out = new Float32Array(enc.elements.length);
  const el = fmt.element;
  const table = new Float64Array(256);
  if (el) {
    const bits = el.bits;
    for (let c = 0; c < 1 << bits; c++) {
      const s = (c >>> (bits - 1)) & 1, e = (c >>> el.man) & ((1 << el.exp) - 1), m = c & ((1 << el.man) - 1);
      const mag = e === 0 ? m * 2 ** (el.emin - el.man) : (1 + m / 2 ** el.man) * 2 ** (e - el.bias);
      const special = (el.special === 'fn' && e === (1 << el.exp) - 1 && m === (1 << el.man) - 1) || (el.special === 'ieee' && e === (1 << el.exp) - 1);
      table[c] = special ? (el.special === 'ieee' && m === 0 ? (s ? -Infinity : Infinity) : NaN) : s ? -mag : mag;
    }
  } else for (let c = 0; c < 256; c++) table[c] = ((c << 24) >> 24) / 64;
  const { outer, len, inner, blocks } = g;
  for (let o = 0; o < outer; o++) for (let j = 0; j < len; j++) for (let i = 0; i < inner; i++) {
    const at = (o * len + j) * inner + i;
    const sc = enc.scales[(o * blocks + Math.floor(j / fmt.blockSize)) * inner + i];
    out[at] = sc === E8M0_NAN ? NaN : table[enc.elements[at]] * P2[300 + sc - E8M0_BIAS];
  }
  return out;
}
