// Converting a source in parts on many machines and joining the part stores into one store (`convert --part I/N`,
// `merge OUT PARTS...`). A part store is an ordinary store plus `provenance.part` in its manifest (which part of which
// source, the options, each split's raw statistics sums) and part-hashes.npy (every sample's hash64 and split), so
// merge gives the store, statistics, duplicate and leakage counts, duplicate list (duplicates.json) and CSV tip that one
// conversion of the whole source gives without reading any sample again.
import { copyFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { SlimfitError, UsageError } from '../core/errors.ts';
import type { PartSpec, SampleSource } from '../core/source.ts';
import { detectMessy } from '../formats/messy.ts';
import { openInput } from '../formats/open-source.ts';
import { openNpy, saveNpy } from '../formats/npy.ts';
import { peakRssBytes } from '../core/rss.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { beginAtomicDir } from './atomic.ts';
import { sha256File } from './checksum.ts';
import { createRelabeler, planClasses } from './classes.ts';
import type { ConvertOptions } from './convert.ts';
import { createDuplicateIndex } from './dedupe.ts';
import { type DuplicateLister, DUPLICATES_FILE, createDuplicateLister, writeDuplicateList } from './dup-list.ts';
import { type Manifest, MANIFEST_FILE, type Shard, type SplitInfo, newManifest, readManifest, shardBytes } from './manifest.ts';
import { lockOutput, type OutputLock } from './lock.ts';
import { type SplitRatios, parseSplitSpec } from './split.ts';
import { type StatsState, mergeStatsStates, rangeOfState, statsOfState } from './stats.ts';
import { type ConversionReport, type DuplicateReport, PART_HASHES_FILE, countAll, countClasses, fitsUint8, isClassField, writeStore } from './write.ts';

/** `provenance.part` of a part store's manifest. */
export interface PartRecord {
  index: number;
  count: number;
  /** What the whole source is: input file names and sizes (not paths: parts may run on machines that mount it elsewhere). */
  source: { inputs: Array<{ name: string; bytes: number | null }> };
  /** The options that decide the store's content (split, seed, shard size, reader options...). */
  options: Record<string, unknown>;
  /** PART_HASHES_FILE, or null when duplicate checking was off. */
  hashes: string | null;
  /** Per split: the raw statistics sums (src/store/stats.ts). */
  stats: Record<string, StatsState>;
  /** The input is text (CSV), for which convert's summary suggests --shape/--x-dtype when the values fit uint8. */
  text?: boolean;
}

/** Parse `I/N` (0-based part I of N parts, as Slurm array task ids, Kubernetes completion indexes and MPI ranks count). */
export function parsePartSpec(spec: string): { index: number; count: number } {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(spec);
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(count) || count < 1 || index >= count) {
    throw new UsageError(`cannot read --part ${spec}`, { hint: 'give I/N with 0 <= I < N, e.g. --part 0/3 for the first of three parts' });
  }
  return { index, count };
}

/** The options that change what a conversion writes (compared between parts by merge). */
function contentOptions(opts: ConvertOptions & Record<string, unknown>): Record<string, unknown> {
  const keys = ['split', 'seed', 'shardBytes', 'checkDuplicates', 'strict', 'classNames', 'grayscale', 'resize', 'labelCol', 'shape', 'xDtype', 'header', 'delimiter', 'x', 'y'];
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    let v = opts[k];
    if (k === 'split' && typeof v === 'string') v = parseSplitSpec(v);
    if (k === 'seed') v ??= 0;
    if (k === 'shardBytes') v ??= 64e6;
    if (k === 'checkDuplicates') v ??= true;
    if (v !== undefined) out[k] = v;
  }
  return out;
}

async function inputIdentity(paths: string[]): Promise<PartRecord['source']> {
  const inputs: PartRecord['source']['inputs'] = [];
  for (const p of paths) {
    const s = await stat(p).catch(() => null);
    inputs.push({ name: basename(resolve(p)), bytes: s?.isFile() ? s.size : null });
  }
  return { inputs };
}

