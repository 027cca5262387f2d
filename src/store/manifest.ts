// dataset.json: the manifest that makes a folder of .npy shards a slimfit store.
import { readFile } from 'node:fs/promises';
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

function fail(dir: string, what: string): never {
  throw new SlimfitError(`not a complete slimfit store: ${what}`, {
    file: join(dir, MANIFEST_FILE),
    hint: 'the conversion may have been interrupted; run `slimfit convert` again',
  });
}

/** Check that a parsed JSON value is a well-formed manifest (shapes, counts and shard lists agree). */
export function validateManifest(m: unknown, dir: string): Manifest {
  const o = m as Manifest;
  if (!o || typeof o !== 'object' || o.format !== 'slimfit-dataset') fail(dir, "missing \"format\": \"slimfit-dataset\"");
  if (typeof o.version !== 'number' || o.version > STORE_VERSION) fail(dir, `store version ${o.version} is newer than this slimfit understands (${STORE_VERSION}); upgrade slimfit`);
  for (const k of ['x', 'y'] as const) {
    const f = o.fields?.[k];
    if (!f || !isDType(f.dtype) || !Array.isArray(f.shape) || !f.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(dir, `bad field spec for ${k}`);
  }
  if (!o.splits || typeof o.splits !== 'object' || Object.keys(o.splits).length === 0) fail(dir, 'no splits');
  for (const [name, s] of Object.entries(o.splits)) {
    if (!Array.isArray(s.shards)) fail(dir, `split ${name} has no shard list`);
    const total = s.shards.reduce((a, sh) => a + sh.samples, 0);
    if (total !== s.samples) fail(dir, `split ${name} says ${s.samples} samples but its shards hold ${total}`);
    for (const sh of s.shards) {
      for (const f of [sh.x, sh.y]) {
        if (!f || typeof f.file !== 'string' || f.file.includes('..') || f.file.startsWith('/')) fail(dir, `split ${name} has a bad shard path`);
      }
    }
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
