import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/cam/explain.js';
import { type DapBox, type DapImages, type DapOptions, makeDapImages } from '../src/metrics/dap.js';
import { Model } from '../src/model.js';
import { GpuContext } from '../src/runtime/device.js';
import { InputError, ShapeError } from '../src/runtime/errors.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { FIXTURES, npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';

/**
 * Pixab-CAM's DAP1 / DAP2 images (src/metrics/dap.ts) on both Fashion models: the layout
 * (seeded, disjoint boxes of 15–20 % of the side, the image exactly the normalized zero image
 * outside them, patch pixels on the FGSM grid), the attack's steps against a float64
 * recomputation from gradients taken through another path (Model.grad with host-side target
 * weights), the attack's measured success, typed errors, and Grad-CAM pointing into the patch
 * more often than chance.
 */

const REPO = join(import.meta.dirname, '..');
const H = 56;
const W = 56;
const IMAGE = [1, H, W] as const;

interface Loaded {
  model: Model;
  mean: number;
  std: number;
  pixels: { mean: number[]; std: number[] };
}

const loaded = new Map<string, Promise<Loaded>>();
function load(name: string): Promise<Loaded> {
  let l = loaded.get(name);
  if (!l) {
    l = (async () => {
      const ctx = await gpu();
      const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, `models/${name}.onnx`))));
      const card = JSON.parse(readFileSync(join(REPO, `models/${name}.json`), 'utf8')) as { preprocessing: { mean: number; std: number } };
      const { mean, std } = card.preprocessing;
      return { model, mean, std, pixels: { mean: [mean], std: [std] } };
    })();
    loaded.set(name, l);
  }
  return l;
}

function inBox(b: DapBox, x: number, y: number): boolean {
  return x >= b[0] && x < b[2] && y >= b[1] && y < b[3];
}

/** The union of an image's patch boxes as a 0/1 mask [H·W]. */
function unionOf(boxes: readonly DapBox[]): Uint8Array {
  const m = new Uint8Array(H * W);
  for (const b of boxes) for (let y = b[1]; y < b[3]; y++) for (let x = b[0]; x < b[2]; x++) m[y * W + x] = 1;
  return m;
}

async function make(l: Loaded, o: Omit<DapOptions, 'image' | 'pixels'>): Promise<{ r: DapImages; x: Float32Array }> {
  const r = await makeDapImages(l.model, { image: IMAGE, pixels: l.pixels, ...o });
  const [x] = await readTensors(l.model.ctx, [r.x]);
  return { r, x };
}

/**
 * The layout every DAP image must have; returns the fraction of patch pixels the attack
 * changed (pixels whose gradient sign never pointed up stay at 0).
 */
function checkLayout(l: Loaded, r: DapImages, x: Float32Array, count: number, step: number): number {
  // The normalized zero image in float32, from the card's mean and std as float32.
  const outside = Math.fround((0 - Math.fround(l.mean)) / Math.fround(l.std));
  let changed = 0;
  let patchPixels = 0;
  expect(r.patches).toHaveLength(count);
  r.patches.forEach((list, i) => {
    expect(list.length).toBeGreaterThanOrEqual(1);
    expect(list.length).toBeLessThanOrEqual(9);
    list.forEach(({ box: [x0, y0, x1, y1] }, j) => {
      // round(0.15·56) = 8 … round(0.20·56) = 11 pixels, inside the image.
      for (const side of [x1 - x0, y1 - y0]) expect(side >= 8 && side <= 11, `image ${i} patch ${j} side ${side}`).toBe(true);
      expect(x0 >= 0 && y0 >= 0 && x1 <= W && y1 <= H).toBe(true);
      for (let k = 0; k < j; k++) {
        const b = list[k].box;
        expect(x0 < b[2] && b[0] < x1 && y0 < b[3] && b[1] < y1, `image ${i}: patches ${k} and ${j} overlap`).toBe(false);
      }
    });
    const union = unionOf(list.map((p) => p.box));
    for (let q = 0; q < H * W; q++) {
      const v = x[i * H * W + q];
      if (!union[q]) {
        // Bit-identical outside the patches: the normalized zero image.
        if (v !== outside) throw new Error(`image ${i} pixel ${q} outside the patches is ${v}, not the zero image's ${outside}`);
        continue;
      }
      patchPixels++;
      const p = v * l.std + l.mean;
      expect(p).toBeGreaterThan(-1e-5);
      expect(p).toBeLessThan(1 + 1e-5);
      // From 0 by steps of ±α clipped to [0, 1]: a multiple of α (1 = 20·0.05 included).
      expect(Math.abs(p / step - Math.round(p / step))).toBeLessThan(1e-3);
      if (v !== outside) changed++;
    }
    for (const { box } of list) {
      let inside = 0;
      for (let y = box[1]; y < box[3]; y++) for (let xx = box[0]; xx < box[2]; xx++) if (x[i * H * W + y * W + xx] !== outside) inside++;
      expect(inside, `image ${i}: no pixel of patch ${JSON.stringify(box)} changed`).toBeGreaterThan(0);
    }
  });
  return changed / patchPixels;
}

