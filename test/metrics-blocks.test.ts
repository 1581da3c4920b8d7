import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tape } from '../src/ops/tape.js';
import { ProgramRunner } from '../src/ops/program.js';
import { WeightStore } from '../src/runtime/weights.js';
import { Tensor, readTensors } from '../src/runtime/tensor.js';
import { blur, blurKernel1d, blurRef } from '../src/metrics/substrate.js';
import { CAUSAL_PRESETS, ranksOf, trapezoidWeights } from '../src/metrics/causal.js';
import { boxMask, compactness, complexity, cosineDistance, deadZone, energyInside, pearson, pointingMaxima, sparseness } from '../src/metrics/maps.js';
import type { Sym } from '../src/ops/graph.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { maxAbsDiff } from './helpers/compare.js';
import { rng } from './helpers/random.js';

/**
 * The metrics' building blocks against independent references: the substrate blur against
 * torchvision's gaussian_blur and RISE's scipy kernel (golden files from
 * tools/gen_blur_fixtures.py) and a float64 convolution; the GPU ranks (ties by index) against
 * a float64 stable sort; the map metrics against float64 formulas written from SPEC §2 and
 * the reference libraries' definitions.
 */


/** Runs a tape over host arrays; returns the named results. */
async function evalTape(inputs: Record<string, { data: Float32Array; shape: number[] }>, build: (t: Tape, s: Record<string, Sym>) => Record<string, Sym>): Promise<Record<string, Float32Array>> {
  const ctx = await gpu();
  const runner = new ProgramRunner(ctx, new WeightStore(ctx));
  const tensors = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, Tensor.fromData(ctx, v.data, v.shape, k)]));
  const run = await runner.run({
    key: `blocks|${Object.keys(inputs)}|${Object.values(inputs).map((v) => v.shape)}|${build.toString().length}|${Math.random()}`,
    batch: 1,
    split: false,
    build: () => {
      const t = new Tape();
      const syms = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, t.input(k, v.shape)]));
      const out = build(t, syms);
      return { graph: t.graph, names: new Map(Object.entries(out).map(([k, v]) => [k, v.name])) };
    },
    feeds: Object.fromEntries(Object.entries(tensors).map(([k, tensor]) => [k, { tensor, batchAxis: null }])),
    results: Object.fromEntries(probeNames(build, inputs).map((k) => [k, { batchAxis: null }])),
    label: 'blocks',
  });
  const keys = [...run.results.keys()];
  const read = await readTensors(ctx, keys.map((k) => run.results.get(k)!));
  for (const t of [...run.results.values(), ...Object.values(tensors)]) t.dispose();
  return Object.fromEntries(keys.map((k, i) => [k, read[i]]));
}

/** The result names a build function returns (built once on a scratch tape). */
function probeNames(build: (t: Tape, s: Record<string, Sym>) => Record<string, Sym>, inputs: Record<string, { shape: number[] }>): string[] {
  const t = new Tape();
  return Object.keys(build(t, Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, t.input(k, v.shape)]))));
}

describe('substrate blur', () => {
  const dir = join(FIXTURES, 'metrics', 'blur');
  const x = npy(join(dir, 'x.npy'));
  it.each(['torchvision', 'rise'] as const)('%s blur matches the golden file and a float64 convolution', async (style) => {
    const want = npy(join(dir, `${style}.npy`)).data;
    const out = await evalTape({ x: { data: Float32Array.from(x.data), shape: x.shape } }, (t, s) => ({ y: blur(t, s.x, 11, 5, style) }));
    expect(maxAbsDiff(out.y, want)).toBeLessThan(1e-5);
    const [N, C, H, W] = x.shape;
    const per = C * H * W;
    for (let n = 0; n < N; n++) {
      const ref = blurRef(x.data.subarray(n * per, (n + 1) * per), [C, H, W], 11, 5, style);
      expect(maxAbsDiff(out.y.subarray(n * per, (n + 1) * per), ref)).toBeLessThan(1e-5);
    }
  });
  it("RISE's kernel is scipy's filtered Dirac", () => {
    const k = npy(join(dir, 'rise-kernel.npy')).data;
    const k1 = blurKernel1d(11, 5, 'rise');
    const outer = Array.from({ length: 121 }, (_, i) => k1[Math.floor(i / 11)] * k1[i % 11]);
    expect(maxAbsDiff(outer, k)).toBeLessThan(1e-9);
  });
});

