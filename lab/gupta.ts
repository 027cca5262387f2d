// Gupta et al. 2015 (arXiv 1502.02551) on MNIST: 784-1000-1000-10 ReLU and a LeNet-like CNN, WL=16 fixed point <IL,FL>,
// round-to-nearest vs stochastic rounding, the loss summed over the batch as in the paper (the batch-mean loss beside it: errors
// batch-times smaller), n seeds per cell with mean ± s.d. and 95% intervals, and a float32 control of the activation range.
import { fixedFormat, FP32, type Format, type Rounding } from '../src/precision/formats.ts';
import { tf } from './tf.ts';
import { cachedMnist, type Dataset } from './data.ts';
import { figure, lines, type Pt } from './plot.ts';
import { pct, SUB, table, writeSection } from './report.ts';
import { buildLenet, runTraining, type CurvePoint } from './run.ts';
import { logger, noteOutcome, saveJson, stamp, type LabOptions } from './common.ts';
import { runUnits, runsNote, unitConfig, type Unit, type UnitConfig } from './runs.ts';
import { holm, interval, mean, meanSd, paired, summarize } from './stats.ts';
import type { PrecisionSpec } from './train.ts';
import type * as tfl from '@tensorflow/tfjs-layers';

/** Size of a gupta2015 run: tiny (tests), quick (the paper's MLP and a LeNet-like CNN on a subset), full. */
export type GuptaSize = 'tiny' | 'quick' | 'full';

/** Options of the gupta2015 experiment. */
export interface GuptaOptions extends LabOptions {
  /** Overrides `quick`: tiny is a narrow network for tests. */
  size?: GuptaSize;
  /** Fraction lengths to run (default 8, 10, 12, 14). */
  fl?: number[];
  /** Skip the float32 baseline. */
  noFloat?: boolean;
  /** Skip the batch-mean-loss cells. */
  noMean?: boolean;
  /** Skip the dynamic fixed point cells. */
  noDynamic?: boolean;
  epochs?: number;
  /** Seeds per cell (default 3 in quick/tiny, 5 in full). */
  seeds?: number;
  /** Networks to run (default both): the 784-1000-1000-10 MLP and the LeNet-like CNN. */
  nets?: GuptaNet[];
  /** Fraction lengths of the CNN cells (default 14). */
  cnnFl?: number[];
}

/** The paper's two MNIST networks. */
export type GuptaNet = 'mlp' | 'cnn';

/** How the loss is reduced over the batch. */
export type LossReduction = 'sum' | 'mean';

/** One cell of the grid: a configuration and its per-seed outcomes. */
export interface GuptaCell {
  label: string;
  net: GuptaNet;
  fl: number | null;
  rounding: Rounding | 'float32';
  loss: LossReduction;
  /** Dynamic fixed point (WL=16, per-tensor FL following the overflow rate) instead of one <IL,FL> for everything. */
  dynamic?: boolean;
  /** Per seed. */
  testError: number[];
  /** Share of forward layer outputs saturated at ±2^(IL-1), averaged over training, per seed. */
  saturated: number[];
  swallowed: number[];
  gradUnderflow: number[];
  seconds: number[];
  /** Mean test error over seeds at each evaluation point. */
  curve: { epoch: number; testError: number }[];
  /** Per seed: its lowest test error on the curve, that point's epoch, and the first later epoch more than 10 points above it (null: it never diverged). */
  divergence?: { lowest: number; at: number; divergedAt: number | null }[];
}

/**
 * Where a seed's test-error curve diverged after training: its lowest point, and the first later evaluation more than
 * `jump` (as a fraction) above it; null when it never rose that far, or never trained (its lowest error above half its
 * first one: a run that only fluctuates near chance has not diverged).
 * @example divergenceOf([{ epoch: 0, testError: 0.9 }, { epoch: 1, testError: 0.04 }, { epoch: 2, testError: 0.8 }]) // { lowest: 0.04, at: 1, divergedAt: 2 }
 */
export function divergenceOf(curve: { epoch: number; testError: number }[], jump = 0.1): { lowest: number; at: number; divergedAt: number | null } {
  let k = 0;
  curve.forEach((p, i) => { if (p.testError < curve[k].testError) k = i; });
  const trained = curve[k].testError <= curve[0].testError / 2;
  const after = trained ? curve.slice(k + 1).find((p) => p.testError > curve[k].testError + jump) : undefined;
  return { lowest: curve[k].testError, at: curve[k].epoch, divergedAt: after ? after.epoch : null };
}

