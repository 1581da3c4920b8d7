import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { roadScores } from '../src/metrics/road.js';
import { Model } from '../src/model.js';
import { gradients } from '../src/ops/autodiff.js';
import { imputeRef, imputeResidualRef } from '../src/ops/impute.js';
import { randomRef } from '../src/ops/random.js';
import { ProgramRunner } from '../src/ops/program.js';
import { Tape } from '../src/ops/tape.js';
import type { GpuContext } from '../src/runtime/device.js';
import { InputError, ShapeError } from '../src/runtime/errors.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { maxAbsDiff } from './helpers/compare.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { rng } from './helpers/random.js';
import { watchReadbacks } from './helpers/readbacks.js';

/**
 * ROAD (SPEC §2) and its imputation op. The op is checked against a float64 banded direct
 * solve written from the definition (src/ops/impute.ts imputeRef) and against
 * pytorch-grad-cam's NoisyLinearImputer with noise 0; the metric against PGC's
 * ROADMostRelevantFirst / ROADLeastRelevantFirst on both Fashion models, with PGC's noise
 * draws fed in (tools/gen_road_fixtures.py, test/fixtures/metrics/road/README.md).
 */
const REPO = join(import.meta.dirname, '..');
const DIR = join(FIXTURES, 'metrics', 'road');
const TOL = 1e-4;

interface RoadFixture {
  targets: number[];
  percentiles: number[];
  noise: { file: string; std: number; percentiles: number[] };
  removed: Record<'morf' | 'lerf', number[][]>;
  impute: Record<string, { shape: number[]; removed: number }>;
  models: Record<string, { clean: number[]; combined: number[]; model: { file: string } } & Record<'morf' | 'lerf', { scores: number[][]; diff: number[][]; meanDiff: number[] }>>;
}
const META = JSON.parse(readFileSync(join(DIR, 'road.json'), 'utf8')) as RoadFixture;

/** Runs impute (+ its residual) on host data through a one-off program. */
async function imputeOnGpu(ctx: GpuContext, x: Float32Array, shape: number[], keep: Float32Array, attrs = { iterations: 400, tolerance: 1e-6 }): Promise<{ filled: Float32Array; residual: Float32Array }> {
  const weights = new WeightStore(ctx);
  const runner = new ProgramRunner(ctx, weights, { label: 'impute-test' });
  const [N, , H, W] = shape;
  const xs = Tensor.fromData(ctx, x, shape);
  const ks = Tensor.fromData(ctx, keep, [N, H, W]);
  try {
    const run = await runner.run({
      key: `impute|${shape}|${attrs.iterations}|${attrs.tolerance}`,
      batch: N,
      build: () => {
        const t = new Tape();
        const xi = t.input('x', shape);
        const ki = t.input('keep', [N, H, W]);
        const filled = t.impute(xi, ki, attrs);
        return { graph: t.graph, names: new Map([['filled', filled.name], ['residual', t.imputeResidual(filled, ki).name]]) };
      },
      feeds: { x: { tensor: xs, batchAxis: 0 }, keep: { tensor: ks, batchAxis: 0 } },
      results: { filled: { batchAxis: 0 }, residual: { batchAxis: 0 } },
    });
    const outs = [run.results.get('filled')!, run.results.get('residual')!];
    const [filled, residual] = await readTensors(ctx, outs);
    for (const o of outs) o.dispose();
    return { filled, residual };
  } finally {
    xs.dispose();
    ks.dispose();
    await runner.dispose();
    weights.dispose();
  }
}

