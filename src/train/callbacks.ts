// Keras-style training callbacks for trainEpochs/fit/trainRun: user hooks (tfjs CustomCallback objects or their config
// objects, as tfjs-layers' model.fit takes them) and the built-ins early stopping, keep-best and reduce-LR-on-plateau,
// whose state is saved in checkpoints so a resumed run continues with the same best value, wait counter and rate.
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../core/errors.ts';
import { DEFAULTS } from './defaults.ts';

/** Logs handed to callbacks (Keras/tfjs names): loss, acc, val_loss, val_acc, lr, and per batch `size`. */
export type CallbackLogs = Record<string, number>;

/** What trainEpochs accepts as callbacks: tfjs callbacks (CustomCallback, tf.callbacks.earlyStopping, the built-ins here) or CustomCallbackArgs objects. */
export type CallbackInput = tfl.CustomCallbackArgs | BaseCallbackLike;

/** The shape of tfjs-layers' BaseCallback (its class is not exported, so callbacks are recognized by `setModel`). */
export interface BaseCallbackLike {
  setParams(params: Record<string, unknown>): void;
  setModel(model: tfl.LayersModel): void;
  onTrainBegin(logs?: CallbackLogs): Promise<void>;
  onTrainEnd(logs?: CallbackLogs): Promise<void>;
  onEpochBegin(epoch: number, logs?: CallbackLogs): Promise<void>;
  onEpochEnd(epoch: number, logs?: CallbackLogs): Promise<void>;
  onBatchBegin(batch: number, logs?: CallbackLogs): Promise<void>;
  onBatchEnd(batch: number, logs?: CallbackLogs): Promise<void>;
}

/** A callback whose state a checkpoint saves (JSON) under `stateKey`, restored by `setState` before training resumes. */
export interface StatefulCallback {
  readonly stateKey: string;
  getState(): unknown;
  setState(state: unknown): void;
}

/** A callback that scales the learning rate (reduce-LR-on-plateau): the loop multiplies the scheduled rate by `lrScale`, not below `minLr`. */
export interface LrScaler {
  readonly lrScale: number;
  readonly minLr: number;
}

export const isStateful = (c: unknown): c is StatefulCallback => typeof (c as StatefulCallback).getState === 'function' && typeof (c as StatefulCallback).stateKey === 'string';
export const isLrScaler = <T>(c: T): c is T & LrScaler => typeof (c as LrScaler).lrScale === 'number';

/**
 * tfjs callbacks as they are, config objects wrapped in tfjs's CustomCallback: without an onYield it never yields
 * (in Node there is no frame to draw), with one it yields as model.fit's default 'auto' does, so onYield is called.
 */
export function standardizeCallbacks(cbs: CallbackInput | CallbackInput[] | undefined): BaseCallbackLike[] {
  if (!cbs) return [];
  const list = Array.isArray(cbs) ? cbs : [cbs];
  return list.map((c) => {
    if (typeof (c as BaseCallbackLike).setModel === 'function') return c as BaseCallbackLike;
    const args = c as tfl.CustomCallbackArgs;
    return new tfl.CustomCallback(args, args.onYield ? 'auto' : 'never') as unknown as BaseCallbackLike;
  });
}

/** Keras's aliases of the metric names: 'accuracy' is logged as 'acc'. */
function monitorKey(monitor: string): string {
  return monitor.replace(/accuracy$/, 'acc');
}

/** 'min' for losses, 'max' for accuracies, as Keras infers from the monitor's name in mode 'auto'. */
function inferMode(monitor: string, mode: 'auto' | 'min' | 'max' | undefined): 'min' | 'max' {
  if (mode && mode !== 'auto') return mode;
  return /acc/.test(monitor) ? 'max' : 'min';
}

/** The monitored value of an epoch's logs; a missing one is an error (a callback that silently never fires would hide it). */
function monitored(logs: CallbackLogs | undefined, key: string, who: string): number {
  const v = logs?.[key];
  if (typeof v !== 'number') {
    throw new SlimfitError(`${who} watches '${key}' but the epoch logged only ${Object.keys(logs ?? {}).join(', ') || 'nothing'}`, {
      hint: key.startsWith('val_') ? 'train with validation data (a val split or a validation fraction) or watch loss/acc' : 'watch one of the logged values',
    });
  }
  return v;
}

