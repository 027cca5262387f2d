// A shard deleted or truncated while the loader iterates is a clear error naming it (from workers too), never a hang.
import assert from 'node:assert/strict';
import { rmSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isSlimfitError } from '../src/core/errors.ts';
import { createLoader, openDataset } from '../src/loader/index.ts';
import { makeStore } from './loader-fixtures.ts';
import { needsAddon, tempDir } from '../dev/helpers.ts';

/** Iterate, damaging the store after the second batch; returns the error the loop ended with. */
async function iterateAndDamage(dir: string, damage: () => void, opts: Parameters<typeof createLoader>[1]): Promise<unknown> {
  const ds = await openDataset(dir);
  const loader = createLoader(ds.split('train'), { batchSize: 50, seed: 1, ...opts });
  let k = 0;
  try {
    for (let epoch = 0; epoch < 3; epoch++) {
      for await (const _ of loader) {
        void _;
        if (++k === 2) damage();
        if (k > 2) await new Promise((r) => setTimeout(r, 5)); // a slow consumer, so the periodic check runs
      }
    }
  } catch (e) {
    return e;
  } finally {
    await loader.close();
    await ds.close();
  }
  return null;
}

describe('damaged store while iterating', () => {
  const tmp = tempDir('slimfit-loader-err-');
  let n = 0;
  const fresh = async () => { const d = join(tmp.dir, `s${n++}`); await makeStore(d, { n: 3000, shardBytes: 8192 }); return d; };
  before(() => {});
  after(() => tmp.cleanup());

  for (const [workers, native] of [[0, false], [2, false], [0, true], [2, true]] as const) {
    test(`x shard deleted mid-epoch -> error naming it (workers=${workers}, native=${native})`, { timeout: 30_000 }, async () => {
      const dir = await fresh();
      const e = await iterateAndDamage(dir, () => rmSync(join(dir, 'train/x-00003.npy')), { workers, native });
      assert.ok(isSlimfitError(e), `a SlimfitError, got ${String(e)}`);
      assert.match((e as Error).message, /train\/x-00003\.npy/);
      assert.match((e as Error).message, /deleted|missing/);
    });

    test(`x shard truncated mid-epoch -> error naming it (workers=${workers}, native=${native})`, { timeout: 30_000 }, async () => {
      const dir = await fresh();
      const f = join(dir, 'train/x-00001.npy');
      const e = await iterateAndDamage(dir, () => truncateSync(f, Math.floor(statSync(f).size / 2)), { workers, native, normalize: { scale: 1, shift: 0 } });
      assert.ok(isSlimfitError(e), `a SlimfitError, got ${String(e)}`);
      assert.match((e as Error).message, /train\/x-00001\.npy/);
      assert.match((e as Error).message, /ended early|changed size|truncated/);
    });
  }

  test("io: 'mmap': truncated shard -> error naming it, no SIGBUS crash", { timeout: 30_000, skip: needsAddon('slimfit_gather') }, async () => {
    const dir = await fresh();
    const f = join(dir, 'train/x-00002.npy');
    const e = await iterateAndDamage(dir, () => truncateSync(f, 300), { workers: 1, io: 'mmap', normalize: { scale: 1, shift: 0 } });
    assert.ok(isSlimfitError(e), `a SlimfitError, got ${String(e)}`);
    assert.match((e as Error).message, /train\/x-00002\.npy/);
  });

  test('label shard deleted (labels cached in memory) is still noticed', { timeout: 30_000 }, async () => {
    const dir = await fresh();
    const e = await iterateAndDamage(dir, () => rmSync(join(dir, 'train/y-00002.npy')), { workers: 1 });
    assert.ok(isSlimfitError(e));
    assert.match((e as Error).message, /train\/y-00002\.npy/);
  });

  test('block shuffle: truncated shard -> error naming it', { timeout: 30_000 }, async () => {
    const dir = await fresh();
    const f = join(dir, 'train/x-00004.npy');
    const e = await iterateAndDamage(dir, () => truncateSync(f, 200), { workers: 1, shuffle: 'block', shuffleWindow: 20_000 });
    assert.ok(isSlimfitError(e));
    assert.match((e as Error).message, /train\/x-00004\.npy/);
  });

  test('a shard already missing or replaced by a wrong-sized file before iterating', async () => {
    const dir = await fresh();
    rmSync(join(dir, 'train/x-00000.npy'));
    const e = await iterateAndDamage(dir, () => {}, { workers: 1 });
    assert.ok(isSlimfitError(e));
    assert.match((e as Error).message, /x-00000\.npy.*missing/);
  });
});
