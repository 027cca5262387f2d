// A training run on disk: runs/NAME with run.json, log.jsonl, a checkpoint per epoch (model + optimizer + loader cursor),
// resume, final evaluation and report.md. `slimfit train/eval` and `demo` are thin wrappers around these functions.
import { checkData, checkEvalOptions, checkTrainRunOptions, EVAL_RUN_OPTION_KEYS } from './check-options.ts';
import { checkString } from '../core/options.ts';
import { createHash } from 'node:crypto';
import { renameSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { isSlimfitError, SlimfitError } from '../core/errors.ts';
import { checkMixable, mixSources, verifySource } from '../loader/index.ts';
import { isLoadable } from '../loader/layout.ts';
import type { PlanConfig } from '../loader/plan.ts';
import type { AugmentOptions, Cursor, DataSource, LoaderOptions } from '../loader/types.ts';
import { formatAugment, parseAugmentSpec } from '../loader/augment.ts';
import { type RemoteOptions } from '../remote/index.ts';
import { formatBytes, peakRssBytes } from '../core/rss.ts';
import { initBackend } from './backend.ts';
import { bf16Kernel } from '../engine/index.ts';
import { DEFAULTS } from './defaults.ts';
import { type DataInput, makeEvalLoader, makeLoader, type MixSpec, normalizeMix, openMixSources, type ResolvedData, resolveData, trainLoaderOptions } from './data.ts';
import { compileDefault, matmulPrecisionRefusal, type EpochLog, evaluateLoader, type EvalResult, type LoopState, modelClasses, type OptimizerName, restoreOptimizerExactly, trainEpochs } from './loop.ts';
import { type BestWeightsStore, type CallbackInput, earlyStopping, keepBest, memoryWeightsStore, reduceLrOnPlateau } from './callbacks.ts';
import { mpiWorld } from '../core/mpi.ts';
import { agreeOnPlan, globalCursor, refusalOf, perRankBatch, rankCursor } from './parallel.ts';
import { parseLrSchedule } from './schedule.ts';
import { loadModel, loadModelForTraining, saveModel } from './modelio.ts';
import { buildModel, isBuiltinModel } from './models.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { writeConfusion, writeReport } from './report.ts';
import { absoluteData, checkSameData, dataFingerprint, type RunConfig, resumeConfig, savedModelName } from './run-config.ts';

/** Options of {@link trainRun} (the `slimfit train` flags). */
export interface TrainRunOptions {
  /** 'mlp' | 'cnn' | 'two-branch' or a path to a tfjs model.json / model folder. */
  model?: string;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  /** Per-epoch learning-rate factor (epoch e uses lr * lrDecay^e; default 1). */
  lrDecay?: number;
  /** Seeded random shift augmentation of training images by up to this many pixels (default 0). */
  shift?: number;
  /**
   * Seeded random augmentation of training samples (never of validation or test): an `--augment` spec such as
   * 'rotate=10,scale=0.1,shift=2,erase=0.5' or the loader's AugmentOptions object. Saved in run.json; changeable on resume.
   */
  augment?: string | AugmentOptions;
  /** Split evaluated after every epoch (default 'val' when the store has one). */
  valSplit?: string;
  /**
   * Precision of the matrix products (default 'float32'): 'bf16' is the opt-in mixed precision of the fused Dense
   * step (bfloat16 GEMM operands, float32 accumulation, weights and Adam; see LoopOptions.matmulPrecision). Saved in
   * run.json and named in report.md; changeable on resume.
   */
  matmulPrecision?: 'float32' | 'bf16';
  /** With no validation split: fraction of the training samples held out at random for validation (default 0.1; 0 = none). */
  valFraction?: number;
  optimizer?: OptimizerName;
  seed?: number;
  /** Run folder (created; default runs/<model>-<time>). */
  out?: string;
  /**
   * Continue the run in `out` from its last checkpoint (from scratch when it has none yet), with the options saved in
   * the run; options given here replace saved ones where a run can change them. `data` may be omitted.
   */
  resume?: boolean;
  /** With `resume`: continue although the data path given, or the data's contents, differ from the run's. */
  force?: boolean;
  /** Split to train on (default 'train'). */
  split?: string;
  backend?: string;
  shuffle?: LoaderOptions['shuffle'];
  /** With shuffle 'shard': shards per window (default LOADER_DEFAULTS.shuffleShards, saved in run.json). */
  shuffleShards?: number;
  workers?: number;
  prefetch?: number;
  /** Evaluate on the store's test split after training and put it in the report (default true when it exists). */
  evaluateTest?: boolean;
  progress?: boolean;
  /** Where status lines go (default stderr). */
  log?: (line: string) => void;
  /** Check each store shard's SHA-256 once before training reads it (default true). */
  verifyChecksums?: boolean;
  /** A store given by URL: cache folder and limit, S3 endpoint, retries (see openDataset). */
  remote?: RemoteOptions;
  /**
   * Early stopping on val_loss: stop after this many epochs in a row without a lower validation loss and put back the
   * best epoch's weights (kept in the run's best/ folder). Needs validation data.
   */
  patience?: number;
  /** Save the model into the run's best/ folder whenever val_loss (loss without validation) reaches a new low. */
  keepBest?: boolean;
  /** Learning-rate schedule, e.g. 'step:10:0.1', 'exp:0.95', 'cosine:2@batch' (see LR_SCHEDULE_SYNTAX); multiplies lr x lrDecay^epoch. */
  lrSchedule?: string;
  /** Reduce-LR-on-plateau on val_loss (loss without validation): 'PATIENCE[:FACTOR[:MIN_LR]]', e.g. '2:0.5'. */
  reduceLrOnPlateau?: string;
  /**
   * When it aborts (the CLI aborts it on SIGINT/SIGTERM), training stops after the batch in progress and saves a
   * checkpoint there (model, optimizer, loader cursor, loop and callback state); the summary's `interrupted` says where.
   */
  signal?: AbortSignal;
  /**
   * Train on several stores at once: `data` is the first source and `mix.with` lists the others, drawn at random with
   * `mix.weights` (see mixSources). Validation and test data come from `data`. Saved in run.json; a resume checks it.
   */
  mix?: MixSpec;
  /** Draw the classes of `data` equally often (class-balanced sampling; with a mix use `mix.balanced`). */
  balanced?: boolean;
  /** Class names (index = label) for .npy/.npz data, which has none: used in the report, the confusion matrix and run.json. */
  classNames?: string[];
}

/** The outcome of a run. */
export interface RunSummary {
  out: string;
  /** Path of report.md ('' when the run was interrupted: no report is written then). */
  report: string;
  /** Set when `signal` stopped the run: the epoch (1-based) it stopped in and the batches of that epoch done; a checkpoint holds that point. */
  interrupted?: { epoch: number; batchesDone: number; samplesDone: number };
  backend: string;
  /** Precision of the matrix products the run trained with (absent when interrupted or on ranks > 0). */
  matmulPrecision?: 'float32' | 'bf16';
  history: EpochLog[];
  test?: EvalResult;
  wallSeconds: number;
  peakRss: number;
  /** Under mpirun: this process's MPI rank (only rank 0 writes the run folder and has a report). */
  rank?: number;
  /** Under mpirun with several ranks: the split, and this rank's time in MPI_Allreduce (waiting for slower ranks included). */
  parallel?: { ranks: number; rankBatch: number; library: string; allreduceCalls: number; allreduceSeconds: number; allreduceFloats: number };
}

/** Saved with every checkpoint (in the same atomic rename as the weights). */
interface CheckpointState {
  epochsDone: number;
  /** The next unseen training sample: mid-epoch (position > 0) when the run was interrupted there. */
  cursor: Cursor;
  history: EpochLog[];
  /** Sums of the epoch in progress and callback state (early stopping, keep-best, plateau); absent in older runs. */
  loop?: LoopState;
  /** MPI ranks of the invocation that wrote it (absent in older runs and for one process: 1). */
  ranks?: number;
}

/** Whether a checkpoint leaves nothing to train: all epochs done, or early stopping ended the run. */
const finishedState = (state: CheckpointState, epochs: number): boolean =>
  state.epochsDone >= epochs || state.history[state.history.length - 1]?.stoppedEarly !== undefined;

const MODEL_DIR = 'model';
/** The run's keep-best / early-stopping copy of the best epoch's model (weights only, plus best.json). */
const BEST_DIR = 'best';
/**
 * A new best model is written here by the callbacks (before the epoch's checkpoint) and becomes best/ only once the
 * checkpoint that records that epoch is written: a run stopped between the two (a second Ctrl-C) keeps the best/ its
 * checkpoint knows, not one of an epoch the resume will train again.
 */
const BEST_PENDING_DIR = '.best-pending';

/** Make the pending best model best/ (both renames in one synchronous step, as saveModel does for its folder). */
async function promoteBest(out: string): Promise<void> {
  const best = join(out, BEST_DIR), old = join(out, `.${BEST_DIR}.tmp-${process.pid}-${Date.now()}.old`);
  const had = await stat(best).then(() => true, () => false);
  if (had) renameSync(best, old);
  renameSync(join(out, BEST_PENDING_DIR), best);
  if (had) await rm(old, { recursive: true, force: true });
}

/** The epoch a best model folder's best.json records (null when it has none or cannot be read). */
async function bestFolderEpoch(dir: string): Promise<number | null> {
  try {
    const e = (JSON.parse(await readFile(join(dir, 'best.json'), 'utf8')) as { epoch?: unknown }).epoch;
    return typeof e === 'number' ? e : null;
  } catch { return null; }
}

/** An augmentation option as the canonical `--augment` spec run.json keeps (undefined when not given). */
function augmentSpec(a: string | AugmentOptions | undefined): string | undefined {
  if (a === undefined) return undefined;
  return formatAugment(typeof a === 'string' ? parseAugmentSpec(a, 'augment') : a);
}

/** Parse 'PATIENCE[:FACTOR[:MIN_LR]]' of `--reduce-lr-on-plateau`. */
function parsePlateau(spec: string): { patience: number; factor: number; minLr: number } {
  const [p, f, m, ...extra] = spec.split(':');
  const n = (v: string | undefined, dflt: number) => (v === undefined ? dflt : v.trim() === '' ? NaN : Number(v));
  const r = { patience: n(p, NaN), factor: n(f, DEFAULTS.plateauFactor), minLr: n(m, DEFAULTS.plateauMinLr) };
  if (extra.length || !(Number.isInteger(r.patience) && r.patience >= 0) || !(r.factor > 0 && r.factor < 1) || !(r.minLr >= 0)) {
    throw new SlimfitError(`--reduce-lr-on-plateau '${spec}' is not PATIENCE[:FACTOR[:MIN_LR]]`, { hint: 'give a whole number of epochs, a factor between 0 and 1 and a minimum rate >= 0, e.g. 3:0.5 or 3:0.5:1e-5' });
  }
  return r;
}

async function readJson<T>(path: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new SlimfitError(`${what} is missing`, { file: path, hint: 'is this a run folder written by `slimfit train`? (a run stopped before it saved run.json is started again with `slimfit train DIR --out RUN`)' });
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new SlimfitError(`${what} is not valid JSON`, { file: path });
  }
}

