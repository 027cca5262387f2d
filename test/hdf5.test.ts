// HDF5 datasets written by the test (h5wasm) and MATLAB v7.3-style files (HDF5 behind a 512-byte MATLAB header,
// dimensions reversed as MATLAB writes them): exact values, samples axis first or last, chunked reads, errors.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import h5wasm from 'h5wasm/node';
import { openHdf5 } from '../src/formats/hdf5.ts';
import { openMessySource } from '../src/formats/messy.ts';
import type { SampleSource } from '../src/core/source.ts';
import { ROOT, runCli, tempDir } from '../dev/helpers.ts';

async function drain(src: SampleSource): Promise<{ x: Buffer; y: Buffer; n: number }> {
  const xs: Buffer[] = [];
  const ys: Buffer[] = [];
  let n = 0;
  for await (const b of src.batches()) { xs.push(Buffer.from(b.x)); ys.push(Buffer.from(b.y)); n += b.n; }
  return { x: Buffer.concat(xs), y: Buffer.concat(ys), n };
}

const N = 37;
/** Value of sample i at position (a, b) — distinct everywhere so any transposition shows. */
const val = (i: number, a: number, b: number) => i * 100 + a * 10 + b + 0.25;

describe('HDF5 and MATLAB v7.3', () => {
  let tmp: { dir: string; cleanup: () => void };
  // Expected samples: N samples of shape [3, 4] in C order.
  const want = new Float32Array(N * 12);
  for (let i = 0; i < N; i++) for (let a = 0; a < 3; a++) for (let b = 0; b < 4; b++) want[i * 12 + a * 4 + b] = val(i, a, b);
  const labels = BigInt64Array.from({ length: N }, (_, i) => BigInt((i * 7) % 10));

  before(async () => {
    tmp = tempDir();
    await h5wasm.ready;
    // Samples first: x (N, 3, 4) float32, chunked; y (N,) int64, in a group.
    let f = new h5wasm.File(join(tmp.dir, 'first.h5'), 'w');
    f.create_dataset({ name: 'x', data: want, shape: [N, 3, 4], chunks: [5, 3, 4] });
    f.create_group('meta');
    f.create_dataset({ name: 'meta/labels', data: labels, shape: [N] });
    f.close();
    // Samples last: x (3, 4, N) float64; y (1, N) float64 whole numbers.
    const last = new Float64Array(N * 12);
    for (let i = 0; i < N; i++) for (let a = 0; a < 3; a++) for (let b = 0; b < 4; b++) last[(a * 4 + b) * N + i] = val(i, a, b);
    f = new h5wasm.File(join(tmp.dir, 'last.h5'), 'w');
    f.create_dataset({ name: 'X', data: last, shape: [3, 4, N] });
    f.create_dataset({ name: 'y', data: Float64Array.from(labels, Number), shape: [1, N] });
    f.create_dataset({ name: 'yfrac', data: Float64Array.from(labels, (v) => Number(v) + 0.5), shape: [N] });
    f.close();
    // MATLAB v7.3: MATLAB variable X of size N x 3 x 4 is stored column-major = HDF5 dataset of shape (4, 3, N).
    const mat = new Float64Array(N * 12);
    for (let i = 0; i < N; i++) for (let a = 0; a < 3; a++) for (let b = 0; b < 4; b++) mat[i + N * (a + 3 * b)] = val(i, a, b);
    const h5 = join(tmp.dir, 'mat73.h5');
    f = new h5wasm.File(h5, 'w');
    f.create_dataset({ name: 'X', data: mat, shape: [4, 3, N] });
    f.create_dataset({ name: 'y', data: Float64Array.from(labels, Number), shape: [N, 1] }); // MATLAB 1 x N
    f.close();
    const header = Buffer.alloc(512);
    header.write('MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Wed Nov 25 00:00:00 2026 HDF5 schema 1.00 .', 0, 'latin1');
    writeFileSync(join(tmp.dir, 'v73.mat'), Buffer.concat([header, readFileSync(h5)]));
  });
  after(() => tmp.cleanup());

  it('samples along the first axis, chunked reads, exact (--x/--y paths)', async () => {
    for (const batchRows of [undefined, 4]) {
      const src = await openHdf5(join(tmp.dir, 'first.h5'), { x: '/x', y: '/meta/labels', batchRows });
      assert.deepEqual(src.x, { dtype: 'float32', shape: [3, 4] });
      assert.deepEqual(src.y, { dtype: 'int64', shape: [] });
      const d = await drain(src);
      assert.equal(d.n, N);
      assert.ok(d.x.equals(Buffer.from(want.buffer)));
      assert.ok(d.y.equals(Buffer.from(labels.buffer)));
      await src.close();
    }
  });

  it('samples along the last axis are transposed into C-order samples; float labels become int64', async () => {
    const src = await openMessySource(join(tmp.dir, 'last.h5'), { batchRows: 5 } as never);
    assert.ok(src);
    assert.deepEqual(src.x, { dtype: 'float64', shape: [3, 4] });
    const d = await drain(src);
    assert.deepEqual([...new Float64Array(d.x.buffer, d.x.byteOffset, d.x.length / 8)], [...want]);
    assert.ok(d.y.equals(Buffer.from(labels.buffer)));
    const got: number[] = [];
    for await (const l of src.labels!()) got.push(...Array.from(l));
    assert.deepEqual(got, Array.from(labels, Number));
    await src.close();
    const frac = await openHdf5(join(tmp.dir, 'last.h5'), { y: 'yfrac' });
    await assert.rejects(drain(frac), /label 1 of \/yfrac is 0\.5, not a whole number/);
    await frac.close();
  });

  it('a MATLAB v7.3 file is detected and read in MATLAB orientation (n x 3 x 4 -> n samples of 3 x 4)', async () => {
    const src = await openMessySource(join(tmp.dir, 'v73.mat'), {});
    assert.ok(src);
    assert.deepEqual(src.x, { dtype: 'float64', shape: [3, 4] });
    const d = await drain(src);
    assert.deepEqual([...new Float64Array(d.x.buffer, d.x.byteOffset, d.x.length / 8)], [...want]);
    assert.ok(d.y.equals(Buffer.from(labels.buffer)));
    await src.close();
  });

  it('keeps h5wasm out of tsx: reading an HDF5 file stays under 250 MB peak RSS (through tsx it peaked at ~650 MB)', async () => {
    const r = await runCli([join(tmp.dir, 'first.h5'), JSON.stringify({ x: '/x', y: '/meta/labels' })], { script: join(ROOT, 'test', 'drain-source.mjs') });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`samples=${N} `));
    assert.ok(r.peakRss < 250e6, `peak RSS ${(r.peakRss / 1e6).toFixed(0)} MB`);
  });

  it('missing datasets, mismatched lengths and non-HDF5 files are clear errors', async () => {
    await assert.rejects(openHdf5(join(tmp.dir, 'first.h5')), /no labels dataset found.*top-level entries: meta, x/);
    await assert.rejects(openHdf5(join(tmp.dir, 'first.h5'), { x: '/nope', y: '/meta/labels' }), /no dataset "\/nope"/);
    await assert.rejects(openHdf5(join(tmp.dir, 'last.h5'), { x: '/X', y: '/meta' }), /no dataset/);
    const bad = join(tmp.dir, 'bad.h5');
    const full = readFileSync(join(tmp.dir, 'first.h5'));
    writeFileSync(bad, full.subarray(0, 300));
    await assert.rejects(openHdf5(bad), (e: Error) => e.name === 'SlimfitError' && e.message.includes('bad.h5'));
  });
});
