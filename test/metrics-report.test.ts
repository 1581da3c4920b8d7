import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { build } from 'esbuild';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';
import { renderSvgToPng } from '../src/io/grid-node.js';
import { curvesSpec, renderSvg, summarySpec } from '../src/metrics/plots.js';
import type { MetricRecord } from '../src/metrics/records.js';
import { meanCurves, summarize, type SummaryRow } from '../src/metrics/summary.js';
import { InputError, ShapeError } from '../src/runtime/errors.js';
import { JOURNAL_FILE, Journal, LOCK_FILE } from '../tools/journal.js';
import { type CurvesIndex, type SummaryDocument, writeFileAtomic, writeReport } from '../tools/report.js';
import { npy } from './helpers/fixtures.js';
import { rng } from './helpers/random.js';

const scratch = mkdtempSync(join(tmpdir(), 'camgpu-metrics-report-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let dirCounter = 0;
const freshDir = (): string => join(scratch, `d${dirCounter++}`);

// ---------------------------------------------------------------------------------------
// A float64 reference of the bootstrap, written from its definition with BigInt arithmetic
// (mod 2³²) instead of Math.imul and unsigned shifts: the same stream, computed another way.

const M32 = 0xffffffffn;
const mul32 = (a: bigint, b: bigint) => (a * b) & M32;

function refMulberry32(seed: number): () => number {
  let state = BigInt(seed >>> 0);
  return () => {
    state = (state + 0x6d2b79f5n) & M32;
    let t = mul32(state ^ (state >> 15n), state | 1n);
    t = t ^ ((t + mul32(t ^ (t >> 7n), t | 61n)) & M32);
    return Number((t ^ (t >> 14n)) & M32) / 2 ** 32;
  };
}

function refSeed(seed: number, method: string, metric: string): number {
  let h = 0x811c9dc5n;
  for (const byte of Buffer.from(`${method}\0${metric}`, 'utf8')) h = mul32(h ^ BigInt(byte), 0x01000193n);
  h ^= BigInt(seed);
  h = mul32(h ^ (h >> 16n), 0x85ebca6bn);
  h = mul32(h ^ (h >> 13n), 0xc2b2ae35n);
  return Number(h ^ (h >> 16n));
}

/** Quantile with NumPy's 'linear' rule: position q·(B − 1) between the order statistics around it. */
function refQuantile(ascending: number[], q: number): number {
  const pos = q * (ascending.length - 1);
  const below = ascending[Math.floor(pos)];
  const above = ascending[Math.ceil(pos)];
  return below + (above - below) * (pos - Math.floor(pos));
}

function refBootstrap(values: number[], resamples: number, seed: number, confidence: number): [number, number] {
  const u = refMulberry32(seed);
  const means: number[] = [];
  for (let b = 0; b < resamples; b++) {
    const draw: number[] = [];
    for (let i = 0; i < values.length; i++) draw.push(values[Math.floor(u() * values.length)]);
    means.push(draw.reduce((s, v) => s + v, 0) / values.length);
  }
  means.sort((a, b) => a - b);
  const alpha = 1 - confidence;
  return [refQuantile(means, alpha / 2), refQuantile(means, 1 - alpha / 2)];
}

function record(image: string | number, method: string, metric: string, value: number | null, extra: Partial<MetricRecord> = {}): MetricRecord {
  return { image, method, metric, target: 3, value, ...extra };
}

function normal(u: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
}

describe('summarize', () => {
  it('mean and sample std of a known sample exactly; undefined values counted apart', () => {
    const values = [2, 4, 4, 4, 5, 5, 7, 9];
    const records = values.map((v, i) => record(`img${i}.png`, 'gradcam', 'ad', v));
    records.push(record('const.png', 'gradcam', 'ad', null, { undefined: 'constant map' }));
    const [row] = summarize(records, { seed: 7 });
    expect(row).toMatchObject({ method: 'gradcam', metric: 'ad', n: 8, undefinedCount: 1, mean: 5 });
    // Σ(v − 5)² = 32, divisor n − 1 = 7.
    expect(row.std).toBeCloseTo(Math.sqrt(32 / 7), 14);
    expect(row.ciLow!).toBeLessThan(5);
    expect(row.ciHigh!).toBeGreaterThan(5);
  });

  it('the bootstrap interval equals the BigInt/float64 reference on every (method, metric)', () => {
    const u = rng(101);
    const records: MetricRecord[] = [];
    for (const method of ['gradcam', 'gradcam++', 'maps']) {
      for (const metric of ['insertion', 'deletion', 'pointing']) {
        const n = 5 + Math.floor(u() * 30);
        for (let i = 0; i < n; i++) records.push(record(i, method, metric, metric === 'pointing' ? Number(u() < 0.6) : u() ** 2));
      }
    }
    for (const [seed, resamples, confidence] of [[0, 1000, 0.95], [123456789, 333, 0.9], [0xfffffffe, 50, 0.5]] as const) {
      const rows = summarize(records, { seed, resamples, confidence });
      expect(rows.length).toBe(9);
      let worst = 0;
      for (const row of rows) {
        const values = records.filter((r) => r.method === row.method && r.metric === row.metric).map((r) => r.value!);
        const [lo, hi] = refBootstrap(values, resamples, refSeed(seed, row.method, row.metric), confidence);
        worst = Math.max(worst, Math.abs(row.ciLow! - lo), Math.abs(row.ciHigh! - hi));
        const mean = values.reduce((s, v) => s + v, 0) / values.length;
        expect(row.mean).toBeCloseTo(mean, 13);
        expect(row.std).toBeCloseTo(Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1)), 13);
      }
      // The same draws summed in the same order: equal up to float64 rounding of the sum.
      expect(worst).toBeLessThan(1e-14);
    }
  });

  it('is independent of the records\' order and of the other metrics; the seed moves the interval', () => {
    const u = rng(5);
    const records = Array.from({ length: 40 }, (_, i) => record(`x${i}.jpg`, 'layercam', 'deletion', u()));
    const other = Array.from({ length: 40 }, (_, i) => record(i, 'layercam', 'ai', u()));
    const base = summarize(records, { seed: 9 });
    const v = rng(6);
    const shuffled = [...other, ...records].map((r) => ({ r, k: v() })).sort((a, b) => a.k - b.k).map(({ r }) => r);
    const mixed = summarize(shuffled, { seed: 9 }).find((r) => r.metric === 'deletion');
    expect(mixed).toEqual(base[0]);
    expect(summarize(records, { seed: 9 })).toEqual(base);
    const reseeded = summarize(records, { seed: 10 })[0];
    expect(reseeded.mean).toBe(base[0].mean);
    expect([reseeded.ciLow, reseeded.ciHigh]).not.toEqual([base[0].ciLow, base[0].ciHigh]);
  });

  it('orders rows by the requested methods and metrics, then as first seen', () => {
    const records = [record(0, 'b', 'm2', 1), record(0, 'a', 'm1', 1), record(0, 'b', 'm1', 1), record(0, 'c', 'm1', 1)];
    expect(summarize(records).map((r) => `${r.method}/${r.metric}`)).toEqual(['b/m2', 'b/m1', 'a/m1', 'c/m1']);
    expect(summarize(records, { methods: ['c', 'a'], metrics: ['m1'] }).map((r) => `${r.method}/${r.metric}`)).toEqual(['c/m1', 'a/m1', 'b/m1', 'b/m2']);
  });

  it('edge cases: one value, all undefined, a constant sample', () => {
    const one = summarize([record(0, 'cam', 'ad', 0.25)])[0];
    expect(one).toMatchObject({ n: 1, mean: 0.25, std: null, ciLow: 0.25, ciHigh: 0.25 });
    const none = summarize([record(0, 'cam', 'ad', null), record(1, 'cam', 'ad', null)])[0];
    expect(none).toMatchObject({ n: 0, undefinedCount: 2, mean: null, std: null, ciLow: null, ciHigh: null });
    const flat = summarize([0, 1, 2, 3].map((i) => record(i, 'cam', 'ad', 0.5)))[0];
    expect(flat).toMatchObject({ mean: 0.5, std: 0, ciLow: 0.5, ciHigh: 0.5 });
  });

  it('bad input is a typed error naming the record', () => {
    expect(() => summarize([record('a.png', 'cam', 'ad', 1), record('a.png', 'cam', 'ad', 2)])).toThrow(/two records for image "a.png", method 'cam', metric 'ad'/);
    expect(() => summarize([record('a.png', 'cam', 'ad', Number.NaN)])).toThrow(InputError);
    expect(() => summarize([record('a.png', 'cam', 'ad', Number.NaN)])).toThrow(/image "a.png".*not a finite number/);
    expect(() => summarize([], { confidence: 1 })).toThrow(InputError);
    expect(() => summarize([], { resamples: 0 })).toThrow(InputError);
    // The same image as a file name and as an index are different images.
    expect(summarize([record('1', 'cam', 'ad', 1), record(1, 'cam', 'ad', 2)])[0].n).toBe(2);
  });

  it('covers the true mean about 95 % of the time on normal samples, with about ±1.96 σ/√n', () => {
    const u = rng(2026);
    const trials = 300;
    const n = 40;
    const mu = 3;
    const sigma = 2;
    let covered = 0;
    let halfWidths = 0;
    for (let t = 0; t < trials; t++) {
      const records = Array.from({ length: n }, (_, i) => record(i, 'm', 'x', mu + sigma * normal(u)));
      const [row] = summarize(records, { seed: t, resamples: 400 });
      if (row.ciLow! <= mu && mu <= row.ciHigh!) covered++;
      halfWidths += (row.ciHigh! - row.ciLow!) / 2;
    }
    const coverage = covered / trials;
    const widthRatio = halfWidths / trials / (1.959964 * sigma / Math.sqrt(n));
    console.log(`bootstrap coverage ${coverage.toFixed(3)} over ${trials} samples of ${n}; mean half-width ${widthRatio.toFixed(3)} × 1.96 σ/√n`);
    // Binomial sd at 0.95 over 300 trials is 0.013; the percentile bootstrap undercovers a little at n = 40.
    expect(coverage).toBeGreaterThan(0.89);
    expect(coverage).toBeLessThan(0.985);
    expect(widthRatio).toBeGreaterThan(0.9);
    expect(widthRatio).toBeLessThan(1.05);
  });
});

