// `slimfit train A B --weights ...`: several stores mixed, saved in run.json, checked on --resume, resumed mid-epoch
// bit for bit; stores that do not fit together and bad flags are refused.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MNIST_DIR, py, runCli, tempDir } from '../dev/helpers.ts';
import { isSlimfitError } from '../src/core/errors.ts';
import { trainRun } from '../src/train/run.ts';

const tmp = tempDir('slimfit-train-mix-');
const A = join(tmp.dir, 'a'), B = join(tmp.dir, 'b'), FLAT = join(tmp.dir, 'flat'), FIVE = join(tmp.dir, 'five');

before(async () => {
  // Real MNIST digits: A = 600 with train/val/test splits, B = 400 others (train), FLAT = 784-long rows, FIVE = digits 0..4.
  py(`
import numpy as np, sys
d = sys.argv[1]; out = sys.argv[2]
x = np.fromfile(d + '/train-images-idx3-ubyte', dtype=np.uint8, offset=16, count=1200*784).reshape(1200, 28, 28, 1)
y = np.fromfile(d + '/train-labels-idx1-ubyte', dtype=np.uint8, offset=8, count=1200)
np.save(out + '/xa.npy', x[:600]); np.save(out + '/ya.npy', y[:600])
np.save(out + '/xb.npy', x[600:1000]); np.save(out + '/yb.npy', y[600:1000])
np.save(out + '/xf.npy', x[1000:].reshape(-1, 784)); np.save(out + '/yf.npy', y[1000:])
k = y[1000:] < 5
np.save(out + '/x5.npy', x[1000:][k]); np.save(out + '/y5.npy', y[1000:][k])
`, [MNIST_DIR, tmp.dir]);
  const names = 'zero,one,two,three,four,five,six,seven,eight,nine';
  for (const [out, x, y, split, classes] of [[A, 'xa', 'ya', 'train=0.8,val=0.1,test=0.1', names], [B, 'xb', 'yb', 'train=1', names], [FLAT, 'xf', 'yf', 'train=1', names], [FIVE, 'x5', 'y5', 'train=1', 'zero,one,two,three,four']]) {
    const r = await runCli(['convert', out, '--x', join(tmp.dir, `${x}.npy`), '--y', join(tmp.dir, `${y}.npy`), '--split', split, '--class-names', classes, '-q']);
    assert.equal(r.code, 0, r.stderr);
  }
});
after(() => tmp.cleanup());

