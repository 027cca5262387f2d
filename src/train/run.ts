// A training run on disk: runs/NAME with run.json, log.jsonl, a checkpoint per epoch (model + optimizer + loader cursor),
// resume, final evaluation and report.md. `slimfit train/eval` and `demo` are thin wrappers around these functions.
import { appendFile, mkdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { SlimfitError } from '../core/errors.ts';
import type { Cursor, DataSource, LoaderOptions } from '../loader/types.ts';
import { formatBytes, peakRssBytes } from '../core/rss.ts';
import { initBackend } from './backend.ts';
import { type DataInput, makeEvalLoader, makeLoader, type ResolvedData, resolveData, trainLoaderOptions } from './data.ts';
import { compileDefault, type EpochLog, evaluateLoader, type EvalResult, modelClasses, type OptimizerName, restoreOptimizerExactly, trainEpochs } from './loop.ts';
import { loadModel, saveModel } from './modelio.ts';
import { buildModel, isBuiltinModel } from './models.ts';
import { writeAtomic } from './plot.ts';
import { writeConfusion, writeReport } from './report.ts';

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
  /** Split evaluated after every epoch (default 'val' when the store has one). */
  valSplit?: string;
  /** With no validation split: fraction of the training samples held out at random for validation (default 0.1; 0 = none). */
  valFraction?: number;
  optimizer?: OptimizerName;
  seed?: number;
  /** Run folder (created; default runs/<model>-<time>). */
  out?: string;
  /** Continue the run in `out` from its last checkpoint. */
  resume?: boolean;
  /** Split to train on (default 'train'). */
  split?: string;
  backend?: string;
  shuffle?: LoaderOptions['shuffle'];
  workers?: number;
  prefetch?: number;
  /** Evaluate on the store's test split after training and put it in the report (default true when it exists). */
  evaluateTest?: boolean;
  progress?: boolean;
  /** Where status lines go (default stderr). */
  log?: (line: string) => void;
}

/** The outcome of a run. */
export interface RunSummary {
  out: string;
  report: string;
  backend: string;
  history: EpochLog[];
  test?: EvalResult;
  wallSeconds: number;
  peakRss: number;
}

/** Saved with every checkpoint (in the same atomic rename as the weights). */
interface CheckpointState {
  epochsDone: number;
  cursor: Cursor;
  history: EpochLog[];
}

/** Saved once per run: what to train on and how, so `--resume` needs nothing else. */
interface RunConfig {
  data: DataInput;
  model: string;
  epochs: number;
  batchSize: number;
  lr: number;
  optimizer: OptimizerName;
  seed: number;
  split: string;
  shuffle: LoaderOptions['shuffle'];
  lrDecay: number;
  shift: number;
  valSplit?: string;
  /** Fraction of the training split held out for validation when there is no validation split (absent in older runs: 0). */
  valFraction?: number;
  /** Input normalization the model was trained with (evaluation reuses it, whatever data it is given). */
  normalize?: LoaderOptions['normalize'];
}

const MODEL_DIR = 'model';

async function readJson<T>(path: string, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new SlimfitError(`${what} is missing`, { file: path, hint: 'is this a run folder written by `slimfit train`? a run killed before its first checkpoint cannot be resumed' });
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new SlimfitError(`${what} is not valid JSON`, { file: path });
  }
}

/** Refuse a model whose input or output does not fit the data, before any training step. */
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
}

