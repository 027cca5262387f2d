// `slimfit train DIR`: train a model on a store (or .npy/.npz files) into a run folder with checkpoints and a report.
import type { Command } from 'commander';
import { SlimfitError } from '../core/errors.ts';
import { DEFAULTS } from '../train/defaults.ts';
import { factorFlag, fractionFlag, positiveFlag, wholeFlag } from './flags.ts';

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
    .option('--shift <px>', 'augment: seeded random shifts of training images by up to this many pixels', wholeFlag('--shift', 0), DEFAULTS.shift)
    .option('--val-split <name>', "split evaluated after every epoch (default: 'val' when the store has one)")
    .option('--val-fraction <x>', 'with no validation split: hold out this fraction of the training samples at random for validation (0 = none)', fractionFlag('--val-fraction'), DEFAULTS.valFraction)
    .option('--optimizer <name>', 'adam, sgd, rmsprop, momentum', DEFAULTS.optimizer)
    .option('--seed <n>', 'seed of weights and shuffling', wholeFlag('--seed', 0), DEFAULTS.seed)
    .option('--out <dir>', 'run folder (default runs/<model>-<time>)')
    .option('--resume <dir>', 'continue the run in this folder from its last checkpoint and loader cursor')
    .option('--split <name>', 'split to train on', DEFAULTS.split)
    .option('--x <path|name>', '.npy file of samples (with --y), or the x array name inside an .npz DIR')
    .option('--y <path|name>', '.npy file of labels (with --x), or the y array name inside an .npz DIR')
    .option('--shuffle <mode>', "global, block or none", DEFAULTS.shuffle)
    .option('--workers <n>', 'loader worker threads (default cores-1; 0 = main thread)', wholeFlag('--workers', 0))
    .option('--backend <name>', 'force the TensorFlow.js backend: wasm or cpu')
    .option('--no-test', 'skip the final evaluation on the test split')
    .action(async (dir: string | undefined, o) => {
      const { trainRun } = await import('../train/run.ts');
      const { OPTIMIZERS } = await import('../train/loop.ts');
      if (!(OPTIMIZERS as readonly string[]).includes(o.optimizer)) throw new SlimfitError(`unknown optimizer '${o.optimizer}'`, { hint: `use one of: ${OPTIMIZERS.join(', ')}` });
      if (!['global', 'block', 'none'].includes(o.shuffle)) throw new SlimfitError(`unknown --shuffle '${o.shuffle}'`, { hint: 'use global, block or none' });
      let data;
      if (o.x || o.y) {
        if (!o.x || !o.y) throw new SlimfitError('--x and --y go together');
        data = dir && dir.endsWith('.npz') ? { npz: dir, x: o.x, y: o.y } : { x: o.x, y: o.y };
      } else data = dir;
      if (!o.resume && data === undefined) throw new SlimfitError('no training data given', { hint: 'usage: slimfit train DIR [--model cnn] (or --resume runs/NAME)' });
      const r = await trainRun(data, {
        model: o.model, epochs: o.epochs, batchSize: o.batch, lr: o.lr, lrDecay: o.lrDecay, shift: o.shift, valSplit: o.valSplit, valFraction: o.valFraction, optimizer: o.optimizer, seed: o.seed,
        out: o.resume ?? o.out, resume: Boolean(o.resume), split: o.split, backend: o.backend,
        shuffle: o.shuffle === 'none' ? false : o.shuffle, workers: o.workers, evaluateTest: o.test,
      });
      const last = r.history[r.history.length - 1];
      if (last) process.stdout.write(`final epoch ${last.epoch}: loss ${last.loss.toFixed(4)}, accuracy ${last.accuracy.toFixed(4)}\n`);
      if (r.test) process.stdout.write(`test accuracy ${(100 * r.test.accuracy).toFixed(2)}% on ${r.test.samples} samples\n`);
      process.stdout.write(`report: ${r.report}\nwall time ${r.wallSeconds.toFixed(1)} s\n`);
    });
}
