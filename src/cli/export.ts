// `slimfit export DIR --split test --out test.npz`: one split as a plain .npz for people who want one file.
import type { Command } from 'commander';
import { addRemoteFlags, remoteFlags } from './flags.ts';
import { formatBytes } from '../core/rss.ts';

/** Register `export`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('export')
    .description('write one split of a store as a plain .npz (arrays x and y), streamed')
    .argument('<dir>', 'store folder or URL (http(s)://host/path, s3://bucket/prefix)')
    .requiredOption('--split <name>', 'which split, e.g. test')
    .requiredOption('--out <file>', 'the .npz to write')
    .option('-q, --quiet', 'no progress output')
    .option('--no-verify', 'do not check the store\'s shard checksums (SHA-256) before using them')
    .action(async (dir: string, o: { split: string; out: string; quiet?: boolean; verify: boolean; cacheDir?: string; cacheLimit?: string; endpoint?: string }) => {
      const { exportSplit } = await import('../store/export.ts');
      const bytes = await exportSplit(dir, o.split, o.out, { quiet: o.quiet, verifyChecksums: o.verify, remote: remoteFlags(o) });
      process.stdout.write(`wrote ${o.out} (${formatBytes(bytes)})\n`);
    }));
}
