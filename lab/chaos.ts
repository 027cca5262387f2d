// Guess (3): is training chaotically sensitive to tiny changes? Twin runs one ulp apart, and noise injected per layer.
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from './tf.ts';
import { BF16, E4M3, FP16, FP32, quantize, type Format } from '../src/precision/formats.ts';
import { cachedMnist, type Dataset } from './data.ts';
import { runUnits, runsNote, unitConfig, type Unit, type UnitConfig } from './runs.ts';
import { figure, lines, type Pt } from './plot.ts';
import { pct, SUB, table, writeSection } from './report.ts';
import { runTraining } from './run.ts';
import { logger, noteOutcome, saveJson, stamp, type LabOptions } from './common.ts';
import { interval, mean, meanSd, sd, summarize, verdict, welch } from './stats.ts';
import { createRng } from '../src/precision/rng.ts';
import type { OptimizerSpec } from './train.ts';

/** Relative L2 distance ||a - b|| / ||b|| over several arrays. */
export function relDistance(a: Float32Array[], b: Float32Array[]): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].length; j++) { const d = a[i][j] - b[i][j]; num += d * d; den += b[i][j] * b[i][j]; }
  return Math.sqrt(num / den);
}

/** Accuracy of `model` when layer `k`'s output h is replaced by h * (1 + eps * N(0, 1)) (or rounded to `fmt`). */
export function noisyAccuracy(model: tfl.LayersModel, data: Dataset, k: number, eps: number, seed: number, fmt?: Format): number {
  let correct = 0;
  const bs = 1000;
  for (let s = 0; s < data.n; s += bs) {
    const n = Math.min(bs, data.n - s);
    const pred = tf.tidy(() => {
      let h: tf.Tensor = tf.tensor2d(data.x.subarray(s * data.dim, (s + n) * data.dim), [n, data.dim]);
      model.layers.forEach((layer, i) => {
        h = layer.apply(h) as tf.Tensor;
        if (i !== k) return;
        if (fmt) h = tf.tensor(quantize(fmt, h.dataSync() as Float32Array), h.shape);
        else if (eps > 0) h = tf.mul(h, tf.add(1, tf.mul(eps, tf.randomNormal(h.shape, 0, 1, 'float32', seed + s))));
      });
      return tf.argMax(h, -1).dataSync();
    });
    for (let i = 0; i < n; i++) if (pred[i] === data.y[s + i]) correct++;
  }
  return correct / data.n;
}

/** Largest eigenvalue of a symmetric positive semi-definite n×n matrix (row-major), by power iteration. */
export function topEigenSym(g: Float64Array, n: number, iters = 300): number {
  let v = new Float64Array(n).fill(1 / Math.sqrt(n));
  let lambda = 0;
  for (let it = 0; it < iters; it++) {
    const w = new Float64Array(n);
    for (let a = 0; a < n; a++) { let t = 0; for (let b = 0; b < n; b++) t += g[a * n + b] * v[b]; w[a] = t; }
    const norm = Math.hypot(...w);
    if (norm === 0) return 0;
    for (let a = 0; a < n; a++) w[a] /= norm;
    const prev = lambda;
    lambda = norm;
    v = w;
    if (it > 10 && Math.abs(lambda - prev) <= 1e-12 * lambda) break;
  }
  return lambda;
}

/** Per-sample gains of the map from one layer's output to the logits. */
export interface JacobianGain {
  /** Top singular value of each sample's Jacobian (the largest amplification of any direction). */
  spectral: Float64Array;
  /** Root-mean-square of ‖J v‖ over random unit directions v: ‖J‖_F / √(layer width). */
  random: Float64Array;
}

/**
 * Gain of the network's response to a perturbation of layer `k`'s output (k = 0 is the first layer of a sequential
 * model), per sample of `x`: the Jacobian J (classes × width) of the logits with respect to that output, from one
 * backward pass per logit; its top singular value and its RMS gain over random unit directions.
 *
 * @example
 * const g = jacobianGain(model, tf.zeros([4, 784]) as tf.Tensor2D, 1); // g.spectral[i]: largest gain for sample i
 */
export function jacobianGain(model: tfl.LayersModel, x: tf.Tensor2D, k: number): JacobianGain {
  const layers = model.layers;
  if (k < 0 || k >= layers.length - 1) throw new RangeError(`layer ${k} has no layers after it (model has ${layers.length})`);
  const h = tf.tidy(() => { let t: tf.Tensor = x; for (let i = 0; i <= k; i++) t = layers[i].apply(t) as tf.Tensor; return t; });
  const n = h.shape[0], d = h.size / n;
  const head = (t: tf.Tensor) => { let u = t; for (let i = k + 1; i < layers.length; i++) u = layers[i].apply(u) as tf.Tensor; return u; };
  const classes = (tf.tidy(() => head(h)) as tf.Tensor);
  const C = classes.shape[1]!;
  classes.dispose();
  const rows: Float32Array[] = [];
  for (let c = 0; c < C; c++) {
    const g = tf.tidy(() => tf.grad((t: tf.Tensor) => tf.sum(tf.slice(head(t), [0, c], [n, 1])))(h));
    rows.push(g.dataSync() as Float32Array);
    g.dispose();
  }
  h.dispose();
  const spectral = new Float64Array(n), random = new Float64Array(n);
  const G = new Float64Array(C * C);
  for (let i = 0; i < n; i++) {
    const off = i * d;
    for (let a = 0; a < C; a++) for (let b = a; b < C; b++) {
      let t = 0;
      const ra = rows[a], rb = rows[b];
      for (let j = 0; j < d; j++) t += ra[off + j] * rb[off + j];
      G[a * C + b] = t; G[b * C + a] = t;
    }
    let tr = 0;
    for (let a = 0; a < C; a++) tr += G[a * C + a];
    spectral[i] = Math.sqrt(topEigenSym(G, C));
    random[i] = Math.sqrt(tr / d);
  }
  return { spectral, random };
}

