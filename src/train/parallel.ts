// Data-parallel training over MPI (src/core/mpi.ts): the global batch split between ranks, identical starting weights,
// gradients averaged before every optimizer step, and metrics and non-trainable state (batch-norm moving statistics)
// reduced, so N ranks follow one process with the same global batch up to float summation order.
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../core/errors.ts';
import type { MpiWorld } from '../core/mpi.ts';
import type { Cursor } from '../loader/types.ts';

/** The per-rank batch of a global batch of `batch` samples over `world` (it must divide evenly). */
export function perRankBatch(world: MpiWorld | null, batch: number): number {
  if (!world || world.size === 1) return batch;
  if (batch % world.size !== 0 || batch < world.size) {
    const lo = Math.max(world.size, batch - (batch % world.size)), hi = lo + world.size;
    throw new SlimfitError(`the batch of ${batch} samples does not split evenly between the ${world.size} MPI ranks`, {
      hint: `the batch (--batch) is the global batch, split between the ranks: give a multiple of ${world.size}, e.g. ${lo} or ${hi}, or start another number of ranks (mpirun -np)`,
    });
  }
  return batch / world.size;
}

/** The weights' values as float32 arrays (copies), for collectives. */
function values(vars: tfl.LayerVariable[]): Float32Array[] {
  return vars.map((v) => Float32Array.from(v.read().dataSync() as Float32Array));
}

function assign(vars: tfl.LayerVariable[], arrays: Float32Array[]): void {
  tf.tidy(() => vars.forEach((v, i) => v.write(tf.tensor(arrays[i], v.shape as number[], 'float32'))));
}

const float32 = (vars: tfl.LayerVariable[]) => vars.filter((v) => v.dtype === 'float32');

/** Every rank takes rank 0's weights (trainable and not): the same start whatever each rank's seed or file did. */
export function broadcastWeights(world: MpiWorld, model: tfl.LayersModel): void {
  const vars = float32(model.weights);
  const a = values(vars);
  world.broadcastMany(a);
  if (world.rank !== 0) assign(vars, a);
}

/**
 * Average the model's non-trainable float32 weights over the ranks (batch-norm moving mean and variance: each rank
 * updated them from its part of the batches; their update is linear, so the average is what one process would hold
 * with averaged batch statistics).
 */
export function reduceNonTrainable(world: MpiWorld, model: tfl.LayersModel): void {
  const vars = float32(model.nonTrainableWeights);
  if (!vars.length) return;
  const a = values(vars);
  world.allreduceMany(a, true);
  assign(vars, a);
}

/**
 * What one rank is about to train with, compared across the ranks before anything is trained (or written): the ranks
 * must run the same computation, since their gradients are averaged and applied by the same optimizer on every rank.
 * Fields left out are not compared (trainRun checks the precision before its loader exists).
 */
export interface RankPlan {
  /** Steps per epoch of this rank's loader (each step is a collective: all ranks must take the same number). */
  batchesPerEpoch?: number;
  /** The matrix-product precision asked for on this rank. */
  matmulPrecision: string;
  /** The bf16 kernel this rank resolved ('amx', 'avx512bf16'), when it trains in bf16. */
  bf16Kernel?: string;
  /** How this rank trains a batch ('fused Dense step', 'fused conv step', 'TensorFlow.js trainOnBatch'). */
  step?: string;
  /** Why this rank cannot train as asked (its own SlimfitError's message), if it cannot. */
  refused?: string;
}

/**
 * A rank's refusal as it goes into its {@link RankPlan}: the error's sentence without its hint (the agreed error has
 * its own).
 * @example refusalOf(new SlimfitError('no bf16 here', { hint: 'use float32' })) // 'no bf16 here'
 */
export function refusalOf(e: SlimfitError): string {
  const tail = e.hint ? `. ${e.hint}` : '';
  return tail && e.message.endsWith(tail) ? e.message.slice(0, -tail.length) : e.message;
}

/** Characters of each rank's plan (as JSON) in the all-gather; a longer refusal reason is shortened to fit. */
const PLAN_CHARS = 480;