// ---------------------------------------------------------------------------------------

function curveRecords(seed: number, methods: string[], images: number, points: number, metric = 'insertion'): MetricRecord[] {
  const u = rng(seed);
  const x = Array.from({ length: points }, (_, i) => (i + 1) / points);
  const out: MetricRecord[] = [];
  for (const [m, method] of methods.entries()) {
    for (let i = 0; i < images; i++) {
      const curve = x.map((xi) => Math.min(1, Math.max(0, (metric === 'deletion' ? 1 - xi : xi) ** (1 + m) + 0.1 * (u() - 0.5))));
      out.push({ image: `im${String(i).padStart(2, '0')}.png`, method, metric, target: i % 3, value: curve.reduce((s, v) => s + v, 0) / points, curve, curveX: x });
    }
  }
  return out;
}

describe('meanCurves', () => {
  it('the pointwise mean and sample std match a float64 reference', () => {
    const records = curveRecords(3, ['gradcam', 'scorecam', 'maps'], 7, 25);
    const bands = meanCurves(records, 'insertion');
    expect(bands.map((b) => b.method)).toEqual(['gradcam', 'scorecam', 'maps']);
    let worst = 0;
    for (const b of bands) {
      const mine = records.filter((r) => r.method === b.method);
      expect(b.n).toBe(7);
      expect(b.x).toEqual(mine[0].curveX);
      for (let p = 0; p < 25; p++) {
        const column = mine.map((r) => r.curve![p]);
        const mean = column.reduce((s, v) => s + v, 0) / column.length;
        const std = Math.sqrt(column.reduce((s, v) => s + (v - mean) ** 2, 0) / (column.length - 1));
        worst = Math.max(worst, Math.abs(b.mean[p] - mean), Math.abs(b.std[p] - std), Math.abs(b.low[p] - (mean - std)), Math.abs(b.high[p] - (mean + std)));
      }
    }
    expect(worst).toBeLessThan(1e-15);
  });

  it('orders curves by image and target whatever the record order, and ignores records without curves', () => {
    const records = curveRecords(4, ['a'], 5, 4);
    const shuffled = [records[3], records[0], records[4], record(9, 'a', 'insertion', 0.5), records[2], records[1]];
    const [band] = meanCurves(shuffled, 'insertion');
    expect(band.images).toEqual(records.map((r) => r.image));
    expect(band.curves).toEqual(records.map((r) => r.curve));
    expect(meanCurves(records, 'deletion')).toEqual([]);
  });

  it('curves of different lengths or x are a ShapeError naming the method and the images', () => {
    const records = curveRecords(5, ['gradcam', 'layercam'], 3, 10);
    const bad = records.map((r) => (r.method === 'layercam' && r.image === 'im02.png' ? { ...r, curve: r.curve!.slice(1), curveX: r.curveX!.slice(1) } : r));
    expect(() => meanCurves(bad, 'insertion')).toThrow(ShapeError);
    expect(() => meanCurves(bad, 'insertion')).toThrow(/method 'layercam'.*image "im02.png" has 9 points, image "im00.png" has 10/);
    const shifted = records.map((r) => (r.method === 'gradcam' && r.image === 'im01.png' ? { ...r, curveX: r.curveX!.map((v) => v / 2) } : r));
    expect(() => meanCurves(shifted, 'insertion')).toThrow(/method 'gradcam'.*images "im00.png" and "im01.png" have different x-coordinates/);
  });
});