/** "m ± sd" in exponent notation (distances span many decades). */
function expSd(x: number[]): string {
  return `${mean(x).toExponential(2)} ± ${sd(x).toExponential(1)}`;
}

/** Size of a chaos run: tiny (tests), quick, full. */
export type ChaosSize = 'tiny' | 'quick' | 'full';

/** Relative L2 distance of each array separately (per layer). */
export function layerDistances(a: Float32Array[], b: Float32Array[]): number[] {
  return a.map((x, i) => relDistance([x], [b[i]]));
}

/** Count of positions where two sets of arrays differ (bitwise, NaN-safe through Object.is). */
export function countDiffering(a: Float32Array[], b: Float32Array[]): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) for (let j = 0; j < a[i].length; j++) if (!Object.is(a[i][j], b[i][j])) n++;
  return n;
}

/**
 * Finite-time Lyapunov exponent: least-squares slope of ln d(t) against the step t over the points with 0 < d(t) < cap
 * (growth before saturation), in e-folds per step; NaN with fewer than three such points.
 */
export function lyapunov(points: { step: number; d: number }[], cap: number): { lambda: number; points: number } {
  const p = points.filter((q) => q.d > 0 && q.d < cap && q.step > 0);
  if (p.length < 3) return { lambda: NaN, points: p.length };
  const mx = mean(p.map((q) => q.step)), my = mean(p.map((q) => Math.log(q.d)));
  let sxy = 0, sxx = 0;
  for (const q of p) { sxy += (q.step - mx) * (Math.log(q.d) - my); sxx += (q.step - mx) ** 2; }
  return { lambda: sxy / sxx, points: p.length };
}

/** Bumped when a chaos run's meaning changes (its records then no longer count). */
export const CHAOS_VERSION = 1;

/** Seed of the base run that every twin copies (the independent seeds are 2, 3, …). */
export const CHAOS_BASE_SEED = 1;

/** Network, data and schedule by size. */
export function chaosConfig(size: ChaosSize) {
  return size === 'tiny' ? { size, hidden: [32, 32, 32], trainN: 1000, testN: 500, steps: 100, evalEvery: 10, twins: 3, seeds: 3, probes: 100 }
    : size === 'quick' ? { size, hidden: [128, 128, 128], trainN: 5000, testN: 2000, steps: 300, evalEvery: 25, twins: 3, seeds: 3, probes: 200 }
      : { size, hidden: [256, 256, 256], trainN: 60000, testN: 10000, steps: 3000, evalEvery: 150, twins: 5, seeds: 5, probes: 500 };
}
type ChaosConfig = UnitConfig<ReturnType<typeof chaosConfig>>;

/**
 * A chaos unit. `base` is the seed-1 run (gain trace, noise injection); every other kind is compared with the base run
 * at each evaluation point, and a process recomputes the base trajectory once (runs are bit-for-bit deterministic: the
 * null twin checks that) instead of storing its weights.
 */
export type ChaosUnitSpec = { cfg: ChaosConfig } & (
  | { kind: 'base' }
  | { kind: 'seed'; seed: number }
  | { kind: 'null' }
  | { kind: 'twin'; layer: number; index: number; twin: number }
  | { kind: 'swap' }
  | { kind: 'order' });

type Trace = { step: number; d: number; layers: number[]; disagree: number }[];
type GainTrace = { step: number; spectral: number[]; random: number[] }[];
/** What a compared run leaves in the run store. */
export interface ChaosTraceResult { tr: Trace; acc: number; differing: number; gain?: GainTrace }
/** What the base run leaves in the run store. */
export interface ChaosBaseResult { acc: number; gain: GainTrace; probeSpectral: number[][]; totalWeights: number; noiseDraws: number[][][]; noiseFormats: number[][] }

const EPS_LIST = [0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1, 3];
const GAIN_LAYERS = ['early (hidden 1)', 'middle (hidden 2)', 'late (hidden 3)'];
/** Kernels of hidden 1 (early), hidden 2 (middle) and the output layer (late); arrays alternate kernel, bias. */
const twinLayers = (cfg: ChaosConfig) => [{ name: 'early (hidden 1)', idx: 0 }, { name: 'middle (hidden 2)', idx: 2 }, { name: 'late (output)', idx: 2 * cfg.hidden.length }];

