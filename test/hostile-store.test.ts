// Hostile cases at the store's edges, met through the real CLI: class names across inputs, corrupted shards,
// concurrent and replacing conversions. Each case builds its own fixture in a temp folder.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { py, runCli, tempDir } from '../dev/helpers.ts';
import { grayPng, mnistPixels, packArchive } from './image-fixture.ts';
import { syntheticSource } from './loader-fixtures.ts';
import { writeStore } from '../src/store/write.ts';
import { beginAtomicDir } from '../src/store/atomic.ts';
import { createLoader, openDataset } from '../src/loader/index.ts';

const px = mnistPixels();
let nextImage = 0;

/** An image tree root/<class>/<i>.png with `classes[c]` distinct MNIST images per class. */
function tree(root: string, classes: Record<string, number>): void {
  for (const [c, n] of Object.entries(classes)) {
    mkdirSync(join(root, c), { recursive: true });
    for (let i = 0; i < n; i++) writeFileSync(join(root, c, `${i}.png`), grayPng(px.image(nextImage++)));
  }
}

/** Labels of a split and the manifest's class names, read by numpy (an independent client). */
function labelsOf(store: string, split: string): { y: number[]; names: string[] } {
  const out = py(`
import json, sys, numpy as np
d, s = sys.argv[1], sys.argv[2]
m = json.load(open(d + '/dataset.json'))
y = np.concatenate([np.load(d + '/' + sh['y']['file']) for sh in m['splits'][s]['shards']])
print(json.dumps({'y': [int(v) for v in y], 'names': m.get('classNames', [])}))
`, [store, split]);
  return JSON.parse(out);
}

/** The slimfit error line (the CLI prints `slimfit: error: ...`, never a stack trace). */
function errorLine(stderr: string): string {
  assert.doesNotMatch(stderr, /\n\s+at /, `stack trace printed:\n${stderr}`);
  const m = /^slimfit: error: (.*)$/m.exec(stderr);
  assert.ok(m, `no slimfit error line in:\n${stderr}`);
  return m[1];
}

/** A numeric CSV with a label column first: rows of [label, 4 features]. */
function csv(path: string, labels: number[]): void {
  writeFileSync(path, labels.map((l, i) => [l, i, i + 1, i * 2, 7].join(',')).join('\n') + '\n');
}

// ---------------------------------------------------------------- 1. class names are the labels' meaning

/** `dir/a`, an image tree of two classes, converted into the store `dir/out` (returned). */
async function storeFromTree(dir: string): Promise<string> {
  tree(join(dir, 'a'), { cat: 2, dog: 2 });
  const out = join(dir, 'out');
  assert.equal((await runCli(['convert', join(dir, 'a'), out, '-q'])).code, 0);
  return out;
}

/** Move the store `out` where a `--force` conversion by process `pid` sets the old store aside; returns that path. */
function setAside(out: string, pid: number): string {
  const aside = `${out}.slimfit-tmp-${pid}-0badc0de-old`;
  renameSync(out, aside);
  return aside;
}

test('correct: a test tree holding only dog/ stores dog labels under train\'s class list', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'train'), { cat: 3, dog: 3 });
    tree(join(dir, 'test'), { dog: 2 });
    const r = await runCli(['convert', '--train', join(dir, 'train'), '--test', join(dir, 'test'), join(dir, 'out'), '-q']);
    assert.equal(r.code, 0, r.stderr);
    const test = labelsOf(join(dir, 'out'), 'test');
    assert.deepEqual(test.names, ['cat', 'dog']);
    assert.deepEqual(test.y, [1, 1]);
    assert.deepEqual(labelsOf(join(dir, 'out'), 'train').y, [0, 0, 0, 1, 1, 1]);
  } finally { cleanup(); }
});

test('clear error: a test tree with a class train lacks names the class and the test folder, and writes nothing', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'train'), { cat: 2, dog: 2 });
    tree(join(dir, 'test'), { dog: 1, emu: 1 });
    const r = await runCli(['convert', '--train', join(dir, 'train'), '--test', join(dir, 'test'), join(dir, 'out'), '-q']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.match(msg, /'emu'/);
    assert.ok(msg.includes(join(dir, 'test')), msg);
    assert.throws(() => readFileSync(join(dir, 'out', 'dataset.json')));
  } finally { cleanup(); }
});

