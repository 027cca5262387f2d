// Hostile inputs and hostile environments, each through the real CLI (`runCli`): every case makes its own fixture in
// a temp dir and checks the exit code, that the one error line names the file and the place, that there is no stack
// trace or library noise, and that no output was left behind or replaced. Test names carry the verdict:
// "clear error", "skipped and listed" or "correct".
//
// Not testable here, and why: EACCES from file permissions (the suite runs as root, which chmod does not stop; the
// sentence for EACCES is checked on a synthetic error instead); ENOSPC/EROFS need `mount -t tmpfs` (root): those
// cases skip, saying so, when the mount is refused. HDF5 external storage and virtual datasets can only be written
// by h5py (h5wasm cannot make them): those two skip, saying so, when /usr/bin/python3 has no h5py; the external-link
// case is written with h5wasm and always runs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { encode } from 'fast-png';
import h5wasm from 'h5wasm/node';
import { describeSystemError } from '../src/core/errors.ts';
import { py, runCli, tempDir, type RunResult, disableAlso } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-hostile-');
let n = 0;
/** A fresh folder for one case. */
function caseDir(): string {
  const d = join(tmp.dir, `c${n++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

/** numpy/scipy/archive fixtures: python code with `d` = the case folder. */
function pyIn(d: string, code: string): void {
  py(`import sys, os, io, gzip, struct, zipfile, tarfile\nimport numpy as np\nd = sys.argv[1]\n${code}`, [d]);
}

function png(w: number, h: number, v: number): Uint8Array {
  return encode({ width: w, height: h, data: new Uint8Array(w * h).fill(v), channels: 1, depth: 8 });
}

/** A small valid x/y .npy pair in `d`. */
function npyPair(d: string): void {
  pyIn(d, `np.save(d + '/x.npy', np.arange(40, dtype=np.float32).reshape(10, 4)); np.save(d + '/y.npy', np.arange(10) % 2)`);
}

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * Assert a clean failure: exit `code`, exactly one `slimfit: error:` line matching each of `says`, no stack trace or
 * HDF5 noise, and `out` (when given) not created.
 */
function expectError(r: RunResult, code: number, says: RegExp[], out?: string): string {
  assert.equal(r.code, code, `exit code ${r.code}, stderr:\n${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l && !l.startsWith('slimfit-peak-rss-bytes='));
  const errors = lines.filter((l) => l.startsWith('slimfit: error:'));
  assert.equal(errors.length, 1, `one error line expected:\n${r.stderr}`);
  for (const re of says) assert.match(errors[0], re);
  assert.doesNotMatch(r.stderr, /^\s+at |HDF5-DIAG|TypeError|RangeError/m, 'no stack trace or library noise');
  assert.doesNotMatch(errors[0], /[^\x20-\x7e]/, 'the message is plain text');
  if (out) {
    assert.equal(existsSync(out), false, `${out} must not exist`);
    const parent = join(out, '..');
    if (existsSync(parent)) assert.deepEqual(readdirSync(parent).filter((e) => e.includes('.slimfit-tmp-')), [], 'no temp folder left');
  }
  return errors[0];
}

/** The usage error of commander or of a flag check: exit 2, names the flag. */
function expectUsage(r: RunResult, flag: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, flag);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
}

function manifestOf(dir: string): { splits: Record<string, { samples: number; nonFinite?: number }>; stats?: { mean: number[] }; classNames?: string[]; provenance: { skipped?: Array<{ path: string; reason: string }> } } {
  return JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8'));
}

