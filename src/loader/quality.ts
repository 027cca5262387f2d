// Measuring how well an epoch's order is shuffled: position/index correlation, displacement and class runs.

/** Shuffle statistics of one epoch's order (uniform shuffle: correlation ~ 0 +- 1/sqrt(n), displacement ~ 1/3). */
export interface ShuffleQuality {
  samples: number;
  /** Pearson correlation between position in the epoch and stored index (a stored-order epoch gives 1). */
  positionCorrelation: number;
  /** Mean |position - stored index| / n (uniform: about 1/3; stored order: 0). */
  meanDisplacement: number;
  /** Mean length of runs of equal labels, when labels are given. */
  classRunMean?: number;
  /** What classRunMean would be, on average, for a uniform shuffle of the same labels: 1 / (1 - sum p_c^2). */
  classRunUniform?: number;
}

/** Measure the order `ids` (stored index of the sample at each position); `label(id)` gives class labels if known. */
export function shuffleQuality(ids: ArrayLike<number>, label?: (id: number) => number): ShuffleQuality {
  const n = ids.length;
  let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0, disp = 0;
  for (let i = 0; i < n; i++) {
    const v = ids[i];
    sx += i; sy += v; sxx += i * i; syy += v * v; sxy += i * v; disp += Math.abs(i - v);
  }
  const cov = sxy - (sx * sy) / n, vx = sxx - (sx * sx) / n, vy = syy - (sy * sy) / n;
  const q: ShuffleQuality = { samples: n, positionCorrelation: vx > 0 && vy > 0 ? cov / Math.sqrt(vx * vy) : 0, meanDisplacement: n > 0 ? disp / n / n : 0 };
  if (label && n > 0) {
    let runs = 1;
    const counts = new Map<number, number>();
    let prev = label(ids[0]);
    counts.set(prev, 1);
    for (let i = 1; i < n; i++) {
      const l = label(ids[i]);
      counts.set(l, (counts.get(l) ?? 0) + 1);
      if (l !== prev) runs++;
      prev = l;
    }
    let p2 = 0;
    for (const c of counts.values()) p2 += (c / n) ** 2;
    q.classRunMean = n / runs;
    q.classRunUniform = p2 < 1 ? 1 / (1 - p2) : n;
  }
  return q;
}
