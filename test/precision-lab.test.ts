// The precision lab: low-precision training step and meters, and `npm run lab -- gupta2015 --quick` on real MNIST.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LAB, runCli, tempDir } from '../dev/helpers.ts';
import { initTf, tf } from '../lab/tf.ts';
import { BF16, FP16, FP32, fixedFormat, type Format } from '../src/precision/formats.ts';
import { buildMlp } from '../lab/run.ts';
import { bytesPerParam, createTrainer } from '../lab/train.ts';
import { DelayedScaledSite, DynamicFixedSite } from '../lab/dynfixed.ts';
import { E4M3 } from '../src/precision/formats.ts';
import { fp8AnswerBullets } from '../lab/fp8.ts';
import * as tfl from '@tensorflow/tfjs-layers';
import { featureEnabled } from '../src/core/config.ts';

/**
 * fp8's CLI run is skipped with SLIMFIT_DISABLE=native (CI's second pass): its rounding loops are compared with quant on
 * and off end to end in precision-native.test.ts (the pass with the addons), and its training on plain tfjs is the path
 * the gupta2015 and chaos runs below take in that pass too.
 */
const fp8Skip = !featureEnabled('native') && 'fp8\'s JS loops are compared with the native ones end to end in precision-native.test.ts; training on plain tfjs runs in the gupta2015 and chaos tests of this pass';

function batch(seed: number, n = 32, dim = 20, classes = 4) {
  const x = tf.randomNormal([n, dim], 0, 1, 'float32', seed);
  const y = tf.cast(tf.oneHot(tf.randomUniform([n], 0, classes, 'int32', seed + 1), classes), 'float32');
  return { x, y };
}

test('fp32 recipe: our SGD and momentum updates equal TensorFlow.js optimizers on the same model', async () => {
  await initTf();
  for (const kind of ['sgd', 'momentum'] as const) {
    const a = buildMlp(20, [16], 4, 3);
    const b = buildMlp(20, [16], 4, 3);
    const tr = createTrainer(a, { kind, lr: 0.05, momentum: 0.9 }, { weights: FP32, rounding: 'nearest' });
    const opt = kind === 'sgd' ? tf.train.sgd(0.05) : tf.train.momentum(0.05, 0.9);
    for (let s = 0; s < 3; s++) {
      const { x, y } = batch(s);
      tr.step(x, y);
      opt.minimize(() => tf.losses.softmaxCrossEntropy(y, b.apply(x) as tf.Tensor) as tf.Scalar, false, b.trainableWeights.map((w) => w.read() as tf.Variable));
      tf.dispose([x, y]);
    }
    const wa = a.getWeights().map((w) => w.dataSync());
    const wb = b.getWeights().map((w) => w.dataSync());
    for (let i = 0; i < wa.length; i++) for (let j = 0; j < wa[i].length; j++) assert.ok(Math.abs(wa[i][j] - wb[i][j]) < 1e-5, `${kind} weight ${i}/${j}`);
  }
});

