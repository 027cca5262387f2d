// `slimfit info DIR`: a readable summary of a store.
import type { Command } from 'commander';
import { addRemoteFlags, remoteFlags } from './flags.ts';
import { readManifestAt } from '../store/remote.ts';
import { summarizeStore } from '../store/summary.ts';
import { printJson } from './json-out.ts';

/** Register `info`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('info')
    .description('print a readable summary of a store (fields, splits, classes, stats, provenance)')
    .argument('<dir>', 'store folder (made by `slimfit convert`) or URL (http(s)://host/path, s3://bucket/prefix)')
    .option('--json', 'print the store\'s dataset.json (one JSON object on stdout) instead')
    .action(async (dir: string, o: { json?: boolean; cacheDir?: string; cacheLimit?: string; endpoint?: string }) => {
      const m = await readManifestAt(dir, remoteFlags(o));
      if (o.json) printJson(m);
      else process.stdout.write(summarizeStore(dir, m) + '\n');
    }));
}
