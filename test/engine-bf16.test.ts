// The opt-in bf16 matmul precision (native/gemm_bf16.cc, the fused Dense step's bf16 mode): the GEMM must equal an
// exact reference (numpy: operands rounded to bfloat16 by bit manipulation, products summed in float64) within float32
// accumulation error, for every kernel this CPU has; the fused step's gradients must match a float64 reference with
// bf16-rounded GEMM operands (and not the float32 step's); a seeded MNIST run must reach float32's accuracy; models and
// CPUs that cannot take the mode are refused with a SlimfitError.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tfl from '@tensorflow/tfjs-layers';
import { bf16Kernel, denseTrainStep, installEngine, loadAddon, uninstallEngine } from '../src/engine/index.ts';
import { SlimfitError } from '../src/core/errors.ts';
import { mnistAccuracy } from '../dev/mnist-check.ts';
import { MNIST_DIR, needsAddon, py, runCli, lcgFloats } from '../dev/helpers.ts';
import { checkMatmulPrecision, compileDefault, trainEpochs } from '../src/train/loop.ts';
import { buildModel } from '../src/train/models.ts';
import { memLoader, mnistSlice } from './train-helpers.ts';

const { addon } = loadAddon();
const NO_ADDON = needsAddon('slimfit_engine');
const info = addon ? addon.bf16Info() : null;
const NO_BF16 = NO_ADDON || (info!.kernel === 'none' ? 'this CPU has neither AVX512_BF16 nor AMX-BF16 (the bf16 mode is refused here; see the last test)' : false);
const KERNELS = info ? (['amx', 'avx512bf16'] as const).filter((k) => (k === 'amx' ? info.amx : info.avx512bf16)) : [];

const rand = lcgFloats(4242);

/** bf16 rounding (nearest even) of a float32, widened back: the mode's operand rounding, written independently of the C++. */
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function bf(x: number): number {
  f32[0] = x;
  const u = u32[0];
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}

// (a small file's Buffer is a view into a shared pool: copy out its own bytes)
function f64File(path: string): Float64Array {
  const b = readFileSync(path);
  return new Float64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}

