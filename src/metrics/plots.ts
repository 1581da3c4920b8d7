import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { CurveBand, SummaryRow } from './summary.js';

/**
 * The evaluation's plots as Vega-Lite specs, rendered to SVG by Vega without a DOM
 * (renderer 'none', `toSVG`), so the same code draws them in Node (`camgpu eval`, then
 * resvg for PNG) and in the web demo. No Node API here.
 */

/**
 * Text font. resvg finds DejaVu Sans on Debian (fonts-dejavu-core, which src/io/grid-node.ts
 * loads), browsers fall back along the list.
 */
export const PLOT_FONT = 'DejaVu Sans, Liberation Sans, Arial, sans-serif';

/** Axis titles of the curves of each metric; a metric not here gets 'step' and 'score'. */
export const CURVE_AXES: Record<string, { x: string; y: string }> = {
  insertion: { x: 'fraction of pixels inserted', y: 'score' },
  deletion: { x: 'fraction of pixels deleted', y: 'score' },
  'road-morf': { x: 'fraction of pixels removed (MoRF)', y: 'score' },
  'road-lerf': { x: 'fraction of pixels removed (LeRF)', y: 'score' },
  randomization: { x: 'layers re-initialized', y: 'rank correlation' },
};

export interface CurvesPlotOptions {
  title?: string;
  xTitle?: string;
  yTitle?: string;
  /** Plot area, px. Defaults 420 × 300. */
  width?: number;
  height?: number;
}

function baseConfig(): NonNullable<TopLevelSpec['config']> {
  return { font: PLOT_FONT, view: { stroke: '#dddddd' }, background: 'white' };
}

/**
 * One metric's curves: per method the mean curve as a line over a mean ± std band, colored by
 * method. Every band must be of the same metric.
 */
export function curvesSpec(bands: readonly CurveBand[], options: CurvesPlotOptions = {}): TopLevelSpec {
  const metric = bands[0]?.metric ?? '';
  const axes = CURVE_AXES[metric] ?? { x: 'step', y: 'score' };
  const values = bands.flatMap((b) => b.x.map((x, i) => ({ method: b.method, x, mean: b.mean[i], low: b.low[i], high: b.high[i], n: b.n })));
  const methods = bands.map((b) => b.method);
  const color = { field: 'method', type: 'nominal' as const, title: 'method', scale: { domain: methods } };
  const x = { field: 'x', type: 'quantitative' as const, title: options.xTitle ?? axes.x };
  return {
    title: options.title ?? `${metric}: mean curve per method, band = mean ± std`,
    width: options.width ?? 420,
    height: options.height ?? 300,
    data: { values },
    layer: [
      {
        mark: { type: 'area', opacity: 0.18 },
        encoding: { x, y: { field: 'low', type: 'quantitative', title: options.yTitle ?? axes.y }, y2: { field: 'high' }, color },
      },
      {
        mark: { type: 'line', strokeWidth: 2 },
        encoding: { x, y: { field: 'mean', type: 'quantitative', title: options.yTitle ?? axes.y }, color },
      },
    ],
    config: baseConfig(),
  };
}

export interface SummaryPlotOptions {
  title?: string;
  /** Width of each metric's column, px. Default 180. */
  columnWidth?: number;
  /** Height of one method's bar, px. Default 22. */
  rowHeight?: number;
  /** Metrics per line of the table; further metrics wrap onto the next line. Default 4. */
  columns?: number;
  /** The intervals' coverage, for the title. Default 0.95. */
  confidence?: number;
}

/**
 * The summary as a table of bar charts: one cell per metric (each its own x scale, the
 * metrics' units differ; `columns` cells a line), in each a bar per method at its mean, the
 * bootstrap interval as an error bar and the mean written beside it. (method, metric) pairs without a mean (every map
 * undefined) are left out.
 */
export function summarySpec(rows: readonly SummaryRow[], options: SummaryPlotOptions = {}): TopLevelSpec {
  const defined = rows.filter((r) => r.mean !== null);
  const values = defined.map((r) => ({
    method: r.method,
    metric: r.metric,
    mean: r.mean,
    ciLow: r.ciLow,
    ciHigh: r.ciHigh,
    n: r.n,
    label: formatValue(r.mean!),
  }));
  const methods = [...new Set(defined.map((r) => r.method))];
  const metrics = [...new Set(defined.map((r) => r.metric))];
  const y = { field: 'method', type: 'nominal' as const, title: null, sort: methods };
  const color = { field: 'method', type: 'nominal' as const, legend: null, scale: { domain: methods } };
  return {
    title: options.title ?? `mean per method and metric, error bars = ${formatValue(100 * (options.confidence ?? 0.95))} % bootstrap interval`,
    data: { values },
    facet: { field: 'metric', type: 'nominal', title: null, sort: metrics, header: { labelFontSize: 12, labelFontWeight: 'bold' } },
    columns: options.columns ?? 4,
    spec: {
      width: options.columnWidth ?? 180,
      height: { step: options.rowHeight ?? 22 },
      layer: [
        { mark: { type: 'bar', opacity: 0.75 }, encoding: { y, x: { field: 'mean', type: 'quantitative', title: 'mean' }, color } },
        { mark: { type: 'rule', color: '#222222' }, encoding: { y, x: { field: 'ciLow', type: 'quantitative' }, x2: { field: 'ciHigh' } } },
        { mark: { type: 'text', align: 'left', dx: 4, fontSize: 10, color: '#222222' }, encoding: { y, x: { field: 'ciHigh', type: 'quantitative' }, text: { field: 'label' } } },
      ],
    },
    resolve: { scale: { x: 'independent' } },
    config: baseConfig(),
  };
}

/** Four significant digits, without exponent for the usual ranges of metric values. */
export function formatValue(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 1e-3 && a < 1e6 ? String(Number(v.toPrecision(4))) : v.toExponential(3);
}

export interface RenderOptions {
  /** Multiplies the SVG's width and height (for a sharper PNG). Default 1. */
  scale?: number;
}

/** A Vega-Lite spec as an SVG document: compiled to Vega, run headless, drawn by Vega's SVG renderer. */
export async function renderSvg(spec: TopLevelSpec, options: RenderOptions = {}): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG(options.scale ?? 1);
  } finally {
    view.finalize();
  }
}
