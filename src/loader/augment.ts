// Random per-sample augmentation for the loader's transforms: option checks, the `--augment` spec syntax, the seeded
// draw of each sample's parameters and the kernels (one affine warp, brightness/contrast, erasing).
import { SlimfitError, UsageError } from '../core/errors.ts';
import { shown } from '../core/options.ts';
import type { AugmentOptions } from './types.ts';

/** The keys of {@link AugmentOptions}, in the order `--augment` specs are written back. */
export const AUGMENT_KEYS = ['shift', 'rotate', 'scale', 'shear', 'noise', 'erase', 'flip', 'brightness', 'contrast'] as const satisfies ReadonlyArray<keyof AugmentOptions>;
const allAugmentKeys: Record<keyof AugmentOptions, true> = Object.fromEntries(AUGMENT_KEYS.map((k) => [k, true])) as Record<(typeof AUGMENT_KEYS)[number], true>;
void allAugmentKeys;

/** What each numeric key takes: [min, max, max excluded, whole numbers only, wording]. */
const RANGES: Record<Exclude<keyof AugmentOptions, 'flip'>, [number, number, boolean, boolean, string]> = {
  shift: [0, 4096, false, true, 'a whole number of pixels >= 0'],
  rotate: [0, 180, false, false, 'degrees from 0 to 180'],
  scale: [0, 1, true, false, 'a number from 0 up to (not including) 1'],
  shear: [0, 90, true, false, 'degrees from 0 up to (not including) 90'],
  noise: [0, Infinity, false, false, 'a standard deviation >= 0'],
  erase: [0, 1, false, false, 'a probability from 0 to 1'],
  brightness: [0, 1, false, false, 'a number from 0 to 1'],
  contrast: [0, 1, false, false, 'a number from 0 to 1'],
};

/** Why `v` is not a valid value of augmentation key `k` (null when it is). */
function badValue(k: keyof AugmentOptions, v: unknown): string | null {
  if (k === 'flip') return typeof v === 'boolean' ? null : 'true or false';
  const [lo, hi, hiOpen, whole, what] = RANGES[k];
  const ok = typeof v === 'number' && Number.isFinite(v) && v >= lo && (hiOpen ? v < hi : v <= hi) && (!whole || Number.isInteger(v));
  return ok ? null : what;
}

/** Check a createLoader/fit `augment` option: a SlimfitError naming the bad key and what it takes. */
export function checkAugment(where: string, a: unknown): void {
  if (a === undefined) return;
  if (a === null || typeof a !== 'object' || Array.isArray(a)) throw new SlimfitError(`${where}: option augment must be an object such as { rotate: 10, scale: 0.1 }, got ${shown(a)}`);
  for (const [k, v] of Object.entries(a)) {
    if (!(AUGMENT_KEYS as readonly string[]).includes(k)) throw new SlimfitError(`${where}: augment has no option '${k}'; valid keys: ${AUGMENT_KEYS.join(', ')}`);
    if (v === undefined) continue;
    const what = badValue(k as keyof AugmentOptions, v);
    if (what) throw new SlimfitError(`${where}: augment.${k} must be ${what}, got ${shown(v)}`);
  }
}

/** The `--augment` syntax, for help texts and messages. */
export const AUGMENT_SYNTAX = `KEY=VALUE[,KEY=VALUE...] with keys ${AUGMENT_KEYS.join(', ')} (flip takes no value)`;

/**
 * Parse an `--augment` spec such as 'rotate=10,scale=0.1,shift=2,erase=0.5,flip' ('' or 'none': no augmentation).
 * A bad key or value is a UsageError naming it and the valid keys.
 *
 * @example
 * parseAugmentSpec('rotate=10,flip'); // { rotate: 10, flip: true }
 */
