import type { Sym } from '../ops/graph.js';
import type { Tape } from '../ops/tape.js';
import { ShapeError } from '../runtime/errors.js';
import { formatShape, sizeOf } from '../runtime/shape.js';

/**
 * Similarities between pairs of saliency maps, recorded on a tape (nothing is read back):
 * Spearman's rank correlation (ranks from the GPU sort) and SSIM, as the cascading
 * randomization check (SPEC §2) compares each randomized model's maps with the original's.
 *
 * A similarity is undefined for some pairs (a constant map has no ranks to correlate; two
 * equal constant maps have no data range for SSIM; NaN or ±Inf anywhere). Every function
 * returns the value and a validity flag per pair, so that the metric layer can write an
 * explicit "undefined" record instead of a silent NaN; where the flag is 0 the value is
 * `undefinedValue` (0 unless the caller asks for NaN or another number).
 */
export interface Similarity {
  /** [N]: one value per pair; `undefinedValue` where `valid` is 0. */
  value: Sym;
  /** [N]: 1 where the value is defined, 0 where it is not. */
  valid: Sym;
}

export interface UndefinedOption {
  /** The value written where a pair's similarity is undefined (default 0; NaN is allowed). */
  undefinedValue?: number;
}

/** x [N, …] as rows [N, L]. */
function rows(t: Tape, x: Sym, where: string): Sym {
  if (x.shape.length < 2) throw new ShapeError(where, `expects maps [N, …] with at least one value per map, got ${formatShape(x.shape)}`);
  const n = x.shape[0];
  const l = sizeOf(x.shape.slice(1));
  if (n < 1 || l < 1) throw new ShapeError(where, `expects at least one map of at least one value, got ${formatShape(x.shape)}`);
  return x.shape.length === 2 ? x : t.reshape(x, [n, l]);
}

function samePairs(a: Sym, b: Sym, where: string): void {
  if (formatShape(a.shape) !== formatShape(b.shape)) throw new ShapeError(where, `the two batches of maps must have the same shape, got ${formatShape(a.shape)} and ${formatShape(b.shape)}`);
}

function concat(t: Tape, xs: readonly Sym[], axis: number): Sym {
  return t.record({ kind: 'concat', inputs: xs.map((x) => x.name), axis }, null, { name: 'concat', opType: 'Concat' });
}

/** Rows [start, start + count) of x [R, L]. */
function sliceRows(t: Tape, x: Sym, start: number, count: number): Sym {
  return t.record({ kind: 'slice', inputs: [x.name], axis: 0, start }, [count, ...x.shape.slice(1)], { name: 'slice_rows', opType: 'Slice' });
}

/** A reduction of each row of x [N, L] → [N] (reduce keeps the reduced axes as 1). */
function perRow(t: Tape, kind: 'sum' | 'mean' | 'max' | 'min', x: Sym): Sym {
  return t.reshape(t.reduce(kind, x, [1]), [x.shape[0]]);
}

/** 1 where cond ≠ 0 (NaN counts as ≠ 0: `where` tests the bits), else 0. */
function nonzero(t: Tape, cond: Sym): Sym {
  return t.where(cond, t.scalar(1), t.scalar(0));
}

/**
 * Per row of x [N, L]: 1 if every value is finite, else 0. Σ x·0 is 0 for finite rows and
 * NaN as soon as one value is NaN or ±Inf.
 */
export function finiteRows(t: Tape, x: Sym): Sym {
  const probe = perRow(t, 'sum', t.mul(x, t.scalar(0)));
  return t.where(probe, t.scalar(0), t.scalar(1));
}

/** Per row of x [N, L]: 1 unless all its values are equal (max − min is exact in float32). */
function nonConstantRows(t: Tape, x: Sym): Sym {
  return nonzero(t, t.sub(perRow(t, 'max', x), perRow(t, 'min', x)));
}

/**
 * Average ranks per row of x [N, …] → [N, L], 1-based with ties sharing the mean of the ranks
 * they span (scipy.stats.rankdata's 'average' rule). With stable sorts, an element's
 * ascending position p and its position q in the descending order (ties again in index
 * order) bracket its tie group: the group's mean 0-based rank is (p + (L − 1 − q)) / 2. The
 * descending order is the ascending order of −x, so one pair of sorts serves both: argsort,
 * then the argsort of that permutation, which is each element's position.
 */
export function averageRanks(t: Tape, x: Sym): Sym {
  const r = rows(t, x, 'averageRanks');
  const [n, l] = r.shape;
  return t.scope('average_ranks', () => {
    const both = concat(t, [r, t.mul(r, t.scalar(-1))], 0);
    const order = t.sort(both, { descending: false, output: 'indices' });
    const position = t.sort(order, { descending: false, output: 'indices' });
    const ascending = sliceRows(t, position, 0, n);
    const descending = sliceRows(t, position, n, n);
    // (p + (L − 1 − q)) / 2 + 1 = (p − q + L + 1) / 2
    return t.mul(t.add(t.sub(ascending, descending), t.scalar(l + 1)), t.scalar(0.5));
  });
}

