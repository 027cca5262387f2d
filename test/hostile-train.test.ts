// Hostile cases at training's edges, met through the real CLI (and the library where scripts meet them): a run is
// one thing across --resume, and models fit the data or say why before any step. Each case builds its own fixture.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tfl from '@tensorflow/tfjs-layers';
import { BIN, py, runCli, tempDir } from '../dev/helpers.ts';
import { syntheticSource } from './loader-fixtures.ts';
import { writeStore } from '../src/store/write.ts';
import { buildModel, fit } from '../src/train/index.ts';

/** A one-split store of synthetic uint8 images (h x w x 1) with `classes` classes. */
async function imageStore(out: string, o: { n?: number; h?: number; w?: number; classes?: number; label?: (i: number) => number } = {}): Promise<void> {
  const source = syntheticSource({ n: o.n ?? 200, h: o.h ?? 12, w: o.w ?? 12, classes: o.classes ?? 3, label: o.label });
  await writeStore(out, { kind: 'presplit', splits: [{ name: 'train', source }] }, { quiet: true, checkDuplicates: false });
}

/** A CSV of flat numeric features whose class (0..2) follows from the first two features, converted by the CLI. */
async function csvStore(dir: string, out: string, n = 600): Promise<void> {
  py(`
import numpy as np, sys
rng = np.random.default_rng(0); X = rng.normal(size=(int(sys.argv[2]), 6)); y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
np.savetxt(sys.argv[1], np.c_[y, X], delimiter=',', fmt='%.5f')
`, [join(dir, 'f.csv'), String(n)]);
  const r = await runCli(['convert', join(dir, 'f.csv'), out, '-q']);
  assert.equal(r.code, 0, r.stderr);
}

function errorLine(stderr: string): string {
  assert.doesNotMatch(stderr, /\n\s+at /, `stack trace printed:\n${stderr}`);
  const m = /^slimfit: error: (.*)$/m.exec(stderr);
  assert.ok(m, `no slimfit error line in:\n${stderr}`);
  return m[1];
}

const epochsLogged = (run: string) => readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l).epoch);
const runJson = (run: string) => JSON.parse(readFileSync(join(run, 'run.json'), 'utf8'));
const fast = ['--workers', '1', '--no-test'];

// ---------------------------------------------------------------- 4. a run is one thing

test('correct: --resume with no flags keeps the run\'s own epochs (2), batch, seed and model instead of the defaults', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's'), run = join(dir, 'run');
    await imageStore(store);
    let r = await runCli(['train', store, '--model', 'mlp', '--epochs', '2', '--batch', '32', '--seed', '3', '--lr', '0.002', '--out', run, ...fast]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(['train', '--resume', run, ...fast]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /already has 2 of 2 epochs/);
    assert.match(r.stderr, /training mlp .* batch 32, adam lr 0\.002, 2 epochs/);
    assert.deepEqual(epochsLogged(run), [1, 2]);
    assert.deepEqual([runJson(run).epochs, runJson(run).batchSize, runJson(run).seed], [2, 32, 3]);
  } finally { cleanup(); }
});

test('correct: --epochs given again extends the run and is saved, so a later --resume does not fall back', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's'), run = join(dir, 'run');
    await imageStore(store);
    assert.equal((await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--batch', '50', '--out', run, ...fast])).code, 0);
    let r = await runCli(['train', '--resume', run, '--epochs', '3', ...fast]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /resuming .* after epoch 1 of 3/);
    assert.deepEqual(epochsLogged(run), [1, 2, 3]);
    assert.equal(runJson(run).epochs, 3);
    assert.equal(runJson(run).batchSize, 50);
    r = await runCli(['train', '--resume', run, ...fast]);
    assert.match(r.stderr, /already has 3 of 3 epochs/);
  } finally { cleanup(); }
});

test('clear error: --resume with a different --seed, --model, --split or --val-fraction than the run names the flag and the run', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's'), run = join(dir, 'run');
    await imageStore(store);
    assert.equal((await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--seed', '3', '--out', run, ...fast])).code, 0);
    for (const [flag, value] of [['--seed', '4'], ['--model', 'cnn'], ['--split', 'val'], ['--val-fraction', '0.3']]) {
      const r = await runCli(['train', '--resume', run, flag, value, '--epochs', '2', ...fast]);
      assert.equal(r.code, 1, r.stderr);
      const msg = errorLine(r.stderr);
      assert.ok(msg.includes(run) && msg.includes(flag), msg);
    }
    assert.deepEqual(epochsLogged(run), [1]);
  } finally { cleanup(); }
});