export function parseAugmentSpec(spec: string, flag = '--augment'): AugmentOptions {
  const out: Record<string, number | boolean> = {};
  const s = spec.trim();
  if (s === '' || s === 'none') return out;
  for (const item of s.split(',')) {
    const part = item.trim();
    const eq = part.indexOf('=');
    const k = (eq < 0 ? part : part.slice(0, eq)).trim(), raw = eq < 0 ? undefined : part.slice(eq + 1).trim();
    if (!(AUGMENT_KEYS as readonly string[]).includes(k)) {
      throw new UsageError(`${flag} '${spec}': unknown key '${k}' (valid keys: ${AUGMENT_KEYS.join(', ')}; e.g. rotate=10,scale=0.1,shift=2)`);
    }
    if (k in out) throw new UsageError(`${flag} '${spec}': key '${k}' is given twice`);
    const key = k as keyof AugmentOptions;
    let v: number | boolean;
    if (key === 'flip') {
      if (raw === undefined || raw === 'true' || raw === '1') v = true;
      else if (raw === 'false' || raw === '0') v = false;
      else throw new UsageError(`${flag} '${spec}': flip takes no value (or true/false), got '${raw}'`);
    } else {
      if (raw === undefined || raw === '') throw new UsageError(`${flag} '${spec}': ${key} needs a value, e.g. ${key}=${key === 'shift' ? 2 : key === 'rotate' || key === 'shear' ? 10 : 0.1}`);
      v = Number(raw);
      const what = badValue(key, v);
      if (what) throw new UsageError(`${flag} '${spec}': ${key} must be ${what}, got '${raw}'`);
    }
    out[key] = v;
  }
  return out as AugmentOptions;
}

/**
 * An augmentation written back as an `--augment` spec (keys in a fixed order, zero/false ones left out; '' = none):
 * what run.json saves and the report shows.
 *
 * @example
 * formatAugment({ scale: 0.1, rotate: 10 }); // 'rotate=10,scale=0.1'
 */
export function formatAugment(a: AugmentOptions | undefined): string {
  if (!a) return '';
  const parts: string[] = [];
  for (const k of AUGMENT_KEYS) {
    const v = a[k];
    if (v === undefined || v === false || v === 0) continue;
    parts.push(k === 'flip' ? 'flip' : `${k}=${v}`);
  }
  return parts.join(',');
}

/** Resolved augmentation for the workers (plain data; angles in radians). */
export interface AugmentSpec {
  shift: number;
  rotate: number;
  scale: number;
  shear: number;
  noise: number;
  erase: number;
  flip: boolean;
  brightness: number;
  contrast: number;
  /** Value range of the stored samples for brightness (255 for uint8, else 1), and whether to clip to it. */
  range: number;
  clip: boolean;
  /** Any of shift/rotate/scale/shear/flip/erase: needs image-shaped samples. */
  spatial: boolean;
  /** Any of rotate/scale/shear/brightness/contrast/noise: values change, so the output must be float32. */
  needsFloat: boolean;
}

/**
 * Merge `augment` with the older top-level `shift`/`noise` options (the same mechanism; both given with different
 * values is an error) into an {@link AugmentSpec}, or null when nothing is augmented.
 */
export function resolveAugment(o: { shift?: number; noise?: number; augment?: AugmentOptions }, uint8: boolean, name: string): AugmentSpec | null {
  const a = o.augment ?? {};
  for (const k of ['shift', 'noise'] as const) {
    if (o[k] !== undefined && a[k] !== undefined && o[k] !== a[k]) {
      throw new SlimfitError(`option ${k} ${o[k]} and augment.${k} ${a[k]} disagree`, { file: name, hint: `give ${k} once (augment.${k} and ${k} are the same setting)` });
    }
  }
  const shift = a.shift ?? o.shift ?? 0, noise = a.noise ?? o.noise ?? 0;
  if (!(Number.isInteger(shift) && shift >= 0)) throw new RangeError(`shift must be a whole number of pixels >= 0, got ${shift}`);
  if (!(noise >= 0)) throw new RangeError(`noise must be >= 0, got ${noise}`);
  const rad = Math.PI / 180;
  const s: AugmentSpec = {
    shift, noise, rotate: (a.rotate ?? 0) * rad, scale: a.scale ?? 0, shear: (a.shear ?? 0) * rad, erase: a.erase ?? 0, flip: a.flip ?? false,
    brightness: a.brightness ?? 0, contrast: a.contrast ?? 0, range: uint8 ? 255 : 1, clip: uint8, spatial: false, needsFloat: false,
  };
  s.spatial = s.shift > 0 || s.rotate > 0 || s.scale > 0 || s.shear > 0 || s.flip || s.erase > 0;
  s.needsFloat = s.rotate > 0 || s.scale > 0 || s.shear > 0 || s.brightness > 0 || s.contrast > 0 || s.noise > 0;
  return s.spatial || s.needsFloat ? s : null;
}

