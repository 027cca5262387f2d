// ONNX export: each model runs in onnxruntime (an independent runtime, the npm package onnxruntime-node) and gives
// tfjs's predictions within 1e-5; Debian's python3-onnx checker (when installed) accepts every file; the CLI writes
// RUN/model.onnx; layers without a conversion are refused by name and class.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import * as ort from 'onnxruntime-node';
import { isSlimfitError } from '../src/core/errors.ts';
import { initBackend } from '../src/train/backend.ts';
import { buildModel } from '../src/train/models.ts';
import { loadModel, saveModel } from '../src/train/modelio.ts';
import { exportOnnx, toOnnx } from '../src/train/onnx.ts';
import { exportModel } from '../src/train/export-model.ts';
import { runCli, tempDir } from '../dev/helpers.ts';

const TOL = 1e-5;
const tmp = tempDir('slimfit-onnx-');
after(() => tmp.cleanup());
before(async () => { await initBackend(); });

/** Debian's python3 with the onnx package (python3-onnx), or null when it is not installed. */
const pyOnnx = spawnSync('/usr/bin/python3', ['-c', 'import onnx'], { stdio: 'ignore' }).status === 0 ? '/usr/bin/python3' : null;

/** Run onnx.checker (full check: types and shapes inferred through the graph) on each file; throws on the first it rejects. */
function onnxCheck(files: string[]): void {
  if (!pyOnnx) return;
  const r = spawnSync(pyOnnx, ['-c', `
import onnx, sys
for f in sys.argv[1:]:
    m = onnx.load(f)
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version == 13, m.opset_import
`, ...files], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

/** Seeded numbers in [lo, hi). */
function rand(n: number, seed: number, lo: number, hi: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}

/**
 * Give every bias, BatchNormalization gamma/beta and moving statistic seeded non-trivial values (fresh models have
 * zero biases and unit statistics, which would leave their paths untested); kernels keep their glorot values.
 */
function perturb(model: tfl.LayersModel, seed: number): void {
  const ws = model.weights.map((w, i) => {
    const name = w.originalName ?? w.name;
    const t = w.read();
    const n = t.size;
    if (/moving_variance|gamma/.test(name)) return tf.tensor(rand(n, seed + i, 0.5, 1.5), t.shape);
    if (/bias|beta|moving_mean/.test(name)) return tf.tensor(rand(n, seed + i, -0.2, 0.2), t.shape);
    return t.clone();
  });
  model.setWeights(ws);
  tf.dispose(ws);
}

/**
 * Max |tfjs - onnxruntime| over the outputs of `model` on `batch` seeded samples fed to the ONNX file `file`; with
 * `raw`, the samples are drawn in [lo, hi) and tfjs gets them through `prep` (the normalization the graph includes).
 */
async function maxDiff(model: tfl.LayersModel, file: string, batch = 9, raw?: { lo: number; hi: number; prep: (x: Float32Array) => Float32Array }): Promise<number> {
  const session = await ort.InferenceSession.create(file);
  const xs = model.inputs.map((st, i) => {
    const shape = [batch, ...st.shape.slice(1)] as number[];
    return { shape, data: rand(shape.reduce((a, d) => a * d, 1), 100 + i, raw?.lo ?? -2, raw?.hi ?? 2) };
  });
  const feeds = Object.fromEntries(session.inputNames.map((n, i) => [n, new ort.Tensor('float32', xs[i].data, xs[i].shape)]));
  const got = await session.run(feeds);
  const inputs = xs.map((x) => tf.tensor(raw ? raw.prep(x.data) : x.data, x.shape));
  const pred = model.predict(inputs.length === 1 ? inputs[0] : inputs);
  const want = Array.isArray(pred) ? pred : [pred];
  let d = 0;
  session.outputNames.forEach((n, i) => {
    const w = want[i].dataSync(), o = got[n].data as Float32Array;
    assert.deepEqual([...got[n].dims], want[i].shape, `output ${n} shape`);
    for (let j = 0; j < w.length; j++) d = Math.max(d, Math.abs(w[j] - o[j]));
  });
  tf.dispose([...inputs, ...want]);
  await session.release();
  return d;
}

/** The user model of the issue: Conv2D + BatchNormalization + AveragePooling + Dropout, and more layers besides. */
function userModel(): tfl.LayersModel {
  const init = (k: number) => ({ kernelInitializer: tfl.initializers.glorotUniform({ seed: k }) });
  const input = tfl.input({ shape: [15, 13, 3], name: 'image' });
  let a = tfl.layers.conv2d({ filters: 8, kernelSize: 3, padding: 'same', ...init(1) }).apply(input) as tfl.SymbolicTensor;
  a = tfl.layers.batchNormalization({ epsilon: 1e-3 }).apply(a) as tfl.SymbolicTensor;
  a = tfl.layers.activation({ activation: 'relu' }).apply(a) as tfl.SymbolicTensor;
  a = tfl.layers.averagePooling2d({ poolSize: 2, padding: 'same' }).apply(a) as tfl.SymbolicTensor; // odd sizes: padded pool
  a = tfl.layers.dropout({ rate: 0.5 }).apply(a) as tfl.SymbolicTensor;
  a = tfl.layers.conv2d({ filters: 6, kernelSize: [3, 2], strides: 2, padding: 'same', activation: 'elu', ...init(2) }).apply(a) as tfl.SymbolicTensor;
  a = tfl.layers.maxPooling2d({ poolSize: 2, strides: 1 }).apply(a) as tfl.SymbolicTensor;
  const b = tfl.layers.conv2d({ filters: 6, kernelSize: 5, dilationRate: 2, useBias: false, activation: 'swish', ...init(3) }).apply(input) as tfl.SymbolicTensor;
  const b2 = tfl.layers.globalAveragePooling2d({}).apply(tfl.layers.batchNormalization({ center: false }).apply(b)) as tfl.SymbolicTensor;
  const flat = tfl.layers.flatten().apply(a) as tfl.SymbolicTensor;
  let m = tfl.layers.concatenate().apply([flat, b2]) as tfl.SymbolicTensor;
  m = tfl.layers.dense({ units: 16, activation: 'tanh', ...init(4) }).apply(m) as tfl.SymbolicTensor;
  m = tfl.layers.batchNormalization({ scale: false }).apply(m) as tfl.SymbolicTensor;
  m = tfl.layers.leakyReLU({ alpha: 0.1 }).apply(m) as tfl.SymbolicTensor;
  const out = tfl.layers.dense({ units: 4, activation: 'softmax', ...init(5) }).apply(m) as tfl.SymbolicTensor;
  const aux = tfl.layers.dense({ units: 3, activation: 'sigmoid', ...init(6) }).apply(b2) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: [out, aux], name: 'user' });
}

