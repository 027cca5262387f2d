// Low-precision training of a TensorFlow.js layers model: weights stored in a format F, optimizer updates done
// here on Float32Arrays so every update can be metered (swallowed updates, gradient underflow, overflow).
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { FP32, NATIVE_MIN_LENGTH, newStats, quantize, type Format, type QuantStats, type Rounding } from '../src/precision/formats.ts';
import { COUNTS, nativeQuant } from '../src/precision/native.ts';
import { createRng, type Rng } from '../src/precision/rng.ts';
import { SlimfitError } from '../src/core/errors.ts';
import { applyUpdate, updateScratch, type UpdateScratch, type WeightSlot } from './update.ts';
import { DelayedScaledSite, DynamicFixedSite, staticSite, type DynamicSpec, type ScaledSpec, type Site } from './dynfixed.ts';
import { denseChain, type GemmSpec } from './gemm.ts';

/** The optimizers the lab implements itself. */
export type OptimizerKind = 'sgd' | 'momentum' | 'adam';

/** Optimizer and its hyper-parameters (defaults: momentum 0.9, Adam 0.9/0.999/1e-8). */
export interface OptimizerSpec {
  kind: OptimizerKind;
  lr: number;
  momentum?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Learning-rate decay: cosine from lr to lr·final over `steps` optimizer steps (then held), default none. */
  decay?: { steps: number; final?: number };
}

/** The learning rate of optimizer step t (1-based) under `opt.decay`. */
export function lrAt(opt: OptimizerSpec, t: number): number {
  if (!opt.decay) return opt.lr;
  const f = opt.decay.final ?? 0.01;
  const p = Math.min(1, Math.max(0, (t - 1) / Math.max(1, opt.decay.steps - 1)));
  return opt.lr * (f + (1 - f) * 0.5 * (1 + Math.cos(Math.PI * p)));
}

/** Loss scaling for narrow gradient formats: none, a fixed factor, or dynamic (grow after `interval` good steps, back off on inf/NaN). */
export type LossScaleSpec =
  | { kind: 'none' }
  | { kind: 'static'; scale: number }
  | { kind: 'dynamic'; init?: number; growth?: number; backoff?: number; interval?: number };

/** Where each quantity lives. Omitted formats mean float32. */
export interface PrecisionSpec {
  /** Format of the stored weights (quantized after every update). */
  weights: Format;
  /** Rounding used when storing weights. */
  rounding: Rounding;
  /** Keep an fp32 master copy: updates accumulate there; the stored weights are its rounding. */
  master?: boolean;
  /** Kahan-compensated updates (the compensation is kept in fp32: in the weight format it would lose what it carries). */
  kahan?: boolean;
  /** Format of the (loss-scaled) weight gradients and of back-propagated errors. */
  grads?: Format;
  gradRounding?: Rounding;
  /** Format of optimizer state (momentum buffer, Adam moments). */
  state?: Format;
  stateRounding?: Rounding;
  /** Format of every layer's output activation (sequential models only). */
  activations?: Format;
  actRounding?: Rounding;
  lossScale?: LossScaleSpec;
  /** Constant factor on the loss (default 1), e.g. a mean over many outputs; small values make gradients tiny (divide lr by it). */
  lossWeight?: number;
  /** Seed of the stochastic-rounding stream. */
  seed?: number;
  /**
   * Dynamic fixed point (Courbariaux et al. 2014) instead of the formats above for weights, gradients, layer outputs
   * and back-propagated errors: WL-bit codes with a per-tensor power-of-two scale that follows the overflow rate.
   */
  dynamic?: DynamicSpec;
  /** Format of back-propagated errors (default: `grads`), e.g. E5M2 while weight gradients stay fp32 (FP8 training). */
  errors?: Format;
  errorRounding?: Rounding;
  /** Per-tensor delayed scaling (power-of-two scales from an amax history) for every float format site below fp32. */
  scaled?: ScaledSpec;
  /** Quantized products of the Dense layers (MX or int8 GEMM operands; lab/gemm.ts), in training and in predict. */
  gemm?: GemmSpec;
}