/** One sample's drawn parameters (reused between samples). */
export interface AugmentDraw {
  dy: number;
  dx: number;
  /** Radians, counterclockwise as displayed. */
  angle: number;
  zoom: number;
  /** Radians. */
  shearAngle: number;
  flip: boolean;
  /** Added in stored units (delta x range). */
  bright: number;
  contrastFactor: number;
  /** Erased rectangle (rows top..top+eh, cols left..left+ew); eh = 0: none. */
  top: number;
  left: number;
  eh: number;
  ew: number;
}

/** A fresh draw record. */
export function emptyDraw(): AugmentDraw {
  return { dy: 0, dx: 0, angle: 0, zoom: 1, shearAngle: 0, flip: false, bright: 0, contrastFactor: 1, top: 0, left: 0, eh: 0, ew: 0 };
}

/**
 * Draw one sample's parameters from its generator `r` (uniforms in [0, 1)) in a fixed order, each only when its op is
 * on (shift first, as the loader always drew it, so shift-only runs keep their bytes). Noise is drawn afterwards.
 */
export function drawAugment(s: AugmentSpec, r: () => number, H: number, W: number, d: AugmentDraw): AugmentDraw {
  d.dy = 0; d.dx = 0; d.angle = 0; d.zoom = 1; d.shearAngle = 0; d.flip = false; d.bright = 0; d.contrastFactor = 1; d.eh = 0; d.ew = 0; d.top = 0; d.left = 0;
  if (s.shift > 0) { d.dy = Math.floor(r() * (2 * s.shift + 1)) - s.shift; d.dx = Math.floor(r() * (2 * s.shift + 1)) - s.shift; }
  if (s.rotate > 0) d.angle = (2 * r() - 1) * s.rotate;
  if (s.scale > 0) d.zoom = 1 + (2 * r() - 1) * s.scale;
  if (s.shear > 0) d.shearAngle = (2 * r() - 1) * s.shear;
  if (s.flip) d.flip = r() < 0.5;
  if (s.brightness > 0) d.bright = (2 * r() - 1) * s.brightness * s.range;
  if (s.contrast > 0) d.contrastFactor = 1 + (2 * r() - 1) * s.contrast;
  if (s.erase > 0 && r() < s.erase) {
    // torchvision RandomErasing: area 2-33% of the image, log-uniform aspect 0.3-3.3, up to 10 tries to fit.
    const lo = Math.log(0.3), hi = Math.log(3.3);
    for (let t = 0; t < 10; t++) {
      const area = H * W * (0.02 + r() * 0.31), ratio = Math.exp(lo + r() * (hi - lo));
      const eh = Math.round(Math.sqrt(area * ratio)), ew = Math.round(Math.sqrt(area / ratio));
      if (eh >= 1 && ew >= 1 && eh < H && ew < W) {
        d.top = Math.floor(r() * (H - eh + 1)); d.left = Math.floor(r() * (W - ew + 1)); d.eh = eh; d.ew = ew;
        break;
      }
    }
  }
  return d;
}

/**
 * Where output pixel (col, row) reads from: [m00, m01, m02, m10, m11, m12] with src col = m00 col + m01 row + m02 and
 * src row = m10 col + m11 row + m12. The forward map about the image centre is translate(dx, dy) . rotate . shear .
 * zoom . flip (torchvision RandomAffine's order), inverted.
 *
 * @example
 * const m = inverseAffine({ ...emptyDraw(), angle: Math.PI / 2 }, 28, 28); // np.rot90: out[i, j] = in[j, 27 - i]
 */
