// What a new user runs into first: `show` draws a seeded random sample and says where it wrote; convert names the
// duplicated samples (duplicates.json) and what --dedupe dropped; a flat CSV of bytes gets a --shape/--x-dtype tip;
// .npy/.npz data keeps --class-names; train and eval say when there is no test split.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeSampleGrid } from '../src/train/show.ts';
import { MAX_LISTED_COPIES, createDuplicateLister } from '../src/store/dup-list.ts';
import { makeStore } from './loader-fixtures.ts';
import { py, runCli, tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-papercuts-');
after(() => tmp.cleanup());

describe('show', () => {
  const store = join(tmp.dir, 'sorted');
  // 1000 samples sorted by class, 100 per class (like notMNIST folders read in order: all 'A' first).
  before(async () => { await makeStore(store, { n: 1000, label: (i) => Math.floor(i / 100) }); });

  test('draws a seeded random sample by default (many classes, same seed same draw); --first shows stored order', async () => {
    const a = await writeSampleGrid(store, join(tmp.dir, 'a.png'), { n: 64 });
    assert.equal(a.count, 64);
    assert.equal(a.seed, 0);
    assert.ok(new Set(a.labels).size >= 8, `classes drawn: ${a.labels}`);
    const again = await writeSampleGrid(store, join(tmp.dir, 'a2.png'), { n: 64 });
    assert.deepEqual(again.labels, a.labels);
    assert.ok(readFileSync(join(tmp.dir, 'a.png')).equals(readFileSync(join(tmp.dir, 'a2.png'))));
    const other = await writeSampleGrid(store, join(tmp.dir, 'b.png'), { n: 64, seed: 5 });
    assert.notDeepEqual(other.labels, a.labels);
    const first = await writeSampleGrid(store, join(tmp.dir, 'c.png'), { n: 64, first: true });
    assert.deepEqual(first.labels, new Array(64).fill(0));
    assert.equal(first.seed, null);
  });

  test('the CLI prints what it drew and the absolute path it wrote', async () => {
    const r = await runCli(['show', store, '-n', '16', '--seed', '3', '--out', 'grid.png'], { cwd: tmp.dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `wrote 16 random samples (seed 3; --seed N for others, --first for the first ones) of 'train' to ${join(tmp.dir, 'grid.png')}\n`);
    assert.ok(existsSync(join(tmp.dir, 'grid.png')));
    const f = await runCli(['show', store, '-n', '4', '--first', '--out', join(tmp.dir, 'g2.png')]);
    assert.match(f.stdout, /wrote the first 4 samples of 'train' to /);
  });
});

describe('convert: duplicates named, --dedupe explained', () => {
  const dx = join(tmp.dir, 'dx.npy'), dy = join(tmp.dir, 'dy.npy');
  before(() => {
    // 1000 distinct rows, then rows 500..599 made copies of rows 0..99 (100 planted duplicates), rows 700..704 of row 3.
    py(`
import sys, numpy as np
x = np.zeros((1000, 4), np.uint8); x[:, 0] = np.arange(1000) % 256; x[:, 1] = np.arange(1000) // 256; x[:, 2] = 7
x[500:600] = x[0:100]; x[700:705] = x[3]
y = (np.arange(1000) % 2).astype(np.uint8); y[500:600] = y[0:100]; y[700:705] = y[3]
np.save(sys.argv[1], x); np.save(sys.argv[2], y)
`, [dx, dy]);
  });

  test('duplicates.json lists every copy (store place and input row); numpy confirms each group holds equal rows', async () => {
    const out = join(tmp.dir, 'dups');
    const r = await runCli(['convert', out, '--x', dx, '--y', dy, '--split', 'train=0.5,test=0.5']);
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
    assert.equal(m.provenance.duplicates.list, 'duplicates.json');
    assert.equal(m.provenance.duplicates.groups, 100);
    assert.ok(statSync(join(out, 'duplicates.json')).mtimeMs <= statSync(join(out, 'dataset.json')).mtimeMs, 'the list is written before the manifest');
    assert.match(r.stdout, new RegExp(`100 sample\\(s\\) have more than one copy; their copies are listed in ${join(out, 'duplicates.json')} \\(up to 10000 samples and 20000 later copies\\), e\\.g\\.:\\n  (train|test) #\\d+ = (train|test) #\\d+ \\(.*dx\\.npy #\\d+\\)`));
    // Independent check: every copy listed (store place, and input row when given) holds the same x bytes.
    const res = py(`
import json, sys, numpy as np
d = sys.argv[1]; m = json.load(open(d + '/dataset.json')); doc = json.load(open(d + '/duplicates.json'))
src = np.load(sys.argv[2])
split = {s: np.concatenate([np.load(d + '/' + sh['x']['file']) for sh in m['splits'][s]['shards']]) for s in m['splits']}
copies = 0
for g in doc['duplicates']:
    rows = [bytes(split[c['split']][c['index']]) for c in g['copies']]
    rows += [bytes(src[c['inputIndex']]) for c in g['copies'] if 'inputIndex' in c]
    assert len(set(rows)) == 1, g
    assert 'inputIndex' not in g['copies'][0] and all('inputIndex' in c for c in g['copies'][1:]), g
    copies += len(g['copies'])
print(doc['groups'], doc['listed'], copies)
`, [out, dx]);
    assert.equal(res.trim(), '100 100 205'); // 99 pairs and one sample with 7 copies (rows 3, 503 and 700..704)
  });

  test('the list stays bounded when most samples are copies: later copies past MAX_LISTED_COPIES are counted per group, not kept', () => {
    const l = createDuplicateLister();
    const n = MAX_LISTED_COPIES + 5000;
    for (let i = 0; i < n; i++) l.note(i % 7, 0, { split: 'train', index: 7 + i, input: 'x.csv', inputIndex: 7 + i });
    const { groups, total } = l.result();
    assert.equal(total, 7);
    assert.equal(groups.reduce((a, g) => a + g.copies.length, 0), MAX_LISTED_COPIES);
    assert.equal(groups.reduce((a, g) => a + (g.unlisted ?? 0), 0), 5000);
    // Past the caps each further duplicated sample still counts once, however many copies it has.
    for (let i = 0; i < 3000; i++) l.note(1000 + (i % 100), 1, { split: 'train', index: i, input: 'x.csv', inputIndex: i });
    assert.equal(l.result().total, 7 + 100);
  });

  test('--dedupe says which split it dropped from and the sample counts after dropping', async () => {
    const out = join(tmp.dir, 'dedup');
    const r = await runCli(['convert', out, '--x', dx, '--y', dy, '--split', 'train=0.5,test=0.5', '--dedupe']);
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8'));
    const d = m.provenance.duplicates;
    assert.equal(d.dropped, 105);
    assert.equal(d.droppedFrom.train + d.droppedFrom.test, 105);
    assert.equal(m.splits.train.samples + m.splits.test.samples, 895);
    const line = `dropped by --dedupe: 105 (the later copies in input order; the first copy stays), from train ${d.droppedFrom.train}, test ${d.droppedFrom.test}; samples after dropping: train ${m.splits.train.samples}, test ${m.splits.test.samples}`;
    assert.ok(r.stdout.includes(line), r.stdout);
    const doc = JSON.parse(readFileSync(join(out, 'duplicates.json'), 'utf8'));
    for (const g of doc.duplicates) {
      assert.notEqual(g.copies[0].index, null, 'the first copy is kept');
      for (const c of g.copies.slice(1)) assert.deepEqual([c.index, c.dropped], [null, true]);
    }
  });
});

describe('convert: a flat CSV of bytes gets a --shape / --x-dtype tip', () => {
  test('computed from the data: whole numbers 0..255, 784 = 28 x 28 features; not for fractions or values above 255', async () => {
    py(`
import numpy as np, sys
d = sys.argv[1]; rng = np.random.default_rng(0)
x = rng.integers(0, 256, (60, 784)); y = np.arange(60) % 3
np.savetxt(d + '/bytes.csv', np.column_stack([y, x]), fmt='%d', delimiter=',')
np.savetxt(d + '/rgb.csv', np.column_stack([y[:20], rng.integers(0, 256, (20, 3 * 16 * 16))]), fmt='%d', delimiter=',')
np.savetxt(d + '/frac.csv', np.column_stack([y, x + 0.5]), fmt='%g', delimiter=',')
x2 = x.copy(); x2[5, 9] = 300
np.savetxt(d + '/big.csv', np.column_stack([y, x2]), fmt='%d', delimiter=',')
`, [tmp.dir]);
    const conv = (name: string, ...extra: string[]) => runCli(['convert', join(tmp.dir, `${name}.csv`), join(tmp.dir, `csv-${name}`), '--force', ...extra]);
    let r = await conv('bytes');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /tip: every value is a whole number from 0 to 255, so --shape 28,28,1 --x-dtype uint8 stores it exactly as 28x28 gray images .* in a quarter of the space: slimfit convert .*bytes\.csv .*csv-bytes --shape 28,28,1 --x-dtype uint8 --force/);
    r = await conv('rgb');
    assert.match(r.stdout, /--shape 16,16,3 --x-dtype uint8 stores it exactly as 16x16 RGB images/);
    r = await conv('bytes', '--json');
    assert.equal(JSON.parse(r.stdout).suggestedFlags, '--shape 28,28,1 --x-dtype uint8');
    for (const name of ['frac', 'big']) {
      r = await conv(name);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /tip:/, name);
    }
    // Following the tip gives a store the tip no longer applies to.
    r = await conv('bytes', '--shape', '28,28,1', '--x-dtype', 'uint8');
    assert.doesNotMatch(r.stdout, /tip:/);
    assert.deepEqual(JSON.parse(readFileSync(join(tmp.dir, 'csv-bytes', 'dataset.json'), 'utf8')).fields.x, { dtype: 'uint8', shape: [28, 28, 1] });
  });
});