/**
 * Convert part `part.index` of `part.count` of `src` into a part store at `out` (what `slimfit convert --part I/N`
 * does): files of an image tree or archive members, lines of a text file (byte ranges moved to line starts), or
 * samples of an array, each part a consecutive range in source order. With a --split of several fractions every part
 * first counts the classes of all parts (one label pass over the whole source, as one conversion makes) so each
 * sample gets the split one conversion of the whole source gives it.
 *
 * @example
 * await convertPart('train.csv', 'parts/p1', { index: 1, count: 3 }, { split: 'train=0.9,test=0.1', quiet: true });
 * // ... parts 0 and 2 elsewhere, then: await mergeStores('store', ['parts/p0', 'parts/p1', 'parts/p2']);
 */
export async function convertPart(src: string | undefined, out: string, part: { index: number; count: number }, opts: ConvertOptions = {}): Promise<ConversionReport> {
  if (!(Number.isSafeInteger(part.count) && part.count >= 1 && Number.isSafeInteger(part.index) && part.index >= 0 && part.index < part.count)) {
    throw new UsageError(`part ${part.index}/${part.count} does not exist`, { hint: 'parts are numbered 0..N-1' });
  }
  if (opts.dedupe) {
    throw new UsageError('--dedupe cannot be used with --part: a sample dropped for a duplicate in another part would need its part rewritten', {
      hint: 'convert the parts without --dedupe; merge still counts duplicates and leakage across all parts',
    });
  }
  const ratios: SplitRatios | null = typeof opts.split === 'string' ? parseSplitSpec(opts.split) : opts.split ?? null;
  const seed = opts.seed ?? 0;
  const multi = (ratios?.length ?? 1) > 1;
  // Parts of whole shards, unless a split of several fractions spreads each range over the splits anyway.
  const spec = (index: number): PartSpec => ({ index, count: part.count, ...(multi ? {} : { shardBytes: opts.shardBytes ?? 64e6 }) });
  const open = (index: number) => openInput(src, { ...opts, part: spec(index) });
  const input = await open(part.index);
  const sources: SampleSource[] = input.kind === 'single' ? [input.source] : input.splits.map((s) => s.source);
  try {
    if (input.kind !== 'single' && ratios) throw new SlimfitError('this input comes with its own train/test split; leave out the split option to keep it', { file: src ?? opts.train });
    let splitCounts: { totals: number[]; before: number[] } | undefined;
    if (input.kind === 'single' && multi) {
      const classField = isClassField(input.source.y);
      const map = classField ? planClasses([input.source], opts.classNames).maps[0] : null;
      const totals: number[] = [], before: number[] = [];
      for (let k = 0; k < part.count; k++) {
        const o = k === part.index ? input : await open(k);
        const s = (o as { source: SampleSource }).source;
        try {
          const counts = classField ? await countClasses(s, opts.quiet, map) : [s.count ?? (await countAll(s))];
          counts.forEach((c, i) => {
            totals[i] = (totals[i] ?? 0) + c;
            if (k < part.index) before[i] = (before[i] ?? 0) + c;
          });
        } finally {
          if (k !== part.index) await s.close();
        }
      }
      for (let i = 0; i < totals.length; i++) before[i] ??= 0;
      splitCounts = { totals, before };
    }
    const paths = [src, opts.train, opts.test, ...(src ? [] : [opts.x, opts.y])].filter((p): p is string => typeof p === 'string');
    const textPath = src ?? opts.train; // what convert checks for its CSV tip
    const record = {
      index: part.index, count: part.count, source: await inputIdentity(paths), options: contentOptions(opts as ConvertOptions & Record<string, unknown>),
      text: textPath !== undefined && (await detectMessy(textPath)) === 'csv',
    };
    const plan = input.kind === 'single'
      ? { kind: 'ratio' as const, source: input.source, ratios: ratios ?? [{ name: 'train', fraction: 1 }], seed }
      : { kind: 'presplit' as const, splits: input.splits };
    return await writeStore(out, plan, { ...opts, partRecord: { record, splitCounts } });
  } finally {
    for (const s of sources) await s.close();
  }
}

/** What {@link mergeStores} did. */
export interface MergeReport extends ConversionReport {
  /** Shard files renamed into the store (same file system). */
  moved: number;
  /** Shard files copied (a part on another file system; its store is removed after the merge). */
  copied: number;
  parts: number;
  /** The parts were converted from text (CSV): the summary may suggest --shape/--x-dtype (see ConversionReport.fitsUint8). */
  text: boolean;
}

