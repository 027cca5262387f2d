// A SampleSource over a stream of labelled image files (from a folder tree or an archive): packs files into
// batches, decodes them in the worker pool, and yields samples strictly in input order with bad files skipped.
import type { FieldSpec } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { createImagePool, type DecodedBatch, type ImagePoolOptions, defaultWorkers, joinDecoded, pack, readImageFile, readSome } from './image-pool.ts';
import { decodeImage, type ImageDecodeOptions, type ImageTarget, resizeProblem } from './images.ts';
import { pngAddon } from './png-native.ts';
import { type PartSpec, type SampleBatch, type SampleSource, type SkippedInput, partRange } from '../core/source.ts';

/** One image file with its class index and bytes (or, with `lazy`, only its path: the decoding thread reads it). */
export interface ImageEntry {
  path: string;
  label: number;
  data: Uint8Array;
  /** The bytes were not read here (data is empty): whoever decodes the file reads it from `path`. */
  lazy?: boolean;
  /** Set when the file could not be read at all: the entry is skipped with this reason (e.g. "unreadable: EACCES"). */
  error?: string;
}

/** Entries handed over together; release(), when present, says their `data` is no longer read (it may be reused). */
export type EntryChunk = ImageEntry[] & { release?: () => void };

/** Where the files come from: a re-startable stream of entries, plus a cheaper labels-only stream when possible. */
export interface ImageInput {
  name: string;
  classNames: string[];
  /** Total input bytes, if known (for progress). */
  bytes?: number;
  /** Input bytes read so far by the current entries() pass, if known (for progress). */
  bytesRead?(): number;
  /** Every candidate file in a deterministic order. Each call starts a new pass. */
  entries(): AsyncIterable<ImageEntry>;
  /** The same entries in arrays (cheaper: one await per array, not per file; per-file async steps grew V8's heap). */
  entryChunks?(): AsyncIterable<EntryChunk>;
  /** Class index of every candidate file, same order as entries(), without reading file contents. */
  labelsOnly?(): AsyncIterable<number>;
  /** Images found where no sample can come from (outside a class folder, an unsafe archive path): listed as skipped. */
  notSamples?: SkippedInput[];
  close?(): Promise<void>;
}

/** Options shared by image trees and archives. */
export interface ImageSourceOptions extends ImagePoolOptions {
  /** Worker threads for decoding (default cores - 1, min 1; 0 = decode on the main thread). */
  workers?: number;
  /** Make the first unreadable file fatal instead of skipping it. */
  strict?: boolean;
  /** Files per batch sent to a worker (default 256). */
  batchFiles?: number;
  /** Only this part of the candidate files (`convert --part`): a range of them in input order. */
  part?: PartSpec;
}

/**
 * The candidate files [start, end) of `input` (in its order) as an input of their own; the class list stays the
 * whole input's, and files found outside class folders are listed by part 0 only (so joined parts list them once).
 */
async function inputPart(input: ImageInput, part: PartSpec, sampleBytes: number): Promise<ImageInput> {
  let total = 0;
  if (input.labelsOnly) for await (const _ of input.labelsOnly()) total++;
  else for await (const _ of input.entries()) total++;
  const [start, end] = partRange(total, part, sampleBytes);
  async function* entryChunks(): AsyncGenerator<EntryChunk> {
    if (start >= end) return;
    let at = 0;
    for await (const chunk of chunksOf(input)) {
      const from = at;
      at += chunk.length;
      if (at <= start) { chunk.release?.(); continue; }
      const slice = from >= start && at <= end ? chunk : chunk.slice(Math.max(0, start - from), Math.min(chunk.length, end - from));
      yield Object.assign(slice, { release: chunk.release });
      if (at >= end) return;
    }
  }
  async function* entries(): AsyncGenerator<ImageEntry> {
    for await (const chunk of entryChunks()) yield* chunk;
  }
  const labelsOnly = input.labelsOnly && (async function* (): AsyncGenerator<number> {
    let i = 0;
    for await (const l of input.labelsOnly!()) {
      if (i >= start && i < end) yield l;
      if (++i >= end) return;
    }
  });
  return { ...input, entries, entryChunks, ...(labelsOnly ? { labelsOnly } : {}), notSamples: part.index === 0 ? input.notSamples : [] };
}

const BATCH_BYTES = 4 << 20;

/** A lazy entry's bytes read here (its `error` set when that fails). */
function readOrEmpty(e: ImageEntry): Uint8Array {
  const r = readImageFile(e.path);
  if ('reason' in r) { e.error = r.reason; return new Uint8Array(0); }
  return r.data;
}

