import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/cam/explain.js';
import { Model } from '../src/model.js';
import { randomRef } from '../src/ops/random.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';

/**
 * The gradient baselines of explain() against Captum's own attributions
 * (test/fixtures/baselines, made by tools/gen_baseline_fixtures.py): Saliency, Input ×
 * Gradient, Guided Backprop and Integrated Gradients on the narrowed ResNet-18 and both
 * Fashion models, a different class per image. Integrated Gradients: ours is the textbook
 * trapezoid on Captum's 50 nodes (weights 1/49, ends halved, summing to 1); Captum's
 * 'riemann_trapezoid' weights are 1/50 (summing to 49/50), so ours = Captum's × 50/49.
 * SmoothGrad's noise comes from our GPU generator, so it is checked against the mean of
 * Model.grad at the same noisy inputs rebuilt on the CPU from the generator's hash.
 */
const DIR = join(FIXTURES, 'baselines');
const REPO = join(import.meta.dirname, '..');
const MODELS = ['resnet18-w8', 'fashion-vgg', 'fashion-resnet'];

interface Meta {
  model: { file: string };
  input: { file: string; slice?: { start: number; stop: number } };
  targets: number[];
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>, scale = 1): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  let big = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i] * scale));
    big = Math.max(big, Math.abs(b[i] * scale));
  }
  return m / big;
}

async function load(name: string) {
  const ctx = await gpu();
  const m = JSON.parse(readFileSync(join(DIR, name, 'meta.json'), 'utf8')) as Meta;
  const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, m.model.file))));
  const all = npy(join(REPO, m.input.file));
  const per = all.data.length / all.shape[0];
  const [start, stop] = m.input.slice ? [m.input.slice.start, m.input.slice.stop] : [0, all.shape[0]];
  const data = all.data.slice(start * per, stop * per);
  const x = Tensor.fromData(ctx, data, [stop - start, ...all.shape.slice(1)]);
  return { ctx, m, model, x, data };
}