describe('.npy/.npz class names and missing test splits', () => {
  test('--class-names is kept for .npz/.npy (convert and train); train and eval say when there is no test split', async () => {
    py(`
import numpy as np, sys
rng = np.random.default_rng(2)
np.savez(sys.argv[1] + '/d.npz', x=rng.integers(0, 256, (90, 6, 6, 1)).astype(np.uint8), y=(np.arange(90) % 3).astype(np.uint8))
`, [tmp.dir]);
    const npz = join(tmp.dir, 'd.npz'), store = join(tmp.dir, 'npz-store');
    let r = await runCli(['convert', npz, store, '--x', 'x', '--y', 'y', '--class-names', 'cat,dog,bird', '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(store, 'dataset.json'), 'utf8')).classNames, ['cat', 'dog', 'bird']);

    const run = join(tmp.dir, 'npz-run');
    r = await runCli(['train', npz, '--x', 'x', '--y', 'y', '--class-names', 'cat,dog,bird', '--model', 'mlp', '--epochs', '1', '--out', run]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(readFileSync(join(run, 'run.json'), 'utf8')).classNames, ['cat', 'dog', 'bird']);
    const report = readFileSync(join(run, 'report.md'), 'utf8');
    assert.match(report, /\*\*classes\*\*: 3: cat, dog, bird \(--class-names\)/);
    assert.match(report, /\*\*test\*\*: none: the \.npy\/\.npz data has no test split, so there is no test evaluation/);
    assert.match(r.stderr, /the \.npy\/\.npz data has no test split, so there is no test evaluation/);
    r = await runCli(['train', npz, '--x', 'x', '--y', 'y', '--class-names', 'cat,dog', '--model', 'mlp', '--epochs', '1', '--out', join(tmp.dir, 'npz-run2')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /2 class names were given but the labels go up to 2 \(3 classes\)/);

    r = await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--out', join(tmp.dir, 'store-run')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`the store ${store} has no 'test' split, so there is no test evaluation \\(convert with --split train=0\\.9,test=0\\.1`));
    r = await runCli(['eval', join(tmp.dir, 'store-run'), store]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /there is no 'test' split to evaluate on \(its splits are: train\)\. evaluate another split \(--split NAME\)/);
  });
});
