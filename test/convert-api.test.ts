// convert() from code writes the same store as `slimfit convert` with the same arguments, and refuses misuse by name.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { convert, isSlimfitError, openDataset, readManifest } from '../src/index.ts';
import { py, runCli, tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-convert-api-');
after(tmp.cleanup);

py(`
import numpy as np
r = np.random.default_rng(3); y = r.integers(0, 5, 1000).astype(np.int64); x = r.integers(0, 255, (1000, 6, 5), dtype=np.uint8)
np.save('${tmp.dir}/x.npy', x); np.save('${tmp.dir}/y.npy', y)
np.savez('${tmp.dir}/pre.npz', x_train=x[:800], y_train=y[:800], x_test=x[800:], y_test=y[800:])`);

test('convert(undefined, out, { x, y, split, seed }) = `slimfit convert --x --y --split --seed` shard for shard', async () => {
  const api = join(tmp.dir, 'api'), cli = join(tmp.dir, 'cli');
  const report = await convert(undefined, api, { x: join(tmp.dir, 'x.npy'), y: join(tmp.dir, 'y.npy'), split: 'train=0.8,test=0.2', seed: 7, quiet: true });
  const r = await runCli(['convert', cli, '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--split', 'train=0.8,test=0.2', '--seed', '7', '-q']);
  assert.equal(r.code, 0, r.stderr);
  const [a, b] = [await readManifest(api), await readManifest(cli)];
  assert.deepEqual(report.manifest.splits, a.splits);
  assert.deepEqual(Object.keys(a.splits), ['train', 'test']);
  assert.equal(a.splits.train.samples + a.splits.test.samples, 1000);
  const hashes = (m: typeof a) => Object.values(m.splits).flatMap((s) => s.shards.flatMap((sh) => [sh.x.sha256, sh.y.sha256]));
  assert.deepEqual(hashes(a), hashes(b));
  const ds = await openDataset(api);
  assert.equal(ds.split('test').samples, a.splits.test.samples);
  await ds.close();
});

test('an .npz that holds its own split converts as is; asking to split it again is a SlimfitError naming the file', async () => {
  const m = (await convert(join(tmp.dir, 'pre.npz'), join(tmp.dir, 'pre'), { quiet: true })).manifest;
  assert.deepEqual([m.splits.train.samples, m.splits.test.samples], [800, 200]);
  await assert.rejects(convert(join(tmp.dir, 'pre.npz'), join(tmp.dir, 'pre2'), { split: 'train=0.5,test=0.5', quiet: true }),
    (e) => isSlimfitError(e) && /pre\.npz: this input comes with its own train\/test split/.test(e.message));
  await assert.rejects(convert(join(tmp.dir, 'x.npy'), join(tmp.dir, 'bad'), { seed: 1.5, quiet: true }), (e) => isSlimfitError(e) && /seed must be an integer/.test(e.message));
});