test('correct: archives are mapped by class name too (train .tar.gz with 3 classes, test .zip with 2 of them)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'a'), { ant: 2, bee: 2, cow: 2 });
    tree(join(dir, 'b'), { bee: 1, cow: 2 });
    packArchive(join(dir, 'a'), join(dir, 'train.tar.gz'), 'train');
    packArchive(join(dir, 'b'), join(dir, 'test.zip'), 'test');
    const r = await runCli(['convert', '--train', join(dir, 'train.tar.gz'), '--test', join(dir, 'test.zip'), join(dir, 'out'), '-q']);
    assert.equal(r.code, 0, r.stderr);
    const t = labelsOf(join(dir, 'out'), 'test');
    assert.deepEqual(t.names, ['ant', 'bee', 'cow']);
    assert.deepEqual(t.y, [1, 2, 2]);
  } finally { cleanup(); }
});

test('clear error: a test .tar.gz with a class the train tree lacks names the archive and the class', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'train'), { cat: 2, dog: 2 });
    tree(join(dir, 't'), { cat: 1, yak: 1 });
    packArchive(join(dir, 't'), join(dir, 'test.tar.gz'), 'test');
    const r = await runCli(['convert', '--train', join(dir, 'train'), '--test', join(dir, 'test.tar.gz'), join(dir, 'out'), '-q']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.ok(msg.includes(join(dir, 'test.tar.gz')), msg);
    assert.match(msg, /'yak'/);
  } finally { cleanup(); }
});

test('correct: --class-names on a tree orders the classes by name (labels follow the names, not the folder positions)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'src'), { cat: 1, dog: 2 });
    const r = await runCli(['convert', join(dir, 'src'), join(dir, 'out'), '--class-names', 'dog,cat', '-q']);
    assert.equal(r.code, 0, r.stderr);
    const t = labelsOf(join(dir, 'out'), 'train');
    assert.deepEqual(t.names, ['dog', 'cat']);
    assert.deepEqual(t.y, [1, 0, 0]);
  } finally { cleanup(); }
});

test('clear error: --class-names that lack one of the tree\'s folders name the folder\'s class', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'src'), { cat: 1, dog: 1 });
    const r = await runCli(['convert', join(dir, 'src'), join(dir, 'out'), '--class-names', 'cat,fox', '-q']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.match(msg, /'dog'.*--class-names/);
    assert.ok(msg.includes(join(dir, 'src')), msg);
  } finally { cleanup(); }
});

