// `slimfit info DIR`: a readable summary of a store.
import type { Command } from 'commander';
import { readManifest } from '../store/manifest.ts';
import { summarizeStore } from '../store/summary.ts';

/** Register `info`. */
export function register(program: Command): void {
  program.command('info')
    .description('print a readable summary of a store (fields, splits, classes, stats, provenance)')
    .argument('<dir>', 'store folder (made by `slimfit convert`)')
    .option('--json', 'print the raw dataset.json instead')
    .action(async (dir: string, o: { json?: boolean }) => {
      const m = await readManifest(dir);
      process.stdout.write(o.json ? JSON.stringify(m, null, 2) + '\n' : summarizeStore(dir, m) + '\n');
    });
}
