// Exact-duplicate detection over decoded samples: a growable open-addressing table of 64-bit pixel hashes.
// The hash is two murmur3-style 32-bit lanes with different constants, written out here because a per-sample
// crypto hash call (SHA-1) took ~2 us of the main thread per 784-byte image (14% of converting an image tree). Two
// different samples collide with probability ~2^-64 per pair (~3e-8 for a million samples): as before, when only
// the first 64 bits of SHA-1 were kept.

/** Where an x has been seen before, as a bit set over split indices. */
export interface SeenBefore {
  /** Bit i set: the same x was already written to split i. */
  splits: number;
}

/** A set of sample fingerprints with, for each, the splits it has appeared in (at most 8 splits). 9-18 bytes per distinct sample. */
export interface DuplicateIndex {
  /** Record sample bytes as appearing in split `splitIdx`; returns the splits it had appeared in before (0 = new). */
  add(sample: Uint8Array, splitIdx: number): number;
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
    add(sample, splitIdx) {
      if (splitIdx < 0 || splitIdx > 7) throw new RangeError('duplicate checking handles at most 8 splits');
      hash64(sample);
      if ((size + 1) * 4 > cap * 3) grow(); // keep the load factor below 0.75
      return insert(H[0], H[1], 1 << splitIdx, true);
    },
  };
}

const H = new Uint32Array(2);
let scratch = new Uint32Array(256);

/** 64-bit hash of `s` into H[0], H[1]. */
export function hash64(s: Uint8Array): void {
  const len = s.length, n4 = len >>> 2;
  let w: Uint32Array;
  if ((s.byteOffset & 3) === 0) w = new Uint32Array(s.buffer, s.byteOffset, n4);
  else {
    if (scratch.length < n4) scratch = new Uint32Array(n4);
    new Uint8Array(scratch.buffer, 0, n4 * 4).set(s.subarray(0, n4 * 4));
    w = scratch;
  }
  let h1 = 0x9747b28c ^ len, h2 = 0x5bd1e995 ^ len;
  for (let i = 0; i < n4; i++) {
    const k = w[i];
    let k1 = Math.imul(k, 0xcc9e2d51); k1 = (k1 << 15) | (k1 >>> 17); k1 = Math.imul(k1, 0x1b873593);
    h1 ^= k1; h1 = (h1 << 13) | (h1 >>> 19); h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
    let k2 = Math.imul(k, 0x85ebca77); k2 = (k2 << 17) | (k2 >>> 15); k2 = Math.imul(k2, 0xc2b2ae3d);
    h2 ^= k2; h2 = (h2 << 11) | (h2 >>> 21); h2 = (Math.imul(h2, 5) + 0x52dce729) | 0;
  }
  let t = 0;
  for (let i = len - 1; i >= n4 * 4; i--) t = (t << 8) | s[i];
  if (len & 3) {
    h1 ^= Math.imul((Math.imul(t, 0xcc9e2d51) << 15) | (Math.imul(t, 0xcc9e2d51) >>> 17), 0x1b873593);
    h2 ^= Math.imul((Math.imul(t, 0x85ebca77) << 17) | (Math.imul(t, 0x85ebca77) >>> 15), 0xc2b2ae3d);
  }
  h1 = fmix(h1); h2 = fmix(h2 ^ 0x27d4eb2f);
  h1 = (h1 + h2) | 0; h2 = (h2 + h1) | 0;
  H[0] = h1; H[1] = h2;
}

function fmix(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
