/**
 * Float64 CPU references of the CAM-family methods of SPEC §1, written from the SPEC's
 * formulas (not from any library's code), for clarity rather than speed: the ground truth
 * that GPU implementations are tested against, itself checked against pytorch-grad-cam's
 * outputs in test/cam-reference.test.ts (fixtures: test/fixtures/cam/README.md).
 *
 * Layout: activations A and gradients g are flat NCHW arrays with shape [N, K, h, w]
 * (g = ∂y_c/∂A, image n with its own target). Raw maps are [N, h, w], channel weights
 * [N, K], final maps [N, H, W]. Nothing here applies relu or normalization unless its
 * name says so; `finishPgc` does the shared finishing steps.
 */
import { bilinearRef, type Arr } from './cpu.js';

export type Shape4 = [number, number, number, number];

/** A batch of feature maps (activations or gradients) at one layer. */
export interface Feat {
  data: Arr;
  shape: Shape4;
}

/** A batch of 2-D maps [N, h, w] (raw or final). */
export interface Maps {
  data: Float64Array;
  shape: [number, number, number];
}

/** A method's output before finishing: raw map, and channel weights where it has them. */
export interface CamRef {
  raw: Maps;
  /** [N, K] row-major, or null for methods without per-channel weights. */
  weights: Float64Array | null;
}

/** pytorch-grad-cam's epsilon in its per-map min-max normalization (scale_cam_image). */
export const PGC_EPS = 1e-7;
/** SPEC §0's epsilon in u(M). */
export const SPEC_EPS = 1e-8;

function dims(f: Feat): { N: number; K: number; h: number; w: number; hw: number } {
  const [N, K, h, w] = f.shape;
  return { N, K, h, w, hw: h * w };
}

function sameShape(a: Feat, b: Feat): void {
  if (a.shape.some((d, i) => d !== b.shape[i])) throw new Error(`shape mismatch [${a.shape}] vs [${b.shape}]`);
}

// ---------------------------------------------------------------------------------------
// Weighted sums and the weight rules
// ---------------------------------------------------------------------------------------

/** L = Σ_k w_k A_k (no relu). */
export function weightedSum(A: Feat, weights: ArrayLike<number>): Maps {
  const { N, K, h, w, hw } = dims(A);
  const out = new Float64Array(N * hw);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const wk = weights[n * K + k];
      const base = (n * K + k) * hw;
      for (let p = 0; p < hw; p++) out[n * hw + p] += wk * A.data[base + p];
    }
  return { data: out, shape: [N, h, w] };
}

/** L = Σ_k f(g_k, A_k) elementwise (no relu on the sum). */
function elementwiseSum(A: Feat, G: Feat, f: (g: number, a: number) => number): Maps {
  sameShape(A, G);
  const { N, K, h, w, hw } = dims(A);
  const out = new Float64Array(N * hw);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const base = (n * K + k) * hw;
      for (let p = 0; p < hw; p++) out[n * hw + p] += f(G.data[base + p], A.data[base + p]);
    }
  return { data: out, shape: [N, h, w] };
}

function perChannel(f: Feat, g: (n: number, k: number, base: number, hw: number) => number): Float64Array {
  const { N, K, hw } = dims(f);
  const out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = g(n, k, (n * K + k) * hw, hw);
  return out;
}

/** Activation-CAM: w_k = 1. */
export function activationCam(A: Feat): CamRef {
  const w = new Float64Array(A.shape[0] * A.shape[1]).fill(1);
  return { raw: weightedSum(A, w), weights: w };
}

/** Grad-CAM weights: w_k = mean over positions of g_k. */
export function gradCamWeights(G: Feat): Float64Array {
  return perChannel(G, (_n, _k, b, hw) => {
    let s = 0;
    for (let p = 0; p < hw; p++) s += G.data[b + p];
    return s / hw;
  });
}

export function gradCam(A: Feat, G: Feat): CamRef {
  sameShape(A, G);
  const w = gradCamWeights(G);
  return { raw: weightedSum(A, w), weights: w };
}

