// A worker_threads pool decoding batches of image files. The main thread packs a batch (bytes from an archive
// stream or read from a folder tree, in one ArrayBuffer; or just a tree's paths, which the worker then reads); a
// worker decodes it and returns all pixels, their hashes and value counts as transferred ArrayBuffers.
// Results are handed back in submission order by the caller (see image-source.ts), so the store's sample order
// never depends on the number of workers or on timing.
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism, constants } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { decodeImage, type ImageDecodeOptions, type ImageTarget, MAX_IMAGE_FILE_BYTES } from './images.ts';
import { hashSamples } from '../util/hash64.ts';
import { countBytes } from '../util/histogram.ts';
import { pngAddon } from './png-native.ts';

/** Decodes in flight per thread (libuv's pool has 4 threads by default). */
const DECODE_CONCURRENCY = 8;

/**
 * A batch of encoded files packed in one buffer: file i is data[offsets[i], offsets[i+1]). With `paths` (and no data)
 * the decoding thread reads the files itself; a file it cannot read is skipped as "unreadable: <code>".
 */
export interface EncodedBatch {
  data: Uint8Array;
  offsets: Uint32Array;
  paths?: string[];
  /** data.buffer is the caller's to give away: it travels whole to the worker and comes back for reuse (pool.spare). */
  recycle?: boolean;
}

const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** Encoded bytes held at once by whichever thread reads a folder tree's files (also the recycled buffers' size). */
const READ_BYTES = 4 << 20;

/** Read files paths[from...] until about READ_BYTES are held (natively when the addon is built); errors by index. */
export function readSome(paths: string[], from: number, into?: ArrayBuffer): { batch: EncodedBatch; errors: (string | null)[]; count: number } {
  const addon = pngAddon();
  const rest = paths.length - from;
  if (addon) {
    const r = addon.readFiles(paths.slice(from).join('\0'), rest, MAX_IMAGE_FILE_BYTES, READ_BYTES, into);
    const count = r.read, data = r.data, offsets = r.offsets.subarray(0, count + 1);
    const errors: (string | null)[] = new Array(count).fill(null);
    for (let i = 0; i < count; i++) {
      const e = r.errors[i];
      if (e === -1) errors[i] = tooLarge(paths[from + i]);
      else if (e !== 0) errors[i] = `unreadable: ${ERRNO_NAMES.get(e) ?? `errno ${e}`}`;
    }
    return { batch: { data, offsets, recycle: into !== undefined && data.buffer === into }, errors, count };
  }
  const chunks: Uint8Array[] = [];
  const errors: (string | null)[] = [];
  let held = 0;
  for (let i = from; i < paths.length && (i === from || held < READ_BYTES); i++) {
    errors.push(null);
    const b = readOrError(paths[i], errors, i - from);
    chunks.push(b);
    held += b.length;
  }
  return { batch: pack(chunks), errors, count: chunks.length };
}

/** A file's bytes, or empty with errors[i] set to why it was skipped. */
function readOrError(path: string, errors: (string | null)[], i: number): Uint8Array {
  const r = readImageFile(path);
  if ('reason' in r) { errors[i] = r.reason; return new Uint8Array(0); }
  return r.data;
}

/** One image file's bytes, or why it is skipped (a file above MAX_IMAGE_FILE_BYTES is never read). */
export function readImageFile(path: string): { data: Uint8Array } | { reason: string } {
  try {
    if (statSync(path).size > MAX_IMAGE_FILE_BYTES) return { reason: tooLarge(path) };
    return { data: readFileSync(path) };
  } catch (err) { return { reason: `unreadable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` }; }
}

/** The skip reason for a file above MAX_IMAGE_FILE_BYTES (same words as decodeImage). */
function tooLarge(path: string): string {
  let size = '?';
  try { size = String(statSync(path).size); } catch { /* gone meanwhile */ }
  return `file too large for an image sample (${size} bytes)`;
}

/** Pack byte arrays into one EncodedBatch. */
export function pack(files: Uint8Array[]): EncodedBatch {
  const offsets = new Uint32Array(files.length + 1);
  let size = 0;
  for (const f of files) size += f.length;
  const data = new Uint8Array(size);
  let o = 0;
  files.forEach((f, i) => { offsets[i] = o; data.set(f, o); o += f.length; });
  offsets[files.length] = o;
  return { data, offsets };
}

