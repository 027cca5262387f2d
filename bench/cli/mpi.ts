// `npm run bench -- mpi STORE`: 1 rank x 2 threads vs 2 MPI ranks x 1 thread, all-reduce time, scaling model.
import type { Command } from 'commander';
import { SlimfitError } from '../../src/core/errors.ts';

/** Register `npm run bench -- mpi`. */
export function register(program: Command): void {
  program
    .command('mpi')
    .description('data-parallel training: samples/s of 1 rank x 2 threads vs 2 MPI ranks x 1 thread, time in all-reduce per step, and a ring all-reduce model of 8 and 64 machines at 10 and 100 Gbit/s')
    .argument('<store>', 'a slimfit store with a train split (e.g. MNIST from `slimfit demo` or `slimfit convert`)')
    .option('--models <list>', 'models: mlp,cnn', 'mlp,cnn')
    .option('--batch <n>', 'global batch', '128')
    .option('--epochs <n>', 'epochs per run (the last is timed)', '2')
    .action(async (store: string, o: { models: string; batch: string; epochs: string }) => {
      const { benchMpi } = await import('../mpi/bench.ts');
      const models = o.models.split(',').map((s) => s.trim());
      for (const m of models) if (m !== 'mlp' && m !== 'cnn') throw new SlimfitError(`unknown model '${m}'`, { hint: 'use --models mlp,cnn' });
      const batch = Number(o.batch), epochs = Number(o.epochs);
      if (!(Number.isInteger(batch) && batch >= 2 && batch % 2 === 0)) throw new SlimfitError(`--batch must be an even whole number >= 2 (it is split between 2 ranks), got '${o.batch}'`);
      if (!(Number.isInteger(epochs) && epochs >= 1)) throw new SlimfitError(`--epochs must be a whole number >= 1, got '${o.epochs}'`);
      const r = benchMpi(store, { models: models as Array<'mlp' | 'cnn'>, batch, epochs, log: (l) => process.stderr.write(`${l}\n`) });
      process.stdout.write(r.markdown);
    });
}
