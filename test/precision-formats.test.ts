// Number formats checked bit-for-bit against numpy and against the OCP FP8 spec's value table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { py, tempDir } from '../dev/helpers.ts';
import {
  BF16, E4M3, E5M2, FP16, FP32, decode, encode, fixedFormat, floatFormat, int8Format, newStats, parseFormat, quantize,
  quantizeScalar, type FloatFormat,
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
    assert.deepEqual(Array.from(encode(FP16, d)), Array.from(codes));
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
    // identity on every code, NaN codes included (decode keeps NaN sign and payload)
    assert.deepEqual(Array.from(encode(fmt, d)), Array.from(codes));
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
    // the next power of two beyond max is where IEEE-style rounding would land (inf for e5m2, saturate for e4m3)
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
      if (dBeyond < bestD || (dBeyond === bestD && (best & 1) === 1)) want = name === 'e5m2' ? Infinity : max;
      if (name === 'e4m3' && a > max) want = max; // OCP saturation mode
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
  const st8 = newStats();
  const q = quantize(E4M3, Float32Array.of(1000, -1e6, Infinity), { stats: st8 });
  assert.deepEqual(Array.from(q), [448, -448, 448]);
  assert.equal(st8.overflow, 2);
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
