// int8 post-training quantization (PTQ) and quantization-aware training (QAT) of the lab's MNIST MLP, per-tensor and
// per-channel weights: symmetric int8 weights, GEMM inputs affine int8 per tensor calibrated on training data; QAT
// fine-tunes the fp32 model with fake quantization and straight-through gradients. n seeds, paired with each seed's
// fp32 model.
import { tf } from './tf.ts';
import { FP32 } from '../src/precision/formats.ts';
import { cachedMnist, type Dataset } from './data.ts';
import { runUnits, runsNote, unitConfig, type Unit, type UnitConfig } from './runs.ts';
import { table, writeSection } from './report.ts';
import { evaluate, permutation, runTraining } from './run.ts';
import { logger, noteOutcome, saveJson, stamp, type LabOptions } from './common.ts';
import { interval, meanSd, pairedClause, pairedDiffs, pairedSay, pairedGapPoints } from './stats.ts';
import { createTrainer, type LowPrecisionTrainer, type OptimizerSpec } from './train.ts';
import { int8Gemm, type Int8Gemm } from './gemm.ts';

/** Options of the int8 experiment. */
export interface Int8Options extends LabOptions { size?: 'tiny' | 'quick' | 'full'; seeds?: number }

/**
 * One recipe: per-seed accuracies, per-seed differences to that seed's fp32 model, and (QAT rows) to the fp32 model
 * fine-tuned the same steps.
 */
export interface Int8Cell { key: string; name: string; what: string; accs: number[]; diffs: number[]; vsControl?: number[] }

/** The saved JSON of the int8 section (`precision/int8.json`). */
export interface Int8Data { quick: boolean; size: string; seeds: number; calibration: number; fineTuneSteps: number; cells: Int8Cell[] }

/** Record each layer's GEMM input range on `n` training samples (fp32 forward). */
function calibrate(trainer: LowPrecisionTrainer, g: Int8Gemm, train: Dataset, n: number): void {
  g.calibrating = true;
  for (let s = 0; s < n; s += 500) {
    const x = tf.tensor2d(train.x.subarray(s * train.dim, Math.min(n, s + 500) * train.dim), [Math.min(500, n - s), train.dim]);
    tf.dispose([x, trainer.predict(x)]);
  }
  g.calibrating = false;
}

/** `steps` optimizer steps of `trainer` over `train` (batch 100, a seeded order). */
function fineTune(trainer: LowPrecisionTrainer, train: Dataset, steps: number, seed: number): void {
  const batch = 100, per = Math.floor(train.n / batch);
  const xb = new Float32Array(batch * train.dim), yb = new Float32Array(batch * train.classes);
  let order = permutation(train.n, seed);
  for (let s = 0; s < steps; s++) {
    const k = s % per;
    if (k === 0 && s > 0) order = permutation(train.n, seed + s);
    yb.fill(0);
    for (let i = 0; i < batch; i++) {
      const r = order[k * batch + i];
      xb.set(train.x.subarray(r * train.dim, (r + 1) * train.dim), i * train.dim);
      yb[i * train.classes + train.y[r]] = 1;
    }
    const x = tf.tensor2d(xb, [batch, train.dim]), y = tf.tensor2d(yb, [batch, train.classes]);
    trainer.step(x, y);
    tf.dispose([x, y]);
  }
}

/** Bumped when an int8 run's meaning changes (its records then no longer count). */
export const INT8_VERSION = 1;

/** Network, data and calibration by size. */
export function int8Config(size: 'tiny' | 'quick' | 'full') {
  return size === 'tiny' ? { size, hidden: [64, 64], trainN: 2000, testN: 1000, epochs: 5, seeds: 3, calib: 500 }
    : size === 'quick' ? { size, hidden: [256, 256], trainN: 10000, testN: 2000, epochs: 3, seeds: 3, calib: 1000 }
      : { size, hidden: [512, 512], trainN: 60000, testN: 10000, epochs: 5, seeds: 5, calib: 2000 };
}

/** One int8 unit: a seed (its fp32 model and every int8 row made from it). */
export interface Int8UnitSpec { cfg: UnitConfig<ReturnType<typeof int8Config>>; seed: number }

/**
 * Train one seed's fp32 model and derive every row from it (the unit of the run store); returns accuracy by row key.
 * @example await int8Unit({ cfg: unitConfig(int8Config('tiny')), seed: 1 }) // { fp32: 0.9, 'ptq-tensor': 0.9, ... }
 */
