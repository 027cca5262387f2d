// `npm run lab -- report`: run every experiment, then answer the three guesses from the saved results: every sentence is
// computed from a section's JSON, each headline with its uncertainty, a verdict only where a gap exceeds it.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { SUB, table, writeSection } from './report.ts';
import { logger, type LabOptions, type SectionStatus } from './common.ts';
import { countDone, sectionRunsDir, type Unit } from './runs.ts';
import { mean, paired, summarize, welch } from './stats.ts';
import { speedAnswerBullets, speedHeadline, type SpeedData } from './speed.ts';
import { swallowAnswerBullets, swallowHeadline, type SwallowData } from './swallow.ts';
import { CHAOS_BASE_SEED, chaosConfig } from './chaos.ts';
import { fp8AnswerBullets } from './fp8.ts';
import { int8AnswerBullets } from './int8.ts';

/** Options of the full report. */
export interface ReportOptions extends LabOptions {
  /** Experiments whose saved results (precision/<name>.json) are reused instead of re-running them. */
  skip?: string[];
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A section's saved results (`<out>/precision/<name>.json`), or null when that experiment has not been run. */
export function loadResults(out: string, name: string): Json | null {
  const p = join(out, SUB, `${name}.json`);
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as Json) : null;
}

// ---------------------------------------------------------------- number formatting shared by the bullets

/** "m ± sd % (n=N, 95% [lo, hi])" for fractions shown in percent. */
function pctStat(x: readonly number[], digits = 2): string {
  const s = summarize(x);
  if (s.n < 2) return `${(100 * s.mean).toFixed(digits)} % (n=${s.n}, no interval)`;
  return `${(100 * s.mean).toFixed(digits)} ± ${(100 * s.sd).toFixed(digits)} % (n=${s.n}, 95% [${(100 * s.lo).toFixed(digits)}, ${(100 * s.hi).toFixed(digits)}])`;
}

/** "m ± sd (n=N, 95% [lo, hi])" in plain units. */
function stat(x: readonly number[], digits = 3, exp = false): string {
  const s = summarize(x);
  const f = (v: number) => (exp ? v.toExponential(digits) : v.toFixed(digits));
  if (s.n < 2) return `${f(s.mean)} (n=${s.n}, no interval)`;
  return `${f(s.mean)} ± ${f(s.sd)} (n=${s.n}, 95% [${f(s.lo)}, ${f(s.hi)}])`;
}

/**
 * Difference a − b in percentage points with its 95% interval and a verdict only where the interval excludes 0: paired
 * by seed when `bySeed` (a[k] and b[k] ran from the same seed: initial weights, sample order), else Welch's.
 */
