// Number formats checked bit-for-bit against numpy and against the OCP FP8 spec's value table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { py, tempDir } from '../dev/helpers.ts';
import {
  BF16, CANONICAL_NAN_BITS, E4M3, E5M2, FP16, FP32, decode, encode, fixedFormat, floatFormat, int8Format, newStats, overflowNote,
  parseFormat, quantize, quantizeF64, quantizeScalar, quantizeSum, withOverflow, type FloatFormat, type Format,
} from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';

const u32of = (f: Float32Array) => new Uint32Array(f.buffer, f.byteOffset, f.length);

/** Dense float32 bit patterns: every exponent, near-tie mantissa tails, the fp16 boundary region exhaustively by top bits. */
function fp16Patterns(): Uint32Array {
  const rng = createRng(7);
  const out: number[] = [];
  const tails = [0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x0800, 0x17ff];
  for (const sign of [0, 0x80000000]) {
    // fp16 range and its surroundings: float32 exponents 97..145 (2^-30 .. 2^18), every top-10-bit mantissa x tails.
    for (let e = 97; e <= 145; e++) {
      for (let top = 0; top < 1024; top++) for (const t of tails) out.push((sign | (e << 23) | (top << 13) | t) >>> 0);
    }
    // every other exponent (incl. float32 subnormals, inf/NaN exponent) with random mantissas
    for (let e = 0; e < 256; e++) for (let k = 0; k < 512; k++) out.push((sign | (e << 23) | (rng.u32() & 0x7fffff)) >>> 0);
    // extra tail patterns for subnormal-fp16 inputs where the rounding position moves
    for (let e = 98; e <= 113; e++) {
      const sh = 13 + (113 - e); // bits dropped when the result is an fp16 subnormal
      for (let k = 0; k < 256; k++) {
        const top = rng.u32() & 0x7fffff & ~((1 << Math.min(sh, 23)) - 1);
        const half = sh <= 23 ? 1 << (sh - 1) : 0;
        for (const d of [-1, 0, 1]) out.push((sign | (e << 23) | ((top | half) + d)) >>> 0);
      }
    }
  }
  out.push(0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffffffff, 0x477fe000, 0x477fefff, 0x477ff000, 0x33000000, 0x33000001, 0x387fc000, 0x387fe000);
  return Uint32Array.from(out);
}

test('fp16 round-to-nearest-even is bit-exact with numpy astype(float16) on a dense sample (NaN: both NaN)', () => {
  const { dir, cleanup } = tempDir();
  try {
    const bits = fp16Patterns();
    writeFileSync(join(dir, 'in.bin'), bits);
    py(`import numpy as np, sys
x = np.fromfile(sys.argv[1], dtype='<u4').view(np.float32)
with np.errstate(all='ignore'):
    h = x.astype(np.float16)
h.view('<u2').tofile(sys.argv[2])`, [join(dir, 'in.bin'), join(dir, 'out.bin')]);
    const ref = new Uint16Array(readFileSync(join(dir, 'out.bin')).buffer.slice(0));
    const x = new Float32Array(bits.buffer);
    const codes = encode(FP16, x) as Uint16Array;
    assert.equal(ref.length, bits.length);
    let bad = 0, nans = 0, subnormals = 0, infs = 0;
    for (let i = 0; i < bits.length; i++) {
      const refNaN = (ref[i] & 0x7c00) === 0x7c00 && (ref[i] & 0x3ff) !== 0;
      if (refNaN) { nans++; if (!((codes[i] & 0x7c00) === 0x7c00 && (codes[i] & 0x3ff) !== 0)) bad++; continue; }
      if ((ref[i] & 0x7c00) === 0 && (ref[i] & 0x3ff) !== 0) subnormals++;
      if ((ref[i] & 0x7fff) === 0x7c00) infs++;
      if (codes[i] !== ref[i] && bad++ < 5) console.log(`mismatch ${bits[i].toString(16)}: ours ${codes[i].toString(16)} numpy ${ref[i].toString(16)}`);
    }
    assert.equal(bad, 0);
    assert.ok(bits.length > 900_000 && nans > 1000 && subnormals > 50_000 && infs > 10_000, `coverage ${bits.length} ${nans} ${subnormals} ${infs}`);
    // quantize (values) agrees with decode(encode) for every non-NaN pattern
    const q = u32of(quantize(FP16, x));
    const back = u32of(decode(FP16, codes));
    for (let i = 0; i < bits.length; i++) if (x[i] === x[i]) assert.equal(q[i], back[i]);
  } finally { cleanup(); }
});

