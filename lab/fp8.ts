// FP8 training as in Micikevicius et al. 2022 ("FP8 Formats for Deep Learning"): E4M3 weights and layer outputs in the
// forward pass, E5M2 back-propagated errors, per-tensor delayed scaling, fp32 master weights and fp32 weight gradients;
// beside it the OCP MX formats on the GEMMs (Rouhani et al. 2023): MXFP8, MXFP6, MXFP4, MXINT8; against fp32, FP8
// without scaling and bf16, n seeds per recipe.
import { BF16, E4M3, E5M2, FP32, overflowNote, withOverflow } from '../src/precision/formats.ts';
import { cachedMnist } from './data.ts';
import { runUnits, runsNote, unitConfig, type Unit, type UnitConfig } from './runs.ts';
import { UsageError } from '../src/core/errors.ts';
import { table, writeSection } from './report.ts';
import { runTraining } from './run.ts';
import { logger, noteOutcome, saveJson, stamp, type LabOptions } from './common.ts';
import { interval, meanSd, paired, pairedClause, pairedSay, welch, type Welch, pairedGapPoints, signedPoints } from './stats.ts';
import type { OptimizerSpec, PrecisionSpec } from './train.ts';
import { mxGemm } from './gemm.ts';
import { MXFP4_E2M1, MXFP6_E3M2, MXFP8_E4M3, MXFP8_E5M2, MXINT8 } from '../src/precision/mx.ts';

/** Options of the fp8 experiment. */
export interface Fp8Options extends LabOptions {
  size?: 'tiny' | 'quick' | 'full';
  seeds?: number;
  /** Run only these recipes (keys: fp32, fp8, fp8-unscaled, bf16, mxfp8, mxfp6, mxfp4, mxint8; fp32 is always run). */
  only?: string[];
}

/** One recipe's per-seed accuracies; `key` names it for machines (fp32, fp8, fp8-unscaled, bf16, mxfp8, mxfp6, mxfp4, mxint8). */
export interface Fp8Cell { key: string; name: string; what: string; accs: number[] }

/** The saved JSON of the fp8 section (`precision/fp8.json`). */
export interface Fp8Data { quick: boolean; size: string; seeds: number; cells: Fp8Cell[] }

/** Bumped when an fp8 run's meaning changes (its records then no longer count). */
export const FP8_VERSION = 1;

/** Network and data by size. */
export function fp8Config(size: 'tiny' | 'quick' | 'full') {
  return size === 'tiny' ? { size, hidden: [64, 64], trainN: 2000, testN: 1000, epochs: 5, seeds: 3 }
    : size === 'quick' ? { size, hidden: [256, 256], trainN: 10000, testN: 2000, epochs: 3, seeds: 3 }
      : { size, hidden: [512, 512], trainN: 60000, testN: 10000, epochs: 5, seeds: 5 };
}

/** The recipes: key, name, precision, what is low precision. */
function fp8Recipes(): [string, string, PrecisionSpec, string][] {
  const fp8: PrecisionSpec = { weights: E4M3, rounding: 'nearest', master: true, activations: E4M3, errors: E5M2, scaled: { history: 16 } };
  const fp32: PrecisionSpec = { weights: FP32, rounding: 'nearest' };
  const mxRow = (key: string, name: string, fwd: typeof MXFP8_E4M3, bwd: typeof MXFP8_E4M3 | null): [string, string, PrecisionSpec, string] => {
    const g = mxGemm(fwd, bwd);
    return [key, name, { ...fp32, gemm: g }, g.describe];
  };
  return [
    ['fp32', 'fp32', fp32, 'nothing'],
    ['fp8', 'FP8: E4M3 weights + outputs, E5M2 errors, delayed scaling, fp32 master', fp8, 'weights and layer outputs E4M3, errors E5M2, per-tensor delayed scaling'],
    ['fp8-unscaled', 'FP8 as above without scaling (saturating)', { ...fp8, scaled: undefined, weights: withOverflow(E4M3, 'saturate'), activations: withOverflow(E4M3, 'saturate'), errors: withOverflow(E5M2, 'saturate') }, 'as FP8, no scale (E4M3/E5M2 saturate)'],
    ['bf16', 'bf16 weights + outputs + errors, fp32 master', { weights: BF16, rounding: 'nearest', master: true, activations: BF16, errors: BF16 }, 'weights, layer outputs and errors bf16'],
    mxRow('mxfp8', 'MXFP8: E4M3 x and W, E5M2 errors, all GEMMs', MXFP8_E4M3, MXFP8_E5M2),
    mxRow('mxfp6', 'MXFP6: E3M2 x, W and errors, all GEMMs', MXFP6_E3M2, MXFP6_E3M2),
    mxRow('mxfp4', 'MXFP4: E2M1 x and W, forward GEMMs', MXFP4_E2M1, null),
    mxRow('mxint8', 'MXINT8: x and W, forward GEMMs', MXINT8, null),
  ];
}

