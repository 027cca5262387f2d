// `npm run lab -- report`: run every experiment, then answer the three guesses in plain words from the measured numbers.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { pct, SUB, table, writeSection } from './report.ts';
import { logger, type LabOptions } from './common.ts';

/** Options of the full report. */
export interface ReportOptions extends LabOptions {
  /** Experiments whose saved results (precision/<name>.json) are reused instead of re-running them. */
  skip?: string[];
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function load(out: string, name: string): Json | null {
  const p = join(out, SUB, `${name}.json`);
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Json) : null;
}

const x = (a: number, b: number) => `${(a / b).toFixed(1)}×`;

/** Guess 1 from speed.json. */
function answerSpeed(s: Json | null): string {
  if (!s) return '_speed results missing: run `npm run lab -- speed`._';
  const rows = s.gemm as { source: string; dtype: string; shape: string; gflops: number | null }[];
  const shape = rows.find((r) => r.gflops != null)?.shape;
  const pick = (src: RegExp, dt: string) => rows.find((r) => r.shape === shape && src.test(r.source) && r.dtype === dt && r.gflops != null)?.gflops ?? null;
  const e64 = pick(/engine \(own/, 'float64'), e32 = pick(/engine \(own/, 'float32'), ebf = pick(/engine \(own/, 'bfloat16'), ei8 = pick(/engine \(own/, 'int8');
  const b64 = pick(/openblas/, 'float64'), b32 = pick(/openblas/, 'float32');
  const n64 = pick(/numpy/, 'float64'), n32 = pick(/numpy/, 'float32'), n16 = pick(/numpy/, 'float16');
  const parts: string[] = [];
  if (e64 && e32) parts.push(`the same hand-written GEMM runs float32 at ${e32.toFixed(0)} GFLOP/s and float64 at ${e64.toFixed(0)} GFLOP/s — float32 is ${x(e32, e64)} faster`);
  if (b64 && b32) parts.push(`OpenBLAS: sgemm ${b32.toFixed(0)} vs dgemm ${b64.toFixed(0)} GFLOP/s (${x(b32, b64)})`);
  if (ebf && e32) parts.push(`bfloat16 with the CPU's AVX512_BF16 dot-product instruction reaches ${ebf.toFixed(0)} GFLOP/s (${x(ebf, e32)} float32)`);
  if (ei8 && e32) parts.push(`int8 with VNNI ${ei8.toFixed(0)} GOP/s (${x(ei8, e32)} float32)`);
  if (n32 && n64) parts.push(`numpy, measured in the same run: float32 ${n32.toPrecision(3)} vs float64 ${n64.toPrecision(3)} GFLOP/s`);
  if (n16 && n32) parts.push(`but numpy's float16 matmul has no BLAS kernel and runs at ${n16.toPrecision(2)} GFLOP/s, ${x(n32, n16)} *slower* than its float32`);
  // ratios across every measured shape (the machine is shared, so single numbers are noisy)
  const shapes = [...new Set(rows.filter((r) => r.gflops != null).map((r) => r.shape))];
  const span = (src: RegExp, num: string, den: string) => {
    const v = shapes.map((sh) => {
      const a = rows.find((r) => r.shape === sh && src.test(r.source) && r.dtype === num)?.gflops;
      const b = rows.find((r) => r.shape === sh && src.test(r.source) && r.dtype === den)?.gflops;
      return a && b ? a / b : null;
    }).filter((r): r is number => r !== null);
    return v.length ? `${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)}×` : null;
  };
  const spans = [
    ['engine float32 / float64', span(/engine \(own/, 'float32', 'float64')],
    ['OpenBLAS sgemm / dgemm', span(/openblas/, 'float32', 'float64')],
    ['numpy float32 / float64', span(/numpy/, 'float32', 'float64')],
    ['engine bfloat16 / float32', span(/engine \(own/, 'bfloat16', 'float32')],
    ['engine int8 / float32', span(/engine \(own/, 'int8', 'float32')],
    ['numpy float16 / float32', span(/numpy/, 'float16', 'float32')],
  ].filter(([, v]) => v) as [string, string][];
  if (spans.length && shapes.length > 1) parts.push(`over all ${shapes.length} shapes the speed ratios were: ${spans.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const verdict = e32 && e64 && e32 > 1.3 * e64
    ? '**Mostly wrong here.** Linear algebra is not tuned for float64 at the expense of float32: on this CPU float32 GEMM is clearly faster, because a SIMD register holds twice as many float32 values.'
    : '**Not clearly wrong here**: float32 was not clearly faster than float64 in this run.';
  const mem = s.memory as (string | number)[][];
  const m64 = mem.find((r) => String(r[0]).startsWith('fp64'));
  const m32 = mem.find((r) => r[0] === 'fp32, Adam');
  const mbf = mem.find((r) => String(r[0]).startsWith('bf16 weights, Adam in bf16'));
  return [
    '### Guess (1): "linear algebra is tuned for float64, so smaller floats won\'t be faster"',
    '',
    `${verdict} Measured (section *speed*, first shape ${shape}): ${parts.join('; ')}.`,
    'The grain of truth: below float32, speed needs both a hardware instruction and a library that uses it — where either is missing (numpy float16, or a CPU without AVX512_BF16/VNNI) the smaller type is emulated and slower.',
    m64 && m32 && mbf ? `Memory is the unconditional win: training with Adam costs ${m64[5]} bytes per parameter in float64, ${m32[5]} in float32 and ${mbf[5]} in pure bfloat16 (table *Memory per parameter*).` : '',
  ].join('\n');
}

/** Guess 2 from swallow.json and gupta2015.json. */
function answerSwallow(s: Json | null, g: Json | null): string {
  if (!s) return '_swallow results missing: run `npm run lab -- swallow`._';
  const toy = s.toy as Record<string, number[]>;
  const d = s.deltas as number[];
  const i4 = d.indexOf(1e-4);
  const exact = 1 + 10000 * d[i4];
  const cells = s.cells as { opt: string; format: string; rounding: string; finalAcc: number; swallowed: number }[];
  const cell = (opt: string, f: string, r: string) => cells.find((c) => c.opt === opt && c.format === f && c.rounding === r);
  const lines: string[] = [];
  if (toy['bf16 RN']) lines.push(`Adding Δ = 10⁻⁴ to w = 1 ten thousand times should give ${exact}; bf16 with round-to-nearest gives ${toy['bf16 RN'][i4]}, fp16 ${toy['fp16 RN'][i4]}, FP8 E4M3 ${toy['e4m3 RN'][i4]} — every single addition is rounded away. Stochastic rounding gives ${toy['bf16 SR'][i4].toPrecision(4)} (bf16) and Kahan compensation ${toy['bf16 RN + Kahan'][i4].toPrecision(4)}.`);
  const worst = cells.filter((c) => c.rounding === 'nearest' && c.format !== 'fp32').map((c) => ({ c, ref: cell(c.opt, 'fp32', 'nearest')!, sr: cell(c.opt, c.format, 'stochastic') })).sort((a, b) => (a.c.finalAcc - a.ref.finalAcc) - (b.c.finalAcc - b.ref.finalAcc));
  if (worst.length) {
    const w = worst[0];
    lines.push(`In training, the share of updates swallowed with round-to-nearest ranges from ${pct(Math.min(...cells.filter((c) => c.format !== 'fp32').map((c) => c.swallowed)))} to ${pct(Math.max(...cells.filter((c) => c.format !== 'fp32').map((c) => c.swallowed)))}. The worst case is ${w.c.opt} with ${w.c.format} weights: ${pct(w.c.finalAcc)} test accuracy against ${pct(w.ref.finalAcc)} in fp32${w.sr ? ` and ${pct(w.sr.finalAcc)} with stochastic rounding` : ''}.`);
    const bf = ['SGD', 'momentum', 'Adam'].map((o) => ({ o, rn: cell(o, 'bf16', 'nearest'), ref: cell(o, 'fp32', 'nearest') })).filter((v) => v.rn && v.ref);
    if (bf.length) lines.push(`bf16 weights with round-to-nearest: ${bf.map((v) => `${v.o} ${pct(v.rn!.finalAcc)} vs fp32 ${pct(v.ref!.finalAcc)} (swallowed ${pct(v.rn!.swallowed)})`).join('; ')}.`);
  }
  lines.push('How to read "swallowed" under stochastic rounding: a weight also often stays put on a given step, but it then moves by a whole step with the right probability, so the update survives on average — SR rows can show similar swallowed shares yet learn like fp32.');
  const mom = cell('momentum', 'bf16', 'nearest'), sgd = cell('SGD', 'bf16', 'nearest');
  if (mom && sgd && mom.swallowed > sgd.swallowed) lines.push(`Momentum is hit harder than plain SGD (${pct(mom.swallowed)} vs ${pct(sgd.swallowed)} of bf16 updates swallowed in the same run).`);
  const rem = s.remedies as Record<string, { acc: number; swallowed: number }> | undefined;
  if (rem) lines.push(`Remedies for momentum + bf16 (table *Remedies*): ${Object.entries(rem).map(([k, v]) => `${k} ${pct(v.acc)}`).join(', ')}.`);
  const sc = s.scaling as Record<string, { acc: number; underflow: number; skipped: number }> | undefined;
  if (sc) {
    const none = Object.entries(sc).find(([k]) => /no loss scaling/.test(k));
    const dyn = Object.entries(sc).find(([k]) => /dynamic/.test(k));
    if (none && dyn) lines.push(`Tiny gradients are the same problem one level down: in fp16 without loss scaling ${pct(none[1].underflow)} of nonzero gradients underflow to zero (accuracy ${pct(none[1].acc)}); dynamic loss scaling brings that to ${pct(dyn[1].underflow)} (accuracy ${pct(dyn[1].acc)}, ${dyn[1].skipped} skipped steps).`);
  }
  if (g) {
    // per-seed arrays (gupta2015 v2): cells carry testError[] and saturated[]
    type Cell = { fl: number | null; rounding: string; loss?: string; testError: number[] | number; saturated?: number[] };
    const m = (v: number[] | number | undefined) => (Array.isArray(v) ? v.reduce((s, x) => s + x, 0) / v.length : (v ?? NaN));
    const gc = (g.cells as Cell[]).filter((c) => (c.loss ?? 'sum') === 'sum');
    const f = gc.find((c) => c.rounding === 'float32');
    const at = (fl: number, r: string, loss = 'sum') => (g.cells as Cell[]).find((c) => c.fl === fl && c.rounding === r && (c.loss ?? 'sum') === loss);
    const rn8 = at(8, 'nearest'), sr8 = at(8, 'stochastic'), rn8m = at(8, 'nearest', 'mean');
    if (rn8 && sr8) lines.push(`Gupta et al. 2015 reproduced (${g.size ?? (g.quick ? 'quick' : 'full')} mode, ${g.seeds ?? 1} seeds, loss summed over the batch as in the paper): 16-bit fixed point with 8 fraction bits reaches ${pct(m(sr8.testError))} mean test error with stochastic rounding and ${pct(m(rn8.testError))} with round-to-nearest${f ? ` (float32: ${pct(m(f.testError))})` : ''}${rn8m ? `; with the loss averaged over the batch instead, round-to-nearest gives ${pct(m(rn8m.testError))} — the artifact of errors divided by the batch size, not of the format` : ''}. Section *gupta2015* has every cell with its s.d. and 95% interval.`);
  }
  return [
    '### Guess (2): "rounding away tiny updates damages momentum and stalls learning on flat stretches"',
    '',
    toy['bf16 RN'] && toy['bf16 RN'][i4] === 1
      ? '**Right about the mechanism, and it matters once the format is coarse enough; wrong that it forces 32 or 64 bits.** With round-to-nearest an update smaller than half the spacing of the stored weight is lost completely, every time — it does not average out.'
      : '**The toy accumulation did not lose the updates in this run** — see the table.',
    '',
    ...lines.map((l) => `- ${l}`),
    '',
    'The fixes are cheap and standard: round stochastically (unbiased, so lost updates come back on average), keep an fp32 master copy of the weights (2 + 4 bytes per weight), or carry the rounding error forward (Kahan). Sections *swallow* and *gupta2015* hold the tables and curves.',
  ].join('\n');
}

/** Guess 3 from chaos.json. */
function answerChaos(c: Json | null): string {
  if (!c) return '_chaos results missing: run `npm run lab -- chaos`._';
  const tw = c.twins as Record<string, { dist: number; disagree: number; acc: number }>;
  const u = tw['one ulp in one middle-layer weight'], sw = tw['two samples swapped in epoch 1'], s2 = tw['other seed (init and order)'], ord = tw['other sample order (same init)'];
  const eps = c.epsList as number[];
  const noise = c.noise as Record<string, number[]>;
  const clean = c.baseAcc as number;
  const tol = (eLayer: number[]) => { let best = 0; eLayer.forEach((a, i) => { if (clean - a <= 0.01) best = Math.max(best, eps[i]); }); return best; };
  const layerTol = Object.entries(noise).map(([k, v]) => `${k}: up to ε = ${tol(v)}`);
  const chaotic = u && s2 && u.disagree > 0.5 * s2.disagree;
  const accs = Object.values(tw).map((t) => t.acc);
  const within = accs.every((a) => Math.abs(a - clean) <= Math.max(2 * c.seedSdAcc, 0.005));
  const tols = Object.values(noise).map(tol);
  const middleWeakest = tols.length === 3 && tols[1] < Math.min(tols[0], tols[2]);
  const nf = (c.noiseFormats ?? {}) as Record<string, Record<string, number>>;
  const fmtDev = (f: string) => Math.max(0, ...Object.values(nf).map((v) => Math.abs(v[f] - clean)));
  const lay = (c.layers ?? []) as { name: string; lambdas: number[] }[];
  const mf = (v: number[]) => v.reduce((s2, x2) => s2 + x2, 0) / v.length;
  const layerLine = lay.length ? ` Per layer (one-ulp twins, section *chaos*): the fitted finite-time Lyapunov exponent is ${lay.map((L) => `${L.name} ${mf(L.lambdas).toFixed(4)}`).join(', ')} e-folds per step; ${c.middleDiffers ? 'the middle layer differs from the others at 95% confidence' : 'the middle layer does not differ from the others at 95% confidence'}; the null twin (nothing changed) differed in ${c.nullDiffering} weights.` : '';
  return [
    '### Guess (3): "networks are chaotically sensitive to small changes in the middle layers"',
    '',
    `**${within ? 'Sensitive, yes; harmfully chaotic, no.' : 'Sensitive, and in this run the outcome moved beyond the seed-to-seed spread.'}** ${u ? `Changing one middle-layer weight by one ulp (a relative change of about 10⁻⁷) leaves the weights ${u.dist.toExponential(1)} apart (relative L2) at the end of training, and ${pct(u.disagree)} of test predictions differ` : ''}${sw ? `; swapping two training samples gives ${sw.dist.toExponential(1)} and ${pct(sw.disagree)}` : ''}${ord ? `; a different sample order ${ord.dist.toExponential(1)} and ${pct(ord.disagree)}` : ''}${s2 ? `; an ordinary change of seed ${s2.dist.toExponential(1)} and ${pct(s2.disagree)}` : ''}. ${chaotic ? 'So a one-ulp change grows until the run is as different as another seed — ' : 'So tiny perturbations do grow, but in this run they stayed below the seed-to-seed spread — '}${within ? 'and in every case the final accuracy stays within the seed-to-seed spread' : 'and not every twin stayed within the seed-to-seed spread'} (${pct(c.seedMeanAcc)} ± ${pct(c.seedSdAcc)} over three seeds; twins: ${accs.map((a) => pct(a)).join(', ')}). ${within ? 'The differences are of the kind that changing the seed already causes; they are not a precision problem.' : ''}`,
    layerLine.trim(),
    '',
    `At inference, multiplying one layer\'s activations by (1 + ε·noise) costs at most one accuracy point for ${layerTol.join('; ')}. ${middleWeakest ? 'Here the middle layer tolerated the least noise.' : 'The middle layer is not more fragile than the others.'}${Object.keys(nf).length ? ` Rounding any one layer\'s activations to bf16 (relative error ≤ 0.2%) moves test accuracy by at most ${pct(fmtDev('bf16'))}, fp16 by ${pct(fmtDev('fp16'))}, FP8 E4M3 (≤ 6%) by ${pct(fmtDev('e4m3'))}` : ''} (tables and plots in section *chaos*).`,
  ].join('\n');
}

/** Run the experiments (except `skip`) and write the answers section; the report is reassembled after each. */
export async function labReport(o: ReportOptions): Promise<void> {
  const log = logger(o);
  const skip = new Set(o.skip ?? []);
  const t0 = performance.now();
  if (!skip.has('speed')) { const { labSpeed } = await import('./speed.ts'); await labSpeed(o); }
  if (!skip.has('swallow')) { const { labSwallow } = await import('./swallow.ts'); await labSwallow(o); }
  if (!skip.has('chaos')) { const { labChaos } = await import('./chaos.ts'); await labChaos(o); }
  if (!skip.has('gupta2015')) { const { labGupta } = await import('./gupta.ts'); await labGupta(o); }
  if (!skip.has('fp8')) { const { labFp8 } = await import('./fp8.ts'); await labFp8(o); }
  log(`report: experiments done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  await writeAnswers(o.out);
}

/** Write the answers section from the saved results in `out`. */
export async function writeAnswers(out: string): Promise<void> {
  const sp = load(out, 'speed'), sw = load(out, 'swallow'), ch = load(out, 'chaos'), gu = load(out, 'gupta2015');
  const modes = Object.entries({ speed: sp, swallow: sw, chaos: ch, gupta2015: gu }).map(([k, v]) => [k, v ? (v.quick ? 'quick (subset)' : 'full') : 'missing']);
  const md = [
    '## Answers to the three guesses',
    '',
    `The user wondered whether weights need 32 or 64 bits and guessed three reasons lower precision might not be used. Each answer below is computed from the numbers in the sections that follow (machine load average at assembly: ${loadavg().map((v) => v.toFixed(1)).join(' / ')}).`,
    '',
    table(['experiment', 'mode of the results used'], modes),
    '',
    answerSpeed(sp),
    '',
    answerSwallow(sw, gu),
    '',
    answerChaos(ch),
  ].join('\n');
  await writeSection(out, 'answers', md);
}
