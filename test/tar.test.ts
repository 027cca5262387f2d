// The hand-written tar reader against archives Python's tarfile writes in each format (ustar, GNU, pax): names
// (long, prefixed, non-ASCII), sizes, bytes, non-file entries skipped; damaged and truncated archives are errors.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { TarError, tarMembers, type TarMember } from '../src/formats/tar.ts';
import { needsAddon, py, ROOT, runCli, tempDir, disableAlso } from '../dev/helpers.ts';
import { packArchive, writeNotMnist } from './image-fixture.ts';

/** Write an archive with tarfile: files of seeded bytes (one of 700 kB, larger than a slab's quarter), a long
 * nested name, a non-ASCII name, an empty file, a directory and a symlink; returns {name: sha} of its files. */
function writeTar(out: string, format: 'USTAR' | 'GNU' | 'PAX', mode: string): Record<string, string> {
  const listing = py(`
import hashlib, io, sys, tarfile
out, fmt, mode = sys.argv[1:4]
deep = 'notMNIST_large/' + 'sub' * 30 + '/A'
names = ['root/A/a.png', 'root/B/' + 'b' * 90 + '.png', deep + '/c.png', 'root/A/empty.png', 'root/big.bin']
if fmt != 'USTAR': names.append('root/Ä/ü.png')
kw = {'format': getattr(tarfile, fmt + '_FORMAT')}
if fmt == 'PAX': kw['pax_headers'] = {'comment': 'a global header'}
seen = {}
with tarfile.open(out, mode, **kw) as t:
    d = tarfile.TarInfo('root/A'); d.type = tarfile.DIRTYPE; t.addfile(d)
    for i, n in enumerate(names):
        data = b'' if 'empty' in n else bytes((k * 131 + i * 7) % 251 for k in range(700000 if n.endswith('.bin') else 300 + 37 * i))
        ti = tarfile.TarInfo(n); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
        seen[n] = hashlib.sha256(data).hexdigest()
    s = tarfile.TarInfo('root/link.png'); s.type = tarfile.SYMTYPE; s.linkname = 'A/a.png'; t.addfile(s)
for n, h in seen.items(): print(n + '\\t' + h)
`, [out, format, mode]);
  return Object.fromEntries(listing.trim().split('\n').map((l) => l.split('\t')));
}

async function readAll(path: string, gz: boolean, want = (_n: string, _s: number) => true): Promise<TarMember[]> {
  const out: TarMember[] = [];
  for await (const arr of tarMembers(path, gz, want)) for (const m of arr) out.push({ ...m, data: m.data?.slice() });
  return out;
}

describe('tar reader', () => {
  const tmp = tempDir();
  after(tmp.cleanup);

  for (const format of ['USTAR', 'GNU', 'PAX'] as const) {
    for (const gz of [false, true]) {
      it(`${format} ${gz ? '.tar.gz' : '.tar'}: every regular file with its exact name, size and bytes, in archive order`, async () => {
        const out = join(tmp.dir, `${format}.tar${gz ? '.gz' : ''}`);
        const expected = writeTar(out, format, gz ? 'w:gz' : 'w');
        const got = await readAll(out, gz);
        assert.deepEqual(got.map((m) => m.name), Object.keys(expected));
        for (const m of got) {
          assert.equal(m.data!.length, m.size, m.name);
          assert.equal(createHash('sha256').update(m.data!).digest('hex'), expected[m.name], m.name);
        }
        // Members not wanted are skipped without their bytes.
        const names = await readAll(out, gz, (n) => n.endsWith('a.png'));
        assert.deepEqual(names.filter((m) => m.data).map((m) => m.name), ['root/A/a.png']);
        assert.equal(names.length, got.length);
      });
    }
  }

  it('a damaged header is an error at its byte; a truncated archive names the member it ends in', async () => {
    const tar = join(tmp.dir, 'ok.tar');
    writeTar(tar, 'USTAR', 'w');
    const bytes = readFileSync(tar);
    // The second header follows the directory's header (512) and a.png's header and data (512 + 300 -> 1024).
    const bad = Buffer.from(bytes);
    bad[512 + 1024 + 10] ^= 0xff;
    const badPath = join(tmp.dir, 'bad.tar');
    writeFileSync(badPath, bad);
    await assert.rejects(readAll(badPath, false), (e: unknown) => e instanceof TarError && e.offset === 1536 && e.after === 'root/A/a.png' && /bad header checksum at byte 1536/.test(e.message));
    const cut = join(tmp.dir, 'cut.tar');
    writeFileSync(cut, bytes.subarray(0, 512 + 512 + 100));
    await assert.rejects(readAll(cut, false), /the tar ends inside member root\/A\/a\.png/);
    const cutGz = join(tmp.dir, 'cut.tar.gz');
    const gz = gzipSync(bytes);
    writeFileSync(cutGz, gz.subarray(0, gz.length >> 1));
    await assert.rejects(readAll(cutGz, true), (e: unknown) => e instanceof TarError && /unexpected end of file/.test((e as Error).message));
  });

  it('the native gunzip and the node:zlib fallback (SLIMFIT_DISABLE=png) give the same samples from a .tar.gz', { skip: needsAddon('slimfit_png') }, async () => {
    const fx = writeNotMnist(join(tmp.dir, 'tree'), 30);
    const tgz = join(tmp.dir, 'tree.tar.gz');
    packArchive(fx.train.dir, tgz, 'notMNIST_small');
    const script = join(ROOT, 'test', 'drain-source.mjs');
    const [native, fallback] = await Promise.all([runCli([tgz, '{}'], { script }), runCli([tgz, '{}'], { script, env: disableAlso('png') })]);
    for (const r of [native, fallback]) assert.equal(r.code, 0, r.stderr);
    assert.match(native.stdout, new RegExp(`^samples=${fx.train.samples.length} skipped=3 sum=\\d+$`, 'm'));
    assert.equal(native.stdout, fallback.stdout);
  });

  it('reads on after a gzip member boundary (a .tar.gz made of concatenated gzip streams)', async () => {
    const tar = join(tmp.dir, 'two.tar');
    const expected = writeTar(tar, 'GNU', 'w');
    const bytes = readFileSync(tar);
    const cutAt = 512 * 7;
    const twoMembers = join(tmp.dir, 'two.tar.gz');
    writeFileSync(twoMembers, Buffer.concat([gzipSync(bytes.subarray(0, cutAt)), gzipSync(bytes.subarray(cutAt))]));
    const got = await readAll(twoMembers, true);
    assert.deepEqual(got.map((m) => m.name), Object.keys(expected));
  });
});