describe('impute op (noisy linear imputation without the noise, conjugate gradients)', () => {
  it('matches a float64 banded solve on random masks, per image and channel', async () => {
    const ctx = await gpu();
    const rand = rng(5);
    const shape = [3, 2, 9, 13];
    const [N, C, H, W] = shape;
    const x = Float32Array.from({ length: N * C * H * W }, () => rand() * 4 - 2);
    // Images remove about 20 %, 60 % and 90 % of their pixels.
    const keep = Float32Array.from({ length: N * H * W }, (_, i) => (rand() > [0.2, 0.6, 0.9][Math.floor(i / (H * W))] ? 1 : 0));
    const want = imputeRef(x, shape, keep);
    const got = await imputeOnGpu(ctx, x, shape, keep);
    const err = maxAbsDiff(got.filled, want);
    expect(err).toBeLessThan(TOL);
    // Known pixels are copied exactly.
    for (let i = 0; i < x.length; i++) if (keep[Math.floor(i / (C * H * W)) * H * W + (i % (H * W))] > 0.5) expect(got.filled[i]).toBe(x[i]);
    // The residual op against the float64 residual of the same fill, and under the tolerance.
    const residual64 = imputeResidualRef(got.filled, shape, keep);
    expect(maxAbsDiff(got.residual, residual64)).toBeLessThan(1e-6);
    // The tolerance (1e-6) bounds CG's recursive residual; the true one is what float32 allows.
    for (const r of got.residual) expect(r).toBeLessThanOrEqual(1e-6);
    console.log(`impute vs float64 banded solve: max |Δ| ${err.toExponential(2)}; residuals ${[...got.residual].map((r) => r.toExponential(2)).join(', ')}`);
  });

  it("matches pytorch-grad-cam's NoisyLinearImputer (noise 0)", async () => {
    const ctx = await gpu();
    for (const [name, info] of Object.entries(META.impute)) {
      const x = npy(join(DIR, 'impute', `${name}-x.npy`));
      const keep = npy(join(DIR, 'impute', `${name}-keep.npy`));
      const want = npy(join(DIR, 'impute', `${name}-out.npy`));
      expect(x.shape).toEqual(info.shape);
      expect(keep.data.reduce((s, v) => s + (v < 0.5 ? 1 : 0), 0)).toBe(info.removed);
      // The float64 reference agrees with PGC's scipy solve first (CPU only).
      expect(maxAbsDiff(imputeRef(x.data, x.shape, keep.data), want.data), `${name}: imputeRef vs PGC`).toBeLessThan(1e-6);
      const got = await imputeOnGpu(ctx, x.data, x.shape, keep.data);
      const err = maxAbsDiff(got.filled, want.data);
      expect(err, name).toBeLessThan(TOL);
      // Recursive residual 1e-6; the true one stops near 4e-6 on the 2822-pixel region (float32's floor there).
      expect(got.residual[0], name).toBeLessThanOrEqual(info.removed > 1000 ? 1e-5 : 1e-6);
      console.log(`impute vs PGC ${name} (${info.removed} removed): max |Δ| ${err.toExponential(2)}, residual ${got.residual[0].toExponential(2)}`);
    }
  });

  it('nothing removed: x unchanged, residual 0; everything removed: the defined fill 0, residual 0; images are independent', async () => {
    const ctx = await gpu();
    const shape = [3, 2, 6, 7];
    const [N, C, H, W] = shape;
    const rand = rng(9);
    const x = Float32Array.from({ length: N * C * H * W }, () => rand() + 0.5);
    const keep = new Float32Array(N * H * W);
    keep.fill(1, 0, H * W); // image 0: nothing removed
    // image 1: everything removed (the singular system); image 2: half removed
    for (let p = 0; p < H * W; p++) keep[2 * H * W + p] = p % 2;
    const got = await imputeOnGpu(ctx, x, shape, keep);
    const plane = C * H * W;
    expect(got.filled.subarray(0, plane)).toEqual(x.subarray(0, plane));
    expect([...got.filled.subarray(plane, 2 * plane)].every((v) => v === 0)).toBe(true);
    expect(got.residual[0]).toBe(0);
    expect(got.residual[1]).toBe(0);
    expect(maxAbsDiff(got.filled.subarray(2 * plane), imputeRef(x, shape, keep).subarray(2 * plane))).toBeLessThan(TOL);
  });

  it('has no gradient, and rejects a mask of the wrong shape', () => {
    const t = new Tape();
    const x = t.input('x', [1, 1, 4, 4]);
    const keep = t.input('keep', [1, 4, 4]);
    const y = t.impute(x, keep, { iterations: 5, tolerance: 0 });
    expect(() => gradients(t, new Map([[y.name, t.input('seed', [1, 1, 4, 4])]]), [x.name])).toThrow(InputError);
    expect(() => t.impute(x, t.input('bad', [1, 4, 5]), { iterations: 5, tolerance: 0 })).toThrow(ShapeError);
    expect(() => t.impute(x, keep, { iterations: -1, tolerance: 0 })).toThrow(ShapeError);
  });
});

