// `slimfit show DIR`: a PNG grid of samples with their labels.
import type { Command } from 'commander';
import { DEFAULTS } from '../train/defaults.ts';
import { addRemoteFlags, remoteFlags, wholeFlag } from './flags.ts';

/** Register `show`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('show')
    .description('write a PNG grid of samples of a split with their labels')
    .argument('<DIR>', 'store folder or URL (http(s)://host/path, s3://bucket/prefix)')
    .option('--split <name>', 'split to show', 'train')
    .option('-n, --count <n>', 'number of samples', wholeFlag('--count', 1), DEFAULTS.gridSamples)
    .option('--seed <n>', 'show random samples drawn with this seed (default: the first ones)', wholeFlag('--seed', 0))
    .option('--out <file>', 'PNG file to write', 'samples.png')
    .option('--no-verify', 'do not check the store\'s shard checksums (SHA-256) before using them')
    .action(async (dir: string, o) => {
      const { writeSampleGrid } = await import('../train/show.ts');
      const n = await writeSampleGrid(dir, o.out, { split: o.split, n: o.count, seed: o.seed, verifyChecksums: o.verify, remote: remoteFlags(o) });
      process.stdout.write(`wrote ${n} samples of '${o.split}' to ${o.out}\n`);
    }));
}