/** Options of {@link mergeStores}. */
export interface MergeOptions {
  /** Replace an existing store at the output. */
  force?: boolean;
  command?: string;
  tool?: string;
}

interface LoadedPart { dir: string; manifest: Manifest; part: PartRecord }

function partOf(dir: string, m: Manifest): PartRecord {
  const p = m.provenance.part as PartRecord | undefined;
  const ok = p && typeof p === 'object' && Number.isSafeInteger(p.index) && Number.isSafeInteger(p.count) && p.count >= 1 && p.index >= 0 && p.index < p.count
    && p.source && Array.isArray(p.source.inputs) && p.options && typeof p.options === 'object' && p.stats && typeof p.stats === 'object'
    && (p.hashes === null || p.hashes === PART_HASHES_FILE);
  const channels = m.fields.x.shape.length >= 3 ? m.fields.x.shape[m.fields.x.shape.length - 1] : 1;
  const isNums = (a: unknown, nullable = false) => Array.isArray(a) && a.length === channels && a.every((v) => typeof v === 'number' || (nullable && v === null));
  const statsOk = ok && Object.keys(m.splits).every((name) => {
    const st = p.stats[name] as StatsState | undefined;
    return st && isNums(st.sum) && isNums(st.sq) && isNums(st.count) && isNums(st.shift, true) && typeof st.nonFinite === 'number'
      && (st.hist === undefined || (Array.isArray(st.hist) && st.hist.length === 256 * channels && st.hist.every((v) => typeof v === 'number')));
  });
  if (ok && !statsOk) {
    throw new SlimfitError('is a part store whose manifest lacks the statistics sums of a split', { file: dir, hint: 'convert this part again' });
  }
  if (!ok) {
    throw new SlimfitError('is a store, not a part store: its manifest says nothing about a part', {
      file: dir, hint: 'merge joins stores made by `slimfit convert --part I/N SRC PART`',
    });
  }
  return p;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Read and check the part stores: one of each index 0..N-1, the same source, N, options and fields. */
async function loadParts(dirs: readonly string[]): Promise<LoadedPart[]> {
  if (dirs.length === 0) throw new UsageError('no part stores given', { hint: 'slimfit merge OUT PART0 PART1 ...' });
  const parts: LoadedPart[] = [];
  for (const dir of dirs) {
    const manifest = await readManifest(dir);
    parts.push({ dir, manifest, part: partOf(dir, manifest) });
  }
  const first = parts[0];
  const byIndex = new Map<number, LoadedPart>();
  for (const p of parts) {
    if (p.part.count !== first.part.count) {
      throw new SlimfitError(`is part ${p.part.index} of ${p.part.count} parts, but ${first.dir} is part ${first.part.index} of ${first.part.count}`, { file: p.dir, hint: 'merge the parts of one conversion; every part needs the same N in --part I/N' });
    }
    if (!same(p.part.source, first.part.source)) {
      throw new SlimfitError(`was converted from a different source (${p.part.source.inputs.map((i) => `${i.name}${i.bytes === null ? '' : `, ${i.bytes} bytes`}`).join('; ')}) than ${first.dir} (${first.part.source.inputs.map((i) => `${i.name}${i.bytes === null ? '' : `, ${i.bytes} bytes`}`).join('; ')})`, {
        file: p.dir, hint: 'merge only parts of one source; convert the wrong part again',
      });
    }
    if (!same(p.part.options, first.part.options)) {
      const keys = [...new Set([...Object.keys(p.part.options), ...Object.keys(first.part.options)])].filter((k) => !same(p.part.options[k], first.part.options[k]));
      throw new SlimfitError(`was converted with different options than ${first.dir} (${keys.map((k) => `${k}: ${JSON.stringify(p.part.options[k])} vs ${JSON.stringify(first.part.options[k])}`).join(', ')})`, {
        file: p.dir, hint: 'convert every part with the same options',
      });
    }
    if (!same(p.manifest.fields, first.manifest.fields) || !same(Object.keys(p.manifest.splits), Object.keys(first.manifest.splits))) {
      throw new SlimfitError(`holds other fields or splits than ${first.dir}`, { file: p.dir, hint: 'convert every part with the same options' });
    }
    const dup = byIndex.get(p.part.index);
    if (dup) throw new SlimfitError(`is part ${p.part.index}/${p.part.count}, and so is ${dup.dir}`, { file: p.dir, hint: 'give each part once' });
    byIndex.set(p.part.index, p);
  }
  const missing = Array.from({ length: first.part.count }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length) {
    throw new SlimfitError(`part${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${i}/${first.part.count}`).join(', ')} of this conversion ${missing.length > 1 ? 'are' : 'is'} missing`, {
      file: first.dir, hint: `give all ${first.part.count} part stores (convert the missing ones with --part I/${first.part.count})`,
    });
  }
  return [...byIndex.keys()].sort((a, b) => a - b).map((i) => byIndex.get(i)!);
}

/**
 * Join part stores (made by {@link convertPart}, any order) into one store at `out` (what `slimfit merge` does):
 * shards are renamed into it (copied when a part is on another file system), labels mapped to one class list by name,
 * statistics joined from the parts' sums, duplicates and leakage counted and listed (duplicates.json, before the
 * manifest) across all parts from their saved hashes;
 * the result is the store one conversion of the whole source writes (shard boundaries aside: each part's last shard
 * may be short). Written under the output's lock into a temp folder, manifest last; the part stores are removed after.
 *
 * @example
 * await mergeStores('store', ['parts/p0', 'parts/p1', 'parts/p2']);
 */
export async function mergeStores(out: string, partDirs: readonly string[], opts: MergeOptions = {}): Promise<MergeReport> {
  const t0 = performance.now();
  const parts = await loadParts(partDirs);
  const locks: OutputLock[] = [];
  const moves: Array<{ from: string; to: string }> = [];
  try {
    for (const p of parts) locks.push(await lockOutput(resolve(p.dir), p.dir));
    const dest = await beginAtomicDir(out, opts.force ?? false);
    const tmp = dest.tmp;
    let copied = 0;
    try {
      const m0 = parts[0].manifest;
      const { x, y } = m0.fields;
      // One class list by name: the first part's (all parts of one source list the same classes).
      const classes = planClasses(parts.map((p) => ({ name: p.dir, classNames: p.manifest.classNames })));
      const relabel = parts.map((p, i) => (classes.maps[i] ? createRelabeler(p.dir, y, y, classes.maps[i], classes.names?.length) : null));
      const nClasses = Math.max(0, classes.names?.length ?? 0, ...parts.flatMap((p) => Object.values(p.manifest.splits).map((s) => s.classCounts?.length ?? 0)));
      const splitNames = Object.keys(m0.splits);
      const splits: Record<string, SplitInfo> = {};
      const place = async (from: string, file: string) => {
        const to = join(tmp, file);
        try {
          await rename(from, to);
          moves.push({ from, to });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
          await copyFile(from, to);
          copied++;
        }
      };
      const { mkdir } = await import('node:fs/promises');
      for (const name of splitNames) {
        await mkdir(join(tmp, name));
        const shards: Shard[] = [];
        const classCounts = new Array<number>(nClasses).fill(0);
        let samples = 0, nonFinite = 0;
        for (const [pi, p] of parts.entries()) {
          const s = p.manifest.splits[name];
          for (const sh of s.shards) {
            const id = String(shards.length).padStart(5, '0');
            const xFile = `${name}/x-${id}.npy`, yFile = `${name}/y-${id}.npy`;
            await place(join(p.dir, sh.x.file), xFile);
            let yEntry = { file: yFile, bytes: sh.y.bytes, sha256: sh.y.sha256 };
            const r = relabel[pi];
            if (r) {
              // Labels of a part that numbers its classes differently: rewritten (y is small), x moved as it is.
              const f = await openNpy(join(p.dir, sh.y.file));
              try {
                const data = r.apply(await f.readRows(0, f.rows), f.rows, samples);
                await saveNpy(join(tmp, yFile), y.dtype, [f.rows, ...y.shape], data);
              } finally { await f.close(); }
              yEntry = { file: yFile, bytes: (await stat(join(tmp, yFile))).size, sha256: await sha256File(join(tmp, yFile)) };
            } else {
              await place(join(p.dir, sh.y.file), yFile);
            }
            shards.push({ samples: sh.samples, x: { ...sh.x, file: xFile }, y: yEntry });
            samples += sh.samples;
          }
          const map = classes.maps[pi];
          (s.classCounts ?? []).forEach((c, k) => { classCounts[map ? map[k] : k] += c; });
          nonFinite += s.nonFinite ?? 0;
        }
        splits[name] = { samples, shards, ...(m0.splits[name].classCounts ? { classCounts } : {}), ...(nonFinite ? { nonFinite } : {}) };
      }
      // One conversion refuses an input that gives no samples at all; so does the merge of its parts.
      const presplit = m0.provenance.split === 'source';
      for (const name of presplit ? splitNames : [splitNames.join(', ')]) {
        const n = presplit ? splits[name].samples : splitNames.reduce((a, k) => a + splits[k].samples, 0);
        if (n === 0) throw new SlimfitError(`no samples found in any part${presplit ? ` of split ${name}` : ''} of ${m0.provenance.sources.join(', ')}`, { file: parts[0].dir, hint: 'check that it is the right input and the options (e.g. --delimiter, --label-col)' });
      }
      const statsIdx = Math.max(0, splitNames.indexOf('train'));
      const statsSplit = splitNames[statsIdx];
      const joined = splitNames.map((n) => mergeStatsStates(parts.map((p) => p.part.stats[n])));
      const st = statsOfState(joined[statsIdx], statsSplit);
      const lister = createDuplicateLister();
      const duplicates = await countDuplicates(parts, splitNames, presplit, m0.provenance.sources, lister);
      // The duplicate list one conversion writes, before the manifest: first copies found from the saved hashes.
      let duplicateExamples: string[] | undefined;
      if (lister.size > 0) {
        const found = lister.result();
        duplicateExamples = await writeDuplicateList(tmp, found);
        duplicates.list = DUPLICATES_FILE;
        duplicates.groups = found.total;
      }
      const skippedAll = parts.flatMap((p) => (p.manifest.provenance.skipped ?? []) as Array<{ path: string; reason: string }>);
      const skippedCount = parts.reduce((a, p) => a + Number(p.manifest.provenance.skippedCount ?? 0), 0);
      const manifest = newManifest({ x, y }, classes.names, splits, st, {
        sources: m0.provenance.sources,
        tool: opts.tool ?? 'slimfit',
        createdAt: new Date().toISOString(),
        ...(opts.command ? { command: opts.command } : {}),
        ...(m0.provenance.split ? { split: m0.provenance.split } : {}),
        duplicates,
        ...(skippedCount ? { skipped: skippedAll.slice(0, 10000), skippedCount } : {}),
        mergedFrom: { parts: parts.length, commands: parts.map((p) => p.manifest.provenance.command ?? null) },
      });
      await writeAtomic(join(tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
      await dest.commit();
      moves.length = 0; // published: nothing to move back
      for (const p of parts) await rm(p.dir, { recursive: true, force: true });
      const bytesOut = shardBytes(splits);
      const nonFiniteAll = Object.fromEntries(splitNames.flatMap((n) => (splits[n].nonFinite ? [[n, splits[n].nonFinite!]] : [])));
      return {
        dir: out, manifest, seconds: (performance.now() - t0) / 1000, bytesIn: 0, bytesOut, duplicates,
        skipped: skippedAll, peakRss: peakRssBytes(), nonFinite: nonFiniteAll, duplicateExamples,
        fitsUint8: fitsUint8(x, joined.map((j) => ({ integral: j.integral === true, nonFinite: j.nonFinite, range: rangeOfState(j) }))),
        text: parts[0].part.text === true,
        moved: splitNames.reduce((a, n) => a + 2 * splits[n].shards.length, 0) - copied, copied, parts: parts.length,
      };
    } catch (e) {
      // Shards already moved go back to their part stores, which stay as they were.
      for (const mv of moves.reverse()) await rename(mv.to, mv.from).catch(() => {});
      await dest.abort();
      throw e;
    }
  } finally {
    for (const l of locks) await l.release();
  }
}

/**
 * Duplicate and leakage counts of the joined store, from each part's saved hashes replayed in the order one
 * conversion sees the samples: source order (parts in turn) for a split by fractions, split by split for an input
 * that comes split. All zero when the parts were converted without duplicate checking, as one conversion reports.
 * Every later copy is noted in `lister` as one conversion notes it (split, index in the joined split, input and
 * position in it); a second replay adds the first copies, so no sample is read again.
 */
async function countDuplicates(parts: readonly LoadedPart[], splitNames: readonly string[], presplit: boolean, sources: readonly string[], lister: DuplicateLister): Promise<DuplicateReport> {
  const report: DuplicateReport = { within: Object.fromEntries(splitNames.map((n) => [n, 0])), across: {}, dropped: 0 };
  if (parts.some((p) => p.part.hashes === null)) return report;
  const files: Array<Awaited<ReturnType<typeof openNpy>>> = [];
  for (const p of parts) {
    const f = await openNpy(join(p.dir, p.part.hashes!));
    files.push(f);
    const samples = Object.values(p.manifest.splits).reduce((a, s) => a + s.samples, 0);
    if (f.dtype !== 'uint32' || f.rowShape.length !== 1 || f.rowShape[0] !== 3 || f.rows !== samples) {
      for (const g of files) await g.close();
      throw new SlimfitError(`${PART_HASHES_FILE} does not list the part's ${samples} samples`, { file: p.dir, hint: 'convert this part again' });
    }
  }
  try {
    /**
     * Every sample in conversion order: hash, split, its index in the joined split and its position in its input (no
     * sample of a part is dropped, so that is the count before it: of the whole source for a split by fractions, of
     * the split's own input for an input that comes split).
     */
    const replay = async (visit: (lo: number, hi: number, split: number, index: number, inputIndex: number) => void) => {
      const inSplit = splitNames.map(() => 0);
      let inSource = 0;
      // Read in chunks: memory is the duplicate index (as in one conversion) plus one chunk, whatever the parts hold.
      const CHUNK = 1 << 18;
      const buf = new Uint8Array(CHUNK * 12);
      for (const want of presplit ? splitNames.map((_, s) => s) : [-1]) {
        for (const [fi, f] of files.entries()) {
          for (let r = 0; r < f.rows; r += CHUNK) {
            const n = Math.min(CHUNK, f.rows - r);
            const b = await f.readRows(r, r + n, buf.subarray(0, n * 12));
            const t = new Uint32Array(b.buffer, b.byteOffset, n * 3);
            for (let i = 0; i < t.length; i += 3) {
              const split = t[i + 2];
              if (split >= splitNames.length) throw new SlimfitError(`${PART_HASHES_FILE} names split ${split}, but the part has ${splitNames.length}`, { file: parts[fi].dir, hint: 'convert this part again' });
              if (want >= 0 && split !== want) continue;
              const index = inSplit[split]++;
              visit(t[i], t[i + 1], split, index, presplit ? index : inSource++);
            }
          }
        }
      }
    };
    const dups = createDuplicateIndex(files.reduce((a, f) => a + f.rows, 0));
    const none = new Uint8Array(0);
    await replay((lo, hi, split, index, inputIndex) => {
      const before = dups.add(none, split, lo, hi);
      if (before === 0) return;
      lister.note(lo, hi, { split: splitNames[split], index, input: sources[presplit ? split : 0], inputIndex });
      if (before & (1 << split)) report.within[splitNames[split]]++;
      for (let o = 0; o < splitNames.length; o++) {
        if (o !== split && before & (1 << o)) {
          const key = o < split ? `${splitNames[o]}/${splitNames[split]}` : `${splitNames[split]}/${splitNames[o]}`;
          report.across[key] = (report.across[key] ?? 0) + 1;
        }
      }
    });
    if (lister.size > 0) await replay((lo, hi, split, index) => lister.found(lo, hi, splitNames[split], index));
  } finally {
    for (const f of files) await f.close();
  }
  return report;
}

