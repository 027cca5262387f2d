// Numeric command-line flags go through src/cli/flags.ts: a value that is not a number of the right kind is a user
// error naming the flag (never NaN slipping through), and defaults are the ones in DEFAULTS (src/train/defaults.ts).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { factorFlag, fractionFlag, positiveFlag, wholeFlag } from '../src/cli/flags.ts';
import { isSlimfitError } from '../src/core/errors.ts';
import { fromNpy, LOADER_DEFAULTS } from '../src/loader/index.ts';
import { makeEvalLoader, makeLoader } from '../src/train/data.ts';
import { DEFAULTS } from '../src/train/defaults.ts';
import { py, runCli, tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-flags-');
after(() => tmp.cleanup());

function check(parse: (v: string) => number, flag: string, good: Array<[string, number]>, bad: string[]): void {
  for (const [v, want] of good) assert.equal(parse(v), want, `${flag} ${v}`);
  for (const v of bad) {
    assert.throws(() => parse(v), (e) => isSlimfitError(e) && e.message.startsWith(`${flag} must be `) && e.message.includes(`'${v}'`), `${flag} '${v}' is rejected`);
  }
}

test('flag parsers accept numbers of their kind and reject everything else naming the flag', () => {
  check(wholeFlag('--seed', 0), '--seed', [['0', 0], ['42', 42], [' 7 ', 7], ['1e3', 1000]], ['abc', '', ' ', '-1', '1.5', 'NaN', 'Infinity', '9007199254740993', '3x']);
  check(wholeFlag('--batch', 1), '--batch', [['1', 1], ['256', 256]], ['0', '-4', '32.5', 'abc']);
  check(positiveFlag('--lr'), '--lr', [['0.001', 0.001], ['1e-3', 1e-3], ['2', 2]], ['0', '-0.1', 'abc', '', 'Infinity']);
  check(factorFlag('--lr-decay'), '--lr-decay', [['1', 1], ['0.5', 0.5]], ['0', '1.01', '-0.5', 'x']);
  check(fractionFlag('--val-fraction'), '--val-fraction', [['0', 0], ['0.1', 0.1], ['0.99', 0.99]], ['1', '-0.1', 'abc', '']);
});

test('every numeric flag of train, eval, convert, show and demo (and demo\'s --model) rejects a bad value with `slimfit: error:` naming it', async () => {
  const cases: Array<[string[], string]> = [
    [['train', 'store', '--seed', 'abc'], '--seed'],
    [['train', 'store', '--seed', '-1'], '--seed'],
    [['train', 'store', '--epochs', 'two'], '--epochs'],
    [['train', 'store', '--batch', '0'], '--batch'],
    [['train', 'store', '--lr', 'fast'], '--lr'],
    [['train', 'store', '--lr-decay', '1.5'], '--lr-decay'],
    [['train', 'store', '--shift', 'abc'], '--shift'],
    [['train', 'store', '--val-fraction', '1'], '--val-fraction'],
    [['train', 'store', '--workers', 'x'], '--workers'],
    [['eval', 'run', 'store', '--batch', 'abc'], '--batch'],
    [['convert', 'a', 'b', '--seed', '1.5'], '--seed'],
    [['convert', 'a', 'b', '--workers', 'many'], '--workers'],
    [['show', 'store', '-n', 'abc'], '--count'],
    [['show', 'store', '--seed', 'x'], '--seed'],
    [['demo', '--epochs', '0'], '--epochs'],
    [['demo', '--model', 'nosuch'], '--model'],  // said before the demo converts MNIST
  ];
  const runs = await Promise.all(cases.map(([args]) => runCli(args)));
  runs.forEach((r, i) => {
    const [args, flag] = cases[i];
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^slimfit: error: ${flag} must be `, 'm'), args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /, `${args.join(' ')}: no stack trace`);
  });
});

test('CLI flag defaults are DEFAULTS, and the training layer uses the loader\'s own defaults', async () => {
  assert.equal(DEFAULTS.batchSize, LOADER_DEFAULTS.batchSize);
  assert.equal(DEFAULTS.seed, LOADER_DEFAULTS.seed);
  const [train, ev] = await Promise.all([runCli(['train', '--help']), runCli(['eval', '--help'])]);
  const dflt = (help: string, flag: string) => new RegExp(`${flag} <\\w+>\\s+[^\\n]*\\(default: ([^)]+)\\)`).exec(help.replace(/\n\s{10,}/g, ' '))?.[1];
  assert.equal(dflt(train.stdout, '--batch'), String(DEFAULTS.batchSize));
  assert.equal(dflt(train.stdout, '--epochs'), String(DEFAULTS.epochs));
  assert.equal(dflt(train.stdout, '--seed'), String(DEFAULTS.seed));
  assert.equal(dflt(train.stdout, '--lr'), String(DEFAULTS.lr));
  assert.equal(dflt(ev.stdout, '--batch'), String(DEFAULTS.evalBatchSize));
});

test('evaluation batches have the size asked for (any size), else DEFAULTS.evalBatchSize; training batches DEFAULTS.batchSize', async () => {
  py(`
import numpy as np, sys
n = 1000
np.save(sys.argv[1] + '/x.npy', (np.arange(n * 4) % 251).astype(np.uint8).reshape(n, 4))
np.save(sys.argv[1] + '/y.npy', (np.arange(n) % 3).astype(np.uint8))
`, [tmp.dir]);
  const src = await fromNpy({ x: join(tmp.dir, 'x.npy'), y: join(tmp.dir, 'y.npy') });
  const sizes = async (l: ReturnType<typeof makeEvalLoader>) => {
    const out: number[] = [];
    for await (const b of l) out.push(b.n);
    await l.close();
    return out;
  };
  const asked = await sizes(makeEvalLoader(src, 3, { workers: 0 }, 32));
  assert.equal(asked.length, Math.ceil(1000 / 32));
  assert.ok(asked.slice(0, -1).every((n) => n === 32), `batches of 32: ${asked.join(',')}`);
  const dflt = await sizes(makeEvalLoader(src, 3, { workers: 0, batchSize: 64 }));
  assert.equal(dflt[0], DEFAULTS.evalBatchSize, 'a training batch size in the options does not set the evaluation batch');
  assert.equal(dflt.reduce((a, b) => a + b, 0), 1000);
  const train = makeLoader(src, 3, { workers: 0 });
  assert.equal(train.batchesPerEpoch, Math.ceil(1000 / DEFAULTS.batchSize));
  await train.close();
});