/** The input's entries in arrays: its own chunks when it has them, else entries() one array per entry. */
async function* chunksOf(input: ImageInput): AsyncGenerator<EntryChunk> {
  if (input.entryChunks) { yield* input.entryChunks(); return; }
  for await (const e of input.entries()) yield [e];
}

function failStrict(name: string, path: string, reason: string): never {
  throw new SlimfitError(`${path}: ${reason}`, {
    file: name,
    hint: '--strict stops at the first unreadable file; remove or fix it, or drop --strict to skip such files and list them in the manifest',
  });
}

/** Find the target shape by decoding files until one works (bad ones first in line are judged again later). */
async function probeTarget(input: ImageInput, opts: ImageSourceOptions): Promise<ImageTarget> {
  let tried = 0;
  let firstBad: { path: string; reason: string } | null = null;
  for await (const e of input.entries()) {
    tried++;
    let data = e.data;
    if (e.lazy) {
      const got = readImageFile(e.path);
      if ('reason' in got) {
        if (opts.strict) failStrict(input.name, e.path, got.reason);
        firstBad ??= { path: e.path, reason: got.reason };
        continue;
      }
      data = got.data;
    }
    const r = await decodeImage(data, opts, null);
    if (r.ok) {
      return { width: r.width, height: r.height, channels: r.channels };
    }
    if (opts.strict) failStrict(input.name, e.path, r.reason);
    firstBad ??= { path: e.path, reason: r.reason };
  }
  throw new SlimfitError(tried === 0 ? 'no image files found' : `none of the ${tried} image files could be decoded (first: ${firstBad!.path}: ${firstBad!.reason})`, {
    file: input.name,
    hint: 'expected root/<class>/<file>.{png,jpg,jpeg,gif,bmp}',
  });
}