/** Where rank `rank` of `size` puts its part of `out` under mpirun: a folder next to OUT. */
export function mpiPartDir(out: string, rank: number, size: number): string {
  return join(dirname(resolve(out)), `${basename(resolve(out))}.part-${rank}-of-${size}`);
}

/** Options of {@link mpiConvert}. */
export interface MpiConvertOptions extends MergeOptions {
  /** How long rank 0 waits for the other ranks' parts (seconds). */
  timeoutSeconds: number;
  /** Progress lines (waiting, merging). */
  log?: (line: string) => void;
}

/** Marker files beside a rank's part folder: written when its part is complete, or with the error that stopped it. */
const DONE = '.slimfit-done', FAILED = '.slimfit-failed';

/**
 * `slimfit convert SRC OUT` under mpirun: rank I converts part I of N into a folder next to OUT (`convertOne`), then
 * says so in a marker file holding the job id (or the error that stopped it); rank 0 waits for every rank's marker,
 * at most `timeoutSeconds`, stopping at the first failure with that rank's message, and merges the parts into OUT.
 * Markers and part folders from an earlier job are not taken for this job's (the job id differs).
 *
 * @example
 * await mpiConvert('store', { index: rank, count: size, job }, (dir) => convertPart('big.csv', dir, { index: rank, count: size }), { timeoutSeconds: 3600 });
 */
