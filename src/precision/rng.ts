// A small seeded PRNG (xoshiro128**) for stochastic rounding and reproducible experiments.

/** A reproducible stream of uniform 32-bit integers; `state` is the 128-bit xoshiro128** state (mutable). */
export interface Rng {
  readonly state: Uint32Array;
  /** Next uniform integer in [0, 2^32). */
  u32(): number;
  /** Next uniform double in [0, 1) with 32 bits of resolution. */
  uniform(): number;
  /** Next standard normal deviate (Box–Muller). */
  normal(): number;
}

/** splitmix32 step used to expand a seed into the xoshiro state. */
function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Create a seeded xoshiro128** generator; the same seed always gives the same stream. */
export function createRng(seed: number): Rng {
  const s = new Uint32Array(4);
  let x = (seed >>> 0) ^ 0x5bd1e995;
  for (let i = 0; i < 4; i++) {
    x = (x + 0x9e3779b9) | 0;
    s[i] = splitmix32(x);
  }
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  const u32 = (): number => {
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  };
  return {
    state: s,
    u32,
    uniform: () => u32() * 2.3283064365386963e-10,
    normal: () => {
      const u = (u32() + 0.5) * 2.3283064365386963e-10;
      const v = u32() * 2.3283064365386963e-10;
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    },
  };
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Fill `out` with uniform 32-bit integers from `rng` (inlined xoshiro128** for speed). */
export function fillU32(rng: Rng, out: Uint32Array): Uint32Array {
  const s = rng.state;
  let s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
  for (let i = 0; i < out.length; i++) {
    const m = Math.imul(s1, 5);
    out[i] = Math.imul((m << 7) | (m >>> 25), 9);
    const t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3;
    s2 ^= t;
    s3 = (s3 << 11) | (s3 >>> 21);
  }
  s[0] = s0; s[1] = s1; s[2] = s2; s[3] = s3;
  return out;
}
