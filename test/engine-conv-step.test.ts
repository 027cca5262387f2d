// The fused conv-net training step (src/engine/conv-step.ts, native/conv_step.cc): one native call per batch must do
// what trainOnBatch on the engine does (loss, accuracy, weights and Adam moments) for Conv2D / MaxPooling2D / Flatten /
// Dense chains and the two-branch model, with the first conv + pool as one kernel and as two; with a reduce callback
// (MPI) it hands the gradients over before Adam; every model it does not cover (batch norm, dropout, other merges)
// gets a reason and trains through trainOnBatch; the training loop uses it for the built-in cnn.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import * as tfl from '@tensorflow/tfjs-layers';
import { convTrainStep, installEngine, uninstallEngine } from '../src/engine/index.ts';
import { needsAddon, lcgFloats } from '../dev/helpers.ts';
import { compileDefault, trainEpochs } from '../src/train/loop.ts';
import { buildModel } from '../src/train/models.ts';
import { memLoader, mnistSlice } from './train-helpers.ts';

const SKIP = needsAddon('slimfit_engine');

const rand = lcgFloats(4242);
function oneHot(n: number, classes: number): Float32Array {
  const y = new Float32Array(n * classes);
  const u = rand(n);
  for (let i = 0; i < n; i++) y[i * classes + Math.min(classes - 1, Math.floor(((u[i] + 1) / 2) * classes))] = 1;
  return y;
}
const maxRel = (a: Float32Array, b: Float32Array): number => {
  let err = 0, scale = 0;
  for (let i = 0; i < a.length; i++) { err = Math.max(err, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])); }
  return err / (1 + scale);
};

async function engineOn(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
  assert.equal(installEngine(tf, 'wasm').active, true);
}

// epsilon 1e-4 (as in engine-fused.test.ts): with 1e-7 Adam's first steps turn float32 rounding of gradients that
// cancel to ~1e-7 into differences of ~lr.
const adam = (): tf.Optimizer => tf.train.adam(0.01, 0.9, 0.999, 1e-4);
let k = 0;
const init = () => ({ kernelInitializer: tfl.initializers.glorotUniform({ seed: 100 + ++k }), biasInitializer: tfl.initializers.randomNormal({ stddev: 0.1, seed: 200 + k }) });

/** Each case builds the same model twice (same seeds): one trained by the fused step, one by trainOnBatch. */
const CASES: { name: string; input: number[]; classes: number; batches: number[]; separate?: boolean; layers: () => tfl.layers.Layer[] }[] = [
  {
    name: 'built-in cnn shape (conv 3x3 relu + pool as one kernel, conv, pool, flatten, dense)', input: [16, 16, 1], classes: 10, batches: [32, 32, 7, 1, 32],
    layers: () => [
      tfl.layers.conv2d({ inputShape: [16, 16, 1], filters: 32, kernelSize: 3, activation: 'relu', ...init() }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu', ...init() }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 24, activation: 'relu', ...init() }),
      tfl.layers.dense({ units: 10, activation: 'softmax', ...init() }),
    ],
  },
  {
    name: 'the same with the first conv and pool as two kernels', input: [16, 16, 1], classes: 10, batches: [32, 7, 32], separate: true,
    layers: () => [
      tfl.layers.conv2d({ inputShape: [16, 16, 1], filters: 32, kernelSize: 3, activation: 'relu', ...init() }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu', ...init() }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 10, activation: 'softmax', ...init() }),
    ],
  },
  {
    name: '16 filters, odd image (13x11), pool 2 leaving a row and column out, no-bias dense', input: [13, 11, 1], classes: 4, batches: [9, 9, 2],
    layers: () => [
      tfl.layers.conv2d({ inputShape: [13, 11, 1], filters: 16, kernelSize: 3, activation: 'relu', ...init() }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 4, activation: 'softmax', useBias: false, ...init() }),
    ],
  },
  {
    name: "RGB input, 'same' padding, stride 2, linear no-bias conv, overlapping 3x3/2 pool, linear hidden dense", input: [12, 10, 3], classes: 5, batches: [8, 3, 8],
    layers: () => [
      tfl.layers.conv2d({ inputShape: [12, 10, 3], filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', ...init() }),
      tfl.layers.conv2d({ filters: 5, kernelSize: [3, 2], strides: 2, padding: 'same', activation: 'linear', useBias: false, ...init() }),
      tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 7, activation: 'linear', ...init() }),
      tfl.layers.dense({ units: 5, activation: 'softmax', ...init() }),
    ],
  },
  {
    name: 'RGB first conv (5 filters, relu) + pool 2 leaving a column out (positions kept, scalar loops), two-layer head', input: [10, 9, 3], classes: 6, batches: [6, 11, 6],
    layers: () => [
      tfl.layers.conv2d({ inputShape: [10, 9, 3], filters: 5, kernelSize: 3, activation: 'relu', ...init() }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 9, activation: 'relu', ...init() }),
      tfl.layers.dense({ units: 6, activation: 'softmax', ...init() }),
    ],
  },
  {
    name: '[h, w] samples through Reshape, conv straight into dense', input: [9, 8], classes: 3, batches: [5, 5],
    layers: () => [
      tfl.layers.reshape({ inputShape: [9, 8], targetShape: [9, 8, 1] }),
      tfl.layers.conv2d({ filters: 4, kernelSize: 2, activation: 'relu', ...init() }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 3, activation: 'softmax', ...init() }),
    ],
  },
];

