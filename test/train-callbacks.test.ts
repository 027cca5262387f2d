// Keras-style callbacks in the training loop: early stopping stops where the validation loss turned up and puts back
// the best epoch's weights, learning-rate schedules give the rates they promise, user callbacks see every hook in
// order with logs, reduce-LR-on-plateau lowers the rate, bad schedule strings are SlimfitErrors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend } from '../src/train/backend.ts';
import { buildModel } from '../src/train/models.ts';
import { compileDefault, type EpochLog, trainEpochs } from '../src/train/loop.ts';
import { earlyStopping, keepBest, reduceLrOnPlateau } from '../src/train/callbacks.ts';
import { lrFactor, parseLrSchedule } from '../src/train/schedule.ts';
import { memLoader, mnistSlice } from './train-helpers.ts';

const SHAPE = [28, 28, 1];

/** Bytes of every weight of the model, concatenated. */
function weightBytes(m: tfl.LayersModel): Buffer {
  return Buffer.concat(m.getWeights().map((w) => { const d = w.dataSync() as Float32Array; return Buffer.from(d.buffer, d.byteOffset, d.byteLength); }));
}

/**
 * 100 training digits the mlp memorizes, and 300 validation digits of which 1 in 5 carries a wrong label: the
 * validation loss falls for ~5 epochs while the model learns what generalizes, then rises as it grows confident.
 */
function overfitData() {
  const tr = mnistSlice(100, 20000);
  const va = mnistSlice(300, 21000);
  for (let i = 0; i < va.y.length; i++) if (i % 5 === 0) va.y[i] = (va.y[i] + 1 + (i % 9)) % 10;
  return { train: () => memLoader(tr.x, tr.y, SHAPE, { batchSize: 20, seed: 1 }), val: () => memLoader(va.x, va.y, SHAPE, { batchSize: 100, shuffle: false }) };
}

test('early stopping stops after `patience` epochs without a lower val_loss and restores the best epoch\'s weights; keep-best saved that epoch', async () => {
  await initBackend();
  const d = overfitData();
  const model = buildModel('mlp', { inputShape: SHAPE, classes: 10, seed: 4 });
  compileDefault(model, 'adam', 5e-4);
  const perEpoch: Buffer[] = [];
  const saves: number[] = [];
  const es = earlyStopping({ monitor: 'val_loss', patience: 2, restoreBestWeights: true });
  const h = await trainEpochs(model, d.train(), {
    epochs: 30, progress: false, validation: d.val(),
    callbacks: [es, keepBest({ save: async (_m, epoch) => { saves.push(epoch); } }), { onEpochEnd: async () => { perEpoch.push(weightBytes(model)); } }],
  });
  const vl = h.epochs.map((e) => e.valLoss!);
  // The reference: Keras's rule applied to the losses the run logged.
  let best = Infinity, bestEpoch = 0, wait = 0, stop = 0;
  for (let i = 0; i < vl.length && !stop; i++) {
    if (vl[i] < best) { best = vl[i]; bestEpoch = i + 1; wait = 0; } else if (++wait >= 2) stop = i + 1;
  }
  assert.ok(stop > 0 && stop < 30, `val_loss ${vl.map((v) => v.toFixed(3))} turned up and training stopped early (at ${stop})`);
  assert.equal(h.epochs.length, stop, `stopped after epoch ${stop}`);
  assert.equal(stop, bestEpoch + 2);
  assert.ok(bestEpoch > 1, `val_loss first fell (best epoch ${bestEpoch})`);
  const last = h.epochs[stop - 1];
  assert.deepEqual(last.stoppedEarly, { monitor: 'val_loss', best, bestEpoch, restoredEpoch: bestEpoch });
  assert.equal(last.restoredEpoch, bestEpoch);
  assert.ok(weightBytes(model).equals(perEpoch[bestEpoch - 1]), 'the model holds the best epoch\'s weights');
  assert.ok(!weightBytes(model).equals(perEpoch[stop - 1]), 'not the last epoch\'s');
  assert.equal(saves[saves.length - 1], bestEpoch, 'keep-best saved last at the best epoch');
  assert.deepEqual(h.epochs.filter((e) => e.bestSaved).map((e) => e.epoch), saves);
  assert.deepEqual(es.getState(), { best, bestEpoch, wait: 2, stoppedEpoch: stop, lastEpoch: stop });

  // tfjs's own early stopping works through the same hooks and stops at the same epoch.
  const m2 = buildModel('mlp', { inputShape: SHAPE, classes: 10, seed: 4 });
  compileDefault(m2, 'adam', 5e-4);
  const h2 = await trainEpochs(m2, d.train(), { epochs: 30, progress: false, validation: d.val(), callbacks: [tfl.callbacks.earlyStopping({ monitor: 'val_loss', patience: 2 })] });
  assert.equal(h2.epochs.length, stop);
  model.dispose(); m2.dispose();
});

