// End to end through `slimfit convert` for the messy sources: notMNIST-shaped trees and archives (counts, skip list,
// duplicates, leakage, --dedupe, --strict), a numpy-written MNIST CSV, a scipy .mat — numpy reads every shard.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MNIST_DIR, py, runCli, tempDir } from '../dev/helpers.ts';
import { type NotMnistFixture, packArchive, type ExpectedSample, writeNotMnist } from './image-fixture.ts';

/** numpy concatenates every shard of a split (np.load mmap) and writes x and y as raw bytes next to the store. */
function readSplit(store: string, split: string): { x: Buffer; y: Buffer; xShape: number[]; yDtype: string } {
  const out = py(`
import json, sys, numpy as np
d, split = sys.argv[1], sys.argv[2]
m = json.load(open(d + '/dataset.json'))
sh = m['splits'][split]['shards']
x = np.concatenate([np.load(d + '/' + s['x']['file'], mmap_mode='r') for s in sh])
y = np.concatenate([np.load(d + '/' + s['y']['file'], mmap_mode='r') for s in sh])
x.tofile(d + '/' + split + '.x.bin'); y.tofile(d + '/' + split + '.y.bin')
print(json.dumps({'xShape': list(x.shape), 'yDtype': str(y.dtype)}))
`, [store, split]);
  const info = JSON.parse(out) as { xShape: number[]; yDtype: string };
  return { x: readFileSync(join(store, `${split}.x.bin`)), y: readFileSync(join(store, `${split}.y.bin`)), ...info };
}

function pixelsOf(samples: ExpectedSample[]): Buffer {
  return Buffer.concat(samples.map((s) => Buffer.from(s.pixels)));
}

