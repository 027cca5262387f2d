// The training loop on real MNIST slices through a Loader: it learns, two-branch is a real two-branch graph,
// tensors do not leak over epochs, a resumed run equals an uninterrupted one, label/model mismatches are clear errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as tfl from '@tensorflow/tfjs-layers';
import { initBackend, tf } from '../src/train/backend.ts';
import { buildModel } from '../src/train/models.ts';
import { compileDefault, evaluateLoader, type LoopState, restoreOptimizerExactly, trainEpochs } from '../src/train/loop.ts';
import type { Cursor } from '../src/loader/types.ts';
import { loadModel, saveModel } from '../src/train/modelio.ts';
import { tempDir } from '../dev/helpers.ts';
import { memLoader, mnistSlice } from './train-helpers.ts';

const SHAPE = [28, 28, 1];
const train = mnistSlice(2000);
const testSet = mnistSlice(1000, 0, 't10k');

test('the loop learns: mlp on 2000 real MNIST digits, 320 steps of 32, reaches far above chance on unseen test digits', async () => {
  await initBackend();
  const model = buildModel('mlp', { inputShape: SHAPE, classes: 10, seed: 1 });
  compileDefault(model, 'adam', 1e-3);
  const before = await evaluateLoader(model, memLoader(testSet.x, testSet.y, SHAPE, { batchSize: 500, shuffle: false }), { progress: false });
  const h = await trainEpochs(model, memLoader(train.x, train.y, SHAPE, { batchSize: 32, seed: 3 }), { epochs: 5, progress: false });
  const after = await evaluateLoader(model, memLoader(testSet.x, testSet.y, SHAPE, { batchSize: 500, shuffle: false }), { progress: false });
  assert.equal(h.epochs.length, 5);
  assert.ok(h.epochs[4].loss < h.epochs[0].loss / 2, `loss fell: ${h.epochs.map((e) => e.loss.toFixed(3))}`);
  assert.ok(before.accuracy < 0.3, `untrained accuracy ${before.accuracy}`);
  assert.ok(after.accuracy > 0.85, `test accuracy after training ${after.accuracy}`);
  assert.equal(after.samples, 1000);
  const total = after.confusion.flat().reduce((a, b) => a + b, 0);
  const diag = after.confusion.reduce((a, row, i) => a + row[i], 0);
  assert.equal(total, 1000);
  assert.equal(diag / total, after.accuracy);
  model.dispose();
});

/** Layers reachable backwards from `t` (names). */
function ancestors(t: tfl.SymbolicTensor, seen = new Set<string>()): Set<string> {
  const layer = t.sourceLayer;
  if (seen.has(layer.name)) return seen;
  seen.add(layer.name);
  for (const node of layer.inboundNodes) for (const inp of node.inputTensors) ancestors(inp, seen);
  return seen;
}

test('two-branch: one input feeds a conv branch and a separate dense branch, concatenated before the output, and it trains', async () => {
  await initBackend();
  const model = buildModel('two-branch', { inputShape: SHAPE, classes: 10, seed: 2 });
  const merge = model.layers.find((l) => l.getClassName() === 'Concatenate');
  assert.ok(merge, 'has a Concatenate layer');
  const inbound = merge.inboundNodes[0].inputTensors;
  assert.equal(inbound.length, 2, 'merges exactly two branches');
  const kinds = inbound.map((t) => [...ancestors(t)].map((n) => model.getLayer(n).getClassName()));
  const convSide = kinds.findIndex((k) => k.includes('Conv2D'));
  assert.ok(convSide >= 0, 'one branch has a convolution');
  const denseSide = kinds[1 - convSide];
  assert.ok(denseSide.includes('Dense') && !denseSide.includes('Conv2D'), `the other branch is dense only: ${denseSide}`);
  for (const k of kinds) assert.ok(k.includes('InputLayer'), 'both branches start at the same input');
  assert.equal(model.inputs.length, 1);
  // The output layer consumes the merge.
  const out = model.outputs[0].sourceLayer;
  assert.equal(out.inboundNodes[0].inputTensors[0].sourceLayer.name, merge.name);
  compileDefault(model);
  const h = await trainEpochs(model, memLoader(train.x, train.y, SHAPE, { batchSize: 64 }), { epochs: 2, progress: false });
  assert.ok(h.epochs[1].loss < h.epochs[0].loss && h.epochs[1].accuracy > 0.7, JSON.stringify(h.epochs));
  model.dispose();
});