describe('gradient baselines match Captum', () => {
  it.each(MODELS)('%s: Saliency, Input × Gradient, Guided Backprop, Integrated Gradients', async (name) => {
    const { ctx, m, model, x } = await load(name);
    const methods = ['saliency', 'inputxgradient', 'guidedbackprop', 'integratedgradients'];
    const r = await explain(model, x, { methods, targets: m.targets });
    try {
      const got = await readTensors(ctx, r.methods.map((mm) => mm.attribution!));
      const want = ['Saliency', 'InputXGradient', 'GuidedBackprop', 'IntegratedGradients'].map((f) => npy(join(DIR, name, `${f}.npy`)).data);
      const scales = [1, 1, 1, 50 / 49];
      // Integrated Gradients sums 50 float32 gradients (Captum in another order): 1e-3 of its largest value.
      const tols = [1e-4, 1e-4, 1e-4, 1e-3];
      methods.forEach((method, i) => expect(maxRelDiff(got[i], want[i], scales[i]), `${name} ${method}`).toBeLessThan(tols[i]));
      const [map] = await readTensors(ctx, [r.methods[0].map]);
      const sal = npy(join(DIR, name, 'Saliency-map.npy')).data;
      // The map is Captum's channel max, normalized per image.
      const hw = sal.length / x.shape[0];
      for (let n = 0; n < x.shape[0]; n++) {
        const s = sal.subarray(n * hw, (n + 1) * hw);
        const lo = Math.min(...s);
        const hi = Math.max(...s);
        for (let i = 0; i < hw; i++) expect(Math.abs(map[n * hw + i] - (s[i] - lo) / (hi - lo + 1e-7))).toBeLessThan(1e-4);
      }
    } finally {
      r.dispose();
      x.dispose();
      await model.dispose();
    }
  });

  it('SmoothGrad averages the gradients at the generator’s noisy copies', async () => {
    const { ctx, m, model, x, data } = await load('fashion-vgg');
    const r = await explain(model, x, { methods: ['smoothgrad'], targets: m.targets });
    const [got] = await readTensors(ctx, [r.methods[0].attribution!]);
    r.dispose();
    // Rebuild the 50 noisy copies on the CPU: z from the same counter-based hash, σ = 0.15·range per image.
    const n = x.shape[0];
    const per = data.length / n;
    const mean = new Float64Array(data.length);
    for (let s = 0; s < 50; s++) {
      const z = randomRef(Array.from({ length: n }, (_, i) => i), per, { dist: 'normal', seed: 0x5eed + 1, stream: s, a: 0, b: 1 });
      const noisy = new Float32Array(data.length);
      for (let i = 0; i < n; i++) {
        const img = data.subarray(i * per, (i + 1) * per);
        const sigma = 0.15 * (Math.max(...img) - Math.min(...img));
        for (let e = 0; e < per; e++) noisy[i * per + e] = img[e] + sigma * z[i * per + e];
      }
      const xn = Tensor.fromData(ctx, noisy, x.shape);
      const g = await model.grad(xn, { target: { classes: m.targets } });
      const gv = await g.gradients.get('input')!.value.read();
      g.gradients.get('input')!.value.dispose();
      for (const t of g.outputs.values()) t.dispose();
      xn.dispose();
      gv.forEach((v, i) => (mean[i] += v / 50));
    }
    expect(maxRelDiff(got, mean)).toBeLessThan(1e-3);
    x.dispose();
    await model.dispose();
  });

  it('Smooth Grad-CAM++ is Grad-CAM++ on g, g², g³ averaged over 4 noisy copies (N(0, 0.3²) from the generator)', async () => {
    const { ctx, model, x, data } = await load('fashion-vgg');
    const targets = [4, 6, 9];
    const layer = 'features.9';
    const r = await explain(model, x, { methods: ['smoothgradcam++'], layers: [layer], targets });
    const [raw, weights] = await readTensors(ctx, [r.methods[0].raw, r.methods[0].weights!]);
    r.dispose();
    const clean = await model.run(x, { taps: [layer] });
    const A = await clean.taps.get(layer)!.value.read();
    const [n, K, h, w] = clean.taps.get(layer)!.value.shape;
    clean.taps.get(layer)!.value.dispose();
    for (const t of clean.outputs.values()) t.dispose();
    const per = data.length / n;
    const g1 = new Float64Array(A.length);
    const g2 = new Float64Array(A.length);
    const g3 = new Float64Array(A.length);
    for (let s = 0; s < 4; s++) {
      const z = randomRef([0, 1, 2], per, { dist: 'normal', seed: 0x5eed, stream: s, a: 0, b: 0.3 });
      const xn = Tensor.fromData(ctx, Float32Array.from(data, (v, i) => v + z[i]), x.shape);
      const g = await model.grad(xn, { wrt: [layer], target: { classes: targets } });
      const gv = await g.gradients.get(layer)!.value.read();
      g.gradients.get(layer)!.value.dispose();
      for (const t of g.outputs.values()) t.dispose();
      xn.dispose();
      gv.forEach((v, i) => {
        g1[i] += v / 4;
        g2[i] += (v * v) / 4;
        g3[i] += (v * v * v) / 4;
      });
    }
    const hw = h * w;
    const wantW = new Float64Array(n * K);
    const wantRaw = new Float64Array(n * hw);
    for (let i = 0; i < n; i++)
      for (let k = 0; k < K; k++) {
        const base = (i * K + k) * hw;
        let sumA = 0;
        for (let p = 0; p < hw; p++) sumA += A[base + p];
        let wk = 0;
        for (let p = 0; p < hw; p++) wk += Math.max(g1[base + p], 0) * (g2[base + p] / (2 * g2[base + p] + sumA * g3[base + p] + 1e-6));
        wantW[i * K + k] = wk;
        for (let p = 0; p < hw; p++) wantRaw[i * hw + p] += wk * A[base + p];
      }
    expect(maxRelDiff(weights, wantW)).toBeLessThan(1e-3);
    expect(maxRelDiff(raw, wantRaw)).toBeLessThan(1e-3);
    x.dispose();
    await model.dispose();
  });
});