test('fp16: every one of the 65536 codes decodes like numpy and re-encodes to itself', () => {
  const { dir, cleanup } = tempDir();
  try {
    py(`import numpy as np, sys
np.arange(65536, dtype=np.uint32).astype('<u2').view(np.float16).astype(np.float32).view('<u4').tofile(sys.argv[1])`, [join(dir, 'd.bin')]);
    const ref = new Uint32Array(readFileSync(join(dir, 'd.bin')).buffer.slice(0));
    const codes = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const d = decode(FP16, codes);
    const du = u32of(d);
    for (let c = 0; c < 65536; c++) {
      if (d[c] !== d[c]) assert.ok(Number.isNaN(new Float32Array(ref.buffer)[c]));
      else assert.equal(du[c], ref[c], `code ${c.toString(16)}`);
    }
    const enc = encode(FP16, d);
    for (let c = 0; c < 65536; c++) assert.equal(enc[c], (c & 0x7c00) === 0x7c00 && (c & 0x3ff) ? 0x7e00 : c, `code ${c.toString(16)}`);
  } finally { cleanup(); }
});

/** OCP FP8 spec value of a code, computed in python from the spec's definition (independent of our tables). */
function ocpTable(name: 'e4m3' | 'e5m2'): number[] {
  const out = py(`import json
def e4m3(c):
    s = -1.0 if c & 0x80 else 1.0; e = (c >> 3) & 0xF; m = c & 7
    if e == 15 and m == 7: return 'nan'
    return s * (2.0**-6 * m / 8 if e == 0 else 2.0**(e - 7) * (1 + m / 8))
def e5m2(c):
    s = -1.0 if c & 0x80 else 1.0; e = (c >> 2) & 0x1F; m = c & 3
    if e == 31: return 'nan' if m else ('inf' if s > 0 else '-inf')
    return s * (2.0**-14 * m / 4 if e == 0 else 2.0**(e - 15) * (1 + m / 4))
print(json.dumps([${name}(c) for c in range(256)]))`);
  return (JSON.parse(out) as (number | string)[]).map((v) => v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : (v as number));
}

for (const [fmt, name, max, nanCodes] of [[E4M3, 'e4m3', 448, 2], [E5M2, 'e5m2', 57344, 6]] as const) {
  test(`${name}: all 256 codes decode to the OCP spec values and encode(decode(c)) = c`, () => {
    const spec = ocpTable(name);
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const d = decode(fmt, codes);
    let nan = 0;
    for (let c = 0; c < 256; c++) {
      if (Number.isNaN(spec[c])) { assert.ok(Number.isNaN(d[c]), `code ${c}`); nan++; } else assert.ok(Object.is(d[c], spec[c]), `code ${c}: ${d[c]} vs ${spec[c]}`);
    }
    assert.equal(nan, nanCodes);
    assert.equal(fmt.maxFinite, max);
    assert.equal(Math.max(...spec.filter(Number.isFinite)), max);
    // identity on every non-NaN code; every NaN code decodes to the canonical NaN and re-encodes to the canonical code
    const canon = name === 'e4m3' ? 0x7f : 0x7e;
    assert.deepEqual(Array.from(encode(fmt, d)), Array.from(codes).map((c) => (Number.isNaN(spec[c]) ? canon : c)));
    for (let c = 0; c < 256; c++) if (Number.isNaN(spec[c])) assert.equal(u32of(d)[c], CANONICAL_NAN_BITS);
  });

  test(`${name}: round-to-nearest-even matches a brute-force nearest search over the spec values`, () => {
    const spec = ocpTable(name);
    const rng = createRng(11);
    const n = 20000;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const k = i % 4;
      // random magnitudes across the whole range, exact midpoints between neighbours, and beyond max
      if (k === 0) x[i] = (rng.uniform() < 0.5 ? -1 : 1) * 2 ** (rng.uniform() * 40 - 24);
      else if (k === 1 || k === 2) {
        const c = rng.u32() & 0x7f;
        const a = spec[c], b = spec[c + 1];
        if (Number.isFinite(a) && Number.isFinite(b)) x[i] = (rng.uniform() < 0.5 ? -1 : 1) * (k === 1 ? (a + b) / 2 : a + (b - a) * rng.uniform());
      } else x[i] = (rng.uniform() < 0.5 ? -1 : 1) * max * (1 + rng.uniform() * 0.3);
    }
    const q = quantize(fmt, x);
    const pos = spec.slice(0, 128).filter(Number.isFinite) as number[];
    // the next grid point beyond max is where rounding lands on overflow (inf for e5m2, NaN for e4m3: OCP non-saturating)
    const beyond = name === 'e5m2' ? 65536 : 480;
    for (let i = 0; i < n; i++) {
      const a = Math.abs(x[i]);
      let best = 0, bestD = Infinity;
      for (let c = 0; c < pos.length; c++) {
        const dd = Math.abs(pos[c] - a);
        if (dd < bestD || (dd === bestD && (c & 1) === 0)) { best = c; bestD = dd; }
      }
      let want = pos[best];
      const dBeyond = beyond - a;
      if (dBeyond < bestD || (dBeyond === bestD && (best & 1) === 1)) want = name === 'e5m2' ? Infinity : NaN;
      want *= Math.sign(x[i]) || 1;
      assert.ok(Object.is(q[i], want) || (want === 0 && q[i] === 0), `x=${x[i]}: got ${q[i]}, want ${want}`);
    }
  });
}

