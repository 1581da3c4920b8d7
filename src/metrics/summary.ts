import { InputError, ShapeError } from '../runtime/errors.js';
import type { MetricRecord } from './records.js';

/**
 * Summaries of metric records (the `summary.csv` / `summary.json` of `camgpu eval`, and the
 * band of the curve plots). Pure arithmetic on host values: no Node API, so the web demo
 * uses it as it is.
 *
 * Every result is independent of the order the records come in (a resumed run's journal
 * holds them in another order than an uninterrupted run's): values are put in (image,
 * target) order before the bootstrap draws from them, and each (method, metric) draws from
 * its own stream, seeded from the seed and the pair's names, so adding a metric to a run
 * does not move another metric's interval.
 */

export interface SummaryOptions {
  /** Bootstrap resamples. Default 1000. */
  resamples?: number;
  /** Seed of the bootstrap's PRNG. Default 0. Same seed, same records → same intervals. */
  seed?: number;
  /** Coverage of the interval, in (0, 1). Default 0.95. */
  confidence?: number;
  /** Row order of the methods; methods not named follow in the order they first appear. */
  methods?: readonly string[];
  /** Row order of the metrics within a method, as for `methods`. */
  metrics?: readonly string[];
}

/** One (method, metric): its values over the images where the metric is defined. */
export interface SummaryRow {
  method: string;
  metric: string;
  /** Records with a value. */
  n: number;
  /** Records whose value is null (the metric is undefined for that map: constant map, …). */
  undefinedCount: number;
  /** Mean of the n values; null when n = 0. */
  mean: number | null;
  /** Sample standard deviation (divisor n − 1); null when n < 2. */
  std: number | null;
  /** Percentile-bootstrap interval of the mean; null when n = 0. */
  ciLow: number | null;
  ciHigh: number | null;
}

export const DEFAULT_RESAMPLES = 1000;
export const DEFAULT_CONFIDENCE = 0.95;

/**
 * mulberry32: a 32-bit state PRNG, small enough to state exactly (so a reader can reproduce
 * an interval in any language) and good enough for resampling indices.
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a over the UTF-8 bytes of `text`, 32 bits. */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h >>> 0;
}

/** The seed of one (method, metric)'s bootstrap stream: murmur3's finalizer of seed ⊕ FNV-1a(method NUL metric). */
export function bootstrapSeed(seed: number, method: string, metric: string): number {
  let h = ((seed >>> 0) ^ fnv1a32(`${method}\u0000${metric}`)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Quantile q of ascending `sorted` with linear interpolation between order statistics
 * (NumPy's default 'linear' method: position (len − 1)·q).
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * Percentile bootstrap of the mean of `values`: `resamples` times, n indices drawn uniformly
 * with replacement (index = ⌊u·n⌋, u from mulberry32(seed)), the resample's mean; the
 * interval is the (1 − c)/2 and (1 + c)/2 quantiles of those means.
 */
export function bootstrapMeanInterval(values: ArrayLike<number>, resamples: number, seed: number, confidence: number): [number, number] {
  const n = values.length;
  if (n === 0) throw new InputError('bootstrap of an empty sample');
  const next = mulberry32(seed);
  const means = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[Math.floor(next() * n)];
    means[b] = sum / n;
  }
  means.sort();
  const tail = (1 - confidence) / 2;
  return [quantileSorted(means, tail), quantileSorted(means, 1 - tail)];
}

/**
 * Total order of image keys: indices (numbers) before file names, numbers by value, names by
 * UTF-16 code units (not the locale's collation, which differs between machines).
 */
export function compareImages(a: string | number, b: string | number): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'number') return -1;
  if (typeof b === 'number') return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareRecords(a: MetricRecord, b: MetricRecord): number {
  return compareImages(a.image, b.image) || a.target - b.target;
}

/** The records grouped by (method, metric), methods and metrics in the requested or first-seen order. */
function groupRecords(records: readonly MetricRecord[], methodOrder: readonly string[] = [], metricOrder: readonly string[] = []): { method: string; metric: string; records: MetricRecord[] }[] {
  const methods = [...methodOrder];
  const metrics = [...metricOrder];
  const groups = new Map<string, { method: string; metric: string; records: MetricRecord[] }>();
  for (const r of records) {
    if (!methods.includes(r.method)) methods.push(r.method);
    if (!metrics.includes(r.metric)) metrics.push(r.metric);
    const key = JSON.stringify([r.method, r.metric]);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { method: r.method, metric: r.metric, records: [] }));
    g.records.push(r);
  }
  const out: { method: string; metric: string; records: MetricRecord[] }[] = [];
  for (const method of methods) {
    for (const metric of metrics) {
      const g = groups.get(JSON.stringify([method, metric]));
      if (g) out.push({ ...g, records: [...g.records].sort(compareRecords) });
    }
  }
  return out;
}

function describe(r: MetricRecord): string {
  return `image ${JSON.stringify(r.image)}, method '${r.method}', metric '${r.metric}', target ${r.target}`;
}

function checkUnique(sorted: readonly MetricRecord[]): void {
  for (let i = 1; i < sorted.length; i++) {
    if (compareRecords(sorted[i - 1], sorted[i]) === 0) {
      throw new InputError(`two records for ${describe(sorted[i])}: each (image, method, metric, target) is counted once`);
    }
  }
}

