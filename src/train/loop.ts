// The training loop over any Loader (an AsyncIterable of batches with a cursor), and streaming evaluation.
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { TypedArray } from '../core/dtype.ts';
import { isSlimfitError, SlimfitError } from '../core/errors.ts';
import { convTrainStep, denseTrainStep, engineActive, type MatmulPrecision } from '../engine/index.ts';
import type { Batch, Cursor, Loader } from '../loader/types.ts';
import { createProgress } from '../core/progress.ts';
import { DEFAULTS } from './defaults.ts';
import { type CallbackInput, type CallbackLogs, EarlyStopping, isLrScaler, type LrScaler, isStateful, KeepBest, standardizeCallbacks } from './callbacks.ts';
import { lrFactor, type LrSchedule, parseLrSchedule } from './schedule.ts';
import type { MpiWorld } from '../core/mpi.ts';
import { agreeOnPlan, bf16KernelsNote, refusalOf, broadcastWeights, globalCursor, reduceGradientsOf, reduceNonTrainable, type StopAgreement } from './parallel.ts';

/** With an abort signal, the loop lets the event loop turn (to run signal handlers) at least this often, in ms. */
const YIELD_MS = 20;

/** Optimizers `--optimizer` accepts. */
export const OPTIMIZERS = ['adam', 'sgd', 'rmsprop', 'momentum'] as const;
/** An optimizer name. */
export type OptimizerName = (typeof OPTIMIZERS)[number];

/** Metrics of one finished epoch (1-based `epoch`). */
export interface EpochLog {
  epoch: number;
  loss: number;
  accuracy: number;
  valLoss?: number;
  valAccuracy?: number;
  samples: number;
  seconds: number;
  samplesPerSec: number;
  /** Learning rate used in this epoch (with a per-batch schedule: by its last batch). */
  lr?: number;
  /** Live tensors after the epoch (tf.memory().numTensors), to show memory does not grow. */
  numTensors: number;
  /** Set when keep-best (or early stopping with restoreBestWeights) saved this epoch's weights as the best so far. */
  bestSaved?: boolean;
  /** Set on the epoch after which early stopping ended training: what it watched, the best epoch, and whose weights are put back. */
  stoppedEarly?: { monitor: string; best: number; bestEpoch: number; restoredEpoch: number | null };
  /** Set on the last epoch when early stopping put back an earlier epoch's weights at the end of training. */
  restoredEpoch?: number;
}

/** What {@link trainEpochs} returns. */
export interface History {
  epochs: EpochLog[];
  /** Set when `signal` stopped training at a batch boundary (the checkpoint was handed to onInterrupt). */
  interrupted?: { epoch: number; batchesDone: number; samplesDone: number };
  /** The loop state when training ended (callback states after onTrainEnd), for a final checkpoint. */
  state?: LoopState;
}

/**
 * The loop's own state beyond the model and the loader cursor, saved with checkpoints: the sums of an epoch stopped
 * mid-way (so its log comes out as if uninterrupted) and the state of stateful callbacks (by their stateKey).
 */
export interface LoopState {
  partial?: { loss: number; acc: number; n: number; seconds: number };
  callbacks: Record<string, unknown>;
}

/** Streaming evaluation result. */
export interface EvalResult {
  loss: number;
  accuracy: number;
  samples: number;
  /** confusion[true][predicted] counts. */
  confusion: number[][];
}