/**
 * Pearson correlation of the rows of a and b, given them already centered (ca, cb [N, L]):
 * Σ ca·cb / (√Σ ca² · √Σ cb²), clipped to [−1, 1] as numpy's corrcoef does.
 */
function centeredCorrelation(t: Tape, ca: Sym, cb: Sym): Sym {
  const cov = perRow(t, 'sum', t.mul(ca, cb));
  const va = perRow(t, 'sum', t.mul(ca, ca));
  const vb = perRow(t, 'sum', t.mul(cb, cb));
  const r = t.div(cov, t.mul(t.activation(va, { kind: 'sqrt' }), t.activation(vb, { kind: 'sqrt' })));
  return t.activation(r, { kind: 'clip', min: -1, max: 1 });
}

function withValidity(t: Tape, value: Sym, valid: Sym, options: UndefinedOption): Similarity {
  return { value: t.where(valid, value, t.scalar(options.undefinedValue ?? 0)), valid };
}

/**
 * Pearson correlation per pair of maps a, b [N, …] → [N]. Undefined where either map is
 * constant or not finite. Rows are centered on their mean before the products (float32
 * sums of raw squares lose the variance of maps far from zero).
 */
export function pearson(t: Tape, a: Sym, b: Sym, options: UndefinedOption = {}): Similarity {
  samePairs(a, b, 'pearson');
  const ra = rows(t, a, 'pearson');
  const rb = rows(t, b, 'pearson');
  return t.scope('pearson', () => {
    const center = (x: Sym) => t.sub(x, t.reduce('mean', x, [1]));
    const value = centeredCorrelation(t, center(ra), center(rb));
    const valid = t.mul(t.mul(finiteRows(t, ra), finiteRows(t, rb)), t.mul(nonConstantRows(t, ra), nonConstantRows(t, rb)));
    return withValidity(t, value, valid, options);
  });
}

/**
 * Spearman's rank correlation per pair of maps a, b [N, …] → [N], as scipy.stats.spearmanr
 * (and Quantus's `correlation_spearman`, which takes the diagonal of its cross block):
 * average ranks for ties, then the Pearson correlation of the ranks. scipy returns NaN for a
 * constant map; here that pair (and any pair with a non-finite value) has valid = 0.
 * Average ranks sum to L(L + 1)/2 whatever the ties, so their mean is (L + 1)/2 exactly and
 * the centered ranks are exact half-integers (a constant row centers to exact zeros).
 */
export function spearman(t: Tape, a: Sym, b: Sym, options: UndefinedOption = {}): Similarity {
  samePairs(a, b, 'spearman');
  const ra = rows(t, a, 'spearman');
  const rb = rows(t, b, 'spearman');
  const [n, l] = ra.shape;
  return t.scope('spearman', () => {
    const ranks = averageRanks(t, concat(t, [ra, rb], 0));
    const centered = t.sub(ranks, t.scalar((l + 1) / 2));
    const value = centeredCorrelation(t, sliceRows(t, centered, 0, n), sliceRows(t, centered, n, n));
    const valid = t.mul(t.mul(finiteRows(t, ra), finiteRows(t, rb)), t.mul(nonConstantRows(t, ra), nonConstantRows(t, rb)));
    return withValidity(t, value, valid, options);
  });
}

export interface SsimOptions extends UndefinedOption {
  /**
   * 'flattened' (default): each map is one row of H·W values and the window slides along it,
   * which is what Quantus's randomization metrics compute (MPRT and Random Logit reshape the
   * maps to [N, H·W] before calling its `ssim`). 'image': the window slides over the H×W
   * map, skimage's structural_similarity of the 2-D maps (Adebayo et al.'s use).
   */
  layout?: 'flattened' | 'image';
  /** Side of the uniform window (odd, ≥ 3; default 7, skimage's default). */
  winSize?: number;
  /**
   * The data range R in C1 = (K1·R)², C2 = (K2·R)²: 'pair' (default) is Quantus's choice,
   * |max − min| over both maps of the pair; a number fixes it for every pair.
   */
  dataRange?: 'pair' | number;
  /** skimage's K1 and K2 (defaults 0.01, 0.03). */
  k1?: number;
  k2?: number;
}

