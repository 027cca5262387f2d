// The fast engine: every registered kernel (forward and gradient) against the reference tfjs 'cpu' backend,
// a gradient check on a small network, the fused Adam step, the own GEMM kernels, and the plain-tfjs fallback (option or SLIMFIT_DISABLE=engine).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tfl from '@tensorflow/tfjs-layers';
import { installEngine, uninstallEngine, loadAddon, adamStats, engineActive } from '../src/engine/index.ts';
import { needsAddon } from '../dev/helpers.ts';
import { mnistAccuracy } from '../dev/mnist-check.ts';

// Tolerance: max |engine - cpu| <= TOL * (1 + max |cpu|). Both compute in float32 with different summation orders.
const TOL = 2e-4;
const { addon } = loadAddon();
const SKIP = needsAddon('slimfit_engine');

let seed = 12345;
function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    a[i] = (seed / 2 ** 32) * 2 - 1;
  }
  return a;
}
const prod = (s: number[]): number => s.reduce((a, b) => a * b, 1);

/** Run `f` on fresh tensors built from `data` on `backend`, returning every output as plain arrays. */
async function on(backend: string, data: { shape: number[]; values: Float32Array }[], f: (...t: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const ins = data.map((d) => tf.tensor(d.values, d.shape));
    const out = f(...ins);
    return (Array.isArray(out) ? out : [out]).map((t) => t.dataSync() as Float32Array);
  });
}

function close(label: string, got: Float32Array[], want: Float32Array[], tol = TOL): void {
  assert.equal(got.length, want.length, label);
  for (let k = 0; k < want.length; k++) {
    assert.equal(got[k].length, want[k].length, `${label} output ${k} size`);
    let scale = 0, err = 0;
    for (let i = 0; i < want[k].length; i++) {
      scale = Math.max(scale, Math.abs(want[k][i]));
      err = Math.max(err, Math.abs(got[k][i] - want[k][i]));
    }
    assert.ok(err <= tol * (1 + scale), `${label} output ${k}: max error ${err} (scale ${scale})`);
  }
}

