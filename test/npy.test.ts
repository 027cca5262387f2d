// .npy reader/writer against numpy as the independent client, both directions, plus bad input.
import assert from 'node:assert/strict';
import { open, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DTYPES, type DType, dtypeSize } from '../src/core/dtype.ts';
import { SlimfitError } from '../src/core/errors.ts';
import { createNpyWriter, encodeNpyHeader, openNpy, saveNpy } from '../src/formats/npy.ts';
import { py, ROOT, tempDir } from '../dev/helpers.ts';

const { dir, cleanup } = tempDir('slimfit-npy-');
after(cleanup);

/** numpy dtype string for each slimfit dtype, little-endian. */
const NP: Record<DType, string> = {
  bool: '|b1', uint8: '|u1', int8: '|i1', uint16: '<u2', int16: '<i2', uint32: '<u4', int32: '<i4',
  uint64: '<u8', int64: '<i8', float16: '<f2', float32: '<f4', float64: '<f8',
};

/** Deterministic pseudo-random bytes that are valid for `dtype` (bool bytes are 0/1). */
function randomBytes(dtype: DType, n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n * dtypeSize(dtype));
  let s = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  if (dtype === 'bool') for (let i = 0; i < out.length; i++) out[i] &= 1;
  return out;
}

async function expectSlimfitError(p: Promise<unknown>, file: string, re: RegExp): Promise<SlimfitError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SlimfitError, `expected SlimfitError, got ${e}`);
    assert.ok(e.message.includes(file), `message should name ${file}: ${e.message}`);
    assert.match(e.message, re);
    return e;
  }
  assert.fail('expected an error');
}

describe('numpy writes, slimfit reads', () => {
  // numpy writes every dtype in both byte orders and format versions 1.0/2.0/3.0, plus the raw
  // little-endian bytes of the same array as the reference.
  before(() => {
    py(`
import numpy as np, sys, os
d = sys.argv[1]
rng = np.random.default_rng(7)
for name, dt in ${JSON.stringify(NP)}.items():
    raw = rng.integers(0, 256, size=5 * 3 * 4 * np.dtype(dt).itemsize, dtype=np.uint8)
    if dt == '|b1':
        raw = raw & 1
    a = raw.view(dt).reshape(5, 3, 4)
    open(os.path.join(d, f'{name}.ref'), 'wb').write(a.astype(np.dtype(dt).newbyteorder('<')).tobytes())
    np.save(os.path.join(d, f'{name}.npy'), a)
    np.save(os.path.join(d, f'{name}-be.npy'), a.astype(np.dtype(dt).newbyteorder('>')))
    for v in [(2, 0), (3, 0)]:
        with open(os.path.join(d, f'{name}-v{v[0]}.npy'), 'wb') as f:
            np.lib.format.write_array(f, a, version=v)
`, [dir]);
  });

  for (const dtype of DTYPES) {
    test(`${dtype}: little/big-endian, versions 1/2/3, read exactly`, async () => {
      const ref = new Uint8Array(await readFile(join(dir, `${dtype}.ref`)));
      for (const variant of ['', '-be', '-v2', '-v3']) {
        const f = await openNpy(join(dir, `${dtype}${variant}.npy`));
        try {
          assert.equal(f.dtype, dtype);
          assert.deepEqual(f.shape, [5, 3, 4]);
          assert.deepEqual(f.rowShape, [3, 4]);
          assert.equal(f.header.bigEndian, variant === '-be' && dtypeSize(dtype) > 1);
          if (variant.startsWith('-v')) assert.equal(f.header.version[0], Number(variant[2]));
          assert.deepEqual(await f.readRows(0, 5), ref);
          assert.deepEqual(await f.readRows(2, 4), ref.subarray(2 * f.rowBytes, 4 * f.rowBytes));
        } finally {
          await f.close();
        }
      }
    });
  }

  test('0-d and 1-d arrays', async () => {
    py(`
import numpy as np, sys
np.save(sys.argv[1] + '/scalar.npy', np.float64(2.5))
np.save(sys.argv[1] + '/vec.npy', np.arange(7, dtype='<i8'))
`, [dir]);
    const s = await openNpy(join(dir, 'scalar.npy'));
    assert.deepEqual(s.shape, []);
    assert.equal(s.rows, 1);
    assert.equal(new Float64Array((await s.readRows(0, 1)).slice().buffer)[0], 2.5);
    await s.close();
    const v = await openNpy(join(dir, 'vec.npy'));
    assert.deepEqual(v.rowShape, []);
    assert.deepEqual([...new BigInt64Array((await v.readRowList([6, 0, 3])).slice().buffer)], [6n, 0n, 3n]);
    await v.close();
  });
});

