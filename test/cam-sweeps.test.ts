import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/cam/explain.js';
import { Model } from '../src/model.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { watchReadbacks } from './helpers/readbacks.js';
import { riseMasksRef } from '../src/ops/rise.js';
import { bilinearRef } from './reference/cpu.js';
import { maxAbsDiff } from './helpers/compare.js';

/**
 * Score sweeps (Score-CAM, IS-CAM) against the same computation done the plain way: masks
 * u(up(A_k)) built in float64 on the CPU from the clean pass's activations, the masked
 * images scored by ordinary batched forward passes, softmax over the channels in float64.
 * This checks the sweep machinery (rows gathered on the GPU, masks, chunked passes, score
 * gathering, the weighting program) independently of how it is built.
 */
const REPO = join(import.meta.dirname, '..');
const INPUT = npy(join(REPO, 'test/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy'));
const TARGETS = [4, 6];
const LAYER = 'layer2';

/** Masking raw pixels: x = (p − mean)/std, masked p ⊙ M, normalized again. */
const RAW = { mean: [0.3], std: [0.4] };

async function plainScores(model: Model, x: Float32Array, xs: number[], a: Float32Array, as: number[], steps: number[], alignCorners: boolean, raw = false): Promise<Float64Array> {
  const ctx = model.ctx;
  const [n, K, h, w] = as;
  const [, C, H, W] = xs;
  const out = new Float64Array(n * K);
  for (let i = 0; i < n; i++) {
    const batch = new Float32Array(K * steps.length * C * H * W);
    for (let k = 0; k < K; k++) {
      const plane = a.subarray((i * K + k) * h * w, (i * K + k + 1) * h * w);
      const big = bilinearRef(plane, [1, 1, h, w], H, W, { alignCorners }).data;
      const lo = Math.min(...big);
      const hi = Math.max(...big);
      const up = big.map((v) => (v - lo) / (hi - lo + 1e-8));
      steps.forEach((s, j) => {
        const base = (k * steps.length + j) * C * H * W;
        for (let c = 0; c < C; c++) {
          for (let p = 0; p < H * W; p++) {
            const v = x[(i * C + c) * H * W + p];
            batch[base + c * H * W + p] = raw ? ((v * RAW.std[0] + RAW.mean[0]) * up[p] * s - RAW.mean[0]) / RAW.std[0] : v * up[p] * s;
          }
        }
      });
    }
    const t = Tensor.fromData(ctx, batch, [K * steps.length, C, H, W]);
    const r = await model.run(t);
    const logits = r.outputs.values().next().value!;
    const l = await logits.read();
    for (const v of r.outputs.values()) v.dispose();
    t.dispose();
    const classes = l.length / (K * steps.length);
    for (let k = 0; k < K; k++) for (let j = 0; j < steps.length; j++) out[i * K + k] += l[(k * steps.length + j) * classes + TARGETS[i]];
  }
  return out;
}

function softmaxRows(s: Float64Array, K: number): Float64Array {
  const out = new Float64Array(s.length);
  for (let r = 0; r < s.length / K; r++) {
    const row = s.subarray(r * K, (r + 1) * K);
    const m = Math.max(...row);
    let z = 0;
    for (let k = 0; k < K; k++) z += (out[r * K + k] = Math.exp(row[k] - m));
    for (let k = 0; k < K; k++) out[r * K + k] /= z;
  }
  return out;
}

