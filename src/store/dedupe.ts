// Exact-duplicate detection over decoded samples: a growable open-addressing table of 64-bit pixel hashes
// (src/util/hash64.ts). Two different samples collide with probability ~2^-64 per pair (~3e-8 for a million
// samples): as before, when only the first 64 bits of SHA-1 were kept.
import { H, hash64 } from '../util/hash64.ts';

/** Where an x has been seen before, as a bit set over split indices. */
export interface SeenBefore {
  /** Bit i set: the same x was already written to split i. */
  splits: number;
}

/** A set of sample fingerprints with, for each, the splits it has appeared in (at most 8 splits). 9-18 bytes per distinct sample. */
export interface DuplicateIndex {
  /**
   * Record sample bytes as appearing in split `splitIdx`; returns the splits it had appeared in before (0 = new).
   * `lo`/`hi`: the sample's hash64 when already computed (e.g. by a decode worker).
   */
  add(sample: Uint8Array, splitIdx: number, lo?: number, hi?: number): number;
  /** Distinct samples recorded. */
  readonly size: number;
}

/** Create an empty duplicate index. */
export function createDuplicateIndex(): DuplicateIndex {
  let cap = 1 << 16;
  let lo = new Uint32Array(cap);
  let hi = new Uint32Array(cap);
  let bits = new Uint8Array(cap); // 0 = empty slot; else split bitmask
  let size = 0;
  const insert = (a: number, b: number, mask: number, orInto: boolean): number => {
    const m = cap - 1;
    let i = a & m;
    for (;;) {
      if (bits[i] === 0) { lo[i] = a; hi[i] = b; bits[i] = mask; size++; return 0; }
      if (lo[i] === a && hi[i] === b) { const before = bits[i]; if (orInto) bits[i] |= mask; return before; }
      i = (i + 1) & m;
    }
  };
  const grow = () => {
    const ol = lo, oh = hi, ob = bits;
    cap *= 2;
    lo = new Uint32Array(cap); hi = new Uint32Array(cap); bits = new Uint8Array(cap);
    size = 0;
    for (let i = 0; i < ob.length; i++) if (ob[i] !== 0) insert(ol[i], oh[i], ob[i], false);
  };
  return {
    get size() { return size; },
    add(sample, splitIdx, lo, hi) {
      if (splitIdx < 0 || splitIdx > 7) throw new RangeError('duplicate checking handles at most 8 splits');
      if (lo === undefined || hi === undefined) { hash64(sample); lo = H[0]; hi = H[1]; }
      if ((size + 1) * 4 > cap * 3) grow(); // keep the load factor below 0.75
      return insert(lo >>> 0, hi >>> 0, 1 << splitIdx, true);
    },
  };
}

