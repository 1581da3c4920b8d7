import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradCAM } from '../src/cam/api.js';
import { explain } from '../src/cam/explain.js';
import { METHODS } from '../src/cam/methods.js';
import { Model } from '../src/model.js';
import type { GpuContext } from '../src/runtime/device.js';
import { InputError, ShapeError } from '../src/runtime/errors.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { watchReadbacks } from './helpers/readbacks.js';

/**
 * explain() as a library: its readbacks, targets (argmax, per image, topK), CAM's head
 * rule, seeded methods, the pytorch-grad-cam-shaped classes and the bad-input errors, on
 * our two Fashion-MNIST models and real test images.
 */
const REPO = join(import.meta.dirname, '..');
const INPUT = npy(join(REPO, 'test/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy'));

let ctx: GpuContext;
let vgg: Model;
let resnet: Model;
let x: Tensor;

beforeAll(async () => {
  ctx = await gpu();
  vgg = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-vgg.onnx'))));
  resnet = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
  x = Tensor.fromData(ctx, INPUT.data, INPUT.shape);
});

afterAll(async () => {
  x.dispose();
  await vgg.dispose();
  await resnet.dispose();
});

/** Counts mapAsync calls on every GPU buffer while `body` runs. */
async function countReadbacks<T>(body: () => Promise<T>): Promise<{ value: T; count: number }> {
  const watch = watchReadbacks(ctx);
  try {
    const value = await body();
    return { value, count: watch.count() };
  } finally {
    watch.restore();
  }
}

