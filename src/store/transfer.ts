// Moving whole stores between a folder and a URL: uploads for `convert SRC s3://...` and `slimfit push`, downloads
// for `slimfit pull`. Shards first, manifest last in both directions, so nobody sees a partial store.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { createProgress } from '../core/progress.ts';
import { writeAtomic } from '../core/write-atomic.ts';
import { type Backend, type RemoteOptions, type ResolvedRemote, downloadFile, fetchText, openBackend, resolveRemoteOptions, uploadFile, withRetries } from '../remote/index.ts';
import { beginAtomicDir } from './atomic.ts';
import { checkShardOnce } from './checksum.ts';
import { MANIFEST_FILE, type Manifest, readManifest, shardFiles } from './manifest.ts';
import { readRemoteManifest } from './remote.ts';
import type { ShardClosed } from './shards.ts';
import { DUPLICATES_FILE, type ShardFetchBack } from './dup-list.ts';

/** Files of a store beside its shards and manifest, copied with it. */
const STORE_SIDE_FILES = [DUPLICATES_FILE];


/** An upload in progress: a staging folder to build the store in, a hook that uploads each shard pair as it closes, and finish() for the manifest. */
export interface Upload {
  readonly url: string;
  /** Local folder to write the store into (its shards are deleted as they are uploaded). */
  readonly staging: string;
  onShardClosed: ShardClosed;
  /** Download an uploaded shard back into the staging folder (the duplicate list hashes the first copies again). */
  fetchBack: ShardFetchBack;
  /** Wait for every shard upload, upload the manifest, then remove shards of a replaced store that the new one does not use. */
  finish(manifest: Manifest): Promise<void>;
  /** Remove the staging folder and close connections. */
  close(): Promise<void>;
}

/** Open the target URL for writing: writable, and holding no store unless `force` (then the old manifest is removed first). */
async function openTarget(url: string, force: boolean, r: ResolvedRemote): Promise<{ backend: Backend; old: Manifest | null }> {
  const backend = openBackend(url, r);
  try {
    if (!backend.writable) {
      throw new SlimfitError(`cannot write to ${url}: plain HTTP(S) stores are read-only here`, {
        hint: 'write the store to a local folder or to s3://bucket/prefix, then serve that folder over HTTP',
      });
    }
    const exists = await withRetries(r.retry, () => backend.head(MANIFEST_FILE, AbortSignal.timeout(r.retry.idleTimeoutMs)));
    let old: Manifest | null = null;
    if (exists !== null) {
      if (!force) throw new SlimfitError('already holds a slimfit store', { file: url, hint: 'pass --force (force: true) to replace it' });
      old = await readRemoteManifest(backend, r).catch(() => null);
      // Readers stop seeing the old store before any of its shards is overwritten.
      await withRetries(r.retry, () => backend.remove(MANIFEST_FILE, AbortSignal.timeout(r.retry.idleTimeoutMs)));
    }
    return { backend, old };
  } catch (e) {
    backend.close();
    throw e;
  }
}

/**
 * Upload the store's side files from local folder `dir` (the duplicate list, when the store has one), or remove one
 * a replaced store left at the URL; before the manifest, so a reader never sees a manifest without them.
 */
async function putSideFiles(backend: Backend, dir: string, r: ResolvedRemote): Promise<void> {
  for (const name of STORE_SIDE_FILES) {
    const path = join(dir, name);
    if (existsSync(path)) await uploadFile(backend, name, { path }, r.retry);
    else await withRetries(r.retry, () => backend.remove(name, AbortSignal.timeout(r.retry.idleTimeoutMs))).catch(() => {});
  }
}

async function putManifestLast(backend: Backend, manifest: Manifest, old: Manifest | null, r: ResolvedRemote): Promise<void> {
  await uploadFile(backend, MANIFEST_FILE, { bytes: Buffer.from(JSON.stringify(manifest, null, 2) + '\n') }, r.retry);
  if (old) {
    const keep = new Set(shardFiles(manifest.splits).map((f) => f.file));
    for (const f of shardFiles(old.splits)) {
      if (!keep.has(f.file)) await withRetries(r.retry, () => backend.remove(f.file, AbortSignal.timeout(r.retry.idleTimeoutMs))).catch(() => {});
    }
  }
}