test('bf16 round-to-nearest-even matches a value-based numpy reference, ties included', () => {
  const { dir, cleanup } = tempDir();
  try {
    const rng = createRng(5);
    const n = 200_000;
    const bits = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const r = rng.u32();
      const k = i % 5;
      // exact ties (low half 0x8000), just below/above, random, and the edges near max and subnormals
      const low = k === 0 ? 0x8000 : k === 1 ? 0x7fff : k === 2 ? 0x8001 : r & 0xffff;
      const e = k === 4 ? [0, 1, 2, 253, 254][r % 5] : (r >>> 16) & 0xff;
      bits[i] = ((r & 0x80000000) | (e << 23) | (rng.u32() & 0x7f0000) | low) >>> 0;
      if (e === 255) bits[i] = (bits[i] & 0xff7fffff) >>> 0; // keep finite
    }
    writeFileSync(join(dir, 'in.bin'), bits);
    // reference: candidates below/above by truncation, distances compared in float64, ties to the even code
    py(`import numpy as np, sys
b = np.fromfile(sys.argv[1], dtype='<u4').astype(np.uint64)
lo = b & 0xFFFF0000
hi = lo + 0x10000
f = lambda u: (u & 0xFFFFFFFF).astype(np.uint32).view(np.float32).astype(np.float64)
x, vl, vh = f(b), f(lo), f(hi)
vh = np.where((hi & 0x7FFFFFFF) == 0x7F800000, np.sign(x) * 2.0**128, vh)  # IEEE: round as if the exponent range were unbounded, then overflow to inf
dl = np.abs(x - vl); dh = np.abs(vh - x)
even_lo = ((lo >> 16) & 1) == 0
pick_hi = (dh < dl) | ((dh == dl) & ~even_lo)
r = np.where(pick_hi, hi, lo) & 0xFFFFFFFF
r.astype(np.uint32).tofile(sys.argv[2])`, [join(dir, 'in.bin'), join(dir, 'out.bin')]);
    const ref = new Uint32Array(readFileSync(join(dir, 'out.bin')).buffer.slice(0));
    const q = u32of(quantize(BF16, new Float32Array(bits.buffer)));
    let ties = 0;
    for (let i = 0; i < n; i++) {
      if ((bits[i] & 0xffff) === 0x8000) ties++;
      assert.equal(q[i], ref[i], `bits ${bits[i].toString(16)}`);
    }
    assert.ok(ties > 30_000);
    // largest finite bf16 + half an ulp is a tie that rounds (to even) into infinity
    assert.equal(quantizeScalar(BF16, 3.3895313892515355e38 + 2 ** 119), Infinity);
  } finally { cleanup(); }
});

