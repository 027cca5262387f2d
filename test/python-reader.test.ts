// examples/python/slimfit_store.py, the single-file reader for Python users: every sample and label it reads (numpy
// memory maps, and the PyTorch Dataset under Debian's /usr/bin/python3 with torch) equals what slimfit's own loader reads.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLoader, openDataset } from '../src/loader/index.ts';
import { ROOT, py, runCli, tempDir } from '../dev/helpers.ts';

const READER_DIR = join(ROOT, 'examples', 'python');
const SYSTEM_PY = '/usr/bin/python3';
const hasTorch = spawnSync(SYSTEM_PY, ['-c', 'import torch, numpy'], { encoding: 'utf8' }).status === 0;

/** Run `code` with the reader importable; `python` is the interpreter. */
function runPy(python: string, code: string, args: string[]): string {
  const r = spawnSync(python, ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(READER_DIR)})\n${code}`, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${python} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

/** Every sample of a split in stored order as slimfit's loader reads it: raw x bytes, int32 labels, and stats-normalized x. */
async function slimfitRead(store: string, split: string): Promise<{ x: Buffer; y: Int32Array; xn: Float32Array }> {
  const ds = await openDataset(store);
  try {
    const src = ds.split(split);
    const xs: Buffer[] = [], ys: number[] = [], xn: number[] = [];
    const raw = createLoader(src, { shuffle: false, workers: 0, batchSize: 97 });
    for await (const b of raw) { xs.push(Buffer.from(b.x.buffer, b.x.byteOffset, b.x.byteLength)); ys.push(...Array.from(b.y as Int32Array)); }
    await raw.close();
    const norm = createLoader(src, { shuffle: false, workers: 0, batchSize: 97, normalize: 'stats' });
    for await (const b of norm) xn.push(...Array.from(b.x as Float32Array));
    await norm.close();
    return { x: Buffer.concat(xs), y: Int32Array.from(ys), xn: Float32Array.from(xn) };
  } finally { await ds.close(); }
}

// Python side: write what the reader gives as raw files (x bytes, labels as int32, stats-normalized float32).
const NUMPY_DUMP = `
import numpy as np, sys, json
from slimfit_store import open_store
store, split, out = sys.argv[1], sys.argv[2], sys.argv[3]
s = open_store(store)
sp = s.split(split)
sp.verify()
n = len(sp)
assert len(sp.info['shards']) > 2, 'the test store has several shards'
x, y = sp.arrays()
# indexing across shard boundaries agrees with the whole arrays
assert all((sp[i][0] == x[i]).all() and sp[i][1] == y[i] for i in range(n))
assert (sp.x[3:n-2] == x[3:n-2]).all() and (sp.x[::7] == x[::7]).all()
idx = np.random.default_rng(0).permutation(n)
assert (sp.x[idx] == x[idx]).all() and (sp.y[idx] == y[idx]).all()
st = s.stats
mean, std = np.asarray(st['mean'], np.float32), np.asarray(st['std'], np.float32)
open(out + '.x', 'wb').write(np.ascontiguousarray(x).tobytes())
open(out + '.y', 'wb').write(y.astype(np.int32).tobytes())
open(out + '.xn', 'wb').write(((x.astype(np.float32) - mean) / std).astype(np.float32).tobytes())
print(json.dumps({'n': n, 'xshape': list(sp.x.shape), 'dtype': str(sp.x.dtype), 'ydtype': str(sp.y.dtype), 'classes': s.class_names}))
`;

const TORCH_DUMP = `
import numpy as np, sys, json, torch
from slimfit_store import open_store
store, split, out = sys.argv[1], sys.argv[2], sys.argv[3]
sp = open_store(store).split(split)
xs, ys, xn = [], [], []
for xb, yb in torch.utils.data.DataLoader(sp.torch_dataset(), batch_size=64, shuffle=False):
    xs.append(xb.numpy()); ys.append(yb.numpy())
for xb, _ in torch.utils.data.DataLoader(sp.torch_dataset(normalize='stats'), batch_size=64, shuffle=False):
    xn.append(xb.numpy())