describe('slimfit convert: messy sources end to end', () => {
  let tmp: { dir: string; cleanup: () => void };
  let fx: NotMnistFixture;
  before(() => {
    tmp = tempDir();
    fx = writeNotMnist(join(tmp.dir, 'nm'), 12);
  });
  after(() => tmp.cleanup());

  it('folder trees --train/--test: exact counts, skip list, duplicates and leakage; numpy sees the exact pixels', async () => {
    const out = join(tmp.dir, 'store-tree');
    const r = await runCli(['convert', '--train', fx.train.dir, '--test', fx.test.dir, out]);
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
    assert.deepEqual(m.classNames, fx.classes);
    assert.deepEqual(m.fields.x, { dtype: 'uint8', shape: [28, 28, 1] });
    assert.equal(m.splits.train.samples, fx.train.samples.length);
    assert.equal(m.splits.test.samples, fx.test.samples.length);
    assert.deepEqual(m.provenance.skipped.map((s: { path: string }) => s.path).sort(), fx.train.skipped.map((s) => join(fx.train.dir, s.path)).sort());
    const dups = m.provenance.duplicates;
    assert.equal(dups.within.train, fx.trainDuplicates);
    assert.equal(dups.within.test, 0);
    assert.equal(dups.across['train/test'], fx.leaked);
    assert.match(r.stdout + r.stderr, /leakage.*train\/test: 2/);
    assert.match(r.stdout + r.stderr, /skipped inputs: 3/);
    assert.match(r.stdout + r.stderr, /A\/zero\.png: empty file/);
    const train = readSplit(out, 'train');
    assert.deepEqual(train.xShape, [fx.train.samples.length, 28, 28, 1]);
    assert.ok(train.x.equals(pixelsOf(fx.train.samples)));
    assert.deepEqual([...train.y], fx.train.samples.map((s) => s.label));
    const test = readSplit(out, 'test');
    assert.ok(test.x.equals(pixelsOf(fx.test.samples)));
    // The train statistics (counted by the decode workers) match the stored pixels.
    const px = pixelsOf(fx.train.samples);
    let sum = 0, sq = 0, min = 255, max = 0;
    for (const v of px) { sum += v; sq += v * v; if (v < min) min = v; if (v > max) max = v; }
    const mean = sum / px.length;
    assert.ok(Math.abs(m.stats.mean[0] - mean) < 1e-9, `mean ${m.stats.mean[0]} vs ${mean}`);
    assert.ok(Math.abs(m.stats.std[0] - Math.sqrt(sq / px.length - mean * mean)) < 1e-6);
    assert.deepEqual([m.stats.min, m.stats.max], [min, max]);
  });

  it('.tar.gz train and .zip test with --dedupe: duplicates and leaked test samples are dropped', async () => {
    const tgz = join(tmp.dir, 'large.tar.gz');
    const zip = join(tmp.dir, 'small.zip');
    packArchive(fx.train.dir, tgz, 'notMNIST_large');
    packArchive(fx.test.dir, zip, 'notMNIST_small');
    const out = join(tmp.dir, 'store-dedupe');
    const r = await runCli(['convert', '--train', tgz, '--test', zip, '--dedupe', '--workers', '1', out]);
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
    assert.equal(m.splits.train.samples, fx.train.samples.length - fx.trainDuplicates);
    assert.equal(m.splits.test.samples, fx.test.samples.length - fx.leaked);
    assert.equal(m.provenance.skipped.length, 3);
    assert.ok(m.provenance.skipped.every((s: { path: string }) => s.path.startsWith('notMNIST_large/')));
    // Expected: keep the first occurrence of each pixel pattern, train first, then test (archive order = sorted).
    const seen = new Set<string>();
    const keep = (s: ExpectedSample) => { const k = Buffer.from(s.pixels).toString('base64'); if (seen.has(k)) return false; seen.add(k); return true; };
    const trainKept = fx.train.samples.filter(keep);
    const testKept = fx.test.samples.filter(keep);
    const train = readSplit(out, 'train');
    const test = readSplit(out, 'test');
    assert.ok(train.x.equals(pixelsOf(trainKept)));
    assert.ok(test.x.equals(pixelsOf(testKept)));
    assert.deepEqual([...test.y], testKept.map((s) => s.label));
  });

  it('--strict stops at the first bad file with a clear error and leaves no store', async () => {
    const out = join(tmp.dir, 'store-strict');
    const r = await runCli(['convert', fx.train.dir, '--strict', out]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /slimfit: error: .*A\/zero\.png: empty file \(0 bytes\)/);
    assert.equal(existsSync(join(out, 'dataset.json')), false);
  });

  it('a numpy-written MNIST CSV converts pixel-exact; a line with a missing field is reported by line number', async () => {
    const csv = join(tmp.dir, 'mnist.csv');
    py(`
import numpy as np, sys
d, out = sys.argv[1], sys.argv[2]
x = np.fromfile(d + '/t10k-images-idx3-ubyte', dtype=np.uint8, offset=16).reshape(-1, 784)[:1000]
y = np.fromfile(d + '/t10k-labels-idx1-ubyte', dtype=np.uint8, offset=8)[:1000]
np.savetxt(out, np.column_stack([y, x]), fmt='%d', delimiter=',')
`, [MNIST_DIR, csv]);
    const lines = readFileSync(csv, 'latin1').split('\n');
    lines[41] = lines[41].slice(0, lines[41].lastIndexOf(','));
    writeFileSync(csv, lines.join('\n'));
    const out = join(tmp.dir, 'store-csv');
    const r = await runCli(['convert', csv, '--x-dtype', 'uint8', '--shape', '28,28', '--label-col', '0', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /mnist\.csv:42: expected 785 fields, found 784/);
    const s = readSplit(out, 'train');
    assert.deepEqual(s.xShape, [999, 28, 28]);
    const all = readFileSync(join(MNIST_DIR, 't10k-images-idx3-ubyte')).subarray(16, 16 + 1000 * 784);
    const want = Buffer.concat([all.subarray(0, 41 * 784), all.subarray(42 * 784)]);
    assert.ok(s.x.equals(want));
    const labels = readFileSync(join(MNIST_DIR, 't10k-labels-idx1-ubyte')).subarray(8, 1008);
    assert.equal(s.yDtype, 'int64');
    assert.deepEqual([...new BigInt64Array(s.y.buffer, s.y.byteOffset, 999)].map(Number), [...labels.subarray(0, 41), ...labels.subarray(42)]);
  });

  it('a scipy .mat (compressed, samples along the last axis) converts with exact values and orientation', async () => {
    const mat = join(tmp.dir, 'svhn-like.mat');
    const ref = join(tmp.dir, 'svhn-ref.bin');
    py(`
import numpy as np, scipy.io as sio, sys
rng = np.random.default_rng(3)
X = rng.integers(0, 256, (8, 6, 3, 40), dtype=np.uint8)
y = rng.integers(1, 11, (40, 1)).astype(np.float64)
sio.savemat(sys.argv[1], {'X': X, 'y': y}, do_compression=True)
np.ascontiguousarray(np.moveaxis(X, -1, 0)).tofile(sys.argv[2])
`, [mat, ref]);
    const out = join(tmp.dir, 'store-mat');
    const r = await runCli(['convert', mat, out]);
    assert.equal(r.code, 0, r.stderr);
    const s = readSplit(out, 'train');
    assert.deepEqual(s.xShape, [40, 8, 6, 3]);
    assert.ok(s.x.equals(readFileSync(ref)));
  });
});
