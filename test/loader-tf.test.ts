// toTfDataset feeds model.fitDataset for several epochs without leaking tensors.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { layers, sequential } from '@tensorflow/tfjs-layers';
import { createLoader, openDataset, toTfDataset } from '../src/loader/index.ts';
import { makeStore } from './loader-fixtures.ts';
import { tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-loader-tf-');
after(() => tmp.cleanup());

test('5 epochs of fitDataset via toTfDataset: every batch seen, tf.memory().numTensors flat', { timeout: 50_000 }, async () => {
  await tf.setBackend('cpu');
  const dir = join(tmp.dir, 's');
  // Learnable labels: class = brightness band of the pattern byte at position 4.
  await makeStore(dir, { n: 1200, h: 4, w: 4, classes: 4, label: (i) => ((i * 7 + 4 * 13) & 255) >> 6 });
  const ds = await openDataset(dir);
  const loader = createLoader(ds.split('train'), { batchSize: 64, workers: 1, normalize: { scale: 1 / 255, shift: 0 }, layout: 'flat', oneHot: true, seed: 3 });
  const model = sequential({ layers: [layers.dense({ inputShape: [16], units: 16, activation: 'relu' }), layers.dense({ units: 4, activation: 'softmax' })] });
  model.compile({ optimizer: 'adam', loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  const counts: number[] = [];
  const tensors: number[] = [];
  let batches = 0;
  const hist = await model.fitDataset(toTfDataset(loader), {
    epochs: 5, verbose: 0,
    callbacks: {
      onBatchEnd: async () => { batches++; },
      onEpochEnd: async () => { counts.push(batches); batches = 0; tensors.push(tf.memory().numTensors); },
    },
  });
  await loader.close();
  await ds.close();
  assert.deepEqual(counts, [19, 19, 19, 19, 19], 'ceil(1200/64) batches per epoch');
  assert.equal(loader.cursor().epoch, 5);
  assert.ok(tensors.every((t) => t === tensors[0]), `numTensors per epoch: ${tensors.join(', ')}`);
  const loss = hist.history.loss as number[];
  assert.ok(loss[4] < loss[0], `loss falls: ${loss.map((l) => l.toFixed(3)).join(', ')}`);
});

test('toTfDataset over a loader that lends its ring buffers: tensors keep their own data', { timeout: 30_000 }, async () => {
  await tf.setBackend('cpu');
  const dir = join(tmp.dir, 'lend');
  await makeStore(dir, { n: 640, h: 4, w: 4 });
  const ds = await openDataset(dir);
  const opts = { batchSize: 32, workers: 1, normalize: { scale: 1, shift: 0 }, seed: 5, prefetch: 2 } as const;
  const lending = createLoader(ds.split('train'), { ...opts, reuseBuffers: true });
  const owned = createLoader(ds.split('train'), opts);
  const got = await toTfDataset(lending).take(8).toArray();
  const want: Float32Array[] = [];
  for await (const b of owned) { want.push(b.x as Float32Array); if (want.length === 8) break; }
  for (let i = 0; i < 8; i++) assert.deepEqual(got[i].xs.dataSync(), want[i], `batch ${i} was not overwritten by later batches`);
  tf.dispose(got.flatMap((e) => [e.xs, e.ys]));
  await lending.close(); await owned.close(); await ds.close();
});
