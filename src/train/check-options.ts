// Checks of the training API's arguments (fit, evaluate, trainRun, evalRun): a bad option is a SlimfitError naming
// the function and the option, before any data is opened (see src/core/options.ts).
import { SlimfitError } from '../core/errors.ts';
import { checkBool, checkFunction, checkInt, checkNumber, checkOneOf, checkOptions, checkString, shown } from '../core/options.ts';
import { checkLoaderOptions } from '../loader/loader.ts';
import { LOADER_OPTION_KEYS } from '../loader/types.ts';
import { checkAugment, parseAugmentSpec } from '../loader/augment.ts';
import { OPTIMIZERS } from './loop.ts';
import { MATMUL_PRECISIONS } from '../engine/index.ts';

/** fit's option names: the loop's, the loader's and fit's own. */
export const FIT_OPTION_KEYS = [
  ...LOADER_OPTION_KEYS,
  'epochs', 'initialEpoch', 'progress', 'lr', 'lrDecay', 'lrSchedule', 'callbacks', 'onEpochEnd', 'signal', 'onInterrupt', 'resumeState', 'fused', 'matmulPrecision', 'log',
  'split', 'optimizer', 'validate', 'validationSplit', 'backend', 'remote',
] as const;

/** evaluate's and evalRun's option names. */
export const EVALUATE_OPTION_KEYS = ['split', 'batchSize', 'progress', 'backend', 'verifyChecksums', 'remote'] as const;
export const EVAL_RUN_OPTION_KEYS = [...EVALUATE_OPTION_KEYS, 'outDir', 'log'] as const;

/** trainRun's option names (TrainRunOptions). */
export const TRAIN_RUN_OPTION_KEYS = [
  'model', 'epochs', 'batchSize', 'lr', 'lrDecay', 'shift', 'augment', 'valSplit', 'valFraction', 'optimizer', 'seed', 'out', 'resume', 'force', 'split', 'backend',
  'shuffle', 'shuffleShards', 'workers', 'prefetch', 'evaluateTest', 'progress', 'log', 'verifyChecksums', 'patience', 'keepBest', 'lrSchedule', 'reduceLrOnPlateau', 'signal',
  'mix', 'balanced', 'classNames', 'remote', 'matmulPrecision',
] as const;

/** A tf.LayersModel (duck-typed: the user's tfjs may be another copy than ours, so instanceof cannot tell). */
export function checkModel(where: string, model: unknown): void {
  const m = model as { fit?: unknown; predict?: unknown; inputs?: unknown } | null;
  if (!(m && typeof m === 'object' && typeof m.fit === 'function' && typeof m.predict === 'function' && Array.isArray(m.inputs))) {
    throw new SlimfitError(`${where}: the model must be a tf.LayersModel (from buildModel, loadModel or tf.sequential/tf.model), got ${shown(model)}`);
  }
}

/** Training data: a store folder, a DataSource, {x, y} .npy paths or {npz, x, y}. */
export function checkData(where: string, data: unknown): void {
  const d = data as Record<string, unknown> | null;
  const ok = (typeof data === 'string' && data !== '')
    || (d !== null && typeof d === 'object' && (
      (typeof d.samples === 'number' && typeof d.close === 'function') // a DataSource
      || (typeof d.x === 'string' && typeof d.y === 'string' && (d.npz === undefined || typeof d.npz === 'string'))));
  if (!ok) {
    throw new SlimfitError(`${where}: the data must be a store folder path, a DataSource (openDataset(dir).split(name), fromNpy, fromNpz), { x: 'x.npy', y: 'y.npy' } or { npz: 'data.npz', x: 'x', y: 'y' }, got ${shown(data)}`);
  }
}

