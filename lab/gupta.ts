// Gupta et al. 2015 (arXiv 1502.02551) on MNIST: 784-1000-1000-10 ReLU, WL=16 fixed point, round-to-nearest vs stochastic.
import { fixedFormat, FP32, type Format, type Rounding } from '../src/precision/formats.ts';
import { loadMnist } from './data.ts';
import { figure, lines, type Pt } from './plot.ts';
import { pct, SUB, table, writeSection } from './report.ts';
import { runTraining, type CurvePoint } from './run.ts';
import { logger, saveJson, stamp, type LabOptions } from './common.ts';
import type { PrecisionSpec } from './train.ts';

/** Options of the gupta2015 experiment. */
export interface GuptaOptions extends LabOptions {
  /** Fraction lengths to run (default 8, 10, 12, 14). */
  fl?: number[];
  /** Skip the float32 baseline. */
  noFloat?: boolean;
  epochs?: number;
}

/** One cell of the grid. */
export interface GuptaCell {
  label: string;
  fl: number | null;
  rounding: Rounding | 'float32';
  testAcc: number;
  testError: number;
  swallowed: number;
  gradUnderflow: number;
  actSaturated: number;
  seconds: number;
  curve: CurvePoint[];
}

/** Configuration by mode: quick runs a narrower net on a subset (stated in the report). */
export function guptaConfig(quick: boolean, epochs?: number) {
  return quick
    ? { hidden: [256, 256], trainN: 6000, testN: 2000, epochs: epochs ?? 4, evalEvery: 30, lr: 0.1 }
    : { hidden: [1000, 1000], trainN: 60000, testN: 10000, epochs: epochs ?? 2, evalEvery: 100, lr: 0.1 };
}

/** Run the grid and write the gupta2015 section; returns the cells. */
export async function labGupta(o: GuptaOptions): Promise<GuptaCell[]> {
  const log = logger(o);
  const t0 = performance.now();
  const cfg = guptaConfig(o.quick, o.epochs);
  const train = await loadMnist('train', cfg.trainN);
  const test = await loadMnist('test', cfg.testN);
  const batch = 100;
  const steps = Math.floor(train.n / batch) * cfg.epochs;
  const fls = o.fl ?? [8, 10, 12, 14];
  const cells: GuptaCell[] = [];
  const plan: { label: string; fl: number | null; rounding: Rounding | 'float32'; fmt: Format }[] = [];
  if (!o.noFloat) plan.push({ label: 'float32', fl: null, rounding: 'float32', fmt: FP32 });
  for (const fl of fls) for (const r of ['nearest', 'stochastic'] as const) plan.push({ label: `FL=${fl} ${r}`, fl, rounding: r, fmt: fixedFormat(16 - fl, fl) });
  for (const p of plan) {
    const r: Rounding = p.rounding === 'float32' ? 'nearest' : p.rounding;
    // Gupta: weights, activations, back-propagated errors and weight gradients all in <IL,FL>, no float master copy.
    const prec: PrecisionSpec = p.fl === null ? { weights: FP32, rounding: 'nearest' } : { weights: p.fmt, rounding: r, grads: p.fmt, gradRounding: r, activations: p.fmt, actRounding: r, seed: 17 };
    const res = runTraining({ hidden: cfg.hidden, opt: { kind: 'sgd', lr: cfg.lr }, prec, train, test, batch, steps, seed: 1, evalEvery: cfg.evalEvery });
    const sw = mean(res.curve.slice(1).map((c) => c.swallowed));
    const uf = mean(res.curve.slice(1).map((c) => c.gradUnderflow));
    const sat = mean(res.curve.slice(1).map((c) => c.actSaturated));
    cells.push({ label: p.label, fl: p.fl, rounding: p.rounding, testAcc: res.finalAcc, testError: 1 - res.finalAcc, swallowed: sw, gradUnderflow: uf, actSaturated: sat, seconds: res.seconds, curve: res.curve });
    log(`gupta2015 ${p.label}: test error ${pct(1 - res.finalAcc)} (swallowed ${pct(sw)}, ${res.seconds.toFixed(0)} s)`);
  }
  await writeGupta(o, cells, cfg, steps, (performance.now() - t0) / 1000);
  return cells;
}

function mean(a: number[]): number {
  return a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0;
}

async function writeGupta(o: GuptaOptions, cells: GuptaCell[], cfg: ReturnType<typeof guptaConfig>, steps: number, seconds: number): Promise<void> {
  const pts: Pt[] = [];
  for (const c of cells) {
    const facets = c.fl === null ? [...new Set(cells.filter((d) => d.fl !== null).map((d) => `FL=${d.fl}`))] : [`FL=${c.fl}`];
    for (const f of facets.length ? facets : ['float32']) for (const p of c.curve) pts.push({ x: p.epoch, y: 100 * (1 - p.testAcc), series: c.rounding, facet: f });
  }
  const fig = await figure(lines(pts, { title: 'Gupta et al. 2015 on MNIST: test error vs epoch (WL=16 fixed point)', x: 'epoch', y: 'test error (%)', facet: 'fraction length', facetSort: [...new Set(cells.filter((d) => d.fl !== null).map((d) => d.fl!))].sort((a, b) => a - b).map((f) => `FL=${f}`), logY: true, width: 240, height: 180, columns: 4 }), o.out, SUB, 'gupta2015-curves', 'test error curves');
  const rows = cells.map((c) => [c.fl === null ? 'float32' : `<${16 - c.fl},${c.fl}>`, c.rounding, pct(c.testError), pct(c.swallowed), pct(c.gradUnderflow), c.fl === null ? '–' : pct(c.actSaturated), c.seconds.toFixed(0)]);
  const md = [
    '## gupta2015 — reproducing "Deep Learning with Limited Numerical Precision" (Gupta et al. 2015)',
    '',
    stamp(o.quick, seconds, `MNIST ${cfg.trainN} train / ${cfg.testN} test images, 784-${cfg.hidden.join('-')}-10 ReLU${o.quick ? ' (the paper uses 1000-1000; narrower here to fit minutes)' : ''}, SGD lr ${cfg.lr}, batch 100, ${cfg.epochs} epochs (${steps} steps)`),
    '',
    'Weights, activations, back-propagated errors and weight gradients are all rounded to signed fixed point ⟨16−FL, FL⟩ after every operation (no float master copy; matrix products accumulate in float32 before rounding, as in the paper\'s FPGA accumulator). "swallowed" = share of nonzero weight updates that left the stored weight unchanged; "grad underflow" = share of nonzero weight gradients smaller than the quantum 2^−FL; "activations saturated" = share of layer outputs clipped at the range limit ±2^(IL−1).',
    '',
    table(['format', 'rounding', 'test error', 'swallowed updates', 'grad underflow', 'activations saturated', 'seconds'], rows),
    '',
    fig,
    '',
    'The paper\'s finding: with stochastic rounding 16-bit fixed point matches float32; with round-to-nearest, training degrades and stalls as FL shrinks, because updates smaller than half a quantum are rounded away.',
  ].join('\n');
  await saveJson(o.out, 'gupta2015', { quick: o.quick, cells });
  await writeSection(o.out, 'gupta2015', md);
}