function gapPts(a: readonly number[], b: readonly number[], higher: string, lower: string, bySeed = false): { text: string; sign: number } {
  if (a.length < 2 || b.length < 2) return { text: 'too few runs for an interval', sign: 0 };
  const w = bySeed && a.length === b.length ? paired(a, b) : welch(a, b);
  const f = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(2)}`;
  if (Number.isNaN(w.lo)) return { text: `${f(w.diff)} points, no interval (${bySeed ? 'the same gap on every seed' : 'both samples without spread'}: no verdict)`, sign: 0 };
  const sign = w.lo > 0 ? 1 : w.hi < 0 ? -1 : 0;
  return { text: `${f(w.diff)} points [${f(w.lo)}, ${f(w.hi)}]: ${sign > 0 ? higher : sign < 0 ? lower : 'no significant difference'}`, sign };
}

const modeOf = (d: Json) => (d.size ? String(d.size) : d.quick ? 'quick' : 'full');

// ---------------------------------------------------------------- gupta2015

type GuptaCellJson = { label: string; net?: string; fl: number | null; rounding: string; loss?: string; dynamic?: boolean; testError: number[]; saturated: number[] };

/**
 * Answer bullets from gupta2015.json: summed-loss fixed point against float32 per network, round-to-nearest against
 * stochastic per FL, the batch-mean loss against the summed one, the float32 range control (one rule for hidden layers and logits), dynamic fixed point, and the paper.
 */
export function guptaAnswerBullets(g: Json): string[] {
  const cells = (g.cells as GuptaCellJson[]).map((c) => ({ ...c, net: c.net ?? 'mlp', loss: c.loss ?? 'sum' }));
  const find = (net: string, pred: (c: GuptaCellJson) => boolean) => cells.find((c) => c.net === net && pred(c));
  const out: string[] = [];
  const claims: string[] = [];
  for (const net of ['mlp', 'cnn']) {
    const f32 = find(net, (c) => c.rounding === 'float32');
    const fixed = cells.filter((c) => c.net === net && c.fl !== null && !c.dynamic && c.loss === 'sum');
    if (!f32 && !fixed.length) continue;
    const name = net === 'cnn' ? `LeNet-like CNN${g.cnn ? ` (${g.cnn.maps.join('/')} maps, dense ${g.cnn.dense})` : ''}` : `MLP 784-${((g.hidden ?? [1000, 1000]) as number[]).join('-')}-10`;
    const parts: string[] = [];
    if (f32) parts.push(`float32 test error ${pctStat(f32.testError)}`);
    const fls = [...new Set(fixed.map((c) => c.fl as number))].sort((a, b) => b - a);
    for (const fl of fls) {
      const rn = fixed.find((c) => c.fl === fl && c.rounding === 'nearest');
      const sr = fixed.find((c) => c.fl === fl && c.rounding === 'stochastic');
      const seg: string[] = [];
      if (sr) seg.push(`stochastic ${pctStat(sr.testError)}${f32 ? `, vs float32 ${gapPts(sr.testError, f32.testError, 'worse', 'better', true).text}` : ''}`);
      if (rn) seg.push(`round-to-nearest ${pctStat(rn.testError)}${sr ? `, minus stochastic ${gapPts(rn.testError, sr.testError, 'nearest worse', 'nearest better', true).text}` : ''}`);
      parts.push(`FL=${fl}: ${seg.join('; ')}`);
    }
    out.push(`**${name}** (${modeOf(g)} mode${g.epochs ? `, ${g.epochs} epochs on ${g.trainN} images` : ''}, loss summed over the batch as in the paper): ${parts.join('. ')}.`);
    // the claim of the paper's abstract, per FL: stochastic rounding trains 16-bit fixed point with little to no loss
    // ("about float32": the whole 95% interval of SR minus float32 within ±1 point; an interval that merely contains 0 is
    // absence of evidence), and the rounding scheme matters (RN minus SR excludes 0 upwards)
    if (f32) {
      const withSr = fls.filter((fl) => fixed.some((c) => c.fl === fl && c.rounding === 'stochastic'));
      const about = withSr.filter((fl) => { const w = paired(fixed.find((c) => c.fl === fl && c.rounding === 'stochastic')!.testError, f32.testError); return w.lo >= -0.01 && w.hi <= 0.01; });
      const srOf = (fl: number) => fixed.find((c) => c.fl === fl && c.rounding === 'stochastic')!;
      // about float32 and yet measurably worse: the paired interval excludes 0 but stays within +1 point
      const aboutButWorse = about.filter((fl) => paired(srOf(fl).testError, f32.testError).lo > 0);
      const rnVs = (fl: number) => { const rn = fixed.find((c) => c.fl === fl && c.rounding === 'nearest'); return rn ? gapPts(rn.testError, srOf(fl).testError, '', '', true).sign : null; };
      const rnWorse = withSr.filter((fl) => rnVs(fl) === 1), rnSame = withSr.filter((fl) => rnVs(fl) === 0), rnBetter = withSr.filter((fl) => rnVs(fl) === -1);
      const list = (f: number[]) => (f.length ? `FL=${[...f].sort((a, b) => a - b).join(', ')}` : 'no FL');
      const notAbout = withSr.filter((f) => !about.includes(f));
      if (withSr.length) claims.push(`${net === 'cnn' ? 'CNN' : 'MLP'}: stochastic rounding about float32 at ${list(about)}${aboutButWorse.length ? ` (though measurably worse at ${list(aboutButWorse)})` : ''}${notAbout.length ? `, not at ${list(notAbout)} — contrary to the abstract's claim in this setup (the section lists where it departs from the paper)` : ''}; round-to-nearest worse than stochastic at ${list(rnWorse)}${rnSame.length ? `, no difference detected at ${list(rnSame)}` : ''}${rnBetter.length ? `, better at ${list(rnBetter)}` : ''}`);
    }
  }
  const mlpF32 = find('mlp', (c) => c.rounding === 'float32');
  const rn8 = find('mlp', (c) => c.fl === 8 && c.rounding === 'nearest' && c.loss === 'sum' && !c.dynamic);
  const rn8Worse = rn8 && mlpF32 ? gapPts(rn8.testError, mlpF32.testError, '', '', true).sign > 0 : false;
  if (rn8) out.push(`Saturation at FL=8 round-to-nearest, summed loss: ${pctStat(rn8.saturated, 3)} of forward layer outputs (largest seed ${(100 * Math.max(...rn8.saturated)).toFixed(3)} %)${rn8Worse && Math.max(...rn8.saturated) < 0.01 ? ', so its error above float32 does not come from outputs clipped at the range' : ''}.`);
  // the batch-mean loss against the summed one, per network, FL and rounding that has both: an interaction of format and loss
  for (const m of cells.filter((c) => c.loss === 'mean' && c.fl !== null && !c.dynamic)) {
    const s = find(m.net!, (c) => c.loss === 'sum' && c.fl === m.fl && c.rounding === m.rounding && !c.dynamic);
    if (!s) continue;
    const f32 = find(m.net!, (c) => c.rounding === 'float32');
    const gap = gapPts(m.testError, s.testError, 'worse', 'better', true);
    const sumGap = f32 ? gapPts(s.testError, f32.testError, 'worse', 'better', true) : null;
    const why = gap.sign <= 0 ? ''
      : sumGap && sumGap.sign <= 0 ? ` — the format fails only when the back-propagated errors are made batch-times smaller (the batch-mean loss): with the summed loss it is within reach of float32 (${sumGap.text})`
        : sumGap ? ` — with the summed loss the format already costs accuracy (vs float32 ${sumGap.text}), and it costs more when the back-propagated errors are made batch-times smaller (the batch-mean loss): an interaction of the format with the loss reduction`
          : ' — the format costs more when the back-propagated errors are made batch-times smaller (the batch-mean loss)';
    const blew = mean(m.saturated) > 0.01 ? ` Its outputs saturated (${pctStat(m.saturated, 2)} averaged over training): the run blew up to the range rather than stalling.` : '';
    out.push(`The batch-mean loss (errors 1/batch as large) at FL=${m.fl} ${m.rounding === 'nearest' ? 'round-to-nearest' : m.rounding}${m.net === 'cnn' ? ', CNN' : ''}: ${pctStat(m.testError)}, minus the summed loss ${gap.text}${why}.${blew}`);
  }
  // the same rule for every network: the range explains a format's errors only if some layer (hidden or logits) has
  // more than 1% of its float32 outputs beyond that range at the lower end of the 95% interval, and dynamic fixed point
  // (where run) is the intervention that tests it
  type Range = { layer: string; max: number; beyond: number[] }[];
  for (const [net, ranges, fls] of [['MLP', (g.ranges ?? []) as Range[], (g.fls ?? [8, 10, 12, 14]) as number[]], ['CNN', (g.cnnRanges ?? []) as Range[], (g.cnnFls ?? []) as number[]]] as [string, Range[], number[]][]) {
    if (!ranges.length || !fls.length) continue;
    // per FL: the worst hidden layer's and the logits' shares beyond its range, and which of them pass the rule below
    const atFl = fls.map((_, j) => {
      const hidden = ranges.map((r) => Math.max(...r.slice(0, -1).map((l) => l.beyond[j])));
      const logits = ranges.map((r) => r[r.length - 1].beyond[j]);
      return { hidden, logits, over: [['hidden', hidden], ['logits', logits]].filter(([, v]) => summarize(v as number[]).lo > 0.01).map(([k]) => k as string) };
    });
    // every FL with a layer beyond its range; else the largest FL
    const flagged = fls.map((_, j) => j).filter((j) => atFl[j].over.length);
    for (const j of flagged.length ? flagged : [fls.indexOf(Math.max(...fls))]) {
      const flMax = fls[j];
      const { hidden, logits, over } = atFl[j];
      const fixedCells = cells.filter((c) => c.net === net.toLowerCase() && c.fl === flMax && c.loss === 'sum' && !c.dynamic);
      const f32 = find(net.toLowerCase(), (c) => c.rounding === 'float32');
      const fails = f32 && fixedCells.length && fixedCells.every((c) => gapPts(c.testError, f32.testError, '', '', true).sign > 0);
      // the intervention: dynamic fixed point keeps the 16 bits and the roundings but gives every tensor its own range
      const dyn = f32 ? cells.filter((c) => c.net === net.toLowerCase() && c.dynamic && c.loss === 'sum' && fixedCells.some((f) => f.rounding === c.rounding)) : [];
      // 'yes': the paired 95% interval to float32 lies within ±1 point; 'no': it reaches past; 'open': no interval
      const recovers = (c: GuptaCellJson) => { const w = paired(c.testError, f32!.testError); return Number.isNaN(w.lo) ? 'open' : w.lo >= -0.01 && w.hi <= 0.01 ? 'yes' : 'no'; };
      const verdicts = dyn.map(recovers);
      const said = { yes: 'comes within ±1 point of float32', no: 'does not come within ±1 point of float32', open: 'has no interval to float32' };
      const test = !dyn.length ? ' (not tested by an intervention)'
        : `; the intervention — dynamic fixed point, the same 16 bits and rounding with a per-tensor range and precision — ${dyn.map((c, k) => `with ${c.rounding === 'nearest' ? 'round-to-nearest' : c.rounding} ${said[verdicts[k]]} (${gapPts(c.testError, f32!.testError, 'worse', 'better', true).text})`).join(', ')}${verdicts.every((v) => v === 'yes') ? ', which is consistent with the range reading (it changes precision too, so it does not separate the two)' : verdicts.every((v) => v === 'no') ? ': the range does not account for them on its own' : verdicts.includes('yes') ? ', which is consistent with the range reading only for the rounding that comes within' : ''}`;
      const note = over.length
        ? ` — ${over.join(' and ')} beyond the range (criterion: the 95% interval's lower end above 1%)${fails ? `; the ⟨${16 - flMax},${flMax}⟩ runs' errors above float32 are consistent with a range limit${test}` : ''}`
        : ' — no layer has more than 1% beyond the range (criterion: the 95% interval\'s lower end): no sign that the range limits this format here';
      out.push(`Float32 range control, ${net}, for ⟨${16 - flMax},${flMax}⟩ (range ±${2 ** (16 - flMax - 1)}): after float32 training ${pctStat(hidden, 2)} of the worst hidden layer's outputs and ${pctStat(logits, 2)} of the logits lie beyond it; the largest |output| was ${stat(ranges.map((r) => Math.max(...r.map((l) => l.max))), 1)}${note}.`);
    }
  }
  const diverged = (g.cells as (GuptaCellJson & { divergence?: { divergedAt: number | null }[] })[]).filter((c) => c.divergence?.some((d) => d.divergedAt !== null));
  if (diverged.length) out.push(`Divergence after training (per seed, from the section): ${diverged.map((c) => `${c.net === 'cnn' ? 'CNN ' : ''}${c.dynamic ? 'dynamic fixed point' : c.fl === null ? 'float32' : `FL=${c.fl}`} ${c.rounding === 'nearest' ? 'round-to-nearest' : c.rounding}${c.loss === 'mean' ? ' (mean loss)' : ''} ${c.divergence!.filter((d) => d.divergedAt !== null).length} of ${c.divergence!.length} seeds`).join('; ')} — a test-error gap at the last epoch includes these runs.`);
  const dyn = cells.filter((c) => c.dynamic);
  if (dyn.length && mlpF32) out.push(`Dynamic fixed point (WL=16, per-tensor scale): ${dyn.map((c) => `${c.rounding} ${pctStat(c.testError)}, vs float32 ${gapPts(c.testError, mlpF32.testError, 'worse', 'better', true).text}`).join('; ')}.`);
  if (claims.length) out.push(`The paper gives its MNIST results as curves, not numbers, so no number is compared. Its abstract claims that with stochastic rounding 16-bit fixed point trains with little to no loss of accuracy and that the rounding scheme is crucial; here, per format (about float32: the 95% interval of the paired difference within ±1 point; worse: that interval above 0): ${claims.join('; ')}.`);
  return out;
}

