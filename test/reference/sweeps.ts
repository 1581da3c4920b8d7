/**
 * Float64 CPU references of the perturbation ("sweep") CAMs of SPEC §1 — Score-CAM, IS-CAM,
 * SS-CAM and Ablation-CAM — written from the SPEC's formulas, not from any library's code.
 * They split each method into the parts a GPU implementation has: the masks built from the
 * activations, the masked (scaled, noisy) inputs the model is run on, and the rule that
 * turns the scores of those runs into channel weights. The model itself is not here: the
 * scores come from a caller's `ScoreFn` (a GPU model, or a toy one in tests), or from the
 * scores pytorch-grad-cam / torch-cam recorded (test/sweeps-reference.test.ts, fixtures:
 * test/fixtures/cam/README.md "Sweep methods").
 *
 * Layouts as in ./cam.ts: activations A [N, K, h, w], the input x [N, C, H, W], masks
 * [H·W] per (image, channel), scores and weights [N, K] row-major.
 */
import { type Feat, type Maps, normalizeMaps, reluMaps, weightedSum, type CamRef } from './cam.js';
import { bilinearRef } from './cpu.js';

/** SPEC §0's epsilon in u(M); torch-cam's `_normalize` and PGC's Score-CAM masks use it too. */
export const MASK_EPS = 1e-8;

export interface MaskOptions {
  /** Bilinear upsampling with align_corners (corner pixels aligned). SPEC default false; PGC's Score-CAM uses true. */
  alignCorners?: boolean;
  /**
   * 'upsample-first': M_k = u(up(A_k)) (SPEC §1, PGC). 'normalize-first': M_k = up(u(A_k))
   * (torch-cam: it normalizes the low-resolution map, then upsamples, so the mask's maximum
   * is below 1 unless the extremes lie on the border).
   */
  order?: 'upsample-first' | 'normalize-first';
  eps?: number;
}

/** u(v) = (v − min v)/(max v − min v + eps) of one map. */
export function normalizeMap(v: ArrayLike<number>, eps = MASK_EPS): Float64Array {
  let mn = Infinity;
  let mx = -Infinity;
  for (let i = 0; i < v.length; i++) {
    mn = Math.min(mn, v[i]);
    mx = Math.max(mx, v[i]);
  }
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = (v[i] - mn) / (mx - mn + eps);
  return out;
}

/** The mask of channel k of image n at the input size H × W: [H·W]. */
export function channelMask(A: Feat, n: number, k: number, H: number, W: number, o: MaskOptions = {}): Float64Array {
  const [, K, h, w] = A.shape;
  const eps = o.eps ?? MASK_EPS;
  const alignCorners = o.alignCorners ?? false;
  const base = (n * K + k) * h * w;
  let plane: Float64Array = Float64Array.from({ length: h * w }, (_, p) => A.data[base + p]);
  const up = (m: Float64Array) => bilinearRef(m, [1, h, w], H, W, { alignCorners }).data;
  if ((o.order ?? 'upsample-first') === 'upsample-first') return normalizeMap(up(plane), eps);
  plane = normalizeMap(plane, eps);
  return up(plane);
}

export interface MaskedInputOptions {
  /** The input is multiplied by coefficient · (mask + noise). Default 1. */
  coefficient?: number;
  /** Added to the mask before masking, [H·W] (SS-CAM). */
  noise?: ArrayLike<number>;
}

/**
 * x_n ⊙ (c·(M + δ)) for image n: the mask (one H × W plane) multiplies every input channel
 * of the tensor the model receives (SPEC §0 masking space: the normalized input). [C·H·W].
 */
export function maskedInput(x: ArrayLike<number>, xShape: readonly number[], n: number, mask: ArrayLike<number>, o: MaskedInputOptions = {}): Float64Array {
  const [, C, H, W] = xShape;
  const hw = H * W;
  if (mask.length !== hw) throw new Error(`mask has ${mask.length} values, the input plane ${hw}`);
  const c = o.coefficient ?? 1;
  const out = new Float64Array(C * hw);
  for (let ch = 0; ch < C; ch++)
    for (let p = 0; p < hw; p++) out[ch * hw + p] = x[(n * C + ch) * hw + p] * c * (mask[p] + (o.noise ? o.noise[p] : 0));
  return out;
}

/** softmax over k of each row of s [N, K]. */
export function softmaxRows(s: ArrayLike<number>, N: number, K: number): Float64Array {
  const out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    let mx = -Infinity;
    for (let k = 0; k < K; k++) mx = Math.max(mx, s[n * K + k]);
    let z = 0;
    for (let k = 0; k < K; k++) z += Math.exp(s[n * K + k] - mx);
    for (let k = 0; k < K; k++) out[n * K + k] = Math.exp(s[n * K + k] - mx) / z;
  }
  return out;
}

/**
 * Score-CAM weights: w = softmax_k(s_k − b_n), s_k = y_c(x ⊙ M_k). SPEC / PGC: no baseline;
 * torch-cam subtracts b_n = y_c(x) — a constant per image, which the softmax ignores.
 */
export function scoreCamWeights(scores: ArrayLike<number>, N: number, K: number, baseline?: ArrayLike<number>): Float64Array {
  const s = Float64Array.from({ length: N * K }, (_, i) => scores[i] - (baseline ? baseline[Math.floor(i / K)] : 0));
  return softmaxRows(s, N, K);
}