describe('ROAD against pytorch-grad-cam (noise fed in)', () => {
  const input = npy(join(REPO, 'test/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy'));
  const maps = npy(join(DIR, 'maps.npy'));
  const noise = npy(join(DIR, META.noise.file));
  const [M, C, H, W] = input.shape;
  const P = META.percentiles.length;
  /** [M, P, C, H, W]: the saved draws at their percentiles, zeros at the others (as the generator fed PGC). */
  const fedNoise = new Float32Array(M * P * C * H * W);
  const plane = C * H * W;
  for (let m = 0; m < M; m++) {
    META.noise.percentiles.forEach((p, k) => {
      const j = META.percentiles.indexOf(p);
      fedNoise.set(noise.data.subarray((m * META.noise.percentiles.length + k) * plane, (m * META.noise.percentiles.length + k + 1) * plane), (m * P + j) * plane);
    });
  }
  const onehot = Float32Array.from({ length: M * 10 }, (_, i) => (i % 10 === META.targets[Math.floor(i / 10)] ? 1 : 0));

  it.each(Object.keys(META.models))('%s: MoRF and LeRF scores, differences, means and masks', async (name) => {
    const ctx = await gpu();
    const ref = META.models[name];
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, ref.model.file))));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const m = Tensor.fromData(ctx, maps.data, maps.shape);
    const seed = Tensor.fromData(ctx, onehot, [M, 10]);
    const z = Tensor.fromData(ctx, fedNoise, [M, P, C, H, W]);
    const means: Record<string, Float32Array> = {};
    try {
      for (const order of ['morf', 'lerf'] as const) {
        const watch = watchReadbacks(ctx);
        const r = await roadScores(model, x, m, seed, { order, noiseTensor: z, noise: META.noise.std, returnMasks: true, maxChunk: 14 });
        expect(watch.count()).toBe(0);
        watch.restore();
        const outs = [r.scores, r.clean, r.diff, r.mean, r.residual, r.keep!];
        const [scores, clean, diff, mean, residual, keep] = await readTensors(ctx, outs);
        for (const o of outs) o.dispose();
        expect([r.scores.shape, r.diff.shape, r.residual.shape, r.keep!.shape]).toEqual([[M, P], [M, P], [M, P], [M, P, H, W]]);
        const removed = Array.from({ length: M * P }, (_, row) => keep.subarray(row * H * W, (row + 1) * H * W).reduce((s, v) => s + (1 - v), 0));
        expect(removed).toEqual(META.removed[order].flat());
        const errScore = maxAbsDiff(scores, ref[order].scores.flat());
        const errDiff = maxAbsDiff(diff, ref[order].diff.flat());
        const errClean = maxAbsDiff(clean, ref.clean);
        const meanDiff = Float32Array.from(mean, (v, i) => v - clean[i]);
        const errMean = maxAbsDiff(meanDiff, ref[order].meanDiff);
        expect(errScore, `${name} ${order}: scores`).toBeLessThan(TOL);
        expect(errDiff, `${name} ${order}: diff`).toBeLessThan(TOL);
        expect(errClean, `${name}: clean`).toBeLessThan(TOL);
        expect(errMean, `${name} ${order}: mean of diff`).toBeLessThan(TOL);
        const worst = Math.max(...residual);
        expect(worst).toBeLessThan(1e-5);
        means[order] = meanDiff;
        console.log(`ROAD ${name} ${order}: max |Δ| scores ${errScore.toExponential(2)}, diff ${errDiff.toExponential(2)}, mean ${errMean.toExponential(2)}; worst residual ${worst.toExponential(2)}`);
      }
      const combined = Float32Array.from(means.lerf, (v, i) => (v - means.morf[i]) / 2);
      expect(maxAbsDiff(combined, ref.combined)).toBeLessThan(TOL);
    } finally {
      for (const t of [x, m, seed, z]) t.dispose();
    }
  });

  it('seeded noise: deterministic, keyed by (image, order, p) whatever the other percentages; bad input is a typed error', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const m = Tensor.fromData(ctx, maps.data, maps.shape);
    const seed = Tensor.fromData(ctx, onehot, [M, 10]);
    const read = async (o: Parameters<typeof roadScores>[4]) => {
      const r = await roadScores(model, x, m, seed, o);
      const outs = [r.scores, r.clean, r.diff, r.mean, r.residual];
      const [scores] = await readTensors(ctx, outs);
      for (const t of outs) t.dispose();
      return scores;
    };
    try {
      const a = await read({ order: 'lerf', percentages: [30, 70], seed: 11 });
      const b = await read({ order: 'lerf', percentages: [30, 70], seed: 11 });
      const only70 = await read({ order: 'lerf', percentages: [70], seed: 11 });
      const other = await read({ order: 'lerf', percentages: [30, 70], seed: 12 });
      expect(b).toEqual(a);
      expect(Array.from({ length: M }, (_, i) => only70[i])).toEqual(Array.from({ length: M }, (_, i) => a[2 * i + 1]));
      expect(maxAbsDiff(other, a)).toBeGreaterThan(1e-4);
      // The seeded draws are the random op's N(0, 1) keyed by (seed, image, stream = lerf·2²⁰ + 1000·p):
      // the same draws made in float64 on the CPU and fed in give the same scores.
      const rows = Array.from({ length: 2 * M }, (_, r) => Math.floor(r / 2));
      const streams = rows.map((_, r) => (1 << 20) + 1000 * [30, 70][r % 2]);
      const draws = randomRef(rows, plane, { dist: 'normal', seed: 11, stream: 0, a: 0, b: 1 }, { streams, blocks: rows.map(() => 0) });
      const fed = Tensor.fromData(ctx, Float32Array.from(draws), [M, 2, C, H, W]);
      const viaFed = await read({ order: 'lerf', percentages: [30, 70], noiseTensor: fed });
      fed.dispose();
      expect(maxAbsDiff(viaFed, a)).toBeLessThan(TOL);
      // Noise 0 adds nothing: the same scores as zero draws fed in, and not those of σ = 0.01.
      const zeros = Tensor.fromData(ctx, new Float32Array(M * 2 * plane), [M, 2, C, H, W]);
      const zeroFed = await read({ order: 'lerf', percentages: [30, 70], noiseTensor: zeros });
      zeros.dispose();
      const quiet = await read({ order: 'lerf', percentages: [30, 70], noise: 0 });
      expect(quiet).toEqual(zeroFed);
      expect(maxAbsDiff(quiet, a)).toBeGreaterThan(1e-4);
      const bad = (o: Partial<Parameters<typeof roadScores>[4]>, shapeMaps = m) => roadScores(model, x, shapeMaps, seed, { order: 'morf', ...o });
      await expect(bad({ percentages: [0, 50] })).rejects.toThrow(InputError);
      await expect(bad({ percentages: [] })).rejects.toThrow(InputError);
      const wrongNoise = Tensor.fromData(ctx, new Float32Array(M * C * H * W), [M, 1, C, H, W]);
      await expect(bad({ noiseTensor: wrongNoise })).rejects.toThrow(ShapeError);
      wrongNoise.dispose();
      const wrongMaps = Tensor.fromData(ctx, new Float32Array(M * H * (W - 1)), [M, H, W - 1]);
      await expect(bad({}, wrongMaps)).rejects.toThrow(ShapeError);
      wrongMaps.dispose();
    } finally {
      for (const t of [x, m, seed]) t.dispose();
    }
  });
});