/** channelsFirst convolutions and pools (tfjs's own NCHW layers: no transposes around them) and their Flatten. */
function channelsFirstModel(): tfl.LayersModel {
  const m = tfl.sequential({ name: 'chfirst' });
  const init = (k: number) => ({ kernelInitializer: tfl.initializers.glorotUniform({ seed: 40 + k }) });
  m.add(tfl.layers.conv2d({ inputShape: [3, 9, 8], filters: 4, kernelSize: 3, padding: 'same', strides: 2, dataFormat: 'channelsFirst', activation: 'relu', ...init(1) }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2, padding: 'same', dataFormat: 'channelsFirst' }));
  m.add(tfl.layers.conv2d({ filters: 5, kernelSize: 2, dataFormat: 'channelsFirst', ...init(2) }));
  m.add(tfl.layers.flatten({ dataFormat: 'channelsFirst' }));
  m.add(tfl.layers.dense({ units: 3, activation: 'softmax', ...init(3) }));
  return m;
}

/** Every other activation, each on its own branch (values in a wide range), concatenated on channels while channels-first. */
function activationsModel(): tfl.LayersModel {
  const input = tfl.input({ shape: [6, 6, 2] });
  const x = tfl.layers.conv2d({ filters: 4, kernelSize: 1, activation: 'selu', kernelInitializer: tfl.initializers.randomNormal({ stddev: 1, seed: 10 }) }).apply(input) as tfl.SymbolicTensor;
  const acts = ['hardSigmoid', 'softplus', 'softsign', 'relu6', 'mish', 'gelu', 'linear', 'sigmoid', 'elu'] as const;
  const branches = acts.map((act, k) => tfl.layers.conv2d({
    filters: 2, kernelSize: 1, activation: act, kernelInitializer: tfl.initializers.randomNormal({ stddev: 2, seed: 11 + k }),
  }).apply(x) as tfl.SymbolicTensor);
  let y = tfl.layers.concatenate().apply(branches) as tfl.SymbolicTensor;
  y = tfl.layers.reLU({ maxValue: 2 }).apply(y) as tfl.SymbolicTensor;
  y = tfl.layers.elu({}).apply(y) as tfl.SymbolicTensor;
  y = tfl.layers.softmax({ axis: -1 }).apply(y) as tfl.SymbolicTensor; // over channels while the graph holds them at axis 1
  y = tfl.layers.reshape({ targetShape: [36, 2 * acts.length] }).apply(y) as tfl.SymbolicTensor;
  // logSoftmax is a registered tfjs activation missing from the ActivationIdentifier type
  y = tfl.layers.dense({ units: 3, activation: 'logSoftmax' as 'softmax', kernelInitializer: tfl.initializers.randomNormal({ stddev: 3, seed: 30 }) }).apply(y) as tfl.SymbolicTensor;
  return tfl.model({ inputs: input, outputs: y, name: 'acts' });
}