/**
 * SSIM per pair of maps a, b [N, H, W] → [N], with skimage's defaults as Quantus calls it:
 * uniform window of 7, sample covariance (× NP/(NP − 1), NP the window's size), K1 0.01,
 * K2 0.03, and the mean taken over the positions at least (win − 1)/2 from every border.
 * Those are exactly the positions whose window lies inside the map, so the boundary mode of
 * skimage's filter never reaches the result, and an unpadded average pool computes every
 * local mean needed. Local variances are computed from maps centered on their own mean
 * (variances and covariances do not change; float32 E[x²] − E[x]² would cancel).
 * Undefined where the data range is 0 (two equal constant maps: skimage gives NaN) or a map
 * has a non-finite value.
 */
export function ssim(t: Tape, a: Sym, b: Sym, options: SsimOptions = {}): Similarity {
  samePairs(a, b, 'ssim');
  const layout = options.layout ?? 'flattened';
  const win = options.winSize ?? 7;
  const k1 = options.k1 ?? 0.01;
  const k2 = options.k2 ?? 0.03;
  const range = options.dataRange ?? 'pair';
  if (!(Number.isInteger(win) && win >= 3 && win % 2 === 1)) throw new ShapeError('ssim', `winSize must be an odd whole number ≥ 3, got ${win}`);
  if (!(k1 >= 0 && k2 >= 0 && Number.isFinite(k1) && Number.isFinite(k2))) throw new ShapeError('ssim', `K1 and K2 must be finite and ≥ 0, got ${k1} and ${k2}`);
  if (range !== 'pair' && !(range > 0 && Number.isFinite(range))) throw new ShapeError('ssim', `dataRange must be 'pair' or a positive number, got ${range}`);
  const ra = rows(t, a, 'ssim');
  const rb = rows(t, b, 'ssim');
  const [n, l] = ra.shape;
  let h: number;
  let w: number;
  let kernel: [number, number];
  if (layout === 'image') {
    if (a.shape.length !== 3) throw new ShapeError('ssim', `layout 'image' expects maps [N, H, W], got ${formatShape(a.shape)}`);
    [, h, w] = a.shape;
    if (h < win || w < win) throw new ShapeError('ssim', `a ${win}×${win} window does not fit maps of ${h}×${w}`);
    kernel = [win, win];
  } else {
    if (l < win) throw new ShapeError('ssim', `a window of ${win} does not fit flattened maps of ${l} values`);
    [h, w] = [1, l];
    kernel = [1, win];
  }
  const np = kernel[0] * kernel[1];
  const covNorm = np / (np - 1);
  return t.scope('ssim', () => {
    const perPair = (v: Sym) => t.reshape(v, [n, 1, 1, 1]);
    const image = (x: Sym) => t.reshape(x, [n, 1, h, w]);
    const pool = (x: Sym) => t.record({
      kind: 'pool', pool: 'avg', inputs: [x.name],
      attrs: { kernel, strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], ceilMode: false, countIncludePad: false },
    }, null, { name: 'ssim_window', opType: 'AveragePool' });
    const meanA = perPair(perRow(t, 'mean', ra));
    const meanB = perPair(perRow(t, 'mean', rb));
    const ca = t.sub(image(ra), meanA);
    const cb = t.sub(image(rb), meanB);
    const pa = pool(ca);
    const pb = pool(cb);
    const norm = t.scalar(covNorm);
    const vx = t.mul(t.sub(pool(t.mul(ca, ca)), t.mul(pa, pa)), norm);
    const vy = t.mul(t.sub(pool(t.mul(cb, cb)), t.mul(pb, pb)), norm);
    const vxy = t.mul(t.sub(pool(t.mul(ca, cb)), t.mul(pa, pb)), norm);
    const ux = t.add(pa, meanA);
    const uy = t.add(pb, meanB);
    let dataRange: Sym;
    if (range === 'pair') {
      const both = concat(t, [ra, rb], 1);
      dataRange = t.activation(t.sub(perRow(t, 'max', both), perRow(t, 'min', both)), { kind: 'abs' });
    } else {
      dataRange = t.broadcast(t.scalar(range), [n]);
    }
    const c1 = perPair(t.activation(t.mul(dataRange, t.scalar(k1)), { kind: 'square' }));
    const c2 = perPair(t.activation(t.mul(dataRange, t.scalar(k2)), { kind: 'square' }));
    const two = t.scalar(2);
    const a1 = t.add(t.mul(t.mul(ux, uy), two), c1);
    const a2 = t.add(t.mul(vxy, two), c2);
    const b1 = t.add(t.add(t.mul(ux, ux), t.mul(uy, uy)), c1);
    const b2 = t.add(t.add(vx, vy), c2);
    const s = t.div(t.mul(a1, a2), t.mul(b1, b2));
    const value = t.reshape(t.reduce('mean', s, [1, 2, 3]), [n]);
    const finite = t.mul(finiteRows(t, ra), finiteRows(t, rb));
    const valid = range === 'pair' ? t.mul(finite, nonzero(t, dataRange)) : finite;
    return withValidity(t, value, valid, options);
  });
}
