// Where one training step of the built-in cnn spends its time: the fused conv step's phases (native/conv_step.cc),
// with the conv + pool kernels fused and separate, against trainOnBatch on the engine, batch 128, random data; phases
// in CPU ms of the calling thread (run with SLIMFIT_THREADS=1 to see all of the work).
// Usage: node --import tsx bench/cnn-step-profile.ts [steps=20]
import { loadavg } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { convTrainStep, installEngine } from '../src/engine/index.ts';
import { buildModel } from '../src/train/models.ts';
import { compileDefault } from '../src/train/loop.ts';

await tf.setBackend('wasm');
await tf.ready();
console.log(installEngine(tf, 'wasm').note, '| load average', loadavg().map((l) => l.toFixed(2)).join(' '));
const steps = Number(process.argv[2] ?? 20), B = 128;
const mk = () => { const m = buildModel('cnn', { inputShape: [28, 28, 1], classes: 10, seed: 1 }); compileDefault(m, 'adam', 1e-3); return m; };
let s = 1;
const x = Float32Array.from({ length: B * 784 }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32));
const y = new Float32Array(B * 10);
for (let i = 0; i < B; i++) y[i * 10 + (i % 10)] = 1;
const names = ['conv1', 'pool1', 'conv2', 'pool2', 'flatten', 'dense1', 'dense2'];
for (const separate of [false, true]) {
  const m = mk();
  const prof = new Float64Array(4 * 6 + 2);
  const r = convTrainStep(tf, m, true, { profile: prof, separateKernels: separate });
  if (!r.step) throw new Error(r.reason);
  for (let i = 0; i < 3; i++) r.step(x, y, B);
  prof.fill(0);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) r.step(x, y, B);
  const dt = (performance.now() - t0) / 1000;
  const ms = (v: number): string => (v / steps * 1000).toFixed(2);
  console.log(`\nfused step${separate ? ' (conv and pool as separate kernels, as trainOnBatch runs them)' : ''}: ${(steps * B / dt).toFixed(0)} samples/s, ${ms(dt)} ms per batch`);
  console.log('layer    forward  act/pool-grad  weight-grad  input-grad  (ms per batch)');
  names.filter((nm) => nm !== 'flatten').forEach((nm, l) => console.log(nm.padEnd(8), [0, 1, 2, 3].map((k) => ms(prof[4 * l + k]).padStart(8)).join('  ')));
  console.log(`adam ${ms(prof[24])} ms, softmax+loss ${ms(prof[25])} ms`);
  m.dispose();
}
const m = mk();
const xs = tf.tensor(x, [B, 28, 28, 1]), ys = tf.tensor2d(y, [B, 10]);
for (let i = 0; i < 3; i++) await m.trainOnBatch(xs, ys);
const t0 = performance.now();
for (let i = 0; i < steps; i++) await m.trainOnBatch(xs, ys);
const dt = (performance.now() - t0) / 1000;
console.log(`\ntrainOnBatch on the engine: ${(steps * B / dt).toFixed(0)} samples/s, ${(dt / steps * 1000).toFixed(2)} ms per batch`);
