// dataset.json: the manifest that makes a folder of .npy shards a slimfit store.
import { readFile } from 'node:fs/promises';
import { isRemote } from '../remote/url.ts';
import { join } from 'node:path';
import { type FieldSpec, isDType } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';

/** File name of the manifest inside a store directory. */
export const MANIFEST_FILE = 'dataset.json';
/** Manifest format version written by this code. */
export const STORE_VERSION = 1;

export type { FieldSpec } from '../core/dtype.ts';

/** One shard file: path relative to the store root, size and checksum. */
export interface ShardFile {
  file: string;
  bytes: number;
  /** Hex SHA-256 of the whole file. */
  sha256: string;
}

/** A pair of shards holding the same `samples` consecutive samples of a split. */
export interface Shard {
  samples: number;
  x: ShardFile;
  y: ShardFile;
}

/** One split (train, test, val...). Samples are numbered across shards in order. */
export interface SplitInfo {
  samples: number;
  shards: Shard[];
  /** Samples per class index, when y is a class label. */
  classCounts?: number[];
  /** x values that are NaN or +-inf (absent when there are none); they are left out of the stats. */
  nonFinite?: number;
}

/** Per-channel statistics of x (channel = last axis of the sample shape, or 1 channel if x has < 3 dims). */
export interface Stats {
  /** Which split they were computed on (normally train). */
  split: string;
  mean: number[];
  std: number[];
  min: number;
  max: number;
}

/** Where a store came from. */
export interface Provenance {
  sources: string[];
  tool: string;
  createdAt: string;
  command?: string;
  /** How splits were made: 'source' (kept the source's own) or e.g. 'train=0.9,test=0.1 seed=0 stratified'. */
  split?: string;
  /** Inputs skipped during conversion (path and reason). */
  skipped?: Array<{ path: string; reason: string }>;
  [k: string]: unknown;
}

/** The whole dataset.json. */
export interface Manifest {
  format: 'slimfit-dataset';
  version: number;
  fields: { x: FieldSpec; y: FieldSpec };
  classNames?: string[];
  splits: Record<string, SplitInfo>;
  stats?: Stats;
  provenance: Provenance;
}

/** A new store's manifest: the fields, class names, splits and stats a conversion or a merge produced, and its provenance. */
export function newManifest(fields: Manifest['fields'], classNames: string[] | undefined, splits: Record<string, SplitInfo>, stats: Stats | undefined, provenance: Provenance): Manifest {
  return {
    format: 'slimfit-dataset', version: STORE_VERSION, fields,
    ...(classNames ? { classNames } : {}), splits, ...(stats ? { stats } : {}), provenance,
  };
}

/** Every shard file (x, then y, of each shard) of these splits, in split and shard order. */
export function shardFiles(splits: Record<string, SplitInfo>): ShardFile[] {
  return Object.values(splits).flatMap((s) => s.shards.flatMap((sh) => [sh.x, sh.y]));
}

/** Bytes of all shard files of these splits. */
export function shardBytes(splits: Record<string, SplitInfo>): number {
  return shardFiles(splits).reduce((a, f) => a + f.bytes, 0);
}