/** Where early stopping keeps the best epoch's weights: in memory by default; trainRun uses the run's best/ folder. */
export interface BestWeightsStore {
  save(model: tfl.LayersModel, epoch: number, value: number): Promise<void>;
  /** `epoch` (1-based) is the best epoch the callback tracks: a store on disk can refuse weights of another epoch. */
  restore(model: tfl.LayersModel, epoch?: number): Promise<void>;
}

/** Keeps copies of the weights in memory (not in a checkpoint: a resumed run needs a store on disk, as trainRun's). */
export function memoryWeightsStore(): BestWeightsStore {
  let saved: Array<{ data: Float32Array; shape: number[] }> | null = null;
  return {
    async save(model) { saved = model.getWeights().map((w) => ({ data: (w.dataSync() as Float32Array).slice(), shape: w.shape })); },
    async restore(model) {
      if (!saved) throw new Error('no best weights were saved');
      const ts = saved.map((s) => tf.tensor(s.data, s.shape, 'float32'));
      try { model.setWeights(ts); } finally { ts.forEach((t) => t.dispose()); }
    },
  };
}

/** Common part of the monitoring built-ins: the model and tfjs's params, as tfjs's Callback class holds them. */
abstract class Monitoring {
  model: tfl.LayersModel | null = null;
  params: Record<string, unknown> = {};
  readonly key: string;
  readonly mode: 'min' | 'max';
  constructor(readonly monitor: string, mode: 'auto' | 'min' | 'max' | undefined, readonly minDelta: number) {
    this.key = monitorKey(monitor);
    this.mode = inferMode(this.key, mode);
    if (!(minDelta >= 0)) throw new SlimfitError(`minDelta must be >= 0, got ${minDelta}`);
  }
  /** Whether `v` beats `best` by more than minDelta in the monitor's direction. */
  protected improves(v: number, best: number | null): boolean {
    if (best === null) return true;
    return this.mode === 'min' ? v < best - this.minDelta : v > best + this.minDelta;
  }
  setParams(p: Record<string, unknown>): void { this.params = p; }
  setModel(m: tfl.LayersModel): void { this.model = m; }
  async onTrainBegin(): Promise<void> {}
  async onTrainEnd(_logs?: CallbackLogs): Promise<void> {}
  async onEpochBegin(): Promise<void> {}
  async onEpochEnd(_epoch: number, _logs?: CallbackLogs): Promise<void> {}
  async onBatchBegin(): Promise<void> {}
  async onBatchEnd(): Promise<void> {}
}

/** Options of {@link earlyStopping} (Keras's EarlyStopping). */
export interface EarlyStoppingOptions {
  /** Default 'val_loss'. */
  monitor?: string;
  /** Epochs in a row without improvement after which training stops (default 0; 0 and 1 stop at the first, as in Keras). */
  patience?: number;
  /** A change smaller than this is no improvement (default 0). */
  minDelta?: number;
  /** 'auto' (default) = 'max' for accuracies, 'min' otherwise. */
  mode?: 'auto' | 'min' | 'max';
  /** At the end of training, put back the weights of the best epoch (default false, as in Keras). */
  restoreBestWeights?: boolean;
  /** Where the best weights are kept for restoreBestWeights (default: memory). */
  store?: BestWeightsStore;
}

/** What early stopping did, for logs and reports (epochs 1-based). */
export interface EarlyStopInfo { monitor: string; best: number; bestEpoch: number; stoppedEpoch: number | null; restoredEpoch: number | null }

