// The optional native PNG addon (build/Release/slimfit_png.node; built by `npm install` when zlib's headers are
// present): batch decode of plain 8-bit PNGs and batch file reads, used by the image decode workers.
import { loadAddon } from '../util/native-addon.ts';

/** The addon's functions (see src/formats/native/png.c). */
export interface PngAddon {
  /** Decode file i = data[offsets[i], offsets[i+1]) into out[i*w*h*c...]: status[i] 0 = done, 1 = decode it another way. */
  decode(data: Uint8Array, offsets: Uint32Array, w: number, h: number, c: number, out: Uint8Array, status: Uint8Array): void;
  /**
   * Read NUL-separated paths until maxTotal bytes are held (at least one file): the first `read` files' bytes back to
   * back; errors[i] is 0, an errno, or -1 for a file above maxBytes (not read). With `into`, data is a view of it and
   * reading stops before a file that does not fit (unless it is the first).
   */
  readFiles(paths: string, count: number, maxBytes: number, maxTotal: number, into?: ArrayBuffer): { data: Uint8Array; offsets: Uint32Array; errors: Int32Array; read: number };
  /** hashSamples (src/util/hash64.ts, same bits) into hashes, and countBytes (src/util/histogram.ts) added into counts. */
  digest(x: Uint8Array, sampleBytes: number, n: number, channels: number, hashes: Uint32Array, counts: Float64Array): void;
}

/** The addon, or null when it was not built or SLIMFIT_PNG_NATIVE=off (then @napi-rs/image decodes every file). */
export function pngAddon(): PngAddon | null {
  return loadAddon<PngAddon>('slimfit_png', 'SLIMFIT_PNG_NATIVE');
}