test('bf16 GEMM = numpy reference (bf16-rounded operands, float64 sums) within float32 accumulation error, every kernel, odd shapes and transposes', { skip: NO_BF16 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'slimfit-bf16-'));
  try {
    // odd sizes (edges of 12/32-row blocks, 32-column panels, odd K), K = 1, a parallel-sized case and an mlp shape
    const shapes: [number, number, number, number, number][] = [
      [37, 45, 71, 0, 0], [33, 70, 19, 1, 0], [100, 33, 129, 0, 1], [5, 7, 3, 1, 1], [1, 1, 1, 0, 0], [13, 65, 1, 0, 0],
      [130, 97, 301, 0, 0], [128, 512, 784, 0, 0], [200, 64, 128, 1, 0],
    ];
    const jobs: { name: string; M: number; N: number; K: number; ta: number; tb: number; C: Map<string, Float32Array> }[] = [];
    for (const [M, N, K, ta, tb] of shapes) {
      const A = rand(M * K, 2), B = rand(K * N, 2);
      // exact ties of bf16 rounding: 1 + 2^-8 rounds down to 1 (even), 1 + 3·2^-8 up to 1 + 2^-6; round-half-away would differ
      A[0] = 1 + 2 ** -8; if (A.length > 1) A[1] = -(1 + 3 * 2 ** -8); B[0] = 1 + 3 * 2 ** -8;
      const name = `g${jobs.length}`;
      writeFileSync(join(dir, `${name}.a`), A); writeFileSync(join(dir, `${name}.b`), B);
      const C = new Map<string, Float32Array>();
      for (const k of KERNELS) {
        const c = new Float32Array(M * N).fill(NaN);
        assert.equal(addon!.gemmBf16(k, ta, tb, M, N, K, A, B, c), true);
        C.set(k, c);
      }
      jobs.push({ name, M, N, K, ta, tb, C });
    }
    // reference: C64 = sum of products of bf16-rounded operands in float64, and S = sum of |products| (error scale)
    py(`
import numpy as np, json, sys
d = sys.argv[1]
for j in json.loads(sys.argv[2]):
    M, N, K, ta, tb = j['M'], j['N'], j['K'], j['ta'], j['tb']
    def rd(f, shape):
        u = np.fromfile(f, dtype=np.float32).view(np.uint32).astype(np.uint64)
        r = ((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16
        return r.astype(np.uint32).view(np.float32).astype(np.float64).reshape(shape)
    A = rd(d + '/' + j['name'] + '.a', (K, M) if ta else (M, K)); A = A.T if ta else A
    B = rd(d + '/' + j['name'] + '.b', (N, K) if tb else (K, N)); B = B.T if tb else B
    (A @ B).tofile(d + '/' + j['name'] + '.ref')
    (np.abs(A) @ np.abs(B)).tofile(d + '/' + j['name'] + '.abs')
`, [dir, JSON.stringify(jobs.map(({ name, M, N, K, ta, tb }) => ({ name, M, N, K, ta, tb })))]);
    for (const j of jobs) {
      const ref = f64File(join(dir, `${j.name}.ref`)), abs = f64File(join(dir, `${j.name}.abs`));
      for (const [k, c] of j.C) {
        let worst = 0;
        for (let i = 0; i < ref.length; i++) {
          // float32 accumulation over K terms (plus the final rounding): |error| <= (K + 1)·2^-24·sum|a·b|
          const tol = (j.K + 1) * 2 ** -24 * abs[i] + 1e-30;
          const e = Math.abs(c[i] - ref[i]) / tol;
          assert.ok(e <= 1, `${k} ${j.M}x${j.N}x${j.K} ta${j.ta} tb${j.tb} [${i}]: ${c[i]} vs ${ref[i]} (tolerance ${tol})`);
          worst = Math.max(worst, e);
        }
        assert.ok(worst < 1, `${k}: all within the bound`);
      }
      if (j.C.size === 2) {
        // both kernels compute the same rounded products; only their float32 summation orders differ
        const [a, b] = [...j.C.values()];
        for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= 2 * (j.K + 1) * 2 ** -24 * abs[i] + 1e-30);
      }
    }
    // the ties: 1 x (1 + 3·2^-8) must be 1 x (1 + 2^-6) = 1.015625, i.e. the first operand rounded down to even
    const c = new Float32Array(1);
    for (const k of KERNELS) {
      addon!.gemmBf16(k, 0, 0, 1, 1, 1, new Float32Array([1 + 2 ** -8]), new Float32Array([1 + 3 * 2 ** -8]), c);
      assert.equal(c[0], 1.015625, `${k}: round to nearest even`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bf16 GEMM is not a float32 GEMM in disguise: it differs from float32 products by bf16 rounding, and repeats bit for bit', { skip: NO_BF16 }, () => {
  const M = 64, N = 96, K = 200;
  const A = rand(M * K), B = rand(K * N);
  const c1 = new Float32Array(M * N), c2 = new Float32Array(M * N);
  addon!.gemmBf16('', 0, 0, M, N, K, A, B, c1);
  addon!.gemmBf16('', 0, 0, M, N, K, A, B, c2);
  assert.deepEqual(c1, c2, 'deterministic');
  let diff = 0, norm = 0;
  for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += A[i * K + k] * B[k * N + j];
    diff += (c1[i * N + j] - s) ** 2; norm += s * s;
  }
  const rel = Math.sqrt(diff / norm);
  assert.ok(rel > 1e-4 && rel < 1e-2, `relative difference to float32 products ${rel} (bf16 has 8 significant bits)`);
});

interface Layer { w: Float32Array; b: Float32Array; inD: number; out: number; relu: boolean }

