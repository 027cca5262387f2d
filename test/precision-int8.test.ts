// The lab's int8 fake quantization (lab/gemm.ts) against torch.fake_quantize_per_tensor_affine /
// fake_quantize_per_channel_affine (values bit for bit and the straight-through mask), MinMaxObserver's parameters, and
// a numpy reference of the same rule; the MX GEMM's gradients against the formula they implement.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LAB, py, runCli, tempDir } from '../dev/helpers.ts';
import { int8AnswerBullets } from '../lab/int8.ts';
import { activationParams, fakeQuant, mxGemm, weightParams, type QParams } from '../lab/gemm.ts';
import { initTf, tf } from '../lab/tf.ts';
import { createRng } from '../src/precision/rng.ts';
import { MXFP8_E4M3, MXFP8_E5M2, mxQuantize } from '../src/precision/mx.ts';

const TORCH_PY = '/usr/bin/python3';
const hasTorch = existsSync(TORCH_PY) && spawnSync(TORCH_PY, ['-c', 'import torch'], { encoding: 'utf8' }).status === 0;

/** A [K, N] kernel-like array with a wide spread, exact ties on the grid of its own scale, zeros and out-of-range values. */
function inputs(): { w: Float32Array; K: number; N: number; a: Float32Array } {
  const rng = createRng(5);
  const K = 37, N = 6;
  const w = Float32Array.from({ length: K * N }, (_, i) => (rng.uniform() - 0.5) * 2 ** ((i % N) - 3));
  w[0] = 0; w[1] = -0;
  const a = Float32Array.from({ length: 500 }, () => (rng.uniform() - 0.3) * 7);
  // exact half-steps of the activation scale used below, and values beyond the range (clamped: mask 0)
  const p = activationParams(-2, 5);
  for (let i = 0; i < 40; i++) a[i] = Math.fround((i - 20 + 0.5) * p.scale);
  a[40] = 100; a[41] = -100;
  return { w, K, N, a };
}

