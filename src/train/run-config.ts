// What a training run is: the options saved in run.json, and how `--resume` restores them, takes changes given again,
// and refuses a different model, split, dataset path or dataset contents.
import { createHash } from 'node:crypto';
import { isRemote } from '../remote/index.ts';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import type { LoaderOptions } from '../loader/types.ts';
import type { DataInput, ResolvedData, SavedMix } from './data.ts';
import type { OptimizerName } from './loop.ts';

/** Saved once per run (and again when a resume changes it): what to train on and how, so `--resume` needs nothing else. */
export interface RunConfig {
  data: DataInput;
  model: string;
  epochs: number;
  batchSize: number;
  lr: number;
  optimizer: OptimizerName;
  seed: number;
  split: string;
  shuffle: LoaderOptions['shuffle'];
  /** Shards per window of shuffle 'shard' (absent for other modes and in older runs). */
  shuffleShards?: number;
  lrDecay: number;
  shift: number;
  /** Training augmentation as an `--augment` spec, e.g. 'rotate=10,scale=0.1' (absent or '': none). */
  augment?: string;
  valSplit?: string;
  /** Fraction of the training split held out for validation when there is no validation split (absent in older runs: 0). */
  valFraction?: number;
  /** Input normalization the model was trained with (evaluation reuses it, whatever data it is given). */
  normalize?: LoaderOptions['normalize'];
  /** Identity of the training data when the run started (absent in older runs: not checked). */
  fingerprint?: string;
  /** Early stopping on val_loss with this patience, best weights restored (absent: none). */
  patience?: number;
  /** Save the best epoch into best/ (absent: no). */
  keepBest?: boolean;
  /** Learning-rate schedule string (absent: none). */
  lrSchedule?: string;
  /** Reduce-LR-on-plateau 'PATIENCE[:FACTOR[:MIN_LR]]' (absent: none). */
  reduceLrOnPlateau?: string;
  /** Other stores drawn from with weights, `data` being the first source (absent: `data` alone). */
  mix?: SavedMix;
  /** Names of the classes, index = label, for data that has none (.npy/.npz); absent: the data's own or 0..K-1. */
  classNames?: string[];
  /** Draw the classes of `data` equally often (absent: no; a mix says it per source in `mix.balanced`). */
  balanced?: boolean;
  /** Precision of the matrix products: 'float32' or the opt-in 'bf16' mixed precision (absent in older runs: float32). */
  matmulPrecision?: 'float32' | 'bf16';
}

/**
 * Options a resumed run may change (the cursor counts samples in an order fixed by the seed, so the batch size may
 * change); callback options given again keep the callbacks' saved state (best value, wait counter, rate scale).
 */
const CHANGEABLE = ['epochs', 'batchSize', 'lr', 'lrDecay', 'shift', 'augment', 'patience', 'keepBest', 'lrSchedule', 'reduceLrOnPlateau', 'matmulPrecision'] as const;
/**
 * Options that define a run with a checkpoint, with their flag names for messages: its weights and optimizer state
 * belong to the model and optimizer, and its loader cursor to the training samples (split and hold-out) and their order.
 */
const FIXED = [
  ['model', '--model'], ['split', '--split'], ['optimizer', '--optimizer'], ['seed', '--seed'], ['shuffle', '--shuffle'],
  ['shuffleShards', '--shuffle-shards'], ['valSplit', '--val-split'], ['valFraction', '--val-fraction'], ['balanced', '--balanced'],
] as const;

/** Run options as given by the caller; undefined = not given (on resume: keep the run's own). */
export type RunOverrides = Partial<Pick<RunConfig, (typeof CHANGEABLE)[number] | (typeof FIXED)[number][0] | 'mix'>>;

function describeMix(m: SavedMix | undefined): string {
  return m ? `a mix with ${m.with.map((w) => `${w.dir} (${w.split})`).join(', ')}, weights ${m.weights.join(',')}${m.balanced.length ? `, balanced sources ${m.balanced.join(',')}` : ''}${m.epochSamples ? `, ${m.epochSamples} samples per epoch` : ''}` : 'no mix';
}

/** `data` with absolute paths (a run folder must not depend on the directory it was started from). */
export function absoluteData(d: DataInput): DataInput {
  if (typeof d === 'string') return isRemote(d) ? d : resolve(d);
  if ('npz' in d) return { npz: resolve(d.npz), x: d.x, y: d.y };
  if ('x' in d && 'y' in d && typeof d.x === 'string' && !('samples' in d)) return { x: resolve(d.x), y: resolve(d.y) };
  return d;
}

