// Guess (3): is training chaotically sensitive to tiny changes? Twin runs one ulp apart, and noise injected per layer.
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from './tf.ts';
import { BF16, E4M3, FP16, FP32, quantize, type Format } from '../src/precision/formats.ts';
import { loadMnist, type Dataset } from './data.ts';
import { figure, lines, type Pt } from './plot.ts';
import { pct, SUB, table, writeSection } from './report.ts';
import { runTraining } from './run.ts';
import { logger, saveJson, stamp, type LabOptions } from './common.ts';
import type { OptimizerSpec } from './train.ts';

/** Relative L2 distance ||a - b|| / ||b|| over several arrays. */
export function relDistance(a: Float32Array[], b: Float32Array[]): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].length; j++) { const d = a[i][j] - b[i][j]; num += d * d; den += b[i][j] * b[i][j]; }
  return Math.sqrt(num / den);
}

/** Accuracy of `model` when layer `k`'s output h is replaced by h * (1 + eps * N(0, 1)) (or rounded to `fmt`). */
export function noisyAccuracy(model: tfl.LayersModel, data: Dataset, k: number, eps: number, seed: number, fmt?: Format): number {
  let correct = 0;
  const bs = 1000;
  for (let s = 0; s < data.n; s += bs) {
    const n = Math.min(bs, data.n - s);
    const pred = tf.tidy(() => {
      let h: tf.Tensor = tf.tensor2d(data.x.subarray(s * data.dim, (s + n) * data.dim), [n, data.dim]);
      model.layers.forEach((layer, i) => {
        h = layer.apply(h) as tf.Tensor;
        if (i !== k) return;
        if (fmt) h = tf.tensor(quantize(fmt, h.dataSync() as Float32Array), h.shape);
        else if (eps > 0) h = tf.mul(h, tf.add(1, tf.mul(eps, tf.randomNormal(h.shape, 0, 1, 'float32', seed + s))));
      });
      return tf.argMax(h, -1).dataSync();
    });
    for (let i = 0; i < n; i++) if (pred[i] === data.y[s + i]) correct++;
  }
  return correct / data.n;
}

