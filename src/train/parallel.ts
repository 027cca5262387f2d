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