/**
 * Start writing a store to `url` (see writeStore): refuses a read-only URL, and an existing store unless `force`.
 *
 * @example
 * const up = await prepareUpload('s3://bucket/mnist', false);
 * // write the store into up.staging with up.onShardClosed, then:
 * await up.finish(manifest); await up.close();
 */
export async function prepareUpload(url: string, force: boolean, opts?: RemoteOptions): Promise<Upload> {
  const r = resolveRemoteOptions(opts);
  const { backend, old } = await openTarget(url, force, r);
  const root = await mkdtemp(join(tmpdir(), 'slimfit-upload-'));
  const pending: Promise<void>[] = [];
  return {
    url: backend.url,
    staging: join(root, 'store'),
    onShardClosed: async (files) => {
      const p = (async () => {
        for (const f of files) {
          await uploadFile(backend, f.key, { path: f.path }, r.retry);
          await rm(f.path, { force: true });
        }
      })();
      pending.push(p);
      await p;
    },
    async fetchBack(file, dest, expected) {
      await Promise.all(pending);
      await downloadFile(backend, file, dest, expected, r.retry);
    },
    async finish(manifest) {
      await Promise.all(pending);
      await putSideFiles(backend, join(root, 'store'), r);
      await putManifestLast(backend, manifest, old, r);
    },
    async close() {
      await Promise.allSettled(pending);
      backend.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/**
 * Upload the store in folder `dir` to `url` (each shard's SHA-256 checked before it goes up; manifest last).
 *
 * @example
 * await pushStore('mnist-store', 's3://bucket/mnist', { remote: { endpoint: 'http://127.0.0.1:9000' } });
 */
export async function pushStore(dir: string, url: string, opts: { force?: boolean; quiet?: boolean; remote?: RemoteOptions } = {}): Promise<{ files: number; bytes: number }> {
  const manifest = await readManifest(dir);
  const r = resolveRemoteOptions(opts.remote);
  const files = shardFiles(manifest.splits);
  for (const f of files) await checkShardOnce(join(dir, f.file), f, dir); // never upload a damaged store
  const { backend, old } = await openTarget(url, opts.force ?? false, r);
  const total = files.reduce((a, f) => a + f.bytes, 0);
  const progress = createProgress({ label: 'push', total, unit: 'bytes', quiet: opts.quiet });
  try {
    for (const f of files) { await uploadFile(backend, f.file, { path: join(dir, f.file) }, r.retry); progress.tick(f.bytes); }
    await putSideFiles(backend, dir, r);
    await putManifestLast(backend, manifest, old, r);
  } finally {
    progress.done();
    backend.close();
  }
  return { files: files.length, bytes: total };
}

/**
 * Download the store at `url` into folder `dir` (every shard checked against the manifest's SHA-256; written to a temp
 * folder, manifest last, renamed into place; an existing store at `dir` only with `force`).
 *
 * @example
 * await pullStore('http://127.0.0.1:8080/mnist', 'mnist-copy');
 */
export async function pullStore(url: string, dir: string, opts: { force?: boolean; quiet?: boolean; remote?: RemoteOptions } = {}): Promise<{ files: number; bytes: number }> {
  const r = resolveRemoteOptions(opts.remote);
  const backend = openBackend(url, r);
  try {
    const manifest = await readRemoteManifest(backend, r);
    const files = shardFiles(manifest.splits);
    const total = files.reduce((a, f) => a + f.bytes, 0);
    const dest = await beginAtomicDir(dir, opts.force ?? false);
    const progress = createProgress({ label: 'pull', total, unit: 'bytes', quiet: opts.quiet });
    try {
      for (const name of Object.keys(manifest.splits)) await mkdir(join(dest.tmp, name), { recursive: true });
      for (const f of files) { await downloadFile(backend, f.file, join(dest.tmp, f.file), f, r.retry); progress.tick(f.bytes); }
      for (const name of STORE_SIDE_FILES) {
        const text = await fetchText(backend, name, r.retry);
        if (text !== null) await writeAtomic(join(dest.tmp, name), text);
      }
      await writeAtomic(join(dest.tmp, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
      await dest.commit();
    } catch (e) {
      await dest.abort();
      throw e;
    } finally {
      progress.done();
    }
    return { files: files.length, bytes: total };
  } finally {
    backend.close();
  }
}
