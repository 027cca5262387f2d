// Guess (2): do rounded-away small updates stall learning? Toy accumulation table and an optimizer x rounding x format grid.
import { BF16, E4M3, E5M2, FP16, FP32, fixedFormat, overflowNote, quantize, quantizeSum, type Format, type Rounding } from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';
import { loadMnist } from './data.ts';
import { bars, figure, lines, type Pt } from './plot.ts';
import { pct, SUB, table, writeSection } from './report.ts';
import { runTraining, type RunResult } from './run.ts';
import { logger, saveJson, stamp, type LabOptions } from './common.ts';
import { interval, mean as meanOf, meanSd, welch } from './stats.ts';
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

/** One grid cell's outcome: means over seeds, the per-seed values, and the first seed's curve. */
export interface SwallowCell { opt: string; format: string; rounding: string; finalAcc: number; swallowed: number; accs: number[]; swalloweds: number[]; curve: { step: number; acc: number; swallowed: number }[] }

/** "Δ [lo, hi] verdict" of accuracies a against the reference b, in percentage points. */
export function vsRef(a: number[], b: number[]): string {
  if (a.length < 2 || b.length < 2) return '–';
  const w = welch(a, b);
  const f = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(2)}`;
  return `${f(w.diff)} [${f(w.lo)}, ${f(w.hi)}]: ${w.lo > 0 ? 'higher' : w.hi < 0 ? 'lower' : 'no significant difference'}`;
}

const OPTS: { name: string; spec: OptimizerSpec }[] = [
  { name: 'SGD', spec: { kind: 'sgd', lr: 0.1 } },
  { name: 'momentum', spec: { kind: 'momentum', lr: 0.01, momentum: 0.9 } },
  { name: 'Adam', spec: { kind: 'adam', lr: 1e-3 } },
];
const GRID_FORMATS: Format[] = [FP32, BF16, FP16, E4M3, fixedFormat(4, 12)];

/** Run the swallow experiment and write its section. */
export async function labSwallow(o: LabOptions & { seeds?: number }): Promise<{ cells: SwallowCell[]; toy: Record<string, number[]> }> {
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
  const seeds = o.seeds ?? (q ? 3 : 5);
  // every recipe is run with `seeds` seeds (initial weights, sample order and rounding stream all change with it)
  const run = (opt: OptimizerSpec, prec: PrecisionSpec): RunResult[] =>
    Array.from({ length: seeds }, (_, k) => runTraining({ hidden: cfg.hidden, opt, prec: { ...prec, seed: (prec.seed ?? 5) + 100 * k }, train, test, batch: 100, steps: cfg.steps, seed: 1 + k, evalEvery: cfg.evalEvery }));
  const mean = (a: number[]) => (a.length ? a.reduce((s, v) => s + v, 0) / a.length : 0);
  const swOf = (res: RunResult) => mean(res.curve.slice(1).map((c) => c.swallowed));
  for (const op of OPTS) {
    for (const f of GRID_FORMATS) {
      for (const r of ['nearest', 'stochastic'] as const) {
        if (f.kind === 'fp32' && r === 'stochastic') continue;
        const rs = run(op.spec, { weights: f, rounding: r, seed: 5 });
        const accs = rs.map((x) => x.finalAcc), sws = rs.map(swOf);
        cells.push({ opt: op.name, format: f.name, rounding: r, finalAcc: meanOf(accs), swallowed: meanOf(sws), accs, swalloweds: sws, curve: rs[0].curve.map((c) => ({ step: c.step, acc: c.testAcc, swallowed: c.swallowed })) });
        log(`swallow ${op.name} ${f.name} ${r}: acc ${meanSd(accs, 100, 2)} % swallowed ${pct(meanOf(sws))} (${rs.map((x) => x.seconds.toFixed(0)).join('+')} s)`);
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
  const remedyRes: Record<string, { acc: number; swallowed: number; accs: number[] }> = {};
  const remedyAccs: [string, number[], number[]][] = [];
  for (const [name, prec] of remedies) {
    const rs = run(mom, prec);
    const accs = rs.map((x) => x.finalAcc), sws = rs.map(swOf);
    remedyRes[name] = { acc: meanOf(accs), swallowed: meanOf(sws), accs };
    remedyAccs.push([name, accs, sws]);
    log(`swallow remedy ${name}: acc ${meanSd(accs, 100, 2)} %`);
  }
  const fp32Rem = remedyRes.fp32.accs;
  for (const [name, accs, sws] of remedyAccs) remedyRows.push([name, `${meanSd(accs, 100, 2)} %`, interval(accs, 100, 2), name === 'fp32' ? '–' : vsRef(accs, fp32Rem), `${meanSd(sws, 100, 1)} %`]);
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
  const scaleRes: Record<string, { acc: number; underflow: number; skipped: number; finalScale: number; accs: number[] }> = {};
  let fp32Scale: number[] = [];
  for (const [name, prec] of scaling) {
    const rs = run({ kind: 'sgd', lr: 0.1 / LW }, prec);
    const accs = rs.map((x) => x.finalAcc);
    const ufs = rs.map((res) => mean(res.curve.slice(1).map((c) => c.gradUnderflow)));
    const skipped = rs.map((res) => res.curve.reduce((s, c) => s + c.skipped, 0));
    const finalScale = rs[0].curve[rs[0].curve.length - 1].lossScale;
    if (name.startsWith('fp32')) fp32Scale = accs;
    scaleRes[name] = { acc: meanOf(accs), underflow: meanOf(ufs), skipped: meanOf(skipped), finalScale, accs };
    scaleRows.push([name, `${meanSd(accs, 100, 2)} %`, name.startsWith('fp32') ? '–' : vsRef(accs, fp32Scale), `${meanSd(ufs, 100, 1)} %`, meanSd(skipped, 1, 1), name.startsWith('fp32') ? '–' : finalScale]);
    log(`swallow loss-scaling ${name}: acc ${meanSd(accs, 100, 2)} % underflow ${pct(meanOf(ufs))}`);
  }

  // --- figures
  const pts: Pt[] = [];
  for (const c of cells) for (const p of c.curve) pts.push({ x: p.step, y: 100 * p.acc, series: `${c.format} ${c.rounding === 'nearest' ? 'RN' : 'SR'}`, facet: c.opt });
  const figCurves = await figure(lines(pts, { title: 'Test accuracy while training, weights stored in each format (state and gradients fp32)', x: 'step', y: 'test accuracy (%)', facet: 'optimizer', facetSort: OPTS.map((x) => x.name), width: 260, height: 200 }), o.out, SUB, 'swallow-curves', 'learning curves');
  const figBars = await figure(bars(cells.filter((c) => c.format !== 'fp32' || c.rounding === 'nearest').map((c) => ({ cat: `${c.format} ${c.rounding === 'nearest' ? 'RN' : 'SR'}`, y: 100 * c.swallowed, series: c.opt })), { title: 'Share of nonzero updates swallowed (stored weight unchanged)', y: 'swallowed (%)', cat: 'weight format' }), o.out, SUB, 'swallow-fraction', 'swallowed fraction');
  const refOf = (opt: string) => cells.find((c) => c.opt === opt && c.format === 'fp32')!.accs;
  const gridRows = cells.map((c) => [c.opt, c.format, c.rounding, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), c.format === 'fp32' ? '–' : vsRef(c.accs, refOf(c.opt)), `${meanSd(c.swalloweds, 100, 1)} %`]);
  const seconds = (performance.now() - t0) / 1000;
  const md = [
    '## swallow — guess (2): are small updates rounded away, and does that stall learning?',
    '',
    stamp(q, seconds, `MNIST ${cfg.trainN} train / ${cfg.testN} test, MLP 784-${cfg.hidden.join('-')}-10, batch 100, ${cfg.steps} steps per run, ${seeds} seeds per recipe`),
    '',
    `Every training row is ${seeds} runs (seeds 1–${seeds}: initial weights, sample order and rounding stream): test accuracy as mean ± s.d., its 95% t-interval, and the difference to fp32 with the same optimizer as a Welch 95% interval in percentage points — "higher"/"lower" only where that interval excludes 0. Overflow: ${[BF16, FP16, E4M3].map(overflowNote).join('; ')} (weights never come near the range limits here).`,
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
    table(['optimizer', 'weights', 'rounding', 'test acc (mean ± s.d.)', '95% interval', 'vs fp32: Δ acc [95%]', 'swallowed'], gridRows),
    '',
    '### Remedies (momentum, bf16 weights)',
    '',
    table(['recipe', 'test acc (mean ± s.d.)', '95% interval', 'vs fp32: Δ acc [95%]', 'swallowed'], remedyRows),
    '',
    `### fp16 gradients and loss scaling (SGD, loss weighted by ${LW} so gradients are tiny, lr ${0.1 / LW})`,
    '',
    'Forward activations, back-propagated errors and weight gradients are fp16, weights fp16 with an fp32 master copy. "grad underflow" = nonzero weight gradients below fp16\'s smallest subnormal 2^−24, measured on the loss-scaled gradient; a step whose scaled gradients overflow to inf is skipped.',
    '',
    table(['recipe', 'test acc (mean ± s.d.)', 'vs fp32: Δ acc [95%]', 'grad underflow', 'skipped steps', 'final loss scale (seed 1)'], scaleRows),
  ].join('\n');
  await saveJson(o.out, 'swallow', { quick: q, toy, deltas: DELTAS, cells: cells.map(({ curve: _c, ...r }) => r), remedies: remedyRes, scaling: scaleRes });
  await writeSection(o.out, 'swallow', md);
  return { cells, toy };
}
