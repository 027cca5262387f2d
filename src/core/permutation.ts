// Seeded bijections on [0, n): a shuffled order of n items in O(1) memory (Feistel network + cycle-walking).

/** 32-bit mix (murmur3 finalizer) of two integers. */
export function hash32(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x7f4a7c15, 0xc2b2ae35);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Largest n a permutation supports: 2^52 (two 26-bit halves keep every step in exact integer arithmetic). */
export const MAX_PERMUTATION_SIZE = 2 ** 52;

/** A seeded uniform-looking permutation of [0, n): `at(i)` is the item at position i; `indexOf` inverts it. */
export interface Permutation {
  readonly n: number;
  /** The Feistel network (half width in bits, round keys), for native code that computes `at` for many positions. */
  readonly feistel: { readonly half: number; readonly keys: readonly number[] };
  at(i: number): number;
  indexOf(v: number): number;
}

/** Build the permutation of [0, n) for `seed` (any integers, e.g. seed and epoch, are mixed into the key). */
export function permutation(n: number, ...seed: number[]): Permutation {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_PERMUTATION_SIZE) throw new RangeError(`permutation size ${n} out of range`);
  let bits = 2;
  while (2 ** bits < n) bits++;
  if (bits % 2) bits++;
  const half = bits / 2;
  const mask = 2 ** half - 1;
  const scale = 2 ** half;
  const ROUNDS = 6;
  const keys: number[] = [];
  let k = 0x2545f491;
  for (const s of seed) k = hash32(k, s | 0) ^ hash32(Math.floor(s / 2 ** 32), k);
  for (let r = 0; r < ROUNDS; r++) keys.push(hash32(k, r + 1));
  // Round function: mix the 26-bit half with the round key, keep `half` bits (mask fits in 2^26, so & is exact).
  const f = (x: number, r: number) => hash32(x, keys[r]) & mask;
  const enc = (x: number): number => {
    let l = Math.floor(x / scale), rr = x % scale;
    for (let r = 0; r < ROUNDS; r++) { const t = l ^ f(rr, r); l = rr; rr = t; }
    return l * scale + rr;
  };
  const dec = (y: number): number => {
    let l = Math.floor(y / scale), rr = y % scale;
    for (let r = ROUNDS - 1; r >= 0; r--) { const t = rr ^ f(l, r); rr = l; l = t; }
    return l * scale + rr;
  };
  const check = (i: number) => {
    if (!(Number.isInteger(i) && i >= 0 && i < n)) throw new RangeError(`index ${i} outside 0..${n}`);
  };
  return {
    n,
    feistel: { half, keys },
    at(i) { check(i); let y = enc(i); while (y >= n) y = enc(y); return y; },
    indexOf(v) { check(v); let x = dec(v); while (x >= n) x = dec(x); return x; },
  };
}