test('clear error: a train input without class names and a test tree with them cannot be matched without --class-names', async () => {
  const { dir, cleanup } = tempDir();
  try {
    py(`
import numpy as np, sys
x = np.zeros((4, 28, 28, 1), np.uint8); x[:, 0, 0, 0] = range(4)
np.savez(sys.argv[1], x=x, y=np.array([0, 1, 0, 1], np.uint8))
`, [join(dir, 'train.npz')]);
    tree(join(dir, 'test'), { cat: 1, dog: 1 });
    const r = await runCli(['convert', '--train', join(dir, 'train.npz'), '--test', join(dir, 'test'), join(dir, 'out'), '-q']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.ok(msg.includes(join(dir, 'train.npz')), msg);
    assert.match(msg, /no class names.*--class-names/);
  } finally { cleanup(); }
});

test('correct: with --class-names the unnamed train labels and the named test tree meet in one list', async () => {
  const { dir, cleanup } = tempDir();
  try {
    py(`
import numpy as np, sys
x = np.zeros((4, 28, 28, 1), np.uint8); x[:, 0, 0, 0] = range(4)
np.savez(sys.argv[1], x=x, y=np.array([0, 1, 0, 1], np.uint8))
`, [join(dir, 'train.npz')]);
    tree(join(dir, 'test'), { dog: 2 });
    const r = await runCli(['convert', '--train', join(dir, 'train.npz'), '--test', join(dir, 'test'), join(dir, 'out'), '--class-names', 'cat,dog', '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(labelsOf(join(dir, 'out'), 'test').y, [1, 1]);
    assert.deepEqual(labelsOf(join(dir, 'out'), 'train').y, [0, 1, 0, 1]);
  } finally { cleanup(); }
});

test('clear error: a CSV label with no name in --class-names names the file and the sample', async () => {
  const { dir, cleanup } = tempDir();
  try {
    csv(join(dir, 'a.csv'), [0, 1, 2, 1]);
    const r = await runCli(['convert', join(dir, 'a.csv'), join(dir, 'out'), '--class-names', 'x,y', '-q']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.ok(msg.includes(join(dir, 'a.csv')), msg);
    assert.match(msg, /label 2 of sample 2/);
  } finally { cleanup(); }
});

test('clear error: a class name given twice in --class-names', async () => {
  const { dir, cleanup } = tempDir();
  try {
    csv(join(dir, 'a.csv'), [0, 1]);
    const r = await runCli(['convert', join(dir, 'a.csv'), join(dir, 'out'), '--class-names', 'x,x', '-q']);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /'x' appears twice in --class-names/);
  } finally { cleanup(); }
});

test('correct: CSV train and test with --class-names keep their label values; labels of other integer dtypes become train\'s', async () => {
  const { dir, cleanup } = tempDir();
  try {
    csv(join(dir, 'tr.csv'), [0, 1, 2, 2]);
    csv(join(dir, 'te.csv'), [2, 0]);
    const r = await runCli(['convert', '--train', join(dir, 'tr.csv'), '--test', join(dir, 'te.csv'), join(dir, 'out'), '--class-names', 'a,b,c', '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(labelsOf(join(dir, 'out'), 'test'), { y: [2, 0], names: ['a', 'b', 'c'] });
    // .npz inputs whose labels are int64 in train and uint8 in test: one store dtype (train's), same values.
    py(`
import numpy as np, sys
x = np.arange(12, dtype=np.float32).reshape(6, 2)
np.savez(sys.argv[1], x=x[:4], y=np.array([0, 1, 2, 1], np.int64))
np.savez(sys.argv[2], x=x[4:], y=np.array([2, 1], np.uint8))
`, [join(dir, 'tr.npz'), join(dir, 'te.npz')]);
    const r2 = await runCli(['convert', '--train', join(dir, 'tr.npz'), '--test', join(dir, 'te.npz'), join(dir, 'out2'), '-q']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(py(`import numpy as np, sys; a = np.load(sys.argv[1]); print(a.dtype, a.tolist())`, [join(dir, 'out2', 'test', 'y-00000.npy')]).trim(), 'int64 [2, 1]');
  } finally { cleanup(); }
});

test('clear error: test labels too large for train\'s label dtype (uint8 train, int32 test with 256 and 300) are refused, never wrapped', async () => {
  const { dir, cleanup } = tempDir();
  try {
    py(`
import numpy as np, sys
x = np.arange(12, dtype=np.float32).reshape(6, 2)
np.savez(sys.argv[1], x=x[:4], y=np.array([0, 1, 2, 1], np.uint8))
np.savez(sys.argv[2], x=x[4:], y=np.array([256, 300], np.int32))
`, [join(dir, 'tr.npz'), join(dir, 'te.npz')]);
    const r = await runCli(['convert', '--train', join(dir, 'tr.npz'), '--test', join(dir, 'te.npz'), join(dir, 'out'), '-q']);
    assert.equal(r.code, 1, r.stderr);
    const msg = errorLine(r.stderr);
    assert.ok(msg.includes(join(dir, 'te.npz')), msg);
    assert.match(msg, /label 256 of sample 0 does not fit the store's labels, uint8/);
    assert.ok(!existsSync(join(dir, 'out')), 'no store written');
  } finally { cleanup(); }
});

test('correct: a stratified --split of a tree whose classes --class-names reorders counts and assigns by the store\'s labels', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'src'), { ant: 10, bee: 20 });
    const r = await runCli(['convert', join(dir, 'src'), join(dir, 'out'), '--class-names', 'bee,ant', '--split', 'train=0.5,test=0.5', '-q']);
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(readFileSync(join(dir, 'out', 'dataset.json'), 'utf8'));
    assert.deepEqual(m.classNames, ['bee', 'ant']);
    assert.deepEqual([m.splits.train.classCounts, m.splits.test.classCounts], [[10, 5], [10, 5]]);
    const y = [...labelsOf(join(dir, 'out'), 'train').y, ...labelsOf(join(dir, 'out'), 'test').y];
    assert.deepEqual([y.filter((v) => v === 0).length, y.filter((v) => v === 1).length], [20, 10]);
  } finally { cleanup(); }
});

// ---------------------------------------------------------------- 2. corruption is noticed where the data is used

/** A store with train (and test) splits of synthetic 8x8 uint8 images, 4 classes, written in-process. */
async function syntheticStore(out: string, train = 64, test = 32, shardBytes = 16384): Promise<void> {
  const splits = [{ name: 'train', source: syntheticSource({ n: train, classes: 4 }) }];
  if (test) splits.push({ name: 'test', source: syntheticSource({ n: test, classes: 4 }) });
  await writeStore(out, { kind: 'presplit', splits }, { shardBytes, quiet: true, checkDuplicates: false });
}

/** Flip one bit of the file at `at` bytes from its end (past the .npy header). */
function flipByte(path: string, fromEnd = 5): void {
  const b = readFileSync(path);
  b[b.length - fromEnd] ^= 1;
  writeFileSync(path, b);
}

/** Assert a corruption error: exit 1, the shard's path, and `slimfit verify DIR` as the next step. */
function assertCorrupt(r: { code: number | null; stderr: string }, shard: string, store: string): void {
  assert.equal(r.code, 1, r.stderr);
  const msg = errorLine(r.stderr);
  assert.ok(msg.includes(shard), msg);
  assert.match(msg, /SHA-256/);
  assert.ok(msg.includes(`slimfit verify ${store}`), msg);
}

test('clear error: train on a store with one flipped byte in train/x-00000.npy stops before training, naming the shard', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await syntheticStore(store);
    flipByte(join(store, 'train', 'x-00000.npy'));
    const r = await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--out', join(dir, 'run'), '--workers', '2']);
    assertCorrupt(r, join(store, 'train', 'x-00000.npy'), store);
    assert.doesNotMatch(r.stderr, /epoch 1\/1/);
    assert.equal(existsSync(join(dir, 'run')), false, 'no run folder is left for a run that never started');
  } finally { cleanup(); }
});

test('clear error: export of a split whose y shard was altered names it and leaves no .npz behind', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await syntheticStore(store);
    flipByte(join(store, 'test', 'y-00000.npy'), 1);
    const r = await runCli(['export', store, '--split', 'test', '--out', join(dir, 't.npz'), '-q']);
    assertCorrupt(r, join(store, 'test', 'y-00000.npy'), store);
    assert.equal(existsSync(join(dir, 't.npz')), false);
  } finally { cleanup(); }
});