test('clear error: `train OTHERDIR --resume RUN` names both stores instead of ignoring OTHERDIR; --force trains on OTHERDIR and records it', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = join(dir, 'a'), b = join(dir, 'b'), run = join(dir, 'run');
    await imageStore(a);
    await imageStore(b, { n: 150 });
    assert.equal((await runCli(['train', a, '--model', 'mlp', '--epochs', '1', '--out', run, ...fast])).code, 0);
    let r = await runCli(['train', b, '--resume', run, '--epochs', '2', ...fast]);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.ok(msg.includes(a) && msg.includes(b) && msg.includes(run), msg);
    assert.match(msg, /--force/);
    assert.deepEqual(epochsLogged(run), [1]);
    r = await runCli(['train', b, '--resume', run, '--epochs', '2', '--force', ...fast]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(runJson(run).data, b);
    assert.match(r.stderr, /training mlp on .*\/b:train/);
  } finally { cleanup(); }
});

test('correct: `train SAMEDIR --resume RUN` (the run\'s own store, by a relative path) resumes', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const a = join(dir, 'a'), run = join(dir, 'run');
    await imageStore(a);
    assert.equal((await runCli(['train', a, '--model', 'mlp', '--epochs', '1', '--out', run, ...fast])).code, 0);
    const r = await runCli(['train', 'a', '--resume', 'run', '--epochs', '2', ...fast], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(epochsLogged(run), [1, 2]);
  } finally { cleanup(); }
});

test('clear error: resuming after the store was rebuilt at the same path says the data changed; --force continues', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's'), run = join(dir, 'run');
    await imageStore(store);
    assert.equal((await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--out', run, ...fast])).code, 0);
    const { rmSync } = await import('node:fs');
    rmSync(store, { recursive: true });
    await imageStore(store, { label: (i) => (i + 1) % 3 }); // same shape and count, other labels
    let r = await runCli(['train', '--resume', run, '--epochs', '2', ...fast]);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.ok(msg.includes(store) && msg.includes(run), msg);
    assert.match(msg, /changed since this run started/);
    assert.deepEqual(epochsLogged(run), [1]);
    r = await runCli(['train', '--resume', run, '--epochs', '2', '--force', ...fast]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(epochsLogged(run), [1, 2]);
    // The new contents are the run's from now on: resuming again needs no --force.
    r = await runCli(['train', '--resume', run, '--epochs', '3', ...fast]);
    assert.equal(r.code, 0, r.stderr);
  } finally { cleanup(); }
});

test('clear error: resuming a run trained on .npy files that were rewritten says the data changed', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const run = join(dir, 'run');
    const write = (k: number) => py(`
import numpy as np, sys
rng = np.random.default_rng(int(sys.argv[3])); np.save(sys.argv[1], rng.normal(size=(200, 5)).astype(np.float32)); np.save(sys.argv[2], rng.integers(0, 2, 200))
`, [join(dir, 'x.npy'), join(dir, 'y.npy'), String(k)]);
    write(0);
    assert.equal((await runCli(['train', '--x', join(dir, 'x.npy'), '--y', join(dir, 'y.npy'), '--model', 'mlp', '--epochs', '1', '--out', run, ...fast])).code, 0);
    await new Promise((r) => setTimeout(r, 20)); // a visible modification time step
    write(1);
    const r = await runCli(['train', '--resume', run, '--epochs', '2', ...fast]);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /x\.npy.*changed since this run started/);
  } finally { cleanup(); }
});