test('generic float(exp, man) reserves inf/NaN correctly and reproduces the named formats', () => {
  const f = floatFormat(3, 2); // ieee: bias 3, top exponent reserved -> max (2 - 1/4) * 2^3 = 14
  assert.equal(f.maxFinite, 14);
  assert.equal(f.minSubnormal, 2 ** -4);
  assert.equal(floatFormat(3, 2, { special: 'fn' }).maxFinite, 24); // only S.111.11 is NaN -> 1.5 * 2^4
  const rng = createRng(3);
  const x = new Float32Array(50_000).map(() => rng.normal() * 2 ** (rng.uniform() * 40 - 20));
  assert.deepEqual(quantize(floatFormat(5, 10), x), quantize(FP16, x));
  assert.deepEqual(quantize(floatFormat(4, 3, { special: 'fn' }), x), quantize(E4M3, x));
  assert.equal(quantizeScalar(f, 15), Infinity); // 15 is the tie between 14 and 16 -> even (16) -> overflow
  assert.equal(quantizeScalar(f, 14.9), 14);
  assert.equal(quantizeScalar(f, 1e9, 'zero'), 14); // toward zero never overflows to inf
  assert.throws(() => floatFormat(9, 3), /exponent bits/);
  assert.equal(parseFormat('float(4,3,fn)').kind, 'float');
  assert.equal((parseFormat('fixed<4,12>') as { fl: number }).fl, 12);
  assert.throws(() => parseFormat('fp7'), /unknown number format/);
});

test('fixed point <IL,FL> saturates and rounds exactly as defined; numpy reference on random values', () => {
  const f = fixedFormat(4, 4); // range [-8, 8 - 1/16], step 1/16
  assert.equal(f.maxFinite, 7.9375);
  assert.equal(f.minFinite, -8);
  const cases: [number, number, number][] = [ // x, nearest-even, toward zero
    [100, 7.9375, 7.9375], [-100, -8, -8], [7.96875, 7.9375, 7.9375], [-8.03125, -8, -8], [-8.04, -8, -8],
    [0.03125, 0, 0], [0.09375, 0.125, 0.0625], [-0.09375, -0.125, -0.0625], [0.1, 0.125, 0.0625], [-0.1, -0.125, -0.0625],
    [1e-9, 0, 0], [3.5, 3.5, 3.5],
  ];
  for (const [x, rn, rz] of cases) {
    assert.equal(quantizeScalar(f, x), rn, `nearest ${x}`);
    assert.equal(quantizeScalar(f, x, 'zero'), rz, `zero ${x}`);
  }
  const st = newStats();
  quantize(f, Float32Array.of(100, -100, 7.96875, 1e-9, 0, NaN), { stats: st });
  assert.deepEqual({ ...st }, { overflow: 3, underflow: 1, nan: 1 });
  // random values against numpy's round-half-even + clip (WL=16, FL=8 and FL=14)
  const rng = createRng(9);
  for (const fl of [8, 14]) {
    const g = fixedFormat(16 - fl, fl);
    const x = new Float32Array(5000).map(() => rng.normal() * 2 ** (15 - fl) * (rng.uniform() < 0.1 ? 4 : 1));
    const ref = JSON.parse(py(`import numpy as np, json, sys
x = np.array(json.loads(sys.stdin.read() if False else sys.argv[1]), dtype=np.float64)
print(json.dumps((np.clip(np.round(x * 2.0**${fl}), -2**15, 2**15 - 1) / 2.0**${fl}).tolist()))`, [JSON.stringify(Array.from(x))])) as number[];
    assert.deepEqual(Array.from(quantize(g, x)), ref);
  }
});

test('int8 uses a per-tensor scale max|x|/127 with symmetric codes', () => {
  const st = newStats();
  const q = quantize(int8Format(), Float32Array.of(-2.54, 1.27, 0.01, 0.015, 0), { stats: st });
  assert.ok(Math.abs(st.scale! - 0.02) < 1e-9);
  assert.deepEqual(Array.from(q).map((v) => Math.round(v / st.scale!)), [-127, 64, 0, 1, 0]);
  assert.equal(quantizeScalar(int8Format(0.5), 100), 63.5);
});

