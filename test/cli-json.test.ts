// `--json` on convert, train, eval, info, verify and doctor: stdout holds exactly one JSON object (the result), all
// human output goes to stderr; errors keep their one `slimfit: error:` line on stderr and exit code, with stdout empty.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { py, runCli, tempDir } from '../dev/helpers.ts';

const tmp = tempDir('slimfit-json-');
after(() => tmp.cleanup());
const store = join(tmp.dir, 'store'), run = join(tmp.dir, 'run');

/** stdout parsed as JSON; JSON.parse throws on anything else before or after the object (a stray line fails the test). */
function parsed(r: { code: number | null; stdout: string; stderr: string }): Record<string, any> {
  assert.equal(r.code, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.equal(typeof v, 'object');
  assert.ok(v !== null && !Array.isArray(v));
  return v;
}

// 200 samples of 4 classes (labels 0..3 in turn; pixel 0 says the class, so one mlp epoch learns something).
py(`
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(0)
y = (np.arange(200) % 4).astype(np.uint8)
x = rng.integers(0, 50, (200, 8, 8, 1)).astype(np.uint8)
x[:, 0, 0, 0] = y * 60 + 20
x[:, 1, :, 0] = (np.arange(200) % 251)[:, None]
np.save(d + '/x.npy', x); np.save(d + '/y.npy', y)
`, [tmp.dir]);

test('convert, train, eval, info, verify --json: one JSON object on stdout with the result', async () => {
  const c = parsed(await runCli(['convert', store, '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--split', 'train=0.8,test=0.2', '--json']));
  assert.equal(c.out, store);
  assert.deepEqual(c.samples, { train: 160, test: 40 });
  assert.equal(c.skipped, 0);
  assert.deepEqual(c.leakage, {});
  assert.deepEqual(c.duplicatesWithin, { train: 0, test: 0 });
  assert.ok(c.seconds >= 0 && c.peakRssBytes > 1e6);

  const t = await runCli(['train', store, '--model', 'mlp', '--epochs', '1', '--out', run, '--json']);
  const tr = parsed(t);
  assert.match(t.stderr, /epoch 1\/1/); // progress and status lines still shown, on stderr
  assert.equal(tr.run, run);
  assert.equal(tr.epochs, 1);
  assert.equal(tr.report, join(run, 'report.md'));
  assert.ok(Number.isFinite(tr.final.loss) && tr.final.accuracy >= 0 && tr.final.accuracy <= 1);
  assert.equal(tr.test.samples, 40);
  assert.ok(tr.test.accuracy >= 0 && tr.test.accuracy <= 1);
  assert.equal(tr.stoppedEarly, false);
  assert.equal(tr.interrupted, null);

  const e = parsed(await runCli(['eval', run, store, '--json']));
  assert.equal(e.split, 'test');
  assert.equal(e.samples, 40);
  // the same model on the same split: the accuracy train reported, and a 4x4 confusion matrix of the 40 samples
  assert.equal(e.accuracy, tr.test.accuracy);
  assert.equal(e.confusion.length, 4);
  assert.equal(e.confusion.flat().reduce((a: number, b: number) => a + b, 0), 40);
  const correct = e.confusion.reduce((a: number, row: number[], i: number) => a + row[i], 0);
  assert.equal(correct / 40, e.accuracy);
  assert.deepEqual(e.files, ['png', 'svg', 'md'].map((x) => join(run, `eval-test-confusion.${x}`)));

  const i = parsed(await runCli(['info', store, '--json']));
  assert.equal(i.format, 'slimfit-dataset');
  assert.equal(i.splits.train.samples, 160);

  const v = parsed(await runCli(['verify', store, '--json']));
  assert.deepEqual({ ok: v.ok, damaged: v.damaged }, { ok: true, damaged: [] });
  // every shard file, x and y of each split
  assert.equal(v.shards, ['train', 'test'].flatMap((sp) => readdirSync(join(store, sp))).filter((f) => f.endsWith('.npy')).length);
});

test('verify --json on a damaged store: ok false naming the shard, exit code 1, the bad-shard lines on stderr', async () => {
  const c = await runCli(['convert', join(tmp.dir, 'bad'), '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--quiet']);
  assert.equal(c.code, 0, c.stderr);
  const shard = join(tmp.dir, 'bad', 'train', 'x-00000.npy');
  const bytes = readFileSync(shard);
  bytes[bytes.length - 1] ^= 0xff; // same size and header, wrong checksum
  writeFileSync(shard, bytes);
  const r = await runCli(['verify', join(tmp.dir, 'bad'), '--json']);
  assert.equal(r.code, 1);
  const v = JSON.parse(r.stdout);
  assert.equal(v.ok, false);
  assert.equal(v.damaged.length, 1);
  assert.match(v.damaged[0].file, /train\/x-00000\.npy$/);
  assert.match(r.stderr, /slimfit: bad shard: /);
});

test('doctor --json parses', async () => {
  const r = await runCli(['doctor', '--json']);
  const d = JSON.parse(r.stdout); // exit code 1 when a peer is missing; the report is printed either way
  assert.equal(typeof d.peersOk, 'boolean');
});

test('errors with --json: nothing on stdout, one slimfit: error: line, exit 2 for usage and 1 for data', async () => {
  const usage = await runCli(['convert', join(tmp.dir, 'u'), '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--shard-size', 'lots', '--json']);
  assert.equal(usage.code, 2);
  assert.equal(usage.stdout, '');
  assert.match(usage.stderr, /^slimfit: error: cannot read --shard-size lots/m);
  const flag = await runCli(['train', store, '--epochs', 'x', '--json']);
  assert.equal(flag.code, 2);
  assert.equal(flag.stdout, '');
  const data = await runCli(['verify', join(tmp.dir, 'no-such-store'), '--json']);
  assert.equal(data.code, 1);
  assert.equal(data.stdout, '');
  assert.equal(data.stderr.match(/^slimfit: error: /gm)?.length, 1, data.stderr);
});

test('convert SRC with no OUT is a usage error saying OUT is missing (exit 2), with or without --json', async () => {
  for (const extra of [[], ['--json']]) {
    const r = await runCli(['convert', join(tmp.dir, 'x.npy'), ...extra]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^slimfit: error: OUT is missing: only one path given \('.*x\.npy'\)/m);
  }
  // one path with --x/--y is OUT, as before
  const ok = await runCli(['convert', join(tmp.dir, 'one'), '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), '--quiet', '--json']);
  assert.equal(parsed(ok).out, join(tmp.dir, 'one'));
});