describe('explain()', () => {
  it('reads nothing back until the caller reads, then once for everything', async () => {
    const { value: r, count: during } = await countReadbacks(() => explain(vgg, x, { methods: ['all'] }));
    try {
      expect(during).toBe(0);
      const tensors = r.methods.flatMap((m) => [m.map, m.raw, ...(m.weights ? [m.weights] : [])]);
      const { count: reading } = await countReadbacks(() => readTensors(ctx, [...tensors, r.targetClass, r.targetScore]));
      expect(reading).toBe(1);
      expect(r.methods.map((m) => m.method).sort()).toEqual(METHODS.filter((m) => m.name !== 'cam' && !m.sweep).map((m) => m.name).sort());
    } finally {
      r.dispose();
    }
  });

  it('CAM on a GAP → linear head equals Grad-CAM (the weights differ by 1/(h·w)), and refuses other heads', async () => {
    const r = await explain(resnet, x, { methods: ['cam', 'gradcam'], layers: ['layer2'], targets: [4, 6, 9] });
    try {
      const [camMap, gcMap, camW, gcW] = await readTensors(ctx, [r.methods[0].map, r.methods[1].map, r.methods[0].weights!, r.methods[1].weights!]);
      const hw = r.layers[0].shape[2] * r.layers[0].shape[3];
      let mapErr = 0;
      camMap.forEach((v, i) => (mapErr = Math.max(mapErr, Math.abs(v - gcMap[i]))));
      expect(mapErr).toBeLessThan(1e-5);
      let wErr = 0;
      let wMax = 0;
      camW.forEach((v, i) => {
        wErr = Math.max(wErr, Math.abs(v - gcW[i] * hw));
        wMax = Math.max(wMax, Math.abs(v));
      });
      expect(wErr / wMax).toBeLessThan(1e-5);
    } finally {
      r.dispose();
    }
    await expect(explain(vgg, x, { methods: ['cam'] })).rejects.toThrow(/CAM needs .* GlobalAveragePool/);
  });

  it('targets: argmax on the GPU, one class per image, topK rows ordered by score', async () => {
    const logits = await vgg.run(x);
    const l = await logits.outputs.values().next().value!.read();
    for (const t of logits.outputs.values()) t.dispose();
    const C = l.length / 3;
    const order = (i: number) => Array.from({ length: C }, (_, c) => c).sort((a, b) => l[i * C + b] - l[i * C + a]);
    const arg = await explain(vgg, x, { methods: ['gradcam'] });
    expect((await arg.rows()).map((r) => r.target)).toEqual([0, 1, 2].map((i) => order(i)[0]));
    arg.dispose();
    const top = await explain(vgg, x, { methods: ['gradcam'], targets: { topK: 3 } });
    const rows = await top.rows();
    expect(rows.map((r) => [r.image, r.target])).toEqual([0, 1, 2].flatMap((i) => order(i).slice(0, 3).map((c) => [i, c])));
    rows.forEach((r) => expect(r.score).toBeCloseTo(l[r.image * C + r.target], 4));
    expect(top.methods[0].map.shape).toEqual([9, 56, 56]);
    top.dispose();
  });

  it('seeded methods give bit-identical maps for the same seed and image, whatever the batch', async () => {
    const a = await explain(vgg, x, { methods: ['randomcam'], seed: 7 });
    const b = await explain(vgg, x, { methods: ['randomcam'], seed: 7, batchSize: 1 });
    const c = await explain(vgg, x, { methods: ['randomcam'], seed: 8 });
    const [wa, wb, wc] = await readTensors(ctx, [a.methods[0].weights!, b.methods[0].weights!, c.methods[0].weights!]);
    expect(Array.from(wb)).toEqual(Array.from(wa));
    expect(Array.from(wc)).not.toEqual(Array.from(wa));
    expect(Math.min(...wa)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...wa)).toBeLessThanOrEqual(1);
    for (const r of [a, b, c]) r.dispose();
  });

  it('the pytorch-grad-cam-shaped class returns the same maps as explain()', async () => {
    const cam = new GradCAM(vgg, { layers: ['features.9'] });
    const r = await cam.explain(x, { targets: [4, 6, 9] });
    const e = await explain(vgg, x, { methods: ['gradcam'], layers: ['features.9'], targets: [4, 6, 9] });
    const [m1, m2] = await readTensors(ctx, [r.map, e.methods[0].map]);
    expect(Array.from(m1)).toEqual(Array.from(m2));
    r.dispose();
    e.dispose();
  });

  it('bad input: typed errors naming what is wrong', async () => {
    await expect(explain(vgg, x, { methods: ['gradcamm'] })).rejects.toThrow(/unknown method 'gradcamm'; known methods: .*gradcam/);
    await expect(explain(vgg, x, { methods: ['gradcam'], targets: [1, 2] })).rejects.toThrow(InputError);
    await expect(explain(vgg, x, { methods: ['gradcam'], targets: [1, 2] })).rejects.toThrow(/2 target classes for a batch of 3/);
    await expect(explain(vgg, x, { methods: ['gradcam'], targets: 10 })).rejects.toThrow(/class 10 of image 0 is not in \[0, 10\)/);
    await expect(explain(vgg, x, { methods: ['gradcam'], layers: ['classifier.0'] })).rejects.toThrow(ShapeError);
    await expect(explain(vgg, x, { methods: ['gradcam'], layers: ['classifier.0'] })).rejects.toThrow(/Spatial layers: .*features/);
    await expect(explain(vgg, x, { methods: ['gradcam'], layers: ['no.such.layer'] })).rejects.toThrow(InputError);
  });

  it('a weight vector per image is a target (one-hot weights give the class list’s maps); Finer-CAM wraps another method', async () => {
    const onehot = new Float32Array(3 * 10);
    [4, 6, 9].forEach((c, i) => (onehot[i * 10 + c] = 1));
    const w = Tensor.fromData(ctx, onehot, [3, 10]);
    const a = await explain(vgg, x, { methods: ['gradcam'], targets: { weights: w } });
    const b = await explain(vgg, x, { methods: ['gradcam'], targets: [4, 6, 9] });
    const [ma, mb] = await readTensors(ctx, [a.methods[0].map, b.methods[0].map]);
    expect(Array.from(ma)).toEqual(Array.from(mb));
    expect((await a.rows()).map((r) => r.target)).toEqual([4, 6, 9]);
    a.dispose();
    b.dispose();
    const flat = Tensor.fromData(ctx, onehot, [30]);
    await expect(explain(vgg, x, { methods: ['gradcam'], targets: { weights: flat } })).rejects.toThrow(/one weight vector per image/);
    flat.dispose();
    w.dispose();
    const f = await explain(vgg, x, { methods: ['finercam'], finerBase: 'hirescam', targets: [4, 6, 9] });
    const g = await explain(vgg, x, { methods: ['finercam'], targets: [4, 6, 9] });
    const [mf, mg] = await readTensors(ctx, [f.methods[0].map, g.methods[0].map]);
    expect(f.methods[0].weights).toBeNull();
    expect(Array.from(mf)).not.toEqual(Array.from(mg));
    f.dispose();
    g.dispose();
    await expect(explain(vgg, x, { methods: ['finercam'], finerBase: 'eigencam' })).rejects.toThrow(/Finer-CAM wraps a gradient CAM/);
  });
});