test('stochastic rounding is unbiased within 5 standard errors and reproducible under a seed', () => {
  const n = 200_000;
  // value, format, step between the two neighbours
  const cases: [number, typeof FP16 | ReturnType<typeof fixedFormat>, number][] = [
    [1 + 2 ** -12, FP16, 2 ** -10], // 1/4 of an fp16 ulp above 1
    [1 + 0.3 * 2 ** -7, BF16, 2 ** -7],
    [0.3, E4M3, 2 ** -5],
    [2 ** -20, FP16, 2 ** -24], // fp16 subnormal region: 16 quanta exactly -> no randomness at all
    [3e-8, FP16, 2 ** -24], // between 0 and the smallest subnormal
    [0.001, fixedFormat(8, 8), 2 ** -8],
    [-0.7 * 2 ** -9, E4M3, 2 ** -9],
  ];
  for (const [v, fmt, step] of cases) {
    const x = new Float32Array(n).fill(v);
    const xv = x[0]; // the float32 value actually rounded
    const q = quantize(fmt, x, { rounding: 'stochastic', rng: createRng(42) });
    let sum = 0;
    for (let i = 0; i < n; i++) sum += q[i];
    const mean = sum / n;
    const lo = Math.floor(xv / step) * step;
    const p = (xv - lo) / step; // probability of rounding up
    const se = step * Math.sqrt(p * (1 - p) / n);
    assert.ok(Math.abs(mean - xv) <= 5 * se + 1e-12 * Math.abs(xv), `${fmt.name} x=${xv}: mean ${mean} se ${se}`);
    for (let i = 0; i < 100; i++) assert.ok(q[i] === lo || q[i] === lo + step, `${fmt.name} neighbour`);
    const again = quantize(fmt, x, { rounding: 'stochastic', rng: createRng(42) });
    assert.deepEqual(again, q);
    if (p > 0.01) assert.notDeepEqual(quantize(fmt, x, { rounding: 'stochastic', rng: createRng(43) }), q);
  }
});

test('overflow, underflow and NaN are counted; fp32 is the identity', () => {
  const st = newStats();
  quantize(FP16, Float32Array.of(7e4, -1e5, 1e-9, 2 ** -25, 2 ** -24, NaN, 1), { stats: st });
  assert.deepEqual({ ...st }, { overflow: 2, underflow: 2, nan: 1 });
  // overflow is explicit: E4M3 defaults to NaN (no inf; OCP non-saturating, as ml_dtypes), saturation on request
  const st8 = newStats();
  const q = quantize(E4M3, Float32Array.of(1000, -1e6, Infinity, 460), { stats: st8 });
  assert.deepEqual(Array.from(q), [NaN, NaN, NaN, 448]);
  assert.equal(st8.overflow, 2);
  assert.deepEqual(Array.from(quantize(E4M3, Float32Array.of(1000, -1e6, Infinity), { overflow: 'saturate' })), [448, -448, 448]);
  assert.deepEqual(Array.from(quantize(withOverflow(E4M3, 'saturate'), Float32Array.of(-1000))), [-448]);
  assert.equal(parseFormat('e4m3:sat').name, 'e4m3(sat)');
  assert.equal((parseFormat('fp16:sat') as FloatFormat).overflow, 'saturate');
  assert.deepEqual(Array.from(quantize(parseFormat('fp16:sat'), Float32Array.of(1e6, -Infinity))), [65504, -Infinity]);
  assert.deepEqual(Array.from(quantize(E5M2, Float32Array.of(1e6, -1e6))), [Infinity, -Infinity]);
  assert.deepEqual(Array.from(quantize(FP16, Float32Array.of(1e6), { overflow: 'nan' })), [NaN]);
  assert.throws(() => withOverflow(E4M3, 'inf'), /no infinity/);
  assert.throws(() => quantizeScalar(E4M3, 1, 'nearest', undefined, { overflow: 'inf' }), /no infinity/);
  assert.throws(() => parseFormat('fixed<4,4>:sat'), /float formats only/);
  assert.match(overflowNote(E4M3), /NaN/);
  const x = Float32Array.of(1.1, 2 ** -149, -3e38);
  assert.deepEqual(quantize(FP32, x), x);
});

test('quantize in place and into an output agree; length mismatch is refused', () => {
  const rng = createRng(1);
  const x = new Float32Array(1000).map(() => rng.normal());
  const out = quantize(BF16 as FloatFormat, x);
  const inPlace = x.slice();
  quantize(BF16, inPlace, { out: inPlace });
  assert.deepEqual(inPlace, out);
  assert.throws(() => quantize(BF16, x, { out: new Float32Array(3) }), /length/);
  assert.throws(() => quantize(BF16, x, { rounding: 'stochastic' }), /rng/);
});

