// The one median of the repository's tools (bench/, lab/): benchmarks and the lab report medians of timed rounds.

/**
 * The median of `xs` (the mean of the middle two for an even count); NaN when empty.
 * @example median([3, 1, 2]) // 2
 * @example median([4, 1, 3, 2]) // 2.5
 */
export function median(xs: readonly number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * {@link median}, or null when `xs` is empty (a contender that never ran).
 * @example medianOrNull([]) // null
 */
export function medianOrNull(xs: readonly number[]): number | null {
  return xs.length ? median(xs) : null;
}