/** Refuse data no classifier can learn from: fewer than 2 classes, or (when the store counts them) samples of only one. */
export function checkTrainable(rd: ResolvedData): void {
  if (rd.classes < 2) {
    throw new SlimfitError(`the data has ${rd.classes} class${rd.classes === 1 ? '' : 'es'}; a classifier needs at least 2 to tell apart`, {
      file: rd.main.name, hint: 'with one class every answer is right and training learns nothing; convert the input with its other classes',
    });
  }
  const present = rd.classCounts?.flatMap((c, i) => (c > 0 ? [rd.classNames[i] ?? String(i)] : []));
  if (present && present.length < 2) {
    throw new SlimfitError(`the training samples are all of one class (${present[0] ?? 'none'}) although the store names ${rd.classes}`, {
      file: rd.main.name, hint: 'a classifier needs samples of at least 2 classes; re-convert with samples of the other classes in this split',
    });
  }
}

/** Refuse a model whose input or output does not fit the data, or whose layers shrink the samples to nothing, before any step. */
export function checkModelFits(model: tfl.LayersModel, src: DataSource, classes: number, modelName: string): void {
  const out = modelClasses(model);
  if (out !== classes) {
    throw new SlimfitError(`the model outputs ${out} classes but the data has ${classes} (${src.name})`, {
      file: modelName, hint: `give the model a final layer with ${classes} units, or train a built-in model (--model cnn)`,
    });
  }
  const want = model.inputs[0].shape.slice(1);
  const have = src.x.shape;
  const fits = want.length === have.length && want.every((d, i) => d === null || d === have[i]);
  if (!fits) {
    throw new SlimfitError(`the model expects samples of shape [${want.join(',')}] but the data has [${have.join(',')}]`, {
      file: modelName, hint: 'build the model for this input shape (a Reshape layer first works for flat vs image data)',
    });
  }
  // A layer with an empty output (e.g. pooling 1x1 maps) fails deep inside the backend; say which and why here.
  for (const layer of model.layers) {
    const os = layer.outputShape;
    const shapes = (Array.isArray(os[0]) ? os : [os]) as Array<Array<number | null>>;
    const empty = shapes.find((sh) => sh.some((d) => d !== null && d <= 0));
    if (empty) {
      throw new SlimfitError(`layer '${layer.name}' of the model turns samples of shape [${have.join(',')}] into [${empty.slice(1).join(',')}]: they are too small for it`, {
        file: modelName, hint: 'use a model with fewer or smaller convolutions and pools (--model mlp needs no minimum size), or convert with --resize to larger images',
      });
    }
  }
}