/** The Grad-CAM++ denominator epsilon (SPEC §1). */
export const GRADCAM_PP_EPS = 1e-6;

/**
 * Grad-CAM++ weights: α = g²/(2g² + (Σ_ab A_ab)·g³ + 1e-6) with α = 0 where g = 0, and
 * w_k = Σ_ij relu(g)·α (gradients of the score itself stand in for its exponential's).
 */
export function gradCamPlusPlusWeights(A: Feat, G: Feat): Float64Array {
  sameShape(A, G);
  return perChannel(A, (_n, _k, b, hw) => {
    let sumA = 0;
    for (let p = 0; p < hw; p++) sumA += A.data[b + p];
    let s = 0;
    for (let p = 0; p < hw; p++) {
      const g = G.data[b + p];
      if (g === 0) continue;
      const alpha = (g * g) / (2 * g * g + sumA * g * g * g + GRADCAM_PP_EPS);
      s += Math.max(g, 0) * alpha;
    }
    return s;
  });
}

export function gradCamPlusPlus(A: Feat, G: Feat): CamRef {
  const w = gradCamPlusPlusWeights(A, G);
  return { raw: weightedSum(A, w), weights: w };
}

/** The XGrad-CAM denominator epsilon (SPEC §1). */
export const XGRADCAM_EPS = 1e-7;

/** XGrad-CAM weights: w_k = Σ(g·A)/(ΣA + 1e-7). */
export function xGradCamWeights(A: Feat, G: Feat): Float64Array {
  sameShape(A, G);
  return perChannel(A, (_n, _k, b, hw) => {
    let num = 0;
    let den = 0;
    for (let p = 0; p < hw; p++) {
      num += G.data[b + p] * A.data[b + p];
      den += A.data[b + p];
    }
    return num / (den + XGRADCAM_EPS);
  });
}

export function xGradCam(A: Feat, G: Feat): CamRef {
  const w = xGradCamWeights(A, G);
  return { raw: weightedSum(A, w), weights: w };
}

/** HiResCAM: Σ_k g_k ⊙ A_k (the final relu is part of finishing). */
export function hiResCam(A: Feat, G: Feat): CamRef {
  return { raw: elementwiseSum(A, G, (g, a) => g * a), weights: null };
}

/** Grad-CAM element-wise: Σ_k relu(g_k ⊙ A_k). */
export function gradCamElementWise(A: Feat, G: Feat): CamRef {
  return { raw: elementwiseSum(A, G, (g, a) => Math.max(g * a, 0)), weights: null };
}

/** LayerCAM at one layer: Σ_k relu(g_k) ⊙ A_k. */
export function layerCam(A: Feat, G: Feat): CamRef {
  return { raw: elementwiseSum(A, G, (g, a) => Math.max(g, 0) * a), weights: null };
}

/** FEM's default k in the k-sigma threshold. */
export const FEM_K = 2;

/**
 * FEM weights (gradient-free): w_k = fraction of positions where A_k > mean(A_k) + k·std(A_k),
 * with the population standard deviation.
 */
export function femWeights(A: Feat, k = FEM_K): Float64Array {
  return perChannel(A, (_n, _c, b, hw) => {
    let mean = 0;
    for (let p = 0; p < hw; p++) mean += A.data[b + p];
    mean /= hw;
    let v = 0;
    for (let p = 0; p < hw; p++) v += (A.data[b + p] - mean) ** 2;
    const th = mean + k * Math.sqrt(v / hw);
    let count = 0;
    for (let p = 0; p < hw; p++) if (A.data[b + p] > th) count++;
    return count / hw;
  });
}

export function fem(A: Feat, k = FEM_K): CamRef {
  const w = femWeights(A, k);
  return { raw: weightedSum(A, w), weights: w };
}

// ---------------------------------------------------------------------------------------
// Eigen-decompositions
// ---------------------------------------------------------------------------------------

/**
 * Eigen-decomposition of a symmetric n×n matrix (row-major) by cyclic Jacobi rotations.
 * Returns eigenvalues (unsorted) and eigenvectors as the columns of `vectors` (row-major
 * n×n: component i of vector j is vectors[i*n + j]).
 */
