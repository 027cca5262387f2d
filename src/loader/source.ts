// Data sources for the loader: a store split, a pair of plain .npy files, or two members of an .npz.
import { checkBool, checkOptions, checkString } from '../core/options.ts';
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { type NpyFile, openNpy } from '../formats/npy.ts';
import { type NpzMember, listNpz, memberDisplayName } from '../formats/npz.ts';
import type { FieldSpec, Manifest } from '../store/manifest.ts';
import { openStore } from '../store/open.ts';
import { type RemoteOptions, REMOTE_OPTION_KEYS, isRemote } from '../remote/index.ts';
import type { LoadableSource, Part, PartFetcher } from './layout.ts';
import type { DataSource } from './types.ts';

/** An opened store: its manifest, split names and a DataSource per split. */
export interface Dataset {
  readonly dir: string;
  readonly manifest: Manifest;
  /** Split names in manifest order. */
  readonly splits: string[];
  /** The DataSource for split `name` (a SlimfitError listing the splits if it does not exist). */
  split(name: string): DataSource;
  close(): Promise<void>;
}

const STORE_HINT = 'the store is damaged; run `slimfit verify DIR` and re-run `slimfit convert`';

/** Options of {@link openDataset}. */
export interface OpenDatasetOptions {
  /**
   * Check each shard's SHA-256 against the manifest once per process before a loader first reads it (default true);
   * false trusts the bytes (a loader's own `verifyChecksums: false` does too).
   */
  verifyChecksums?: boolean;
  /**
   * For a store URL (http(s)://, s3://): cache folder and byte limit, S3 endpoint, retries. Shards are downloaded into
   * the cache ahead of the loader and always checked against the manifest's SHA-256.
   */
  remote?: RemoteOptions;
}

/**
 * Open a store directory or URL (manifest checked now; shards are checksummed, opened and header-checked by the loader
 * on first use). A URL (`http://host/path/store`, `s3://bucket/prefix`) is a store whose shards the loader downloads
 * into a bounded local cache just ahead of reading them.
 *
 * @example
 * const ds = await openDataset('mnist-store');   // made by `slimfit convert` or convert()
 * console.log(ds.splits, ds.manifest.classNames);
 * const train = ds.split('train');               // a DataSource for createLoader
 * const remote = await openDataset('s3://bucket/mnist', { remote: { cacheLimit: 2e9 } });
 */
export async function openDataset(dir: string, opts: OpenDatasetOptions = {}): Promise<Dataset> {
  checkString('openDataset', 'dir', dir);
  checkOptions('openDataset', opts, ['verifyChecksums', 'remote']);
  checkBool('openDataset', 'verifyChecksums', opts.verifyChecksums);
  if (opts.remote !== undefined) checkOptions('openDataset remote', opts.remote, REMOTE_OPTION_KEYS);
  const url = isRemote(dir);
  const abs = url ? dir : resolve(dir);
  const verify = (opts.verifyChecksums ?? true) && !url;
  const store = await openStore(abs, { verifyChecksums: verify, remote: opts.remote });
  const m = store.manifest;
  const remote = store.remote;
  return {
    dir: abs, manifest: m, splits: store.splits,
    split(name) {
      const info = store.split(name).info; // throws the listing SlimfitError for a missing split
      const parts: Part[] = [];
      let start = 0;
      for (const sh of info.shards) {
        const file = (f: { file: string; bytes: number; sha256: string }) => (remote
          ? { path: remote.pathOf(f), name: `shard ${remote.urlOf(f)}`, base: 0, fileBytes: f.bytes, hint: `a cached copy of ${remote.urlOf(f)} changed while the loader read it; run again (it is downloaded afresh)`, cached: true }
          : {
            path: join(abs, f.file), name: `shard ${join(abs, f.file)}`, base: 0, fileBytes: f.bytes, hint: STORE_HINT,
            ...(verify ? { checksum: { sha256: f.sha256, bytes: f.bytes, store: abs } } : {}),
          });
        parts.push({ start, samples: sh.samples, x: file(sh.x), y: file(sh.y) });
        start += sh.samples;
      }
      let fetcher: PartFetcher | undefined;
      if (remote) {
        const files = (ps: readonly number[], fields: 'xy' | 'y') => ps.flatMap((i) => (fields === 'y' ? [info.shards[i].y] : [info.shards[i].x, info.shards[i].y]));
        fetcher = {
          url: remote.url, limitBytes: remote.cache.limitBytes,
          totalBytes: info.shards.reduce((a, sh) => a + sh.x.bytes + sh.y.bytes, 0),
          acquire: (ps, fields = 'xy') => remote.acquire(files(ps, fields)),
          bytesOf: (ps) => files(ps, 'xy').reduce((a, f) => a + f.bytes, 0),
          maxPartBytes: Math.max(0, ...info.shards.map((sh) => sh.x.bytes + sh.y.bytes)),
          prefetch: (ps) => remote.prefetch(files(ps, 'xy')),
        };
      }
      const src: LoadableSource = {
        name: `${abs}:${name}`, samples: info.samples, x: m.fields.x, y: m.fields.y,
        classNames: m.classNames, stats: m.stats, parts, fetcher, remote: fetcher !== undefined,
        close: async () => {},
      };
      return src;
    },
    close: () => store.close(),
  };
}