test('mlp, cnn, two-branch and user models: onnxruntime matches tfjs within 1e-5', async () => {
  const cases: Array<[string, () => tfl.LayersModel]> = [
    ['mlp', () => buildModel('mlp', { inputShape: [12, 12, 1], classes: 10, seed: 1 })],
    ['cnn', () => buildModel('cnn', { inputShape: [28, 28, 1], classes: 10, seed: 2 })],
    ['cnn-rgb', () => buildModel('cnn', { inputShape: [14, 16, 3], classes: 5, seed: 3 })],
    ['two-branch', () => buildModel('two-branch', { inputShape: [28, 28, 1], classes: 10, seed: 4 })],
    ['two-branch-2d-input', () => buildModel('two-branch', { inputShape: [10, 12], classes: 3, seed: 5 })],
    ['mlp-flat-input', () => buildModel('mlp', { inputShape: [20], classes: 4, seed: 6 })],
    ['user-conv-bn-avgpool-dropout', userModel],
    ['activations', activationsModel],
    ['channels-first', channelsFirstModel],
  ];
  const files: string[] = [];
  const report: string[] = [];
  for (const [name, make] of cases) {
    const model = make();
    perturb(model, files.length * 100);
    const file = join(tmp.dir, `${name}.onnx`);
    await exportOnnx(model, file);
    files.push(file);
    const d = await maxDiff(model, file);
    report.push(`${name} ${d.toExponential(2)}`);
    assert.ok(d <= TOL, `${name}: max |tfjs - onnxruntime| = ${d}`);
    model.dispose();
  }
  console.log(`onnx round trip, max abs difference (backend ${tf.getBackend()}): ${report.join(', ')}`);
  onnxCheck(files);
  if (!pyOnnx) console.log('onnx round trip: /usr/bin/python3 has no onnx package (Debian python3-onnx); checker skipped');
  assert.deepEqual(readdirSync(tmp.dir).filter((f) => f.includes('.tmp-')), [], 'no temporary files left');
});

test('normalization in the graph: per-channel x * scale + shift before the model, as the loader does', async () => {
  const model = buildModel('cnn', { inputShape: [12, 12, 3], classes: 4, seed: 8 });
  perturb(model, 8);
  const mean = [120, 80.5, 30], std = [60, 40, 0.5];
  const scale = std.map((s) => 1 / s), shift = mean.map((m, c) => -m / std[c]);
  const file = join(tmp.dir, 'normalized.onnx');
  await exportOnnx(model, file, { normalization: { scale, shift } });
  const prep = (x: Float32Array) => x.map((v, i) => v * scale[i % 3] + shift[i % 3]);
  const d = await maxDiff(model, file, 9, { lo: 0, hi: 256, prep });
  console.log(`onnx round trip with per-channel normalization in the graph: max abs difference ${d.toExponential(2)}`);
  assert.ok(d <= TOL, `max difference ${d}`);
  onnxCheck([file]);
  for (const bad of [{ scale: [1, 2], shift: [0, 0] }, { scale: [1], shift: [Number.NaN] }, { scale: [1, 1, 1], shift: [0] }]) {
    assert.throws(() => toOnnx(model, { normalization: bad }), (e: Error) => isSlimfitError(e) && /normalization must be \{ scale, shift \} with 1 or 3 finite numbers/.test(e.message));
  }
  model.dispose();
});