/** Guess-2 headline part from gupta2015.json: does round-to-nearest lose to stochastic rounding at the smallest FL? */
function guptaHeadline(g: Json): string | null {
  const cells = (g.cells as GuptaCellJson[]).filter((c) => (c.net ?? 'mlp') === 'mlp' && (c.loss ?? 'sum') === 'sum' && !c.dynamic && c.fl !== null);
  if (!cells.length) return null;
  const fl = Math.min(...cells.map((c) => c.fl as number));
  const rn = cells.find((c) => c.fl === fl && c.rounding === 'nearest'), sr = cells.find((c) => c.fl === fl && c.rounding === 'stochastic');
  if (!rn || !sr) return null;
  const gap = gapPts(rn.testError, sr.testError, 'round-to-nearest worse', 'round-to-nearest better', true);
  const f32 = (g.cells as GuptaCellJson[]).find((c) => (c.net ?? 'mlp') === 'mlp' && c.rounding === 'float32');
  const srGap = f32 ? gapPts(sr.testError, f32.testError, 'stochastic worse than float32', 'stochastic better than float32', true) : null;
  return `16-bit fixed point at FL=${fl} (Gupta et al.'s MLP, ${modeOf(g)} mode, summed loss): round-to-nearest minus stochastic test error ${gap.text}${srGap ? `; stochastic minus float32 ${srGap.text}` : ''}`;
}

