// FP8 training as in Micikevicius et al. 2022 ("FP8 Formats for Deep Learning"): E4M3 weights and layer outputs in the
// forward pass, E5M2 back-propagated errors, per-tensor delayed scaling, fp32 master weights and fp32 weight gradients;
// against fp32, FP8 without scaling and bf16, n seeds per recipe.
import { BF16, E4M3, E5M2, FP32, overflowNote, withOverflow } from '../src/precision/formats.ts';
import { loadMnist } from './data.ts';
import { table, writeSection } from './report.ts';
import { runTraining } from './run.ts';
import { logger, saveJson, stamp, type LabOptions } from './common.ts';
import { interval, meanSd, welch } from './stats.ts';
import type { OptimizerSpec, PrecisionSpec } from './train.ts';

/** Options of the fp8 experiment. */
export interface Fp8Options extends LabOptions { size?: 'tiny' | 'quick' | 'full'; seeds?: number }

/** One recipe's per-seed accuracies. */
export interface Fp8Cell { name: string; accs: number[] }

/** Run the recipes and write the fp8 section. */
export async function labFp8(o: Fp8Options): Promise<Fp8Cell[]> {
  const log = logger(o);
  const t0 = performance.now();
  const size = o.size ?? (o.quick ? 'quick' : 'full');
  const cfg = size === 'tiny' ? { hidden: [64, 64], trainN: 2000, testN: 1000, epochs: 5, seeds: 3 }
    : size === 'quick' ? { hidden: [256, 256], trainN: 10000, testN: 2000, epochs: 3, seeds: 3 }
      : { hidden: [512, 512], trainN: 60000, testN: 10000, epochs: 5, seeds: 5 };
  const seeds = o.seeds ?? cfg.seeds;
  const train = await loadMnist('train', cfg.trainN);
  const test = await loadMnist('test', cfg.testN);
  const steps = Math.floor(train.n / 100) * cfg.epochs;
  const opt: OptimizerSpec = { kind: 'adam', lr: 1e-3 };
  const fp8: PrecisionSpec = { weights: E4M3, rounding: 'nearest', master: true, activations: E4M3, errors: E5M2, scaled: { history: 16 } };
  const recipes: [string, PrecisionSpec][] = [
    ['fp32', { weights: FP32, rounding: 'nearest' }],
    ['FP8: E4M3 weights + outputs, E5M2 errors, delayed scaling, fp32 master', fp8],
    ['FP8 as above without scaling (saturating)', { ...fp8, scaled: undefined, weights: withOverflow(E4M3, 'saturate'), activations: withOverflow(E4M3, 'saturate'), errors: withOverflow(E5M2, 'saturate') }],
    ['bf16 weights + outputs + errors, fp32 master', { weights: BF16, rounding: 'nearest', master: true, activations: BF16, errors: BF16 }],
  ];
  const cells: Fp8Cell[] = [];
  for (const [name, prec] of recipes) {
    const accs = Array.from({ length: seeds }, (_, k) => runTraining({ hidden: cfg.hidden, opt, prec, train, test, batch: 100, steps, seed: 1 + k, evalEvery: steps }).finalAcc);
    cells.push({ name, accs });
    log(`fp8 ${name}: ${meanSd(accs, 100, 2)} %`);
  }
  const ref = cells[0].accs;
  const rows = cells.map((c, i) => {
    if (i === 0) return [c.name, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), '–', '–'];
    const w = welch(c.accs, ref);
    const f = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(2)}`;
    const within = w.lo > -0.01 && w.hi < 0.01 ? 'yes (95% interval inside ±1 point)' : Math.abs(w.diff) < 0.01 ? 'mean yes, interval wider than ±1 point' : 'no';
    return [c.name, `${meanSd(c.accs, 100, 2)} %`, interval(c.accs, 100, 2), `${f(w.diff)} [${f(w.lo)}, ${f(w.hi)}]`, within];
  });
  const md = [
    '## fp8 — training in FP8 as practitioners do it now (Micikevicius et al. 2022)',
    '',
    stamp(size !== 'full', (performance.now() - t0) / 1000, `MNIST ${cfg.trainN} train / ${cfg.testN} test, MLP 784-${cfg.hidden.join('-')}-10 ReLU${size === 'tiny' ? ' (**tiny**: for tests)' : ''}, Adam lr 0.001, batch 100, ${cfg.epochs} epochs (${steps} steps), ${seeds} seeds per recipe`),
    '',
    `Forward: weights (rounded from the fp32 master copy) and every layer output in E4M3; backward: the errors passed between layers in E5M2; weight gradients and the Adam update in fp32. Delayed scaling: each tensor group has a power-of-two scale chosen from the largest |value| of its last 16 roundings so that it lands just below the format's maximum, and rounds with saturation. The input pixels are not rounded. Overflow: ${[E4M3, E5M2].map(overflowNote).join('; ')} by default; the FP8 rows here saturate.`,
    '',
    table(['recipe', 'test acc (mean ± s.d.)', '95% interval', 'vs fp32: Δ points [95%]', 'within 1 point of fp32?'], rows),
  ].join('\n');
  await saveJson(o.out, 'fp8', { quick: size !== 'full', size, seeds, cells });
  await writeSection(o.out, 'fp8', md);
  return cells;
}
