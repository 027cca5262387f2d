// `npm run bench -- augment DIR`: augmented loader throughput beside the cnn's training throughput, same run.
import type { Command } from 'commander';

/** Register `npm run bench -- augment`. */
export function register(program: Command): void {
  program
    .command('augment')
    .description('augmented batches/s and samples/s of the loader beside the samples/s the cnn trains, measured in the same run')
    .argument('<dir>', 'a slimfit store of images (e.g. MNIST converted with `slimfit convert`)')
    .option('--augment <spec>', 'augmentation measured', 'rotate=10,scale=0.1,shear=5,shift=2,noise=0.05,erase=0.5,brightness=0.1,contrast=0.1')
    .option('--batch <n>', 'batch size', '128')
    .option('--seconds <s>', 'seconds per loader measurement', '10')
    .option('--workers <list>', 'loader worker counts, comma-separated', '1,0')
    .option('--no-train', 'skip the cnn training run')
    .action(async (dir: string, o: { augment: string; batch: string; seconds: string; workers: string; train: boolean }) => {
      const { benchAugment } = await import('../augment/bench.ts');
      const md = await benchAugment(dir, {
        augment: o.augment, batch: Number(o.batch), seconds: Number(o.seconds), workers: o.workers.split(',').map(Number), noTrain: !o.train,
        log: (l) => process.stderr.write(`${l}\n`),
      });
      process.stdout.write(`${md}\n`);
    });
}