export function symmetricEigen(s: ArrayLike<number>, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(s);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let diag = 0;
    for (let i = 0; i < n; i++) {
      diag += a[i * n + i] ** 2;
      for (let j = i + 1; j < n; j++) off += a[i * n + j] ** 2;
    }
    if (off <= 1e-30 * diag || off === 0) break;
    for (let p = 0; p < n - 1; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const sn = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p];
          const akq = a[k * n + q];
          a[k * n + p] = c * akp - sn * akq;
          a[k * n + q] = sn * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k];
          const aqk = a[q * n + k];
          a[p * n + k] = c * apk - sn * aqk;
          a[q * n + k] = sn * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - sn * vkq;
          v[k * n + q] = sn * vkp + c * vkq;
        }
      }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i];
  return { values, vectors: v };
}

/** The largest eigenvalue and its unit eigenvector (sign as the solver leaves it). */
export function topEigen(s: ArrayLike<number>, n: number): { value: number; vector: Float64Array } {
  const { values, vectors } = symmetricEigen(s, n);
  let j = 0;
  for (let i = 1; i < n; i++) if (values[i] > values[j]) j = i;
  const vec = new Float64Array(n);
  for (let i = 0; i < n; i++) vec[i] = vectors[i * n + j];
  return { value: values[j], vector: vec };
}

/**
 * How the sign of a principal projection is chosen: 'solver' leaves the eigen-solver's
 * arbitrary sign (like LAPACK's; compare up to sign); 'minmax' flips the projection when
 * |min| > |max| (pytorch-grad-cam's get_2d_projection_with_sign_correction);
 * 'largest-entry' makes the entry of largest magnitude positive (scikit-learn's svd_flip,
 * which its KernelPCA applies to the eigenvector).
 */
export type SignRule = 'solver' | 'minmax' | 'largest-entry';

function applySign(p: Float64Array, rule: SignRule): Float64Array {
  if (rule === 'solver') return p;
  let flip = false;
  if (rule === 'minmax') {
    let mn = Infinity;
    let mx = -Infinity;
    for (const x of p) {
      mn = Math.min(mn, x);
      mx = Math.max(mx, x);
    }
    flip = Math.abs(mn) > Math.abs(mx);
  } else {
    let best = 0;
    for (let i = 1; i < p.length; i++) if (Math.abs(p[i]) > Math.abs(p[best])) best = i;
    flip = p[best] < 0;
  }
  return flip ? p.map((x) => -x) : p;
}

/** Rows = positions (HW), columns = channels (K), each column centered over the positions. */
function centeredPositionsByChannels(f: Feat, n: number): Float64Array {
  const { K, hw } = dims(f);
  const m = new Float64Array(hw * K);
  for (let k = 0; k < K; k++) {
    const base = (n * K + k) * hw;
    let mean = 0;
    for (let p = 0; p < hw; p++) mean += f.data[base + p];
    mean /= hw;
    for (let p = 0; p < hw; p++) m[p * K + k] = f.data[base + p] - mean;
  }
  return m;
}

/**
 * Projection of one image's centered (HW × K) matrix M on its first right-singular
 * vector v₁: p = M v₁ (= σ₁ u₁), from the eigenvectors of the smaller Gram matrix.
 */
export function firstPrincipalProjection(m: Float64Array, rows: number, cols: number, sign: SignRule = 'solver'): Float64Array {
  const p = new Float64Array(rows);
  if (cols <= rows) {
    const g = new Float64Array(cols * cols);
    for (let i = 0; i < cols; i++)
      for (let j = i; j < cols; j++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += m[r * cols + i] * m[r * cols + j];
        g[i * cols + j] = s;
        g[j * cols + i] = s;
      }
    const { vector } = topEigen(g, cols);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += m[r * cols + c] * vector[c];
      p[r] = s;
    }
  } else {
    const g = new Float64Array(rows * rows);
    for (let i = 0; i < rows; i++)
      for (let j = i; j < rows; j++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += m[i * cols + c] * m[j * cols + c];
        g[i * rows + j] = s;
        g[j * rows + i] = s;
      }
    const { value, vector } = topEigen(g, rows);
    const sigma = Math.sqrt(Math.max(value, 0));
    for (let r = 0; r < rows; r++) p[r] = sigma * vector[r];
  }
  return applySign(p, sign);
}

