// The demo's training run as trainRun options and as the `slimfit train` command line that does the same, built from
// one object so the command `slimfit demo` prints is the run it makes.
import { DEMO_RECIPE } from './defaults.ts';
import type { TrainRunOptions } from './run.ts';

/** `slimfit train` flag of each trainRun option the demo sets: the command it prints is built from the options it runs. */
const TRAIN_FLAGS = {
  model: '--model', epochs: '--epochs', batchSize: '--batch', lr: '--lr', lrDecay: '--lr-decay', augment: '--augment', valFraction: '--val-fraction', out: '--out', backend: '--backend',
} as const satisfies Partial<Record<keyof TrainRunOptions, string>>;

/**
 * The demo's training run: trainRun options from DEMO_RECIPE and the `slimfit train` command line that does the same.
 *
 * @example
 * demoTrain('~/.cache/slimfit/mnist', { model: 'cnn', epochs: 5, out: 'runs/demo' }).command
 * // 'slimfit train ~/.cache/slimfit/mnist --model cnn --epochs 5 --batch 128 --lr 0.001 --lr-decay 0.7 --augment shift=1 --val-fraction 0 --out runs/demo'
 */
export function demoTrain(store: string, o: { model: string; epochs: number; out: string; backend?: string }): { options: TrainRunOptions; command: string } {
  const options: TrainRunOptions = {
    model: o.model, epochs: o.epochs, batchSize: DEMO_RECIPE.batchSize, lr: DEMO_RECIPE.lr, lrDecay: DEMO_RECIPE.lrDecay,
    augment: o.model === 'mlp' ? undefined : DEMO_RECIPE.convAugment, valFraction: DEMO_RECIPE.valFraction, out: o.out, backend: o.backend,
  };
  const quote = (v: string) => (/^[\w@%+=:,./~-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);
  const args = ['slimfit', 'train', quote(store)];
  for (const [k, flag] of Object.entries(TRAIN_FLAGS)) {
    const v = options[k as keyof typeof TRAIN_FLAGS];
    if (v !== undefined) args.push(flag, quote(String(v)));
  }
  return { options, command: args.join(' ') };
}

