// .npz reading (np.savez / np.savez_compressed) against numpy, broken zips, and slimfit's .npz writer read by numpy.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SlimfitError } from '../src/core/errors.ts';
import { listNpz, memberCrcChecker, openNpzMember, streamNpyRows, toDiskOrder } from '../src/formats/npz.ts';
import { py, tempDir } from '../dev/helpers.ts';

const { dir, cleanup } = tempDir('slimfit-npz-');
after(cleanup);

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

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of chunks) parts.push(c);
  return Buffer.concat(parts);
}

const MEMBERS = ['x', 'y', 'xbe', 'big', 'scalar'];

describe('numpy writes .npz, slimfit reads', () => {
  before(() => {
    py(`
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(11)
arrs = {
    'x': rng.standard_normal((100, 3, 4)).astype('<f4'),
    'y': rng.integers(-5, 5, size=100).astype('<i8'),
    'xbe': rng.integers(-99999, 99999, size=(10, 2)).astype('>i4'),
    'big': (np.arange(20000 * 784, dtype=np.int64) % 251).astype('|u1').reshape(20000, 784),
    'scalar': np.float64(3.25),
}
np.savez(d + '/plain.npz', **arrs)
np.savez_compressed(d + '/comp.npz', **arrs)
for k, a in arrs.items():
    open(f'{d}/{k}.ref', 'wb').write(np.ascontiguousarray(a).astype(a.dtype.newbyteorder('<')).tobytes())
`, [dir]);
  });

  test('members are listed with sizes, compression and (for stored members) the offset numpy agrees on', async () => {
    const plain = await listNpz(join(dir, 'plain.npz'));
    const comp = await listNpz(join(dir, 'comp.npz'));
    assert.deepEqual(plain.map((m) => m.name), MEMBERS);
    assert.deepEqual(comp.map((m) => m.name), MEMBERS);
    assert.ok(plain.every((m) => !m.compressed && m.compressedSize === m.uncompressedSize));
    assert.ok(comp.every((m) => m.compressed && m.compressionMethod === 8));
    const ref = JSON.parse(py(`
import zipfile, struct, sys, json
out = {}
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[1], 'rb') as f:
    for i in z.infolist():
        f.seek(i.header_offset)
        h = f.read(30)
        n, e = struct.unpack('<HH', h[26:30])
        out[i.filename] = [i.header_offset + 30 + n + e, i.file_size, i.CRC]
print(json.dumps(out))
`, [join(dir, 'plain.npz')])) as Record<string, number[]>;
    for (const m of plain) assert.deepEqual([m.dataOffset, m.uncompressedSize, m.crc32], ref[m.fileName], m.name);
  });

  test('stored members: random access in place, exact bytes, big-endian converted', async () => {
    for (const name of MEMBERS) {
      const ref = await readFile(join(dir, `${name}.ref`));
      const f = await openNpzMember(join(dir, 'plain.npz'), name);
      try {
        assert.equal(f.path, join(dir, 'plain.npz'));
        assert.deepEqual(Buffer.from(await f.readRows(0, f.rows)), ref, name);
        if (f.rows > 3) {
          const rows = [f.rows - 1, 0, 2];
          const got = Buffer.from(await f.readRowList(rows));
          assert.deepEqual(got, Buffer.concat(rows.map((r) => ref.subarray(r * f.rowBytes, (r + 1) * f.rowBytes))));
        }
      } finally {
        await f.close();
      }
    }
    const big = await openNpzMember(join(dir, 'plain.npz'), 'big.npy');
    assert.deepEqual(big.shape, [20000, 784]);
    await big.close();
  });

  test('deflated and stored members stream exactly in chunks of whole rows', async () => {
    for (const file of ['comp.npz', 'plain.npz']) {
      for (const name of MEMBERS) {
        const ref = await readFile(join(dir, `${name}.ref`));
        const s = await streamNpyRows(join(dir, file), name, 7);
        let max = 0;
        const parts: Uint8Array[] = [];
        for await (const c of s.chunks) {
          assert.equal(c.length % s.rowBytes, 0);
          max = Math.max(max, c.length);
          parts.push(c);
        }
        assert.deepEqual(Buffer.concat(parts), ref, `${file}:${name}`);
        assert.ok(max <= 7 * s.rowBytes);
        if (name === 'big') assert.equal(parts.length, Math.ceil(20000 / 7));
      }
    }
  });

  test('a compressed member cannot be opened in place; a missing member lists the ones there are', async () => {
    const comp = join(dir, 'comp.npz');
    await expectSlimfitError(openNpzMember(comp, 'x'), `${comp}:x.npy`, /compressed.*streamNpyRows|np\.savez/);
    const msg = await expectSlimfitError(openNpzMember(comp, 'labels'), comp, /no array named 'labels'/);
    assert.match(msg, /x, y, xbe, big, scalar/);
  });

  test('stored member CRC check over a sequential read (incl. big-endian member) passes, and catches a flipped byte', async () => {
    const path = join(dir, 'plain.npz');
    for (const m of await listNpz(path)) {
      const f = await openNpzMember(path, m.name);
      const check = memberCrcChecker(path, m);
      const fh = await import('node:fs/promises').then((fs) => fs.open(path, 'r'));
      const head = Buffer.alloc(f.header.dataOffset);
      await fh.read(head, 0, head.length, m.dataOffset);
      await fh.close();
      check.update(head);
      for (let r = 0; r < f.rows; r += 999) check.update(toDiskOrder(await f.readRows(r, Math.min(f.rows, r + 999)), f.header));
      check.finish();
      await f.close();
    }
    const bytes = Buffer.from(await readFile(path));
    const big = (await listNpz(path)).find((m) => m.name === 'big')!;
    bytes[big.dataOffset + 5000] ^= 1;
    const bad = join(dir, 'flipped-stored.npz');
    await writeFile(bad, bytes);
    const s = await streamNpyRows(bad, 'big', 1000);
    await expectSlimfitError(collect(s.chunks), `${bad}:big.npy`, /CRC-32 mismatch/);
  });
});

