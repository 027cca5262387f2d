// `slimfit train DIR`: train a model on a store (or .npy/.npz files) into a run folder with checkpoints and a report.
import type { Command } from 'commander';
import { constants } from 'node:os';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UsageError } from '../core/errors.ts';
import { DEFAULTS } from '../train/defaults.ts';
import { LOADER_DEFAULTS } from '../loader/defaults.ts';
import { LR_SCHEDULE_SYNTAX } from '../train/schedule.ts';
import { AUGMENT_SYNTAX } from '../loader/augment.ts';
import type { RunSummary } from '../train/run.ts';
import type { MixSpec } from '../train/data.ts';
import { addRemoteFlags, augmentFlag, factorFlag, fractionFlag, positiveFlag, remoteFlags, wholeFlag } from './flags.ts';
import { JSON_FLAG, keepStdoutForJson, printJson } from './json-out.ts';

/** Register `train`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('train')
    .description('train a model on a store (or --x/--y .npy files, or an .npz) with checkpoints, a JSONL log and report.md')
    .argument('[DIR...]', 'store directory made by `slimfit convert` or its URL (http(s)://..., s3://bucket/prefix), or an .npz with --x/--y names); several stores (each DIR or DIR#SPLIT) are mixed, see --weights; omit with --resume')
    .option('--model <name|path>', 'mlp, cnn, two-branch, or a tfjs model.json', DEFAULTS.model)
    .option('--epochs <n>', 'total epochs', wholeFlag('--epochs', 1), DEFAULTS.epochs)
    .option('--batch <n>', 'batch size', wholeFlag('--batch', 1), DEFAULTS.batchSize)
    .option('--lr <x>', 'learning rate', positiveFlag('--lr'), DEFAULTS.lr)
    .option('--lr-decay <x>', 'multiply the learning rate by this after every epoch', factorFlag('--lr-decay'), DEFAULTS.lrDecay)
    .option('--lr-schedule <spec>', `learning-rate schedule times --lr and --lr-decay: ${LR_SCHEDULE_SYNTAX}; e.g. step:10:0.1 (x0.1 every 10 epochs), exp:0.95, cosine:2 (2 warm-up epochs, then a cosine that reaches 0 as the last epoch ends)`)
    .option('--patience <n>', 'early stopping: stop after this many epochs in a row without a lower val_loss, and keep the weights of the best epoch (also saved in RUN/best/)', wholeFlag('--patience', 0))
    .option('--keep-best', 'save the model into RUN/best/ whenever val_loss (loss without validation) reaches a new low')
    .option('--reduce-lr-on-plateau <spec>', `PATIENCE[:FACTOR[:MIN_LR]]: multiply the learning rate by FACTOR (default ${DEFAULTS.plateauFactor}) after PATIENCE epochs in a row without a lower val_loss, not below MIN_LR (default ${DEFAULTS.plateauMinLr})`)
    .option('--shift <px>', 'augment: seeded random shifts of training images by up to this many pixels (the same as --augment shift=PX)', wholeFlag('--shift', 0), DEFAULTS.shift)
    .option('--augment <spec>', `seeded random augmentation of training samples (never validation/test): ${AUGMENT_SYNTAX}; e.g. rotate=10,scale=0.1,shear=5,shift=2,noise=0.05,erase=0.5,flip,brightness=0.1,contrast=0.1; 'none' to turn off on --resume`, augmentFlag('--augment'))
    .option('--val-split <name>', "split evaluated after every epoch (default: 'val' when the store has one)")
    .option('--val-fraction <x>', 'with no validation split: hold out this fraction of the training samples at random for validation (0 = none)', fractionFlag('--val-fraction'), DEFAULTS.valFraction)
    .option('--weights <list>', 'with several stores: how often each is drawn, e.g. 0.7,0.3 (any non-negative numbers, normalized; default equal)')
    .option('--balanced [sources]', 'draw classes equally often: in every source, or in the sources listed by number (1 = the first store), e.g. --balanced 2')
    .option('--epoch-samples <n>', "with several stores: samples per epoch (default: the stores' samples added up)", wholeFlag('--epoch-samples', 1))
    .option('--class-names <list>', 'comma-separated class names (index = label) for .npy/.npz data, which has none: used in the report and confusion matrix')
    .option('--optimizer <name>', 'adam, sgd, rmsprop, momentum', DEFAULTS.optimizer)
    .option('--matmul-precision <p>', 'float32, or bf16: opt-in mixed precision for Dense-chain models (GEMM operands rounded to bfloat16, float32 accumulation, float32 weights and Adam; needs AMX-BF16 or AVX512_BF16)', DEFAULTS.matmulPrecision)
    .option('--seed <n>', 'seed of weights and shuffling', wholeFlag('--seed', 0), DEFAULTS.seed)
    .option('--out <dir>', 'run folder (default runs/<model>-<time>)')
    .option('--resume <dir>', 'continue the run in this folder from its last checkpoint and loader cursor, with its saved options (flags given again replace them)')
    .option('--force', 'with --resume: continue even though the data given, or its contents, differ from the run\'s')
    .option('--split <name>', 'split to train on', DEFAULTS.split)
    .option('--x <path|name>', '.npy file of samples (with --y), or the x array name inside an .npz DIR')
    .option('--y <path|name>', '.npy file of labels (with --x), or the y array name inside an .npz DIR')
    .option('--shuffle <mode>', `global, block, shard (shards in random order, a window of shards shuffled together) or none (default: ${DEFAULTS.shuffle}; ${DEFAULTS.remoteShuffle} for a store URL)`)
    .option('--shuffle-shards <n>', `with --shuffle shard: shards per window (default ${DEFAULTS.shuffleShards})`, wholeFlag('--shuffle-shards', 1))
    .option('--workers <n>', 'loader worker threads (0 = main thread; default 0 for a mapped local store without augmentation, else cores-1)', wholeFlag('--workers', 0))
    .option('--backend <name>', 'force the TensorFlow.js backend: wasm or cpu')
    .option('--no-test', 'skip the final evaluation on the test split')
    .option('--no-verify', 'do not check the store\'s shard checksums (SHA-256) before using them')
    .option('--json', `${JSON_FLAG}; also when interrupted (then with "interrupted")`)
    .action(async (dirs: string[], o, cmd: Command) => {
      if (o.json) keepStdoutForJson();
      const { dir, split, mix, balanced } = parseSources(dirs, o);
      const { trainRun } = await import('../train/run.ts');
      const { OPTIMIZERS } = await import('../train/loop.ts');
      if (!(OPTIMIZERS as readonly string[]).includes(o.optimizer)) throw new UsageError(`unknown optimizer '${o.optimizer}'`, { hint: `use one of: ${OPTIMIZERS.join(', ')}` });
      if (o.matmulPrecision !== 'float32' && o.matmulPrecision !== 'bf16') throw new UsageError(`unknown --matmul-precision '${o.matmulPrecision}'`, { hint: 'use float32 or bf16' });
      if (o.shuffle !== undefined && !['global', 'block', 'shard', 'none'].includes(o.shuffle)) throw new UsageError(`unknown --shuffle '${o.shuffle}'`, { hint: 'use global, block, shard or none' });
      let data;
      if (o.x || o.y) {
        if (dirs.length > 1) throw new UsageError('--x/--y train on one pair of arrays; several stores are mixed only without them');
        if (!o.x || !o.y) throw new UsageError('--x and --y go together');
        data = dir && dir.endsWith('.npz') ? { npz: dir, x: o.x, y: o.y } : { x: o.x, y: o.y };
      } else data = dir;
      if (o.augment && cmd.getOptionValueSource('shift') === 'cli') {
        const a = /(?:^|,)shift=(\d+)/.exec(o.augment);
        if (a && Number(a[1]) !== o.shift) throw new UsageError(`--shift ${o.shift} and --augment shift=${a[1]} disagree`, { hint: 'give the shift once' });
      }
      if (!o.resume && data === undefined) throw new UsageError('no training data given', { hint: 'usage: slimfit train DIR [--model cnn] (or --resume runs/NAME)' });
      if (o.force && !o.resume) throw new UsageError('--force goes with --resume (to continue a run on changed data)', { hint: 'drop --force, or add --resume RUN' });
      if (o.resume && o.out && resolve(o.out) !== resolve(o.resume)) throw new UsageError(`--out ${o.out} and --resume ${o.resume} name different run folders`, { hint: 'give only --resume RUN' });
      // A resumed run keeps its saved options: only flags typed on this command line (not defaults) replace them.
      const pick = <T>(flag: string, v: T): T | undefined => (!o.resume || cmd.getOptionValueSource(flag) === 'cli' ? v : undefined);
      // SIGINT/SIGTERM: finish the batch in progress, save a checkpoint there, exit 128 + the signal's number; a second
      // signal exits at once (checkpoints are renamed into place complete, so the last one stays valid).
      const stop = new AbortController();
      const code = (sig: NodeJS.Signals) => 128 + (constants.signals[sig] ?? 2);
      const onSignal = (sig: NodeJS.Signals) => {
        if (stop.signal.aborted) {
          process.stderr.write(`\n${sig} again: exiting now without a new checkpoint (the last complete one stays)\n`);
          process.exit(code(sig));
        }
        process.stderr.write(`\n${sig}: stopping after the batch in progress and saving a checkpoint (${sig} again to quit at once)\n`);
        stop.abort(sig);
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let r;
      try {
        r = await trainRun(data, {
          model: pick('model', o.model), epochs: pick('epochs', o.epochs), batchSize: pick('batch', o.batch), lr: pick('lr', o.lr), lrDecay: pick('lrDecay', o.lrDecay),
          shift: pick('shift', o.shift), augment: pick('augment', o.augment), valSplit: pick('valSplit', o.valSplit), valFraction: pick('valFraction', o.valFraction), optimizer: pick('optimizer', o.optimizer),
          seed: pick('seed', o.seed), split: split ?? pick('split', o.split), mix, balanced,
          classNames: o.classNames ? classNamesFlag(o.classNames) : undefined, shuffle: o.shuffle === undefined ? undefined : o.shuffle === 'none' ? false : o.shuffle,
          shuffleShards: pick('shuffleShards', o.shuffleShards),
          out: o.resume ?? o.out, resume: Boolean(o.resume), force: o.force, backend: o.backend, workers: o.workers, evaluateTest: o.test, verifyChecksums: o.verify, remote: remoteFlags(o),
          patience: pick('patience', o.patience), keepBest: pick('keepBest', o.keepBest), lrSchedule: pick('lrSchedule', o.lrSchedule), reduceLrOnPlateau: pick('reduceLrOnPlateau', o.reduceLrOnPlateau),
          matmulPrecision: pick('matmulPrecision', o.matmulPrecision),
          signal: stop.signal,
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      // Under mpirun only rank 0 reports (the others trained the same model and wrote nothing).
      if (r.rank !== undefined && r.rank > 0) {
        if (stop.signal.aborted) process.exitCode = code(stop.signal.reason as NodeJS.Signals);
        return;
      }
      if (stop.signal.aborted) {
        const sig = stop.signal.reason as NodeJS.Signals;
        const i = r.interrupted;
        const where = !i ? 'after training ended' : i.samplesDone > 0 ? `in epoch ${i.epoch} after ${i.samplesDone} of its samples` : `before epoch ${i.epoch}`;
        process.stderr.write(`interrupted by ${sig} ${where}; the checkpoint is saved. Continue with: slimfit train --resume ${r.out}\n`);
        process.exitCode = code(sig);
        if (o.json) printJson(trainJson(r));
        return;
      }
      if (o.json) {
        printJson(trainJson(r));
        return;
      }
      const last = r.history[r.history.length - 1];
      if (last) process.stdout.write(`final epoch ${last.epoch}: loss ${last.loss.toFixed(4)}, accuracy ${last.accuracy.toFixed(4)}\n`);
      if (r.test) process.stdout.write(`test accuracy ${(100 * r.test.accuracy).toFixed(2)}% on ${r.test.samples} samples\n`);
      process.stdout.write(`report: ${r.report}\nwall time ${r.wallSeconds.toFixed(1)} s\n`);
    }));
}

/**
 * The data arguments: one store (or .npz), or several stores to mix (each DIR or DIR#SPLIT), with --weights,
 * --balanced and --epoch-samples. `#SPLIT` is read as a split only when the whole argument is not itself a folder.
 */