/** One step's gradients in float64 with every GEMM operand rounded to bf16 (the mode's math), in the step's buffer layout. */
function referenceGrads(layers: Layer[], x: Float32Array, y: Float32Array, B: number): { grads: Float64Array; loss: number } {
  const acts: Float64Array[] = [Float64Array.from(x)];
  for (const l of layers) {
    const a = acts[acts.length - 1], z = new Float64Array(B * l.out);
    for (let r = 0; r < B; r++) for (let j = 0; j < l.out; j++) {
      let s = 0;
      for (let k = 0; k < l.inD; k++) s += bf(a[r * l.inD + k]) * bf(l.w[k * l.out + j]);
      s += l.b[j];
      z[r * l.out + j] = l.relu ? Math.max(0, s) : s;
    }
    acts.push(z);
  }
  const C = layers[layers.length - 1].out, p = acts[acts.length - 1];
  let loss = 0;
  let dz = new Float64Array(B * C);
  for (let r = 0; r < B; r++) {
    let mx = -Infinity, sum = 0;
    for (let c = 0; c < C; c++) mx = Math.max(mx, p[r * C + c]);
    for (let c = 0; c < C; c++) sum += Math.exp(p[r * C + c] - mx);
    for (let c = 0; c < C; c++) {
      const q = Math.exp(p[r * C + c] - mx) / sum;
      loss -= y[r * C + c] * Math.log(q);
      dz[r * C + c] = (q - y[r * C + c]) / B;
    }
  }
  const parts: Float64Array[] = [];
  for (let li = layers.length - 1; li >= 0; li--) {
    const l = layers[li], a = acts[li];
    const dw = new Float64Array(l.inD * l.out), db = new Float64Array(l.out);
    for (let k = 0; k < l.inD; k++) for (let j = 0; j < l.out; j++) {
      let s = 0;
      for (let r = 0; r < B; r++) s += bf(a[r * l.inD + k]) * bf(dz[r * l.out + j]);
      dw[k * l.out + j] = s;
    }
    for (let r = 0; r < B; r++) for (let j = 0; j < l.out; j++) db[j] += dz[r * l.out + j];
    parts.unshift(dw, db);
    if (li > 0) {
      const da = new Float64Array(B * l.inD);
      for (let r = 0; r < B; r++) for (let k = 0; k < l.inD; k++) {
        let s = 0;
        for (let j = 0; j < l.out; j++) s += bf(dz[r * l.out + j]) * bf(l.w[k * l.out + j]);
        da[r * l.inD + k] = a[r * l.inD + k] > 0 ? s : 0;
      }
      dz = da;
    }
  }
  const grads = new Float64Array(parts.reduce((n, q) => n + q.length, 0));
  let o = 0;
  for (const q of parts) { grads.set(q, o); o += q.length; }
  return { grads, loss: loss / B };
}

async function engineOn(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
  assert.equal(installEngine(tf, 'wasm').active, true);
}

test('fused Dense step in bf16 = float64 reference with bf16 GEMM operands (gradients and loss); the float32 step is measurably not', { skip: NO_BF16 }, async () => {
  await engineOn();
  const dims = [[67, 45, 10], [784, 64, 10]];
  for (const kernel of KERNELS) for (const [inD, hid, C] of dims) {
    assert.equal(addon!.setBf16Kernel(kernel), kernel);
    const B = 37;
    const make = (): tfl.Sequential => {
      const m = tfl.sequential();
      m.add(tfl.layers.dense({ inputShape: [inD], units: hid, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 5 }), biasInitializer: tfl.initializers.randomNormal({ stddev: 0.1, seed: 6 }) }));
      m.add(tfl.layers.dense({ units: C, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 7 }), biasInitializer: tfl.initializers.randomNormal({ stddev: 0.1, seed: 8 }) }));
      m.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
      return m;
    };
    const x = rand(B * inD), y = new Float32Array(B * C);
    for (let r = 0; r < B; r++) y[r * C + ((r * 7) % C)] = 1;
    const results: Record<string, { g: Float32Array; loss: number }> = {};
    let layers: Layer[] = [];
    for (const precision of ['bf16', 'float32'] as const) {
      const m = make();
      const ws = m.getWeights().map((t) => t.dataSync() as Float32Array);
      layers = [{ w: ws[0], b: ws[1], inD, out: hid, relu: true }, { w: ws[2], b: ws[3], inD: hid, out: C, relu: false }];
      let g: Float32Array | null = null;
      const r = denseTrainStep(tf, m, true, { matmulPrecision: precision, reduce: (buf) => { g = Float32Array.from(buf); } });
      assert.ok(r.step, r.reason);
      assert.equal(r.precision, precision);
      if (precision === 'bf16') assert.equal(r.kernel, kernel);
      const [loss] = r.step(x, y, B)!;
      results[precision] = { g: g!, loss };
      r.dispose();
      m.dispose();
    }
    const ref = referenceGrads(layers, x, y, B);
    const relErr = (g: Float32Array): number => {
      let d = 0, n = 0;
      for (let i = 0; i < ref.grads.length; i++) { d += (g[i] - ref.grads[i]) ** 2; n += ref.grads[i] ** 2; }
      return Math.sqrt(d / n);
    };
    const eb = relErr(results.bf16.g), ef = relErr(results.float32.g);
    // bf16 step vs reference: float32 sums (and a rare bf16 rounding flip of a float32 vs float64 intermediate) ~1e-6;
    // the float32 step skips the rounding and lands ~1e-3 away
    assert.ok(eb < 2e-5, `${kernel} ${inD}-${hid}-${C}: bf16 step gradients vs reference: relative error ${eb}`);
    assert.ok(ef > 20 * eb && ef > 1e-4, `${inD}-${hid}-${C}: the float32 step is not the bf16 math (${ef} vs ${eb})`);
    assert.ok(Math.abs(results.bf16.loss - ref.loss) < 1e-5 * Math.max(1, ref.loss), `loss ${results.bf16.loss} vs ${ref.loss}`);
  }
  addon!.setBf16Kernel('');
  uninstallEngine(tf);
});

