// A learning problem with a real flat stretch: a deep linear network from small initial weights learning a linear
// teacher (Saxe, McClelland & Ganguli 2014). The loss sits on a plateau while the weights grow along the teacher's
// modes from near zero, then drops; during the plateau the updates are tiny relative to the weights, which is where
// round-to-nearest might swallow them. Plain JS (the network is small); weight updates go through lab/update.ts like
// the MNIST runs, so the stored formats, rounding, master copy, Kahan and the lost-mass meter are the same code.
import { BF16, FP16, FP32, quantize, type Format, type Rounding } from '../src/precision/formats.ts';
import { createRng, type Rng } from '../src/precision/rng.ts';
import { staticSite } from './dynfixed.ts';
import { applyUpdate, updateScratch, type UpdateScratch, type WeightSlot } from './update.ts';

/** Size and schedule of the plateau experiment. */
export interface PlateauConfig {
  /** Input, hidden and output width. */
  dim: number;
  /** Number of weight matrices (depth 3 = two hidden layers). */
  depth: number;
  /** Teacher singular values (the rest are 0). */
  modes: number[];
  /** Initial weights N(0, (init / sqrt(dim))^2). */
  init: number;
  lr: number;
  batch: number;
  steps: number;
  evalEvery: number;
  /** Escape = first evaluation with test loss below this fraction of the initial loss. */
  escapeAt: number;
}

/** Quick and full configurations. */
export const PLATEAU_CONFIG: Record<'tiny' | 'quick' | 'full', PlateauConfig> = {
  tiny: { dim: 8, depth: 3, modes: [3, 2, 1], init: 0.005, lr: 0.05, batch: 16, steps: 2500, evalEvery: 20, escapeAt: 0.5 },
  quick: { dim: 16, depth: 3, modes: [3, 2, 1], init: 0.01, lr: 0.02, batch: 32, steps: 4000, evalEvery: 25, escapeAt: 0.5 },
  full: { dim: 16, depth: 3, modes: [3, 2, 1], init: 0.01, lr: 0.02, batch: 32, steps: 8000, evalEvery: 25, escapeAt: 0.5 },
};

/** A weight recipe of the plateau runs. */
export interface PlateauRecipe { name: string; weights: Format; rounding: Rounding; master?: boolean; kahan?: boolean }

/** The recipes compared. */
export const PLATEAU_RECIPES: PlateauRecipe[] = [
  { name: 'fp32', weights: FP32, rounding: 'nearest' },
  { name: 'bf16 RN', weights: BF16, rounding: 'nearest' },
  { name: 'bf16 SR', weights: BF16, rounding: 'stochastic' },
  { name: 'bf16 RN + fp32 master', weights: BF16, rounding: 'nearest', master: true },
  { name: 'bf16 RN + Kahan (fp32)', weights: BF16, rounding: 'nearest', kahan: true },
  { name: 'fp16 RN', weights: FP16, rounding: 'nearest' },
];

/** One run's outcome. */
export interface PlateauRun {
  /** Test loss / initial test loss at each evaluation. */
  curve: { step: number; loss: number }[];
  /** First evaluated step with loss below escapeAt × initial, or null when the run never got there. */
  escape: number | null;
  finalLoss: number;
  /** Lost update mass over the plateau (steps before escape, or the whole run) and over the run. */
  lostPlateau: number;
  lostRun: number;
}

function normalMatrix(rng: Rng, rows: number, cols: number, sd: number): Float64Array {
  return new Float64Array(rows * cols).map(() => sd * rng.normal());
}

/** Random orthogonal-ish columns by Gram–Schmidt of a Gaussian matrix (dim × k, k <= dim). */
function orthonormal(rng: Rng, dim: number, k: number): Float64Array[] {
  const cols: Float64Array[] = [];
  while (cols.length < k) {
    const v = new Float64Array(dim).map(() => rng.normal());
    for (const c of cols) { let d = 0; for (let i = 0; i < dim; i++) d += v[i] * c[i]; for (let i = 0; i < dim; i++) v[i] -= d * c[i]; }
    const n = Math.hypot(...v);
    if (n > 1e-6) cols.push(v.map((x) => x / n));
  }
  return cols;
}