describe('ranks (descending, ties by pixel index)', () => {
  // Values are multiples of 1/8, so block means are exact in float32 and ties are real ties.
  it('match a float64 stable sort on maps with many ties, per pixel and per block', async () => {
    const rand = rng(3);
    const [M, H, W] = [3, 16, 12];
    const data = Float32Array.from({ length: M * H * W }, () => Math.max(0, Math.round((rand() - 0.4) * 8) / 8));
    for (const s of [1, 2, 4]) {
      const out = await evalTape({ m: { data, shape: [M, H, W] } }, (t, sy) => ({ r: ranksOf(t, sy.m, s) }));
      const U = (H / s) * (W / s);
      for (let m = 0; m < M; m++) {
        const units = Array.from({ length: U }, (_, u) => {
          const [by, bx] = [Math.floor(u / (W / s)), u % (W / s)];
          let sum = 0;
          for (let y = 0; y < s; y++) for (let xx = 0; xx < s; xx++) sum += data[(m * H + by * s + y) * W + bx * s + xx];
          return sum / (s * s);
        });
        const order = units.map((_, i) => i).sort((a, b) => (Math.fround(units[b]) - Math.fround(units[a])) || a - b);
        const rank = new Array<number>(U);
        order.forEach((u, k) => (rank[u] = k));
        expect(Array.from(out.r.subarray(m * U, (m + 1) * U))).toEqual(rank);
      }
    }
  });
});

describe('map metrics', () => {
  const rand = rng(11);
  const [M, H, W] = [3, 14, 18];
  const maps = Float32Array.from({ length: M * H * W }, (_, i) => (i % 97 === 0 ? 0 : rand()));
  const other = Float32Array.from({ length: M * H * W }, () => rand());
  const region = boxMask([[[2, 3, 9, 8]], [[0, 0, 5, 14], [12, 1, 18, 6]], [[10, 10, 18, 14]]], H, W);
  const map = (m: number) => Array.from(maps.subarray(m * H * W, (m + 1) * H * W));
  it('compactness, complexity, sparseness, energy, dead-zone, DOA, Pearson match float64 formulas', async () => {
    const out = await evalTape({ s: { data: maps, shape: [M, H, W] }, a: { data: other, shape: [M, H, W] }, r: { data: region, shape: [M, H, W] } }, (t, s) => ({
      compactness: compactness(t, s.s),
      complexity: complexity(t, s.s),
      sparseness: sparseness(t, s.s),
      energy: energyInside(t, s.s, s.r),
      dead: deadZone(t, s.s, 9, 14),
      doa: cosineDistance(t, s.s, s.a),
      pearson: pearson(t, s.s, s.a),
    }));
    for (let m = 0; m < M; m++) {
      const v = map(m);
      const a = Array.from(other.subarray(m * H * W, (m + 1) * H * W));
      const r = Array.from(region.subarray(m * H * W, (m + 1) * H * W));
      const n = H * W;
      const sum = v.reduce((p, q) => p + q, 0);
      expect(out.compactness[m]).toBeCloseTo(sum / n, 6);
      expect(out.complexity[m]).toBeCloseTo(sum / n, 6);
      // Quantus Sparseness: a + 1e-7, ascending, Σ (2i − n − 1) a_i / (n Σ a).
      const sorted = v.map((q) => q + 1e-7).sort((p, q) => p - q);
      const gini = sorted.reduce((acc, q, i) => acc + (2 * (i + 1) - n - 1) * q, 0) / (n * sorted.reduce((p, q) => p + q, 0));
      expect(out.sparseness[m]).toBeCloseTo(gini, 5);
      expect(out.energy[m]).toBeCloseTo(v.reduce((p, q, i) => p + q * r[i], 0) / sum, 6);
      const sq = v.map((q) => q * q);
      expect(out.dead[m]).toBeCloseTo(Math.sqrt(sq.slice(9 * W, 14 * W).reduce((p, q) => p + q, 0) / sq.reduce((p, q) => p + q, 0)), 6);
      const dot = v.reduce((p, q, i) => p + q * a[i], 0);
      const na = Math.sqrt(a.reduce((p, q) => p + q * q, 0));
      expect(out.doa[m]).toBeCloseTo(1 - dot / (Math.sqrt(sq.reduce((p, q) => p + q, 0)) * na), 6);
      const mv = sum / n;
      const ma = a.reduce((p, q) => p + q, 0) / n;
      const cov = v.reduce((p, q, i) => p + (q - mv) * (a[i] - ma), 0) / (n - 1);
      const sv = Math.sqrt(v.reduce((p, q) => p + (q - mv) ** 2, 0) / (n - 1));
      const sa = Math.sqrt(a.reduce((p, q) => p + (q - ma) ** 2, 0) / (n - 1));
      expect(out.pearson[m]).toBeCloseTo(cov / (sv * sa + 1e-8), 5);
    }
  });
  it('pointing game: a hit when any maximum lies in the region (Quantus), tolerance by Euclidean distance', async () => {
    const s = new Float32Array(2 * 10 * 10);
    s[0 * 100 + 3 * 10 + 3] = 1; // image 0: max at (x 3, y 3)
    s[1 * 100 + 8 * 10 + 8] = 1; // image 1: two maxima, one at (8, 8) and one at (1, 1)
    s[1 * 100 + 1 * 10 + 1] = 1;
    const boxes: [number, number, number, number][][] = [[[5, 5, 8, 8]], [[0, 0, 3, 3]]];
    const strict = boxMask(boxes, 10, 10, 0);
    const loose = boxMask(boxes, 10, 10, 3);
    const out = await evalTape({ s: { data: s, shape: [2, 10, 10] }, a: { data: strict, shape: [2, 10, 10] }, b: { data: loose, shape: [2, 10, 10] } }, (t, sy) => {
      const p = pointingMaxima(t, sy.s, sy.a);
      const q = pointingMaxima(t, sy.s, sy.b);
      return { inA: p.inside, all: p.overall, inB: q.inside };
    });
    const hit = (inside: Float32Array, i: number) => inside[i] === out.all[i];
    expect([hit(out.inA, 0), hit(out.inA, 1)]).toEqual([false, true]);
    // (3, 3) is √8 ≈ 2.83 px from the box's corner pixel (5, 5): inside a 3 px tolerance.
    expect([hit(out.inB, 0), hit(out.inB, 1)]).toEqual([true, true]);
    expect(boxMask([[[5, 5, 8, 8]]], 10, 10, 2)[3 * 10 + 3]).toBe(0);
  });
});

