/**
 * Float64 CPU references of the gradient baselines of SPEC §1 (row "gradient baselines"):
 * Saliency, Input × Gradient, Integrated Gradients, SmoothGrad and the Guided Grad-CAM
 * combination, written from the SPEC's formulas and the methods' definitions (not from any
 * library's code). They take gradients — precomputed, or from a float64 gradient function —
 * and do the arithmetic in float64. test/baselines-reference.test.ts checks them against
 * Captum's outputs (fixtures: test/fixtures/baselines/README.md, which also lists where
 * Captum's arithmetic departs from the textbook one; the options below name those choices).
 *
 * Layout: inputs x, gradients g and attributions are flat NCHW arrays with shape
 * [N, C, H, W]; maps are [N, H, W]. Image n's gradient is that of its own target's score.
 */
import { bilinearRef, type Arr } from './cpu.js';
import { gradCamWeights, weightedSum, type Feat, type Maps, type Shape4 } from './cam.js';

export type { Feat, Maps, Shape4 };

/** An NCHW batch in float64. */
export interface Batch {
  data: Float64Array;
  shape: Shape4;
}

const size = (s: Shape4): number => s[0] * s[1] * s[2] * s[3];

function check(what: string, a: ArrayLike<number>, n: number): void {
  if (a.length !== n) throw new Error(`${what}: ${a.length} values, expected ${n}`);
}

// ---------------------------------------------------------------------------------------
// Saliency and Input × Gradient
// ---------------------------------------------------------------------------------------

/** |g| elementwise: the per-channel saliency attribution. */
export function absGradient(g: Feat): Batch {
  const out = new Float64Array(size(g.shape));
  check('gradient', g.data, out.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.abs(g.data[i]);
  return { data: out, shape: [...g.shape] as Shape4 };
}

/** Saliency map (SPEC §1): S[n, i, j] = max_c |g[n, c, i, j]|. */
export function saliencyMap(g: Feat): Maps {
  const [N, C, H, W] = g.shape;
  check('gradient', g.data, size(g.shape));
  const hw = H * W;
  const out = new Float64Array(N * hw);
  for (let n = 0; n < N; n++)
    for (let p = 0; p < hw; p++) {
      let m = 0;
      for (let c = 0; c < C; c++) m = Math.max(m, Math.abs(g.data[(n * C + c) * hw + p]));
      out[n * hw + p] = m;
    }
  return { data: out, shape: [N, H, W] };
}

/** Input × Gradient: x ⊙ g. */
export function inputTimesGradient(x: Feat, g: Feat): Batch {
  const n = size(x.shape);
  check('input', x.data, n);
  check('gradient', g.data, n);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = x.data[i] * g.data[i];
  return { data: out, shape: [...x.shape] as Shape4 };
}

// ---------------------------------------------------------------------------------------
// Integrated Gradients
// ---------------------------------------------------------------------------------------

/**
 * Quadrature rules over the path parameter α ∈ [0, 1] with n nodes.
 * - 'trapezoid': the trapezoid rule on the n equally spaced nodes α_k = k/(n−1):
 *   weights 1/(n−1), the two end nodes halved (they sum to 1).
 * - 'captum-trapezoid': Captum's `riemann_trapezoid`: the same nodes, but weights 1/n with
 *   the end nodes halved (they sum to (n−1)/n, so the attribution is (n−1)/n of the
 *   trapezoid one).
 * - 'left' / 'right' / 'middle': Riemann sums with weights 1/n at α_k = k/n, (k+1)/n,
 *   (k+½)/n.
 */
export type IgRule = 'trapezoid' | 'captum-trapezoid' | 'left' | 'right' | 'middle';

/** Path nodes α_k and quadrature weights w_k of a rule. */
export function igQuadrature(n: number, rule: IgRule = 'trapezoid'): { alphas: Float64Array; weights: Float64Array } {
  if (!Number.isInteger(n) || n < 2) throw new Error(`integrated gradients: need at least 2 steps, got ${n}`);
  const alphas = new Float64Array(n);
  const weights = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    switch (rule) {
      case 'trapezoid':
      case 'captum-trapezoid':
        alphas[k] = k / (n - 1);
        weights[k] = (rule === 'trapezoid' ? 1 / (n - 1) : 1 / n) * (k === 0 || k === n - 1 ? 0.5 : 1);
        break;
      case 'left':
        alphas[k] = k / n;
        weights[k] = 1 / n;
        break;
      case 'right':
        alphas[k] = (k + 1) / n;
        weights[k] = 1 / n;
        break;
      case 'middle':
        alphas[k] = (k + 0.5) / n;
        weights[k] = 1 / n;
        break;
    }
  }
  return { alphas, weights };
}

