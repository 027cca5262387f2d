// The lab's statistics against scipy (an independent client): t quantiles and CDF, intervals, Welch's test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { py } from '../dev/helpers.ts';
import { median, medianOrNull } from '../dev/median.ts';
import { holm, paired, pairedGapPoints, summarize, tCdf, tQuantile, verdict, welch, meanSd, interval } from '../lab/stats.ts';

test('t quantiles, CDF, 95% intervals and Welch match scipy.stats', () => {
  const dfs = [1, 2, 3, 4, 5, 7.5, 10, 29, 100, 1000];
  const ref = JSON.parse(py(`import json, scipy.stats as st, numpy as np
dfs = ${JSON.stringify(dfs)}
a = [0.951, 0.948, 0.955, 0.949, 0.952]; b = [0.931, 0.937, 0.928]
w = st.ttest_ind(a, b, equal_var=False)
va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
df = (va + vb)**2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
m = np.mean(a); h = st.t.ppf(0.975, len(a) - 1) * st.sem(a)
print(json.dumps({'q': [st.t.ppf(0.975, d) for d in dfs], 'c': [st.t.cdf(-1.7, d) for d in dfs], 'wt': w.statistic, 'wp': w.pvalue, 'df': df, 'lo': m - h, 'hi': m + h}))`)) as { q: number[]; c: number[]; wt: number; wp: number; df: number; lo: number; hi: number };
  dfs.forEach((d, i) => {
    assert.ok(Math.abs(tQuantile(0.975, d) - ref.q[i]) < 1e-8, `q df=${d}: ${tQuantile(0.975, d)} vs ${ref.q[i]}`);
    assert.ok(Math.abs(tCdf(-1.7, d) - ref.c[i]) < 1e-10, `cdf df=${d}`);
  });
  const a = [0.951, 0.948, 0.955, 0.949, 0.952], b = [0.931, 0.937, 0.928];
  const w = welch(a, b);
  assert.ok(Math.abs(w.t - ref.wt) < 1e-9 && Math.abs(w.p - ref.wp) < 1e-9 && Math.abs(w.df - ref.df) < 1e-9, JSON.stringify({ w, ref }));
  const s = summarize(a);
  assert.ok(Math.abs(s.lo - ref.lo) < 1e-12 && Math.abs(s.hi - ref.hi) < 1e-12);
  assert.equal(verdict(a, b), 'higher');
  assert.equal(verdict(b, a), 'lower');
  assert.equal(verdict([0.95, 0.96, 0.94], [0.951, 0.949, 0.962]), 'no significant difference');
  assert.equal(meanSd([0.1, 0.3], 100, 1), '20.0 ± 14.1');
  assert.equal(interval([1], 1), '–');
});

test('paired t-test matches scipy.stats.ttest_rel; Holm adjusts as defined; constant samples give no made-up interval', () => {
  const a = [0.951, 0.948, 0.955, 0.949, 0.952], b = [0.949, 0.947, 0.951, 0.949, 0.950];
  const ref = JSON.parse(py(`import json, numpy as np, scipy.stats as st
a = ${JSON.stringify(a)}; b = ${JSON.stringify(b)}
r = st.ttest_rel(a, b); d = np.subtract(a, b); h = st.t.ppf(0.975, len(d) - 1) * st.sem(d)
print(json.dumps([float(r.statistic), float(r.pvalue), float(np.mean(d) - h), float(np.mean(d) + h)]))`)) as number[];
  const p = paired(a, b);
  assert.ok(Math.abs(p.t - ref[0]) < 1e-9 && Math.abs(p.p - ref[1]) < 1e-9, `t ${p.t} p ${p.p} vs scipy ${ref[0]} ${ref[1]}`);
  assert.ok(Math.abs(p.lo - ref[2]) < 1e-12 && Math.abs(p.hi - ref[3]) < 1e-12);
  // Holm: sorted p times (m - rank), running maximum, capped at 1, NaN left out
  assert.deepEqual(holm([0.01, 0.04, 0.03, NaN]).map((v) => (Number.isNaN(v) ? 'NaN' : +v.toFixed(10))), [0.03, 0.06, 0.06, 'NaN']);
  assert.deepEqual(holm([0.5, 0.001]), [0.5, 0.002]);
  assert.deepEqual(holm([0.6, 0.7]), [1, 1]); // the running maximum keeps the larger p's adjustment monotone
  // identical on every seed, and a constant shift on every seed
  assert.deepEqual([paired([1, 2], [1, 2]).lo, paired([1, 2], [1, 2]).p], [0, 1]);
  // the same gap on every seed: no t-interval (no verdict), the exact sign test's p (2·2^-n)
  assert.deepEqual([paired([2, 3], [1, 2]).lo, paired([2, 3], [1, 2]).hi, paired([2, 3], [1, 2]).p], [NaN, NaN, 0.5]);
  // test errors are counts over a test set: the same gap of 0.01 on five seeds differs only by float rounding
  const same = paired([0.0293, 0.0512, 0.0407, 0.0633, 0.0219], [0.0193, 0.0412, 0.0307, 0.0533, 0.0119]);
  assert.deepEqual([same.lo, same.hi, same.p], [NaN, NaN, 0.0625]);
  assert.ok(Math.abs(same.diff - 0.01) < 1e-12);
  assert.match(pairedGapPoints(same), /^\+1\.00 \(no interval: the same gap on every seed\)$/);
  assert.equal(pairedGapPoints(paired([0.5], [0.4])), '+10.00 (no interval: fewer than 2 seeds)');
  // Welch on two different constant samples: no interval, no verdict
  const w = welch([1, 1], [2, 2]);
  assert.ok(Number.isNaN(w.lo) && Number.isNaN(w.p));
  assert.equal(verdict([1, 1], [2, 2]), 'no significant difference');
});

test('median (dev/median.ts, the one median of bench/ and lab/): middle value, mean of the middle two, NaN when empty; the input is not reordered', () => {
  const xs = [5, 1, 4, 2];
  assert.equal(median(xs), 3);
  assert.deepEqual(xs, [5, 1, 4, 2]);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([7]), 7);
  assert.ok(Number.isNaN(median([])));
  assert.equal(medianOrNull([]), null);
  assert.equal(medianOrNull([2, 10, 4]), 4);
});