function parseSources(dirs: string[], o: { weights?: string; balanced?: string | boolean; epochSamples?: number; split?: string; x?: string }): { dir?: string; split?: string; mix?: MixSpec; balanced?: boolean } {
  const parse = (arg: string): { dir: string; split?: string } => {
    const at = arg.lastIndexOf('#');
    if (at <= 0 || existsSync(arg)) return { dir: arg };
    const split = arg.slice(at + 1);
    if (!split) throw new UsageError(`'${arg}' ends in '#' but names no split`, { hint: 'write DIR#SPLIT, e.g. extra-store#train' });
    return { dir: arg.slice(0, at), split };
  };
  const list = dirs.map(parse);
  const S = list.length;
  if (S <= 1) {
    if (o.weights !== undefined) throw new UsageError('--weights goes with several stores to mix', { hint: 'usage: slimfit train STORE1 STORE2 --weights 0.7,0.3' });
    if (o.epochSamples !== undefined) throw new UsageError('--epoch-samples goes with several stores to mix', { hint: 'usage: slimfit train STORE1 STORE2 --epoch-samples 60000' });
  }
  const first = list[0];
  if (first?.split !== undefined && o.split !== undefined) throw new UsageError(`--split ${o.split} and '${dirs[0]}' both name the split of the first store`, { hint: 'give one of them' });
  let sources: number[] | undefined; // 0-based
  if (o.balanced === true) sources = Array.from({ length: Math.max(1, S) }, (_, i) => i);
  else if (typeof o.balanced === 'string') {
    sources = o.balanced.split(',').map((t) => {
      const n = t.trim() === '' ? NaN : Number(t);
      if (!(Number.isInteger(n) && n >= 1 && n <= Math.max(1, S))) throw new UsageError(`--balanced takes source numbers from 1 to ${Math.max(1, S)} separated by commas, got '${o.balanced}'`);
      return n - 1;
    });
  }
  if (S <= 1) return { dir: first?.dir, split: first?.split, balanced: sources ? true : undefined };
  let weights: number[] | undefined;
  if (o.weights !== undefined) {
    weights = o.weights.split(',').map((t) => (t.trim() === '' ? NaN : Number(t)));
    if (weights.length !== S || !weights.every((w) => Number.isFinite(w) && w >= 0) || !weights.some((w) => w > 0)) {
      throw new UsageError(`--weights must be ${S} non-negative numbers separated by commas (one per store, in order), not all 0; got '${o.weights}'`);
    }
  }
  return {
    dir: first.dir, split: first.split,
    mix: { with: list.slice(1).map((l) => (l.split ? { dir: l.dir, split: l.split } : l.dir)), weights, balanced: sources, epochSamples: o.epochSamples },
  };
}

