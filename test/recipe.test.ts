// One recipe: the `slimfit train` command `slimfit demo` prints trains exactly like the demo's own run.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { demoTrain } from '../src/train/recipe.ts';
import { trainRun } from '../src/train/run.ts';
import { runCli, tempDir } from '../dev/helpers.ts';
import { makeStore } from './loader-fixtures.ts';

const tmp = tempDir('slimfit-recipe-');
after(() => tmp.cleanup());

test('the printed train command of the demo trains to the same losses and run.json as the demo\'s options', async () => {
  const store = join(tmp.dir, 'store');
  await makeStore(store, { n: 384, h: 28, w: 28 });
  const lib = demoTrain(store, { model: 'cnn', epochs: 1, out: join(tmp.dir, 'lib') });
  const cli = demoTrain(store, { model: 'cnn', epochs: 1, out: join(tmp.dir, 'cli') });
  assert.equal(cli.command, `slimfit train ${store} --model cnn --epochs 1 --batch 128 --lr 0.001 --lr-decay 0.7 --augment shift=1 --val-fraction 0 --out ${join(tmp.dir, 'cli')}`);
  assert.equal(demoTrain(store, { model: 'mlp', epochs: 5, out: 'o' }).command.includes('--augment'), false, 'the mlp recipe has no shifts');
  const [r] = await Promise.all([
    runCli(cli.command.split(' ').slice(1), { timeoutMs: 300_000 }),
    trainRun(store, { ...lib.options, log: () => {} }),
  ]);
  assert.equal(r.code, 0, r.stderr);
  const read = (run: string) => ({
    log: readFileSync(join(tmp.dir, run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss: number; accuracy: number })).map((e) => [e.loss, e.accuracy]),
    cfg: { ...(JSON.parse(readFileSync(join(tmp.dir, run, 'run.json'), 'utf8')) as object), out: undefined },
  });
  const a = read('lib'), b = read('cli');
  assert.deepEqual(b.cfg, a.cfg);
  assert.deepEqual(b.log, a.log, 'same losses');
});