/** Options of the loop itself (data, model and backend are already chosen). */
export interface LoopOptions {
  /** Total epochs to reach (default 5). */
  epochs?: number;
  /** Epochs already completed (when resuming). */
  initialEpoch?: number;
  /** Streamed after every epoch for val_loss / val_accuracy. */
  validation?: Loader | null;
  /** Show a progress bar per epoch (default true). */
  progress?: boolean;
  /** Learning rate set on the optimizer at each epoch start, times lrDecay, lrSchedule and plateau factors (default: the optimizer's current one; pass it when resuming). */
  lr?: number;
  /** Multiply the optimizer's learning rate by this once per epoch (epoch e uses lr * lrDecay^e; default 1 = constant). */
  lrDecay?: number;
  /**
   * A learning-rate schedule (or its string form, see LR_SCHEDULE_SYNTAX): its factor multiplies lr * lrDecay^epoch,
   * per epoch or before every batch.
   */
  lrSchedule?: LrSchedule | string;
  /**
   * Keras-style callbacks, as tfjs-layers' model.fit takes them: tfjs callbacks (tf.CustomCallback,
   * tf.callbacks.earlyStopping, earlyStopping/keepBest/reduceLrOnPlateau from here) or CustomCallbackArgs objects
   * ({ onEpochEnd: (epoch, logs) => ... }). Epochs and batches are 0-based as in Keras; logs use Keras's names
   * (loss, acc, val_loss, val_acc, lr). Setting model.stopTraining ends training after the epoch.
   */
  callbacks?: CallbackInput | CallbackInput[];
  /** Called after each epoch (after the callbacks) with its metrics, the train loader's cursor and the loop state (for checkpoints and logs). */
  onEpochEnd?: (log: EpochLog, cursor: Cursor, state: LoopState) => Promise<void> | void;
  /** When it aborts, training stops after the batch in progress: onInterrupt gets the state to checkpoint, and the history says where it stopped. */
  signal?: AbortSignal;
  /** Saves a checkpoint of a run stopped by `signal` (model, cursor mid-epoch, loop state). */
  onInterrupt?: (cursor: Cursor, state: LoopState) => Promise<void> | void;
  /** Loop state from a checkpoint: sums of the epoch the cursor is in, callback states. */
  resumeState?: LoopState;
  /** Use the engine's fused Dense step when the model allows it (default true; SLIMFIT_DISABLE=fused also turns it off). */
  fused?: boolean;
  /**
   * Precision of the matrix products (default DEFAULTS.matmulPrecision, 'float32'). 'bf16' (opt-in, like PyTorch's
   * CPU autocast to bfloat16 for Linear layers): every GEMM of the fused Dense step rounds its operands to bfloat16
   * and accumulates in float32, on AMX tiles or AVX512_BF16; weights, Adam, activations, softmax and loss stay
   * float32. Only Dense-chain models on the native engine can take it: anything else is a SlimfitError, never a
   * silent float32 run, and so is a CPU without those instructions.
   */
  matmulPrecision?: MatmulPrecision;
  /** Receives one line saying how batches are trained (fused step, or trainOnBatch and why). */
  log?: (line: string) => void;
  /**
   * Data-parallel training over MPI (mpiWorld() under mpirun; fit and trainRun pass it): `loader` must give this rank
   * its share of every global batch (rank/worldSize with rankSplit 'batches'). Rank 0's weights are broadcast first;
   * each step's gradients are averaged over the ranks before the optimizer step (one all-reduce per step, which also
   * carries a stop flag, so a signal stops all ranks after the same batch); the epoch's loss/accuracy sums are reduced
   * at its end (progress and onBatchEnd show this rank's own batch); non-trainable weights (batch-norm statistics) are
   * averaged after every epoch. Cursors handed to onEpochEnd/onInterrupt are global (see globalCursor).
   */
  world?: MpiWorld | null;
}

function bf16Refused(reason: string): SlimfitError {
  return new SlimfitError(`matmul precision bf16 is implemented only in the native engine's fused Dense step, which this model cannot take (${reason})`, {
    hint: 'use matmul precision float32, or a chain of Dense layers (e.g. the mlp) on the native engine',
  });
}

/**
 * Throws the SlimfitError trainEpochs would throw when `model` (compiled) cannot train in `precision`: bf16 needs
 * a CPU with bf16 instructions and a model the fused Dense step takes. Lets a caller refuse before writing anything.
 *
 * @example
 * checkMatmulPrecision(model, 'bf16'); // throws for a conv net or on an Ice Lake CPU
 */
