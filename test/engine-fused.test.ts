// The fused Dense training step (src/engine/dense-step.ts): one native call must do exactly what tfjs's trainOnBatch
// does (loss, accuracy, weights and Adam moments), refuse every model it does not cover with a reason, leave no tensors
// behind, and reach the reference accuracy on MNIST. The training loop uses it and says so.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFileSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import * as tfl from '@tensorflow/tfjs-layers';
import { denseTrainStep, installEngine, loadAddon, uninstallEngine } from '../src/engine/index.ts';
import { mnistAccuracy } from '../dev/mnist-check.ts';
import { needsAddon, lcgFloats } from '../dev/helpers.ts';
import { compileDefault, trainEpochs } from '../src/train/loop.ts';
import { buildModel } from '../src/train/models.ts';
import { memLoader, mnistSlice } from './train-helpers.ts';

const { addon } = loadAddon();
const SKIP = needsAddon('slimfit_engine');

const rand = lcgFloats(777);
function oneHot(n: number, classes: number): Float32Array {
  const y = new Float32Array(n * classes);
  const u = rand(n);
  for (let i = 0; i < n; i++) y[i * classes + Math.min(classes - 1, Math.floor(((u[i] + 1) / 2) * classes))] = 1;
  return y;
}

interface Spec { input: number[]; layers: { units: number; activation: 'relu' | 'linear' | 'softmax'; useBias?: boolean }[]; flatten?: boolean }

