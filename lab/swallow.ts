// Guess (2): do rounded-away small updates stall learning? Toy accumulation table, an optimizer x rounding x format grid
// on MNIST with the lost-update-mass meter (lab/update.ts), remedies, loss scaling, and a deep linear network's plateau.
import { BF16, E4M3, E5M2, FP16, FP32, fixedFormat, overflowNote, quantize, quantizeSum, type Format, type Rounding } from '../src/precision/formats.ts';
import { createRng } from '../src/precision/rng.ts';
import { bars, figure, lines, type Pt } from './plot.ts';
import { pct, SUB, table, writeSection } from './report.ts';
import { runTraining } from './run.ts';
import { logger, noteOutcome, saveJson, stamp, type LabOptions } from './common.ts';
import { holm, interval, mean as meanOf, meanSd, paired, summarize } from './stats.ts';
import { PLATEAU_CONFIG, PLATEAU_INITS, PLATEAU_RECIPES, plateauData, runPlateau, type PlateauCell, type PlateauConfig, type PlateauData, type PlateauRun } from './plateau.ts';
import { runUnits, runsNote, type Unit } from './runs.ts';
import { cachedMnist } from './data.ts';
import { UsageError } from '../src/core/errors.ts';
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

/** Parts of the swallow experiment (all by default). */
export const SWALLOW_PARTS = ['toy', 'grid', 'remedies', 'scaling', 'plateau'] as const;
/** A part name. */
export type SwallowPart = (typeof SWALLOW_PARTS)[number];

/** Per-seed meters of one recipe (fractions in [0, 1]). */
export interface SeedMeters {
  accs: number[];
  /** Σ|u − E[applied]| / Σ|u| over each run (lost update mass, expected). */
  lost: number[];
  /** Σ|u − applied| / Σ|u| over each run (realized; stochastic rounding's noise counts here). */
  lostRealized: number[];
  /** Share of nonzero updates after which the stored weight was unchanged (deferred or lost). */
  unchanged: number[];
}

/** One grid cell's outcome: per-seed values, their means (finalAcc, swallowed = unchanged share), the first seed's curve. */
export interface SwallowCell extends SeedMeters { opt: string; format: string; rounding: string; finalAcc: number; swallowed: number; curve: { step: number; acc: number; lost: number }[] }

/** "Δ [lo, hi] verdict" of a against the reference b (paired by seed, 95%), scaled (100: percentage points). */
export function vsRef(a: number[], b: number[], scale = 100, digits = 2, words: [string, string] = ['higher', 'lower']): string {
  if (a.length < 2 || b.length < 2) return '–';
  if (a.length === b.length && a.every((v, k) => v === b[k])) return 'identical on every seed';
  const w = paired(a, b);
  const f = (v: number) => `${v >= 0 ? '+' : ''}${(scale * v).toFixed(digits)}`;
  if (Number.isNaN(w.lo)) return `${f(w.diff)}: no interval (the same gap on every seed; no verdict)`;
  return `${f(w.diff)} [${f(w.lo)}, ${f(w.hi)}]: ${w.lo > 0 ? words[0] : w.hi < 0 ? words[1] : 'no significant difference'}`;
}

/** A share as "m ± sd %" with enough digits for values near 0. */
function pctSd(x: number[]): string {
  const m = 100 * meanOf(x);
  if (m !== 0 && Math.abs(m) < 1e-3) {
    const s = summarize(x);
    return x.length < 2 ? `${m.toExponential(1)} %` : `${m.toExponential(1)} ± ${(100 * s.sd).toExponential(1)} %`;
  }
  const d = m !== 0 && Math.abs(m) < 0.1 ? 3 : 1;
  return `${meanSd(x, 100, d)} %`;
}

const OPTS: { name: string; spec: OptimizerSpec }[] = [
  // learning rates at which 3000 cosine-decayed steps converge (fp32 test accuracy flat at the end of the run)
  { name: 'SGD', spec: { kind: 'sgd', lr: 0.5 } },
  { name: 'momentum', spec: { kind: 'momentum', lr: 0.05, momentum: 0.9 } },
  { name: 'Adam', spec: { kind: 'adam', lr: 1e-3 } },
];
const GRID_FORMATS: Format[] = [FP32, BF16, FP16, E4M3, fixedFormat(4, 12)];
const N_TOY = 10_000;
const LOSS_WEIGHT = 1e-5;

const FP16_ALL: PrecisionSpec = { weights: FP16, rounding: 'nearest', master: true, grads: FP16, activations: FP16, lossWeight: LOSS_WEIGHT };
/** Remedies for round-to-nearest with momentum in bf16. */
const REMEDIES: [string, PrecisionSpec][] = [
  ['bf16 RN', { weights: BF16, rounding: 'nearest' }],
  ['bf16 RN, momentum buffer bf16', { weights: BF16, rounding: 'nearest', state: BF16 }],
  ['bf16 SR', { weights: BF16, rounding: 'stochastic', seed: 5 }],
  ['bf16 RN + Kahan (fp32 compensation)', { weights: BF16, rounding: 'nearest', kahan: true }],
  ['bf16 RN + fp32 master', { weights: BF16, rounding: 'nearest', master: true }],
  ['fp32', { weights: FP32, rounding: 'nearest' }],
];
/** Loss-scaling recipes of the tiny-gradient regime (SGD at lr / LOSS_WEIGHT). */
const SCALING: [string, PrecisionSpec][] = [
  ['fp32 reference', { weights: FP32, rounding: 'nearest', lossWeight: LOSS_WEIGHT }],
  ['fp16, no loss scaling', FP16_ALL],
  ['fp16, static scale 2^10', { ...FP16_ALL, lossScale: { kind: 'static', scale: 1024 } }],
  ['fp16, static scale 2^24', { ...FP16_ALL, lossScale: { kind: 'static', scale: 2 ** 24 } }],
  ['fp16, dynamic (start 2^24, halve on inf, double after 50 good steps)', { ...FP16_ALL, lossScale: { kind: 'dynamic', init: 2 ** 24, interval: 50 } }],
];