function projectEach(f: Feat, one: (m: Float64Array, rows: number, cols: number) => Float64Array): Maps {
  const { N, K, h, w, hw } = dims(f);
  const out = new Float64Array(N * hw);
  for (let n = 0; n < N; n++) out.set(one(centeredPositionsByChannels(f, n), hw, K), n * hw);
  return { data: out, shape: [N, h, w] };
}

/** EigenCAM: the projection of the centered HW×K activation matrix on its first right-singular vector. */
export function eigenCam(A: Feat, sign: SignRule = 'solver'): CamRef {
  return { raw: projectEach(A, (m, r, c) => firstPrincipalProjection(m, r, c, sign)), weights: null };
}

/** EigenGrad-CAM: EigenCAM on g ⊙ A. */
export function eigenGradCam(A: Feat, G: Feat, sign: SignRule = 'solver'): CamRef {
  sameShape(A, G);
  const prod = new Float64Array(A.data.length);
  for (let i = 0; i < prod.length; i++) prod[i] = G.data[i] * A.data[i];
  return eigenCam({ data: prod, shape: A.shape }, sign);
}

/** Top kernel eigenvalues at or below this × n count as 0 (scikit-learn would keep the round-off). */
export const KPCA_ZERO_EIGENVALUE = 1e-12;

export interface KpcaOptions {
  /** Default 1/K (scikit-learn's default for gamma = None: one over the number of features). */
  gamma?: number;
  /** Sigmoid kernel offset; scikit-learn's KernelPCA default is 1. */
  coef0?: number;
  /** Default 'largest-entry', the sign scikit-learn's KernelPCA fixes. */
  sign?: SignRule;
}

/**
 * KPCA-CAM: the rows x_i of the centered HW×K activation matrix, the sigmoid kernel
 * k(x, y) = tanh(γ·x·y + coef0), the kernel matrix centered in feature space
 * (Kc = K − 1K − K1 + 1K1 with 1 = ones/n), and the projection of every position on the
 * first kernel principal component: a₁·√λ₁ (λ₁ clipped at 0).
 */
export function kpcaCam(A: Feat, o: KpcaOptions = {}): CamRef {
  const K = A.shape[1];
  const gamma = o.gamma ?? 1 / K;
  const coef0 = o.coef0 ?? 1;
  const sign = o.sign ?? 'largest-entry';
  const raw = projectEach(A, (m, n, cols) => {
    const k = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = i; j < n; j++) {
        let s = 0;
        for (let c = 0; c < cols; c++) s += m[i * cols + c] * m[j * cols + c];
        const v = Math.tanh(gamma * s + coef0);
        k[i * n + j] = v;
        k[j * n + i] = v;
      }
    const rowMean = new Float64Array(n);
    let all = 0;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += k[i * n + j];
      rowMean[i] = s / n;
      all += s;
    }
    all /= n * n;
    const kc = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) kc[i * n + j] = k[i * n + j] - rowMean[i] - rowMean[j] + all;
    const { value, vector } = topEigen(kc, n);
    const signed = applySign(vector, sign);
    // Kernel entries are O(1) (tanh); a top eigenvalue at round-off level means the
    // centered kernel is 0 (constant activations): return 0, not amplified noise.
    const scale = value > KPCA_ZERO_EIGENVALUE * n ? Math.sqrt(value) : 0;
    return signed.map((x) => x * scale);
  });
  return { raw, weights: null };
}

// ---------------------------------------------------------------------------------------
// Finer-CAM's target
// ---------------------------------------------------------------------------------------

/**
 * Finer-CAM's comparison classes for main class c: the classes at the given ranks
 * (default 1, 2, 3) when all classes are ordered by |y_j − y_c| ascending (rank 0 is c
 * itself). Ties are broken by class index.
 */
