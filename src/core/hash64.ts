// A fast 64-bit hash of sample bytes (two murmur3-style 32-bit lanes), shared by the duplicate index and by the
// decode workers that hash samples off the main thread. Written out here because a per-sample crypto hash call
// (SHA-1) took ~2 us of the main thread per 784-byte image.

/** The last hash64 result: [low 32 bits, high 32 bits]. */
export const H = new Uint32Array(2);
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

/** hash64 of each of the n samples of x (sampleBytes each): [lo0, hi0, lo1, hi1, ...]. */
export function hashSamples(x: Uint8Array, sampleBytes: number, n: number): Uint32Array {
  const out = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    hash64(x.subarray(i * sampleBytes, (i + 1) * sampleBytes));
    out[2 * i] = H[0];
    out[2 * i + 1] = H[1];
  }
  return out;
}