/** Every rank's plan, in rank order, gathered with one all-reduce (each rank fills its own slot, the others stay 0). */
function gatherPlans(world: MpiWorld, plan: RankPlan): RankPlan[] {
  let text = JSON.stringify(plan);
  if (text.length > PLAN_CHARS && plan.refused) {
    const cut = plan.refused.length - (text.length - PLAN_CHARS) - 1;
    text = JSON.stringify({ ...plan, refused: `${plan.refused.slice(0, Math.max(0, cut))}…` });
  }
  if (text.length > PLAN_CHARS) text = JSON.stringify({ matmulPrecision: '?', refused: 'its settings do not fit the exchange' });
  const buf = new Float64Array(world.size * PLAN_CHARS);
  for (let i = 0; i < text.length; i++) buf[world.rank * PLAN_CHARS + i] = text.charCodeAt(i);
  world.allreduce(buf);
  const plans: RankPlan[] = [];
  for (let r = 0; r < world.size; r++) {
    let t = '';
    for (let i = 0; i < PLAN_CHARS; i++) { const c = buf[r * PLAN_CHARS + i]; if (!c) break; t += String.fromCharCode(c); }
    plans.push(JSON.parse(t) as RankPlan);
  }
  return plans;
}

/** `ranks` as words: 'rank 1', 'ranks 0, 2 and 5'. */
function rankList(ranks: number[]): string {
  return ranks.length === 1 ? `rank ${ranks[0]}` : `ranks ${ranks.slice(0, -1).join(', ')} and ${ranks[ranks.length - 1]}`;
}

/** 'bf16 on rank 0, float32 on ranks 1 and 2': each value of `key` with the ranks that have it. */
function byValue(plans: RankPlan[], key: (p: RankPlan) => string): string | null {
  const groups = new Map<string, number[]>();
  plans.forEach((p, r) => { const v = key(p); groups.set(v, [...(groups.get(v) ?? []), r]); });
  return groups.size > 1 ? [...groups].map(([v, rs]) => `${v} on ${rankList(rs)}`).join(', ') : null;
}

/**
 * Check, before the first step, that every rank trains the same way: one all-gather of each rank's {@link RankPlan}.
 * When any rank refuses (e.g. no bf16 kernel) or the ranks differ in precision, train step or steps per epoch, every
 * rank throws the same SlimfitError naming the ranks (so no rank waits in an all-reduce the others never reach, and no
 * rank averages gradients of another computation); the job then ends on every rank together. Returns every rank's plan
 * (rank order) when they agree.
 *
 * @example
 * agreeOnPlan(world, { matmulPrecision: 'bf16', bf16Kernel: 'amx', step: 'fused Dense step', batchesPerEpoch: 16 });
 */
export function agreeOnPlan(world: MpiWorld, plan: RankPlan): RankPlan[] {
  const plans = gatherPlans(world, plan);
  const fail = (message: string, hint: string): never => {
    world.stopTogether();
    throw new SlimfitError(message, { hint });
  };
  const refused = plans.flatMap((p, r) => (p.refused ? [r] : []));
  if (refused.length) {
    const first = plans[refused[0]].refused!;
    fail(`MPI ${rankList(refused)} of ${world.size} cannot train as asked, so no rank trains (rank ${refused[0]}: ${first})`,
      'fix those ranks (each needs what one process would; `slimfit doctor` on its machine shows the engine and its bf16 kernel), or change the setting on every rank (e.g. --matmul-precision float32)');
  }
  const precision = byValue(plans, (p) => p.matmulPrecision);
  if (precision) {
    fail(`the ${world.size} MPI ranks were given different matmul precisions (${precision}): averaging their gradients would mix two computations, so no rank trains`,
      'give every rank the same --matmul-precision (matmulPrecision in fit/trainRun/trainEpochs)');
  }
  const step = plans.every((p) => p.step !== undefined) ? byValue(plans, (p) => p.step!) : null;
  if (step) {
    fail(`the ${world.size} MPI ranks would train with different train steps (${step}): their optimizers would apply the averaged gradients differently and the weights would drift apart, so no rank trains`,
      'give every rank the same SLIMFIT_DISABLE and a native engine built from the same slimfit (`slimfit doctor` on each machine)');
  }
  const batches = plans.every((p) => p.batchesPerEpoch !== undefined) ? byValue(plans, (p) => String(p.batchesPerEpoch)) : null;
  if (batches) {
    fail(`the ${world.size} MPI ranks' loaders have different numbers of batches per epoch (${batches})`,
      'create each rank\'s loader with the same data, per-rank batch size and rank/worldSize (rankSplit \'batches\')');
  }
  return plans;
}