export async function mpiConvert(out: string, part: { index: number; count: number; job: string }, convertOne: (dir: string) => Promise<unknown>,
  opts: MpiConvertOptions, onMerged?: (r: MergeReport) => void): Promise<MergeReport | null> {
  const dirs = Array.from({ length: part.count }, (_, k) => mpiPartDir(out, k, part.count));
  const mine = dirs[part.index];
  const startedAt = Date.now();
  await rm(mine + DONE, { force: true });
  await rm(mine + FAILED, { force: true });
  try {
    await convertOne(mine);
  } catch (e) {
    await writeAtomic(mine + FAILED, `${part.job}\n${(e as Error).message}\n`).catch(() => {});
    throw e;
  }
  await writeAtomic(mine + DONE, `${part.job}\n`);
  if (part.index !== 0) return null;
  const { readFile } = await import('node:fs/promises');
  const ofThisJob = async (file: string): Promise<string | null> => {
    const text = await readFile(file, 'utf8').catch(() => null);
    if (text === null) return null;
    // Without a job id (rank variables set by hand) only markers written since this rank started count.
    if (part.job === '' && ((await stat(file).catch(() => null))?.mtimeMs ?? 0) < startedAt - 1000) return null;
    const nl = text.indexOf('\n');
    return text.slice(0, nl) === part.job ? text.slice(nl + 1).trim() : null;
  };
  const deadline = Date.now() + opts.timeoutSeconds * 1000;
  let waiting = dirs.map((_, k) => k).filter((k) => k !== part.index);
  opts.log?.(`rank 0: waiting for the parts of ${waiting.length} other rank(s)`);
  while (waiting.length > 0) {
    const still: number[] = [];
    for (const k of waiting) {
      const failed = await ofThisJob(dirs[k] + FAILED);
      if (failed !== null) {
        throw new SlimfitError(`rank ${k} of ${part.count} failed converting its part: ${failed}`, { file: dirs[k], hint: 'fix what it names and run the job again' });
      }
      if ((await ofThisJob(dirs[k] + DONE)) === null) still.push(k);
    }
    waiting = still;
    if (waiting.length === 0) break;
    if (Date.now() > deadline) {
      throw new SlimfitError(`rank 0 waited ${opts.timeoutSeconds} s and the part${waiting.length > 1 ? 's' : ''} of rank${waiting.length > 1 ? 's' : ''} ${waiting.join(', ')} of ${part.count} ${waiting.length > 1 ? 'are' : 'is'} still not complete`, {
        file: dirs[waiting[0]], hint: 'check that every rank runs and sees the same file system; raise --merge-timeout for slow parts',
      });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  opts.log?.(`rank 0: merging ${part.count} parts into ${out}`);
  const report = await mergeStores(out, dirs, opts);
  for (const d of dirs) await rm(d + DONE, { force: true });
  onMerged?.(report);
  return report;
}