// ---------------------------------------------------------------- chaos

/** The weights a one-ulp twin row perturbed, from its saved name: "middle (hidden 2)" → "middle (hidden 2 kernel)", "late (output)" → "late (output layer kernel)". */
const twinLabel = (name: string) => name.replace(/\((hidden \d+)\)/, '($1 kernel)').replace(/\(output\)/, '(output layer kernel)');
/** The activations a gain or noise row measures, from its saved name: "late (hidden 3)" → "late (hidden 3 output)". */
const outLabel = (name: string) => name.replace(/\((hidden \d+)\)/, '($1 output)');
/** "lo, hi" of an interval in exponent notation. */
const iv = (w: { lo: number; hi: number }) => `[${w.lo.toExponential(2)}, ${w.hi.toExponential(2)}]`;
const sign = (w: { lo: number; hi: number }) => (w.lo > 0 ? 1 : w.hi < 0 ? -1 : 0);

/** The chaos run's network, base seed and schedule: saved in chaos.json, else the configuration of its size. */
function chaosScope(c: Json): { hidden: number[] | null; seed: number; steps: number | null; twins: number } {
  const size = c.size as string | undefined;
  const cfg = size === 'tiny' || size === 'quick' || size === 'full' ? chaosConfig(size) : null;
  const layers = (c.layers ?? []) as { lambdas: number[] }[];
  return { hidden: (c.hidden as number[] | undefined) ?? cfg?.hidden ?? null, seed: (c.baseSeed as number | undefined) ?? CHAOS_BASE_SEED, steps: (c.steps as number | undefined) ?? cfg?.steps ?? null, twins: layers[0]?.lambdas.length ?? 0 };
}

/** Twin exponents per layer: fitted above float32 resolution (2⁻²³) when every layer has ≥ 2 such fits, else from step 0. */
function twinLambdas(c: Json): { above: boolean; rows: { name: string; v: number[] }[] } {
  const layers = (c.layers ?? []) as { name: string; lambdas: number[] }[];
  const res = c.resolution as { name: string; lambdasAbove?: (number | null)[] }[] | undefined;
  const la = (res ?? []).map((r) => ({ name: r.name, v: (r.lambdasAbove ?? []).filter((x): x is number => x !== null && Number.isFinite(x)) }));
  if (la.length === layers.length && la.length === 3 && la.every((r) => r.v.length >= 2)) return { above: true, rows: la };
  return { above: false, rows: layers.map((L) => ({ name: L.name, v: L.lambdas })) };
}

