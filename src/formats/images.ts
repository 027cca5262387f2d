// Decoding one image file to raw 8-bit pixels of a fixed target shape, via @napi-rs/image (Rust image-rs; the
// binary ships inside an npm platform package). Pure function on bytes, so it runs the same in a worker or inline.
//
// Rules (documented in the README's convert section):
// - Pixels are returned in row-major HWC order, 8 bits per channel, keeping the file's native channel count
//   (gray PNG -> 1 channel, RGB -> 3, RGBA -> 4, gray+alpha -> 2).
// - The store needs one shape, so the FIRST readable image fixes the target (height, width, channels) unless
//   --resize / --grayscale fix them. Later images with another channel count are converted to the target:
//   gray is replicated, alpha is dropped (or set opaque when the target has alpha), colour to gray uses
//   Rec.709 luma (0.2126 R + 0.7152 G + 0.0722 B, what image-rs' grayscale() does).
// - Another width/height without --resize: the file is skipped ("wrong size ...").
// - --resize WxH: stretched to exactly W x H (aspect ratio not kept) with a Triangle (bilinear) filter.
// - 16-bit images are reduced to 8 bits by round(v / 257).
import { ResizeFilterType, ResizeFit, Transformer } from '@napi-rs/image';

/** Image file extensions read from trees and archives (lower case, with the dot). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.gif', '.bmp'] as const;

/** Files bigger than this are skipped instead of decoded (a 64 MB image file is not a dataset sample). */
export const MAX_IMAGE_FILE_BYTES = 64 << 20;
/** Images with more pixels than this are skipped before decoding (guards against decompression bombs). */
export const MAX_IMAGE_PIXELS = 64 << 20;
/**
 * --resize may ask for at most this many pixels per image (4096 x 4096): a few samples per decode thread are in
 * flight at once, so 16 Mpx RGB (48 MB a sample) already costs a few hundred MB; the input cap above would allow 4x.
 */
export const MAX_RESIZE_PIXELS = 16 << 20;

/** Why a --resize target is refused (too many pixels), or null when it is fine. */
export function resizeProblem(r: { width: number; height: number }): string | null {
  const px = r.width * r.height;
  return px > MAX_RESIZE_PIXELS
    ? `--resize ${r.width}x${r.height} asks for ${px} pixels per image, more than the ${MAX_RESIZE_PIXELS} (4096x4096) slimfit makes`
    : null;
}

/** At most this many images outside class folders are listed by name (more are counted in one entry). */
export const MAX_LISTED_NOT_SAMPLES = 10000;

/** Collects images that cannot be samples (outside a class folder, unsafe archive paths) with a bounded list. */
export function notSampleList(): { add(path: string, reason: string): void; list(): Array<{ path: string; reason: string }> } {
  const out: Array<{ path: string; reason: string }> = [];
  let more = 0;
  return {
    add(path, reason) { if (out.length < MAX_LISTED_NOT_SAMPLES) out.push({ path, reason }); else more++; },
    list: () => (more ? [...out, { path: '...', reason: `${more} more images not in class folders (not listed)` }] : out),
  };
}

/** What to do to every decoded image. */
export interface ImageDecodeOptions {
  /** Convert to one gray channel (Rec.709 luma). */
  grayscale?: boolean;
  /** Stretch to exactly this size with a Triangle (bilinear) filter. */
  resize?: { width: number; height: number };
}

/** The shape every sample must have: height x width x channels, 8 bits per channel. */
export interface ImageTarget {
  width: number;
  height: number;
  channels: number;
}

/** A decoded image, or why it could not be used. */
export type DecodeResult =
  | { ok: true; pixels: Uint8Array; width: number; height: number; channels: number }
  | { ok: false; reason: string };

/** True if `name` ends in one of {@link IMAGE_EXTENSIONS} (case-insensitive). */
export function isImageName(name: string): boolean {
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return false; // ".png" alone is a hidden file, not an image named with an extension
  const ext = name.slice(dot).toLowerCase();
  return (IMAGE_EXTENSIONS as readonly string[]).includes(ext);
}

/** Parse a `--resize WxH` value like "32x32"; null if malformed. */
export function parseResize(text: string): { width: number; height: number } | null {
  const m = /^\s*(\d+)\s*[xX,]\s*(\d+)\s*$/.exec(text);
  if (!m) return null;
  const width = Number(m[1]);
  const height = Number(m[2]);
  if (width < 1 || height < 1 || width > 65535 || height > 65535) return null;
  return { width, height };
}

function signature(b: Uint8Array): string | null {
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38) return 'gif';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  return null;
}

// JsColorType values of @napi-rs/image: channels and bytes per channel.
const COLOR: Record<number, { c: number; bytes: number }> = {
  0: { c: 1, bytes: 1 }, 1: { c: 2, bytes: 1 }, 2: { c: 3, bytes: 1 }, 3: { c: 4, bytes: 1 },
  4: { c: 1, bytes: 2 }, 5: { c: 2, bytes: 2 }, 6: { c: 3, bytes: 2 }, 7: { c: 4, bytes: 2 },
};

function to8bit(raw: Uint8Array): Uint8Array {
  const n = raw.length >> 1;
  const out = new Uint8Array(n);
  const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  for (let i = 0; i < n; i++) out[i] = Math.round(v.getUint16(2 * i, true) / 257);
  return out;
}