/** Bumped when a swallow run's meaning changes (its records then no longer count). */
export const SWALLOW_VERSION = 1;

/** MNIST network and schedule of the swallow runs by size. */
export function swallowConfig(size: 'tiny' | 'quick' | 'full') {
  return size === 'tiny' ? { size, hidden: [16], trainN: 1000, testN: 500, steps: 40, evalEvery: 20 }
    : size === 'quick' ? { size, hidden: [64], trainN: 5000, testN: 2000, steps: 300, evalEvery: 50 }
      : { size, hidden: [128], trainN: 60000, testN: 10000, steps: 3000, evalEvery: 250 };
}

/** Every MNIST recipe of a part by name: optimizer and precision. */
function mnistRecipes(part: 'grid' | 'remedies' | 'scaling'): { name: string; opt: OptimizerSpec; prec: PrecisionSpec }[] {
  if (part === 'remedies') return REMEDIES.map(([name, prec]) => ({ name, opt: OPTS[1].spec, prec }));
  if (part === 'scaling') return SCALING.map(([name, prec]) => ({ name, opt: { kind: 'sgd', lr: OPTS[0].spec.lr / LOSS_WEIGHT }, prec }));
  const out: { name: string; opt: OptimizerSpec; prec: PrecisionSpec }[] = [];
  for (const op of OPTS) for (const f of GRID_FORMATS) for (const r of ['nearest', 'stochastic'] as const) {
    if (f.kind === 'fp32' && r === 'stochastic') continue;
    out.push({ name: `${op.name} ${f.name} ${r}`, opt: op.spec, prec: { weights: f, rounding: r, seed: 5 } });
  }
  return out;
}

/** A swallow unit: one MNIST recipe and seed, or one plateau recipe, initial scale and seed. */
export type SwallowUnitSpec =
  | { part: 'grid' | 'remedies' | 'scaling'; cfg: ReturnType<typeof swallowConfig>; recipe: string; seed: number }
  | { part: 'plateau'; cfg: PlateauConfig; recipe: string; seed: number };

/** What one MNIST run leaves in the run store (the meters the section reads). */
export interface SwallowRun {
  finalAcc: number; lostMass: number; lostRealized: number; seconds: number;
  curve: { step: number; testAcc: number; lostMass: number; swallowed: number; gradUnderflow: number; skipped: number; lossScale: number }[];
}

/**
 * Run one swallow unit (the unit of the run store).
 * @example await swallowUnit({ part: 'grid', cfg: swallowConfig('tiny'), recipe: 'SGD bf16 nearest', seed: 1 })
 */
export async function swallowUnit(u: SwallowUnitSpec): Promise<SwallowRun | PlateauRun> {
  if (u.part === 'plateau') {
    const r = PLATEAU_RECIPES.find((x) => x.name === u.recipe);
    if (!r) throw new UsageError(`swallow: unknown plateau recipe ${u.recipe}`);
    return runPlateau(u.cfg, r, u.seed);
  }
  const r = mnistRecipes(u.part).find((x) => x.name === u.recipe);
  if (!r) throw new UsageError(`swallow: unknown ${u.part} recipe ${u.recipe}`);
  const { cfg } = u, k = u.seed - 1;
  const train = await cachedMnist('train', cfg.trainN), test = await cachedMnist('test', cfg.testN);
  // seeds change initial weights, sample order and rounding stream
  const x = runTraining({ hidden: cfg.hidden, opt: { ...r.opt, decay: { steps: cfg.steps, final: 0.01 } }, prec: { ...r.prec, seed: (r.prec.seed ?? 5) + 100 * k }, train, test, batch: 100, steps: cfg.steps, seed: u.seed, evalEvery: cfg.evalEvery });
  return {
    finalAcc: x.finalAcc, lostMass: x.lostMass, lostRealized: x.lostRealized, seconds: x.seconds,
    curve: x.curve.map((c) => ({ step: c.step, testAcc: c.testAcc, lostMass: c.lostMass, swallowed: c.swallowed, gradUnderflow: c.gradUnderflow, skipped: c.skipped, lossScale: c.lossScale })),
  };
}

/** The swallow units of the MNIST parts and the plateau among `parts` (the toy table is computed in place). */
export function swallowUnits(size: 'tiny' | 'quick' | 'full', seeds: number, parts: readonly SwallowPart[] = SWALLOW_PARTS): Unit<SwallowUnitSpec>[] {
  const cfg = swallowConfig(size);
  const units: Unit<SwallowUnitSpec>[] = [];
  for (const part of ['grid', 'remedies', 'scaling'] as const) if (parts.includes(part)) for (const r of mnistRecipes(part)) for (let k = 1; k <= seeds; k++) units.push({ spec: { part, cfg, recipe: r.name, seed: k }, label: `${part} ${r.name} seed ${k}` });
  if (parts.includes('plateau')) for (const init of PLATEAU_INITS[size]) for (const r of PLATEAU_RECIPES) for (let k = 1; k <= seeds; k++) units.push({ spec: { part: 'plateau', cfg: { ...PLATEAU_CONFIG[size], init }, recipe: r.name, seed: k }, label: `plateau init ${init} ${r.name} seed ${k}` });
  return units;
}