/** Configuration by size. The learning rate is per summed-loss step (= 0.1 on the batch-mean loss). */
export function guptaConfig(size: GuptaSize, epochs?: number) {
  const batch = 100;
  // cnn: conv feature maps and dense width (the paper's 8/16 maps and 128 units outside tiny)
  if (size === 'tiny') return { size, hidden: [64, 64], cnn: { maps: [4, 8] as [number, number], dense: 32 }, trainN: 2000, testN: 1000, epochs: epochs ?? 3, evalEvery: 20, lrSum: 0.1 / batch, batch, seeds: 3 };
  if (size === 'quick') return { size, hidden: [1000, 1000], cnn: { maps: [8, 16] as [number, number], dense: 128 }, trainN: 10000, testN: 2000, epochs: epochs ?? 2, evalEvery: 50, lrSum: 0.1 / batch, batch, seeds: 3 };
  return { size, hidden: [1000, 1000], cnn: { maps: [8, 16] as [number, number], dense: 128 }, trainN: 60000, testN: 10000, epochs: epochs ?? 10, evalEvery: 300, lrSum: 0.1 / batch, batch, seeds: 5 };
}

/** Share of each layer's float32 outputs beyond ±limit, and the largest |output|, over `data` (trained model). */
export function activationRange(model: tfl.LayersModel, data: Dataset, limits: number[]): { layer: string; max: number; beyond: number[] }[] {
  const res = model.layers.map((l, k) => ({ layer: `${k}:${l.getClassName()}`, max: 0, beyond: limits.map(() => 0), n: 0 }));
  for (let s = 0; s < data.n; s += 1000) {
    const n = Math.min(1000, data.n - s);
    let h: tf.Tensor = tf.tensor2d(data.x.subarray(s * data.dim, (s + n) * data.dim), [n, data.dim]);
    model.layers.forEach((layer, k) => {
      const next = layer.apply(h) as tf.Tensor;
      h.dispose();
      h = next;
      const v = h.dataSync() as Float32Array;
      const r = res[k];
      r.n += v.length;
      for (let i = 0; i < v.length; i++) {
        const a = Math.abs(v[i]);
        if (a > r.max) r.max = a;
        for (let j = 0; j < limits.length; j++) if (a >= limits[j]) r.beyond[j]++;
      }
    });
    h.dispose();
  }
  return res.map((r) => ({ layer: r.layer, max: r.max, beyond: r.beyond.map((b) => b / r.n) }));
}

const fixedLimit = (fl: number) => 2 ** (16 - fl - 1); // <IL,FL> with IL = 16 - FL spans [-2^(IL-1), 2^(IL-1))

/** Bumped when a gupta2015 run's meaning changes (its records then no longer count). */
export const GUPTA_VERSION = 1;

/** All fraction lengths whose ranges a float32 run measures (1..15), so its record does not depend on `--fl`. */
const ALL_FLS = Array.from({ length: 15 }, (_, i) => i + 1);

/** One gupta2015 unit: a cell of the grid and a seed, with the configuration that determines it. */
export interface GuptaUnitSpec {
  cfg: UnitConfig<ReturnType<typeof guptaConfig>>;
  cell: { label: string; net: GuptaNet; fl: number | null; rounding: Rounding | 'float32'; loss: LossReduction; dynamic?: boolean };
  seed: number;
}

/** What one cell × seed run leaves in the run store. */
export interface GuptaUnitResult {
  testError: number;
  saturated: number;
  swallowed: number;
  gradUnderflow: number;
  seconds: number;
  curve: { epoch: number; testError: number }[];
  /** float32 runs: each layer's largest |output| and share beyond ±2^(15-FL) for FL = 1..15 (index FL-1). */
  range?: ReturnType<typeof activationRange>;
}

/**
 * Train one cell of the grid with one seed (the unit of the run store).
 * @example await guptaUnit({ cfg: unitConfig(guptaConfig('tiny')), cell: { label: 'float32', net: 'mlp', fl: null, rounding: 'float32', loss: 'sum' }, seed: 1 })
 */