/** Build or load the model for a fresh run. */
async function freshModel(name: string, src: DataSource, classes: number, seed: number, log: (l: string) => void): Promise<tfl.LayersModel> {
  if (isBuiltinModel(name)) return buildModel(name, { inputShape: src.x.shape, classes, seed, source: src.name });
  const { model, note } = await loadModelForTraining(name, seed);
  log(note);
  return model;
}

function defaultOut(model: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  return join('runs', `${isBuiltinModel(model) ? model : 'model'}-${stamp}`);
}

/**
 * Train `data` (a store dir, or .npy/.npz; unused with `resume`) into run folder `opts.out`: progress per epoch, JSONL log,
 * atomic checkpoint per epoch with the loader cursor, final test evaluation and report.md (what `slimfit train` does).
 *
 * @example
 * const summary = await trainRun('mnist-store', { model: 'cnn', epochs: 5, out: 'runs/cnn' });
 * await trainRun(undefined, { out: 'runs/cnn', resume: true, epochs: 8 }); // continue where it stopped
 * const stop = new AbortController();                                      // e.g. aborted on SIGINT
 * const r = await trainRun('mnist-store', { out: 'runs/es', epochs: 50, patience: 3, lrSchedule: 'cosine:2', signal: stop.signal });
 * if (r.interrupted) console.log(`checkpoint in epoch ${r.interrupted.epoch}; resume with { resume: true }`);
 */
