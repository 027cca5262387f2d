// The library one-liners: fit(model, data) and evaluate(model, data) from a store directory and from plain .npy / .npz files.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CustomCallback } from '@tensorflow/tfjs-layers';
import { buildModel, earlyStopping, evaluate, fit } from '../src/train/index.ts';
import { MNIST_DIR, py, runCli, tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-train-fit-');
const store = join(tmp.dir, 'store');

before(async () => {
  py(`
import numpy as np, sys
d = sys.argv[1]; out = sys.argv[2]
x = np.fromfile(d + '/train-images-idx3-ubyte', dtype=np.uint8, offset=16, count=1500*784).reshape(1500, 28, 28, 1)
y = np.fromfile(d + '/train-labels-idx1-ubyte', dtype=np.uint8, offset=8, count=1500)
np.save(out + '/x.npy', x[:1200]); np.save(out + '/y.npy', y[:1200].astype(np.int64))
np.save(out + '/xt.npy', x[1200:]); np.save(out + '/yt.npy', y[1200:].astype(np.int64))
np.savez(out + '/d.npz', x_train=x[:1200], y_train=y[:1200], x_test=x[1200:], y_test=y[1200:])
`, [MNIST_DIR, tmp.dir]);
  const r = await runCli(['convert', store, '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--split', 'train=0.8,test=0.2', '-q']);
  assert.equal(r.code, 0, r.stderr);
});
after(() => tmp.cleanup());

test('fit(model, storeDir) trains with defaults and evaluate(model, storeDir) streams the test split', async () => {
  const model = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10 });
  const h = await fit(model, store, { epochs: 3, batchSize: 64, progress: false });
  assert.equal(h.epochs.length, 3);
  assert.ok(h.epochs[2].loss < h.epochs[0].loss);
  // No 'val' split in this store: 10% of train is held out at random and validated on after every epoch.
  assert.ok(h.epochs.every((e) => e.valAccuracy !== undefined && e.valLoss !== undefined), 'validation on the held-out part');
  assert.ok(h.epochs[2].valAccuracy! > 0.7, `held-out accuracy ${h.epochs[2].valAccuracy}`);
  const none = await fit(buildModel('mlp', { inputShape: [28, 28, 1], classes: 10 }), store, { epochs: 1, batchSize: 64, progress: false, validationSplit: 0 });
  assert.equal(none.epochs[0].valAccuracy, undefined, 'validationSplit: 0 turns it off');
  const r = await evaluate(model, store);
  assert.ok(r.samples > 200 && r.samples < 280, `test split size ${r.samples}`);
  assert.ok(r.accuracy > 0.8, `accuracy ${r.accuracy}`);
  model.dispose();
});

test('fit takes callbacks and a learning-rate schedule as Keras users pass them: the public earlyStopping, a tfjs CustomCallback, config objects', async () => {
  const model = buildModel('mlp', { inputShape: [28, 28, 1], classes: 10, seed: 2 });
  const seen: string[] = [];
  const custom = new CustomCallback({ onTrainBegin: () => { seen.push('begin'); }, onTrainEnd: () => { seen.push('end'); } });
  // monitor 'val_acc' in mode 'min' with patience 1: accuracy rises, so the second epoch is no improvement and training stops there.
  const h = await fit(model, store, {
    epochs: 6, batchSize: 64, progress: false, lrSchedule: 'step:1:0.5', lr: 0.002,
    callbacks: [custom, earlyStopping({ monitor: 'val_accuracy', mode: 'min', patience: 1 }), { onEpochEnd: (e, logs) => { seen.push(`epoch ${e} val_acc ${logs!.val_acc > 0 ? 'ok' : logs!.val_acc}`); } }],
  });
  assert.deepEqual(seen, ['begin', 'epoch 0 val_acc ok', 'epoch 1 val_acc ok', 'end']);
  assert.equal(h.epochs.length, 2);
  assert.ok(h.epochs[1].valAccuracy! > h.epochs[0].valAccuracy!, 'accuracy rose, which mode min counts as no improvement');
  assert.deepEqual(h.epochs.map((e) => e.lr), [0.002, 0.001]);
  assert.equal(h.epochs[1].stoppedEarly?.bestEpoch, 1);
  model.dispose();
});

test('fit on plain .npy files (int64 labels, classes counted from y) and on an .npz, no conversion', async () => {
  const model = buildModel('cnn', { inputShape: [28, 28, 1], classes: 10 });
  await fit(model, { x: join(tmp.dir, 'x.npy'), y: join(tmp.dir, 'y.npy') }, { epochs: 2, batchSize: 64, progress: false, validationSplit: 0 }); // all samples, as before held-out validation existed
  const r = await evaluate(model, { x: join(tmp.dir, 'xt.npy'), y: join(tmp.dir, 'yt.npy') });
  assert.equal(r.samples, 300);
  assert.ok(r.accuracy > 0.8, `accuracy ${r.accuracy}`);
  const z = await evaluate(model, { npz: join(tmp.dir, 'd.npz'), x: 'x_test', y: 'y_test' });
  assert.equal(z.samples, 300);
  assert.ok(Math.abs(z.accuracy - r.accuracy) < 1e-9, 'same samples through .npz and .npy give the same accuracy');
  model.dispose();
});

test('missing split and wrong model output are clear errors from the API too', async () => {
  const model = buildModel('mlp', { inputShape: [28, 28, 1], classes: 3 });
  await assert.rejects(fit(model, store, { split: 'validation', progress: false }), /no split 'validation'.*train, test/);
  await assert.rejects(fit(model, store, { progress: false }), /the model outputs 3 classes but the data has 10/);
  await assert.rejects(fit(model, join(tmp.dir, 'nope'), { progress: false }), /nope: no such file or directory/);
  model.dispose();
});
