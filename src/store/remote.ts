// A store behind a URL: its manifest read over the network, its shards made local through the shard cache (downloaded,
// checked against the manifest's SHA-256, kept while in use) and fetched ahead of the reader on request.
import { SlimfitError } from '../core/errors.ts';
import {
  type Backend, type CacheStats, type RemoteOptions, type ResolvedRemote, REMOTE_DEFAULTS, ShardCache, downloadFile, fetchText, isRemote, openBackend, resolveRemoteOptions,
} from '../remote/index.ts';
import { sha256File } from './checksum.ts';
import { MANIFEST_FILE, type Manifest, type ShardFile, readManifest, validateManifest } from './manifest.ts';

/** Local copies of a remote store's shard files, on demand. */
export interface RemoteShards {
  /** The store URL. */
  readonly url: string;
  readonly backend: Backend;
  readonly cache: ShardCache;
  /** The URL of a shard file (for messages). */
  urlOf(f: ShardFile): string;
  /** Where the cached copy of `f` lives (present only between acquire and release). */
  pathOf(f: ShardFile): string;
  /** Download (or find in the cache) and check these files, and keep them until the returned release() is called. */
  acquire(files: readonly ShardFile[]): Promise<() => void>;
  /** Start downloading these files in this order, as far as the cache limit allows beside the files in use. */
  prefetch(files: readonly ShardFile[]): void;
  /** Close connections. */
  close(): void;
}

const caches = new Map<string, ShardCache>();

/** One ShardCache per folder in a process (pins are per process and entry). */
function cacheFor(r: ResolvedRemote): ShardCache {
  let c = caches.get(r.cacheDir);
  if (!c) {
    c = new ShardCache({ dir: r.cacheDir, limitBytes: r.cacheLimit, checkFile: async (p, sha) => (await sha256File(p)) === sha });
    caches.set(r.cacheDir, c);
  } else (c as { limitBytes: number }).limitBytes = r.cacheLimit;
  return c;
}

/** Read and validate the manifest of the store at `url`. */
export async function readRemoteManifest(backend: Backend, r: ResolvedRemote): Promise<Manifest> {
  // The manifest carries the shards' checksums but has none of its own: it is read until two reads agree, so a byte
  // flipped on the way (which could change a statistic silently) is not taken.
  let text = await fetchText(backend, MANIFEST_FILE, r.retry);
  for (let reads = 1; text !== null; reads++) {
    const again = await fetchText(backend, MANIFEST_FILE, r.retry);
    if (again === text) break;
    if (reads >= r.retry.attempts) {
      throw new SlimfitError(`${MANIFEST_FILE} came back different on each of ${reads + 1} reads`, {
        file: backend.urlOf(MANIFEST_FILE), hint: 'the store is being rewritten, or the network corrupts data; try again later',
      });
    }
    text = again;
  }
  if (text === null) {
    throw new SlimfitError(`no ${MANIFEST_FILE} at ${backend.urlOf(MANIFEST_FILE)}, so this is not a (complete) slimfit store`, {
      file: backend.url, hint: 'check the URL (it names the store folder, the one holding dataset.json); an interrupted upload leaves no manifest',
    });
  }
  let parsed: unknown;
  try { parsed = JSON.parse(text); } catch {
    throw new SlimfitError(`not a complete slimfit store: ${MANIFEST_FILE} is not valid JSON`, { file: backend.urlOf(MANIFEST_FILE), hint: 'is the URL right? a web page in its place is not a manifest' });
  }
  return validateManifest(parsed, backend.url);
}

/** The manifest of a store folder or URL. */
export async function readManifestAt(dirOrUrl: string, opts: RemoteOptions = {}): Promise<Manifest> {
  if (!isRemote(dirOrUrl)) return readManifest(dirOrUrl);
  const r = resolveRemoteOptions(opts);
  const b = openBackend(dirOrUrl, r);
  try { return await readRemoteManifest(b, r); } finally { b.close(); }
}

/**
 * Open the store at `url`: its manifest now, its shards through the cache when acquired.
 *
 * @example
 * const { manifest, shards } = await openRemote('http://127.0.0.1:8080/mnist', { cacheLimit: 2e9 });
 */
export async function openRemote(url: string, opts: RemoteOptions = {}): Promise<{ manifest: Manifest; shards: RemoteShards }> {
  const r = resolveRemoteOptions(opts);
  const backend = openBackend(url, r);
  let manifest: Manifest;
  try { manifest = await readRemoteManifest(backend, r); } catch (e) { backend.close(); throw e; }
  const cache = cacheFor(r);
  const fetchInto = (f: ShardFile) => (tmp: string) => downloadFile(backend, f.file, tmp, f, r.retry);
  /** Prefetches running: they pin nothing once done (a fresh entry is the last the LRU evicts). */
  const ahead = new Set<string>();
  let downloadingBytes = 0;
  const take = (f: ShardFile) => cache.acquire(f.sha256, f.bytes, fetchInto(f));
  const shards: RemoteShards = {
    url: backend.url, backend, cache,
    urlOf: (f) => backend.urlOf(f.file),
    pathOf: (f) => cache.pathOf(f.sha256),
    async acquire(files) {
      // All at once: a window's shards download in parallel (each entry once, however many ask for it).
      const got = await Promise.allSettled(files.map((f) => take(f)));
      const held = files.filter((_, i) => got[i].status === 'fulfilled').map((f) => f.sha256);
      const failed = got.find((g) => g.status === 'rejected') as PromiseRejectedResult | undefined;
      if (failed) {
        for (const s of held) cache.release(s);
        throw failed.reason;
      }
      let done = false;
      return () => { if (!done) { done = true; for (const s of held) cache.release(s); } };
    },
    prefetch(files) {
      for (const f of files) {
        if (ahead.size >= REMOTE_DEFAULTS.prefetchConcurrency) return;
        if (ahead.has(f.sha256) || cache.has(f.sha256)) continue;
        // Reading ahead uses at most half the cache: the files the reader needs now must still fit beside it.
        if (!cache.fits(downloadingBytes + f.bytes + cache.limitBytes / 2)) return;
        ahead.add(f.sha256);
        downloadingBytes += f.bytes;
        // A failed prefetch leaves nothing; the acquire that needs the file tries again and reports the error.
        void cache.acquire(f.sha256, f.bytes, fetchInto(f)).then(() => cache.release(f.sha256), () => {})
          .finally(() => { ahead.delete(f.sha256); downloadingBytes -= f.bytes; });
      }
    },
    close() {
      backend.close();
    },
  };
  return { manifest, shards };
}

/** Disk figures and counters of the shard cache in `dir` as this process sees it (null if this process has not used it). */
export function remoteCacheStats(dir: string): CacheStats | null {
  return caches.get(dir)?.usage() ?? null;
}