export interface IgOptions {
  /** Baseline x′: a number (every element) or an array shaped like x. Default 0. */
  baseline?: number | Arr;
  /** Quadrature rule (default 'trapezoid', SPEC §1); ignored when `weights` is given. */
  rule?: IgRule;
  /** Explicit per-step weights (e.g. a library's float32 step sizes). */
  weights?: ArrayLike<number>;
}

function baselineAt(b: number | Arr | undefined, i: number): number {
  if (b === undefined) return 0;
  return typeof b === 'number' ? b : b[i];
}

/**
 * Integrated Gradients from the gradients at the path points:
 * IG = (x − x′) ⊙ Σ_k w_k ∂y/∂x(x′ + α_k (x − x′)).
 * `stepGradients[k]` is the gradient at node k (shaped like x, each image its own target).
 */
export function integratedGradients(x: Feat, stepGradients: readonly Arr[], o: IgOptions = {}): Batch {
  const n = size(x.shape);
  check('input', x.data, n);
  const weights = o.weights ?? igQuadrature(stepGradients.length, o.rule).weights;
  if (weights.length !== stepGradients.length) throw new Error(`${weights.length} weights for ${stepGradients.length} steps`);
  const acc = new Float64Array(n);
  stepGradients.forEach((g, k) => {
    check(`step ${k} gradient`, g, n);
    const wk = weights[k];
    for (let i = 0; i < n; i++) acc[i] += wk * g[i];
  });
  if (typeof o.baseline !== 'number' && o.baseline !== undefined) check('baseline', o.baseline, n);
  for (let i = 0; i < n; i++) acc[i] *= x.data[i] - baselineAt(o.baseline, i);
  return { data: acc, shape: [...x.shape] as Shape4 };
}

/** The path points x′ + α_k (x − x′) of a rule (what a gradient function is evaluated at). */
export function igPathPoints(x: Feat, n: number, o: IgOptions = {}): Float64Array[] {
  const { alphas } = igQuadrature(n, o.rule);
  const len = size(x.shape);
  return Array.from(alphas, (a) => {
    const p = new Float64Array(len);
    for (let i = 0; i < len; i++) {
      const b = baselineAt(o.baseline, i);
      p[i] = b + a * (x.data[i] - b);
    }
    return p;
  });
}

/** Integrated Gradients with a float64 gradient function: grad(point) → ∂y/∂x at the point. */
export function integratedGradientsFromFunction(x: Feat, grad: (point: Float64Array) => Arr, n = 50, o: IgOptions = {}): Batch {
  return integratedGradients(x, igPathPoints(x, n, o).map(grad), o);
}

/**
 * Completeness gap per image: Σ IG[n] − (f(x)[n] − f(x′)[n]), the target scores at the input
 * and at the baseline (0 for exact integration; the quadrature error otherwise).
 */
export function convergenceDelta(attribution: Feat, scoreAtInput: ArrayLike<number>, scoreAtBaseline: ArrayLike<number>): Float64Array {
  const [N] = attribution.shape;
  const per = size(attribution.shape) / N;
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let i = 0; i < per; i++) s += attribution.data[n * per + i];
    out[n] = s - (scoreAtInput[n] - scoreAtBaseline[n]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// SmoothGrad
// ---------------------------------------------------------------------------------------

/** SPEC §1's noise level per image: σ_n = fraction · (max x[n] − min x[n]) over all of image n. */
export function smoothGradSigma(x: Feat, fraction = 0.15): Float64Array {
  const [N] = x.shape;
  const per = size(x.shape) / N;
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < per; i++) {
      const v = x.data[n * per + i];
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    out[n] = fraction * (hi - lo);
  }
  return out;
}

export interface SmoothGradOptions {
  /** Average |g| instead of g (default false: SmoothGrad of the signed gradient). */
  abs?: boolean;
}

/**
 * SmoothGrad from the gradients at the noisy inputs: (1/S) Σ_s g_s (or |g_s|).
 * `sampleGradients[s]` is the gradient at x + noise_s, shaped like x.
 */