describe('slimfit writes, numpy reads', () => {
  test('every dtype round-trips exactly through numpy, data 64-byte aligned', async () => {
    const shape = [6, 2, 3];
    for (const [k, dtype] of DTYPES.entries()) {
      const data = randomBytes(dtype, 36, k + 1);
      await saveNpy(join(dir, `w-${dtype}.npy`), dtype, shape, data);
      await writeFile(join(dir, `w-${dtype}.ref`), data);
    }
    const out = py(`
import numpy as np, sys, json
d = sys.argv[1]
res = {}
for name in ${JSON.stringify(DTYPES)}:
    a = np.load(f'{d}/w-{name}.npy', mmap_mode='r')
    ref = open(f'{d}/w-{name}.ref', 'rb').read()
    with open(f'{d}/w-{name}.npy', 'rb') as f:
        v = np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f) if v == (1, 0) else np.lib.format.read_array_header_2_0(f)
        off = f.tell()
    res[name] = [a.dtype.str, list(a.shape), a.tobytes() == ref, off % 64]
print(json.dumps(res))
`, [dir]);
    const res = JSON.parse(out) as Record<string, [string, number[], boolean, number]>;
    for (const dtype of DTYPES) {
      assert.deepEqual(res[dtype], [NP[dtype], shape, true, 0], dtype);
    }
  });

  test('0-d and empty arrays', async () => {
    await saveNpy(join(dir, 'w-scalar.npy'), 'int32', [], new Int32Array([-5]));
    await saveNpy(join(dir, 'w-empty.npy'), 'float32', [0, 4], new Float32Array(0));
    const out = py(`
import numpy as np, sys
a = np.load(sys.argv[1] + '/w-scalar.npy'); b = np.load(sys.argv[1] + '/w-empty.npy')
print(a.shape, int(a), b.shape, b.dtype)
`, [dir]);
    assert.equal(out.trim(), '() -5 (0, 4) float32');
  });

  test('streaming writer: rows of unknown count appended in uneven chunks, shape fixed at close', async () => {
    const path = join(dir, 'stream.npy');
    const w = await createNpyWriter(path, 'uint16', [5]);
    const all: number[] = [];
    let next = 0;
    // Chunk sizes chosen to cross the 4 MB internal buffer both ways.
    for (const rows of [1, 3, 0, 500_000, 7, 1_000_000, 2]) {
      const a = new Uint16Array(rows * 5);
      for (let i = 0; i < a.length; i++) a[i] = (next++ * 7919) & 0xffff;
      if (rows < 10) all.push(...a);
      await w.append(a);
    }
    assert.equal(w.rows, 1_500_013);
    await assert.rejects(stat(path)); // nothing at the final path until close
    const size = await w.close();
    assert.equal((await stat(path)).size, size);
    const out = py(`
import numpy as np, sys
a = np.load(sys.argv[1], mmap_mode='r')
flat = a.reshape(-1).astype(np.int64)
ok = bool(((np.arange(flat.size, dtype=np.int64) * 7919) & 0xffff == flat).all())
print(a.dtype.str, a.shape, ok)
`, [path]);
    assert.equal(out.trim(), '<u2 (1500013, 5) True');
    const f = await openNpy(path);
    assert.deepEqual([...new Uint16Array((await f.readRows(0, 4)).buffer)], all.slice(0, 20));
    await f.close();
  });

  test('a writer told its file is small (a shard of labels) buffers little; drain writes it out and refuses more rows', async () => {
    const path = join(dir, 'labels.npy');
    // checksumRows 20k one-byte rows: buffers of 20 kB; appends of 7k rows overflow them both ways.
    const w = await createNpyWriter(path, 'uint8', [], { checksumRows: 20_000 });
    const y = new Uint8Array(20_000).map((_, i) => (i * 31) & 0xff);
    for (const [a, b] of [[0, 7000], [7000, 7001], [7001, 14_000], [14_000, 20_000]]) await w.append(y.subarray(a, b));
    await w.drain();
    await assert.rejects(w.append(new Uint8Array(1)), /append after close/);
    await w.close();
    const { createHash } = await import('node:crypto');
    const bytes = await readFile(path);
    assert.equal(w.sha256, createHash('sha256').update(bytes).digest('hex'));
    const out = py(`import numpy as np, sys; a = np.load(sys.argv[1]); print(a.shape, int(((np.arange(20000) * 31) & 255 == a).all()))`, [path]);
    assert.equal(out.trim(), '(20000,) 1');
  });

  test('abort removes the partial file', async () => {
    const path = join(dir, 'aborted.npy');
    const w = await createNpyWriter(path, 'uint8', [3]);
    await w.append(new Uint8Array(9));
    await w.abort();
    await assert.rejects(stat(path));
    await assert.rejects(stat(`${path}.tmp-${process.pid}`));
  });
});