export function checkMatmulPrecision(model: tfl.LayersModel, precision: MatmulPrecision): void {
  const refused = matmulPrecisionRefusal(model, precision);
  if (refused) throw refused;
}

/**
 * The SlimfitError {@link checkMatmulPrecision} would throw, returned instead (null when `model` can train in
 * `precision` here): under MPI each rank's answer goes into the ranks' agreement rather than stopping one rank alone.
 *
 * @example
 * const why = matmulPrecisionRefusal(model, 'bf16'); // null on a CPU with AMX or AVX512_BF16 and the mlp
 */
export function matmulPrecisionRefusal(model: tfl.LayersModel, precision: MatmulPrecision): SlimfitError | null {
  if (precision !== 'bf16') return null;
  let probe: ReturnType<typeof denseTrainStep>;
  try {
    probe = denseTrainStep(tf, model, engineActive(), { matmulPrecision: 'bf16' });
  } catch (e) {
    if (isSlimfitError(e)) return e;
    throw e;
  }
  if (!probe.step) return bf16Refused(probe.reason);
  probe.dispose();
  return null;
}

/** Compile `model` for classification with one-hot labels unless it already carries a training config (a user's model.json) and `force` is false. */
export function compileDefault(model: tfl.LayersModel, optimizer: OptimizerName = DEFAULTS.optimizer, lr: number = DEFAULTS.lr, force = false): void {
  if (model.optimizer && !force) return;
  const opt = optimizer === 'adam' ? tf.train.adam(lr)
    : optimizer === 'sgd' ? tf.train.sgd(lr)
      : optimizer === 'rmsprop' ? tf.train.rmsprop(lr)
        : optimizer === 'momentum' ? tf.train.momentum(lr, 0.9)
          : null;
  if (!opt) throw new SlimfitError(`unknown optimizer '${optimizer}'`, { hint: `use one of: ${OPTIMIZERS.join(', ')}` });
  model.compile({ optimizer: opt, loss: 'categoricalCrossentropy', metrics: ['accuracy'] });
}

/**
 * After loading saved Adam state, tfjs recomputes beta^t with pow(), which differs in the last bits from the running
 * float32 product an uninterrupted run holds; recompute it the same way so a resumed run continues bit for bit.
 */
export function restoreOptimizerExactly(model: tfl.LayersModel): void {
  const o = model.optimizer as unknown as { accBeta1?: tf.Variable; accBeta2?: tf.Variable; beta1?: number; beta2?: number; iterations_?: number };
  if (!o || !o.accBeta1 || !o.accBeta2 || o.beta1 === undefined || o.beta2 === undefined) return;
  const steps = o.iterations_ ?? 0;
  let b1 = Math.fround(o.beta1), b2 = Math.fround(o.beta2);
  const f1 = Math.fround(o.beta1), f2 = Math.fround(o.beta2);
  for (let i = 0; i < steps; i++) { b1 = Math.fround(b1 * f1); b2 = Math.fround(b2 * f2); }
  tf.tidy(() => { o.accBeta1!.assign(tf.scalar(b1)); o.accBeta2!.assign(tf.scalar(b2)); });
}

/** Number of classes the model predicts (last axis of its single output). */
export function modelClasses(model: tfl.LayersModel): number {
  const shape = model.outputs[0]?.shape;
  return shape ? Number(shape[shape.length - 1]) : NaN;
}

function asFloat32(a: TypedArray, copy: boolean): Float32Array {
  if (a instanceof Float32Array) return copy ? a.slice() : a;
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Number(a[i]);
  return out;
}