test('correct: export --no-verify uses the shard as it is (the user chose to)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await syntheticStore(store);
    flipByte(join(store, 'test', 'x-00000.npy'), 1);
    const r = await runCli(['export', store, '--split', 'test', '--out', join(dir, 't.npz'), '-q', '--no-verify']);
    assert.equal(r.code, 0, r.stderr);
    const last = py(`import numpy as np, sys; print(int(np.load(sys.argv[1])['x'].reshape(-1)[-1]))`, [join(dir, 't.npz')]).trim();
    const orig = py(`import numpy as np, sys; print(int(np.load(sys.argv[1]).reshape(-1)[-1]))`, [join(store, 'test', 'x-00000.npy')]).trim();
    assert.equal(last, orig);
  } finally { cleanup(); }
});

test('clear error: show and eval on a corrupted store name the shard; show --no-verify draws it anyway', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await syntheticStore(store);
    const run = join(dir, 'run');
    const t = await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--out', run, '--workers', '1', '--no-test']);
    assert.equal(t.code, 0, t.stderr);
    flipByte(join(store, 'test', 'x-00000.npy'));
    assertCorrupt(await runCli(['eval', run, store]), join(store, 'test', 'x-00000.npy'), store);
    assertCorrupt(await runCli(['show', store, '--split', 'test', '--out', join(dir, 'g.png')]), join(store, 'test', 'x-00000.npy'), store);
    assert.equal(existsSync(join(dir, 'g.png')), false);
    const ok = await runCli(['show', store, '--split', 'test', '--out', join(dir, 'g.png'), '--no-verify']);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(existsSync(join(dir, 'g.png')));
  } finally { cleanup(); }
});

