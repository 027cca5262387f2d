// OCP MX formats (src/precision/mx.ts) bit for bit against an independent numpy implementation of the spec's
// section 6.3 conversion (float64 arithmetic, frexp exponents, np.rint ties-to-even), and the FP6/FP4 element formats.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { py, tempDir } from '../dev/helpers.ts';
import { createRng } from '../src/precision/rng.ts';
import { E2M1, E2M3, E3M2, decode, encode, parseFormat, quantize } from '../src/precision/formats.ts';
import { MXFP4_E2M1, MXFP6_E2M3, MXFP6_E3M2, MXFP8_E4M3, MXFP8_E5M2, MXINT8, mxDecode, mxEncode, mxFormat, mxQuantize, type MxFormat } from '../src/precision/mx.ts';

const FORMATS: MxFormat[] = [MXFP8_E4M3, MXFP8_E5M2, MXFP6_E3M2, MXFP6_E2M3, MXFP4_E2M1, MXINT8];

// numpy reference: argv = folder; reads cases.json and x<i>.bin, prints one JSON line per case with value bits,
// scale codes and element codes.
const REF = String.raw`
import json, sys, numpy as np
d = sys.argv[1]
cases = json.load(open(d + '/cases.json'))
out = []
def flog2(a):
    m, e = np.frexp(a)          # a = m * 2^e, m in [0.5, 1): floor(log2 a) = e - 1 (exact, also for subnormals)
    return (e - 1).astype(np.float64)
for c in cases:
    x = np.fromfile(d + '/x%d.bin' % c['id'], dtype='<f4').reshape(c['shape'])
    f = c['fmt']
    xt = np.moveaxis(x, c['axis'], -1).astype(np.float64)
    L = xt.shape[-1]; nb = -(-L // 32)
    pad = np.zeros(xt.shape[:-1] + (nb * 32 - L,))
    blk = np.concatenate([xt, pad], axis=-1).reshape(xt.shape[:-1] + (nb, 32))
    bad = ~np.isfinite(blk).all(axis=-1)
    a = np.where(np.isfinite(blk), np.abs(blk), 0.0)
    amax = a.max(axis=-1)
    E = np.where(amax > 0, flog2(np.where(amax > 0, amax, 1.0)), -126.0)
    se = np.maximum(E - f['emax'], -127.0)
    scale_codes = np.where(bad, 255, se + 127).astype(np.int64)
    S = np.exp2(se)[..., None]
    y = blk / S
    ay = np.abs(np.where(np.isfinite(y), y, 0.0))
    if f['int8']:
        k = np.minimum(np.rint(ay * 64), 127.0)
        q = np.where(y < 0, -k, k) / 64 * S + 0.0
        codes = (np.where(y < 0, -k, k).astype(np.int64)) & 0xff
    else:
        emin, man, bias, bits = f['emin'], f['man'], f['bias'], f['bits']
        ey = np.where(ay > 0, flog2(np.where(ay > 0, ay, 1.0)), emin)
        qe = np.maximum(ey, emin) - man
        k = np.rint(ay / np.exp2(qe))
        r = np.minimum(k * np.exp2(qe), f['max'])
        q = np.copysign(r, y) * S
        er = np.where(r > 0, flog2(np.where(r > 0, r, 1.0)), emin - 1)
        field = np.where(er < emin, 0, er + bias)
        mant = np.where(er < emin, r / 2.0 ** (emin - man), r / np.exp2(np.maximum(er, emin) - man) - 2 ** man)
        codes = ((np.signbit(y).astype(np.int64) << (bits - 1)) | (field.astype(np.int64) << man) | mant.astype(np.int64))
    q = np.where(bad[..., None], np.nan, q)
    codes = np.where(bad[..., None], 0, codes)
    q = q.reshape(xt.shape[:-1] + (nb * 32,))[..., :L]
    codes = codes.reshape(xt.shape[:-1] + (nb * 32,))[..., :L]
    q = np.moveaxis(q, -1, c['axis']).astype('<f4')
    codes = np.moveaxis(codes, -1, c['axis'])
    out.append({'bits': q.reshape(-1).view('<u4').tolist(), 'scales': np.moveaxis(scale_codes, -1, c['axis']).reshape(-1).tolist(), 'codes': codes.reshape(-1).tolist()})
print(json.dumps(out))
`;

