// Exact-duplicate detection over decoded samples: 64-bit pixel hashes (src/core/hash64.ts) in 256 open-addressing
// tables picked by the hash's top 8 bits. Two different samples collide with probability ~2^-64 per pair (~3e-8 for
// a million samples). Sized up front when the sample count is known (no growth, no garbage: a grown table's old
// arrays are external memory V8 frees only at its next full collection, 4 MB of peak RSS at 210k samples); else the
// tables grow one at a time by 1.5x, so memory follows the sample count (~11-16 bytes per distinct sample).
import { H, hash64 } from '../core/hash64.ts';

/** A set of sample fingerprints with, for each, the splits it has appeared in (at most 8 splits). */
export interface DuplicateIndex {
  /**
   * Record sample bytes as appearing in split `splitIdx`; returns the splits it had appeared in before as a bit set
   * (bit i: already written to split i; 0 = new). `lo`/`hi`: the sample's hash64 when already computed (e.g. by a
   * decode worker).
   */
  add(sample: Uint8Array, splitIdx: number, lo?: number, hi?: number): number;
  /** Distinct samples recorded. */
  readonly size: number;
  /** Bytes held by the tables. */
  readonly bytes: number;
}

const TABLES = 256;
const MIN_CAP = 64;
/** Grow a table past this load: linear probing stays short (~3 probes per miss at 0.8). */
const MAX_LOAD = 0.8;

/**
 * One table: slot k holds the hash's low 32 bits in `lo[k]` and, in `hi[k]`, its high bits 0-23 (bits 24-31 chose
 * the table, so they need no room) with the split bit set in bits 24-31. hi[k] === 0 marks an empty slot (a stored
 * entry always has a split bit).
 */
interface Table { lo: Uint32Array; hi: Uint32Array; size: number }

function newTable(cap: number): Table {
  return { lo: new Uint32Array(cap), hi: new Uint32Array(cap), size: 0 };
}

/** First slot to probe for `lo` in a table of `cap` slots (multiply-shift: any cap, not only powers of two). */
function home(lo: number, cap: number): number {
  return Math.floor((lo / 4294967296) * cap);
}

/** Insert or update; returns the split bits before (0 = new). `key24`: hash bits 0-23 of the high word. */
function put(t: Table, lo: number, key24: number, mask: number): number {
  const cap = t.lo.length;
  let i = home(lo, cap);
  for (;;) {
    const h = t.hi[i];
    if (h === 0) { t.lo[i] = lo; t.hi[i] = (key24 | (mask << 24)) >>> 0; t.size++; return 0; }
    if (t.lo[i] === lo && (h & 0xffffff) === key24) { t.hi[i] = (h | (mask << 24)) >>> 0; return h >>> 24; }
    if (++i === cap) i = 0;
  }
}

function grow(t: Table): Table {
  const next = newTable(Math.ceil(t.lo.length * 1.5));
  for (let i = 0; i < t.lo.length; i++) {
    const h = t.hi[i];
    if (h !== 0) put(next, t.lo[i], h & 0xffffff, h >>> 24);
  }
  return next;
}

/** Pre-size for at most this many samples (~43 MB): a count from a file's header sizes nothing bigger; past it, tables grow. */
const MAX_PRESIZE = 1 << 22;

/** Slots per table for `expected` samples: the mean share plus 4 standard deviations, at the load limit. */
function capFor(expected: number): number {
  const per = Math.min(Math.max(0, expected), MAX_PRESIZE) / TABLES;
  return Math.max(MIN_CAP, Math.ceil((per + 4 * Math.sqrt(per)) / MAX_LOAD));
}

/** Create an empty duplicate index, sized for `expectedSamples` when given (it still grows past them). */
export function createDuplicateIndex(expectedSamples = 0): DuplicateIndex {
  const cap0 = capFor(expectedSamples);
  const tables: Table[] = Array.from({ length: TABLES }, () => newTable(cap0));
  let size = 0;
  let bytes = TABLES * cap0 * 8;
  return {
    get size() { return size; },
    get bytes() { return bytes; },
    add(sample, splitIdx, lo, hi) {
      if (splitIdx < 0 || splitIdx > 7) throw new RangeError('duplicate checking handles at most 8 splits');
      if (lo === undefined || hi === undefined) { hash64(sample); lo = H[0]; hi = H[1]; }
      lo >>>= 0; hi >>>= 0;
      const ti = hi >>> 24;
      let t = tables[ti];
      if (t.size + 1 > t.lo.length * MAX_LOAD) {
        const old = t.lo.length;
        tables[ti] = t = grow(t);
        bytes += (t.lo.length - old) * 8;
      }
      const before = put(t, lo, hi & 0xffffff, 1 << splitIdx);
      if (before === 0) size++;
      return before;
    },
  };
}