export async function trainRun(data: DataInput | undefined, opts: TrainRunOptions = {}): Promise<RunSummary> {
  if (data !== undefined) checkData('trainRun', data);
  checkTrainRunOptions(opts as Record<string, unknown>);
  const t0 = performance.now();
  // Under mpirun every rank runs this function on its share of each global batch; only rank 0 writes and prints.
  const world = mpiWorld();
  const writer = !world || world.rank === 0;
  const log = !writer ? () => {} : opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const info = await initBackend(opts.backend);
  log(info.note);
  let cfg: RunConfig;
  let state: CheckpointState | null = null;
  const out = resolve(opts.out ?? defaultOut(opts.model ?? DEFAULTS.model));
  if (opts.resume) {
    const saved = await readJson<RunConfig>(join(out, 'run.json'), 'run.json');
    const hasCheckpoint = await stat(join(out, MODEL_DIR, 'state.json')).then(() => true, () => false);
    const given = {
      epochs: opts.epochs, batchSize: opts.batchSize, lr: opts.lr, lrDecay: opts.lrDecay, shift: opts.shift, augment: augmentSpec(opts.augment), valSplit: opts.valSplit, valFraction: opts.valFraction,
      model: opts.model === undefined ? undefined : savedModelName(opts.model, isBuiltinModel), split: opts.split, optimizer: opts.optimizer, seed: opts.seed, shuffle: opts.shuffle, shuffleShards: opts.shuffleShards,
      patience: opts.patience, keepBest: opts.keepBest, lrSchedule: opts.lrSchedule, reduceLrOnPlateau: opts.reduceLrOnPlateau, matmulPrecision: opts.matmulPrecision,
      balanced: opts.balanced, mix: opts.mix && normalizeMix(opts.mix, opts.split ?? saved.split),
    };
    cfg = resumeConfig(saved, given, data, { force: opts.force, run: out, hasCheckpoint, log });
    // An augmentation given again replaces the run's whole augmentation, its --shift included (they would disagree).
    if (opts.augment !== undefined && opts.shift === undefined && cfg.shift) {
      log(`--augment replaces the run's augmentation, its --shift ${cfg.shift} included`);
      cfg.shift = 0;
    }
    if (hasCheckpoint) {
      state = await readJson<CheckpointState>(join(out, MODEL_DIR, 'state.json'), 'the checkpoint state');
      const stop = state.history[state.history.length - 1]?.stoppedEarly;
      if (stop) log(`run stopped early after epoch ${state.epochsDone} (${stop.monitor} best at epoch ${stop.bestEpoch}); nothing to train (start a new run to train longer)`);
      else if (state.epochsDone >= cfg.epochs) log(`run already has ${state.epochsDone} of ${cfg.epochs} epochs; nothing to train (pass --epochs to extend)`);
      else if (state.cursor.position > 0) log(`resuming ${out} in epoch ${state.epochsDone + 1} of ${cfg.epochs} at sample ${state.cursor.position} (where it was interrupted)`);
      else log(`resuming ${out} after epoch ${state.epochsDone} of ${cfg.epochs} (loader cursor: epoch ${state.cursor.epoch}, sample ${state.cursor.position})`);
    } else {
      log(`${out} has no checkpoint yet (it stopped before its first epoch ended): starting it from scratch with its saved options, ${cfg.epochs} epochs`);
    }
  } else {
    if (data === undefined) throw new SlimfitError('no training data given', { hint: 'pass a store directory (or use --resume runs/NAME)' });
    if (await stat(join(out, 'run.json')).then(() => true, () => false)) {
      throw new SlimfitError('this run folder already holds a run', { file: out, hint: 'pick another --out, or continue it with --resume' });
    }
    cfg = {
      data: absoluteData(data), model: savedModelName(opts.model ?? DEFAULTS.model, isBuiltinModel), epochs: opts.epochs ?? DEFAULTS.epochs,
      batchSize: opts.batchSize ?? DEFAULTS.batchSize, lr: opts.lr ?? DEFAULTS.lr, optimizer: opts.optimizer ?? DEFAULTS.optimizer,
      seed: opts.seed ?? DEFAULTS.seed, split: opts.split ?? DEFAULTS.split, shuffle: opts.shuffle ?? DEFAULTS.shuffle,
      shuffleShards: (opts.shuffle ?? DEFAULTS.shuffle) === 'shard' ? (opts.shuffleShards ?? DEFAULTS.shuffleShards) : opts.shuffleShards,
      lrDecay: opts.lrDecay ?? DEFAULTS.lrDecay, shift: opts.shift ?? DEFAULTS.shift, augment: augmentSpec(opts.augment) ?? DEFAULTS.augment, valSplit: opts.valSplit, valFraction: opts.valFraction ?? DEFAULTS.valFraction,
      patience: opts.patience, keepBest: opts.keepBest, lrSchedule: opts.lrSchedule, reduceLrOnPlateau: opts.reduceLrOnPlateau,
      matmulPrecision: opts.matmulPrecision ?? DEFAULTS.matmulPrecision,
      ...(opts.balanced ? { balanced: true } : {}), ...(opts.classNames ? { classNames: opts.classNames } : {}), ...(opts.mix ? { mix: normalizeMix(opts.mix, opts.split ?? DEFAULTS.split) } : {}),
    };
  }
  if (opts.resume && opts.classNames && JSON.stringify(opts.classNames) !== JSON.stringify(cfg.classNames)) {
    if (cfg.classNames) throw new SlimfitError(`this run names its classes ${cfg.classNames.join(', ')}, not ${opts.classNames.join(', ')}`, { file: out, hint: 'drop --class-names to resume with the run\'s own names' });
    cfg.classNames = opts.classNames;
  }
  const precision = cfg.matmulPrecision ?? DEFAULTS.matmulPrecision;
  // A CPU without bf16 is refused before the run folder is touched; under MPI all ranks agree on it first (below).
  const parallelRun = world !== null && world.size > 1;
  let refusedHere: SlimfitError | null = null;
  if (precision === 'bf16') {
    try { bf16Kernel(); } catch (e) { if (!parallelRun || !isSlimfitError(e)) throw e; refusedHere = e; }
  }
  if (cfg.mix && cfg.balanced) throw new SlimfitError('balanced and mix go separately: with a mix, say which sources are class-balanced in mix.balanced (--balanced 1,2)');
  // Options are checked before any data is read or the run folder is touched.
  if (cfg.lrSchedule !== undefined) parseLrSchedule(cfg.lrSchedule);
  const plateau = cfg.reduceLrOnPlateau !== undefined ? parsePlateau(cfg.reduceLrOnPlateau) : undefined;
  if (cfg.patience !== undefined && !(Number.isInteger(cfg.patience) && cfg.patience >= 0)) throw new SlimfitError(`--patience must be a whole number >= 0, got ${cfg.patience}`);
  const rankBatch = perRankBatch(world, cfg.batchSize);
  if (world && world.size > 1 && cfg.mix) {
    throw new SlimfitError(`mixing stores (--weights) is not split between ${world.size} MPI ranks yet`, { hint: 'train a mix in one process, or one store under mpirun' });
  }
  const rd: ResolvedData = await resolveData(cfg.data, cfg.split, cfg.valSplit, cfg.valFraction ?? 0, cfg.seed, { verifyChecksums: opts.verifyChecksums, classNames: cfg.classNames, remote: opts.remote });
  const mixed = cfg.mix ? await openMixSources(cfg.mix, { verifyChecksums: opts.verifyChecksums }).catch(async (e) => { await rd.close(); throw e; }) : null;
  // A new run on a source fetched over the network shuffles by shard windows unless told otherwise (saved in run.json;
  // the window the loader sizes to the cache is saved once the loader is built). Class-balanced draws stay global.
  if (!opts.resume && opts.shuffle === undefined && isLoadable(rd.main) && rd.main.remote && !cfg.balanced && !cfg.mix?.balanced.length) {
    cfg.shuffle = DEFAULTS.remoteShuffle;
  }
  if (world && world.size > 1 && cfg.shuffle === 'block') {
    await rd.close();
    throw new SlimfitError(`--shuffle block cannot be split between ${world.size} MPI ranks batch by batch (each rank would read its own windows)`, {
      hint: 'use --shuffle global (the default), shard or none under mpirun',
    });
  }
  const loaders: Array<{ close(): Promise<void> }> = [];
  if (mixed) loaders.push(mixed);
  // Disposed in the finally below, also when a check after building or loading it throws (its tensors would leak).
  let built: tfl.LayersModel | null = null;
  try {
    if (cfg.shuffleShards !== undefined && cfg.shuffle !== 'shard') {
      throw new SlimfitError(`--shuffle-shards ${cfg.shuffleShards} sets the window of --shuffle shard, but this run shuffles '${cfg.shuffle === false ? 'none' : cfg.shuffle}'`, { hint: 'add --shuffle shard, or drop --shuffle-shards' });
    }
    if (mixed) {
      checkMixable([rd.main, ...mixed.sources]);
      mixed.classes.forEach((c, i) => {
        if (c !== rd.classes) {
          throw new SlimfitError(`cannot mix ${rd.main.name} (${rd.classes} classes) with ${mixed.sources[i].name} (${c} classes): label i must mean the same class in every store`, {
            hint: 'mix stores converted with the same classes (give both `slimfit convert --class-names ...`)',
          });
        }
      });
    }
    // A mix's identity covers every store in it.
    const fingerprint = mixed ? createHash('sha256').update([await dataFingerprint(cfg.data, rd), ...mixed.fingerprints].join('\n')).digest('hex') : await dataFingerprint(cfg.data, rd);
    if (opts.resume) checkSameData(cfg, fingerprint, { force: opts.force, run: out, log });
    cfg.fingerprint = fingerprint;
    checkTrainable(rd);
    if (cfg.patience !== undefined && !rd.val) {
      throw new SlimfitError('--patience stops on the validation loss but this run has no validation data', {
        hint: "train on a store with a 'val' split, give --val-split or a --val-fraction above 0, or drop --patience",
      });
    }
    const model = state ? await loadModel(join(out, MODEL_DIR)) : await freshModel(cfg.model, rd.main, rd.classes, cfg.seed, log);
    built = model;
    checkModelFits(model, rd.main, rd.classes, cfg.model);
    if (state) restoreOptimizerExactly(model);
    // A fresh run trains with the run's optimizer flags even if a user's model.json carries its own training config
    // (its loss may expect other labels); a resumed run keeps the saved optimizer and its state.
    compileDefault(model, cfg.optimizer, cfg.lr, !state);
    const refused = refusedHere ?? matmulPrecisionRefusal(model, precision);
    if (refused && !parallelRun) throw refused;
    // Under MPI every rank says whether it can train in this precision, and all stop together when one cannot.
    if (parallelRun) agreeOnPlan(world, { matmulPrecision: precision, ...(refused ? { refused: refusalOf(refused) } : {}) });
    // A damaged store is refused before the run folder is touched (the loaders then find the shards checked).
    if (opts.verifyChecksums !== false) for (const s of [rd.main, rd.val, opts.evaluateTest !== false ? rd.test : undefined, ...(mixed?.sources ?? [])]) if (s) await verifySource(s);
    // Every rank has read and checked the run folder before rank 0 writes to it (a fresh run's check that the folder
    // holds no run would otherwise see rank 0's run.json).
    world?.barrier();
    if (writer) await mkdir(out, { recursive: true });
    const history: EpochLog[] = state ? [...state.history] : [];
    // The log is rebuilt from the checkpoint, so epochs after the last checkpoint (a crash) are not listed twice.
    if (writer) await writeAtomic(join(out, 'log.jsonl'), history.map((h) => JSON.stringify(h)).join('\n') + (history.length ? '\n' : ''));
    cfg.normalize ??= trainLoaderOptions(rd.main, rd.classes).normalize;
    // Written again on resume: options given again and a --force'd data change are part of the run from now on.
    if (writer) await writeAtomic(join(out, 'run.json'), JSON.stringify(cfg, null, 2) + '\n');
    const lopts = { batchSize: cfg.batchSize, seed: cfg.seed, shuffle: cfg.shuffle, shuffleShards: cfg.shuffleShards, workers: opts.workers, prefetch: opts.prefetch, normalize: cfg.normalize, verifyChecksums: opts.verifyChecksums };
    const ranks = world && world.size > 1 ? { batchSize: rankBatch, rank: world.rank, worldSize: world.size, rankSplit: 'batches' as const } : {};
    // Augmentation is for the training loader only: validation and test loaders (makeEvalLoader) never augment.
    const augment = cfg.augment ? parseAugmentSpec(cfg.augment) : undefined;
    const loader = cfg.mix && mixed
      ? mixSources([rd.main, ...mixed.sources].map((source, i) => ({ source, balanced: cfg.mix!.balanced.includes(i) })), {
        ...trainLoaderOptions(rd.main, rd.classes, { ...lopts, shift: cfg.shift || undefined, augment }), weights: cfg.mix.weights, epochSamples: cfg.mix.epochSamples,
      })
      : makeLoader(rd.main, rd.classes, { ...lopts, ...ranks, shift: cfg.shift || undefined, augment, balanced: cfg.balanced || undefined });
    loaders.push(loader);
    // The shard window the loader chose (a remote store's default shrinks to fit the cache) is part of the run's plan.
    const chosen = (loader as { planConfig?: PlanConfig }).planConfig?.shardWindow;
    if (cfg.shuffle === 'shard' && cfg.shuffleShards === undefined && chosen) {
      cfg.shuffleShards = chosen;
      if (writer) await writeAtomic(join(out, 'run.json'), JSON.stringify(cfg, null, 2) + '\n');
    }
    // Checkpoints keep the cursor in the global order (one process's view), so any number of ranks can resume them.
    if (state) loader.resume(world && world.size > 1 ? rankCursor(state.cursor, world.rank, world.size) : state.cursor);
    // Another number of ranks sums each averaged gradient in another order: the same training up to float rounding,
    // which later steps amplify, so the weights drift from what the saving number of ranks would reach. Said, not silent.
    const ranksNow = world?.size ?? 1, ranksSaved = state?.ranks ?? 1;
    if (state && ranksSaved !== ranksNow && !finishedState(state, cfg.epochs)) {
      log(`note: ${out} was checkpointed by ${ranksSaved === 1 ? 'one process' : `${ranksSaved} MPI ranks`} and continues with ${ranksNow === 1 ? 'one process' : `${ranksNow} MPI ranks`}: the same training, but each step's averaged gradient is summed in another order, and these rounding differences grow over the next hundreds of steps (weights typically differ by ~1e-2 from a run that keeps ${ranksSaved === 1 ? 'one process' : `${ranksSaved} ranks`}, at the same loss); to continue it bit for bit, resume with ${ranksSaved === 1 ? 'no mpirun' : `mpirun -np ${ranksSaved}`}`);
    }
    const val = rd.val ? makeEvalLoader(rd.val, rd.classes, lopts) : null;
    if (val) loaders.push(val);
    // Callbacks: early stopping and keep-best keep the best epoch's weights in best/, reduce-LR-on-plateau scales the rate.
    const monitor = val ? 'val_loss' : 'loss';
    let bestPending = false;
    const diskStore: BestWeightsStore = {
      save: async (m, epoch, value) => {
        await saveModel(m, join(out, BEST_PENDING_DIR), { includeOptimizer: false, extraFiles: { 'best.json': JSON.stringify({ epoch, monitor, value }, null, 2) + '\n' } });
        bestPending = true;
      },
      restore: async (m, epoch) => {
        // Only the weights of the epoch the callback tracks: best/ of another epoch would be restored under a wrong label.
        const held = await bestFolderEpoch(join(out, BEST_DIR));
        if (epoch !== undefined && held !== epoch) {
          throw new SlimfitError(`${join(out, BEST_DIR)}: holds ${held === null ? 'no best.json epoch' : `epoch ${held}`}, but the run's best epoch is ${epoch}; its weights are not restored`, {
            hint: `the best model of epoch ${epoch} was not kept (the run was stopped while saving it); evaluate ${join(out, MODEL_DIR)} instead, or train the run again`,
          });
        }
        const b = await loadModel(join(out, BEST_DIR));
        try { m.setWeights(b.getWeights()); } finally { b.dispose(); }
      },
    };
    // Ranks other than 0 write nothing: they keep this invocation's best weights in memory (identical to rank 0's)
    // and read best/ only for a best epoch of an earlier invocation, which rank 0 wrote then.
    const memory = memoryWeightsStore();
    let inMemory = false;
    const bestStore: BestWeightsStore = writer ? diskStore : {
      save: async (m, epoch, value) => { await memory.save(m, epoch, value); inMemory = true; },
      restore: async (m, epoch) => (inMemory ? memory.restore(m, epoch) : diskStore.restore(m, epoch)),
    };
    const callbacks: CallbackInput[] = [];
    if (cfg.patience !== undefined) callbacks.push(earlyStopping({ monitor, patience: cfg.patience, restoreBestWeights: true, store: bestStore }));
    else if (cfg.keepBest) callbacks.push(keepBest({ monitor, save: bestStore.save }));
    if (plateau) callbacks.push(reduceLrOnPlateau({ monitor, ...plateau }));
    if (state && writer) {
      await removeStaleTemps(out);
      // A best model saved after the last checkpoint: best/ if that checkpoint records its epoch (the promotion was cut
      // off), else it belongs to an epoch the resume trains again and is dropped.
      const pending = join(out, BEST_PENDING_DIR);
      if (await stat(pending).then(() => true, () => false)) {
        const cbs = state.loop?.callbacks as Record<string, { bestEpoch?: number } | undefined> | undefined;
        const tracked = cbs?.earlyStopping?.bestEpoch ?? cbs?.keepBest?.bestEpoch;
        const held = await bestFolderEpoch(pending);
        if (held !== null && held === tracked) await promoteBest(out);
        else await rm(pending, { recursive: true, force: true });
      }
    }
    const parallel = world && world.size > 1 ? `data-parallel on ${world.size} MPI ranks (${world.library}): ${rankBatch} samples per rank per batch` : '';
    log(`training ${cfg.model} on ${loader.source.name}: ${cfg.mix ? `${loader.samplesPerEpoch} samples per epoch` : `${rd.main.samples} samples`}${cfg.balanced ? ' (classes drawn equally often)' : ''}, ${rd.classes} classes, batch ${cfg.batchSize}${parallel ? ` (${parallel})` : ''}, ${cfg.optimizer} lr ${cfg.lr}, ${cfg.epochs} epochs` +
      (cfg.lrDecay !== 1 ? `, lr x${cfg.lrDecay} per epoch` : '') + (cfg.lrSchedule ? `, lr schedule ${cfg.lrSchedule}` : '') +
      (cfg.patience !== undefined ? `, early stopping on val_loss (patience ${cfg.patience})` : '') + (cfg.keepBest ? `, keeping the best ${monitor} in ${BEST_DIR}/` : '') +
      (plateau ? `, lr x${plateau.factor} after ${plateau.patience} epochs without a lower ${monitor}` : '') + (precision === 'bf16' ? ', matmul precision bf16 (opt-in mixed precision, not float32)' : '') + (cfg.shift ? `, random shifts up to ${cfg.shift} px` : '') + (cfg.augment ? `, augment ${cfg.augment}` : '') +
      (val ? `, validating on ${rd.val!.name}` : ", no validation (no 'val' split and --val-fraction 0)"));
    const checkpoint = async (cursor: Cursor, loop: LoopState): Promise<void> => {
      if (!writer) return;
      const st: CheckpointState = { epochsDone: history.length, cursor, history, loop, ...(world && world.size > 1 ? { ranks: world.size } : {}) };
      await saveModel(model, join(out, MODEL_DIR), { extraFiles: { 'state.json': JSON.stringify(st, null, 2) } });
      // The checkpoint now records the epoch of the pending best model: it becomes best/.
      if (bestPending) { await promoteBest(out); bestPending = false; }
    };
    const finished = state !== null && finishedState(state, cfg.epochs);
    let interrupted: RunSummary['interrupted'];
    if (!finished) {
      const h = await trainEpochs(model, loader, {
        epochs: cfg.epochs, initialEpoch: state?.epochsDone ?? 0, validation: val, progress: writer ? opts.progress : false, lr: cfg.lr, lrDecay: cfg.lrDecay ?? DEFAULTS.lrDecay, log,
        lrSchedule: cfg.lrSchedule, callbacks, signal: opts.signal, resumeState: state?.loop, world, matmulPrecision: precision,
        onEpochEnd: async (e, cursor, loop) => {
          history.push(e);
          await checkpoint(cursor, loop);
          if (writer) await appendFile(join(out, 'log.jsonl'), JSON.stringify(e) + '\n');
          log(`epoch ${e.epoch}/${cfg.epochs}: loss ${e.loss.toFixed(4)} acc ${e.accuracy.toFixed(4)}` +
            (e.valAccuracy !== undefined ? ` val_loss ${e.valLoss!.toFixed(4)} val_acc ${e.valAccuracy.toFixed(4)}` : '') +
            ` | ${e.samplesPerSec.toFixed(0)} samples/s | checkpoint saved` + (e.bestSaved ? `, best ${monitor} so far (${BEST_DIR}/)` : ''));
          if (e.stoppedEarly) {
            log(`early stopping: ${e.stoppedEarly.monitor} has not improved since epoch ${e.stoppedEarly.bestEpoch} (${e.stoppedEarly.best.toFixed(4)}); stopped after epoch ${e.epoch}`);
          }
        },
        onInterrupt: async (cursor, loop) => {
          await checkpoint(cursor, loop);
          // The other ranks exit (non-zero: interrupted) only once rank 0's checkpoint is in place; mpirun ends the job
          // at the first such exit.
          world?.barrier();
          log(`interrupted ${cursor.position > 0 ? `in epoch ${history.length + 1} at sample ${cursor.position}` : `after epoch ${history.length}`}: checkpoint saved in ${join(out, MODEL_DIR)}`);
        },
      });
      interrupted = h.interrupted;
      const last = history[history.length - 1];
      if (!interrupted && last?.restoredEpoch !== undefined) {
        // The weights of the best epoch were put back: the checkpoint and the log say so, and eval uses them.
        await checkpoint(world && world.size > 1 ? globalCursor(loader.cursor()) : loader.cursor(), h.state ?? { callbacks: {} });
        if (writer) await writeAtomic(join(out, 'log.jsonl'), history.map((x) => JSON.stringify(x)).join('\n') + '\n');
        log(`restored the weights of epoch ${last.restoredEpoch} (the best ${monitor}) into ${join(out, MODEL_DIR)}`);
      }
    }
    if (interrupted) {
      return { out, report: '', backend: info.name, history, interrupted, wallSeconds: (performance.now() - t0) / 1000, peakRss: peakRssBytes(), ...(world ? { rank: world.rank } : {}) };
    }
    const wallTrain = (performance.now() - t0) / 1000;
    const par = world && world.size > 1 ? { parallel: { ranks: world.size, rankBatch, library: world.library, ...world.stats } } : {};
    if (!writer) return { out, report: '', backend: info.name, history, wallSeconds: wallTrain, peakRss: peakRssBytes(), rank: world!.rank, ...par };
    let test: EvalResult | undefined;
    const noTest = !rd.test && opts.evaluateTest !== false
      ? `${typeof cfg.data === 'string' ? `the store ${cfg.data} has no 'test' split` : 'x' in cfg.data && typeof cfg.data.x === 'string' ? 'the .npy/.npz data has no test split' : `${rd.main.name} has no test split`}, so there is no test evaluation`
      : undefined;
    if (noTest) {
      log(`${noTest} (convert with --split train=0.9,test=0.1 to hold one out, or evaluate later: slimfit eval ${out} STORE --split NAME)`);
    }
    if (rd.test && opts.evaluateTest !== false) {
      const tl = makeEvalLoader(rd.test, rd.classes, lopts);
      loaders.push(tl);
      test = await evaluateLoader(model, tl, { progress: opts.progress, label: 'test' });
      log(`test accuracy ${test.accuracy.toFixed(4)} (${test.samples} samples, loss ${test.loss.toFixed(4)})`);
    }
    const wallSeconds = (performance.now() - t0) / 1000;
    const rss = peakRssBytes();
    const report = await writeReport(out, {
      title: `Training run ${out}`,
      facts: [
        ['data', (typeof cfg.data === 'string' ? cfg.data : JSON.stringify(cfg.data)) + (cfg.mix ? ` mixed with ${cfg.mix.with.map((w) => `${w.dir} (${w.split})`).join(', ')}; weights ${cfg.mix.weights.join(', ')}${cfg.mix.balanced.length ? `; class-balanced sources ${cfg.mix.balanced.map((i) => i + 1).join(', ')}` : ''}; ${loader.samplesPerEpoch} samples per epoch` : cfg.balanced ? ' (classes drawn equally often)' : '')], ['model', `${cfg.model} (${model.countParams()} parameters)`],
        ['optimizer', `${cfg.optimizer}, lr ${cfg.lr}${cfg.lrDecay && cfg.lrDecay !== 1 ? ` x${cfg.lrDecay}/epoch` : ''}${cfg.lrSchedule ? `, schedule ${cfg.lrSchedule}` : ''}${plateau ? `, x${plateau.factor} after ${plateau.patience} epochs without a lower ${monitor}${plateau.minLr ? ` (not below ${plateau.minLr})` : ''}` : ''}, batch ${cfg.batchSize}, seed ${cfg.seed}, shuffle ${cfg.shuffle}${cfg.shuffle === 'shard' && cfg.shuffleShards ? ` (${cfg.shuffleShards} shards per window)` : ''}${cfg.shift ? `, shift ${cfg.shift} px` : ''}${cfg.augment ? `, augment ${cfg.augment}` : ''}`],
        ...callbackFacts(cfg, history, monitor),
        ...(noTest ? [['test', `none: ${noTest}`] as [string, string]] : []),
        ['classes', `${rd.classes}${rd.classNames.length <= 40 ? `: ${rd.classNames.join(', ')}` : ''}${cfg.classNames ? ' (--class-names)' : ''}`],
        ...(world && world.size > 1 ? [['data-parallel', `${world.size} MPI ranks (${world.library}), global batch ${cfg.batchSize} = ${rankBatch} per rank, lr ${cfg.lr} (not scaled: the global batch is the batch); rank 0 spent ${world.stats.allreduceSeconds.toFixed(2)} s in ${world.stats.allreduceCalls} all-reduce calls`] as [string, string]] : []),
        ['matmul precision', precision === 'bf16' ? 'bf16 (opt-in mixed precision: GEMM operands rounded to bfloat16, float32 accumulation; float32 weights, Adam and loss)' : 'float32'],
        ['backend', info.note.replace(/^backend: /, '')], ['wall time of this invocation', `${wallSeconds.toFixed(1)} s`], ['peak RSS', formatBytes(rss)],
      ],
      history, evaluation: test ? { split: 'test', result: test } : undefined, classNames: rd.classNames,
    });
    return { out, report, backend: info.name, matmulPrecision: precision, history, test, wallSeconds, peakRss: rss, ...(world ? { rank: world.rank } : {}), ...par };
  } finally {
    built?.dispose();
    for (const l of loaders.reverse()) await l.close();
    await rd.close();
  }
}

