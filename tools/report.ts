/**
 * The files of an evaluation report (`camgpu eval --out DIR`), written from the metric
 * records: summary.csv and summary.json (mean, sample std and bootstrap interval per
 * method × metric), each curve metric's curves as .npy per method with an index, and the
 * plots as SVG and PNG. Every file is written atomically (`writeFileAtomic`, in
 * tools/journal.ts: a temporary file in the same directory, fsync, rename, fsync of the
 * directory), so a reader never sees half a file.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { renderSvgToPng } from '../src/io/grid-node.js';
import { formatNpy } from '../src/io/npy.js';
import { curvesSpec, renderSvg, summarySpec } from '../src/metrics/plots.js';
import type { MetricRecord } from '../src/metrics/records.js';
import { curveMetrics, DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, meanCurves, type SummaryOptions, type SummaryRow, summarize } from '../src/metrics/summary.js';
import { InputError } from '../src/runtime/errors.js';
import { writeFileAtomic } from './journal.js';

export { writeFileAtomic } from './journal.js';

/** A method or metric name as part of a file name: letters, digits, '+', '_' and '-' kept, anything else '_'. */
export function fileStem(name: string): string {
  return name.replace(/[^A-Za-z0-9+_-]/g, '_');
}

export interface ReportOptions extends SummaryOptions {
  /** Write the SVG and PNG plots. Default true. */
  plots?: boolean;
  /** PNG pixels per SVG pixel. Default 2. */
  pngScale?: number;
}

/** One method's curves file, as the index `curves-<metric>.json` lists it. */
export interface CurvesIndexEntry {
  method: string;
  /** float32 [images, points], rows in the order of `images`. */
  file: string;
  /** float32 [points]: the x-coordinates. */
  xFile: string;
  images: (string | number)[];
  targets: number[];
  x: number[];
}

export interface CurvesIndex {
  metric: string;
  methods: CurvesIndexEntry[];
}

/** The summary.json document. */
export interface SummaryDocument {
  resamples: number;
  confidence: number;
  seed: number;
  std: string;
  interval: string;
  rows: SummaryRow[];
}

const CSV_COLUMNS = ['method', 'metric', 'n', 'undefined', 'mean', 'std', 'ci_low', 'ci_high'] as const;

function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** summary.csv: one line per row; numbers in full (shortest round-trip) precision, empty where null. */
export function summaryCsv(rows: readonly SummaryRow[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of rows) lines.push([r.method, r.metric, r.n, r.undefinedCount, r.mean, r.std, r.ciLow, r.ciHigh].map(csvField).join(','));
  return `${lines.join('\n')}\n`;
}

/**
 * Writes the report of `records` into `dir` (created if missing) and returns the names of the
 * files written, relative to `dir`. Files:
 * - summary.csv, summary.json;
 * - per metric with curves: curves-<metric>-<method>.npy (float32 [images, points]),
 *   curves-<metric>-<method>.x.npy (float32 [points]) and curves-<metric>.json (the index:
 *   per method its files, images and targets in row order, and x);
 * - plots: curves-<metric>.svg/.png per curve metric, summary.svg/.png.
 */
export async function writeReport(dir: string, records: readonly MetricRecord[], options: ReportOptions = {}): Promise<string[]> {
  const resamples = options.resamples ?? DEFAULT_RESAMPLES;
  const confidence = options.confidence ?? DEFAULT_CONFIDENCE;
  const seed = options.seed ?? 0;
  const rows = summarize(records, { ...options, resamples, confidence, seed });
  const curves = curveMetrics(records).map((metric) => ({ metric, bands: meanCurves(records, metric, { methods: options.methods }) }));

  // Every name is decided before anything is written, so a clash fails with nothing half-done.
  const owners = new Map<string, string>();
  const claim = (file: string, owner: string): string => {
    const prev = owners.get(file);
    if (prev !== undefined && prev !== owner) throw new InputError(`${join(dir, file)}: ${prev} and ${owner} map to the same file name; rename one of them`);
    owners.set(file, owner);
    return file;
  };
  claim('summary.csv', 'the summary');
  claim('summary.json', 'the summary');
  const plots = options.plots ?? true;
  if (plots) {
    claim('summary.svg', 'the summary');
    claim('summary.png', 'the summary');
  }
  const curveFiles = curves.map(({ metric, bands }) => {
    const m = fileStem(metric);
    const owner = `metric '${metric}'`;
    return {
      metric,
      bands,
      index: claim(`curves-${m}.json`, owner),
      svg: plots ? claim(`curves-${m}.svg`, owner) : null,
      png: plots ? claim(`curves-${m}.png`, owner) : null,
      methods: bands.map((b) => {
        const who = `method '${b.method}' of metric '${metric}'`;
        return { band: b, file: claim(`curves-${m}-${fileStem(b.method)}.npy`, who), xFile: claim(`curves-${m}-${fileStem(b.method)}.x.npy`, who) };
      }),
    };
  });

  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const put = (file: string, data: Uint8Array | string) => {
    writeFileAtomic(join(dir, file), data);
    written.push(file);
  };

  put('summary.csv', summaryCsv(rows));
  const doc: SummaryDocument = {
    resamples,
    confidence,
    seed,
    std: 'sample standard deviation (divisor n − 1)',
    interval: 'percentile bootstrap of the mean (mulberry32 stream per method × metric, NumPy-linear quantiles)',
    rows,
  };
  put('summary.json', `${JSON.stringify(doc, null, 2)}\n`);

  for (const c of curveFiles) {
    const index: CurvesIndex = { metric: c.metric, methods: [] };
    for (const { band, file, xFile } of c.methods) {
      const points = band.x.length;
      const data = new Float32Array(band.n * points);
      band.curves.forEach((curve, i) => data.set(curve, i * points));
      put(file, formatNpy(data, [band.n, points]));
      put(xFile, formatNpy(Float32Array.from(band.x), [points]));
      index.methods.push({ method: band.method, file, xFile, images: band.images, targets: band.targets, x: band.x });
    }
    put(c.index, `${JSON.stringify(index, null, 2)}\n`);
  }

  if (plots) {
    const scale = options.pngScale ?? 2;
    const draw = async (spec: Parameters<typeof renderSvg>[0], svgFile: string, pngFile: string) => {
      put(svgFile, await renderSvg(spec));
      put(pngFile, renderSvgToPng(await renderSvg(spec, { scale })));
    };
    for (const c of curveFiles) await draw(curvesSpec(c.bands), c.svg!, c.png!);
    if (rows.some((r) => r.mean !== null)) await draw(summarySpec(rows, { confidence }), 'summary.svg', 'summary.png');
  }
  return written;
}
