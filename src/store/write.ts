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
import { type FieldSpec, type Manifest, MANIFEST_FILE, type SplitInfo, STORE_VERSION, type Stats } from './manifest.ts';
import { sampleBytes } from './open.ts';
import { type SplitRatios, createSplitAssigner } from './split.ts';
import { type ShardClosed, type SplitWriter, createSplitWriter, samplesPerShard } from './shards.ts';
import { type RemoteOptions, isRemote } from '../remote/index.ts';
import { prepareUpload } from './transfer.ts';
import { type StatsAccumulator, createStats, firstNonFiniteSample } from './stats.ts';

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
  /** Writing to a URL (s3://bucket/prefix): S3 endpoint and retries (see openDataset's `remote`). */
  remote?: RemoteOptions;
}

/** Duplicate and leakage counts found while converting. */
export interface DuplicateReport {
  /** Per split: samples whose x equals an earlier sample's x in the same split. */
  within: Record<string, number>;
  /** Per pair 'a/b': samples written to one split whose x also appears in the other (cross-split leakage). */
  across: Record<string, number>;
  /** Samples dropped by --dedupe. */
  dropped: number;
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
  /** Per split: x values that are NaN or +-inf (only splits that have any). */
  nonFinite: Record<string, number>;
}

const INT_DTYPES: DType[] = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64', 'bool'];
const NO_BYTES = new Uint8Array(0);
/** More classes than this and y is treated as a value, not a class label. */
const MAX_CLASSES = 1 << 16;

function isClassField(y: FieldSpec): boolean {
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

/** Count samples per class in one cheap pass (labels() when the source has it). */
async function countClasses(src: SampleSource, quiet?: boolean, map?: Int32Array | null): Promise<number[]> {
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

async function writeStoreAt(out: string, input: StoreInput, opts: WriteStoreOptions, onShardClosed?: ShardClosed): Promise<ConversionReport> {
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
    const report: DuplicateReport = { within: Object.fromEntries(splitNames.map((n) => [n, 0])), across: {}, dropped: 0 };
    const xb = sampleBytes(x), yb = sampleBytes(y);

    let assign: ((label: number) => number) | null = null;
    let stratified = false;
    if (input.kind === 'ratio' && input.ratios.length === 1) {
      assign = () => 0; // one split takes every sample: no counting pass (for CSV that would be a second full parse)
    } else if (input.kind === 'ratio') {
      const counts = classField ? await countClasses(input.source, opts.quiet, classes.maps[0]) : [input.source.count ?? (await countAll(input.source))];
      total ||= counts.reduce((a, c) => a + c, 0); // a source without a count (text) was just counted
      stratified = classField;
      const a = createSplitAssigner(counts, input.ratios, input.seed);
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
          const before = !checkDups ? 0 : b.hashes ? dups.add(NO_BYTES, split, b.hashes[2 * i], b.hashes[2 * i + 1])
            : dups.add(b.x.subarray(i * xb, (i + 1) * xb), split);
          let keep = true;
          if (before !== 0) {
            if (before & (1 << split)) report.within[splitNames[split]]++;
            for (let o = 0; o < splitNames.length; o++) {
              if (o !== split && before & (1 << o)) {
                const key = o < split ? `${splitNames[o]}/${splitNames[split]}` : `${splitNames[split]}/${splitNames[o]}`;
                report.across[key] = (report.across[key] ?? 0) + 1;
              }
            }
            if (opts.dedupe) { keep = false; report.dropped++; }
          }
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
      if (seen === 0) throw noSamples(src);
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
    const manifest: Manifest = {
      format: 'slimfit-dataset',
      version: STORE_VERSION,
      fields: { x, y },
      ...(classes.names ? { classNames: classes.names } : {}),
      splits,
      ...(st ? { stats: st } : {}),
      provenance: {
        sources: sources.map((s) => s.name),
        tool: opts.tool ?? 'slimfit',
        createdAt: new Date().toISOString(),
        ...(opts.command ? { command: opts.command } : {}),
        split: input.kind === 'presplit' ? 'source' : `${input.ratios.map((r) => `${r.name}=${r.fraction}`).join(',')} seed=${input.seed}${stratified ? ' stratified' : ''}`,
        duplicates: report,
        ...(skipped.length ? { skipped: skipped.slice(0, 10000), skippedCount: skipped.length } : {}),
      },
    };
    // Manifest last: a folder without it is never taken for a store.
    await writeAtomic(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    await dest.commit();
    const bytesOut = Object.values(splits).reduce((a, s) => a + s.shards.reduce((b, sh) => b + sh.x.bytes + sh.y.bytes, 0), 0);
    const bytesIn = sources.reduce((a, s) => a + (s.bytes ?? 0), 0);
    const nonFinite = Object.fromEntries(splitNames.flatMap((n, i) => (stats[i].nonFinite ? [[n, stats[i].nonFinite]] : [])));
    return { dir: out, manifest, seconds: (performance.now() - t0) / 1000, bytesIn, bytesOut, duplicates: report, skipped, peakRss: peakRssBytes(), nonFinite };
  } catch (e) {
    for (const w of writers) await w.abort().catch(() => {});
    await dest.abort();
    throw e;
  }
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

async function countAll(src: SampleSource): Promise<number> {
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
    const report = await writeStoreAt(up.staging, input, { ...opts, force: true }, up.onShardClosed);
    await up.finish(report.manifest);
    return { ...report, dir: up.url };
  } finally {
    await up.close();
  }
}