/** One row per (method, metric): n, undefined count, mean, sample std and the bootstrap interval of the mean. */
export function summarize(records: readonly MetricRecord[], options: SummaryOptions = {}): SummaryRow[] {
  const resamples = options.resamples ?? DEFAULT_RESAMPLES;
  const confidence = options.confidence ?? DEFAULT_CONFIDENCE;
  const seed = options.seed ?? 0;
  if (!(Number.isInteger(resamples) && resamples >= 1)) throw new InputError(`resamples must be a whole number ≥ 1, got ${resamples}`);
  if (!(confidence > 0 && confidence < 1)) throw new InputError(`confidence must lie in (0, 1), got ${confidence}`);
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff)) throw new InputError(`seed must be a whole number in [0, 2³²), got ${seed}`);
  const rows: SummaryRow[] = [];
  for (const g of groupRecords(records, options.methods, options.metrics)) {
    checkUnique(g.records);
    const values: number[] = [];
    let undefinedCount = 0;
    for (const r of g.records) {
      if (r.value === null) {
        undefinedCount++;
        continue;
      }
      if (typeof r.value !== 'number' || !Number.isFinite(r.value)) throw new InputError(`value ${r.value} of ${describe(r)} is not a finite number (an undefined metric is null)`);
      values.push(r.value);
    }
    const n = values.length;
    const row: SummaryRow = { method: g.method, metric: g.metric, n, undefinedCount, mean: null, std: null, ciLow: null, ciHigh: null };
    if (n > 0) {
      let sum = 0;
      for (const v of values) sum += v;
      const mean = sum / n;
      row.mean = mean;
      if (n > 1) {
        let ss = 0;
        for (const v of values) ss += (v - mean) ** 2;
        row.std = Math.sqrt(ss / (n - 1));
      }
      [row.ciLow, row.ciHigh] = bootstrapMeanInterval(values, resamples, bootstrapSeed(seed, g.method, g.metric), confidence);
    }
    rows.push(row);
  }
  return rows;
}

/** One method's curves of one metric, averaged point by point. */
export interface CurveBand {
  method: string;
  metric: string;
  /** The curves' x-coordinates (`curveX`; 0, 1, 2, … when the records have none). */
  x: number[];
  mean: number[];
  /** Pointwise sample std (n − 1); 0 everywhere when one curve. */
  std: number[];
  /** The band: mean − std and mean + std. */
  low: number[];
  high: number[];
  /** Curves averaged. */
  n: number;
  /** Their images, in the order of `curves` (image key order, then target). */
  images: (string | number)[];
  targets: number[];
  /** The curves themselves, one per image. */
  curves: number[][];
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Per method, the mean of its `metric` curves with a mean ± std band, over the records that
 * have a `curve`. The curves of one method must share their length and x-coordinates: a
 * mismatch is a ShapeError naming the method and two images that differ.
 */
export function meanCurves(records: readonly MetricRecord[], metric: string, options: Pick<SummaryOptions, 'methods'> = {}): CurveBand[] {
  const withCurves = records.filter((r) => r.metric === metric && r.curve !== undefined);
  const bands: CurveBand[] = [];
  for (const g of groupRecords(withCurves, options.methods)) {
    checkUnique(g.records);
    const first = g.records[0];
    const length = first.curve!.length;
    const x = first.curveX ? [...first.curveX] : Array.from({ length }, (_, i) => i);
    if (length === 0) throw new ShapeError(`${metric} curves of method '${g.method}'`, `image ${JSON.stringify(first.image)} has an empty curve`);
    if (x.length !== length) throw new ShapeError(`${metric} curves of method '${g.method}'`, `image ${JSON.stringify(first.image)} has ${length} points but ${x.length} x-coordinates`);
    const mean = new Array<number>(length).fill(0);
    for (const r of g.records) {
      const c = r.curve!;
      const where = `${metric} curves of method '${g.method}'`;
      if (c.length !== length) throw new ShapeError(where, `image ${JSON.stringify(r.image)} has ${c.length} points, image ${JSON.stringify(first.image)} has ${length}`);
      if (r.curveX && !sameNumbers(r.curveX, x)) throw new ShapeError(where, `images ${JSON.stringify(first.image)} and ${JSON.stringify(r.image)} have different x-coordinates`);
      if (!r.curveX && first.curveX) throw new ShapeError(where, `image ${JSON.stringify(r.image)} has no x-coordinates, image ${JSON.stringify(first.image)} has`);
      const bad = c.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
      if (bad >= 0) throw new InputError(`${where}: point ${bad} of image ${JSON.stringify(r.image)} is ${c[bad]}, not a finite number`);
      for (let i = 0; i < length; i++) mean[i] += c[i];
    }
    const n = g.records.length;
    for (let i = 0; i < length; i++) mean[i] /= n;
    const std = new Array<number>(length).fill(0);
    if (n > 1) {
      for (const r of g.records) for (let i = 0; i < length; i++) std[i] += (r.curve![i] - mean[i]) ** 2;
      for (let i = 0; i < length; i++) std[i] = Math.sqrt(std[i] / (n - 1));
    }
    bands.push({
      method: g.method,
      metric,
      x,
      mean,
      std,
      low: mean.map((m, i) => m - std[i]),
      high: mean.map((m, i) => m + std[i]),
      n,
      images: g.records.map((r) => r.image),
      targets: g.records.map((r) => r.target),
      curves: g.records.map((r) => [...r.curve!]),
    });
  }
  return bands;
}

/** The metrics of `records` that have curves, in first-seen order. */
export function curveMetrics(records: readonly MetricRecord[]): string[] {
  const out: string[] = [];
  for (const r of records) if (r.curve !== undefined && !out.includes(r.metric)) out.push(r.metric);
  return out;
}
