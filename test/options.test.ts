// Library options are checked at the public entry points: each bad value is a SlimfitError naming the function and the
// option (not a RangeError/TypeError from inside, not a silently different run), and the defaults still work.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { SlimfitError } from '../src/core/errors.ts';
import { createLoader, openDataset } from '../src/loader/index.ts';
import { buildModel, evalRun, evaluate, fit, trainRun } from '../src/train/index.ts';
import { runCli, tempDir } from '../dev/helpers.ts';
import { makeStore } from './loader-fixtures.ts';

const tmp = tempDir('slimfit-options-');
const store = join(tmp.dir, 'store');
const csv = join(tmp.dir, 'train.csv');

before(async () => {
  await makeStore(store, { n: 64, h: 8, w: 8, classes: 4 });
  writeFileSync(csv, 'a,b,label\n1,2,0\n');
});
after(() => tmp.cleanup());

const model = () => buildModel('mlp', { inputShape: [8, 8, 1], classes: 4 });

/** `fn` must throw a SlimfitError whose message matches `re` (the option's name and what it must be). */
async function refuses(fn: () => unknown, re: RegExp): Promise<void> {
  await assert.rejects(async () => { await fn(); }, (e: unknown) => {
    assert.ok(e instanceof SlimfitError, `a SlimfitError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
    assert.match(e.message, re);
    assert.doesNotMatch(e.message, /undefined\/undefined|-4503599627370496/);
    return true;
  });
}

const LOADER_BAD: Array<[string, Record<string, unknown>, RegExp]> = [
  ['batchSize -1', { batchSize: -1 }, /option batchSize must be a whole number >= 1, got -1$/],
  ["batchSize 'abc'", { batchSize: 'abc' }, /option batchSize must be a whole number >= 1, got 'abc'/],
  ['batchSize 0', { batchSize: 0 }, /option batchSize .* got 0/],
  ['batchSize 1.5', { batchSize: 1.5 }, /option batchSize .* got 1\.5/],
  ["shuffle 'yes'", { shuffle: 'yes' }, /option shuffle must be 'global', 'block', 'shard' or false, got 'yes'/],
  ['workers -2', { workers: -2 }, /option workers must be a whole number >= 0, got -2/],
  ["seed 'x'", { seed: 'x' }, /option seed must be a whole number, got 'x'/],
  ["normalize 'minmax'", { normalize: 'minmax' }, /option normalize must be 'stats', false or \{ scale, shift \}.*got 'minmax'/],
  ["oneHot 'yes'", { oneHot: 'yes' }, /option oneHot must be true, false or a number of classes, got 'yes'/],
  ["io 'fast'", { io: 'fast' }, /option io must be 'auto', 'pread' or 'mmap'/],
  ['noise -1', { noise: -1 }, /option noise must be a number >= 0/],
  ['rank 2 of worldSize 2', { rank: 2, worldSize: 2 }, /option rank 2 must be below worldSize 2/],
  ['misspelt batchsize', { batchsize: 64 }, /unknown option 'batchsize'; did you mean 'batchSize'\?/],
];

for (const [what, opts, re] of LOADER_BAD) {
  test(`createLoader refuses ${what}`, async () => {
    const ds = await openDataset(store);
    try {
      await refuses(() => createLoader(ds.split('train'), opts), new RegExp(`^createLoader: ${re.source}`));
    } finally { await ds.close(); }
  });
  test(`fit refuses ${what}`, async () => {
    const m = model();
    try {
      await refuses(() => fit(m, store, { epochs: 1, progress: false, ...opts }), new RegExp(`^fit: ${re.source}`));
    } finally { m.dispose(); }
  });
}

const FIT_BAD: Array<[string, Record<string, unknown>, RegExp]> = [
  ["epochs 'abc'", { epochs: 'abc' }, /^fit: option epochs must be a whole number >= 1, got 'abc'$/],
  ['epochs -1', { epochs: -1 }, /option epochs .* got -1/],
  ['epochs 1.5', { epochs: 1.5 }, /option epochs .* got 1\.5/],
  ['lr -1', { lr: -1 }, /option lr must be a number > 0, got -1/],
  ["lr 'abc'", { lr: 'abc' }, /option lr must be a number > 0, got 'abc'/],
  ['validationSplit 2', { validationSplit: 2 }, /option validationSplit must be a number >= 0 and < 1, got 2/],
  ['validationSplit -0.5', { validationSplit: -0.5 }, /option validationSplit .* got -0\.5/],
  ["optimizer 'adamw'", { optimizer: 'adamw' }, /option optimizer must be 'adam', 'sgd', 'rmsprop' or 'momentum'/],
  ["validate 'no'", { validate: 'no' }, /option validate must be true or false/],
];
for (const [what, opts, re] of FIT_BAD) {
  test(`fit refuses ${what}`, async () => {
    const m = model();
    try { await refuses(() => fit(m, store, { progress: false, ...opts }), re); } finally { m.dispose(); }
  });
}

test('fit and evaluate refuse what is not a model or data', async () => {
  await refuses(() => fit({} as never, store), /^fit: the model must be a tf\.LayersModel/);
  const m = model();
  try {
    await refuses(() => fit(m, 42 as never), /^fit: the data must be a store folder path.*got 42$/);
    await refuses(() => evaluate(m, 42 as never), /^evaluate: the data must be/);
    await refuses(() => evaluate(m, store, { batchSize: 0 }), /^evaluate: option batchSize must be a whole number >= 1, got 0/);
    await refuses(() => evaluate(m, store, { splt: 'test' } as never), /^evaluate: unknown option 'splt'/);
  } finally { m.dispose(); }
});

test('buildModel refuses unknown names and bad specs', async () => {
  await refuses(() => buildModel('resnet' as never, { inputShape: [8, 8, 1], classes: 4 }), /^buildModel: option name must be 'mlp', 'cnn' or 'two-branch', got 'resnet'/);
  await refuses(() => (buildModel as (n: string) => unknown)('mlp'), /^buildModel: a spec is needed/);
  await refuses(() => buildModel('mlp', { inputShape: [8, 8, 1] } as never), /option classes .* is missing/);
  await refuses(() => buildModel('mlp', { inputShape: '8x8', classes: 4 } as never), /option inputShape must be/);
  await refuses(() => buildModel('mlp', { inputShape: [8, 8, 1], classes: 'ten' } as never), /option classes must be a whole number/);
});

test('trainRun and evalRun check their options before any work', async () => {
  await refuses(() => trainRun(store, { epochs: 0, log: () => {} }), /^trainRun: option epochs must be a whole number >= 1, got 0/);
  await refuses(() => trainRun(store, { valFraction: 1.5, log: () => {} }), /^trainRun: option valFraction/);
  await refuses(() => trainRun(store, { batchsize: 8 } as never), /^trainRun: unknown option 'batchsize'; did you mean 'batchSize'/);
  await refuses(() => evalRun(join(tmp.dir, 'run'), store, { batchSize: -1 }), /^evalRun: option batchSize/);
});

test('lrDecay above 1 is refused by the option checks of trainRun and fit, before a run folder is written', async () => {
  // The loop only accepts (0, 1]; refusing later would leave a run.json and log.jsonl behind for a run that never trained.
  const out = join(tmp.dir, 'decay-run');
  await refuses(() => trainRun(store, { model: 'mlp', lrDecay: 1.5, out, epochs: 1, progress: false, log: () => {} }), /^trainRun: option lrDecay must be a number > 0 and <= 1, got 1\.5/);
  assert.equal(existsSync(out), false, 'no run folder');
  const m = model();
  try {
    await refuses(() => fit(m, store, { lrDecay: 2, progress: false }), /^fit: option lrDecay must be a number > 0 and <= 1, got 2/);
  } finally { m.dispose(); }
});

test('openDataset, info and verify on a file instead of a store folder say so in one sentence', async () => {
  await refuses(() => openDataset(csv), /train\.csv: is a file, not a slimfit store folder/);
  await refuses(() => openDataset(store, { verify: false } as never), /^openDataset: unknown option 'verify'/);
  for (const cmd of ['info', 'verify']) {
    const r = await runCli([cmd, csv]);
    assert.equal(r.code, 1, `${cmd}: ${r.stderr}`);
    assert.match(r.stderr, /^slimfit: error: .*train\.csv: is a file, not a slimfit store folder/m);
    assert.doesNotMatch(r.stderr, /ENOTDIR|^\s+at /m);
  }
});

test('the defaults and good values still work: createLoader, fit, evaluate', async () => {
  const ds = await openDataset(store);
  try {
    for (const opts of [{}, { batchSize: 16, shuffle: false as const, seed: -3, workers: 0, normalize: { scale: 1 / 255, shift: 0 }, oneHot: true, io: 'pread' as const }]) {
      const l = createLoader(ds.split('train'), opts);
      let n = 0;
      for await (const b of l) n += b.n;
      await l.close();
      assert.equal(n, 64);
    }
  } finally { await ds.close(); }
  const m = model();
  try {
    const h = await fit(m, store, { epochs: 2, batchSize: 16, progress: false, lr: 1e-3, validationSplit: 0.25, workers: 0 });
    assert.equal(h.epochs.length, 2);
    assert.ok(Number.isFinite(h.epochs[1].loss));
    const e = await evaluate(m, store, { split: 'train' });
    assert.equal(e.samples, 64);
  } finally { m.dispose(); }
});