export async function guptaUnit(u: GuptaUnitSpec): Promise<GuptaUnitResult> {
  const { cfg, cell: p, seed } = u;
  const train = await cachedMnist('train', cfg.trainN);
  const test = await cachedMnist('test', cfg.testN);
  const batch = cfg.batch;
  const steps = Math.floor(train.n / batch) * cfg.epochs;
  const fmt: Format = p.fl === null ? FP32 : p.loss === 'mean' ? fixedFormat(8, 8) : fixedFormat(16 - p.fl, p.fl);
  const r: Rounding = p.rounding === 'float32' ? 'nearest' : p.rounding;
  // Summed loss: lossWeight = batch and the learning rate per summed step; the mean loss uses lr x batch instead
  // (the same weight update in exact arithmetic, but back-propagated errors 1/batch as large).
  const lossWeight = p.loss === 'sum' ? batch : 1;
  const lr = p.loss === 'sum' ? cfg.lrSum : cfg.lrSum * batch;
  // Gupta: weights, activations, back-propagated errors and weight gradients all in <IL,FL>, no float master copy.
  const prec: PrecisionSpec = p.dynamic
    ? { weights: FP32, rounding: r, gradRounding: r, actRounding: r, seed: 17 + seed, lossWeight, dynamic: { wl: 16, maxOverflowRate: 1e-4 } }
    : p.fl === null
    ? { weights: FP32, rounding: 'nearest', lossWeight }
    : { weights: fmt, rounding: r, grads: fmt, gradRounding: r, activations: fmt, actRounding: r, seed: 17 + seed, lossWeight };
  const cnnModel = (dim: number, classes: number, s: number) => buildLenet(dim, classes, s, cfg.cnn.maps, cfg.cnn.dense);
  const res = runTraining({ hidden: cfg.hidden, model: p.net === 'cnn' ? cnnModel : undefined, opt: { kind: 'sgd', lr }, prec, train, test, batch, steps, seed, evalEvery: cfg.evalEvery });
  const pts = res.curve.slice(1);
  return {
    testError: 1 - res.finalAcc,
    saturated: mean(pts.map((c) => c.actSaturated)),
    swallowed: mean(pts.map((c) => c.swallowed)),
    gradUnderflow: mean(pts.map((c) => c.gradUnderflow)),
    seconds: res.seconds,
    curve: res.curve.map((c) => ({ epoch: c.epoch, testError: 1 - c.testAcc })),
    range: p.rounding === 'float32' ? activationRange(res.trainer.model, test, ALL_FLS.map(fixedLimit)) : undefined,
  };
}

/** The grid's cells in order (without results) for the options. */
function guptaPlan(o: GuptaOptions, size: GuptaSize): { plan: GuptaUnitSpec['cell'][]; fls: number[]; cnnFls: number[] } {
  const nets = o.nets ?? ['mlp', 'cnn'];
  // quick keeps the smallest and largest FL (the grid of --quick costs ~3 runs per cell on the 1000-1000 network)
  const fls = nets.includes('mlp') ? (o.fl ?? (size === 'quick' ? [8, 14] : [8, 10, 12, 14])) : [];
  // the CNN at FL=10 too: its float32 hidden outputs lie far beyond ⟨2,14⟩'s ±2 (the section's range control says how far)
  const cnnFls = nets.includes('cnn') ? (o.cnnFl ?? (size === 'tiny' ? [14] : [10, 14])) : [];
  const plan: GuptaUnitSpec['cell'][] = [];
  if (nets.includes('mlp')) {
    if (!o.noFloat) plan.push({ label: 'float32', net: 'mlp', fl: null, rounding: 'float32', loss: 'sum' });
    for (const fl of fls) for (const r of ['nearest', 'stochastic'] as const) plan.push({ label: `FL=${fl} ${r}`, net: 'mlp', fl, rounding: r, loss: 'sum' });
    if (!o.noDynamic) for (const r of ['nearest', 'stochastic'] as const) plan.push({ label: `dynamic fixed WL=16 ${r}`, net: 'mlp', fl: null, rounding: r, loss: 'sum', dynamic: true });
    if (!o.noMean && fls.includes(8)) for (const r of ['nearest', 'stochastic'] as const) plan.push({ label: `FL=8 ${r}, mean loss`, net: 'mlp', fl: 8, rounding: r, loss: 'mean' });
  }
  if (nets.includes('cnn')) {
    if (!o.noFloat) plan.push({ label: 'cnn float32', net: 'cnn', fl: null, rounding: 'float32', loss: 'sum' });
    for (const fl of cnnFls) for (const r of ['nearest', 'stochastic'] as const) plan.push({ label: `cnn FL=${fl} ${r}`, net: 'cnn', fl, rounding: r, loss: 'sum' });
  }
  return { plan, fls, cnnFls };
}