function fail(dir: string, what: string): never {
  throw new SlimfitError(`not a complete slimfit store: ${what}`, {
    file: isRemote(dir) ? `${dir}/${MANIFEST_FILE}` : join(dir, MANIFEST_FILE),
    hint: 'the conversion may have been interrupted; run `slimfit convert` again',
  });
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
/** A statistic: a number, or null (how JSON writes NaN/inf; stores from before they were left out hold it). */
const isStat = (v: unknown) => v === null || typeof v === 'number';
/** A shard path: relative, inside the store, no '..' parts. */
const isShardPath = (f: unknown) => typeof f === 'string' && f.length > 0 && !f.startsWith('/') && !f.split(/[\\/]/).includes('..') && !f.includes('\0');

/**
 * Check that a parsed JSON value is a well-formed manifest: every field the readers, `info` and `verify` use has
 * the type and range they expect (a hand-edited or damaged dataset.json is an error here, never a TypeError later).
 */
export function validateManifest(m: unknown, dir: string): Manifest {
  const o = m as Manifest;
  if (!isObject(o) || o.format !== 'slimfit-dataset') fail(dir, "missing \"format\": \"slimfit-dataset\"");
  if (!Number.isSafeInteger(o.version) || o.version < 1) fail(dir, `bad store version ${JSON.stringify(o.version)}`);
  if (o.version > STORE_VERSION) fail(dir, `store version ${o.version} is newer than this slimfit understands (${STORE_VERSION}); upgrade slimfit`);
  if (!isObject(o.fields)) fail(dir, 'no fields');
  for (const k of ['x', 'y'] as const) {
    const f = o.fields[k];
    if (!isObject(f) || !isDType(f.dtype) || !Array.isArray(f.shape) || !f.shape.every(isCount)) fail(dir, `bad field spec for ${k}`);
    if (!Number.isSafeInteger(f.shape.reduce((a, d) => a * d, 8))) fail(dir, `field ${k} has an impossibly large shape`);
  }
  if (o.classNames !== undefined && !isStringArray(o.classNames)) fail(dir, 'classNames is not a list of names');
  if (!isObject(o.splits) || Object.keys(o.splits).length === 0) fail(dir, 'no splits');
  for (const [name, s] of Object.entries(o.splits)) {
    if (!isObject(s) || !Array.isArray(s.shards)) fail(dir, `split ${name} has no shard list`);
    if (!isCount(s.samples)) fail(dir, `split ${name} has a bad sample count`);
    if (s.classCounts !== undefined && !(Array.isArray(s.classCounts) && s.classCounts.every(isCount))) fail(dir, `split ${name} has bad class counts`);
    if (s.nonFinite !== undefined && !isCount(s.nonFinite)) fail(dir, `split ${name} has a bad non-finite count`);
    let total = 0;
    for (const sh of s.shards) {
      if (!isObject(sh) || !isCount(sh.samples)) fail(dir, `split ${name} has a shard without a sample count`);
      total += sh.samples;
      for (const f of [sh.x, sh.y]) {
        if (!isObject(f) || !isShardPath(f.file)) fail(dir, `split ${name} has a bad shard path`);
        if (!isCount(f.bytes) || typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) fail(dir, `shard ${String(f.file)} of split ${name} has a bad size or checksum entry`);
      }
    }
    if (total !== s.samples) fail(dir, `split ${name} says ${s.samples} samples but its shards hold ${total}`);
  }
  if (o.stats !== undefined) {
    const st = o.stats;
    const channels = o.fields.x.shape.length >= 3 ? o.fields.x.shape[o.fields.x.shape.length - 1] : 1;
    if (!isObject(st) || typeof st.split !== 'string' || !Array.isArray(st.mean) || !Array.isArray(st.std)
      || st.mean.length !== channels || st.std.length !== channels || !st.mean.every(isStat) || !st.std.every(isStat) || !isStat(st.min) || !isStat(st.max)) {
      fail(dir, `bad stats (expected mean and std for ${channels} channel(s))`);
    }
  }
  const p = o.provenance;
  if (!isObject(p) || !isStringArray(p.sources) || typeof p.tool !== 'string' || typeof p.createdAt !== 'string') fail(dir, 'bad provenance');
  if (p.skipped !== undefined && !(Array.isArray(p.skipped) && p.skipped.every((e) => isObject(e) && typeof e.path === 'string' && typeof e.reason === 'string'))) fail(dir, 'bad list of skipped inputs');
  if (p.skippedCount !== undefined && !isCount(p.skippedCount)) fail(dir, 'bad count of skipped inputs');
  const d = p.duplicates as { within?: unknown; across?: unknown; dropped?: unknown } | undefined;
  if (d !== undefined && !(isObject(d) && [d.within, d.across].every((r) => isObject(r) && Object.values(r).every(isCount)) && (d.dropped === undefined || isCount(d.dropped)))) {
    fail(dir, 'bad duplicate counts');
  }
  return o;
}

/** Read and validate `dir/dataset.json`; a missing or partial manifest is an error telling the user to re-run convert. */
export async function readManifest(dir: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new SlimfitError(`no ${MANIFEST_FILE} found, so this is not a (complete) slimfit store`, {
        file: dir, hint: 'create one with `slimfit convert SRC OUT`; an interrupted conversion leaves no manifest',
      });
    }
    // A file given where the store folder belongs (e.g. the train.csv it was converted from): readFile says ENOTDIR.
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') {
      throw new SlimfitError('is a file, not a slimfit store folder', {
        file: dir, hint: 'give the folder made by `slimfit convert SRC OUT` (or convert()), not one of its input files',
      });
    }
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    fail(dir, 'dataset.json is not valid JSON');
  }
  return validateManifest(parsed, dir);
}