function build(c: (typeof CASES)[number], from: number): tfl.Sequential {
  k = from;
  const m = tfl.sequential({ layers: c.layers() });
  m.compile({ optimizer: adam(), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
  return m;
}

test('fused conv step = trainOnBatch on the engine: loss, accuracy, weights and Adam moments over several steps', { skip: SKIP }, async () => {
  await engineOn();
  for (const c of CASES) {
    const a = build(c, 0), b = build(c, 0);
    const r = convTrainStep(tf, a, true, { separateKernels: c.separate });
    assert.ok(r.step, `${c.name}: eligible (${r.reason})`);
    const features = c.input.reduce((p, d) => p * d, 1);
    assert.equal(r.inputSize, features);
    assert.equal(r.classes, c.classes);
    for (const n of c.batches) {
      const x = rand(n * features, 2), y = oneHot(n, c.classes);
      const got = r.step(x, y, n);
      assert.ok(got, `${c.name}: the step ran`);
      const xs = tf.tensor(x, [n, ...c.input]), ys = tf.tensor2d(y, [n, c.classes]);
      const want = (await b.trainOnBatch(xs, ys)) as number[];
      tf.dispose([xs, ys]);
      assert.ok(Math.abs(got[0] - want[0]) <= 1e-5 * (1 + Math.abs(want[0])), `${c.name} batch ${n}: loss ${got[0]} vs ${want[0]}`);
      assert.ok(Math.abs(got[1] - want[1]) <= 1e-6, `${c.name} batch ${n}: accuracy ${got[1]} vs ${want[1]}`);
    }
    const wa = a.getWeights(), wb = b.getWeights();
    assert.equal(wa.length, wb.length);
    wa.forEach((w, i) => {
      const e = maxRel(w.dataSync() as Float32Array, wb[i].dataSync() as Float32Array);
      assert.ok(e < 2e-5, `${c.name}: weight ${i} ${w.shape} error ${e}`);
    });
    const oa = await a.optimizer.getWeights(), ob = await b.optimizer.getWeights();
    assert.equal(oa.length, ob.length);
    oa.forEach((w, i) => assert.ok(maxRel(w.tensor.dataSync() as Float32Array, ob[i].tensor.dataSync() as Float32Array) < 1e-4, `${c.name}: optimizer ${w.name}`));
    a.dispose(); b.dispose();
  }
  uninstallEngine(tf);
});

test('the fused conv step is deterministic: two models trained on the same batches end bit for bit equal', { skip: SKIP }, async () => {
  await engineOn();
  const c = CASES[0];
  const [a, b] = [build(c, 0), build(c, 0)];
  const [ra, rb] = [convTrainStep(tf, a, true), convTrainStep(tf, b, true)];
  const features = c.input.reduce((p, d) => p * d, 1);
  for (const n of [32, 32, 9]) {
    const x = rand(n * features, 2), y = oneHot(n, c.classes);
    assert.deepEqual(ra.step!(x, y, n), rb.step!(x, y, n));
  }
  const wa = a.getWeights(), wb = b.getWeights();
  wa.forEach((w, i) => assert.deepEqual(w.dataSync(), wb[i].dataSync(), `weight ${i}`));
  a.dispose(); b.dispose();
  uninstallEngine(tf);
});

test('the fused conv step leaks no tensors, keeps predict working, refuses while a weight is shared, and checks its batch', { skip: SKIP }, async () => {
  await engineOn();
  const m = build(CASES[2], 0);
  const r = convTrainStep(tf, m, true);
  assert.ok(r.step);
  const f = 13 * 11;
  r.step(rand(4 * f), oneHot(4, 4), 4);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 20; i++) r.step(rand(4 * f), oneHot(4, 4), 4);
  assert.equal(tf.memory().numTensors, before, 'no tensors created per step');
  const p = tf.tidy(() => tf.sum(m.predict(tf.tensor(rand(3 * f), [3, 13, 11, 1])) as tf.Tensor, -1).dataSync());
  p.forEach((s: number) => assert.ok(Math.abs(s - 1) < 1e-5, 'predict gives probabilities'));
  const kernel = (m.layers[0] as unknown as { kernel: { read(): tf.Variable } }).kernel.read();
  const shared = tf.clone(kernel);
  const snap = kernel.dataSync().slice();
  assert.equal(r.step(rand(4 * f), oneHot(4, 4), 4), null);
  assert.deepEqual(kernel.dataSync(), snap, 'nothing changed');
  shared.dispose();
  assert.ok(r.step(rand(4 * f), oneHot(4, 4), 4), 'runs again once the buffer is no longer shared');
  assert.throws(() => r.step(rand(10), oneHot(4, 4), 4), /needs x of 572/);
  m.dispose();
  uninstallEngine(tf);
});

test('conv models the fused step does not cover get a reason', { skip: SKIP }, async () => {
  await engineOn();
  const seq = (layers: tfl.layers.Layer[], compile: Partial<tfl.ModelCompileArgs> = {}): tfl.LayersModel => {
    const m = tfl.sequential({ layers });
    m.compile({ optimizer: tf.train.adam(), loss: 'categoricalCrossentropy', ...compile });
    return m;
  };
  const conv = (o: Partial<Parameters<typeof tfl.layers.conv2d>[0]> = {}) => tfl.layers.conv2d({ inputShape: [8, 8, 1], filters: 4, kernelSize: 3, activation: 'relu', ...o });
  const out = () => [tfl.layers.flatten(), tfl.layers.dense({ units: 3, activation: 'softmax' })];
  const reasons: [string, () => tfl.LayersModel, RegExp][] = [
    ['batch norm', () => seq([conv(), tfl.layers.batchNormalization(), ...out()]), /layer BatchNormalization has no fused step/],
    ['dropout', () => seq([conv(), tfl.layers.dropout({ rate: 0.25 }), ...out()]), /layer Dropout has no fused step/],
    ['average pool', () => seq([conv(), tfl.layers.averagePooling2d({ poolSize: 2 }), ...out()]), /layer AveragePooling2D has no fused step/],
    ['dilated', () => seq([conv({ dilationRate: 2 }), ...out()]), /dilated Conv2D/],
    ['tanh conv', () => seq([conv({ activation: 'tanh' }), ...out()]), /activation tanh/],
    ['sgd', () => seq([conv(), ...out()], { optimizer: tf.train.sgd(0.1) }), /optimizer is not Adam/],
    ['frozen', () => { const c = conv(); c.trainable = false; return seq([c, ...out()]); }, /frozen layer|trainable weights/],
    ['regularizer', () => seq([conv({ kernelRegularizer: tfl.regularizers.l2({ l2: 0.01 }) }), ...out()]), /regularizers/],
    ['shared layer', () => {
      const inp = tfl.input({ shape: [8, 8, 1] });
      const c = conv({ inputShape: undefined });
      const a = tfl.layers.flatten().apply(c.apply(inp)) as tfl.SymbolicTensor;
      const b = tfl.layers.flatten().apply(c.apply(inp)) as tfl.SymbolicTensor;
      const o = tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(tfl.layers.concatenate().apply([a, b])) as tfl.SymbolicTensor;
      const m = tfl.model({ inputs: inp, outputs: o });
      m.compile({ optimizer: tf.train.adam(), loss: 'categoricalCrossentropy' });
      return m;
    }, /shared/],
    ['add merge', () => {
      const inp = tfl.input({ shape: [8, 8, 1] });
      const a = tfl.layers.flatten().apply(conv({ inputShape: undefined }).apply(inp)) as tfl.SymbolicTensor;
      const b = tfl.layers.flatten().apply(conv({ inputShape: undefined }).apply(inp)) as tfl.SymbolicTensor;
      const o = tfl.layers.dense({ units: 3, activation: 'softmax' }).apply(tfl.layers.add().apply([a, b])) as tfl.SymbolicTensor;
      const m = tfl.model({ inputs: inp, outputs: o });
      m.compile({ optimizer: tf.train.adam(), loss: 'categoricalCrossentropy' });
      return m;
    }, /layer Add/],
    ['dense only', () => seq([tfl.layers.dense({ inputShape: [5], units: 3, activation: 'softmax' })]), /no Conv2D layer/],
  ];
  for (const [name, make, re] of reasons) {
    const m = make();
    const r = convTrainStep(tf, m, true);
    assert.equal(r.step, null, name);
    assert.match(r.reason!, re, name);
    m.dispose();
  }
  const ok = seq([conv(), ...out()]);
  assert.match(convTrainStep(tf, ok, false).reason!, /fast engine is not active/);
  ok.dispose();
  const script = `
    import { convTrainStep } from ${JSON.stringify(new URL('../src/engine/conv-step.ts', import.meta.url).pathname)};
    console.log(convTrainStep(null, null, true).reason);`;
  for (const [flag, want] of [['fused', 'disabled by SLIMFIT_DISABLE=fused'], ['fused-cnn', 'disabled by SLIMFIT_DISABLE=fused-cnn']]) {
    const got = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, SLIMFIT_DISABLE: flag }, encoding: 'utf8' });
    assert.equal(got.trim(), want);
  }
  uninstallEngine(tf);
});

