// One low-precision training run of a seeded MLP on in-memory data, with learning curve and meters.
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from './tf.ts';
import type { Dataset } from './data.ts';
import { createRng } from '../src/precision/rng.ts';
import { SlimfitError } from '../src/core/errors.ts';
import { createTrainer, type LowPrecisionTrainer, type OptimizerSpec, type PrecisionSpec, type StepReport } from './train.ts';

/** A seeded fully connected ReLU network dim-hidden...-classes with a linear (logit) output. */
export function buildMlp(dim: number, hidden: number[], classes: number, seed: number): tfl.LayersModel {
  const m = tfl.sequential();
  hidden.forEach((h, k) => m.add(tfl.layers.dense({
    ...(k === 0 ? { inputShape: [dim] } : {}), units: h, activation: 'relu',
    kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 1000 + k + 1 }), biasInitializer: 'zeros',
  })));
  m.add(tfl.layers.dense({ ...(hidden.length === 0 ? { inputShape: [dim] } : {}), units: classes, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 1000 + hidden.length + 1 }), biasInitializer: 'zeros' }));
  return m;
}

/** A point of a learning curve (meters are averaged over the steps since the previous point). */
export interface CurvePoint {
  step: number;
  epoch: number;
  trainLoss: number;
  testAcc: number;
  /** Fraction of nonzero updates that left the stored weight unchanged (deferred or lost). */
  swallowed: number;
  /** Update mass lost in expectation, Σ|u − E[applied]| / Σ|u| (lab/update.ts). */
  lostMass: number;
  /** Update mass lost this step as realized, Σ|u − applied| / Σ|u| (stochastic rounding: mostly noise). */
  lostRealized: number;
  /** Fraction of nonzero gradients below the gradient format's smallest positive value. */
  gradUnderflow: number;
  overflow: number;
  /** Fraction of activations that saturated (fixed point) or overflowed, forward pass. */
  actSaturated: number;
  skipped: number;
  lossScale: number;
}

/** Configuration of {@link runTraining}. */
export interface RunConfig {
  hidden: number[];
  opt: OptimizerSpec;
  prec: PrecisionSpec;
  train: Dataset;
  test: Dataset;
  batch: number;
  /** Number of optimizer steps. */
  steps: number;
  /** Seed of the initial weights and of the sample order. */
  seed: number;
  /** Seed of the sample order (default: seed). */
  orderSeed?: number;
  evalEvery: number;
  /** Change the initial (fp32) weights before training, e.g. flip one ulp. */
  perturb?: (weights: Float32Array[]) => void;
  /** Swap these two positions of the first epoch's sample order. */
  swap?: [number, number];
  /** Build the network instead of the default MLP of `hidden` (e.g. a CNN whose first layer reshapes the flat rows). */
  model?: (dim: number, classes: number, seed: number) => tfl.LayersModel;
  /** Called with the stored weights at every evaluation point (the model holds them too). */
  onEval?: (step: number, stored: Float32Array[], pred: Uint8Array, model: tfl.LayersModel) => void;
  /** Called after each step (for progress). */
  onStep?: (r: StepReport) => void;
}

/** Outcome of a run: curve, final accuracy, per-layer swallowed fractions, wall time. */
export interface RunResult {
  curve: CurvePoint[];
  finalAcc: number;
  pred: Uint8Array;
  layerSwallowed: { name: string; frac: number }[];
  /** Over the whole run: Σ|u − E[applied]| / Σ|u| and the realized Σ|u − applied| / Σ|u| (lab/update.ts). */
  lostMass: number;
  lostRealized: number;
  seconds: number;
  trainer: LowPrecisionTrainer;
}

/** Accuracy (and predicted labels) of `trainer` on `data`. */
export function evaluate(trainer: LowPrecisionTrainer, data: Dataset, batch = 1000): { acc: number; pred: Uint8Array } {
  const pred = new Uint8Array(data.n);
  let correct = 0;
  for (let s = 0; s < data.n; s += batch) {
    const n = Math.min(batch, data.n - s);
    const x = tf.tensor2d(data.x.subarray(s * data.dim, (s + n) * data.dim), [n, data.dim]);
    const p = trainer.predict(x);
    const am = tf.argMax(p, -1);
    const a = am.dataSync();
    for (let i = 0; i < n; i++) { pred[s + i] = a[i]; if (a[i] === data.y[s + i]) correct++; }
    tf.dispose([x, p, am]);
  }
  return { acc: correct / data.n, pred };
}

