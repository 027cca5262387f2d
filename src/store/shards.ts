// Writing one split as paired x/y .npy shards of a bounded size, with checksums.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { type NpyWriter, createNpyWriter } from '../formats/npy.ts';
import { sha256File } from './checksum.ts';
import type { FieldSpec, Shard, SplitInfo } from './manifest.ts';
import { sampleBytes } from './open.ts';

/** Appends samples to a split folder, starting a new shard pair every `perShard` samples. */
export interface SplitWriter {
  readonly name: string;
  /** Samples written so far. */
  readonly samples: number;
  /** Append `n` samples given as little-endian x and y bytes. */
  append(x: Uint8Array, y: Uint8Array, n: number): Promise<void>;
  /** Close the last shard and checksum every shard; returns the split's manifest entry (classCounts added by the caller). */
  finish(): Promise<SplitInfo>;
  /** Delete partial files. */
  abort(): Promise<void>;
}

/** Called with each finished shard pair (store-relative key, file path), e.g. to upload it; awaited by finish(). */
export type ShardClosed = (files: Array<{ key: string; path: string }>) => Promise<void>;

/** Samples per shard so an x shard holds about `shardBytes` bytes (at least one sample). */
export function samplesPerShard(x: FieldSpec, shardBytes: number): number {
  return Math.max(1, Math.floor(shardBytes / Math.max(1, sampleBytes(x))));
}

/** Start writing split `name` into `root/name/` as x-00000.npy / y-00000.npy pairs. */
export async function createSplitWriter(root: string, name: string, x: FieldSpec, y: FieldSpec, perShard: number, onClosed?: ShardClosed): Promise<SplitWriter> {
  await mkdir(join(root, name), { recursive: true });
  const xb = sampleBytes(x), yb = sampleBytes(y);
  const done: Array<{ samples: number; xFile: string; yFile: string; xBytes: number; yBytes: number; xSha: string | null; ySha: string | null } | null> = [];
  let cur: { x: NpyWriter; y: NpyWriter; xFile: string; yFile: string } | null = null;
  let total = 0;
  const open = async () => {
    const id = String(done.length).padStart(5, '0');
    const xFile = `${name}/x-${id}.npy`, yFile = `${name}/y-${id}.npy`;
    // The whole store is already in a temp folder that is renamed into place, so shards are written in place.
    // Full shards hold exactly perShard samples, so their checksums are computed while writing; others are re-read.
    const xw = await createNpyWriter(join(root, xFile), x.dtype, x.shape, { atomic: false, checksumRows: perShard });
    const yw = await createNpyWriter(join(root, yFile), y.dtype, y.shape, { atomic: false, checksumRows: perShard });
    cur = { x: xw, y: yw, xFile, yFile };
  };
  /** Shards being closed (flushed, header written, synced) while the next one fills: awaited by finish(). */
  const closing: Promise<void>[] = [];
  /**
   * Close the current shard: its last writes are awaited (so the next shard reuses its write buffers instead of
   * allocating its own), then header, sync to disk and checksum finish in the background while the next shard fills.
   */
  const closeCur = async () => {
    if (!cur) return;
    const c = cur;
    cur = null;
    await Promise.all([c.x.drain(), c.y.drain()]);
    const samples = c.x.rows;
    const slot = done.length;
    done.push(null);
    const p = (async () => {
      const xBytes = await c.x.close();
      const yBytes = await c.y.close();
      // Checksums of a partial shard (the writer hashes only full ones) are taken now, before onClosed may move the file.
      const xSha = c.x.sha256 ?? (onClosed ? await sha256File(join(root, c.xFile)) : null);
      const ySha = c.y.sha256 ?? (onClosed ? await sha256File(join(root, c.yFile)) : null);
      done[slot] = { samples, xFile: c.xFile, yFile: c.yFile, xBytes, yBytes, xSha, ySha };
      if (onClosed) await onClosed([{ key: c.xFile, path: join(root, c.xFile) }, { key: c.yFile, path: join(root, c.yFile) }]);
    })();
    p.catch(() => {}); // surfaced by finish()
    closing.push(p);
  };
  return {
    name,
    get samples() { return total; },
    async append(xs, ys, n) {
      let i = 0;
      while (i < n) {
        if (!cur) await open();
        const c = cur!;
        const take = Math.min(n - i, perShard - c.x.rows);
        await c.x.append(xs.subarray(i * xb, (i + take) * xb));
        await c.y.append(ys.subarray(i * yb, (i + take) * yb));
        i += take;
        total += take;
        if (c.x.rows >= perShard) await closeCur();
      }
    },
    async finish() {
      await closeCur();
      await Promise.all(closing);
      const shards: Shard[] = [];
      for (const d0 of done) {
        const d = d0!;
        shards.push({
          samples: d.samples,
          x: { file: d.xFile, bytes: d.xBytes, sha256: d.xSha ?? (await sha256File(join(root, d.xFile))) },
          y: { file: d.yFile, bytes: d.yBytes, sha256: d.ySha ?? (await sha256File(join(root, d.yFile))) },
        });
      }
      return { samples: total, shards };
    },
    async abort() {
      const c = cur;
      cur = null;
      await Promise.allSettled(closing);
      if (c) { await c.x.abort(); await c.y.abort(); }
    },
  };
}