async function chaosCommon(cfg: ChaosConfig) {
  const train = await cachedMnist('train', cfg.trainN), test = await cachedMnist('test', cfg.testN);
  const opt: OptimizerSpec = { kind: 'momentum', lr: 0.01, momentum: 0.9 };
  return { hidden: cfg.hidden, opt, prec: { weights: FP32, rounding: 'nearest' as const }, train, test, batch: 100, steps: cfg.steps, evalEvery: cfg.evalEvery };
}

/** Jacobian gain of each hidden layer's output -> logits on the first `probes` test images (per run: mean over probes). */
function gainRecorder(cfg: ChaosConfig, test: Dataset, tr: GainTrace, last?: (g: JacobianGain[]) => void) {
  return (step: number, model: tfl.LayersModel) => {
    const probeX = tf.tensor2d(test.x.subarray(0, cfg.probes * test.dim), [cfg.probes, test.dim]);
    const g = GAIN_LAYERS.map((_, k) => jacobianGain(model, probeX, k));
    probeX.dispose();
    tr.push({ step, spectral: g.map((v) => mean([...v.spectral])), random: g.map((v) => mean([...v.random])) });
    if (step === cfg.steps) last?.(g);
  };
}

const baseCache = new Map<string, Promise<Map<number, { w: Float32Array[]; pred: Uint8Array }>>>();
/** The base run's stored weights and predictions at each evaluation point (computed once per process and size). */
function baseTrajectory(cfg: ChaosConfig): Promise<Map<number, { w: Float32Array[]; pred: Uint8Array }>> {
  const k = JSON.stringify(cfg);
  if (!baseCache.has(k)) baseCache.set(k, chaosCommon(cfg).then((common) => {
    const base = new Map<number, { w: Float32Array[]; pred: Uint8Array }>();
    runTraining({ ...common, seed: CHAOS_BASE_SEED, onEval: (step, w, pred) => { base.set(step, { w: w.map((a) => a.slice()), pred: pred.slice() }); } });
    return base;
  }));
  return baseCache.get(k)!;
}

/**
 * Run one chaos unit (the unit of the run store).
 * @example await chaosUnit({ cfg: unitConfig(chaosConfig('tiny')), kind: 'null' }) // { differing: 0, ... }
 */
export async function chaosUnit(u: ChaosUnitSpec): Promise<ChaosBaseResult | ChaosTraceResult> {
  const { cfg } = u;
  const common = await chaosCommon(cfg);
  const test = common.test;
  if (u.kind === 'base') {
    const gain: GainTrace = [];
    let probe: JacobianGain[] = [];
    const onGain = gainRecorder(cfg, test, gain, (g) => { probe = g; });
    const res = runTraining({ ...common, seed: CHAOS_BASE_SEED, onEval: (step, _w, _p, model) => onGain(step, model) });
    const model = res.trainer.model;
    const draws = cfg.size === 'full' ? 5 : 3;
    const noiseDraws: number[][][] = [], noiseFormats: number[][] = [];
    for (let k = 0; k < 3; k++) {
      noiseDraws.push(EPS_LIST.map((eps) => Array.from({ length: eps > 0 ? draws : 1 }, (_, d) => noisyAccuracy(model, test, k, eps, 1000 * d + 7))));
      noiseFormats.push([BF16, FP16, E4M3].map((f) => noisyAccuracy(model, test, k, 0, 0, f)));
    }
    return { acc: res.finalAcc, gain, probeSpectral: probe.map((g) => [...g.spectral]), totalWeights: res.trainer.stored().reduce((s2, a2) => s2 + a2.length, 0), noiseDraws, noiseFormats };
  }
  const base = await baseTrajectory(cfg);
  const tr: Trace = [];
  let finalW: Float32Array[] = [];
  const gain: GainTrace | undefined = u.kind === 'seed' ? [] : undefined;
  const onGain = gain ? gainRecorder(cfg, test, gain) : null;
  const L = u.kind === 'twin' ? twinLayers(cfg)[u.layer] : null;
  const res = runTraining({
    ...common,
    seed: u.kind === 'seed' ? u.seed : CHAOS_BASE_SEED,
    orderSeed: u.kind === 'order' ? 2 : undefined,
    swap: u.kind === 'swap' ? [3, 250] : undefined,
    perturb: u.kind === 'twin' ? (w) => { const a = w[L!.idx]; const v = new Uint32Array(a.buffer, a.byteOffset + 4 * u.index, 1); v[0] += 1; } : undefined,
    onEval: (step, w, pred, model) => {
      onGain?.(step, model);
      const b = base.get(step);
      if (!b) return;
      let dis = 0;
      for (let i = 0; i < pred.length; i++) if (pred[i] !== b.pred[i]) dis++;
      tr.push({ step, d: relDistance(w, b.w), layers: layerDistances(w, b.w), disagree: dis / pred.length });
      if (step === cfg.steps) finalW = w.map((a) => a.slice());
    },
  });
  return { tr, acc: res.finalAcc, differing: countDiffering(finalW, base.get(cfg.steps)!.w), gain };
}

