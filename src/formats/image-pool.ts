// A worker_threads pool decoding batches of image files. The main thread packs a batch (bytes from an archive
// stream or read from a folder tree, in one ArrayBuffer; or just a tree's paths, which the worker then reads); a
// worker decodes it and returns all pixels, their hashes and value counts as transferred ArrayBuffers.
// Results are handed back in submission order by the caller (see image-source.ts), so the store's sample order
// never depends on the number of workers or on timing.
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism, constants } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { featureEnabled } from '../core/config.ts';
import { tsWorker } from '../core/worker.ts';
import { decodeImage, type ImageDecodeOptions, type ImageTarget, MAX_IMAGE_FILE_BYTES } from './images.ts';
import { hashSamples } from '../core/hash64.ts';
import { countBytes } from '../core/histogram.ts';
import { type PngAddon, pngAddon } from './png-native.ts';

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

/** What one read of a run of files gave: the batch to decode, per file null or why it is skipped, files consumed. */
export interface ReadPart { batch: EncodedBatch; errors: (string | null)[]; count: number }

/** Why the addon could not read a file: its errno, or -1 for a file above MAX_IMAGE_FILE_BYTES. */
function errnoReason(e: number, path: string): string {
  return e === -1 ? tooLarge(path) : `unreadable: ${ERRNO_NAMES.get(e) ?? `errno ${e}`}`;
}

const NO_BYTES = new Uint8Array(0);

/** A native read's result as a ReadPart. */
function partOf(r: ReturnType<NonNullable<ReturnType<typeof pngAddon>>['readFiles']>, paths: string[], from: number, into: ArrayBuffer | undefined): ReadPart {
  const count = r.read, data = r.data, offsets = r.offsets.subarray(0, count + 1);
  const errors: (string | null)[] = new Array(count).fill(null);
  for (let i = 0; i < count; i++) if (r.errors[i] !== 0) errors[i] = errnoReason(r.errors[i], paths[from + i]);
  return { batch: { data, offsets, recycle: into !== undefined && data.buffer === into }, errors, count };
}