export function finerComparison(logits: ArrayLike<number>, c: number, ranks: readonly number[] = [1, 2, 3]): number[] {
  const idx = Array.from({ length: logits.length }, (_, j) => j);
  idx.sort((a, b) => Math.abs(logits[a] - logits[c]) - Math.abs(logits[b] - logits[c]) || a - b);
  return ranks.map((r) => idx[r]);
}

/** Finer-CAM's denominator epsilon (SPEC §1). */
export const FINER_EPS = 1e-9;

/**
 * Finer-CAM's target on one image's logits y: t = Σ_j p_j (y_c − α·y_j) / (Σ_j p_j + 1e-9)
 * over the comparison classes j, p = softmax(y) (not detached), and its gradient with
 * respect to the logits: the seed that backpropagates to the target layer.
 */
export function finerTarget(logits: ArrayLike<number>, c: number, comparison: readonly number[], alpha = 1): { value: number; seed: Float64Array } {
  const C = logits.length;
  let mx = -Infinity;
  for (let j = 0; j < C; j++) mx = Math.max(mx, logits[j]);
  const p = new Float64Array(C);
  let z = 0;
  for (let j = 0; j < C; j++) z += (p[j] = Math.exp(logits[j] - mx));
  for (let j = 0; j < C; j++) p[j] /= z;
  let num = 0;
  let S = 0;
  for (const j of comparison) {
    num += p[j] * (logits[c] - alpha * logits[j]);
    S += p[j];
  }
  const D = S + FINER_EPS;
  // ∂p_j/∂y_k = p_j(δ_jk − p_k)
  const seed = new Float64Array(C);
  for (let k = 0; k < C; k++) {
    let dNum = 0;
    let dS = 0;
    for (const j of comparison) {
      const dp = p[j] * ((j === k ? 1 : 0) - p[k]);
      dNum += dp * (logits[c] - alpha * logits[j]) + p[j] * ((k === c ? 1 : 0) - alpha * (k === j ? 1 : 0));
      dS += dp;
    }
    seed[k] = (dNum * D - num * dS) / (D * D);
  }
  return { value: num / D, seed };
}

// ---------------------------------------------------------------------------------------
// Finishing: relu, per-map min-max normalization, bilinear resize
// ---------------------------------------------------------------------------------------

export function reluMaps(m: Maps): Maps {
  return { data: m.data.map((x) => Math.max(x, 0)), shape: m.shape };
}

/** u(M) = (M − min M)/(max M − min M + eps), per map. */
export function normalizeMaps(m: Maps, eps = PGC_EPS): Maps {
  const [N, h, w] = m.shape;
  const hw = h * w;
  const out = new Float64Array(m.data.length);
  for (let n = 0; n < N; n++) {
    let mn = Infinity;
    let mx = -Infinity;
    for (let p = 0; p < hw; p++) {
      mn = Math.min(mn, m.data[n * hw + p]);
      mx = Math.max(mx, m.data[n * hw + p]);
    }
    for (let p = 0; p < hw; p++) out[n * hw + p] = (m.data[n * hw + p] - mn) / (mx - mn + eps);
  }
  return { data: out, shape: m.shape };
}

/** Bilinear resize with half-pixel centers (align_corners = false), border-clamped. */
export function resizeMaps(m: Maps, H: number, W: number): Maps {
  const r = bilinearRef(m.data, m.shape, H, W, { alignCorners: false });
  return { data: r.data, shape: [m.shape[0], H, W] };
}

/** The low-resolution normalized map: u(relu(raw)). */
export function lowresMap(raw: Maps, eps = PGC_EPS): Maps {
  return normalizeMaps(reluMaps(raw), eps);
}

/**
 * The final map as pytorch-grad-cam computes it for one layer: u(up(u(relu(raw)))) — it
 * normalizes, resizes, and normalizes again (its multi-layer aggregation step). Up to the
 * epsilons this equals u(up(relu(raw))) (`finishResizeFirst`), because up() is linear
 * with weights summing to 1; it does NOT equal up(u(relu(raw))) (`finishNoRenormalize`)
 * when a map's extremes lie inside the map (the resized map then never reaches them).
 */
