// The optional native gather addon (slimfit_gather.node: build/Release or the package's prebuild, found by
// src/core/native.ts; SLIMFIT_DISABLE=gather turns it off): one call per batch.
import { loadAddon } from '../core/native.ts';
import { nativeSettings, type NativeSettings } from '../core/config.ts';

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
  /**
   * Like gather, with one pread per row on file descriptor `fd` (nothing mapped). Rows are read page-cache-only first
   * (RWF_NOWAIT); at the first one that is not cached, the remaining rows are hinted (WILLNEED) before blocking reads.
   * Returns -1 if the file ended early.
   */
  pgather(fd: number, dataStart: number, rowBytes: number, rows: Float64Array, dest: Uint32Array, count: number, out: Uint8Array | Float32Array, mode: 0 | 1, a: number, b: number): number;
  /** Start reading these rows in the background (posix_fadvise WILLNEED), so cold reads overlap (pgather does this itself when it meets cold rows). */
  willneed?(fd: number, dataStart: number, rowBytes: number, rows: Float64Array, count: number): void;
  /**
   * out[k] = P.at(start + k) for k < count, P the Feistel permutation of [0, n) with round keys `keys` and half width
   * `half` (src/core/permutation.ts, same bits). Optional: older builds lack it.
   */
  permute?(keys: Uint32Array, half: number, n: number, start: number, count: number, out: Float64Array): void;
  /** The ISA cap from the environment (src/core/config.ts), before the first conversion. */
  configure(s: Pick<NativeSettings, 'isa'>): void;
  /** The uint8 -> float32 conversion path in use. */
  isa(): 'avx512' | 'avx2' | 'generic';
}

let configured = false;

/** The addon, or null when it is off, not built or does not load (then the loader reads with positioned reads). */
export function gatherAddon(): GatherAddon | null {
  const addon = loadAddon<GatherAddon>('slimfit_gather');
  if (addon && !configured) {
    addon.configure({ isa: nativeSettings().isa });
    configured = true;
  }
  return addon;
}