/** Run the chaos experiment and write its section. */
export async function labChaos(o: LabOptions): Promise<Record<string, unknown>> {
  const log = logger(o);
  const t0 = performance.now();
  const q = o.quick;
  const cfg = q ? { hidden: [128, 128, 128], trainN: 5000, testN: 2000, steps: 300, evalEvery: 25 } : { hidden: [256, 256, 256], trainN: 60000, testN: 10000, steps: 3000, evalEvery: 150 };
  const train = await loadMnist('train', cfg.trainN);
  const test = await loadMnist('test', cfg.testN);
  const opt: OptimizerSpec = { kind: 'momentum', lr: 0.01, momentum: 0.9 };
  const prec = { weights: FP32, rounding: 'nearest' as const };
  const base = new Map<number, { w: Float32Array[]; pred: Uint8Array }>();
  const baseRes = runTraining({
    hidden: cfg.hidden, opt, prec, train, test, batch: 100, steps: cfg.steps, seed: 1, evalEvery: cfg.evalEvery,
    onEval: (step, w, pred) => base.set(step, { w: w.map((a) => a.slice()), pred: pred.slice() }),
  });
  log(`chaos base: acc ${pct(baseRes.finalAcc)} (${baseRes.seconds.toFixed(0)} s)`);
  type Twin = { name: string; seed: number; orderSeed?: number; perturb?: (w: Float32Array[]) => void; swap?: [number, number] };
  const ulp = (w: Float32Array[]) => { const u = new Uint32Array(w[2].buffer, w[2].byteOffset, 1); u[0] += 1; }; // middle layer, one weight, one ulp
  const twins: Twin[] = [
    { name: 'one ulp in one middle-layer weight', seed: 1, perturb: ulp },
    { name: 'two samples swapped in epoch 1', seed: 1, swap: [3, 250] },
    { name: 'other sample order (same init)', seed: 1, orderSeed: 2 },
    { name: 'other seed (init and order)', seed: 2 },
    { name: 'third seed (init and order)', seed: 3 },
  ];
  const series: Pt[] = [];
  const disagree: Pt[] = [];
  const rows: (string | number)[][] = [];
  const finals: Record<string, { dist: number; disagree: number; acc: number }> = {};
  for (const tw of twins) {
    let last = { dist: 0, dis: 0 };
    const res = runTraining({
      hidden: cfg.hidden, opt, prec, train, test, batch: 100, steps: cfg.steps, seed: tw.seed, orderSeed: tw.orderSeed, evalEvery: cfg.evalEvery,
      perturb: tw.perturb, swap: tw.swap,
      onEval: (step, w, pred) => {
        const b = base.get(step);
        if (!b) return;
        const dist = relDistance(w, b.w);
        let dis = 0;
        for (let i = 0; i < pred.length; i++) if (pred[i] !== b.pred[i]) dis++;
        last = { dist, dis: dis / pred.length };
        if (dist > 0) series.push({ x: Math.max(step, 1), y: dist, series: tw.name });
        disagree.push({ x: step, y: 100 * last.dis, series: tw.name });
      },
    });
    finals[tw.name] = { dist: last.dist, disagree: last.dis, acc: res.finalAcc };
    rows.push([tw.name, last.dist.toExponential(2), pct(last.dis), pct(res.finalAcc), pct(res.finalAcc - baseRes.finalAcc)]);
    log(`chaos ${tw.name}: weight distance ${last.dist.toExponential(2)}, predictions differ ${pct(last.dis)}`);
  }
  const seedAccs = [baseRes.finalAcc, finals['other seed (init and order)'].acc, finals['third seed (init and order)'].acc];
  const mAcc = seedAccs.reduce((s, v) => s + v, 0) / seedAccs.length;
  const sdAcc = Math.sqrt(seedAccs.reduce((s, v) => s + (v - mAcc) ** 2, 0) / (seedAccs.length - 1));

  // --- noise injection at inference into the trained base model
  const model = baseRes.trainer.model;
  const layerNames = ['early (hidden 1)', 'middle (hidden 2)', 'late (hidden 3)'];
  const epsList = [0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3];
  const noisePts: Pt[] = [];
  const noiseRows: (string | number)[][] = [];
  const noise: Record<string, number[]> = {};
  const noiseFormats: Record<string, Record<string, number>> = {};
  const draws = 3;
  for (let k = 0; k < 3; k++) {
    const accs = epsList.map((eps) => {
      let a = 0;
      for (let d = 0; d < draws; d++) a += noisyAccuracy(model, test, k, eps, 1000 * d + 7);
      return a / draws;
    });
    noise[layerNames[k]] = accs;
    accs.forEach((a, i) => { if (epsList[i] > 0) noisePts.push({ x: epsList[i], y: 100 * a, series: layerNames[k] }); });
    const fmts = [BF16, FP16, E4M3].map((f) => noisyAccuracy(model, test, k, 0, 0, f));
    noiseFormats[layerNames[k]] = { bf16: fmts[0], fp16: fmts[1], e4m3: fmts[2] };
    noiseRows.push([layerNames[k], ...accs.map((a) => pct(a)), ...fmts.map((a) => pct(a))]);
  }
  const figDist = await figure(lines(series, { title: 'Twin runs: relative weight distance to the base run', x: 'step', y: '||w − w_base|| / ||w_base||', logY: true }), o.out, SUB, 'chaos-weights', 'weight divergence');
  const figDis = await figure(lines(disagree, { title: 'Twin runs: test predictions that differ from the base run', x: 'step', y: 'predictions differing (%)' }), o.out, SUB, 'chaos-predictions', 'prediction disagreement');
  const figNoise = await figure(lines(noisePts, { title: 'Relative noise injected into one layer at inference', x: 'relative noise ε (h ← h·(1 + ε·N(0,1)))', y: 'test accuracy (%)', logX: true }), o.out, SUB, 'chaos-noise', 'noise injection');
  const seconds = (performance.now() - t0) / 1000;
  const md = [
    '## chaos — guess (3): are networks chaotically sensitive to tiny changes in the middle layers?',
    '',
    stamp(q, seconds, `MNIST ${cfg.trainN} train / ${cfg.testN} test, MLP 784-${cfg.hidden.join('-')}-10 ReLU in float32, SGD momentum 0.9 lr 0.01, batch 100, ${cfg.steps} steps`),
    '',
    '### Twin runs',
    '',
    'Each twin differs from the base run (seed 1) in one respect; distances are measured at the same step. The seed rows are the yardstick: how far apart two ordinary runs end up.',
    '',
    table(['twin', 'final relative weight distance', 'test predictions differing', 'final test acc', 'acc − base'], rows),
    '',
    `Base run final accuracy ${pct(baseRes.finalAcc)}; over seeds 1–3 the final accuracy is ${pct(mAcc)} ± ${pct(sdAcc)} (sample s.d.).`,
    '',
    figDist,
    '',
    figDis,
    '',
    '### Noise injected into one layer at inference (trained base model)',
    '',
    `Accuracy (mean of ${draws} noise draws) when one layer's output activations h are multiplied by (1 + ε·N(0,1)); the last three columns instead round that layer's output to a format (round-to-nearest; relative error at most 2^−9 for bf16, 2^−12 for fp16, 2^−4 for e4m3).`,
    '',
    table(['layer', ...epsList.map((e) => `ε=${e}`), 'bf16', 'fp16', 'e4m3'], noiseRows),
    '',
    figNoise,
  ].join('\n');
  const summary = { quick: q, baseAcc: baseRes.finalAcc, seedMeanAcc: mAcc, seedSdAcc: sdAcc, twins: finals, epsList, noise, noiseFormats };
  await saveJson(o.out, 'chaos', summary);
  await writeSection(o.out, 'chaos', md);
  return summary;
}
