// Converting SampleSources into a store: splits, shards, stats, class counts, duplicates, manifest last, atomic publish.
import { join } from 'node:path';
import { type DType, elementAsNumber, viewAs } from '../core/dtype.ts';
import { SlimfitError, describeSystemError, isSystemError } from '../core/errors.ts';
import type { SampleSource, SkippedInput } from '../core/source.ts';
import { createProgress } from '../core/progress.ts';
import { peakRssBytes } from '../core/rss.ts';
import { trimNativeMemory } from '../core/trim.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { beginAtomicDir } from './atomic.ts';
import { type Relabeler, createRelabeler, planClasses } from './classes.ts';
import { createDuplicateIndex } from './dedupe.ts';
import { DUPLICATES_FILE, type ShardFetchBack, createDuplicateLister, writeDuplicateList } from './dup-list.ts';
import { type FieldSpec, type Manifest, MANIFEST_FILE, type SplitInfo, type Stats, newManifest, shardBytes } from './manifest.ts';
import { sampleBytes } from './open.ts';
import { type SplitRatios, createSplitAssigner } from './split.ts';
import { type ShardClosed, type SplitWriter, createSplitWriter, samplesPerShard } from './shards.ts';
import { type RemoteOptions, isRemote } from '../remote/index.ts';
import { prepareUpload } from './transfer.ts';
import { type StatsAccumulator, createStats, firstNonFiniteSample } from './stats.ts';
import { H, hash64 } from '../core/hash64.ts';
import { saveNpy } from '../formats/npy.ts';

/** What to convert: sources that are already split, or one source to split by ratios. */
export type StoreInput =
  | { kind: 'presplit'; splits: Array<{ name: string; source: SampleSource }> }
  | { kind: 'ratio'; source: SampleSource; ratios: SplitRatios; seed: number };

/** Options for {@link writeStore}. */
export interface WriteStoreOptions {
  /** Target bytes per x shard (default 64 MB). */
  shardBytes?: number;
  /** Drop exact duplicate samples (within a split and across splits, keeping the first), so no test sample is also in train. */
  dedupe?: boolean;
  /** Replace an existing store at the output path. */
  force?: boolean;
  /** Class names (index = label), overriding the source's. */
  classNames?: string[];
  /** The command line, recorded in provenance. */
  command?: string;
  /** Tool version recorded in provenance. */
  tool?: string;
  /** No progress output. */
  quiet?: boolean;
  /** Fingerprint every sample to count duplicates and leakage (default true; ~9-18 bytes per distinct sample). */
  checkDuplicates?: boolean;
  /** Refuse x values that are NaN or +-inf (else they are counted, recorded per split and left out of the stats). */
  strict?: boolean;
  /** Write a part store (`convert --part`, src/store/parts.ts): the record `merge` needs goes into the manifest. */
  partRecord?: PartRecordInput;
  /** Writing to a URL (s3://bucket/prefix): S3 endpoint and retries (see openDataset's `remote`). */
  remote?: RemoteOptions;
}

/** What a part conversion tells the writer (src/store/parts.ts builds it). */
export interface PartRecordInput {
  /** Identity of the whole source and the content options; merge compares them between parts. */
  record: Record<string, unknown>;
  /** Per class (store index; one entry when y is not a class): samples of the whole source, and of the parts before this one. */
  splitCounts?: { totals: number[]; before: number[] };
}

/** File of a part store holding each sample's hash64 and split ([lo, hi, split] uint32 rows, in the order converted). */
export const PART_HASHES_FILE = 'part-hashes.npy';

/** Duplicate and leakage counts found while converting. */
export interface DuplicateReport {
  /** Per split: samples whose x equals an earlier sample's x in the same split. */
  within: Record<string, number>;
  /** Per pair 'a/b': samples written to one split whose x also appears in the other (cross-split leakage). */
  across: Record<string, number>;
  /** Samples dropped by --dedupe (the later copies in input order; the first copy stays). */
  dropped: number;
  /** Per split: samples --dedupe dropped from it (present with dedupe). */
  droppedFrom?: Record<string, number>;
  /** File in the store listing every duplicated sample's copies (present when there are duplicates). */
  list?: string;
  /** Distinct samples that have more than one copy. */
  groups?: number;
}