/** Report lines on early stopping and keep-best: where training stopped and which epoch's weights the run holds. */
function callbackFacts(cfg: RunConfig, history: EpochLog[], monitor: string): Array<[string, string]> {
  const facts: Array<[string, string]> = [];
  const last = history[history.length - 1];
  const best = [...history].reverse().find((e) => e.bestSaved);
  if (cfg.patience !== undefined) {
    const s = last?.stoppedEarly;
    facts.push(['early stopping', `${monitor}, patience ${cfg.patience}: ` + (s ? `stopped early after epoch ${last.epoch} (best ${s.best.toFixed(4)} at epoch ${s.bestEpoch})` : `did not stop early`) +
      (last?.restoredEpoch !== undefined ? `; the model holds the weights of epoch ${last.restoredEpoch} (restored)` : '')]);
  }
  if (best) facts.push(['best checkpoint', `${BEST_DIR}/ holds epoch ${best.epoch} (${monitor} ${(monitor === 'val_loss' ? best.valLoss : best.loss)?.toFixed(4)})`]);
  return facts;
}

/** Remove temporary folders a checkpoint save left when the process was killed while writing (the complete checkpoint stays). */
async function removeStaleTemps(out: string): Promise<void> {
  for (const name of await readdir(out)) {
    if (name.startsWith(`.${MODEL_DIR}.tmp-`) || name.startsWith(`.${BEST_DIR}.tmp-`) || name.startsWith(`.${BEST_PENDING_DIR}.tmp-`)) await rm(join(out, name), { recursive: true, force: true });
  }
}