/** Per-variable counters of one step. Fractions are over `updates` (elements whose fp32 update was nonzero). */
export interface VarMeter {
  name: string;
  size: number;
  /** Elements with a nonzero computed update. */
  updates: number;
  /** Of those, elements whose stored weight did not change (under SR, a master copy or Kahan the update is deferred, not lost). */
  swallowed: number;
  /** Σ|u| of the intended updates u (see lab/update.ts). */
  updateMass: number;
  /** Σ|u − E[change of the effective weight]|: update mass lost in expectation (NaN where the site cannot say). */
  lostExpected: number;
  /** Σ|u − change of the effective weight| this step (stochastic rounding: noise, not loss). */
  lostRealized: number;
  /** Nonzero (scaled) gradients below the gradient format's smallest positive value. */
  gradUnderflow: number;
  /** Nonzero gradients. */
  nonzeroGrads: number;
  weightOverflow: number;
  gradOverflow: number;
  stateOverflow: number;
}

/** What one training step did. */
export interface StepReport {
  step: number;
  loss: number;
  lossScale: number;
  /** The step was skipped because gradients were not finite (loss scaling backs off). */
  skipped: boolean;
  /** Activations rounded this step, and how many saturated/overflowed (forward) or back-propagated errors did (backward). */
  activations: { count: number; overflow: number; backwardOverflow: number; underflow: number };
  vars: VarMeter[];
}

/** A model bound to a precision recipe; `step` trains on one batch. */
export interface LowPrecisionTrainer {
  readonly model: tfl.LayersModel;
  /** One update on a batch (x and one-hot y); returns the loss and meters. */
  step(x: tf.Tensor, y: tf.Tensor): StepReport;
  /** Forward pass as used in training (activations quantized with round-to-nearest), no update. */
  predict(x: tf.Tensor): tf.Tensor;
  /** Current loss scale. */
  lossScale(): number;
  /** The stored (quantized) weights, one array per trainable variable (do not modify). */
  stored(): Float32Array[];
  /** Release tensors held by the trainer (not the model). */
  dispose(): void;
}

interface VarState {
  v: tf.Variable;
  wSite: Site;
  gSite: Site;
  name: string;
  shape: number[];
  slot: WeightSlot;
  scratch: UpdateScratch;
  m1: Float32Array | null;
  m2: Float32Array | null;
  g: Float32Array;
  d: Float32Array;
}

/** Give `v` the values `data` (the array is handed over to TensorFlow.js: do not modify it afterwards). */
function assignData(v: tf.Variable, data: Float32Array): void {
  const t = tf.tensor(data, v.shape, 'float32');
  v.assign(t);
  t.dispose();
}

/** True when the model's last layer applies softmax (then the loss is cross-entropy on probabilities). */
function endsInSoftmax(model: tfl.LayersModel): boolean {
  const last = model.layers[model.layers.length - 1];
  const cfg = last.getConfig() as { activation?: string };
  return cfg.activation === 'softmax';
}