test('correct: a run killed before its first checkpoint is resumed from scratch with its saved options, saying so', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's'), run = join(dir, 'run');
    await imageStore(store, { n: 20000, h: 16, w: 16 });
    const child = spawn(process.execPath, [BIN, 'train', store, '--model', 'cnn', '--epochs', '2', '--batch', '64', '--seed', '5', '--out', run, ...fast], { stdio: 'ignore' });
    const closed = new Promise((r) => child.on('close', r));
    const t0 = Date.now();
    while (!existsSync(join(run, 'run.json')) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    await closed;
    assert.ok(existsSync(join(run, 'run.json')), 'the kill should hit a started run');
    assert.equal(existsSync(join(run, 'model', 'state.json')), false, 'killed before its first checkpoint (the machine was too fast for this fixture)');
    // Cut down the work of the rerun by changing only what may change: the epochs.
    const r = await runCli(['train', '--resume', run, '--epochs', '1', ...fast]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /no checkpoint yet .* starting it from scratch with its saved options/);
    assert.match(r.stderr, /training cnn .* batch 64/);
    assert.deepEqual(epochsLogged(run), [1]);
    assert.equal(runJson(run).seed, 5);
  } finally { cleanup(); }
});

test('clear error: --resume of a folder with no run.json, and --out naming another folder than --resume', async () => {
  const { dir, cleanup } = tempDir();
  try {
    let r = await runCli(['train', '--resume', join(dir, 'nothing')]);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /run\.json is missing/);
    r = await runCli(['train', '--resume', join(dir, 'a'), '--out', join(dir, 'b')]);
    assert.equal(r.code, 2, "conflicting flags are a usage error");
    assert.match(errorLine(r.stderr), /different run folders/);
    r = await runCli(['train', join(dir, 'a'), '--force']);
    assert.equal(r.code, 2, "conflicting flags are a usage error");
    assert.match(errorLine(r.stderr), /--force goes with --resume/);
  } finally { cleanup(); }
});

// ---------------------------------------------------------------- 5. models fit the data or say why before training

test('correct: --model mlp trains on a CSV store of flat features and learns its rule', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await csvStore(dir, store);
    const r = await runCli(['train', store, '--model', 'mlp', '--epochs', '3', '--batch', '32', '--out', join(dir, 'run'), ...fast]);
    assert.equal(r.code, 0, r.stderr);
    const m = /final epoch 3: loss [\d.]+, accuracy ([\d.]+)/.exec(r.stdout);
    assert.ok(m && Number(m[1]) > 0.7, r.stdout);
  } finally { cleanup(); }
});

test('correct: --model mlp trains on an (N, F) .npy pair given with --x/--y', async () => {
  const { dir, cleanup } = tempDir();
  try {
    py(`
import numpy as np, sys
rng = np.random.default_rng(1); X = rng.normal(size=(400, 10)).astype(np.float32); y = (X[:, 3] > 0).astype(np.int64)
np.save(sys.argv[1], X); np.save(sys.argv[2], y)
`, [join(dir, 'x.npy'), join(dir, 'y.npy')]);
    const r = await runCli(['train', '--x', join(dir, 'x.npy'), '--y', join(dir, 'y.npy'), '--model', 'mlp', '--epochs', '2', '--out', join(dir, 'run'), ...fast]);
    assert.equal(r.code, 0, r.stderr);
  } finally { cleanup(); }
});

test('clear error: cnn (the default) and two-branch on flat features name the mlp model and the data, before a run folder exists', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await csvStore(dir, store, 100);
    for (const model of [[], ['--model', 'two-branch']]) {
      const run = join(dir, `run${model.length}`);
      const r = await runCli(['train', store, ...model, '--out', run, ...fast]);
      assert.equal(r.code, 1);
      const msg = errorLine(r.stderr);
      assert.ok(msg.includes(store), msg);
      assert.match(msg, /needs image samples.*shape \[6\].*--model mlp/);
      assert.equal(existsSync(run), false);
    }
  } finally { cleanup(); }
});

test('clear error: the default cnn on 8x8 images states its 10x10 minimum and what to use instead; two-branch (4x4 minimum) trains', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await imageStore(store, { h: 8, w: 8 });
    const r = await runCli(['train', store, '--epochs', '1', '--out', join(dir, 'run'), ...fast]);
    assert.equal(r.code, 1);
    const msg = errorLine(r.stderr);
    assert.doesNotMatch(r.stderr, /memory access out of bounds/);
    assert.ok(msg.includes(store), msg);
    assert.match(msg, /at least 10x10 .* 8x8.*two-branch or mlp.*--resize 10x10/);
    const ok = await runCli(['train', store, '--model', 'two-branch', '--epochs', '1', '--out', join(dir, 'run2'), ...fast]);
    assert.equal(ok.code, 0, ok.stderr);
    const tiny = join(dir, 't');
    await imageStore(tiny, { h: 3, w: 3 });
    const r3 = await runCli(['train', tiny, '--model', 'two-branch', '--epochs', '1', '--out', join(dir, 'run3'), ...fast]);
    assert.equal(r3.code, 1);
    assert.match(errorLine(r3.stderr), /at least 4x4 .* 3x3.*use --model mlp/);
  } finally { cleanup(); }
});