/** Evaluate a run's model (runs/NAME, or a model folder / model.json) on `split` of `data`; writes the confusion matrix next to it. */
export async function evalRun(modelPath: string, data: DataInput, opts: { split?: string; backend?: string; batchSize?: number; progress?: boolean; outDir?: string; log?: (l: string) => void; verifyChecksums?: boolean; remote?: RemoteOptions } = {}): Promise<{ result: EvalResult; files: string }> {
  checkString('evalRun', 'modelPath', modelPath);
  checkData('evalRun', data);
  checkEvalOptions('evalRun', opts, EVAL_RUN_OPTION_KEYS);
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const info = await initBackend(opts.backend);
  log(info.note);
  const isRun = await stat(join(modelPath, MODEL_DIR, 'model.json')).then(() => true, () => false);
  const model = await loadModel(isRun ? join(modelPath, MODEL_DIR) : modelPath);
  // The model is disposed in the outer finally, also when resolving the data throws (a missing split, a bad store).
  try {
    const split = opts.split ?? DEFAULTS.evalSplit;
    const runCfg = isRun ? await readJson<RunConfig>(join(modelPath, 'run.json'), 'run.json') : undefined;
    // A run on .npy/.npz data with --class-names: the same names for the same kind of data.
    const names = typeof data === 'string' || !runCfg?.classNames ? undefined : runCfg.classNames;
    const rd = await resolveData(data, split, undefined, 0, 0, { verifyChecksums: opts.verifyChecksums, classNames: names, remote: opts.remote }).catch((e: unknown) => {
      if (split === DEFAULTS.evalSplit && typeof data === 'string' && e instanceof SlimfitError && /has no split/.test(e.message)) {
        throw new SlimfitError(`there is no '${split}' split to evaluate on${e.hint ? ` (${e.hint})` : ''}`, {
          file: data, hint: `evaluate another split (--split NAME), or convert with --split train=0.9,test=0.1 to hold out a test split`,
        });
      }
      throw e;
    });
    try {
      checkModelFits(model, rd.main, rd.classes, modelPath);
      const trained = runCfg?.normalize;
      const batch = opts.batchSize ?? DEFAULTS.evalBatchSize;
      const loader = makeEvalLoader(rd.main, rd.classes, { normalize: trained, verifyChecksums: opts.verifyChecksums }, batch);
      log(`evaluating on '${split}' of ${rd.main.name}: ${rd.main.samples} samples, batch ${batch}`);
      try {
        const result = await evaluateLoader(model, loader, { progress: opts.progress, label: `eval ${split}` });
        const dir = opts.outDir ?? (isRun ? modelPath : '.');
        await mkdir(dir, { recursive: true });
        const base = join(dir, `eval-${split}-confusion`);
        await writeConfusion(result, rd.classNames, base, `Confusion matrix (${split} of ${rd.main.name})`);
        return { result, files: base };
      } finally {
        await loader.close();
      }
    } finally {
      await rd.close();
    }
  } finally {
    model.dispose();
  }
}