test('NaN payloads are canonicalized: every format returns the one positive quiet NaN, encode the canonical code', () => {
  const bits = Uint32Array.of(0x7f800001, 0xffc00000, 0x7fbfffff, 0xffffffff, 0x7fc12345);
  const x = new Float32Array(bits.buffer);
  for (const f of [FP32, FP16, BF16, E4M3, E5M2, fixedFormat(8, 8), int8Format(0.5)] as Format[]) {
    const st = newStats();
    const q = u32of(quantize(f, x, { stats: st }));
    assert.deepEqual(Array.from(q), Array.from(bits, () => CANONICAL_NAN_BITS), f.name);
    assert.equal(st.nan, 5);
  }
  assert.deepEqual(Array.from(encode(FP16, x)), [0x7e00, 0x7e00, 0x7e00, 0x7e00, 0x7e00]);
  assert.deepEqual(Array.from(encode(BF16, x)), [0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0, 0x7fc0]);
  assert.deepEqual(Array.from(encode(E4M3, x)), [0x7f, 0x7f, 0x7f, 0x7f, 0x7f]);
  assert.deepEqual(Array.from(u32of(decode(FP16, Uint16Array.of(0xfe01, 0x7c01)))), [CANONICAL_NAN_BITS, CANONICAL_NAN_BITS]);
  assert.ok(Number.isNaN(quantizeScalar(BF16, NaN)));
});

/** An exact (Fraction) python reference for rounding a real number once to float(E,M) or fixed point. */
const PY_EXACT = `import numpy as np, sys, json
from fractions import Fraction as F
def flo(x, E, M, fn, over, mode):
    if x != x: return float('nan')
    bias = 2**(E-1) - 1; emin = 1 - bias
    mx = (2 - F(2, 2**M)) * F(2)**(2**E - 1 - bias) if fn else (2 - F(1, 2**M)) * F(2)**(2**E - 2 - bias)
    if x == 0: return 0.0
    s = -1 if x < 0 else 1; a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if F(2)**e > a: e -= 1
    e = max(e, emin); qu = F(2)**(e - M); q = a / qu; k = q.numerator // q.denominator; fr = q - k
    if mode == 'nearest' and (fr > F(1, 2) or (fr == F(1, 2) and k % 2 == 1)): k += 1
    r = k * qu
    if r > mx:
        if mode == 'zero' or over == 'saturate': return s * float(mx)
        return s * float('inf') if over == 'inf' else float('nan')
    return s * float(r)
def fix(x, fl, mode):
    y = x * 2**fl; k = y.numerator // y.denominator; fr = y - k
    if mode == 'nearest' and (fr > F(1, 2) or (fr == F(1, 2) and k % 2 == 1)): k += 1
    if mode == 'zero' and fr != 0 and y < 0: k += 1
    return float(min(max(k, -2**15), 2**15 - 1) / F(2**fl))
a = np.fromfile(sys.argv[1], dtype='<f8'); b = np.fromfile(sys.argv[2], dtype='<f8')
spec = json.loads(sys.argv[3]); out = {}
for name, E, M, fn, over, fl, mode in spec:
    xs = [F(float(u)) + F(float(v)) for u, v in zip(a, b)]
    out[name + '/' + mode] = [flo(x, E, M, fn, over, mode) if fl is None else fix(x, fl, mode) for x in xs]
print(json.dumps(out).replace('NaN', '"nan"').replace('-Infinity', '"-inf"').replace('Infinity', '"inf"'))`;

/** Doubles (and float32 pairs) that sit on or a hair off the rounding boundaries of fp16 / bf16 / e4m3 / e5m2 / fixed. */
function boundaryDoubles(n: number, seed: number, man: number, emin: number, emax: number): number[] {
  const rng = createRng(seed);
  const v: number[] = [];
  for (let i = 0; i < n; i++) {
    const e = emin - man - 2 + Math.floor(rng.uniform() * (emax - emin + man + 4));
    const k = 2 ** man + Math.floor(rng.uniform() * 2 ** man);
    const tie = (k + 0.5) * 2 ** (e - man); // a midpoint between two neighbours (or beyond the range)
    const off = [0, 2 ** -30, -(2 ** -30), 2 ** -45, -(2 ** -45), 2 ** -52, rng.uniform() - 0.5][i % 7] * 2 ** (e - man);
    v.push((rng.uniform() < 0.5 ? -1 : 1) * (tie + off));
  }
  return v;
}