/** Fisher–Yates permutation of 0..n-1 from a seeded stream. */
export function permutation(n: number, seed: number): Uint32Array {
  const rng = createRng(seed);
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    const t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

/**
 * A seeded LeNet-like CNN for flat 28×28 rows: reshape, conv 5×5 (8 maps) + ReLU, 2×2 max-pool, conv 5×5 (16 maps) +
 * ReLU, 2×2 max-pool, dense 128 + ReLU, dense `classes` (logits).
 *
 * @example
 * const m = buildLenet(784, 10, 1); // m.predict(tf.zeros([1, 784])) has shape [1, 10]
 */
export function buildLenet(dim: number, classes: number, seed: number, maps: [number, number] = [8, 16], dense = 128): tfl.LayersModel {
  const side = Math.round(Math.sqrt(dim));
  if (side * side !== dim) throw new SlimfitError(`a LeNet-like CNN needs square single-channel images, got ${dim} values per row`, { hint: 'use the MLP for non-image rows' });
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: seed * 1000 + k });
  const m = tfl.sequential();
  m.add(tfl.layers.reshape({ inputShape: [dim], targetShape: [side, side, 1] }));
  m.add(tfl.layers.conv2d({ filters: maps[0], kernelSize: 5, activation: 'relu', kernelInitializer: init(1), biasInitializer: 'zeros' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.conv2d({ filters: maps[1], kernelSize: 5, activation: 'relu', kernelInitializer: init(2), biasInitializer: 'zeros' }));
  m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
  m.add(tfl.layers.flatten());
  m.add(tfl.layers.dense({ units: dense, activation: 'relu', kernelInitializer: init(3), biasInitializer: 'zeros' }));
  m.add(tfl.layers.dense({ units: classes, kernelInitializer: init(4), biasInitializer: 'zeros' }));
  return m;
}

/**
 * A process-wide hook `lab estimate` sets to time training: called once before the first step (after the model is built
 * and evaluated at step 0) and after every optimizer step; it may throw to stop the run.
 */
export const STEP_PROBE: { fn: ((event: 'start' | 'step') => void) | null } = { fn: null };

/** Train a fresh seeded MLP (or `cfg.model`) under `cfg.prec` and record its learning curve. */
export function runTraining(cfg: RunConfig): RunResult {
  const t0 = performance.now();
  const { train, test, batch } = cfg;
  const model = cfg.model ? cfg.model(train.dim, train.classes, cfg.seed) : buildMlp(train.dim, cfg.hidden, train.classes, cfg.seed);
  if (cfg.perturb) {
    const ws = model.getWeights();
    const arrs = ws.map((w) => (w.dataSync() as Float32Array).slice());
    cfg.perturb(arrs);
    model.setWeights(arrs.map((a, i) => tf.tensor(a, ws[i].shape)));
  }
  const trainer = createTrainer(model, cfg.opt, cfg.prec);
  const stepsPerEpoch = Math.floor(train.n / batch);
  const xb = new Float32Array(batch * train.dim);
  const yb = new Float32Array(batch * train.classes);
  const curve: CurvePoint[] = [];
  const layerUpd = new Map<string, [number, number]>();
  const tot = { mass: 0, lostE: 0, lostR: 0 };
  let acc = { loss: 0, n: 0, upd: 0, sw: 0, nz: 0, uf: 0, ov: 0, skipped: 0, act: 0, actOv: 0, mass: 0, lostE: 0, lostR: 0 };
  let order: Uint32Array = new Uint32Array(0);
  let last: { acc: number; pred: Uint8Array } = { acc: NaN, pred: new Uint8Array(0) };
  const point = (step: number) => {
    last = evaluate(trainer, test);
    curve.push({
      step, epoch: step / stepsPerEpoch, trainLoss: acc.n ? acc.loss / acc.n : NaN, testAcc: last.acc,
      swallowed: acc.upd ? acc.sw / acc.upd : 0, lostMass: acc.mass ? acc.lostE / acc.mass : 0, lostRealized: acc.mass ? acc.lostR / acc.mass : 0, gradUnderflow: acc.nz ? acc.uf / acc.nz : 0, overflow: acc.ov,
      actSaturated: acc.act ? acc.actOv / acc.act : 0, skipped: acc.skipped, lossScale: trainer.lossScale(),
    });
    cfg.onEval?.(step, trainer.stored(), last.pred, trainer.model);
    acc = { loss: 0, n: 0, upd: 0, sw: 0, nz: 0, uf: 0, ov: 0, skipped: 0, act: 0, actOv: 0, mass: 0, lostE: 0, lostR: 0 };
  };
  point(0);
  STEP_PROBE.fn?.('start');
  for (let step = 0; step < cfg.steps; step++) {
    const e = Math.floor(step / stepsPerEpoch);
    const k = step % stepsPerEpoch;
    if (k === 0) {
      order = permutation(train.n, (cfg.orderSeed ?? cfg.seed) * 7919 + e);
      if (e === 0 && cfg.swap) { const [a, b] = cfg.swap; const t = order[a]; order[a] = order[b]; order[b] = t; }
    }
    yb.fill(0);
    for (let i = 0; i < batch; i++) {
      const r = order[k * batch + i];
      xb.set(train.x.subarray(r * train.dim, (r + 1) * train.dim), i * train.dim);
      yb[i * train.classes + train.y[r]] = 1;
    }
    const x = tf.tensor2d(xb, [batch, train.dim]);
    const y = tf.tensor2d(yb, [batch, train.classes]);
    const r = trainer.step(x, y);
    tf.dispose([x, y]);
    cfg.onStep?.(r);
    STEP_PROBE.fn?.('step');
    if (Number.isFinite(r.loss)) { acc.loss += r.loss; acc.n++; }
    if (r.skipped) acc.skipped++;
    acc.act += r.activations.count; acc.actOv += r.activations.overflow;
    for (const v of r.vars) {
      acc.upd += v.updates; acc.sw += v.swallowed; acc.mass += v.updateMass; acc.lostE += v.lostExpected; acc.lostR += v.lostRealized;
      tot.mass += v.updateMass; tot.lostE += v.lostExpected; tot.lostR += v.lostRealized; acc.nz += v.nonzeroGrads; acc.uf += v.gradUnderflow;
      acc.ov += v.weightOverflow + v.gradOverflow + v.stateOverflow;
      const lu = layerUpd.get(v.name) ?? [0, 0];
      lu[0] += v.updates; lu[1] += v.swallowed;
      layerUpd.set(v.name, lu);
    }
    if ((step + 1) % cfg.evalEvery === 0 || step + 1 === cfg.steps) point(step + 1);
  }
  const layerSwallowed = [...layerUpd].map(([name, [u, s]]) => ({ name, frac: u ? s / u : 0 }));
  return { curve, finalAcc: last.acc, pred: last.pred, layerSwallowed, lostMass: tot.mass ? tot.lostE / tot.mass : 0, lostRealized: tot.mass ? tot.lostR / tot.mass : 0, seconds: (performance.now() - t0) / 1000, trainer };
}