function build(spec: Spec, compile: Partial<tfl.ModelCompileArgs> = {}): tfl.Sequential {
  const m = tfl.sequential();
  if (spec.flatten) m.add(tfl.layers.flatten({ inputShape: spec.input }));
  spec.layers.forEach((l, i) => m.add(tfl.layers.dense({
    ...(i === 0 && !spec.flatten ? { inputShape: spec.input } : {}), units: l.units, activation: l.activation, useBias: l.useBias ?? true,
    kernelInitializer: tfl.initializers.glorotUniform({ seed: 10 + i }), biasInitializer: tfl.initializers.randomNormal({ stddev: 0.1, seed: 50 + i }),
  })));
  // epsilon 1e-4, not 1e-7: Adam's first steps map a gradient g to ~lr*g/(|g|+eps), so with eps 1e-7 two float32
  // summation orders of a gradient that cancels to ~1e-7 already differ by ~lr; the MNIST test below uses the default.
  m.compile({ optimizer: tf.train.adam(0.01, 0.9, 0.999, 1e-4), loss: 'categoricalCrossentropy', metrics: ['accuracy'], ...compile });
  return m;
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

// With a library linked the default GEMM mode ('auto') sends some shapes to it (oneDNN before OpenBLAS) and some to the
// own kernels: it, OpenBLAS when oneDNN is the default's library, and the own kernels alone (a build without a library)
// must all match trainOnBatch.
const INFO = addon?.info();
const MODES = !INFO || INFO.blas === 'own' ? (['own'] as const) : INFO.blas === 'onednn' && INFO.openblas ? (['auto', 'openblas', 'own'] as const) : (['auto', 'own'] as const);

test('fused Dense step = trainOnBatch: loss, accuracy, weights and Adam moments over several steps, odd sizes, batch 1, no bias, linear hidden, Flatten', { skip: SKIP }, async () => {
  await engineOn();
  const defaultMode = addon!.info().gemm;
  for (const mode of MODES) {
  addon!.setGemmMode(mode);
  const cases: { name: string; spec: Spec; batches: number[] }[] = [
    { name: 'MLP 784-64-32-10', spec: { input: [784], layers: [{ units: 64, activation: 'relu' }, { units: 32, activation: 'relu' }, { units: 10, activation: 'softmax' }] }, batches: [128, 128, 77, 128] },
    { name: 'odd sizes 37-29-5, batch 1', spec: { input: [37], layers: [{ units: 29, activation: 'relu' }, { units: 5, activation: 'softmax' }] }, batches: [1, 1, 13, 3] },
    { name: 'no-bias hidden, linear hidden', spec: { input: [50], layers: [{ units: 31, activation: 'relu', useBias: false }, { units: 17, activation: 'linear' }, { units: 7, activation: 'softmax' }] }, batches: [64, 9, 64] },
    { name: 'Flatten [6,5,2] -> softmax only', spec: { input: [6, 5, 2], flatten: true, layers: [{ units: 3, activation: 'softmax', useBias: false }] }, batches: [16, 2, 16] },
    // big enough that every GEMM, the output layer's softmax slices and each backward region run on all pool threads
    { name: 'wide output 100-300-40 (parallel softmax slices)', spec: { input: [100], layers: [{ units: 300, activation: 'relu' }, { units: 40, activation: 'softmax' }] }, batches: [128, 96, 128] },
  ];
  for (const c of cases) {
    const a = build(c.spec), b = build(c.spec);
    const r = denseTrainStep(tf, a, true);
    assert.ok(r.step, `${c.name}: eligible (${r.reason})`);
    const features = c.spec.input.reduce((p, d) => p * d, 1), classes = c.spec.layers[c.spec.layers.length - 1].units;
    assert.equal(r.inputSize, features);
    assert.equal(r.classes, classes);
    for (const n of c.batches) {
      const x = rand(n * features, 2), y = oneHot(n, classes);
      const got = r.step(x, y, n);
      assert.ok(got, `${c.name}: the step ran`);
      const xs = tf.tensor(x, [n, ...c.spec.input]), ys = tf.tensor2d(y, [n, classes]);
      const want = (await b.trainOnBatch(xs, ys)) as number[];
      tf.dispose([xs, ys]);
      assert.ok(Math.abs(got[0] - want[0]) <= 1e-5 * (1 + Math.abs(want[0])), `${c.name} batch ${n}: loss ${got[0]} vs ${want[0]}`);
      assert.ok(Math.abs(got[1] - want[1]) <= 1e-6, `${c.name} batch ${n}: accuracy ${got[1]} vs ${want[1]}`);
    }
    const wa = a.getWeights(), wb = b.getWeights();
    wa.forEach((w, i) => assert.ok(maxRel(w.dataSync() as Float32Array, wb[i].dataSync() as Float32Array) < 2e-5, `${c.name}: weight ${i} error ${maxRel(w.dataSync() as Float32Array, wb[i].dataSync() as Float32Array)}`));
    const oa = await a.optimizer.getWeights(), ob = await b.optimizer.getWeights();
    const shape = (name: string) => name.replace(/\d+/g, '#'); // the two models' layers are numbered apart
    assert.deepEqual(oa.map((w) => shape(w.name)), ob.map((w) => shape(w.name)), `${c.name}: same optimizer state names`);
    oa.forEach((w, i) => assert.ok(maxRel(w.tensor.dataSync() as Float32Array, ob[i].tensor.dataSync() as Float32Array) < 1e-4, `${c.name}: optimizer ${w.name}`));
    a.dispose(); b.dispose();
  }
  }
  addon!.setGemmMode(defaultMode);
  uninstallEngine(tf);
});

test('the default GEMM choice is a fixed rule by shape, and the fused step repeats bit for bit under it', { skip: SKIP }, async () => {
  await engineOn();
  const i = addon!.info();
  // SLIMFIT_GEMM forces one mode for the whole process (README, "Which GEMM runs where"): no default rule to check then
  if (i.blas !== 'own' && !process.env.SLIMFIT_GEMM) {
    assert.equal(i.gemm, i.isa === 'generic' ? i.blas : 'auto');
    // auto: the library for every float32 GEMM (convolutions keep the own kernels' tiles; README, "Which GEMM runs where")
    const rule: [number, number, number, number, number, boolean][] = [
      [0, 0, 128, 512, 784, true], [0, 1, 128, 784, 512, true], [1, 0, 784, 512, 128, true], [0, 1, 15488, 288, 64, true], [0, 0, 15488, 64, 288, true],
    ];
    if (i.gemm === 'auto') for (const [ta, tb, m, n, k, blas] of rule) for (let r = 0; r < 3; r++) assert.equal(addon!.gemmUsesBlas(ta, tb, m, n, k), blas, `${ta}${tb} ${m}x${n}x${k}`);
    assert.equal(addon!.setGemmMode('own'), 'own');
    assert.equal(addon!.gemmUsesBlas(0, 0, 128, 512, 784), false);
    assert.equal(addon!.setGemmMode(''), i.gemm);
  } else if (i.blas === 'own') {
    assert.equal(i.gemm, 'own');
    assert.equal(addon!.setGemmMode('openblas'), 'own', 'without a library every mode is the own kernels');
    assert.equal(addon!.setGemmMode('onednn'), 'own', 'without a library every mode is the own kernels');
    addon!.setGemmMode('');
  }
  const spec: Spec = { input: [784], layers: [{ units: 96, activation: 'relu' }, { units: 80, activation: 'relu' }, { units: 10, activation: 'softmax' }] };
  const xs = [rand(128 * 784, 2), rand(128 * 784, 2), rand(128 * 784, 2)], ys = xs.map(() => oneHot(128, 10));
  const run = (): Float32Array[] => {
    const m = build(spec);
    const r = denseTrainStep(tf, m, true);
    assert.ok(r.step, r.reason);
    xs.forEach((x, j) => assert.ok(r.step!(x, ys[j], 128)));
    const w = m.getWeights().map((t) => t.dataSync() as Float32Array);
    r.dispose(); m.dispose();
    return w;
  };
  const a = run(), b = run();
  a.forEach((w, j) => assert.ok(Buffer.from(w.buffer).equals(Buffer.from(b[j].buffer)), `weight ${j} differs between two identical runs`));
  uninstallEngine(tf);
});

test('the fused step transposes the batch alike on every SIMD level (SLIMFIT_ISA caps it): trainOnBatch\'s results, and with a GEMM library the same bits', { skip: SKIP }, () => {
  // Batches of 128, 77 and 5 rows (whole and partial 16-row blocks) of 100 and 784 features (partial and whole
  // 16-column blocks). At two threads the first layer (96 units) is cut by K when the batch is narrower than it (77,
  // and 5 with 784 features), each thread transposing its own columns, and by samples at 128 (a transposition region
  // of its own); one thread transposes serially, three cut the transposition three ways.
  const script = `
    import * as tf from '@tensorflow/tfjs-core';
    import '@tensorflow/tfjs-backend-wasm';
    import * as tfl from '@tensorflow/tfjs-layers';
    import { createHash } from 'node:crypto';
    import { denseTrainStep, installEngine, loadAddon } from ${JSON.stringify(new URL('../src/engine/index.ts', import.meta.url).pathname)};
    await tf.setBackend('wasm'); await tf.ready();
    if (!installEngine(tf, 'wasm').active) throw new Error('engine not active');
    let s = 11; const r = (n) => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1);
    const build = (input) => {
      const m = tfl.sequential();
      [96, 40, 10].forEach((units, i) => m.add(tfl.layers.dense({ ...(i ? {} : { inputShape: [input] }), units, activation: i === 2 ? 'softmax' : 'relu',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: 3 + i }) })));
      m.compile({ optimizer: tf.train.adam(0.01, 0.9, 0.999, 1e-4), loss: 'categoricalCrossentropy' });
      return m;
    };
    const h = createHash('sha256');
    let worst = 0;
    for (const input of [100, 784]) {
      const a = build(input), b = build(input), step = denseTrainStep(tf, a, true).step;
      for (const n of [128, 77, 5]) {
        const x = r(n * input), y = new Float32Array(n * 10);
        for (let i = 0; i < n; i++) y[i * 10 + (i * 7) % 10] = 1;
        step(x, y, n);
        const xs = tf.tensor2d(x, [n, input]), ys = tf.tensor2d(y, [n, 10]);
        await b.trainOnBatch(xs, ys);
        tf.dispose([xs, ys]);
      }
      const wb = b.getWeights();
      a.getWeights().forEach((w, i) => {
        const p = w.dataSync(), q = wb[i].dataSync();
        h.update(Buffer.from(p.buffer, p.byteOffset, p.byteLength));
        let err = 0, scale = 0;
        for (let k = 0; k < p.length; k++) { err = Math.max(err, Math.abs(p[k] - q[k])); scale = Math.max(scale, Math.abs(q[k])); }
        worst = Math.max(worst, err / (1 + scale));
      });
    }
    const info = loadAddon().addon.info();
    console.log(JSON.stringify({ isa: info.isa, blas: info.blas, threads: info.threads, worst, hash: h.digest('hex') }));`;
  const runs = ([['', 2], ['avx2', 2], ['generic', 2], ['', 1], ['', 3]] as const).map(([isa, threads]) => {
    const env: NodeJS.ProcessEnv = { ...process.env, SLIMFIT_ISA: isa, SLIMFIT_THREADS: String(threads) };
    if (!isa) delete env.SLIMFIT_ISA;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env, encoding: 'utf8' });
    return { want: isa, wantThreads: threads, ...(JSON.parse(out.trim().split('\n').pop()!) as { isa: string; blas: string; threads: number; worst: number; hash: string }) };
  });
  for (const r of runs) {
    assert.equal(r.threads, r.wantThreads, `SLIMFIT_THREADS=${r.wantThreads} gave ${r.threads} threads`);
    if (r.want) assert.ok(r.isa === r.want || (r.want === 'avx2' && r.isa === 'generic'), `SLIMFIT_ISA=${r.want} gave ${r.isa}`);
    assert.ok(r.worst < 2e-5, `${r.isa}, ${r.threads} threads: fused weights vs trainOnBatch, max error ${r.worst}`);
  }
  // At two threads the library's GEMMs do not follow SLIMFIT_ISA, so only the transposition (exact on every path)
  // differs between those runs. (Uncapped, the register transposition runs only where the CPU has AVX-512.)
  const two = runs.slice(0, 3);
  if (two[0].blas !== 'own') for (const r of two.slice(1)) assert.equal(r.hash, two[0].hash, `weights on ${r.isa} (${r.blas}) differ from ${two[0].isa} (${two[0].blas})`);
});