// ---------------------------------------------------------------------------------------

/** Pixels of a decoded PNG that are not white, and those that are colored (not gray). */
function inkStats(png: PNG): { ink: number; colored: number } {
  let ink = 0;
  let colored = 0;
  for (let i = 0; i < png.data.length; i += 4) {
    const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
    if (r < 245 || g < 245 || b < 245) ink++;
    if (Math.max(r, g, b) - Math.min(r, g, b) > 60) colored++;
  }
  return { ink, colored };
}

function svgSize(svg: string): [number, number] {
  const m = /<svg[^>]*\swidth="([\d.]+)"[^>]*\sheight="([\d.]+)"/.exec(svg);
  if (!m) throw new Error('no width/height on the svg element');
  return [Number(m[1]), Number(m[2])];
}

describe('plots', () => {
  it('the curves chart parses, names every method and both axes, and draws text and colored lines into the PNG', async () => {
    const records = [...curveRecords(6, ['gradcam', 'hirescam', 'maps'], 4, 30), ...curveRecords(7, ['gradcam', 'hirescam', 'maps'], 4, 30, 'deletion')];
    const svg = await renderSvg(curvesSpec(meanCurves(records, 'deletion')));
    expect(svg.startsWith('<svg')).toBe(true);
    for (const text of ['gradcam', 'hirescam', 'maps', 'fraction of pixels deleted', 'score']) expect(svg).toContain(`>${text}</text>`);
    // resvg parses the document as XML (it throws on malformed SVG) and renders it.
    const resvg = new Resvg(svg);
    expect(resvg.width).toBe(svgSize(svg)[0]);
    const png = PNG.sync.read(Buffer.from(renderSvgToPng(svg)));
    const withText = inkStats(png);
    expect(withText.colored).toBeGreaterThan(300);
    // The same picture without its <text> elements: the difference is the text, and there is plenty of it.
    const bare = PNG.sync.read(Buffer.from(renderSvgToPng(svg.replace(/<text[^>]*>[^<]*<\/text>/g, ''))));
    expect(bare.width).toBe(png.width);
    let differing = 0;
    for (let i = 0; i < png.data.length; i += 4) if (Math.abs(png.data[i] - bare.data[i]) > 64) differing++;
    expect(differing).toBeGreaterThan(500);
  });

  it('the summary chart has a column per metric, a bar per method and the means written out', async () => {
    const rows: SummaryRow[] = [
      { method: 'gradcam', metric: 'insertion', n: 5, undefinedCount: 0, mean: 0.61234, std: 0.1, ciLow: 0.55, ciHigh: 0.67 },
      { method: 'layercam', metric: 'insertion', n: 5, undefinedCount: 0, mean: 0.5, std: 0.1, ciLow: 0.45, ciHigh: 0.58 },
      { method: 'gradcam', metric: 'ad', n: 5, undefinedCount: 0, mean: 41.5, std: 3, ciLow: 38, ciHigh: 45 },
      { method: 'layercam', metric: 'ad', n: 0, undefinedCount: 5, mean: null, std: null, ciLow: null, ciHigh: null },
    ];
    const svg = await renderSvg(summarySpec(rows));
    for (const text of ['gradcam', 'layercam', 'insertion', 'ad', '0.6123', '41.5']) expect(svg).toContain(`>${text}</text>`);
    expect(svg).toContain('95 % bootstrap interval');
    const doubled = await renderSvg(summarySpec(rows), { scale: 2 });
    const [w, h] = svgSize(svg);
    expect(svgSize(doubled)).toEqual([2 * w, 2 * h]);
  });
});