test('a layer or activation without a conversion is refused by name and class', () => {
  const up = tfl.sequential({ layers: [tfl.layers.upSampling2d({ inputShape: [4, 4, 1], size: [2, 2], name: 'grow' })] });
  assert.throws(() => toOnnx(up), (e: Error) => isSlimfitError(e) && /layer 'grow' \(class UpSampling2D\)/.test(e.message) && /supported layers: .*Conv2D/.test(e.message));
  const act = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [3], units: 2, activation: 'gelu_new', name: 'head' })] });
  assert.throws(() => toOnnx(act), (e: Error) => isSlimfitError(e) && /layer 'head' \(class Dense\).*activation 'gelu_new'/.test(e.message));
  // tfjs's own kernels normalize a channels-first BatchNormalization along the last axis (tensorflow/tfjs#1106)
  const bn = tfl.sequential({ layers: [tfl.layers.batchNormalization({ inputShape: [2, 4, 4], axis: 1, name: 'chfirst' })] });
  assert.throws(() => toOnnx(bn), (e: Error) => isSlimfitError(e) && /layer 'chfirst' \(class BatchNormalization\).*axis 1 of a rank-4 input.*tfjs#1106/.test(e.message));
  tf.dispose([up, act, bn].flatMap((m) => m.getWeights()));
});

test('slimfit export-model RUN: writes RUN/model.onnx, says the input and normalization; --include-normalization, --json, bad format; topology-only file and missing folder refused', async () => {
  const run = join(tmp.dir, 'run');
  const model = buildModel('cnn', { inputShape: [12, 12, 1], classes: 3, seed: 7 });
  perturb(model, 7);
  await saveModel(model, join(run, 'model'));
  model.dispose();
  writeFileSync(join(run, 'run.json'), JSON.stringify({ data: join(tmp.dir, 'nowhere'), model: 'cnn', normalize: { scale: 1 / 255, shift: 0 } }));
  const r = await runCli(['export-model', run, '--format', 'onnx']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^wrote ${join(run, 'model.onnx').replace(/[.]/g, '\\.')} \\(ONNX opset 13, `, 'm'));
  assert.match(r.stdout, /^input: conv2d_Conv2D\d+_input \[batch,12,12,1\] float32, NHWC as tfjs; output: dense_Dense\d+_output \[batch,3\]$/m);
  assert.match(r.stdout, /normalized samples before the model: x \* 0\.00392156862745098 \+ 0; feed the ONNX model the same/);
  const loaded = await loadModel(join(run, 'model'));
  const d = await maxDiff(loaded, join(run, 'model.onnx'));
  assert.ok(d <= TOL, `CLI export: max difference ${d}`);
  loaded.dispose();

  const raw = join(tmp.dir, 'raw.onnx');
  const n = await runCli(['export-model', run, '--include-normalization', '--out', raw]);
  assert.equal(n.code, 0, n.stderr);
  assert.match(n.stdout, /the graph starts with the run's normalization, x \* 0\.00392156862745098 \+ 0: feed it samples in stored units/);
  const again = await loadModel(join(run, 'model'));
  const dRaw = await maxDiff(again, raw, 9, { lo: 0, hi: 256, prep: (x) => x.map((v) => v / 255) });
  assert.ok(dRaw <= TOL, `--include-normalization: max difference ${dRaw}`);
  again.dispose();
  // (library calls from here on: the CLI prints these SlimfitErrors as one line with exit code 1)
  await assert.rejects(exportModel(join(run, 'model'), { includeNormalization: true }), /only a run folder \(runs\/NAME\) records the normalization/);

  const out = join(tmp.dir, 'elsewhere.onnx');
  const j = await runCli(['export-model', join(run, 'model', 'model.json'), '--out', out, '--json']);
  assert.equal(j.code, 0, j.stderr);
  const o = JSON.parse(j.stdout);
  assert.equal(o.out, out);
  assert.equal(o.opset, 13);
  assert.deepEqual(o.inputs[0].shape, [null, 12, 12, 1]);
  assert.equal(o.normalization, null); // a bare model.json carries no run settings
  assert.equal(o.normalizationIncluded, false);
  assert.deepEqual(readFileSync(out), readFileSync(join(run, 'model.onnx')), 'same model, same bytes');

  const bad = await runCli(['export-model', run, '--format', 'tflite']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--format.*tflite.*onnx/s);

  const topo = join(tmp.dir, 'topology.json');
  writeFileSync(topo, JSON.stringify({ modelTopology: JSON.parse(readFileSync(join(run, 'model', 'model.json'), 'utf8')).modelTopology }));
  await assert.rejects(exportModel(topo), (e: Error) => isSlimfitError(e) && /topology\.json: the model file holds only a topology, no weights.*train it first/s.test(e.message));
  await assert.rejects(exportModel(run, { out: join(tmp.dir, 'no', 'such', 'dir', 'm.onnx') }),
    (e: Error) => isSlimfitError(e) && /m\.onnx: the folder '.*no\/such\/dir' for the ONNX file does not exist/.test(e.message));
  assert.ok(!existsSync(join(tmp.dir, 'no')));
});