test('the fused step leaks no tensors, keeps predict working, and refuses (changing nothing) while a weight buffer is shared', { skip: SKIP }, async () => {
  await engineOn();
  const m = build({ input: [20], layers: [{ units: 16, activation: 'relu' }, { units: 4, activation: 'softmax' }] });
  const r = denseTrainStep(tf, m, true);
  assert.ok(r.step);
  r.step(rand(8 * 20), oneHot(8, 4), 8); // creates the moments once
  const before = tf.memory().numTensors;
  for (let i = 0; i < 50; i++) r.step(rand(8 * 20), oneHot(8, 4), 8);
  assert.equal(tf.memory().numTensors, before, 'no tensors created per step');
  const p = tf.tidy(() => tf.sum(m.predict(tf.tensor2d(rand(3 * 20), [3, 20])) as tf.Tensor, -1).dataSync());
  p.forEach((s: number) => assert.ok(Math.abs(s - 1) < 1e-5, 'predict gives probabilities'));
  const kernel = (m.layers[0] as unknown as { kernel: { read(): tf.Variable } }).kernel.read();
  const shared = tf.clone(kernel); // shares the buffer: an in-place update would change it too
  const snap = kernel.dataSync().slice();
  assert.equal(r.step(rand(8 * 20), oneHot(8, 4), 8), null);
  assert.deepEqual(kernel.dataSync(), snap, 'nothing changed');
  shared.dispose();
  assert.ok(r.step(rand(8 * 20), oneHot(8, 4), 8), 'runs again once the buffer is no longer shared');
  assert.throws(() => r.step(rand(10), oneHot(8, 4), 8), /needs x of 160/);
  m.dispose();
  uninstallEngine(tf);
});

