// `slimfit info DIR`: a readable summary of a store.
import type { Command } from 'commander';
import { readManifest } from '../store/manifest.ts';
import { summarizeStore } from '../store/summary.ts';
import { printJson } from './json-out.ts';

/** Register `info`. */
export function register(program: Command): void {
  program.command('info')
    .description('print a readable summary of a store (fields, splits, classes, stats, provenance)')
    .argument('<dir>', 'store folder (made by `slimfit convert`)')
    .option('--json', 'print the store\'s dataset.json (one JSON object on stdout) instead')
    .action(async (dir: string, o: { json?: boolean }) => {
      const m = await readManifest(dir);
      if (o.json) printJson(m);
      else process.stdout.write(summarizeStore(dir, m) + '\n');
    });
}