/** The gupta2015 units for the options (one per cell and seed). */
export function guptaUnits(o: GuptaOptions): Unit<GuptaUnitSpec>[] {
  const size: GuptaSize = o.size ?? (o.quick ? 'quick' : 'full');
  const cfg = guptaConfig(size, o.epochs);
  const seeds = o.seeds ?? cfg.seeds;
  const { plan } = guptaPlan(o, size);
  return plan.flatMap((cell) => Array.from({ length: seeds }, (_, k) => ({ spec: { cfg: unitConfig(cfg), cell, seed: 1 + k }, label: `${cell.label} seed ${1 + k}` })));
}

/**
 * Run the grid (the units missing from the run store) and write the gupta2015 section; returns the cells, or null when
 * runs are still missing (budget reached).
 */
export async function labGupta(o: GuptaOptions): Promise<GuptaCell[] | null> {
  const log = logger(o);
  const t0 = performance.now();
  const size: GuptaSize = o.size ?? (o.quick ? 'quick' : 'full');
  const cfg = guptaConfig(size, o.epochs);
  const seeds = o.seeds ?? cfg.seeds;
  const steps = Math.floor(cfg.trainN / cfg.batch) * cfg.epochs;
  const { plan, fls, cnnFls } = guptaPlan(o, size);
  const units = guptaUnits(o);
  const outcome = await runUnits('gupta2015', GUPTA_VERSION, units, guptaUnit, { out: o.out, log, ...o.run });
  if (!noteOutcome(o, 'gupta2015', size, outcome)) return null;
  const results = outcome.results!;
  const cells: GuptaCell[] = [];
  const ranges: ReturnType<typeof activationRange>[] = [];
  const cnnRanges: ReturnType<typeof activationRange>[] = [];
  // ranges keep only the requested FLs (a float32 record holds all 15)
  const pick = (rg: ReturnType<typeof activationRange>, f: number[]) => rg.map((l) => ({ ...l, beyond: f.map((fl) => l.beyond[fl - 1]) }));
  plan.forEach((p, i) => {
    const rs = results.slice(i * seeds, (i + 1) * seeds);
    const cell: GuptaCell = { label: p.label, net: p.net, fl: p.fl, rounding: p.rounding, loss: p.loss, dynamic: p.dynamic, testError: [], saturated: [], swallowed: [], gradUnderflow: [], seconds: [], curve: [] };
    rs.forEach((r, k) => {
      cell.testError.push(r.testError); cell.saturated.push(r.saturated); cell.swallowed.push(r.swallowed); cell.gradUnderflow.push(r.gradUnderflow); cell.seconds.push(r.seconds);
      if (p.rounding === 'float32' && r.range) (p.net === 'cnn' ? cnnRanges : ranges).push(pick(r.range, p.net === 'cnn' ? cnnFls : fls));
      log(`gupta2015 ${p.label} seed ${k + 1}: test error ${pct(r.testError)}, saturated ${pct(r.saturated)}, ${r.seconds.toFixed(0)} s`);
    });
    cell.curve = rs[0].curve.map((c, j) => ({ epoch: c.epoch, testError: mean(rs.map((x) => x.curve[j].testError)) }));
    cell.divergence = rs.map((x) => divergenceOf(x.curve));
    cells.push(cell);
  });
  await writeGupta(o, cells, cfg, seeds, steps, fls, cnnFls, ranges, cnnRanges, (performance.now() - t0) / 1000, runsNote(outcome.records));
  return cells;
}

