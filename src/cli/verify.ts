// `slimfit verify DIR`: re-checksum every shard; exit 1 naming each bad one.
import type { Command } from 'commander';
import { verifyStore } from '../store/verify.ts';
import { formatBytes } from '../core/rss.ts';

/** Register `verify`. */
export function register(program: Command): void {
  program.command('verify')
    .description('re-checksum every shard of a store against dataset.json; exits non-zero naming any bad shard')
    .argument('<dir>', 'store folder')
    .option('-q, --quiet', 'no progress output')
    .action(async (dir: string, o: { quiet?: boolean }) => {
      const r = await verifyStore(dir, { quiet: o.quiet });
      if (r.bad.length === 0) {
        process.stdout.write(`ok: ${r.files} shard files, ${formatBytes(r.bytes)}, all checksums match\n`);
        return;
      }
      for (const b of r.bad) process.stderr.write(`slimfit: bad shard: ${b.file}: ${b.problem}\n`);
      process.stderr.write(`slimfit: ${r.bad.length} of ${r.files} shard files are damaged; re-run \`slimfit convert\` to rebuild the store\n`);
      process.exitCode = 1;
    });
}
