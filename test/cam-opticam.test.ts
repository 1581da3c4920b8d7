import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/cam/explain.js';
import { Model } from '../src/model.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { bilinearRef } from './reference/cpu.js';
import { maxAbsDiff, relErr } from './helpers/compare.js';

/**
 * Opti-CAM's unrolled GPU optimization against the objective computed the plain way: the
 * mask from the weights (float64 on the CPU), the masked [0, 1] pixels renormalized and
 * scored by ordinary forward passes. The first loss must be the objective at u = 0.5, and
 * after one Adam step the weights must be softmax(0.5 − lr·g/(|g| + 1e-8)) with g the
 * central finite-difference gradient of that objective: the whole backward pass into u.
 */
const REPO = join(import.meta.dirname, '..');
const INPUT = npy(join(REPO, 'test/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy'));
const MEAN = 0.286041;
const STD = 0.353024;
const TARGETS = [4, 6];
const LAYER = 'features.9';

describe('Opti-CAM', () => {
  it('its first loss is the objective at u = 0.5 and its first Adam step follows the objective’s gradient', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-vgg.onnx'))));
    const per = INPUT.data.length / INPUT.shape[0];
    const xs = [2, ...INPUT.shape.slice(1)];
    const xd = INPUT.data.slice(0, 2 * per);
    const x = Tensor.fromData(ctx, xd, xs);
    const clean = await model.run(x, { taps: [LAYER] });
    const tap = clean.taps.get(LAYER)!.value;
    const a = (await tap.read()).map((v) => Math.max(v, 0));
    const [, K, h, w] = tap.shape;
    const logits0 = await clean.outputs.values().next().value!.read();
    tap.dispose();
    for (const t of clean.outputs.values()) t.dispose();
    const [, , H, W] = xs;
    const classes = logits0.length / 2;
    /** Losses y_c(x) − y_c(x') of image i for several weight vectors u, in one batched pass. */
    const losses = async (i: number, us: Float64Array[]): Promise<number[]> => {
      const batch = new Float32Array(us.length * per);
      us.forEach((u, b) => {
        const e = u.map(Math.exp);
        const z = e.reduce((p, q) => p + q, 0);
        const s = new Float64Array(h * w);
        for (let k = 0; k < K; k++) for (let p = 0; p < h * w; p++) s[p] += (e[k] / z) * a[(i * K + k) * h * w + p];
        const up = bilinearRef(s, [1, 1, h, w], H, W, { alignCorners: false }).data;
        const lo = Math.min(...up);
        const hi = Math.max(...up);
        for (let p = 0; p < per; p++) batch[b * per + p] = ((xd[i * per + p] * STD + MEAN) * ((up[p] - lo) / (hi - lo)) - MEAN) / STD;
      });
      const t = Tensor.fromData(ctx, batch, [us.length, ...xs.slice(1)]);
      const out = await model.run(t);
      const l = await out.outputs.values().next().value!.read();
      for (const v of out.outputs.values()) v.dispose();
      t.dispose();
      return us.map((_, b) => logits0[i * classes + TARGETS[i]] - l[b * classes + TARGETS[i]]);
    };
    const r1 = await explain(model, x, { methods: ['opticam'], layers: [LAYER], targets: TARGETS, iterations: 1, pixels: { mean: [MEAN], std: [STD] } });
    const [weights1, curve1] = await readTensors(ctx, [r1.methods[0].weights!, r1.methods[0].lossCurve!]);
    r1.dispose();
    const hstep = 1e-2;
    for (let i = 0; i < 2; i++) {
      const half = new Float64Array(K).fill(0.5);
      const us = [half];
      for (let k = 0; k < K; k++) {
        const up = Float64Array.from(half);
        const dn = Float64Array.from(half);
        up[k] += hstep;
        dn[k] -= hstep;
        us.push(up, dn);
      }
      const l = await losses(i, us);
      expect(Math.abs(curve1[i] - l[0]) / Math.max(1, Math.abs(l[0]))).toBeLessThan(1e-4);
      const g = Array.from({ length: K }, (_, k) => (l[1 + 2 * k] - l[2 + 2 * k]) / (2 * hstep));
      const u1 = g.map((gk) => 0.5 - (0.1 * gk) / (Math.abs(gk) + 1e-8));
      const e = u1.map(Math.exp);
      const z = e.reduce((p, q) => p + q, 0);
      // Coordinates whose gradient is within finite-difference noise of 0 may step either way.
      const gmax = Math.max(...g.map(Math.abs));
      let checked = 0;
      for (let k = 0; k < K; k++) {
        if (Math.abs(g[k]) < 1e-3 * gmax) continue;
        checked++;
        expect(Math.abs(weights1[i * K + k] - e[k] / z), `image ${i} channel ${k}`).toBeLessThan(1e-5);
      }
      expect(checked).toBeGreaterThan(K / 2);
    }
    // 50 iterations: the curve starts where one iteration did, and the optimization lowers the loss.
    const r = await explain(model, x, { methods: ['opticam'], layers: [LAYER], targets: TARGETS, pixels: { mean: [MEAN], std: [STD] } });
    const [curve, map] = await readTensors(ctx, [r.methods[0].lossCurve!, r.methods[0].map]);
    r.dispose();
    expect(r.methods[0].lossCurve!.shape).toEqual([2, 50]);
    for (let i = 0; i < 2; i++) {
      expect(curve[i * 50]).toBeCloseTo(curve1[i], 4);
      expect(curve[i * 50 + 49]).toBeLessThan(curve[i * 50]);
    }
    expect(Math.min(...map)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...map)).toBeCloseTo(1, 5);
    x.dispose();
    await model.dispose();
  });

  // Adam's first steps move every weight by ≈ lr·sign(g), so where g is float noise (a channel
  // that barely matters) two float32 engines take different steps, and fifty iterations of a
  // non-convex objective then drift apart. On the Fashion models nothing drifts: the map ≤ 1e-3
  // and the whole loss curve match. On the narrowed torchvision models the curves drift after
  // a few iterations (measured: resnet18-w8 image 0 within 1e-4 over all its 31 iterations with
  // the same early stop, map 0.011 apart; its image 1 5e-3 apart by the stop; vgg16-w8 8e-3 by
  // iteration 6, maps up to 0.33 apart), so there only the first loss — the objective at
  // u = 0.5, before any step — is compared.
  it.each([
    ['fashion-vgg', { map: 1e-3, iterations: null }],
    ['fashion-resnet', { map: 1e-3, iterations: null }],
    ['resnet18-w8', { map: null, iterations: 1 }],
    ['vgg16-w8', { map: null, iterations: 1 }],
  ] as const)('%s: matches OPTI (hanwei0912/OptiCAM) with its defaults: map and loss curve %o', async (name, tol) => {
    const dir = join(REPO, 'test/fixtures/cam', name);
    const meta = JSON.parse(readFileSync(join(dir, 'opticam.json'), 'utf8')) as { layer: string; targets: number[]; input: string; pixels: { mean: number[]; std: number[] }; iterationsRun: number[] };
    const ctx = await gpu();
    const file = name.startsWith('fashion') ? `models/${name}.onnx` : `test/fixtures/torch/${name}.onnx`;
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, file))));
    const input = npy(join(REPO, meta.input));
    if (model.graph.inputs[0].dims?.some((d, i) => i > 0 && d !== input.shape[i])) model.graph.inputs[0].dims = null;
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const C = input.shape[1];
    const pick = (v: number[]) => Array.from({ length: C }, (_, c) => v[v.length === 1 ? 0 : c]);
    const r = await explain(model, x, { methods: ['opticam'], layers: [meta.layer], targets: meta.targets, pixels: { mean: pick(meta.pixels.mean), std: pick(meta.pixels.std) } });
    const [map, curve] = await readTensors(ctx, [r.methods[0].map, r.methods[0].lossCurve!]);
    r.dispose();
    x.dispose();
    await model.dispose();
    if (tol.map !== null) expect(maxAbsDiff(map, npy(join(dir, 'OPTI-map.npy')).data), `${name}: map`).toBeLessThan(tol.map);
    const want = npy(join(dir, 'OPTI-loss.npy'));
    const iters = want.shape[1];
    meta.iterationsRun.forEach((ran, n) => {
      const upTo = tol.iterations ?? ran;
      const ours = curve.subarray(n * iters, n * iters + upTo);
      const theirs = want.data.subarray(n * iters, n * iters + upTo);
      expect(relErr(ours, theirs), `${name} image ${n}: loss curve over ${upTo} of its ${ran} iterations`).toBeLessThan(1e-3);
      // After an early stop the curve stays at the loss of the step that stopped.
      if (ran < iters) for (let i = ran; i < iters; i++) expect(curve[n * iters + i]).toBe(curve[n * iters + ran - 1]);
    });
  }, 600_000);
});
