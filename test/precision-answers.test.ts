// The lab's per-layer Jacobian gain (against numpy's SVD), the LeNet-like CNN of gupta2015 in fixed point, and the
// answers section: every sentence from the sections' JSON, "not run" for missing ones, verdicts only beyond the interval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { py, tempDir } from '../dev/helpers.ts';
import { initTf, tf } from '../lab/tf.ts';
import { jacobianGain, topEigenSym } from '../lab/chaos.ts';
import { buildLenet } from '../lab/run.ts';
import { divergenceOf } from '../lab/gupta.ts';
import { createTrainer } from '../lab/train.ts';
import { fixedFormat } from '../src/precision/formats.ts';
import { answersMarkdown, chaosAnswerBullets, GUESSES, guptaAnswerBullets } from '../lab/lab-report.ts';
import { speedHeadline, type SpeedData } from '../lab/speed.ts';
import { swallowAnswerBullets, swallowHeadline, type SwallowData } from '../lab/swallow.ts';
import { fp8AnswerBullets, type Fp8Data } from '../lab/fp8.ts';
import { int8AnswerBullets, type Int8Data } from '../lab/int8.ts';

test('top eigenvalue of a symmetric PSD matrix by power iteration', () => {
  assert.ok(Math.abs(topEigenSym(Float64Array.of(2, 0, 0, 5), 2) - 5) < 1e-9);
  assert.ok(Math.abs(topEigenSym(Float64Array.of(2, 1, 1, 2), 2) - 3) < 1e-9);
  assert.equal(topEigenSym(new Float64Array(4), 2), 0);
});

test('Jacobian gain of a layer output -> logits equals numpy\'s SVD of the kernel product (linear net) and ‖J‖_F/√width', async () => {
  await initTf();
  const m = tfl.sequential();
  const init = (s: number) => tfl.initializers.randomNormal({ mean: 0, stddev: 0.5, seed: s });
  m.add(tfl.layers.dense({ inputShape: [6], units: 7, kernelInitializer: init(1) }));
  m.add(tfl.layers.dense({ units: 5, kernelInitializer: init(2) }));
  m.add(tfl.layers.dense({ units: 4, kernelInitializer: init(3) }));
  const x = tf.randomNormal([3, 6], 0, 1, 'float32', 4) as tf.Tensor2D;
  const k1 = (m.layers[1].getWeights()[0].dataSync() as Float32Array), k2 = (m.layers[2].getWeights()[0].dataSync() as Float32Array);
  const ref = JSON.parse(py(`import json, sys, numpy as np
a = np.array(json.loads(sys.argv[1]), dtype=np.float64).reshape(7, 5); b = np.array(json.loads(sys.argv[2]), dtype=np.float64).reshape(5, 4)
def g(m): return [float(np.linalg.svd(m, compute_uv=False)[0]), float(np.linalg.norm(m) / np.sqrt(m.shape[0]))]
print(json.dumps([g(a @ b), g(b)]))`, [JSON.stringify([...k1]), JSON.stringify([...k2])])) as [number, number][];
  for (const [k, [top, rms]] of [[0, ref[0]], [1, ref[1]]] as [number, [number, number]][]) {
    const g = jacobianGain(m, x, k);
    for (let i = 0; i < 3; i++) {
      assert.ok(Math.abs(g.spectral[i] - top) < 1e-4 * top, `layer ${k} sample ${i}: ${g.spectral[i]} vs numpy ${top}`);
      assert.ok(Math.abs(g.random[i] - rms) < 1e-4 * rms, `layer ${k} random: ${g.random[i]} vs ${rms}`);
    }
  }
  assert.throws(() => jacobianGain(m, x, 2), /no layers after it/);
  x.dispose();
});