/** Fill `out` (n x classes, zeroed here) with one-hot rows of the batch's integer labels; throws on a label outside [0, classes). */
function oneHotInto(b: Batch, classes: number, out: Float32Array): Float32Array {
  out.fill(0, 0, b.n * classes);
  for (let i = 0; i < b.n; i++) {
    const v = Number(b.y[i]);
    if (!(Number.isInteger(v) && v >= 0 && v < classes)) {
      throw new SlimfitError(`label ${v} in batch ${b.index} of epoch ${b.epoch} is outside the model's ${classes} classes`, {
        hint: 'the model output does not match the dataset labels; build the model for the right number of classes',
      });
    }
    out[i * classes + v] = 1;
  }
  return out;
}

/** Whether the batch's y is already one-hot with `classes` columns. */
const isOneHot = (b: Batch, classes: number): boolean => b.yShape.length === 2 && b.yShape[1] === classes;

/** Turn a batch into tensors: x as given (float32), y one-hot float32 with `classes` columns. */
function batchTensors(b: Batch, classes: number, copy: boolean): { xs: tf.Tensor; ys: tf.Tensor } {
  const ys = isOneHot(b, classes) ? tf.tensor(asFloat32(b.y, copy), b.yShape, 'float32')
    : tf.tensor(oneHotInto(b, classes, new Float32Array(b.n * classes)), [b.n, classes], 'float32');
  return { xs: tf.tensor(asFloat32(b.x, copy), b.xShape, 'float32'), ys };
}

/** Label of row i of a batch's y (one-hot or integer). */
function labelAt(b: Batch, i: number, classes: number): number {
  if (b.yShape.length === 2) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (Number(b.y[i * classes + c]) > Number(b.y[i * classes + best])) best = c;
    return best;
  }
  return Number(b.y[i]);
}

/** Stream one full epoch of `loader` through `model.predict`: loss (cross-entropy), accuracy and confusion matrix. */
export async function evaluateLoader(model: tfl.LayersModel, loader: Loader, opts: { progress?: boolean; label?: string } = {}): Promise<EvalResult> {
  const classes = modelClasses(model);
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  const bar = createProgress({ label: opts.label ?? 'evaluate', total: loader.samplesPerEpoch, unit: 'samples', quiet: opts.progress === false });
  let loss = 0, correct = 0, n = 0;
  for await (const b of loader) {
    const probs = tf.tidy(() => {
      const xs = tf.tensor(asFloat32(b.x, false), b.xShape, 'float32');
      return (model.predict(xs) as tf.Tensor).dataSync() as Float32Array;
    });
    for (let i = 0; i < b.n; i++) {
      const t = labelAt(b, i, classes);
      if (!(Number.isInteger(t) && t >= 0 && t < classes)) {
        throw new SlimfitError(`label ${t} in ${loader.source.name} is outside the model's ${classes} classes`, {
          hint: 'evaluate with the dataset the model was trained for',
        });
      }
      let p = 0;
      for (let c = 1; c < classes; c++) if (probs[i * classes + c] > probs[i * classes + p]) p = c;
      confusion[t][p]++;
      if (p === t) correct++;
      loss -= Math.log(Math.min(1 - 1e-7, Math.max(1e-7, probs[i * classes + t])));
    }
    n += b.n;
    bar.tick(b.n);
  }
  bar.done();
  return { loss: n ? loss / n : NaN, accuracy: n ? correct / n : NaN, samples: n, confusion };
}

type LrOptimizer = { learningRate?: number; setLearningRate?: (lr: number) => void };

/**
 * Set an optimizer's learning rate. tfjs's SGD and momentum optimizers apply a scalar made from the rate when it was last
 * set through setLearningRate, so assigning `learningRate` alone would be logged but not used; Adam and RMSProp read the field.
 * Unchanged rates are left alone (no new scalar each epoch).
 */
function setLearningRate(opt: LrOptimizer, lr: number): void {
  if (opt.learningRate === lr) return;
  if (typeof opt.setLearningRate === 'function') opt.setLearningRate(lr);
  else opt.learningRate = lr;
}

