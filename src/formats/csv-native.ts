// The optional native CSV line parser (build/Release/slimfit_csv.node, built by `npm install`): see
// src/formats/native/csv.c. Without it (or with SLIMFIT_CSV_NATIVE=off) the JS scanner in csv.ts parses every line.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The addon's function (see src/formats/native/csv.c). */
export interface CsvAddon {
  /**
   * Parse the plain numeric lines of b[p, e) into rows row..maxRow-1 of x (kind 0 uint8, 1 float16, 2 float32,
   * 3 float64) and int64 y; stops before the first line it leaves to the JS parser. Returns rows written;
   * state[0] = the byte position where it stopped.
   */
  parse(b: Uint8Array, p: number, e: number, ncols: number, labelCol: number, delim: number, kind: number,
    x: Uint8Array, y: Uint8Array, row: number, maxRow: number, state: Float64Array): number;
}

/** Where the addon is built. */
export const CSV_ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'Release', 'slimfit_csv.node');

let cached: CsvAddon | null | undefined;

/** The addon, or null when it was not built or SLIMFIT_CSV_NATIVE=off. */
export function csvAddon(): CsvAddon | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (['off', '0', 'false', 'no'].includes((process.env.SLIMFIT_CSV_NATIVE ?? '').toLowerCase()) || !existsSync(CSV_ADDON_PATH)) return cached;
  try { cached = createRequire(import.meta.url)(CSV_ADDON_PATH) as CsvAddon; } catch { cached = null; }
  return cached;
}
