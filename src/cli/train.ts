// `slimfit train DIR`: train a model on a store (or .npy/.npz files) into a run folder with checkpoints and a report.
import type { Command } from 'commander';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { UsageError } from '../core/errors.ts';
import { DEFAULTS } from '../train/defaults.ts';
import { LR_SCHEDULE_SYNTAX } from '../train/schedule.ts';
import type { RunSummary } from '../train/run.ts';
import { factorFlag, fractionFlag, positiveFlag, wholeFlag } from './flags.ts';
import { JSON_FLAG, keepStdoutForJson, printJson } from './json-out.ts';

/** Register `train`. */
export function register(program: Command): void {
  program.command('train')
    .description('train a model on a store (or --x/--y .npy files, or an .npz) with checkpoints, a JSONL log and report.md')
    .argument('[DIR]', 'store directory made by `slimfit convert` (or an .npz with --x/--y names); omit with --resume')
    .option('--model <name|path>', 'mlp, cnn, two-branch, or a tfjs model.json', DEFAULTS.model)
    .option('--epochs <n>', 'total epochs', wholeFlag('--epochs', 1), DEFAULTS.epochs)
    .option('--batch <n>', 'batch size', wholeFlag('--batch', 1), DEFAULTS.batchSize)
    .option('--lr <x>', 'learning rate', positiveFlag('--lr'), DEFAULTS.lr)
    .option('--lr-decay <x>', 'multiply the learning rate by this after every epoch', factorFlag('--lr-decay'), DEFAULTS.lrDecay)
    .option('--lr-schedule <spec>', `learning-rate schedule times --lr and --lr-decay: ${LR_SCHEDULE_SYNTAX}; e.g. step:10:0.1 (x0.1 every 10 epochs), exp:0.95, cosine:2 (2 warm-up epochs, then a cosine that reaches 0 as the last epoch ends)`)
    .option('--patience <n>', 'early stopping: stop after this many epochs in a row without a lower val_loss, and keep the weights of the best epoch (also saved in RUN/best/)', wholeFlag('--patience', 0))
    .option('--keep-best', 'save the model into RUN/best/ whenever val_loss (loss without validation) reaches a new low')
    .option('--reduce-lr-on-plateau <spec>', `PATIENCE[:FACTOR[:MIN_LR]]: multiply the learning rate by FACTOR (default ${DEFAULTS.plateauFactor}) after PATIENCE epochs in a row without a lower val_loss, not below MIN_LR (default ${DEFAULTS.plateauMinLr})`)
    .option('--shift <px>', 'augment: seeded random shifts of training images by up to this many pixels', wholeFlag('--shift', 0), DEFAULTS.shift)
    .option('--val-split <name>', "split evaluated after every epoch (default: 'val' when the store has one)")
    .option('--val-fraction <x>', 'with no validation split: hold out this fraction of the training samples at random for validation (0 = none)', fractionFlag('--val-fraction'), DEFAULTS.valFraction)
    .option('--optimizer <name>', 'adam, sgd, rmsprop, momentum', DEFAULTS.optimizer)
    .option('--seed <n>', 'seed of weights and shuffling', wholeFlag('--seed', 0), DEFAULTS.seed)
    .option('--out <dir>', 'run folder (default runs/<model>-<time>)')
    .option('--resume <dir>', 'continue the run in this folder from its last checkpoint and loader cursor, with its saved options (flags given again replace them)')
    .option('--force', 'with --resume: continue even though the data given, or its contents, differ from the run\'s')
    .option('--split <name>', 'split to train on', DEFAULTS.split)
    .option('--x <path|name>', '.npy file of samples (with --y), or the x array name inside an .npz DIR')
    .option('--y <path|name>', '.npy file of labels (with --x), or the y array name inside an .npz DIR')
    .option('--shuffle <mode>', "global, block or none", DEFAULTS.shuffle)
    .option('--workers <n>', 'loader worker threads (default cores-1; 0 = main thread)', wholeFlag('--workers', 0))
    .option('--backend <name>', 'force the TensorFlow.js backend: wasm or cpu')
    .option('--no-test', 'skip the final evaluation on the test split')
    .option('--no-verify', 'do not check the store\'s shard checksums (SHA-256) before using them')
    .option('--json', `${JSON_FLAG}; also when interrupted (then with "interrupted")`)
    .action(async (dir: string | undefined, o, cmd: Command) => {
      if (o.json) keepStdoutForJson();
      const { trainRun } = await import('../train/run.ts');
      const { OPTIMIZERS } = await import('../train/loop.ts');
      if (!(OPTIMIZERS as readonly string[]).includes(o.optimizer)) throw new UsageError(`unknown optimizer '${o.optimizer}'`, { hint: `use one of: ${OPTIMIZERS.join(', ')}` });
      if (!['global', 'block', 'none'].includes(o.shuffle)) throw new UsageError(`unknown --shuffle '${o.shuffle}'`, { hint: 'use global, block or none' });
      let data;
      if (o.x || o.y) {
        if (!o.x || !o.y) throw new UsageError('--x and --y go together');
        data = dir && dir.endsWith('.npz') ? { npz: dir, x: o.x, y: o.y } : { x: o.x, y: o.y };
      } else data = dir;
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
          shift: pick('shift', o.shift), valSplit: pick('valSplit', o.valSplit), valFraction: pick('valFraction', o.valFraction), optimizer: pick('optimizer', o.optimizer),
          seed: pick('seed', o.seed), split: pick('split', o.split), shuffle: pick('shuffle', o.shuffle === 'none' ? false : o.shuffle),
          out: o.resume ?? o.out, resume: Boolean(o.resume), force: o.force, backend: o.backend, workers: o.workers, evaluateTest: o.test, verifyChecksums: o.verify,
          patience: pick('patience', o.patience), keepBest: pick('keepBest', o.keepBest), lrSchedule: pick('lrSchedule', o.lrSchedule), reduceLrOnPlateau: pick('reduceLrOnPlateau', o.reduceLrOnPlateau),
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
    });
}

/** What `train --json` prints: where the run is and how it ended. */
export function trainJson(r: RunSummary): object {
  const last = r.history.at(-1);
  const stop = last?.stoppedEarly;
  return {
    run: r.out,
    report: r.report || null,
    backend: r.backend,
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