/** Read files paths[from...] until about READ_BYTES are held (natively when the addon is built); errors by index. */
export function readSome(paths: string[], from: number, into?: ArrayBuffer): ReadPart {
  const addon = pngAddon();
  if (addon) return partOf(addon.readFiles(paths.slice(from).join('\0'), paths.length - from, MAX_IMAGE_FILE_BYTES, READ_BYTES, into), paths, from, into);
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

/** The parts of one batch decoded separately, as one DecodedBatch (in order). */
export function joinDecoded(parts: DecodedBatch[]): DecodedBatch {
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

/** Pack byte arrays into one EncodedBatch; into a pool's spare read buffer (`spare`) when they fit in one. */
export function pack(files: Uint8Array[], spare?: () => ArrayBuffer): EncodedBatch {
  const offsets = new Uint32Array(files.length + 1);
  let size = 0;
  for (const f of files) size += f.length;
  const into = spare && size <= READ_BYTES ? spare() : undefined;
  const data = into ? new Uint8Array(into, 0, size) : new Uint8Array(size);
  let o = 0;
  files.forEach((f, i) => { offsets[i] = o; data.set(f, o); o += f.length; });
  offsets[files.length] = o;
  return { data, offsets, recycle: into !== undefined };
}

/** Decoded batch: pixels of the readable files back to back (in order), and per file null or why it was skipped. */
export interface DecodedBatch {
  x: Uint8Array;
  reasons: (string | null)[];
  /** hash64 of each decoded sample (src/core/hash64.ts), computed here so the store writer does not have to. */
  hashes: Uint32Array;
  /** Per-channel value counts of x (src/core/histogram.ts), for the store's statistics. */
  counts: Float64Array;
}

/** Decodes batches; `decode` may run in parallel, results of each call belong to that call's batch. */
export interface ImagePool {
  readonly workers: number;
  /** The caller should read a folder tree's files itself and send their bytes (the decoding threads do not read). */
  readonly readsHere: boolean;

  decode(batch: EncodedBatch): Promise<DecodedBatch>;
  /** A read buffer (READ_BYTES) to read the next batch into: one a worker gave back, or a new one. */
  spare(): ArrayBuffer;
  /** The caller is done with a decoded batch's pixels: the pool may decode a later batch into them (native pool only). */
  recycle?(r: DecodedBatch): void;
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
  return joinDecoded(parts);
}

/**
 * Decode files already in memory; errors[i] set = file i could not be read (skipped with that reason). With `pre`,
 * the addon already decoded them into pre.all (pre.status[i] 0 = done).
 */
async function decodeHeld(batch: EncodedBatch, errors: (string | null)[], opts: ImageDecodeOptions, target: ImageTarget,
  pre?: { all: Uint8Array; status: Uint8Array }): Promise<DecodedBatch> {
  const n = batch.offsets.length - 1;
  const sampleBytes = target.width * target.height * target.channels;
  const all = pre?.all ?? new Uint8Array(n * sampleBytes);
  const reasons: (string | null)[] = new Array(n).fill(null);
  const todo: number[] = [];
  const addon = opts.resize ? null : pngAddon(); // resizing always goes through the general decoder
  if (addon) {
    const status = pre?.status ?? new Uint8Array(n);
    if (!pre) addon.decode(batch.data, batch.offsets, target.width, target.height, target.channels, all, status);
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

/**
 * Jobs sent ahead to each worker. With 2 a worker starts its next batch at once instead of waiting for this thread
 * to take its reply off the event loop (this thread also reads, hashes and writes in long synchronous steps).
 */
const AHEAD = 2;

/**
 * `workers` native decode threads (the addon's pool): plain PNGs, their hashes and counts decoded there; every other
 * file through decodeImage on this thread's event loop. Batches come as bytes or as paths (the threads read them).
 * Used when nothing is resized: no worker isolate to start (~0.2 s), no messages, one copy of the JIT-compiled code.
 */
function createNativePool(workers: number, opts: ImageDecodeOptions, target: ImageTarget, addon: PngAddon): ImagePool {
  const handle = addon.decoderCreate(workers);
  let closed = false;
  const sampleBytes = target.width * target.height * target.channels;
  // Pixel buffers handed back by the consumer (recycle) instead of one new ~200 KB buffer per batch for the garbage
  // collector to free whenever it runs.
  const pixelSpares: Uint8Array[] = [];
  const pixels = (bytes: number): Uint8Array => {
    const i = pixelSpares.findIndex((b) => b.length === bytes);
    return i < 0 ? new Uint8Array(bytes) : pixelSpares.splice(i, 1)[0];
  };
  const submit = async (batch: EncodedBatch): Promise<DecodedBatch> => {
    const paths = batch.paths;
    const n = paths ? paths.length : batch.offsets.length - 1;
    const all = pixels(n * sampleBytes), status = new Uint8Array(n);
    const hashes = new Uint32Array(2 * n), counts = new Float64Array(256 * target.channels);
    if (!paths) {
      const digested = await addon.decoderSubmit(handle, batch.data, batch.offsets, target.width, target.height, target.channels, all, status, hashes, counts);
      const r = digested ? { x: all, reasons: new Array<string | null>(n).fill(null), hashes, counts }
        : await decodeHeld(batch, [], opts, target, { all, status });
      if (batch.recycle && spares.length < 8) spares.push(batch.data.buffer as ArrayBuffer); // decoded: the read buffer is free again
      return r;
    }
    const errs = new Int32Array(n);
    const digested = await addon.decoderSubmit(handle, paths.join('\0'), Uint32Array.of(n, MAX_IMAGE_FILE_BYTES), target.width, target.height, target.channels, all, status, hashes, counts, errs);
    if (digested) return { x: all, reasons: new Array<string | null>(n).fill(null), hashes, counts };
    // Files the addon could not read get their reason; the ones it could not decode are read again here for decodeImage.
    const errors: (string | null)[] = new Array(n).fill(null);
    const again: Uint8Array[] = new Array(n).fill(NO_BYTES);
    for (let i = 0; i < n; i++) {
      if (errs[i] !== 0) errors[i] = errnoReason(errs[i], paths[i]);
      else if (status[i] !== 0) {
        const r = readImageFile(paths[i]);
        if ('reason' in r) errors[i] = r.reason; else again[i] = r.data;
      }
    }
    return decodeHeld(pack(again), errors, opts, target, { all, status });
  };
  return {
    workers,
    // As with worker threads: with one decode thread this thread reads, with more the decode threads do.
    readsHere: workers === 1,
    async decode(batch) {
      if (closed) throw new Error('image pool is closed');
      return submit(batch);
    },
    spare: () => spares.pop() ?? new ArrayBuffer(READ_BYTES),
    recycle(r) {
      const x = r.x; // only whole buffers this pool made (a batch with skipped files holds a shorter copy)
      if (x.byteOffset === 0 && x.byteLength === x.buffer.byteLength && x.length > 0 && pixelSpares.length < 8) pixelSpares.push(x);
    },
    async close() {
      if (!closed) { closed = true; addon.decoderClose(handle); }
    },
  };
}

/** Options of {@link createImagePool}. */
export interface ImagePoolOptions extends ImageDecodeOptions {
  /**
   * Decode plain PNGs on the addon's native threads (false: worker threads for every file). Default: on unless
   * SLIMFIT_DISABLE names `png-pool`, `png` or `native`.
   */
  nativeThreads?: boolean;
}

/**
 * Start a pool of `workers` decoding threads (0 = decode inline on the calling thread): the addon's native threads
 * when nothing is resized (and `nativeThreads` is not off), else worker threads.
 */
export function createImagePool(workers: number, opts: ImagePoolOptions, target: ImageTarget): ImagePool {
  if (workers <= 0) {
    return {
      workers: 0,
      readsHere: false,
      decode: (batch) => decodeBatch(batch, opts, target),
      spare: () => spares.pop() ?? new ArrayBuffer(READ_BYTES),
      close: async () => {},
    };
  }
  const addon = opts.resize ? null : pngAddon();
  if (addon && (opts.nativeThreads ?? featureEnabled('png-pool'))) return createNativePool(workers, opts, target, addon);
  const queue: Job[] = [];
  /** Jobs sent to each worker and not answered yet, oldest first (a worker answers in order). */
  const sent = new Map<Worker, Job[]>();
  const all: Worker[] = [];
  let nextId = 0;
  let failed: Error | null = null;
  const send = (w: Worker, job: Job) => {
    sent.get(w)!.push(job);
    const { data, offsets, paths, recycle } = job.batch;
    // Copy into exactly-sized buffers we own, then transfer them (no copy across threads); a recycled read buffer
    // travels whole (the view keeps its length) and comes back with the reply.
    const d = recycle || (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) ? data : data.slice();
    const o = offsets.byteOffset === 0 && offsets.byteLength === offsets.buffer.byteLength ? offsets : offsets.slice();
    // Paths travel as one string: cloning one string is much cheaper for this thread than an array of them.
    w.postMessage({ id: job.id, data: d, offsets: o, paths: paths?.join('\0'), recycle }, [d.buffer as ArrayBuffer, o.buffer as ArrayBuffer]);
  };
  const pump = () => {
    // Least loaded worker first, so batches spread over all workers before any gets a second one.
    for (let depth = 0; depth < AHEAD && queue.length > 0; depth++) {
      for (const w of all) {
        if (queue.length === 0) break;
        if (sent.get(w)!.length === depth) send(w, queue.shift()!);
      }
    }
  };
  for (let i = 0; i < workers; i++) {
    // Workers run this same file.
    const w = tsWorker(import.meta.url, { slimfitImagePool: true, opts, target }, { maxYoungGenerationSizeMb: 4 });
    sent.set(w, []);
    w.on('message', (msg: DecodedBatch & { id: number; spare?: ArrayBuffer }) => {
      if (msg.spare && spares.length < 8) spares.push(msg.spare);
      const job = sent.get(w)!.shift();
      if (job) job.resolve({ x: msg.x, reasons: msg.reasons, hashes: msg.hashes, counts: msg.counts });
      pump();
    });
    w.on('error', (e) => {
      failed = e;
      for (const j of sent.get(w)!.splice(0)) j.reject(e);
      for (const j of queue.splice(0)) j.reject(e);
    });
    all.push(w);
  }
  return {
    workers,
    // With one worker this thread reads (it is otherwise half idle and the worker is the bottleneck: 2.4 s instead of
    // 2.7 s for 210k PNGs); with more, the workers do (reading here made this thread the bottleneck: 2.5 s, not 2.2 s).
    readsHere: workers === 1,
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
  // Batches arrive ahead of time (AHEAD): decode them one after another, in order.
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (msg: { id: number; data: Uint8Array; offsets: Uint32Array; paths?: string; recycle?: boolean }) => {
    // A failure is thrown outside the chain, so it ends the worker and reaches the pool's 'error' handler.
    chain = chain.then(() => answer(msg)).catch((e) => { setImmediate(() => { throw e; }); });
  });
  const answer = async (msg: { id: number; data: Uint8Array; offsets: Uint32Array; paths?: string; recycle?: boolean }) => {
    const r = await decodeBatch({ data: msg.data, offsets: msg.offsets, paths: msg.paths?.split('\0') }, opts, target);
    const x = r.x.byteOffset === 0 && r.x.byteLength === r.x.buffer.byteLength ? r.x : r.x.slice();
    const spare = msg.recycle ? (msg.data.buffer as ArrayBuffer) : undefined; // decoded: the read buffer goes back
    port.postMessage({ id: msg.id, x, reasons: r.reasons, hashes: r.hashes, counts: r.counts, spare },
      [x.buffer as ArrayBuffer, r.hashes.buffer as ArrayBuffer, r.counts.buffer as ArrayBuffer, ...(spare ? [spare] : [])]);
  };
}