/** `--class-names a,b,c`: non-empty names. */
function classNamesFlag(v: string): string[] {
  const names = v.split(',').map((s) => s.trim());
  if (names.some((n) => n === '')) throw new UsageError(`--class-names takes names separated by commas, got '${v}' (an empty name)`);
  return names;
}

/** What `train --json` prints: where the run is and how it ended. */
export function trainJson(r: RunSummary): object {
  const last = r.history.at(-1);
  const stop = last?.stoppedEarly;
  return {
    run: r.out,
    report: r.report || null,
    backend: r.backend,
    matmulPrecision: r.matmulPrecision ?? null,
    epochs: last?.epoch ?? 0,
    final: last ? { loss: last.loss, accuracy: last.accuracy, valLoss: last.valLoss ?? null, valAccuracy: last.valAccuracy ?? null } : null,
    test: r.test ? { accuracy: r.test.accuracy, loss: r.test.loss, samples: r.test.samples } : null,
    stoppedEarly: stop !== undefined,
    // the epoch whose weights early stopping kept, else the last one keep-best saved; null when neither ran
    bestEpoch: stop?.bestEpoch ?? r.history.filter((e) => e.bestSaved).at(-1)?.epoch ?? null,
    interrupted: r.interrupted ?? null,
    seconds: r.wallSeconds,
    peakRssBytes: r.peakRss,
    // under mpirun: ranks, per-rank batch, and rank 0's calls and seconds in MPI_Allreduce
    parallel: r.parallel ?? null,
  };
}
