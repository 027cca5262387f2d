// The optional native gather addon (build/Release/slimfit_gather.node, compiled by `npm install` via node-gyp): one call per batch.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { featureEnabled, type NativeSettings, nativeSettings } from '../core/config.ts';

/** A process-wide read-only mapping of one file. */
export type MapHandle = { readonly __mapHandle: unique symbol };

/** The addon's functions. */
export interface GatherAddon {
  /** Map a whole file read-only (one mapping per file per process, shared by threads). */
  open(path: string): MapHandle;
  /**
   * For r < count, copy row rows[r] (starting at byte dataStart, rowBytes each) to output sample dest[r];
   * mode 0 copies bytes, mode 1 converts uint8 to float32 as x * a + b. Returns -1 if the file is now too short.
   */
  gather(h: MapHandle, dataStart: number, rowBytes: number, rows: Float64Array, dest: Uint32Array, count: number, out: Uint8Array | Float32Array, mode: 0 | 1, a: number, b: number): number;
  /** Like gather, with one pread per row on file descriptor `fd` (nothing mapped). Returns -1 if the file ended early. */
  pgather(fd: number, dataStart: number, rowBytes: number, rows: Float64Array, dest: Uint32Array, count: number, out: Uint8Array | Float32Array, mode: 0 | 1, a: number, b: number): number;
  /** Start reading these rows in the background (posix_fadvise WILLNEED), so cold reads overlap. Optional: older builds lack it. */
  willneed?(fd: number, dataStart: number, rowBytes: number, rows: Float64Array, count: number): void;
  /** The ISA cap from the environment (src/core/config.ts), before the first conversion. */
  configure(s: Pick<NativeSettings, 'isa'>): void;
  /** The uint8 -> float32 conversion path in use. */
  isa(): 'avx512' | 'avx2' | 'generic';
}

/** Where the addon is built. */
export const GATHER_ADDON_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'build', 'Release', 'slimfit_gather.node');

let cached: GatherAddon | null | undefined;

/** The addon, or null when it was not built (then the loader reads with positioned reads). */
export function gatherAddon(): GatherAddon | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (!featureEnabled('gather') || !existsSync(GATHER_ADDON_PATH)) return cached;
  try { cached = createRequire(import.meta.url)(GATHER_ADDON_PATH) as GatherAddon; } catch { cached = null; }
  cached?.configure({ isa: nativeSettings().isa });
  return cached;
}