/** Teacher matrix T = Σ s_k u_k v_kᵀ (row-major dim × dim). */
export function teacher(cfg: PlateauConfig, seed: number): Float64Array {
  const rng = createRng(seed);
  const U = orthonormal(rng, cfg.dim, cfg.modes.length), V = orthonormal(rng, cfg.dim, cfg.modes.length);
  const T = new Float64Array(cfg.dim * cfg.dim);
  cfg.modes.forEach((s, k) => { for (let i = 0; i < cfg.dim; i++) for (let j = 0; j < cfg.dim; j++) T[i * cfg.dim + j] += s * U[k][i] * V[k][j]; });
  return T;
}

/** y = x Wᵀ for a batch x (B × n, row-major) and W (m × n): returns B × m. */
function matmulT(x: Float64Array, B: number, n: number, W: ArrayLike<number>, m: number): Float64Array {
  const y = new Float64Array(B * m);
  for (let b = 0; b < B; b++) for (let i = 0; i < m; i++) { let s = 0; for (let j = 0; j < n; j++) s += x[b * n + j] * W[i * n + j]; y[b * m + i] = s; }
  return y;
}

/**
 * Mean over the batch of ½‖ŷ − y‖² and the weight gradients of the linear chain ŷ = W_L ⋯ W_1 x (float64 arithmetic on
 * the stored weights; gradients returned as float32, as the lab's optimizer sees them).
 */
export function lossAndGrads(Ws: Float32Array[], dim: number, x: Float64Array, y: Float64Array, B: number, grads = true): { loss: number; g: Float32Array[] } {
  const hs: Float64Array[] = [x];
  for (const W of Ws) hs.push(matmulT(hs[hs.length - 1], B, dim, W, dim));
  const out = hs[hs.length - 1];
  let loss = 0;
  const delta = new Float64Array(B * dim);
  for (let i = 0; i < delta.length; i++) { delta[i] = out[i] - y[i]; loss += 0.5 * delta[i] * delta[i]; }
  loss /= B;
  if (!grads) return { loss, g: [] };
  const g: Float32Array[] = Ws.map(() => new Float32Array(dim * dim));
  let d = delta;
  for (let l = Ws.length - 1; l >= 0; l--) {
    const h = hs[l];
    const gl = g[l];
    for (let i = 0; i < dim; i++) for (let j = 0; j < dim; j++) { let s = 0; for (let b = 0; b < B; b++) s += d[b * dim + i] * h[b * dim + j]; gl[i * dim + j] = s / B; }
    if (l > 0) {
      const W = Ws[l];
      const nd = new Float64Array(B * dim);
      for (let b = 0; b < B; b++) for (let j = 0; j < dim; j++) { let s = 0; for (let i = 0; i < dim; i++) s += d[b * dim + i] * W[i * dim + j]; nd[b * dim + j] = s; }
      d = nd;
    }
  }
  return { loss, g };
}

