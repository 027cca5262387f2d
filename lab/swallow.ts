// Guess (2): do rounded-away small updates stall learning? Toy accumulation table and an optimizer x rounding x format grid.
import { BF16, E4M3, E5M2, FP16, FP32, fixedFormat, quantize, quantizeSum, type Format, type Rounding } from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';
import { loadMnist } from './data.ts';
import { bars, figure, lines, type Pt } from './plot.ts';
import { pct, SUB, table, writeSection } from './report.ts';
import { runTraining, type RunResult } from './run.ts';
import { logger, saveJson, stamp, type LabOptions } from './common.ts';
import type { OptimizerSpec, PrecisionSpec } from './train.ts';

/** Formats of the toy table and the grid. */
const TOY_FORMATS: Format[] = [FP32, BF16, FP16, E4M3, E5M2, fixedFormat(4, 12), fixedFormat(8, 8)];
const DELTAS = [1e-2, 1e-3, 1e-4, 1e-5];

/** Final value of w after adding `delta` to w = 1 `n` times, each sum rounded to `fmt` (optionally Kahan-compensated). */
export function accumulate(fmt: Format, delta: number, n: number, rounding: Rounding, kahan = false, seed = 1): number {
  const rng = createRng(seed);
  const w = Float32Array.of(1);
  quantize(fmt, w, { out: w });
  const tmp = new Float32Array(1);
  const yv = new Float32Array(1);
  const d = Math.fround(delta);
  let c = 0;
  for (let i = 0; i < n; i++) {
    const y = Math.fround(d - c);
    yv[0] = y;
    quantizeSum(fmt, w, yv, { rounding, rng, out: tmp }); // the exact sum w + y, rounded once
    if (kahan) c = Math.fround((tmp[0] - w[0]) - y); // compensation in fp32 (in the weight format it would be lost)
    w[0] = tmp[0];
  }
  return w[0];
}

/** One grid cell's outcome. */
export interface SwallowCell { opt: string; format: string; rounding: string; finalAcc: number; swallowed: number; curve: { step: number; acc: number; swallowed: number }[] }

const OPTS: { name: string; spec: OptimizerSpec }[] = [
  { name: 'SGD', spec: { kind: 'sgd', lr: 0.1 } },
  { name: 'momentum', spec: { kind: 'momentum', lr: 0.01, momentum: 0.9 } },
  { name: 'Adam', spec: { kind: 'adam', lr: 1e-3 } },
];
const GRID_FORMATS: Format[] = [FP32, BF16, FP16, E4M3, fixedFormat(4, 12)];