/** Convert interleaved 8-bit pixels from `from` channels to `to` channels (see the rules at the top of this file). */
export function convertChannels(src: Uint8Array, pixels: number, from: number, to: number): Uint8Array {
  if (from === to) return src;
  const out = new Uint8Array(pixels * to);
  for (let i = 0; i < pixels; i++) {
    const s = i * from;
    let g: number;
    let a = 255;
    let r = 0, gg = 0, b = 0;
    if (from <= 2) {
      g = src[s]; r = gg = b = g;
      if (from === 2) a = src[s + 1];
    } else {
      r = src[s]; gg = src[s + 1]; b = src[s + 2];
      g = Math.round((2126 * r + 7152 * gg + 722 * b) / 10000);
      if (from === 4) a = src[s + 3];
    }
    const d = i * to;
    if (to === 1) out[d] = g;
    else if (to === 2) { out[d] = g; out[d + 1] = a; }
    else { out[d] = r; out[d + 1] = gg; out[d + 2] = b; if (to === 4) out[d + 3] = a; }
  }
  return out;
}

/** Width, height, channels and bytes per channel from a PNG's IHDR chunk; null if it is not a valid IHDR. */
function pngHeader(b: Uint8Array): { width: number; height: number; c: number; bytes: number } | null {
  if (b.length < 33 || b[12] !== 0x49 || b[13] !== 0x48 || b[14] !== 0x44 || b[15] !== 0x52) return null;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const width = v.getUint32(16);
  const height = v.getUint32(20);
  const depth = b[24];
  const c = ({ 0: 1, 2: 3, 3: 3, 4: 2, 6: 4 } as Record<number, number>)[b[25]];
  if (!c || width === 0 || height === 0) return null;
  return { width, height, c, bytes: depth === 16 ? 2 : 1 };
}

/**
 * Decode one image file. With `target`, the result has exactly that shape (channels converted, size checked);
 * without, the image's own (possibly resized / grayscaled) shape is returned. Never throws for bad input.
 * Uses @napi-rs/image's async calls: they run on libuv's thread pool (so a batch decodes on all cores) and, unlike
 * the *Sync calls, free their native memory promptly (the sync ones grew RSS by ~3 kB per image in a worker).
 */
export async function decodeImage(bytes: Uint8Array, opts: ImageDecodeOptions, target: ImageTarget | null): Promise<DecodeResult> {
  if (bytes.length === 0) return { ok: false, reason: 'empty file (0 bytes)' };
  if (bytes.length > MAX_IMAGE_FILE_BYTES) return { ok: false, reason: `file too large for an image sample (${bytes.length} bytes)` };
  const kind = signature(bytes);
  if (!kind) return { ok: false, reason: 'not an image (unrecognised file signature)' };
  try {
    const t = new Transformer(bytes);
    let head: { width: number; height: number; c: number; bytes: number } | null = null;
    if (kind === 'png') {
      head = pngHeader(bytes);
      if (!head) return { ok: false, reason: 'cannot decode png: bad IHDR header' };
    } else {
      const meta = await t.metadata();
      const color = COLOR[meta.colorType];
      if (!color) return { ok: false, reason: `unsupported pixel format (floating-point ${kind})` };
      head = { width: meta.width, height: meta.height, ...color };
    }
    if (head.width * head.height > MAX_IMAGE_PIXELS) return { ok: false, reason: `image too large (${head.width}x${head.height})` };
    let width = head.width;
    let height = head.height;
    if (opts.resize) {
      width = opts.resize.width;
      height = opts.resize.height;
      if (width !== head.width || height !== head.height) {
        t.resize({ width, height, filter: ResizeFilterType.Triangle, fit: ResizeFit.Fill });
      }
    } else if (target && (width !== target.width || height !== target.height)) {
      return { ok: false, reason: `wrong size ${width}x${height}, expected ${target.width}x${target.height} (use --resize ${target.width}x${target.height})` };
    }
    let channels = head.c;
    const bytesPer = head.bytes;
    if (opts.grayscale && channels > 1) {
      t.grayscale();
      channels = channels === 4 ? 2 : channels === 3 ? 1 : channels; // image-rs keeps alpha as LumaA
    }
    let raw: Uint8Array = await t.rawPixels();
    if (raw.length !== width * height * channels * bytesPer) {
      // Palettes and transparency chunks are expanded by the decoder: trust the byte count when it is whole.
      const c = raw.length / (width * height * bytesPer);
      if (!Number.isInteger(c) || c < 1 || c > 4) return { ok: false, reason: `decoder returned ${raw.length} bytes for ${width}x${height}` };
      channels = c;
    }
    if (bytesPer === 2) raw = to8bit(raw);
    if (opts.grayscale && channels === 2) { raw = convertChannels(raw, width * height, 2, 1); channels = 1; }
    if (opts.grayscale && channels >= 3) { raw = convertChannels(raw, width * height, channels, 1); channels = 1; }
    if (target && channels !== target.channels) { raw = convertChannels(raw, width * height, channels, target.channels); channels = target.channels; }
    return { ok: true, pixels: raw, width, height, channels };
  } catch (e) {
    const msg = (e as Error).message.replace(/^Decode image failed\s*/i, '').trim();
    return { ok: false, reason: `cannot decode ${kind}: ${msg || 'unknown error'}` };
  }
}