test('five epochs leave tf.memory().numTensors flat (no tensor leaks per batch or epoch), with validation', async () => {
  await initBackend();
  const model = buildModel('cnn', { inputShape: SHAPE, classes: 10 });
  compileDefault(model);
  const small = mnistSlice(256, 5000);
  const h = await trainEpochs(model, memLoader(small.x, small.y, SHAPE, { batchSize: 50 }), {
    epochs: 5, progress: false, validation: memLoader(testSet.x.subarray(0, 100 * 784), testSet.y.subarray(0, 100), SHAPE, { batchSize: 40 }),
  });
  const counts = h.epochs.map((e) => e.numTensors);
  assert.ok(counts.every((c) => c === counts[0]), `numTensors per epoch ${counts}`);
  assert.ok(h.epochs.every((e) => e.valAccuracy !== undefined));
  model.dispose();
});

async function weightsOf(m: tfl.LayersModel): Promise<Float32Array[]> {
  return Promise.all(m.getWeights().map(async (w) => (await w.data()) as Float32Array));
}

test('resume: 1 epoch + checkpoint (model, Adam state, loader cursor) + 2 more epochs equals 3 uninterrupted epochs bit for bit', async () => {
  await initBackend();
  const { dir, cleanup } = tempDir();
  try {
    const data = mnistSlice(600, 10000);
    const mk = () => { const m = buildModel('cnn', { inputShape: SHAPE, classes: 10, seed: 7 }); compileDefault(m, 'adam', 2e-3); return m; };
    const a = mk();
    await trainEpochs(a, memLoader(data.x, data.y, SHAPE, { batchSize: 64, seed: 5 }), { epochs: 3, progress: false });

    const b = mk();
    const lb = memLoader(data.x, data.y, SHAPE, { batchSize: 64, seed: 5 });
    let saved: unknown;
    await trainEpochs(b, lb, { epochs: 1, progress: false, onEpochEnd: async (_log, cursor) => { saved = cursor; await saveModel(b, `${dir}/ckpt`); } });
    b.dispose();
    const c = await loadModel(`${dir}/ckpt`);
    assert.ok(c.optimizer, 'optimizer restored from the checkpoint');
    restoreOptimizerExactly(c);
    const lc = memLoader(data.x, data.y, SHAPE, { batchSize: 64, seed: 5 });
    lc.resume(JSON.parse(JSON.stringify(saved)));
    assert.equal(lc.cursor().epoch, 1);
    await trainEpochs(c, lc, { epochs: 3, initialEpoch: 1, progress: false });
    const wa = await weightsOf(a), wc = await weightsOf(c);
    assert.equal(wa.length, wc.length);
    wa.forEach((w, i) => assert.deepEqual(Buffer.from(w.buffer, w.byteOffset, w.byteLength), Buffer.from(wc[i].buffer, wc[i].byteOffset, wc[i].byteLength), `weight ${i} differs`));
    a.dispose(); c.dispose();
  } finally { cleanup(); }
});

