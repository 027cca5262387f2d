// `slimfit show DIR`: a PNG grid of samples with their labels.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { DEFAULTS } from '../train/defaults.ts';
import { addRemoteFlags, augmentFlag, remoteFlags, wholeFlag } from './flags.ts';
import { AUGMENT_SYNTAX } from '../loader/augment.ts';

/** Register `show`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('show')
    .description('write a PNG grid of samples of a split with their labels')
    .argument('<DIR>', 'store folder or URL (http(s)://host/path, s3://bucket/prefix)')
    .option('--split <name>', 'split to show', 'train')
    .option('-n, --count <n>', 'number of samples', wholeFlag('--count', 1), DEFAULTS.gridSamples)
    .option('--seed <n>', 'seed of the random draw of samples (the same seed shows the same samples)', wholeFlag('--seed', 0), DEFAULTS.seed)
    .option('--first', 'show the first samples in stored order instead of a random draw')
    .option('--out <file>', 'PNG file to write', 'samples.png')
    .option('--augment <spec>', `show what training sees: rows of random samples, each as stored and then in 7 augmented draws (${AUGMENT_SYNTAX}), e.g. rotate=10,scale=0.1,erase=0.5`, augmentFlag('--augment'))
    .option('--no-verify', 'do not check the store\'s shard checksums (SHA-256) before using them')
    .action(async (dir: string, o) => {
      const { writeSampleGrid } = await import('../train/show.ts');
      const g = await writeSampleGrid(dir, o.out, { split: o.split, n: o.count, seed: o.seed, first: o.first, verifyChecksums: o.verify, augment: o.augment || undefined, remote: remoteFlags(o) });
      const what = g.seed === null ? `the first ${g.count} samples` : `${g.count} random samples (seed ${g.seed}; --seed N for others, --first for the first ones)`;
      const aug = g.draws ? `, each as stored and then in ${g.draws} draws of --augment ${o.augment},` : '';
      process.stdout.write(`wrote ${what} of '${o.split}'${aug} to ${resolve(o.out)}\n`);
    }));
}
