// The optional native CSV line parser (build/Release/slimfit_csv.node, built by `npm install`): see
// src/formats/native/csv.c. Without it (or with SLIMFIT_DISABLE=csv) the JS scanner in csv.ts parses every line.
import { loadAddon } from '../core/native.ts';

/** The addon's function (see src/formats/native/csv.c). */
export interface CsvAddon {
  /**
   * Parse the plain numeric lines of b[p, e) into rows row..maxRow-1 of x (kind 0 uint8, 1 float16, 2 float32,
   * 3 float64) and int64 y; stops before the first line it leaves to the JS parser. Returns rows written;
   * state[0] = the byte position where it stopped. Lines end at `eol`: 10 ('\n', the default) or 13 ('\r').
   */
  parse(b: Uint8Array, p: number, e: number, ncols: number, labelCol: number, delim: number, kind: number,
    x: Uint8Array, y: Uint8Array, row: number, maxRow: number, state: Float64Array, eol?: number): number;
}

/** The addon, or null when it was not built or SLIMFIT_DISABLE names csv. */
export function csvAddon(): CsvAddon | null {
  return loadAddon<CsvAddon>('slimfit_csv');
}