/** Inputs that hit every branch: zeros of both signs, float32 subnormals, saturation, NaN/inf, ties, all-zero blocks. */
function inputs(fmt: MxFormat, seed: number): { name: string; x: Float32Array; shape: number[]; axis: number }[] {
  const rng = createRng(seed);
  const normal = () => { const u = Math.max(rng.uniform(), 1e-12), v = rng.uniform(); return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v); };
  const wide = (n: number, lo = -30, hi = 30) => Float32Array.from({ length: n }, () => normal() * 2 ** Math.round(lo + (hi - lo) * rng.uniform()));
  const out: { name: string; x: Float32Array; shape: number[]; axis: number }[] = [];
  // 2-D [rows, K] blocked along K (axis 1) with a tail block of 6, and the same values blocked along axis 0
  const a = wide(5 * 70);
  out.push({ name: 'random, axis 1, tail 6', x: a, shape: [5, 70], axis: 1 }, { name: 'random, axis 0 (K=5 rows: one short block)', x: a, shape: [5, 70], axis: 0 });
  out.push({ name: 'random 3-D, middle axis', x: wide(3 * 40 * 4, -4, 4), shape: [3, 40, 4], axis: 1 });
  // ties: a block whose max fixes the scale at 2^0 (MXFP4: max 4), elements on half-quanta of every element type
  const q = fmt.element ? 2 ** (fmt.element.emin - fmt.element.man) : 2 ** -6;
  const top = 2 ** fmt.emax;
  const ties = new Float32Array(64);
  ties[0] = top;
  for (let i = 1; i < 32; i++) ties[i] = (i % 2 ? 1 : -1) * (i + 0.5) * q * (fmt.element ? 2 ** Math.floor(i / 8) : 1);
  for (let i = 32; i < 64; i++) ties[i] = (i % 2 ? -1 : 1) * (top + (i - 32 + 0.5) * top / 2 ** (fmt.element ? fmt.element.man + 1 : 7));
  out.push({ name: 'ties and near-max', x: ties, shape: [64], axis: 0 });
  // saturation: block max with a mantissa above the max normal's (1.99 * 2^k), every element near it
  out.push({ name: 'saturation', x: Float32Array.from({ length: 32 }, (_, i) => (i % 2 ? -1 : 1) * (1.99 - i * 0.01) * 2 ** 5), shape: [32], axis: 0 });
  // specials: +0/-0, an all-zero block, float32 subnormals (alone and beside the smallest normal), NaN and inf blocks,
  // the largest float32, and a block far below 2^-127 (the clamped scale)
  const sp = new Float32Array(32 * 8);
  sp[1] = -0; sp[2] = 1.5; sp[3] = -0.0001;
  // block 1: all zeros (with a -0)
  sp[33] = -0;
  // block 2: only subnormals
  for (let i = 64; i < 96; i++) sp[i] = (i % 3 ? 1 : -1) * (i - 63) * 2 ** -149 * 7919;
  // block 3: the smallest normal beside subnormals (the scale clamps at 2^-127)
  sp[96] = 2 ** -126; for (let i = 97; i < 128; i++) sp[i] = (i % 2 ? -1 : 1) * (i - 96) * 2 ** -140;
  // block 4: NaN inside; block 5: -inf inside; block 6: float32 max; block 7: 1e-30-sized values
  sp[128] = 1; sp[129] = NaN; sp[160] = 2; sp[170] = -Infinity;
  sp[192] = 3.4028234663852886e38; sp[193] = -1e38; sp[194] = 1;
  for (let i = 224; i < 256; i++) sp[i] = (i % 2 ? 1 : -1) * (i - 223) * 1e-38;
  out.push({ name: 'zeros, subnormals, NaN, inf, extremes', x: sp, shape: [256], axis: 0 });
  return out;
}