test('clear error: the library loader refuses a shard of a later split that was altered; verifyChecksums: false reads it', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await syntheticStore(store, 64, 32, 1024); // several shards per split
    const ds = await openDataset(store);
    const shards = ds.manifest.splits.train.shards;
    assert.ok(shards.length >= 3);
    flipByte(join(store, shards[2].x.file));
    for (const workers of [0, 2]) {
      const l = createLoader(ds.split('train'), { batchSize: 16, workers });
      await assert.rejects(async () => { for await (const _ of l) { /* drain */ } }, (e: Error) => e.name === 'SlimfitError' && e.message.includes(shards[2].x.file));
      await l.close();
    }
    const l = createLoader(ds.split('train'), { batchSize: 16, workers: 1, verifyChecksums: false });
    let n = 0;
    for await (const b of l) n += b.n;
    await l.close();
    assert.equal(n, 64);
    const ds2 = await openDataset(store, { verifyChecksums: false });
    const l2 = createLoader(ds2.split('train'), { batchSize: 64, workers: 0 });
    for await (const b of l2) assert.equal(b.n, 64);
    await l2.close();
    await ds.close(); await ds2.close();
  } finally { cleanup(); }
});

test('correct: a shard is hashed once per process (a second loader over the unchanged file does not hash it again); a rewritten shard is hashed again', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await syntheticStore(store, 64, 0, 1024);
    const ds = await openDataset(store);
    const shard = join(store, ds.manifest.splits.train.shards[0].x.file);
    utimesSync(shard, 1e9, 1e9); // whole seconds, so the same time can be set again below
    const first = createLoader(ds.split('train'), { batchSize: 64, workers: 0 });
    for await (const _ of first) { /* verified and read */ }
    await first.close();
    // Altered behind the check's back, with the same size, inode and modification time: the remembered pass stands,
    // which shows the second loader did not hash the file again (verify, which always hashes, still finds it).
    flipByte(shard);
    utimesSync(shard, 1e9, 1e9);
    const second = createLoader(ds.split('train'), { batchSize: 64, workers: 0 });
    let n = 0;
    for await (const b of second) n += b.n;
    await second.close();
    assert.equal(n, 64);
    // Rewritten the usual way (a new modification time): checked again, and refused.
    utimesSync(shard, 2e9, 2e9);
    const third = createLoader(ds.split('train'), { batchSize: 64, workers: 0 });
    await assert.rejects((async () => { for await (const _ of third) { /* refused before a batch */ } })(), (e: Error) => e.name === 'SlimfitError' && /does not match its SHA-256/.test(e.message));
    await third.close();
    await ds.close();
    const v = await runCli(['verify', store]);
    assert.equal(v.code, 1);
  } finally { cleanup(); }
});

test('correct: reading in stored order checks x shards as it reaches them: show of the first samples works, the damaged later shard stops the full pass', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await syntheticStore(store, 64, 0, 1024); // 16 samples of 64 bytes per shard
    const ds = await openDataset(store);
    const shards = ds.manifest.splits.train.shards;
    flipByte(join(store, shards[2].x.file));
    const show = await runCli(['show', store, '-n', '8', '--first', '--out', join(dir, 'g.png')]);
    assert.equal(show.code, 0, show.stderr);
    for (const workers of [0, 2]) {
      const l = createLoader(ds.split('train'), { batchSize: 8, shuffle: false, workers, normalize: false });
      const seen: number[] = [];
      await assert.rejects(async () => { for await (const b of l) seen.push(b.n); }, (e: Error) => e.name === 'SlimfitError' && e.message.includes(shards[2].x.file));
      await l.close();
      assert.ok(seen.reduce((a, n) => a + n, 0) <= 32, `no batch from the damaged shard was handed out (${seen})`);
    }
    await ds.close();
  } finally { cleanup(); }
});