// ---------------------------------------------------------------------------------------

describe('writeReport', () => {
  const records: MetricRecord[] = [
    ...curveRecords(11, ['gradcam', 'gradcam++', 'maps'], 6, 20, 'insertion'),
    ...curveRecords(12, ['gradcam', 'gradcam++', 'maps'], 6, 20, 'deletion'),
    ...['gradcam', 'gradcam++', 'maps'].flatMap((m, k) => Array.from({ length: 6 }, (_, i) => record(`im${String(i).padStart(2, '0')}.png`, m, 'ad', k === 2 && i === 0 ? null : 10 * k + i))),
  ];

  it('writes summaries, curves and plots that read back to the records, with no temporary file left', async () => {
    const dir = freshDir();
    // A shuffled copy: the files must not depend on the journal's order.
    const files = await writeReport(dir, [...records].reverse(), { seed: 4, resamples: 200 });
    const expected = ['summary.csv', 'summary.json', 'summary.svg', 'summary.png'];
    for (const metric of ['insertion', 'deletion']) {
      expected.push(`curves-${metric}.json`, `curves-${metric}.svg`, `curves-${metric}.png`);
      for (const m of ['gradcam', 'gradcam++', 'maps']) expected.push(`curves-${metric}-${m}.npy`, `curves-${metric}-${m}.x.npy`);
    }
    expect([...files].sort()).toEqual([...expected].sort());
    expect(readdirSync(dir).sort()).toEqual([...expected].sort());

    // Rows follow the methods and metrics as first seen; their numbers do not depend on the order.
    const rows = summarize([...records].reverse(), { seed: 4, resamples: 200 });
    const sorted = (rs: SummaryRow[]) => [...rs].sort((a, b) => (a.method + a.metric < b.method + b.metric ? -1 : 1));
    expect(sorted(rows)).toEqual(sorted(summarize(records, { seed: 4, resamples: 200 })));
    const doc = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as SummaryDocument;
    expect(doc).toMatchObject({ seed: 4, resamples: 200, confidence: 0.95 });
    expect(doc.rows).toEqual(rows);
    const csv = readFileSync(join(dir, 'summary.csv'), 'utf8').trimEnd().split('\n').map((l) => l.split(','));
    expect(csv[0]).toEqual(['method', 'metric', 'n', 'undefined', 'mean', 'std', 'ci_low', 'ci_high']);
    expect(csv.length).toBe(rows.length + 1);
    for (const [i, row] of rows.entries()) {
      const line = csv.find((l) => l[0] === row.method && l[1] === row.metric)!;
      expect(line, `${row.method}/${row.metric}`).toBeDefined();
      expect(line.slice(2).map(Number)).toEqual([row.n, row.undefinedCount, row.mean, row.std, row.ciLow, row.ciHigh]);
      expect(csv[i + 1][0]).toBe(rows[i].method);
    }
    expect(rows.find((r) => r.method === 'maps' && r.metric === 'ad')).toMatchObject({ n: 5, undefinedCount: 1 });

    for (const metric of ['insertion', 'deletion']) {
      const index = JSON.parse(readFileSync(join(dir, `curves-${metric}.json`), 'utf8')) as CurvesIndex;
      expect(index.methods.map((m) => m.method)).toEqual(['maps', 'gradcam++', 'gradcam']);
      for (const entry of index.methods) {
        const arr = npy(join(dir, entry.file));
        const xs = npy(join(dir, entry.xFile));
        expect(arr.shape).toEqual([6, 20]);
        expect(xs.shape).toEqual([20]);
        const want = entry.images.flatMap((image, i) => records.find((r) => r.metric === metric && r.method === entry.method && r.image === image && r.target === entry.targets[i])!.curve!);
        expect(Array.from(arr.data)).toEqual(Array.from(Float32Array.from(want)));
        expect(Array.from(xs.data)).toEqual(Array.from(Float32Array.from(entry.x)));
        expect(entry.images).toEqual([...entry.images].sort());
      }
    }

    for (const plot of ['summary', 'curves-insertion', 'curves-deletion']) {
      const svg = readFileSync(join(dir, `${plot}.svg`), 'utf8');
      const png = PNG.sync.read(readFileSync(join(dir, `${plot}.png`)));
      const [w, h] = svgSize(svg);
      expect([png.width, png.height]).toEqual([2 * w, 2 * h]);
      const { ink, colored } = inkStats(png);
      expect(ink, plot).toBeGreaterThan(0.01 * png.width * png.height);
      expect(colored, plot).toBeGreaterThan(200);
      for (const m of ['gradcam', 'gradcam++', 'maps']) expect(svg).toContain(`>${m}</text>`);
    }

    // Written again over itself from the records in the other order: same bytes for the data files, still no temporary file.
    const before = readFileSync(join(dir, 'curves-insertion-maps.npy'));
    await writeReport(dir, records, { seed: 4, resamples: 200, methods: ['maps', 'gradcam++', 'gradcam'], metrics: ['ad', 'deletion', 'insertion'] });
    expect(readFileSync(join(dir, 'curves-insertion-maps.npy')).equals(before)).toBe(true);
    expect(readFileSync(join(dir, 'summary.json'), 'utf8')).toBe(`${JSON.stringify(doc, null, 2)}\n`);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('names that clash once made file-safe are an InputError, and nothing is written', async () => {
    const dir = freshDir();
    const clash = [...curveRecords(1, ['a/b'], 2, 3), ...curveRecords(1, ['a_b'], 2, 3)];
    await expect(writeReport(dir, clash)).rejects.toThrow(/method 'a\/b' of metric 'insertion' and method 'a_b' of metric 'insertion' map to the same file name/);
    expect(existsSync(dir)).toBe(false);
  });

  it('an atomic write that fails leaves the target and no temporary file', () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'taken.json'), { recursive: true });
    writeFileAtomic(join(dir, 'a.txt'), 'one');
    writeFileAtomic(join(dir, 'a.txt'), 'two');
    expect(readFileSync(join(dir, 'a.txt'), 'utf8')).toBe('two');
    // rename() cannot replace a directory with a file.
    expect(() => writeFileAtomic(join(dir, 'taken.json'), '{}')).toThrow();
    expect(statSync(join(dir, 'taken.json')).isDirectory()).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(['a.txt', 'taken.json']);
  });
});

