// `npm run bench -- dtypes` through the CLI (tiny shape), and benchDtypes' data rows for the precision lab.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadAddon } from '../src/engine/addon.ts';
import { benchDtypes } from '../bench/engine/dtypes.ts';
import { BENCH, needsAddon, runCli } from '../dev/helpers.ts';

const { addon } = loadAddon();


test('benchDtypes returns one row per dtype with numbers, or "not available on this CPU"', { skip: needsAddon('slimfit_engine') }, () => {
  const rows = benchDtypes({ shapes: [[48, 64, 96]], seconds: 0.03, rounds: 1 });
  const info = addon!.info();
  const own = rows.filter((r) => r.impl === 'own');
  assert.deepEqual(own.map((r) => r.dtype), ['float64', 'float32', 'bfloat16', 'int8']);
  for (const r of own) {
    const available = r.dtype === 'bfloat16' ? info.bf16 : r.dtype === 'int8' ? info.vnni : true;
    if (available) {
      assert.ok(r.rate! > 0 && Number.isFinite(r.rate!), `${r.dtype} rate`);
      assert.ok(r.ratioToFloat32! > 0, `${r.dtype} ratio`);
    } else {
      assert.equal(r.rate, null);
      assert.match(r.note, /not available on this CPU/);
    }
  }
  assert.equal(own[1].ratioToFloat32, 1);
  assert.equal(rows.some((r) => r.impl === 'openblas'), info.blas === 'openblas');
});

test('npm run bench -- dtypes prints a markdown table; a bad --shape is a clear error', { skip: needsAddon('slimfit_engine') }, async () => {
  const r = await runCli(['dtypes', '--shape', '32x40x64', '--seconds', '0.03'], { script: BENCH, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\| 32×40×64 \| float32 \| own \|/);
  assert.match(r.stdout, /\| 32×40×64 \| int8 \|/);
  const bad = await runCli(['dtypes', '--shape', '12by3'], { script: BENCH, timeoutMs: 60_000 });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /slimfit-bench: error: --shape must look like/);
});
