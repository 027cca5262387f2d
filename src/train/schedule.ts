// Learning-rate schedules (Keras's LearningRateScheduler / PyTorch's StepLR, ExponentialLR and cosine annealing with
// linear warm-up), per epoch or per batch. The loop multiplies: base lr x lrDecay^epoch x schedule factor x plateau scale.
import { SlimfitError } from '../core/errors.ts';

/** A learning-rate schedule; `per` says whether the factor changes once per epoch or before every batch. */
export type LrSchedule =
  | { kind: 'step'; everyEpochs: number; gamma: number; per: 'epoch' | 'batch' }
  | { kind: 'exp'; gamma: number; per: 'epoch' | 'batch' }
  | { kind: 'cosine'; warmupEpochs: number; per: 'epoch' | 'batch' };

/** The syntax `--lr-schedule` takes (also accepted by trainRun's `lrSchedule` as a string). */
export const LR_SCHEDULE_SYNTAX = 'step:EPOCHS:GAMMA, exp:GAMMA or cosine:WARMUP_EPOCHS, each optionally followed by @batch (changes before every batch instead of once per epoch)';

/**
 * The factor schedule `s` gives the learning rate of the batch `batch` (0-based) of epoch `epoch` (0-based), in a run
 * of `epochs` epochs of `batchesPerEpoch` batches. Time t counts epochs: t = epoch per epoch, epoch + batch /
 * batchesPerEpoch per batch. step: gamma^floor(t / EPOCHS); exp: gamma^t; cosine: in units u (epochs, or batches when
 * per batch), unit k of K in all with W = WARMUP_EPOCHS worth of units: (k + 1) / W during the warm-up, then
 * (1 + cos(pi (k - W) / (K - W))) / 2, which starts at 1 and reaches 0 after the last unit.
 *
 * @example
 * lrFactor(parseLrSchedule('step:2:0.5'), 3, 0, 10, 5); // 0.5 (epochs 2 and 3 use half the rate)
 */
export function lrFactor(s: LrSchedule, epoch: number, batch: number, batchesPerEpoch: number, epochs: number): number {
  const perBatch = s.per === 'batch';
  const t = perBatch ? epoch + batch / Math.max(1, batchesPerEpoch) : epoch;
  if (s.kind === 'step') return s.gamma ** Math.floor(t / s.everyEpochs + 1e-9);
  if (s.kind === 'exp') return s.gamma ** t;
  const u = perBatch ? Math.max(1, batchesPerEpoch) : 1;
  const k = perBatch ? epoch * u + batch : epoch;
  const K = epochs * u, W = Math.round(s.warmupEpochs * u);
  if (k < W) return (k + 1) / W;
  return (1 + Math.cos(Math.PI * (k - W) / Math.max(1, K - W))) / 2;
}

/**
 * Parse `step:EPOCHS:GAMMA`, `exp:GAMMA` or `cosine:WARMUP_EPOCHS`, each with an optional `@batch` (or `@epoch`, the
 * default) suffix; `where` names the flag or option in errors.
 *
 * @example
 * parseLrSchedule('cosine:1@batch'); // { kind: 'cosine', warmupEpochs: 1, per: 'batch' }
 */
export function parseLrSchedule(spec: string, where = '--lr-schedule'): LrSchedule {
  const bad = (why: string) => new SlimfitError(`${where} '${spec}' ${why}`, { hint: `use ${LR_SCHEDULE_SYNTAX}, e.g. step:10:0.1 or cosine:2@batch` });
  const [body, unit = 'epoch', ...extra] = spec.trim().split('@');
  if (extra.length || (unit !== 'epoch' && unit !== 'batch')) throw bad("has an unknown '@' suffix (only @batch or @epoch)");
  const per = unit as 'epoch' | 'batch';
  const [kind, ...args] = body.split(':');
  const num = (v: string | undefined, what: string, ok: (n: number) => boolean) => {
    const n = v === undefined || v.trim() === '' ? NaN : Number(v);
    if (!Number.isFinite(n) || !ok(n)) throw bad(`needs ${what}, got '${v ?? ''}'`);
    return n;
  };
  const count = (n: number) => { if (args.length !== n) throw bad(`takes ${n} number${n === 1 ? '' : 's'} after '${kind}:'`); };
  if (kind === 'step') {
    count(2);
    return { kind, everyEpochs: num(args[0], 'EPOCHS as a whole number >= 1', (n) => Number.isInteger(n) && n >= 1), gamma: num(args[1], 'GAMMA above 0 and at most 1', (n) => n > 0 && n <= 1), per };
  }
  if (kind === 'exp') {
    count(1);
    return { kind, gamma: num(args[0], 'GAMMA above 0 and at most 1', (n) => n > 0 && n <= 1), per };
  }
  if (kind === 'cosine') {
    count(1);
    return { kind, warmupEpochs: num(args[0], 'WARMUP_EPOCHS >= 0', (n) => n >= 0), per };
  }
  throw bad(`is not a known schedule ('${kind}')`);
}