test('a step function follows weights and moments replaced between its calls (model and optimizer setWeights)', { skip: SKIP }, async () => {
  await engineOn();
  const spec: Spec = { input: [20], layers: [{ units: 16, activation: 'relu' }, { units: 4, activation: 'softmax' }] };
  const xs = [0, 1, 2, 3, 4, 5, 6, 7, 8].map(() => rand(8 * 20)), ys = xs.map(() => oneHot(8, 4));
  const a = build(spec), b = build(spec);
  const ra = denseTrainStep(tf, a, true);
  let rb = denseTrainStep(tf, b, true);
  const optOf = (m: tfl.Sequential) => (m as unknown as { optimizer: tf.Optimizer }).optimizer;
  const steps = (from: number, to: number): void => {
    for (let j = from; j < to; j++) {
      assert.ok(ra.step!(xs[j], ys[j], 8), `step ${j} of a ran fused`);
      assert.ok(rb.step!(xs[j], ys[j], 8), `step ${j} of b ran fused`);
    }
  };
  const same = async (when: string): Promise<void> => {
    const wa = a.getWeights().map((t) => Array.from(t.dataSync())), wb = b.getWeights().map((t) => Array.from(t.dataSync()));
    wa.forEach((w, j) => assert.deepEqual(w, wb[j], `weight ${j} differs ${when}`));
    const ma = await optOf(a).getWeights(), mb = await optOf(b).getWeights();
    ma.forEach((w, j) => assert.deepEqual(Array.from(w.tensor.dataSync()), Array.from(mb[j].tensor.dataSync()), `${w.name} differs ${when}`));
  };
  steps(0, 3);
  // New buffers (assign replaces a variable's data), with new values, for the weights of both models, then for their
  // moments; each time `b` goes on with a step function that never saw the old buffers. Had `a`'s step kept writing
  // where its weights or moments were before, the two models would differ.
  const values = a.getWeights().map((t) => ({ data: t.dataSync().map((v) => v + 0.01), shape: t.shape }));
  for (const m of [a, b]) {
    const given = values.map((w) => tf.tensor(w.data, w.shape));
    m.setWeights(given);
    tf.dispose(given); // the weights own their buffers alone again: the steps run fused
  }
  rb = denseTrainStep(tf, b, true);
  steps(3, 6);
  await same('after the model\'s setWeights');
  const moments = (await optOf(a).getWeights()).map((w) => ({ name: w.name, data: w.tensor.dataSync().slice(), shape: w.tensor.shape, dtype: w.tensor.dtype }));
  for (const m of [a, b]) {
    const given = moments.map((w) => ({ name: w.name, tensor: tf.tensor(w.data, w.shape, w.dtype) }));
    await optOf(m).setWeights(given);
    tf.dispose(given.map((w) => w.tensor)); // likewise for the moments
  }
  rb = denseTrainStep(tf, b, true);
  steps(6, 9);
  await same('after the optimizer\'s setWeights');
  a.dispose(); b.dispose();
  uninstallEngine(tf);
});