test('learning-rate schedules: step, exp and cosine with warm-up per epoch and per batch, times lrDecay, read back from the optimizer and the log', async () => {
  await initBackend();
  const tr = mnistSlice(60, 30000);
  const run = async (lrSchedule: string, lrDecay = 1) => {
    const model = buildModel('mlp', { inputShape: SHAPE, classes: 10, seed: 1 });
    compileDefault(model, 'sgd', 0.1);
    const perBatch: number[][] = [];
    const h = await trainEpochs(model, memLoader(tr.x, tr.y, SHAPE, { batchSize: 20 }), {
      epochs: 4, progress: false, lr: 0.1, lrDecay, lrSchedule,
      callbacks: {
        onEpochBegin: async () => { perBatch.push([]); },
        onBatchEnd: async (_b, logs) => { perBatch[perBatch.length - 1].push((model.optimizer as unknown as { learningRate: number }).learningRate); assert.equal(logs!.lr, perBatch.at(-1)!.at(-1)); },
      },
    });
    model.dispose();
    return { epochs: h.epochs.map((e: EpochLog) => e.lr!), perBatch };
  };
  const close = (a: number[], b: number[], what: string) => { assert.equal(a.length, b.length, what); a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-12, `${what}: ${a} vs ${b}`)); };
  let r = await run('step:2:0.5');
  close(r.epochs, [0.1, 0.1, 0.05, 0.05], 'step per epoch');
  r.perBatch.forEach((lrs, e) => close(lrs, [r.epochs[e], r.epochs[e], r.epochs[e]], 'constant within an epoch'));
  r = await run('exp:0.5', 0.9);
  close(r.epochs, [0, 1, 2, 3].map((e) => 0.1 * 0.9 ** e * 0.5 ** e), 'exp composed with lrDecay');
  r = await run('cosine:1');
  close(r.epochs, [0.1, 0.1, 0.1 * (1 + Math.cos(Math.PI / 3)) / 2, 0.1 * (1 + Math.cos(2 * Math.PI / 3)) / 2], 'cosine after 1 warm-up epoch');
  r = await run('cosine:1@batch');
  close(r.perBatch.flat(), [0.1 / 3, 0.2 / 3, 0.1, ...[0, 1, 2, 3, 4, 5, 6, 7, 8].map((k) => 0.1 * (1 + Math.cos(Math.PI * k / 9)) / 2)], 'cosine per batch: linear warm-up over 3 batches, then 9 batches of cosine');
  close(r.epochs, r.perBatch.map((b) => b[b.length - 1]), 'the log holds the rate of the epoch\'s last batch');
  r = await run('exp:0.5@batch');
  close(r.perBatch[1], [0, 1, 2].map((b) => 0.1 * 0.5 ** (1 + b / 3)), 'exp per batch');
  assert.equal(lrFactor(parseLrSchedule('step:3:0.1'), 6, 0, 10, 10), 0.1 ** 2);
  for (const bad of ['step:0:0.5', 'step:2', 'exp:2', 'cosine:-1', 'linear:1', 'cosine:1@hour']) {
    assert.throws(() => parseLrSchedule(bad), (e: Error) => e.name === 'SlimfitError' && e.message.startsWith(`--lr-schedule '${bad}'`), bad);
  }
});