export async function int8Unit(u: Int8UnitSpec): Promise<Record<string, number>> {
  const { cfg, seed } = u;
  const train = await cachedMnist('train', cfg.trainN);
  const test = await cachedMnist('test', cfg.testN);
  const steps = Math.floor(train.n / 100) * cfg.epochs;
  const ftSteps = Math.floor(train.n / 100);
  const opt: OptimizerSpec = { kind: 'adam', lr: 1e-3 };
  const ftOpt: OptimizerSpec = { kind: 'adam', lr: 1e-4 };
  const layers = cfg.hidden.length + 1;
  const base = runTraining({ hidden: cfg.hidden, opt, prec: { weights: FP32, rounding: 'nearest' }, train, test, batch: 100, steps, seed, evalEvery: steps });
  const model = base.trainer.model;
  const w0 = model.getWeights().map((w) => w.clone());
  const accs: Record<string, number> = { fp32: base.finalAcc };
  for (const pc of [false, true]) {
    const g = int8Gemm(layers, pc);
    const tr = createTrainer(model, opt, { weights: FP32, rounding: 'nearest', gemm: g });
    calibrate(tr, g, train, cfg.calib);
    accs[pc ? 'ptq-channel' : 'ptq-tensor'] = evaluate(tr, test).acc;
  }
  for (const pc of [false, true, null]) {
    model.setWeights(w0);
    const g = pc === null ? undefined : int8Gemm(layers, pc);
    const tr = createTrainer(model, ftOpt, { weights: FP32, rounding: 'nearest', gemm: g });
    if (g) calibrate(tr, g, train, cfg.calib);
    fineTune(tr, train, ftSteps, seed * 7919 + 101);
    accs[pc === null ? 'fp32-ft' : pc ? 'qat-channel' : 'qat-tensor'] = evaluate(tr, test).acc;
  }
  tf.dispose(w0);
  return accs;
}

/** The int8 units for the options (one per seed). */
export function int8Units(o: Int8Options): Unit<Int8UnitSpec>[] {
  const cfg = int8Config(o.size ?? (o.quick ? 'quick' : 'full'));
  return Array.from({ length: o.seeds ?? cfg.seeds }, (_, k) => ({ spec: { cfg: unitConfig(cfg), seed: 1 + k }, label: `seed ${1 + k}` }));
}

/**
 * Run PTQ and QAT (per-tensor and per-channel) on fp32 models and write the int8 section.
 * @example await labInt8({ quick: true, out: '/tmp/reports' }) // writes /tmp/reports/precision/int8.{md,json}
 */
