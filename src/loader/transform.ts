// Per-sample transforms run by the loader's readers: cast/normalize, seeded augmentation (augment.ts), labels (int32 or one-hot).
import { type DType, type TypedArray, dtypeSize, halfToFloat } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import type { FieldSpec, Stats } from '../store/manifest.ts';
import { hash32 } from '../core/permutation.ts';
import type { TransformOptions } from './types.ts';
import { type AugmentDraw, type AugmentSpec, colorJitter, drawAugment, emptyDraw, integerSource, integerWarp, inverseAffine, normals, resolveAugment, warpBilinear, warpInteger } from './augment.ts';

/** Plain-data transform description (computed once on the main thread, passed to workers). */
export interface TransformSpec {
  x: FieldSpec;
  y: FieldSpec;
  /** x output: 'float32' (cast with per-channel a*x+b) or 'raw' (source dtype, unchanged values). */
  xOut: 'float32' | 'raw';
  channels: number;
  /** Per-channel scale and offset: out = x * a[c] + b[c]. */
  a: number[];
  b: number[];
  /** Seeded augmentation (shift and noise included), null when none. */
  aug: AugmentSpec | null;
  /** Image height and width (for augmentation). */
  h: number;
  w: number;
  /** y output: int32 class/int values, float32 values, or one-hot float32 over `classes`. */
  yOut: 'int32' | 'float32' | 'onehot';
  classes: number;
  seed: number;
  /** Per-sample output shapes (before the batch axis). */
  xShape: number[];
  yShape: number[];
  /** Bytes of one output sample. */
  xOutBytes: number;
  yOutBytes: number;
}

const INT: DType[] = ['bool', 'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64'];

/** Check transform options against a source and turn them into a {@link TransformSpec}. */
export function makeTransformSpec(src: { name: string; x: FieldSpec; y: FieldSpec; classNames?: string[]; stats?: Stats }, o: TransformOptions, seed: number): TransformSpec {
  const { x, y } = src;
  const elems = x.shape.reduce((p, d) => p * d, 1);
  const channels = x.shape.length >= 3 ? x.shape[x.shape.length - 1] : 1;
  let a = new Array<number>(channels).fill(1), b = new Array<number>(channels).fill(0);
  const norm = o.normalize ?? false;
  if (norm === 'stats') {
    const st = src.stats;
    if (!st) {
      throw new SlimfitError("normalize: 'stats' needs per-channel mean/std, which only a slimfit store has", {
        file: src.name, hint: 'use normalize: {scale: 1/255, shift: 0} (or similar), or convert the data into a store with `slimfit convert`',
      });
    }
    if (st.mean.length !== channels && st.mean.length !== 1) {
      throw new SlimfitError(`the stored statistics have ${st.mean.length} channels but samples have ${channels}`, { file: src.name, hint: 're-run `slimfit convert`' });
    }
    a = a.map((_, c) => { const s = st.std[st.std.length === 1 ? 0 : c]; return s > 0 ? 1 / s : 1; });
    b = b.map((_, c) => -st.mean[st.mean.length === 1 ? 0 : c] * a[c]);
  } else if (norm) {
    if (!Number.isFinite(norm.scale) || !Number.isFinite(norm.shift)) throw new RangeError(`normalize scale/shift must be finite numbers, got ${norm.scale}/${norm.shift}`);
    a.fill(norm.scale); b.fill(norm.shift);
  }
  const aug = resolveAugment(o, x.dtype === 'uint8', src.name);
  if (aug?.spatial && (x.shape.length < 2 || x.shape.length > 3)) {
    throw new SlimfitError(`shift, rotate, scale, shear, flip and erase need image-shaped samples [H, W] or [H, W, C], but x samples have shape [${x.shape.join(', ')}]`, { file: src.name, hint: 'convert the data with its image shape, or keep to noise, brightness and contrast' });
  }
  const xOut = norm !== false || (aug?.needsFloat ?? false) ? 'float32' : 'raw';
  if (xOut === 'float32' && x.dtype === 'bool') throw new SlimfitError('cannot normalize boolean samples', { file: src.name });
  const xShape = (o.layout ?? 'nhwc') === 'flat' ? [elems] : [...x.shape];

  let yOut: TransformSpec['yOut'] = INT.includes(y.dtype) ? 'int32' : 'float32';
  let classes = 0;
  let yShape = [...y.shape];
  if (o.oneHot) {
    if (y.shape.length !== 0 || !INT.includes(y.dtype)) {
      throw new SlimfitError(`oneHot needs one integer class label per sample, but y is ${y.dtype} [${y.shape.join(', ')}]`, { file: src.name, hint: 'drop the oneHot option' });
    }
    classes = o.oneHot === true ? (src.classNames?.length ?? 0) : o.oneHot;
    if (!(Number.isInteger(classes) && classes > 0)) {
      throw new SlimfitError('oneHot: true needs class names to count the classes, and this source has none', { file: src.name, hint: 'pass the number of classes, e.g. oneHot: 10' });
    }
    yOut = 'onehot';
    yShape = [classes];
  }
  const yElems = yShape.reduce((p, d) => p * d, 1);
  return {
    x, y, xOut, channels, a, b, aug,
    h: x.shape.length >= 2 ? x.shape[0] : 1, w: x.shape.length >= 2 ? x.shape[1] : 1,
    yOut, classes, seed, xShape, yShape,
    xOutBytes: elems * (xOut === 'float32' ? 4 : dtypeSize(x.dtype)),
    yOutBytes: yElems * 4,
  };
}

