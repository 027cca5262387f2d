// `slimfit train / eval / show` end to end on a small real-MNIST store: run folder contents, resume, errors.
import assert from 'node:assert/strict';
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MNIST_DIR, py, runCli, tempDir, disableAlso } from '../dev/helpers.ts';
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
  const env = disableAlso('engine');
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

test('--resume --lr X trains the remaining epochs at X (the saved optimizer had the old rate), also with sgd', async () => {
  // SGD applies a scalar made when its rate is set through setLearningRate, so this also checks that the rate is really
  // applied, not just logged: the resumed epoch's loss must differ from the same run continued at the old rate.
  const same = join(tmp.dir, 'lr-same'), changed = join(tmp.dir, 'lr-changed');
  const common = ['--model', 'mlp', '--batch', '100', '--seed', '3', '--optimizer', 'sgd', '--lr', '0.001', '--no-test'];
  const env = disableAlso('engine');
  for (const out of [same, changed]) {
    const r = await runCli(['train', store, ...common, '--epochs', '1', '--out', out], { env });
    assert.equal(r.code, 0, r.stderr);
  }
  let r = await runCli(['train', '--resume', same, '--epochs', '2'], { env });
  assert.equal(r.code, 0, r.stderr);
  r = await runCli(['train', '--resume', changed, '--epochs', '2', '--lr', '0.5'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /lr 0\.001 -> 0\.5/);
  const ls = logOf(same), lc = logOf(changed);
  assert.deepEqual(ls.map((e) => e.lr), [0.001, 0.001]);
  assert.deepEqual(lc.map((e) => e.lr), [0.001, 0.5], 'the resumed epoch is logged at the new rate');
  assert.equal(lc[0].loss, ls[0].loss, 'the same first epoch');
  assert.ok(Math.abs(lc[1].loss - ls[1].loss) > 0.01, `the new rate is used, not only logged: epoch 2 loss ${lc[1].loss} vs ${ls[1].loss} at the old rate`);
});

/** Epoch lines of a run's log.jsonl. */
const logOf = (run: string) => readFileSync(join(run, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
/** What a bit-for-bit comparison of two runs' logs looks at (not times, rates or tensor counts). */
const logCore = (run: string) => logOf(run).map((e) => [e.epoch, e.loss, e.accuracy, e.valLoss, e.lr, e.samples, e.bestSaved, e.stoppedEarly, e.restoredEpoch]);

/** Start `train args`; `when(stderr)` true for the first time starts `delayMs`, then `sig` is sent; a second signal follows `again(stderr)` when given. Match an epoch's summary line (`epoch 1/3: loss`), not its progress lines (`epoch 1/3: 40%`), which a slow machine prints first. */
function trainUntil(args: string[], env: Record<string, string>, when: (err: string) => boolean, sig: NodeJS.Signals, delayMs: number, again?: (err: string) => boolean) {
  let sent = 0;
  return runCli(['train', ...args], {
    env,
    onStderr: (err, kill) => {
      if (sent === 0 && when(err)) { sent = 1; setTimeout(() => kill(sig), delayMs); }
      if (sent === 1 && again?.(err)) { sent = 2; kill(sig); }
    },
  });
}

test('SIGINT mid-epoch saves a checkpoint at that batch and exits 130; SIGTERM 143; --resume continues mid-epoch and ends bit for bit like an uninterrupted run', async () => {
  const full = join(tmp.dir, 'sig-full'), part = join(tmp.dir, 'sig-part');
  // Small batches make an epoch ~150 steps long, so a signal 300 ms after a line lands well inside the next epoch. The
  // per-batch schedule, the plateau callback and the shift augmentation all have state that must continue exactly.
  const common = ['--model', 'two-branch', '--batch', '5', '--seed', '3', '--lr-decay', '0.5', '--shift', '1', '--no-test', '--lr-schedule', 'cosine:1@batch', '--reduce-lr-on-plateau', '0:0.5', '--keep-best'];
  const env = disableAlso('engine'); // as in the resume test above: plain tfjs kernels, deterministic
  let r = await runCli(['train', store, ...common, '--epochs', '3', '--out', full], { env });
  assert.equal(r.code, 0, r.stderr);

  r = await trainUntil([store, ...common, '--epochs', '3', '--out', part], env, (e) => /\nepoch 1\/3: loss /.test(e), 'SIGINT', 300);
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /SIGINT: stopping after the batch in progress and saving a checkpoint/);
  assert.match(r.stderr, new RegExp(`interrupted by SIGINT in epoch 2 after \\d+ of its samples; the checkpoint is saved\\. Continue with: slimfit train --resume ${part}\\n`));
  let st = JSON.parse(readFileSync(join(part, 'model', 'state.json'), 'utf8'));
  const counts = JSON.parse(readFileSync(join(store, 'dataset.json'), 'utf8')).splits;
  assert.equal(st.epochsDone, 1);
  assert.equal(st.cursor.epoch, 1);
  assert.ok(st.cursor.position > 0 && st.cursor.position < counts.train.samples && st.cursor.position % 5 === 0, `mid-epoch at a batch boundary: ${st.cursor.position}`);
  assert.equal(st.loop.partial.n, st.cursor.position, 'the epoch\'s sums so far are saved with the cursor');
  assert.deepEqual(Object.keys(st.loop.callbacks).sort(), ['keepBest', 'reduceLrOnPlateau']);
  assert.deepEqual(logOf(part).map((e) => e.epoch), [1]);

  // Interrupted again in the next epoch, by SIGTERM this time.
  r = await trainUntil(['--resume', part], env, (e) => /\nepoch 2\/3: /.test(e), 'SIGTERM', 300);
  assert.equal(r.code, 143, r.stderr);
  assert.match(r.stderr, new RegExp(`resuming ${part} in epoch 2 of 3 at sample ${st.cursor.position} \\(where it was interrupted\\)`));
  st = JSON.parse(readFileSync(join(part, 'model', 'state.json'), 'utf8'));
  assert.equal(st.epochsDone, 2);
  assert.ok(st.cursor.epoch === 2 && st.cursor.position > 0 && st.cursor.position < counts.train.samples, JSON.stringify(st.cursor));

  r = await runCli(['train', '--resume', part], { env });
  assert.equal(r.code, 0, r.stderr);
  const a = readFileSync(join(full, 'model', 'weights.bin')), b = readFileSync(join(part, 'model', 'weights.bin'));
  assert.ok(a.equals(b), 'weights and Adam state after two mid-epoch interruptions equal the uninterrupted run\'s bit for bit');
  assert.ok(readFileSync(join(full, 'best', 'weights.bin')).equals(readFileSync(join(part, 'best', 'weights.bin'))), 'best/ too');
  assert.deepEqual(logCore(part), logCore(full), 'the same epoch logs (losses, rates, best epochs)');
  assert.deepEqual(JSON.parse(readFileSync(join(part, 'run.json'), 'utf8')).lrSchedule, 'cosine:1@batch', 'run.json keeps the schedule for --resume');
});

test('a second SIGINT while the first one\'s checkpoint is being saved exits 130 at once; the last complete checkpoint stays valid and resumes bit for bit', async () => {
  const full = join(tmp.dir, 'sig-full'), part = join(tmp.dir, 'sig-twice');
  const common = ['--model', 'two-branch', '--batch', '5', '--seed', '3', '--lr-decay', '0.5', '--shift', '1', '--no-test', '--lr-schedule', 'cosine:1@batch', '--reduce-lr-on-plateau', '0:0.5', '--keep-best'];
  const env = disableAlso('engine');
  if (!existsSync(join(full, 'model'))) {
    const r = await runCli(['train', store, ...common, '--epochs', '3', '--out', full], { env });
    assert.equal(r.code, 0, r.stderr);
  }
  let r = await trainUntil([store, ...common, '--epochs', '3', '--out', part], env, (e) => /\nepoch 1\/3: loss /.test(e), 'SIGINT', 300, (e) => /SIGINT: stopping/.test(e));
  assert.equal(r.code, 130, r.stderr);
  assert.match(r.stderr, /SIGINT again: exiting now without a new checkpoint/);
  assert.doesNotMatch(r.stderr, /Continue with/, 'it did not wait for the save to finish');
  // Whichever checkpoint is in place (epoch 1's, or the new one if it was complete) is whole and resumes.
  const st = JSON.parse(readFileSync(join(part, 'model', 'state.json'), 'utf8'));
  assert.ok(st.epochsDone >= 1);
  r = await runCli(['train', '--resume', part], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.ok(readFileSync(join(full, 'model', 'weights.bin')).equals(readFileSync(join(part, 'model', 'weights.bin'))), 'bit for bit after the resume');
  assert.deepEqual(readdirSync(part).filter((n) => n.includes('.tmp-')), [], 'a half-written checkpoint folder is removed on resume');
});

test('--keep-best: best/ changes only with the checkpoint that records its epoch; on resume a pending best model is kept if the checkpoint records it, else dropped', async () => {
  // The callbacks save a new best model before the epoch's checkpoint is written; a second Ctrl-C between the two used
  // to leave best/ holding an epoch the resume trains again. It now waits in .best-pending until the checkpoint is written.
  const run = join(tmp.dir, 'kb'), pending = join(run, '.best-pending');
  const env = disableAlso('engine');
  let r = await runCli(['train', store, '--model', 'mlp', '--batch', '100', '--seed', '3', '--no-test', '--keep-best', '--epochs', '1', '--out', run], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(existsSync(pending), false, 'promoted to best/ with the checkpoint');
  assert.equal(JSON.parse(readFileSync(join(run, 'best', 'best.json'), 'utf8')).epoch, 1);
  /** Plant a pending best model (a copy of best/) as a run stopped between saving it and the checkpoint leaves it. */
  const plant = (epoch: number) => {
    cpSync(join(run, 'best'), pending, { recursive: true });
    writeFileSync(join(pending, 'best.json'), JSON.stringify({ epoch, monitor: 'val_loss', value: -1 }));
  };
  // Of epoch 2, which the checkpoint (1 epoch done) does not record: dropped; the resumed epoch 2 writes its own.
  plant(2);
  r = await runCli(['train', '--resume', run, '--epochs', '2'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(existsSync(pending), false, 'the abandoned epoch\'s best model is removed');
  assert.notEqual(JSON.parse(readFileSync(join(run, 'best', 'best.json'), 'utf8')).value, -1, 'best/ is not the abandoned epoch\'s');
  // Of the epoch the checkpoint records as best (the promotion was cut off): it becomes best/.
  const tracked = JSON.parse(readFileSync(join(run, 'model', 'state.json'), 'utf8')).loop.callbacks.keepBest.bestEpoch;
  plant(tracked);
  r = await runCli(['train', '--resume', run, '--epochs', '2'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(existsSync(pending), false);
  assert.deepEqual(JSON.parse(readFileSync(join(run, 'best', 'best.json'), 'utf8')), { epoch: tracked, monitor: 'val_loss', value: -1 }, 'promoted');
});

test('--patience stops where val_loss turned up and restores the best epoch (kept in best/ by --keep-best); log, report and run.json say so; an interruption keeps the callback state', async () => {
  // 100 training digits the mlp overfits; the validation split ('test' here) has 1 in 5 labels wrong, so its loss
  // falls for a few epochs and then rises.
  const npz = py(`
import numpy as np, sys
d = sys.argv[1]; out = sys.argv[2]
X = np.fromfile(d + '/train-images-idx3-ubyte', dtype=np.uint8, offset=16, count=21300*784).reshape(-1, 28, 28, 1)
Y = np.fromfile(d + '/train-labels-idx1-ubyte', dtype=np.uint8, offset=8, count=21300)
np.savez(out + '/of-tr.npz', x=X[20000:20100], y=Y[20000:20100])
y = Y[21000:21300].copy(); i = np.arange(300); m = i % 5 == 0; y[m] = (y[m] + 1 + i[m] % 9) % 10
np.savez(out + '/of-va.npz', x=X[21000:21300], y=y)
print('ok')
`, [MNIST_DIR, tmp.dir]);
  assert.match(npz, /ok/);
  const ostore = join(tmp.dir, 'overfit');
  let r = await runCli(['convert', '--train', join(tmp.dir, 'of-tr.npz'), '--test', join(tmp.dir, 'of-va.npz'), '--x', 'x', '--y', 'y', ostore, '-q']);
  assert.equal(r.code, 0, r.stderr);
  const es = join(tmp.dir, 'es'), es2 = join(tmp.dir, 'es2');
  const args = [ostore, '--val-split', 'test', '--no-test', '--model', 'mlp', '--batch', '10', '--lr', '1e-4', '--epochs', '30', '--patience', '2', '--keep-best'];
  const env = disableAlso('engine');
  r = await runCli(['train', ...args, '--out', es], { env });
  assert.equal(r.code, 0, r.stderr);
  const log = logOf(es);
  const vl: number[] = log.map((e) => e.valLoss);
  let best = Infinity, bestEpoch = 0, wait = 0, stop = 0;
  for (let i = 0; i < vl.length && !stop; i++) {
    if (vl[i] < best) { best = vl[i]; bestEpoch = i + 1; wait = 0; } else if (++wait >= 2) stop = i + 1;
  }
  assert.ok(bestEpoch > 1 && stop > 0 && stop < 30, `val_loss ${vl.map((v) => v.toFixed(3))}: fell, then rose until training stopped`);
  assert.equal(log.length, stop, 'no epoch after the stop');
  const last = log[log.length - 1];
  assert.deepEqual(last.stoppedEarly, { monitor: 'val_loss', best, bestEpoch, restoredEpoch: bestEpoch });
  assert.equal(last.restoredEpoch, bestEpoch);
  let low = Infinity;
  assert.deepEqual(log.filter((e) => e.bestSaved).map((e) => e.epoch), vl.flatMap((v, i) => (v < low ? ((low = v), [i + 1]) : [])), 'best/ written at every new low');
  assert.deepEqual(JSON.parse(readFileSync(join(es, 'best', 'best.json'), 'utf8')), { epoch: bestEpoch, monitor: 'val_loss', value: best });
  // model/ holds the weights followed by the optimizer's; best/ the weights alone: the restored model is best/.
  const bestW = readFileSync(join(es, 'best', 'weights.bin')), modelW = readFileSync(join(es, 'model', 'weights.bin'));
  assert.ok(modelW.length > bestW.length && modelW.subarray(0, bestW.length).equals(bestW), 'the run\'s model holds the best epoch\'s weights');
  assert.match(r.stderr, new RegExp(`early stopping: val_loss has not improved since epoch ${bestEpoch} .*stopped after epoch ${stop}`));
  const report = readFileSync(join(es, 'report.md'), 'utf8');
  assert.match(report, new RegExp(`\\*\\*early stopping\\*\\*: val_loss, patience 2: stopped early after epoch ${stop} \\(best [\\d.]+ at epoch ${bestEpoch}\\); the model holds the weights of epoch ${bestEpoch} \\(restored\\)`));
  assert.match(report, new RegExp(`\\| ${stop} \\|.*\\| stopped early: val_loss best at epoch ${bestEpoch}; weights of epoch ${bestEpoch} restored \\|`));
  assert.match(report, new RegExp(`\\*\\*best checkpoint\\*\\*: best/ holds epoch ${bestEpoch}`));
  const cfg = JSON.parse(readFileSync(join(es, 'run.json'), 'utf8'));
  assert.deepEqual([cfg.patience, cfg.keepBest], [2, true]);
  r = await runCli(['train', '--resume', es], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`run stopped early after epoch ${stop} .*nothing to train`));
  assert.ok(readFileSync(join(es, 'model', 'weights.bin')).equals(modelW), 'resuming a stopped run changes nothing');

  // The same run interrupted after epoch 3 (the stop comes ~10 epochs later) and resumed: the best value and wait
  // counter continue from the checkpoint.
  r = await trainUntil([...args, '--out', es2], env, (e) => /\nepoch 3\/30: loss /.test(e), 'SIGINT', 0);
  assert.equal(r.code, 130, r.stderr);
  const mid = JSON.parse(readFileSync(join(es2, 'model', 'state.json'), 'utf8'));
  assert.ok(mid.epochsDone >= 3 && mid.epochsDone < stop, `interrupted before the stop (after ${mid.epochsDone} epochs)`);
  assert.equal(mid.loop.callbacks.earlyStopping.bestEpoch, Math.max(...log.slice(0, mid.epochsDone).map((e, i) => (e.bestSaved ? i + 1 : 0))));
  r = await runCli(['train', '--resume', es2], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(logCore(es2), logCore(es));
  assert.ok(readFileSync(join(es2, 'model', 'weights.bin')).equals(modelW));
});

test('bad --lr-schedule / --reduce-lr-on-plateau specs and --patience without validation are errors before the run folder is created', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--lr-schedule', 'linear:1'], /slimfit: error: --lr-schedule 'linear:1' is not a known schedule \('linear'\)\. use step:EPOCHS:GAMMA, exp:GAMMA or cosine:WARMUP_EPOCHS/],
    [['--lr-schedule', 'step:2'], /slimfit: error: --lr-schedule 'step:2' takes 2 numbers after 'step:'/],
    [['--reduce-lr-on-plateau', '2:1.5'], /slimfit: error: --reduce-lr-on-plateau '2:1\.5' is not PATIENCE\[:FACTOR\[:MIN_LR\]\]/],
    [['--patience', 'x'], /slimfit: error: --patience must be a whole number >= 0, got 'x'/],
    [['--patience', '2', '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--val-fraction', '0'], /slimfit: error: --patience stops on the validation loss but this run has no validation data/],
  ];
  for (const [i, [flags, want]] of cases.entries()) {
    const out = join(tmp.dir, `badspec${i}`);
    const r = await runCli(['train', ...(flags.includes('--x') ? [] : [store]), ...flags, '--model', 'mlp', '--out', out]);
    // a flag value that is not a number is a usage error (exit 2); a spec or combination the run cannot use, a data error
    assert.equal(r.code, flags[0] === '--patience' && flags[1] === 'x' ? 2 : 1, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want);
    assert.ok(!existsSync(out), `no run folder for ${flags.join(' ')}`);
  }
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