test('LeNet-like CNN: logits of shape [n, 10], trains in <2,14> fixed point with weights on the grid, refuses non-square rows', async () => {
  await initTf();
  const m = buildLenet(784, 10, 1, [4, 8], 16);
  const fmt = fixedFormat(2, 14);
  const tr = createTrainer(m, { kind: 'sgd', lr: 0.002 }, { weights: fmt, rounding: 'stochastic', grads: fmt, gradRounding: 'stochastic', activations: fmt, actRounding: 'stochastic', seed: 3, lossWeight: 20 });
  const x = tf.randomUniform([20, 784], 0, 1, 'float32', 5);
  const y = tf.cast(tf.oneHot(tf.tensor1d(Array.from({ length: 20 }, (_, i) => i % 10), 'int32'), 10), 'float32');
  const l0 = tr.step(x, y).loss;
  let l = l0;
  for (let i = 0; i < 15; i++) l = tr.step(x, y).loss;
  assert.ok(l < l0, `loss ${l0} -> ${l}`);
  for (const w of tr.stored()) for (const v of w) assert.equal(v * 2 ** 14, Math.round(v * 2 ** 14));
  const p = tr.predict(x);
  assert.deepEqual(p.shape, [20, 10]);
  tf.dispose([x, y, p]);
  assert.throws(() => buildLenet(780, 10, 1), /square/);
});

const err = (m: number, s: number, n = 3) => Array.from({ length: n }, (_, i) => m + s * (i - (n - 1) / 2));

