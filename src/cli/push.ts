// `slimfit push DIR URL`: upload a local store to s3://bucket/prefix (shards checked first, manifest last).
import type { Command } from 'commander';
import { formatBytes } from '../core/rss.ts';
import { addRemoteFlags, remoteFlags } from './flags.ts';
import { JSON_FLAG, printJson } from './json-out.ts';

/** Register `push`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('push')
    .description('upload a store folder to s3://bucket/prefix: every shard checked against its SHA-256 first, the manifest uploaded last')
    .argument('<dir>', 'store folder')
    .argument('<url>', 's3://bucket/prefix')
    .option('--force', 'replace a store already at URL')
    .option('-q, --quiet', 'no progress output')
    .option('--json', JSON_FLAG)
    .action(async (dir: string, url: string, o: { force?: boolean; quiet?: boolean; json?: boolean; cacheDir?: string; cacheLimit?: string; endpoint?: string }) => {
      const { pushStore } = await import('../store/transfer.ts');
      const r = await pushStore(dir, url, { force: o.force, quiet: o.quiet || o.json, remote: remoteFlags(o) });
      if (o.json) printJson({ dir, url, files: r.files, bytes: r.bytes });
      else process.stdout.write(`pushed ${dir} to ${url}: ${r.files} shard files, ${formatBytes(r.bytes)}\n`);
    }));
}