describe('insertion/deletion presets', () => {
  it('points follow each reference: POLY 224 steps after each, RISE n + 1 uniform points, torch-cam fractions', () => {
    const poly = CAUSAL_PRESETS.polycam.points(224 * 224);
    expect(poly.counts.length).toBe(224);
    expect(poly.counts[0]).toBe(224);
    expect(poly.counts[223]).toBe(224 * 224);
    expect(poly.weights.every((w) => w === 1 / 224)).toBe(true);
    const fashion = CAUSAL_PRESETS.polycam.points(56 * 56);
    expect(fashion.counts.slice(0, 3)).toEqual([14, 28, 42]);
    const rise = CAUSAL_PRESETS.rise.points(224 * 224);
    expect(rise.counts.length).toBe(225);
    expect(rise.counts[1]).toBe(224);
    // RISE's auc(): (Σ − a₀/2 − aₙ/2)/n.
    const scores = Array.from({ length: 225 }, (_, i) => Math.sin(i) ** 2);
    const ours = scores.reduce((p, q, i) => p + q * rise.weights[i], 0);
    expect(ours).toBeCloseTo((scores.reduce((p, q) => p + q, 0) - scores[0] / 2 - scores[224] / 2) / 224, 12);
    const tc = CAUSAL_PRESETS.torchcam.points(56 * 56);
    expect(tc.counts).toEqual([0, 157, 314, 471, 628, 785, 942, 1099, 1256, 1413, 1570, 1727, 1884, 2041, 2198, 2355, 2512, 2669, 2826, 2983, 3136]);
    expect(trapezoidWeights([0, 0.5, 1])).toEqual([0.25, 0.5, 0.25]);
  });
});
