// slimfit's training API: fit/evaluate in one line from a store or plain files, plus models, runs and reports.
import type * as tfl from '@tensorflow/tfjs-layers';
import type { LoaderOptions } from '../loader/types.ts';
import type { RemoteOptions } from '../remote/index.ts';
import { initBackend } from './backend.ts';
import { DEFAULTS } from './defaults.ts';
import { type DataInput, makeEvalLoader, makeLoader, resolveData } from './data.ts';
import { compileDefault, type EvalResult, evaluateLoader, type History, type LoopOptions, type OptimizerName, trainEpochs } from './loop.ts';
import { checkModelFits, checkTrainable } from './run.ts';
import { checkData, checkEvalOptions, checkFitArgs, checkModel, EVALUATE_OPTION_KEYS } from './check-options.ts';
import { mpiWorld } from '../core/mpi.ts';
import { perRankBatch } from './parallel.ts';

export { DEFAULTS } from './defaults.ts';
export { initBackend, type BackendInfo } from './backend.ts';
export { type DataInput, resolveData } from './data.ts';
export { type EpochLog, type EvalResult, type History, type LoopState, compileDefault, evaluateLoader, trainEpochs } from './loop.ts';
export {
  type BestWeightsStore, type CallbackInput, type CallbackLogs, type EarlyStoppingOptions, type KeepBestOptions, type ReduceLrOptions,
  EarlyStopping, KeepBest, ReduceLrOnPlateau, earlyStopping, keepBest, memoryWeightsStore, reduceLrOnPlateau,
} from './callbacks.ts';
export { type LrSchedule, LR_SCHEDULE_SYNTAX, lrFactor, parseLrSchedule } from './schedule.ts';
export { loadModel, saveModel } from './modelio.ts';
export { BUILTIN_MODELS, buildModel } from './models.ts';
export { type MpiWorld, mpiWorld } from '../core/mpi.ts';
export { evalRun, type RunSummary, trainRun, type TrainRunOptions } from './run.ts';
export { writeReport } from './report.ts';

/** Options of {@link fit}: loop options, loader options (defaults in DEFAULTS: batch size, shuffle, seed...) and the default optimizer. */
export interface FitOptions extends Omit<LoopOptions, 'validation' | 'world'>, LoaderOptions {
  /** Split to train on when `data` is a store (default 'train'). */
  split?: string;
  /** Used only when the model is not compiled yet (default adam, 1e-3). */
  optimizer?: OptimizerName;
  lr?: number;
  /** Validate after each epoch (default true): on the store's 'val' split when it has one, else on `validationSplit`. */
  validate?: boolean;
  /** Without a 'val' split: the fraction of the training samples held out at random (seeded by `seed`) for validation (default 0.1; 0 = none). */
  validationSplit?: number;
  backend?: string;
  /** A store given by URL: cache folder and limit, S3 endpoint, retries (see openDataset). */
  remote?: RemoteOptions;
  /**
   * Receives status lines: first the backend/engine note `slimfit train` prints (e.g. "backend: wasm; native engine
   * ..."), then how batches are trained. Default: only the backend note, written to stderr as "slimfit: backend: ..."
   * by the first fit of the process; `() => {}` prints nothing.
   */
  log?: (line: string) => void;
}

/** Whether a fit without `log` already wrote the backend note to stderr (once per process is enough to say it). */
let backendNoted = false;

/**
 * Train `model` on `data` (store dir, DataSource, {x, y} .npy paths or {npz, x, y}) with defaults chosen for you:
 * batch DEFAULTS.batchSize (128), global shuffle, prefetching workers, normalization from the manifest's mean/std, one-hot labels,
 * validation on the store's 'val' split (without one: 10% of the training samples held out at random). Returns the per-epoch history.
 *
 * @example
 * const model = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10 });
 * const history = await fit(model, 'mnist-store', { epochs: 5 });   // or { x: 'x.npy', y: 'y.npy' }
 * console.log(history.epochs.at(-1)?.valAccuracy);
 */
export async function fit(model: tfl.LayersModel, data: DataInput, opts: FitOptions = {}): Promise<History> {
  checkFitArgs(model, data, opts as Record<string, unknown>);
  // Under mpirun: data-parallel, each rank on its share of every global batch (batchSize stays the global batch).
  const world = mpiWorld();
  const parallel = world && world.size > 1 ? world : null;
  const rankBatch = perRankBatch(parallel, opts.batchSize ?? DEFAULTS.batchSize);
  const info = await initBackend(opts.backend);
  if (opts.log) opts.log(info.note);
  else if (!backendNoted && (!parallel || parallel.rank === 0)) {
    backendNoted = true;
    process.stderr.write(`slimfit: ${info.note}\n`);
  }
  const rd = await resolveData(data, opts.split ?? DEFAULTS.split, undefined, opts.validate === false ? 0 : (opts.validationSplit ?? DEFAULTS.valFraction), opts.seed ?? DEFAULTS.seed, { verifyChecksums: opts.verifyChecksums, remote: opts.remote });
  const closers: Array<{ close(): Promise<void> }> = [];
  try {
    checkTrainable(rd);
    checkModelFits(model, rd.main, rd.classes, model.name);
    compileDefault(model, opts.optimizer, opts.lr);
    const loader = makeLoader(rd.main, rd.classes, parallel ? { ...opts, batchSize: rankBatch, rank: parallel.rank, worldSize: parallel.size, rankSplit: 'batches' } : opts);
    closers.push(loader);
    const val = rd.val && opts.validate !== false ? makeEvalLoader(rd.val, rd.classes, opts) : null;
    if (val) closers.push(val);
    const quiet = parallel !== null && parallel.rank !== 0;
    return await trainEpochs(model, loader, { ...opts, validation: val, world: parallel, progress: quiet ? false : opts.progress });
  } finally {
    for (const c of closers) await c.close();
    await rd.close();
  }
}

/**
 * Stream split `split` (default 'test') of `data` through `model`: accuracy, loss and confusion matrix.
 *
 * @example
 * const { accuracy, confusion } = await evaluate(model, 'mnist-store', { split: 'test' });
 */
export async function evaluate(model: tfl.LayersModel, data: DataInput, opts: { split?: string; batchSize?: number; progress?: boolean; backend?: string; verifyChecksums?: boolean; remote?: RemoteOptions } = {}): Promise<EvalResult> {
  checkModel('evaluate', model);
  checkData('evaluate', data);
  checkEvalOptions('evaluate', opts, EVALUATE_OPTION_KEYS);
  await initBackend(opts.backend);
  const rd = await resolveData(data, opts.split ?? DEFAULTS.evalSplit, undefined, 0, 0, { verifyChecksums: opts.verifyChecksums, remote: opts.remote });
  try {
    checkModelFits(model, rd.main, rd.classes, model.name);
    const loader = makeEvalLoader(rd.main, rd.classes, { verifyChecksums: opts.verifyChecksums }, opts.batchSize);
    try {
      return await evaluateLoader(model, loader, { progress: opts.progress });
    } finally {
      await loader.close();
    }
  } finally {
    await rd.close();
  }
}
