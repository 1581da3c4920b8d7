import type { Activation } from '../ops/activation.js';
import type { Sym } from '../ops/graph.js';
import type { Tape } from '../ops/tape.js';
import { hostTensor } from '../runtime/host-tensor.js';

/**
 * CAM math as tape ops, so that a method compiles into the same plan as the forward and
 * backward pass it reads (and Opti-CAM can differentiate through it). Maps are [N, h, w],
 * activations and gradients [N, K, h, w].
 */

/** SPEC §0 u(M) per map, with PGC scale_cam_image epsilon 1e-7 (SPEC writes 1e-8) so maps match PGC. */
export const NORMALIZE_EPS = 1e-7;

export function act(t: Tape, x: Sym, kind: Activation): Sym {
  return t.activation(x, kind);
}

export function relu(t: Tape, x: Sym): Sym {
  return t.activation(x, { kind: 'relu' });
}

export function scalar(t: Tape, v: number): Sym {
  return t.scalar(v);
}

/** Axes 1…rank−1: everything of one map or one image. */
export function perItemAxes(x: Sym): number[] {
  return x.shape.slice(1).map((_, i) => i + 1);
}

/** u(M) per item: min-max normalization with the shared epsilon. */
export function normalize01(t: Tape, m: Sym, eps = NORMALIZE_EPS): Sym {
  const axes = perItemAxes(m);
  const lo = t.reduce('min', m, axes);
  const hi = t.reduce('max', m, axes);
  return t.div(t.sub(m, lo), t.add(t.sub(hi, lo), t.scalar(eps)));
}

/** Σ_k w_k A_k: weights [N, K] (or [N, K, 1, 1]) against activations [N, K, h, w] → [N, h, w]. */
export function weightedSum(t: Tape, a: Sym, w: Sym): Sym {
  const [n, k, h, wd] = a.shape;
  const w4 = w.shape.length === 4 ? w : t.reshape(w, [n, k, 1, 1]);
  return t.reshape(t.reduce('sum', t.mul(a, w4), [1]), [n, h, wd]);
}

/** Σ_k over the channel axis of [N, K, h, w] → [N, h, w]. */
export function channelSum(t: Tape, x: Sym): Sym {
  const [n, , h, w] = x.shape;
  return t.reshape(t.reduce('sum', x, [1]), [n, h, w]);
}

/** max over the channel axis of [N, K, h, w] → [N, h, w]. */
export function channelMax(t: Tape, x: Sym): Sym {
  const [n, , h, w] = x.shape;
  return t.reshape(t.reduce('max', x, [1]), [n, h, w]);
}

/** [N, K, h, w] → [N, K] by a spatial reduction. */
export function spatial(t: Tape, kind: 'sum' | 'mean' | 'max' | 'min', x: Sym): Sym {
  const [n, k] = x.shape;
  return t.reshape(t.reduce(kind, x, [2, 3]), [n, k]);
}

/** Bilinear resize of maps [N, h, w] to [N, H, W] (half-pixel centers unless alignCorners). */
export function upsample(t: Tape, m: Sym, size: readonly [number, number], alignCorners = false): Sym {
  const [n, h, w] = m.shape;
  if (h === size[0] && w === size[1]) return m;
  const r = t.resize(t.reshape(m, [n, 1, h, w]), [size[0], size[1]], { alignCorners });
  return t.reshape(r, [n, size[0], size[1]]);
}

/**
 * The final map of one layer's raw map, as PGC computes it: relu, u(), resize to the input
 * size; several layers are then averaged and normalized again (finalMap).
 */
export function layerMap(t: Tape, raw: Sym, size: readonly [number, number]): Sym {
  return upsample(t, normalize01(t, relu(t, raw)), size);
}

/** The mean of the per-layer maps (each relu'd, in [0, 1]), normalized: PGC's aggregation. */
export function finalMap(t: Tape, perLayer: readonly Sym[]): Sym {
  let sum = perLayer[0];
  for (const m of perLayer.slice(1)) sum = t.add(sum, m);
  const mean = perLayer.length > 1 ? t.mul(sum, t.scalar(1 / perLayer.length)) : sum;
  return normalize01(t, relu(t, mean));
}

/**
 * LayerCAM's own multi-layer fusion (Jiang et al., SPEC §1): each layer's relu'd map resized
 * to the input, the shallow ones (all but the last given) scaled by tanh(2·L / max L), fused
 * by an elementwise max, then normalized.
 */
