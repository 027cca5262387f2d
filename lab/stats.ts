// Small statistics for the lab's tables: mean, sample s.d., Student-t 95% intervals, and Welch's interval of a difference.

/** Arithmetic mean (NaN for no values). */
export function mean(x: readonly number[]): number {
  return x.length ? x.reduce((s, v) => s + v, 0) / x.length : NaN;
}

/** Sample standard deviation (n - 1 denominator; NaN below two values). */
export function sd(x: readonly number[]): number {
  if (x.length < 2) return NaN;
  const m = mean(x);
  return Math.sqrt(x.reduce((s, v) => s + (v - m) ** 2, 0) / (x.length - 1));
}

function logGamma(z: number): number {
  // Lanczos (g = 7, n = 9)
  const c = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - logGamma(1 - z);
  z -= 1;
  let x = c[0];
  for (let i = 1; i < 9; i++) x += c[i] / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(x);
}

/** Continued fraction of the regularized incomplete beta function (modified Lentz). */
function betacf(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1, d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny; c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny; d = 1 / d; h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d; if (Math.abs(d) < tiny) d = tiny; c = 1 + aa / c; if (Math.abs(c) < tiny) c = tiny; d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** Regularized incomplete beta I_x(a, b). */
function ibeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const bt = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  return x < (a + 1) / (a + b + 2) ? (bt * betacf(a, b, x)) / a : 1 - (bt * betacf(b, a, 1 - x)) / b;
}

/** Student-t cumulative distribution P(T <= t) with `df` degrees of freedom (df may be fractional, as Welch's). */
export function tCdf(t: number, df: number): number {
  const p = 0.5 * ibeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - p : p;
}