describe('random access', () => {
  test('readRows and readRowList (adjacent runs, gaps, repeats, reverse order, into a buffer)', async () => {
    const path = join(dir, 'ra.npy');
    const rows = 1000;
    const data = new Float32Array(rows * 3);
    for (let i = 0; i < data.length; i++) data[i] = i * 0.5;
    await saveNpy(path, 'float32', [rows, 3], data);
    const f = await openNpy(path);
    const rowOf = (r: number) => [...data.subarray(r * 3, r * 3 + 3)];
    const asRows = (b: Uint8Array) => [...new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4)];
    assert.deepEqual(asRows(await f.readRows(998, 1000)), [...rowOf(998), ...rowOf(999)]);
    assert.deepEqual(asRows(await f.readRows(5, 5)), []);
    const list = [3, 4, 5, 100, 7, 7, 999, 0, 1];
    assert.deepEqual(asRows(await f.readRowList(list)), list.flatMap(rowOf));
    const into = new Uint8Array(64 * 12);
    const got = await f.readRowList([10, 12, 14], into);
    assert.equal(got.buffer, into.buffer);
    assert.deepEqual(asRows(got), [10, 12, 14].flatMap(rowOf));
    await assert.rejects(f.readRows(999, 1001), RangeError);
    await assert.rejects(f.readRowList([1, 1000]), RangeError);
    await f.close();
  });

  test('files larger than 4 GB: rows past 2^32 bytes read by position (sparse file)', async () => {
    const path = join(dir, 'big.npy');
    const rowBytes = 1 << 20;
    const rows = 5 * 1024 + 3; // ~5 GB of uint8 rows
    const header = encodeNpyHeader('uint8', [rows, rowBytes]);
    const fh = await open(path, 'w');
    await fh.write(header, 0, header.length, 0);
    await fh.close();
    await truncate(path, header.length + rows * rowBytes);
    const marker = new Uint8Array(rowBytes);
    for (let i = 0; i < rowBytes; i++) marker[i] = (i * 31 + 7) & 0xff;
    const fw = await open(path, 'r+');
    await fw.write(marker, 0, rowBytes, header.length + (rows - 2) * rowBytes);
    await fw.close();
    const f = await openNpy(path);
    assert.equal(f.rows, rows);
    assert.ok(f.dataStart + (rows - 2) * rowBytes > 2 ** 32);
    assert.deepEqual(await f.readRows(rows - 2, rows - 1), marker);
    const two = await f.readRowList([1, rows - 2]);
    assert.deepEqual(two.subarray(0, rowBytes), new Uint8Array(rowBytes));
    assert.deepEqual(two.subarray(rowBytes), marker);
    await f.close();
    const out = py(`
import numpy as np, sys, zlib
a = np.load(sys.argv[1], mmap_mode='r')
print(a.shape, zlib.crc32(a[-2].tobytes()), int(a[-1].sum()))
`, [path]);
    const { crc32 } = await import('node:zlib');
    assert.equal(out.trim(), `(${rows}, ${rowBytes}) ${crc32(marker)} 0`);
  });
});