test('clear error: a store of one class is refused for cnn and mlp (no stack, no meaningless 100%)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await imageStore(store, { classes: 1 });
    for (const model of ['cnn', 'mlp']) {
      const r = await runCli(['train', store, '--model', model, '--epochs', '1', '--out', join(dir, `run-${model}`), ...fast]);
      assert.equal(r.code, 1);
      const msg = errorLine(r.stderr);
      assert.ok(msg.includes(store), msg);
      assert.match(msg, /1 class; a classifier needs at least 2/);
      assert.doesNotMatch(r.stdout, /accuracy/);
    }
  } finally { cleanup(); }
});

test('clear error: a train split holding only one of the store\'s classes is refused before training', async () => {
  const { dir, cleanup } = tempDir();
  try {
    const store = join(dir, 's');
    await imageStore(store, { classes: 2, label: () => 1 });
    const r = await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--out', join(dir, 'run'), ...fast]);
    assert.equal(r.code, 1);
    assert.match(errorLine(r.stderr), /all of one class \(c1\)/);
  } finally { cleanup(); }
});

test('clear error: the library refuses the same before building or fitting (buildModel, fit with a user model whose layers shrink 3x3 images to nothing)', async () => {
  const { dir, cleanup } = tempDir();
  try {
    assert.throws(() => buildModel('cnn', { inputShape: [8, 8, 1], classes: 3, source: 'my-data' }), (e: Error) => e.name === 'SlimfitError' && /my-data.*at least 10x10/.test(e.message));
    assert.throws(() => buildModel('mlp', { inputShape: [5], classes: 1 }), (e: Error) => e.name === 'SlimfitError' && /at least 2 classes/.test(e.message));
    assert.throws(() => buildModel('two-branch', { inputShape: [20], classes: 2 }), (e: Error) => e.name === 'SlimfitError' && /--model mlp/.test(e.message));
    assert.equal(buildModel('mlp', { inputShape: [20], classes: 2 }).inputs[0].shape.join(','), ',20');
    const store = join(dir, 's');
    await imageStore(store, { h: 3, w: 3 });
    const m = tfl.sequential();
    m.add(tfl.layers.conv2d({ inputShape: [3, 3, 1], filters: 4, kernelSize: 3 }));
    m.add(tfl.layers.maxPooling2d({ poolSize: 2 }));
    m.add(tfl.layers.flatten());
    m.add(tfl.layers.dense({ units: 3, activation: 'softmax' }));
    await assert.rejects(fit(m, store, { epochs: 1, progress: false, workers: 0 }), (e: Error) => e.name === 'SlimfitError' && /layer '.*max_pooling2d.*too small/.test(e.message));
    const one = join(dir, 'one');
    await imageStore(one, { classes: 1 });
    const m2 = buildModel('mlp', { inputShape: [12, 12, 1], classes: 2 });
    await assert.rejects(fit(m2, one, { epochs: 1, progress: false, workers: 0 }), (e: Error) => e.name === 'SlimfitError' && e.message.includes(one) && /1 class/.test(e.message));
  } finally { cleanup(); }
});

test('correct: the stated minimum image side is the architecture\'s own: at the minimum every layer has output, one pixel less is refused', () => {
  for (const [name, min] of [['cnn', 10], ['two-branch', 4]] as const) {
    const m = buildModel(name, { inputShape: [min, min, 1], classes: 2 });
    for (const layer of m.layers) {
      const shapes = (Array.isArray(layer.outputShape[0]) ? layer.outputShape : [layer.outputShape]) as Array<Array<number | null>>;
      for (const sh of shapes) assert.ok(sh.every((d) => d === null || d >= 1), `${name} at ${min}x${min}: layer ${layer.name} outputs [${sh}]`);
    }
    m.dispose();
    assert.throws(() => buildModel(name, { inputShape: [min, min - 1, 1], classes: 2 }), new RegExp(`at least ${min}x${min}`));
  }
});