/** Toy accumulation rows and values. */
function toyTable(): { rows: (string | number)[][]; toy: Record<string, number[]> } {
  const rows: (string | number)[][] = [];
  const toy: Record<string, number[]> = {};
  for (const f of TOY_FORMATS) {
    for (const [mode, kahan] of [['nearest', false], ['stochastic', false], ['nearest', true]] as const) {
      if (f.kind === 'fp32' && mode === 'stochastic') continue;
      const label = `${f.name} ${kahan ? 'RN + Kahan' : mode === 'nearest' ? 'RN' : 'SR'}`;
      if (mode === 'stochastic') {
        // five rounding streams: mean ± s.d. of the final value
        const runs = DELTAS.map((d) => [1, 2, 3, 4, 5].map((seed) => accumulate(f, d, N_TOY, mode, kahan, seed)));
        toy[label] = runs.map((r) => meanOf(r));
        rows.push([f.name, 'stochastic (5 seeds)', ...runs.map((r) => { const x = summarize(r); return `${x.mean.toPrecision(5)} ± ${x.sd.toPrecision(2)}`; })]);
        continue;
      }
      const vals = DELTAS.map((d) => accumulate(f, d, N_TOY, mode, kahan));
      toy[label] = vals;
      rows.push([f.name, kahan ? 'nearest + Kahan (fp32)' : mode, ...vals.map((v) => v.toPrecision(5))]);
    }
  }
  rows.unshift(['exact', '–', ...DELTAS.map((d) => (1 + N_TOY * d).toPrecision(5))]);
  return { rows, toy };
}

/** Plateau section text and figure from its data. */
async function plateauMarkdown(p: PlateauData, out: string): Promise<string> {
  const cfg = p.config;
  const pts: Pt[] = [];
  for (const c of p.cells) for (const q of c.curve) if (q.step > 0) pts.push({ x: q.step, y: Math.max(q.loss, 1e-7), series: c.recipe, facet: `init ${c.init}` });
  const fig = await figure(lines(pts, { title: 'Deep linear network from small weights: test loss / initial loss (seed 1)', x: 'step', y: 'loss / initial loss (log)', logY: true, facet: 'initial weight scale', facetSort: p.inits.map((i) => `init ${i}`), width: 300, height: 220 }), out, SUB, 'swallow-plateau', 'plateau curves');
  const rows = p.cells.map((c) => {
    const ref = p.cells.find((r) => r.init === c.init && r.recipe === 'fp32')!;
    return [String(c.init), c.recipe, `${c.escapes.filter((e) => e !== null).length}/${c.escapes.length}`, escapeText(c, cfg.steps), c.recipe === 'fp32' ? '–' : escapeVs(c, ref, cfg.steps), expSd(c.finalLoss), c.recipe === 'fp32' ? '–' : vsRefExp(c.finalLoss, ref.finalLoss), pctSd(c.lostPlateau)];
  });
  return [
    '### A real flat stretch: the plateau of a deep linear network',
    '',
    `The MNIST runs above have no long flat stretch. This one does: a linear network ŷ = W₃W₂W₁x (${cfg.dim} units per layer, ${cfg.depth} weight matrices, no biases) learns a linear teacher with singular values ${cfg.modes.join(', ')} from inputs x ~ N(0, I), squared loss, plain SGD (lr ${cfg.lr}, batch ${cfg.batch}, fresh samples every step, ${cfg.steps} steps, constant lr as in Saxe, McClelland & Ganguli 2014). From small initial weights (each entry N(0, (s/√${cfg.dim})²), s = initial scale) the loss stays flat while the weights grow along the teacher's modes, then drops: the smaller s, the longer the plateau and the smaller each update relative to its weight. "Escape" = first evaluation (every ${cfg.evalEvery} steps) with test loss below ${cfg.escapeAt} × the initial loss; steps are averaged over the seeds that escaped, the paired interval only when all seeds of both rows escaped. Lost mass is metered until the escape (the whole run when there is none). ${p.seeds} seeds per row (initial weights, teacher, data and rounding stream).`,
    '',
    fig,
    '',
    table(['initial scale s', 'weights', 'escaped', 'steps to escape (mean ± s.d.)', 'vs fp32: Δ steps [95%]', 'final loss / initial (mean ± s.d.)', 'vs fp32: Δ final loss [95%]', 'lost update mass on the plateau'], rows),
  ].join('\n');
}

/** "m ± sd" in exponent notation (losses spanning many decades). */
function expSd(x: number[]): string {
  const s = summarize(x);
  return x.length < 2 ? s.mean.toExponential(2) : `${s.mean.toExponential(2)} ± ${s.sd.toExponential(1)}`;
}

/** Paired difference a − b in exponent notation with its verdict. */
function vsRefExp(a: number[], b: number[]): string {
  if (a.length < 2 || b.length < 2) return '–';
  const w = paired(a, b);
  const f = (v: number) => `${v >= 0 ? '+' : ''}${v.toExponential(1)}`;
  if (Number.isNaN(w.lo)) return `${f(w.diff)}: no interval (the same gap on every seed; no verdict)`;
  return `${f(w.diff)} [${f(w.lo)}, ${f(w.hi)}]: ${w.lo > 0 ? 'higher' : w.hi < 0 ? 'lower' : 'no significant difference'}`;
}

function escapeText(c: PlateauCell, steps: number): string {
  const e = c.escapes.filter((v): v is number => v !== null);
  if (!e.length) return `never (within ${steps})`;
  return e.length < 2 ? `${e[0]} (n=1)` : `${meanSd(e, 1, 0)}`;
}

function escapeVs(c: PlateauCell, ref: PlateauCell, steps: number): string {
  const a = c.escapes, b = ref.escapes;
  const all = (x: (number | null)[]) => x.every((v) => v !== null);
  if (!all(a) && all(b)) return a.some((v) => v !== null) ? 'some seeds never escaped: longer' : `frozen: no seed escaped within ${steps} steps`;
  if (!all(a) || !all(b)) return '– (censored runs)';
  return vsRef(a as number[], b as number[], 1, 0, ['longer', 'shorter']);
}

