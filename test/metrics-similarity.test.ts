import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Model } from '../src/model.js';
import { importOnnx } from '../src/onnx/import.js';
import type { Sym } from '../src/ops/graph.js';
import { ProgramRunner } from '../src/ops/program.js';
import { Tape } from '../src/ops/tape.js';
import { ShapeError, InputError } from '../src/runtime/errors.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { cascadeLayers, cascadingRandomization, parameterizedLayers, randomizedCopy, randomizedGraph, randomizedName } from '../src/metrics/randomization.js';
import { averageRanks, pearson, spearman, ssim, type SsimOptions } from '../src/metrics/similarity.js';
import { Rng } from '../src/train/rng.js';
import { maxAbsDiff } from './helpers/compare.js';
import { pearson64, ranks64, spearman64 } from './reference/similarity.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';

/**
 * Spearman and SSIM on the GPU (src/metrics/similarity.ts) against Quantus's own
 * `correlation_spearman` / `ssim` and scipy's spearmanr (goldens of
 * tools/gen_similarity_fixtures.py, float64) and against float64 references written here
 * from the definitions; then the cascading-randomization copies (src/metrics/randomization.ts).
 */

const DIR = join(FIXTURES, 'metrics', 'similarity');
type Golden = (number | null)[];
interface Case {
  rows: string[];
  spearman_quantus: Golden;
  spearman_scipy: Golden;
  ssim_flat_quantus: Golden;
  ssim_image_quantus: Golden;
  ssim_flat_quantus_float32: Golden;
  ssim_image_quantus_float32: Golden;
  sums?: [number, number][];
  relu?: [boolean, boolean][];
}
const GOLDEN = JSON.parse(readFileSync(join(DIR, 'golden.json'), 'utf8')) as { cases: Record<'56' | '224', Case> };
const TOL = 1e-5;

// ---------- float64 references, from the definitions ----------


/**
 * Mean SSIM over every window position that lies inside the map (an h×w map, a kh×kw
 * window), with the window's sample variance and covariance computed directly.
 */