test('train A B#train --weights: the mix is saved in run.json, interrupted mid-epoch and resumed ends bit for bit like an uninterrupted run', async () => {
  const full = join(tmp.dir, 'full'), part = join(tmp.dir, 'part');
  const common = ['--model', 'mlp', '--batch', '4', '--seed', '2', '--no-test', '--weights', '0.7,0.3', '--epoch-samples', '400', '--balanced', '2'];
  const env = { SLIMFIT_DISABLE: 'engine' }; // plain tfjs kernels: deterministic sums, as in train-cli.test.ts
  let r = await runCli(['train', A, `${B}#train`, ...common, '--epochs', '2', '--out', full], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`training mlp on mix of ${A}:train x0\\.7, ${B}:train x0\\.3: 400 samples per epoch`));
  assert.match(r.stderr, /validating on .*a:val/);
  const cfg = JSON.parse(readFileSync(join(full, 'run.json'), 'utf8'));
  assert.deepEqual(cfg.mix, { with: [{ dir: B, split: 'train' }], weights: [0.7, 0.3], balanced: [1], epochSamples: 400 });
  assert.equal(cfg.data, A);
  assert.deepEqual(JSON.parse(readFileSync(join(full, 'log.jsonl'), 'utf8').split('\n')[0]).samples, 400);
  assert.match(readFileSync(join(full, 'report.md'), 'utf8'), /mixed with .*b \(train\); weights 0\.7, 0\.3; class-balanced sources 2; 400 samples per epoch/);

  // SIGINT as epoch 1 ends (training stops after the next batch): the checkpoint holds the mix's cursor (mid-epoch) with every source's place.
  let sent = false;
  r = await runCli(['train', A, `${B}#train`, ...common, '--epochs', '2', '--out', part], {
    env, onStderr: (err, kill) => { if (!sent && /\nepoch 1\/2: loss /.test(err)) { sent = true; kill('SIGINT'); } },
  });
  assert.equal(r.code, 130, r.stderr);
  const st = JSON.parse(readFileSync(join(part, 'model', 'state.json'), 'utf8'));
  assert.equal(st.epochsDone, 1);
  assert.equal(st.cursor.epoch, 1);
  assert.ok(st.cursor.position > 0 && st.cursor.position < 400, `mid-epoch: ${JSON.stringify(st.cursor)}`);
  assert.equal(st.cursor.sources.length, 2);
  // Every sample drawn so far came from A's or B's training samples: the sources' places add up to the mix's.
  const [sa, sb] = st.cursor.sources;
  const trainOf = (store: string) => JSON.parse(readFileSync(join(store, 'dataset.json'), 'utf8')).splits.train.samples;
  assert.equal(sa.epoch * trainOf(A) + sa.position + sb.epoch * trainOf(B) + sb.position, 400 + st.cursor.position);
  // Resuming with another mix is refused; the run's own continues.
  r = await runCli(['train', '--resume', part, A, B, '--weights', '0.5,0.5'], { env });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /this run was started with a mix with .*b \(train\), weights 0\.7,0\.3.*; its checkpoint cannot continue with a mix with .*weights 0\.5,0\.5/);
  r = await runCli(['train', '--resume', part], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(readFileSync(join(full, 'model', 'weights.bin')).equals(readFileSync(join(part, 'model', 'weights.bin'))), 'weights and Adam state equal the uninterrupted run bit for bit');
});

test('stores that do not fit together are refused naming both; mix flags without a mix are usage errors', async () => {
  let r = await runCli(['train', A, FLAT, '--model', 'mlp', '--epochs', '1', '--out', join(tmp.dir, 'x1')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot mix .*a:train \(x uint8 \[28,28,1\].*\) with .*flat:train \(x uint8 \[784\].*\): their samples or labels differ/);
  r = await runCli(['train', A, FIVE, '--model', 'mlp', '--epochs', '1', '--out', join(tmp.dir, 'x2')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /cannot mix .*a:train with .*five:train: their class names differ \(\[zero, one, two, three, four, five, six, seven, eight, nine\] vs \[zero, one, two, three, four\]\)/);
  for (const [args, re] of [
    [[A, '--weights', '1'], /--weights goes with several stores/],
    [[A, B, '--weights', '1,2,3'], /--weights must be 2 non-negative numbers/],
    [[A, B, '--weights', '0,0'], /not all 0/],
    [[A, B, '--balanced', '3'], /--balanced takes source numbers from 1 to 2/],
    [[A, '--epoch-samples', '10'], /--epoch-samples goes with several stores/],
  ] as const) {
    r = await runCli(['train', ...args, '--out', join(tmp.dir, 'never')]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
  }
});

test('trainRun({ mix }) checks the mix before anything is read or written', async () => {
  const out = join(tmp.dir, 'lib-never');
  for (const [mix, re] of [
    [{ with: [] }, /needs a non-empty list `with`/],
    [{ with: [B], weights: [1] }, /weights must be 2 non-negative numbers \(the run's data first\)/],
    [{ with: [B], balanced: [2] }, /balanced must list source indices 0\.\.1/],
    [{ with: [{ dir: B, split: '' }] }, /neither a store folder nor \{ dir, split \}/],
    [{ with: [B], epochSamples: 0 }, /epochSamples must be a whole number > 0/],
  ] as const) {
    await assert.rejects(trainRun(A, { mix: mix as never, out, progress: false, log: () => {} }), (e: unknown) => isSlimfitError(e) && re.test(e.message), JSON.stringify(mix));
  }
  await assert.rejects(trainRun(A, { mix: { with: [join(tmp.dir, 'nope')] }, out, progress: false, log: () => {} }), (e: unknown) => isSlimfitError(e) && /nope: no such store directory/.test(e.message));
  assert.equal(existsSync(out), false);
});
