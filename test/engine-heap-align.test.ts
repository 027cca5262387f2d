// alignTensors (src/engine/heap-align.ts): tensors moved to 64-byte boundaries in tfjs's wasm heap keep their values
// for every reader (JS reads, tfjs's own kernels, tensors sharing the data), and dispose hands back the real allocation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { alignTensors } from '../src/engine/heap-align.ts';

type Be = { dataIdMap: { get(id: object): { memoryOffset: number } }; wasm: { HEAPU8: Uint8Array } };
const offset = (t: tf.Tensor): number => (tf.backend() as unknown as Be).dataIdMap.get(t.dataId).memoryOffset;

test('alignTensors moves float32 data onto 64-byte boundaries; values, kernels, shared data and disposal all follow', async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  const tensorsBefore = tf.memory().numTensors;
  // odd sizes so that most allocations in between start mid-line
  const ts: tf.Tensor[] = [];
  for (let i = 0; i < 12; i++) ts.push(tf.tensor1d(Float32Array.from({ length: 37 + 5 * i }, (_, k) => k * 0.5 - i)));
  const misaligned = ts.filter((t) => offset(t) % 64 !== 0);
  assert.ok(misaligned.length > 0, 'the heap allocator left some tensors mid-line (otherwise nothing is tested)');
  const want = ts.map((t) => Array.from(t.dataSync()));
  const moved = misaligned[0], movedWant = Array.from(moved.dataSync());
  const shared = tf.reshape(moved, [-1, 1]); // the same data (dataId), refCount 2
  const init = tf.tensor2d([[1, 2, 3], [4, 5, 6]]);
  const v = tf.variable(init);
  init.dispose();
  alignTensors(tf.backend(), [...ts, v]);
  for (const [i, t] of ts.entries()) {
    assert.equal(offset(t) % 64, 0, `tensor ${i} at ${offset(t)}`);
    assert.deepEqual(Array.from(t.dataSync()), want[i]);
    // tfjs's own wasm kernels read the tensor where it now is (they find it by id, not by offset)
    assert.deepEqual(tf.tidy(() => Array.from(tf.add(t, 1).dataSync())), want[i].map((x) => x + 1));
  }
  assert.equal(offset(shared), offset(moved));
  assert.deepEqual(Array.from(shared.dataSync()), movedWant);
  assert.deepEqual(tf.tidy(() => Array.from(tf.matMul(v, tf.ones([3, 1])).dataSync())), [6, 15]);
  // moving again is a no-op
  const at = ts.map(offset);
  alignTensors(tf.backend(), ts);
  assert.deepEqual(ts.map(offset), at);
  // disposing one of two tensors sharing moved data keeps it, where it now is, for the other
  moved.dispose();
  assert.deepEqual(Array.from(shared.dataSync()), movedWant);
  assert.deepEqual(tf.tidy(() => Array.from(tf.add(shared, 1).dataSync())), movedWant.map((x) => x + 1));
  // an assign replaces the variable's data: the old (moved) allocation is disposed through the wrapped disposeData
  const next = tf.tensor2d([[7, 8, 9], [1, 1, 1]]);
  v.assign(next);
  next.dispose();
  assert.deepEqual(Array.from(v.dataSync()), [7, 8, 9, 1, 1, 1]);
  tf.dispose([...ts.filter((t) => t !== moved), shared, v]);
  assert.equal(tf.memory().numTensors, tensorsBefore);
  // Freed correctly, the same cycle many times reuses the heap instead of growing it, and new data reads back intact.
  const before = (tf.backend() as unknown as Be).wasm.HEAPU8.byteLength;
  for (let r = 0; r < 200; r++) {
    const a = tf.tensor1d(new Float32Array(100_003).fill(r)), b = tf.tensor1d(new Float32Array(7).fill(-r));
    alignTensors(tf.backend(), [a, b]);
    assert.equal(a.dataSync()[100_002], r);
    assert.equal(b.dataSync()[6], -r);
    tf.dispose([a, b]);
  }
  assert.equal((tf.backend() as unknown as Be).wasm.HEAPU8.byteLength, before, 'the heap did not grow over 200 move-and-dispose cycles');
  assert.equal(tf.memory().numTensors, tensorsBefore);
});

test('alignTensors leaves a backend it cannot drive alone', async () => {
  const be = { dataIdMap: new Map() };
  assert.doesNotThrow(() => alignTensors(be, [tf.scalar(1)]));
  alignTensors(null, []);
});
