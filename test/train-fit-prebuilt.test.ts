// Library fit/evaluate on a model built before the first fit (the README pattern), with batches large enough that
// moving its weights from tfjs's `cpu` backend onto the wasm heap grows the heap in the middle of a native kernel.
// Each case runs in a fresh child (test/fit-prebuilt-child.ts): only the first backend initialization of a process
// leaves weights behind on `cpu`.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, runCli, tempDir } from '../dev/helpers.ts';
import { makeStore } from './loader-fixtures.ts';

const tmp = tempDir('slimfit-fit-prebuilt-');
const store = join(tmp.dir, 'store');
const CHILD = join(ROOT, 'test', 'fit-prebuilt-child.ts');
// Batch 2048 of 784 features: 1550 and above crashed with "tensor view outside its buffer" before the fix.
const BATCH = '2048';

before(async () => { await makeStore(store, { n: 3200, h: 28, w: 28 }); });
after(() => tmp.cleanup());

async function child(args: string[]): Promise<{ loss: number[]; sameWeights?: boolean; samples?: number; lines?: string[]; stderr: string }> {
  const r = await runCli(args, { script: CHILD, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  return { ...JSON.parse(r.stdout.trim().split('\n').at(-1)!), stderr: r.stderr };
}

test('fit with a model built before fit and batch 2048 trains exactly like the same seeded model built after the backend is up', async () => {
  const r = await child(['fit', store, BATCH]);
  // The backend note as `slimfit train` prints it: on stderr once for the two fits without `log`, to `log` when given.
  const notes = r.stderr.split('\n').filter((l) => l.startsWith('slimfit: backend: '));
  assert.equal(notes.length, 1, r.stderr);
  assert.match(notes[0], /^slimfit: backend: (wasm|cpu)\b.*(engine|TensorFlow\.js)/);
  assert.equal(r.lines![0], notes[0].slice('slimfit: '.length));
  assert.match(r.lines![1], /^train step: /);
  assert.ok(Number.isFinite(r.loss[0]), `loss ${r.loss[0]}`);
  assert.equal(r.loss[0], r.loss[1], 'same loss');
  assert.ok(r.sameWeights, 'same trained weights');
});

test('evaluate with a model built before it and batch 2048 gives the same loss as a model built after', async () => {
  const r = await child(['evaluate', store, BATCH]);
  assert.equal(r.samples, 3200);
  assert.ok(Number.isFinite(r.loss[0]), `loss ${r.loss[0]}`);
  assert.equal(r.loss[0], r.loss[1]);
});

test('trainRun with batch 2048 trains', async () => {
  const r = await child(['trainRun', store, BATCH, join(tmp.dir, 'run')]);
  assert.ok(Number.isFinite(r.loss[0]), `loss ${r.loss[0]}`);
});