test('a step function notices its tensors moved by another one, and variables freed by tf.disposeVariables', { skip: SKIP }, async () => {
  await engineOn();
  const spec: Spec = { input: [20], layers: [{ units: 13, activation: 'relu' }, { units: 4, activation: 'softmax' }] };
  const m = build(spec);
  const x = rand(8 * 20), y = oneHot(8, 4);
  await m.trainOnBatch(tf.tensor2d(x, [8, 20]), tf.tensor2d(y, [8, 4])); // the moments exist, on the allocator's 8-byte grid
  const be = tf.backend() as unknown as { wasm: { _malloc(n: number): number } };
  // `a`'s first (full) check finds no room to move the tensors onto cache lines and runs them where they are; `b`'s
  // then moves them (same records, new offsets, the old blocks freed). `a` must not go on writing at the old offsets.
  const a = denseTrainStep(tf, m, true);
  const malloc = be.wasm._malloc;
  be.wasm._malloc = () => 0;
  try { assert.ok(a.step!(x, y, 8)); } finally { be.wasm._malloc = malloc; }
  const b = denseTrainStep(tf, m, true);
  assert.ok(b.step!(x, y, 8));
  const before = m.getWeights().map((w) => Array.from(w.dataSync()));
  const junk = tf.fill([4096], 7); // likely to land in the freed blocks
  assert.ok(a.step!(x, y, 8));
  m.getWeights().forEach((w, i) => assert.notDeepEqual(Array.from(w.dataSync()), before[i], `weight ${i} was updated`));
  assert.ok(Array.from(junk.dataSync()).every((v) => v === 7), 'no other tensor was written');
  junk.dispose();
  tf.disposeVariables(); // frees every variable's data without marking the variables disposed
  assert.throws(() => a.step!(x, y, 8), /is not a live float32 variable/);
  uninstallEngine(tf);
});