/** Everything the swallow section saves (precision/swallow.json). */
export interface SwallowData {
  quick: boolean;
  parts: SwallowPart[];
  seeds: number;
  steps?: number;
  /** Hidden layer widths of the MNIST MLP and its training images (absent in results written before they were saved). */
  hidden?: number[];
  trainN?: number;
  toy?: Record<string, number[]>;
  deltas: number[];
  cells?: Omit<SwallowCell, 'curve'>[];
  remedies?: Record<string, SeedMeters & { acc: number; swallowed: number }>;
  scaling?: Record<string, { acc: number; accs: number[]; underflow: number; skipped: number; finalScale: number }>;
  lossWeight: number;
  plateau?: PlateauData;
}

/** Run the swallow experiment (all parts, or `parts`) and write its section. */
export async function labSwallow(o: LabOptions & { seeds?: number; parts?: SwallowPart[]; size?: 'tiny' | 'quick' | 'full' }): Promise<SwallowData | null> {
  const log = logger(o);
  const t0 = performance.now();
  const parts = o.parts ?? [...SWALLOW_PARTS];
  const has = (p: SwallowPart) => parts.includes(p);
  const q = o.quick;
  const size = o.size ?? (q ? 'quick' : 'full');
  const seeds = o.seeds ?? (size === 'full' ? 5 : 3);
  const data: SwallowData = { quick: q, parts, seeds, deltas: DELTAS, lossWeight: LOSS_WEIGHT };
  const md: string[] = [];
  // --- toy: w = 1, add delta N times
  if (has('toy')) {
    const t = toyTable();
    data.toy = t.toy;
    md.push(
      `### Toy: start at w = 1 and add Δ ${N_TOY.toLocaleString('en')} times, rounding after every addition`,
      '',
      'RN = round to nearest even (deterministic), SR = stochastic rounding (mean ± s.d. over 5 rounding streams), Kahan = compensated summation with the compensation kept in fp32 (kept in the weight format it would lose what it carries).',
      '',
      table(['format', 'rounding', ...DELTAS.map((d) => `Δ = ${d}`)], t.rows),
      '',
    );
  }
  const cfg = swallowConfig(size);
  const mnist = has('grid') || has('remedies') || has('scaling');
  // every recipe is run with `seeds` seeds; all parts' units go to the run store together (parallel across parts)
  const units = swallowUnits(size, seeds, parts);
  const outcome = await runUnits('swallow', SWALLOW_VERSION, units, swallowUnit, { out: o.out, log, ...o.run });
  if (!noteOutcome(o, 'swallow', size, outcome)) return null;
  const byKey = new Map(units.map((u, i) => [`${u.spec.part}|${u.spec.part === 'plateau' ? u.spec.cfg.init : ''}|${u.spec.recipe}|${u.spec.seed}`, outcome.results![i]]));
  const run = (part: 'grid' | 'remedies' | 'scaling', recipe: string): SwallowRun[] => Array.from({ length: seeds }, (_, k) => byKey.get(`${part}||${recipe}|${k + 1}`) as SwallowRun);
  const meters = (rs: SwallowRun[]): SeedMeters => ({ accs: rs.map((x) => x.finalAcc), lost: rs.map((x) => x.lostMass), lostRealized: rs.map((x) => x.lostRealized), unchanged: rs.map((x) => x.curve.slice(1).reduce((s, c) => s + c.swallowed, 0) / Math.max(1, x.curve.length - 1)) });
  const meterCols = (m: SeedMeters) => [pctSd(m.lost), pctSd(m.lostRealized), pctSd(m.unchanged)];
  if (mnist) {
    data.steps = cfg.steps;
    data.hidden = cfg.hidden;
    data.trainN = cfg.trainN;
    md.push(
      `### Training on MNIST: weights stored in the format after every update`,
      '',
      `MNIST ${cfg.trainN} train / ${cfg.testN} test images, MLP 784-${cfg.hidden.join('-')}-10, batch 100, ${cfg.steps} steps per run with the learning rate decayed (cosine) to 1% of its start (${OPTS.map((x) => `${x.name} lr ${x.spec.lr}`).join(', ')}). Every row is ${seeds} runs (seeds 1–${seeds}: initial weights, sample order and rounding stream): test accuracy as mean ± s.d., its 95% t-interval, and the difference to fp32 with the same optimizer, paired by seed (seed k gives both rows the same initial weights and sample order): the mean of the per-seed differences with its 95% t-interval in percentage points — "higher"/"lower" only where that interval excludes 0. Overflow: ${[BF16, FP16, E4M3].map(overflowNote).join('; ')} (weights never come near the range limits here).`,
      '',
      '**Meters.** Per step and weight, u is the intended update (fp32, from the optimizer) and "applied" the change of the *effective* weight: the stored weight, or the fp32 master copy when there is one, or stored − compensation under Kahan (the compensation is what the stored weight still owes). **Lost mass** = Σ|u − E[applied]| / Σ|u| over the run, the expectation taken over the rounding\'s randomness: round-to-nearest is deterministic (E[applied] = round(w + u) − w), stochastic rounding is unbiased (E[applied] = u up to float32\'s resolution of w + u; a unit test checks the expectation against draws), a master copy or fp32 Kahan applies u up to float32 rounding. So an update that is merely *deferred* — SR that did not round up this time, a master copy that has not crossed a stored grid point yet — is not lost. **Realized** = the same with the change that actually happened that step (for SR mostly noise: the weight moves by 0 or a whole spacing, so it can exceed 100 %). **Stored unchanged** = share of nonzero updates after which the stored weight did not change (what the first version of this report called "swallowed"; it counts deferred updates too).',
      '',
    );
  }
  if (has('grid')) {
    const cells: SwallowCell[] = [];
    for (const op of OPTS) {
      for (const f of GRID_FORMATS) {
        for (const r of ['nearest', 'stochastic'] as const) {
          if (f.kind === 'fp32' && r === 'stochastic') continue;
          const rs = run('grid', `${op.name} ${f.name} ${r}`);
          const m = meters(rs);
          cells.push({ opt: op.name, format: f.name, rounding: r, finalAcc: meanOf(m.accs), swallowed: meanOf(m.unchanged), ...m, curve: rs[0].curve.map((c) => ({ step: c.step, acc: c.testAcc, lost: c.lostMass })) });
          log(`swallow ${op.name} ${f.name} ${r}: acc ${meanSd(m.accs, 100, 2)} % lost ${pctSd(m.lost)} (${rs.map((x) => x.seconds.toFixed(0)).join('+')} s)`);
        }
      }
    }
    const pts: Pt[] = [];
    for (const c of cells) for (const p of c.curve) pts.push({ x: p.step, y: 100 * p.acc, series: `${c.format} ${c.rounding === 'nearest' ? 'RN' : 'SR'}`, facet: c.opt });
    const figCurves = await figure(lines(pts, { title: 'Test accuracy while training (seed 1), weights stored in each format (state and gradients fp32)', x: 'step', y: 'test accuracy (%)', facet: 'optimizer', facetSort: OPTS.map((x) => x.name), width: 260, height: 200 }), o.out, SUB, 'swallow-curves', 'learning curves');
    const figBars = await figure(bars(cells.filter((c) => c.format !== 'fp32').map((c) => ({ cat: `${c.format} ${c.rounding === 'nearest' ? 'RN' : 'SR'}`, y: 100 * meanOf(c.lost), series: c.opt })), { title: 'Lost update mass Σ|u − E[applied]| / Σ|u| (mean over seeds)', y: 'lost update mass (%)', cat: 'weight format' }), o.out, SUB, 'swallow-fraction', 'lost update mass');
    const refOf = (opt: string) => cells.find((c) => c.opt === opt && c.format === 'fp32')!.accs;
    md.push(
      '#### Optimizer × weight format × rounding (no master copy; gradients, optimizer state and activations fp32)',
      '',
      figCurves,
      '',
      figBars,
      '',
      table(['optimizer', 'weights', 'rounding', 'test acc (mean ± s.d.)', '95% interval', 'vs fp32: Δ acc [95%]', 'lost update mass', 'realized', 'stored unchanged'], cells.map((c) => [c.opt, c.format, c.rounding, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), c.format === 'fp32' ? '–' : vsRef(c.accs, refOf(c.opt)), ...meterCols(c)])),
      '',
    );
    data.cells = cells.map(({ curve: _c, ...r }) => r);
  }
  // --- remedies for round-to-nearest with momentum in bf16
  if (has('remedies')) {
    const remedies = REMEDIES;
    const res: Record<string, SeedMeters & { acc: number; swallowed: number }> = {};
    for (const [name] of remedies) {
      const m = meters(run('remedies', name));
      res[name] = { acc: meanOf(m.accs), swallowed: meanOf(m.unchanged), ...m };
      log(`swallow remedy ${name}: acc ${meanSd(m.accs, 100, 2)} % lost ${pctSd(m.lost)}`);
    }
    const ref = res.fp32.accs;
    md.push(
      '#### Remedies (momentum, bf16 weights)',
      '',
      table(['recipe', 'test acc (mean ± s.d.)', '95% interval', 'vs fp32: Δ acc [95%]', 'lost update mass', 'realized', 'stored unchanged'], Object.entries(res).map(([name, m]) => [name, `${meanSd(m.accs, 100, 2)} %`, interval(m.accs, 100, 2), name === 'fp32' ? '–' : vsRef(m.accs, ref), ...meterCols(m)])),
      '',
    );
    data.remedies = res;
  }
  // Tiny-gradient regime: the loss is weighted by 1e-5 (and lr multiplied by 1e5), so fp32 training is unchanged but
  // raw gradients sit around fp16's subnormal range.
  if (has('scaling')) {
    const LW = LOSS_WEIGHT;
    const scaling = SCALING;
    const rows: (string | number)[][] = [];
    const res: NonNullable<SwallowData['scaling']> = {};
    let ref: number[] = [];
    for (const [name] of scaling) {
      const rs = run('scaling', name);
      const accs = rs.map((x) => x.finalAcc);
      const ufs = rs.map((r) => meanOf(r.curve.slice(1).map((c) => c.gradUnderflow)));
      const skipped = rs.map((r) => r.curve.reduce((s, c) => s + c.skipped, 0));
      const finalScale = rs[0].curve[rs[0].curve.length - 1].lossScale;
      if (name.startsWith('fp32')) ref = accs;
      res[name] = { acc: meanOf(accs), accs, underflow: meanOf(ufs), skipped: meanOf(skipped), finalScale };
      rows.push([name, `${meanSd(accs, 100, 2)} %`, name.startsWith('fp32') ? '–' : vsRef(accs, ref), `${meanSd(ufs, 100, 1)} %`, meanSd(skipped, 1, 1), name.startsWith('fp32') ? '–' : finalScale]);
      log(`swallow loss-scaling ${name}: acc ${meanSd(accs, 100, 2)} % underflow ${pct(meanOf(ufs))}`);
    }
    md.push(
      `#### fp16 gradients and loss scaling (SGD, loss weighted by ${LW} and lr ${Math.round(OPTS[0].spec.lr / LW)}, so that gradients are tiny)`,
      '',
      `A contrived regime, said plainly: the loss is multiplied by ${LW} and the learning rate by ${Math.round(1 / LW)}, which leaves fp32 training unchanged but puts the raw gradients near fp16's subnormal range (with the ordinary loss they are not). Forward activations, back-propagated errors and weight gradients are fp16, weights fp16 with an fp32 master copy. "grad underflow" = nonzero weight gradients below fp16's smallest subnormal 2^−24, measured on the loss-scaled gradient; a step whose scaled gradients overflow to inf is skipped.`,
      '',
      table(['recipe', 'test acc (mean ± s.d.)', 'vs fp32: Δ acc [95%]', 'grad underflow', 'skipped steps', 'final loss scale (seed 1)'], rows),
      '',
    );
    data.scaling = res;
  }
  if (has('plateau')) {
    data.plateau = plateauData(size, seeds, (init, recipe, seed) => byKey.get(`plateau|${init}|${recipe}|${seed}`) as PlateauRun);
    md.push(await plateauMarkdown(data.plateau, o.out), '');
  }
  const seconds = (performance.now() - t0) / 1000;
  const doc = [
    '## swallow — guess (2): are small updates rounded away, and does that stall learning?',
    '',
    stamp(q, seconds, `parts: ${parts.join(', ')}; ${seeds} seeds per row${mnist ? `; MNIST MLP 784-${cfg.hidden.join('-')}-10, ${cfg.steps} steps per run` : ''}`, units.length ? runsNote(outcome.records) : undefined),
    '',
    ...md,
  ].join('\n');
  await saveJson(o.out, 'swallow', data);
  await writeSection(o.out, 'swallow', doc);
  return data;
}

