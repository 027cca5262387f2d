// The wasm backend's added/replaced kernels (conv filter + input gradients, max-pool gradient) against the cpu backend:
// plain tfjs wasm, the fallback where the native engine is not available, so this file turns the engine off (every test
// file runs in a process of its own; settings are read on first use, after this line).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initBackend, missingKernels, tf } from '../src/train/backend.ts';

process.env.SLIMFIT_DISABLE = [process.env.SLIMFIT_DISABLE, 'engine'].filter(Boolean).join(',');

type Case = { x: [number, number, number, number]; f: [number, number, number, number]; s: number; p: 'same' | 'valid'; pool: number };
const CASES: Case[] = [
  { x: [3, 9, 9, 2], f: [3, 3, 2, 4], s: 1, p: 'same', pool: 2 },
  { x: [2, 10, 11, 3], f: [3, 3, 3, 5], s: 2, p: 'same', pool: 2 },
  { x: [2, 10, 11, 3], f: [5, 5, 3, 2], s: 2, p: 'valid', pool: 3 },
  { x: [1, 28, 28, 1], f: [3, 3, 1, 8], s: 1, p: 'valid', pool: 2 },
  { x: [5, 13, 7, 4], f: [2, 4, 4, 3], s: 1, p: 'same', pool: 2 },
];

/** d/dx and d/dw of sum(maxPool(relu(conv2d(x, w))) * r) on the current backend, as plain arrays. */
function grads(c: Case): { dx: Float32Array; dw: Float32Array; y: Float32Array } {
  return tf.tidy(() => {
    const x = tf.randomNormal(c.x, 0, 1, 'float32', 1) as tf.Tensor4D;
    const w = tf.randomNormal(c.f, 0, 0.5, 'float32', 2) as tf.Tensor4D;
    const fwd = (xx: tf.Tensor4D, ww: tf.Tensor4D) => tf.maxPool(tf.relu(tf.conv2d(xx, ww, c.s, c.p)), c.pool, c.pool, 'valid');
    const shape = fwd(x, w).shape;
    const r = tf.randomNormal(shape, 0, 1, 'float32', 3);
    const f = (xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(fwd(xx as tf.Tensor4D, ww as tf.Tensor4D), r));
    const [dx, dw] = tf.grads(f)([x, w]);
    return { dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array, y: fwd(x, w).dataSync() as Float32Array };
  });
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test('plain wasm backend (engine off) starts, has every kernel the built-in models train with, and matches cpu on conv/pool gradients', async () => {
  const info = await initBackend();
  assert.equal(info.name, 'wasm', info.note);
  assert.equal(info.engine, false, info.note);
  assert.match(info.note, /engine disabled by SLIMFIT_DISABLE=engine/);
  assert.deepEqual(missingKernels(['Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'MaxPool', 'MaxPoolGrad', 'Relu', 'Step', 'Softmax', 'BatchMatMul', 'Concat', 'Sum', 'Mean', 'Transpose', 'Reshape']), []);
  const wasm = CASES.map(grads);
  await tf.setBackend('cpu');
  try {
    const cpu = CASES.map(grads);
    CASES.forEach((c, i) => {
      assert.ok(maxDiff(wasm[i].y, cpu[i].y) < 1e-4, `forward ${JSON.stringify(c)}`);
      assert.ok(maxDiff(wasm[i].dx, cpu[i].dx) < 5e-4, `dx ${JSON.stringify(c)}: ${maxDiff(wasm[i].dx, cpu[i].dx)}`);
      assert.ok(maxDiff(wasm[i].dw, cpu[i].dw) < 5e-4, `dw ${JSON.stringify(c)}: ${maxDiff(wasm[i].dw, cpu[i].dw)}`);
    });
  } finally {
    await tf.setBackend('wasm');
  }
});

test('an unknown --backend is a clear error', async () => {
  await assert.rejects(initBackend('gpu'), /unknown backend 'gpu'.*use --backend wasm or --backend cpu/);
});