export function fuseLayerCam(t: Tape, raws: readonly Sym[], size: readonly [number, number], gamma = 2): Sym {
  let fused: Sym | null = null;
  raws.forEach((raw, l) => {
    let m = upsample(t, relu(t, raw), size);
    if (l < raws.length - 1) {
      const peak = t.add(t.reduce('max', m, perItemAxes(m)), t.scalar(1e-30));
      m = act(t, t.mul(t.div(m, peak), t.scalar(gamma)), { kind: 'tanh' });
    }
    fused = fused ? t.where(relu(t, t.sub(m, fused)), m, fused) : m;
  });
  return normalize01(t, fused!);
}

/** A constant [rows, cols] identity, for diagonals. */
export function eye(t: Tape, n: number): Sym {
  const d = new Float32Array(n * n);
  for (let i = 0; i < n; i++) d[i * n + i] = 1;
  return t.constant(hostTensor('float32', [n, n], d));
}

/**
 * A fixed start vector for power iterations: deterministic, and (unlike the ones vector) not
 * orthogonal to the dominant eigenvector of a Gram matrix of centered data.
 */
export function startVector(t: Tape, n: number): Sym {
  const d = Float32Array.from({ length: n }, (_, i) => 1 + 0.5 * Math.sin(12.9898 * (i + 1)) + 0.25 * Math.cos(78.233 * (i + 1)));
  return t.constant(hostTensor('float32', [n, 1], d));
}

/**
 * The dominant eigenvector of each symmetric positive semi-definite matrix of G [N, m, m]:
 * G is squared `squarings` times (G^(2^s), normalized by its trace each time, so nothing
 * overflows and the dominant direction wins by (λ1/λ2)^(2^s)), then applied to a fixed start
 * vector. Returns [N, m, 1], not normalized.
 */
export function dominantEigenvector(t: Tape, g: Sym, squarings = 12): Sym {
  const m = g.shape[1];
  const id = eye(t, m);
  const trace = (x: Sym) => t.add(t.reduce('sum', t.mul(x, id), [1, 2]), t.scalar(1e-30));
  let p = t.div(g, trace(g));
  for (let i = 0; i < squarings; i++) {
    const sq = t.matmul(p, p);
    p = t.div(sq, trace(sq));
  }
  return t.matmul(p, startVector(t, m));
}

/** Euclidean norm over every axis but the first, kept as [N, 1, …]. */
export function norm(t: Tape, x: Sym): Sym {
  return act(t, t.reduce('sum', t.mul(x, x), perItemAxes(x)), { kind: 'sqrt' });
}

/**
 * +1 or −1 per map, so that multiplying by it makes |max| ≥ |min| (PGC's
 * get_2d_projection_with_sign_correction: flip when |min| > |max|, i.e. when max + min < 0).
 */
export function signCorrection(t: Tape, m: Sym): Sym {
  const axes = perItemAxes(m);
  const s = t.add(t.reduce('max', m, axes), t.reduce('min', m, axes));
  // 1 where max + min < 0, else 0; then 1 − 2·that.
  const negative = t.where(relu(t, t.mul(s, t.scalar(-1))), t.broadcast(t.scalar(1), s.shape), t.broadcast(t.scalar(0), s.shape));
  return t.sub(t.broadcast(t.scalar(1), s.shape), t.mul(negative, t.scalar(2)));
}

/**
 * EigenCAM's projection of activations X [N, K, h, w]: rows are positions (h·w × K), centered
 * per channel; the map is X·v1 with v1 the first right-singular vector, computed as Xᵀu/‖Xᵀu‖
 * from the dominant eigenvector u of the h·w × h·w Gram matrix X·Xᵀ, then sign-corrected.
 */
export function eigenProjection(t: Tape, x: Sym): Sym {
  const [n, k, h, w] = x.shape;
  const hw = h * w;
  // [N, K, hw]: channels as rows; centering over positions is per row here.
  const xk = t.reshape(x, [n, k, hw]);
  const centered = t.sub(xk, t.reduce('mean', xk, [2]));
  // Gram over positions: (hw × K)(K × hw) = Xcᵀ·Xc with Xc [K, hw].
  const gram = t.matmul(centered, centered, { transA: true });
  const u = dominantEigenvector(t, gram);
  const v = t.matmul(centered, u); // [N, K, 1] = Xᵀu (X = Xcᵀ)
  const vhat = t.div(v, t.add(norm(t, v), t.scalar(1e-30)));
  const proj = t.reshape(t.matmul(centered, vhat, { transA: true }), [n, h, w]);
  return t.mul(proj, signCorrection(t, proj));
}

/** Channels × positions of activations [N, K, h, w], each channel centered over the positions: [N, K, h·w]. */
function centeredChannels(t: Tape, x: Sym): Sym {
  const [n, k, h, w] = x.shape;
  const xk = t.reshape(x, [n, k, h * w]);
  return t.sub(xk, t.reduce('mean', xk, [2]));
}

