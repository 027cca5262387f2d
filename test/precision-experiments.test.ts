// Pieces of the lab experiments that must be right for the report to mean anything (fast; the full runs are in reports/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BF16, E4M3, FP16, FP32, fixedFormat } from '../src/precision/formats.ts';
import { accumulate } from '../lab/swallow.ts';
import { noisyAccuracy, relDistance } from '../lab/chaos.ts';
import { numpyGemm } from '../lab/speed.ts';
import { initTf, tf } from '../lab/tf.ts';
import { buildMlp, permutation } from '../lab/run.ts';
import { table } from '../lab/report.ts';

test('toy accumulation: round-to-nearest swallows sub-half-ulp steps, stochastic and Kahan recover the sum', () => {
  // bf16 spacing just above 1 is 2^-7; 1e-4 is far below half of it
  assert.equal(accumulate(BF16, 1e-4, 10_000, 'nearest'), 1);
  assert.equal(accumulate(FP16, 1e-4, 10_000, 'nearest'), 1); // fp16 spacing at 1 is 2^-10 ~ 9.8e-4 > 2e-4
  assert.equal(accumulate(E4M3, 1e-2, 10_000, 'nearest'), 1);
  // fp16: 1e-3 > half spacing near 1, so it moves until the spacing doubles past 2e-3 (w = 4 where spacing is 2^-8 -> 1e-3 < 2^-9)
  assert.equal(accumulate(FP16, 1e-3, 10_000, 'nearest'), 4);
  const sr = accumulate(BF16, 1e-4, 10_000, 'stochastic');
  // the sum of 10^4 unbiased roundings; spacing at most 2^-6 near 2, s.d. of the sum <= sqrt(1e4) * 2^-6 / 2 ~ 0.8
  assert.ok(Math.abs(sr - 2) < 0.4, `stochastic ${sr}`);
  const kahan = accumulate(BF16, 1e-4, 10_000, 'nearest', true);
  assert.ok(Math.abs(kahan - 2) < 0.05, `kahan ${kahan}`);
  assert.ok(Math.abs(accumulate(FP32, 1e-4, 10_000, 'nearest') - 2) < 1e-3);
  assert.equal(accumulate(fixedFormat(4, 12), 1e-2, 10_000, 'nearest'), 8 - 2 ** -12); // saturates at the top of the range
  // reproducible under a seed
  assert.equal(accumulate(BF16, 1e-4, 2000, 'stochastic', false, 9), accumulate(BF16, 1e-4, 2000, 'stochastic', false, 9));
});

test('chaos helpers: relative distance, and noise injection with eps = 0 is the clean model', async () => {
  await initTf();
  assert.equal(relDistance([Float32Array.of(3, 4)], [Float32Array.of(3, 4)]), 0);
  assert.ok(Math.abs(relDistance([Float32Array.of(3, 5)], [Float32Array.of(3, 4)]) - 0.2) < 1e-12);
  const m = buildMlp(8, [6, 6, 6], 3, 2);
  const n = 50;
  const x = new Float32Array(n * 8).map((_, i) => Math.sin(i));
  const y = new Uint8Array(n).map((_, i) => i % 3);
  const data = { x, y, n, dim: 8, classes: 3 };
  const pred = tf.argMax(m.predict(tf.tensor2d(x, [n, 8])) as tf.Tensor, -1).dataSync();
  let clean = 0;
  for (let i = 0; i < n; i++) if (pred[i] === y[i]) clean++;
  assert.equal(noisyAccuracy(m, data, 1, 0, 1), clean / n);
  assert.equal(noisyAccuracy(m, data, 1, 0, 1, FP32), clean / n);
  // huge noise scrambles predictions (accuracy changes for some seed)
  const noisy = [1, 2, 3].map((s) => noisyAccuracy(m, data, 0, 100, s));
  assert.ok(noisy.some((a) => a !== clean / n), `noisy ${noisy}`);
});

test('sample order permutation is a seeded permutation', () => {
  const p = permutation(1000, 4);
  assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 1000 }, (_, i) => i));
  assert.deepEqual(permutation(1000, 4), p);
  assert.notDeepEqual(permutation(1000, 5), p);
});

test('numpy GEMM peer reports float64/float32/float16 rows with ratios to float32', () => {
  const rows = numpyGemm([[32, 32, 32]], 0.05);
  assert.equal(rows.length, 3, JSON.stringify(rows));
  assert.deepEqual(rows.map((r) => r.dtype), ['float64', 'float32', 'float16']);
  for (const r of rows) assert.ok(r.gflops! > 0 && Number.isFinite(r.ratio!), JSON.stringify(r));
  assert.equal(rows[1].ratio, 1);
  assert.match(table(['a', 'b'], [[1, 0.123456]]), /\| 1 \| 0\.1235 \|/);
});

test('Kahan with the compensation in fp32 keeps the sum even in E4M3 (the review: in-format compensation gave 8 of 101)', () => {
  // w = 1 plus 0.01 ten thousand times = 101; E4M3 cannot hold 101 exactly (96 or 104), the compensated sum lands on a neighbour
  const k = accumulate(E4M3, 1e-2, 10_000, 'nearest', true);
  assert.ok(k === 96 || k === 104, `e4m3 + Kahan ${k}`);
  assert.equal(accumulate(E4M3, 1e-2, 10_000, 'nearest'), 1);
});

test('finite-time Lyapunov fit: the slope of ln d over the growth phase, saturated points left out', async () => {
  const { lyapunov, countDiffering } = await import('../lab/chaos.ts');
  const pts = Array.from({ length: 20 }, (_, i) => ({ step: 30 * (i + 1), d: Math.min(1e-7 * Math.exp(0.03 * 30 * (i + 1)), 0.5) }));
  const f = lyapunov(pts, 0.05);
  assert.ok(Math.abs(f.lambda - 0.03) < 1e-9, String(f.lambda));
  assert.ok(f.points < 20);
  assert.ok(Number.isNaN(lyapunov(pts.slice(0, 2), 1).lambda));
  assert.equal(countDiffering([Float32Array.of(1, NaN)], [Float32Array.of(1, NaN)]), 0);
  assert.equal(countDiffering([Float32Array.of(0)], [Float32Array.of(-0)]), 1);
});