/** One fp8 unit: a recipe and a seed. */
export interface Fp8UnitSpec { cfg: UnitConfig<ReturnType<typeof fp8Config>>; recipe: string; seed: number }

/**
 * Train one recipe with one seed (the unit of the run store); returns its test accuracy.
 * @example await fp8Unit({ cfg: unitConfig(fp8Config('tiny')), recipe: 'fp8', seed: 1 }) // { acc: 0.8... }
 */
export async function fp8Unit(u: Fp8UnitSpec): Promise<{ acc: number }> {
  const r = fp8Recipes().find((x) => x[0] === u.recipe);
  if (!r) throw new UsageError(`fp8: unknown recipe ${u.recipe}`);
  const train = await cachedMnist('train', u.cfg.trainN);
  const test = await cachedMnist('test', u.cfg.testN);
  const steps = Math.floor(train.n / 100) * u.cfg.epochs;
  const opt: OptimizerSpec = { kind: 'adam', lr: 1e-3 };
  return { acc: runTraining({ hidden: u.cfg.hidden, opt, prec: r[2], train, test, batch: 100, steps, seed: u.seed, evalEvery: steps }).finalAcc };
}

/** The fp8 units for the options (one per recipe and seed, in recipe order). */
export function fp8Units(o: Fp8Options): Unit<Fp8UnitSpec>[] {
  const cfg = fp8Config(o.size ?? (o.quick ? 'quick' : 'full'));
  const seeds = o.seeds ?? cfg.seeds;
  const keys = fp8Recipes().map((r) => r[0]).filter((k) => !o.only || k === 'fp32' || o.only.includes(k));
  return keys.flatMap((key) => Array.from({ length: seeds }, (_, k) => ({ spec: { cfg: unitConfig(cfg), recipe: key, seed: 1 + k }, label: `${key} seed ${1 + k}` })));
}

/**
 * Run the recipes and write the fp8 section.
 * @example await labFp8({ quick: true, out: '/tmp/reports', only: ['fp8', 'mxfp4'] }) // fp32, FP8 and MXFP4, 3 seeds each
 */