/** ±1 per item: the sign of its largest-magnitude entry (scikit-learn's svd_flip convention). */
function largestEntrySign(t: Tape, v: Sym): Sym {
  const [n, m] = [v.shape[0], v.shape.slice(1).reduce((p, q) => p * q, 1)];
  const flat = t.reshape(v, [n, m]);
  const pick = t.onehotArgmax(act(t, flat, { kind: 'abs' }));
  const at = t.reduce('sum', t.mul(pick, flat), [1]);
  return t.div(at, t.add(act(t, at, { kind: 'abs' }), t.scalar(1e-30)));
}

/** Relative size of float32 round-off in a sigmoid kernel's eigenvalues, per position. */
const KPCA_ROUNDOFF = 1e-5;

/**
 * KPCA-CAM's projection (PGC get_2d_projection_kernel, scikit-learn KernelPCA defaults): the
 * centered positions × channels matrix X, the sigmoid kernel tanh(γ·X·Xᵀ + 1) with γ = 1/K,
 * the kernel matrix double-centered, its top eigenpair (λ, u) — by repeated squaring of the
 * matrix shifted by a Gershgorin bound, since a sigmoid kernel is not positive semi-definite
 * and the largest eigenvalue, not the largest in magnitude, is wanted — and u·√λ with u's
 * largest-magnitude entry positive.
 */
export function kernelProjection(t: Tape, x: Sym, gamma?: number): Sym {
  const [n, k, h, w] = x.shape;
  const m = h * w;
  // With X the positions × channels matrix (rows: positions), X·Xᵀ = Cᵀ·C for C = centered channels.
  const c = centeredChannels(t, x);
  const kern = act(t, t.add(t.mul(t.matmul(c, c, { transA: true }), t.scalar(gamma ?? 1 / k)), t.scalar(1)), { kind: 'tanh' });
  const rowMean = t.reduce('mean', kern, [2]);
  const colMean = t.reduce('mean', kern, [1]);
  const all = t.reduce('mean', kern, [1, 2]);
  const kc = t.add(t.sub(t.sub(kern, rowMean), colMean), all);
  const bound = t.reduce('max', t.reduce('sum', act(t, kc, { kind: 'abs' }), [2]), [1]);
  const shifted = t.add(kc, t.mul(eye(t, m), bound));
  const u0 = dominantEigenvector(t, shifted, 16);
  const u = t.div(u0, t.add(norm(t, u0), t.scalar(1e-30)));
  const lambda = t.reduce('sum', t.mul(u, t.matmul(kc, u)), [1, 2]);
  // Eigenvalues within float32 round-off of the kernel (|k| ≤ 1, m positions) are zero: a
  // degenerate kernel (constant activations) gives a zero map, not amplified noise.
  const significant = t.where(relu(t, t.sub(lambda, t.scalar(KPCA_ROUNDOFF * m))), lambda, t.broadcast(t.scalar(0), lambda.shape));
  const scale = act(t, significant, { kind: 'sqrt' });
  const proj = t.reshape(t.mul(u, scale), [n, m]);
  return t.reshape(t.mul(proj, largestEntrySign(t, proj)), [n, h, w]);
}

/**
 * Finer-CAM's objective per row (PGC FinerWeightedTarget): y = Σ_j p_j (y_c − α·y_j) /
 * (Σ_j p_j + 1e-9) over the comparison classes j — the three classes nearest to the main
 * class c in logit (ranks 1–3 of |y_j − y_c|; ties to the lower index) — with p = softmax(y)
 * not detached, as PGC does. `main` is the one-hot [N, C] of c. Returns [N, 1].
 */
export function finerObjective(t: Tape, logits: Sym, main: Sym, alpha = 1, ranks = 3): Sym {
  const yc = t.reduce('sum', t.mul(logits, main), [1]);
  let distance = t.add(act(t, t.sub(logits, yc), { kind: 'abs' }), t.mul(main, t.scalar(1e30)));
  let chosen: Sym | null = null;
  for (let r = 0; r < ranks; r++) {
    const nearest = t.onehotArgmax(t.mul(distance, t.scalar(-1)));
    chosen = chosen ? t.add(chosen, nearest) : nearest;
    distance = t.add(distance, t.mul(nearest, t.scalar(1e30)));
  }
  const p = t.mul(t.softmax(logits, -1), chosen!);
  const num = t.reduce('sum', t.mul(p, t.sub(yc, t.mul(logits, t.scalar(alpha)))), [1]);
  return t.div(num, t.add(t.reduce('sum', p, [1]), t.scalar(1e-9)));
}
