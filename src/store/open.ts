// Reading a store: the manifest plus lazily opened, header-checked shard pairs.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { dtypeSize } from '../core/dtype.ts';
import { SlimfitError } from '../core/errors.ts';
import { type NpyFile, openNpy } from '../formats/npy.ts';
import { type RemoteOptions, isRemote } from '../remote/index.ts';
import { checkShardOnce } from './checksum.ts';
import { type FieldSpec, type Manifest, type ShardFile, type SplitInfo, readManifest } from './manifest.ts';
import { type RemoteShards, openRemote } from './remote.ts';

/** One opened shard pair: `samples` consecutive samples of a split starting at global index `start`. */
export interface OpenShard {
  index: number;
  start: number;
  samples: number;
  x: NpyFile;
  y: NpyFile;
}

/** A split of an opened store: sample count, shard boundaries and on-demand shard access. */
export interface StoreSplit {
  readonly dir: string;
  readonly name: string;
  readonly manifest: Manifest;
  readonly info: SplitInfo;
  readonly samples: number;
  /** Global index of each shard's first sample, plus a final entry = samples. */
  readonly shardStarts: readonly number[];
  /** Open (once; cached) shard `i`, checking its headers against the manifest. */
  shard(i: number): Promise<OpenShard>;
  /** Which shard holds global sample `s`, and its row inside that shard. */
  locate(s: number): { shard: number; row: number };
  /** Close every opened shard. */
  close(): Promise<void>;
}

/** An opened store directory or URL. */
export interface Store {
  /** The folder (absolute as given) or the store URL. */
  readonly dir: string;
  /** Set for a store opened by URL: its shards are read from local cached copies. */
  readonly remote?: RemoteShards;
  readonly manifest: Manifest;
  /** Split names in manifest order (e.g. train, test). */
  readonly splits: string[];
  /** A split by name; a missing split is a SlimfitError listing the ones that exist. */
  split(name: string): StoreSplit;
  close(): Promise<void>;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Open a shard .npy and check it is the file the manifest describes (dtype, per-sample shape, rows, size). */
async function openChecked(path: string, file: string, field: FieldSpec, rows: number, bytes: number): Promise<NpyFile> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    throw new SlimfitError(`shard ${file} is missing`, { file: path, hint: 'the store is damaged; run `slimfit verify` and re-run `slimfit convert`' });
  }
  if (size !== bytes) {
    throw new SlimfitError(`shard ${file} is ${size} bytes but the manifest says ${bytes}`, {
      file: path, hint: 'the shard was truncated or replaced; run `slimfit verify` and re-run `slimfit convert`',
    });
  }
  const npy = await openNpy(path);
  if (npy.dtype !== field.dtype || !sameShape(npy.rowShape, field.shape) || npy.rows !== rows) {
    await npy.close();
    throw new SlimfitError(
      `shard ${file} holds ${npy.rows} samples of ${npy.dtype} [${npy.rowShape.join(',')}] but the manifest says ${rows} of ${field.dtype} [${field.shape.join(',')}]`,
      { file: path, hint: 'the store is damaged; re-run `slimfit convert`' },
    );
  }
  return npy;
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  /**
   * Check each shard's SHA-256 against the manifest the first time this process opens it (default true): a flipped
   * byte stops the reader with the shard's name instead of being used. Costs one extra read of each shard per process.
   */
  verifyChecksums?: boolean;
  /** For a store URL: cache folder and limit, S3 endpoint, retries (a downloaded shard is always checked). */
  remote?: RemoteOptions;
}

/**
 * Open the store in `dir`, a folder or an http(s):// or s3:// URL (manifest validated; shards are opened,
 * header-checked and checksummed on first use; a remote store's shards are downloaded into the cache first).
 *
 * @example
 * const store = await openStore('s3://bucket/mnist', { remote: { cacheLimit: 2e9 } });
 * const sh = await store.split('train').shard(0);
 */
export async function openStore(dir: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const rem = isRemote(dir) ? await openRemote(dir, opts.remote) : null;
  const remote = rem?.shards;
  // The cache checks every downloaded (or found) shard against the manifest itself.
  const verify = (opts.verifyChecksums ?? true) && !remote;
  const manifest = rem ? rem.manifest : await readManifest(dir);
  const releases: Array<() => void> = [];
  const opened = new Map<string, StoreSplit>();
  const makeSplit = (name: string): StoreSplit => {
    const info = manifest.splits[name];
    const starts = [0];
    for (const sh of info.shards) starts.push(starts[starts.length - 1] + sh.samples);
    const cache = new Map<number, Promise<OpenShard>>();
    const locate = (s: number) => {
      if (!(Number.isInteger(s) && s >= 0 && s < info.samples)) throw new RangeError(`sample ${s} outside 0..${info.samples} of split ${name}`);
      let lo = 0, hi = info.shards.length - 1;
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= s) lo = mid; else hi = mid - 1; }
      return { shard: lo, row: s - starts[lo] };
    };
    return {
      dir, name, manifest, info, samples: info.samples, shardStarts: starts, locate,
      shard(i) {
        let p = cache.get(i);
        if (!p) {
          const sh = info.shards[i];
          if (!sh) throw new RangeError(`shard ${i} outside 0..${info.shards.length} of split ${name}`);
          p = (async () => {
            // A remote shard pair stays in the cache (pinned) until the store is closed.
            if (remote) releases.push(await remote.acquire([sh.x, sh.y]));
            const pathOf = (f: ShardFile) => (remote ? remote.pathOf(f) : join(dir, f.file));
            const x = await openChecked(pathOf(sh.x), sh.x.file, manifest.fields.x, sh.samples, sh.x.bytes);
            const y = await openChecked(pathOf(sh.y), sh.y.file, manifest.fields.y, sh.samples, sh.y.bytes).catch(async (e) => { await x.close(); throw e; });
            if (verify) {
              try {
                for (const f of [sh.x, sh.y]) await checkShardOnce(join(dir, f.file), f, dir);
              } catch (e) { await x.close(); await y.close(); throw e; }
            }
            return { index: i, start: starts[i], samples: sh.samples, x, y };
          })();
          p.catch(() => cache.delete(i));
          cache.set(i, p);
        }
        return p;
      },
      async close() {
        const all = [...cache.values()];
        cache.clear();
        for (const p of all) {
          const s = await p.catch(() => null);
          if (s) { await s.x.close(); await s.y.close(); }
        }
      },
    };
  };
  return {
    dir, manifest, remote, splits: Object.keys(manifest.splits),
    split(name) {
      if (!manifest.splits[name]) {
        throw new SlimfitError(`the store has no split '${name}'`, {
          file: dir, hint: `its splits are: ${Object.keys(manifest.splits).join(', ')}`,
        });
      }
      let s = opened.get(name);
      if (!s) { s = makeSplit(name); opened.set(name, s); }
      return s;
    },
    async close() {
      for (const s of opened.values()) await s.close();
      opened.clear();
      for (const r of releases.splice(0)) r();
      remote?.close();
    },
  };
}

/** Bytes of one sample of a field. */
export function sampleBytes(f: FieldSpec): number {
  return f.shape.reduce((a, d) => a * d, 1) * dtypeSize(f.dtype);
}