test('a seeded MLP trained one epoch on an MNIST subset in bf16 reaches its float32 accuracy (±1%); trainEpochs says bf16 and refuses a conv net', { skip: NO_BF16 }, async () => {
  await engineOn();
  const opts = { hidden: [128], train: 6000, test: 2000, seed: 3, fused: true };
  const f32acc = await mnistAccuracy(tf, tfl, opts);
  const bfacc = await mnistAccuracy(tf, tfl, { ...opts, matmulPrecision: 'bf16' });
  assert.ok(f32acc > 0.8, `float32 learned (${f32acc})`);
  assert.ok(Math.abs(bfacc - f32acc) <= 0.01, `bf16 ${bfacc} vs float32 ${f32acc}`);

  const data = mnistSlice(256);
  const mlp = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10, seed: 1 });
  compileDefault(mlp, 'adam', 1e-3);
  const lines: string[] = [];
  const h = await trainEpochs(mlp, memLoader(data.x, data.y, [28, 28, 1], { batchSize: 64, seed: 2 }), { epochs: 1, progress: false, matmulPrecision: 'bf16', log: (l) => lines.push(l) });
  assert.match(lines[0], /train step: fused .*matmul precision bf16 \(opt-in/);
  assert.ok(Number.isFinite(h.epochs[0].loss));
  const cnn = buildModel('cnn', { inputShape: [28, 28, 1], classes: 10, seed: 1 });
  compileDefault(cnn, 'adam', 1e-3);
  assert.throws(() => checkMatmulPrecision(cnn, 'bf16'), (e: unknown) => e instanceof SlimfitError && /bf16 .*fused Dense step.*Conv2D/.test(e.message));
  await assert.rejects(trainEpochs(cnn, memLoader(data.x, data.y, [28, 28, 1], { batchSize: 64 }), { epochs: 1, progress: false, matmulPrecision: 'bf16' }), SlimfitError);
  await assert.rejects(trainEpochs(mlp, memLoader(data.x, data.y, [28, 28, 1], { batchSize: 64 }), { epochs: 1, progress: false, matmulPrecision: 'bf16', fused: false }), /bf16 .*turned off by the caller/);
  [mlp, cnn].forEach((m) => m.dispose());
  uninstallEngine(tf);
});

test('slimfit train --matmul-precision bf16: the run says bf16 in its log, run.json, report.md and --json; a bad value is a usage error', { skip: NO_BF16 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'slimfit-bf16-cli-'));
  try {
    py(`
import numpy as np, sys
d = sys.argv[1]; out = sys.argv[2]
x = np.fromfile(d + '/train-images-idx3-ubyte', dtype=np.uint8, offset=16, count=600*784).reshape(600, 28, 28, 1)
y = np.fromfile(d + '/train-labels-idx1-ubyte', dtype=np.uint8, offset=8, count=600)
np.save(out + '/x.npy', x); np.save(out + '/y.npy', y)
`, [MNIST_DIR, dir]);
    const out = join(dir, 'run');
    const r = await runCli(['train', '--x', join(dir, 'x.npy'), '--y', join(dir, 'y.npy'), '--model', 'mlp', '--epochs', '1', '--matmul-precision', 'bf16', '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /matmul precision bf16 \(opt-in/);
    assert.equal(JSON.parse(r.stdout).matmulPrecision, 'bf16');
    assert.equal(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).matmulPrecision, 'bf16');
    assert.match(readFileSync(join(out, 'report.md'), 'utf8'), /matmul precision\*\*: bf16 \(opt-in/);
    const bad = await runCli(['train', '--x', join(dir, 'x.npy'), '--y', join(dir, 'y.npy'), '--matmul-precision', 'fp8']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown --matmul-precision 'fp8'.*float32 or bf16/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('on a CPU without bf16 instructions the mode is one SlimfitError naming them and float32', { skip: NO_ADDON || (info!.kernel !== 'none' ? `this CPU has ${info!.kernel} (the refusal runs only where bf16 is missing)` : false) }, () => {
  assert.throws(() => bf16Kernel(), (e: unknown) => e instanceof SlimfitError && /AVX512_BF16 or AMX-BF16/.test(e.message) && /float32/.test(e.message));
});