/** Range control row: per FL, the float32 run's share of outputs (all layers, and logits) beyond ±2^(IL-1). */
function rangeRows(ranges: ReturnType<typeof activationRange>[], fls: number[]): (string | number)[][] {
  if (!ranges.length) return [];
  return fls.map((fl, j) => {
    const logits = ranges.map((r) => r[r.length - 1].beyond[j]);
    const hidden = ranges.map((r) => Math.max(...r.slice(0, -1).map((l) => l.beyond[j])));
    return [`<${16 - fl},${fl}>`, `±${fixedLimit(fl)}`, meanSd(hidden, 100, 2) + ' %', meanSd(logits, 100, 2) + ' %'];
  });
}

/**
 * How settled the float32 runs are at the end: the change of their mean test error over the last fifth of training (one
 * line per network), so a reader can judge whether the comparisons are made at convergence.
 */
function convergence(cells: GuptaCell[]): string[] {
  const lines = cells.filter((c) => c.rounding === 'float32' && c.curve.length >= 2).map((c) => {
    const end = c.curve[c.curve.length - 1], from = c.curve.reduce((a, p) => (Math.abs(p.epoch - 0.8 * end.epoch) < Math.abs(a.epoch - 0.8 * end.epoch) ? p : a));
    return `${c.net === 'cnn' ? 'CNN' : 'MLP'} float32: mean test error ${(100 * from.testError).toFixed(2)} % at epoch ${from.epoch} → ${(100 * end.testError).toFixed(2)} % at epoch ${end.epoch} (${end.testError >= from.testError ? '+' : '−'}${Math.abs(100 * (end.testError - from.testError)).toFixed(2)} points over the last fifth of training)`;
  });
  return lines.length ? [`**Convergence**: ${lines.join('; ')}.`, ''] : [];
}

/**
 * Cells whose runs diverged after they had trained (a seed's error rising more than 10 points above its own lowest):
 * how low they got, when they diverged, and, for a fixed format, float32's largest logit against that format's range.
 */
function divergenceLines(cells: GuptaCell[], ranges: ReturnType<typeof activationRange>[], cnnRanges: ReturnType<typeof activationRange>[]): string[] {
  const pct2 = (v: number) => (100 * v).toFixed(2);
  const span = (v: number[]) => (Math.min(...v) === Math.max(...v) ? `epoch ${Math.min(...v)}` : `epochs ${Math.min(...v)}–${Math.max(...v)}`);
  const lines = cells.filter((c) => c.divergence?.some((d) => d.divergedAt !== null)).map((c) => {
    const dv = c.divergence!.filter((d) => d.divergedAt !== null);
    const all = dv.length === c.divergence!.length;
    const rs = c.net === 'cnn' ? cnnRanges : ranges;
    const logit = c.fl !== null && !c.dynamic && rs.length ? rs.map((r) => r[r.length - 1].max) : null;
    const name = `${c.net === 'cnn' ? 'CNN ' : ''}${c.dynamic ? 'dynamic fixed point' : c.fl === null ? 'float32' : `⟨${16 - c.fl},${c.fl}⟩`} ${c.rounding === 'nearest' ? 'round-to-nearest' : c.rounding}${c.loss === 'mean' ? ' (mean loss)' : ''}`;
    const end = c.curve.length ? c.curve[c.curve.length - 1].epoch : 0;
    // trained for most of the run before diverging: the gap at the last epoch is the divergence, not a steady cost
    const late = all && dv.every((d) => d.at >= end / 2);
    const sat = mean(c.saturated);
    return `${name}: ${all ? 'every seed' : `${dv.length} of ${c.divergence!.length} seeds`} reached a lowest test error of ${pct2(mean(dv.map((d) => d.lowest)))} % (mean, at ${span(dv.map((d) => d.at))}) and then diverged (first evaluation more than 10 points above it at ${span(dv.map((d) => d.divergedAt!))})`
      + (late ? `, so its gap to float32 in the table (at the planned last epoch) is mostly that divergence, not a steady cost of the format` : all && dv.every((d) => d.at < end / 4) ? ', so it never trained for long' : '')
      + (logit ? `; float32's largest logit at the end is ${Math.min(...logit).toFixed(1)}–${Math.max(...logit).toFixed(1)} against this format's ±${fixedLimit(c.fl!)}` : '')
      + (c.fl !== null && !c.dynamic ? (sat > 0 ? `; its own outputs did reach the range (${(100 * sat).toFixed(2)} % saturated, averaged over training: the table's column); when, and in which layer, was not recorded` : '; its own outputs never saturated') : '');
  });
  return lines.length ? [`**Divergence** (a seed that had trained — its lowest test error at most half its first — and later rose more than 10 points above that lowest): ${lines.join('. ')}.`, ''] : [];
}