/** Run the swallow experiment and write its section. */
export async function labSwallow(o: LabOptions): Promise<{ cells: SwallowCell[]; toy: Record<string, number[]> }> {
  const log = logger(o);
  const t0 = performance.now();
  const N = 10_000;
  // --- toy: w = 1, add delta N times
  const toyRows: (string | number)[][] = [];
  const toy: Record<string, number[]> = {};
  for (const f of TOY_FORMATS) {
    for (const [mode, kahan] of [['nearest', false], ['stochastic', false], ['nearest', true]] as const) {
      if (f.kind === 'fp32' && mode === 'stochastic') continue;
      const label = `${f.name} ${kahan ? 'RN + Kahan' : mode === 'nearest' ? 'RN' : 'SR'}`;
      const vals = DELTAS.map((d) => accumulate(f, d, N, mode, kahan));
      toy[label] = vals;
      toyRows.push([f.name, kahan ? 'nearest + Kahan' : mode, ...vals.map((v) => v.toPrecision(5))]);
    }
  }
  toyRows.unshift(['exact', '–', ...DELTAS.map((d) => (1 + N * d).toPrecision(5))]);

  // --- grid
  const q = o.quick;
  const cfg = q ? { hidden: [64], trainN: 5000, testN: 2000, steps: 150, evalEvery: 25 } : { hidden: [128], trainN: 60000, testN: 10000, steps: 1200, evalEvery: 100 };
  const train = await loadMnist('train', cfg.trainN);
  const test = await loadMnist('test', cfg.testN);
  const cells: SwallowCell[] = [];
  const run = (opt: OptimizerSpec, prec: PrecisionSpec): RunResult =>
    runTraining({ hidden: cfg.hidden, opt, prec, train, test, batch: 100, steps: cfg.steps, seed: 1, evalEvery: cfg.evalEvery });
  const mean = (a: number[]) => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);
  for (const op of OPTS) {
    for (const f of GRID_FORMATS) {
      for (const r of ['nearest', 'stochastic'] as const) {
        if (f.kind === 'fp32' && r === 'stochastic') continue;
        const res = run(op.spec, { weights: f, rounding: r, seed: 5 });
        const sw = mean(res.curve.slice(1).map((c) => c.swallowed));
        cells.push({ opt: op.name, format: f.name, rounding: r, finalAcc: res.finalAcc, swallowed: sw, curve: res.curve.map((c) => ({ step: c.step, acc: c.testAcc, swallowed: c.swallowed })) });
        log(`swallow ${op.name} ${f.name} ${r}: acc ${pct(res.finalAcc)} swallowed ${pct(sw)} (${res.seconds.toFixed(0)} s)`);
      }
    }
  }
  // --- remedies for round-to-nearest with momentum in bf16, and loss scaling for fp16 gradients
  const mom = OPTS[1].spec;
  const remedies: [string, PrecisionSpec][] = [
    ['bf16 RN', { weights: BF16, rounding: 'nearest' }],
    ['bf16 RN, momentum buffer bf16', { weights: BF16, rounding: 'nearest', state: BF16 }],
    ['bf16 SR', { weights: BF16, rounding: 'stochastic', seed: 5 }],
    ['bf16 RN + Kahan', { weights: BF16, rounding: 'nearest', kahan: true }],
    ['bf16 RN + fp32 master', { weights: BF16, rounding: 'nearest', master: true }],
    ['fp32', { weights: FP32, rounding: 'nearest' }],
  ];
  const remedyRows: (string | number)[][] = [];
  const remedyRes: Record<string, { acc: number; swallowed: number }> = {};
  for (const [name, prec] of remedies) {
    const res = run(mom, prec);
    const sw = mean(res.curve.slice(1).map((c) => c.swallowed));
    remedyRes[name] = { acc: res.finalAcc, swallowed: sw };
    remedyRows.push([name, pct(res.finalAcc), pct(sw)]);
    log(`swallow remedy ${name}: acc ${pct(res.finalAcc)}`);
  }
  // Tiny-gradient regime: the loss is weighted by 1e-5 (and lr multiplied by 1e5), so fp32 training is unchanged but
  // raw gradients sit around fp16's subnormal range.
  const LW = 1e-5;
  const fp16All: PrecisionSpec = { weights: FP16, rounding: 'nearest', master: true, grads: FP16, activations: FP16, lossWeight: LW };
  const scaling: [string, PrecisionSpec][] = [
    ['fp32 reference', { weights: FP32, rounding: 'nearest', lossWeight: LW }],
    ['fp16, no loss scaling', fp16All],
    ['fp16, static scale 2^10', { ...fp16All, lossScale: { kind: 'static', scale: 1024 } }],
    ['fp16, static scale 2^24', { ...fp16All, lossScale: { kind: 'static', scale: 2 ** 24 } }],
    ['fp16, dynamic (start 2^24, halve on inf, double after 50 good steps)', { ...fp16All, lossScale: { kind: 'dynamic', init: 2 ** 24, interval: 50 } }],
  ];
  const scaleRows: (string | number)[][] = [];
  const scaleRes: Record<string, { acc: number; underflow: number; skipped: number; finalScale: number }> = {};
  for (const [name, prec] of scaling) {
    const res = run({ kind: 'sgd', lr: 0.1 / LW }, prec);
    const uf = mean(res.curve.slice(1).map((c) => c.gradUnderflow));
    const skipped = res.curve.reduce((s, c) => s + c.skipped, 0);
    const finalScale = res.curve[res.curve.length - 1].lossScale;
    scaleRes[name] = { acc: res.finalAcc, underflow: uf, skipped, finalScale };
    scaleRows.push([name, pct(res.finalAcc), pct(uf), skipped, name.startsWith('fp32') ? '–' : finalScale]);
    log(`swallow loss-scaling ${name}: acc ${pct(res.finalAcc)} underflow ${pct(uf)} skipped ${skipped}`);
  }

  // --- figures
  const pts: Pt[] = [];
  for (const c of cells) for (const p of c.curve) pts.push({ x: p.step, y: 100 * p.acc, series: `${c.format} ${c.rounding === 'nearest' ? 'RN' : 'SR'}`, facet: c.opt });
  const figCurves = await figure(lines(pts, { title: 'Test accuracy while training, weights stored in each format (state and gradients fp32)', x: 'step', y: 'test accuracy (%)', facet: 'optimizer', facetSort: OPTS.map((x) => x.name), width: 260, height: 200 }), o.out, SUB, 'swallow-curves', 'learning curves');
  const figBars = await figure(bars(cells.filter((c) => c.format !== 'fp32' || c.rounding === 'nearest').map((c) => ({ cat: `${c.format} ${c.rounding === 'nearest' ? 'RN' : 'SR'}`, y: 100 * c.swallowed, series: c.opt })), { title: 'Share of nonzero updates swallowed (stored weight unchanged)', y: 'swallowed (%)', cat: 'weight format' }), o.out, SUB, 'swallow-fraction', 'swallowed fraction');
  const gridRows = cells.map((c) => [c.opt, c.format, c.rounding, pct(c.finalAcc), pct(c.swallowed)]);
  const seconds = (performance.now() - t0) / 1000;
  const md = [
    '## swallow — guess (2): are small updates rounded away, and does that stall learning?',
    '',
    stamp(q, seconds, `MNIST ${cfg.trainN} train / ${cfg.testN} test, MLP 784-${cfg.hidden.join('-')}-10, batch 100, ${cfg.steps} steps per run`),
    '',
    `### Toy: start at w = 1 and add Δ ${N.toLocaleString('en')} times, rounding after every addition`,
    '',
    'RN = round to nearest even, SR = stochastic rounding (one seeded run), Kahan = compensated summation (the lost low part, kept in fp32, is carried to the next addition).',
    '',
    table(['format', 'rounding', ...DELTAS.map((d) => `Δ = ${d}`)], toyRows),
    '',
    '### Training: weights stored in the format after every update (no master copy)',
    '',
    'Gradients, optimizer state and activations stay fp32 here, so the only difference between rows is how the stored weights are rounded. "swallowed" = share of nonzero updates after which the stored weight was unchanged (averaged over the run).',
    '',
    figCurves,
    '',
    figBars,
    '',
    table(['optimizer', 'weights', 'rounding', 'final test acc', 'swallowed'], gridRows),
    '',
    '### Remedies (momentum, bf16 weights)',
    '',
    table(['recipe', 'final test acc', 'swallowed'], remedyRows),
    '',
    `### fp16 gradients and loss scaling (SGD, loss weighted by ${LW} so gradients are tiny, lr ${0.1 / LW})`,
    '',
    'Forward activations, back-propagated errors and weight gradients are fp16, weights fp16 with an fp32 master copy. "grad underflow" = nonzero weight gradients below fp16\'s smallest subnormal 2^−24, measured on the loss-scaled gradient; a step whose scaled gradients overflow to inf is skipped.',
    '',
    table(['recipe', 'final test acc', 'grad underflow', 'skipped steps', 'final loss scale'], scaleRows),
  ].join('\n');
  await saveJson(o.out, 'swallow', { quick: q, toy, deltas: DELTAS, cells: cells.map(({ curve: _c, ...r }) => r), remedies: remedyRes, scaling: scaleRes });
  await writeSection(o.out, 'swallow', md);
  return { cells, toy };
}