export async function labInt8(o: Int8Options): Promise<Int8Data | null> {
  const log = logger(o);
  const t0 = performance.now();
  const size = o.size ?? (o.quick ? 'quick' : 'full');
  const cfg = int8Config(size);
  const seeds = o.seeds ?? cfg.seeds;
  const steps = Math.floor(cfg.trainN / 100) * cfg.epochs;
  const ftSteps = Math.floor(cfg.trainN / 100); // one epoch of fine-tuning
  const what = (pc: boolean) => `W symmetric int8 (scale max abs(w) / 127, codes ±127) ${pc ? 'per output channel' : 'per tensor'}; every GEMM input (pixels included) affine int8 per tensor`;
  const cells: Int8Cell[] = [
    { key: 'fp32', name: 'fp32 (trained)', what: 'nothing', accs: [], diffs: [] },
    { key: 'ptq-tensor', name: 'PTQ, per-tensor weights', what: `${what(false)}, ranges from ${cfg.calib} training images`, accs: [], diffs: [] },
    { key: 'ptq-channel', name: 'PTQ, per-channel weights', what: `${what(true)}, ranges from ${cfg.calib} training images`, accs: [], diffs: [] },
    { key: 'qat-tensor', name: 'QAT, per-tensor weights', what: `${what(false)}; fine-tuned ${ftSteps} steps, Adam lr 1e-4, straight-through, ranges by EMA (0.01)`, accs: [], diffs: [] },
    { key: 'qat-channel', name: 'QAT, per-channel weights', what: `${what(true)}; fine-tuned ${ftSteps} steps, Adam lr 1e-4, straight-through, ranges by EMA (0.01)`, accs: [], diffs: [] },
    { key: 'fp32-ft', name: 'fp32 fine-tuned as QAT (control)', what: `nothing; the same ${ftSteps} fine-tuning steps in fp32`, accs: [], diffs: [] },
  ];
  const at = (key: string) => cells.find((c) => c.key === key)!;
  const units = int8Units(o);
  const outcome = await runUnits('int8', INT8_VERSION, units, int8Unit, { out: o.out, log, ...o.run });
  if (!noteOutcome(o, 'int8', size, outcome)) return null;
  outcome.results!.forEach((accs, k) => {
    for (const c of cells) { c.accs.push(accs[c.key]); c.diffs.push(accs[c.key] - accs.fp32); }
    for (const key of ['qat-tensor', 'qat-channel']) { const c = at(key); (c.vsControl ??= []).push(accs[key] - accs['fp32-ft']); }
    log(`int8 seed ${k + 1}: ${cells.map((c) => `${c.key} ${(100 * c.accs[k]).toFixed(2)}`).join(', ')}`);
  });
  const rows = cells.map((c, i) => {
    if (i === 0) return [c.name, c.what, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), '–', '–', '–'];
    const d = pairedDiffs(c.diffs, 1);
    const vc = c.vsControl ? pairedDiffs(c.vsControl, 1) : null;
    return [c.name, c.what, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), pairedGapPoints(d), pairedVerdict(c.diffs),
      vc ? `${pairedGapPoints(vc)}: ${pairedVerdict(c.vsControl!).replace('fp32', 'the control')}` : '–'];
  });
  const md = [
    '## int8 — post-training quantization and quantization-aware training',
    '',
    stamp(size !== 'full', (performance.now() - t0) / 1000, `MNIST ${cfg.trainN} train / ${cfg.testN} test, MLP 784-${cfg.hidden.join('-')}-10 ReLU${size === 'tiny' ? ' (**tiny**: for tests)' : ''}, fp32 Adam lr 0.001, batch 100, ${cfg.epochs} epochs (${steps} steps), ${seeds} seeds`, runsNote(outcome.records)),
    '',
    `Each seed trains one fp32 model; every int8 row starts from that model. Weights: symmetric int8 codes in [−127, 127] times max|w|/127, one scale per tensor or one per output channel (column of the kernel). Activations: the input of every GEMM (the pixels too) affine int8 per tensor, scale (max − min)/255 and a zero point from the range seen on ${cfg.calib} training images (PyTorch's MinMaxObserver rule). The fake-quantization op is PyTorch's (x times the float32 reciprocal of the scale, rounded half to even, clamped; checked bit for bit against torch.fake_quantize_per_tensor_affine/per_channel_affine in test/precision-int8.test.ts). QAT fine-tunes the fp32 model for ${ftSteps} steps (Adam lr 1e-4, fresh moments) through the fake quantizers with the clipped straight-through estimator; activation ranges follow an exponential moving average (0.01) of batch min/max. The control row fine-tunes the same steps in fp32. Bias adds, ReLU and softmax stay fp32 (as int8 kernels requantize int32 accumulators).`,
    '',
    table(['recipe', 'what is int8', 'test acc (mean ± s.d.)', '95% interval', 'vs fp32: Δ points [95%], paired by seed', 'verdict vs fp32 (95%)', 'QAT vs the fp32 fine-tuned control: Δ [95%]'], rows),
    '',
    `Δ is each seed's int8 accuracy minus the same seed's fp32 model, with a Student-t 95% interval over the ${seeds} seeds; a verdict says higher/lower only where that interval excludes 0. QAT rows also carry their paired difference to the control (fp32 fine-tuned the same steps): what quantization-aware training costs or gains beyond the extra training.`,
  ].join('\n');
  const data: Int8Data = { quick: size !== 'full', size, seeds, calibration: cfg.calib, fineTuneSteps: ftSteps, cells };
  await saveJson(o.out, 'int8', data);
  await writeSection(o.out, 'int8', md);
  return data;
}

/** Accuracy differences (≤ 1 in size) of one recipe to its reference on the same seeds: what they let one say. */
function pairedVerdict(diffs: number[]): string {
  return pairedSay(pairedDiffs(diffs, 1), 'higher than fp32', 'lower than fp32');
}

/**
 * Markdown bullets for the report's answers from the saved int8 JSON: each recipe's accuracy and its paired
 * difference to fp32 with a 95% interval; a verdict only where that interval excludes 0.
 * @example int8AnswerBullets(JSON.parse(readFileSync('reports/precision/int8.json', 'utf8')))
 */
export function int8AnswerBullets(data: Int8Data): string[] {
  const ref = data.cells.find((c) => c.key === 'fp32');
  if (!ref) return [];
  const mode = data.quick ? ` (${data.size} mode)` : '';
  const out = [`- int8 inference and QAT${mode}, MNIST MLP, n = ${ref.accs.length} seeds: fp32 ${meanSd(ref.accs, 100, 2)} %.`];
  for (const c of data.cells) {
    if (c === ref) continue;
    const d = pairedDiffs(c.diffs, 1);
    const v = pairedVerdict(c.diffs);
    const say = pairedClause(v, 'not distinguishable from fp32 at 95%');
    let ctl = '';
    if (c.vsControl) {
      const vc = pairedDiffs(c.vsControl, 1), vv = pairedVerdict(c.vsControl);
      ctl = ` Against fp32 fine-tuned the same steps: Δ ${pairedGapPoints(vc)}, ${vv === 'no significant difference' ? 'not distinguishable' : vv.replace('fp32', 'the control')}.`;
    }
    out.push(`  - ${c.name}: ${meanSd(c.accs, 100, 2)} %, Δ ${pairedGapPoints(d).replace(/^(\S+)/, '$1 points')} (paired): ${say}.${ctl}`);
  }
  return out;
}