/**
 * Train `model` (compiled) on `loader` from `initialEpoch` to `epochs`: one loader iteration per epoch, a progress bar
 * with loss / accuracy / samples/s / ETA, optional validation, and `onEpochEnd` for checkpoints.
 */
export async function trainEpochs(model: tfl.LayersModel, loader: Loader, opts: LoopOptions = {}): Promise<History> {
  if (!model.optimizer) throw new Error('trainEpochs needs a compiled model (see compileDefault)');
  const decay = opts.lrDecay ?? DEFAULTS.lrDecay;
  if (!(decay > 0 && decay <= 1)) throw new SlimfitError(`lrDecay must be in (0, 1], got ${decay}`);
  const world = opts.world && opts.world.size > 1 ? opts.world : null;
  // The fused step trains a plain Dense chain in one native call, with the same math as trainOnBatch (see src/engine/dense-step.ts).
  // A stop asked on any rank rides in the step's one all-reduce (an extra float after the gradients; the mean of the
  // ranks' 0/1 flags is > 0 when any asked), so every rank stops after the same batch without a second rendezvous.
  const agree: StopAgreement = { local: 0, any: false };
  // Conv nets (Conv2D / MaxPooling2D / Flatten / Dense chains) get the fused conv step (src/engine/conv-step.ts) instead.
  const stepOpts = world ? {
    extraFloats: 1,
    reduce: (g: Float32Array) => { g[g.length - 1] = agree.local; world.allreduce(g, true); agree.any = g[g.length - 1] > 0; },
  } : {};
  const precision = opts.matmulPrecision ?? DEFAULTS.matmulPrecision;
  // Under MPI a rank that cannot train as asked says so in the ranks' agreement below instead of throwing alone (the
  // others would wait in their first all-reduce until mpirun ends the job, and only this rank would say why).
  let refused: SlimfitError | null = null;
  let fused: ReturnType<typeof denseTrainStep>;
  try {
    fused = opts.fused === false ? { step: null, reason: 'turned off by the caller' } : denseTrainStep(tf, model, engineActive(), { ...stepOpts, matmulPrecision: precision });
  } catch (e) {
    if (!world || !isSlimfitError(e)) throw e;
    refused = e;
    fused = { step: null, reason: e.message };
  }
  let what = 'forward, loss, backward and Adam in one native call per batch';
  if (precision === 'bf16' && !fused.step) refused ??= bf16Refused(fused.reason);
  if (refused && !world) throw refused;
  if (!fused.step && opts.fused !== false && precision === 'float32') {
    const conv = convTrainStep(tf, model, engineActive(), stepOpts);
    // the conv step's refusal explains a model with a Conv2D layer; any other model keeps the Dense step's reason
    if (conv.step || model.layers.some((l) => l.getClassName() === 'Conv2D')) fused = conv;
    if (conv.step) what = `conv net: ${what}`;
  }
  const kernel = fused.step && 'kernel' in fused ? fused.kernel : undefined;
  let kernels = '';
  if (world) {
    // Every rank must take the same number of steps (each one is a collective) and compute the same thing in each.
    try {
      const plans = agreeOnPlan(world, {
        batchesPerEpoch: loader.batchesPerEpoch, matmulPrecision: precision, ...(kernel ? { bf16Kernel: kernel } : {}),
        step: !fused.step ? 'TensorFlow.js trainOnBatch' : what.startsWith('conv net') ? 'fused conv step' : 'fused Dense step',
        ...(refused ? { refused: refusalOf(refused) } : {}),
      });
      const differ = kernel ? bf16KernelsNote(plans) : null;
      if (differ) kernels = ` (${differ}: the same bf16 rounding of the operands, float32 sums in another order)`;
    } catch (e) {
      if (fused.step) fused.dispose();
      throw e;
    }
    broadcastWeights(world, model);
  }
  const bf16Note = precision === 'bf16' ? `; matmul precision bf16 (opt-in: GEMM operands rounded to bfloat16, float32 accumulation on ${kernel === 'amx' ? 'AMX tiles' : 'AVX512_BF16'}${kernels}; float32 weights, Adam and loss)` : '';
  opts.log?.(fused.step ? `train step: fused (${world ? `forward, loss and backward in one native call per batch, gradients averaged over ${world.size} MPI ranks, then Adam` : what}${bf16Note})`
    : `train step: TensorFlow.js trainOnBatch (no fused step: ${fused.reason})${world ? `, gradients averaged over ${world.size} MPI ranks before each optimizer step` : ''}`);
  const unhook = world ? reduceGradientsOf(world, model, agree) : null;
  try {
    return await epochsLoop(model, loader, opts, fused, world, agree);
  } finally {
    unhook?.();
    if (fused.step) fused.dispose();
  }
}