/** A typed-array view of source rows: `t` over the same bytes as `u8`, in the source dtype. */
export interface RawView { u8: Uint8Array; t: TypedArray }

/** Views of `buf` in dtype `d` (byteOffset must be aligned). */
export function rawView(d: DType, buf: Uint8Array): RawView {
  const size = dtypeSize(d);
  const n = Math.floor(buf.byteLength / size);
  const { buffer, byteOffset } = buf;
  let t: TypedArray;
  switch (d) {
    case 'bool': case 'uint8': t = new Uint8Array(buffer, byteOffset, n); break;
    case 'int8': t = new Int8Array(buffer, byteOffset, n); break;
    case 'uint16': case 'float16': t = new Uint16Array(buffer, byteOffset, n); break;
    case 'int16': t = new Int16Array(buffer, byteOffset, n); break;
    case 'uint32': t = new Uint32Array(buffer, byteOffset, n); break;
    case 'int32': t = new Int32Array(buffer, byteOffset, n); break;
    case 'uint64': t = new BigUint64Array(buffer, byteOffset, n); break;
    case 'int64': t = new BigInt64Array(buffer, byteOffset, n); break;
    case 'float32': t = new Float32Array(buffer, byteOffset, n); break;
    case 'float64': t = new Float64Array(buffer, byteOffset, n); break;
  }
  return { u8: buf, t };
}

/** Seeded 32-bit generator (mulberry32). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Writes transformed samples into a batch's output arrays. */
export interface Transformer {
  /** Write the following samples into these output regions (a ring slot's x and y bytes). */
  setOutput(xOut: Uint8Array, yOut: Uint8Array): void;
  /** Transform source row `row` of `src` into output sample k; `key` (epoch-wide position) seeds augmentation. */
  x(k: number, src: RawView, row: number, epoch: number, key: number): void;
  /** Convert label row `row` of `src` into output sample k; `id` (the sample's index) names it in errors. */
  y(k: number, src: RawView, row: number, id: number): void;
  /** Labels of output samples 0..n-1 from rows `rows[k]` of `src` (also the ids named in errors): y() for a whole batch. */
  yRows(n: number, src: RawView, rows: Float64Array): void;
}

// Monomorphic kernels for the common cases (one element type each, so V8 keeps them fast).
function affineU8(s: Uint8Array, so: number, o: Float32Array, oo: number, len: number, a: number, b: number): void {
  for (let e = 0; e < len; e++) o[oo + e] = s[so + e] * a + b;
}
function affineF32(s: Float32Array, so: number, o: Float32Array, oo: number, len: number, a: number, b: number): void {
  for (let e = 0; e < len; e++) o[oo + e] = s[so + e] * a + b;
}
function affineTmp(s: Float32Array, o: Float32Array, oo: number, len: number, a: number[], b: number[], C: number): void {
  for (let e = 0; e < len; e++) { const c = e % C; o[oo + e] = s[e] * a[c] + b[c]; }
}