/** Try mounting a tmpfs (root only); returns an unmount function, or null when mounting is refused here. */
function tmpfs(at: string, opts: string): (() => void) | null {
  mkdirSync(at, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', at]);
  if (r.status !== 0) return null;
  return () => { spawnSync('umount', [at]); };
}

const hasH5py = spawnSync('/usr/bin/python3', ['-c', 'import h5py']).status === 0;

describe('hostile inputs: bounded work (mechanism 6)', () => {
  test('clear error: --resize 30000x30000 is refused before any work (usage, exit 2)', async () => {
    const d = caseDir();
    mkdirSync(join(d, 'tree', 'a'), { recursive: true });
    writeFileSync(join(d, 'tree', 'a', '1.png'), png(4, 4, 1));
    const r = await runCli(['convert', join(d, 'tree'), join(d, 'out'), '--resize', '30000x30000']);
    expectUsage(r, /--resize 30000x30000 asks for 900000000 pixels per image, more than the 16777216/);
    assert.equal(existsSync(join(d, 'out')), false);
    assert.ok(r.peakRss < 300e6, `peak RSS ${r.peakRss}`);
  });

  test('clear error: an HDF5 external link to another local file is refused, not followed', async () => {
    const d = caseDir();
    await h5wasm.ready;
    let f = new h5wasm.File(join(d, 'other.h5'), 'w');
    f.create_dataset({ name: 'secret', data: Float32Array.from({ length: 12 }, (_, i) => i), shape: [3, 4] });
    f.close();
    f = new h5wasm.File(join(d, 'link.h5'), 'w');
    f.create_external_link(join(d, 'other.h5'), '/secret', 'x');
    f.create_dataset({ name: 'y', data: BigInt64Array.from([0n, 1n, 0n]), shape: [3] });
    f.close();
    const r = await runCli(['convert', join(d, 'link.h5'), join(d, 'out')]);
    expectError(r, 1, [/link\.h5: the data refers to another file/, /other\.h5/, /reads only the file it was given/], join(d, 'out'));
  });

  test('clear error: HDF5 external storage pointing at a local file is refused (no byte of it in a shard)', { skip: hasH5py ? false : 'needs h5py in /usr/bin/python3 (h5wasm cannot write external storage)' }, async () => {
    const d = caseDir();
    writeFileSync(join(d, 'secret.bin'), Buffer.from('root:x:0:0:root:/root:/bin/bash\n'.repeat(8)));
    const r0 = spawnSync('/usr/bin/python3', ['-c', `
import h5py, numpy as np, sys
d = sys.argv[1]
with h5py.File(d + '/ext.h5', 'w') as f:
    f.create_dataset('x', shape=(8, 16), dtype='u1', external=[(d + '/secret.bin', 0, 128)])
    f.create_dataset('y', data=np.arange(8) % 2)
`, d]);
    assert.equal(r0.status, 0, String(r0.stderr));
    const r = await runCli(['convert', join(d, 'ext.h5'), join(d, 'out')]);
    expectError(r, 1, [/ext\.h5: the data refers to another file/, /secret\.bin/], join(d, 'out'));
  });

  test('clear error: an HDF5 virtual dataset made of another file is refused', { skip: hasH5py ? false : 'needs h5py in /usr/bin/python3 (h5wasm cannot write virtual datasets)' }, async () => {
    const d = caseDir();
    const r0 = spawnSync('/usr/bin/python3', ['-c', `
import h5py, numpy as np, sys
d = sys.argv[1]
with h5py.File(d + '/src.h5', 'w') as f: f.create_dataset('data', data=np.arange(128, dtype='u1').reshape(8, 16))
lay = h5py.VirtualLayout(shape=(8, 16), dtype='u1')
lay[:] = h5py.VirtualSource(d + '/src.h5', 'data', shape=(8, 16))
with h5py.File(d + '/vds.h5', 'w') as f:
    f.create_virtual_dataset('x', lay)
    f.create_dataset('y', data=np.arange(8) % 2)
`, d]);
    assert.equal(r0.status, 0, String(r0.stderr));
    const r = await runCli(['convert', join(d, 'vds.h5'), join(d, 'out')]);
    expectError(r, 1, [/vds\.h5: dataset \/x is a virtual dataset made of other files/, /src\.h5/], join(d, 'out'));
  });

  test('skipped and listed: tar.gz members named ../x/a.png, /etc/a.png and ../a.png never become classes', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'p.png'), png(4, 4, 9));
    pyIn(d, `
data = open(d + '/p.png', 'rb').read()
with tarfile.open(d + '/evil.tar.gz', 'w:gz') as t:
    for name in ['imgs/a/1.png', 'imgs/b/1.png', '../x/evil.png', '/etc/evil.png', '../evil.png']:
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
`);
    const r = await runCli(['convert', '-q', join(d, 'evil.tar.gz'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    const m = manifestOf(join(d, 'out'));
    assert.deepEqual(m.classNames, ['a', 'b']);
    assert.equal(m.splits.train.samples, 2);
    assert.deepEqual(m.provenance.skipped!.map((s) => s.path).sort(), ['../evil.png', '../x/evil.png', '/etc/evil.png']);
    for (const s of m.provenance.skipped!) assert.match(s.reason, /unsafe path/);
  });

  test('skipped and listed: zip members with absolute and ../ names (yauzl would refuse the whole zip)', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'p.png'), png(4, 4, 7));
    pyIn(d, `
data = open(d + '/p.png', 'rb').read()
with zipfile.ZipFile(d + '/evil.zip', 'w') as z:
    for name in ['imgs/a/1.png', 'imgs/b/1.png', '../x/evil.png', '/etc/evil.png', 'top.png']:
        z.writestr(zipfile.ZipInfo(name), data)
`);
    const r = await runCli(['convert', '-q', join(d, 'evil.zip'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    const m = manifestOf(join(d, 'out'));
    assert.deepEqual(m.classNames, ['a', 'b']);
    const skipped = Object.fromEntries(m.provenance.skipped!.map((s) => [s.path, s.reason]));
    assert.match(skipped['../x/evil.png'], /unsafe path/);
    assert.match(skipped['/etc/evil.png'], /unsafe path/);
    assert.match(skipped['top.png'], /not in a class folder/);
    assert.match(r.stdout, /skipped inputs: 3/);
  });

  test('skipped and listed: images at a tree\'s root and below a class folder\'s sub-folder', async () => {
    const d = caseDir();
    for (const p of ['tree/a/1.png', 'tree/b/1.png', 'tree/stray.png', 'tree/a/deeper/x.png', 'tree/a/deeper/more/y.png']) {
      mkdirSync(join(d, p, '..'), { recursive: true });
      writeFileSync(join(d, p), png(4, 4, p.length));
    }
    const r = await runCli(['convert', '-q', join(d, 'tree'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    const m = manifestOf(join(d, 'out'));
    assert.equal(m.splits.train.samples, 2);
    const skipped = Object.fromEntries(m.provenance.skipped!.map((s) => [s.path.slice(d.length + 1), s.reason]));
    assert.match(skipped['tree/stray.png'], /not in a class folder/);
    assert.match(skipped['tree/a/deeper/x.png'], /sub-folder of class folder a/);
    assert.match(skipped['tree/a/deeper/more/y.png'], /sub-folder of class folder a/);
  });

  test('clear error: --resize 0x5 is a usage error (exit 2)', async () => {
    const d = caseDir();
    const r = await runCli(['convert', d, join(caseDir(), 'out'), '--resize', '0x5']);
    expectUsage(r, /cannot read --resize 0x5/);
  });
});

describe('hostile inputs: nothing converted is an error (mechanism 7)', () => {
  const csvRows = ['label,a,b', '1,2,3', '0,4.5,5', '1,-6,7e2'];
  const lf = csvRows.join('\n') + '\n';

  test('correct: a CSV with CR-only line ends gives the same store as with LF', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'lf.csv'), lf);
    writeFileSync(join(d, 'cr.csv'), csvRows.join('\r') + '\r');
    for (const f of ['lf', 'cr']) assert.equal((await runCli(['convert', '-q', join(d, `${f}.csv`), join(d, f)])).code, 0);
    assert.equal(manifestOf(join(d, 'cr')).splits.train.samples, 3);
    assert.equal(sha(join(d, 'cr', 'train', 'x-00000.npy')), sha(join(d, 'lf', 'train', 'x-00000.npy')));
    assert.equal(sha(join(d, 'cr', 'train', 'y-00000.npy')), sha(join(d, 'lf', 'train', 'y-00000.npy')));
  });

  test('correct: CRLF lines and CR-only lines give the same store with the native CSV loop and the JS scanner', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'crlf.csv'), csvRows.join('\r\n') + '\r\n');
    writeFileSync(join(d, 'cr.csv'), csvRows.join('\r') + '\r');
    const shas: string[] = [];
    for (const f of ['crlf', 'cr']) {
      for (const native of ['on', 'off']) {
        const out = join(d, `${f}-${native}`);
        const r = await runCli(['convert', '-q', join(d, `${f}.csv`), out], { env: native === 'off' ? disableAlso('csv') : {} });
        assert.equal(r.code, 0, r.stderr);
        shas.push(sha(join(out, 'train', 'x-00000.npy')) + sha(join(out, 'train', 'y-00000.npy')));
      }
    }
    assert.equal(new Set(shas).size, 1, 'all four stores are byte-identical');
  });

  test('correct: a UTF-8 BOM before the header does not hide --label-col label', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'bom.csv'), '\ufeff' + ['a,label,b', '2,1,3', '4,0,5'].join('\r\n') + '\r\n');
    const r = await runCli(['convert', '-q', join(d, 'bom.csv'), join(d, 'out'), '--label-col', 'label']);
    assert.equal(r.code, 0, r.stderr);
    const m = manifestOf(join(d, 'out'));
    assert.equal(m.splits.train.samples, 2);
  });

  test('correct: a BOM before numeric data (no header) does not cost the first line', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'bom.csv'), '\ufeff1,2,3\n0,4,5\n');
    const r = await runCli(['convert', '-q', join(d, 'bom.csv'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(manifestOf(join(d, 'out')).splits.train.samples, 2);
    assert.doesNotMatch(r.stdout, /skipped/);
  });

  test('skipped and listed: "17e" (an exponent without digits) after other lines, native loop and JS scanner alike, no hang', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'e.csv'), 'label,a,b,c\n0,1,2,3\n1,2,3,4\n0,152,17e,21\n1,5,6,7\n');
    for (const native of ['on', 'off']) {
      const out = join(d, `out-${native}`);
      const r = await runCli(['convert', '-q', join(d, 'e.csv'), out], { env: native === 'off' ? disableAlso('csv') : {}, timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const m = manifestOf(out);
      assert.equal(m.splits.train.samples, 3);
      assert.deepEqual(m.provenance.skipped, [{ path: `${join(d, 'e.csv')}:4`, reason: 'field 3 is not a number: "17e"' }]);
    }
  });

  test('clear error: a header-only CSV yields no samples (exit 1, no store)', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'h.csv'), 'label,a,b\n');
    const r = await runCli(['convert', join(d, 'h.csv'), join(d, 'out')]);
    expectError(r, 1, [/h\.csv: no samples found in this input/], join(d, 'out'));
  });

  test('clear error: a CSV whose every line is malformed names the first skipped line', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'm.csv'), 'a,b\nx,y\nz,w\n');
    const r = await runCli(['convert', join(d, 'm.csv'), join(d, 'out')]);
    expectError(r, 1, [/m\.csv: no samples found/, /all 2 of its entries were skipped/, /m\.csv:2: field 1 is not a number/], join(d, 'out'));
  });

  test('clear error: an empty (0 x 4) .npy pair yields no samples', async () => {
    const d = caseDir();
    pyIn(d, `np.save(d + '/x.npy', np.zeros((0, 4), np.float32)); np.save(d + '/y.npy', np.zeros(0, np.int64))`);
    const r = await runCli(['convert', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out')]);
    expectError(r, 1, [/x\.npy: no samples found in this input/], join(d, 'out'));
  });

  test('clear error: an empty (0-byte) CSV', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'e.csv'), '');
    const r = await runCli(['convert', join(d, 'e.csv'), join(d, 'out')]);
    expectError(r, 1, [/e\.csv: no data lines found/], join(d, 'out'));
  });

  test('clear error: an image tree whose only image is not an image', async () => {
    const d = caseDir();
    mkdirSync(join(d, 'tree', 'a'), { recursive: true });
    writeFileSync(join(d, 'tree', 'a', '1.png'), 'not a png\n');
    const r = await runCli(['convert', join(d, 'tree'), join(d, 'out')]);
    expectError(r, 1, [/tree: none of the 1 image files could be decoded/, /1\.png/], join(d, 'out'));
  });

  test('clear error: a tar.gz without images in class folders', async () => {
    const d = caseDir();
    pyIn(d, `
with tarfile.open(d + '/t.tar.gz', 'w:gz') as t:
    data = b'hello'; ti = tarfile.TarInfo('docs/readme.txt'); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
`);
    const r = await runCli(['convert', join(d, 't.tar.gz'), join(d, 'out')]);
    expectError(r, 1, [/t\.tar\.gz: no image files in class folders/], join(d, 'out'));
  });

  test('clear error: a failing conversion with --force leaves the existing store as it was', async () => {
    const d = caseDir();
    npyPair(d);
    assert.equal((await runCli(['convert', '-q', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out')])).code, 0);
    const before = sha(join(d, 'out', 'dataset.json'));
    writeFileSync(join(d, 'h.csv'), 'label,a\n');
    const r = await runCli(['convert', '--force', join(d, 'h.csv'), join(d, 'out')]);
    expectError(r, 1, [/h\.csv: no samples found/]);
    assert.equal(sha(join(d, 'out', 'dataset.json')), before);
    assert.deepEqual(readdirSync(d).filter((e) => e.includes('.slimfit-tmp-')), []);
  });
});

describe('hostile inputs: non-finite values (mechanism 8)', () => {
  test('correct: NaN and inf in x are counted, warned about, recorded and left out of the stats', async () => {
    const d = caseDir();
    pyIn(d, `
x = np.arange(40, dtype=np.float32).reshape(10, 4); x[3, 1] = np.nan; x[5, 0] = np.inf; x[6, 2] = -np.inf
np.save(d + '/x.npy', x); np.save(d + '/y.npy', np.arange(10) % 2)
`);
    const r = await runCli(['convert', '-q', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /slimfit: warning: .*out: 3 value\(s\) of x in split train are NaN or infinite/);
    const m = manifestOf(join(d, 'out'));
    assert.equal(m.splits.train.nonFinite, 3);
    const finite = Array.from({ length: 40 }, (_, i) => i).filter((i) => ![13, 20, 26].includes(i));
    assert.ok(Math.abs(m.stats!.mean[0] - finite.reduce((a, b) => a + b, 0) / finite.length) < 1e-9);
    const info = await runCli(['info', join(d, 'out')]);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /NaN or infinite x values \(left out of the stats\): train 3/);
  });

  test('clear error: --strict refuses NaN and names the sample', async () => {
    const d = caseDir();
    pyIn(d, `
x = np.ones((10, 4), np.float64); x[7, 3] = np.nan
np.save(d + '/x.npy', x); np.save(d + '/y.npy', np.arange(10) % 2)
`);
    const r = await runCli(['convert', '--strict', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out')]);
    expectError(r, 1, [/x\.npy: sample 7 holds NaN or infinity/, /--strict/], join(d, 'out'));
  });

  test('correct: nan and inf in a CSV are counted like the binary formats', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'n.csv'), '1,nan,2\n0,inf,3\n1,4,5\n');
    const r = await runCli(['convert', '-q', join(d, 'n.csv'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(manifestOf(join(d, 'out')).splits.train.nonFinite, 2);
  });

  test('correct: info on a store whose stats hold null (NaN written as JSON) prints n/a instead of throwing', async () => {
    const d = caseDir();
    npyPair(d);
    assert.equal((await runCli(['convert', '-q', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out')])).code, 0);
    const m = JSON.parse(readFileSync(join(d, 'out', 'dataset.json'), 'utf8'));
    m.stats.mean = [null]; m.stats.std = [null]; m.stats.min = null; m.stats.max = null;
    writeFileSync(join(d, 'out', 'dataset.json'), JSON.stringify(m));
    const r = await runCli(['info', join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /stats \(train\): mean n\/a {2}std n\/a {2}min n\/a {2}max n\/a/);
  });
});

describe('hostile environments: every OS error is a sentence (mechanism 9)', () => {
  test('clear error: OUT under a regular file (ENOTDIR) names OUT', async () => {
    const d = caseDir();
    npyPair(d);
    writeFileSync(join(d, 'afile'), 'x');
    const out = join(d, 'afile', 'out');
    const r = await runCli(['convert', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), out]);
    expectError(r, 1, [new RegExp(`${out.replace(/[/.]/g, '\\$&')}: \\w+ failed: a part of this path is a file, not a folder \\(ENOTDIR\\)`)]);
    assert.equal(readFileSync(join(d, 'afile'), 'utf8'), 'x');
  });

  test('clear error: a full disk (ENOSPC, a 64 kB tmpfs) names OUT and leaves nothing on it', async (t) => {
    const d = caseDir();
    const unmount = tmpfs(join(d, 'small'), 'size=64k');
    if (!unmount) { t.skip('mount -t tmpfs is refused here (needs root): ENOSPC is not tested'); return; }
    try {
      pyIn(d, `np.save(d + '/x.npy', np.random.default_rng(0).random((1000, 100), np.float32)); np.save(d + '/y.npy', np.arange(1000) % 3)`);
      const out = join(d, 'small', 'out');
      const r = await runCli(['convert', '-q', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), out]);
      expectError(r, 1, [/small\/out: write failed: no space left on the device \(ENOSPC\)/, /another disk/], out);
      assert.deepEqual(readdirSync(join(d, 'small')), []);
    } finally { unmount(); }
  });

  test('clear error: export onto a full disk (ENOSPC) names the .npz and leaves no partial file', async (t) => {
    const d = caseDir();
    pyIn(d, `np.save(d + '/x.npy', np.random.default_rng(1).random((1000, 100), np.float32)); np.save(d + '/y.npy', np.arange(1000) % 3)`);
    assert.equal((await runCli(['convert', '-q', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'store')])).code, 0);
    const unmount = tmpfs(join(d, 'small'), 'size=64k');
    if (!unmount) { t.skip('mount -t tmpfs is refused here (needs root): ENOSPC is not tested'); return; }
    try {
      const out = join(d, 'small', 'e.npz');
      const r = await runCli(['export', '-q', join(d, 'store'), '--split', 'train', '--out', out]);
      expectError(r, 1, [/small\/e\.npz: write failed: no space left on the device \(ENOSPC\)/], out);
      assert.deepEqual(readdirSync(join(d, 'small')), []);
    } finally { unmount(); }
  });

  test('clear error: a read-only file system (EROFS) names OUT', async (t) => {
    const d = caseDir();
    const unmount = tmpfs(join(d, 'ro'), 'ro,size=64k');
    if (!unmount) { t.skip('mount -t tmpfs is refused here (needs root): EROFS is not tested'); return; }
    try {
      npyPair(d);
      const out = join(d, 'ro', 'out');
      const r = await runCli(['convert', '-q', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), out]);
      expectError(r, 1, [/ro\/out: \w+ failed: the file system is read-only \(EROFS\)/], out);
    } finally { unmount(); }
  });

  test('clear error: a FIFO given as CSV is refused instead of blocking', async () => {
    const d = caseDir();
    assert.equal(spawnSync('mkfifo', [join(d, 'p.csv')]).status, 0);
    const r = await runCli(['convert', join(d, 'p.csv'), join(d, 'out')], { timeoutMs: 30_000 });
    expectError(r, 1, [/p\.csv: input is a pipe \(FIFO\), not a regular file/, /copy it to a regular file/], join(d, 'out'));
  });

  test('clear error: a folder given as --x (EISDIR) names it', async () => {
    const d = caseDir();
    npyPair(d);
    mkdirSync(join(d, 'adir'));
    const r = await runCli(['convert', '--x', join(d, 'adir'), '--y', join(d, 'y.npy'), join(d, 'out')]);
    expectError(r, 1, [/adir: this is a folder; --x and --y name files/], join(d, 'out'));
  });

  test('clear error: --workers -3 is a usage error (exit 2), not a stack', async () => {
    const d = caseDir();
    npyPair(d);
    const r = await runCli(['convert', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out'), '--workers', '-3']);
    expectUsage(r, /--workers must be a whole number >= 0, got '-3'/);
    assert.equal(existsSync(join(d, 'out')), false);
  });

  test('clear error: an unknown option is commander\'s usage error with exit 2', async () => {
    const r = await runCli(['convert', '--bogus', 'a', 'b']);
    expectUsage(r, /unknown option '--bogus'/);
  });

  test('clear error: split fractions that do not add up are a usage error (exit 2)', async () => {
    const d = caseDir();
    npyPair(d);
    const r = await runCli(['convert', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out'), '--split', 'train=0.5']);
    expectUsage(r, /split fractions add up to 0\.5, not 1/);
  });

  test('correct: --help and --version exit 0', async () => {
    assert.equal((await runCli(['--help'])).code, 0);
    const v = await runCli(['--version']);
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
  });

  test('correct: the EACCES sentence names the path and the fix (root ignores permission bits, so no real EACCES here)', () => {
    const e = Object.assign(new Error("EACCES: permission denied, open '/data/x.npy'"), { code: 'EACCES', syscall: 'open', path: '/data/x.npy' });
    assert.equal(describeSystemError(e), '/data/x.npy: open failed: permission denied (EACCES). Check the permissions of the file and the folders above it');
  });

  test('correct: each kind of error maps to its line and exit code (explain in src/cli/index.ts)', async () => {
    const { explain } = await import('../src/cli/index.ts');
    const { CommanderError } = await import('commander');
    const { SlimfitError, UsageError } = await import('../src/core/errors.ts');
    assert.deepEqual(explain(new CommanderError(1, 'commander.unknownOption', 'x')), ['', 2]);
    assert.deepEqual(explain(new CommanderError(0, 'commander.helpDisplayed', 'x')), ['', 0]);
    assert.deepEqual(explain(new UsageError('bad flag')), ['error: bad flag', 2]);
    assert.deepEqual(explain(new SlimfitError('bad data', { file: 'f.csv' })), ['error: f.csv: bad data', 1]);
    const sys = Object.assign(new Error('ENOSPC'), { code: 'ENOSPC', syscall: 'write', path: '/o/x.npy' });
    assert.deepEqual(explain(sys), ['error: /o/x.npy: write failed: no space left on the device (ENOSPC). Free some space or write the output to another disk', 1]);
    const [line, code] = explain(new TypeError("Cannot read properties of undefined (reading 'x')"));
    assert.equal(code, 70);
    assert.match(line, /^internal error: TypeError: Cannot read properties of undefined \(reading 'x'\) \(at .*hostile-input\.test\.ts:\d+:\d+\)+\. This is a bug in slimfit/);
    assert.doesNotMatch(line, /\n/);
  });

  test('correct: under mpirun an error line says which rank printed it, unless every rank agreed on it (errorPrefix)', async () => {
    const { errorPrefix } = await import('../src/cli/index.ts');
    const rank = (r: number, size: number, together: boolean) => ({ rank: r, size, stoppedTogether: () => together });
    assert.equal(errorPrefix(null), 'slimfit: ');
    assert.equal(errorPrefix(), 'slimfit: ', 'no MPI world in this process');
    assert.equal(errorPrefix(rank(0, 1, false)), 'slimfit: ', 'one rank');
    assert.equal(errorPrefix(rank(1, 2, false)), 'slimfit (rank 1 of 2): ');
    assert.equal(errorPrefix(rank(1, 2, true)), 'slimfit: ', 'an agreed error is the same line on every rank');
  });

  test('clear error: verify of a folder that is not a store', async () => {
    const d = caseDir();
    const r = await runCli(['verify', d]);
    expectError(r, 1, [new RegExp(`${d.replace(/[/.]/g, '\\$&')}: no dataset\\.json found`)]);
  });
});

describe('hostile inputs: say what is true (mechanism 10)', () => {
  test('correct: a .npy header with shape given twice is read as numpy reads it (the last one)', async () => {
    const d = caseDir();
    pyIn(d, `
a = np.arange(12, dtype=np.float32).reshape(3, 4)
np.save(d + '/x.npy', a)
b = open(d + '/x.npy', 'rb').read()
hl = int.from_bytes(b[8:10], 'little'); h = b[10:10 + hl].decode('latin1')
h2 = h.replace("'shape': (3, 4), }", "'shape': (3, 4), 'shape': (4, 3), }").rstrip()
h2 = h2 + ' ' * (hl - len(h2) - 1) + '\\n'
open(d + '/dup.npy', 'wb').write(b[:10] + h2.encode('latin1') + b[10 + hl:])
assert np.load(d + '/dup.npy').shape == (4, 3)
np.save(d + '/y.npy', np.arange(4) % 2)
`);
    const r = await runCli(['convert', '-q', '--x', join(d, 'dup.npy'), '--y', join(d, 'y.npy'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(manifestOf(join(d, 'out')).splits.train.samples, 4);
    const back = py(`import numpy as np, sys; print(np.load(sys.argv[1] + '/out/train/x-00000.npy').tolist() == np.load(sys.argv[1] + '/dup.npy').tolist())`, [d]);
    assert.equal(back.trim(), 'True');
  });

  test('clear error: a .npz with two members named x.npy', async () => {
    const d = caseDir();
    pyIn(d, `
bx = io.BytesIO(); np.save(bx, np.zeros((3, 2), np.float32))
by = io.BytesIO(); np.save(by, np.arange(3))
import warnings; warnings.simplefilter('ignore')
with zipfile.ZipFile(d + '/dup.npz', 'w') as z:
    z.writestr('x.npy', bx.getvalue()); z.writestr('x.npy', bx.getvalue()); z.writestr('y.npy', by.getvalue())
`);
    const r = await runCli(['convert', join(d, 'dup.npz'), join(d, 'out')]);
    expectError(r, 1, [/dup\.npz: the \.npz holds two members named x\.npy/, /numpy would read the last one/], join(d, 'out'));
  });

  test('clear error: a corrupt deflate stream in a .npz is called corrupt, with the member, and no binary noise', async () => {
    const d = caseDir();
    pyIn(d, `
np.savez_compressed(d + '/c.npz', x=np.arange(4000, dtype=np.float32).reshape(1000, 4), y=np.arange(1000) % 2)
b = bytearray(open(d + '/c.npz', 'rb').read())
z = zipfile.ZipFile(d + '/c.npz'); info = z.getinfo('x.npy')
h = info.header_offset; start = h + 30 + int.from_bytes(b[h + 26:h + 28], 'little') + int.from_bytes(b[h + 28:h + 30], 'little')
for k in range(8): b[start + 2 + k] ^= 0xA5
open(d + '/c.npz', 'wb').write(bytes(b))
`);
    const r = await runCli(['convert', join(d, 'c.npz'), join(d, 'out')]);
    expectError(r, 1, [/c\.npz/, /x\.npy/, /corrupt/], join(d, 'out'));
  });

  test('clear error: a stored .npz member with a damaged header is called corrupt (CRC-32), not a format question', async () => {
    const d = caseDir();
    pyIn(d, `
np.savez(d + '/s.npz', x=np.arange(40, dtype=np.float32).reshape(10, 4), y=np.arange(10) % 2)
b = bytearray(open(d + '/s.npz', 'rb').read())
z = zipfile.ZipFile(d + '/s.npz'); info = z.getinfo('x.npy')
h = info.header_offset; start = h + 30 + int.from_bytes(b[h + 26:h + 28], 'little') + int.from_bytes(b[h + 28:h + 30], 'little')
b[start + 12] = 0xFF; b[start + 13] = 0x00
open(d + '/s.npz', 'wb').write(bytes(b))
`);
    const r = await runCli(['convert', join(d, 's.npz'), join(d, 'out')]);
    expectError(r, 1, [/s\.npz: member x\.npy is corrupt: its bytes do not match the CRC-32/], join(d, 'out'));
  });

  test('clear error: an encrypted .npz member says encrypted', async () => {
    const d = caseDir();
    pyIn(d, `
np.savez(d + '/e.npz', x=np.zeros((3, 2), np.float32), y=np.arange(3))
b = bytearray(open(d + '/e.npz', 'rb').read())
i = 0
while True:
    i = b.find(b'PK\\x01\\x02', i)
    if i < 0: break
    b[i + 8] |= 1; i += 4
open(d + '/e.npz', 'wb').write(bytes(b))
`);
    const r = await runCli(['convert', join(d, 'e.npz'), join(d, 'out')]);
    expectError(r, 1, [/e\.npz: member x\.npy is encrypted/], join(d, 'out'));
  });

  test('clear error: a .mat element of unknown type names its byte and type (not "no variable named X")', async () => {
    const d = caseDir();
    pyIn(d, `
import scipy.io
scipy.io.savemat(d + '/m.mat', {'X': np.ones((4, 3)), 'y': np.arange(4).reshape(4, 1).astype(float)})
b = bytearray(open(d + '/m.mat', 'rb').read())
b[128:132] = (99).to_bytes(4, 'little')
open(d + '/m.mat', 'wb').write(bytes(b))
`);
    const r = await runCli(['convert', join(d, 'm.mat'), join(d, 'out')]);
    expectError(r, 1, [/m\.mat: the element at byte 128 has data type 99, not a MATLAB array/], join(d, 'out'));
  });

  test('clear error: a truncated HDF5 file is one line with HDF5\'s reason and no HDF5-DIAG noise', async () => {
    const d = caseDir();
    await h5wasm.ready;
    const f = new h5wasm.File(join(d, 'full.h5'), 'w');
    f.create_dataset({ name: 'x', data: new Float32Array(400), shape: [100, 4] });
    f.create_dataset({ name: 'y', data: new BigInt64Array(100), shape: [100] });
    f.close();
    writeFileSync(join(d, 't.h5'), readFileSync(join(d, 'full.h5')).subarray(0, 1500));
    const r = await runCli(['convert', join(d, 't.h5'), join(d, 'out')]);
    expectError(r, 1, [/t\.h5: cannot open as HDF5 \(truncated file: eof = 1500/], join(d, 'out'));
  });

  test('clear error: a .tar whose first header is damaged is read as a tar (by its name) and the checksum error names byte 0', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'p.png'), png(4, 4, 3));
    pyIn(d, `
data = open(d + '/p.png', 'rb').read()
with tarfile.open(d + '/t.tar', 'w') as t:
    for name in ['imgs/a/1.png', 'imgs/b/1.png']:
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
b = bytearray(open(d + '/t.tar', 'rb').read()); b[257:262] = b'xxxxx'
open(d + '/t.tar', 'wb').write(bytes(b))
`);
    const r = await runCli(['convert', join(d, 't.tar'), join(d, 'out')]);
    expectError(r, 1, [/t\.tar: cannot read the tar archive: bad header checksum at byte 0 of the tar/], join(d, 'out'));
  });

  test('clear error: a truncated .tar.gz says the gzip stream is cut short and where, not "byte 0"', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'p.png'), png(8, 8, 3));
    pyIn(d, `
data = open(d + '/p.png', 'rb').read()
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w:gz') as t:
    for i in range(20):
        ti = tarfile.TarInfo('imgs/c%d/%d.png' % (i % 3, i)); ti.size = len(data); t.addfile(ti, io.BytesIO(data + bytes([i])))
b = buf.getvalue(); open(d + '/t.tar.gz', 'wb').write(b[:len(b) * 2 // 3])
`);
    const r = await runCli(['convert', join(d, 't.tar.gz'), join(d, 'out')]);
    const line = expectError(r, 1, [/t\.tar\.gz: cannot read the tar\.gz archive/, /unexpected end of file/, /in the gzip stream, within the first \d+ bytes of the file/], join(d, 'out'));
    assert.doesNotMatch(line, /\(byte 0 of the tar\)/);
  });

  test('clear error: verify counts one damaged shard file once ("1 of N")', async () => {
    const d = caseDir();
    npyPair(d);
    assert.equal((await runCli(['convert', '-q', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out')])).code, 0);
    const x = join(d, 'out', 'train', 'x-00000.npy');
    writeFileSync(x, readFileSync(x).subarray(0, 150)); // truncated: fails the size check and the checksum
    const r = await runCli(['verify', '-q', join(d, 'out')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /slimfit: 1 of 2 shard files are damaged/);
    assert.equal(r.stderr.split('\n').filter((l) => l.startsWith('slimfit: bad shard:')).length, 1);
  });

  test('correct: byte rates below 1 kB/s are whole bytes in the convert summary', async () => {
    const d = caseDir();
    writeFileSync(join(d, 's.csv'), '1,2\n0,3\n');
    const r = await runCli(['convert', join(d, 's.csv'), join(d, 'out')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\d+(\.\d)? k?B\/s in/);
    assert.doesNotMatch(r.stdout, /\d+\.\d{2,} k?B\/s/);
  });

  test('clear error: a .npz member whose header lies about its shape (CRC intact)', async () => {
    const d = caseDir();
    pyIn(d, `
bx = io.BytesIO(); np.save(bx, np.zeros((3, 2), np.float32)); v = bx.getvalue().replace(b"(3, 2)", b"(9, 2)")
by = io.BytesIO(); np.save(by, np.arange(3))
with zipfile.ZipFile(d + '/l.npz', 'w') as z:
    z.writestr('x.npy', v); z.writestr('y.npy', by.getvalue())
`);
    const r = await runCli(['convert', join(d, 'l.npz'), join(d, 'out')]);
    expectError(r, 1, [/l\.npz/, /x\.npy/, /9, 2/], join(d, 'out'));
  });

  test('clear error: a negative label names the labels file (y.npy), not the samples file', async () => {
    const d = caseDir();
    pyIn(d, `np.save(d + '/x.npy', np.zeros((4, 2), np.float32)); np.save(d + '/y.npy', np.array([0, 1, -3, 1]))`);
    const r = await runCli(['convert', '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), join(d, 'out')]);
    expectError(r, 1, [/y\.npy: label -3 of sample 2 is not a class index/], join(d, 'out'));
  });

  test('clear error: an IDX header claiming 200 dimensions names the byte', async () => {
    const d = caseDir();
    writeFileSync(join(d, 'x.idx'), Buffer.from([0, 0, 8, 200, 0, 0, 0, 1]));
    writeFileSync(join(d, 'y.idx'), Buffer.from([0, 0, 8, 1, 0, 0, 0, 1, 0]));
    const r = await runCli(['convert', '--x', join(d, 'x.idx'), '--y', join(d, 'y.idx'), join(d, 'out')]);
    expectError(r, 1, [/x\.idx/], join(d, 'out'));
  });
});

after(() => tmp.cleanup());