// ---------------------------------------------------------------- 3. nothing replaces a store it should not

/** Provenance sources and the shard checksums of the store at `dir` (what would change if it were replaced). */
function identity(dir: string): string {
  const m = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8'));
  return JSON.stringify([m.provenance.sources, Object.values(m.splits).map((s: any) => s.shards.map((sh: any) => sh.x.sha256))]);
}

/** A pid that belonged to a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test('clear error: two conversions into one OUT at once: one writes it, the other stops naming OUT, and the store is the winner\'s', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'a'), { cat: 40, dog: 40 });
    tree(join(dir, 'b'), { emu: 40, fox: 40 });
    const out = join(dir, 'out');
    const [ra, rb] = await Promise.all([runCli(['convert', join(dir, 'a'), out, '-q']), runCli(['convert', join(dir, 'b'), out, '-q'])]);
    assert.deepEqual([ra.code, rb.code].sort(), [0, 1], ra.stderr + rb.stderr);
    const loser = ra.code === 1 ? ra : rb;
    const msg = errorLine(loser.stderr);
    assert.ok(msg.includes(out), msg);
    assert.match(msg, /another slimfit conversion|already exists/);
    const winner = ra.code === 0 ? 'a' : 'b';
    assert.ok(identity(out).includes(join(dir, winner)));
    assert.deepEqual(readdirSync(dir).sort(), ['a', 'b', 'out']); // no lock or temp folder left behind
  } finally { cleanup(); }
});

test('clear error: a lock held by a live process stops a conversion with its pid; the existing store is untouched', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = await storeFromTree(dir);
    const before = identity(out);
    writeFileSync(`${out}.slimfit-lock`, `${process.pid}\n`);
    const r = await runCli(['convert', join(dir, 'a'), out, '-q', '--force']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.match(msg, new RegExp(`pid ${process.pid}`));
    assert.ok(msg.includes(out), msg);
    assert.equal(identity(out), before);
    assert.ok(existsSync(`${out}.slimfit-lock`), 'someone else\'s lock is never removed');
  } finally { cleanup(); }
});

test('clear error: a stale lock from a dead process is reported with the file to delete; after deleting it the conversion runs', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'a'), { cat: 2, dog: 2 });
    const out = join(dir, 'out');
    const lock = `${out}.slimfit-lock`;
    const pid = deadPid();
    writeFileSync(lock, `${pid}\n`);
    const r = await runCli(['convert', join(dir, 'a'), out, '-q']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.match(msg, new RegExp(`process ${pid}, which is no longer running`));
    assert.ok(msg.includes(`delete ${lock}`), msg);
    rmSync(lock);
    assert.equal((await runCli(['convert', join(dir, 'a'), out, '-q'])).code, 0);
  } finally { cleanup(); }
});

test('clear error: converting onto an existing store without --force leaves it as it was', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'a'), { cat: 2, dog: 2 });
    tree(join(dir, 'b'), { cat: 1, dog: 1 });
    const out = join(dir, 'out');
    assert.equal((await runCli(['convert', join(dir, 'a'), out, '-q'])).code, 0);
    const before = identity(out);
    const r = await runCli(['convert', join(dir, 'b'), out, '-q']);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /already exists.*--force/);
    assert.equal(identity(out), before);
  } finally { cleanup(); }
});

test('correct: --force keeps the old store when the new conversion fails, and replaces it when it completes', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'a'), { cat: 2, dog: 2 });
    tree(join(dir, 'b'), { cat: 3, dog: 3 });
    writeFileSync(join(dir, 'b', 'dog', 'zz-broken.png'), 'not a png');
    const out = join(dir, 'out');
    assert.equal((await runCli(['convert', join(dir, 'a'), out, '-q'])).code, 0);
    const before = identity(out);
    const bad = await runCli(['convert', join(dir, 'b'), out, '-q', '--force', '--strict']);
    assert.equal(bad.code, 1);
    assert.match(errorLine(bad.stderr), /zz-broken\.png/);
    assert.equal(identity(out), before);
    assert.equal((await runCli(['verify', out])).code, 0);
    const good = await runCli(['convert', join(dir, 'b'), out, '-q', '--force']);
    assert.equal(good.code, 0, good.stderr);
    assert.ok(identity(out).includes(join(dir, 'b')));
    assert.deepEqual(readdirSync(dir).sort(), ['a', 'b', 'out']);
  } finally { cleanup(); }
});

test('clear error: OUT inside the input tree (or the tree itself) is refused before it can become a class of its own input', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'src'), { cat: 2, dog: 2 });
    for (const out of [join(dir, 'src', 'store'), join(dir, 'src')]) {
      const r = await runCli(['convert', join(dir, 'src'), out, '-q']);
      assert.equal(r.code, 1);
      const msg = errorLine(r.stderr);
      assert.ok(msg.includes(out), msg);
      assert.match(msg, /own input/);
    }
    assert.deepEqual(readdirSync(join(dir, 'src')).sort(), ['cat', 'dog']);
    // The same through --train/--test.
    tree(join(dir, 'test'), { dog: 1 });
    const r = await runCli(['convert', '--train', join(dir, 'src'), '--test', join(dir, 'test'), join(dir, 'test', 'out'), '-q']);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /inside the input/);
  } finally { cleanup(); }
});

test('clear error: an input inside the output folder is refused, so --force can never delete it', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = await storeFromTree(dir);
    cpSync(join(dir, 'a'), join(out, 'imgs'), { recursive: true });
    const r = await runCli(['convert', join(out, 'imgs'), out, '-q', '--force']);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /inside the output folder/);
    assert.ok(existsSync(join(out, 'imgs', 'cat', '0.png')));
  } finally { cleanup(); }
});

test('correct: a store a killed --force conversion had moved aside is put back in place by the next conversion', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = await storeFromTree(dir);
    const before = identity(out);
    // The moment between moving the old store aside and renaming the new one in, frozen: the process is gone.
    const pid = deadPid();
    setAside(out, pid);
    mkdirSync(`${out}.slimfit-tmp-${pid}-0badc0de`);
    const r = await runCli(['convert', join(dir, 'a'), out, '-q']);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /already exists/);
    assert.equal(identity(out), before);
    assert.deepEqual(readdirSync(dir).sort(), ['a', 'out']);
  } finally { cleanup(); }
});

test('clear error: a set-aside store of a killed --force conversion is kept and named when OUT is an empty folder made since, even under --force', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = await storeFromTree(dir);
    const before = identity(out);
    // Killed between its two renames, then someone ran `mkdir out`: the set-aside copy is the only copy of the store.
    const aside = setAside(out, deadPid());
    mkdirSync(out);
    for (const flags of [['-q'], ['-q', '--force']]) {
      const r = await runCli(['convert', join(dir, 'a'), out, ...flags]);
      assert.equal(r.code, 1, flags.join(' '));
      const msg = errorLine(r.stderr);
      assert.ok(msg.includes(aside), msg);
      assert.match(msg, /rename .* to /);
      assert.equal(identity(aside), before, 'the old store survives');
      assert.deepEqual(readdirSync(out), []);
    }
    // Following the advice restores it.
    rmSync(out, { recursive: true });
    renameSync(aside, out);
    assert.equal(identity(out), before);
  } finally { cleanup(); }
});

test('correct: a set-aside store is deleted once OUT holds the complete new store (killed after its second rename)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = await storeFromTree(dir);
    cpSync(out, `${out}.slimfit-tmp-${deadPid()}-0badc0de-old`, { recursive: true });
    const r = await runCli(['convert', join(dir, 'a'), out, '-q', '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(readdirSync(dir).sort(), ['a', 'out']);
  } finally { cleanup(); }
});

test('clear error: a store that appears at OUT while a conversion runs (a writer ignoring the lock) is not replaced', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'out');
    const dest = await beginAtomicDir(out, false);
    await syntheticStore(join(dir, 'other'), 8, 0);
    cpSync(join(dir, 'other'), out, { recursive: true });
    const before = identity(out);
    writeFileSync(join(dest.tmp, 'dataset.json'), '{}');
    await assert.rejects(dest.commit(), (e: Error) => e.name === 'SlimfitError' && e.message.includes(out) && /appeared/.test(e.message));
    await dest.abort();
    assert.equal(identity(out), before);
    assert.equal(existsSync(`${out}.slimfit-lock`), false);
  } finally { cleanup(); }
});

test('clear error: two writeStore calls into one OUT in the same process: the second names the lock holder (this process)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const out = join(dir, 'out');
    const write = (n: number) => writeStore(out, { kind: 'presplit', splits: [{ name: 'train', source: syntheticSource({ n, classes: 4 }) }] }, { quiet: true, checkDuplicates: false });
    const sizes = [20000, 10];
    const results = await Promise.allSettled(sizes.map(write));
    assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const won = results.findIndex((r) => r.status === 'fulfilled');
    const e = (results[1 - won] as PromiseRejectedResult).reason as Error;
    assert.equal(e.name, 'SlimfitError');
    assert.match(e.message, new RegExp(`pid ${process.pid}, this process`));
    assert.equal(JSON.parse(readFileSync(join(out, 'dataset.json'), 'utf8')).splits.train.samples, sizes[won]);
  } finally { cleanup(); }
});

test('clear error: an OUT whose parent folder does not exist names it, and nothing is created', async () => {
  const { dir, cleanup } = tempDir();
  try {
    tree(join(dir, 'a'), { cat: 1, dog: 1 });
    const r = await runCli(['convert', join(dir, 'a'), join(dir, 'no', 'such', 'out'), '-q']);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.ok(msg.includes(join(dir, 'no', 'such', 'out')), msg);
    assert.match(msg, /parent does not exist/);
    assert.deepEqual(readdirSync(dir), ['a']);
  } finally { cleanup(); }
});

test('correct: Ctrl-C (SIGINT) or SIGTERM mid-conversion removes the lock, so the next conversion needs no manual step', async () => {
  const { dir, cleanup } = tempDir();
  try {
    py(`
import numpy as np, sys
np.save(sys.argv[1], np.random.default_rng(0).integers(0, 255, (20000, 1024), dtype=np.uint8))
np.save(sys.argv[2], (np.arange(20000) % 3).astype(np.uint8))
`, [join(dir, 'x.npy'), join(dir, 'y.npy')]);
    const out = join(dir, 'out');
    const { spawn } = await import('node:child_process');
    const { BIN } = await import('../dev/helpers.ts');
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const child = spawn(process.execPath, [BIN, 'convert', '--x', join(dir, 'x.npy'), '--y', join(dir, 'y.npy'), out, '-q', '--shard-size', '64k'], { stdio: 'ignore' });
      const closed = new Promise<NodeJS.Signals | null>((r) => child.on('close', (_c, s) => r(s)));
      const t0 = Date.now();
      let seen = false;
      while (!seen && Date.now() - t0 < 60_000) {
        const tmp = readdirSync(dir).find((e) => e.startsWith(`out.slimfit-tmp-${child.pid}-`));
        seen = !!tmp && existsSync(join(dir, tmp, 'train')) && readdirSync(join(dir, tmp, 'train')).length > 2;
        if (!seen) await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(seen && existsSync(`${out}.slimfit-lock`), 'the signal should hit a running conversion');
      child.kill(sig);
      assert.equal(await closed, sig, 'the process still ends by the signal');
      assert.equal(existsSync(`${out}.slimfit-lock`), false);
      assert.equal(existsSync(join(out, 'dataset.json')), false);
    }
    const again = await runCli(['convert', '--x', join(dir, 'x.npy'), '--y', join(dir, 'y.npy'), out, '-q']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(readdirSync(dir).sort(), ['out', 'x.npy', 'y.npy']);
  } finally { cleanup(); }
});