/**
 * IS-CAM's mask coefficients, step i = 1..n. 'spec': i/n (SPEC §1). 'torchcam': the running
 * sum Σ_{j ≤ i} j/n = i(i+1)/(2n) that torch-cam's loop accumulates (0.1, 0.3, …, 5.5 for n = 10).
 */
export function isCamCoefficients(n: number, rule: 'spec' | 'torchcam' = 'spec'): Float64Array {
  return Float64Array.from({ length: n }, (_, j) => (rule === 'spec' ? (j + 1) / n : ((j + 1) * (j + 2)) / (2 * n)));
}

export interface StepAggregation {
  /** 'sum' over the steps (SPEC IS-CAM) or 'mean' (torch-cam's IS-CAM and SS-CAM; SPEC SS-CAM). */
  aggregate?: 'sum' | 'mean';
  /** Subtracted from every step's score first, per image (torch-cam: y_c(x)). */
  baseline?: ArrayLike<number>;
}

/** Per-channel score from several masked runs per channel: steps[i] is [N, K]. */
export function aggregateSteps(steps: readonly ArrayLike<number>[], N: number, K: number, o: StepAggregation = {}): Float64Array {
  if (steps.length === 0) throw new Error('no steps');
  const s = new Float64Array(N * K);
  for (const st of steps) for (let i = 0; i < N * K; i++) s[i] += st[i] - (o.baseline ? o.baseline[Math.floor(i / K)] : 0);
  if ((o.aggregate ?? 'sum') === 'mean') for (let i = 0; i < N * K; i++) s[i] /= steps.length;
  return s;
}

/**
 * IS-CAM weights: softmax_k(s_k), s_k = Σ_{i=1..n} y_c(x ⊙ c_i·M_k) (SPEC: sum, c_i = i/n).
 * torch-cam: mean of (score − y_c(x)) and its cumulative coefficients (see isCamCoefficients).
 */
export function isCamWeights(steps: readonly ArrayLike<number>[], N: number, K: number, o: StepAggregation = {}): Float64Array {
  return softmaxRows(aggregateSteps(steps, N, K, { aggregate: 'sum', ...o }), N, K);
}

/** SS-CAM weights: softmax_k of the mean over the n noisy runs (minus a baseline, if given). */
export function ssCamWeights(samples: readonly ArrayLike<number>[], N: number, K: number, baseline?: ArrayLike<number>): Float64Array {
  return softmaxRows(aggregateSteps(samples, N, K, { aggregate: 'mean', baseline }), N, K);
}

/** Ablation-CAM weights: w_k = (y_c − y_c^(k))/y_c, y [N], ablated [N, K]. */
export function ablationCamWeights(y: ArrayLike<number>, ablated: ArrayLike<number>, N: number, K: number): Float64Array {
  return Float64Array.from({ length: N * K }, (_, i) => {
    const yc = y[Math.floor(i / K)];
    return (yc - ablated[i]) / yc;
  });
}

/** The map of a weight rule: raw = Σ_k w_k A_k (relu at finishing). */
export function weightedCam(A: Feat, weights: Float64Array): CamRef {
  return { raw: weightedSum(A, weights), weights };
}

/** torch-cam's finishing: u(relu(raw)) with eps 1e-8 at the layer's resolution (it does not upsample). */
export function finishTorchcam(raw: Maps, eps = MASK_EPS): Maps {
  return normalizeMaps(reluMaps(raw), eps);
}

/** y_c of image n's model on one masked input [C·H·W] (a GPU model, or a toy one). */
export type ScoreFn = (n: number, input: Float64Array) => number;

export interface SweepOptions extends MaskOptions {
  /** Per step, the coefficient (IS-CAM); default one step with coefficient 1. */
  coefficients?: ArrayLike<number>;
  /** Noise δ added to M_k in step i, [H·W] (SS-CAM); default none. */
  noise?: (step: number, n: number, k: number) => ArrayLike<number>;
  /** Number of steps when only `noise` varies (SS-CAM's n). */
  steps?: number;
}

/**
 * The scores of a sweep: for every step i, image n and channel k, y_c(x_n ⊙ c_i·(M_k + δ_ink)).
 * Returns one [N, K] array per step. Score-CAM: defaults; IS-CAM: `coefficients`; SS-CAM:
 * `noise` and `steps`.
 */
export function sweepScores(A: Feat, x: ArrayLike<number>, xShape: readonly number[], score: ScoreFn, o: SweepOptions = {}): Float64Array[] {
  const [N, K] = A.shape;
  const [, , H, W] = xShape;
  const coeffs = o.coefficients ?? [1];
  const steps = o.coefficients ? coeffs.length : (o.steps ?? 1);
  const out: Float64Array[] = [];
  const masks: Float64Array[] = [];
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) masks.push(channelMask(A, n, k, H, W, o));
  for (let i = 0; i < steps; i++) {
    const s = new Float64Array(N * K);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) {
        const input = maskedInput(x, xShape, n, masks[n * K + k], { coefficient: coeffs[Math.min(i, coeffs.length - 1)], noise: o.noise?.(i, n, k) });
        s[n * K + k] = score(n, input);
      }
    out.push(s);
  }
  return out;
}

/**
 * The ablated scores y_c^(k): `scoreAblated(n, k)` runs the network's suffix from the layer
 * with channel k of image n set to 0 (the caller's model). [N, K].
 */
export function ablationScores(N: number, K: number, scoreAblated: (n: number, k: number) => number): Float64Array {
  return Float64Array.from({ length: N * K }, (_, i) => scoreAblated(Math.floor(i / K), i % K));
}