export function smoothGrad(shape: Shape4, sampleGradients: readonly Arr[], o: SmoothGradOptions = {}): Batch {
  const n = size(shape);
  if (sampleGradients.length === 0) throw new Error('smoothGrad: no samples');
  const acc = new Float64Array(n);
  sampleGradients.forEach((g, s) => {
    check(`sample ${s} gradient`, g, n);
    for (let i = 0; i < n; i++) acc[i] += o.abs ? Math.abs(g[i]) : g[i];
  });
  for (let i = 0; i < n; i++) acc[i] /= sampleGradients.length;
  return { data: acc, shape: [...shape] as Shape4 };
}

/** x + noise_s for every sample (the points a gradient function is evaluated at). */
export function noisyInputs(x: Feat, noise: readonly Arr[]): Float64Array[] {
  const n = size(x.shape);
  return noise.map((e, s) => {
    check(`noise ${s}`, e, n);
    const p = new Float64Array(n);
    for (let i = 0; i < n; i++) p[i] = x.data[i] + e[i];
    return p;
  });
}

/** SmoothGrad with a float64 gradient function and given noise tensors. */
export function smoothGradFromFunction(x: Feat, noise: readonly Arr[], grad: (point: Float64Array) => Arr, o: SmoothGradOptions = {}): Batch {
  return smoothGrad(x.shape, noisyInputs(x, noise).map(grad), o);
}

// ---------------------------------------------------------------------------------------
// Guided Grad-CAM
// ---------------------------------------------------------------------------------------

/** Guided backprop's rule at one ReLU: the incoming gradient g passes where the ReLU's input (or output) is > 0 and g > 0. */
export function guidedReluGrad(y: number, g: number): number {
  return y > 0 && g > 0 ? g : 0;
}

/** The Grad-CAM map as Guided Grad-CAM uses it: relu(Σ_k mean_ij(g_k) A_k), not normalized. */
export function gradCamLayerMap(A: Feat, G: Feat): Maps {
  const raw = weightedSum(A, gradCamWeights(G));
  return { data: raw.data.map((v) => Math.max(v, 0)), shape: raw.shape };
}

/**
 * How the layer map is brought to the input size.
 * - 'nearest': torch's (legacy) nearest: output index o reads input floor(o · in/out).
 * - 'bilinear': SPEC §0's up(): half-pixel centers (align_corners = false), source
 *   coordinate clamped at 0.
 */
export type UpsampleMode = 'nearest' | 'bilinear';

export function upsampleMaps(m: Maps, H: number, W: number, mode: UpsampleMode): Maps {
  const [N, h, w] = m.shape;
  if (mode === 'bilinear') {
    const r = bilinearRef(m.data, [N, h, w], H, W, { alignCorners: false });
    return { data: r.data, shape: [N, H, W] };
  }
  const out = new Float64Array(N * H * W);
  const sy = h / H;
  const sx = w / W;
  for (let n = 0; n < N; n++)
    for (let y = 0; y < H; y++) {
      const iy = Math.min(Math.floor(y * sy), h - 1);
      for (let xq = 0; xq < W; xq++) {
        const ix = Math.min(Math.floor(xq * sx), w - 1);
        out[(n * H + y) * W + xq] = m.data[(n * h + iy) * w + ix];
      }
    }
  return { data: out, shape: [N, H, W] };
}

/** Guided Grad-CAM: guided-backprop attribution [N, C, H, W] ⊙ up(cam) broadcast over channels. */
export function guidedGradCam(guided: Feat, cam: Maps, mode: UpsampleMode): Batch {
  const [N, C, H, W] = guided.shape;
  check('guided backprop', guided.data, size(guided.shape));
  if (cam.shape[0] !== N) throw new Error(`cam has ${cam.shape[0]} maps for ${N} images`);
  const up = upsampleMaps(cam, H, W, mode);
  const hw = H * W;
  const out = new Float64Array(N * C * hw);
  for (let n = 0; n < N; n++)
    for (let c = 0; c < C; c++)
      for (let p = 0; p < hw; p++) out[(n * C + c) * hw + p] = guided.data[(n * C + c) * hw + p] * up.data[n * hw + p];
  return { data: out, shape: [N, C, H, W] };
}