describe.each(['fashion-vgg', 'fashion-resnet'])('DAP images on %s', (name) => {
  it('DAP1: seeded layout, exact zero image outside the patches, and the attack reaches the target', async () => {
    const l = await load(name);
    const { r, x } = await make(l, { count: 16, variant: 'dap1', seed: 11 });
    const changed = checkLayout(l, r, x, 16, 0.05);
    // DAP1: one target per image, every patch is ground truth.
    r.patches.forEach((list, i) => {
      expect(list.every((p) => p.target === r.targets[i])).toBe(true);
      expect(r.boxes[i]).toEqual(list.map((p) => p.box));
    });
    console.log(`${name} DAP1: success ${r.successRate.toFixed(3)}, composite predicted = target ${(r.predicted.filter((p, i) => p === r.targets[i]).length / 16).toFixed(3)}, patch pixels changed ${changed.toFixed(3)}`);
    // Measured (16 images, seed 11): fashion-vgg 1.000, fashion-resnet 0.813.
    expect(r.successRate).toBeGreaterThanOrEqual(0.75);
    // Without a background the image is the attacked zero image: its class is the attack's outcome.
    r.predicted.forEach((p, i) => expect(p === r.targets[i]).toBe(r.success[i]));
    r.x.dispose();
  });

  it('DAP2: one distinct class per patch, the first patch is the target; success measured', async () => {
    const l = await load(name);
    const { r, x } = await make(l, { count: 8, variant: 'dap2', seed: 12 });
    checkLayout(l, r, x, 8, 0.05);
    r.patches.forEach((list, i) => {
      expect(new Set(list.map((p) => p.target)).size).toBe(list.length);
      expect(r.targets[i]).toBe(list[0].target);
      expect(r.boxes[i]).toEqual([list[0].box]);
      expect(r.success[i]).toBe(list.every((p) => p.success));
    });
    const all = r.patches.flat();
    const patchRate = all.filter((p) => p.success).length / all.length;
    console.log(`${name} DAP2: patch attacks ${patchRate.toFixed(3)} of ${all.length}, images ${r.successRate.toFixed(3)}`);
    // A lone patch of 8–11 px on a 56² zero image is hard to make into most Fashion classes
    // (the objects fill the image): measured 0.567 (vgg) / 0.333 (resnet) of the 30 patch
    // attacks at the paper's 15–20 %; the larger patches below succeed. The floor says that
    // the attack works at all.
    expect(patchRate).toBeGreaterThanOrEqual(0.2);
    r.x.dispose();
  });

  it('DAP2 with larger patches (40–45 % of the side, 1–4 per image): the attacks succeed', async () => {
    const l = await load(name);
    const r = await makeDapImages(l.model, { image: IMAGE, pixels: l.pixels, count: 6, variant: 'dap2', seed: 13, patches: [1, 4], sideFraction: [0.4, 0.45] });
    const all = r.patches.flat();
    const patchRate = all.filter((p) => p.success).length / all.length;
    console.log(`${name} DAP2 40–45 %: patch attacks ${patchRate.toFixed(3)} of ${all.length}, images ${r.successRate.toFixed(3)}`);
    expect(patchRate).toBeGreaterThanOrEqual(0.9);
    r.x.dispose();
  });

  it('two FGSM steps equal a float64 recomputation from Model.grad (host-side target weights)', async () => {
    const l = await load(name);
    const ctx = l.model.ctx;
    const step = 0.3;
    const epsilon = 0.5;
    const base = { count: 2, variant: 'dap1' as const, seed: 21, step, epsilon, patches: [2, 3] as const };
    const one = await make(l, { ...base, iterations: 1 });
    const two = await make(l, { ...base, iterations: 2 });
    expect(two.r.patches.map((p) => p.map((q) => q.box))).toEqual(one.r.patches.map((p) => p.map((q) => q.box)));
    const classes = 10;
    const N = 2;
    const zeroImage = new Float32Array(N * H * W).fill(Math.fround((0 - Math.fround(l.mean)) / Math.fround(l.std)));
    let flips = 0;
    let maxDiff = 0;
    // Step k takes p_k (its input x_k as the model sees it) to p_{k+1}: from the zero image, then from iteration 1's image.
    for (const [from, fromPixels, to] of [[zeroImage, new Float64Array(N * H * W), one.x], [one.x, Float64Array.from(one.x, (v) => v * l.std + l.mean), two.x]] as const) {
      const xt = Tensor.fromData(ctx, Float32Array.from(from), [N, ...IMAGE]);
      const run = await l.model.run(xt);
      const [logits] = await readTensors(ctx, [run.outputs.get(l.model.outputName)!]);
      run.outputs.forEach((t) => t.dispose());
      // ∇ log softmax_c = Jᵀ(onehot_c − softmax), the softmax in float64.
      const weights = new Float32Array(N * classes);
      for (let i = 0; i < N; i++) {
        const row = Array.from(logits.subarray(i * classes, (i + 1) * classes));
        const top = Math.max(...row);
        const e = row.map((v) => Math.exp(v - top));
        const s = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < classes; c++) weights[i * classes + c] = (c === one.r.targets[i] ? 1 : 0) - e[c] / s;
      }
      const wt = Tensor.fromData(ctx, weights, [N, classes]);
      const g = await l.model.grad(xt, { target: { weights: wt } });
      const [grad] = await readTensors(ctx, [g.gradients.get('input')!.value]);
      g.outputs.forEach((t) => t.dispose());
      g.gradients.forEach((t) => t.value.dispose());
      xt.dispose();
      wt.dispose();
      const scale = grad.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
      for (let i = 0; i < N; i++) {
        const union = unionOf(one.r.boxes[i]);
        for (let q = 0; q < H * W; q++) {
          const k = i * H * W + q;
          const sign = Math.sign(grad[k]);
          const want = union[q] ? Math.min(Math.max(fromPixels[k] + step * sign, 0), epsilon) : 0;
          const got = to[k] * l.std + l.mean;
          const d = Math.abs(got - want);
          // A sign may differ where the gradient is at round-off level (the two programs sum in other orders).
          if (d > 1e-5 && Math.abs(grad[k]) < 1e-4 * scale) flips++;
          else maxDiff = Math.max(maxDiff, d);
        }
      }
    }
    console.log(`${name} FGSM steps vs float64: max |Δp| ${maxDiff.toExponential(2)}, sign flips at round-off gradients ${flips}`);
    expect(maxDiff).toBeLessThan(1e-5);
    expect(flips).toBeLessThanOrEqual(4);
    one.r.x.dispose();
    two.r.x.dispose();
  });

  it('Grad-CAM points into the patch more often than chance', async () => {
    const l = await load(name);
    // The 14×14 block before the last pooling: the card's 7×7 layer is measured as well (below).
    const layer = name === 'fashion-vgg' ? 'features.5' : 'layer1';
    const count = 16;
    // DAP2 at the paper's 15–20 % mostly fails to make its patches (see above), and a map of a
    // class the image does not show is no test of the map: DAP2 runs with 30–35 % patches here.
    const settings = [
      { variant: 'dap1' as const },
      { variant: 'dap2' as const, patches: [2, 4] as const, sideFraction: [0.3, 0.35] as const },
    ];
    for (const setting of settings) {
      const { variant } = setting;
      const r = await makeDapImages(l.model, { image: IMAGE, pixels: l.pixels, count, seed: 31, ...setting });
      const rates: Record<string, number> = {};
      for (const layers of [[layer], ['auto']]) {
        const e = await explain(l.model, r.x, { methods: ['gradcam'], targets: r.targets, layers });
        const [map] = await readTensors(l.model.ctx, [e.methods[0].map]);
        e.dispose();
        let hits = 0;
        for (let i = 0; i < count; i++) {
          let best = 0;
          for (let q = 1; q < H * W; q++) if (map[i * H * W + q] > map[i * H * W + best]) best = q;
          if (r.boxes[i].some((b) => inBox(b, best % W, Math.floor(best / W)))) hits++;
        }
        rates[layers[0]] = hits / count;
      }
      // Chance: a uniformly random point lands in the ground truth as often as it covers the image.
      const chance = r.boxes.reduce((a, boxes) => a + unionOf(boxes).reduce((s, v) => s + v, 0) / (H * W), 0) / count;
      console.log(`${name} ${variant}: Grad-CAM pointing game ${rates[layer].toFixed(3)} at ${layer} (14×14), ${rates.auto.toFixed(3)} at the 7×7 layer; chance ${chance.toFixed(3)}; attack success ${r.successRate.toFixed(3)}`);
      expect(rates[layer]).toBeGreaterThan(2 * chance);
      r.x.dispose();
    }
  });
});