/** A fraction as "m ± sd %" for bullets. */
function pm(x: number[] | undefined): string {
  return x && x.length ? pctSd(x) : '–';
}

/** Paired difference a − b in percentage points as "+x.xx [lo, hi] pp". */
function dpp(a: number[], b: number[]): string {
  const w = paired(a, b);
  const f = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(2)}`;
  return Number.isNaN(w.lo) ? `${f(w.diff)} pp (no interval: the same gap on every seed)` : `${f(w.diff)} pp [${f(w.lo)}, ${f(w.hi)}]`;
}

/** Each grid cell's paired comparison with fp32 (same optimizer) and its Holm-adjusted p over the whole grid. */
function gridTests(cells: Omit<SwallowCell, 'curve'>[]): Map<Omit<SwallowCell, 'curve'>, { w: ReturnType<typeof paired>; adj: number; family: number }> {
  const tests: [Omit<SwallowCell, 'curve'>, ReturnType<typeof paired>][] = [];
  for (const c of cells) {
    if (c.format === 'fp32') continue;
    const ref = cells.find((r) => r.opt === c.opt && r.format === 'fp32');
    if (ref && c.accs.length >= 2) tests.push([c, paired(c.accs, ref.accs)]);
  }
  const adj = holm(tests.map(([, w]) => w.p));
  const family = tests.filter(([, w]) => Number.isFinite(w.p)).length;
  return new Map(tests.map(([c, w], i) => [c, { w, adj: adj[i], family }]));
}

/** "; not significant after Holm's correction over the n comparisons of …" where a 95% verdict does not survive it. */
function holmNote(adj: number, family: number, what: string): string {
  return adj >= 0.05 ? `; not significant after Holm's correction over the ${family} comparisons of ${what}` : '';
}