/** Paper column of a cell: the paper presents its MNIST results as test-error curves, so no number is given. */
function paperCell(c: GuptaCell): string {
  if (c.loss === 'mean' || c.dynamic) return 'not in the paper';
  return 'curve only';
}

async function writeGupta(o: GuptaOptions, cells: GuptaCell[], cfg: ReturnType<typeof guptaConfig>, seeds: number, steps: number, fls: number[], cnnFls: number[], ranges: ReturnType<typeof activationRange>[], cnnRanges: ReturnType<typeof activationRange>[], seconds: number, runs: string): Promise<void> {
  const pts: Pt[] = [];
  const facetOf = (net: GuptaNet, fl: number) => (net === 'cnn' ? `CNN FL=${fl}` : `FL=${fl}`);
  const facetSort = [...fls.map((f) => facetOf('mlp', f)), ...cnnFls.map((f) => facetOf('cnn', f))];
  for (const c of cells) {
    const netFacets = (c.net === 'cnn' ? cnnFls : fls).map((f) => facetOf(c.net, f));
    const facets = c.fl === null ? netFacets : [facetOf(c.net, c.fl)];
    const series = c.rounding === 'float32' ? 'float32' : `${c.dynamic ? 'dynamic fixed ' : ''}${c.rounding}${c.loss === 'mean' ? ' (mean loss)' : ''}`;
    for (const f of facets.length ? facets : ['float32']) for (const p of c.curve) pts.push({ x: p.epoch, y: Math.max(100 * p.testError, 0.1), series, facet: f });
  }
  const fig = await figure(lines(pts, { title: `Gupta et al. 2015 on MNIST: test error vs epoch (mean of ${seeds} seeds, WL=16)`, x: 'epoch', y: 'test error (%)', facet: 'network and fraction length', facetSort, logY: true, width: 240, height: 180, columns: 4 }), o.out, SUB, 'gupta2015-curves', 'test error curves');
  // every cell against the float32 run of its network, paired by seed; Holm's correction over all of them
  const refOf = (c: GuptaCell) => cells.find((d) => d.net === c.net && d.rounding === 'float32');
  const tests = cells.map((c) => { const f32 = refOf(c); return f32 && c !== f32 ? paired(c.testError, f32.testError) : null; });
  const adjusted = holm(tests.map((w) => w?.p ?? NaN));
  const family = tests.filter((w) => w && Number.isFinite(w.p)).length;
  let dagger = false;
  const rows = cells.map((c, i) => {
    const f32 = refOf(c), w = tests[i];
    let vs = '–';
    if (f32 && w) {
      const within2sd = Math.abs(mean(c.testError) - mean(f32.testError)) <= 2 * Math.max(summarize(f32.testError).sd, 1e-12);
      const sig = w.lo > 0 || w.hi < 0;
      const fragile = sig && !(adjusted[i] < 0.05);
      dagger ||= fragile;
      const d = `${w.diff >= 0 ? '+' : ''}${(100 * w.diff).toFixed(2)}`;
      vs = Number.isNaN(w.lo) ? `${d}: no interval (${w.df >= 1 ? 'the same gap on every seed' : 'fewer than 2 seeds'}; no verdict)` : `${d} [${(100 * w.lo).toFixed(2)}, ${(100 * w.hi).toFixed(2)}]: ${w.lo > 0 ? 'worse' : w.hi < 0 ? 'better' : 'no significant difference'}${fragile ? ' †' : ''}${within2sd ? ' (mean within 2 s.d.)' : ''}`;
    }
    return [
      c.net === 'cnn' ? 'CNN' : 'MLP',
      c.dynamic ? 'dynamic fixed, WL=16' : c.fl === null ? 'float32' : `<${16 - c.fl},${c.fl}>`, c.rounding, c.loss === 'sum' ? 'summed' : '**mean** (errors 1/batch)',
      `${meanSd(c.testError, 100, 2)} %`, interval(c.testError, 100, 2), vs,
      c.rounding === 'float32' ? '–' : `${meanSd(c.saturated, 100, 2)} %`, c.rounding === 'float32' ? '–' : `${meanSd(c.swallowed, 100, 1)} %`, c.rounding === 'float32' ? '–' : `${meanSd(c.gradUnderflow, 100, 1)} %`,
      paperCell(c), mean(c.seconds).toFixed(0),
    ];
  });
  // stochastic-rounding cells more than 1 point worse than float32 (the lower end of the paired interval above +1 point)
  const srFails = cells.filter((c, i) => c.rounding === 'stochastic' && !c.dynamic && c.loss === 'sum' && c.fl !== null && tests[i] && tests[i]!.lo > 0.01)
    .map((c) => `${c.net === 'cnn' ? 'CNN ' : ''}FL=${c.fl}`);
  const sizeNote = cfg.size === 'full' ? '' : cfg.size === 'quick' ? ' (the paper\'s MLP and a LeNet-like CNN on a subset of MNIST, few epochs: not converged)' : ' (**tiny**: narrow networks on a small subset, for tests — not the paper\'s MLP nor the LeNet-like CNN)';
  const cnnDesc = `CNN: conv 5×5 (${cfg.cnn.maps[0]} maps) + ReLU, 2×2 max-pool, conv 5×5 (${cfg.cnn.maps[1]} maps) + ReLU, 2×2 max-pool, dense ${cfg.cnn.dense} + ReLU, dense 10`;
  const rangeBlock = (rs: ReturnType<typeof activationRange>[], f: number[], name: string) => rs.length ? [
    `${name}: the float32 runs' layer outputs on the test set after training, against each format's range (mean ± s.d. over ${rs.length} seeds; "hidden" is the worst layer before the logits). Large shares here (hidden layers or logits alike) are consistent with the range, not the rounding alone, limiting that format${cells.some((c) => c.dynamic && c.net === name.toLowerCase()) ? '; the dynamic fixed-point rows of the table above, which keep the 16 bits and the rounding but give every tensor its own range, are an intervention on it; they change each tensor\'s precision too, so they do not separate range from precision' : ' (not tested by an intervention)'}.`,
    '',
    table(['format', 'range', 'hidden layer beyond', 'logits beyond'], rangeRows(rs, f)),
    '',
    `Largest |output| of the float32 networks after training, per layer (lowest–highest over the ${rs.length} seeds): ${rs[0].map((l, k) => { const v = rs.map((r) => r[k].max); return `${l.layer} ${Math.min(...v).toFixed(1)}–${Math.max(...v).toFixed(1)}`; }).join('; ')}.`,
    '',
  ] : [];
  const md = [
    '## gupta2015 — reproducing "Deep Learning with Limited Numerical Precision" (Gupta et al. 2015)',
    '',
    stamp(cfg.size !== 'full', seconds, `MNIST ${cfg.trainN} train / ${cfg.testN} test images; MLP 784-${cfg.hidden.join('-')}-10 ReLU; ${cnnDesc}${sizeNote}; plain SGD, batch ${cfg.batch}, loss summed over the batch with lr ${cfg.lrSum} (= ${cfg.lrSum * cfg.batch} on the batch mean; not taken from the paper, whose rate and schedule could not be checked against its text here), no decay (a decaying rate would push ever more updates below 2^−FL as training goes on, mixing that into the format's effect), ${cfg.epochs} epochs (${steps} steps), ${seeds} seeds per cell (seed = initial weights, sample order and rounding stream)`, runs),
    '',
    `Weights, layer outputs, back-propagated errors and weight gradients are all rounded to signed fixed point ⟨16−FL, FL⟩ (fixed point saturates at ±2^(IL−1)); there is no float master copy; matrix products and convolutions accumulate in float32 before rounding (the paper\'s wide accumulator), and every update w + Δ is rounded once from its exact value. The loss is summed over the batch as in the paper${cells.some((c) => c.loss === 'mean') ? '; the **mean** rows average it instead, which makes every back-propagated error 1/batch as large, putting most of them below the step 2^−8 of ⟨8,8⟩ (the table shows what follows): those rows test an interaction of the format with the loss reduction' : ''}. Columns: test error mean ± s.d. over seeds, its 95% t-interval, the difference to the float32 run of the same network, paired by seed (seed k gives every cell of a network the same initial weights and sample order: the mean of the per-seed differences with its 95% t-interval; a verdict only where the interval excludes 0; † = not significant after Holm\'s correction over the table\'s comparisons with float32), share of forward layer outputs saturated (averaged over training), share of nonzero weight updates that left the stored weight unchanged ("swallowed"; counts a deferred stochastic update as swallowed too), share of nonzero weight gradients below 2^−FL; "mean within 2 s.d." marks a mean within twice float32\'s s.d. over seeds of float32\'s mean (the yardstick the lab\'s issue set for stochastic rounding; looser than the paired interval, which can still call such a row worse).`,
    '',
    ...(cells.some((c) => c.dynamic) ? ['Dynamic fixed point (Courbariaux, Bengio & David 2014) is an intervention on the range: every tensor group (each layer\'s weights, weight gradients, outputs and back-propagated errors) has 16-bit codes times its own power of two 2^−FL, and FL moves by one after each rounding so that at most 0.01% of the values saturate (FL may exceed 15 for small gradients), so it changes each tensor\'s range and precision together. "grad underflow" for it is measured against the current 2^−FL of each gradient tensor.', ''] : []),
    table(['network', 'format', 'rounding', 'loss', 'test error (mean ± s.d.)', '95% interval', 'vs float32, paired by seed: Δ error [95%]', 'outputs saturated', 'swallowed updates', 'grad underflow', 'paper', 's / run'], rows),
    '',
    ...(family === 0 ? [] : [dagger ? `† The interval excludes 0 on its own, but the difference is not significant after Holm's correction over the ${family} comparisons with float32 in this table.` : `Every verdict above survives Holm's correction over the ${family} comparisons with float32 in this table.`, '']),
    ...convergence(cells),
    ...divergenceLines(cells, ranges, cnnRanges),
    `**Paper column**: the paper presents its MNIST results (the fully connected network at several FL, and its LeNet-like CNN) as test-error-versus-epoch curves rather than a table, and the text of the paper could not be retrieved in this environment to read exact values, so no number is given rather than one read off a figure. What its abstract (arXiv:1502.02551) states: with stochastic rounding, deep networks train in 16-bit fixed point with little to no degradation in classification accuracy, and the rounding scheme plays a crucial role; the answers section checks that claim per FL on the rows above.${cnnFls.length && cells.some((c) => c.net === 'cnn') ? ` The CNN is a LeNet-like network of the kind the paper trains on MNIST (two 5×5 convolution + 2×2 max-pool stages with ${cfg.cnn.maps[0]} and ${cfg.cnn.maps[1]} maps, ${cfg.cnn.dense} hidden units, 10 outputs); its exact layer sizes and the CNN's FL (${cnnFls.join(', ')} here, \`--cnn-fl\`) could not be checked against the paper's text in this environment.` : ''}`,
    '',
    `**Where this run departs from the paper**: the learning rate and its schedule (constant) are not taken from the paper${cells.some((c) => c.net === 'cnn') ? ', the CNN\'s sizes are not checked against it' : ''}, and every cell trains ${cfg.epochs} epochs${srFails.length ? `; stochastic rounding does not come within 1 point of float32 at ${srFails.join(', ')} here, contrary to the abstract's claim for 16-bit fixed point: the float32 control below shows how much of this network's output lies beyond those formats' ranges after training with this rate, so the difference may come from this setup rather than contradict the paper (not tested here with the paper's rate)` : ''}.`,
    '',
    '### Float32 control: would the fixed-point range clip a float32 network?',
    '',
    ...(ranges.length || cnnRanges.length ? [...rangeBlock(ranges, fls, 'MLP'), ...rangeBlock(cnnRanges, cnnFls, 'CNN')] : ['_float32 baseline skipped (--no-float)._', '']),
    fig,
  ].join('\n');
  await saveJson(o.out, 'gupta2015', { quick: cfg.size !== 'full', size: cfg.size, seeds, hidden: cfg.hidden, cnn: cfg.cnn, trainN: cfg.trainN, testN: cfg.testN, epochs: cfg.epochs, fls, cnnFls, cells, ranges, cnnRanges });
  await writeSection(o.out, 'gupta2015', md);
}