describe('DAP1 on natural backgrounds', () => {
  it('outside the patches is the background bit for bit; inside, the same patches as on the zero image', async () => {
    const l = await load('fashion-vgg');
    const ctx = l.model.ctx;
    const input = npy(join(FIXTURES, 'cam/inputs/fashion-coat-shirt-sneaker-56x56.npy'));
    const bg = Float32Array.from(input.data);
    const backgrounds = Tensor.fromData(ctx, bg, input.shape);
    const o = { count: 5, variant: 'dap1' as const, seed: 41 };
    const onZero = await make(l, o);
    const onBg = await make(l, { ...o, backgrounds });
    backgrounds.dispose();
    expect(onBg.r.patches).toEqual(onZero.r.patches);
    for (let i = 0; i < 5; i++) {
      const union = unionOf(onBg.r.boxes[i]);
      const b = (i % 3) * H * W;
      for (let q = 0; q < H * W; q++) {
        const got = onBg.x[i * H * W + q];
        const want = union[q] ? onZero.x[i * H * W + q] : bg[b + q];
        if (got !== want) throw new Error(`image ${i} pixel ${q}: ${got}, want ${want} (${union[q] ? 'patch' : 'background'})`);
      }
    }
    console.log(`fashion-vgg DAP1 on backgrounds: composite predicted = target ${onBg.r.predicted.filter((p, i) => p === onBg.r.targets[i]).length}/5 (on the zero image ${onZero.r.predicted.filter((p, i) => p === onZero.r.targets[i]).length}/5)`);
    onZero.r.x.dispose();
    onBg.r.x.dispose();
  });
});