/** Train one deep linear network under `recipe` (seed: initial weights, teacher, data and rounding stream). */
export function runPlateau(cfg: PlateauConfig, recipe: PlateauRecipe, seed: number): PlateauRun {
  const { dim, batch: B } = cfg;
  const T = teacher(cfg, 1000 + seed);
  const rng = createRng(seed), dataRng = createRng(50_000 + seed), roundRng = createRng(90_000 + seed);
  const sample = (n: number, r: Rng) => {
    const x = new Float64Array(n * dim).map(() => r.normal());
    return { x, y: matmulT(x, n, dim, T, dim) };
  };
  const test = sample(512, createRng(70_000 + seed));
  const site = staticSite(recipe.weights);
  const slots: WeightSlot[] = [];
  const scratch: UpdateScratch[] = [];
  for (let l = 0; l < cfg.depth; l++) {
    const init = Float32Array.from(normalMatrix(rng, dim, dim, cfg.init / Math.sqrt(dim)));
    slots.push({ stored: quantize(recipe.weights, init), master: recipe.master ? init : null, comp: recipe.kahan ? new Float32Array(init.length) : null });
    scratch.push(updateScratch(init.length));
  }
  const stored = () => slots.map((s) => s.stored);
  const l0 = lossAndGrads(stored(), dim, test.x, test.y, 512, false).loss;
  const curve = [{ step: 0, loss: 1 }];
  let escape: number | null = null;
  const plateau = { mass: 0, lost: 0 }, run = { mass: 0, lost: 0 };
  const u = new Float32Array(dim * dim);
  for (let step = 1; step <= cfg.steps; step++) {
    const { x, y } = sample(B, dataRng);
    const { g } = lossAndGrads(stored(), dim, x, y, B);
    for (let l = 0; l < cfg.depth; l++) {
      for (let i = 0; i < u.length; i++) u[i] = -cfg.lr * g[l][i];
      const { meter } = applyUpdate(slots[l], u, site, recipe.weights, recipe.rounding, roundRng, scratch[l]);
      run.mass += meter.mass; run.lost += meter.lostExpected;
      if (escape === null) { plateau.mass += meter.mass; plateau.lost += meter.lostExpected; }
    }
    if (step % cfg.evalEvery === 0 || step === cfg.steps) {
      const loss = lossAndGrads(stored(), dim, test.x, test.y, 512, false).loss / l0;
      curve.push({ step, loss });
      if (escape === null && loss < cfg.escapeAt) escape = step;
    }
  }
  return { curve, escape, finalLoss: curve[curve.length - 1].loss, lostPlateau: plateau.mass ? plateau.lost / plateau.mass : 0, lostRun: run.mass ? run.lost / run.mass : 0 };
}

/** One recipe at one initial scale, over seeds. */
export interface PlateauCell { init: number; recipe: string; escapes: (number | null)[]; finalLoss: number[]; lostPlateau: number[]; curve: { step: number; loss: number }[] }

/** The plateau experiment's results as saved in swallow.json. */
export interface PlateauData { size: string; config: PlateauConfig; inits: number[]; seeds: number; cells: PlateauCell[] }

/** Initial scales swept per size: the larger one shows a lengthened plateau, the smaller one the frozen case. */
export const PLATEAU_INITS: Record<'tiny' | 'quick' | 'full', number[]> = { tiny: [0.005], quick: [0.02, 0.01], full: [0.04, 0.02, 0.01] };

/** Cells of the experiment from its runs (`get(init, recipe name, seed)`), recipes in order, seeds 1..seeds. */
export function plateauData(size: 'tiny' | 'quick' | 'full', seeds: number, get: (init: number, recipe: string, seed: number) => PlateauRun, recipes = PLATEAU_RECIPES): PlateauData {
  const cells: PlateauCell[] = [];
  for (const init of PLATEAU_INITS[size]) for (const r of recipes) {
    const runs = Array.from({ length: seeds }, (_, k) => get(init, r.name, k + 1));
    cells.push({ init, recipe: r.name, escapes: runs.map((x) => x.escape), finalLoss: runs.map((x) => x.finalLoss), lostPlateau: runs.map((x) => x.lostPlateau), curve: runs[0].curve });
  }
  return { size, config: PLATEAU_CONFIG[size], inits: PLATEAU_INITS[size], seeds, cells };
}

/** Run every recipe at every initial scale with `seeds` seeds (in this process, no run store). */
export function plateauExperiment(size: 'tiny' | 'quick' | 'full', seeds: number, log: (s: string) => void = () => {}, recipes = PLATEAU_RECIPES): PlateauData {
  const cfg = PLATEAU_CONFIG[size];
  const runs = new Map<string, PlateauRun>();
  for (const init of PLATEAU_INITS[size]) for (const r of recipes) {
    const t0 = performance.now();
    for (let k = 1; k <= seeds; k++) runs.set(`${init}|${r.name}|${k}`, runPlateau({ ...cfg, init }, r, k));
    log(`plateau init ${init} ${r.name} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  return plateauData(size, seeds, (init, name, seed) => runs.get(`${init}|${name}|${seed}`)!, recipes);
}