export async function labFp8(o: Fp8Options): Promise<Fp8Cell[] | null> {
  const log = logger(o);
  const t0 = performance.now();
  const size = o.size ?? (o.quick ? 'quick' : 'full');
  const cfg = fp8Config(size);
  const seeds = o.seeds ?? cfg.seeds;
  const steps = Math.floor(cfg.trainN / 100) * cfg.epochs;
  const recipes = fp8Recipes();
  if (o.only) {
    const unknown = o.only.filter((k) => !recipes.some((r) => r[0] === k));
    if (unknown.length) throw new UsageError(`fp8 --only: unknown recipe ${unknown.join(', ')}`, { hint: `use some of ${recipes.map((r) => r[0]).join(', ')}` });
  }
  const chosen = recipes.filter((r) => !o.only || r[0] === 'fp32' || o.only.includes(r[0]));
  const units = fp8Units(o);
  const outcome = await runUnits('fp8', FP8_VERSION, units, fp8Unit, { out: o.out, log, ...o.run });
  if (!noteOutcome(o, 'fp8', size, outcome)) return null;
  const cells: Fp8Cell[] = chosen.map(([key, name, , what], i) => ({ key, name, what, accs: outcome.results!.slice(i * seeds, (i + 1) * seeds).map((r) => r.acc) }));
  for (const c of cells) log(`fp8 ${c.name}: ${meanSd(c.accs, 100, 2)} %`);
  const ref = cells[0].accs;
  const rows = cells.map((c, i) => {
    if (i === 0) return [c.name, c.what, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), '–', '–', '–', '–'];
    const w = welch(c.accs, ref);
    const p = paired(c.accs, ref);
    const within = Number.isNaN(p.lo) ? (Math.abs(p.diff) < 0.01 ? 'mean yes, no interval (the same gap on every seed)' : 'no') : p.lo > -0.01 && p.hi < 0.01 ? 'yes (paired 95% interval inside ±1 point)' : Math.abs(p.diff) < 0.01 ? 'mean yes, interval wider than ±1 point' : 'no';
    return [c.name, c.what, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), pairedGapPoints(p), `${signedPoints(w.diff)} [${signedPoints(w.lo)}, ${signedPoints(w.hi)}]`, pairedVerdict(p), within];
  });
  const md = [
    '## fp8 — training in FP8 as practitioners do it now (Micikevicius et al. 2022)',
    '',
    stamp(size !== 'full', (performance.now() - t0) / 1000, `MNIST ${cfg.trainN} train / ${cfg.testN} test, MLP 784-${cfg.hidden.join('-')}-10 ReLU${size === 'tiny' ? ' (**tiny**: for tests)' : ''}, Adam lr 0.001, batch 100, ${cfg.epochs} epochs (${steps} steps), ${seeds} seeds per recipe`, runsNote(outcome.records)),
    '',
    `FP8 rows: weights (rounded from the fp32 master copy) and every layer output in E4M3; backward: the errors passed between layers in E5M2; weight gradients and the Adam update in fp32. Delayed scaling: each tensor group has a power-of-two scale chosen from the largest |value| of its last 16 roundings so that it lands just below the format's maximum, and rounds with saturation. The input pixels are not rounded. Overflow: ${[E4M3, E5M2].map(overflowNote).join('; ')} by default; the FP8 rows here saturate.`,
    '',
    'MX rows (OCP MX v1.0, Rouhani et al. 2023): the operands of each Dense layer\'s GEMM are rounded to MX on the fly from fp32 (the weights\' fp32 master copy is what Adam updates): the forward GEMM y = x·W rounds x along K (its rows) and W along K (its columns), so the input pixels are rounded too. MXFP8 and MXFP6 round the two backward GEMMs as well, each operand along that GEMM\'s reduction axis (dx = dy·Wᵀ: dy and W along N; dW = xᵀ·dy: x and dy along the batch), errors dy in E5M2 (MXFP8) or E3M2 (MXFP6); MXFP4 and MXINT8 run the backward GEMMs in fp32 on the forward\'s rounded x and W (straight-through). Blocks of 32 share an E8M0 scale 2^(floor(log2 max|v|) − emax); elements round to nearest-even and clamp to the element\'s max normal (src/precision/mx.ts, checked bit for bit against numpy). Bias, ReLU, softmax, loss and the Adam update stay fp32.',
    '',
    table(['recipe', 'what is rounded', 'test acc (mean ± s.d.)', '95% interval', 'vs fp32, paired by seed: Δ points [95%]', 'vs fp32, unpaired (Welch): Δ [95%]', 'verdict vs fp32 (95%, paired)', 'within 1 point of fp32?'], rows),
    '',
    `Seed k gives every recipe the same initial weights and the same batch order, so the differences are paired by seed: Δ is the mean of the per-seed differences to fp32 with its Student-t 95% interval (n = ${seeds}); Welch's unpaired interval, which ignores the pairing, is shown beside it. A verdict says higher/lower only where the paired interval excludes 0.`,
  ].join('\n');
  const data: Fp8Data = { quick: size !== 'full', size, seeds, cells };
  await saveJson(o.out, 'fp8', data);
  await writeSection(o.out, 'fp8', md);
  return cells;
}

function pairedVerdict(p: Welch): string {
  return pairedSay(p, 'higher than fp32', 'lower than fp32');
}

/**
 * Markdown bullets for the report's answers from the saved fp8 JSON: each recipe's accuracy (mean ± s.d., n) and its
 * difference to fp32, paired by seed, with its 95% interval (Welch's unpaired one beside it); a verdict only where the
 * paired interval excludes 0.
 * @example fp8AnswerBullets(JSON.parse(readFileSync('reports/precision/fp8.json', 'utf8')))
 */
export function fp8AnswerBullets(data: Fp8Data): string[] {
  const ref = data.cells.find((c) => c.key === 'fp32') ?? data.cells[0];
  if (!ref) return [];
  const mode = data.quick ? ` (${data.size} mode)` : '';
  const out = [`- Training in 8 bits and below${mode}, MNIST MLP, n = ${ref.accs.length} seeds each: fp32 ${meanSd(ref.accs, 100, 2)} %.`];
  for (const c of data.cells) {
    if (c === ref) continue;
    const w = welch(c.accs, ref.accs);
    const p = paired(c.accs, ref.accs);
    const v = pairedVerdict(p);
    const say = pairedClause(v, 'not distinguishable from fp32 at 95%');
    out.push(`  - ${c.name}: ${meanSd(c.accs, 100, 2)} %, Δ ${pairedGapPoints(p).replace(/^(\S+)/, '$1 points')} paired by seed (Welch, unpaired: [${signedPoints(w.lo)}, ${signedPoints(w.hi)}]): ${say}.`);
  }
  return out;
}