/** Answer bullets from chaos.json: null twin, per-layer Lyapunov exponents and Jacobian gains with intervals, noise. */
export function chaosAnswerBullets(c: Json): string[] {
  const out: string[] = [];
  const layers = (c.layers ?? []) as { name: string; lambdas: number[]; disagree: number[] }[];
  const sc = chaosScope(c);
  out.push(`Null twin (same seed, nothing changed): ${c.nullDiffering} weights differ at the end${c.nullDiffering === 0 ? ', so every distance is caused by the perturbation' : ' — training is not deterministic here and the twin distances include that noise'} (${modeOf(c)} mode${sc.hidden ? `, MNIST MLP 784-${sc.hidden.join('-')}-10` : ''}, base run seed ${sc.seed}${c.steps ? `, ${c.steps} steps` : ''}; every twin is a copy of that one run with one weight changed by one ulp, so the intervals below over twins cover which weight was perturbed, not different training runs).`);
  if (layers.length === 3) {
    out.push(`Finite-time Lyapunov exponent of one-ulp twins, fitted from step 0 (e-folds per step): ${layers.map((L) => `${twinLabel(L.name)} ${stat(L.lambdas, 4)}`).join('; ')}.`);
    const res = c.resolution as { name: string; passStep: (number | null)[] }[] | undefined;
    if (res) {
      out.push(`Float32 resolution (relative distance 2⁻²³, the most an all-within-one-ulp difference can reach): ${res.map((r) => `${twinLabel(r.name)} ${r.passStep.filter((x) => x !== null).length} of ${r.passStep.length} twins pass it`).join('; ')} → ${c.allGrown ? 'every twin grew past the rounding floor: the perturbation really grows' : 'some twins stay at the rounding floor, where an exponent measures the spread of last-bit differences, not growth'}.`);
      const tl = twinLambdas(c);
      if (tl.above) { const la = tl.rows; out.push(`Exponent fitted only above that floor (growth proper): ${la.map((r) => `${twinLabel(r.name)} ${stat(r.v, 4)}`).join('; ')}; middle minus the others: ${[la[0], la[2]].map((r) => { const w = welch(la[1].v, r.v); return `vs ${twinLabel(r.name)} ${w.diff.toExponential(2)} ${iv(w)}`; }).join('; ')}.`); }
    }
    const mid = layers[1];
    const cmp = [layers[0], layers[2]].map((L) => ({ L, w: welch(mid.lambdas, L.lambdas) }));
    const signs = cmp.map(({ w }) => sign(w));
    out.push(`Middle minus the others (exponents fitted from step 0): ${cmp.map(({ L, w }) => `vs ${twinLabel(L.name)} ${w.diff.toExponential(2)} ${iv(w)}`).join('; ')} → ${signs.every((s) => s > 0) ? 'the middle layer\'s twins diverge faster than both others at 95% confidence' : signs.every((s) => s < 0) ? 'the middle layer\'s twins diverge more slowly than both others at 95% confidence' : signs.some((s) => s !== 0) ? 'the middle layer differs from one other layer but is not above or below both' : 'no difference detected at 95% confidence'}.`);
    const sd = c.seedDisagree as number[] | undefined;
    if (sd && mid.disagree?.length) out.push(`Test predictions that differ from the base run at the end: one ulp in the ${twinLabel(mid.name)} ${pctStat(mid.disagree)}; independent seeds ${pctStat(sd)}${sd.length >= 2 && mid.disagree.length >= 2 ? `; difference ${gapPts(mid.disagree, sd, 'the twin differs more', 'the twin differs less').text}` : ''}.`);
    // the twins are copies of the base run: compare them with the base run's own accuracy (one-sample), not with the seeds
    const accs = c.seedAccs as number[] | undefined;
    const base = c.baseAcc as number | undefined;
    if (layers.every((L) => (L as Json).accs)) {
      const twinAccs = layers.flatMap((L) => (L as Json).accs as number[]);
      const ctx = accs && accs.length >= 2 ? ` For context only (not a test: the twins are copies of the base run, not independent runs): the final accuracy over ${accs.length} runs with different seeds (the base run included) is ${pctStat(accs)}, a seed-to-seed s.d. of ${(100 * summarize(accs).sd).toFixed(2)} points.` : '';
      if (typeof base === 'number') {
        const d = summarize(twinAccs.map((a) => a - base));
        const testN = (c.testN as number | undefined) ?? chaosConfig(c.size === 'tiny' || c.size === 'quick' ? c.size : 'full').testN;
        const f = (v: number) => `${v >= 0 ? '+' : ''}${(100 * v).toFixed(2)}`;
        const v = d.n < 2 ? 'too few twins for an interval' : d.lo > 0 ? 'the twins end higher than the base run' : d.hi < 0 ? 'the twins end lower than the base run' : 'no difference from the base run detected';
        out.push(`Final test accuracy of the one-ulp twins minus the base run's own (${(100 * base).toFixed(2)} %): ${f(d.mean)} points (${d.mean >= 0 ? '+' : ''}${(d.mean * testN).toFixed(1)} of ${testN} test images on average)${d.n >= 2 ? ` (n=${d.n} twins, one-sample 95% [${f(d.lo)}, ${f(d.hi)}])` : ''}: ${v}.${ctx}`);
      } else {
        out.push(`Final test accuracy of all one-ulp twins ${pctStat(twinAccs)}; the base run's own accuracy is not in these saved results, so the twins (copies of the base run) are not tested against anything here.${ctx}`);
      }
    }
  }
  const gain = c.gain as Json | undefined;
  if (gain) {
    const fin = gain.final as { name: string; spectral: number[]; growth: number[] }[];
    out.push(`Jacobian gain of each hidden layer's output → logits at the end of training (top singular value, mean over ${gain.probes} probe images per run, ${gain.runs} runs): ${fin.map((f) => `${outLabel(f.name)} ${stat(f.spectral, 3)}`).join('; ')}.`);
    const mv = gain.middleVs as { other: string; diff: number; lo: number; hi: number; verdict: string }[];
    out.push(`Middle-layer gain minus the others: ${mv.map((m) => `vs ${outLabel(m.other)} ${m.diff.toFixed(3)} [${m.lo.toFixed(3)}, ${m.hi.toFixed(3)}]`).join('; ')} → ${gain.middleStandsOut ? `the middle layer stands out (${mv[0].verdict === 'higher' ? 'larger' : 'smaller'} than both)` : gain.middleDiffers ? 'the middle layer lies between the others: no middle-layer peak' : 'no difference detected'} at 95% confidence.`);
    const em = gain.earlyVsMiddle as { lambda: { diff: number; lo: number; hi: number }; gain: { diff: number; lo: number; hi: number } } | undefined;
    if (em) {
      const sl = sign(em.lambda), sg = sign(em.gain);
      out.push(`Gain and exponent, early vs middle (hidden 1 vs hidden 2): λ difference ${iv(em.lambda)}, gain difference [${em.gain.lo.toFixed(3)}, ${em.gain.hi.toFixed(3)}] → ${sl === 0 || sg === 0 ? 'at least one interval contains 0: no relation can be claimed from this run' : sl === sg ? 'the layer with the larger gain also has the larger exponent' : 'the layer with the larger gain has the smaller exponent'}.`);
    }
  }
  const noise = noiseFinding(c);
  if (noise) out.push(`Noise injected at inference, h ← h·(1 + N(0,1)) (ε = ${noise.eps}, ${noise.draws} noise draws on one trained model, so the interval is draw noise only): ${noise.entries.map((e) => `${outLabel(e.k)} ${pctStat(e.v, 1)}`).join('; ')}. ${noise.fragile ? `The most fragile layer is the ${outLabel(noise.sorted[0].k)}` : `No layer is clearly the most fragile (the two lowest differ by ${noise.gap.text})`}.`);
  return out;
}

