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
/**
 * Later copies listed at most, over all groups: a source made of repeated rows has a copy per sample, and the list
 * must stay bounded like the rest of conversion's memory. Copies past it are counted per group (`unlisted`).
 */
export const MAX_LISTED_COPIES = 20_000;

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

/** The copies of one sample (exactly equal x bytes); `unlisted`: later copies past MAX_LISTED_COPIES, counted only. */
export interface DuplicateGroup { copies: DuplicateCopy[]; unlisted?: number }

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
  // Groups by hash (lo, then hi): numeric keys, so a lookup per sample allocates nothing. `groups` keeps the order.
  const byHash = new Map<number, Map<number, DuplicateGroup>>();
  const unlistedHashes = new Map<number, Set<number>>();
  const groups: DuplicateGroup[] = [];
  const find = (lo: number, hi: number) => byHash.get(lo >>> 0)?.get(hi >>> 0);
  const add = (lo: number, hi: number): DuplicateGroup => {
    let inner = byHash.get(lo >>> 0);
    if (!inner) byHash.set(lo >>> 0, inner = new Map());
    const g: DuplicateGroup = { copies: [] };
    inner.set(hi >>> 0, g);
    groups.push(g);
    return g;
  };
  let total = 0, copies = 0, firstsFound = 0;
  const lister: DuplicateLister = {
    get size() { return groups.length; },
    note(lo, hi, copy) {
      let g = find(lo, hi);
      if (!g) {
        if (groups.length >= MAX_LISTED_GROUPS || copies >= MAX_LISTED_COPIES) {
          // Past the caps only the hash is kept, so `total` counts each duplicated sample once (as the index does).
          let inner = unlistedHashes.get(lo >>> 0);
          if (!inner) unlistedHashes.set(lo >>> 0, inner = new Set());
          if (!inner.has(hi >>> 0)) { inner.add(hi >>> 0); total++; }
          return;
        }
        total++;
        g = add(lo, hi);
      }
      if (copies >= MAX_LISTED_COPIES) { g.unlisted = (g.unlisted ?? 0) + 1; return; }
      copies++;
      g.copies.push(copy);
    },
    found(lo, hi, split, index) {
      const g = find(lo, hi);
      // The one copy in the store that was not noted is the first. A group with unlisted later copies has more than one
      // such copy and no way to tell which came first: its first copy stays unlocated (said in the file).
      if (g && !g.unlisted && !g.copies.some((c) => c.split === split && c.index === index)) { g.copies.push({ split, index }); firstsFound++; }
    },
    result() {
      // In input order: the copy found only in the store is the first one (every later copy was noted while converting,
      // with its input position), which is also the one --dedupe keeps.
      // Later copies are noted in input order (across inputs too); the sort is stable and only puts the first copy first.
      for (const g of groups) g.copies.sort((a, b) => (a.input === undefined ? -1 : 0) - (b.input === undefined ? -1 : 0));
      return { groups: [...groups], total };
    },
    async finish(dir, splits, xRowBytes, fetchBack) {
      // Only groups whose copies are all listed have a first copy to locate; the scan stops once each has one.
      const wanted = groups.filter((g) => !g.unlisted).length;
      if (wanted === 0) return lister.result();
      const CHUNK = Math.max(1, Math.floor((4 << 20) / Math.max(1, xRowBytes)));
      const pool = new Uint8Array(CHUNK * xRowBytes); // one reused read buffer
      for (const [name, info] of Object.entries(splits)) {
        let at = 0;
        for (const sh of info.shards) {
          if (firstsFound >= wanted) break;
          const path = join(dir, sh.x.file);
          if (fetchBack) await fetchBack(sh.x.file, path, sh.x);
          const npy = await openNpy(path);
          try {
            for (let s = 0; s < sh.samples && firstsFound < wanted; s += CHUNK) {
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
    about: 'Samples whose x bytes are exactly equal. Each group lists the copies of one sample (at most maxListedGroups groups and maxListedCopies later copies in all; `unlisted`: a group\'s later copies past that, counted only, and such a group\'s first copy is not located): split and index in this store (index null: dropped by --dedupe), in input order: the first copy, then the later ones with the input and their position in it (row of an array or CSV, image in sorted folder order). --dedupe keeps the first copy and drops the later ones.',
    groups: total, listed: groups.length, maxListedGroups: MAX_LISTED_GROUPS, maxListedCopies: MAX_LISTED_COPIES,
    unlistedCopies: groups.reduce((a, g) => a + (g.unlisted ?? 0), 0), duplicates: groups,
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