test('trainEpochs trains the built-in cnn by the fused conv step, says so, and learns like trainOnBatch', { skip: SKIP }, async () => {
  await engineOn();
  const data = mnistSlice(256);
  const mk = () => { const m = buildModel('cnn', { inputShape: [28, 28], classes: 10, seed: 3 }); compileDefault(m, 'adam', 1e-3); return m; };
  const lines: string[] = [];
  const a = mk(), b = mk();
  const h1 = await trainEpochs(a, memLoader(data.x, data.y, [28, 28], { batchSize: 32, seed: 2 }), { epochs: 2, progress: false, log: (l) => lines.push(l) });
  const h2 = await trainEpochs(b, memLoader(data.x, data.y, [28, 28], { batchSize: 32, seed: 2 }), { epochs: 2, progress: false, fused: false, log: (l) => lines.push(l) });
  assert.match(lines[0], /train step: fused/);
  assert.match(lines[1], /trainOnBatch \(no fused step: turned off by the caller\)/);
  for (let e = 0; e < 2; e++) {
    assert.ok(Math.abs(h1.epochs[e].loss - h2.epochs[e].loss) < 2e-3, `epoch ${e + 1} loss ${h1.epochs[e].loss} vs ${h2.epochs[e].loss}`);
    assert.ok(Math.abs(h1.epochs[e].accuracy - h2.epochs[e].accuracy) < 0.02, `epoch ${e + 1} accuracy`);
  }
  assert.ok(h1.epochs[1].loss < h1.epochs[0].loss, 'it learns');
  assert.equal(h1.epochs[1].numTensors, h1.epochs[0].numTensors, 'no tensor growth over epochs');
  a.dispose(); b.dispose();
  uninstallEngine(tf);
});

