import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain } from '../src/cam/explain.js';
import { Model } from '../src/model.js';
import { readTensors, Tensor } from '../src/runtime/tensor.js';
import { evaluate } from '../src/metrics/evaluate.js';
import { cascadeLayers, randomizedCopy } from '../src/metrics/randomization.js';
import { roadScores } from '../src/metrics/road.js';
import type { MetricRecord } from '../src/metrics/records.js';
import { npy } from './helpers/fixtures.js';
import { gpu } from './helpers/gpu.js';
import { watchReadbacks } from './helpers/readbacks.js';
import { spearman64 } from './reference/similarity.js';

/**
 * evaluate()'s metrics that recompute maps or run masked passes, checked against the same
 * quantities computed another way from explain() and Model.run read back to the host and
 * combined in float64: drop25's and AD's masked scores, coherency (PGC's Pearson of the maps
 * of x ⊙ S), cascading randomization (per-step Spearman against maps of separately made
 * randomized copies). Also: one readback per evaluate call, and targets per image.
 */
const REPO = join(import.meta.dirname, '..');
const input = npy(join(REPO, 'test/fixtures/cam/inputs/fashion-coat-shirt-sneaker-56x56.npy'));
const TARGETS = [4, 6, 9];

async function setup() {
  const ctx = await gpu();
  const model = Model.fromBytes(ctx, new Uint8Array(readFileSync(join(REPO, 'models/fashion-vgg.onnx'))));
  const x = Tensor.fromData(ctx, Float32Array.from(input.data), input.shape, 'x');
  return { ctx, model, x };
}