/** What a conversion did, for the summary table. */
export interface ConversionReport {
  dir: string;
  manifest: Manifest;
  seconds: number;
  bytesIn: number;
  bytesOut: number;
  duplicates: DuplicateReport;
  skipped: SkippedInput[];
  peakRss: number;
  /**
   * Set when every x value is a whole number from 0 to 255 but x is stored in a wider type (e.g. a CSV's features as
   * float32): uint8 would hold them exactly in a quarter of the space. `shape` is the image shape when the (flat)
   * sample length is a square (x 1) or 3 x a square: [s, s, 1] or [s, s, 3].
   */
  fitsUint8?: { shape?: number[] };
  /** A few duplicate groups in words (`test #12 (x.npy #1012) = train #5`), for the summary; all are in `duplicates.list`. */
  duplicateExamples?: string[];
  /** Per split: x values that are NaN or +-inf (only splits that have any). */
  nonFinite: Record<string, number>;
}

const INT_DTYPES: DType[] = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64', 'bool'];
const NO_BYTES = new Uint8Array(0);
/** More classes than this and y is treated as a value, not a class label. */
const MAX_CLASSES = 1 << 16;

/**
 * True when y is a class label (an integer scalar per sample), so splits are stratified and classes counted.
 *
 * @example
 * isClassField({ dtype: 'int64', shape: [] }); // true
 */
export function isClassField(y: FieldSpec): boolean {
  return y.shape.length === 0 && INT_DTYPES.includes(y.dtype);
}

function sameField(a: FieldSpec, b: FieldSpec): boolean {
  return a.dtype === b.dtype && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
}

/** Read labels as numbers from little-endian y bytes, checking they are usable class indices. */
function labelsOf(y: FieldSpec, bytes: Uint8Array, n: number, source: string, first: number): Float64Array {
  const a = viewAs(y.dtype, bytes);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = elementAsNumber(y.dtype, a, i);
    if (!(Number.isInteger(v) && v >= 0 && v < MAX_CLASSES)) {
      throw new SlimfitError(`label ${v} of sample ${first + i} is not a class index (0..${MAX_CLASSES - 1})`, {
        file: source, hint: 'labels must be non-negative integers; a stratified --split needs class labels',
      });
    }
    out[i] = v;
  }
  return out;
}

/**
 * Count samples per class (store indices through `map`) in one cheap pass (labels() when the source has it).
 *
 * @example
 * const perClass = await countClasses(source, true, null); // [n0, n1, ...]
 */
export async function countClasses(src: SampleSource, quiet?: boolean, map?: Int32Array | null): Promise<number[]> {
  const counts: number[] = [];
  let seen = 0;
  const addAll = (labels: ArrayLike<number>) => {
    for (let i = 0; i < labels.length; i++) {
      const v = Number(labels[i]);
      if (!(Number.isInteger(v) && v >= 0 && v < MAX_CLASSES)) {
        throw new SlimfitError(`label ${v} of sample ${seen + i} is not a class index`, { file: src.labelsName ?? src.name, hint: 'a stratified --split needs non-negative integer class labels' });
      }
      if (map && v >= map.length) throw new SlimfitError(`label ${v} of sample ${seen + i} has no class name (the input names ${map.length} classes)`, { file: src.name });
      const c = map ? map[v] : v; // counted under the store's class index, as the samples are assigned
      while (counts.length <= c) counts.push(0);
      counts[c]++;
    }
    seen += labels.length;
  };
  // A text or archive source parses everything for its labels: worth a bar of its own.
  const progress = createProgress({ label: 'count classes', total: src.count ?? 0, unit: 'samples', bytesTotal: src.bytes, quiet });
  const tick = (n: number) => { if (src.bytesRead !== undefined) progress.bytes(src.bytesRead); progress.tick(n); };
  if (src.labels) for await (const l of src.labels()) { addAll(l); tick(l.length); }
  else for await (const b of src.batches()) { addAll(labelsOf(src.y, b.y, b.n, src.labelsName ?? src.name, seen)); b.release?.(); tick(b.n); }
  progress.done();
  return counts;
}