cf = sp.torch_dataset(normalize='scale', channels_first=True)[5][0]
assert tuple(cf.shape) == (sp.x.shape[3], sp.x.shape[1], sp.x.shape[2]) and cf.dtype == torch.float32
assert torch.allclose(cf, torch.from_numpy(np.moveaxis(sp.x[5], -1, 0).astype(np.float32) / 255))
y = np.concatenate(ys)
open(out + '.x', 'wb').write(np.concatenate(xs).tobytes())
open(out + '.y', 'wb').write(y.astype(np.int32).tobytes())
open(out + '.xn', 'wb').write(np.concatenate(xn).astype(np.float32).tobytes())
print(json.dumps({'labelDtype': str(y.dtype), 'torch': torch.__version__}))
`;

describe('examples/python/slimfit_store.py', () => {
  const tmp = tempDir('slimfit-pyreader-');
  const store = join(tmp.dir, 'store');
  before(async () => {
    // 700 uint8 images [8, 8, 3] with 7 classes, split train/test, 4 kB shards (so reads cross shard boundaries).
    py(`
import numpy as np, sys
rng = np.random.default_rng(1)
np.save(sys.argv[1] + '/x.npy', rng.integers(0, 256, (700, 8, 8, 3), dtype=np.uint8))
np.save(sys.argv[1] + '/y.npy', (np.arange(700) % 7).astype(np.int64))
`, [tmp.dir]);
    const r = await runCli(['convert', store, '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--split', 'train=0.8,test=0.2', '--shard-size', '4kB', '--class-names', 'a,b,c,d,e,f,g', '-q']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => tmp.cleanup());

  const compare = async (dump: string, split: string, what: string) => {
    const mine = await slimfitRead(store, split);
    assert.ok(readFileSync(`${dump}.x`).equals(mine.x), `${what}: every x byte of ${split} equals slimfit's`);
    assert.deepEqual(new Int32Array(Uint8Array.from(readFileSync(`${dump}.y`)).buffer), mine.y, `${what}: every label of ${split}`);
    const xn = new Float32Array(Uint8Array.from(readFileSync(`${dump}.xn`)).buffer);
    assert.equal(xn.length, mine.xn.length);
    let worst = 0;
    for (let i = 0; i < xn.length; i++) worst = Math.max(worst, Math.abs(xn[i] - mine.xn[i]));
    assert.ok(worst < 1e-5, `${what}: (x - mean) / std with the manifest's stats (stored units) equals slimfit's normalize: 'stats' (max diff ${worst})`);
  };

  test('numpy part (python3 on PATH): memory-mapped shards, lazy concatenation, SHA-256 check, same samples and labels', async () => {
    for (const split of ['train', 'test']) {
      const out = join(tmp.dir, `np-${split}`);
      const info = JSON.parse(runPy('python3', NUMPY_DUMP, [store, split, out]));
      const m = JSON.parse(readFileSync(join(store, 'dataset.json'), 'utf8'));
      assert.deepEqual(info, { n: m.splits[split].samples, xshape: [m.splits[split].samples, 8, 8, 3], dtype: 'uint8', ydtype: 'int64', classes: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] });
      await compare(out, split, 'numpy');
    }
    // A missing split, a shard with a flipped byte or a truncated shard is an error naming it, not silently wrong numbers.
    assert.throws(() => runPy('python3', "from slimfit_store import open_store; import sys; open_store(sys.argv[1]).split('nope')", [store]), /has no split 'nope'; it has train, test/);
    const bad = join(tmp.dir, 'damaged');
    cpSync(store, bad, { recursive: true });
    const shard = join(bad, 'train', 'x-00001.npy');
    const bytes = readFileSync(shard);
    bytes[bytes.length - 1] ^= 1;
    writeFileSync(shard, bytes);
    const verify = "from slimfit_store import open_store; import sys; open_store(sys.argv[1]).split('train').verify()";
    assert.throws(() => runPy('python3', verify, [bad]), /x-00001\.npy: SHA-256 differs from the manifest/);
    writeFileSync(shard, bytes.subarray(0, bytes.length - 10));
    assert.throws(() => runPy('python3', verify, [bad]), /x-00001\.npy: \d+ bytes but the manifest says \d+/);
  });

  test('PyTorch Dataset under /usr/bin/python3: the same samples, int64 labels, NHWC -> CHW on request', { skip: hasTorch ? false : `${SYSTEM_PY} has no torch (Debian: apt-get install python3-torch)` }, async () => {
    for (const split of ['train', 'test']) {
      const out = join(tmp.dir, `torch-${split}`);
      const info = JSON.parse(runPy(SYSTEM_PY, TORCH_DUMP, [store, split, out]));
      assert.equal(info.labelDtype, 'int64');
      await compare(out, split, `torch ${info.torch}`);
    }
  });
});