describe('score sweeps', () => {
  it.each([
    ['scorecam', false, [1], false],
    ['scorecam', true, [1], false],
    ['iscam', false, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1], false],
    ['scorecam', false, [1], true],
  ] as const)('%s (alignCorners %s) equals masking and scoring done the plain way (raw pixels: %s)', async (method, alignCorners, steps, rawSpace) => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
    const per = INPUT.data.length / INPUT.shape[0];
    const xs = [2, ...INPUT.shape.slice(1)];
    const xd = INPUT.data.slice(0, 2 * per);
    const x = Tensor.fromData(ctx, xd, xs);
    const clean = await model.run(x, { taps: [LAYER] });
    const tap = clean.taps.get(LAYER)!.value;
    const a = await tap.read();
    const as = [...tap.shape];
    tap.dispose();
    for (const t of clean.outputs.values()) t.dispose();
    const r = await explain(model, x, { methods: [method], layers: [LAYER], targets: TARGETS, alignCorners, batchSize: 37, ...(rawSpace ? { maskSpace: 'raw' as const, pixels: RAW } : {}) });
    const [weights, raw] = await readTensors(ctx, [r.methods[0].weights!, r.methods[0].raw]);
    r.dispose();
    const K = as[1];
    const want = softmaxRows(await plainScores(model, xd, xs, a, as, [...steps], alignCorners, rawSpace), K);
    let err = 0;
    weights.forEach((v, i) => (err = Math.max(err, Math.abs(v - want[i]))));
    expect(err / Math.max(...want)).toBeLessThan(1e-4);
    const hw = as[2] * as[3];
    const wantRaw = new Float64Array(2 * hw);
    for (let i = 0; i < 2; i++) for (let k = 0; k < K; k++) for (let p = 0; p < hw; p++) wantRaw[i * hw + p] += want[i * K + k] * a[(i * K + k) * hw + p];
    let rawErr = 0;
    raw.forEach((v, i) => (rawErr = Math.max(rawErr, Math.abs(v - wantRaw[i]))));
    expect(rawErr / Math.max(...wantRaw.map(Math.abs))).toBeLessThan(1e-4);
    x.dispose();
    await model.dispose();
  });

  it('Ablation-CAM on a GAP → linear head: y_c − y_c^(k) = W_ck · mean(A_k) exactly, so w_k·y_c equals CAM’s weight times the channel mean', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
    const x = Tensor.fromData(ctx, INPUT.data, INPUT.shape);
    const targets = [4, 6, 9];
    const r = await explain(model, x, { methods: ['ablationcam', 'cam'], layers: [LAYER], targets, batchSize: 20 });
    const [ab, cam] = await readTensors(ctx, [r.methods[0].weights!, r.methods[1].weights!]);
    const rows = await r.rows();
    r.dispose();
    const clean = await model.run(x, { taps: [LAYER] });
    const tap = clean.taps.get(LAYER)!.value;
    const a = await tap.read();
    const [n, K, h, w] = tap.shape;
    tap.dispose();
    for (const t of clean.outputs.values()) t.dispose();
    let err = 0;
    let big = 0;
    for (let i = 0; i < n; i++)
      for (let k = 0; k < K; k++) {
        let mean = 0;
        for (let p = 0; p < h * w; p++) mean += a[(i * K + k) * h * w + p] / (h * w);
        const want = cam[i * K + k] * mean;
        err = Math.max(err, Math.abs(ab[i * K + k] * rows[i].score - want));
        big = Math.max(big, Math.abs(want));
      }
    expect(err / big).toBeLessThan(1e-4);
    await expect(explain(model, x, { methods: ['ablationcam'], layers: ['layer2.0.conv1'] })).rejects.toThrow(/cannot run the network from 'layer2.0.conv1'.*computed before it/);
    x.dispose();
    await model.dispose();
  });

  it('RISE equals its definition computed on the CPU with the same seeded masks', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-vgg.onnx'))));
    const per = INPUT.data.length / INPUT.shape[0];
    const xs = [2, ...INPUT.shape.slice(1)];
    const xd = INPUT.data.slice(0, 2 * per);
    const x = Tensor.fromData(ctx, xd, xs);
    const N = 128;
    const r = await explain(model, x, { methods: ['rise'], targets: TARGETS, masks: N, seed: 3, batchSize: 128 });
    const [raw] = await readTensors(ctx, [r.methods[0].raw]);
    r.dispose();
    const [, , H, W] = xs;
    const masks = riseMasksRef(Array.from({ length: N }, (_, i) => i), { grid: 8, p1: 0.5, seed: 3, size: [H, W] });
    const want = new Float64Array(2 * H * W);
    for (let i = 0; i < 2; i++) {
      const batch = new Float32Array(N * per);
      for (let k = 0; k < N; k++) for (let e = 0; e < per; e++) batch[k * per + e] = xd[i * per + e] * masks[k * H * W + (e % (H * W))];
      const t = Tensor.fromData(ctx, batch, [N, ...xs.slice(1)]);
      const out = await model.run(t);
      const l = await out.outputs.values().next().value!.read();
      for (const v of out.outputs.values()) v.dispose();
      t.dispose();
      const C = l.length / N;
      for (let k = 0; k < N; k++) {
        const row = l.subarray(k * C, (k + 1) * C);
        const m = Math.max(...row);
        let z = 0;
        for (const v of row) z += Math.exp(v - m);
        const p = Math.exp(row[TARGETS[i]] - m) / z;
        for (let q = 0; q < H * W; q++) want[i * H * W + q] += (p * masks[k * H * W + q]) / (N * 0.5);
      }
    }
    let err = 0;
    raw.forEach((v, i) => (err = Math.max(err, Math.abs(v - want[i]))));
    expect(err / Math.max(...want)).toBeLessThan(1e-4);
    x.dispose();
    await model.dispose();
  });

  it('Occlusion equals the mean score drop of the patches covering each pixel, computed the plain way', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-vgg.onnx'))));
    const per = INPUT.data.length / INPUT.shape[0];
    const xs = [2, ...INPUT.shape.slice(1)];
    const xd = INPUT.data.slice(0, 2 * per);
    const x = Tensor.fromData(ctx, xd, xs);
    const [, , H, W] = xs;
    const patch = 16;
    const stride = 12;
    const r = await explain(model, x, { methods: ['occlusion'], targets: TARGETS, occlusion: { patch, stride, fill: 0.25 } });
    const [raw] = await readTensors(ctx, [r.methods[0].raw]);
    const rows = await r.rows();
    r.dispose();
    const pos: number[] = [];
    for (let p = 0; p + patch <= H; p += stride) pos.push(p);
    if (pos[pos.length - 1] + patch < H) pos.push(H - patch);
    const want = new Float64Array(2 * H * W);
    const count = new Float64Array(H * W);
    for (const y0 of pos) for (const x0 of pos) for (let y = y0; y < y0 + patch; y++) for (let q = x0; q < x0 + patch; q++) count[y * W + q]++;
    for (let i = 0; i < 2; i++) {
      const P = pos.length * pos.length;
      const batch = new Float32Array(P * per);
      pos.forEach((y0, a) => pos.forEach((x0, b) => {
        const k = a * pos.length + b;
        for (let e = 0; e < per; e++) {
          const y = Math.floor((e % (H * W)) / W);
          const q = e % W;
          batch[k * per + e] = y >= y0 && y < y0 + patch && q >= x0 && q < x0 + patch ? 0.25 : xd[i * per + e];
        }
      }));
      const t = Tensor.fromData(ctx, batch, [P, ...xs.slice(1)]);
      const out = await model.run(t);
      const l = await out.outputs.values().next().value!.read();
      for (const v of out.outputs.values()) v.dispose();
      t.dispose();
      const C = l.length / P;
      pos.forEach((y0, a) => pos.forEach((x0, b) => {
        const drop = rows[i].score - l[(a * pos.length + b) * C + TARGETS[i]];
        for (let y = y0; y < y0 + patch; y++) for (let q = x0; q < x0 + patch; q++) want[i * H * W + y * W + q] += drop / count[y * W + q];
      }));
    }
    let err = 0;
    raw.forEach((v, i) => (err = Math.max(err, Math.abs(v - want[i]))));
    expect(err / Math.max(...want.map(Math.abs))).toBeLessThan(1e-4);
    x.dispose();
    await model.dispose();
  });

  it.each(['fashion-vgg', 'fashion-resnet'])('%s: Score-CAM (align_corners) and Ablation-CAM match pytorch-grad-cam', async (name) => {
    const ctx = await gpu();
    const dir = join(REPO, 'test/fixtures/cam', name);
    const meta = JSON.parse(readFileSync(join(dir, 'sweeps.json'), 'utf8')) as { model: string; input: string; targets: number[]; layer: { module: string } };
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, meta.model))));
    const input = npy(join(REPO, meta.input));
    const x = Tensor.fromData(ctx, input.data, input.shape);
    const r = await explain(model, x, { methods: ['scorecam', 'ablationcam'], layers: [meta.layer.module], targets: meta.targets, alignCorners: true });
    const [sw, sm, aw, am] = await readTensors(ctx, [r.methods[0].weights!, r.methods[0].map, r.methods[1].weights!, r.methods[1].map]);
    r.dispose();
    const close = (got: Float32Array, file: string, rel: boolean) => {
      const want = npy(join(dir, file)).data;
      let err = 0;
      let big = 0;
      got.forEach((v, i) => {
        err = Math.max(err, Math.abs(v - want[i]));
        big = Math.max(big, Math.abs(want[i]));
      });
      return rel ? err / big : err;
    };
    expect(close(sw, 'ScoreCAM-weights.npy', true), 'Score-CAM weights').toBeLessThan(1e-4);
    expect(close(sm, 'ScoreCAM.npy', false), 'Score-CAM map').toBeLessThan(1e-4);
    expect(close(aw, 'AblationCAM-weights.npy', true), 'Ablation-CAM weights').toBeLessThan(1e-4);
    expect(close(am, 'AblationCAM.npy', false), 'Ablation-CAM map').toBeLessThan(1e-4);
    x.dispose();
    await model.dispose();
  });

  it('the same seed gives bit-identical RISE and SS-CAM maps twice; another seed does not', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
    const x = Tensor.fromData(ctx, INPUT.data.subarray(0, 2 * 56 * 56), [2, 1, 56, 56]);
    const maps = async (seed: number) => {
      const r = await explain(model, x, { methods: ['rise', 'sscam'], targets: TARGETS, masks: 48, seed });
      const out = await readTensors(ctx, r.methods.map((m) => m.map));
      r.dispose();
      return out;
    };
    const [a, b, c] = [await maps(3), await maps(3), await maps(4)];
    a.forEach((m, i) => {
      expect(Buffer.from(m.buffer).equals(Buffer.from(b[i].buffer)), `method ${i}: same seed`).toBe(true);
      expect(Buffer.from(m.buffer).equals(Buffer.from(c[i].buffer)), `method ${i}: other seed`).toBe(false);
    });
    x.dispose();
    await model.dispose();
  });

  it('progress: reported as the queue finishes, up to the total passes, without changing the maps', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
    const x = Tensor.fromData(ctx, INPUT.data.subarray(0, 2 * 56 * 56), [2, 1, 56, 56]);
    const methods = ['scorecam', 'polycam', 'rise'];
    const plain = await explain(model, x, { methods, targets: TARGETS, masks: 40, layers: [LAYER], polyLayers: ['layer1', 'layer2'] });
    const want = await readTensors(ctx, plain.methods.map((m) => m.map));
    plain.dispose();
    const seen: [number, number][] = [];
    const r = await explain(model, x, { methods, targets: TARGETS, masks: 40, layers: [LAYER], polyLayers: ['layer1', 'layer2'], onProgress: (done, total) => seen.push([done, total]) });
    const got = await readTensors(ctx, r.methods.map((m) => m.map));
    const K1 = 24;
    const K2 = r.layers[0].shape[1];
    r.dispose();
    await ctx.device.queue.onSubmittedWorkDone();
    // Score-CAM K₂ passes per image, PCAM± 2(K₁ + K₂), RISE 40 masks.
    const total = 2 * (K2 + 2 * (K1 + K2) + 40);
    expect(seen.length).toBeGreaterThan(20);
    expect(seen.every(([, t]) => t === total)).toBe(true);
    expect(seen.every(([d], i) => i === 0 || d >= seen[i - 1][0])).toBe(true);
    expect(seen.at(-1)![0]).toBe(total);
    // Groups change the passes' batch sizes, and kernels are chosen per batch size (Winograd
    // by tile count, GEMV for few rows): the same maps up to float round-off, not bit for bit.
    got.forEach((m, i) => expect(maxAbsDiff(m, want[i]), methods[i]).toBeLessThan(1e-5));
    x.dispose();
    await model.dispose();
  });

  it('every sweep method reads nothing back until asked, then once for all their maps', async () => {
    const ctx = await gpu();
    const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-resnet.onnx'))));
    const x = Tensor.fromData(ctx, INPUT.data.subarray(0, 2 * 56 * 56), [2, 1, 56, 56]);
    const watch = watchReadbacks(ctx);
    try {
      const r = await explain(model, x, {
        methods: ['sweeps'], targets: TARGETS, layers: [LAYER], masks: 16, iterations: 3, polyLayers: ['layer1', 'layer2'], occlusion: { patch: 28, stride: 28 }, pixels: { mean: [0.286041], std: [0.353024] },
      });
      expect(watch.count()).toBe(0);
      expect(r.methods.map((m) => m.method).sort()).toEqual(['ablationcam', 'iscam', 'occlusion', 'opticam', 'pixabcam', 'polycam', 'polycam+', 'polycam-', 'rise', 'scorecam', 'sscam']);
      const maps = await readTensors(ctx, r.methods.flatMap((m) => [m.map, m.raw, ...(m.weights ? [m.weights] : []), ...(m.layerMaps ?? []).map((l) => l.map)]));
      expect(watch.count()).toBe(1);
      for (const m of maps) expect(m.every(Number.isFinite)).toBe(true);
      r.dispose();
    } finally {
      watch.restore();
      x.dispose();
      await model.dispose();
    }
  });
});