describe('zip64 past 4 GB', () => {
  test('a member whose data starts beyond 4 GB (sparse file, hand-made zip64 by python) is listed and read in place', async () => {
    const path = join(dir, 'far.npz');
    py(`
import struct, zlib, io, sys, numpy as np
p = sys.argv[1]
PAD = 4_600_000_000
x = (np.arange(1000 * 7, dtype='<i4') * 7919 - 12345).reshape(1000, 7)
b = io.BytesIO(); np.save(b, x); data = b.getvalue()
def local(name, size, crc):
    n = name.encode(); extra = struct.pack('<HHQQ', 1, 16, size, size)
    return struct.pack('<IHHHHHIIIHH', 0x04034b50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(n), len(extra)) + n + extra
def central(name, size, crc, off):
    n = name.encode(); extra = struct.pack('<HHQQQ', 1, 24, size, size, off)
    return struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(n), len(extra), 0, 0, 0, 0, 0xFFFFFFFF) + n + extra
with open(p, 'wb') as f:
    f.write(local('pad.bin', PAD, 0)); f.seek(PAD, 1)   # sparse: nothing written
    off = f.tell(); f.write(local('x.npy', len(data), zlib.crc32(data))); f.write(data)
    cd = f.tell(); f.write(central('pad.bin', PAD, 0, 0) + central('x.npy', len(data), zlib.crc32(data), off)); cdsize = f.tell() - cd
    e64 = f.tell()
    f.write(struct.pack('<IQHHIIQQQQ', 0x06064b50, 44, 45, 45, 0, 0, 2, 2, cdsize, cd))
    f.write(struct.pack('<IIQI', 0x07064b50, 0, e64, 1))
    f.write(struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
import zipfile
with zipfile.ZipFile(p) as z:   # python agrees the structure is valid and the member's CRC holds
    y = np.load(io.BytesIO(z.read('x.npy')))
assert (y == x).all()
open(p + '.ref', 'wb').write(x.tobytes())
`, [path]);
    const members = await listNpz(path);
    assert.deepEqual(members.map((m) => m.name), ['pad.bin', 'x']);
    const x = members[1];
    assert.ok(x.dataOffset > 2 ** 32, `offset ${x.dataOffset}`);
    const ref = await readFile(`${path}.ref`);
    const f = await openNpzMember(path, 'x');
    assert.deepEqual(f.shape, [1000, 7]);
    assert.deepEqual(Buffer.from(await f.readRowList([999, 0, 500])), Buffer.concat([999, 0, 500].map((r) => ref.subarray(r * 28, r * 28 + 28))));
    await f.close();
    const s = await streamNpyRows(path, 'x', 64);
    assert.deepEqual(await collect(s.chunks), ref);
  });
});

