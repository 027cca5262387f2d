// `slimfit train --model FILE` with a user's model.json: a topology-only file is built with fresh weights seeded from
// --seed (and says so); a file with weights is a warm start (and says so), which training really starts from.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { py, runCli, tempDir } from '../dev/helpers.ts';
import { initBackend } from '../src/train/backend.ts';
import { loadModel, loadModelForTraining, saveModel } from '../src/train/modelio.ts';

const tmp = tempDir('slimfit-model-json-');
after(() => tmp.cleanup());
const x = join(tmp.dir, 'x.npy'), y = join(tmp.dir, 'y.npy');
const topoFile = join(tmp.dir, 'topology.json'), wrapped = join(tmp.dir, 'wrapped.json'), trained = join(tmp.dir, 'trained');
const fast = ['--workers', '1', '--no-test'];

/** A small functional model of the user's own (conv + dense), not one of the built-ins. */
function userModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [8, 8, 1] });
  let h = tfl.layers.conv2d({ filters: 4, kernelSize: 3, activation: 'relu' }).apply(input) as tfl.SymbolicTensor;
  h = tfl.layers.flatten().apply(h) as tfl.SymbolicTensor;
  h = tfl.layers.dense({ units: 16, activation: 'relu' }).apply(h) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 4, activation: 'softmax' }).apply(h) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: out });
}

before(async () => {
  // 200 samples of 4 classes: the image's brightness says the class
  py(`
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(0)
y = (np.arange(200) % 4).astype(np.uint8)
x = (y[:, None, None, None] * 60 + rng.integers(0, 30, (200, 8, 8, 1))).astype(np.uint8)
np.save(d + '/x.npy', x); np.save(d + '/y.npy', y)
`, [tmp.dir]);
  await initBackend();
  const m = userModel();
  // the two topology-only forms: tfjs's bare toJSON(null, false), and a model.json without a weightsManifest
  writeFileSync(topoFile, JSON.stringify(m.toJSON(null, false)));
  writeFileSync(wrapped, JSON.stringify({ format: 'layers-model', modelTopology: m.toJSON(null, false) }));
  await saveModel(m, trained);
  m.dispose();
});

const weightsOf = (m: tfl.LayersModel) => m.getWeights().map((w) => Array.from(w.dataSync()));
function maxDiff(a: number[][], b: number[][]): number {
  assert.equal(a.length, b.length);
  let d = 0;
  a.forEach((w, i) => w.forEach((v, j) => { d = Math.max(d, Math.abs(v - b[i][j])); }));
  return d;
}

test('a topology-only model.json is built with fresh weights, seeded from the seed: same seed same weights', async () => {
  const a = await loadModelForTraining(topoFile, 3), b = await loadModelForTraining(wrapped, 3), c = await loadModelForTraining(topoFile, 4);
  assert.equal(a.warmStart, false);
  assert.match(a.note, /topology\.json has no weights: built its topology with fresh weights \(initializers seeded from --seed 3\)/);
  assert.equal(maxDiff(weightsOf(a.model), weightsOf(b.model)), 0);
  assert.ok(maxDiff(weightsOf(a.model), weightsOf(c.model)) > 0.01, 'another seed, other weights');
  const w = await loadModelForTraining(join(trained, 'model.json'), 3);
  assert.equal(w.warmStart, true);
  assert.match(w.note, /holds trained weights: using them as a warm start \(6 weight tensors\)/);
  for (const m of [a, b, c, w]) m.model.dispose();
  // evaluating or exporting needs weights: one clear error instead of tfjs's "6 of 6 weights are not set"
  await assert.rejects(loadModel(topoFile), /holds only a topology, no weights.*train it first/s);
  assert.equal(tf.memory().numTensors >= 0, true);
});

test('slimfit train --model topology.json trains it from fresh weights; --model trained/model.json starts from its weights', async () => {
  const runA = join(tmp.dir, 'runA');
  const a = await runCli(['train', '--x', x, '--y', y, '--model', topoFile, '--epochs', '3', '--batch', '10', '--lr', '0.01', '--seed', '3', '--out', runA, ...fast]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stderr.split('\n').filter((l) => /has no weights: built its topology with fresh weights \(initializers seeded from --seed 3\)/.test(l)).length, 1, a.stderr);
  assert.doesNotMatch(a.stderr, /warm start/);
  const log = readFileSync(join(runA, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(log.at(-1).accuracy > 0.5, `it learns: ${JSON.stringify(log.at(-1))}`);

  // A warm start from the first run's weights with a learning rate too small to move them: the weights stay the file's.
  const runB = join(tmp.dir, 'runB');
  const from = join(runA, 'model', 'model.json');
  const b = await runCli(['train', '--x', x, '--y', y, '--model', from, '--epochs', '1', '--lr', '1e-9', '--out', runB, ...fast]);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(b.stderr.split('\n').filter((l) => l.includes(`${from} holds trained weights: using them as a warm start`)).length, 1, b.stderr);
  const start = await loadModel(from), end = await loadModel(join(runB, 'model'));
  const d = maxDiff(weightsOf(start), weightsOf(end));
  assert.ok(d < 1e-5, `warm-started weights moved by ${d}`);
  // and not a fresh initialization: a fresh build of the same topology is far from them
  const fresh = await loadModelForTraining(topoFile, 0);
  assert.ok(maxDiff(weightsOf(fresh.model), weightsOf(end)) > 0.01);
  for (const m of [start, end, fresh.model]) m.dispose();
});
