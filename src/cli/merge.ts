// `slimfit merge OUT PARTS...`: join the part stores of `convert --part I/N` into one store.
import type { Command } from 'commander';
import { UsageError } from '../core/errors.ts';
import { JSON_FLAG, keepStdoutForJson, printJson } from './json-out.ts';

/** Register `merge`. */
export function register(program: Command): void {
  program.command('merge')
    .description('join part stores made by `convert --part I/N` into one store (shards are moved, not copied)')
    .argument('<paths...>', 'OUT PART0 PART1 ... (the parts in any order)')
    .option('--force', 'replace an existing store at OUT')
    .option('-q, --quiet', 'no summary table')
    .option('--json', JSON_FLAG)
    .action(async (paths: string[], o: { force?: boolean; quiet?: boolean; json?: boolean }, cmd: Command) => {
      if (paths.length < 2) throw new UsageError('give OUT and at least one part store', { hint: 'slimfit merge OUT PART0 PART1 ...' });
      if (o.json) keepStdoutForJson();
      const [out, ...parts] = paths;
      const { mergeStores } = await import('../store/parts.ts');
      const r = await mergeStores(out, parts, {
        force: o.force, command: ['slimfit', ...cmd.parent!.args].join(' '), tool: `slimfit ${cmd.parent!.version() ?? ''}`.trim(),
      });
      const to = o.json ? process.stderr : process.stdout;
      const summary = await import('./convert-summary.ts');
      if (!o.quiet) summary.printConversionSummary(r, to, { text: r.text });
      to.write(`merged ${r.parts} part stores into ${out}: ${r.moved} shard files renamed${r.copied ? `, ${r.copied} copied (another file system)` : ''}; the part stores were removed\n`);
      summary.warnNonFinite(r);
      // convert --json's keys (the same values one conversion gives), and the merge's own.
      if (o.json) printJson({ ...summary.conversionJson(r, { text: r.text }), parts: r.parts, moved: r.moved, copied: r.copied });
    });
}