describe('broken .npz', () => {
  test('truncated zip (no central directory) is a clear error naming the file', async () => {
    const bytes = await readFile(join(dir, 'comp.npz'));
    const cut = join(dir, 'cut.npz');
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    await expectSlimfitError(listNpz(cut), cut, /cannot read as a \.npz/);
    await expectSlimfitError(streamNpyRows(cut, 'big', 100), cut, /cannot read as a \.npz/);
    const notzip = join(dir, 'notzip.npz');
    await writeFile(notzip, 'hello, definitely not a zip file');
    await expectSlimfitError(listNpz(notzip), notzip, /cannot read as a \.npz/);
    await expectSlimfitError(listNpz(join(dir, 'missing.npz')), join(dir, 'missing.npz'), /cannot open: ENOENT/);
  });

  test('corrupt deflated data in a member: error names file and member, not a crash or hang', async () => {
    const path = join(dir, 'comp.npz');
    const big = (await listNpz(path)).find((m) => m.name === 'big')!;
    const bytes = Buffer.from(await readFile(path));
    for (let i = 0; i < 32; i++) bytes[big.dataOffset + Math.floor(big.compressedSize / 2) + i * 13] ^= 0xa5;
    const bad = join(dir, 'flipped-deflate.npz');
    await writeFile(bad, bytes);
    const s = await streamNpyRows(bad, 'big', 1000);
    await expectSlimfitError(collect(s.chunks), `${bad}:big.npy`, /corrupt compressed data \(zlib|CRC-32 mismatch|ended early/);
    // the other members are unaffected
    const x = await streamNpyRows(bad, 'x', 10);
    assert.deepEqual(await collect(x.chunks), await readFile(join(dir, 'x.ref')));
  });

  test('a member whose .npy header lies about its shape is refused before streaming', async () => {
    py(`
import zipfile, sys, numpy as np, io
hdr = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000000, 784), }"
hdr = hdr + b' ' * (118 - len(hdr)) + b'\\n'
data = b'\\x93NUMPY\\x01\\x00' + len(hdr).to_bytes(2, 'little') + hdr + bytes(784 * 3)
with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('x.npy', data)
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_STORED) as z:
    z.writestr('x.npy', data)
`, [join(dir, 'lying-comp.npz'), join(dir, 'lying-plain.npz')]);
    await expectSlimfitError(streamNpyRows(join(dir, 'lying-comp.npz'), 'x', 100), `${join(dir, 'lying-comp.npz')}:x.npy`, /lying header/);
    await expectSlimfitError(openNpzMember(join(dir, 'lying-plain.npz'), 'x'), `${join(dir, 'lying-plain.npz')}:x.npy`, /lying header/);
  });
});

describe('slimfit writes .npz (streamed, stored members), numpy reads', () => {
  test('crc32Combine equals the CRC of the concatenation', async () => {
    const { crc32 } = await import('node:zlib');
    const { crc32Combine } = await import('../src/formats/npz-write.ts');
    const data = Buffer.alloc(3_000_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    for (const cut of [0, 1, 2, 3, 7, 64, 1000, 65_537, 1_234_567, data.length]) {
      const a = data.subarray(0, cut), b = data.subarray(cut);
      assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(data), `cut ${cut}`);
    }
  });

  for (const forceZip64 of [false, true]) {
    test(`every dtype as a member, rows appended in uneven chunks${forceZip64 ? ', zip64 records forced' : ''}`, async () => {
      const { createNpzWriter } = await import('../src/formats/npz-write.ts');
      const { DTYPES, dtypeSize } = await import('../src/core/dtype.ts');
      const path = join(dir, `ours${forceZip64 ? '64' : ''}.npz`);
      const w = await createNpzWriter(path, { forceZip64 });
      const refs: Record<string, Buffer> = {};
      for (const [k, dtype] of DTYPES.entries()) {
        const rowShape = k % 3 === 0 ? [] : k % 3 === 1 ? [3, 4] : [28, 28, 1];
        const rowBytes = rowShape.reduce((a, b) => a * b, dtypeSize(dtype));
        const rows = 50 + k * 17;
        const data = Buffer.alloc(rows * rowBytes);
        for (let i = 0; i < data.length; i++) data[i] = dtype === 'bool' ? (i * 7 + k) % 3 & 1 : (i * 131 + k * 7) & 0xff;
        refs[dtype] = data;
        const m = await w.beginMember(dtype, dtype, rowShape);
        for (let r = 0, step = 1; r < rows; r += step, step = step * 2 + 1) {
          await m.append(data.subarray(r * rowBytes, Math.min(rows, r + step) * rowBytes));
        }
        assert.equal(m.rows, rows);
        await m.end();
        await writeFile(join(dir, `ours-${dtype}.ref`), data);
      }
      const empty = await w.beginMember('empty_π', 'float32', [2]);
      await empty.end();
      await assert.rejects(readFile(path)); // not there until close
      await w.close();
      const out = JSON.parse(py(`
import numpy as np, sys, json, zipfile
p, d = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(p) as z:
    bad = z.testzip()
    zip64 = [len(i.extra) > 0 for i in z.infolist()]
f = np.load(p)
res = {}
for k in f.files:
    a = f[k]
    ref = open(f'{d}/ours-{k}.ref', 'rb').read() if k != 'empty_π' else b''
    res[k] = [a.dtype.name, list(a.shape), a.tobytes() == ref]
print(json.dumps({'bad': bad, 'zip64': zip64, 'res': res}))
`, [path, dir]));
      assert.equal(out.bad, null);
      assert.deepEqual(out.zip64, new Array(DTYPES.length + 1).fill(forceZip64));
      for (const [k, dtype] of DTYPES.entries()) {
        const rowShape = k % 3 === 0 ? [] : k % 3 === 1 ? [3, 4] : [28, 28, 1];
        assert.deepEqual(out.res[dtype], [dtype, [50 + k * 17, ...rowShape], true], dtype);
      }
      assert.deepEqual(out.res['empty_π'], ['float32', [0, 2], true]);
      // and slimfit's own reader agrees, CRCs included
      const members = await listNpz(path);
      assert.deepEqual(members.map((m) => m.name), [...DTYPES, 'empty_π']);
      const f = await openNpzMember(path, 'float64');
      assert.deepEqual(Buffer.from(await f.readRows(0, f.rows)), refs.float64);
      await f.close();
      const s = await streamNpyRows(path, 'uint8', 10);
      assert.deepEqual(await collect(s.chunks), refs.uint8);
    });
  }

  test('misuse is refused; abort leaves no file', async () => {
    const { createNpzWriter } = await import('../src/formats/npz-write.ts');
    const path = join(dir, 'aborted.npz');
    const w = await createNpzWriter(path);
    const m = await w.beginMember('x', 'uint8', [4]);
    await assert.rejects(m.append(new Uint8Array(6)), RangeError);
    await assert.rejects(w.beginMember('y', 'uint8', []), /still open/);
    await assert.rejects(w.close(), /still open/);
    await m.append(new Uint8Array(8));
    await w.abort();
    await assert.rejects(readFile(path));
    await assert.rejects(readFile(`${path}.tmp-${process.pid}`));
  });
});