/**
 * How the ranks' bf16 kernels differ, for the train step line ('AMX tiles on rank 0, AVX512_BF16 on rank 1'), or null
 * when they are the same: the same bf16 rounding of the operands and float32 sums, in another summation order.
 */
export function bf16KernelsNote(plans: RankPlan[]): string | null {
  return byValue(plans, (p) => (p.bf16Kernel === 'amx' ? 'AMX tiles' : p.bf16Kernel === 'avx512bf16' ? 'AVX512_BF16' : String(p.bf16Kernel)));
}

/** A stop asked on this rank (`local`, set before each step) and whether any rank asked (`any`, after the step's all-reduce). */
export interface StopAgreement { local: number; any: boolean }

type GradMap = tf.NamedTensorMap | { name: string; tensor: tf.Tensor }[];
interface Optim { applyGradients(g: GradMap): void }

/**
 * Make `model`'s optimizer average every step's gradients over the ranks before applying them (trainOnBatch computes
 * them and calls optimizer.applyGradients); `stop`'s flag rides in the same all-reduce. Returns the function that
 * takes the hook off again.
 */
export function reduceGradientsOf(world: MpiWorld, model: tfl.LayersModel, stop: StopAgreement): () => void {
  const opt = model.optimizer as unknown as Optim;
  const own = Object.prototype.hasOwnProperty.call(opt, 'applyGradients');
  const original = opt.applyGradients;
  opt.applyGradients = function (this: Optim, grads: GradMap): void {
    const list = Array.isArray(grads) ? grads : Object.entries(grads).map(([name, tensor]) => ({ name, tensor }));
    // Same order on every rank: tfjs lists the model's collected trainable weights in one fixed order.
    const arrays = list.map((g) => Float32Array.from(g.tensor.dataSync() as Float32Array));
    const flag = Float32Array.of(stop.local);
    world.allreduceMany([...arrays, flag], true);
    stop.any = flag[0] > 0;
    const reduced = list.map((g, i) => ({ name: g.name, tensor: tf.tensor(arrays[i], g.tensor.shape, 'float32') }));
    try {
      original.call(this, Array.isArray(grads) ? reduced : Object.fromEntries(reduced.map((r) => [r.name, r.tensor])));
    } finally {
      for (const r of reduced) r.tensor.dispose();
    }
  };
  return () => {
    if (own) opt.applyGradients = original;
    else delete (opt as Partial<Optim>).applyGradients;
  };
}

/**
 * A rank's loader cursor in the form checkpoints keep: the position in the global order, as one process with the
 * global batch would have it (rank 0 of 1). Ranks stop only between global batches, so this is exact.
 */
export function globalCursor(c: Cursor): Cursor {
  return { seed: c.seed, epoch: c.epoch, position: c.position * c.worldSize, rank: 0, worldSize: 1 };
}

/** A checkpoint's global cursor for rank `rank` of `size` (any number of ranks can resume it). */
export function rankCursor(c: Cursor, rank: number, size: number): Cursor {
  const global = c.position * c.worldSize;
  if (global % size !== 0) {
    throw new SlimfitError(`the checkpoint stopped at sample ${global} of its epoch, which does not split between ${size} ranks`, {
      hint: 'resume with the number of ranks that saved it, or one that divides that position',
    });
  }
  return { seed: c.seed, epoch: c.epoch, position: global / size, rank, worldSize: size };
}
