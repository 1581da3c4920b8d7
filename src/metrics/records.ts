/**
 * What an evaluation produces: one record per (image, method, metric), the unit of the
 * journal (`results.jsonl`), of the summaries and of `evaluate()`'s return value.
 */
export interface MetricRecord {
  /** The image: its file name, or its index for tensors and datasets. */
  image: string | number;
  /** The method whose map was judged ('maps' for maps given as a file). */
  method: string;
  /** The metric's name, e.g. 'insertion', 'deletion', 'ad', 'pointing'. */
  metric: string;
  /** The class the map explains and the metric scores. */
  target: number;
  /** The metric's value, or null where it is undefined for this map (see `undefined`). */
  value: number | null;
  /** Why `value` is null: e.g. 'constant map', 'NaN in map'. */
  undefined?: string;
  /** The metric's curve where it has one (insertion/deletion scores after each step, ROAD per percentage, …). */
  curve?: number[];
  /** The x-coordinates of `curve` (fraction of pixels changed, percentage, layer index, …). */
  curveX?: number[];
  /** Further named values the metric reports (e.g. ROAD's solver residual, the preset). */
  extra?: Record<string, number | string | boolean | null>;
}

/** The key a journal line is found by on resume. */
export function recordKey(r: Pick<MetricRecord, 'image' | 'method' | 'metric' | 'target'>): string {
  return JSON.stringify([r.image, r.method, r.metric, r.target]);
}