test('doubles are rounded once: quantizeScalar/quantizeF64 match numpy (fp16, float32) and an exact Fraction reference (bf16, fp8, fixed)', () => {
  // the two cases from the review
  assert.equal(quantizeScalar(FP16, 1 + 2 ** -11 + 2 ** -40), 1.0009765625);
  assert.equal(Number(py('import numpy as np; print(float(np.float16(1 + 2**-11 + 2**-40)))')), 1.0009765625);
  assert.equal(quantizeScalar(BF16, 1 + 2 ** -8 + 2 ** -30), 1.0078125);
  assert.equal(quantizeScalar(BF16, 1 + 2 ** -8), 1); // the exact tie still goes to even
  const { dir, cleanup } = tempDir();
  try {
    const x = Float64Array.from([...boundaryDoubles(6000, 1, 10, -14, 16), ...boundaryDoubles(2000, 2, 23, -126, 128), 1e300, -1e-300, 0, -0, 65520, 65519.99, 2 ** -25, 2 ** -25 + 2 ** -60]);
    writeFileSync(join(dir, 'x.bin'), x);
    writeFileSync(join(dir, 'z.bin'), new Float64Array(x.length));
    py(`import numpy as np, sys
x = np.fromfile(sys.argv[1], dtype='<f8')
with np.errstate(all='ignore'):
    x.astype(np.float16).view('<u2').tofile(sys.argv[2]); x.astype(np.float32).view('<u4').tofile(sys.argv[3])`, [join(dir, 'x.bin'), join(dir, 'h.bin'), join(dir, 'f.bin')]);
    const h = decode(FP16, new Uint16Array(readFileSync(join(dir, 'h.bin')).buffer.slice(0)));
    const f = new Float32Array(readFileSync(join(dir, 'f.bin')).buffer.slice(0));
    const ours16 = quantizeF64(FP16, x), ours32 = quantizeF64(FP32, x);
    let viaF32Differs = 0;
    for (let i = 0; i < x.length; i++) {
      assert.ok(Object.is(ours16[i], h[i]), `fp16 ${x[i]}: ours ${ours16[i]} numpy ${h[i]}`);
      assert.ok(Object.is(ours32[i], f[i]), `fp32 ${x[i]}: ours ${ours32[i]} numpy ${f[i]}`);
      if (!Object.is(quantize(FP16, Float32Array.of(x[i]))[0], h[i])) viaF32Differs++;
    }
    assert.ok(viaF32Differs > 100, `the sample must contain double-rounding cases (${viaF32Differs})`);
    // bf16, e4m3 (NaN and saturating), e5m2, fixed point: exact rational reference, nearest and toward zero
    const y = Float64Array.from([...boundaryDoubles(600, 3, 7, -126, 128), ...boundaryDoubles(600, 4, 3, -6, 9), ...boundaryDoubles(600, 5, 2, -14, 17), ...boundaryDoubles(600, 6, 8, -8, 8)]);
    writeFileSync(join(dir, 'y.bin'), y);
    writeFileSync(join(dir, 'yz.bin'), new Float64Array(y.length));
    const cases: [string, Format, number, number, boolean, string, number | null][] = [
      ['bf16', BF16, 8, 7, false, 'inf', null], ['e4m3', E4M3, 4, 3, true, 'nan', null], ['e4m3sat', withOverflow(E4M3, 'saturate'), 4, 3, true, 'saturate', null],
      ['e5m2', E5M2, 5, 2, false, 'inf', null], ['fx8', fixedFormat(8, 8), 0, 0, false, '', 8],
    ];
    const spec = cases.flatMap(([name, , E, M, fn, over, fl]) => ['nearest', 'zero'].map((mode) => [name, E, M, fn, over, fl, mode]));
    const ref = JSON.parse(py(PY_EXACT, [join(dir, 'y.bin'), join(dir, 'yz.bin'), JSON.stringify(spec)])) as Record<string, (number | string)[]>;
    const val = (v: number | string) => (v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : (v as number));
    for (const [name, fmt] of cases) {
      for (const mode of ['nearest', 'zero'] as const) {
        const want = ref[`${name}/${mode}`].map(val);
        const got = quantizeF64(fmt, y, { rounding: mode });
        for (let i = 0; i < y.length; i++) assert.ok(Object.is(got[i], want[i]) || (got[i] === 0 && want[i] === 0 && fmt.kind === 'fixed'), `${name} ${mode} ${y[i]}: ours ${got[i]} exact ${want[i]}`);
      }
    }
  } finally { cleanup(); }
});