export function inverseAffine(d: AugmentDraw, H: number, W: number, m: Float64Array = new Float64Array(6)): Float64Array {
  const cx = (W - 1) / 2, cy = (H - 1) / 2;
  const c = Math.cos(d.angle), s = Math.sin(d.angle), t = Math.tan(d.shearAngle), f = d.flip ? -1 : 1, z = d.zoom;
  // Forward A = R . Sh . Z . F with R = [[c, s], [-s, c]] (counterclockwise on screen, y down), Sh = [[1, t], [0, 1]].
  const a00 = c * z * f, a01 = (c * t + s) * z, a10 = -s * z * f, a11 = (-s * t + c) * z;
  const det = a00 * a11 - a01 * a10;
  const i00 = a11 / det, i01 = -a01 / det, i10 = -a10 / det, i11 = a00 / det;
  // src = A^-1 (out - centre - (dx, dy)) + centre
  const ox = -cx - d.dx, oy = -cy - d.dy;
  m[0] = i00; m[1] = i01; m[2] = i00 * ox + i01 * oy + cx;
  m[3] = i10; m[4] = i11; m[5] = i10 * ox + i11 * oy + cy;
  return m;
}

/** True when the draw moves pixels by whole pixels only (shift and flip): an exact copy, no interpolation. */
export function integerWarp(d: AugmentDraw): boolean {
  return d.angle === 0 && d.zoom === 1 && d.shearAngle === 0;
}

/**
 * Bilinear affine warp of one NHWC image (per channel) from `src` into `dst` (both [H, W, C] floats from offset 0 and
 * `dOff`), reading outside the image as 0 (scipy.ndimage.affine_transform order=1, mode='grid-constant', cval=0).
 */
export function warpBilinear(src: Float32Array, dst: Float32Array, dOff: number, H: number, W: number, C: number, m: Float64Array): void {
  const m00 = m[0], m01 = m[1], m02 = m[2], m10 = m[3], m11 = m[4], m12 = m[5];
  const rowC = W * C;
  if (C === 1) { warpBilinear1(src, dst, dOff, H, W, m); return; }
  for (let i = 0; i < H; i++) {
    let sx = m01 * i + m02, sy = m11 * i + m12;
    for (let j = 0; j < W; j++, sx += m00, sy += m10) {
      const o = dOff + (i * W + j) * C;
      const x0 = Math.floor(sx), y0 = Math.floor(sy);
      const fx = sx - x0, fy = sy - y0;
      const p00 = y0 * rowC + x0 * C;
      if (x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H) {
        // Interior: all four neighbours inside (most pixels).
        if (C === 1) {
          const top = src[p00] + fx * (src[p00 + 1] - src[p00]), bot = src[p00 + rowC] + fx * (src[p00 + rowC + 1] - src[p00 + rowC]);
          dst[o] = top + fy * (bot - top);
        } else {
          for (let c = 0; c < C; c++) {
            const q = p00 + c;
            const top = src[q] + fx * (src[q + C] - src[q]), bot = src[q + rowC] + fx * (src[q + rowC + C] - src[q + rowC]);
            dst[o + c] = top + fy * (bot - top);
          }
        }
        continue;
      }
      if (x0 < -1 || y0 < -1 || x0 >= W || y0 >= H) { for (let c = 0; c < C; c++) dst[o + c] = 0; continue; }
      const w00 = (1 - fx) * (1 - fy), w01 = fx * (1 - fy), w10 = (1 - fx) * fy, w11 = fx * fy;
      const inX0 = x0 >= 0, inX1 = x0 + 1 < W, inY0 = y0 >= 0, inY1 = y0 + 1 < H;
      for (let c = 0; c < C; c++) {
        let v = 0;
        if (inY0 && inX0) v += w00 * src[p00 + c];
        if (inY0 && inX1) v += w01 * src[p00 + C + c];
        if (inY1 && inX0) v += w10 * src[p00 + rowC + c];
        if (inY1 && inX1) v += w11 * src[p00 + rowC + C + c];
        dst[o + c] = v;
      }
    }
  }
}

