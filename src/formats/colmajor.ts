// Reordering column-major (MATLAB, HDF5 from MATLAB) sample blocks into C-order rows.
import type { TypedArray } from '../core/dtype.ts';

/** C-order position p of a sample -> offset (in elements) in a block, given the block strides of each sample axis. */
export function gatherTable(shape: number[], strides: number[]): Int32Array {
  const P = shape.reduce((a, b) => a * b, 1);
  const t = new Int32Array(P);
  const idx = new Array(shape.length).fill(0);
  for (let p = 0; p < P; p++) {
    let o = 0;
    for (let k = 0; k < shape.length; k++) o += idx[k] * strides[k];
    t[p] = o;
    for (let k = shape.length - 1; k >= 0; k--) { if (++idx[k] < shape[k]) break; idx[k] = 0; }
  }
  return t;
}

/** out[r*P + p] = src[r*rowStride + table[p]] for r < m, on typed arrays of equal element type. */
export function gather(src: TypedArray, dst: TypedArray, m: number, rowStride: number, table: Int32Array): void {
  const P = table.length;
  const s = src as Float64Array;
  const d = dst as Float64Array;
  for (let r = 0; r < m; r++) {
    const so = r * rowStride;
    const dO = r * P;
    for (let p = 0; p < P; p++) d[dO + p] = s[so + table[p]];
  }
}
