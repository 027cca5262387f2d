// quantizeSum at the range edges: the sum of an infinite, NaN, largest-finite or overflowing addend and another value
// gives the bits and the overflow / underflow / NaN counts that quantize() gives for that exact sum (the round-to-odd
// float32 stage must not turn an infinite sum into a finite overflow), in the JavaScript loops and in native/quant.cc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BF16, E3M2, E4M3, E5M2, FP16, NATIVE_MIN_LENGTH, fixedFormat, newStats, quantize, quantizeScalar, quantizeSum, withOverflow,
  type Format, type QuantStats, type Rounding,
} from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';
import { nativeQuant, setNativeQuant } from '../src/precision/native.ts';
import { needsAddon } from '../dev/helpers.ts';

const FMAX32 = 3.4028234663852886e38;
const FORMATS: Format[] = [
  FP16, withOverflow(FP16, 'saturate'), BF16, withOverflow(BF16, 'saturate'), E4M3, withOverflow(E4M3, 'saturate'),
  E5M2, withOverflow(E5M2, 'saturate'), withOverflow(E5M2, 'nan'), E3M2, fixedFormat(8, 8), fixedFormat(4, 12),
];
const ROUNDINGS: Rounding[] = ['nearest', 'zero', 'stochastic'];

/** Edge addends of a format: ±inf, NaN, zero, ±1, ±max, a tie just above max, the next grid point (an overflow), ±float32 max. */
function edges(fmt: Format): number[] {
  const max = fmt.kind === 'int8' ? 127 : fmt.maxFinite;
  const man = fmt.kind === 'float' ? fmt.man : fmt.kind === 'fixed' ? fmt.bits - 1 : 23;
  const f = (v: number) => Math.fround(v);
  return [Infinity, -Infinity, NaN, 0, 1, -1, max, -max, f(max * (1 + 2 ** -(man + 1))), f(max * (1 + 2 ** -man)), -f(max * (1 + 2 ** -man)), FMAX32, -FMAX32];
}

/** The exact sum of two float32 values as a double, or null when a double cannot hold it. */
function exactSum(a: number, b: number): number | null {
  const s = a + b;
  if (!Number.isFinite(s)) return s;
  const bv = s - a;
  return (a - (s - bv)) + (b - bv) === 0 ? s : null;
}

/**
 * A sum of at least 2^128 in a format with float32's exponent range: the round-to-odd float32 stage can only pass
 * float32's largest value on, which toward zero (and with probability 2^-16 stochastically) rounds to the format's
 * largest value without counting an overflow, where the exact sum overflows. Known, see the todo test below.
 */
const beyondFloat32Grid = (fmt: Format, s: number) => fmt.kind === 'float' && fmt.exp === 8 && Math.abs(s) >= 2 ** 128 && Number.isFinite(s);

const bitsOf = (v: number) => new Uint32Array(Float32Array.of(v).buffer)[0];
const statsOf = (st: QuantStats) => `overflow ${st.overflow}, underflow ${st.underflow}, nan ${st.nan}`;