/** warpBilinear for one channel: the interior taps with no per-channel loop (most images here are gray). */
function warpBilinear1(src: Float32Array, dst: Float32Array, dOff: number, H: number, W: number, m: Float64Array): void {
  const m00 = m[0], m01 = m[1], m02 = m[2], m10 = m[3], m11 = m[4], m12 = m[5];
  const W1 = W - 1, H1 = H - 1;
  for (let i = 0; i < H; i++) {
    let sx = m01 * i + m02, sy = m11 * i + m12;
    let o = dOff + i * W;
    for (let j = 0; j < W; j++, sx += m00, sy += m10, o++) {
      // Truncation is floor for sx, sy > -1; anything at or below -1 is outside and handled below.
      const x0 = sx > -1 ? sx | 0 : -2, y0 = sy > -1 ? sy | 0 : -2;
      const fx = sx - (sx < 0 ? x0 - 1 : x0), fy = sy - (sy < 0 ? y0 - 1 : y0);
      if (sx >= 0 && sy >= 0 && x0 < W1 && y0 < H1) {
        const p = y0 * W + x0;
        const a = src[p], top = a + fx * (src[p + 1] - a), c = src[p + W], bot = c + fx * (src[p + W + 1] - c);
        dst[o] = top + fy * (bot - top);
        continue;
      }
      if (sx <= -1 || sy <= -1 || sx >= W || sy >= H) { dst[o] = 0; continue; }
      // Border: one tap row or column outside (reads as 0).
      const bx = sx < 0 ? -1 : x0, by = sy < 0 ? -1 : y0;
      const v00 = by >= 0 && bx >= 0 ? src[by * W + bx] : 0, v01 = by >= 0 && bx + 1 < W ? src[by * W + bx + 1] : 0;
      const v10 = by + 1 < H && bx >= 0 ? src[(by + 1) * W + bx] : 0, v11 = by + 1 < H && bx + 1 < W ? src[(by + 1) * W + bx + 1] : 0;
      const top = v00 + fx * (v01 - v00), bot = v10 + fx * (v11 - v10);
      dst[o] = top + fy * (bot - top);
    }
  }
}

/** Whole-pixel move (shift, flip) of one [H, W, C] image from `src` into `dst`, zero filled. */
export function warpInteger(src: Float32Array, dst: Float32Array, H: number, W: number, C: number, d: AugmentDraw): void {
  for (let i = 0; i < H; i++) {
    const si = i - d.dy, o = i * W * C;
    if (si < 0 || si >= H) { dst.fill(0, o, o + W * C); continue; }
    const s = si * W * C;
    for (let j = 0; j < W; j++) {
      const sj0 = j - d.dx, sj = d.flip ? W - 1 - sj0 : sj0;
      if (sj < 0 || sj >= W) { for (let c = 0; c < C; c++) dst[o + j * C + c] = 0; continue; }
      for (let c = 0; c < C; c++) dst[o + j * C + c] = src[s + sj * C + c];
    }
  }
}

/** 65536 standard-normal quantiles at (k + 0.5) / 65536: a uniform 16-bit index gives a normal draw (tails cut at 4.3 sigma). */
let normalTable: Float32Array | null = null;
export function normals(): Float32Array {
  if (normalTable) return normalTable;
  const t = new Float32Array(65536);
  for (let k = 0; k < 65536; k++) t[k] = inverseNormal((k + 0.5) / 65536);
  normalTable = t;
  return t;
}

/** Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9). */
function inverseNormal(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -inverseNormal(1 - p);
  const q = p - 0.5, r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** Source index of output pixel (i, j) for a whole-pixel draw (shift, flip), or -1 outside the image. */
export function integerSource(d: AugmentDraw, H: number, W: number, i: number, j: number): number {
  const si = i - d.dy, sj0 = j - d.dx, sj = d.flip ? W - 1 - sj0 : sj0;
  return si >= 0 && si < H && sj >= 0 && sj < W ? si * W + sj : -1;
}

/** Brightness then contrast (per channel about the image's mean) on one [H*W, C] image in stored units, in place. */
export function colorJitter(x: Float32Array, off: number, n: number, C: number, d: AugmentDraw, s: AugmentSpec): void {
  if (d.bright !== 0) for (let e = 0; e < n * C; e++) x[off + e] += d.bright;
  if (d.contrastFactor !== 1) {
    for (let c = 0; c < C; c++) {
      let sum = 0;
      for (let p = 0; p < n; p++) sum += x[off + p * C + c];
      const mean = sum / n, f = d.contrastFactor;
      for (let p = 0; p < n; p++) { const e = off + p * C + c; x[e] = (x[e] - mean) * f + mean; }
    }
  }
  if (s.clip && (d.bright !== 0 || d.contrastFactor !== 1)) for (let e = 0; e < n * C; e++) { const v = x[off + e]; x[off + e] = v < 0 ? 0 : v > s.range ? s.range : v; }
}