export function finishPgc(raw: Maps, H: number, W: number, eps = PGC_EPS): Maps {
  return normalizeMaps(reluMaps(resizeMaps(lowresMap(raw, eps), H, W)), eps);
}

/** relu → up → u. */
export function finishResizeFirst(raw: Maps, H: number, W: number, eps = PGC_EPS): Maps {
  return normalizeMaps(resizeMaps(reluMaps(raw), H, W), eps);
}

/** relu → u → up, without normalizing after the resize. */
export function finishNoRenormalize(raw: Maps, H: number, W: number, eps = PGC_EPS): Maps {
  return resizeMaps(lowresMap(raw, eps), H, W);
}

/**
 * pytorch-grad-cam's multi-layer aggregation (any method): per layer relu → u → up to the
 * input size; mean over layers; u again.
 */
export function aggregatePgcMean(raws: readonly Maps[], H: number, W: number, eps = PGC_EPS): Maps {
  const per = raws.map((r) => resizeMaps(lowresMap(r, eps), H, W));
  const out = new Float64Array(per[0].data.length);
  for (const m of per) for (let i = 0; i < out.length; i++) out[i] += Math.max(m.data[i], 0) / per.length;
  return normalizeMaps({ data: out, shape: per[0].shape }, eps);
}

export interface LayerFusionOptions {
  /** LayerCAM's γ in tanh(γ·L/max L). Default 2. */
  gamma?: number;
  /** Which layers get the tanh scaling: 'shallow' (every layer but the last, SPEC default) or 'all'. */
  scale?: 'shallow' | 'all';
  eps?: number;
}

/**
 * Multi-layer LayerCAM fusion as SPEC §1 states it: each layer's map L_l = relu(Σ_k
 * relu(g_k) ⊙ A_k) is resized to the input size, shallow layers (all but the last one
 * given, the deepest) are scaled by tanh(γ·L/max L), the maps are fused by an elementwise
 * max, and the fused map is normalized. A map whose max is 0 stays 0.
 */
export function layerCamFusion(layers: readonly { A: Feat; G: Feat }[], H: number, W: number, o: LayerFusionOptions = {}): Maps {
  const gamma = o.gamma ?? 2;
  const scaleAll = o.scale === 'all';
  if (layers.length === 0) throw new Error('layerCamFusion: no layers');
  let fused = new Float64Array(0);
  let shape: [number, number, number] = [0, H, W];
  for (let l = 0; l < layers.length; l++) {
    const { A, G } = layers[l];
    const up = resizeMaps(reluMaps(layerCam(A, G).raw), H, W);
    shape = up.shape;
    const hw = H * W;
    const d = up.data;
    if (scaleAll || l < layers.length - 1) {
      for (let n = 0; n < up.shape[0]; n++) {
        let mx = 0;
        for (let p = 0; p < hw; p++) mx = Math.max(mx, d[n * hw + p]);
        for (let p = 0; p < hw; p++) d[n * hw + p] = mx > 0 ? Math.tanh((gamma * d[n * hw + p]) / mx) : 0;
      }
    }
    if (l === 0) fused = Float64Array.from(d);
    else for (let i = 0; i < d.length; i++) fused[i] = Math.max(fused[i], d[i]);
  }
  return normalizeMaps({ data: fused, shape }, o.eps ?? PGC_EPS);
}

/** Every single-layer method of this module by pytorch-grad-cam's class name. */
export const CAM_METHODS: Record<string, (A: Feat, G: Feat) => CamRef> = {
  GradCAM: gradCam,
  GradCAMPlusPlus: gradCamPlusPlus,
  XGradCAM: xGradCam,
  HiResCAM: hiResCam,
  GradCAMElementWise: gradCamElementWise,
  LayerCAM: layerCam,
  EigenCAM: (A) => eigenCam(A, 'solver'),
  EigenGradCAM: (A, G) => eigenGradCam(A, G, 'solver'),
  KPCA_CAM: (A) => kpcaCam(A),
  FEM: (A) => fem(A),
};
