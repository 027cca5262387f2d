// Re-checksumming a store: every shard's size, header and SHA-256 against the manifest.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isSlimfitError } from '../core/errors.ts';
import { createProgress } from '../core/progress.ts';
import { sha256File } from './checksum.ts';
import type { RemoteOptions } from '../remote/index.ts';
import { type Manifest, shardBytes } from './manifest.ts';
import { type Store, openStore } from './open.ts';

/** One shard file that failed verification, and why. */
export interface BadShard { file: string; problem: string }

/** Result of {@link verifyStore}. */
export interface VerifyResult { manifest: Manifest; files: number; bytes: number; bad: BadShard[] }

/** Check every shard of the store in `dir` (size, .npy header vs manifest, SHA-256); never stops at the first bad one. */
export async function verifyStore(dir: string, opts: { quiet?: boolean; remote?: RemoteOptions } = {}): Promise<VerifyResult> {
  const store = await openStore(dir, { verifyChecksums: false, remote: opts.remote }); // hashed below, every shard, without stopping at the first
  const manifest = store.manifest;
  // A store URL: each shard is downloaded into the cache, which checks its SHA-256 (or found there and checked again
  // once per process); a shard that cannot be fetched or never matches is reported with the reason.
  if (store.remote) return verifyRemote(store, manifest, opts.quiet);
  const bad: BadShard[] = [];
  // One entry per damaged file, its problems joined: a file that fails both the header check and the checksum is
  // one damaged file, not two.
  const report = (file: string, problem: string) => {
    const b = bad.find((x) => x.file === file);
    if (b) b.problem += `; ${problem}`;
    else bad.push({ file, problem });
  };
  let files = 0, bytes = 0;
  const total = shardBytes(manifest.splits);
  const progress = createProgress({ label: 'verify', total, unit: 'bytes', quiet: opts.quiet });
  try {
    for (const name of store.splits) {
      const split = store.split(name);
      for (let i = 0; i < split.info.shards.length; i++) {
        const sh = split.info.shards[i];
        // Header and size check through the same code the loader uses.
        try { await split.shard(i); } catch (e) {
          if (!isSlimfitError(e)) throw e;
          const file = e.file ?? join(dir, sh.x.file);
          report(file, e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : e.message);
        }
        for (const f of [sh.x, sh.y]) {
          const path = join(dir, f.file);
          files++;
          const exists = await stat(path).then(() => true, () => false);
          if (!exists) { if (!bad.some((b) => b.file === path)) report(path, 'missing'); continue; }
          const sum = await sha256File(path);
          bytes += f.bytes;
          progress.tick(f.bytes);
          if (sum !== f.sha256) report(path, `checksum mismatch: SHA-256 is ${sum}, the manifest says ${f.sha256}`);
        }
      }
    }
  } finally {
    progress.done();
    await store.close();
  }
  return { manifest, files, bytes, bad };
}

async function verifyRemote(store: Store, manifest: Manifest, quiet?: boolean): Promise<VerifyResult> {
  const remote = store.remote!;
  const bad: BadShard[] = [];
  let files = 0, bytes = 0;
  const total = shardBytes(manifest.splits);
  const progress = createProgress({ label: 'verify', total, unit: 'bytes', quiet });
  try {
    for (const name of store.splits) {
      for (const sh of manifest.splits[name].shards) {
        for (const f of [sh.x, sh.y]) {
          files++;
          try {
            const release = await remote.acquire([f]);
            release();
            bytes += f.bytes;
          } catch (e) {
            if (!isSlimfitError(e)) throw e;
            bad.push({ file: remote.urlOf(f), problem: e.message });
          }
          progress.tick(f.bytes);
        }
      }
    }
  } finally {
    progress.done();
    await store.close();
  }
  return { manifest, files, bytes, bad };
}
