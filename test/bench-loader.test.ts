// `npm run bench -- loader --json` through the bench's CLI on a tiny store: one JSON object of the table's rows.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { after, before, test } from 'node:test';
import { BENCH, py, runCli, tempDir } from '../dev/helpers.ts';

const tmp = tempDir();
const store = join(tmp.dir, 'store');

before(async () => {
  py(`
import numpy as np, sys
n = 2000
np.save(sys.argv[1] + '/x.npy', (np.arange(n * 784) % 251).astype(np.uint8).reshape(n, 28, 28, 1))
np.save(sys.argv[1] + '/y.npy', (np.arange(n) % 10).astype(np.uint8))
`, [tmp.dir]);
  const r = await runCli(['convert', '--x', join(tmp.dir, 'x.npy'), '--y', join(tmp.dir, 'y.npy'), store]);
  assert.equal(r.code, 0, r.stderr);
});
after(() => tmp.cleanup());

test('bench loader --json prints the rows (numpy first, at ratio 1) and notes as one JSON object; --json with --remote is a clear error', async () => {
  const r = await runCli(['loader', store, '--json', '--no-torch', '--seconds', '0.2', '--workers', '1', '--shuffle', 'global'], { script: BENCH, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { rows: { name: string; samplesPerSec: number; ratio: number }[]; notes: string[] };
  // (with SLIMFIT_DISABLE=native the notes also say the gather addon is off)
  assert.deepEqual(out.notes.filter((n) => /skipped|failed/.test(n)), [], 'no contender skipped or failed here');
  assert.match(out.rows[0].name, /^numpy memmap/);
  assert.equal(out.rows[0].ratio, 1);
  const slim = out.rows.filter((x) => x.name.startsWith('slimfit'));
  assert.ok(slim.length >= 2, r.stdout);
  for (const x of slim) assert.ok(x.samplesPerSec > 0 && Number.isFinite(x.ratio), JSON.stringify(x));
  const bad = await runCli(['loader', store, '--json', '--remote'], { script: BENCH, timeoutMs: 60_000 });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /slimfit-bench: error: --json is not available with --remote/);
  assert.equal(bad.stdout, '');
});

test('bench loader --json keeps the notes: a numpy peer that cannot run is said so, not silently missing', async () => {
  // a python3 first on PATH that cannot import numpy
  const bin = join(tmp.dir, 'fakebin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'python3'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  const r = await runCli(['loader', store, '--json', '--no-torch', '--seconds', '0.1', '--workers', '1', '--shuffle', 'global'], {
    script: BENCH, timeoutMs: 120_000, env: { PATH: `${bin}${delimiter}${process.env.PATH ?? ''}` },
  });
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { rows: { name: string }[]; notes: string[] };
  assert.ok(!out.rows.some((x) => x.name.startsWith('numpy')), r.stdout);
  assert.ok(out.notes.some((n) => /numpy peer skipped/.test(n)), JSON.stringify(out.notes));
});
