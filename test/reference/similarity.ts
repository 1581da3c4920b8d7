/** Float64 references of the similarity metrics (test/metrics-similarity.test.ts, test/metrics-eval.test.ts), from their definitions. */

/** 1-based ranks, ties sharing the mean of the ranks they span. */
export function ranks64(x: ArrayLike<number>): Float64Array {
  const order = Array.from({ length: x.length }, (_, i) => i).sort((i, j) => x[i] - x[j] || i - j);
  const r = new Float64Array(x.length);
  for (let s = 0; s < order.length;) {
    let e = s;
    while (e + 1 < order.length && x[order[e + 1]] === x[order[s]]) e++;
    for (let k = s; k <= e; k++) r[order[k]] = (s + e) / 2 + 1;
    s = e + 1;
  }
  return r;
}

export function pearson64(x: ArrayLike<number>, y: ArrayLike<number>): number {
  const n = x.length;
  let mx = 0;
  let my = 0;
  for (let i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = x[i] - mx;
    const dy = y[i] - my;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy);
}

export const spearman64 = (x: ArrayLike<number>, y: ArrayLike<number>) => pearson64(ranks64(x), ranks64(y));