/** Decoded batch: pixels of the readable files back to back (in order), and per file null or why it was skipped. */
export interface DecodedBatch {
  x: Uint8Array;
  reasons: (string | null)[];
  /** hash64 of each decoded sample (src/util/hash64.ts), computed here so the store writer does not have to. */
  hashes: Uint32Array;
  /** Per-channel value counts of x (src/util/histogram.ts), for the store's statistics. */
  counts: Float64Array;
}

/** Decodes batches; `decode` may run in parallel, results of each call belong to that call's batch. */
export interface ImagePool {
  readonly workers: number;
  decode(batch: EncodedBatch): Promise<DecodedBatch>;
  /** A read buffer (READ_BYTES) to read the next batch into: one a worker gave back, or a new one. */
  spare(): ArrayBuffer;
  close(): Promise<void>;
}

/** Read buffers the workers gave back, shared by every pool of this thread (so passes and conversions reuse them). */
const spares: ArrayBuffer[] = [];

/**
 * Decode every file of a batch to `target` (the worker's job; also used inline when workers = 0). A batch of paths is
 * read a few MB at a time. Plain 8-bit PNGs of the target's size and channels go through the native addon in one
 * call; every other file through decodeImage.
 */
export async function decodeBatch(input: EncodedBatch, opts: ImageDecodeOptions, target: ImageTarget): Promise<DecodedBatch> {
  const paths = input.paths;
  if (!paths) return decodeHeld(input, [], opts, target);
  const parts: DecodedBatch[] = [];
  for (let from = 0; from < paths.length;) {
    const { batch, errors, count } = readSome(paths, from);
    parts.push(await decodeHeld(batch, errors, opts, target));
    from += count;
  }
  if (parts.length === 1) return parts[0];
  const x = new Uint8Array(parts.reduce((k, p) => k + p.x.length, 0));
  const hashes = new Uint32Array(parts.reduce((k, p) => k + p.hashes.length, 0));
  const counts = new Float64Array(parts[0].counts.length);
  let o = 0, h = 0;
  for (const p of parts) {
    x.set(p.x, o); o += p.x.length; hashes.set(p.hashes, h); h += p.hashes.length;
    for (let i = 0; i < counts.length; i++) counts[i] += p.counts[i];
  }
  return { x, reasons: parts.flatMap((p) => p.reasons), hashes, counts };
}

/** Decode files already in memory; errors[i] set = file i could not be read (skipped with that reason). */
async function decodeHeld(batch: EncodedBatch, errors: (string | null)[], opts: ImageDecodeOptions, target: ImageTarget): Promise<DecodedBatch> {
  const n = batch.offsets.length - 1;
  const sampleBytes = target.width * target.height * target.channels;
  const all = new Uint8Array(n * sampleBytes);
  const reasons: (string | null)[] = new Array(n).fill(null);
  const todo: number[] = [];
  const addon = opts.resize ? null : pngAddon(); // resizing always goes through the general decoder
  if (addon) {
    const status = new Uint8Array(n);
    addon.decode(batch.data, batch.offsets, target.width, target.height, target.channels, all, status);
    for (let i = 0; i < n; i++) if (status[i] !== 0 || errors[i]) todo.push(i);
  } else for (let i = 0; i < n; i++) todo.push(i);
  // The rest decode concurrently on libuv's thread pool (a few at a time, to bound native memory).
  let next = 0;
  const lane = async () => {
    while (next < todo.length) {
      const i = todo[next++];
      if (errors[i]) { reasons[i] = errors[i]; continue; }
      const r = await decodeImage(batch.data.subarray(batch.offsets[i], batch.offsets[i + 1]), opts, target);
      if (r.ok) all.set(r.pixels, i * sampleBytes);
      else reasons[i] = r.reason;
    }
  };
  await Promise.all(Array.from({ length: Math.min(todo.length, DECODE_CONCURRENCY) }, lane));
  // Keep the readable ones, in order.
  let ok = 0;
  for (let i = 0; i < n; i++) {
    if (reasons[i] !== null) continue;
    if (ok !== i) all.copyWithin(ok * sampleBytes, i * sampleBytes, (i + 1) * sampleBytes);
    ok++;
  }
  const x = ok === n ? all : all.slice(0, ok * sampleBytes);
  const counts = new Float64Array(256 * target.channels);
  const native = pngAddon();
  if (native) {
    const hashes = new Uint32Array(2 * ok);
    native.digest(x, sampleBytes, ok, target.channels, hashes, counts);
    return { x, reasons, hashes, counts };
  }
  countBytes(x, target.channels, counts);
  return { x, reasons, hashes: hashSamples(x, sampleBytes, ok), counts };
}