async function epochsLoop(model: tfl.LayersModel, loader: Loader, opts: LoopOptions, fused: ReturnType<typeof denseTrainStep>, world: MpiWorld | null, agree: StopAgreement): Promise<History> {
  const epochs = opts.epochs ?? DEFAULTS.epochs;
  const precision = opts.matmulPrecision ?? DEFAULTS.matmulPrecision;
  const classes = modelClasses(model);
  const copy = tf.getBackend() === 'cpu'; // the cpu backend keeps a reference to the array; loaders reuse buffers
  const history: History = { epochs: [] };
  const opt = model.optimizer as unknown as LrOptimizer;
  const baseLr = opt.learningRate;
  const decay = opts.lrDecay ?? DEFAULTS.lrDecay;
  // A resumed model carries the already-decayed rate in its saved optimizer config, so resuming passes the base `lr`.
  const lr0 = opts.lr ?? baseLr;
  const ranks = world?.size ?? 1;
  const cursorOut = (c: Cursor): Cursor => (world ? globalCursor(c) : c);
  const sums = new Float64Array(3);
  const sched = typeof opts.lrSchedule === 'string' ? parseLrSchedule(opts.lrSchedule, 'lrSchedule') : opts.lrSchedule;
  const cbs = standardizeCallbacks(opts.callbacks);
  const scalers: LrScaler[] = cbs.filter((c) => isLrScaler(c));
  for (const c of cbs) if (isStateful(c) && opts.resumeState?.callbacks[c.stateKey] !== undefined) c.setState(opts.resumeState.callbacks[c.stateKey]);
  const loopState = (partial?: LoopState['partial']): LoopState => {
    const callbacks: Record<string, unknown> = {};
    for (const c of cbs) if (isStateful(c)) callbacks[c.stateKey] = c.getState();
    return partial ? { partial, callbacks } : { callbacks };
  };
  // base x lrDecay^epoch x schedule x plateau scales (a scaler that has reduced the rate keeps it at or above its minLr).
  // Set at every epoch start even with none of them: a resumed model comes with its saved optimizer and the rate it was
  // saved with, and `--resume --lr X` must train at X (with the same lr this sets the same number, so resumes stay bit-exact).
  const controlsLr = lr0 !== undefined;
  const lrAt = (e: number, batch: number): number => {
    let lr = lr0! * decay ** e;
    if (sched) lr *= lrFactor(sched, e, batch, loader.batchesPerEpoch, epochs);
    for (const s of scalers) if (s.lrScale < 1) lr = Math.max(s.minLr, lr * s.lrScale);
    return lr;
  };
  const first = opts.initialEpoch ?? 0;
  const model_ = model as unknown as { stopTraining: boolean };
  model_.stopTraining = false;
  for (const c of cbs) {
    c.setModel(model);
    c.setParams({ epochs, initialEpoch: first, samples: loader.samplesPerEpoch, steps: loader.batchesPerEpoch, verbose: 0, doValidation: Boolean(opts.validation), metrics: ['loss', 'acc', 'val_loss', 'val_acc'] });
  }
  for (const c of cbs) await c.onTrainBegin({});
  let yBuf = new Float32Array(0);
  // Under MPI a stop between epochs is agreed too (one tiny all-reduce per epoch), so no rank starts an epoch alone.
  const stopBetween = (): boolean => {
    if (!world) return Boolean(opts.signal?.aborted);
    const f = Float64Array.of(opts.signal?.aborted ? 1 : 0);
    world.allreduce(f);
    return f[0] > 0;
  };
  for (let e = first; e < epochs; e++) {
    if (stopBetween()) {
      // Stopped between epochs (e.g. during validation or the last checkpoint): the cursor is at the start of epoch e,
      // or, before the first batch of a run resumed mid-epoch, where that checkpoint was (its sums go into the new one).
      await opts.onInterrupt?.(cursorOut(loader.cursor()), loopState(e === first ? opts.resumeState?.partial : undefined));
      history.interrupted = { epoch: e + 1, batchesDone: 0, samplesDone: 0 };
      return history;
    }
    const resumed = e === first ? opts.resumeState?.partial : undefined;
    const startPos = loader.cursor().position;
    if (controlsLr) setLearningRate(opt, lrAt(e, 0)); // per-batch schedules set it again before each batch
    for (const c of cbs) await c.onEpochBegin(e, {});
    const remaining = (loader.samplesPerEpoch - startPos) * ranks;
    const bar = createProgress({ label: `epoch ${e + 1}/${epochs}`, total: remaining, unit: 'samples', quiet: opts.progress === false });
    const t0 = performance.now();
    // One process: the epoch's sums, continuing a resumed checkpoint's in the same order (bit-exact resumes). Under
    // MPI: this rank's sums of this invocation; the epoch's (all ranks' plus the checkpoint's) are made at its end.
    let loss = world ? 0 : resumed?.loss ?? 0, acc = world ? 0 : resumed?.acc ?? 0, n = world ? 0 : resumed?.n ?? 0;
    const epochSums = (): { loss: number; acc: number; n: number } => {
      if (!world) return { loss, acc, n };
      sums[0] = loss; sums[1] = acc; sums[2] = n;
      world.allreduce(sums);
      return { loss: (resumed?.loss ?? 0) + sums[0], acc: (resumed?.acc ?? 0) + sums[1], n: (resumed?.n ?? 0) + sums[2] };
    };
    let stopped = false, batchesDone = 0, lastTurn = performance.now();
    for await (const b of loader) {
      if (controlsLr && sched?.per === 'batch') setLearningRate(opt, lrAt(e, b.index));
      for (const c of cbs) await c.onBatchBegin(b.index, { batch: b.index, size: b.n });
      let r: number | number[] | null = null;
      if (fused.step && b.x.length === b.n * fused.inputSize && fused.classes === classes) {
        if (yBuf.length < b.n * classes) yBuf = new Float32Array(b.n * classes);
        const y = isOneHot(b, classes) ? asFloat32(b.y, false) : oneHotInto(b, classes, yBuf);
        agree.local = opts.signal?.aborted ? 1 : 0;
        r = fused.step(asFloat32(b.x, false), y, b.n);
      }
      if (r === null && precision === 'bf16') {
        // trainOnBatch would multiply in float32: a bf16 run must not change precision without saying so
        throw new SlimfitError(`matmul precision bf16: batch ${b.index} of epoch ${e + 1} could not take the fused Dense step (a weight shares its memory with another tensor, or the batch's shape differs from the model's)`, {
          hint: 'use matmul precision float32, or do not hold extra references to the model\'s weight tensors during training',
        });
      }
      if (r === null) {
        const { xs, ys } = batchTensors(b, classes, copy);
        try {
          agree.local = opts.signal?.aborted ? 1 : 0;
          r = await model.trainOnBatch(xs, ys);
        } finally {
          xs.dispose();
          ys.dispose();
        }
      }
      const [l, a] = Array.isArray(r) ? r : [r, NaN];
      if (!Number.isFinite(l)) throw new SlimfitError(`the loss became ${l} in epoch ${e + 1}, batch ${b.index}`, { hint: 'lower the learning rate (--lr)' });
      loss += l * b.n; acc += a * b.n; n += b.n;
      batchesDone++;
      bar.tick(b.n * ranks, `loss ${(loss / n).toFixed(4)} acc ${(acc / n).toFixed(4)}`);
      for (const c of cbs) await c.onBatchEnd(b.index, { batch: b.index, size: b.n, loss: l, acc: a, lr: opt.learningRate ?? NaN });
      if (opts.signal) {
        // Signal handlers run only when the event loop turns, and batches that are already prefetched resolve as
        // microtasks without one: let it turn every YIELD_MS (once per batch cost up to ~10% on small batches), so
        // SIGINT stops training within that time, at a batch boundary.
        if (performance.now() - lastTurn >= YIELD_MS) { await new Promise((r) => setImmediate(r)); lastTurn = performance.now(); }
        // After the epoch's last batch the epoch is finished normally (validation, callbacks, onEpochEnd) and the check
        // before the next one stops: a mid-epoch state with the cursor already in the next epoch would misplace it.
        const pos = loader.cursor().position;
        if ((world ? agree.any : opts.signal.aborted) && pos > 0 && pos < loader.samplesPerEpoch) { stopped = true; break; }
      } else if (world && agree.any) {
        const pos = loader.cursor().position;
        if (pos > 0 && pos < loader.samplesPerEpoch) { stopped = true; break; }
      }
    }
    bar.done();
    const seconds = (resumed?.seconds ?? 0) + (performance.now() - t0) / 1000;
    if (world) reduceNonTrainable(world, model);
    const all = epochSums();
    if (stopped) {
      const cursor = cursorOut(loader.cursor());
      await opts.onInterrupt?.(cursor, loopState({ ...all, seconds }));
      history.interrupted = { epoch: e + 1, batchesDone, samplesDone: all.n };
      return history;
    }
    const log: EpochLog = { epoch: e + 1, loss: all.loss / all.n, accuracy: all.acc / all.n, samples: all.n, seconds, samplesPerSec: all.n / seconds, lr: opt.learningRate, numTensors: 0 };
    if (opts.validation) {
      const v = await evaluateLoader(model, opts.validation, { progress: opts.progress, label: `validate ${e + 1}/${epochs}` });
      log.valLoss = v.loss;
      log.valAccuracy = v.accuracy;
    }
    log.numTensors = tf.memory().numTensors;
    const logs: CallbackLogs = { loss: log.loss, acc: log.accuracy, lr: log.lr ?? NaN };
    if (log.valLoss !== undefined) { logs.val_loss = log.valLoss; logs.val_acc = log.valAccuracy!; }
    for (const c of cbs) await c.onEpochEnd(e, logs);
    for (const c of cbs) {
      if ((c instanceof KeepBest || (c instanceof EarlyStopping && c.restoreBestWeights)) && c.bestEpoch === e + 1) log.bestSaved = true;
      if (c instanceof EarlyStopping && c.stoppedEpoch === e + 1) {
        const i = c.info();
        log.stoppedEarly = { monitor: i.monitor, best: i.best, bestEpoch: i.bestEpoch, restoredEpoch: c.restoreBestWeights && i.bestEpoch !== e + 1 ? i.bestEpoch : null };
      }
    }
    history.epochs.push(log);
    if (opts.onEpochEnd) await opts.onEpochEnd(log, cursorOut(loader.cursor()), loopState());
    if (model_.stopTraining) break;
  }
  for (const c of cbs) await c.onTrainEnd({});
  const last = history.epochs[history.epochs.length - 1];
  for (const c of cbs) if (c instanceof EarlyStopping && c.restoredEpoch !== null && last) last.restoredEpoch = c.restoredEpoch;
  history.state = loopState();
  return history;
}