test('the two-branch model (conv branch + dense branch, concatenated): fused conv step = trainOnBatch', { skip: SKIP }, async () => {
  await engineOn();
  for (const [shape, batches] of [[[28, 28], [32, 5, 32]], [[12, 10, 1], [16, 16]]] as [number[], number[]][]) {
    const mk = () => {
      const m = buildModel('two-branch', { inputShape: shape, classes: 10, seed: 5 });
      m.compile({ optimizer: adam(), loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
      return m;
    };
    const a = mk(), b = mk();
    const r = convTrainStep(tf, a, true);
    assert.ok(r.step, `two-branch ${shape}: eligible (${r.reason})`);
    const features = shape.reduce((p, d) => p * d, 1);
    for (const n of batches) {
      const x = rand(n * features, 2), y = oneHot(n, 10);
      const got = r.step(x, y, n)!;
      const xs = tf.tensor(x, [n, ...shape]), ys = tf.tensor2d(y, [n, 10]);
      const want = (await b.trainOnBatch(xs, ys)) as number[];
      tf.dispose([xs, ys]);
      assert.ok(Math.abs(got[0] - want[0]) <= 1e-5 * (1 + Math.abs(want[0])), `two-branch batch ${n}: loss ${got[0]} vs ${want[0]}`);
      assert.ok(Math.abs(got[1] - want[1]) <= 1e-6, `two-branch batch ${n}: accuracy`);
    }
    const wa = a.getWeights(), wb = b.getWeights();
    wa.forEach((w, i) => {
      const e = maxRel(w.dataSync() as Float32Array, wb[i].dataSync() as Float32Array);
      assert.ok(e < 2e-5, `two-branch ${shape}: weight ${i} ${w.shape} error ${e}`);
    });
    const oa = await a.optimizer.getWeights(), ob = await b.optimizer.getWeights();
    oa.forEach((w, i) => assert.ok(maxRel(w.tensor.dataSync() as Float32Array, ob[i].tensor.dataSync() as Float32Array) < 1e-4, `two-branch: optimizer ${w.name}`));
    a.dispose(); b.dispose();
  }
  uninstallEngine(tf);
});

test('with reduce (data-parallel training), the step hands every gradient to it before Adam: identity reduce = trainOnBatch', { skip: SKIP }, async () => {
  await engineOn();
  for (const c of [CASES[0], CASES[3]]) {
    const a = build(c, 0), b = build(c, 0);
    let calls = 0, length = 0;
    const r = convTrainStep(tf, a, true, { extraFloats: 1, reduce: (g) => { calls++; length = g.length; g[g.length - 1] = 7; } });
    assert.ok(r.step, `${c.name}: eligible (${r.reason})`);
    const features = c.input.reduce((p, d) => p * d, 1);
    for (const n of c.batches) {
      const x = rand(n * features, 2), y = oneHot(n, c.classes);
      const got = r.step(x, y, n)!;
      const xs = tf.tensor(x, [n, ...c.input]), ys = tf.tensor2d(y, [n, c.classes]);
      const want = (await b.trainOnBatch(xs, ys)) as number[];
      tf.dispose([xs, ys]);
      assert.ok(Math.abs(got[0] - want[0]) <= 1e-5 * (1 + Math.abs(want[0])), `${c.name} batch ${n}: loss ${got[0]} vs ${want[0]}`);
    }
    assert.equal(calls, c.batches.length);
    assert.equal(length, a.countParams() + 1, 'every weight\'s gradient plus the extra float');
    const wa = a.getWeights(), wb = b.getWeights();
    wa.forEach((w, i) => {
      const e = maxRel(w.dataSync() as Float32Array, wb[i].dataSync() as Float32Array);
      assert.ok(e < 2e-5, `${c.name} (reduce): weight ${i} ${w.shape} error ${e}`);
    });
    r.dispose();
    a.dispose(); b.dispose();
  }
  uninstallEngine(tf);
});