/** Default worker count: cores - 1, at least 1. */
export function defaultWorkers(): number {
  return Math.max(1, availableParallelism() - 1);
}

interface Job { id: number; resolve: (r: DecodedBatch) => void; reject: (e: Error) => void; batch: EncodedBatch }

/** Start a pool of `workers` threads (0 = decode inline on the calling thread). */
export function createImagePool(workers: number, opts: ImageDecodeOptions, target: ImageTarget): ImagePool {
  if (workers <= 0) {
    return {
      workers: 0,
      decode: (batch) => decodeBatch(batch, opts, target),
      spare: () => spares.pop() ?? new ArrayBuffer(READ_BYTES),
      close: async () => {},
    };
  }
  // Workers run this same TypeScript file; tsx is registered inside the worker before importing it, because
  // `execArgv: ['--import', 'tsx']` does not reach worker entry points on Node 20.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const queue: Job[] = [];
  const idle: Worker[] = [];
  const busy = new Map<Worker, Job>();
  const all: Worker[] = [];
  let nextId = 0;
  let failed: Error | null = null;
  const pump = () => {
    while (idle.length > 0 && queue.length > 0) {
      const w = idle.pop()!;
      const job = queue.shift()!;
      busy.set(w, job);
      const { data, offsets, paths, recycle } = job.batch;
      // Copy into exactly-sized buffers we own, then transfer them (no copy across threads); a recycled read buffer
      // travels whole (the view keeps its length) and comes back with the reply.
      const d = recycle || (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) ? data : data.slice();
      const o = offsets.byteOffset === 0 && offsets.byteLength === offsets.buffer.byteLength ? offsets : offsets.slice();
      // Paths travel as one string: cloning one string is much cheaper for this thread than an array of them.
      w.postMessage({ id: job.id, data: d, offsets: o, paths: paths?.join('\0'), recycle }, [d.buffer as ArrayBuffer, o.buffer as ArrayBuffer]);
    }
  };
  for (let i = 0; i < workers; i++) {
    const w = new Worker(boot, { eval: true, workerData: { slimfitImagePool: true, opts, target }, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    w.on('message', (msg: DecodedBatch & { id: number; spare?: ArrayBuffer }) => {
      if (msg.spare && spares.length < 8) spares.push(msg.spare);
      const job = busy.get(w);
      busy.delete(w);
      idle.push(w);
      if (job) job.resolve({ x: msg.x, reasons: msg.reasons, hashes: msg.hashes, counts: msg.counts });
      pump();
    });
    w.on('error', (e) => {
      failed = e;
      const job = busy.get(w);
      busy.delete(w);
      job?.reject(e);
      for (const j of queue.splice(0)) j.reject(e);
    });
    all.push(w);
    idle.push(w);
  }
  return {
    workers,
    decode(batch) {
      if (failed) return Promise.reject(failed);
      return new Promise((resolve, reject) => {
        queue.push({ id: nextId++, resolve, reject, batch });
        pump();
      });
    },
    spare: () => spares.pop() ?? new ArrayBuffer(READ_BYTES),
    async close() {
      await Promise.all(all.map((w) => w.terminate()));
    },
  };
}

// Worker side: decode batches until terminated.
if (!isMainThread && parentPort && (workerData as { slimfitImagePool?: boolean } | null)?.slimfitImagePool) {
  const { opts, target } = workerData as { opts: ImageDecodeOptions; target: ImageTarget };
  const port = parentPort;
  port.on('message', async (msg: { id: number; data: Uint8Array; offsets: Uint32Array; paths?: string; recycle?: boolean }) => {
    const r = await decodeBatch({ data: msg.data, offsets: msg.offsets, paths: msg.paths?.split('\0') }, opts, target);
    const x = r.x.byteOffset === 0 && r.x.byteLength === r.x.buffer.byteLength ? r.x : r.x.slice();
    const spare = msg.recycle ? (msg.data.buffer as ArrayBuffer) : undefined; // decoded: the read buffer goes back
    port.postMessage({ id: msg.id, x, reasons: r.reasons, hashes: r.hashes, counts: r.counts, spare },
      [x.buffer as ArrayBuffer, r.hashes.buffer as ArrayBuffer, r.counts.buffer as ArrayBuffer, ...(spare ? [spare] : [])]);
  });
}