/** Early stopping; its state (best, best epoch, wait counter) is saved in checkpoints. See {@link earlyStopping}. */
export class EarlyStopping extends Monitoring implements StatefulCallback {
  readonly stateKey = 'earlyStopping';
  readonly patience: number;
  readonly restoreBestWeights: boolean;
  private readonly store: BestWeightsStore;
  best: number | null = null;
  /** 1-based epoch of `best`. */
  bestEpoch = 0;
  wait = 0;
  /** 1-based epoch after which training stopped, when it did. */
  stoppedEpoch: number | null = null;
  restoredEpoch: number | null = null;
  private lastEpoch = 0;
  constructor(o: EarlyStoppingOptions = {}) {
    super(o.monitor ?? DEFAULTS.monitor, o.mode, o.minDelta ?? DEFAULTS.earlyStoppingMinDelta);
    this.patience = o.patience ?? 0;
    if (!(Number.isInteger(this.patience) && this.patience >= 0)) throw new SlimfitError(`early stopping patience must be a whole number >= 0, got ${o.patience}`);
    this.restoreBestWeights = o.restoreBestWeights ?? false;
    this.store = o.store ?? memoryWeightsStore();
  }
  override async onEpochEnd(epoch: number, logs?: CallbackLogs): Promise<void> {
    const v = monitored(logs, this.key, 'early stopping');
    this.lastEpoch = epoch + 1;
    if (this.improves(v, this.best)) {
      this.best = v; this.bestEpoch = epoch + 1; this.wait = 0;
      if (this.restoreBestWeights && this.model) await this.store.save(this.model, epoch + 1, v);
      return;
    }
    this.wait++;
    // Keras counts the epoch without improvement first, so patience 0 and 1 both stop at the first such epoch.
    if (this.wait >= this.patience && this.model) {
      this.stoppedEpoch = epoch + 1;
      this.model.stopTraining = true;
    }
  }
  /** Restores the best epoch's weights when they are not the last epoch's (Keras 3's on_train_end). */
  override async onTrainEnd(): Promise<void> {
    if (this.restoreBestWeights && this.model && this.bestEpoch > 0 && this.bestEpoch !== this.lastEpoch) {
      await this.store.restore(this.model, this.bestEpoch);
      this.restoredEpoch = this.bestEpoch;
    }
  }
  info(): EarlyStopInfo { return { monitor: this.key, best: this.best ?? NaN, bestEpoch: this.bestEpoch, stoppedEpoch: this.stoppedEpoch, restoredEpoch: this.restoredEpoch }; }
  getState(): unknown { return { best: this.best, bestEpoch: this.bestEpoch, wait: this.wait, stoppedEpoch: this.stoppedEpoch, lastEpoch: this.lastEpoch }; }
  setState(s: unknown): void {
    const o = s as { best: number | null; bestEpoch: number; wait: number; stoppedEpoch: number | null; lastEpoch: number };
    this.best = o.best; this.bestEpoch = o.bestEpoch; this.wait = o.wait; this.stoppedEpoch = o.stoppedEpoch; this.lastEpoch = o.lastEpoch;
  }
}

/**
 * Stop training when `monitor` has not improved for `patience` epochs in a row (Keras's EarlyStopping: with patience
 * 2, training stops after the second epoch in a row without improvement), optionally restoring the best epoch's
 * weights at the end of training.
 *
 * @example
 * await fit(model, 'store', { epochs: 50, callbacks: [earlyStopping({ monitor: 'val_loss', patience: 3, restoreBestWeights: true })] });
 */
export function earlyStopping(o: EarlyStoppingOptions = {}): EarlyStopping {
  return new EarlyStopping(o);
}

/** Options of {@link keepBest}. */
export interface KeepBestOptions {
  /** Default 'val_loss'. */
  monitor?: string;
  mode?: 'auto' | 'min' | 'max';
  minDelta?: number;
  /** Saves the model (e.g. into a run's best/ folder); called whenever the monitored value improves. */
  save: (model: tfl.LayersModel, epoch: number, value: number) => Promise<void>;
}