/** The chaos units for a size and twin count, in the order the section reads them. */
export function chaosUnits(size: ChaosSize, twins?: number): Unit<ChaosUnitSpec>[] {
  const full = chaosConfig(size), cfg = unitConfig(full);
  const nTwins = twins ?? full.twins;
  const units: Unit<ChaosUnitSpec>[] = [{ spec: { cfg, kind: 'base' }, label: 'base run' }];
  for (let k = 0; k < full.seeds; k++) units.push({ spec: { cfg, kind: 'seed', seed: 2 + k }, label: `seed ${2 + k}` });
  units.push({ spec: { cfg, kind: 'null' }, label: 'null twin' });
  // the perturbed weight of each twin: a seeded draw over that layer's kernel
  const rng = createRng(99);
  const dims = [784, ...cfg.hidden, 10];
  twinLayers(cfg).forEach((L, li) => {
    const k0 = L.idx / 2, size0 = dims[k0] * dims[k0 + 1];
    for (let t = 0; t < nTwins; t++) units.push({ spec: { cfg, kind: 'twin', layer: li, index: Math.floor(rng.uniform() * size0), twin: t }, label: `one ulp in ${L.name}, twin ${t + 1}` });
  });
  units.push({ spec: { cfg, kind: 'swap' }, label: 'two samples swapped' }, { spec: { cfg, kind: 'order' }, label: 'other sample order' });
  return units;
}