test('answers: missing sections say "not run", verdicts appear only where the interval (gupta2015: paired by seed) excludes 0', () => {
  const { dir, cleanup } = tempDir();
  try {
    const empty = answersMarkdown(dir);
    for (const name of ['speed', 'swallow', 'gupta2015', 'fp8', 'int8', 'chaos']) assert.match(empty, new RegExp(`\\*${name}\\*: not run`));
    assert.match(empty, /### The three answers as they now stand\n\n- \*\*Guess 1\*\*.*\n- \*\*Guess 2\*\*.*\n- \*\*Guess 3\*\*/);
    const cells = [
      { label: 'float32', net: 'mlp', fl: null, rounding: 'float32', loss: 'sum', testError: err(0.02, 0.001), saturated: [0, 0, 0] },
      { label: 'FL=8 nearest', net: 'mlp', fl: 8, rounding: 'nearest', loss: 'sum', testError: err(0.10, 0.002).reverse(), saturated: [0.001, 0.002, 0.001] },
      { label: 'FL=8 stochastic', net: 'mlp', fl: 8, rounding: 'stochastic', loss: 'sum', testError: err(0.021, 0.002), saturated: [0, 0, 0] },
      { label: 'FL=8 nearest, mean loss', net: 'mlp', fl: 8, rounding: 'nearest', loss: 'mean', testError: err(0.101, 0.01), saturated: [0, 0, 0] },
    ];
    // (reversed: per-seed gaps that vary, as real runs give; the same gap on every seed has no interval)
    const g = { size: 'quick', seeds: 3, hidden: [1000, 1000], fls: [8], cells, ranges: [] };
    const gb = guptaAnswerBullets(g).join('\n');
    assert.match(gb, /round-to-nearest 10\.00 ± 0\.20 % \(n=3, 95% \[9\.50, 10\.50\]\), minus stochastic \+7\.90 points \[[^\]]+\]: nearest worse/);
    assert.match(gb, /stochastic 2\.10 ± 0\.20 % .*vs float32 \+0\.10 points \[[^\]]+\]: no significant difference/);
    assert.match(gb, /mean loss.*minus the summed loss \+0\.10 points \[[^\]]+\]: no significant difference\./); // no "cost of the loss" claim
    // the abstract's claim, checked per FL: SR's paired interval to float32 within ±1 point, RN above SR
    assert.match(gb, /Its abstract claims .*: MLP: stochastic rounding about float32 at FL=8; round-to-nearest worse than stochastic at FL=8\.$/m);
    const srOff = guptaAnswerBullets({ ...g, cells: cells.map((c) => (c.label === 'FL=8 stochastic' ? { ...c, testError: [0.05, 0.07, 0.06] } : c)) }).join('\n');
    assert.match(srOff, /MLP: stochastic rounding about float32 at no FL, not at FL=8 — contrary to the abstract's claim in this setup \(the section lists where it departs from the paper\); round-to-nearest worse than stochastic at FL=8\.$/m);
    // within +1 point yet with an interval above 0: said, and round-to-nearest with no detectable difference is listed too
    const close = guptaAnswerBullets({ ...g, cells: cells.map((c) => (c.label === 'FL=8 stochastic' ? { ...c, testError: [0.0225, 0.024, 0.0245] } : c.label === 'FL=8 nearest' ? { ...c, testError: [0.021, 0.026, 0.022] } : c)) }).join('\n');
    assert.match(close, /MLP: stochastic rounding about float32 at FL=8 \(though measurably worse at FL=8\); round-to-nearest worse than stochastic at no FL, no difference detected at FL=8\.$/m);
    assert.doesNotMatch(gb, /cost of the loss reduction|not of the format/);
    // the batch-mean loss fails where the summed loss matches float32: an interaction, worded as one (per-seed
    // differences to float32 that vary, as real runs do: evenly spaced fixtures would differ by a constant)
    const meanFails = guptaAnswerBullets({ ...g, cells: cells.map((c) => (c.loss === 'mean' ? { ...c, testError: err(0.9, 0.002) } : c.label === 'FL=8 nearest' ? { ...c, testError: [0.021, 0.019, 0.023] } : c)) }).join('\n');
    assert.match(meanFails, /minus the summed loss \+[\d.]+ points \[[^\]]+\]: worse — the format fails only when the back-propagated errors are made batch-times smaller \(the batch-mean loss\)/);
    assert.doesNotMatch(meanFails, /cost of the loss reduction/);
    // the range rule covers hidden layers and logits of both networks alike, and claims no mechanism
    const layer = (b: number) => ({ layer: 'x', max: 3, beyond: [b] });
    const ranged = guptaAnswerBullets({ ...g, fls: [14], cnnFls: [14], cells: [...cells, { label: 'FL=14 nearest', net: 'mlp', fl: 14, rounding: 'nearest', loss: 'sum', testError: err(0.8, 0.02), saturated: [0, 0, 0] }],
      ranges: [0.49, 0.5, 0.48].map((b) => [layer(0.0002), layer(b)]), cnnRanges: [0.16, 0.17, 0.165].map((b) => [layer(b), layer(0.55)]) });
    assert.match(ranged.find((b) => b.includes('range control, MLP'))!, /— logits beyond the range \(criterion: the 95% interval's lower end above 1%\); the ⟨2,14⟩ runs' errors above float32 are consistent with a range limit \(not tested by an intervention\)\.$/);
    // dynamic fixed point (same 16 bits and rounding, per-tensor range) is the intervention: it supports the range reading
    // only where its paired interval to float32 lies within ±1 point
    const withDyn = (errs: number[]) => guptaAnswerBullets({ ...g, fls: [14], cells: [...cells, { label: 'FL=14 nearest', net: 'mlp', fl: 14, rounding: 'nearest', loss: 'sum', testError: err(0.8, 0.02), saturated: [0, 0, 0] },
      { label: 'dynamic fixed WL=16 nearest', net: 'mlp', fl: null, rounding: 'nearest', loss: 'sum', dynamic: true, testError: errs, saturated: [0, 0, 0] }],
    ranges: [0.49, 0.5, 0.48].map((b) => [layer(0.0002), layer(b)]) }).find((b) => b.includes('range control, MLP'))!;
    assert.match(withDyn([0.0205, 0.0198, 0.0212]), /consistent with a range limit; the intervention — dynamic fixed point, the same 16 bits and rounding with a per-tensor range and precision — with round-to-nearest comes within ±1 point of float32 \(\+0\.05 points \[[^\]]+\]: no significant difference\), which is consistent with the range reading \(it changes precision too, so it does not separate the two\)\.$/);
    assert.match(withDyn([0.30, 0.41, 0.52]), /with round-to-nearest does not come within ±1 point of float32 \([^)]*\): the range does not account for them on its own\.$/);
    assert.match(withDyn([0.02, 0.02]), /with round-to-nearest has no interval to float32 \([^)]*\)\.$/);
    assert.match(ranged.find((b) => b.includes('range control, CNN'))!, /— hidden and logits beyond the range \(criterion[^)]*\)\.$/); // no CNN fixed-point cells: no claim about its errors
    assert.doesNotMatch(ranged.join('\n'), /clips the float32 network|a range limit, not a rounding one/);
    // every FL whose float32 outputs lie beyond its range gets its own line, not only the largest FL
    const twoFl = guptaAnswerBullets({ ...g, fls: [12, 14], cells, ranges: [0.15, 0.16, 0.155].map((b) => [{ layer: 'h', max: 4, beyond: [0, 0.001] }, { layer: 'out', max: 28, beyond: [b, b + 0.5] }]) })
      .filter((b) => b.includes('range control, MLP'));
    assert.deepEqual(twoFl.map((b) => b.match(/for (⟨\d,\d+⟩)/)![1]), ['⟨4,12⟩', '⟨2,14⟩']);
    mkdirSync(join(dir, 'precision'), { recursive: true });
    writeFileSync(join(dir, 'precision', 'gupta2015.json'), JSON.stringify(g));
    const lam = (m: number) => err(m, 0.001);
    // chaos.json as lab/chaos.ts writes it (twins: kernels of hidden 1, hidden 2 and the output layer; gain and noise:
    // outputs of hidden 1-3), without the network's sizes, so they come from the configuration of its size
    const gainNames = ['early (hidden 1)', 'middle (hidden 2)', 'late (hidden 3)'];
    const chaos = {
      size: 'quick', nullDiffering: 0, steps: 300, seedDisagree: [0.1, 0.11, 0.12], seedAccs: [0.9, 0.91, 0.92, 0.9], baseAcc: 0.9,
      layers: [{ name: 'early (hidden 1)', lambdas: lam(0.01), disagree: [0.1, 0.1, 0.1], accs: [0.9, 0.9, 0.91] }, { name: 'middle (hidden 2)', lambdas: lam(0.02), disagree: [0.1, 0.12, 0.11], accs: [0.9, 0.91, 0.91] }, { name: 'late (output)', lambdas: lam(0.03), disagree: [0.1, 0.1, 0.11], accs: [0.91, 0.9, 0.9] }],
      gain: { layers: gainNames, probes: 200, runs: 4, final: [{ name: 'late (hidden 3)', spectral: [3, 3.1, 3.2, 3.1], growth: [0, 0, 0, 0] }], middleVs: [{ other: 'early (hidden 1)', diff: -1, lo: -1.2, hi: -0.8, verdict: 'lower' }, { other: 'late (hidden 3)', diff: 1, lo: 0.8, hi: 1.2, verdict: 'higher' }], middleDiffers: true, middleStandsOut: false, earlyVsMiddle: { lambda: { diff: -0.01, lo: -0.012, hi: -0.008 }, gain: { diff: 1, lo: 0.8, hi: 1.2 } } },
      epsList: [0, 1], noiseDrawsPerEps: 3,
      noiseDraws: { [gainNames[0]]: [[0.9], [0.5, 0.51, 0.49]], [gainNames[1]]: [[0.9], [0.7, 0.71, 0.69]], [gainNames[2]]: [[0.9], [0.8, 0.81, 0.79]] },
    };
    const cb = chaosAnswerBullets(chaos).join('\n');
    assert.match(cb, /0 weights differ.*MNIST MLP 784-128-128-128-10, base run seed 1, 300 steps; every twin is a copy of that one run/);
    assert.match(cb, /middle layer differs from one other layer but is not above or below both/);
    assert.match(cb, /lies between the others: no middle-layer peak/);
    assert.match(cb, /the layer with the larger gain has the smaller exponent/);
    // each row says which layer it is: the twins perturb the output layer's kernel, the gain measures hidden 3's output
    assert.match(cb, /one-ulp twins, fitted from step 0 .*: early \(hidden 1 kernel\) .*; middle \(hidden 2 kernel\) .*; late \(output layer kernel\) /);
    assert.match(cb, /→ logits .*late \(hidden 3 output\) 3\.100/);
    assert.match(cb, /vs late \(hidden 3 output\) 1\.000 \[0\.800, 1\.200\]/);
    // the twins are copies of the base run: one-sample interval of twin − base; the seeds only as context
    assert.match(cb, /Final test accuracy of the one-ulp twins minus the base run's own \(90\.00 %\): \+0\.44 points \(\+8\.9 of 2000 test images on average\) \(n=9 twins, one-sample 95% \[\+0\.04, \+0\.85\]\): the twins end higher than the base run\. For context only \(not a test/);
    assert.doesNotMatch(cb, /Final test accuracy: seeds|all one-ulp twins .*difference/);
    assert.match(chaosAnswerBullets({ ...chaos, baseAcc: undefined }).join('\n'), /base run's own accuracy is not in these saved results, so the twins \(copies of the base run\) are not tested/);
    assert.match(cb, /The most fragile layer is the early \(hidden 1 output\)/);
    const head = GUESSES[2].headline({ chaos });
    assert.match(head, /^On one MNIST MLP 784-128-128-128-10 \(one base run, seed 1, 300 steps\), with 3 one-ulp twins per perturbed kernel — each the same run with a different weight changed, so the intervals cover which weight was perturbed, not different training runs: /);
    assert.match(head, /pooled over all twins, λ fitted from step 0 is 0\.0200 .*these results hold no fit above the float32 resolution floor/);
    assert.match(head, /the middle layer \(hidden 2 kernel, one of the 2 middle weight layers hidden 2 and hidden 3; only it was perturbed\) grow at a rate that differs from one other layer but is not above or below both at 95% confidence \(middle − early \(hidden 1 kernel\) \[/);
    assert.match(head, /the Jacobian gain from hidden 2's output to the logits lies between those from hidden 1 and hidden 3: no middle-layer peak; under noise injected at inference .* the most fragile layer is the early \(hidden 1 output\): accuracy 50\.0 ± 1\.0 %.* against 70\.0 ± 1\.0 % .* the middle \(hidden 2 output\) \(\+20\.00 points \[[^\]]+\] higher\)$/);
    // no significant difference in the exponent above the floor: "no difference detected", with how large a difference remains possible
    const above = [[0.004, 0.006, 0.002], [0.002, 0.004, 0.003], [0.003, 0.001, 0.004]];
    const flat = { ...chaos, hidden: [64, 64, 64], resolution: chaos.layers.map((L, k) => ({ name: L.name, passStep: [25, 25, 25], lambdasAbove: above[k] })) };
    const h2 = GUESSES[2].headline({ chaos: flat });
    assert.match(h2, /^On one MNIST MLP 784-64-64-64-10 /);
    assert.match(h2, /tiny perturbations grow — pooled over all twins, λ fitted above the float32 resolution floor 2⁻²³ \(the growth rate proper\) is 0\.0032 ± 0\.0015 \(n=9, 95% \[0\.0021, 0\.0044\]\) e-folds per step \(fitted from step 0: 0\.0200, 95% \[/);
    assert.match(h2, /no difference detected between the middle layer \(hidden 2 kernel[^)]*\) and the others \(middle − early \(hidden 1 kernel\) \[-5\.16e-3, 3\.16e-3\], middle − late \(output layer kernel\) \[[^\]]+\] e-folds per step\); with n = 3 twins per layer differences as large as λ itself cannot be excluded \(the intervals reach 1\.6× λ vs early, 1\.1× λ vs late\)/);
    assert.doesNotMatch(h2, /do not grow differently|not different from/);
    writeFileSync(join(dir, 'precision', 'chaos.json'), JSON.stringify(chaos));
    const full = answersMarkdown(dir);
    assert.match(full, /\| gupta2015 \| quick \|/);
    assert.match(full, /- \*\*Guess 2\*\*: 16-bit fixed point at FL=8 .*round-to-nearest worse; stochastic minus float32 .*no significant difference\./);
    assert.match(full, /- \*\*Guess 3\*\*: On one MNIST MLP .*differs from one other layer but is not above or below both .*no middle-layer peak; .*most fragile layer is the early \(hidden 1 output\).*\./);
    assert.doesNotMatch(full, /range limit|swallowed 9\d/); // no claim of the old report survives
  } finally { cleanup(); }
});

test('guess 1 headline: a verdict only where every interleaved round agrees; no rounds kept, no verdict', () => {
  const row = (source: string, dtype: string, ratioRounds: number[] | undefined) => ({ source, dtype, shape: '8×8×8', gflops: 1, ratio: ratioRounds ? ratioRounds[2] : 0.45, note: '', ratioRounds });
  const data = (rr: (k: string) => number[] | undefined): SpeedData => ({
    quick: false, rounds: 6, memory: [], engineNote: '', llcBytes: null, load: [0.1, 0.1, 0.1],
    cpu: { model: 'x', source: 'test', features: [] },
    gemm: [row('slimfit engine (own, vfmadd231pd (AVX-512))', 'float64', rr('f64')), row('slimfit engine (bf16 mode, tdpbf16ps (AMX tiles), ...)', 'bfloat16', rr('amx')), row('slimfit engine (own, vdpbf16ps (AVX512_BF16))', 'bfloat16', rr('dp'))],
    gemv: [],
  });
  const h = speedHeadline(data((k) => (k === 'f64' ? [0.45, 0.44, 0.46, 0.47, 0.43, 0.45] : k === 'amx' ? [2.1, 4.8, 3, 2.5, 2.2, 2.3] : [0.7, 1.05, 0.69, 0.7, 0.71, 0.7])));
  assert.match(h, /faster in every one of 6 interleaved rounds at every shape\*\*: float32 GEMM vs float64 \(engine, own kernels\) 2\.13–2\.33×; bf16 GEMM on AMX tiles .* 2\.10–4\.80×/);
  assert.match(h, /no consistent difference\*\* \(rounds disagree\): bf16 GEMM on AVX512_BF16 dot products \(engine\) vs float32 0\.690–1\.05×/);
  assert.doesNotMatch(h, /slower in every round/);
  const two = (rr: number[], rr2: number[]): SpeedData => ({ ...data(() => undefined), gemm: [{ ...row('slimfit lab kernel, 1 thread (vfmadd231ph (AVX512_FP16), ...)', 'float16 math (fp16 sums)', rr), shape: '1×1×1' }, { ...row('slimfit lab kernel, 1 thread (vfmadd231ph (AVX512_FP16), ...)', 'float16 math (fp16 sums)', rr2), shape: '2×2×2' }] });
  assert.match(speedHeadline(two([0.9, 0.92, 0.93, 0.91, 0.9, 0.91], [1.06, 1.07, 1.08, 1.06, 1.07, 1.07])), /\*\*depends on the shape\*\*: GEMM in fp16 arithmetic \(AVX512_FP16\): slower at 1×1×1 \(0\.900–0\.930×\), faster at 2×2×2 \(1\.06–1\.08×\)/);
  assert.match(speedHeadline({ ...data((k) => (k === 'f64' ? [0.45, 0.44, 0.46] : [2, 2, 2])), rounds: 3 }), /too few for even unanimous rounds to be significant, so no verdict/);
  const old = speedHeadline(data(() => undefined));
  assert.match(old, /no spread, so no verdict/);
  assert.doesNotMatch(old, /faster in every/);
});

test('guess 2 headline comes from swallow when it ran: lost mass, the Welch interval, the frozen plateau and the remedies', () => {
  const accs = (m: number) => [m - 0.001, m, m + 0.001, m - 0.0005, m + 0.0005];
  const cell = (opt: string, format: string, rounding: string, acc: number, lost: number) => ({ opt, format, rounding, accs: accs(acc), lost: [lost, lost, lost, lost, lost] });
  const sw = {
    quick: false, seeds: 5, steps: 3000,
    hidden: [128], trainN: 60000,
    cells: [cell('momentum', 'fp32', 'nearest', 0.97, 0), { ...cell('momentum', 'bf16', 'nearest', 0.965, 0.47), accs: accs(0.965).reverse() }, { ...cell('momentum', 'fp16', 'nearest', 0.9701, 0.1), accs: [0.9711, 0.9691, 0.9701, 0.9706, 0.9696].reverse() }],
    remedies: { fp32: { accs: accs(0.97), lost: [0, 0] }, 'bf16 RN': { accs: accs(0.965), lost: [0.47, 0.47] }, 'bf16 SR': { accs: accs(0.9702).reverse(), lost: [0, 0] } },
    plateau: { inits: [0.04, 0.01], config: { steps: 8000 }, cells: [
      { init: 0.01, recipe: 'fp32', escapes: [1900, 2000, 1800], lostPlateau: [0] }, { init: 0.01, recipe: 'bf16 RN', escapes: [null, null, null], lostPlateau: [0.98] },
      { init: 0.04, recipe: 'fp32', escapes: [400, 500, 450], lostPlateau: [0] }, { init: 0.04, recipe: 'bf16 RN', escapes: [400, 520, 450], lostPlateau: [0.1] }] },
  } as unknown as SwallowData;
  const h = swallowHeadline(sw)!;
  assert.match(h, /momentum lost 47\.0 ± 0\.0 % of its update mass, lower accuracy than fp32 \(-0\.50 pp \[/);
  assert.match(h, /^on this network \(MNIST \(60000 images\), MLP 784-128-10, n = 5 seeds paired across rows/);
  assert.match(h, /bf16 round-to-nearest stalled — 0\.04: no difference in escape time detected; 0\.01: never escaped in 8000 steps \(fp32: 1900 ± 100 steps\)/);
  assert.match(h, /stochastic rounding each remove the loss \(momentum, bf16 weights: none is lower than fp32/);
  assert.match(h, /fp16 round-to-nearest \(3 more mantissa bits\) stays within ±[0-9.]+ pp of fp32 with every optimizer, no difference detected/);
  const { dir, cleanup } = tempDir();
  try {
    mkdirSync(join(dir, 'precision'), { recursive: true });
    writeFileSync(join(dir, 'precision', 'swallow.json'), JSON.stringify(sw));
    assert.match(answersMarkdown(dir), /- \*\*Guess 2\*\*: on this network \(MNIST[^\n]*\.\n/);
    assert.doesNotMatch(answersMarkdown(dir), /- \*\*Guess 2\*\*:[^\n]*16-bit fixed point/);
    // with Gupta's reproduction beside it, its fixed-point result follows swallow's in the same answer
    const cells = [
      { label: 'float32', net: 'mlp', fl: null, rounding: 'float32', loss: 'sum', testError: [0.019, 0.02, 0.021], saturated: [0, 0, 0] },
      { label: 'FL=8 nearest', net: 'mlp', fl: 8, rounding: 'nearest', loss: 'sum', testError: [0.07, 0.068, 0.071], saturated: [0, 0, 0] },
      { label: 'FL=8 stochastic', net: 'mlp', fl: 8, rounding: 'stochastic', loss: 'sum', testError: [0.021, 0.02, 0.022], saturated: [0, 0, 0] },
    ];
    writeFileSync(join(dir, 'precision', 'gupta2015.json'), JSON.stringify({ size: 'full', seeds: 3, hidden: [1000, 1000], fls: [8], cells, ranges: [] }));
    assert.match(answersMarkdown(dir), /- \*\*Guess 2\*\*: on this network \(MNIST[^\n]*\. 16-bit fixed point at FL=8 \(Gupta et al\.'s MLP, full mode, summed loss\): round-to-nearest minus stochastic test error \+[\d.]+ points \[[^\]]+\]: round-to-nearest worse[^\n]*\.\n/);
  } finally { cleanup(); }
  assert.equal(swallowHeadline({ ...sw, cells: [] } as unknown as SwallowData), null);
});

test('the same gap on every seed (counts over a test set, equal up to float rounding) gets no interval and no verdict in every section', () => {
  // accuracies out of 10,000 images: a gap of 37 images on every seed
  const ref = [0.9712, 0.9698, 0.9705, 0.9721, 0.9689];
  const low = ref.map((v) => v - 0.0037);
  const fp8 = fp8AnswerBullets({ quick: false, size: 'full', cells: [{ key: 'fp32', name: 'fp32', what: '–', accs: ref }, { key: 'fp8', name: 'FP8', what: 'x', accs: low }] } as unknown as Fp8Data).join('\n');
  assert.match(fp8, /FP8: .*Δ -0\.37 points \(no interval: the same gap on every seed\) .*: no verdict \(the same gap on every seed\)\./);
  const int8 = int8AnswerBullets({ quick: false, size: 'full', seeds: 5, calibration: 1, fineTuneSteps: 1, cells: [
    { key: 'fp32', name: 'fp32', what: '–', accs: ref, diffs: ref.map(() => 0) },
    { key: 'ptq', name: 'PTQ', what: 'x', accs: low, diffs: low.map((v, k) => v - ref[k]) }] } as unknown as Int8Data).join('\n');
  assert.match(int8, /PTQ: .*Δ -0\.37 points \(no interval: the same gap on every seed\) \(paired\): no verdict/);
  const cell = (opt: string, format: string, rounding: string, accs: number[]) => ({ opt, format, rounding, accs, lost: accs.map(() => 0.1) });
  const sw = { quick: false, seeds: 5, steps: 100, cells: [cell('SGD', 'fp32', 'nearest', ref), cell('SGD', 'bf16', 'nearest', low), cell('SGD', 'fp16', 'nearest', low)],
    remedies: { fp32: { accs: ref, lost: [0] }, 'bf16 SR': { accs: low, lost: [0] } } } as unknown as SwallowData;
  const sb = swallowAnswerBullets(sw).join('\n');
  assert.match(sb, /no verdict for SGD bf16 RN -0\.37 pp \(no interval: the same gap on every seed\)/);
  const h = swallowHeadline(sw)!;
  assert.match(h, /no verdict against fp32 \(-0\.37 pp \(no interval/);
  assert.match(h, /fp16 round-to-nearest with SGD: -0\.37 pp \(no interval: the same gap on every seed\) \(no verdict\)/);
  const gupta = guptaAnswerBullets({ size: 'full', seeds: 5, hidden: [1000, 1000], fls: [8], ranges: [], cells: [
    { label: 'float32', net: 'mlp', fl: null, rounding: 'float32', loss: 'sum', testError: ref.map((v) => 1 - v), saturated: [0] },
    { label: 'FL=8 stochastic', net: 'mlp', fl: 8, rounding: 'stochastic', loss: 'sum', testError: low.map((v) => 1 - v), saturated: [0] }] }).join('\n');
  assert.match(gupta, /vs float32 \+0\.37 points, no interval \(the same gap on every seed: no verdict\)/);
  for (const text of [fp8, int8, sb, h, gupta]) assert.doesNotMatch(text, /NaN|at 95%|lower accuracy than|: worse/);
});

test('gupta2015 divergence: a seed that trained and then rose 10 points above its lowest error; a run that never trained has not diverged', () => {
  const c = (e: number[]) => e.map((testError, i) => ({ epoch: i / 2, testError }));
  assert.deepEqual(divergenceOf(c([0.9, 0.08, 0.05, 0.04, 0.12, 0.2])), { lowest: 0.04, at: 1.5, divergedAt: 2.5 });
  assert.deepEqual(divergenceOf(c([0.9, 0.08, 0.05, 0.04, 0.13, 0.06])), { lowest: 0.04, at: 1.5, divergedAt: null }); // +9 points: no
  assert.deepEqual(divergenceOf(c([0.9, 0.78, 0.67, 0.83, 0.81])), { lowest: 0.67, at: 1, divergedAt: null }); // never trained
  assert.deepEqual(divergenceOf(c([0.9, 0.05, 0.02, 0.019])), { lowest: 0.019, at: 1.5, divergedAt: null });
});
