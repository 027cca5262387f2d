// Writing one split of a store as a single plain .npz (x and y members), streamed shard by shard.
import { createNpzWriter } from '../formats/npz-write.ts';
import { createProgress } from '../core/progress.ts';
import { dtypeSize } from '../core/dtype.ts';
import { SlimfitError, describeSystemError, isSystemError } from '../core/errors.ts';
import type { RemoteOptions } from '../remote/index.ts';
import { openStore } from './open.ts';

/** Rows copied per read, so memory stays at a few MB whatever the split size. */
const CHUNK_BYTES = 8 << 20;

/** Export split `split` of the store in `dir` to `out` (.npz with arrays x and y; each shard's SHA-256 checked first unless `verifyChecksums: false`); returns the file size. */
export async function exportSplit(dir: string, split: string, out: string, opts: { quiet?: boolean; verifyChecksums?: boolean; remote?: RemoteOptions } = {}): Promise<number> {
  const store = await openStore(dir, { verifyChecksums: opts.verifyChecksums, remote: opts.remote });
  const s = store.split(split);
  const w = await createNpzWriter(out);
  try {
    // x and y are written one after the other, so progress counts bytes of both, not samples twice.
    const rowBytes = (f: 'x' | 'y') => store.manifest.fields[f].shape.reduce((a, d) => a * d, dtypeSize(store.manifest.fields[f].dtype));
    const progress = createProgress({ label: `export ${split}`, total: s.samples * (rowBytes('x') + rowBytes('y')), unit: 'bytes', quiet: opts.quiet });
    for (const field of ['x', 'y'] as const) {
      const spec = store.manifest.fields[field];
      const m = await w.beginMember(field, spec.dtype, spec.shape);
      for (let i = 0; i < s.info.shards.length; i++) {
        const sh = await s.shard(i);
        const npy = sh[field];
        const step = Math.max(1, Math.floor(CHUNK_BYTES / npy.rowBytes));
        const buf = new Uint8Array(step * npy.rowBytes);
        for (let r = 0; r < npy.rows; r += step) {
          const end = Math.min(npy.rows, r + step);
          await m.append(await npy.readRows(r, end, buf));
          progress.tick((end - r) * npy.rowBytes);
        }
      }
      await m.end();
    }
    progress.done();
    return await w.close();
  } catch (e) {
    await w.abort();
    // A write that failed on the open file descriptor (full disk...) carries no path: it was `out`.
    if (isSystemError(e) && e.path === undefined) throw new SlimfitError(describeSystemError(e, out));
    throw e;
  } finally {
    await store.close();
  }
}