describe('bad input', () => {
  test('truncated .npy names the file and the missing bytes', async () => {
    const src = join(dir, 'float32.npy');
    const bytes = await readFile(src);
    const path = join(dir, 'truncated.npy');
    await writeFile(path, bytes.subarray(0, bytes.length - 10));
    await expectSlimfitError(openNpy(path), path, /truncated|needs \d+ data bytes/);
    const headerOnly = join(dir, 'header-cut.npy');
    await writeFile(headerOnly, bytes.subarray(0, 40));
    await expectSlimfitError(openNpy(headerOnly), headerOnly, /ends inside the \.npy header/);
  });

  test('header claiming 10^12 rows fails before allocating anything', async () => {
    const path = join(dir, 'lying.npy');
    await writeFile(path, Buffer.concat([encodeNpyHeader('uint8', [1e12, 28, 28]), Buffer.alloc(784 * 3)]));
    const before = process.memoryUsage().rss;
    const e = await expectSlimfitError(openNpy(path), path, /lying header/);
    assert.match(e.message, /784000000000000 data bytes/);
    assert.ok(process.memoryUsage().rss - before < 200 << 20);
    const absurd = join(dir, 'absurd.npy');
    await writeFile(absurd, encodeNpyHeader('float64', [1e12, 1e12]));
    await expectSlimfitError(openNpy(absurd), absurd, /impossibly large/);
  });

  test('wrong magic, empty file', async () => {
    const path = join(dir, 'notnpy.npy');
    await writeFile(path, 'PK\x03\x04 this is a zip, not an npy, really not');
    await expectSlimfitError(openNpy(path), path, /wrong magic/);
    const empty = join(dir, 'empty.npy');
    await writeFile(empty, '');
    await expectSlimfitError(openNpy(empty), empty, /wrong magic|too short/);
  });

  test('unknown dtypes (complex, unicode, object, structured) are refused by name', async () => {
    py(`
import numpy as np, sys
d = sys.argv[1]
np.save(d + '/c16.npy', np.zeros(3, dtype='<c16'))
np.save(d + '/u10.npy', np.array(['a', 'bc'], dtype='U10'))
np.save(d + '/dt.npy', np.zeros(2, dtype='datetime64[ns]'))
np.save(d + '/rec.npy', np.zeros(2, dtype=[('x', '<f4'), ('y', '<i8')]))
`, [dir]);
    for (const [name, re] of [['c16', /unsupported dtype '<c16'/], ['u10', /unsupported dtype '<U10'/], ['dt', /unsupported dtype '<M8\[ns\]'/], ['rec', /structured/]] as const) {
      await expectSlimfitError(openNpy(join(dir, `${name}.npy`)), join(dir, `${name}.npy`), re);
    }
  });

  test('Fortran order: 2-d refused with a fix, 1-d accepted', async () => {
    py(`
import numpy as np, sys
np.save(sys.argv[1] + '/fort.npy', np.asfortranarray(np.arange(12, dtype='<i4').reshape(3, 4)))
np.save(sys.argv[1] + '/fort1.npy', np.asfortranarray(np.arange(5, dtype='<i4')))
`, [dir]);
    const e = await expectSlimfitError(openNpy(join(dir, 'fort.npy')), join(dir, 'fort.npy'), /Fortran-ordered/);
    assert.match(e.message, /ascontiguousarray/);
    const f = await openNpy(join(dir, 'fort1.npy'));
    assert.deepEqual([...new Int32Array((await f.readRows(0, 5)).buffer)], [0, 1, 2, 3, 4]);
    await f.close();
  });
});

describe('shard checksums', () => {
  test('SHA-256 off the main thread equals node:crypto for any split of the bytes, and python hashlib on a shard', async () => {
    const { createHash, randomBytes } = await import('node:crypto');
    const { createSha256 } = await import('../src/core/sha256.ts');
    const { existsSync } = await import('node:fs');
    const { featureEnabled } = await import('../src/core/config.ts');
    const { addonFolders } = await import('../src/core/native.ts');
    const built = addonFolders().some((f) => existsSync(join(ROOT, f, 'slimfit_sha256.node')));
    assert.equal(createSha256().offThread, built && featureEnabled('sha256'));
    const data = randomBytes(3_000_017);
    const want = createHash('sha256').update(data).digest('hex');
    for (const cuts of [[], [0], [1, 64, 65, 1000], [1 << 20, 2 << 20]]) {
      const h = createSha256();
      let at = 0;
      for (const c of [...cuts, data.length]) { await h.update(data.subarray(at, c)); at = c; }
      assert.equal(h.digest(), want, `cut at ${cuts}`);
    }
    const empty = createSha256();
    assert.equal(empty.digest(), createHash('sha256').digest('hex'));
    // A streamed shard whose row count matches checksumRows is hashed while written; python reads the same digest.
    const tmp = tempDir();
    try {
      const path = join(tmp.dir, 's.npy');
      const w = await createNpyWriter(path, 'uint8', [784], { checksumRows: 3000 });
      for (let i = 0; i < 30; i++) await w.append(data.subarray(i * 78_400, (i + 1) * 78_400));
      await w.close();
      const sum = py(`import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())`, [path]);
      assert.equal(w.sha256, sum.trim());
    } finally { tmp.cleanup(); }
  });
});