/** Run the chaos experiment (the units missing from the run store) and write its section; null while runs are missing. */
export async function labChaos(o: LabOptions & { size?: ChaosSize; twins?: number }): Promise<Record<string, unknown> | null> {
  const log = logger(o);
  const t0 = performance.now();
  const size: ChaosSize = o.size ?? (o.quick ? 'quick' : 'full');
  const q = size !== 'full';
  const cfg = chaosConfig(size);
  const nTwins = o.twins ?? cfg.twins;
  const units = chaosUnits(size, o.twins);
  const outcome = await runUnits('chaos', CHAOS_VERSION, units, chaosUnit, { out: o.out, log, ...o.run });
  if (!noteOutcome(o, 'chaos', size, outcome)) return null;
  const results = outcome.results!;
  const baseRes = results[0] as ChaosBaseResult;
  const seedRuns = results.slice(1, 1 + cfg.seeds) as ChaosTraceResult[];
  const nullTwin = results[1 + cfg.seeds] as ChaosTraceResult;
  const twinRes = results.slice(2 + cfg.seeds, 2 + cfg.seeds + 3 * nTwins) as ChaosTraceResult[];
  const [swapRes, orderRes] = results.slice(2 + cfg.seeds + 3 * nTwins) as ChaosTraceResult[];
  const gainLayers = GAIN_LAYERS;
  const gainRuns: GainTrace[] = [baseRes.gain, ...seedRuns.map((r) => r.gain!)];
  const finalProbeGains = baseRes.probeSpectral.map((spectral) => ({ spectral }));
  log(`chaos base: acc ${pct(baseRes.acc)}`);
  const seedAccs = seedRuns.map((r) => r.acc);
  const seedDist = (step: number) => mean(seedRuns.map((r) => r.tr.find((p) => p.step === step)?.d ?? NaN));
  log(`chaos null twin: ${nullTwin.differing} weights differ`);
  const layers = twinLayers(cfg);
  // saturation: 10% of the distance between independent seeds at the end
  const cap = 0.1 * seedDist(cfg.steps);
  const perLayer: { name: string; lambdas: number[]; finals: number[]; disagree: number[]; accs: number[]; traces: Trace[] }[] = [];
  layers.forEach((L, li) => {
    const row = { name: L.name, lambdas: [] as number[], finals: [] as number[], disagree: [] as number[], accs: [] as number[], traces: [] as Trace[] };
    for (const r of twinRes.slice(li * nTwins, (li + 1) * nTwins)) {
      row.lambdas.push(lyapunov(r.tr, cap).lambda);
      row.finals.push(r.tr.at(-1)!.d);
      row.disagree.push(r.tr.at(-1)!.disagree);
      row.accs.push(r.acc);
      row.traces.push(r.tr);
    }
    perLayer.push(row);
    log(`chaos ${L.name}: lambda ${meanSd(row.lambdas, 1, 4)} per step, final distance ${expSd(row.finals)}`);
  });
  const others = [
    { name: 'two samples swapped in epoch 1', r: swapRes },
    { name: 'other sample order (same init)', r: orderRes },
  ];
  const series: Pt[] = [];
  const layerPts: Pt[] = [];
  for (const L of perLayer) {
    const steps = L.traces[0].map((p) => p.step);
    steps.forEach((st, i) => {
      const ds = L.traces.map((t) => t[i].d).filter((d) => d > 0);
      if (ds.length) series.push({ x: Math.max(st, 1), y: Math.exp(mean(ds.map(Math.log))), series: `one ulp in ${L.name}` });
      // per-layer distance of each kernel (geometric mean over twins)
      layers.forEach((K) => {
        const v = L.traces.map((t) => t[i].layers[K.idx]).filter((d) => d > 0);
        if (v.length) layerPts.push({ x: Math.max(st, 1), y: Math.exp(mean(v.map(Math.log))), series: `${K.name} weights`, facet: `perturbed: ${L.name}` });
      });
    });
  }
  for (const ot of others) for (const p of ot.r.tr) if (p.d > 0) series.push({ x: Math.max(p.step, 1), y: p.d, series: ot.name });
  for (const p of seedRuns[0].tr) series.push({ x: Math.max(p.step, 1), y: p.d, series: 'other seed' });
  const seedSd = sd([baseRes.acc, ...seedAccs]);
  const rows = perLayer.map((L) => [L.name, String(L.lambdas.length), `${meanSd(L.lambdas, 1, 4)}`, interval(L.lambdas, 1, 4), expSd(L.finals), `${meanSd(L.disagree, 100, 2)} %`, `${meanSd(L.accs, 100, 2)} %`]);
  // Float32 resolution: were every weight within one ulp (≤ 2^-23 |w|) of the base run's, the relative distance would be
  // at most 2^-23. A twin above it has grown (some weights differ by several ulps); one below may only have spread.
  const ULP_BOUND = 2 ** -23;
  const resolution = perLayer.map((L) => {
    const start = L.traces.map((t) => t[0].d);
    const above = L.traces.map((t) => t.find((p) => p.d > ULP_BOUND)?.step ?? NaN);
    const grown = above.filter((x) => Number.isFinite(x)).length;
    const efolds = L.traces.map((t, k) => Math.log(L.finals[k] / Math.max(t[0].d, Number.MIN_VALUE)));
    // the exponent fitted only where the distance is above float32 resolution (growth, not the spread of last bits)
    const lambdasAbove = L.traces.map((t) => lyapunov(t.filter((p) => p.d > ULP_BOUND), cap).lambda);
    return { name: L.name, start, above, grown, efolds, lambdasAbove };
  });
  const resolutionRows = resolution.map((r) => [r.name, expSd(r.start), `${r.grown} of ${r.above.length}`,
    r.grown ? meanSd(r.above.filter((x) => Number.isFinite(x)), 1, 0) : '—', meanSd(r.efolds, 1, 1),
    (() => { const v = r.lambdasAbove.filter((x) => Number.isFinite(x)); return v.length ? `${meanSd(v, 1, 4)} (n=${v.length})` : '— (too few points)'; })()]);
  const allGrown = resolution.every((r) => r.grown === r.above.length);
  const mid = perLayer[1];
  const cmp = [perLayer[0], perLayer[2]].map((L) => {
    const w = welch(mid.lambdas, L.lambdas);
    return `middle − ${L.name}: ${w.diff.toFixed(4)} [${w.lo.toFixed(4)}, ${w.hi.toFixed(4)}] per step → ${w.lo > 0 ? 'middle grows faster' : w.hi < 0 ? 'middle grows slower' : 'no significant difference'}`;
  });
  const lamVerdicts = [perLayer[0], perLayer[2]].map((L) => verdict(mid.lambdas, L.lambdas));
  const middleDiffers = lamVerdicts.some((v) => v !== 'no significant difference');
  const middleStandsOut = lamVerdicts.every((v) => v === 'higher') || lamVerdicts.every((v) => v === 'lower');
  const twinsOut: Record<string, { dist: number; disagree: number; acc: number }> = {
    'one ulp in one middle-layer weight': { dist: mean(mid.finals), disagree: mean(mid.disagree), acc: mean(mid.accs) },
    'other seed (init and order)': { dist: seedRuns[0].tr.at(-1)!.d, disagree: seedRuns[0].tr.at(-1)!.disagree, acc: seedRuns[0].acc },
  };
  for (const ot of others) twinsOut[ot.name] = { dist: ot.r.tr.at(-1)!.d, disagree: ot.r.tr.at(-1)!.disagree, acc: ot.r.acc };

  // --- noise injection at inference into the trained base model (computed in the base unit)
  const layerNames = GAIN_LAYERS;
  const epsList = EPS_LIST;
  const noisePts: Pt[] = [];
  const noiseRows: (string | number)[][] = [];
  const noise: Record<string, number[]> = {};
  const noiseDraws: Record<string, number[][]> = {};
  const noiseFormats: Record<string, Record<string, number>> = {};
  const draws = q ? 3 : 5;
  for (let k = 0; k < 3; k++) {
    const perEps = baseRes.noiseDraws[k];
    const accs = perEps.map((v) => mean(v));
    noise[layerNames[k]] = accs;
    noiseDraws[layerNames[k]] = perEps;
    accs.forEach((a, i) => { if (epsList[i] > 0) noisePts.push({ x: epsList[i], y: 100 * a, series: layerNames[k] }); });
    const fmts = baseRes.noiseFormats[k];
    noiseFormats[layerNames[k]] = { bf16: fmts[0], fp16: fmts[1], e4m3: fmts[2] };
    noiseRows.push([layerNames[k], ...perEps.map((v) => (v.length > 1 ? `${meanSd(v, 100, 1)}` : (100 * v[0]).toFixed(1))), ...fmts.map((a) => pct(a))]);
  }
  const figDist = await figure(lines(series, { title: `Twin runs: relative weight distance to the base run (one-ulp rows: geometric mean of ${nTwins} twins)`, x: 'step', y: '||w − w_base|| / ||w_base||', logY: true }), o.out, SUB, 'chaos-weights', 'weight divergence');
  const figLayers = await figure(lines(layerPts, { title: 'Per-layer distance to the base run after one ulp in one layer', x: 'step', y: 'relative distance of the layer\'s kernel', logY: true, facet: 'twin', width: 240, height: 180, columns: 3 }), o.out, SUB, 'chaos-layers', 'per-layer distance');
  const figNoise = await figure(lines(noisePts, { title: 'Relative noise injected into one layer at inference', x: 'relative noise ε (h ← h·(1 + ε·N(0,1)))', y: 'test accuracy (%)', logX: true }), o.out, SUB, 'chaos-noise', 'noise injection');
  // --- Jacobian gain over training: mean over runs (base + independent seeds) with a 95% t-interval over runs
  const nRuns = gainRuns.length;
  const gainSteps = gainRuns[0].map((p) => p.step);
  const gainPts: Pt[] = [];
  gainLayers.forEach((name, k) => gainSteps.forEach((st, i) => {
    const v = gainRuns.map((r) => r[i]?.spectral[k]).filter((x): x is number => Number.isFinite(x));
    const sm = summarize(v);
    gainPts.push({ x: st, y: sm.mean, series: 'top singular value (mean over runs)', facet: name });
    if (v.length > 1) { gainPts.push({ x: st, y: Math.max(sm.lo, 1e-6), series: '95% interval, low', facet: name }); gainPts.push({ x: st, y: sm.hi, series: '95% interval, high', facet: name }); }
  }));
  const gainFinal = gainLayers.map((name, k) => {
    const spectral = gainRuns.map((r) => r.at(-1)!.spectral[k]);
    const random = gainRuns.map((r) => r.at(-1)!.random[k]);
    const initial = gainRuns.map((r) => r[0].spectral[k]);
    // growth of ln(gain) per step over training, comparable in units with λ
    const growth = gainRuns.map((r) => lyapunov(r.map((p) => ({ step: p.step, d: p.spectral[k] })), Infinity).lambda);
    const probes = finalProbeGains[k] ? [...finalProbeGains[k].spectral] : [];
    return { name, spectral, random, initial, growth, probes: summarize(probes) };
  });
  const gW = (a: number, b: number) => welch(gainFinal[a].spectral, gainFinal[b].spectral);
  const gainCmp = [0, 2].map((j) => ({ other: gainLayers[j], w: gW(1, j), v: verdict(gainFinal[1].spectral, gainFinal[j].spectral) }));
  const middleGainDiffers = gainCmp.some((c) => c.v !== 'no significant difference');
  // "stands out": above both neighbours or below both (a middle value between them is no middle-layer effect)
  const middleGainStandsOut = gainCmp.every((c) => c.v === 'higher') || gainCmp.every((c) => c.v === 'lower');
  const sig = (w: { lo: number; hi: number }) => (w.lo > 0 ? 1 : w.hi < 0 ? -1 : 0);
  const lamEM = welch(perLayer[0].lambdas, perLayer[1].lambdas), gainEM = gW(0, 1);
  const relation = sig(lamEM) === 0 || sig(gainEM) === 0
    ? `early vs middle: λ difference ${lamEM.diff.toExponential(2)} [${lamEM.lo.toExponential(2)}, ${lamEM.hi.toExponential(2)}] per step, gain difference ${gainEM.diff.toFixed(3)} [${gainEM.lo.toFixed(3)}, ${gainEM.hi.toFixed(3)}]; at least one interval contains 0, so this run cannot say whether a larger gain goes with a larger exponent`
    : `early vs middle: λ difference ${lamEM.diff.toExponential(2)} [${lamEM.lo.toExponential(2)}, ${lamEM.hi.toExponential(2)}] per step, gain difference ${gainEM.diff.toFixed(3)} [${gainEM.lo.toFixed(3)}, ${gainEM.hi.toFixed(3)}]: ${sig(lamEM) === sig(gainEM) ? 'the layer whose output is amplified more is also the one whose one-ulp twin diverges faster' : 'the layer whose output is amplified more is the one whose one-ulp twin diverges more slowly'}`;
  const f3 = (x: number[]) => meanSd(x, 1, 3);
  const gainRows = gainFinal.map((g, k) => [
    g.name, String(nRuns), f3(g.initial), f3(g.spectral), interval(g.spectral, 1, 3), g.probes.n > 1 ? `${g.probes.mean.toFixed(3)} [${g.probes.lo.toFixed(3)}, ${g.probes.hi.toFixed(3)}]` : '–',
    f3(g.random), (() => { const m = summarize(g.growth); return `${m.mean.toExponential(2)} [${m.lo.toExponential(2)}, ${m.hi.toExponential(2)}]`; })(), k < 2 ? `${meanSd(perLayer[k].lambdas, 1, 4)} (${perLayer[k].name})` : `${meanSd(perLayer[2].lambdas, 1, 4)} (${perLayer[2].name}: feeds the logits directly, gain 1)`,
  ]);
  const figGain = await figure(lines(gainPts, { title: `Jacobian gain of each hidden layer's output → logits (top singular value, mean of ${nRuns} runs over ${cfg.probes} probe images)`, x: 'step', y: 'gain', logY: true, facet: 'layer output', facetSort: gainLayers, width: 240, height: 180, columns: 3 }), o.out, SUB, 'chaos-gain', 'Jacobian gain over training');
  const seconds = (performance.now() - t0) / 1000;
  const md = [
    '## chaos — guess (3): are networks chaotically sensitive to tiny changes in the middle layers?',
    '',
    stamp(q, seconds, `MNIST ${cfg.trainN} train / ${cfg.testN} test, MLP 784-${cfg.hidden.join('-')}-10 ReLU in float32, SGD momentum 0.9 lr 0.01, batch 100, ${cfg.steps} steps${size === 'tiny' ? ' (**tiny**: for tests)' : ''}`, runsNote(outcome.records)),
    '',
    '### One-ulp twins per layer',
    '',
    `The base run (seed ${CHAOS_BASE_SEED}) is repeated with one weight changed by one ulp (a relative change of ~10⁻⁷), ${nTwins} twins per layer, each a different randomly chosen weight of that layer's kernel (hidden 1, hidden 2 — of the middle weight layers hidden 2–${cfg.hidden.length}, only hidden 2 is perturbed — and the output layer). Every twin is a copy of that one training run, so an interval over twins covers which weight was perturbed, not different training runs. λ is the finite-time Lyapunov exponent: the least-squares slope of ln(relative weight distance to the base run) against the step, fitted over the evaluation points (every ${cfg.evalEvery} steps) before the distance reaches 10% of the distance between independent seeds (saturation). Mean ± s.d. over twins, and the 95% t-interval of λ. (A first-layer weight from a pixel that is 0 in every image never affects the run, so such a twin keeps its initial distance: λ ≈ 0.)`,
    '',
    `**Null twin** (seed ${CHAOS_BASE_SEED} again, nothing changed): ${nullTwin.differing} of ${baseRes.totalWeights} weights differ at the end${nullTwin.differing === 0 ? ' — the runs are bit-for-bit deterministic, so every distance below is caused by the perturbation' : ' — the training is NOT deterministic here, so the distances below include that noise'}.`,
    '',
    table(['perturbed layer', 'twins', 'λ per step (mean ± s.d.)', 'λ 95% interval', 'final relative distance', 'test predictions differing', 'final test acc'], rows),
    '',
    `Does the middle layer differ (Welch 95% intervals of the difference in λ)? ${cmp.join('; ')}. ${middleStandsOut ? `**The middle layer differs from both others at 95% confidence (its twins diverge ${lamVerdicts[0] === 'higher' ? 'faster' : 'more slowly'}).**` : middleDiffers ? '**The middle layer differs from one other layer at 95% confidence but not from both: no middle-layer peak.**' : `**No difference detected at 95% confidence** (with ${nTwins} twins per layer the intervals above still allow differences up to ${(Math.max(...[perLayer[0], perLayer[2]].map((L) => { const w = welch(mid.lambdas, L.lambdas); return Math.max(Math.abs(w.lo), Math.abs(w.hi)); })) / Math.abs(mean(perLayer.flatMap((L) => L.lambdas)))).toFixed(1)}× the mean λ of all twins).`}`,
    '',
    `Float32 resolution: a relative distance of at most 2⁻²³ ≈ 1.2e-7 is what the twin would show if every weight were within one ulp of the base run's, so below it a twin may only be spreading its one-ulp difference to more weights (each rounding step can flip a last bit) rather than growing it. A twin whose distance passes 2⁻²³ has weights that differ by several ulps: growth. λ fitted on a twin that never leaves that band measures the spread, not a Lyapunov exponent.`,
    '',
    table(['perturbed layer', 'distance at step 0 (the one-ulp change)', 'twins that pass 2⁻²³', 'step at which they pass (mean ± s.d.)', 'e-folds from step 0 to the end', 'λ fitted only above 2⁻²³ (mean ± s.d.)'], resolutionRows),
    '',
    allGrown
      ? `Every one-ulp twin grows past float32 resolution, so the perturbation really grows. The exponents of the first table are fitted from step 0 and so also count the first steps, where a last-bit difference spreads at the rounding floor; the last column, fitted only above 2⁻²³, is the growth rate proper.`
      : `Not every twin passes 2⁻²³: for those the exponent above mostly measures how a last-bit difference spreads at float32 resolution (a longer run, or twins in float64, would be needed to see growth).`,
    '',
    `Yardstick: ${cfg.seeds} independent seeds (2–${cfg.seeds + 1}) end at relative distance ${meanSd(seedRuns.map((r) => r.tr.at(-1)!.d), 1, 3)} from the base run with ${meanSd(seedRuns.map((r) => r.tr.at(-1)!.disagree), 100, 2)} % of test predictions differing; final accuracy over seeds 1–${cfg.seeds + 1}: ${meanSd([baseRes.acc, ...seedAccs], 100, 2)} % (s.d. ${pct(seedSd)}). Other twins: ${others.map((ot) => `${ot.name}: distance ${ot.r.tr.at(-1)!.d.toExponential(2)}, ${pct(ot.r.tr.at(-1)!.disagree)} predictions differ`).join('; ')}.`,
    '',
    figDist,
    '',
    figLayers,
    '',
    '### Per-layer Jacobian gain: how much the logits respond to a perturbation at each layer',
    '',
    `For each hidden layer's output h, J = ∂logits/∂h per image (10 × width, one backward pass per logit) on the first ${cfg.probes} test images, at every evaluation point of the base run and of the ${cfg.seeds} independent seeds (${nRuns} runs). "Top singular value" is the largest amplification of any perturbation direction (‖J v‖/‖v‖ maximized over v); "random direction" is the RMS of ‖J v‖/‖v‖ over random unit v (‖J‖_F/√width). Per run, the mean over images; then mean ± s.d. over runs and the 95% t-interval over runs; the "over probes" column is the 95% interval over the base run's images at the end. "growth" is the least-squares slope of ln(gain) against the step over all evaluation points (e-folds per step, the unit of λ), shown with its 95% interval.`,
    '',
    table(['layer output', 'runs', 'gain at step 0', 'top singular value at the end (mean ± s.d.)', '95% interval (runs)', 'base run, over probes [95%]', 'random direction at the end', 'growth of ln gain per step [95%]', 'λ of the one-ulp twin in this layer'], gainRows),
    '',
    `Does the middle layer's gain differ (Welch 95% intervals over runs)? ${gainCmp.map((c) => `middle − ${c.other}: ${c.w.diff.toFixed(3)} [${c.w.lo.toFixed(3)}, ${c.w.hi.toFixed(3)}] → ${c.v === 'higher' ? 'middle amplifies more' : c.v === 'lower' ? 'middle amplifies less' : 'no significant difference'}`).join('; ')}. ${middleGainStandsOut ? `**The middle layer's gain stands out at 95% confidence (${gainCmp[0].v === 'higher' ? 'larger' : 'smaller'} than both others).**` : middleGainDiffers ? '**The middle layer\'s gain differs from at least one other layer at 95% confidence, but lies between them: no middle-layer peak.**' : '**No difference detected at 95% confidence between the middle layer\'s gain and the others\'.**'} Relation to the exponents: ${relation}. The gain is the amplification of a perturbation by one forward pass; λ is the growth of a weight perturbation over training steps, which also passes through the backward pass and the optimizer, so a larger gain need not mean a larger λ.`,
    '',
    figGain,
    '',
    '### Noise injected into one layer at inference (trained base model)',
    '',
    `Accuracy in % (mean ± s.d. over ${draws} noise draws, one trained model) when one layer's output activations h are multiplied by (1 + ε·N(0,1)); the last three columns instead round that layer's output to a format (round-to-nearest; relative error at most 2^−9 for bf16, 2^−12 for fp16, 2^−4 for e4m3).`,
    '',
    table(['layer', ...epsList.map((e) => `ε=${e}`), 'bf16', 'fp16', 'e4m3'], noiseRows),
    '',
    figNoise,
  ].join('\n');
  const summary = {
    quick: q, size, hidden: cfg.hidden, trainN: cfg.trainN, testN: cfg.testN, baseSeed: CHAOS_BASE_SEED, steps: cfg.steps, noiseDrawsPerEps: draws, noiseDraws,
    seedDist: seedRuns.map((r) => r.tr.at(-1)!.d), seedDisagree: seedRuns.map((r) => r.tr.at(-1)!.disagree), seedAccs: [baseRes.acc, ...seedAccs],
    baseAcc: baseRes.acc, seedMeanAcc: mean([baseRes.acc, ...seedAccs]), seedSdAcc: seedSd, twins: twinsOut, epsList, noise, noiseFormats,
    nullDiffering: nullTwin.differing, middleDiffers, middleStandsOut, allGrown, resolution: resolution.map((r) => ({ name: r.name, start: r.start, passStep: r.above.map((x) => (Number.isFinite(x) ? x : null)), efolds: r.efolds, lambdasAbove: r.lambdasAbove.map((x) => (Number.isFinite(x) ? x : null)) })),
    gain: {
      layers: gainLayers, probes: cfg.probes, runs: nRuns, steps: gainSteps,
      curves: gainRuns,
      final: gainFinal.map((g) => ({ name: g.name, spectral: g.spectral, random: g.random, initial: g.initial, growth: g.growth, probes: g.probes })),
      middleVs: gainCmp.map((c) => ({ other: c.other, diff: c.w.diff, lo: c.w.lo, hi: c.w.hi, verdict: c.v })),
      middleDiffers: middleGainDiffers, middleStandsOut: middleGainStandsOut,
      earlyVsMiddle: { lambda: { diff: lamEM.diff, lo: lamEM.lo, hi: lamEM.hi }, gain: { diff: gainEM.diff, lo: gainEM.lo, hi: gainEM.hi } },
    },
    layers: perLayer.map((L) => ({ name: L.name, lambdas: L.lambdas, finals: L.finals, disagree: L.disagree, accs: L.accs })),
  };
  await saveJson(o.out, 'chaos', summary);
  await writeSection(o.out, 'chaos', md);
  return summary;
}