/** Build a SampleSource over `input`: x uint8 [H, W, C] (from the first readable image or --resize/--grayscale), y the class index. */
export async function openImageSource(whole: ImageInput, opts: ImageSourceOptions = {}): Promise<SampleSource> {
  if (opts.resize) {
    const tooLarge = resizeProblem(opts.resize);
    if (tooLarge) throw new SlimfitError(tooLarge, { file: whole.name, hint: 'choose a smaller size' });
  }
  // The sample shape comes from the whole input's first readable image, so every part has the one conversion's.
  const target = await probeTarget(whole, opts);
  const input = opts.part ? await inputPart(whole, opts.part, target.width * target.height * target.channels) : whole;
  const classNames = input.classNames;
  const yDtype = classNames.length <= 256 ? 'uint8' : 'int64';
  const yBytes = yDtype === 'uint8' ? 1 : 8;
  const x: FieldSpec = { dtype: 'uint8', shape: [target.height, target.width, target.channels] };
  const y: FieldSpec = { dtype: yDtype, shape: [] };
  const sampleBytes = target.width * target.height * target.channels;
  const workers = opts.workers ?? defaultWorkers();
  // Decoded pixels of a batch stay within ~BATCH_BYTES too (a batch of paths carries no byte count to stop on).
  const batchFiles = Math.max(1, Math.min(opts.batchFiles ?? 256, Math.floor(BATCH_BYTES / sampleBytes)));
  const skipped: SkippedInput[] = [];
  /** Candidate indices skipped in the last complete pass (lets labels() avoid decoding). */
  let skippedIndex: Set<number> | null = null;

  function encodeY(labels: number[]): Uint8Array {
    if (yBytes === 1) return Uint8Array.from(labels);
    const out = new BigInt64Array(labels.length);
    for (let i = 0; i < labels.length; i++) out[i] = BigInt(labels[i]);
    return new Uint8Array(out.buffer);
  }

  async function* batches(): AsyncGenerator<SampleBatch> {
    const pool = createImagePool(workers, opts, target);
    skipped.length = 0;
    skipped.push(...(input.notSamples ?? []));
    const passSkipped = new Set<number>();
    /** Batches being read and decoded, oldest first; `errors[i]` set = file i could not be read (overrides the decode's reason). */
    const inFlight: Array<{ promise: Promise<{ r: DecodedBatch; errors: (string | null | undefined)[] }>; paths: string[]; labels: number[]; first: number }> = [];
    const maxInFlight = Math.max(2, 2 * pool.workers + 1);
    const readHere = pool.readsHere; // see ImagePool.readsHere
    const native = pngAddon() !== null; // reads into recycled buffers
    let index = 0;
    let files: ImageEntry[] = [];
    let size = 0;
    /** Read `paths` here a few MB at a time; each part goes to the pool as its own job, its buffer transferred. */
    const readAndDecode = async (paths: string[]): Promise<{ r: DecodedBatch; errors: (string | null)[] }> => {
      const decoded: Promise<DecodedBatch>[] = [];
      const errors: (string | null)[] = [];
      for (let from = 0; from < paths.length;) {
        const part = readSome(paths, from, native ? pool.spare() : undefined);
        decoded.push(pool.decode(part.batch));
        errors.push(...part.errors);
        from += part.count;
      }
      const parts = await Promise.all(decoded);
      const r = joinDecoded(parts);
      if (parts.length > 1) for (const p of parts) pool.recycle?.(p); // copied into r
      return { r, errors };
    };
    const submit = () => {
      const paths = files.map((f) => f.path);
      const labels = files.map((f) => f.label);
      const first = index - files.length;
      if (readHere && files.every((f) => f.lazy)) {
        inFlight.push({ promise: readAndDecode(paths), paths, labels, first });
      } else {
        // Files not read yet (trees) are read by the decoding thread; bytes we already hold (archives) travel packed.
        const lazy = files.every((f) => f.lazy);
        const batch = lazy ? { data: new Uint8Array(0), offsets: new Uint32Array(0), paths }
          : pack(files.map((f) => (f.lazy ? readOrEmpty(f) : f.data)), pool.spare);
        const errors = files.map((f) => f.error);
        inFlight.push({ promise: pool.decode(batch).then((r) => ({ r, errors })), paths, labels, first });
      }
      files = [];
      size = 0;
    };
    const finish = async (): Promise<SampleBatch> => {
      const job = inFlight.shift()!;
      const { r, errors } = await job.promise;
      const labels: number[] = [];
      r.reasons.forEach((reason0, i) => {
        let reason = reason0;
        if (reason === null) labels.push(job.labels[i]);
        else {
          if (errors[i]) reason = errors[i]!;
          if (opts.strict) failStrict(input.name, job.paths[i], reason);
          skipped.push({ path: job.paths[i], reason });
          passSkipped.add(job.first + i);
        }
      });
      if (r.x.length !== labels.length * sampleBytes) throw new Error(`image pool returned ${r.x.length} bytes for ${labels.length} samples`);
      let released = false;
      const release = () => { if (!released) { released = true; pool.recycle?.(r); } };
      return { n: labels.length, x: r.x, y: encodeY(labels), hashes: r.hashes, counts: r.counts, release };
    };
    // Chunks whose entries are not all packed into a submitted batch yet (their bytes are still read).
    const unpacked: Array<() => void> = [];
    try {
      for await (const chunk of chunksOf(input)) {
        for (const e of chunk) {
          files.push(e);
          size += e.data.length;
          index++;
          if (files.length >= batchFiles || size >= BATCH_BYTES) {
            submit();
            for (const release of unpacked.splice(0)) release(); // earlier chunks are all packed now
            while (inFlight.length >= maxInFlight) {
              const b = await finish();
              if (b.n > 0) yield b;
            }
          }
        }
        if (chunk.release) {
          if (files.length === 0) chunk.release();
          else unpacked.push(chunk.release);
        }
      }
      if (files.length > 0) submit();
      for (const release of unpacked.splice(0)) release();
      while (inFlight.length > 0) {
        const b = await finish();
        if (b.n > 0) yield b;
      }
      skippedIndex = passSkipped;
    } finally {
      // Make sure no rejected promise is left unobserved when the consumer stops early or we throw.
      for (const j of inFlight) j.promise.catch(() => {});
      await pool.close();
    }
  }

  async function* labels(): AsyncGenerator<ArrayLike<number>> {
    if (skippedIndex && input.labelsOnly) {
      const skip = skippedIndex;
      let buf: number[] = [];
      let i = 0;
      for await (const l of input.labelsOnly()) {
        if (!skip.has(i++)) buf.push(l);
        if (buf.length >= 65536) { yield buf; buf = []; }
      }
      if (buf.length > 0) yield buf;
      return;
    }
    // Which files are readable is only known by decoding them: one full pass.
    for await (const b of batches()) {
      yield yBytes === 1 ? b.y : Array.from(new BigInt64Array(b.y.buffer, b.y.byteOffset, b.n), Number);
    }
  }

  return {
    name: input.name,
    x,
    y,
    classNames,
    bytes: input.bytes,
    ...(opts.part ? { part: opts.part } : {}),
    get bytesRead() { return input.bytesRead?.(); },
    batches,
    labels,
    get skipped() { return skipped; },
    close: async () => { await input.close?.(); },
  };
}