/** Keep-best checkpointing (Keras's ModelCheckpoint with save_best_only). See {@link keepBest}. */
export class KeepBest extends Monitoring implements StatefulCallback {
  readonly stateKey = 'keepBest';
  best: number | null = null;
  bestEpoch = 0;
  constructor(private readonly o: KeepBestOptions) {
    super(o.monitor ?? DEFAULTS.monitor, o.mode, o.minDelta ?? 0);
  }
  override async onEpochEnd(epoch: number, logs?: CallbackLogs): Promise<void> {
    const v = monitored(logs, this.key, 'keep-best');
    if (!this.improves(v, this.best)) return;
    this.best = v; this.bestEpoch = epoch + 1;
    if (this.model) await this.o.save(this.model, epoch + 1, v);
  }
  getState(): unknown { return { best: this.best, bestEpoch: this.bestEpoch }; }
  setState(s: unknown): void { const o = s as { best: number | null; bestEpoch: number }; this.best = o.best; this.bestEpoch = o.bestEpoch; }
}

/**
 * Save the model whenever `monitor` improves (Keras's ModelCheckpoint(save_best_only=True)); `slimfit train --keep-best`
 * saves into the run's best/ folder.
 *
 * @example
 * callbacks: [keepBest({ monitor: 'val_acc', save: (m) => saveModel(m, 'runs/x/best', { includeOptimizer: false }) })]
 */
export function keepBest(o: KeepBestOptions): KeepBest {
  return new KeepBest(o);
}

/** Options of {@link reduceLrOnPlateau} (Keras's ReduceLROnPlateau, without cooldown). */
export interface ReduceLrOptions {
  monitor?: string;
  mode?: 'auto' | 'min' | 'max';
  /** Multiply the rate by this after `patience` epochs in a row without improvement (default 0.1). */
  factor?: number;
  /** Default 10. */
  patience?: number;
  /** Default 1e-4. */
  minDelta?: number;
  /** The rate is not reduced below this (default 0). */
  minLr?: number;
}

/** Reduce-LR-on-plateau: a factor on the scheduled learning rate that the loop applies. See {@link reduceLrOnPlateau}. */
export class ReduceLrOnPlateau extends Monitoring implements StatefulCallback, LrScaler {
  readonly stateKey = 'reduceLrOnPlateau';
  readonly factor: number;
  readonly patience: number;
  readonly minLr: number;
  lrScale = 1;
  best: number | null = null;
  wait = 0;
  constructor(o: ReduceLrOptions = {}) {
    super(o.monitor ?? DEFAULTS.monitor, o.mode, o.minDelta ?? DEFAULTS.plateauMinDelta);
    this.factor = o.factor ?? DEFAULTS.plateauFactor;
    this.patience = o.patience ?? DEFAULTS.plateauPatience;
    this.minLr = o.minLr ?? DEFAULTS.plateauMinLr;
    if (!(this.factor > 0 && this.factor < 1)) throw new SlimfitError(`reduce-LR-on-plateau factor must be between 0 and 1 (exclusive), got ${this.factor}`);
    if (!(Number.isInteger(this.patience) && this.patience >= 0)) throw new SlimfitError(`reduce-LR-on-plateau patience must be a whole number >= 0, got ${this.patience}`);
    if (!(this.minLr >= 0)) throw new SlimfitError(`reduce-LR-on-plateau minLr must be >= 0, got ${this.minLr}`);
  }
  override async onEpochEnd(_epoch: number, logs?: CallbackLogs): Promise<void> {
    const v = monitored(logs, this.key, 'reduce-LR-on-plateau');
    if (this.improves(v, this.best)) { this.best = v; this.wait = 0; return; }
    this.wait++;
    if (this.wait >= this.patience) { this.lrScale *= this.factor; this.wait = 0; }
  }
  getState(): unknown { return { best: this.best, wait: this.wait, lrScale: this.lrScale }; }
  setState(s: unknown): void { const o = s as { best: number | null; wait: number; lrScale: number }; this.best = o.best; this.wait = o.wait; this.lrScale = o.lrScale; }
}

/**
 * Multiply the learning rate by `factor` once `monitor` has not improved for `patience` epochs in a row, never below
 * `minLr`; composes with lrDecay and lrSchedule (the loop multiplies them).
 *
 * @example
 * callbacks: [reduceLrOnPlateau({ factor: 0.5, patience: 2 })]
 */
export function reduceLrOnPlateau(o: ReduceLrOptions = {}): ReduceLrOnPlateau {
  return new ReduceLrOnPlateau(o);
}