test('MX formats (MXFP8 E4M3/E5M2, MXFP6 E3M2/E2M3, MXFP4, MXINT8): values, E8M0 scales and element codes equal a numpy reference bit for bit', () => {
  const { dir, cleanup } = tempDir('slimfit-mx-');
  try {
    const cases: { id: number; shape: number[]; axis: number; fmt: Record<string, number | boolean> }[] = [];
    const mine: { fmt: MxFormat; name: string; q: Float32Array; codes: ReturnType<typeof mxEncode>; x: Float32Array }[] = [];
    FORMATS.forEach((fmt, fi) => {
      for (const c of inputs(fmt, 11 + fi)) {
        const id = cases.length;
        writeFileSync(join(dir, `x${id}.bin`), c.x);
        const el = fmt.element;
        cases.push({ id, shape: c.shape, axis: c.axis, fmt: { emax: fmt.emax, int8: !el, emin: el?.emin ?? 0, man: el?.man ?? 0, bias: el?.bias ?? 0, bits: el?.bits ?? 8, max: fmt.maxNormal } });
        const layout = { shape: c.shape, axis: c.axis };
        mine.push({ fmt, name: c.name, q: mxQuantize(fmt, c.x, layout), codes: mxEncode(fmt, c.x, layout), x: c.x });
      }
    });
    writeFileSync(join(dir, 'cases.json'), JSON.stringify(cases));
    const ref = JSON.parse(py(REF, [dir])) as { bits: number[]; scales: number[]; codes: number[] }[];
    let checked = 0;
    mine.forEach((m, k) => {
      const bits = new Uint32Array(m.q.buffer);
      const r = ref[k];
      for (let i = 0; i < bits.length; i++) {
        assert.equal(bits[i], r.bits[i] >>> 0, `${m.fmt.name} ${m.name}: element ${i} (x=${m.x[i]}): ${m.q[i]} vs numpy bits ${r.bits[i].toString(16)}`);
      }
      assert.deepEqual([...m.codes.scales], r.scales, `${m.fmt.name} ${m.name}: E8M0 scales`);
      assert.deepEqual([...m.codes.elements], r.codes, `${m.fmt.name} ${m.name}: element codes`);
      const back = new Uint32Array(mxDecode(m.fmt, m.codes).buffer);
      assert.deepEqual([...back], [...bits], `${m.fmt.name} ${m.name}: decode(encode(x)) = quantize(x)`);
      checked += bits.length;
    });
    assert.ok(checked > 6 * 1000, `${checked} elements checked`);
  } finally { cleanup(); }
});

test('MX: spec facts by hand (E2M1 values, saturation of a block max, NaN/inf blocks, scale clamp, in-place, bad layouts)', () => {
  // E2M1 has exactly 0, 0.5, 1, 1.5, 2, 3, 4, 6 (and their negatives); FP6 maxima
  const codes = Uint8Array.from({ length: 16 }, (_, i) => i);
  assert.deepEqual([...decode(E2M1, codes)], [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6]);
  assert.equal(E3M2.maxFinite, 28); assert.equal(E2M3.maxFinite, 7.5); assert.equal(E2M1.maxFinite, 6);
  assert.deepEqual([...quantize(E2M1, Float32Array.of(100, -Infinity, 5, 0.25))], [6, -6, 4, 0]);
  assert.deepEqual([...encode(E2M1, Float32Array.of(6, -0.5))], [0b0111, 0b1001]);
  assert.throws(() => encode(E2M1, Float32Array.of(NaN)), /no NaN code/);
  assert.equal(parseFormat('fp4').name, 'e2m1'); assert.equal((parseFormat('float(3,2,none)') as typeof E3M2).maxFinite, 28);
  assert.throws(() => parseFormat('e2m1:nan'), /only be 'saturate'/);
  // block max 7 in MXFP4: scale 2^(2-2) = 1, 7 is clamped to 6 (the spec's clamp), 5 ties to 4
  const layout = { shape: [4], axis: 0 };
  assert.deepEqual([...mxQuantize(MXFP4_E2M1, Float32Array.of(7, 5, -0.3, 0.1), layout)], [6, 4, -0.5, 0]);
  assert.deepEqual([...mxEncode(MXFP4_E2M1, Float32Array.of(7, 5, -0.3, 0.1), layout).scales], [127]);
  assert.deepEqual([...mxQuantize(MXFP8_E4M3, Float32Array.of(1, NaN, 2, 3), layout)].map(Number.isNaN), [true, true, true, true]);
  assert.deepEqual([...mxEncode(MXINT8, Float32Array.of(1, Infinity, 2, 3), layout).scales], [255]);
  // a tiny block: the shared exponent clamps at -127 (the smallest E8M0 value)
  assert.deepEqual([...mxEncode(MXFP8_E4M3, Float32Array.of(2 ** -130, 0, 0, 0), layout).scales], [0]);
  assert.deepEqual([...mxQuantize(MXINT8, Float32Array.of(1.5, -1, -0, 0.0234375, 0.0078125), { shape: [5], axis: 0 })], [1.5, -1, 0, 0.03125, 0]); // 1.5 and 0.5 quanta: ties to even
  const x = Float32Array.of(3, 1, 0.1, 2);
  const copy = mxQuantize(MXFP6_E3M2, x, layout);
  assert.deepEqual([...mxQuantize(MXFP6_E3M2, x, layout, { out: x })], [...copy]);
  assert.equal(mxFormat('MXFP6(E2M3)'), MXFP6_E2M3);
  assert.throws(() => mxFormat('mxfp5'), /unknown MX format/);
  assert.throws(() => mxQuantize(MXFP8_E5M2, new Float32Array(6), { shape: [2, 2], axis: 1 }), /has 4 elements but the array has 6/);
  assert.throws(() => mxQuantize(MXFP8_E5M2, new Float32Array(4), { shape: [2, 2], axis: 2 }), /axis 2 is outside/);
});