function describe(d: DataInput): string {
  return typeof d === 'string' ? d : JSON.stringify(d);
}

/** The model name as saved: built-in names as they are, a model file by absolute path. */
export function savedModelName(model: string, builtin: (s: string) => boolean): string {
  return builtin(model) ? model : resolve(model);
}

/**
 * Identity of the training data: a store's manifest fingerprint (its shard checksums), else size and modification
 * time of the plain files (reading them whole just to resume would cost a full pass).
 */
export async function dataFingerprint(d: DataInput, rd: ResolvedData): Promise<string | undefined> {
  if (rd.fingerprint) return rd.fingerprint;
  const files = typeof d === 'string' ? [] : 'npz' in d ? [d.npz] : 'samples' in d ? [] : [d.x, d.y];
  if (!files.length) return undefined;
  const h = createHash('sha256');
  for (const f of files) {
    const s = await stat(f);
    h.update(`${f}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return h.digest('hex');
}

/**
 * Merge a resume's options into the saved config: options given again replace the saved ones (CHANGEABLE), options that
 * define the run must equal the saved ones, and data given again must be the same path (or `force`).
 */
export function resumeConfig(saved: RunConfig, given: RunOverrides, data: DataInput | undefined, o: { force?: boolean; run: string; hasCheckpoint: boolean; log: (l: string) => void }): RunConfig {
  const cfg: RunConfig = { ...saved };
  for (const [key, flag] of FIXED) {
    const v = given[key];
    if (v !== undefined && v !== saved[key] && o.hasCheckpoint) {
      throw new SlimfitError(`this run was started with ${flag} ${String(saved[key])}; its checkpoint cannot continue with ${flag} ${String(v)}`, {
        file: o.run, hint: `drop ${flag} to resume the run as it is, or start a new run with another --out`,
      });
    }
    if (v !== undefined) (cfg as unknown as Record<string, unknown>)[key] = v;
  }
  // The mix fixes what the cursor counts (its sources, weights and epoch length), like the seed.
  if (given.mix !== undefined && JSON.stringify(given.mix) !== JSON.stringify(saved.mix)) {
    if (o.hasCheckpoint) {
      throw new SlimfitError(`this run was started with ${describeMix(saved.mix)}; its checkpoint cannot continue with ${describeMix(given.mix)}`, {
        file: o.run, hint: 'drop the data arguments and mix flags to resume the run as it is, or start a new run with another --out',
      });
    }
    cfg.mix = given.mix;
  }
  // Without a checkpoint the run starts afresh: its input normalization is taken from the data again.
  if (!o.hasCheckpoint) delete cfg.normalize;
  for (const key of CHANGEABLE) {
    const v = given[key];
    if (v !== undefined && v !== saved[key]) {
      o.log(`resume: ${key} ${String(saved[key])} -> ${String(v)} (given again)`);
      (cfg as unknown as Record<string, unknown>)[key] = v;
    }
  }
  if (data !== undefined) {
    const d = absoluteData(data);
    if (JSON.stringify(d) !== JSON.stringify(absoluteData(saved.data))) {
      if (!o.force) {
        throw new SlimfitError(`this run trains on ${describe(saved.data)}, not on ${describe(d)}`, {
          file: o.run, hint: 'drop the data argument to resume on the run\'s own data, pass --force to continue on the new data, or start a new run with another --out',
        });
      }
      o.log(`resume: training data ${describe(saved.data)} -> ${describe(d)} (--force)`);
      cfg.data = d;
    }
  }
  return cfg;
}

/** Refuse (unless `force`) to continue a run whose training data changed since it started. */
export function checkSameData(cfg: RunConfig, now: string | undefined, o: { force?: boolean; run: string; log: (l: string) => void }): void {
  if (!cfg.fingerprint || !now || now === cfg.fingerprint) return;
  if (!o.force) {
    throw new SlimfitError(`the training data ${describe(cfg.data)} changed since this run started (its contents differ from the ones the run recorded: rebuilt or edited?)`, {
      file: o.run, hint: 'resume on the data the run started with, pass --force to continue on the changed data, or start a new run with another --out',
    });
  }
  o.log(`resume: the training data changed since this run started; continuing on it (--force)`);
}