test('resume mid-epoch: an abort signal hands onInterrupt the cursor at that batch and the epoch\'s sums; two interruptions (one before any batch) and resumes equal the uninterrupted run bit for bit', async () => {
  await initBackend();
  const { dir, cleanup } = tempDir();
  try {
    const data = mnistSlice(600, 10000); // 10 batches of 64 per epoch (the last one 24)
    const mk = () => { const m = buildModel('cnn', { inputShape: SHAPE, classes: 10, seed: 7 }); compileDefault(m, 'adam', 2e-3); return m; };
    const loader = () => memLoader(data.x, data.y, SHAPE, { batchSize: 64, seed: 5 });
    const opts = { epochs: 3, progress: false, lr: 2e-3, lrSchedule: 'cosine:1@batch' } as const;
    const a = mk();
    const ha = await trainEpochs(a, loader(), opts);

    type Saved = { cursor: Cursor; state: LoopState };
    /** Train `m` from checkpoint `from` (or fresh), aborting after batch `batch` of 0-based epoch `epoch` (or at once); returns the new checkpoint. */
    const run = async (m: tfl.LayersModel, from: Saved | null, stopAt: { epoch: number; batch: number } | 'now') => {
      const stop = new AbortController();
      if (stopAt === 'now') stop.abort();
      const l = loader();
      if (from) l.resume(from.cursor);
      let ep = -1, saved: Saved | null = null;
      const h = await trainEpochs(m, l, {
        ...opts, initialEpoch: from ? from.cursor.epoch : 0, resumeState: from?.state, signal: stop.signal,
        callbacks: { onEpochBegin: (e) => { ep = e; }, onBatchEnd: (b) => { if (stopAt !== 'now' && ep === stopAt.epoch && b === stopAt.batch) stop.abort(); } },
        onInterrupt: async (cursor, state) => { saved = JSON.parse(JSON.stringify({ cursor, state })); await saveModel(m, `${dir}/ckpt`); },
      });
      m.dispose();
      const next = await loadModel(`${dir}/ckpt`);
      restoreOptimizerExactly(next);
      return { h, saved: saved as Saved | null, next };
    };
    // Aborted in the epoch's last batch: that epoch ends normally and the stop comes before the next one.
    const r0 = await run(mk(), null, { epoch: 0, batch: 9 });
    assert.equal(r0.h.epochs.length, 1);
    assert.deepEqual(r0.h.interrupted, { epoch: 2, batchesDone: 0, samplesDone: 0 });
    assert.deepEqual([r0.saved!.cursor.epoch, r0.saved!.cursor.position, r0.saved!.state.partial], [1, 0, undefined]);
    r0.next.dispose();
    const r1 = await run(mk(), null, { epoch: 1, batch: 3 });
    assert.deepEqual(r1.h.interrupted, { epoch: 2, batchesDone: 4, samplesDone: 256 }, 'stopped right after the batch that aborted');
    assert.deepEqual([r1.saved!.cursor.epoch, r1.saved!.cursor.position, r1.saved!.state.partial!.n], [1, 256, 256]);
    assert.equal(r1.h.epochs.length, 1);
    const r2 = await run(r1.next, r1.saved, { epoch: 2, batch: 0 });
    assert.deepEqual(r2.h.interrupted, { epoch: 3, batchesDone: 1, samplesDone: 64 });
    assert.deepEqual(r2.h.epochs.map((e) => [e.epoch, e.loss, e.accuracy, e.samples, e.lr]), [ha.epochs[1]].map((e) => [e.epoch, e.loss, e.accuracy, e.samples, e.lr]), 'epoch 2, split over two runs, logs as in one');
    // Aborted before its first batch: the checkpoint it writes keeps the cursor and the epoch's sums as they were.
    const r3 = await run(r2.next, r2.saved, 'now');
    assert.deepEqual(r3.saved, r2.saved);
    const c = r3.next;
    const l = loader();
    l.resume(r3.saved!.cursor);
    const hc = await trainEpochs(c, l, { ...opts, initialEpoch: 2, resumeState: r3.saved!.state });
    assert.deepEqual(hc.epochs.map((e) => [e.epoch, e.loss, e.accuracy, e.samples, e.lr]), [ha.epochs[2]].map((e) => [e.epoch, e.loss, e.accuracy, e.samples, e.lr]));
    const wa = await weightsOf(a), wc = await weightsOf(c);
    wa.forEach((w, i) => assert.ok(Buffer.from(w.buffer, w.byteOffset, w.byteLength).equals(Buffer.from(wc[i].buffer, wc[i].byteOffset, wc[i].byteLength)), `weight ${i} differs`));
    a.dispose(); c.dispose();
  } finally { cleanup(); }
});

test('labels outside the model output are a clear SlimfitError', async () => {
  await initBackend();
  const model = buildModel('mlp', { inputShape: SHAPE, classes: 5 });
  compileDefault(model);
  await assert.rejects(trainEpochs(model, memLoader(train.x, train.y, SHAPE), { epochs: 1, progress: false }),
    (e: Error) => e.name === 'SlimfitError' && /label \d in batch \d+ of epoch \d+ is outside the model's 5 classes/.test(e.message));
  model.dispose();
  assert.ok(tf.memory().numTensors < 1000);
});
