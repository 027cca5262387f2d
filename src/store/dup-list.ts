// Which samples are duplicates: the later copies are noted while converting (input position, split and place, or
// dropped), and the copies already in the store are found afterwards by hashing the written x shards again. The
// list goes into `duplicates.json` beside the manifest. The duplicate index itself keeps no positions (that would
// cost memory for every sample); the second pass reads the store only when duplicates were found.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { H, hash64 } from '../core/hash64.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { openNpy } from '../formats/npy.ts';
import type { SplitInfo } from './manifest.ts';

/** File name of the duplicate list inside a store. */
export const DUPLICATES_FILE = 'duplicates.json';
/** Groups listed at most (counts in the manifest stay exact). */
export const MAX_LISTED_GROUPS = 10_000;

/** One copy of a duplicated sample. */
export interface DuplicateCopy {
  /** Split it is in (or was meant for, when dropped). */
  split: string;
  /** Its position in that split of the store; null when --dedupe dropped it. */
  index: number | null;
  /** The input it came from and its position there (row of an array or CSV, image in sorted folder order), when known. */
  input?: string;
  inputIndex?: number;
  dropped?: boolean;
}

/** The copies of one sample (exactly equal x bytes). */
export interface DuplicateGroup { copies: DuplicateCopy[] }

/** Collects duplicates while converting. */
export interface DuplicateLister {
  /** A sample seen before: its hash (lo, hi), where it went (`index` null = dropped) and where it came from. */
  note(lo: number, hi: number, copy: DuplicateCopy): void;
  /** Groups noted so far. */
  readonly size: number;
  /** A sample of the store (split, index) with hash (lo, hi): added to its group when the hash has one and it was not noted. */
  found(lo: number, hi: number, split: string, index: number): void;
  /** The groups (each in input order), in the order first noted, and how many there are (listed or not). */
  result(): { groups: DuplicateGroup[]; total: number };
  /**
   * Find the copies already written (hashing the split's x shards under `dir`) and return {@link result}. `fetchBack`
   * puts a shard that is no longer under `dir` (uploaded and deleted when writing to a URL) back at its path first; it
   * is removed again after it was read.
   */
  finish(dir: string, splits: Record<string, SplitInfo>, xRowBytes: number, fetchBack?: ShardFetchBack): Promise<{ groups: DuplicateGroup[]; total: number }>;
}

/** Brings shard `file` (as the manifest names it, checked against its size and SHA-256) back to the local path `dest`. */
export type ShardFetchBack = (file: string, dest: string, expected: { bytes: number; sha256: string }) => Promise<void>;

/** A new, empty lister. */
export function createDuplicateLister(): DuplicateLister {
  const groups = new Map<string, DuplicateGroup>();
  let total = 0;
  const lister: DuplicateLister = {
    get size() { return groups.size; },
    note(lo, hi, copy) {
      const key = `${lo >>> 0}:${hi >>> 0}`;
      let g = groups.get(key);
      if (!g) {
        total++;
        if (groups.size >= MAX_LISTED_GROUPS) return;
        groups.set(key, g = { copies: [] });
      }
      g.copies.push(copy);
    },
    found(lo, hi, split, index) {
      const g = groups.get(`${lo >>> 0}:${hi >>> 0}`);
      if (g && !g.copies.some((c) => c.split === split && c.index === index)) g.copies.push({ split, index });
    },
    result() {
      // In input order: the copy found only in the store is the first one (every later copy was noted while converting,
      // with its input position), which is also the one --dedupe keeps.
      for (const g of groups.values()) g.copies.sort((a, b) => (a.input === undefined ? -1 : 0) - (b.input === undefined ? -1 : 0) || (a.inputIndex ?? 0) - (b.inputIndex ?? 0));
      return { groups: [...groups.values()], total };
    },
    async finish(dir, splits, xRowBytes, fetchBack) {
      if (groups.size === 0) return { groups: [], total };
      const CHUNK = Math.max(1, Math.floor((4 << 20) / Math.max(1, xRowBytes)));
      const pool = new Uint8Array(CHUNK * xRowBytes); // one reused read buffer
      for (const [name, info] of Object.entries(splits)) {
        let at = 0;
        for (const sh of info.shards) {
          const path = join(dir, sh.x.file);
          if (fetchBack) await fetchBack(sh.x.file, path, sh.x);
          const npy = await openNpy(path);
          try {
            for (let s = 0; s < sh.samples; s += CHUNK) {
              const e = Math.min(sh.samples, s + CHUNK);
              const buf = await npy.readRows(s, e, pool);
              for (let i = 0; i < e - s; i++) {
                hash64(buf.subarray(i * xRowBytes, (i + 1) * xRowBytes));
                lister.found(H[0], H[1], name, at + s + i);
              }
            }
          } finally {
            await npy.close();
            if (fetchBack) await rm(path, { force: true });
          }
          at += sh.samples;
        }
      }
      return lister.result();
    },
  };
  return lister;
}

/**
 * Write the groups into `dir`/duplicates.json (atomically; before the manifest, so a store with a manifest has its
 * list) and return up to three of them in words for the summary, leaks between splits first (the ones that inflate
 * test scores).
 *
 * @example
 * const examples = await writeDuplicateList(tmp, lister.result()); // ['test #12 (d.csv #1012) = train #5', ...]
 */
export async function writeDuplicateList(dir: string, found: { groups: DuplicateGroup[]; total: number }): Promise<string[]> {
  const { groups, total } = found;
  const doc = {
    format: 'slimfit-duplicates', version: 1,
    about: 'Samples whose x bytes are exactly equal. Each group lists the copies of one sample: split and index in this store (index null: dropped by --dedupe), in input order: the first copy, then the later ones with the input and their position in it (row of an array or CSV, image in sorted folder order). --dedupe keeps the first copy and drops the later ones.',
    groups: total, listed: groups.length, duplicates: groups,
  };
  await writeAtomic(join(dir, DUPLICATES_FILE), JSON.stringify(doc, null, 1) + '\n');
  const leaks = groups.filter((g) => new Set(g.copies.map((c) => c.split)).size > 1);
  return [...leaks, ...groups.filter((g) => !leaks.includes(g))].slice(0, 3).map(describeGroup);
}

/** One line about a group: `test #12 (x.npy row 1012) = train #5`. */
export function describeGroup(g: DuplicateGroup): string {
  const one = (c: DuplicateCopy) => `${c.index === null ? `dropped from ${c.split}` : `${c.split} #${c.index}`}${c.input !== undefined ? ` (${c.input} #${c.inputIndex})` : ''}`;
  return g.copies.map(one).join(' = ');
}