const softmax = (row: ArrayLike<number>) => {
  const m = Math.max(...Array.from(row));
  const e = Array.from(row, (v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};
const by = (rs: MetricRecord[], metric: string) => rs.filter((r) => r.metric === metric).sort((a, b) => Number(a.image) - Number(b.image));

async function gradcamMaps(model: Model, x: Tensor): Promise<Float32Array> {
  const r = await explain(model, x, { methods: ['gradcam'], targets: TARGETS });
  const maps = await r.methods[0].map.read();
  r.dispose();
  return maps;
}

async function scores(model: Model, images: Float32Array): Promise<number[][]> {
  const ctx = model.ctx;
  const t = Tensor.fromData(ctx, images, input.shape, 'masked');
  const r = await model.run(t);
  const logits = await r.outputs.values().next().value!.read();
  for (const o of r.outputs.values()) o.dispose();
  t.dispose();
  return TARGETS.map((_, i) => softmax(logits.subarray(i * 10, (i + 1) * 10)));
}

describe('evaluate against direct recomputation', () => {
  it('AD and drop25: the masked scores equal Model.run of the masked images built on the host', async () => {
    const { model, x } = await setup();
    const watch = watchReadbacks(model.ctx);
    const r = await evaluate(model, x, { methods: ['gradcam'], targets: TARGETS, metrics: ['ad', 'drop25'] });
    const reads = watch.count();
    watch.restore();
    expect(reads, 'one readback for the call (explain reads none)').toBe(1);
    const S = await gradcamMaps(model, x);
    const HW = 56 * 56;
    const p = (await scores(model, Float32Array.from(input.data))).map((s, i) => s[TARGETS[i]]);
    const o = (await scores(model, Float32Array.from(input.data, (v, k) => v * S[k]))).map((s, i) => s[TARGETS[i]]);
    by(r.records, 'ad').forEach((rec, i) => expect(rec.value!).toBeCloseTo((100 * Math.max(0, p[i] - o[i])) / p[i], 3));
    // drop25: the ⌈HW/4⌉ most salient pixels (ties by index) zeroed in the model input.
    const removed = new Float32Array(input.data);
    for (let i = 0; i < 3; i++) {
      const m = Array.from(S.subarray(i * HW, (i + 1) * HW));
      const order = m.map((_, k) => k).sort((a, b) => m[b] - m[a] || a - b);
      for (const k of order.slice(0, Math.ceil(HW / 4))) removed[i * HW + k] = 0;
    }
    const o25 = (await scores(model, removed)).map((s, i) => s[TARGETS[i]]);
    // Image 2's target has p ≈ 8e-8, so its relative change is ~1e7 %: compare relatively.
    by(r.records, 'drop25').forEach((rec, i) => {
      const want = (100 * (o25[i] - p[i])) / p[i];
      expect(Math.abs(rec.value! - want) / Math.max(1, Math.abs(want)), `image ${i}`).toBeLessThan(1e-4);
    });
    x.dispose();
  }, 60_000);

  it("coherency is PGC's (ρ + 1)/2 between the maps and the maps of x ⊙ S", async () => {
    const { ctx, model, x } = await setup();
    const r = await evaluate(model, x, { methods: ['gradcam'], targets: TARGETS, metrics: ['coherency'] });
    const S = await gradcamMaps(model, x);
    const masked = Tensor.fromData(ctx, Float32Array.from(input.data, (v, k) => v * S[k]), input.shape, 'masked');
    const S2 = await gradcamMaps(model, masked);
    const HW = 56 * 56;
    by(r.records, 'coherency').forEach((rec, i) => {
      const a = S.subarray(i * HW, (i + 1) * HW);
      const b = S2.subarray(i * HW, (i + 1) * HW);
      const ma = a.reduce((p, q) => p + q, 0) / HW;
      const mb = b.reduce((p, q) => p + q, 0) / HW;
      let c = 0, va = 0, vb = 0;
      for (let k = 0; k < HW; k++) { c += (a[k] - ma) * (b[k] - mb); va += (a[k] - ma) ** 2; vb += (b[k] - mb) ** 2; }
      const rho = c / (HW - 1) / (Math.sqrt(va / (HW - 1)) * Math.sqrt(vb / (HW - 1)) + 1e-8);
      expect(rec.value!).toBeCloseTo((rho + 1) / 2, 4);
    });
    masked.dispose();
    x.dispose();
  }, 60_000);

  it('cascading randomization: per step, Spearman against the maps of a separately made randomized copy', async () => {
    const { model, x } = await setup();
    const r = await evaluate(model, x, { methods: ['gradcam'], targets: TARGETS, metrics: ['randomization', 'randomization-ssim'], seed: 5 });
    const L = cascadeLayers(model.graph).length;
    const recs = by(r.records, 'randomization');
    expect(recs.length).toBe(3);
    for (const rec of recs) {
      expect(rec.curve!.length).toBe(L);
      expect(rec.curveX).toEqual(Array.from({ length: L }, (_, k) => k + 1));
    }
    expect(by(r.records, 'randomization-ssim').every((rec) => rec.curve!.length === L)).toBe(true);
    const S = await gradcamMaps(model, x);
    const HW = 56 * 56;
    for (const k of [1, L]) {
      const copy = randomizedCopy(model, k, { seed: 5 });
      const Sk = await gradcamMaps(copy, x);
      await copy.dispose();
      recs.forEach((rec, i) => {
        const want = spearman64(S.subarray(i * HW, (i + 1) * HW), Sk.subarray(i * HW, (i + 1) * HW));
        if (Number.isNaN(want)) expect(rec.curve![k - 1]).toBeNaN();
        else expect(Math.abs(rec.curve![k - 1] - want), `image ${i}, step ${k}`).toBeLessThan(1e-4);
      });
    }
    // The sanity check itself: randomizing the whole network decorrelates Grad-CAM.
    const last = recs.map((rec) => rec.curve![L - 1]).filter((v) => Number.isFinite(v));
    expect(Math.max(...last.map(Math.abs))).toBeLessThan(0.9);
    x.dispose();
  }, 120_000);

  it("ROAD and ARCC: evaluate's records are roadScores' curves, PGC's ROADCombined and arcc.py's harmonic mean of its parts", async () => {
    const { ctx, model, x } = await setup();
    const r = await evaluate(model, x, { methods: ['gradcam'], targets: TARGETS, metrics: ['road-morf', 'road-lerf', 'road', 'arcc', 'complexity', 'coherency'], seed: 2, road: { percentages: [20, 50, 80] } });
    const S = await gradcamMaps(model, x);
    const maps = Tensor.fromData(ctx, S, [3, 56, 56], 'maps');
    const seedHost = new Float32Array(30);
    TARGETS.forEach((c, i) => (seedHost[i * 10 + c] = 1));
    const seed = Tensor.fromData(ctx, seedHost, [3, 10], 'seed');
    const direct = async (order: 'morf' | 'lerf', percentages: number[]) => {
      const d = await roadScores(model, x, maps, seed, { order, percentages, seed: 2, images: [0, 1, 2] });
      const [sc] = await readTensors(ctx, [d.scores]);
      for (const t of [d.scores, d.clean, d.diff, d.mean, d.residual]) t.dispose();
      return TARGETS.map((_, i) => Array.from(sc.subarray(i * percentages.length, (i + 1) * percentages.length)));
    };
    const morf = await direct('morf', [20, 50, 80]);
    const lerf = await direct('lerf', [20, 50, 80]);
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    by(r.records, 'road-morf').forEach((rec, i) => {
      expect(rec.curve).toEqual(morf[i]);
      expect(rec.value!).toBeCloseTo(mean(morf[i]), 6);
      expect(rec.extra!.residual as number).toBeLessThan(1e-4);
    });
    by(r.records, 'road').forEach((rec, i) => expect(rec.value!).toBeCloseTo((mean(lerf[i]) - mean(morf[i])) / 2, 6));
    const m4 = await direct('morf', [20, 40, 60, 80]);
    const l4 = await direct('lerf', [20, 40, 60, 80]);
    const cx = by(r.records, 'complexity');
    const coh = by(r.records, 'coherency');
    by(r.records, 'arcc').forEach((rec, i) => {
      const road = Math.min(1, Math.max(0, 2 * ((mean(l4[i]) - mean(m4[i])) / 2)));
      const want = 3 / (1 / (coh[i].value! + 1e-8) + 1 / (1 - cx[i].value! + 1e-8) + 1 / (road + 1e-8));
      expect(rec.value!).toBeCloseTo(want, 5);
    });
    for (const t of [maps, seed, x]) t.dispose();
  }, 180_000);
});
