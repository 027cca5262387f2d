// MATLAB v5 .mat files written by scipy.io.savemat (compressed and not): exact values and orientation for samples
// along the first axis (n x d) and the last axis (h x w x c x n), class dtypes, label handling, errors.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { listMatVariables, openMat } from '../src/formats/mat.ts';
import { openMessySource } from '../src/formats/messy.ts';
import type { SampleSource } from '../src/core/source.ts';
import { py, tempDir } from '../dev/helpers.ts';

async function drain(src: SampleSource): Promise<{ x: Buffer; y: Buffer; n: number }> {
  const xs: Buffer[] = [];
  const ys: Buffer[] = [];
  let n = 0;
  for await (const b of src.batches()) { xs.push(Buffer.from(b.x)); ys.push(Buffer.from(b.y)); n += b.n; }
  return { x: Buffer.concat(xs), y: Buffer.concat(ys), n };
}

describe('MATLAB v5 .mat (scipy.io.savemat)', () => {
  let tmp: { dir: string; cleanup: () => void };
  before(() => {
    tmp = tempDir();
    // For each case: the .mat (compressed and not) and the expected samples as numpy would index them.
    py(`
import numpy as np, scipy.io as sio, sys, os
d = sys.argv[1]
rng = np.random.default_rng(7)
def save(name, X, y, expect_x, **kw):
    for comp in (False, True):
        sio.savemat(os.path.join(d, f'{name}-{int(comp)}.mat'), {'X': X, 'y': y, 'other': np.arange(3.0), **kw}, do_compression=comp)
    np.ascontiguousarray(expect_x).tofile(os.path.join(d, name + '.x'))
    np.asarray(y).reshape(-1).astype(np.int64).tofile(os.path.join(d, name + '.y'))
n = 53
# rows = samples (n x 12 doubles), labels a row vector (scipy's default oned_as='row')
X = rng.standard_normal((n, 12)); y = rng.integers(0, 10, n).astype(np.float64)
save('rows', X, y, X)
# MATLAB image stack: 5 x 4 x 3 x n uint8, samples along the last axis, labels n x 1 int32
S = rng.integers(0, 256, (5, 4, 3, n), dtype=np.uint8); ys = rng.integers(0, 7, (n, 1)).astype(np.int32)
save('stack', S, ys, np.moveaxis(S, -1, 0))
# rows = samples, 3-D (n x 6 x 2) float32, uint8 labels
T = rng.standard_normal((n, 6, 2)).astype(np.float32); yt = rng.integers(0, 3, n).astype(np.uint8)
save('rows3d', T, yt, T)
# square: both axes match n -> first axis wins
Q = rng.integers(-1000, 1000, (n, n)).astype(np.int16); yq = np.arange(n) % 5
save('square', Q, yq.astype(np.float64), Q)
# labels that are not whole numbers
sio.savemat(os.path.join(d, 'badlabels.mat'), {'X': X, 'y': y + 0.5})
# dimensions that match nothing
sio.savemat(os.path.join(d, 'mismatch.mat'), {'X': X, 'y': y[:10]})
# custom names and a struct
sio.savemat(os.path.join(d, 'names.mat'), {'images': S, 'lab': ys, 's': {'a': 1}}, do_compression=True)
`, [tmp.dir]);
  });
  after(() => tmp.cleanup());

  const expect = (name: string) => ({ x: readFileSync(join(tmp.dir, `${name}.x`)), y: readFileSync(join(tmp.dir, `${name}.y`)) });
  const asInt64 = (b: Buffer, dtype: string): bigint[] => {
    if (dtype === 'int64') return [...new BigInt64Array(b.buffer, b.byteOffset, b.length / 8)];
    if (dtype === 'int32') return [...new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))].map(BigInt);
    if (dtype === 'uint8') return [...b].map(BigInt);
    throw new Error(dtype);
  };

  for (const [name, xShape, xDtype, yDtype] of [
    ['rows', [12], 'float64', 'int64'],
    ['stack', [5, 4, 3], 'uint8', 'int32'],
    ['rows3d', [6, 2], 'float32', 'uint8'],
    ['square', [53], 'int16', 'int64'],
  ] as const) {
    for (const comp of [0, 1]) {
      it(`${name} (${comp ? 'compressed' : 'uncompressed'}): exact values, samples in the right orientation`, async () => {
        const file = join(tmp.dir, `${name}-${comp}.mat`);
        const src = await openMessySource(file, {});
        assert.ok(src);
        assert.deepEqual(src.x, { dtype: xDtype, shape: [...xShape] });
        assert.deepEqual(src.y, { dtype: yDtype, shape: [] });
        assert.equal(src.count, 53);
        const want = expect(name);
        for (const batchRows of [undefined, 7]) {
          const s2 = batchRows ? await openMat(file, { batchRows }) : src;
          const d = await drain(s2);
          assert.equal(d.n, 53);
          assert.ok(d.x.equals(want.x), `x differs (batchRows ${batchRows})`);
          assert.deepEqual(asInt64(d.y, yDtype), asInt64(want.y, 'int64'));
          await s2.close();
        }
        const labels: number[] = [];
        for await (const l of src.labels!()) labels.push(...Array.from(l));
        assert.deepEqual(labels, asInt64(want.y, 'int64').map(Number));
      });
    }
  }

  it('a compressed rows-as-samples variable is inflated to a temp file that close() removes', async () => {
    const before = new Set(readdirSync(tmpdir()).filter((f) => f.startsWith('slimfit-mat-')));
    const src = await openMat(join(tmp.dir, 'rows-1.mat'), { batchRows: 10 });
    await drain(src);
    const made = readdirSync(tmpdir()).filter((f) => f.startsWith('slimfit-mat-') && !before.has(f));
    assert.equal(made.length, 1);
    await drain(src); // second pass reuses it
    await src.close();
    assert.equal(existsSync(join(tmpdir(), made[0])), false);
  });

  it('lists variables, picks --x/--y names, and explains what is wrong', async () => {
    const { vars } = await listMatVariables(join(tmp.dir, 'names.mat'));
    assert.deepEqual(vars.map((v) => v.name), ['images', 'lab', 's']);
    const src = await openMat(join(tmp.dir, 'names.mat'), { y: 'lab' });
    const d = await drain(src);
    assert.ok(d.x.equals(expect('stack').x));
    await assert.rejects(openMat(join(tmp.dir, 'names.mat')), /no labels variable found.*variables in the file: images, lab, s/);
    await assert.rejects(openMat(join(tmp.dir, 'names.mat'), { y: 's' }), /variable s is a struct, not a numeric array/);
    await assert.rejects(drain(await openMat(join(tmp.dir, 'badlabels.mat'))), /label 1 of y is .*not a whole number/);
    await assert.rejects(openMat(join(tmp.dir, 'mismatch.mat')), /X is 53x12 but y has 10 labels/);
  });

  it('truncated and corrupt files are clear errors naming the file', async () => {
    const full = readFileSync(join(tmp.dir, 'rows-0.mat'));
    const cut = join(tmp.dir, 'cut.mat');
    writeFileSync(cut, full.subarray(0, full.length - 100));
    await assert.rejects(openMat(cut), (e: Error) => e.name === 'SlimfitError' && e.message.includes('cut.mat') && /truncated/.test(e.message));
    const zfull = readFileSync(join(tmp.dir, 'rows-1.mat'));
    const zbad = Buffer.from(zfull);
    for (let i = 400; i < 600; i++) zbad[i] ^= 0x5a; // damage the deflate stream of X
    const bad = join(tmp.dir, 'bad.mat');
    writeFileSync(bad, zbad);
    await assert.rejects(async () => drain(await openMat(bad)), (e: Error) => e.name === 'SlimfitError' && e.message.includes('bad.mat'));
  });
});