/** Accuracy per layer with noise ε = 1 injected at inference, sorted from the most fragile layer, and whether it is clearly the most fragile. */
function noiseFinding(c: Json) {
  const draws = c.noiseDraws as Record<string, number[][]> | undefined;
  const eps = c.epsList as number[] | undefined;
  const i1 = eps ? eps.indexOf(1) : -1;
  if (!draws || !eps || i1 < 0 || Object.keys(draws).length < 2) return null;
  const entries = Object.entries(draws).map(([k, v]) => ({ k, v: v[i1] }));
  const sorted = [...entries].sort((a, b) => mean(a.v) - mean(b.v));
  const gap = gapPts(sorted[1].v, sorted[0].v, 'higher', 'lower');
  return { eps: eps[i1], draws: (c.noiseDrawsPerEps as number | undefined) ?? entries[0].v.length, entries, sorted, gap, fragile: gap.sign > 0 };
}

/** Guess-3 headline from chaos.json: scope, the exponent above float32 resolution, middle vs the others, gain, noise. */
function chaosHeadline(c: Json): string | null {
  const layers = (c.layers ?? []) as { name: string; lambdas: number[] }[];
  if (layers.length !== 3) return null;
  const sc = chaosScope(c);
  // the middle weight layers of 784-h1-...-hk-10 are the kernels of hidden 2 … hidden k; the twins perturb hidden 2 only
  const midKernels = sc.hidden ? sc.hidden.slice(1).map((_, i) => `hidden ${i + 2}`) : [];
  const scope = `On one MNIST MLP${sc.hidden ? ` 784-${sc.hidden.join('-')}-10` : ''} (one base run, seed ${sc.seed}${sc.steps ? `, ${sc.steps} steps` : ''}), with ${sc.twins} one-ulp twins per perturbed kernel — each the same run with a different weight changed, so the intervals cover which weight was perturbed, not different training runs`;
  const tl = twinLambdas(c);
  const pooled = tl.rows.flatMap((r) => r.v);
  const all = summarize(pooled);
  const grow = all.lo > 0 ? 'tiny perturbations grow' : all.hi < 0 ? 'tiny perturbations shrink' : 'tiny perturbations neither grow nor shrink measurably';
  const from0 = summarize(layers.flatMap((L) => L.lambdas));
  const lamText = tl.above
    ? `pooled over all twins, λ fitted above the float32 resolution floor 2⁻²³ (the growth rate proper) is ${stat(pooled, 4)} e-folds per step (fitted from step 0: ${from0.mean.toFixed(4)}, 95% [${from0.lo.toFixed(4)}, ${from0.hi.toFixed(4)}])`
    : `pooled over all twins, λ fitted from step 0 is ${stat(pooled, 4)} e-folds per step (${c.resolution ? 'too few twins pass the float32 resolution floor 2⁻²³ for a fit above it' : 'these results hold no fit above the float32 resolution floor 2⁻²³'})`;
  const mid = tl.rows[1];
  const cmp = [tl.rows[0], tl.rows[2]].map((r) => ({ r, w: welch(mid.v, r.v) }));
  const signs = cmp.map(({ w }) => sign(w));
  const who = (name: string) => name.replace(/ \(.*\)$/, '');
  const inner = (name: string) => /\(([^)]*)\)/.exec(name)?.[1] ?? name;
  const cmpText = cmp.map(({ r, w }) => `middle − ${twinLabel(r.name)} ${iv(w)}`).join(', ');
  const midDesc = `the middle layer (${inner(twinLabel(layers[1].name))}${midKernels.length > 1 ? `, one of the ${midKernels.length} middle weight layers ${midKernels.join(' and ')}; only it was perturbed` : ''})`;
  let lam: string;
  if (signs.every((s) => s === 0)) {
    const ns = [...new Set(tl.rows.map((r) => r.v.length))];
    const reach = cmp.map(({ r, w }) => ({ who: who(r.name), x: Math.max(Math.abs(w.lo), Math.abs(w.hi)) / Math.abs(all.mean) }));
    const nTxt = `with n = ${ns.join('/')} twins per layer`;
    const reachTxt = reach.map((q) => `${q.x.toFixed(1)}× λ vs ${q.who}`).join(', ');
    lam = `no difference detected between ${midDesc} and the others (${cmpText} e-folds per step); ${!(all.lo > 0) ? `${nTxt} any difference inside these intervals remains possible` : reach.some((q) => q.x >= 1)
      ? `${nTxt} differences as large as λ itself cannot be excluded (the intervals reach ${reachTxt})`
      : `${nTxt} the intervals exclude differences larger than ${reachTxt}`}`;
  } else {
    const verdict = signs.every((s) => s > 0) ? 'grow faster than in both others' : signs.every((s) => s < 0) ? 'grow more slowly than in both others' : 'grow at a rate that differs from one other layer but is not above or below both';
    lam = `one-ulp changes in ${midDesc} ${verdict} at 95% confidence (${cmpText} e-folds per step)`;
  }
  const gain = c.gain as Json | undefined;
  const mv = (gain?.middleVs ?? []) as { other: string; verdict: string }[];
  const gMid = gain?.layers?.[1] ? `${inner(String(gain.layers[1]))}'s output` : 'the middle output';
  const g = !gain ? 'Jacobian gain not measured'
    : gain.middleStandsOut ? `the Jacobian gain from ${gMid} to the logits stands out (${mv[0]?.verdict === 'higher' ? 'larger' : 'smaller'} than both others)`
      : mv.length === 2 && new Set(mv.map((m) => m.verdict)).size === 2 && mv.every((m) => m.verdict !== 'no significant difference') ? `the Jacobian gain from ${gMid} to the logits lies between those from ${mv.map((m) => inner(m.other)).join(' and ')}: no middle-layer peak`
        : `the Jacobian gain from ${gMid} to the logits shows no middle-layer peak`;
  const nz = noiseFinding(c);
  let noise = '';
  if (nz) {
    const [a, b] = nz.sorted;
    noise = nz.fragile
      ? `; under noise injected at inference (h ← h·(1 + ε·N(0,1)), ε = ${nz.eps}, ${nz.draws} draws on the trained base model) the most fragile layer is the ${outLabel(a.k)}: accuracy ${pctStat(a.v, 1)} against ${pctStat(b.v, 1)} for the next most fragile, the ${outLabel(b.k)} (${nz.gap.text.replace(/: higher$/, '')} higher)`
      : `; under noise injected at inference (ε = ${nz.eps}) no layer is clearly the most fragile (the two lowest differ by ${nz.gap.text})`;
  }
  return `${scope}: ${grow} — ${lamText}; ${lam}; ${g}${noise}`;
}