/** Field spec and row count of an opened .npy, refusing 0-d arrays. */
function fieldOf(npy: NpyFile, name: string): FieldSpec {
  if (npy.shape.length === 0) throw new SlimfitError('holds a single value (0-d array), not one row per sample', { file: name, hint: 'x and y need the sample index as their first axis' });
  return { dtype: npy.dtype, shape: [...npy.rowShape] };
}

/** Build a source from two opened .npy arrays (closed here; readers reopen them by path). */
async function pairSource(name: string, x: NpyFile, y: NpyFile, xName: string, yName: string, xBase: number, yBase: number, hint: string): Promise<LoadableSource> {
  try {
    const xf = fieldOf(x, xName), yf = fieldOf(y, yName);
    if (x.rows !== y.rows) {
      throw new SlimfitError(`x has ${x.rows} samples but y has ${y.rows}`, { file: yName, hint: 'x and y must have the same length along their first axis' });
    }
    const sizeX = (await stat(x.path)).size, sizeY = (await stat(y.path)).size;
    const parts: Part[] = x.rows === 0 ? [] : [{
      start: 0, samples: x.rows,
      x: { path: x.path, name: xName, base: xBase, fileBytes: sizeX, hint },
      y: { path: y.path, name: yName, base: yBase, fileBytes: sizeY, hint },
    }];
    return { name, samples: x.rows, x: xf, y: yf, parts, close: async () => {} };
  } finally {
    await x.close();
    await y.close();
  }
}

/**
 * Use the user's own x/y .npy files directly (no conversion); rows are read in place by position.
 *
 * @example
 * const loader = createLoader(await fromNpy({ x: 'x_train.npy', y: 'y_train.npy' }), { batchSize: 64 });
 */
export async function fromNpy(paths: { x: string; y: string }): Promise<DataSource> {
  const xp = resolve(paths.x), yp = resolve(paths.y);
  const x = await openNpy(xp);
  const y = await openNpy(yp).catch(async (e) => { await x.close(); throw e; });
  return pairSource(`${xp} + ${yp}`, x, y, xp, yp, 0, 0, 'the file changed while training read it; re-create it or convert it with `slimfit convert`');
}

/**
 * Use two arrays of an .npz directly. Stored (np.savez) members are read in place by offset.
 * Deflated members (np.savez_compressed) cannot be read by position: that is a SlimfitError suggesting `slimfit convert`.
 */
export async function fromNpz(path: string, names: { x: string; y: string }): Promise<DataSource> {
  const p = resolve(path);
  const members = await listNpz(p);
  const find = (want: string): NpzMember => {
    const m = members.find((e) => e.name === want || e.name === want.replace(/\.npy$/, ''));
    if (!m) {
      throw new SlimfitError(`has no array named '${want}'`, {
        file: p, hint: `its arrays are: ${members.map((e) => e.name).join(', ') || '(none)'}`,
      });
    }
    if (m.compressed) {
      throw new SlimfitError(`array '${want}' is compressed (np.savez_compressed), so it cannot be read by position without inflating it all`, {
        file: p, hint: `convert it once to a store and load that: \`slimfit convert ${path} OUT --x ${names.x} --y ${names.y}\``,
      });
    }
    return m;
  };
  const mx = find(names.x), my = find(names.y);
  const xName = memberDisplayName(p, mx.name), yName = memberDisplayName(p, my.name);
  const x = await openNpy(p, { offset: mx.dataOffset, length: mx.compressedSize, displayName: xName });
  const y = await openNpy(p, { offset: my.dataOffset, length: my.compressedSize, displayName: yName }).catch(async (e) => { await x.close(); throw e; });
  return pairSource(`${p}[${names.x}, ${names.y}]`, x, y, xName, yName, mx.dataOffset, my.dataOffset, 'the .npz changed while training read it; re-create it or convert it with `slimfit convert`');
}
