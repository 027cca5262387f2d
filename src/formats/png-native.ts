// The optional native PNG addon (build/Release/slimfit_png.node; built by `npm install` when zlib's headers are
// present): batch decode of plain 8-bit PNGs and batch file reads, used by the image decode workers.
import { loadAddon } from '../core/native.ts';

/** The addon's functions (see src/formats/native/png.c). */
export interface PngAddon {
  /** Decode file i = data[offsets[i], offsets[i+1]) into out[i*w*h*c...]: status[i] 0 = done, 1 = decode it another way. */
  decode(data: Uint8Array, offsets: Uint32Array, w: number, h: number, c: number, out: Uint8Array, status: Uint8Array): void;
  /** A pool of `threads` native decode threads (for decoderSubmit; close it with decoderClose). */
  decoderCreate(threads: number): object;
  /**
   * decode() on one of the pool's threads; when every file decoded (all status 0) it also digests `out` into
   * hashes/counts and resolves true, else false. No argument may be touched until it settles.
   */
  decoderSubmit(pool: object, data: Uint8Array, offsets: Uint32Array, w: number, h: number, c: number, out: Uint8Array, status: Uint8Array, hashes: Uint32Array, counts: Float64Array): Promise<boolean>;
  /**
   * The same for `countAndMax[0]` files named by NUL-separated `paths`, which the thread reads itself (files above
   * countAndMax[1] bytes are not read): errs[i] is 0, an errno, or -1 (too large); a file not decoded has status 1.
   */
  decoderSubmit(pool: object, paths: string, countAndMax: Uint32Array, w: number, h: number, c: number, out: Uint8Array, status: Uint8Array, hashes: Uint32Array, counts: Float64Array, errs: Int32Array): Promise<boolean>;
  /** Finish the queued batches and stop the pool's threads. */
  decoderClose(pool: object): void;
  /**
   * Read NUL-separated paths until maxTotal bytes are held (at least one file): the first `read` files' bytes back to
   * back; errors[i] is 0, an errno, or -1 for a file above maxBytes (not read). With `into`, data is a view of it and
   * reading stops before a file that does not fit (unless it is the first).
   */
  readFiles(paths: string, count: number, maxBytes: number, maxTotal: number, into?: ArrayBuffer): { data: Uint8Array; offsets: Uint32Array; errors: Int32Array; read: number };
  /**
   * Names in folder `dir` ending in one of the NUL-separated lowercase `exts` (any case) and not starting with "._",
   * sorted by UTF-8 bytes, each followed by a NUL (in `into` when it is big enough); or the errno of opening/reading it.
   */
  listImages(dir: string, exts: string, into?: ArrayBuffer): { names?: Uint8Array; count?: number; errno?: number };
  /** A gzip inflater for gunzipRun (src/formats/native/gunzip.c). */
  gunzipCreate(): object;
  /**
   * Inflate `input` into `output` on libuv's threads until either runs out: [input bytes consumed, output bytes
   * produced, 1 if a gzip member ended with no input left else 0]. Rejects on corrupt data; one run at a time.
   */
  gunzipRun(gzip: object, input: Uint8Array, output: Uint8Array): Promise<[number, number, number]>;
  /** hashSamples (src/core/hash64.ts, same bits) into hashes, and countBytes (src/core/histogram.ts) added into counts. */
  digest(x: Uint8Array, sampleBytes: number, n: number, channels: number, hashes: Uint32Array, counts: Float64Array): void;
}

/** The addon, or null when it was not built or SLIMFIT_DISABLE names png (then @napi-rs/image decodes every file). */
export function pngAddon(): PngAddon | null {
  return loadAddon<PngAddon>('slimfit_png');
}