test('meters: tiny updates are swallowed by bf16 weights, kept by fp32, and an fp32 master copy accumulates them', async () => {
  await initTf();
  const run = (weights: Format, master: boolean, steps: number) => {
    const m = buildMlp(20, [16], 4, 5);
    const tr = createTrainer(m, { kind: 'sgd', lr: 1e-4 }, { weights, rounding: 'nearest', master });
    const before = tr.stored().map((a) => a.slice());
    let upd = 0, sw = 0;
    for (let s = 0; s < steps; s++) {
      const { x, y } = batch(10 + s);
      // kernels only: biases start at 0, where bf16 resolves tiny values as finely as fp32
      for (const v of tr.step(x, y).vars) if (/kernel/.test(v.name)) { upd += v.updates; sw += v.swallowed; }
      tf.dispose([x, y]);
    }
    return { frac: sw / upd, tr, before };
  };
  const bf = run(BF16, false, 3).frac, f32 = run(FP32, false, 3).frac;
  assert.ok(bf > 0.95, `bf16 swallowed ${bf}`);
  assert.ok(f32 < 0.05, `fp32 swallowed ${f32}`);
  // with an fp32 master copy the same tiny updates accumulate until the stored bf16 weights move
  const { tr, before } = run(BF16, true, 300);
  let moved = 0;
  tr.stored().forEach((a, i) => { for (let j = 0; j < a.length; j++) if (i % 2 === 0 && a[j] !== before[i][j]) moved++; }); // kernels
  const noMaster = run(BF16, false, 300);
  let movedNoMaster = 0;
  noMaster.tr.stored().forEach((a, i) => { for (let j = 0; j < a.length; j++) if (i % 2 === 0 && a[j] !== noMaster.before[i][j]) movedNoMaster++; });
  assert.ok(moved > 20, `master copy moved ${moved} stored weights`);
  assert.ok(movedNoMaster < moved, `without master ${movedNoMaster} vs with ${moved}`);
});

test('stochastic rounding keeps tiny updates alive in expectation (fixed point, no master)', async () => {
  await initTf();
  const fmt = fixedFormat(8, 8);
  const res: Record<string, number> = {};
  for (const rounding of ['nearest', 'stochastic'] as const) {
    const m = buildMlp(20, [16], 4, 7);
    const tr = createTrainer(m, { kind: 'sgd', lr: 0.005 }, { weights: fmt, rounding, seed: 3 });
    const start = tr.stored().map((a) => a.slice());
    for (let s = 0; s < 20; s++) { const { x, y } = batch(100 + s); tr.step(x, y); tf.dispose([x, y]); }
    let moved = 0;
    tr.stored().forEach((a, i) => { for (let j = 0; j < a.length; j++) if (a[j] !== start[i][j]) moved++; });
    res[rounding] = moved;
  }
  assert.ok(res.stochastic > 2 * res.nearest, JSON.stringify(res));
});

test('dynamic loss scaling backs off on overflow and fp16 gradient underflow is metered', async () => {
  await initTf();
  const m = buildMlp(20, [16], 4, 9);
  const tr = createTrainer(m, { kind: 'sgd', lr: 0.01 }, { weights: FP16, rounding: 'nearest', master: true, grads: FP16, lossScale: { kind: 'dynamic', init: 2 ** 24, interval: 1000 } });
  const { x, y } = batch(1);
  const r1 = tr.step(x, y);
  assert.equal(r1.skipped, true); // 2^24 * gradients overflow fp16 -> inf -> skip and halve
  assert.equal(tr.lossScale(), 2 ** 23);
  let skipped = 1;
  for (let i = 0; i < 30 && tr.step(x, y).skipped; i++) skipped++;
  assert.ok(tr.lossScale() < 2 ** 23 && skipped >= 2, `scale ${tr.lossScale()} skipped ${skipped}`);
  // without scaling, tiny gradients fall below fp16's smallest subnormal
  const m2 = buildMlp(20, [16], 4, 9);
  const tr2 = createTrainer(m2, { kind: 'sgd', lr: 0.01 }, { weights: FP32, rounding: 'nearest', grads: FP16 });
  const small = tf.mul(x, 1e-6);
  const r = tr2.step(small, y);
  const uf = r.vars.reduce((s, v) => s + v.gradUnderflow, 0);
  assert.ok(uf > 0, 'some gradients underflow fp16');
  tf.dispose([x, y, small]);
});