function ssim64(a: ArrayLike<number>, b: ArrayLike<number>, h: number, w: number, kh: number, kw: number, range: number, k1 = 0.01, k2 = 0.03): number {
  const c1 = (k1 * range) ** 2;
  const c2 = (k2 * range) ** 2;
  const np = kh * kw;
  let total = 0;
  let count = 0;
  for (let i = 0; i + kh <= h; i++) for (let j = 0; j + kw <= w; j++) {
    let ma = 0;
    let mb = 0;
    for (let u = 0; u < kh; u++) for (let v = 0; v < kw; v++) { ma += a[(i + u) * w + j + v]; mb += b[(i + u) * w + j + v]; }
    ma /= np;
    mb /= np;
    let va = 0;
    let vb = 0;
    let cab = 0;
    for (let u = 0; u < kh; u++) for (let v = 0; v < kw; v++) {
      const da = a[(i + u) * w + j + v] - ma;
      const db = b[(i + u) * w + j + v] - mb;
      va += da * da;
      vb += db * db;
      cab += da * db;
    }
    va /= np - 1;
    vb /= np - 1;
    cab /= np - 1;
    total += ((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
    count++;
  }
  return total / count;
}

/** Quantus's data range: |max − min| over both maps. */
function pairRange(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (const x of [a, b]) for (let i = 0; i < x.length; i++) { lo = Math.min(lo, x[i]); hi = Math.max(hi, x[i]); }
  return Math.abs(hi - lo);
}

// ---------- data ----------

interface Pairs { a: Float32Array; b: Float32Array; n: number; h: number; w: number }

function load56(): Pairs {
  const a = npy(join(DIR, 'maps-56-a.npy'));
  const b = npy(join(DIR, 'maps-56-b.npy'));
  const [n, h, w] = a.shape;
  return { a: Float32Array.from(a.data), b: Float32Array.from(b.data), n, h, w };
}

/** The 224×224 maps rebuilt from their factors exactly as numpy's float32 made them: relu?((p qᵀ + r sᵀ) − c). */
function load224(): Pairs {
  const f = npy(join(DIR, 'factors-224.npy'));
  const c = npy(join(DIR, 'offsets-224.npy'));
  const relu = GOLDEN.cases['224'].relu!;
  const [n, , , side] = f.shape;
  const maps = [new Float32Array(n * side * side), new Float32Array(n * side * side)];
  const fr = Math.fround;
  for (let i = 0; i < n; i++) for (let m = 0; m < 2; m++) {
    const vec = (k: number) => f.data.subarray(((i * 2 + m) * 4 + k) * side, ((i * 2 + m) * 4 + k + 1) * side);
    const [p, q, r, s] = [0, 1, 2, 3].map(vec);
    const off = c.data[i * 2 + m];
    for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) {
      const v = fr(fr(fr(p[y] * q[x]) + fr(r[y] * s[x])) - off);
      maps[m][(i * side + y) * side + x] = relu[i][m] ? Math.max(v, 0) : v;
    }
  }
  return { a: maps[0], b: maps[1], n, h: side, w: side };
}

const row = (x: Float32Array, i: number, l: number) => x.subarray(i * l, (i + 1) * l);

/** Golden (null = NaN) against computed values: defined entries within `tol`, NaN exactly where the golden is null. */
function expectGolden(got: ArrayLike<number>, want: Golden, tol: number): number {
  let worst = 0;
  want.forEach((v, i) => {
    if (v === null) expect(Number.isNaN(got[i]), `entry ${i} should be undefined`).toBe(true);
    else worst = Math.max(worst, Math.abs(got[i] - v));
  });
  expect(worst).toBeLessThanOrEqual(tol);
  return worst;
}

// ---------- GPU programs ----------

type Build = (t: Tape, a: Sym, b: Sym) => Record<string, Sym>;

/** One program over a batch of pairs fed as 'a' and 'b' [N, H, W]; every result is per pair. */
async function runPairs(p: Pairs, key: string, names: readonly string[], build: Build): Promise<Record<string, Float32Array>> {
  const ctx = await gpu();
  const runner = new ProgramRunner(ctx, new WeightStore(ctx));
  const shape = [p.n, p.h, p.w];
  const xa = Tensor.fromData(ctx, p.a, shape);
  const xb = Tensor.fromData(ctx, p.b, shape);
  try {
    const run = await runner.run({
      key, batch: p.n, split: false,
      build: (nb) => {
        const t = new Tape();
        const out = build(t, t.input('a', [nb, p.h, p.w]), t.input('b', [nb, p.h, p.w]));
        return { graph: t.graph, names: new Map(names.map((k) => [k, out[k].name])) };
      },
      feeds: { a: { tensor: xa, batchAxis: 0 }, b: { tensor: xb, batchAxis: 0 } },
      results: Object.fromEntries(names.map((k) => [k, { batchAxis: 0 as const }])),
    });
    const read = await readTensors(ctx, names.map((k) => run.results.get(k)!));
    for (const t of run.results.values()) t.dispose();
    return Object.fromEntries(names.map((k, i) => [k, read[i]]));
  } finally {
    xa.dispose();
    xb.dispose();
    await runner.dispose();
  }
}

const ALL = ['spearman', 'spearmanValid', 'ssimFlat', 'ssimFlatValid', 'ssimImage', 'ssimImageValid', 'pearson', 'pearsonValid', 'ranksA'];

/** Every similarity of the module on one batch of pairs, in one program. */
function allSimilarities(p: Pairs, key: string, options: { undefinedValue?: number } = {}): Promise<Record<string, Float32Array>> {
  return runPairs(p, key, ALL, (t, a, b) => {
    const s = spearman(t, a, b, options);
    const flat = ssim(t, a, b, { ...options, layout: 'flattened' });
    const image = ssim(t, a, b, { ...options, layout: 'image' });
    const r = pearson(t, a, b, options);
    return { spearman: s.value, spearmanValid: s.valid, ssimFlat: flat.value, ssimFlatValid: flat.valid, ssimImage: image.value, ssimImageValid: image.valid, pearson: r.value, pearsonValid: r.valid, ranksA: averageRanks(t, a) };
  });
}

// ---------- tests ----------

describe('float64 references against scipy and Quantus', () => {
  it('ranks match scipy.stats.rankdata on a map with heavy ties', () => {
    const p = load56();
    const want = npy(join(DIR, 'ranks-56-a3.npy')).data;
    expect(maxAbsDiff(ranks64(row(p.a, 3, p.h * p.w)), want)).toBe(0);
  });

  it.each(['56', '224'] as const)('Spearman and SSIM (both layouts) match the goldens at %s²', (size) => {
    const p = size === '56' ? load56() : load224();
    const g = GOLDEN.cases[size];
    const l = p.h * p.w;
    if (g.sums) {
      // The maps rebuilt with Math.fround are numpy's float32 maps (up to float64 summation order).
      g.sums.forEach(([sa, sb], i) => {
        expect(Math.abs(row(p.a, i, l).reduce((s, v) => s + v, 0) - sa)).toBeLessThan(1e-9 * Math.abs(sa) + 1e-9);
        expect(Math.abs(row(p.b, i, l).reduce((s, v) => s + v, 0) - sb)).toBeLessThan(1e-9 * Math.abs(sb) + 1e-9);
      });
    }
    const sp = Array.from({ length: p.n }, (_, i) => spearman64(row(p.a, i, l), row(p.b, i, l)));
    const range = (i: number) => pairRange(row(p.a, i, l), row(p.b, i, l));
    const flat = Array.from({ length: p.n }, (_, i) => (range(i) === 0 ? NaN : ssim64(row(p.a, i, l), row(p.b, i, l), 1, l, 1, 7, range(i))));
    const image = Array.from({ length: p.n }, (_, i) => (range(i) === 0 ? NaN : ssim64(row(p.a, i, l), row(p.b, i, l), p.h, p.w, 7, 7, range(i))));
    expectGolden(sp, g.spearman_scipy, 1e-12);
    expectGolden(sp, g.spearman_quantus, 1e-12);
    expectGolden(flat, g.ssim_flat_quantus, 1e-10);
    expectGolden(image, g.ssim_image_quantus, 1e-10);
  });
});

describe('similarities on the GPU', () => {
  it('56×56 pairs (tie-free, signed, relu-d, 8 levels, constant, all zero, identical) match Quantus / scipy to 1e-5', async () => {
    const p = load56();
    const g = GOLDEN.cases['56'];
    const l = p.h * p.w;
    const r = await allSimilarities(p, 'sim56');
    // Ranks from the sorts are exact half-integers: equal to the float64 reference bit for bit.
    const ranks = Float64Array.from({ length: p.n * l }, (_, k) => ranks64(row(p.a, Math.floor(k / l), l))[k % l]);
    expect(maxAbsDiff(r.ranksA, ranks)).toBe(0);
    expect(maxAbsDiff(row(r.ranksA, 3, l), npy(join(DIR, 'ranks-56-a3.npy')).data)).toBe(0);
    // Undefined pairs: a constant map (row 4) and two zero maps (row 5) have no ranks; the zero pair has no data range.
    expect(Array.from(r.spearmanValid)).toEqual([1, 1, 1, 1, 0, 0, 1]);
    expect(Array.from(r.pearsonValid)).toEqual([1, 1, 1, 1, 0, 0, 1]);
    expect(Array.from(r.ssimFlatValid)).toEqual([1, 1, 1, 1, 1, 0, 1]);
    expect(Array.from(r.ssimImageValid)).toEqual([1, 1, 1, 1, 1, 0, 1]);
    expect(r.spearman[4]).toBe(0);
    expect(r.ssimFlat[5]).toBe(0);
    const nanWhereInvalid = (v: Float32Array, ok: Float32Array) => Array.from(v, (x, i) => (ok[i] ? x : NaN));
    const d = {
      spearman: expectGolden(nanWhereInvalid(r.spearman, r.spearmanValid), g.spearman_quantus, TOL),
      ssimFlat: expectGolden(nanWhereInvalid(r.ssimFlat, r.ssimFlatValid), g.ssim_flat_quantus, TOL),
      ssimImage: expectGolden(nanWhereInvalid(r.ssimImage, r.ssimImageValid), g.ssim_image_quantus, TOL),
      pearson: expectGolden(nanWhereInvalid(r.pearson, r.pearsonValid), Array.from({ length: p.n }, (_, i) => {
        const v = pearson64(row(p.a, i, l), row(p.b, i, l));
        return Number.isNaN(v) ? null : v;
      }), TOL),
    };
    console.log('56×56 max |GPU − golden|:', d);
  });

  it('one 224×224 batch (signed vs relu-d, relu-d vs relu-d) matches Quantus / scipy to 1e-5', async () => {
    const p = load224();
    const g = GOLDEN.cases['224'];
    const r = await allSimilarities(p, 'sim224');
    expect(Array.from(r.spearmanValid)).toEqual([1, 1]);
    expect(Array.from(r.ssimImageValid)).toEqual([1, 1]);
    const d = {
      spearman: expectGolden(r.spearman, g.spearman_quantus, TOL),
      ssimFlat: expectGolden(r.ssimFlat, g.ssim_flat_quantus, TOL),
      ssimImage: expectGolden(r.ssimImage, g.ssim_image_quantus, TOL),
    };
    console.log('224×224 max |GPU − golden|:', d);
  });

  it('undefined pairs read NaN when asked, and a NaN anywhere in a map makes its pair undefined', async () => {
    const p = load56();
    const l = p.h * p.w;
    const a = Float32Array.from(p.a);
    a[1 * l + 100] = NaN;
    const r = await allSimilarities({ ...p, a }, 'sim56-nan', { undefinedValue: NaN });
    expect(Array.from(r.spearmanValid)).toEqual([1, 0, 1, 1, 0, 0, 1]);
    expect(Array.from(r.ssimFlatValid)).toEqual([1, 0, 1, 1, 1, 0, 1]);
    expect(Array.from(r.ssimImageValid)).toEqual([1, 0, 1, 1, 1, 0, 1]);
    for (const [v, ok] of [[r.spearman, r.spearmanValid], [r.ssimFlat, r.ssimFlatValid], [r.pearson, r.pearsonValid]] as const) {
      v.forEach((x, i) => expect(Number.isNaN(x)).toBe(ok[i] === 0));
    }
    // The defined pairs are untouched by the NaN of pair 1.
    expect(Math.abs(r.spearman[0] - GOLDEN.cases['56'].spearman_quantus[0]!)).toBeLessThanOrEqual(TOL);
  });

  it('a fixed data range gives skimage with that data_range (float64 reference)', async () => {
    const p = load56();
    const l = p.h * p.w;
    const opts: SsimOptions = { layout: 'image', dataRange: 2, k1: 0.02, k2: 0.05, winSize: 5 };
    const out = await runPairs(p, 'ssim-fixed', ['v'], (t, a, b) => ({ v: ssim(t, a, b, opts).value }));
    const want = Array.from({ length: p.n }, (_, i) => ssim64(row(p.a, i, l), row(p.b, i, l), p.h, p.w, 5, 5, 2, 0.02, 0.05));
    expect(maxAbsDiff(out.v, want)).toBeLessThanOrEqual(TOL);
  });

  it('bad shapes and options are typed errors naming what was wrong', () => {
    const t = new Tape();
    const a = t.input('a', [2, 56, 56]);
    const b = t.input('b', [2, 28, 28]);
    const small = t.input('s', [2, 5, 5]);
    expect(() => spearman(t, a, b)).toThrow(ShapeError);
    expect(() => ssim(t, a, b)).toThrow(/same shape/);
    expect(() => ssim(t, small, small, { layout: 'image' })).toThrow(/7×7 window does not fit maps of 5×5/);
    expect(() => ssim(t, a, a, { winSize: 6 })).toThrow(/odd/);
    expect(() => ssim(t, a, a, { dataRange: 0 })).toThrow(/dataRange/);
    expect(() => ssim(t, t.input('flat', [2, 3136]), t.input('flat2', [2, 3136]), { layout: 'image' })).toThrow(/\[N, H, W\]/);
  });
});

// ---------- cascading randomization ----------

const MODELS = join(import.meta.dirname, '..', 'models');
const loadModel = async (name: string) => Model.fromBytes(await gpu(), new Uint8Array(readFileSync(join(MODELS, `${name}.onnx`))), { name });

function images(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n * 56 * 56 }, () => rng.normal());
}