/** Build the per-sample kernels (call setOutput before writing). */
export function createTransformer(spec: TransformSpec, describe: (id: number) => string = (id) => `sample ${id}`): Transformer {
  const { x, y, channels: C, a, b, aug, h: H, w: Wd } = spec;
  const elems = x.shape.reduce((p, d) => p * d, 1);
  const yElems = y.shape.reduce((p, d) => p * d, 1);
  let xf: Float32Array = new Float32Array(0);
  let xr: RawView | null = null;
  let yi: Int32Array = new Int32Array(0), yf: Float32Array = new Float32Array(0);
  const tmp = new Float32Array(elems);
  const warped = aug ? new Float32Array(elems) : tmp;
  const draw: AugmentDraw = emptyDraw();
  const mat = new Float64Array(6);
  const normalTable = aug && aug.noise > 0 ? normals() : null;
  const isHalf = x.dtype === 'float16';
  const isBig = x.dtype === 'int64' || x.dtype === 'uint64';
  const a0 = a[0], b0 = b[0];
  const rowElems = elems;
  const esize = dtypeSize(x.dtype);
  // Channels per pixel of an image sample ([H, W] samples: 1).
  const CH = rowElems / Math.max(1, H * Wd);

  /** Source row as float values into tmp. */
  const load = (src: RawView, row: number) => {
    const t = src.t, o = row * rowElems;
    if (isHalf) for (let e = 0; e < rowElems; e++) tmp[e] = halfToFloat(t[o + e] as number);
    else if (isBig) for (let e = 0; e < rowElems; e++) tmp[e] = Number(t[o + e]);
    else if (x.dtype === 'uint8') affineU8(src.u8, o, tmp, 0, rowElems, 1, 0);
    else if (x.dtype === 'float32') tmp.set((src.t as Float32Array).subarray(o, o + rowElems));
    else for (let e = 0; e < rowElems; e++) tmp[e] = t[o + e] as number;
  };

  /** Augmented sample: geometry, then colour in stored units, normalization, noise, erasing. */
  const augmented = (k: number, src: RawView, row: number, r: () => number, s: AugmentSpec) => {
    const out = k * rowElems;
    if (xr) {
      // Raw output (only whole-pixel moves and erasing): values copied, zero filled.
      const sv = src.t as unknown as { [i: number]: number | bigint }, dv = xr.t as unknown as { [i: number]: number | bigint };
      const zero = isBig ? 0n : 0;
      for (let i = 0; i < H; i++) for (let j = 0; j < Wd; j++) {
        const p = integerSource(draw, H, Wd, i, j), o = out + (i * Wd + j) * CH;
        for (let c = 0; c < CH; c++) dv[o + c] = p >= 0 ? sv[row * rowElems + p * CH + c] : zero;
      }
      if (draw.eh > 0) for (let i = draw.top; i < draw.top + draw.eh; i++) for (let j = draw.left; j < draw.left + draw.ew; j++) for (let c = 0; c < CH; c++) dv[out + (i * Wd + j) * CH + c] = zero;
      return;
    }
    load(src, row);
    let img = tmp;
    if (s.spatial && (draw.dy !== 0 || draw.dx !== 0 || draw.flip || !integerWarp(draw))) {
      img = warped;
      if (integerWarp(draw)) warpInteger(tmp, img, H, Wd, CH, draw);
      else warpBilinear(tmp, img, 0, H, Wd, CH, inverseAffine(draw, H, Wd, mat));
    }
    if (draw.bright !== 0 || draw.contrastFactor !== 1) colorJitter(img, 0, rowElems / C, C, draw, s);
    const o = xf;
    if (C === 1) affineF32(img, 0, o, out, rowElems, a0, b0);
    else affineTmp(img, o, out, rowElems, a, b, C);
    if (s.noise > 0) {
      // Normal draws from a quantile table: one 32-bit uniform gives two 16-bit indices.
      const z = normalTable!, sd = s.noise;
      for (let e = 0; e < rowElems; e += 2) {
        const u = (r() * 4294967296) >>> 0;
        o[out + e] += sd * z[u & 0xffff];
        if (e + 1 < rowElems) o[out + e + 1] += sd * z[u >>> 16];
      }
    }
    // Erased pixels take the value a stored 0 normalizes to (the fill of the warp).
    if (draw.eh > 0) for (let i = draw.top; i < draw.top + draw.eh; i++) for (let j = draw.left; j < draw.left + draw.ew; j++) for (let c = 0; c < CH; c++) { const e = (i * Wd + j) * CH + c; o[out + e] = b[e % C]; }
  };

  return {
    setOutput(xOut, yOut) {
      if (spec.xOut === 'float32') xf = new Float32Array(xOut.buffer, xOut.byteOffset, xOut.byteLength >> 2);
      else xr = rawView(x.dtype, xOut);
      yi = new Int32Array(yOut.buffer, yOut.byteOffset, yOut.byteLength >> 2);
      yf = new Float32Array(yOut.buffer, yOut.byteOffset, yOut.byteLength >> 2);
    },
    x(k, src, row, epoch, key) {
      const out = k * rowElems;
      if (aug) {
        // Each sample's draws depend only on (seed, epoch, stream position): the same for any worker count.
        const r = rng(hash32(hash32(spec.seed, epoch), key) ^ hash32(0x5eed, Math.floor(key / 4294967296)));
        drawAugment(aug, r, H, Wd, draw);
        augmented(k, src, row, r, aug);
        return;
      }
      if (xr) {
        const sz = esize * rowElems;
        xr.u8.set(src.u8.subarray(row * sz, (row + 1) * sz), k * sz);
        return;
      }
      const o = xf;
      if (C === 1 && x.dtype === 'uint8') affineU8(src.u8, row * rowElems, o, out, rowElems, a0, b0);
      else if (C === 1 && x.dtype === 'float32') affineF32(src.t as Float32Array, row * rowElems, o, out, rowElems, a0, b0);
      else {
        load(src, row);
        affineTmp(tmp, o, out, rowElems, a, b, C);
      }
    },
    yRows(n, src, rows) {
      // One monomorphic loop for the common case (one small integer label per sample, int32 out).
      if (spec.yOut === 'int32' && yElems === 1 && (src.t instanceof Uint8Array || src.t instanceof Int32Array || src.t instanceof Uint16Array || src.t instanceof Int8Array || src.t instanceof Int16Array)) {
        const t = src.t;
        for (let k = 0; k < n; k++) yi[k] = t[rows[k]];
        return;
      }
      if (spec.yOut === 'onehot' && src.t instanceof Uint8Array) {
        const t = src.t, C = spec.classes;
        yf.fill(0, 0, n * C);
        for (let k = 0; k < n; k++) {
          const v = t[rows[k]];
          if (v >= C) this.y(k, src, rows[k], rows[k]); // throws the per-sample error
          yf[k * C + v] = 1;
        }
        return;
      }
      for (let k = 0; k < n; k++) this.y(k, src, rows[k], rows[k]);
    },
    y(k, src, row, id) {
      const t = src.t;
      if (spec.yOut === 'onehot') {
        const v = Number(t[row]);
        if (!(Number.isInteger(v) && v >= 0 && v < spec.classes)) {
          throw new SlimfitError(`label ${v} of ${describe(id)} is not a class index below ${spec.classes}`, { hint: 'pass the right number of classes to oneHot, or check the labels' });
        }
        const base = k * spec.classes;
        yf.fill(0, base, base + spec.classes);
        yf[base + v] = 1;
        return;
      }
      const base = row * yElems, out = k * yElems;
      if (spec.yOut === 'int32') {
        for (let e = 0; e < yElems; e++) {
          const v = Number(t[base + e]);
          if (v > 2147483647 || v < -2147483648) throw new SlimfitError(`label ${v} of ${describe(id)} does not fit in int32`, { hint: 'labels must be class indices or small integers' });
          yi[out + e] = v;
        }
      } else if (y.dtype === 'float16') for (let e = 0; e < yElems; e++) yf[out + e] = halfToFloat(t[base + e] as number);
      else for (let e = 0; e < yElems; e++) yf[out + e] = Number(t[base + e]);
    },
  };
}
