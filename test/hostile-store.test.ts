// Hostile cases at the store's edges, met through the real CLI: class names across inputs, corrupted shards,
// concurrent and replacing conversions. Each case builds its own fixture in a temp folder.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { py, runCli, tempDir } from '../dev/helpers.ts';
import { grayPng, mnistPixels, packArchive } from './image-fixture.ts';

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