test('quantizeSum rounds the exact sum of two float32 values once (TwoSum), as the Fraction reference', () => {
  const { dir, cleanup } = tempDir();
  try {
    const rng = createRng(8);
    const n = 3000;
    const a = new Float32Array(n), b = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      // a weight on the format's grid plus half a step (a tie), and an update that breaks the tie by far less than a
      // float32 ulp of the sum (so float32 or double addition followed by rounding lands on the tie)
      const e = Math.floor(rng.uniform() * 12) - 6;
      const w = (1 + Math.floor(rng.uniform() * 128) / 128) * 2 ** e;
      a[i] = (rng.uniform() < 0.5 ? -1 : 1) * w;
      const half = 2 ** (e - 8) * (rng.uniform() < 0.5 ? 1 : 0.5);
      b[i] = Math.sign(a[i]) * half + [0, 2 ** -50, -(2 ** -50), 2 ** -30 * rng.normal(), rng.normal() * half][i % 5] * 2 ** e;
    }
    writeFileSync(join(dir, 'a.bin'), Float64Array.from(a));
    writeFileSync(join(dir, 'b.bin'), Float64Array.from(b));
    const cases: [string, Format, number, number, boolean, string, number | null][] = [
      ['bf16', BF16, 8, 7, false, 'inf', null], ['fp16', FP16, 5, 10, false, 'inf', null], ['e4m3', E4M3, 4, 3, true, 'nan', null], ['fx', fixedFormat(8, 8), 0, 0, false, '', 8],
    ];
    const spec = cases.flatMap(([name, , E, M, fn, over, fl]) => ['nearest', 'zero'].map((mode) => [name, E, M, fn, over, fl, mode]));
    const ref = JSON.parse(py(PY_EXACT, [join(dir, 'a.bin'), join(dir, 'b.bin'), JSON.stringify(spec)])) as Record<string, (number | string)[]>;
    let doubleRounded = 0;
    for (const [name, fmt] of cases) {
      for (const mode of ['nearest', 'zero'] as const) {
        const want = ref[`${name}/${mode}`].map((v) => (v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : (v as number)));
        const got = quantizeSum(fmt, a, b, { rounding: mode });
        const naive = quantize(fmt, Float32Array.from(a, (v, i) => v + b[i]), { rounding: mode });
        for (let i = 0; i < n; i++) {
          assert.ok(Object.is(got[i], want[i]) || (got[i] === 0 && want[i] === 0), `${name} ${mode}: ${a[i]} + ${b[i]}: ours ${got[i]} exact ${want[i]}`);
          if (!Object.is(naive[i], want[i])) doubleRounded++;
        }
      }
    }
    assert.ok(doubleRounded > 200, `float32 sum then rounding differs in ${doubleRounded} cases (the test must exercise them)`);
    // in place, and stochastic rounding of a sum stays unbiased
    const w = Float32Array.of(1, 1);
    quantizeSum(BF16, w, Float32Array.of(2 ** -8 + 2 ** -30, -(2 ** -9) - 2 ** -30), { out: w });
    assert.deepEqual(Array.from(w), [1.0078125, 1 - 2 ** -8]);
    const m = 100_000;
    const ones = new Float32Array(m).fill(1), d = new Float32Array(m).fill(2 ** -10 + 2 ** -40);
    const q = quantizeSum(BF16, ones, d, { rounding: 'stochastic', rng: createRng(4) });
    let sum = 0;
    for (let i = 0; i < m; i++) sum += q[i] - 1;
    const p = (2 ** -10 + 2 ** -40) / 2 ** -7;
    assert.ok(Math.abs(sum / m - 2 ** -10) < 5 * 2 ** -7 * Math.sqrt(p * (1 - p) / m), `mean ${sum / m}`);
  } finally { cleanup(); }
});
