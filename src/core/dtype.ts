// Element types slimfit stores and reads, named the way numpy names them.

/** numpy dtype names slimfit understands. float16 is carried as raw uint16 bits. */
export type DType =
  | 'bool' | 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32'
  | 'uint64' | 'int64' | 'float16' | 'float32' | 'float64';

/** The typed array a DType is viewed through (float16 as its raw bits). */
export type TypedArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | BigUint64Array | BigInt64Array | Float32Array | Float64Array;

/** dtype and per-sample shape of one field (x or y). */
export interface FieldSpec {
  dtype: DType;
  /** Shape of one sample, e.g. [28, 28, 1] for x, [] for a scalar label. */
  shape: number[];
}

interface DTypeInfo { readonly size: number; readonly kind: 'b' | 'u' | 'i' | 'f' }

const INFO: Record<DType, DTypeInfo> = {
  bool: { size: 1, kind: 'b' }, uint8: { size: 1, kind: 'u' }, int8: { size: 1, kind: 'i' },
  uint16: { size: 2, kind: 'u' }, int16: { size: 2, kind: 'i' },
  uint32: { size: 4, kind: 'u' }, int32: { size: 4, kind: 'i' },
  uint64: { size: 8, kind: 'u' }, int64: { size: 8, kind: 'i' },
  float16: { size: 2, kind: 'f' }, float32: { size: 4, kind: 'f' }, float64: { size: 8, kind: 'f' },
};

/** All supported dtypes, smallest first. */
export const DTYPES = Object.keys(INFO) as DType[];

/** Bytes per element. */
export function dtypeSize(d: DType): number {
  return INFO[d].size;
}

/** The largest value an integer dtype holds exactly as a JS number (bool: 1; 64-bit: 2^53 - 1); null for floats. */
export function integerMax(d: DType): number | null {
  const { size, kind } = INFO[d];
  if (kind === 'f') return null;
  if (kind === 'b') return 1;
  if (size === 8) return Number.MAX_SAFE_INTEGER;
  return 2 ** (8 * size - (kind === 'i' ? 1 : 0)) - 1;
}

/** True if `s` names a supported dtype. */
export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(INFO, s);
}

/** numpy's descr string for `d` in little-endian (or byte-order-free) form, e.g. '<f4', '|u1'. */
export function descrOf(d: DType): string {
  const { size, kind } = INFO[d];
  return `${size === 1 ? '|' : '<'}${kind}${size}`;
}

/** Parse a numpy descr ('<f4', '>i8', '|u1', '=u2', 'f4') into a dtype and whether it is big-endian; null if unsupported. */
export function parseDescr(descr: string): { dtype: DType; bigEndian: boolean } | null {
  const m = /^([<>|=]?)([biuf])(\d+)$/.exec(descr);
  if (!m) return null;
  const [, order, kind, sizeText] = m;
  const size = Number(sizeText);
  const dtype = DTYPES.find((d) => INFO[d].kind === kind && INFO[d].size === size);
  if (!dtype) return null;
  return { dtype, bigEndian: order === '>' && size > 1 };
}

/** View `bytes` (little-endian, length a multiple of the element size) as the typed array for `d`, copying only if unaligned. */
export function viewAs(d: DType, bytes: Uint8Array): TypedArray {
  const size = INFO[d].size;
  if (bytes.byteLength % size !== 0) throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${d} elements`);
  let buf = bytes;
  if (bytes.byteOffset % size !== 0) buf = new Uint8Array(bytes); // copy to an aligned buffer
  const n = buf.byteLength / size;
  const { buffer, byteOffset } = buf;
  switch (d) {
    case 'bool': case 'uint8': return new Uint8Array(buffer, byteOffset, n);
    case 'int8': return new Int8Array(buffer, byteOffset, n);
    case 'uint16': case 'float16': return new Uint16Array(buffer, byteOffset, n);
    case 'int16': return new Int16Array(buffer, byteOffset, n);
    case 'uint32': return new Uint32Array(buffer, byteOffset, n);
    case 'int32': return new Int32Array(buffer, byteOffset, n);
    case 'uint64': return new BigUint64Array(buffer, byteOffset, n);
    case 'int64': return new BigInt64Array(buffer, byteOffset, n);
    case 'float32': return new Float32Array(buffer, byteOffset, n);
    case 'float64': return new Float64Array(buffer, byteOffset, n);
  }
}

/** The dtype a typed array holds (Uint16Array maps to uint16; pass float16 explicitly where meant). */
export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint16Array) return 'uint16';
  if (a instanceof Int16Array) return 'int16';
  if (a instanceof Uint32Array) return 'uint32';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigUint64Array) return 'uint64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Float32Array) return 'float32';
  return 'float64';
}

/** Reverse the byte order of each `size`-byte element of `bytes` in place (big-endian files to host order). */
export function swapBytes(bytes: Uint8Array, size: number): void {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (size === 2) b.swap16();
  else if (size === 4) b.swap32();
  else if (size === 8) b.swap64();
}

/** Decode IEEE half-precision bits to a number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Read element i of a typed array of dtype d as a JS number (float16 decoded, 64-bit ints converted). */
export function elementAsNumber(d: DType, a: TypedArray, i: number): number {
  const v = a[i];
  if (d === 'float16') return halfToFloat(v as number);
  return typeof v === 'bigint' ? Number(v) : (v as number);
}