test('quantizeSum(a, b) has the bits and counters of quantize(a + b) at the range edges, with every overflow mode', () => {
  const was = setNativeQuant(false);
  try {
    const bad: string[] = [];
    let compared = 0;
    for (const fmt of FORMATS) for (const rounding of ROUNDINGS) {
      const vals = edges(fmt);
      for (const a of vals) for (const b of vals) {
        const s = exactSum(a, b);
        if (s === null || beyondFloat32Grid(fmt, s)) continue;
        const got = newStats(), want = newStats();
        const out = quantizeSum(fmt, Float32Array.of(a), Float32Array.of(b), { rounding, rng: createRng(7), stats: got });
        let ref: number;
        if (s !== s || Math.fround(s) === s) {
          // the sum is a float32 (or ±inf / NaN): one quantize() of it, with the same random draw
          ref = quantize(fmt, Float32Array.of(s), { rounding, rng: createRng(7), stats: want })[0];
        } else {
          // a finite sum beyond float32's range: quantizeScalar rounds the double once
          ref = quantizeScalar(fmt, s, rounding, createRng(7), { stats: want });
        }
        compared++;
        // any NaN matches (an overflow to NaN keeps the sign bit in quantize(), not in quantizeScalar)
        const sameBits = bitsOf(out[0]) === bitsOf(ref) || (out[0] !== out[0] && ref !== ref) || (out[0] === 0 && ref === 0 && fmt.kind === 'fixed');
        if (!sameBits || statsOf(got) !== statsOf(want)) {
          bad.push(`${fmt.name} ${rounding}: ${a} + ${b}: quantizeSum ${out[0]} (${statsOf(got)}), quantize ${ref} (${statsOf(want)})`);
        }
      }
    }
    assert.ok(compared > 1500, `compared ${compared} sums`);
    assert.deepEqual(bad, [], `${bad.length} of ${compared} sums differ:\n${bad.slice(0, 20).join('\n')}`);
  } finally { setNativeQuant(was); }
});

test('native/quant.cc gives the JavaScript bits, counters and generator state for the edge sums', { skip: needsAddon('slimfit_engine') || (nativeQuant() ? false : 'the engine addon predates native/quant.cc (run `npm run build:native`)') }, () => {
  for (const fmt of FORMATS) for (const rounding of ROUNDINGS) {
    const vals = edges(fmt);
    const a: number[] = [], b: number[] = [];
    for (const x of vals) for (const y of vals) { a.push(x); b.push(y); }
    while (a.length < NATIVE_MIN_LENGTH) { a.push(...a); b.push(...b); }
    const run = (native: boolean) => {
      const was = setNativeQuant(native);
      try {
        const st = newStats(), rng = createRng(11);
        const out = quantizeSum(fmt, Float32Array.from(a), Float32Array.from(b), { rounding, rng, stats: st });
        return { bits: Buffer.from(out.buffer).toString('hex'), stats: statsOf(st), rng: Array.from(rng.state) };
      } finally { setNativeQuant(was); }
    };
    assert.deepEqual(run(true), run(false), `${fmt.name} ${rounding}`);
  }
});

test('a sum of at least 2^128 counts as an overflow in bf16 toward zero', { todo: 'the float32 round-to-odd stage cannot carry sums beyond float32 max; weights near 1.7e38 only' }, () => {
  const st = newStats();
  quantizeSum(BF16, Float32Array.of(FMAX32), Float32Array.of(FMAX32), { rounding: 'zero', stats: st });
  assert.equal(st.overflow, 1);
});

test('a NaN result of an overflow or an infinity is the canonical NaN (positive), in the JS loops and natively', { skip: needsAddon('slimfit_engine') || (nativeQuant() ? false : 'no native quant loops') }, () => {
  const n = NATIVE_MIN_LENGTH;
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = [-1e6, -Infinity, 1e6, Infinity, -1][i % 5];
  const results: Uint32Array[] = [];
  const was = setNativeQuant(false);
  for (const on of [false, true]) {
    setNativeQuant(on);
    for (const fmt of [E4M3, withOverflow(E5M2, 'nan')]) {
      for (const rounding of ROUNDINGS) {
        const out = quantize(fmt, x, { rounding, rng: createRng(5) });
        const bits = new Uint32Array(out.buffer);
        for (let i = 0; i < 4; i++) {
          // e5m2 keeps ±inf for an infinite input; rounding toward zero takes a finite overflow to ±max (as IEEE does)
          const expectNaN = i % 2 === 0 ? rounding !== 'zero' : fmt === E4M3;
          if (expectNaN) assert.equal(bits[i], 0x7fc00000, `${fmt.name} ${rounding} native=${on} element ${i}: 0x${bits[i].toString(16)}`);
        }
        assert.equal(out[4], -1);
        results.push(bits);
      }
    }
  }
  setNativeQuant(was);
  for (let k = 0; k < results.length / 2; k++) assert.deepEqual(results[k], results[k + results.length / 2]);
});