// ---------------------------------------------------------------- the three guesses and who contributes to each

/** A section that contributes bullets to a guess: its JSON name and the function that turns that JSON into bullets. */
export interface Contributor {
  /** Name of the JSON file under precision/ and of the command that writes it. */
  json: string;
  /** False for results written by an older version of the experiment (their bullets would be wrong or fail). */
  current?: (data: Json) => boolean;
  /** Markdown bullets computed from that JSON; null when the section has no answer function yet. */
  bullets: ((data: Json) => string[]) | null;
}

/** One guess: its statement, a headline computed from the JSON, and its contributors in order. */
export interface Guess {
  title: string;
  headline: (d: Record<string, Json | null>) => string;
  contributors: Contributor[];
}

/** gupta2015.json with per-seed arrays (older versions saved one number per cell). */
function guptaCurrent(g: Json): boolean {
  return Array.isArray(g.cells) && (g.cells as Json[]).every((c) => Array.isArray(c.testError) && Array.isArray(c.saturated));
}

/** chaos.json with per-layer twins and the Jacobian gain. */
function chaosCurrent(c: Json): boolean {
  return Array.isArray(c.layers) && (c.layers as Json[]).every((L) => Array.isArray(L.lambdas)) && typeof c.gain === 'object' && c.gain !== null;
}

// Each section's own *AnswerBullets turns its saved JSON into bullets (lab/speed.ts, swallow.ts, fp8.ts, int8.ts here).
export const GUESSES: Guess[] = [
  {
    title: 'Guess (1): "linear algebra is tuned for float64, so smaller floats won\'t be faster"',
    headline: (d) => (d.speed ? speedHeadline(d.speed as unknown as SpeedData) : 'speed not run: `npm run lab -- speed`'),
    contributors: [{ json: 'speed', bullets: speedAnswerBullets as (d: Json) => string[] }],
  },
  {
    title: 'Guess (2): "rounding away tiny updates damages momentum and stalls learning on flat stretches"',
    // the direct experiment (swallow), then Gupta's fixed-point reproduction (alone when swallow has not run)
    headline: (d) => {
      const sw = d.swallow ? swallowHeadline(d.swallow as unknown as SwallowData) : null;
      const gu = d.gupta2015 && guptaCurrent(d.gupta2015) ? guptaHeadline(d.gupta2015) : null;
      if (sw) return gu ? `${sw}. ${gu}` : sw;
      return gu ?? (!d.gupta2015 ? 'swallow and gupta2015 not run: `npm run lab -- swallow`'
        : !guptaCurrent(d.gupta2015) ? 'gupta2015 results are from an older version: re-run `npm run lab -- gupta2015`'
          : 'gupta2015 ran without an MLP pair of round-to-nearest and stochastic cells at one FL, so no headline (see its bullets)');
    },
    contributors: [
      { json: 'swallow', bullets: swallowAnswerBullets as (d: Json) => string[] },
      { json: 'gupta2015', bullets: guptaAnswerBullets, current: guptaCurrent },
      { json: 'fp8', bullets: fp8AnswerBullets as (d: Json) => string[] },
      { json: 'int8', bullets: int8AnswerBullets as (d: Json) => string[] },
    ],
  },
  {
    title: 'Guess (3): "networks are chaotically sensitive to small changes in the middle layers"',
    headline: (d) => (d.chaos && chaosCurrent(d.chaos) ? chaosHeadline(d.chaos) : null) ?? (d.chaos ? 'chaos results are from an older version: re-run `npm run lab -- chaos`' : 'chaos not run: `npm run lab -- chaos`'),
    contributors: [{ json: 'chaos', bullets: chaosAnswerBullets, current: chaosCurrent }],
  },
];