/** Student-t quantile: the t with P(T <= t) = p (bisection on tCdf; |error| < 1e-10). */
export function tQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1) || !(df > 0)) return NaN;
  let lo = -1e3, hi = 1e3;
  for (let i = 0; i < 200 && hi - lo > 1e-12; i++) {
    const mid = (lo + hi) / 2;
    if (tCdf(mid, df) < p) lo = mid; else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Summary of one cell: n, mean, s.d. and the two-sided 95% t-interval of the mean. */
export interface Summary { n: number; mean: number; sd: number; lo: number; hi: number }

/** Mean, s.d. and 95% t-interval of `x` (interval NaN below two values). */
export function summarize(x: readonly number[]): Summary {
  const m = mean(x), s = sd(x), n = x.length;
  const h = n >= 2 ? tQuantile(0.975, n - 1) * s / Math.sqrt(n) : NaN;
  return { n, mean: m, sd: s, lo: m - h, hi: m + h };
}

/** Welch's comparison of two samples: difference of means a - b, its 95% interval, t, df and two-sided p. */
export interface Welch { diff: number; lo: number; hi: number; t: number; df: number; p: number }

/** Welch's unequal-variance t-test and 95% interval of mean(a) - mean(b). */
export function welch(a: readonly number[], b: readonly number[]): Welch {
  const va = sd(a) ** 2 / a.length, vb = sd(b) ** 2 / b.length;
  const diff = mean(a) - mean(b);
  const se = Math.sqrt(va + vb);
  // two constant samples: identical (nothing to test) or different with no spread to size an interval by (no verdict)
  if (se === 0) return diff === 0 ? { diff, lo: 0, hi: 0, t: 0, df: a.length + b.length - 2, p: 1 } : { diff, lo: NaN, hi: NaN, t: NaN, df: a.length + b.length - 2, p: NaN };
  const df = (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  const t = diff / se;
  const h = tQuantile(0.975, df) * se;
  return { diff, lo: diff - h, hi: diff + h, t, df, p: 2 * tCdf(-Math.abs(t), df) };
}

/**
 * The paired comparison of a and b measured on the same seeds (a[k] and b[k] share initial weights, data order, ...):
 * mean of the differences a[k] − b[k], its 95% t-interval, t, df and two-sided p. Differences equal on every seed have
 * no spread: identical (interval [0, 0], p = 1), or a constant nonzero shift, which has no t-interval (NaN: no verdict)
 * and the exact sign test's p = 2·2^−n (n shifts of one sign; 0.0625 at n = 5) — test errors are counts over a test set,
 * so equal per-seed gaps happen by chance and are not a certainty. Samples of different lengths cannot be paired: NaN.
 * @example paired([0.97, 0.96, 0.98], [0.975, 0.962, 0.985]) // { diff: -0.004, lo: ..., hi: ..., p: ... }
 */
export function paired(a: readonly number[], b: readonly number[]): Welch {
  if (a.length !== b.length) return { diff: mean(a) - mean(b), lo: NaN, hi: NaN, t: NaN, df: 0, p: NaN };
  return pairedDiffs(a.map((v, k) => v - b[k]), Math.max(0, ...a.map(Math.abs), ...b.map(Math.abs)));
}

/**
 * {@link paired} from the per-seed differences themselves; `scale` is the size of the compared values (the differences
 * count as equal when they spread by less than 1e-9 of it: float rounding, not seeds).
 * @example pairedDiffs([0.002, -0.001, 0.004], 0.97) // { diff: 0.00167, lo: ..., hi: ..., p: ... }
 */
export function pairedDiffs(d: readonly number[], scale: number): Welch {
  const n = d.length, m = mean(d), s = n >= 2 ? sd(d) : NaN;
  if (!(n >= 2)) return { diff: m, lo: NaN, hi: NaN, t: NaN, df: 0, p: NaN };
  // "no spread" up to float rounding: gaps like 0.0193 − 0.0190 differ from seed to seed only in the last bits
  const tol = 1e-9 * scale;
  if (s <= tol) return Math.abs(m) <= tol ? { diff: 0, lo: 0, hi: 0, t: 0, df: n - 1, p: 1 } : { diff: m, lo: NaN, hi: NaN, t: NaN, df: n - 1, p: signTestP(n) };
  const se = s / Math.sqrt(n), t = m / se, h = tQuantile(0.975, n - 1) * se;
  return { diff: m, lo: m - h, hi: m + h, t, df: n - 1, p: 2 * tCdf(-Math.abs(t), n - 1) };
}

/**
 * {@link pairedSay}'s verdict as a clause of an answer: `none` for no significant difference, the verdict itself where
 * it is no verdict or "identical on every seed", else the verdict "at 95%".
 * @example pairedClause('lower than fp32', 'not distinguishable from fp32 at 95%') // 'lower than fp32 at 95%'
 */
export function pairedClause(verdict: string, none: string): string {
  if (verdict === 'no significant difference') return none;
  return verdict.startsWith('no verdict') || verdict === 'identical on every seed' ? verdict : `${verdict} at 95%`;
}

/**
 * What a paired comparison lets one say: 'identical on every seed', 'higher'/'lower' where the 95% interval excludes 0,
 * 'no verdict (the same gap on every seed)' where the differences have no spread, else 'no significant difference'
 * (also with fewer than 2 pairs).
 */
export function pairedSay(w: Welch, higher: string, lower: string): string {
  if (!(w.df >= 1)) return 'no significant difference';
  if (w.diff === 0 && w.lo === 0 && w.hi === 0) return 'identical on every seed';
  if (Number.isNaN(w.lo)) return 'no verdict (the same gap on every seed)';
  return w.lo > 0 ? higher : w.hi < 0 ? lower : 'no significant difference';
}

/** Two-sided exact sign test when all n paired differences have one sign: 2·2^−n (at most 1). */
export function signTestP(n: number): number {
  return Math.min(1, 2 * 0.5 ** n);
}

/**
 * Holm's step-down adjustment of p-values for a family of tests (controls the chance of any false verdict at 5% when
 * an adjusted p is compared with 0.05); NaN p-values stay NaN and are not counted.
 * @example holm([0.01, 0.04, 0.03]) // [0.03, 0.06, 0.06]
 */
export function holm(ps: readonly number[]): number[] {
  const idx = ps.map((p, i) => [p, i] as const).filter(([p]) => Number.isFinite(p)).sort((x, y) => x[0] - y[0]);
  const out = ps.map(() => NaN);
  let run = 0;
  idx.forEach(([p, i], r) => { run = Math.max(run, Math.min(1, (idx.length - r) * p)); out[i] = run; });
  return out;
}

/**
 * A verdict only where the gap exceeds its uncertainty: 'higher' / 'lower' when the 95% interval of mean(a) - mean(b)
 * excludes 0, else 'no significant difference'.
 */
export function verdict(a: readonly number[], b: readonly number[]): 'higher' | 'lower' | 'no significant difference' {
  if (a.length < 2 || b.length < 2) return 'no significant difference';
  const w = welch(a, b);
  return w.lo > 0 ? 'higher' : w.hi < 0 ? 'lower' : 'no significant difference';
}

/** "m ± sd" of values scaled by `scale` (e.g. 100 for percent), with `digits` decimals. */
export function meanSd(x: readonly number[], scale = 1, digits = 2): string {
  const s = summarize(x);
  return x.length < 2 ? `${(scale * s.mean).toFixed(digits)} (n=${x.length})` : `${(scale * s.mean).toFixed(digits)} ± ${(scale * s.sd).toFixed(digits)}`;
}

/** "[lo, hi]" 95% interval of the mean, scaled. */
export function interval(x: readonly number[], scale = 1, digits = 2): string {
  const s = summarize(x);
  return x.length < 2 ? '–' : `[${(scale * s.lo).toFixed(digits)}, ${(scale * s.hi).toFixed(digits)}]`;
}

/** A difference in percentage points with its sign (×100, 2 decimals; a value that rounds to 0.00 prints 0.00, never -0.00; '–' if not finite). */
export function signedPoints(v: number): string {
  if (!Number.isFinite(v)) return '–';
  const t = (100 * v).toFixed(2);
  return Number(t) === 0 ? '0.00' : v > 0 ? `+${t}` : t;
}

/**
 * A paired difference in points: "Δ [lo, hi]", or "Δ (no interval: …)" for the same gap on every seed or fewer than 2 seeds.
 * @example pairedGapPoints(paired([0.97, 0.96], [0.965, 0.962])) // "+0.15 [..., ...]"
 */
export function pairedGapPoints(p: Welch): string {
  if (!(p.df >= 1)) return `${signedPoints(p.diff)} (no interval: fewer than 2 seeds)`;
  return Number.isNaN(p.lo) ? `${signedPoints(p.diff)} (no interval: the same gap on every seed)` : `${signedPoints(p.diff)} [${signedPoints(p.lo)}, ${signedPoints(p.hi)}]`;
}
