import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FIXTURES, npy } from './helpers/fixtures.js';
import {
  absGradient,
  convergenceDelta,
  gradCamLayerMap,
  guidedGradCam,
  guidedReluGrad,
  igPathPoints,
  igQuadrature,
  inputTimesGradient,
  integratedGradients,
  integratedGradientsFromFunction,
  noisyInputs,
  saliencyMap,
  smoothGrad,
  smoothGradFromFunction,
  smoothGradSigma,
  upsampleMaps,
  type Feat,
  type Maps,
  type Shape4,
} from './reference/baselines.js';

/**
 * The float64 gradient-baseline references (test/reference/baselines.ts, written from SPEC
 * §1) against Captum's outputs on the committed fixtures (test/fixtures/baselines, made by
 * tools/gen_baseline_fixtures.py): Captum's own gradients in (the plain gradient, the
 * gradient at every Integrated-Gradients path point and every SmoothGrad sample over a
 * spatial window, the Grad-CAM layer tensors), Captum's attributions out.
 */
const DIR = join(FIXTURES, 'baselines');
const REPO = join(import.meta.dirname, '..');
const MODELS = ['resnet18-w8', 'fashion-vgg', 'fashion-resnet'];
/** Max abs difference relative to Captum's largest magnitude. */
const REL_TOL = 1e-5;

interface Meta {
  name: string;
  input: { file: string; slice: null | { axis: 0; start: number; stop: number; fileShape: number[] }; shape: Shape4 };
  targets: number[];
  window: { y0: number; x0: number; h: number; w: number };
  inputSize: [number, number];
  layer: { module: string; shape: Shape4 };
  methods: {
    Saliency: { attribution: string; map: string };
    gradient: { file: string };
    InputXGradient: { attribution: string };
    IntegratedGradients: {
      attribution: string;
      delta: string;
      stepGradients: string;
      nSteps: number;
      method: string;
      alphas: number[];
      stepSizes: number[];
    };
    SmoothGrad: {
      attribution: string;
      attributionAbs: string | null;
      ntSamples: number;
      sigmaFraction: number;
      sigma: number[];
      noise: string;
      sampleGradients: string;
    };
    GuidedBackprop: { attribution: string };
    GuidedGradCam: {
      attribution: string;
      attributionBilinear: string | null;
      layerGradCam: string;
      interpolateMode: string;
      layerTensors: { activations: string; gradients: string };
    };
  };
}

const meta = (name: string): Meta => JSON.parse(readFileSync(join(DIR, name, 'meta.json'), 'utf8')) as Meta;

function arr(name: string, file: string, rank?: number): { data: Float32Array | Float64Array; shape: number[] } {
  const a = npy(join(DIR, name, file));
  if (rank !== undefined && a.shape.length !== rank) throw new Error(`${file}: rank ${a.shape.length}, expected ${rank}`);
  return { data: a.data as Float32Array, shape: a.shape };
}

function feat(name: string, file: string): Feat {
  const a = arr(name, file, 4);
  return { data: a.data, shape: a.shape as Shape4 };
}

function fromRepo(path: string): Feat {
  const a = npy(join(REPO, path));
  return { data: a.data, shape: a.shape as Shape4 };
}

function input(m: Meta): Feat {
  const a = npy(join(REPO, m.input.file));
  if (!m.input.slice) return { data: a.data, shape: a.shape as Shape4 };
  const per = a.shape.slice(1).reduce((p, q) => p * q, 1);
  const { start, stop } = m.input.slice;
  return { data: a.data.slice(start * per, stop * per), shape: [stop - start, ...a.shape.slice(1)] as Shape4 };
}

/** Rows y0..y0+h−1, columns x0..x0+w−1 of every plane of an NCHW batch. */
function window(f: Feat, win: Meta['window']): Feat {
  const [N, C, H, W] = f.shape;
  const out = new Float64Array(N * C * win.h * win.w);
  let o = 0;
  for (let p = 0; p < N * C; p++)
    for (let y = win.y0; y < win.y0 + win.h; y++) for (let x = win.x0; x < win.x0 + win.w; x++) out[o++] = f.data[(p * H + y) * W + x];
  return { data: out, shape: [N, C, win.h, win.w] };
}

