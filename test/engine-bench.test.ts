// `npm run bench -- dtypes` through the CLI (tiny shape), benchDtypes' data rows for the precision lab, and the engine bench's report.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadAddon } from '../src/engine/addon.ts';
import { benchDtypes } from '../bench/engine/dtypes.ts';
import { bracketCeiling, engineReport, pairedFraction, type TrainRow } from '../bench/engine/bench.ts';
import { engineGemms, gemmRate } from '../bench/engine/gemm-rate.ts';
import { median } from '../dev/median.ts';
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
  assert.equal(rows.some((r) => r.impl === 'openblas'), info.openblas);
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

test('engineReport: training rows show the median of the interleaved rounds with their range; ratios and the ceiling fraction use the medians', () => {
  const flops = { mlp: { forward: 1e6, dW: 1e6, dX: 1e6, total: 3e6, counted: 'test' } };
  const row = (engine: TrainRow['engine'], threads: number, rounds: number[], ceilingRounds: number[] = []): TrainRow => ({
    model: 'mlp', engine, threads, rounds, samplesPerSec: median(rounds), samplesPerCpuSec: median(rounds) / threads, peakRss: 1e8, note: '',
    ceilingRounds, ofCeiling: pairedFraction(rounds, 3e6, ceilingRounds), ofBlasOwnCeiling: pairedFraction(rounds, 3e6, ceilingRounds.map((c) => c * 0.9)),
  });
  const md = engineReport({
    info: 'test', load: '0.1 0.1 0.1', loadEnd: '0.1 0.1 0.1', cpu: 'test CPU, 2 cores', numpyBlas: 'numpy', gemm: [], trainRounds: 3,
    ceiling: { own: 200, engineOnednn: 300, engineOpenblas: 250, numpy: 280, best: 300 }, bf16Gemm: [], bf16Note: '', flops,
    train: [row('fast engine, fused step', 2, [60000, 66000, 62000], [300, 330, 280]), row('PyTorch', 1, [20000, 21000, 19000])],
  });
  assert.match(md, /3 interleaved rounds of every row, the median reported with the rounds' range/);
  assert.match(md, /\| mlp \| fast engine, fused step \| 2 \| 62,?000 \[60,?000–66,?000\] \| 3\.10x \|/);
  // 62,000 samples/s × 3 MFLOP = 186 GFLOP/s = 62% of the 300 GFLOP/s ceiling (the median, not the best round's 66%)
  // beside it: the rounds' fractions 180/300, 198/330, 186/280 = 60%, 60%, 66.4%, median 60% (not 62%); against 0.9x
  // those ceilings 66.7%, 66.7%, 73.8%: median 66.7% (one decimal, so a threshold such as 65% is not hidden by rounding)
  assert.match(md, /\| 186(\.0)? \| 60\.0% \| 62\.0% \|/);
  assert.match(md, /60\.0% of the float32 ceiling measured beside it .*the rounds' ceilings 280–330 GFLOP\/s\) and 66\.7% of the better of the engine's OpenBLAS and own GEMM beside it/);
  // a row without a bracket (no run) shows a dash, not 0%
  assert.match(md, /\| mlp \| PyTorch \| 1 \| 20,?000 \[19,?000–21,?000\] \| 1\.00x \| 60(\.0)? \| – \| 20\.0% \|/);
});

test('the ceiling beside a run: the better bracket per GEMM mode; the fraction pairs each round with its own ceiling', () => {
  assert.deepEqual(bracketCeiling({ own: 200, onednn: 310 }, { own: 210, onednn: 300 }), { own: 210, onednn: 310 });
  assert.deepEqual(bracketCeiling({ own: 200, openblas: 250 }, {}), { own: 200, openblas: 250 });
  assert.equal(pairedFraction([60000, 66000], 3e6, [300, 330]), 0.6);
  // a round without a ceiling is left out; no FLOP count or no rounds: null
  assert.equal(pairedFraction([60000, 66000], 3e6, [300, 0]), 0.6);
  assert.equal(pairedFraction([60000], 0, [300]), null);
  assert.equal(pairedFraction([], 3e6, []), null);
});

test('gemmRate times the mode it is asked for and gives the engine its own mode back; engineGemms lists what is linked', { skip: needsAddon('slimfit_engine') }, () => {
  const info = addon!.info();
  const shape = { name: 'tiny', M: 48, N: 40, K: 32, transA: true, transB: false };
  for (const m of engineGemms()) {
    const r = gemmRate(shape, 0.01, 1, m);
    assert.ok(r > 0 && Number.isFinite(r), `${m}: ${r}`);
    assert.equal(addon!.info().gemm, info.gemm, `mode after timing ${m}`);
  }
  assert.deepEqual(engineGemms(), ['own', ...(info.onednn ? ['onednn'] : []), ...(info.openblas ? ['openblas'] : [])]);
});
