// A worker_threads pool decoding batches of image files. The main thread reads bytes (disk or archive stream) and
// packs a batch into one ArrayBuffer; a worker decodes it and returns all pixels as one transferred ArrayBuffer.
// Results are handed back in submission order by the caller (see image-source.ts), so the store's sample order
// never depends on the number of workers or on timing.
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { type DecodeResult, decodeImage, type ImageDecodeOptions, type ImageTarget } from './images.ts';

/** Decodes in flight per thread (libuv's pool has 4 threads by default). */
const DECODE_CONCURRENCY = 8;

/** A batch of encoded files packed in one buffer: file i is data[offsets[i], offsets[i+1]). */
export interface EncodedBatch {
  data: Uint8Array;
  offsets: Uint32Array;
}

/** Decoded batch: pixels of the readable files back to back (in order), and per file null or why it was skipped. */
export interface DecodedBatch {
  x: Uint8Array;
  reasons: (string | null)[];
}

/** Decodes batches; `decode` may run in parallel, results of each call belong to that call's batch. */
export interface ImagePool {
  readonly workers: number;
  decode(batch: EncodedBatch): Promise<DecodedBatch>;
  close(): Promise<void>;
}

/** Decode every file of a batch to `target` (the worker's job; also used inline when workers = 0). */
export async function decodeBatch(batch: EncodedBatch, opts: ImageDecodeOptions, target: ImageTarget): Promise<DecodedBatch> {
  const n = batch.offsets.length - 1;
  const sampleBytes = target.width * target.height * target.channels;
  // Files decode concurrently on libuv's thread pool (a few at a time, to bound native memory); results by index.
  const results: DecodeResult[] = new Array(n);
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      results[i] = await decodeImage(batch.data.subarray(batch.offsets[i], batch.offsets[i + 1]), opts, target);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, DECODE_CONCURRENCY) }, lane));
  const okCount = results.reduce((k, r) => k + (r.ok ? 1 : 0), 0);
  const x = new Uint8Array(okCount * sampleBytes);
  const reasons: (string | null)[] = new Array(n);
  let ok = 0;
  results.forEach((r, i) => {
    if (r.ok) {
      x.set(r.pixels, ok * sampleBytes);
      ok++;
      reasons[i] = null;
    } else {
      reasons[i] = r.reason;
    }
  });
  return { x, reasons };
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
      const { data, offsets } = job.batch;
      // Copy into exactly-sized buffers we own, then transfer them (no copy across threads).
      const d = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
      const o = offsets.byteOffset === 0 && offsets.byteLength === offsets.buffer.byteLength ? offsets : offsets.slice();
      w.postMessage({ id: job.id, data: d, offsets: o }, [d.buffer as ArrayBuffer, o.buffer as ArrayBuffer]);
    }
  };
  for (let i = 0; i < workers; i++) {
    const w = new Worker(boot, { eval: true, workerData: { slimfitImagePool: true, opts, target }, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    w.on('message', (msg: { id: number; x: Uint8Array; reasons: (string | null)[] }) => {
      const job = busy.get(w);
      busy.delete(w);
      idle.push(w);
      if (job) job.resolve({ x: msg.x, reasons: msg.reasons });
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
    async close() {
      await Promise.all(all.map((w) => w.terminate()));
    },
  };
}

// Worker side: decode batches until terminated.
if (!isMainThread && parentPort && (workerData as { slimfitImagePool?: boolean } | null)?.slimfitImagePool) {
  const { opts, target } = workerData as { opts: ImageDecodeOptions; target: ImageTarget };
  const port = parentPort;
  port.on('message', async (msg: { id: number; data: Uint8Array; offsets: Uint32Array }) => {
    const r = await decodeBatch({ data: msg.data, offsets: msg.offsets }, opts, target);
    const x = r.x.byteOffset === 0 && r.x.byteLength === r.x.buffer.byteLength ? r.x : r.x.slice();
    port.postMessage({ id: msg.id, x, reasons: r.reasons }, [x.buffer as ArrayBuffer]);
  });
}