/** Compare forward and gradients (w.r.t. every input, with a random upstream gradient) on cpu vs engine. */
async function check(label: string, shapes: number[][], f: (...t: tf.Tensor[]) => tf.Tensor, withGrad = true): Promise<void> {
  const data = shapes.map((s) => ({ shape: s, values: rand(prod(s)) }));
  const outShape = tf.tidy(() => { tf.setBackend('cpu'); return f(...data.map((d) => tf.tensor(d.values, d.shape))).shape; });
  const r = { shape: outShape, values: rand(prod(outShape)) };
  const g = (...t: tf.Tensor[]): tf.Tensor[] => {
    const ins = t.slice(0, -1), up = t[t.length - 1];
    if (!withGrad) return [f(...ins)];
    const grads = tf.grads((...x: tf.Tensor[]) => tf.sum(tf.mul(f(...x), up)))(ins);
    return [f(...ins), ...grads];
  };
  let want: Float32Array[], got: Float32Array[];
  try {
    want = await on('cpu', [...data, r], g);
    got = await on('wasm', [...data, r], g);
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message}`);
  }
  close(label, got, want);
}

// First in this file, while the wasm heap is still small (the operand is sized from it).
test('an operand still on the cpu backend moves onto the wasm heap before a native kernel takes the heap, even when moving it grows the heap', { skip: SKIP }, async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  installEngine(tf, 'wasm');
  const be = tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } };
  // b alone is larger than the whole heap, so moving it (a malloc) must grow the heap and replace its ArrayBuffer.
  const K = Math.ceil(be.wasm.HEAPU8.byteLength / 4) + 1024;
  const av = rand(K), bv = rand(K);
  await tf.setBackend('cpu');
  const b = tf.tensor2d(bv, [K, 1]); // left on cpu, like the weights of a model built before training switched to wasm
  await tf.setBackend('wasm');
  const a = tf.tensor2d(av, [1, K]);
  const heapBefore = be.wasm.HEAPU8.buffer;
  const y = tf.matMul(a, b);
  assert.notEqual(be.wasm.HEAPU8.buffer, heapBefore, 'the heap grew while the kernel ran');
  let want = 0;
  for (let i = 0; i < K; i++) want += av[i] * bv[i];
  const got = y.dataSync()[0];
  assert.ok(Math.abs(got - want) <= 1e-3 * Math.sqrt(K), `dot product ${got} vs ${want}`);
  tf.dispose([a, b, y]);
});

test('fast engine kernels match the cpu backend (forward and gradient)', { skip: SKIP }, async (t) => {
  await tf.setBackend('wasm');
  await tf.ready();
  const st = installEngine(tf, 'wasm');
  assert.equal(st.active, true, st.note);
  const defaultMode = addon!.info().gemm;
  // with a library linked: the default per-shape choice, each linked library throughout, and the own kernels alone
  const info0 = addon!.info();
  const modes = ['own', ...(info0.blas === 'own' ? [] : ['auto'] as const), ...(info0.openblas ? ['openblas'] as const : []), ...(info0.onednn ? ['onednn'] as const : [])] as const;
  for (const mode of modes) {
    addon!.setGemmMode(mode);
    const tag = `${mode} gemm`;
    await t.test(`matmul family (${tag})`, async () => {
      for (const [m, k, n] of [[1, 1, 1], [1, 7, 3], [5, 3, 9], [17, 33, 13], [128, 784, 64], [31, 1, 40]]) {
        await check(`matMul ${m}x${k}x${n}`, [[m, k], [k, n]], (a, b) => tf.matMul(a, b));
        await check(`matMul^T ${m}x${k}x${n}`, [[k, m], [n, k]], (a, b) => tf.matMul(a, b, true, true));
        await check(`fused relu+bias ${m}x${k}x${n}`, [[m, k], [k, n], [n]], (a, b, c) => tf.fused.matMul({ a, b, bias: c, activation: 'relu' }));
        await check(`fused linear ${m}x${k}x${n}`, [[m, k], [k, n], [n]], (a, b, c) => tf.fused.matMul({ a, b, bias: c }));
      }
      await check('batched matMul', [[3, 5, 7], [3, 7, 2]], (a, b) => tf.matMul(a, b));
      // tfjs-core's own BatchMatMul gradient rejects broadcast batches on every backend: forward only
      await check('broadcast batched matMul', [[3, 5, 7], [1, 7, 2]], (a, b) => tf.matMul(a, b), false);
      await check('sum over leading axes', [[64, 9, 33]], (a) => tf.sum(a, [0, 1]));
      await check('sum over axis 0 keepDims', [[300, 17]], (a) => tf.sum(a, 0, true));
      await check('sum over the last axis (falls back)', [[40, 130]], (a) => tf.sum(a, -1));
      await check('fused elu (falls back)', [[4, 6], [6, 5], [5]], (a, b, c) => tf.fused.matMul({ a, b, bias: c, activation: 'elu' }));
    });
    // 'auto' differs from the other two modes only in which library a matmul takes: convolutions in training use the
    // own kernels' tiles (and 1x1 ones here have K <= 64: own too), and the elementwise kernels use no GEMM
    if (mode === 'auto') continue;
    await t.test(`conv2d family (${tag})`, async () => {
      const cases: [number[], number[], [number, number], 'same' | 'valid'][] = [
        [[1, 5, 5, 1], [3, 3, 1, 2], [1, 1], 'same'],
        [[2, 7, 6, 3], [3, 3, 3, 4], [1, 1], 'valid'],
        [[3, 9, 8, 2], [3, 2, 2, 5], [2, 2], 'same'],
        [[2, 10, 11, 3], [5, 5, 3, 6], [2, 3], 'valid'],
        [[4, 6, 6, 8], [1, 1, 8, 3], [1, 1], 'same'],
        [[1, 8, 8, 4], [1, 1, 4, 2], [2, 2], 'valid'],
        [[16, 14, 14, 8], [3, 3, 8, 16], [1, 1], 'same'],
        // the CNN's second layer on 9 samples: several row tiles (the last one partial), 2-sample tiles for dx
        [[9, 13, 13, 32], [3, 3, 32, 64], [1, 1], 'valid'],
        // few taps per output (3x3 on one channel): the direct kernels, register-blocked for 16/32/64 channels
        [[3, 11, 10, 1], [3, 3, 1, 32], [1, 1], 'same'],
        [[2, 9, 9, 1], [3, 3, 1, 16], [2, 2], 'valid'],
        [[2, 8, 7, 1], [3, 3, 1, 64], [1, 2], 'same'],
        [[1, 6, 6, 1], [3, 3, 1, 48], [1, 1], 'valid'],
      ];
      for (const [xs, fs, s, p] of cases) {
        const lbl = `${xs}|${fs}|${s}|${p}`;
        await check(`conv2d ${lbl}`, [xs, fs], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, p));
        await check(`fused conv2d relu ${lbl}`, [xs, fs, [fs[3]]], (x, w, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: s, pad: p, bias: b, activation: 'relu' }));
      }
      // tf.fused.conv2d in training runs as one kernel with its own gradient (src/engine/fused-conv.ts): linear, no bias
      const fx = [3, 9, 8, 5], ff = [3, 3, 5, 6];
      await check('fused conv2d linear+bias', [fx, ff, [6]], (x, w, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 1, pad: 'same', bias: b }));
      await check('fused conv2d relu, no bias', [fx, ff], (x, w) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: [2, 1], pad: 'valid', activation: 'relu' }));
      await check('fused conv2d elu (falls back)', [fx, ff, [6]], (x, w, b) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, strides: 1, pad: 'same', bias: b, activation: 'elu' }));
      // tfjs-core has no gradient for dilated conv2d on any backend: forward only
      await check('conv2d dilated', [[2, 9, 9, 2], [3, 3, 2, 3]], (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same', 'NHWC', 2), false);
    });
    await t.test(`elementwise, sum, identity and cast (${tag})`, async () => {
      // sizes above the engine's threshold (32768 elements) so the native paths run, plus small ones (fallback)
      await check('relu', [[64, 30, 20]], (a) => tf.relu(a));
      await check('step', [[40000]], (a) => tf.step(a, 0.25));
      await check('add same shape', [[300, 130], [300, 130]], (a, b) => tf.add(a, b));
      await check('add bias broadcast NHWC', [[64, 12, 12, 8], [8]], (a, b) => tf.add(a, b));
      await check('add broadcast [1,C]', [[500, 70], [1, 70]], (a, b) => tf.add(b, a));
      await check('add outer broadcast (falls back)', [[500, 70], [500, 1]], (a, b) => tf.add(a, b));
      await check('multiply', [[250, 200], [250, 200]], (a, b) => tf.mul(a, b));
      await check('multiply small (falls back)', [[7, 5], [5]], (a, b) => tf.mul(a, b));
      await check('identity and cast keep values', [[200, 200]], (a) => tf.add(tf.clone(a), tf.cast(a, 'float32')));
    });
    await t.test(`max pooling (${tag})`, async () => {
      const cases: [number[], [number, number], [number, number], 'same' | 'valid'][] = [
        [[1, 4, 4, 1], [2, 2], [2, 2], 'valid'], [[2, 7, 5, 3], [2, 2], [2, 2], 'same'],
        [[3, 9, 9, 4], [3, 3], [2, 2], 'valid'], [[2, 6, 7, 5], [3, 2], [1, 1], 'same'],
      ];
      for (const [xs, k, s, p] of cases) await check(`maxPool ${xs}|${k}|${s}|${p}`, [xs], (x) => tf.maxPool(x as tf.Tensor4D, k, s, p));
      // ties (ReLU zeros): the gradient goes to the first maximum like the reference
      await check('maxPool ties', [[2, 6, 6, 3]], (x) => tf.maxPool(tf.relu(tf.sub(x, 0.8)) as tf.Tensor4D, [2, 2], [2, 2], 'valid'));
    });
  }
  addon!.setGemmMode(defaultMode);
  uninstallEngine(tf);
});

/** A small conv+pool+dense network: loss and gradients for the given weights on fixed data. */
function smallNet(w: tf.Tensor[], x: tf.Tensor4D, y: tf.Tensor2D): tf.Scalar {
  const [k1, b1, k2, b2] = w;
  const h1 = tf.fused.conv2d({ x, filter: k1 as tf.Tensor4D, strides: 1, pad: 'same', bias: b1, activation: 'relu' });
  const p1 = tf.maxPool(h1, 2, 2, 'valid');
  const flat = tf.reshape(p1, [x.shape[0], -1]) as tf.Tensor2D;
  const logits = tf.fused.matMul({ a: flat, b: k2 as tf.Tensor2D, bias: b2 });
  return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
}

test('gradient check on a small conv network (engine vs finite differences and vs cpu)', { skip: SKIP }, async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  installEngine(tf, 'wasm');
  const shapes = [[3, 3, 2, 4], [4], [3 * 3 * 4, 5], [5]];
  const wData = shapes.map((s) => ({ shape: s, values: rand(prod(s)) }));
  const xData = { shape: [3, 6, 6, 2], values: rand(3 * 6 * 6 * 2) };
  const labels = tf.tidy(() => tf.oneHot(tf.tensor1d([0, 3, 4], 'int32'), 5).dataSync() as Float32Array);
  const run = (): Float32Array[] => tf.tidy(() => {
    const w = wData.map((d) => tf.tensor(d.values, d.shape));
    const x = tf.tensor4d(xData.values, xData.shape as [number, number, number, number]);
    const y = tf.tensor2d(labels, [3, 5]);
    return tf.grads((...ws: tf.Tensor[]) => smallNet(ws, x, y))(w).map((g) => g.dataSync() as Float32Array);
  });
  const loss = (): number => tf.tidy(() => smallNet(wData.map((d) => tf.tensor(d.values, d.shape)), tf.tensor4d(xData.values, xData.shape as [number, number, number, number]), tf.tensor2d(labels, [3, 5])).dataSync()[0]);
  const analytic = run();
  // central differences on a sample of coordinates of every weight (float32: h = 1e-3, tolerance 2e-2 relative). A
  // step that moves a ReLU or max-pool input across its kink has no usable difference quotient (the one-sided quotients
  // disagree): such a coordinate is skipped, at most 2 of the 6 per weight.
  const l0 = loss();
  for (let k = 0; k < wData.length; k++) {
    let kinks = 0;
    for (let j = 0; j < 6; j++) {
      const i = (j * 7919) % wData[k].values.length;
      const v = wData[k].values[i];
      const h = 1e-3;
      wData[k].values[i] = v + h; const lp = loss();
      wData[k].values[i] = v - h; const lm = loss();
      wData[k].values[i] = v;
      const num = (lp - lm) / (2 * h), fwd = (lp - l0) / h, bwd = (l0 - lm) / h;
      if (Math.abs(fwd - bwd) > 2e-2 * (Math.abs(num) + 1e-2) + 2e-3) { kinks++; continue; }
      assert.ok(Math.abs(num - analytic[k][i]) <= 2e-2 * (Math.abs(num) + 1e-2) + 2e-3, `weight ${k}[${i}]: numeric ${num} vs analytic ${analytic[k][i]}`);
    }
    assert.ok(kinks <= 2, `weight ${k}: ${kinks} of 6 sampled coordinates sit on a kink`);
  }
  await tf.setBackend('cpu');
  close('small network gradients vs cpu', analytic, run());
  await tf.setBackend('wasm');
  uninstallEngine(tf);
});

test('in training, tf.fused.conv2d with bias and relu runs as one kernel and its gradient as one pass (no Add/Relu/Step split)', { skip: SKIP }, async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  installEngine(tf, 'wasm');
  const x = tf.randomUniform([4, 10, 10, 3]) as tf.Tensor4D;
  const w = [tf.variable(tf.randomNormal([3, 3, 3, 8])), tf.variable(tf.zeros([8]))];
  const p = await tf.profile(() => tf.variableGrads(() => tf.sum(tf.fused.conv2d({ x, filter: w[0] as tf.Tensor4D, strides: 1, pad: 'same', bias: w[1], activation: 'relu' })) as tf.Scalar, w));
  const names = p.kernels.map((k) => k.name);
  assert.ok(names.includes('SlimfitConv2DBiasAct') && names.includes('SlimfitReluGradBias'), names.join(','));
  assert.ok(!names.includes('Step') && !names.includes('Relu') && !names.includes('Conv2DBackpropInput'), `split or needless dx: ${names.join(',')}`);
  uninstallEngine(tf);
});

/** Train a tiny seeded MLP for a few Adam steps on `backend`; returns its final weights. */
async function trainTiny(backend: string): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const model = tfl.sequential();
  model.add(tfl.layers.dense({ inputShape: [20], units: 16, activation: 'relu', kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }) }));
  model.add(tfl.layers.dense({ units: 3, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) }));
  model.compile({ optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy' });
  const x = tf.tensor2d(rand(64 * 20).map((v) => v), [64, 20]);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: 64 }, (_, i) => i % 3), 'int32'), 3);
  await model.fit(x, y, { batchSize: 16, epochs: 2, shuffle: false, verbose: 0 });
  const w = model.getWeights().map((t) => t.dataSync() as Float32Array);
  tf.dispose([x, y]);
  model.dispose();
  return w;
}

test('fused Adam and matmul kernels train a seeded MLP like the cpu backend', { skip: SKIP }, async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  installEngine(tf, 'wasm');
  const s0 = seed;
  const fused0 = adamStats.fused;
  const got = await trainTiny('wasm');
  assert.equal(adamStats.fused - fused0, 8, `the fused Adam step ran (last refusal: ${adamStats.lastReason})`);
  seed = s0;
  const want = await trainTiny('cpu');
  close('weights after 8 Adam steps', got, want, 2e-5);
  await tf.setBackend('wasm');
  uninstallEngine(tf);
});

test('the same seeded MLP trained one epoch on an MNIST subset reaches the same accuracy (±0.3%) on the engine and the cpu backend', { skip: SKIP }, async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  installEngine(tf, 'wasm');
  const opts = { hidden: [64], train: 6000, test: 2000, seed: 3 };
  const fast = await mnistAccuracy(tf, tfl, opts);
  await tf.setBackend('cpu');
  const ref = await mnistAccuracy(tf, tfl, opts);
  await tf.setBackend('wasm');
  uninstallEngine(tf);
  assert.ok(ref > 0.7, `the reference learned (${ref})`);
  assert.ok(Math.abs(fast - ref) <= 0.003, `engine ${fast} vs cpu ${ref}`);
});

test('long sums stay accurate in every GEMM mode, also in products or slices one row or column thin', { skip: SKIP }, () => {
  // Positive terms, so a single float32 accumulator's error grows with K (oneDNN's matrix-vector kernels sum that way;
  // the engine keeps such slices away from it). 17 rows on 2 threads leave a slice of one row.
  const K = 1 << 19;
  const info = addon!.info(), mode = info.gemm;
  const modes = ['own', ...(info.openblas ? ['openblas'] as const : []), ...(info.onednn ? ['onednn', 'auto'] as const : [])] as const;
  for (const [M, N] of [[17, 16], [1, 20], [20, 1]]) {
    const A = Float32Array.from({ length: M * K }, (_, i) => ((i * 2654435761) % 1000) / 1000);
    const B = Float32Array.from({ length: K * N }, (_, i) => ((i * 40503) % 997) / 997);
    const R = new Float64Array(M * N);
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) { let acc = 0; for (let k = 0; k < K; k++) acc += A[i * K + k] * B[k * N + j]; R[i * N + j] = acc; }
    for (const m of modes) {
      addon!.setGemmMode(m);
      const C = new Float32Array(M * N);
      addon!.gemmDtype('f32', M, N, K, A, B, C);
      C.forEach((c, i) => assert.ok(Math.abs(c - R[i]) / R[i] < 2e-5, `${m} ${M}x${N}x${K} element ${i}: ${c} vs ${R[i]}`));
    }
  }
  addon!.setGemmMode(mode);
});

test('own GEMM kernels by dtype match a float64 reference', { skip: SKIP }, () => {
  const ref = (M: number, N: number, K: number, A: ArrayLike<number>, B: ArrayLike<number>): Float64Array => {
    const C = new Float64Array(M * N);
    for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) C[i * N + j] += A[i * K + k] * B[k * N + j];
    return C;
  };
  const info = addon!.info();
  for (const [M, N, K] of [[1, 1, 1], [13, 37, 29], [50, 70, 260]]) {
    const A = rand(M * K), B = rand(K * N), R = ref(M, N, K, A, B);
    for (const kind of ['f32', 'f32own', ...(info.openblas ? ['f32blas' as const] : [])] as const) {
      const C = new Float32Array(M * N);
      addon!.gemmDtype(kind, M, N, K, A, B, C);
      C.forEach((c, i) => assert.ok(Math.abs(c - R[i]) < 1e-4 * Math.sqrt(K), `${kind} ${M}x${N}x${K}`));
    }
    for (const kind of ['f64', 'f64own', ...(info.openblas ? ['f64blas' as const] : [])] as const) {
      const C = new Float64Array(M * N);
      addon!.gemmDtype(kind, M, N, K, Float64Array.from(A), Float64Array.from(B), C);
      C.forEach((c, i) => assert.ok(Math.abs(c - R[i]) < 1e-12 * K, `${kind} ${M}x${N}x${K}`));
    }
    const toBf = (x: number): number => (new Uint32Array(new Float32Array([x]).buffer)[0] >>> 16);
    const fromBf = (b: number): number => new Float32Array(new Uint32Array([b << 16]).buffer)[0];
    const Ab = Uint16Array.from(A, toBf), Bb = Uint16Array.from(B, toBf);
    const Rb = ref(M, N, K, Array.from(Ab, fromBf), Array.from(Bb, fromBf));
    const Cb = new Float32Array(M * N);
    assert.equal(addon!.gemmDtype('bf16', M, N, K, Ab, Bb, Cb), info.bf16);
    if (info.bf16) Cb.forEach((c, i) => assert.ok(Math.abs(c - Rb[i]) < 1e-4 * Math.sqrt(K), `bf16 ${M}x${N}x${K}`));
    const Au = Uint8Array.from(A, (v) => Math.floor((v + 1) * 127.5)), Bs = Int8Array.from(B, (v) => Math.round(v * 127));
    const Ri = ref(M, N, K, Au, Bs);
    const Ci = new Int32Array(M * N);
    assert.equal(addon!.gemmDtype('i8', M, N, K, Au, Bs, Ci), info.vnni);
    if (info.vnni) Ci.forEach((c, i) => assert.equal(c, Ri[i], `int8 ${M}x${N}x${K}`));
  }
});

test('own GEMM kernels on the AVX2 and portable paths (SLIMFIT_ISA caps the dispatch) match a float64 reference', { skip: SKIP }, () => {
  // Loaded the way slimfit loads it, so this also checks that SLIMFIT_ISA reaches the addon (configure).
  const script = `
    import { loadAddon } from ${JSON.stringify(new URL('../src/engine/addon.ts', import.meta.url).pathname)};
    const e = loadAddon().addon;
    let s = 7; const r = (n) => Float64Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
    let worst = 0;
    for (const [M, N, K] of [[1, 1, 1], [7, 19, 5], [61, 45, 300], [130, 70, 33]]) {
      const A = r(M * K), B = r(K * N), R = new Float64Array(M * N);
      for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) R[i * N + j] += A[i * K + k] * B[k * N + j];
      const C32 = new Float32Array(M * N), C64 = new Float64Array(M * N);
      e.gemmDtype('f32own', M, N, K, Float32Array.from(A), Float32Array.from(B), C32);
      e.gemmDtype('f64own', M, N, K, A, B, C64);
      for (let i = 0; i < M * N; i++) worst = Math.max(worst, Math.abs(C32[i] - R[i]) / Math.sqrt(K), Math.abs(C64[i] - R[i]) * 1e7 / K);
    }
    console.log(JSON.stringify({ isa: e.info().isa, worst }));`;
  for (const isa of ['avx2', 'generic']) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, SLIMFIT_ISA: isa }, encoding: 'utf8' });
    const { isa: got, worst } = JSON.parse(out) as { isa: string; worst: number };
    if (isa === 'avx2' && got === 'generic') continue; // CPU without AVX2: nothing to cap
    assert.equal(got, isa);
    assert.ok(worst < 1e-4, `${isa}: max scaled error ${worst}`);
  }
});

test('SLIMFIT_THREADS and SLIMFIT_GEMM reach the engine through configure(), which refuses to change settings in use', { skip: SKIP }, () => {
  const script = `
    import { loadAddon } from ${JSON.stringify(new URL('../src/engine/addon.ts', import.meta.url).pathname)};
    import { nativeSettings } from ${JSON.stringify(new URL('../src/core/config.ts', import.meta.url).pathname)};
    const e = loadAddon().addon, i = e.info();
    e.configure(nativeSettings()); // the same settings again (another thread loading it): fine
    let late = '';
    try { e.configure({ threads: i.threads + 1, gemm: '', isa: '' }); } catch (err) { late = err.message; }
    console.log(JSON.stringify({ threads: i.threads, forceOwn: i.forceOwn, gemm: i.gemm, blas: i.blas, openblas: i.openblas, onednn: i.onednn, isa: i.isa, late }));`;
  for (const [threads, gemm] of [['1', 'own'], ['2', 'openblas'], ['2', 'onednn']]) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, SLIMFIT_THREADS: threads, SLIMFIT_GEMM: gemm }, encoding: 'utf8' });
    const got = JSON.parse(out) as { threads: number; forceOwn: boolean; gemm: string; blas: string; openblas: boolean; onednn: boolean; isa: string; late: string };
    assert.equal(got.threads, Number(threads));
    // a library that is not linked falls back to the default: auto on AVX2/AVX-512 (the other library), else that
    // library throughout, or own without one
    const linked = gemm === 'own' || (gemm === 'openblas' ? got.openblas : got.onednn);
    const fallback = got.blas === 'own' ? 'own' : got.isa === 'generic' ? got.blas : 'auto';
    assert.equal(got.forceOwn, gemm === 'own' || got.blas === 'own');
    assert.equal(got.gemm, linked ? gemm : fallback);
    assert.match(got.late, /after first use with different settings/);
  }
});

test('OpenMP thread binding in the environment does not pin the engine to one core (libgomp comes with oneDNN)', { skip: SKIP }, (t) => {
  if (!addon!.info().onednn) return t.skip('the engine does not link oneDNN, so no OpenMP runtime loads with it');
  if (!existsSync('/proc/self/task')) return t.skip('no /proc here to read thread affinities from');
  const script = `
    import { readFileSync, readdirSync } from 'node:fs';
    import { loadAddon } from ${JSON.stringify(new URL('../src/engine/addon.ts', import.meta.url).pathname)};
    const cpus = (task) => /Cpus_allowed_list:\\s*(\\S+)/.exec(readFileSync('/proc/self/task/' + task + '/status', 'utf8'))[1];
    const before = cpus(process.pid);
    const e = loadAddon().addon;
    e.info(); // starts the pool's threads
    const after = readdirSync('/proc/self/task').map(cpus);
    console.log(JSON.stringify({ before, after, env: process.env.OMP_PROC_BIND ?? null }));`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, OMP_PROC_BIND: 'true', SLIMFIT_THREADS: '2' }, encoding: 'utf8' });
  const got = JSON.parse(out) as { before: string; after: string[]; env: string | null };
  assert.ok(got.after.length >= 2);
  for (const c of got.after) assert.equal(c, got.before, `a thread's CPUs ${c} vs the process's ${got.before}`);
  assert.equal(got.env, 'true', 'the variable is back for child processes');
});

test('installEngine with engine: false declines with a note and training still works on plain tfjs', async () => {
  uninstallEngine(tf);
  await tf.setBackend('wasm');
  await tf.ready();
  const st = installEngine(tf, 'wasm', { engine: false });
  assert.equal(st.active, false);
  assert.match(st.note, /turned off by the caller/);
  assert.equal(engineActive(), false);
  const w = await trainTiny('wasm');
  assert.ok(w.every((a) => a.every(Number.isFinite)));
  assert.equal(installEngine(tf, 'cpu').active, false, 'only the wasm backend is supported');
});

test('SLIMFIT_DISABLE=engine (or native) makes installEngine decline, naming the setting', () => {
  const script = `
    import { installEngine } from ${JSON.stringify(new URL('../src/engine/index.ts', import.meta.url).pathname)};
    console.log(JSON.stringify(installEngine(null, 'wasm')));`;
  for (const [disable, name] of [['engine', 'SLIMFIT_DISABLE=engine'], ['csv,native', 'SLIMFIT_DISABLE=native']]) {
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, SLIMFIT_DISABLE: disable }, encoding: 'utf8' });
    const st = JSON.parse(out) as { active: boolean; note: string };
    assert.equal(st.active, false, disable);
    assert.ok(st.note.includes(`disabled by ${name}`), st.note);
  }
});

test('native Adam: moments as tfjs, the step within a few ulps of tfjs\'s, subnormals flushed (never NaN), the FP mode restored', { skip: SKIP }, () => {
  const fr = Math.fround;
  const n = 40, lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-7, oma1 = fr(1 - fr(0.9 ** 3)), oma2 = fr(1 - fr(0.999 ** 3)), c1 = fr(1 - b1), c2 = fr(1 - b2);
  const buf = new ArrayBuffer(4 * n * 4);
  const [p, m, v, g] = [0, 1, 2, 3].map((k) => new Float32Array(buf, 4 * n * k, n));
  const r = rand(4 * n);
  for (let i = 0; i < n; i++) { p[i] = r[i]; m[i] = r[n + i] * 1e-3; v[i] = Math.abs(r[2 * n + i]) * 1e-6; g[i] = r[3 * n + i] * 1e-2; }
  // subnormal on the way: g^2 (g ~ 1e-20), a decaying moment, a subnormal gradient
  const special = [[1e-20, 0, 0], [0, 1e-39, 1e-40], [1e-40, 0, 1e-39], [0, 0, 0]];
  special.forEach(([gi, mi, vi], k) => { g[k] = gi; m[k] = mi; v[k] = vi; });
  const p0 = Float32Array.from(p), m0 = Float32Array.from(m), v0 = Float32Array.from(v);
  addon!.adam(buf, n, 0, 4 * n, 8 * n, 12 * n, lr, b1, b2, eps, oma1, oma2, c1, c2);
  for (let i = 0; i < n; i++) {
    // tfjs's float32 formulas, each operation rounded
    const mi = fr(fr(m0[i] * fr(b1)) + fr(g[i] * c1)), vi = fr(fr(v0[i] * fr(b2)) + fr(fr(g[i] * g[i]) * c2));
    const step = fr(fr(fr(mi / oma1) / fr(fr(Math.sqrt(fr(vi / oma2))) + fr(eps))) * fr(-lr));
    const want = fr(p0[i] + step);
    assert.ok(Number.isFinite(p[i]) && Number.isFinite(m[i]) && Number.isFinite(v[i]), `element ${i} finite`);
    if (i < special.length) {
      // flushed: a moment below 2^-126 reads as 0; the weight moves by at most ~1e-28 more or less than tfjs's
      assert.ok(m[i] === 0 || Math.abs(m[i]) >= 2 ** -126, `m[${i}] = ${m[i]} is not subnormal`);
      assert.ok(v[i] === 0 || v[i] >= 2 ** -126, `v[${i}] = ${v[i]} is not subnormal`);
      assert.ok(Math.abs(p[i] - want) <= 1e-28 + 2 ** -23 * Math.abs(want), `p[${i}] ${p[i]} vs ${want}`);
    } else {
      assert.equal(m[i], mi, `m[${i}]`);
      assert.equal(v[i], vi, `v[${i}]`);
      assert.ok(Math.abs(p[i] - want) <= 4 * 2 ** -24 * (Math.abs(want) + Math.abs(step)), `p[${i}] ${p[i]} vs ${want} (step ${step})`);
    }
  }
  // the flush is switched off again when Adam returns: JS's own subnormal doubles still exist on this thread
  const tiny = Number.MIN_VALUE * (process.argv.length > 0 ? 3 : 1);
  assert.ok(tiny > 0 && tiny / 3 > 0, 'subnormal doubles survive after the native Adam');
});