/** Build or load the model for a fresh run. */
async function freshModel(name: string, src: DataSource, classes: number, seed: number): Promise<tfl.LayersModel> {
  if (isBuiltinModel(name)) return buildModel(name, { inputShape: src.x.shape, classes, seed });
  return loadModel(name);
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
 */
export async function trainRun(data: DataInput | undefined, opts: TrainRunOptions = {}): Promise<RunSummary> {
  const t0 = performance.now();
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const info = await initBackend(opts.backend);
  log(info.note);
  let cfg: RunConfig;
  let state: CheckpointState | null = null;
  const out = resolve(opts.out ?? defaultOut(opts.model ?? 'cnn'));
  if (opts.resume) {
    cfg = await readJson<RunConfig>(join(out, 'run.json'), 'run.json');
    state = await readJson<CheckpointState>(join(out, MODEL_DIR, 'state.json'), 'the checkpoint state');
    if (opts.epochs !== undefined) cfg.epochs = opts.epochs;
    if (state.epochsDone >= cfg.epochs) log(`run already has ${state.epochsDone} of ${cfg.epochs} epochs; nothing to train (pass --epochs to extend)`);
    else log(`resuming ${out} after epoch ${state.epochsDone} (loader cursor: epoch ${state.cursor.epoch}, sample ${state.cursor.position})`);
  } else {
    if (data === undefined) throw new SlimfitError('no training data given', { hint: 'pass a store directory (or use --resume runs/NAME)' });
    if (await stat(join(out, 'run.json')).then(() => true, () => false)) {
      throw new SlimfitError('this run folder already holds a run', { file: out, hint: 'pick another --out, or continue it with --resume' });
    }
    cfg = {
      data: typeof data === 'string' ? resolve(data) : data, model: opts.model ?? 'cnn', epochs: opts.epochs ?? 5, batchSize: opts.batchSize ?? 128,
      lr: opts.lr ?? 1e-3, optimizer: opts.optimizer ?? 'adam', seed: opts.seed ?? 0, split: opts.split ?? 'train', shuffle: opts.shuffle ?? 'global',
      lrDecay: opts.lrDecay ?? 1, shift: opts.shift ?? 0, valSplit: opts.valSplit, valFraction: opts.valFraction ?? 0.1,
    };
    if (typeof cfg.model === 'string' && !isBuiltinModel(cfg.model)) cfg.model = resolve(cfg.model);
  }
  const rd: ResolvedData = await resolveData(cfg.data, cfg.split, cfg.valSplit, cfg.valFraction ?? 0, cfg.seed);
  const loaders: Array<{ close(): Promise<void> }> = [];
  try {
    const model = state ? await loadModel(join(out, MODEL_DIR)) : await freshModel(cfg.model, rd.main, rd.classes, cfg.seed);
    checkModelFits(model, rd.main, rd.classes, cfg.model);
    if (state) restoreOptimizerExactly(model);
    // A fresh run trains with the run's optimizer flags even if a user's model.json carries its own training config
    // (its loss may expect other labels); a resumed run keeps the saved optimizer and its state.
    compileDefault(model, cfg.optimizer, cfg.lr, !state);
    await mkdir(out, { recursive: true });
    const history: EpochLog[] = state ? [...state.history] : [];
    // The log is rebuilt from the checkpoint, so epochs after the last checkpoint (a crash) are not listed twice.
    await writeAtomic(join(out, 'log.jsonl'), history.map((h) => JSON.stringify(h)).join('\n') + (history.length ? '\n' : ''));
    cfg.normalize ??= trainLoaderOptions(rd.main, rd.classes).normalize;
    if (!state) await writeAtomic(join(out, 'run.json'), JSON.stringify(cfg, null, 2) + '\n');
    const lopts = { batchSize: cfg.batchSize, seed: cfg.seed, shuffle: cfg.shuffle, workers: opts.workers, prefetch: opts.prefetch, normalize: cfg.normalize };
    const loader = makeLoader(rd.main, rd.classes, { ...lopts, shift: cfg.shift || undefined });
    loaders.push(loader);
    if (state) loader.resume(state.cursor);
    const val = rd.val ? makeEvalLoader(rd.val, rd.classes, lopts) : null;
    if (val) loaders.push(val);
    log(`training ${cfg.model} on ${rd.main.name}: ${rd.main.samples} samples, ${rd.classes} classes, batch ${cfg.batchSize}, ${cfg.optimizer} lr ${cfg.lr}, ${cfg.epochs} epochs` +
      (cfg.lrDecay !== 1 ? `, lr x${cfg.lrDecay} per epoch` : '') + (cfg.shift ? `, random shifts up to ${cfg.shift} px` : '') +
      (val ? `, validating on ${rd.val!.name}` : ", no validation (no 'val' split and --val-fraction 0)"));
    await trainEpochs(model, loader, {
      epochs: cfg.epochs, initialEpoch: state?.epochsDone ?? 0, validation: val, progress: opts.progress, lr: cfg.lr, lrDecay: cfg.lrDecay ?? 1, log,
      onEpochEnd: async (e, cursor) => {
        history.push(e);
        const st: CheckpointState = { epochsDone: e.epoch, cursor, history };
        await saveModel(model, join(out, MODEL_DIR), { extraFiles: { 'state.json': JSON.stringify(st, null, 2) } });
        await appendFile(join(out, 'log.jsonl'), JSON.stringify(e) + '\n');
        log(`epoch ${e.epoch}/${cfg.epochs}: loss ${e.loss.toFixed(4)} acc ${e.accuracy.toFixed(4)}` +
          (e.valAccuracy !== undefined ? ` val_loss ${e.valLoss!.toFixed(4)} val_acc ${e.valAccuracy.toFixed(4)}` : '') +
          ` | ${e.samplesPerSec.toFixed(0)} samples/s | checkpoint saved`);
      },
    });
    let test: EvalResult | undefined;
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
        ['data', typeof cfg.data === 'string' ? cfg.data : JSON.stringify(cfg.data)], ['model', `${cfg.model} (${model.countParams()} parameters)`],
        ['optimizer', `${cfg.optimizer}, lr ${cfg.lr}${cfg.lrDecay && cfg.lrDecay !== 1 ? ` x${cfg.lrDecay}/epoch` : ''}, batch ${cfg.batchSize}, seed ${cfg.seed}, shuffle ${cfg.shuffle}${cfg.shift ? `, shift ${cfg.shift} px` : ''}`],
        ['backend', info.note.replace(/^backend: /, '')], ['wall time of this invocation', `${wallSeconds.toFixed(1)} s`], ['peak RSS', formatBytes(rss)],
      ],
      history, evaluation: test ? { split: 'test', result: test } : undefined, classNames: rd.classNames,
    });
    model.dispose();
    return { out, report, backend: info.name, history, test, wallSeconds, peakRss: rss };
  } finally {
    for (const l of loaders) await l.close();
    await rd.close();
  }
}

/** Evaluate a run's model (runs/NAME, or a model folder / model.json) on `split` of `data`; writes the confusion matrix next to it. */
export async function evalRun(modelPath: string, data: DataInput, opts: { split?: string; backend?: string; batchSize?: number; progress?: boolean; outDir?: string; log?: (l: string) => void } = {}): Promise<{ result: EvalResult; files: string }> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  const info = await initBackend(opts.backend);
  log(info.note);
  const isRun = await stat(join(modelPath, MODEL_DIR, 'model.json')).then(() => true, () => false);
  const model = await loadModel(isRun ? join(modelPath, MODEL_DIR) : modelPath);
  const split = opts.split ?? 'test';
  const rd = await resolveData(data, split);
  try {
    checkModelFits(model, rd.main, rd.classes, modelPath);
    const trained = isRun ? (await readJson<RunConfig>(join(modelPath, 'run.json'), 'run.json')).normalize : undefined;
    const loader = makeEvalLoader(rd.main, rd.classes, { batchSize: opts.batchSize, normalize: trained });
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
    model.dispose();
    await rd.close();
  }
}