/**
 * Markdown bullets for the report's answer to guess 2, from the saved swallow.json (each number with its s.d. or 95%
 * interval; a difference called a difference only where its interval excludes 0).
 * @example swallowAnswerBullets(JSON.parse(readFileSync('reports/precision/swallow.json', 'utf8')))
 */
export function swallowAnswerBullets(data: SwallowData): string[] {
  const out: string[] = [];
  const n = data.seeds;
  const toy = data.toy;
  if (toy && toy['bf16 RN']) {
    const i = data.deltas.indexOf(1e-4);
    out.push(`Toy: adding Δ = 10⁻⁴ to w = 1 ten thousand times should give 2; round-to-nearest gives ${toy['bf16 RN'][i]} in bf16 and ${toy['fp16 RN'][i]} in fp16 (every addition rounded away), stochastic rounding ${toy['bf16 SR'][i].toPrecision(4)} (bf16, mean of 5 rounding streams), Kahan with an fp32 compensation ${toy['bf16 RN + Kahan'][i].toPrecision(4)}.`);
  }
  const cells = data.cells;
  if (cells?.length) {
    const rn = cells.filter((c) => c.rounding === 'nearest' && c.format !== 'fp32');
    const sr = cells.filter((c) => c.rounding === 'stochastic');
    const byFmt = [...new Set(rn.map((c) => c.format))].map((f) => `${f} ${rn.filter((c) => c.format === f).map((c) => `${c.opt} ${pm(c.lost)}`).join(', ')}`);
    out.push(`Lost update mass on MNIST (${n} seeds, mean ± s.d., ${data.steps} steps with lr decay): with round-to-nearest ${byFmt.join('; ')}; with stochastic rounding at most ${(100 * Math.max(...sr.map((c) => meanOf(c.lost)))).toFixed(3)} % in any cell — deferred, not lost.`);
    const sig: string[] = [], none: string[] = [], noInterval: string[] = [];
    let dagger = false;
    const tests = gridTests(cells);
    for (const [c, { w, adj }] of tests) {
      const ref = cells.find((r) => r.opt === c.opt && r.format === 'fp32')!;
      const label = `${c.opt} ${c.format} ${c.rounding === 'nearest' ? 'RN' : 'SR'}`;
      if (Number.isNaN(w.lo)) noInterval.push(`${label} ${dpp(c.accs, ref.accs)}`);
      else if (w.lo > 0 || w.hi < 0) { const weak = adj >= 0.05; dagger ||= weak; sig.push(`${label} ${dpp(c.accs, ref.accs)}${weak ? '†' : ''}`); } else none.push(label);
    }
    out.push(`Test accuracy against fp32 with the same optimizer (paired by seed, 95% interval): ${sig.length ? `different where the interval excludes 0 — ${sig.join('; ')}` : 'no cell differs significantly'}${none.length ? `; no significant difference for ${none.join(', ')}` : ''}${noInterval.length ? `; no verdict for ${noInterval.join(', ')}` : ''}${dagger ? `. † = not significant after Holm's correction over the ${tests.size} comparisons of this grid` : ''}.`);
  }
  const rem = data.remedies;
  if (rem?.fp32) {
    out.push(`Remedies (momentum, bf16 weights), accuracy vs fp32 and lost mass: ${Object.entries(rem).filter(([k]) => k !== 'fp32').map(([k, m]) => `${k} ${dpp(m.accs, rem.fp32.accs)}, lost ${pm(m.lost)}`).join('; ')}.`);
  }
  const sc = data.scaling;
  if (sc) {
    const ref = Object.entries(sc).find(([k]) => k.startsWith('fp32'));
    const none = Object.entries(sc).find(([k]) => /no loss scaling/.test(k));
    const dyn = Object.entries(sc).find(([k]) => /dynamic/.test(k));
    if (ref && none && dyn) out.push(`fp16 gradients, only in a contrived regime (loss × ${data.lossWeight}, lr × ${Math.round(1 / data.lossWeight)}): without loss scaling ${(100 * none[1].underflow).toFixed(1)} % of nonzero gradients underflow, accuracy ${dpp(none[1].accs, ref[1].accs)} vs fp32; dynamic loss scaling: ${(100 * dyn[1].underflow).toFixed(1)} % underflow, ${dpp(dyn[1].accs, ref[1].accs)}.`);
  }
  const p = data.plateau;
  if (p) {
    for (const init of p.inits) {
      const at = (r: string) => p.cells.find((c) => c.init === init && c.recipe === r);
      const f32 = at('fp32');
      if (!f32) continue;
      const desc = (c: PlateauCell | undefined): string => {
        if (!c) return '–';
        const e = c.escapes.filter((v): v is number => v !== null);
        const base = e.length === c.escapes.length ? `${meanSd(e, 1, 0)} steps` : e.length ? `${e.length}/${c.escapes.length} seeds escaped` : `never escaped in ${p.config.steps} steps`;
        return `${base} (lost mass ${pm(c.lostPlateau)})`;
      };
      const rnc = at('bf16 RN');
      let verdict = '';
      if (rnc && f32.escapes.every((v) => v !== null)) {
        if (rnc.escapes.every((v) => v === null)) verdict = ' — round-to-nearest froze the plateau';
        else if (rnc.escapes.every((v) => v !== null)) {
          const w = paired(rnc.escapes as number[], f32.escapes as number[]);
          const later = (rnc.escapes as number[]).filter((v, k) => v > (f32.escapes[k] as number)).length;
          verdict = Number.isNaN(w.lo) ? ` — the same escape-time gap on every seed (${w.diff.toFixed(0)} steps): no interval, no verdict` : w.lo > 0 ? ` — round-to-nearest lengthened the plateau by ${w.diff.toFixed(0)} steps [${w.lo.toFixed(0)}, ${w.hi.toFixed(0)}] (paired by seed; later on ${later} of ${rnc.escapes.length} seeds)` : w.hi < 0 ? ' — round-to-nearest escaped sooner' : ` — no significant difference in escape time (paired by seed: ${w.diff.toFixed(0)} steps [${w.lo.toFixed(0)}, ${w.hi.toFixed(0)}])`;
        } else verdict = ' — some round-to-nearest seeds never escaped';
      }
      out.push(`Plateau (deep linear network, initial scale ${init}, ${p.seeds} seeds): steps to escape fp32 ${desc(f32)}, bf16 RN ${desc(rnc)}, fp16 RN ${desc(at('fp16 RN'))}, bf16 SR ${desc(at('bf16 SR'))}, bf16 + fp32 master ${desc(at('bf16 RN + fp32 master'))}, bf16 + Kahan ${desc(at('bf16 RN + Kahan (fp32)'))}${verdict}.`);
    }
  }
  return out.map((l) => `- ${l}`);
}

/**
 * The headline answer to guess 2 from swallow.json: what round-to-nearest costs momentum and Adam in bf16 (lost update
 * mass, accuracy vs fp32 with its paired interval), whether it froze a plateau, and which remedies remove the loss.
 * Null when the saved results lack the cells it needs.
 * @example swallowHeadline(JSON.parse(readFileSync('reports/precision/swallow.json', 'utf8')))
 */
export function swallowHeadline(data: SwallowData): string | null {
  const cells = data.cells ?? [];
  const cell = (opt: string, format: string, rounding: string) => cells.find((c) => c.opt === opt && c.format === format && c.rounding === rounding);
  const parts: string[] = [];
  const tests = gridTests(cells);
  const effect = (opt: string, format: string): string | null => {
    const c = cell(opt, format, 'nearest'), ref = cell(opt, 'fp32', 'nearest') ?? cells.find((r) => r.opt === opt && r.format === 'fp32');
    const t = c && tests.get(c);
    if (!c || !ref || !t) return null;
    const { w, adj, family } = t;
    const sig = w.hi < 0 || w.lo > 0;
    const verdict = Number.isNaN(w.lo) ? 'no verdict against' : w.hi < 0 ? 'lower accuracy than' : w.lo > 0 ? 'higher accuracy than' : 'no accuracy difference detected from';
    return `${opt} lost ${pm(c.lost)} of its update mass, ${verdict} fp32 (${dpp(c.accs, ref.accs)}${sig ? holmNote(adj, family, 'the grid') : ''})`;
  };
  const opts = [...new Set(cells.map((c) => c.opt))].sort((x, y) => (x === 'momentum' ? -1 : y === 'momentum' ? 1 : 0));
  const bf = opts.map((o) => effect(o, 'bf16')).filter((x): x is string => x !== null);
  if (!bf.length) return null;
  const net = data.hidden ? `MNIST${data.trainN ? ` (${data.trainN} images)` : ''}, MLP 784-${data.hidden.join('-')}-10` : 'MNIST MLP';
  parts.push(`on this network (${net}, n = ${data.seeds} seeds paired across rows, ${data.steps} steps with lr decay), with bf16 weights and round-to-nearest: ${bf.join('; ')}`);
  const p = data.plateau;
  if (p) {
    // bf16 round-to-nearest against fp32 at each initial scale; Holm over the scales where both rows all escaped
    const rows = p.inits.map((init) => {
      const rn = p.cells.find((c) => c.init === init && c.recipe === 'bf16 RN'), f32 = p.cells.find((c) => c.init === init && c.recipe === 'fp32');
      if (!rn || !f32 || !f32.escapes.every((v) => v !== null)) return null;
      const w = rn.escapes.every((v) => v !== null) ? paired(rn.escapes as number[], f32.escapes as number[]) : null;
      return { init, rn, f32, w };
    }).filter((x) => x !== null);
    const adj = holm(rows.map((r) => r.w?.p ?? NaN));
    let stalled = false;
    const says = rows.map(({ init, rn, f32, w }, i) => {
      if (rn.escapes.every((v) => v === null)) { stalled = true; return `${init}: never escaped in ${p.config.steps} steps (fp32: ${meanSd(f32.escapes as number[], 1, 0)} steps)`; }
      if (!w) { stalled = true; return `${init}: ${rn.escapes.filter((v) => v === null).length} of ${rn.escapes.length} seeds never escaped`; }
      if (Number.isNaN(w.lo)) return `${init}: the same escape-time gap on every seed (${w.diff.toFixed(0)} steps), no interval and no verdict`;
      if (w.lo > 0) { stalled = true; return `${init}: escaped ${w.diff.toFixed(0)} steps later [${w.lo.toFixed(0)}, ${w.hi.toFixed(0)}]${holmNote(adj[i], adj.filter((v) => Number.isFinite(v)).length, 'the scales')}`; }
      return w.hi < 0 ? `${init}: escaped sooner` : `${init}: no difference in escape time detected`;
    });
    if (says.length) parts.push(`on a plateau (deep linear network, ${p.seeds} seeds, by initial scale) bf16 round-to-nearest ${stalled ? 'stalled' : 'did not stall'} — ${says.join('; ')}`);
  }
  const rem = data.remedies;
  if (rem?.fp32) {
    // remedies with an interval that is not below fp32 (the same gap on every seed has no interval: left out)
    const ok = Object.entries(rem).filter(([k, m]) => k !== 'fp32' && !/^bf16 RN(,|$)/.test(k) && m.accs.length > 1).map(([k, m]) => [k, paired(m.accs, rem.fp32.accs)] as const).filter(([, w]) => !Number.isNaN(w.lo) && !(w.hi < 0));
    if (ok.length) {
      const lo = Math.min(...ok.map(([, w]) => w.lo)), hi = Math.max(...ok.map(([, w]) => w.hi));
      const names = ok.map(([k]) => { const r = k.replace(/^bf16 (RN )?\+? ?/, ''); return r === 'SR' ? 'stochastic rounding' : r === 'fp32 master' ? 'an fp32 master copy' : /^Kahan/.test(r) ? 'Kahan summation with an fp32 compensation' : r; });
      const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names[0];
      const f = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(2)}`;
      parts.push(`${list} each remove the loss (momentum, bf16 weights: none is lower than fp32; every 95% interval within [${f(lo)}, ${f(hi)}] pp)`);
    }
  }
  const fp16 = opts.map((o) => { const c = cell(o, 'fp16', 'nearest'); const t = c && tests.get(c); return t ? [o, c!, t] as const : null; }).filter((x) => x !== null);
  if (fp16.length) {
    const sig = fp16.filter(([, , t]) => t.w.lo > 0 || t.w.hi < 0);
    const withIv = fp16.filter(([, , t]) => !Number.isNaN(t.w.lo));
    const bare = fp16.filter(([, , t]) => Number.isNaN(t.w.lo));
    const bound = Math.max(...withIv.map(([, , t]) => Math.max(Math.abs(t.w.lo), Math.abs(t.w.hi))));
    if (withIv.length) parts.push(`fp16 round-to-nearest (3 more mantissa bits) stays within ±${(100 * bound).toFixed(2)} pp of fp32 with ${bare.length ? `${withIv.map(([o]) => o).join(', ')}` : 'every optimizer'}${sig.length ? ` (${sig.map(([o, c, t]) => `${o} ${dpp(c.accs, cell(o, 'fp32', 'nearest')!.accs)}${holmNote(t.adj, t.family, 'the grid')}`).join('; ')})` : ', no difference detected'}`);
    if (bare.length) parts.push(`fp16 round-to-nearest with ${bare.map(([o, c]) => `${o}: ${dpp(c.accs, cell(o, 'fp32', 'nearest')!.accs)}`).join('; ')} (no verdict)`);
  }
  return parts.join('; ');
}
