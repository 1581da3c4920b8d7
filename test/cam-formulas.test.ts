import { describe, expect, it } from 'vitest';
import { finalMap, layerMap } from '../src/cam/math.js';
import { type LayerInputs, METHOD_BY_NAME } from '../src/cam/methods.js';
import type { Sym } from '../src/ops/graph.js';
import { ProgramRunner } from '../src/ops/program.js';
import { Tape } from '../src/ops/tape.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { WeightStore } from '../src/runtime/weights.js';
import { gpu } from './helpers/gpu.js';
import { rng } from './helpers/random.js';
import {
  activationCam, type CamRef, eigenCam, eigenGradCam, type Feat, fem, finishPgc, gradCam, gradCamElementWise, gradCamPlusPlus, hiResCam,
  kpcaCam, layerCam, type Shape4, xGradCam,
} from './reference/cam.js';
import { maxAbsDiff } from './helpers/compare.js';

/**
 * Every activation/gradient CAM's tape recording (src/cam/methods.ts) on the GPU against the
 * float64 references of test/reference/cam.ts (written from SPEC §1, and checked against
 * pytorch-grad-cam by test/cam-reference.test.ts), on random activations and gradients in
 * several shapes, plus the degenerate inputs: zero gradients, constant activations. No NaN
 * anywhere, and the same epsilons as the reference.
 */
const REFS: Record<string, (a: Feat, g: Feat) => CamRef> = {
  activationcam: (a) => activationCam(a),
  gradcam: gradCam,
  'gradcam++': gradCamPlusPlus,
  xgradcam: xGradCam,
  hirescam: hiResCam,
  gradcamelementwise: gradCamElementWise,
  layercam: layerCam,
  eigencam: (a) => eigenCam(a, 'minmax'),
  eigengradcam: (a, g) => eigenGradCam(a, g, 'minmax'),
  kpcacam: (a) => kpcaCam(a),
  fem: (a) => fem(a),
};

const SHAPES: Shape4[] = [[2, 5, 4, 4], [3, 8, 7, 7], [1, 3, 2, 6]];
const TOL = 1e-4;

type Fill = 'signed' | 'positive' | 'zero' | 'constant';

function fill(kind: Fill, n: number, rand: () => number): Float32Array {
  if (kind === 'zero') return new Float32Array(n);
  if (kind === 'constant') return new Float32Array(n).fill(0.75);
  if (kind === 'positive') return Float32Array.from({ length: n }, () => Math.max(0, rand() * 2 - 0.6));
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

const scaleOf = (a: ArrayLike<number>) => Math.max(1e-30, ...Array.from(a, (v) => Math.abs(v)));

async function runMethod(method: string, shape: Shape4, a: Float32Array, g: Float32Array, size: [number, number]) {
  const ctx = await gpu();
  const runner = new ProgramRunner(ctx, new WeightStore(ctx));
  const [n] = shape;
  const m = METHOD_BY_NAME.get(method)!;
  const build = (nb: number) => {
    const t = new Tape();
    const A = t.input('A', [nb, ...shape.slice(1)]);
    const G = t.input('G', [nb, ...shape.slice(1)]);
    const unused = (): Sym => {
      throw new Error('not used by this method');
    };
    const inputs: LayerInputs = { a: A, g: G, classifierWeights: unused, uniformWeights: unused, x: A, inputGradient: unused, guidedInputGradient: unused, gradCamMap: unused, sampled: () => [unused()] };
    const r = m.record(t, inputs);
    const map = finalMap(t, [layerMap(t, r.raw, size)]);
    const names = new Map([['raw', r.raw.name], ['map', map.name]]);
    if (r.weights) names.set('weights', r.weights.name);
    return { graph: t.graph, names };
  };
  const xa = Tensor.fromData(ctx, a, shape);
  const xg = Tensor.fromData(ctx, g, shape);
  try {
    const results: Record<string, { batchAxis: 0 }> = { raw: { batchAxis: 0 }, map: { batchAxis: 0 } };
    if (m.hasWeights) results.weights = { batchAxis: 0 };
    const run = await runner.run({ key: method, build, batch: n, feeds: { A: { tensor: xa, batchAxis: 0 }, G: { tensor: xg, batchAxis: 0 } }, results });
    const names = Object.keys(results);
    const read = await readTensors(ctx, names.map((k) => run.results.get(k)!));
    for (const t of run.results.values()) t.dispose();
    return Object.fromEntries(names.map((k, i) => [k, read[i]]));
  } finally {
    xa.dispose();
    xg.dispose();
    await runner.dispose();
  }
}

describe('CAM formulas on the GPU against float64 references', () => {
  const cases: [string, Shape4, Fill, Fill][] = [];
  for (const method of Object.keys(REFS)) {
    SHAPES.forEach((s, i) => cases.push([method, s, i === 1 ? 'positive' : 'signed', 'signed']));
    cases.push([method, SHAPES[0], 'positive', 'zero']);
    cases.push([method, SHAPES[1], 'constant', 'signed']);
  }

  it.each(cases)('%s on A %j (%s), g %s', async (method, shape, aFill, gFill) => {
    const rand = rng(shape.reduce((p, q) => p * 31 + q, method.length));
    const size = shape.reduce((p, q) => p * q, 1);
    const a = fill(aFill, size, rand);
    const g = fill(gFill, size, rand);
    const H = shape[2] * 3 + 1;
    const W = shape[3] * 2;
    const ref = REFS[method]({ data: a, shape }, { data: g, shape });
    const got = await runMethod(method, shape, a, g, [H, W]);
    for (const v of Object.values(got)) expect(v.every((x) => Number.isFinite(x)), `${method}: finite`).toBe(true);
    const rawErr = maxAbsDiff(got.raw, ref.raw.data) / scaleOf(ref.raw.data);
    expect(rawErr, `${method}: raw map`).toBeLessThan(method === 'kpcacam' ? 1e-3 : TOL);
    if (ref.weights && METHOD_BY_NAME.get(method)!.hasWeights) expect(maxAbsDiff(got.weights, ref.weights) / scaleOf(ref.weights), `${method}: weights`).toBeLessThan(TOL);
    const final = finishPgc(ref.raw, H, W);
    expect(maxAbsDiff(got.map, final.data), `${method}: final map`).toBeLessThan(method === 'kpcacam' ? 1e-3 : TOL);
    if (gFill === 'zero' && METHOD_BY_NAME.get(method)!.needs === 'class') expect(Math.max(...got.map), `${method}: zero gradients give a zero map`).toBe(0);
  });
});