/** The k-th leading slice of a stacked array (e.g. step k of [steps, N, C, h, w]). */
function part(a: { data: ArrayLike<number>; shape: number[] }, k: number): Float64Array {
  const per = a.shape.slice(1).reduce((p, q) => p * q, 1);
  return Float64Array.from({ length: per }, (_, i) => a.data[k * per + i]);
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function relErr(ours: ArrayLike<number>, theirs: ArrayLike<number>): number {
  if (ours.length !== theirs.length) throw new Error(`length ${ours.length} vs ${theirs.length}`);
  let m = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = Math.abs(ours[i] - theirs[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  const s = maxAbs(theirs);
  if (s === 0) throw new Error('reference tensor is all zero');
  return m / s;
}

const report: Record<string, Record<string, string>> = {};
function record(name: string, what: string, err: number): number {
  report[name] ??= {};
  report[name][what] = err.toExponential(1);
  return err;
}

afterAll(() => {
  for (const name of MODELS)
    console.log(`${name}:\n${Object.entries(report[name] ?? {}).map(([k, v]) => `  ${k.padEnd(34)} ${v}`).join('\n')}`);
});

describe('quadrature rules', () => {
  it('trapezoid weights sum to 1, Captum riemann_trapezoid weights to (n−1)/n, on the same nodes', () => {
    for (const n of [2, 5, 50]) {
      const t = igQuadrature(n, 'trapezoid');
      const c = igQuadrature(n, 'captum-trapezoid');
      expect(t.weights.reduce((p, q) => p + q, 0)).toBeCloseTo(1, 14);
      expect(c.weights.reduce((p, q) => p + q, 0)).toBeCloseTo((n - 1) / n, 14);
      expect(Array.from(c.alphas)).toEqual(Array.from(t.alphas));
      expect(t.alphas[0]).toBe(0);
      expect(t.alphas[n - 1]).toBe(1);
    }
    expect(() => igQuadrature(1)).toThrow();
  });

  it('integrate a known function: IG of f(x) = Σ x² (gradient 2x) from 0 is x² with the trapezoid rule', () => {
    const xd = Float64Array.from([1, -2, 0.5, 3]);
    const x: Feat = { data: xd, shape: [1, 1, 2, 2] };
    const ig = integratedGradientsFromFunction(x, (p) => p.map((v) => 2 * v), 7, { rule: 'trapezoid' });
    // the integrand is linear in α, so the trapezoid rule is exact
    expect(relErr(ig.data, xd.map((v) => v * v))).toBeLessThan(1e-14);
    const igc = integratedGradientsFromFunction(x, (p) => p.map((v) => 2 * v), 7, { rule: 'captum-trapezoid' });
    expect(relErr(igc.data, xd.map((v) => (v * v * 6) / 7))).toBeLessThan(1e-14);
    const d = convergenceDelta(ig, [1 + 4 + 0.25 + 9], [0]);
    expect(Math.abs(d[0])).toBeLessThan(1e-12);
    const pts = igPathPoints(x, 3, { baseline: 1 });
    expect(Array.from(pts[1])).toEqual([1, -0.5, 0.75, 2]);
  });

  it('guided ReLU rule and nearest upsampling', () => {
    expect([guidedReluGrad(1, 2), guidedReluGrad(0, 2), guidedReluGrad(1, -2), guidedReluGrad(-1, -2)]).toEqual([2, 0, 0, 0]);
    const m: Maps = { data: Float64Array.from([1, 2, 3, 4]), shape: [1, 2, 2] };
    expect(Array.from(upsampleMaps(m, 4, 4, 'nearest').data)).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    // half-pixel bilinear: output 1 sits at source 0.25
    expect(upsampleMaps(m, 4, 4, 'bilinear').data[1]).toBeCloseTo(1.25, 14);
  });
});

describe.each(MODELS)('Captum baselines: %s', (name) => {
  const m = meta(name);
  const x = input(m);
  const [N, C, H, W] = x.shape;
  const g = feat(name, m.methods.gradient.file);

  it('input and targets are what meta.json says', () => {
    expect(x.shape).toEqual(m.input.shape);
    expect(m.targets.length).toBe(N);
    expect(new Set(m.targets).size).toBe(N);
    expect(g.shape).toEqual(x.shape);
  });

  it('Saliency: |g| and max_c |g| reproduce Captum', () => {
    const sal = feat(name, m.methods.Saliency.attribution);
    expect(record(name, 'Saliency', relErr(absGradient(g).data, sal.data))).toBeLessThanOrEqual(REL_TOL);
    const map = arr(name, m.methods.Saliency.map, 3);
    expect(map.shape).toEqual([N, H, W]);
    const ours = saliencyMap(g);
    expect(record(name, 'Saliency map', relErr(ours.data, map.data))).toBeLessThanOrEqual(REL_TOL);
    // the map is the channel max of the attribution, not of the signed gradient
    if (C > 1) expect(relErr(saliencyMap(sal).data, map.data)).toBeLessThanOrEqual(REL_TOL);
  });

  it('Input × Gradient reproduces Captum', () => {
    const ixg = feat(name, m.methods.InputXGradient.attribution);
    expect(record(name, 'InputXGradient', relErr(inputTimesGradient(x, g).data, ixg.data))).toBeLessThanOrEqual(REL_TOL);
  });

  describe('Integrated Gradients', () => {
    const igm = m.methods.IntegratedGradients;
    const steps = arr(name, igm.stepGradients, 5);
    const stepGrads = Array.from({ length: steps.shape[0] }, (_, k) => part(steps, k));
    const xw = window(x, m.window);
    const captum = window(feat(name, igm.attribution), m.window);

    it('Captum used 50 nodes α_k = k/49 with weights 1/50, ends halved', () => {
      expect(igm.nSteps).toBe(50);
      expect(igm.method).toBe('riemann_trapezoid');
      expect(steps.shape).toEqual([50, N, C, m.window.h, m.window.w]);
      const q = igQuadrature(50, 'captum-trapezoid');
      // Captum's nodes are float32 (torch.linspace); its step sizes float32 too
      expect(relErr(q.alphas, igm.alphas)).toBeLessThan(1e-7);
      expect(relErr(q.weights, igm.stepSizes)).toBeLessThan(1e-7);
    });

    it('the reference with Captum\'s weights reproduces Captum on the window', () => {
      const ours = integratedGradients(xw, stepGrads, { rule: 'captum-trapezoid' });
      expect(maxAbs(captum.data)).toBeGreaterThan(0);
      expect(record(name, 'IG (captum-trapezoid rule)', relErr(ours.data, captum.data))).toBeLessThanOrEqual(REL_TOL);
      const viaSteps = integratedGradients(xw, stepGrads, { weights: igm.stepSizes });
      expect(record(name, 'IG (Captum float32 step sizes)', relErr(viaSteps.data, captum.data))).toBeLessThanOrEqual(REL_TOL);
    });

    it('SPEC\'s trapezoid is 50/49 of Captum\'s: it does not reproduce Captum unless rescaled', () => {
      const trap = integratedGradients(xw, stepGrads, { rule: 'trapezoid' });
      const e = relErr(trap.data, captum.data);
      record(name, 'IG (true trapezoid, unscaled)', e);
      expect(e).toBeGreaterThan(0.019);
      expect(relErr(trap.data.map((v) => (v * 49) / 50), captum.data)).toBeLessThanOrEqual(REL_TOL);
    });

    it('convergence delta: Σ attribution − (f(x) − f(0)) reproduces Captum\'s', () => {
      const logits = arr(name, 'logits.npy', 2);
      const base = arr(name, 'baseline-logits.npy', 2);
      const K = logits.shape[1];
      const fx = m.targets.map((c, n) => logits.data[n * K + c]);
      const f0 = m.targets.map((c, n) => base.data[n * K + c]);
      const d = convergenceDelta(feat(name, igm.attribution), fx, f0);
      const captumDelta = arr(name, igm.delta, 1).data;
      for (let n = 0; n < N; n++) {
        const scale = Math.max(1, Math.abs(fx[n] - f0[n]));
        expect(Math.abs(d[n] - captumDelta[n]) / scale).toBeLessThanOrEqual(REL_TOL);
      }
      record(name, 'IG delta (abs, per |Δf|)', Math.max(...d.map((v, n) => Math.abs(v - captumDelta[n]) / Math.max(1, Math.abs(fx[n] - f0[n])))));
    });
  });

  describe('SmoothGrad', () => {
    const sg = m.methods.SmoothGrad;
    const S = sg.ntSamples;
    const samples = arr(name, sg.sampleGradients, 5); // [N, S, C, h, w]
    const per = C * m.window.h * m.window.w;
    // sampleGradients[s] = every image's sample s, as one [N, C, h, w] batch
    const bySample = Array.from({ length: S }, (_, s) =>
      Float64Array.from({ length: N * per }, (_, i) => samples.data[(Math.floor(i / per) * S + s) * per + (i % per)]),
    );
    const shapeW: Shape4 = [N, C, m.window.h, m.window.w];

    it('σ per image is 0.15 · (max x − min x), and the saved noise has that scale', () => {
      const sigma = smoothGradSigma(x, sg.sigmaFraction);
      for (let n = 0; n < N; n++) expect(Math.abs(sigma[n] - sg.sigma[n]) / sg.sigma[n]).toBeLessThan(1e-12);
      const noise = arr(name, sg.noise, 5);
      expect(noise.shape).toEqual([N, S, C, H, W]);
      const len = S * C * H * W;
      for (let n = 0; n < N; n++) {
        let s2 = 0;
        let s1 = 0;
        for (let i = 0; i < len; i++) {
          const v = noise.data[n * len + i];
          s1 += v;
          s2 += v * v;
        }
        const std = Math.sqrt(s2 / len - (s1 / len) ** 2);
        expect(std / sigma[n]).toBeGreaterThan(0.95);
        expect(std / sigma[n]).toBeLessThan(1.05);
        expect(Math.abs(s1 / len) / sigma[n]).toBeLessThan(0.05);
      }
    });

    it('the mean of the sample gradients reproduces Captum (signed, and |g| where saved)', () => {
      expect(samples.shape).toEqual([N, S, C, m.window.h, m.window.w]);
      const captum = window(feat(name, sg.attribution), m.window);
      const ours = smoothGrad(shapeW, bySample);
      expect(record(name, 'SmoothGrad', relErr(ours.data, captum.data))).toBeLessThanOrEqual(REL_TOL);
      if (sg.attributionAbs) {
        const captumAbs = window(feat(name, sg.attributionAbs), m.window);
        const oursAbs = smoothGrad(shapeW, bySample, { abs: true });
        expect(record(name, 'SmoothGrad abs', relErr(oursAbs.data, captumAbs.data))).toBeLessThanOrEqual(REL_TOL);
        // the two variants differ where the sample gradients disagree in sign
        expect(relErr(ours.data, captumAbs.data)).toBeGreaterThan(1e-3);
      }
    });

    it('with a gradient function: noisy points are x + noise, then averaged', () => {
      const xs: Feat = { data: Float64Array.from([1, 2]), shape: [1, 1, 1, 2] };
      const noise = [Float64Array.from([0.5, -1]), Float64Array.from([-0.5, 3])];
      expect(noisyInputs(xs, noise).map((p) => Array.from(p))).toEqual([[1.5, 1], [0.5, 5]]);
      // gradient of Σ x³/3 is x²
      const r = smoothGradFromFunction(xs, noise, (p) => p.map((v) => v * v));
      expect(Array.from(r.data)).toEqual([(2.25 + 0.25) / 2, (1 + 25) / 2]);
    });
  });

  describe('Guided Grad-CAM', () => {
    const ggm = m.methods.GuidedGradCam;
    const A = fromRepo(ggm.layerTensors.activations);
    const G = fromRepo(ggm.layerTensors.gradients);
    const gbp = feat(name, m.methods.GuidedBackprop.attribution);
    const cam = gradCamLayerMap(A, G);

    it('relu(Σ_k mean(g_k) A_k) from the layer tensors reproduces Captum\'s LayerGradCam', () => {
      expect(A.shape).toEqual(m.layer.shape);
      const lgc = arr(name, ggm.layerGradCam, 4);
      expect(lgc.shape).toEqual([N, 1, m.layer.shape[2], m.layer.shape[3]]);
      expect(record(name, 'LayerGradCam', relErr(cam.data, lgc.data))).toBeLessThanOrEqual(REL_TOL);
    });

    it('guided backprop ⊙ nearest-upsampled map reproduces Captum (its default interpolation)', () => {
      expect(ggm.interpolateMode).toBe('nearest');
      const captum = feat(name, ggm.attribution);
      const ours = guidedGradCam(gbp, cam, 'nearest');
      expect(record(name, 'GuidedGradCam (nearest)', relErr(ours.data, captum.data))).toBeLessThanOrEqual(REL_TOL);
      // bilinear upsampling (SPEC's up()) is a different map
      expect(relErr(guidedGradCam(gbp, cam, 'bilinear').data, captum.data)).toBeGreaterThan(1e-2);
    });

    it('bilinear (half-pixel) upsampling reproduces Captum\'s interpolate_mode="bilinear" where saved', () => {
      if (!ggm.attributionBilinear) return;
      const captum = feat(name, ggm.attributionBilinear);
      const ours = guidedGradCam(gbp, cam, 'bilinear');
      expect(record(name, 'GuidedGradCam (bilinear)', relErr(ours.data, captum.data))).toBeLessThanOrEqual(REL_TOL);
    });

    it('guided backprop is not the plain gradient (the hooks were active)', () => {
      expect(relErr(gbp.data, g.data)).toBeGreaterThan(0.1);
    });
  });
});