test('int8 fake quantization equals torch.fake_quantize_per_tensor_affine / per_channel_affine bit for bit (values and STE mask), and MinMaxObserver\'s parameters', { skip: hasTorch ? false : `no torch at ${TORCH_PY}: the numpy half below still runs` }, () => {
  const { w, K, N, a } = inputs();
  const pc = weightParams(w, [K, N], true);
  const pt = weightParams(w, [K, N], false);
  const act = activationParams(-2, 5);
  const { dir, cleanup } = tempDir('slimfit-int8-');
  try {
    writeFileSync(join(dir, 'w.bin'), w); writeFileSync(join(dir, 'a.bin'), a);
    writeFileSync(join(dir, 'p.json'), JSON.stringify({ K, N, pc: pc.map((p) => p.scale), pt: pt[0].scale, act }));
    const r = spawnSync(TORCH_PY, ['-c', String.raw`
import json, sys, numpy as np, torch
d = sys.argv[1]; P = json.load(open(d + '/p.json'))
w = torch.from_numpy(np.fromfile(d + '/w.bin', dtype='<f4').reshape(P['K'], P['N']).copy()).requires_grad_(True)
a = torch.from_numpy(np.fromfile(d + '/a.bin', dtype='<f4').copy()).requires_grad_(True)
sc = torch.tensor(P['pc'], dtype=torch.float32); zp = torch.zeros(P['N'], dtype=torch.int32)
yc = torch.fake_quantize_per_channel_affine(w, sc, zp, 1, -127, 127); yc.sum().backward(); gw = w.grad.clone(); w.grad = None
yt = torch.fake_quantize_per_tensor_affine(w, float(np.float32(P['pt'])), 0, -127, 127)
ya = torch.fake_quantize_per_tensor_affine(a, P['act']['scale'], P['act']['zeroPoint'], -128, 127); ya.sum().backward()
ob = torch.quantization.MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
ob(torch.tensor([-2.0, 5.0])); s, z = ob.calculate_qparams()
f = lambda t: t.detach().numpy().astype('<f4').reshape(-1).view('<u4').tolist()
print(json.dumps({'pc': f(yc), 'pcMask': gw.reshape(-1).tolist(), 'pt': f(yt), 'act': f(ya), 'actMask': a.grad.tolist(), 'obScale': float(s), 'obZp': int(z)}))
`, dir], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const t = JSON.parse(r.stdout) as Record<string, number[]> & { obScale: number; obZp: number };
    const bits = (x: Float32Array) => [...new Uint32Array(x.buffer)];
    const c = fakeQuant(w, pc, (i) => i % N);
    assert.deepEqual(bits(c.out), t.pc, 'per-channel values');
    assert.deepEqual([...c.inside], t.pcMask, 'per-channel straight-through mask');
    assert.deepEqual(bits(fakeQuant(w, pt, () => 0).out), t.pt, 'per-tensor values');
    const q = fakeQuant(a, [act], () => 0);
    assert.deepEqual(bits(q.out), t.act, 'affine activation values (ties to even, clamped)');
    assert.deepEqual([...q.inside], t.actMask, 'activation mask (0 where clamped)');
    assert.equal(q.inside[40], 0); assert.equal(q.inside[41], 0);
    assert.equal(act.scale, t.obScale, 'MinMaxObserver scale'); assert.equal(act.zeroPoint, t.obZp, 'MinMaxObserver zero point');
  } finally { cleanup(); }
});

test('int8 fake quantization equals a numpy reference (float32 reciprocal, np.rint, clip), per tensor and per channel', () => {
  const { w, K, N, a } = inputs();
  const pc = weightParams(w, [K, N], true);
  const act = activationParams(-2, 5);
  const { dir, cleanup } = tempDir('slimfit-int8-');
  try {
    writeFileSync(join(dir, 'w.bin'), w); writeFileSync(join(dir, 'a.bin'), a);
    const params = (ps: QParams[]) => ps.map((p) => [p.scale, p.zeroPoint, p.qmin, p.qmax]);
    writeFileSync(join(dir, 'p.json'), JSON.stringify({ K, N, pc: params(pc), act: params([act])[0] }));
    const out = JSON.parse(py(String.raw`
import json, sys, numpy as np
d = sys.argv[1]; P = json.load(open(d + '/p.json'))
def fq(x, s, z, lo, hi):
    s = np.float32(s); inv = np.float32(1) / s
    r = np.rint((x * inv).astype(np.float32)) + z
    return ((np.clip(r, lo, hi) - z).astype(np.float32) * s).astype(np.float32)
w = np.fromfile(d + '/w.bin', dtype='<f4').reshape(P['K'], P['N'])
a = np.fromfile(d + '/a.bin', dtype='<f4')
yc = np.stack([fq(w[:, j], *P['pc'][j]) for j in range(P['N'])], axis=1)
print(json.dumps({'pc': yc.reshape(-1).view('<u4').tolist(), 'act': fq(a, *P['act']).view('<u4').tolist()}))
`, [dir])) as { pc: number[]; act: number[] };
    assert.deepEqual([...new Uint32Array(fakeQuant(w, pc, (i) => i % N).out.buffer)], out.pc);
    assert.deepEqual([...new Uint32Array(fakeQuant(a, [act], () => 0).out.buffer)], out.act);
    // symmetric weights: the column maximum maps to ±127 exactly
    const q = fakeQuant(w, pc, (i) => i % N).out;
    for (let j = 0; j < N; j++) {
      let m = 0, mq = 0;
      for (let k = 0; k < K; k++) { m = Math.max(m, Math.abs(w[k * N + j])); mq = Math.max(mq, Math.abs(q[k * N + j])); }
      assert.ok(Math.abs(mq - m) <= m * 1e-6, `column ${j}: ${mq} vs ${m}`);
    }
  } finally { cleanup(); }
});

test('MX GEMM: forward and both backward GEMMs round each operand along that GEMM\'s reduction axis', async () => {
  await initTf();
  const rng = createRng(9);
  const B = 40, K = 70, N = 36;
  const rnd = (n: number) => Float32Array.from({ length: n }, () => (rng.uniform() - 0.5) * 2 ** Math.round(8 * rng.uniform() - 4));
  const xv = rnd(B * K), wv = rnd(K * N), gv = rnd(B * N);
  const x = tf.tensor2d(xv, [B, K]), w = tf.tensor2d(wv, [K, N]), g = tf.tensor2d(gv, [B, N]);
  const gemm = mxGemm(MXFP8_E4M3, MXFP8_E5M2);
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(gemm.matmul(a as tf.Tensor2D, b as tf.Tensor2D, 0, true), g)))([x, w]);
  const q = (f: typeof MXFP8_E4M3, v: Float32Array, shape: number[], axis: number) => tf.tensor2d(mxQuantize(f, v, { shape, axis }), shape as [number, number]);
  const y = gemm.matmul(x, w, 0, true);
  const close = (a: tf.Tensor, b: tf.Tensor, what: string) => {
    const av = a.dataSync(), bv = b.dataSync();
    for (let i = 0; i < av.length; i++) assert.ok(Math.abs(av[i] - bv[i]) <= 1e-4 * (1 + Math.abs(bv[i])), `${what}[${i}]: ${av[i]} vs ${bv[i]}`);
  };
  close(y, tf.matMul(q(MXFP8_E4M3, xv, [B, K], 1), q(MXFP8_E4M3, wv, [K, N], 0)), 'y');
  close(dx, tf.matMul(q(MXFP8_E5M2, gv, [B, N], 1), q(MXFP8_E4M3, wv, [K, N], 1), false, true), 'dx');
  close(dw, tf.matMul(q(MXFP8_E4M3, xv, [B, K], 0), q(MXFP8_E5M2, gv, [B, N], 0), true, false), 'dW');
  // and they differ from the fp32 products (the rounding is really there)
  const exact = tf.matMul(x, w).dataSync();
  assert.ok(y.dataSync().some((v, i) => v !== exact[i]));
  tf.dispose([x, w, g, dx, dw, y]);
});