// ---------------------------------------------------------------------------------------

function journalRecord(i: number): MetricRecord {
  return { image: `img${i}.png`, method: i % 2 ? 'gradcam' : 'layercam', metric: 'deletion', target: i % 10, value: i / 7, curve: [1, 0.5, i / 100], curveX: [0, 0.5, 1], extra: { preset: 'polycam' } };
}

describe('Journal', () => {
  it('appends, finds, reopens; a partial last line is dropped and the file cut to the last complete line', () => {
    const dir = freshDir();
    const j = Journal.open(dir);
    expect(j.records()).toEqual([]);
    j.append([journalRecord(0), journalRecord(1)]);
    j.append([journalRecord(2)]);
    expect(j.has(journalRecord(1))).toBe(true);
    expect(j.has({ ...journalRecord(1), target: 99 })).toBe(false);
    j.close();
    const path = join(dir, JOURNAL_FILE);
    const complete = readFileSync(path);
    expect(complete.toString('utf8').split('\n').slice(0, -1).map((l) => JSON.parse(l) as unknown)).toEqual([0, 1, 2].map(journalRecord));

    // What a write cut short by a kill leaves: the start of a line, no '\n'.
    const partial = JSON.stringify(journalRecord(3)).slice(0, 37);
    appendFileSync(path, partial);
    const k = Journal.open(dir);
    expect(k.droppedBytes).toBe(Buffer.byteLength(partial));
    expect(readFileSync(path).equals(complete)).toBe(true);
    expect(k.records()).toEqual([0, 1, 2].map(journalRecord));
    expect(k.has(journalRecord(3))).toBe(false);
    k.append([journalRecord(3), journalRecord(4)]);
    k.close();
    const l = Journal.open(dir);
    expect(l.droppedBytes).toBe(0);
    expect(l.records()).toEqual([0, 1, 2, 3, 4].map(journalRecord));
    expect(readFileSync(path, 'utf8').endsWith('\n')).toBe(true);
    l.close();
  });

  it('refuses duplicates and malformed records without writing anything', () => {
    const dir = freshDir();
    const j = Journal.open(dir);
    j.append([journalRecord(0)]);
    const size = statSync(join(dir, JOURNAL_FILE)).size;
    expect(() => j.append([journalRecord(1), journalRecord(0)])).toThrow(/already holds image "img0.png", method 'layercam', metric 'deletion', target 0/);
    expect(() => j.append([journalRecord(5), journalRecord(5)])).toThrow(InputError);
    expect(() => j.append([{ ...journalRecord(6), value: Number.NaN }])).toThrow(/image "img6.png".*`value` is neither a finite number nor null/);
    expect(() => j.append([{ ...journalRecord(7), curve: [0, Number.POSITIVE_INFINITY] }])).toThrow(/`curve`/);
    expect(() => j.append([{ ...journalRecord(9), extra: { residual: Number.NaN } }])).toThrow(/`extra.residual`/);
    expect(statSync(join(dir, JOURNAL_FILE)).size).toBe(size);
    j.append([{ ...journalRecord(8), value: null, undefined: 'constant map' }]);
    j.close();
    expect(Journal.open(dir, { lock: false }).records().map((r) => r.value)).toEqual([0, null]);
  });

  it('a damaged complete line is an InputError naming the file and line, not silently dropped', () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, JOURNAL_FILE), `${JSON.stringify(journalRecord(0))}\n{"image": 1, "method": "cam"\n`);
    expect(() => Journal.open(dir)).toThrow(/results\.jsonl:2: not a JSON line/);
    writeFileSync(join(dir, JOURNAL_FILE), `${JSON.stringify(journalRecord(0))}\n${JSON.stringify({ ...journalRecord(1), target: 'x' })}\n`);
    expect(() => Journal.open(dir)).toThrow(/results\.jsonl:2: not a metric record: `target`/);
    writeFileSync(join(dir, JOURNAL_FILE), `${JSON.stringify(journalRecord(0))}\n${JSON.stringify(journalRecord(0))}\n`);
    expect(() => Journal.open(dir)).toThrow(/results\.jsonl:2: repeats line 1/);
    // A failed open leaves no lock behind.
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('one writer per directory: a live holder is an error, a dead one\'s lock is taken over', () => {
    const dir = freshDir();
    const j = Journal.open(dir);
    expect(() => Journal.open(dir)).toThrow(new RegExp(`another camgpu eval \\(pid ${process.pid}, since .*\\) is writing this directory`));
    j.close();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    Journal.open(dir).close();

    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: dead, host: hostname(), since: 'then' }));
    const k = Journal.open(dir);
    expect(JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    k.close();

    writeFileSync(join(dir, LOCK_FILE), JSON.stringify({ pid: 1, host: 'elsewhere', since: 'then' }));
    expect(() => Journal.open(dir)).toThrow(/pid 1 on host elsewhere.*remove that file/);
  });

  it('a writer killed (SIGKILL) while appending loses no appended line and leaves a journal that reopens', async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    const bundle = join(scratch, 'journal-bundle.mjs');
    await build({ entryPoints: ['tools/journal.ts'], bundle: true, platform: 'node', format: 'esm', packages: 'external', outfile: bundle, logLevel: 'silent' });
    const writer = join(scratch, 'writer.mjs');
    // Batches of 20 records with 2000-point curves (≈ 0.8 MB a batch), so a kill lands mid-write now and then.
    writeFileSync(writer, `
      import { Journal } from ${JSON.stringify(bundle)};
      const j = Journal.open(process.argv[2]);
      const curve = Array.from({ length: 2000 }, (_, i) => i / 1999);
      for (let b = 0; ; b++) {
        const batch = Array.from({ length: 20 }, (_, i) => ({ image: b * 20 + i, method: 'gradcam', metric: 'insertion', target: 1, value: b + i / 20, curve }));
        j.append(batch);
        process.stdout.write(b + '\\n');
      }
    `);
    const child = spawn(process.execPath, [writer, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let acknowledged = -1;
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        const lines = d.toString().trim().split('\n');
        acknowledged = Number(lines[lines.length - 1]);
        if (acknowledged >= 12) child.kill('SIGKILL');
      });
      child.on('exit', () => resolve());
    });
    expect(acknowledged).toBeGreaterThanOrEqual(12);
    const j = Journal.open(dir);
    const got = j.records();
    // Every batch the writer saw return is there, in order, whole; at most the batch in flight is missing or cut.
    expect(got.length).toBeGreaterThanOrEqual((acknowledged + 1) * 20);
    got.forEach((r, i) => expect(r.image).toBe(i));
    expect(got.every((r) => r.curve!.length === 2000)).toBe(true);
    j.append([{ image: got.length, method: 'gradcam', metric: 'insertion', target: 1, value: 0 }]);
    j.close();
    const reopened = Journal.open(dir);
    expect(reopened.records().length).toBe(got.length + 1);
    reopened.close();
  });
});
