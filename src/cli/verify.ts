// `slimfit verify DIR`: re-checksum every shard; exit 1 naming each bad one.
import type { Command } from 'commander';
import { addRemoteFlags, remoteFlags } from './flags.ts';
import { verifyStore } from '../store/verify.ts';
import { formatBytes } from '../core/rss.ts';
import { JSON_FLAG, printJson } from './json-out.ts';

/** Register `verify`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('verify')
    .description('re-checksum every shard of a store against dataset.json; exits non-zero naming any bad shard')
    .argument('<dir>', 'store folder or URL (http(s)://host/path, s3://bucket/prefix)')
    .option('-q, --quiet', 'no progress output')
    .option('--json', `${JSON_FLAG}; damaged shards: ok false, exit code 1`)
    .action(async (dir: string, o: { quiet?: boolean; json?: boolean; cacheDir?: string; cacheLimit?: string; endpoint?: string }) => {
      const r = await verifyStore(dir, { quiet: o.quiet, remote: remoteFlags(o) });
      // With --json the result is printed for a damaged store too (the stderr lines and exit code 1 stay).
      if (o.json) printJson({ dir, ok: r.bad.length === 0, shards: r.files, bytes: r.bytes, damaged: r.bad });
      if (r.bad.length === 0) {
        if (o.json) return;
        process.stdout.write(`ok: ${r.files} shard files, ${formatBytes(r.bytes)}, all checksums match\n`);
        return;
      }
      for (const b of r.bad) process.stderr.write(`slimfit: bad shard: ${b.file}: ${b.problem}\n`);
      process.stderr.write(`slimfit: ${r.bad.length} of ${r.files} shard files are damaged; re-run \`slimfit convert\` to rebuild the store\n`);
      process.exitCode = 1;
    }));
}