test('models the fused step does not cover get a reason (and train through trainOnBatch)', { skip: SKIP }, async () => {
  await engineOn();
  const mlp = { input: [12], layers: [{ units: 8, activation: 'relu' as const }, { units: 3, activation: 'softmax' as const }] };
  const reasons: [string, () => tfl.LayersModel, RegExp][] = [
    ['sgd', () => build(mlp, { optimizer: tf.train.sgd(0.1) }), /optimizer is not Adam/],
    ['mse', () => build(mlp, { loss: 'meanSquaredError' }), /loss is not categoricalCrossentropy/],
    ['other metric', () => build(mlp, { metrics: ['accuracy', 'mse'] }), /metrics/],
    ['softmax hidden', () => build({ input: [12], layers: [{ units: 8, activation: 'softmax' }, { units: 3, activation: 'softmax' }] }), /softmax only on the last/],
    ['dropout', () => {
      const m = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [12], units: 8, activation: 'relu' }), tfl.layers.dropout({ rate: 0.5 }), tfl.layers.dense({ units: 3, activation: 'softmax' })] });
      m.compile({ optimizer: 'adam', loss: 'categoricalCrossentropy' });
      return m;
    }, /layer Dropout has no fused step/],
    ['conv', () => buildModelCompiled('cnn'), /layer Conv2D has no fused step/],
    ['regularizer', () => {
      const m = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [12], units: 3, activation: 'softmax', kernelRegularizer: tfl.regularizers.l2({ l2: 0.01 }) })] });
      m.compile({ optimizer: tf.train.adam(), loss: 'categoricalCrossentropy' });
      return m;
    }, /regularizers/],
    ['tanh', () => {
      const m = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [12], units: 8, activation: 'tanh' }), tfl.layers.dense({ units: 3, activation: 'softmax' })] });
      m.compile({ optimizer: tf.train.adam(), loss: 'categoricalCrossentropy' });
      return m;
    }, /activation tanh/],
  ];
  for (const [name, make, re] of reasons) {
    const m = make();
    const r = denseTrainStep(tf, m, true);
    assert.equal(r.step, null, name);
    assert.match(r.reason!, re, name);
    m.dispose();
  }
  const ok = build(mlp);
  assert.match(denseTrainStep(tf, ok, false).reason!, /fast engine is not active/);
  // SLIMFIT_DISABLE=fused (read once per process) turns it off: checked in a child, before anything else is asked.
  const script = `
    import { denseTrainStep } from ${JSON.stringify(new URL('../src/engine/dense-step.ts', import.meta.url).pathname)};
    console.log(denseTrainStep(null, null, true).reason);`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { env: { ...process.env, SLIMFIT_DISABLE: 'fused' }, encoding: 'utf8' });
  assert.equal(out.trim(), 'disabled by SLIMFIT_DISABLE=fused');
  ok.dispose();
  uninstallEngine(tf);
  await tf.setBackend('cpu');
  const onCpu = build(mlp);
  assert.match(denseTrainStep(tf, onCpu, true).reason!, /not wasm/);
  onCpu.dispose();
  await tf.setBackend('wasm');
});

function buildModelCompiled(name: 'cnn' | 'mlp'): tfl.LayersModel {
  const m = buildModel(name, { inputShape: [28, 28, 1], classes: 10, seed: 1 });
  compileDefault(m, 'adam', 1e-3);
  return m;
}