test('a user CustomCallback and a callback config object get every hook in order, with Keras-named logs', async () => {
  await initBackend();
  const tr = mnistSlice(50, 40000), va = mnistSlice(20, 41000);
  const model = buildModel('mlp', { inputShape: SHAPE, classes: 10, seed: 1 });
  compileDefault(model);
  const events: string[] = [];
  const seen: Array<Record<string, number> | undefined> = [];
  const custom = new tfl.CustomCallback({
    onTrainBegin: async () => { events.push('trainBegin'); },
    onEpochBegin: async (e) => { events.push(`epochBegin ${e}`); },
    onBatchBegin: async (b) => { events.push(`batchBegin ${b}`); },
    onBatchEnd: async (b, logs) => { events.push(`batchEnd ${b}`); assert.ok(logs!.loss > 0 && logs!.size === (b < 2 ? 20 : 10)); },
    onEpochEnd: async (e, logs) => { events.push(`epochEnd ${e}`); seen.push(logs); },
    onTrainEnd: async () => { events.push('trainEnd'); },
  });
  const plain: string[] = [];
  let yields = 0, clock = 0; // tfjs yields at most every 125 ms of nowFunc time: each reading here is 1 s later
  const h = await trainEpochs(model, memLoader(tr.x, tr.y, SHAPE, { batchSize: 20 }), {
    epochs: 2, progress: false, validation: memLoader(va.x, va.y, SHAPE, { batchSize: 20 }),
    callbacks: [custom, { onEpochEnd: (e) => { plain.push(`epochEnd ${e}`); }, onYield: () => { yields++; }, nowFunc: () => (clock += 1000) }],
  });
  const batches = ['batchBegin 0', 'batchEnd 0', 'batchBegin 1', 'batchEnd 1', 'batchBegin 2', 'batchEnd 2'];
  assert.deepEqual(events, ['trainBegin', 'epochBegin 0', ...batches, 'epochEnd 0', 'epochBegin 1', ...batches, 'epochEnd 1', 'trainEnd']);
  assert.deepEqual(plain, ['epochEnd 0', 'epochEnd 1']);
  assert.equal(yields, 6, 'a config object with onYield is called after batches as model.fit would (yieldEvery auto)');
  seen.forEach((logs, i) => assert.deepEqual(logs, { loss: h.epochs[i].loss, acc: h.epochs[i].accuracy, val_loss: h.epochs[i].valLoss, val_acc: h.epochs[i].valAccuracy, lr: h.epochs[i].lr }));
  model.dispose();
});

test('reduce-LR-on-plateau multiplies the rate by factor after patience epochs without improvement, not below minLr, and the loop uses it', async () => {
  const cb = reduceLrOnPlateau({ monitor: 'val_loss', factor: 0.5, patience: 2, minLr: 0.02 });
  const seq = [1, 0.9, 0.95, 0.91, 0.89, 0.9, 0.9, 0.9, 0.9];
  const scales: number[] = [];
  for (const [i, v] of seq.entries()) { await cb.onEpochEnd(i, { val_loss: v }); scales.push(cb.lrScale); }
  assert.deepEqual(scales, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125]);
  await assert.rejects(cb.onEpochEnd(9, { loss: 1 }), /reduce-LR-on-plateau watches 'val_loss' but the epoch logged only loss/);

  await initBackend();
  const tr = mnistSlice(40, 50000);
  const model = buildModel('mlp', { inputShape: SHAPE, classes: 10, seed: 1 });
  compileDefault(model, 'sgd', 0.1);
  // monitor 'acc' in mode 'min': accuracy keeps rising, so it "never improves" and the rate halves every epoch down to minLr.
  const h = await trainEpochs(model, memLoader(tr.x, tr.y, SHAPE, { batchSize: 20 }), {
    epochs: 5, progress: false, lr: 0.1, callbacks: [reduceLrOnPlateau({ monitor: 'acc', mode: 'min', factor: 0.5, patience: 0, minDelta: 10, minLr: 0.02 })],
  });
  assert.deepEqual(h.epochs.map((e) => e.lr), [0.1, 0.1, 0.05, 0.025, 0.02]);
  model.dispose();
});
