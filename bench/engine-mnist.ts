// One epoch of the seeded MLP 784-512-512-10 on full MNIST: test accuracy on the fast engine vs plain tfjs wasm
// (reference kernels) in one run. Usage: node --import tsx bench/engine-mnist.ts [trainSamples]
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import * as tfl from '@tensorflow/tfjs-layers';
import { installEngine, uninstallEngine } from '../src/engine/index.ts';
import { mnistAccuracy } from '../dev/mnist-check.ts';

const train = Number(process.argv[2] ?? 60000);
await tf.setBackend('wasm');
await tf.ready();
const rows: string[] = [];
for (const engine of [true, false]) {
  if (engine) {
    const st = installEngine(tf, 'wasm');
    if (!st.active) throw new Error(st.note);
  } else uninstallEngine(tf);
  const t0 = performance.now();
  const acc = await mnistAccuracy(tf, tfl, { hidden: [512, 512], train, test: 10000, seed: 7 });
  const sec = (performance.now() - t0) / 1000;
  rows.push(`| ${engine ? 'fast engine' : 'tfjs wasm (reference kernels)'} | ${(acc * 100).toFixed(2)}% | ${sec.toFixed(1)} s |`);
  process.stderr.write(`${rows[rows.length - 1]}\n`);
}
process.stdout.write(`MLP 784-512-512-10, seeded, one epoch on ${train} MNIST images, batch 128, Adam 1e-3; test on 10k\n\n| engine | test accuracy | wall time |\n| --- | --- | --- |\n${rows.join('\n')}\n`);