/**
 * Convert `input` into a store at `out`: written to a temp folder, manifest last, then renamed into place. `out` may be
 * an `s3://bucket/prefix` URL: shards are uploaded as they close (multipart when large) and the manifest last.
 */
export async function writeStore(out: string, input: StoreInput, opts: WriteStoreOptions = {}): Promise<ConversionReport> {
  if (isRemote(out)) return writeStoreToUrl(out, input, opts);
  try {
    return await writeStoreAt(out, input, opts);
  } catch (e) {
    // An OS error while writing (full disk, read-only, a file in the way) names OUT, not the hidden temp folder or lock.
    if (isSystemError(e) && (e.path === undefined || e.path.includes('.slimfit-tmp-') || e.path.endsWith('.slimfit-lock'))) {
      throw new SlimfitError(describeSystemError({ ...e, message: e.message, code: e.code, syscall: e.syscall, path: undefined }, out), {});
    }
    throw e;
  }
}

async function writeStoreAt(out: string, input: StoreInput, opts: WriteStoreOptions, onShardClosed?: ShardClosed, fetchBack?: ShardFetchBack): Promise<ConversionReport> {
  const t0 = performance.now();
  const sources = input.kind === 'presplit' ? input.splits.map((s) => s.source) : [input.source];
  const splitNames = input.kind === 'presplit' ? input.splits.map((s) => s.name) : input.ratios.map((r) => r.name);
  const x = sources[0].x, y = sources[0].y;
  const classField = isClassField(y);
  for (const s of sources) {
    // Class labels of any integer dtype are rewritten into the first input's dtype (see relabelers below).
    const yFits = classField ? isClassField(s.y) : sameField(s.y, y);
    if (!sameField(s.x, x) || !yFits) {
      throw new SlimfitError(`samples differ between inputs: ${s.name} has x ${s.x.dtype} [${s.x.shape}] y ${s.y.dtype} [${s.y.shape}], ${sources[0].name} has x ${x.dtype} [${x.shape}] y ${y.dtype} [${y.shape}]`, {
        file: s.name, hint: 'all inputs of one store must hold samples of the same dtype and shape',
      });
    }
  }
  if (sampleBytes(x) === 0) throw new SlimfitError('samples hold no data (a zero-sized axis)', { file: sources[0].name });
  // One class list for the store; each input's labels are mapped into it by class name.
  const classes = classField ? planClasses(sources, opts.classNames) : { names: opts.classNames, maps: sources.map(() => null) };
  const relabelers: Array<Relabeler | null> = sources.map((s, i) =>
    classField && (classes.maps[i] || s.y.dtype !== y.dtype || classes.names) ? createRelabeler(s.name, s.y, y, classes.maps[i], classes.names?.length) : null);
  const dest = await beginAtomicDir(out, opts.force ?? false);
  const tmp = dest.tmp;
  const writers: SplitWriter[] = [];
  try {
    const perShard = samplesPerShard(x, opts.shardBytes ?? 64e6);
    for (const name of splitNames) writers.push(await createSplitWriter(tmp, name, x, y, perShard, onShardClosed));
    const stats: StatsAccumulator[] = splitNames.map(() => createStats(x));
    const classCounts: number[][] = splitNames.map(() => []);
    let total = sources.reduce((acc, s) => acc + (s.count ?? 0), 0);
    const checkDups = opts.checkDuplicates ?? true;
    if (opts.dedupe && !checkDups) throw new SlimfitError('--dedupe needs duplicate checking; drop the option that turns it off');
    if (checkDups && splitNames.length > 8) throw new SlimfitError(`duplicate checking handles at most 8 splits, not ${splitNames.length}`, { hint: 'use fewer splits or pass checkDuplicates: false (--no-dup-check on the command line)' });
    const report: DuplicateReport = { within: Object.fromEntries(splitNames.map((n) => [n, 0])), across: {}, dropped: 0, ...(opts.dedupe ? { droppedFrom: Object.fromEntries(splitNames.map((n) => [n, 0])) } : {}) };
    const lister = createDuplicateLister();
    const kept = splitNames.map(() => 0); // samples written to each split so far: a kept sample's place in its split
    const xb = sampleBytes(x), yb = sampleBytes(y);

    let assign: ((label: number) => number) | null = null;
    let stratified = false;
    if (input.kind === 'ratio' && input.ratios.length === 1) {
      assign = () => 0; // one split takes every sample: no counting pass (for CSV that would be a second full parse)
    } else if (input.kind === 'ratio') {
      // A part is assigned as its samples are in the whole source: the part converter counted every part's classes.
      const pc = opts.partRecord?.splitCounts;
      const counts = pc ? pc.totals : classField ? await countClasses(input.source, opts.quiet, classes.maps[0]) : [input.source.count ?? (await countAll(input.source))];
      if (!pc) total ||= counts.reduce((a, c) => a + c, 0); // a source without a count (text) was just counted
      stratified = classField;
      const a = createSplitAssigner(counts, input.ratios, input.seed, pc?.before);
      assign = classField ? (l) => a.next(l) : () => a.next(0);
    }
    // Sized once the count is known: growing tables leave their old arrays as garbage.
    const dups = createDuplicateIndex(checkDups ? total : 0);
    const bytesTotal = sources.every((s) => s.bytes !== undefined) ? sources.reduce((a, s) => a + s.bytes!, 0) : 0;
    const progress = createProgress({ label: 'convert', total, unit: 'samples', bytesTotal, quiet: opts.quiet });
    /** Input bytes consumed: the source's word, else (fixed-size records) its share of bytes by samples seen. */
    const readOf = (src: SampleSource, seen: number): number | undefined =>
      src.bytesRead ?? (src.bytes !== undefined && src.count ? (src.bytes * seen) / src.count : undefined);
    let bytesBefore = 0; // input bytes of the sources already converted
    // A part store keeps every sample's hash and split, so merge can count duplicates and leakage across parts.
    let partHashes = opts.partRecord && checkDups ? new Uint32Array(3 * Math.max(1024, total)) : null;
    let hashed = 0;

    for (let si = 0; si < sources.length; si++) {
      const src = sources[si];
      let seen = 0;
      const relabel = relabelers[si];
      for await (const b of src.batches()) {
        const yBytes = relabel ? relabel.apply(b.y, b.n, seen) : b.y;
        const labels = classField ? labelsOf(y, yBytes, b.n, src.labelsName ?? src.name, seen) : null;
        // Consecutive samples going to the same split are appended as one run.
        let runStart = 0, runSplit = -1;
        const flush = async (end: number) => {
          if (runSplit < 0 || end <= runStart) return;
          const xs = b.x.subarray(runStart * xb, end * xb);
          const st = stats[runSplit];
          const bad = st.nonFinite;
          if (b.counts && st.addCounts && runStart === 0 && end === b.n) st.addCounts(b.counts);
          else st.add(xs, end - runStart);
          if (opts.strict && st.nonFinite > bad) {
            const at = seen + runStart + firstNonFiniteSample(x.dtype, xs, xb);
            throw new SlimfitError(`sample ${at} holds NaN or infinity`, { file: src.name, hint: '--strict refuses non-finite values; fix the data, or drop --strict to count them and leave them out of the statistics' });
          }
          if (labels) {
            const cc = classCounts[runSplit];
            for (let i = runStart; i < end; i++) { const l = labels[i]; while (cc.length <= l) cc.push(0); cc[l]++; }
          }
          await writers[runSplit].append(xs, yBytes.subarray(runStart * yb, end * yb), end - runStart);
        };
        for (let i = 0; i < b.n; i++) {
          const split = assign ? assign(labels ? labels[i] : 0) : si;
          // With the decoder's hashes no per-sample view is made (210k of them were a tenth of this thread's GC).
          let before: number;
          if (partHashes) {
            let lo: number, hi: number;
            if (b.hashes) { lo = b.hashes[2 * i]; hi = b.hashes[2 * i + 1]; } else { hash64(b.x.subarray(i * xb, (i + 1) * xb)); lo = H[0]; hi = H[1]; }
            if (3 * hashed + 3 > partHashes.length) { const grown = new Uint32Array(partHashes.length * 2); grown.set(partHashes); partHashes = grown; }
            partHashes[3 * hashed] = lo; partHashes[3 * hashed + 1] = hi; partHashes[3 * hashed + 2] = split;
            hashed++;
            before = dups.add(NO_BYTES, split, lo, hi);
          } else {
            before = !checkDups ? 0 : b.hashes ? dups.add(NO_BYTES, split, b.hashes[2 * i], b.hashes[2 * i + 1])
              : dups.add(b.x.subarray(i * xb, (i + 1) * xb), split);
          }
          let keep = true;
          if (before !== 0) {
            const lo = b.hashes ? b.hashes[2 * i] : H[0], hi = b.hashes ? b.hashes[2 * i + 1] : H[1];
            const copy = { split: splitNames[split], index: opts.dedupe ? null : kept[split], input: src.name, inputIndex: seen + i, ...(opts.dedupe ? { dropped: true } : {}) };
            lister.note(lo, hi, copy);
            if (before & (1 << split)) report.within[splitNames[split]]++;
            for (let o = 0; o < splitNames.length; o++) {
              if (o !== split && before & (1 << o)) {
                const key = o < split ? `${splitNames[o]}/${splitNames[split]}` : `${splitNames[split]}/${splitNames[o]}`;
                report.across[key] = (report.across[key] ?? 0) + 1;
              }
            }
            if (opts.dedupe) { keep = false; report.dropped++; report.droppedFrom![splitNames[split]]++; }
          }
          if (keep) kept[split]++;
          const target = keep ? split : -1;
          if (target !== runSplit) { await flush(i); runStart = i; runSplit = target; }
        }
        await flush(b.n);
        b.release?.(); // appended (copied or written) and counted: the source may reuse the batch's memory
        trimNativeMemory();
        seen += b.n;
        const read = readOf(src, seen);
        if (read !== undefined) progress.bytes(bytesBefore + read);
        progress.tick(b.n);
      }
      bytesBefore += src.bytes ?? 0;
      if (seen === 0 && !opts.partRecord) throw noSamples(src); // a part may be empty (a small source in many parts)
      if (src.count !== undefined && seen !== src.count) {
        throw new SlimfitError(`expected ${src.count} samples but read ${seen}`, { file: src.name, hint: 'the input changed while being converted, or is corrupt' });
      }
    }
    progress.done();

    const splits: Record<string, SplitInfo> = {};
    const nClasses = Math.max(0, ...classCounts.map((c) => c.length), classes.names?.length ?? 0);
    for (let i = 0; i < writers.length; i++) {
      const info = await writers[i].finish();
      if (classField) info.classCounts = Array.from({ length: nClasses }, (_, c) => classCounts[i][c] ?? 0);
      if (stats[i].nonFinite) info.nonFinite = stats[i].nonFinite;
      splits[splitNames[i]] = info;
    }
    const statsIdx = Math.max(0, splitNames.indexOf('train'));
    const st: Stats | undefined = stats[statsIdx].result(splitNames[statsIdx]);
    const skipped = sources.flatMap((s) => s.skipped ?? []);
    // Every duplicated sample's copies, beside the manifest and before it (a store with a manifest has its list).
    let duplicateExamples: string[] | undefined;
    if (lister.size > 0) {
      const found = await lister.finish(tmp, splits, xb, fetchBack);
      duplicateExamples = await writeDuplicateList(tmp, found);
      report.list = DUPLICATES_FILE;
      report.groups = found.total;
    }
    const manifest = newManifest({ x, y }, classes.names, splits, st, {
      sources: sources.map((s) => s.name),
      tool: opts.tool ?? 'slimfit',
      createdAt: new Date().toISOString(),
      ...(opts.command ? { command: opts.command } : {}),
      split: input.kind === 'presplit' ? 'source' : `${input.ratios.map((r) => `${r.name}=${r.fraction}`).join(',')} seed=${input.seed}${stratified ? ' stratified' : ''}`,
      duplicates: report,
      ...(skipped.length ? { skipped: skipped.slice(0, 10000), skippedCount: skipped.length } : {}),
      ...(opts.partRecord ? {
        part: {
          ...opts.partRecord.record,
          hashes: partHashes ? PART_HASHES_FILE : null,
          stats: Object.fromEntries(splitNames.map((n, i) => [n, stats[i].state()])),
        },
      } : {}),
    });
    if (partHashes) await saveNpy(join(tmp, PART_HASHES_FILE), 'uint32', [hashed, 3], partHashes.subarray(0, 3 * hashed));
    // Manifest last: a folder without it is never taken for a store.
    await writeAtomic(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    await dest.commit();
    const bytesOut = shardBytes(splits);
    const bytesIn = sources.reduce((a, s) => a + (s.bytes ?? 0), 0);
    const nonFinite = Object.fromEntries(splitNames.flatMap((n, i) => (stats[i].nonFinite ? [[n, stats[i].nonFinite]] : [])));
    return { dir: out, manifest, seconds: (performance.now() - t0) / 1000, bytesIn, bytesOut, duplicates: report, skipped, peakRss: peakRssBytes(), nonFinite, duplicateExamples, fitsUint8: fitsUint8(x, stats.map((s) => ({ integral: s.integral, nonFinite: s.nonFinite, range: s.range() }))) };
  } catch (e) {
    for (const w of writers) await w.abort().catch(() => {});
    await dest.abort();
    throw e;
  }
}

/**
 * See ConversionReport.fitsUint8: computed from every split's values (whole numbers? NaN/inf? smallest and largest),
 * by one conversion from its accumulators and by merge from the parts' joined statistics states.
 *
 * @example
 * fitsUint8({ dtype: 'float32', shape: [784] }, [{ integral: true, nonFinite: 0, range: [0, 255] }]); // { shape: [28, 28, 1] }
 */
export function fitsUint8(x: FieldSpec, stats: ReadonlyArray<{ integral: boolean; nonFinite: number; range: [number, number] }>): ConversionReport['fitsUint8'] {
  if (x.dtype === 'uint8' || x.dtype === 'bool' || !stats.every((s) => s.integral && s.nonFinite === 0)) return undefined;
  const ranges = stats.map((s) => s.range);
  const lo = Math.min(...ranges.map((r) => r[0])), hi = Math.max(...ranges.map((r) => r[1]));
  if (!(lo >= 0 && hi <= 255)) return undefined;
  if (x.shape.length !== 1) return {};
  const f = x.shape[0];
  // Images of at least 4x4 pixels: a row of 12 values is more likely 12 features than a 2x2 RGB image.
  const side = (n: number) => { const s = Math.round(Math.sqrt(n)); return s >= 4 && s * s === n ? s : 0; };
  if (side(f)) return { shape: [side(f), side(f), 1] };
  if (f % 3 === 0 && side(f / 3)) return { shape: [side(f / 3), side(f / 3), 3] };
  return {};
}

/** The error for an input that gave no samples at all: a store of nothing is never what was meant. */
function noSamples(src: SampleSource): SlimfitError {
  const skipped = src.skipped ?? [];
  const why = skipped.length
    ? `; all ${skipped.length} of its entries were skipped (first: ${skipped[0].path}: ${skipped[0].reason})`
    : '';
  return new SlimfitError(`no samples found in this input${why}`, {
    file: src.name, hint: skipped.length ? 'fix the listed entries, or check the options (e.g. --delimiter, --label-col)' : 'check that it is the right file and not empty',
  });
}

/**
 * Samples of a source, by reading it once (for sources without a count, e.g. text).
 *
 * @example
 * const n = source.count ?? (await countAll(source));
 */
export async function countAll(src: SampleSource): Promise<number> {
  let n = 0;
  for await (const b of src.batches()) n += b.n;
  return n;
}

/**
 * writeStore into a URL: the store is built in a local staging folder whose shards are uploaded (and deleted locally)
 * as they close, so local disk holds only the shards in flight; the manifest goes up last, so a reader never sees a
 * partial store. An existing store at the URL is replaced only with `force` (its manifest is removed first, its old
 * shards after the new manifest is up).
 */
async function writeStoreToUrl(url: string, input: StoreInput, opts: WriteStoreOptions): Promise<ConversionReport> {
  const up = await prepareUpload(url, opts.force ?? false, opts.remote);
  try {
    const report = await writeStoreAt(up.staging, input, { ...opts, force: true }, up.onShardClosed, up.fetchBack);
    await up.finish(report.manifest);
    return { ...report, dir: up.url };
  } finally {
    await up.close();
  }
}