/** A differentiable op that rounds its input to `fmt` forward and the incoming error to `gfmt` backward (straight-through). */
export function quantizeOp(fmt: Format | Site, rounding: Rounding, gfmt: Format | Site | undefined, grounding: Rounding, rng: Rng, stats?: { forward: QuantStats; backward: QuantStats; count: number }): (x: tf.Tensor) => tf.Tensor {
  const fs = 'quantize' in fmt ? fmt : staticSite(fmt);
  const gs = gfmt === undefined ? undefined : 'quantize' in gfmt ? gfmt : gfmt.kind === 'fp32' ? undefined : staticSite(gfmt);
  return tf.customGrad(((x: tf.Tensor) => {
    const v = x.dataSync() as Float32Array;
    const q = fs.quantize(v, { rounding, rng, out: new Float32Array(v.length), stats: stats?.forward });
    if (stats) stats.count += v.length;
    return {
      value: tf.tensor(q, x.shape, 'float32'),
      gradFunc: (dy: tf.Tensor) => {
        if (!gs) return dy.clone();
        const dv = dy.dataSync() as Float32Array;
        return tf.tensor(gs.quantize(dv, { rounding: grounding, rng, out: new Float32Array(dv.length), stats: stats?.backward }), dy.shape, 'float32');
      },
    };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;
}

/** Bind `model` to an optimizer and precision recipe. Weights are rounded (to nearest) into the format at once. */
export function createTrainer(model: tfl.LayersModel, opt: OptimizerSpec, prec: PrecisionSpec): LowPrecisionTrainer {
  const rng = createRng(prec.seed ?? 1);
  const wf = prec.weights;
  const gf = prec.grads ?? FP32;
  const sf = prec.state ?? FP32;
  const softmaxOut = endsInSoftmax(model);
  if (((prec.activations && prec.activations.kind !== 'fp32') || prec.dynamic) && model.getClassName() !== 'Sequential') {
    throw new SlimfitError(`activation quantization needs a sequential model (a chain of layers); '${model.name}' is a ${model.getClassName()} graph`, {
      hint: 'quantize weights, gradients and optimizer state only (omit activations), or build the model with tf.sequential',
    });
  }
  const actStats = { forward: newStats(), backward: newStats(), count: 0 };
  const dyn = prec.dynamic;
  const site = (fmt: Format): Site => (dyn ? new DynamicFixedSite(dyn) : prec.scaled && fmt.kind === 'float' ? new DelayedScaledSite(fmt, prec.scaled) : staticSite(fmt));
  const ef = prec.errors ?? prec.grads;
  // the weights' plain format, when they have one (the lost-mass meter needs it for stochastic rounding's expectation)
  const plainWeights = dyn || (prec.scaled && wf.kind === 'float') ? null : wf;
  const quantLayers = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  // one forward site per layer output (its scale is shared by inference) and one per back-propagated error
  const fwdSites = (prec.activations && prec.activations.kind !== 'fp32') || dyn ? quantLayers.map(() => site(prec.activations ?? FP32)) : null;
  const actOps = fwdSites
    ? fwdSites.map((fs) => quantizeOp(fs, prec.actRounding ?? 'nearest', dyn ? new DynamicFixedSite(dyn) : ef && ef.kind !== 'fp32' ? site(ef) : undefined, prec.errorRounding ?? prec.gradRounding ?? 'nearest', rng, actStats))
    : null;
  const inferOps = fwdSites ? fwdSites.map((fs) => quantizeOp(inferSite(fs), 'nearest', undefined, 'nearest', rng)) : null;
  const ls = prec.lossScale ?? { kind: 'none' };
  let scale = ls.kind === 'static' ? ls.scale : ls.kind === 'dynamic' ? (ls.init ?? 2 ** 15) : 1;
  let goodSteps = 0;
  let t = 0;
  const b1 = opt.beta1 ?? 0.9, b2 = opt.beta2 ?? 0.999, eps = opt.eps ?? 1e-8, mu = opt.momentum ?? 0.9;

  const vars: VarState[] = model.trainableWeights.map((w) => {
    const v = w.read() as tf.Variable;
    const init = (v.dataSync() as Float32Array).slice();
    const wSite = site(wf), gSite = site(gf);
    const stored = wSite.quantize(init, {});
    assignData(v, stored.slice());
    const n = init.length;
    return {
      v, name: w.name, shape: v.shape, wSite, gSite,
      slot: { stored, master: prec.master ? init : null, comp: prec.kahan ? new Float32Array(n) : null },
      scratch: updateScratch(n),
      m1: opt.kind === 'sgd' ? null : new Float32Array(n),
      m2: opt.kind === 'adam' ? new Float32Array(n) : null,
      g: new Float32Array(n), d: new Float32Array(n),
    };
  });
  const tfVars = vars.map((s) => s.v);

  if (prec.gemm && fwdSites) throw new SlimfitError('a recipe quantizes either GEMM operands (gemm) or layer outputs (activations/dynamic), not both');
  const gemm = prec.gemm;
  const forward = (x: tf.Tensor, ops: ((x: tf.Tensor) => tf.Tensor)[] | null, training: boolean): tf.Tensor => {
    if (gemm) return denseChain(quantLayers, x, gemm, training);
    if (!ops) return model.apply(x, { training }) as tf.Tensor;
    let h = x;
    quantLayers.forEach((layer, k) => { h = ops[k](layer.apply(h, { training }) as tf.Tensor); });
    return h;
  };
  const lossOf = (out: tf.Tensor, y: tf.Tensor): tf.Scalar => softmaxOut
    ? tf.neg(tf.mean(tf.sum(tf.mul(y, tf.log(tf.add(out, 1e-7))), -1))) as tf.Scalar
    : tf.losses.softmaxCrossEntropy(y, out) as tf.Scalar;

  const actMeter = () => ({ count: actStats.count, overflow: actStats.forward.overflow, backwardOverflow: actStats.backward.overflow, underflow: actStats.forward.underflow });
  const step = (x: tf.Tensor, y: tf.Tensor): StepReport => {
    const S = scale * (prec.lossWeight ?? 1);
    actStats.forward = newStats(); actStats.backward = newStats(); actStats.count = 0;
    const { value, grads } = tf.variableGrads(() => {
      const l = lossOf(forward(x, actOps, true), y);
      return (S !== 1 ? tf.mul(l, S) : l) as tf.Scalar;
    }, tfVars);
    const loss = (value.dataSync()[0]) / S; // the unweighted, unscaled loss
    const meters: VarMeter[] = [];
    let finite = Number.isFinite(loss);
    const gStats: QuantStats[] = [];
    // 1. gradients: scaled values rounded to the gradient format, then unscaled in fp32
    for (const s of vars) {
      const raw = grads[s.v.name].dataSync() as Float32Array;
      const minPos = s.gSite.minPositive();
      const k = raw.length >= NATIVE_MIN_LENGTH ? nativeQuant() : null; // the same loops in native/quant.cc
      let nz = 0, under = 0;
      if (k) { k.gradCount(raw, minPos, COUNTS); nz = COUNTS[0]; under = COUNTS[1]; } else {
        for (let i = 0; i < raw.length; i++) {
          const a = Math.abs(raw[i]);
          if (a !== 0) { nz++; if (a < minPos) under++; }
        }
      }
      const st = newStats();
      s.gSite.quantize(raw, { rounding: prec.gradRounding ?? 'nearest', rng, out: s.g, stats: st });
      gStats.push(st);
      const inv = 1 / scale; // undo the loss scale only (the loss weight is part of the objective)
      const g = s.g;
      if (k) { if (!k.gradScale(g, inv)) finite = false; } else for (let i = 0; i < g.length; i++) { g[i] *= inv; if (!Number.isFinite(g[i])) finite = false; }
      meters.push({ name: s.name, size: g.length, updates: 0, swallowed: 0, updateMass: 0, lostExpected: 0, lostRealized: 0, gradUnderflow: under, nonzeroGrads: nz, weightOverflow: 0, gradOverflow: st.overflow, stateOverflow: 0 });
    }
    tf.dispose(value);
    tf.dispose(Object.values(grads));
    if (!finite && ls.kind !== 'none') {
      if (ls.kind === 'dynamic') { scale *= ls.backoff ?? 0.5; goodSteps = 0; }
      return { step: t, loss, lossScale: scale, skipped: true, vars: meters, activations: actMeter() };
    }
    t++;
    if (ls.kind === 'dynamic' && ++goodSteps >= (ls.interval ?? 2000)) { scale *= ls.growth ?? 2; goodSteps = 0; }
    const c1 = 1 - b1 ** t, c2 = 1 - b2 ** t;
    const lrNow = lrAt(opt, t);
    vars.forEach((s, vi) => {
      const { g, d } = s;
      const n = g.length;
      const sst = newStats();
      // 2. optimizer update in fp32 arithmetic, state rounded to its format after each update (the loops also in
      // native/quant.cc's optimStep, the same double arithmetic in the same order)
      const k = n >= NATIVE_MIN_LENGTH ? nativeQuant() : null;
      if (opt.kind === 'sgd') {
        if (k) k.optimStep(0, g, d, null, null, lrNow, 0, 0, 0, 0);
        else for (let i = 0; i < n; i++) d[i] = -lrNow * g[i];
      } else if (opt.kind === 'momentum') {
        const m = s.m1!;
        if (k) k.optimStep(1, g, null, m, null, 0, mu, 0, 0, 0);
        else for (let i = 0; i < n; i++) m[i] = mu * m[i] + g[i];
        if (sf.kind !== 'fp32') quantize(sf, m, { rounding: prec.stateRounding ?? 'nearest', rng, out: m, stats: sst });
        if (k) k.optimStep(2, null, d, m, null, lrNow, 0, 0, 0, 0);
        else for (let i = 0; i < n; i++) d[i] = -lrNow * m[i];
      } else {
        const m = s.m1!, v = s.m2!;
        if (k) k.optimStep(3, g, null, m, v, 0, b1, 1 - b1, b2, 1 - b2);
        else for (let i = 0; i < n; i++) { m[i] = b1 * m[i] + (1 - b1) * g[i]; v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i]; }
        if (sf.kind !== 'fp32') {
          quantize(sf, m, { rounding: prec.stateRounding ?? 'nearest', rng, out: m, stats: sst });
          quantize(sf, v, { rounding: prec.stateRounding ?? 'nearest', rng, out: v, stats: sst });
        }
        if (k) k.optimStep(4, null, d, m, v, lrNow, c1, c2, eps, 0);
        else for (let i = 0; i < n; i++) d[i] = -lrNow * (m[i] / c1) / (Math.sqrt(v[i] / c2) + eps);
      }
      // 3. apply to master (fp32) or directly to the stored weights, optionally Kahan-compensated (lab/update.ts)
      const { next, meter } = applyUpdate(s.slot, d, s.wSite, plainWeights, prec.rounding, rng, s.scratch);
      assignData(s.v, next); // a fresh array: TensorFlow.js may keep it
      const mt = meters[vi];
      mt.updates = meter.updates; mt.swallowed = meter.unchanged; mt.updateMass = meter.mass; mt.lostExpected = meter.lostExpected; mt.lostRealized = meter.lostRealized;
      mt.weightOverflow = meter.overflow; mt.stateOverflow = sst.overflow;
    });
    return { step: t, loss, lossScale: scale, skipped: false, vars: meters, activations: actMeter() };
  };

  return {
    model,
    step,
    predict: (x) => tf.tidy(() => {
      const out = forward(x, inferOps, false);
      return softmaxOut ? out : tf.softmax(out);
    }),
    lossScale: () => scale,
    stored: () => vars.map((s) => s.slot.stored),
    dispose: () => { /* all tensors are disposed per step; variables belong to the model */ },
  };
}

/** Bytes per parameter of a recipe: stored weights + fp32 master + Kahan compensation + optimizer state. */
export function bytesPerParam(prec: Pick<PrecisionSpec, 'weights' | 'master' | 'kahan' | 'state'>, opt: OptimizerKind): { weights: number; master: number; kahan: number; state: number; total: number } {
  const weights = prec.weights.bits / 8;
  const master = prec.master ? 4 : 0;
  const kahan = prec.kahan ? 4 : 0;
  const slots = opt === 'sgd' ? 0 : opt === 'momentum' ? 1 : 2;
  const state = slots * (prec.state ?? FP32).bits / 8;
  return { weights, master, kahan, state, total: weights + master + kahan + state };
}

/** A site for inference that rounds like `fs` (a dynamic site: at its current scale) without adapting it. */
function inferSite(fs: Site): Site {
  if (fs instanceof DelayedScaledSite) return { ...fs, quantize: (x, o) => fs.quantizeFrozen(x, o), quantizeSum: (a, b, o) => fs.quantizeSum(a, b, o), minPositive: () => fs.minPositive(), describe: () => fs.describe() };
  if (!(fs instanceof DynamicFixedSite)) return fs;
  return {
    quantize: (x, o) => new DynamicFixedSite({ ...fs.spec, initFl: fs.fl, maxOverflowRate: Infinity }).quantize(x, o),
    quantizeSum: (a, b, o) => fs.quantizeSum(a, b, o),
    minPositive: () => fs.minPositive(),
    describe: () => fs.describe(),
  };
}