test('`npm run lab -- int8 --tiny --seeds 2`: PTQ and QAT rows paired with each seed\'s fp32 model, a table and answer bullets', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = await runCli(['int8', '--tiny', '--seeds', '2', '--out', dir], { script: LAB, timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    const row = (key: string) => {
      const m = new RegExp(`^int8\\t${key}\\tn=2\\tacc_mean=([0-9.]+)\\tacc_sd=[0-9.]+\\tdiff_mean=(-?[0-9.]+)`, 'm').exec(r.stdout);
      assert.ok(m, `${key} in ${r.stdout}`);
      return { acc: Number(m[1]), diff: Number(m[2]) };
    };
    const f32 = row('fp32');
    assert.ok(f32.acc > 0.75, `fp32 ${f32.acc}`);
    assert.equal(f32.diff, 0);
    for (const k of ['ptq-tensor', 'ptq-channel', 'qat-tensor', 'qat-channel', 'fp32-ft']) assert.ok(Math.abs(row(k).diff) < 0.03, `${k}: int8 on this MLP stays within 3 points of fp32`);
    const md = readFileSync(join(dir, 'precision.md'), 'utf8');
    assert.match(md, /## int8 — post-training quantization and quantization-aware training/);
    assert.match(md, /\| PTQ, per-channel weights \| W symmetric int8 .* per output channel/);
    assert.match(md, /\| QAT, per-tensor weights \| .* \| [+-]?[0-9.]+ \[[+-]?[0-9.]+, [+-]?[0-9.]+\]: [a-z ]+ \|$/m); // vs the fine-tuned control
    const bullets = int8AnswerBullets(JSON.parse(readFileSync(join(dir, 'precision', 'int8.json'), 'utf8')));
    assert.equal(bullets.length, 6);
    assert.match(bullets[3], /QAT, per-tensor weights: .* Against fp32 fine-tuned the same steps: Δ [+-]?[0-9.]+ \[/);
    assert.match(bullets[1], /PTQ, per-tensor weights: [0-9.]+ ± [0-9.]+ %, Δ [+-]?[0-9.]+ points \[[+-]?[0-9.]+, [+-]?[0-9.]+\] \(paired\)/);
  } finally { cleanup(); }
});