/** The answers section's markdown from the results in `out` (missing sections are reported as not run). */
export function answersMarkdown(out: string, guesses: Guess[] = GUESSES, status?: SectionStatus[]): string {
  const names = [...new Set(guesses.flatMap((g) => g.contributors.map((c) => c.json)))];
  const data: Record<string, Json | null> = Object.fromEntries(names.map((n) => [n, loadResults(out, n)]));
  // with the run store's counts: a section's saved results are full mode only when every full-mode run is on record
  const runsOf = (n: string) => {
    const st = status?.find((x) => x.section === n);
    if (!st) return '–';
    return `${st.done} of ${st.total} ${st.size}-mode runs on record${st.done < st.total ? ` (incomplete: its section shows ${data[n] ? `its last complete results, ${modeOf(data[n]!)} mode` : 'nothing yet'})` : ''}`;
  };
  const modes = names.map((n) => status ? [n, data[n] ? modeOf(data[n]!) : 'not run', runsOf(n)] : [n, data[n] ? modeOf(data[n]!) : 'not run']);
  const parts: string[] = [
    '## Answers to the three guesses',
    '',
    `The user wondered whether weights need 32 or 64 bits and guessed three reasons lower precision might not be used. Every sentence below is computed from the saved results of the sections that follow, and holds for what they measured: this CPU, these kernels, these networks on MNIST. Per-run numbers are mean ± s.d. over n runs with the 95% t-interval of the mean. Differences between recipes run on the same seeds (swallow, fp8, int8, gupta2015: seed k gives both the same initial weights and sample order) are paired by seed — the mean of the per-seed differences with its 95% t-interval; chaos compares layers with Welch's unpaired 95% interval (its twins of different layers are not matched). A verdict (higher, lower, longer) is stated only where that interval excludes 0, and "no difference detected" is not a proof of equality: the interval says how large a difference the runs could have missed. Speed has no interval: a path is called faster or slower only where every interleaved round at every shape agrees (see its headline). Each verdict is a 95% statement on its own; across the many comparisons some would be wrong by chance, so swallow's grid and plateau verdicts, and the table of gupta2015's section (its comparisons with float32), are also checked with Holm's correction over their family and marked where they do not survive it; the gupta2015 lines below quote the uncorrected intervals. Load average at assembly: ${loadavg().map((v) => v.toFixed(1)).join(' / ')}.`,
    '',
    table(status ? ['results', 'mode of the saved results', 'runs of the requested mode'] : ['results', 'mode'], modes),
    '',
  ];
  const heads: string[] = [];
  for (const g of guesses) {
    parts.push(`### ${g.title}`, '');
    const head = g.headline(data);
    heads.push(`- **${g.title.replace(/^Guess \((\d)\):.*$/, 'Guess $1')}**: ${head}.`);
    parts.push(`**As measured:** ${head}.`, '');
    for (const c of g.contributors) {
      const d = data[c.json];
      const rerun = `\`npm run lab -- ${c.json}\``;
      let bullets: string[];
      if (!d) bullets = [`*${c.json}*: not run (${rerun}).`];
      else if (c.current && !c.current(d)) bullets = [`*${c.json}*: the saved results were written by an older version of the experiment; re-run ${rerun}.`];
      else if (!c.bullets) bullets = [`*${c.json}*: results present but this report has no answer function for them yet; see section *${c.json}*.`];
      else {
        // a section's bullets may come as markdown list items ("- x", nested "  - y"): top-level ones get the section's
        // name, nested ones stay nested under them
        try {
          bullets = c.bullets(d).map((b) => (/^\s+- /.test(b) ? `\u0000${b}` : `*${c.json}*: ${b.replace(/^- /, '')}`));
        } catch (e) { bullets = [`*${c.json}*: the saved results could not be read (${(e as Error).message}); re-run ${rerun}.`]; }
      }
      parts.push(...bullets.map((b) => (b.startsWith('\u0000') ? b.slice(1) : `- ${b}`)));
    }
    parts.push('');
  }
  parts.push('### The three answers as they now stand', '', ...heads);
  return parts.join('\n');
}

/** Sections whose runs live in the run store, with their VERSION and unit lists for the report's options. */
async function storedSections(o: ReportOptions): Promise<{ name: string; version: number; units: Unit[] }[]> {
  const size = o.quick ? 'quick' : 'full';
  const g = await import('./gupta.ts'), sw = await import('./swallow.ts'), ch = await import('./chaos.ts'), f8 = await import('./fp8.ts'), i8 = await import('./int8.ts');
  return [
    { name: 'swallow', version: sw.SWALLOW_VERSION, units: sw.swallowUnits(size, size === 'full' ? 5 : 3) },
    { name: 'chaos', version: ch.CHAOS_VERSION, units: ch.chaosUnits(size) },
    { name: 'gupta2015', version: g.GUPTA_VERSION, units: g.guptaUnits({ ...o, size }) },
    { name: 'fp8', version: f8.FP8_VERSION, units: f8.fp8Units({ ...o, size }) },
    { name: 'int8', version: i8.INT8_VERSION, units: i8.int8Units({ ...o, size }) },
  ];
}

/**
 * How many runs of each stored section are on record for the report's mode (without running anything).
 * @example await runStatus({ quick: false, out: 'reports' }) // [{ section: 'gupta2015', size: 'full', done: 12, total: 80, ... }, ...]
 */
export async function runStatus(o: ReportOptions): Promise<SectionStatus[]> {
  const size = o.quick ? 'quick' : 'full';
  return (await storedSections(o)).map((s) => ({ section: s.name, size, ...countDone(sectionRunsDir(o.out, s.name, o.run?.runsDir), s.name, s.version, s.units), secondsLeft: NaN }));
}

/** Run the experiments (except `skip`) and write the answers section with each section's run count in the requested mode. */
export async function labReport(o: ReportOptions): Promise<void> {
  const log = logger(o);
  const skip = new Set(o.skip ?? []);
  const t0 = performance.now();
  if (!skip.has('speed')) { const { labSpeed } = await import('./speed.ts'); await labSpeed(o); }
  if (!skip.has('swallow')) { const { labSwallow } = await import('./swallow.ts'); await labSwallow(o); }
  if (!skip.has('chaos')) { const { labChaos } = await import('./chaos.ts'); await labChaos(o); }
  if (!skip.has('gupta2015')) { const { labGupta } = await import('./gupta.ts'); await labGupta(o); }
  if (!skip.has('fp8')) { const { labFp8 } = await import('./fp8.ts'); await labFp8(o); }
  if (!skip.has('int8')) { const { labInt8 } = await import('./int8.ts'); await labInt8(o); }
  log(`report: experiments done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const status = await runStatus(o);
  for (const s of status) if (s.done < s.total) log(`report: ${s.section}: ${s.done} of ${s.total} ${s.size}-mode runs on record; its section is not regenerated until all are`);
  await writeAnswers(o.out, status);
}

/** Write the answers section from the saved results in `out`. */
export async function writeAnswers(out: string, status?: SectionStatus[]): Promise<void> {
  await writeSection(out, 'answers', answersMarkdown(out, GUESSES, status));
}
