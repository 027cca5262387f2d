// `slimfit pull URL DIR`: download a store from http(s):// or s3:// into a local folder (every shard checked).
import type { Command } from 'commander';
import { formatBytes } from '../core/rss.ts';
import { addRemoteFlags, remoteFlags } from './flags.ts';
import { JSON_FLAG, printJson } from './json-out.ts';

/** Register `pull`. */
export function register(program: Command): void {
  addRemoteFlags(program.command('pull')
    .description('download a store from http(s):// or s3:// into a folder: every shard checked against its SHA-256, the folder renamed into place complete')
    .argument('<url>', 'store URL (http(s)://host/path, s3://bucket/prefix)')
    .argument('<dir>', 'folder to create')
    .option('--force', 'replace a store already in DIR')
    .option('-q, --quiet', 'no progress output')
    .option('--json', JSON_FLAG)
    .action(async (url: string, dir: string, o: { force?: boolean; quiet?: boolean; json?: boolean; cacheDir?: string; cacheLimit?: string; endpoint?: string }) => {
      const { pullStore } = await import('../store/transfer.ts');
      const r = await pullStore(url, dir, { force: o.force, quiet: o.quiet || o.json, remote: remoteFlags(o) });
      if (o.json) printJson({ url, dir, files: r.files, bytes: r.bytes });
      else process.stdout.write(`pulled ${url} into ${dir}: ${r.files} shard files, ${formatBytes(r.bytes)}\n`);
    }));
}
