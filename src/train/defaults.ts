// Defaults of training and evaluation, written once: fit/evaluate/trainRun/evalRun apply them and the CLI's flags
// show and use the same values.
import { LOADER_DEFAULTS } from '../loader/defaults.ts';

/** What training and evaluation use for an option left out. */
export const DEFAULTS = {
  ...LOADER_DEFAULTS,
  /**
   * Samples per batch when evaluating (validation, test, `slimfit eval`): no gradients are kept, so larger batches
   * than training's cost little memory and fewer calls.
   */
  evalBatchSize: 256,
  model: 'cnn',
  epochs: 5,
  optimizer: 'adam',
  lr: 1e-3,
  /** Per-epoch learning-rate factor (1 = constant). */
  lrDecay: 1,
  /** What early stopping, keep-best and reduce-LR-on-plateau watch (Keras's log names: val_loss, val_acc, loss, acc). */
  monitor: 'val_loss',
  /** Early stopping: a change smaller than this is no improvement (Keras's min_delta). */
  earlyStoppingMinDelta: 0,
  /** Reduce-LR-on-plateau: factor applied to the learning rate after `patience` epochs without improvement. */
  plateauFactor: 0.1,
  /** Reduce-LR-on-plateau: epochs without improvement before the rate is reduced (Keras's default). */
  plateauPatience: 10,
  /** Reduce-LR-on-plateau: a change smaller than this is no improvement (Keras's default min_delta). */
  plateauMinDelta: 1e-4,
  /** Reduce-LR-on-plateau: the rate is never reduced below this. */
  plateauMinLr: 0,
  /** Pixels of random shift augmentation (0 = none). */
  shift: 0,
  /** Training augmentation as an `--augment` spec ('' = none). */
  augment: '',
  /** Without a validation split: the fraction of training samples held out at random. */
  valFraction: 0.1,
  /** Split trained on. */
  split: 'train',
  /** Split evaluated by evaluate/evalRun. */
  evalSplit: 'test',
  /**
   * Precision of the fused Dense step's matrix products: 'float32', or the opt-in 'bf16' mixed precision (bfloat16
   * operands, float32 accumulation, float32 weights and Adam) on CPUs with AMX-BF16 or AVX512_BF16.
   */
  matmulPrecision: 'float32' as 'float32' | 'bf16',
  /** Samples in a `slimfit show` grid. */
  gridSamples: 64,
} as const;

/**
 * The recipe `slimfit demo` trains MNIST with, as `slimfit train` options (the demo prints the equivalent command):
 * Adam 1e-3 decayed x0.7 per epoch, 7 epochs, batch 128, for conv models seeded random shifts of up to 1 px, and all
 * 60000 training images (no held-out part: the standard MNIST protocol, judged on the 10k test set). Kept apart from
 * DEFAULTS so a change of the library's defaults does not silently change what the demo measured (README "Demo").
 */
export const DEMO_RECIPE = { epochs: 7, batchSize: 128, lr: 1e-3, lrDecay: 0.7, convAugment: 'shift=1', valFraction: 0 } as const;