describe('DAP determinism and bad options', () => {
  it('the same seed gives bit-identical images; another seed another layout', async () => {
    const l = await load('fashion-vgg');
    const o = { count: 4, variant: 'dap2' as const, seed: 51, iterations: 4 };
    const a = await make(l, o);
    const b = await make(l, o);
    const c = await make(l, { ...o, seed: 52 });
    expect(b.r.patches).toEqual(a.r.patches);
    expect(Buffer.from(b.x.buffer).equals(Buffer.from(a.x.buffer))).toBe(true);
    expect(c.r.patches.map((p) => p.map((q) => q.box))).not.toEqual(a.r.patches.map((p) => p.map((q) => q.box)));
    for (const d of [a, b, c]) d.r.x.dispose();
  });

  it('a device with a small binding limit splits the passes and the composition, with the same images', async () => {
    const l = await load('fashion-vgg');
    // 1 MiB: the composition reads 20 rows (of 12.5 KB) at a time. maxChunk 8 because the
    // runner sizes chunks by the largest activation, and fashion-vgg's Winograd scratch is 2×
    // that per image (a LimitError at the runner's own chunk on this cap).
    const capped = await GpuContext.create({ activationBindingLimit: 1 << 20 });
    const small = Model.fromBytes(capped, new Uint8Array(readFileSync(join(REPO, 'models/fashion-vgg.onnx'))));
    const o = { count: 10, variant: 'dap2' as const, seed: 61, iterations: 3, image: IMAGE, pixels: l.pixels, maxChunk: 8 };
    const a = await makeDapImages(l.model, o);
    const b = await makeDapImages(small, o);
    expect(b.patches.flat().length).toBeGreaterThan(20);
    expect(b.patches).toEqual(a.patches);
    expect(b.predicted).toEqual(a.predicted);
    const [xa] = await readTensors(l.model.ctx, [a.x]);
    const [xb] = await readTensors(capped, [b.x]);
    let diff = 0;
    for (let i = 0; i < xa.length; i++) diff = Math.max(diff, Math.abs(xa[i] - xb[i]));
    console.log(`fashion-vgg DAP2 on a 1 MiB binding limit: max |Δx| ${diff} against the default device`);
    expect(diff).toBeLessThan(1e-6);
    a.x.dispose();
    b.x.dispose();
    await small.dispose();
  });

  it('bad options are typed errors that say what is wrong', async () => {
    const l = await load('fashion-vgg');
    const base: DapOptions = { count: 2, variant: 'dap1', seed: 1, image: IMAGE, pixels: l.pixels };
    const bad: [Partial<DapOptions>, typeof InputError | typeof ShapeError, RegExp][] = [
      [{ count: 0 }, InputError, /image count must be a whole number ≥ 1, got 0/],
      [{ sideFraction: [0, 0.2] }, InputError, /sideFraction .* got \[0, 0.2\]/],
      [{ sideFraction: [0.15, 1] }, InputError, /sideFraction/],
      [{ sideFraction: [0.3, 0.2] }, InputError, /sideFraction/],
      [{ patches: [1, 30] }, InputError, /30 patches of up to 11×11 px do not surely fit side by side in a 56×56 image \(at most 25\)/],
      [{ patches: [0, 3] }, InputError, /fewest patches/],
      [{ variant: 'dap2', patches: [1, 11], sideFraction: [0.1, 0.1] }, InputError, /11 patches .* 10 classes/],
      [{ targets: [1] }, InputError, /1 targets for 2 images/],
      [{ targets: [1, 10] }, InputError, /target 10 of image 1 is not a class in \[0, 10\)/],
      [{ step: 0 }, InputError, /step must be a positive number/],
      [{ epsilon: -1 }, InputError, /epsilon must be a positive number/],
      [{ iterations: 0 }, InputError, /iteration count/],
      [{ pixels: { mean: [0.5], std: [0] } }, InputError, /positive standard deviations/],
      [{ image: [1, 56] as unknown as DapOptions['image'] }, ShapeError, /\[C, H, W\]/],
    ];
    for (const [patch, type, message] of bad) {
      const err = await makeDapImages(l.model, { ...base, ...patch }).then(() => null, (e: unknown) => e);
      expect(err, JSON.stringify(patch)).toBeInstanceOf(type);
      expect((err as Error).message, JSON.stringify(patch)).toMatch(message);
    }
    const ctx = l.model.ctx;
    const wrong = Tensor.fromData(ctx, new Float32Array(2 * 28 * 28), [2, 1, 28, 28]);
    await expect(makeDapImages(l.model, { ...base, backgrounds: wrong })).rejects.toThrow(/backgrounds.*\[B, 1, 56, 56\]/);
    await expect(makeDapImages(l.model, { ...base, variant: 'dap2', backgrounds: wrong })).rejects.toThrow(/backgrounds apply to DAP1/);
    wrong.dispose();
  });
});