test('trainEpochs uses the fused step for the built-in mlp, says so, and trains like trainOnBatch', { skip: SKIP }, async () => {
  await engineOn();
  const data = mnistSlice(600);
  const lines: string[] = [];
  const fusedModel = buildModelCompiled('mlp'), plainModel = buildModelCompiled('mlp');
  const h1 = await trainEpochs(fusedModel, memLoader(data.x, data.y, [28, 28, 1], { batchSize: 50, seed: 2 }), { epochs: 2, progress: false, log: (l) => lines.push(l) });
  const h2 = await trainEpochs(plainModel, memLoader(data.x, data.y, [28, 28, 1], { batchSize: 50, seed: 2 }), { epochs: 2, progress: false, fused: false, log: (l) => lines.push(l) });
  assert.match(lines[0], /train step: fused/);
  assert.match(lines[1], /trainOnBatch \(no fused step: turned off by the caller\)/);
  for (let e = 0; e < 2; e++) {
    assert.ok(Math.abs(h1.epochs[e].loss - h2.epochs[e].loss) < 1e-4, `epoch ${e + 1} loss ${h1.epochs[e].loss} vs ${h2.epochs[e].loss}`);
    assert.ok(Math.abs(h1.epochs[e].accuracy - h2.epochs[e].accuracy) < 0.01, `epoch ${e + 1} accuracy`);
  }
  assert.ok(h1.epochs[1].loss < h1.epochs[0].loss, 'it learns');
  assert.equal(h1.epochs[1].numTensors, h1.epochs[0].numTensors, 'no tensor growth over epochs');
  const cnnLines: string[] = [];
  const cnn = buildModelCompiled('cnn');
  await trainEpochs(cnn, memLoader(data.x.subarray(0, 64 * 784), data.y.subarray(0, 64), [28, 28, 1], { batchSize: 32 }), { epochs: 1, progress: false, log: (l) => cnnLines.push(l) });
  assert.match(cnnLines[0], /train step: fused/); // the conv step (test/engine-conv-step.test.ts)
  [fusedModel, plainModel, cnn].forEach((m) => m.dispose());
  uninstallEngine(tf);
});

test('a seeded MLP trained one epoch on an MNIST subset by the fused step reaches the cpu backend accuracy (±0.3%)', { skip: SKIP }, async () => {
  await engineOn();
  const opts = { hidden: [64], train: 6000, test: 2000, seed: 3 };
  const fast = await mnistAccuracy(tf, tfl, { ...opts, fused: true });
  uninstallEngine(tf);
  await tf.setBackend('cpu');
  const ref = await mnistAccuracy(tf, tfl, opts);
  await tf.setBackend('wasm');
  assert.ok(ref > 0.7, `the reference learned (${ref})`);
  assert.ok(Math.abs(fast - ref) <= 0.003, `fused ${fast} vs cpu ${ref}`);
});

test('the fused step works on 64-byte-aligned weights and moments, and never writes into tensors given to the optimizer', { skip: SKIP }, async () => {
  await engineOn();
  const m = build({ input: [20], layers: [{ units: 24, activation: 'relu' }, { units: 5, activation: 'softmax' }] });
  const r = denseTrainStep(tf, m, true);
  assert.ok(r.step, r.reason);
  const x = rand(16 * 20), y = oneHot(16, 5);
  assert.ok(r.step!(x, y, 16));
  const be = tf.backend() as unknown as { dataIdMap: { get(id: object): { memoryOffset: number } } };
  const inner = (m as unknown as { model?: unknown }).model ?? m;
  const opt = (inner as unknown as { optimizer: { accumulatedFirstMoment: { variable: tf.Variable }[]; accumulatedSecondMoment: { variable: tf.Variable }[]; getWeights(): Promise<{ name: string; tensor: tf.Tensor }[]>; setWeights(w: { name: string; tensor: tf.Tensor }[]): Promise<void> } }).optimizer;
  const weights = (inner as unknown as { collectedTrainableWeights: { read(): tf.Variable }[] }).collectedTrainableWeights.map((w) => w.read());
  for (const t of [...weights, ...opt.accumulatedFirstMoment.map((a) => a.variable), ...opt.accumulatedSecondMoment.map((a) => a.variable)])
    assert.equal(be.dataIdMap.get(t.dataId).memoryOffset % 64, 0, `${t.name} is on a cache line`);
  // tfjs's Adam.setWeights makes each moment a variable over the given tensor's own buffer
  const given = await opt.getWeights();
  await opt.setWeights(given);
  const before = given.map((w) => Array.from(w.tensor.dataSync()));
  r.step!(x, y, 16);
  r.step!(x, y, 16);
  given.forEach((w, i) => assert.deepEqual(Array.from(w.tensor.dataSync()), before[i], `${w.name} unchanged`));
  tf.dispose(given.map((w) => w.tensor));
  r.dispose();
  m.dispose();
  uninstallEngine(tf);
});