async function forward(model: Model, x: Tensor, taps: string[]): Promise<{ logits: Float32Array; taps: Float32Array[] }> {
  const r = await model.run(x, { taps });
  const all = [r.outputs.get(model.outputName)!, ...taps.map((k) => r.taps.get(k)!.value)];
  const read = await readTensors(model.ctx, all);
  for (const t of all) t.dispose();
  return { logits: read[0], taps: read.slice(1) };
}

const EXPECTED_LAYERS: Record<string, string[]> = {
  'fashion-vgg': ['features.0', 'features.3', 'features.5', 'features.8', 'classifier.0', 'classifier.2'],
  'fashion-resnet': ['conv1', 'layer1.0.conv1', 'layer1.0.conv2', 'layer2.0.conv1', 'layer2.0.conv2', 'layer2.0.downsample.0', 'fc'],
};

describe.each(Object.keys(EXPECTED_LAYERS))('cascading randomization of %s', (name) => {
  it('lists the parameterized layers in graph order', async () => {
    const model = await loadModel(name);
    const modules = EXPECTED_LAYERS[name];
    expect(parameterizedLayers(model.graph).map((l) => l.module)).toEqual(modules);
    // A chosen subset keeps graph order whatever order it is given in.
    expect(cascadeLayers(model.graph, { layers: [modules[3], modules[1]] }).map((l) => l.module)).toEqual([modules[1], modules[3]]);
    await model.dispose();
  });

  it('each copy keeps the untouched prefix bit for bit, changes the logits, and leaves no GPU memory behind', async () => {
    const ctx = await gpu();
    const model = await loadModel(name);
    const layers = cascadeLayers(model.graph);
    const x = Tensor.fromData(ctx, images(2, 11), [2, 1, 56, 56]);
    // The input of each layer: the tap just before it, computed from untouched layers only in the copies that re-initialize it and what follows.
    const inputOf = layers.map((l) => model.graph.nodes[l.index].inputs[0]);
    const prefixTaps = inputOf.filter((t) => t !== model.inputName);
    const original = await forward(model, x, prefixTaps);
    const baseline = ctx.pool.getStats().inUseBytes;
    const copies: Model[] = [];
    let steps = 0;
    for await (const step of cascadingRandomization(model, { seed: 5 })) {
      steps++;
      copies.push(step.model);
      expect(step.step).toBe(steps);
      expect(step.randomized.map((l) => l.node)).toEqual(layers.slice(layers.length - steps).reverse().map((l) => l.node));
      const first = layers.length - steps;
      const tap = inputOf[first];
      const run = await forward(step.model, x, tap === model.inputName ? [] : [tap]);
      if (tap !== model.inputName) expect(maxAbsDiff(run.taps[0], original.taps[prefixTaps.indexOf(tap)])).toBe(0);
      expect(maxAbsDiff(run.logits, original.logits)).toBeGreaterThan(1e-3);
    }
    expect(steps).toBe(layers.length);
    // Every copy was disposed by the generator: its constants and programs are gone.
    for (const c of copies) expect(c.weights.totalBytes).toBe(0);
    expect(ctx.pool.getStats().inUseBytes).toBe(baseline);
    x.dispose();
    await model.dispose();
  });

  it('re-initializes with torch’s bounds and moments, shares every untouched initializer, and is cumulative', async () => {
    const model = await loadModel(name);
    const layers = cascadeLayers(model.graph);
    const all = randomizedGraph(model.graph, layers, 3);
    const fewer = randomizedGraph(model.graph, layers.slice(2), 3);
    for (const l of layers) {
      for (const p of l.params) {
        const fresh = all.initializers.get(randomizedName(p.initializer, 3))!.data;
        const bound = 1 / Math.sqrt(l.fanIn!);
        const n = fresh.length;
        let mean = 0;
        let sq = 0;
        let top = 0;
        for (const v of fresh) { mean += v; sq += v * v; top = Math.max(top, Math.abs(v)); }
        mean /= n;
        sq /= n;
        expect(top).toBeLessThanOrEqual(Math.fround(bound));
        if (n >= 64) {
          // U(−b, b): mean 0 (sd b/√(3n)), E[x²] = b²/3 (sd b²·√(4/(45n))), and the extremes near ±b.
          expect(Math.abs(mean)).toBeLessThan(5 * bound / Math.sqrt(3 * n));
          expect(Math.abs(sq - bound * bound / 3)).toBeLessThan(5 * bound * bound * Math.sqrt(4 / (45 * n)));
          expect(top).toBeGreaterThan(0.9 * bound);
        }
        // The original is untouched, and the same layer has the same values whatever else is re-initialized.
        expect(all.initializers.get(p.initializer)).toBe(model.graph.initializers.get(p.initializer));
        if (l.index >= layers[2].index) expect(fewer.initializers.get(randomizedName(p.initializer, 3))!.data).toEqual(fresh);
      }
    }
    for (const [k, v] of model.graph.initializers) expect(all.initializers.get(k)).toBe(v);
    expect(all.nodes.filter((n, i) => n !== model.graph.nodes[i]).length).toBe(layers.length);
    await model.dispose();
  });

  it('the same seed gives the same logits, another seed others', async () => {
    const ctx = await gpu();
    const model = await loadModel(name);
    const x = Tensor.fromData(ctx, images(2, 12), [2, 1, 56, 56]);
    const run = async (seed: number) => {
      const copy = randomizedCopy(model, 2, { seed });
      try {
        return (await forward(copy, x, [])).logits;
      } finally {
        await copy.dispose();
      }
    };
    const [a, b, c] = [await run(9), await run(9), await run(10)];
    expect(maxAbsDiff(a, b)).toBe(0);
    expect(maxAbsDiff(a, c)).toBeGreaterThan(1e-3);
    expect(() => randomizedCopy(model, 0)).toThrow(InputError);
    expect(() => randomizedCopy(model, 99)).toThrow(/whole number in \[1, /);
    expect(() => cascadeLayers(model.graph, { layers: ['no.such.layer'] })).toThrow(/not a parameterized layer/);
    x.dispose();
    await model.dispose();
  });
});

describe('cascading randomization with BatchNormalization layers (resnet18-w8)', () => {
  it('resets BatchNorm as torch’s reset_parameters does: the layer becomes x/√(1 + ε)', async () => {
    const ctx = await gpu();
    const bytes = new Uint8Array(readFileSync(join(FIXTURES, 'torch', 'resnet18-w8.onnx')));
    const graph = importOnnx(bytes, { name: 'resnet18-w8' });
    const layers = parameterizedLayers(graph);
    expect(layers.filter((l) => l.opType === 'BatchNormalization').length).toBe(20);
    expect(layers.at(-1)!.module).toBe('fc');
    expect(layers.at(-2)!.module).toBe('layer4.1.bn2');
    const bn = layers.at(-2)!;
    const eps = (graph.nodes[bn.index].attrs.get('epsilon') as number | undefined) ?? 1e-5;
    const model = new Model(ctx, graph);
    const copy = randomizedCopy(model, 2, { seed: 1 });
    const g = copy.graph;
    const values = (role: string) => g.initializers.get(g.nodes[bn.index].inputs[bn.params.find((p) => p.role === role)!.input])!.data;
    expect([...new Set(values('scale'))]).toEqual([1]);
    expect([...new Set(values('bias'))]).toEqual([0]);
    expect([...new Set(values('mean'))]).toEqual([0]);
    expect([...new Set(values('variance'))]).toEqual([1]);
    const input = npy(join(FIXTURES, 'torch', 'inputs', 'input-3x3x64x64-seed0.npy'));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const conv = graph.nodes[bn.index].inputs[0];
    const out = graph.nodes[bn.index].outputs[0];
    const before = await forward(model, x, [conv]);
    const after = await forward(copy, x, [conv, out]);
    expect(maxAbsDiff(after.taps[0], before.taps[0])).toBe(0);
    const scaled = Float64Array.from(after.taps[0], (v) => v / Math.sqrt(1 + eps));
    expect(maxAbsDiff(after.taps[1], scaled)).toBeLessThanOrEqual(1e-6 * Math.max(...Array.from(scaled, Math.abs)));
    expect(maxAbsDiff(after.logits, before.logits)).toBeGreaterThan(1e-3);
    x.dispose();
    await copy.dispose();
    await model.dispose();
  });
});