/** Everything fit checks before it starts. */
export function checkFitArgs(model: unknown, data: unknown, opts: Record<string, unknown>): void {
  const w = 'fit';
  checkModel(w, model);
  checkData(w, data);
  checkOptions(w, opts, FIT_OPTION_KEYS);
  checkLoaderOptions(w, opts);
  checkInt(w, 'epochs', opts.epochs, 1);
  checkInt(w, 'initialEpoch', opts.initialEpoch, 0);
  checkNumber(w, 'lr', opts.lr, 0, Infinity, { low: true });
  checkNumber(w, 'lrDecay', opts.lrDecay, 0, 1, { low: true }); // (0, 1], the loop's range: refused here, before trainRun writes a run folder
  checkOneOf(w, 'optimizer', opts.optimizer, OPTIMIZERS);
  checkString(w, 'split', opts.split);
  checkString(w, 'backend', opts.backend);
  checkBool(w, 'progress', opts.progress);
  checkBool(w, 'validate', opts.validate);
  checkBool(w, 'fused', opts.fused);
  checkOneOf(w, 'matmulPrecision', opts.matmulPrecision, MATMUL_PRECISIONS);
  // 0 = no hold-out; 1 would leave nothing to train on.
  checkNumber(w, 'validationSplit', opts.validationSplit, 0, 1, { high: true });
  for (const k of ['onEpochEnd', 'onInterrupt', 'log'] as const) checkFunction(w, k, opts[k]);
  if (opts.lrSchedule !== undefined && typeof opts.lrSchedule !== 'string' && typeof opts.lrSchedule !== 'object') {
    throw new SlimfitError(`${w}: option lrSchedule must be a schedule string such as 'step:10:0.1' or a schedule object, got ${shown(opts.lrSchedule)}`);
  }
}

/** evaluate's and evalRun's options. */
export function checkEvalOptions(where: string, opts: Record<string, unknown>, keys: readonly string[]): void {
  checkOptions(where, opts, keys);
  checkString(where, 'split', opts.split);
  checkInt(where, 'batchSize', opts.batchSize, 1);
  checkBool(where, 'progress', opts.progress);
  checkString(where, 'backend', opts.backend);
  checkBool(where, 'verifyChecksums', opts.verifyChecksums);
  checkString(where, 'outDir', opts.outDir);
  checkFunction(where, 'log', opts.log);
}

/** trainRun's options (the CLI checks its flags itself; library callers come through here). */
export function checkTrainRunOptions(opts: Record<string, unknown>): void {
  const w = 'trainRun';
  checkOptions(w, opts, TRAIN_RUN_OPTION_KEYS);
  checkString(w, 'model', opts.model);
  checkInt(w, 'epochs', opts.epochs, 1);
  checkInt(w, 'batchSize', opts.batchSize, 1);
  checkNumber(w, 'lr', opts.lr, 0, Infinity, { low: true });
  checkNumber(w, 'lrDecay', opts.lrDecay, 0, 1, { low: true }); // (0, 1], the loop's range: refused here, before trainRun writes a run folder
  checkInt(w, 'shift', opts.shift, 0);
  if (typeof opts.augment === 'string') parseAugmentSpec(opts.augment, `${w}: option augment`);
  else checkAugment(w, opts.augment);
  checkString(w, 'valSplit', opts.valSplit);
  checkNumber(w, 'valFraction', opts.valFraction, 0, 1, { high: true });
  checkOneOf(w, 'optimizer', opts.optimizer, OPTIMIZERS);
  checkOneOf(w, 'matmulPrecision', opts.matmulPrecision, MATMUL_PRECISIONS);
  checkInt(w, 'seed', opts.seed, -(2 ** 52), 2 ** 52);
  checkString(w, 'out', opts.out);
  checkString(w, 'split', opts.split);
  checkString(w, 'backend', opts.backend);
  checkOneOf(w, 'shuffle', opts.shuffle, ['global', 'block', 'shard', false] as const);
  checkInt(w, 'shuffleShards', opts.shuffleShards, 1);
  checkInt(w, 'workers', opts.workers, 0);
  checkInt(w, 'prefetch', opts.prefetch, 1);
  checkInt(w, 'patience', opts.patience, 0);
  for (const k of ['resume', 'force', 'evaluateTest', 'progress', 'verifyChecksums', 'keepBest', 'balanced'] as const) checkBool(w, k, opts[k]);
  checkString(w, 'lrSchedule', opts.lrSchedule);
  checkString(w, 'reduceLrOnPlateau', opts.reduceLrOnPlateau);
  checkFunction(w, 'log', opts.log);
  if (opts.classNames !== undefined && !(Array.isArray(opts.classNames) && opts.classNames.length > 0 && opts.classNames.every((n) => typeof n === 'string' && n !== ''))) {
    throw new SlimfitError(`${w}: option classNames must be a list of non-empty names (index = label), got ${shown(opts.classNames)}`);
  }
}
