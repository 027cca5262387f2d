// `slimfit show DIR`: a PNG grid of samples with their labels.
import type { Command } from 'commander';
import { DEFAULTS } from '../train/defaults.ts';
import { augmentFlag, wholeFlag } from './flags.ts';
import { AUGMENT_SYNTAX } from '../loader/augment.ts';

/** Register `show`. */
export function register(program: Command): void {
  program.command('show')
    .description('write a PNG grid of samples of a split with their labels')
    .argument('<DIR>', 'store directory')
    .option('--split <name>', 'split to show', 'train')
    .option('-n, --count <n>', 'number of samples', wholeFlag('--count', 1), DEFAULTS.gridSamples)
    .option('--seed <n>', 'show random samples drawn with this seed (default: the first ones)', wholeFlag('--seed', 0))
    .option('--out <file>', 'PNG file to write', 'samples.png')
    .option('--augment <spec>', `show what training sees: rows of random samples, each as stored and then in 7 augmented draws (${AUGMENT_SYNTAX}), e.g. rotate=10,scale=0.1,erase=0.5`, augmentFlag('--augment'))
    .option('--no-verify', 'do not check the store\'s shard checksums (SHA-256) before using them')
    .action(async (dir: string, o) => {
      const { writeSampleGrid } = await import('../train/show.ts');
      const n = await writeSampleGrid(dir, o.out, { split: o.split, n: o.count, seed: o.seed, verifyChecksums: o.verify, augment: o.augment || undefined });
      if (o.augment) process.stdout.write(`wrote ${n / 8} samples of '${o.split}' (as stored, then 7 draws of --augment ${o.augment}) to ${o.out}\n`);
      else process.stdout.write(`wrote ${n} samples of '${o.split}' to ${o.out}\n`);
    });
}