test('softmax-output models (as built by slimfit train) are handled, and memory per parameter adds up', async () => {
  await initTf();
  const m = tfl.sequential({ layers: [tfl.layers.dense({ inputShape: [20], units: 4, activation: 'softmax' })] });
  const tr = createTrainer(m, { kind: 'adam', lr: 1e-2 }, { weights: BF16, rounding: 'stochastic', state: BF16, seed: 1 });
  const { x, y } = batch(2);
  const l0 = tr.step(x, y).loss;
  let l = l0;
  for (let i = 0; i < 30; i++) l = tr.step(x, y).loss;
  assert.ok(l < l0 * 0.8, `loss ${l0} -> ${l}`);
  tf.dispose([x, y]);
  assert.deepEqual(bytesPerParam({ weights: FP16, master: true, state: FP32 }, 'adam'), { weights: 2, master: 4, kahan: 0, state: 8, total: 14 });
  assert.equal(bytesPerParam({ weights: BF16, kahan: true, state: BF16 }, 'adam').total, 10); // bf16 weights + fp32 compensation + two bf16 moments
});

test('`npm run lab -- gupta2015 --tiny --seeds 3 --fl 8`: summed loss, n=3 per cell, round-to-nearest does not saturate, stochastic matches float32', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = await runCli(['gupta2015', '--tiny', '--net', 'mlp', '--seeds', '3', '--fl', '8', '--no-dynamic', '--out', dir], { script: LAB, timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    const cell = (label: string, loss = 'sum') => {
      const m = new RegExp(`^gupta2015\\t${label}\\tloss=${loss}\\tn=(\\d+)\\ttest_error_mean=([0-9.]+)\\ttest_error_sd=([0-9.]+)\\tsaturated_mean=([0-9.]+)\\tsaturated_max=([0-9.]+)`, 'm').exec(r.stdout);
      assert.ok(m, `${label} (${loss}) in\n${r.stdout}`);
      return { n: Number(m[1]), mean: Number(m[2]), sd: Number(m[3]), satMax: Number(m[5]) };
    };
    const f32 = cell('float32'), rn = cell('FL=8 nearest'), sr = cell('FL=8 stochastic'), rnMean = cell('FL=8 nearest, mean loss', 'mean');
    for (const c of [f32, rn, sr, rnMean]) assert.equal(c.n, 3);
    assert.ok(f32.sd > 0, 'seeds differ');
    assert.ok(rn.satMax <= 0.01, `FL=8 round-to-nearest saturated ${rn.satMax}`);
    assert.ok(Math.abs(sr.mean - f32.mean) <= 2 * f32.sd, `stochastic ${sr.mean} vs float32 ${f32.mean} ± ${f32.sd}`);
    // 1000 test images x 3 seeds: a gap of 8 points is far beyond the spread seen (s.d. ~2-3 points)
    assert.ok(rn.mean - sr.mean > 0.08, `nearest ${rn.mean} vs stochastic ${sr.mean}`);
    assert.ok(rnMean.mean - sr.mean > 0.08, `mean-loss nearest ${rnMean.mean}`);
    const md = readFileSync(join(dir, 'precision.md'), 'utf8');
    assert.match(md, /test error \(mean ± s\.d\.\)/);
    assert.match(md, /tiny/);
    assert.match(md, /\*\*mean\*\* \(errors 1\/batch\)/);
    assert.match(md, /the \*\*mean\*\* rows average it instead, which makes every back-propagated error 1\/batch as large/);
    assert.match(md, /not the paper's MLP nor the LeNet-like CNN/);
    assert.match(md, /consistent with the range, not the rounding alone, limiting that format \(not tested by an intervention\)/);
    // text that needs rows this run does not have stays out: the dynamic and CNN paragraphs
    assert.doesNotMatch(md, /Dynamic fixed point \(Courbariaux|The CNN is a LeNet-like/);
    assert.doesNotMatch(md, /artifact of the loss reduction|the paper's networks|mean the range, not the rounding, limits/);
    assert.match(md, /Float32 control/);
    assert.match(md, /\*\*Convergence\*\*: MLP float32: mean test error [\d.]+ % at epoch [\d.]+ → [\d.]+ % at epoch [\d.]+ \([+−][\d.]+ points over the last fifth of training\)/);
    // cells share seeds (initial weights, sample order): compared with float32 paired by seed, with Holm over the table
    assert.match(md, /vs float32, paired by seed: Δ error \[95%\]/);
    assert.match(md, /(survives|not significant after) Holm's correction over the 4 comparisons with float32/);
    assert.ok(existsSync(join(dir, 'precision', 'gupta2015-curves.png')), 'plot written');
    // the LeNet-like CNN through the same command (one short epoch: this checks the path, not its error)
    const c = await runCli(['gupta2015', '--tiny', '--net', 'cnn', '--cnn-fl', '14', '--seeds', '2', '--epochs', '1', '--out', dir], { script: LAB, timeoutMs: 240_000 });
    assert.equal(c.code, 0, c.stderr);
    for (const label of ['cnn float32', 'cnn FL=14 nearest', 'cnn FL=14 stochastic']) assert.match(c.stdout, new RegExp(`^gupta2015\\t${label}\\tloss=sum\\tn=2\\t`, 'm'));
    const cmd = readFileSync(join(dir, 'precision', 'gupta2015.md'), 'utf8');
    assert.match(cmd, /\| CNN \| <2,14> \| stochastic \| summed \|/);
    assert.match(cmd, /curve only/);
  } finally { cleanup(); }
});

test('works with the training models (mlp, cnn, two-branch): bf16 weights stay bf16, graphs refuse activation quantization', async () => {
  await initTf();
  const { buildModel } = await import('../src/train/models.ts');
  const { quantize } = await import('../src/precision/formats.ts');
  const x = tf.randomUniform([16, 12, 12, 1], 0, 1, 'float32', 3);
  const y = tf.cast(tf.oneHot(tf.randomUniform([16], 0, 3, 'int32', 4), 3), 'float32');
  for (const name of ['mlp', 'cnn', 'two-branch'] as const) {
    const m = buildModel(name, { inputShape: [12, 12, 1], classes: 3, seed: 1 });
    const tr = createTrainer(m, { kind: 'adam', lr: 1e-2 }, { weights: BF16, rounding: 'stochastic', grads: FP16, seed: 2 });
    const l0 = tr.step(x, y).loss;
    let l = l0;
    for (let i = 0; i < 8; i++) l = tr.step(x, y).loss;
    assert.ok(Number.isFinite(l) && l < l0, `${name}: loss ${l0} -> ${l}`);
    for (const a of tr.stored()) assert.deepEqual(quantize(BF16, a), a, `${name}: stored weights are bf16 values`);
    const live = m.getWeights().map((w) => w.dataSync());
    tr.stored().forEach((a, i) => assert.deepEqual(Array.from(live[i]), Array.from(a), `${name}: model holds the stored weights`));
  }
  const g = buildModel('two-branch', { inputShape: [12, 12, 1], classes: 3, seed: 1 });
  assert.throws(() => createTrainer(g, { kind: 'sgd', lr: 0.1 }, { weights: BF16, rounding: 'nearest', activations: BF16 }), /sequential model/);
  tf.dispose([x, y]);
});

test('`npm run lab -- verify-formats`: fp16 and bf16 bit-exact with numpy on a sample, doubles rounded once', async () => {
  const r = await runCli(['verify-formats', '--sample', '200000'], { script: LAB, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const rows = [...r.stdout.matchAll(/^verify\t(.+?)\tpatterns=(\d+)\tnan=(\d+)\tmismatches=(\d+)$/gm)];
  assert.equal(rows.length, 3, r.stdout);
  for (const m of rows) { assert.equal(m[4], '0', m[1]); assert.ok(Number(m[2]) >= 65536, m[0]); }
  assert.ok(Number(rows[0][3]) > 1000, 'NaN patterns are in the sample');
  assert.match(r.stdout, /sampled, 0 mismatches/);
});

test('dynamic fixed point: FL follows the overflow rate (small values get fine steps, large ones range) and trains', async () => {
  const s = new DynamicFixedSite({ wl: 16, initFl: 12, maxOverflowRate: 1e-4 });
  const big = Float32Array.from({ length: 1000 }, (_, i) => (i - 500) * 0.5); // up to ±250: <4,12> saturates
  const q1 = s.quantize(big, {});
  assert.ok(q1.some((v, i) => v !== big[i]) && s.fl === 11, `saturated at first, FL ${s.fl}`);
  for (let i = 0; i < 10; i++) s.quantize(big, {});
  assert.equal(s.fl, 7, 'range 2^8 = 256 > 250 with FL = 16 - 1 - 8');
  assert.deepEqual(Array.from(s.quantize(big, {})), Array.from(big), 'multiples of 0.5 are exact once the range fits');
  const small = Float32Array.from({ length: 1000 }, (_, i) => (i + 1) * 1e-6);
  for (let i = 0; i < 40; i++) s.quantize(small, {});
  assert.ok(s.fl > 15, `small values: FL ${s.fl} beyond WL - 1`);
  const q = s.quantize(small, {});
  for (let i = 0; i < q.length; i++) assert.ok(Math.abs(q[i] - small[i]) <= 2 ** -(s.fl) , `step 2^-FL at ${i}`);
  await initTf();
  const m = buildMlp(20, [16], 4, 11);
  const tr = createTrainer(m, { kind: 'sgd', lr: 0.05 }, { weights: FP32, rounding: 'stochastic', gradRounding: 'stochastic', actRounding: 'stochastic', seed: 1, dynamic: { wl: 16 } });
  const { x, y } = batch(3);
  const l0 = tr.step(x, y).loss;
  let l = l0;
  for (let i = 0; i < 30; i++) l = tr.step(x, y).loss;
  assert.ok(l < 0.8 * l0, `loss ${l0} -> ${l}`);
  tf.dispose([x, y]);
});

test('`npm run lab -- chaos --tiny`: the null twin is bit-identical, one-ulp twins per layer get fitted exponents', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const r = await runCli(['chaos', '--tiny', '--out', dir], { script: LAB, timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^chaos\tnull_twin_weights_differing=0\tmiddle_differs=(true|false)$/m);
    for (const layer of ['early \\(hidden 1\\)', 'middle \\(hidden 2\\)', 'late \\(output\\)']) {
      const m = new RegExp(`^chaos\\t${layer}\\tlambdas=(.+)$`, 'm').exec(r.stdout);
      assert.ok(m, `${layer} in ${r.stdout}`);
      const l = m[1].split(',').map(Number);
      assert.equal(l.length, 3);
      assert.ok(l.every(Number.isFinite), m[1]);
    }
    const md = readFileSync(join(dir, 'precision.md'), 'utf8');
    for (const layer of ['early \\(hidden 1\\)', 'middle \\(hidden 2\\)', 'late \\(hidden 3\\)']) {
      const g = new RegExp(`^chaos\\tgain\\t${layer}\\tn=4\\tmean=([0-9.]+)\\tsd=[0-9.]+\\tlo=(-?[0-9.]+)\\thi=([0-9.]+)$`, 'm').exec(r.stdout);
      assert.ok(g, `gain of ${layer} in ${r.stdout}`);
      assert.ok(Number(g[2]) <= Number(g[1]) && Number(g[1]) <= Number(g[3]) && Number(g[1]) > 0, g[0]);
    }
    assert.match(r.stdout, /^chaos\tlambda\tmiddle \(hidden 2\)\tn=3\tmean=/m);
    assert.match(md, /Per-layer Jacobian gain/);
    assert.match(md, /Null twin/);
    assert.match(md, /λ 95% interval/);
    assert.match(md, /middle layer/);
    // float32 resolution: per layer, how many of the 3 twins pass 2^-23, and the exponent fitted above it
    const res = [...md.matchAll(/^\| (early|middle|late) \([^)]*\) \| [0-9.e+-]+ ± [0-9.e+-]+ \| ([0-3]) of 3 \|/gm)];
    assert.equal(res.length, 3, md);
    assert.match(md, /Float32 resolution/);
    // the scope of the twins, and no negative claim from a non-significant difference
    assert.match(md, /only hidden 2 is perturbed — and the output layer\)\. Every twin is a copy of that one training run, so an interval over twins covers which weight was perturbed, not different training runs/);
    assert.doesNotMatch(md, /is not different from the others/);
    const saved = JSON.parse(readFileSync(join(dir, 'precision', 'chaos.json'), 'utf8'));
    assert.deepEqual([saved.hidden, saved.baseSeed, typeof saved.baseAcc], [[32, 32, 32], 1, 'number']);
  } finally { cleanup(); }
});

test('`npm run lab -- fp8 --tiny --only fp8,mxfp8,mxfp4`: E4M3/E5M2 training with delayed scaling and MXFP8 train like fp32; MXFP4 beside them; scaling keeps tiny values', { skip: fp8Skip }, async () => {
  const site = new DelayedScaledSite(E4M3, { history: 4 });
  const x = Float32Array.from({ length: 100 }, (_, i) => (i + 1) * 1e-5); // unscaled, most of these are E4M3 subnormals or 0
  const q = site.quantize(x, {});
  for (let i = 0; i < x.length; i++) assert.ok(Math.abs(q[i] - x[i]) <= x[i] * 2 ** -4, `${x[i]} -> ${q[i]}`);
  assert.equal(site.scale(), 2 ** Math.floor(Math.log2(448 / 1e-3)));
  const { dir, cleanup } = tempDir();
  try {
    const r = await runCli(['fp8', '--tiny', '--only', 'fp8,mxfp8,mxfp4', '--out', dir], { script: LAB, timeoutMs: 240_000 });
    assert.equal(r.code, 0, r.stderr);
    const acc = (name: string) => Number(new RegExp(`^fp8\\t${name}[^\\t]*\\tn=3\\tacc_mean=([0-9.]+)`, 'm').exec(r.stdout)![1]);
    const f32 = acc('fp32'), f8 = acc('FP8: E4M3'), mx8 = acc('MXFP8'), mx4 = acc('MXFP4');
    assert.ok(f32 > 0.75, `fp32 ${f32}`);
    assert.ok(Math.abs(f8 - f32) < 0.01, `fp8 ${f8} vs fp32 ${f32}`);
    assert.ok(Math.abs(mx8 - f32) < 0.02, `mxfp8 ${mx8} vs fp32 ${f32}`);
    assert.ok(mx4 > 0.7, `mxfp4 ${mx4}`);
    assert.doesNotMatch(r.stdout, /bf16|MXINT8/); // --only
    const md = readFileSync(join(dir, 'precision.md'), 'utf8');
    assert.match(md, /within 1 point of fp32/);
    assert.match(md, /\| MXFP4: E2M1 x and W, forward GEMMs \| x and W of every forward GEMM in mxfp4\(e2m1\)/);
    assert.match(md, /verdict vs fp32 \(95%, paired\)/);
    const data = JSON.parse(readFileSync(join(dir, 'precision', 'fp8.json'), 'utf8'));
    const bullets = fp8AnswerBullets(data);
    assert.equal(bullets.length, 4);
    assert.match(bullets[3], /MXFP4.*Δ [+-]?[0-9.]+ points \[[+-]?[0-9.]+, [+-]?[0-9.]+\]/);
    const bad = await runCli(['fp8', '--tiny', '--only', 'fp9', '--out', dir], { script: LAB });
    assert.equal(bad.code, 1); assert.match(bad.stderr, /error: fp8 --only: unknown recipe fp9/);
  } finally { cleanup(); }
});
