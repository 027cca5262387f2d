// `slimfit train / eval / show` end to end on a small real-MNIST store: run folder contents, resume, errors.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MNIST_DIR, py, runCli, tempDir } from '../dev/helpers.ts';
import { DEFAULTS } from '../src/train/defaults.ts';

const tmp = tempDir('slimfit-train-cli-');
const store = join(tmp.dir, 'store');

before(async () => {
  // 1000 real MNIST digits as plain .npy, then a store with train/val/test splits made by `slimfit convert`.
  py(`
import numpy as np, sys
d = sys.argv[1]; out = sys.argv[2]
x = np.fromfile(d + '/train-images-idx3-ubyte', dtype=np.uint8, offset=16, count=1000*784).reshape(1000, 28, 28, 1)
y = np.fromfile(d + '/train-labels-idx1-ubyte', dtype=np.uint8, offset=8, count=1000)
np.save(out + '/x.npy', x); np.save(out + '/y.npy', y)
`, [MNIST_DIR, tmp.dir]);
  const r = await runCli(['convert', store, '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--split', 'train=0.75,val=0.125,test=0.125', '-q']);
  assert.equal(r.code, 0, r.stderr);
});
after(() => tmp.cleanup());

const isPng = (p: string) => readFileSync(p).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

test('train writes a complete run folder: log.jsonl per epoch, checkpoint with cursor, report.md with PNG/SVG plots, test accuracy', async () => {
  const out = join(tmp.dir, 'runA');
  const counts = JSON.parse(readFileSync(join(store, 'dataset.json'), 'utf8')).splits;
  const r = await runCli(['train', store, '--model', 'mlp', '--epochs', '3', '--batch', '64', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /backend: (wasm|cpu)/);
  assert.match(r.stderr, /validating on .*:val/);
  const m = /test accuracy ([\d.]+)% on (\d+) samples/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.equal(Number(m[2]), counts.test.samples);
  assert.ok(Number(m[1]) > 75, `test accuracy ${m[1]}%`);
  const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(log.map((e) => e.epoch), [1, 2, 3]);
  assert.ok(log.every((e) => e.samples === counts.train.samples && e.valAccuracy > 0.5));
  // No tensor growth from epoch to epoch of a store-fed run.
  assert.ok(log.every((e) => e.numTensors === log[0].numTensors), `numTensors ${log.map((e) => e.numTensors)}`);
  const state = JSON.parse(readFileSync(join(out, 'model', 'state.json'), 'utf8'));
  assert.equal(state.epochsDone, 3);
  assert.equal(state.cursor.epoch, 3);
  assert.equal(state.cursor.position, 0);
  for (const f of ['loss.png', 'accuracy.png', 'confusion-test.png']) assert.ok(isPng(join(out, f)), f);
  for (const f of ['loss.svg', 'accuracy.svg', 'confusion-test.svg', 'model/model.json', 'model/weights.bin']) assert.ok(existsSync(join(out, f)), f);
  const report = readFileSync(join(out, 'report.md'), 'utf8');
  assert.match(report, new RegExp(`\\| 3 \\| [\\d.e-]+ \\| [\\d.]+ \\| [\\d.]+ \\| [\\d.]+ \\| [\\d.]+ \\| ${counts.train.samples} \\|`));
  assert.match(report, /!\[confusion matrix\]\(confusion-test\.png\)/);

  const ev = await runCli(['eval', out, store, '--split', 'test']);
  assert.equal(ev.code, 0, ev.stderr);
  assert.ok(ev.stdout.includes(`accuracy ${m[1]}%`), `eval agrees with the run's own test evaluation: ${ev.stdout}`);
  assert.match(ev.stderr, new RegExp(`samples, batch ${DEFAULTS.evalBatchSize}\n`));
  const ev32 = await runCli(['eval', out, store, '--split', 'test', '--batch', '32', '--out', join(tmp.dir, 'ev32')]);
  assert.equal(ev32.code, 0, ev32.stderr);
  assert.match(ev32.stderr, /samples, batch 32\n/, '--batch is honored, whatever its size');
  assert.ok(ev32.stdout.includes(`accuracy ${m[1]}%`), `the batch size does not change the accuracy: ${ev32.stdout}`);
  assert.ok(isPng(join(out, 'eval-test-confusion.png')));
  const md = readFileSync(join(out, 'eval-test-confusion.md'), 'utf8');
  const cells = md.split('\n').filter((l) => /^\| \*\*\d\*\*/.test(l)).map((l) => l.split('|').slice(2, 12).map(Number));
  assert.equal(cells.length, 10);
  assert.equal(cells.flat().reduce((a, b) => a + b, 0), counts.test.samples);
});

test('--resume after epoch 1 continues from the checkpoint and loader cursor and ends with the same weights as an uninterrupted run', async () => {
  const full = join(tmp.dir, 'full'), part = join(tmp.dir, 'part');
  const common = ['--model', 'two-branch', '--batch', '100', '--seed', '3', '--lr-decay', '0.5', '--shift', '1', '--no-test'];
  // Plain tfjs kernels (single-threaded, deterministic): this checks the checkpoint/cursor/optimizer logic, not whether
  // a multi-threaded native engine (or one rebuilt between the runs) sums in the same order.
  const env = { SLIMFIT_DISABLE: 'engine' };
  let r = await runCli(['train', store, ...common, '--epochs', '2', '--out', full], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /fast engine disabled by SLIMFIT_DISABLE=engine/);
  r = await runCli(['train', store, ...common, '--epochs', '1', '--out', part], { env });
  assert.equal(r.code, 0, r.stderr);
  const mid = JSON.parse(readFileSync(join(part, 'model', 'state.json'), 'utf8'));
  assert.deepEqual([mid.cursor.epoch, mid.cursor.position], [1, 0]);
  r = await runCli(['train', '--resume', part, '--epochs', '2'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /resuming .* after epoch 1/);
  const a = readFileSync(join(full, 'model', 'weights.bin')), b = readFileSync(join(part, 'model', 'weights.bin'));
  assert.equal(a.length, b.length);
  assert.ok(a.equals(b), 'weights (and Adam state) of the resumed run equal the uninterrupted run bit for bit');
  const la = readFileSync(join(full, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const lb = readFileSync(join(part, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lb.map((e) => [e.epoch, e.loss]), la.map((e) => [e.epoch, e.loss]));
  assert.deepEqual(lb.map((e) => e.lr), [1e-3, 5e-4], 'the per-epoch learning-rate decay continues after resume');
});

test('without a validation split, train holds out 10% of the samples at random (--val-fraction; 0 = none)', async () => {
  const files = ['--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--model', 'mlp', '--epochs', '1', '--batch', '100'];
  const out = join(tmp.dir, 'held'), none = join(tmp.dir, 'noval');
  let r = await runCli(['train', ...files, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /: 900 samples,.*validating on .*held-out 10%: 100 samples/);
  const [e] = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(e.samples, 900);
  assert.ok(e.valAccuracy > 0.5, `held-out accuracy ${e.valAccuracy}`);
  assert.equal(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).valFraction, 0.1, 'recorded for --resume');
  r = await runCli(['train', ...files, '--val-fraction', '0', '--out', none]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /: 1000 samples,.*no validation/);
  r = await runCli(['train', ...files, '--val-fraction', '1', '--out', join(tmp.dir, 'bad')]);
  assert.equal(r.code, 2, "a flag value that cannot be used is a usage error");
  assert.match(r.stderr, /slimfit: error: --val-fraction must be a number from 0 up to/);
});

test('show writes a PNG grid of labelled samples', async () => {
  const out = join(tmp.dir, 'grid.png');
  const r = await runCli(['show', store, '--split', 'train', '-n', '16', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(isPng(out));
  const b = readFileSync(out);
  const w = b.readUInt32BE(16), h = b.readUInt32BE(20);
  assert.ok(w >= 4 * 84 && h >= 4 * 84, `${w}x${h}`);
});

test('a user model.json trains; bad model file, missing split, label count not matching the model output: clear errors, exit 1', async () => {
  const bad = join(tmp.dir, 'bad.json');
  writeFileSync(bad, '{"modelTopology": ');
  let r = await runCli(['train', store, '--model', bad, '--out', join(tmp.dir, 'e1')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /slimfit: error: .*bad\.json: the model file is not valid JSON/);
  assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, 'no stack trace');

  r = await runCli(['train', store, '--split', 'nope', '--out', join(tmp.dir, 'e2')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /slimfit: error: .*no split 'nope'.*train, val, test|slimfit: error: .*no split 'nope'.*(train|val|test)/);

  // A user model with 5 outputs against 10 classes.
  const five = join(tmp.dir, 'five');
  const script = join(tmp.dir, 'five.mts');
  writeFileSync(script, `
import { initBackend } from ${JSON.stringify(join(process.cwd(), 'src/train/backend.ts'))};
import { buildModel } from ${JSON.stringify(join(process.cwd(), 'src/train/models.ts'))};
import { saveModel } from ${JSON.stringify(join(process.cwd(), 'src/train/modelio.ts'))};
await initBackend();
await saveModel(buildModel('mlp', { inputShape: [28, 28, 1], classes: 5 }), ${JSON.stringify(five)});
const ten = buildModel('two-branch', { inputShape: [28, 28, 1], classes: 10 });
ten.compile({ optimizer: 'sgd', loss: 'sparseCategoricalCrossentropy' });
await saveModel(ten, ${JSON.stringify(join(tmp.dir, 'ten'))});
`);
  const { spawnSync } = await import('node:child_process');
  const s = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8' });
  assert.equal(s.status, 0, s.stderr);
  r = await runCli(['train', store, '--model', join(five, 'model.json'), '--out', join(tmp.dir, 'e3')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /slimfit: error: .*the model outputs 5 classes but the data has 10/);
  // A valid user model.json (saved with its own training config) trains with the run's flags.
  r = await runCli(['train', store, '--model', join(tmp.dir, 'ten', 'model.json'), '--epochs', '1', '--out', join(tmp.dir, 'e4')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /test accuracy [\d.]+%/);
  r = await runCli(['eval', five, store]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the model outputs 5 classes but the data has 10/);
});
