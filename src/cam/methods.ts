import type { Sym } from '../ops/graph.js';
import type { PolyVariant } from './polycam.js';
import type { Tape } from '../ops/tape.js';
import { hostTensor } from '../runtime/host-tensor.js';
import { gaussian } from './random.js';
import { act, channelMax, channelSum, eigenProjection, kernelProjection, normalize01, relu, spatial, weightedSum } from './math.js';

/** What a method reads at one target layer. */
export interface LayerInputs {
  /** Activations A [N, K, h, w]. */
  a: Sym;
  /** ∂y_c/∂A [N, K, h, w] for the method's target, when the method needs gradients. */
  g: Sym | null;
  /** For CAM: the classifier's weight rows of each image's target, [N, K]. */
  classifierWeights: () => Sym;
  /** Uniform values in [−1, 1] of shape [N, K] from the seeded generator (Random-CAM). */
  uniformWeights: () => Sym;
  /** The model input x [N, C, H, W]. */
  x: Sym;
  /** ∂y_c/∂x (recorded on first use; shares the backward pass of the layer gradients). */
  inputGradient: () => Sym;
  /** Guided Backprop's ∂y_c/∂x: a second backward pass with the guided ReLU rule. */
  guidedInputGradient: () => Sym;
  /** The Grad-CAM map of this layer at input size, [N, H, W] (for Guided Grad-CAM). */
  gradCamMap: () => Sym;
  /**
   * Σ_s w_s·(g^p for each power p, g the gradient at this layer or at the input) over S transformed
   * copies of each image (noisy, or on a path), with the powers of the gradient asked for:
   * the forward and backward passes of the copies run in the same program, in groups that fit.
   */
  sampled: (family: SampleFamily, at: 'layer' | 'input', powers: readonly number[]) => Sym[];
}

/** Transformed copies of each image whose gradients a method averages. */
export interface SampleFamily {
  name: string;
  samples: number;
  /** The copy s of x ([n, …]): noise or a point on a path. */
  transform: (t: Tape, x: Sym, s: number, key: Sym) => Sym;
  /** Weight of copy s in the sum. */
  weight: (s: number) => number;
}

export interface LayerResult {
  /** The map before relu and normalization, [N, h, w]. */
  raw: Sym;
  /** Channel weights [N, K], where the method has them. */
  weights: Sym | null;
  /** Per-channel input attribution [N, C, H, W] (gradient baselines). */
  attribution?: Sym;
}

/**
 * Which backward pass a method reads: none, the target class's (shared by every such method),
 * or Finer-CAM's comparison objective (its own backward pass, on the same forward).
 */
export type MethodTarget = 'none' | 'class' | 'finer';

/**
 * One saliency method of the one-forward / one-backward family, declared once: its name,
 * what it needs, and how it records its map on the tape from a layer's values.
 */
export interface CamMethod {
  name: string;
  title: string;
  /** 'class': reads ∂y_c/∂A for each image's target (shared by every such method); 'none': activations only. */
  needs: MethodTarget;
  /** Whether it has channel weights w_k (returned beside the map). */
  hasWeights: boolean;
  /** SPEC §1 reference for the method. */
  reference: string;
  record(t: Tape, l: LayerInputs): LayerResult;
  /**
   * The final map [N, H, W] when the method defines it directly instead of by finishing its
   * raw map per layer (Fake-CAM; the gradient baselines, whose raw map is at input size).
   */
  final?: (t: Tape, raw: Sym, size: readonly [number, number]) => Sym;
  /** Computed once from the input, not per target layer (the gradient baselines). */
  inputLevel?: true;
  /** A score sweep over the first layer's channels (src/cam/sweeps.ts), run after the shared pass. */
  sweep?: 'scorecam' | 'sscam' | 'iscam' | 'ablationcam' | 'pixabcam' | 'rise' | 'occlusion' | 'opticam' | 'polycam';
  /** Poly-CAM's variant (src/cam/polycam.ts). */
  polyVariant?: PolyVariant;
}

const g = (l: LayerInputs): Sym => {
  if (!l.g) throw new Error('internal: a gradient method ran without gradients');
  return l.g;
};

/** Σ_ij relu(g)·α with Grad-CAM++'s α = g²/(2g² + (Σ_ab A_ab)·g³ + 1e-6). */
function gradCamPlusPlusWeights(t: Tape, a: Sym, grad: Sym): Sym {
  const [n, k] = a.shape;
  const g2 = t.mul(grad, grad);
  const g3 = t.mul(g2, grad);
  const sumA = t.reshape(spatial(t, 'sum', a), [n, k, 1, 1]);
  const alpha = t.div(g2, t.add(t.add(t.mul(g2, t.scalar(2)), t.mul(sumA, g3)), t.scalar(1e-6)));
  return spatial(t, 'sum', t.mul(relu(t, grad), alpha));
}

/** Grad-CAM++'s weights from (averaged) powers of the gradient. */
function gradCamPlusPlusFromPowers(t: Tape, a: Sym, g1: Sym, g2: Sym, g3: Sym): Sym {
  const [n, k] = a.shape;
  const sumA = t.reshape(spatial(t, 'sum', a), [n, k, 1, 1]);
  const alpha = t.div(g2, t.add(t.add(t.mul(g2, t.scalar(2)), t.mul(sumA, g3)), t.scalar(1e-6)));
  return spatial(t, 'sum', t.mul(relu(t, g1), alpha));
}

/** Per-image max − min of x [n, …], kept as [n, 1, …]. */
function range(t: Tape, x: Sym): Sym {
  const axes = x.shape.slice(1).map((_, i) => i + 1);
  return t.sub(t.reduce('max', x, axes), t.reduce('min', x, axes));
}

const SMOOTH_GRADCAM_PP: SampleFamily = {
  name: 'smoothgradcampp',
  samples: 4,
  transform: (t, x, s, key) => t.add(x, gaussian(t, key, x.shape, SMOOTHING_SEED, s, 0, 0.3)),
  weight: () => 1 / 4,
};

const SMOOTHGRAD: SampleFamily = {
  name: 'smoothgrad',
  samples: 50,
  transform: (t, x, s, key) => t.add(x, t.mul(gaussian(t, key, x.shape, SMOOTHING_SEED + 1, s, 0, 1), t.mul(range(t, x), t.scalar(0.15)))),
  weight: () => 1 / 50,
};

/** 50 points α = s/49 on the straight path from the zero baseline, trapezoid weights. */
const INTEGRATED_GRADIENTS: SampleFamily = {
  name: 'ig',
  samples: 50,
  transform: (t, x, s) => t.mul(x, t.scalar(s / 49)),
  weight: (s) => (s === 0 || s === 49 ? 0.5 : 1) / 49,
};

/** Noise streams are keyed by (this seed + family, copy, image): reproducible and split-independent. */
const SMOOTHING_SEED = 0x5eed;

export const METHODS: readonly CamMethod[] = [
  {
    name: 'activationcam',
    title: 'Activation-CAM',
    hasWeights: false,
    needs: 'none',
    reference: 'Pixab-CAM seed §3.2: w_k = 1',
    record: (t, l) => ({ raw: channelSum(t, l.a), weights: null }),
  },
  {
    name: 'cam',
    title: 'CAM',
    hasWeights: true,
    needs: 'none',
    reference: 'Zhou et al.: w_k = classifier weight of class c (GAP → linear heads)',
    record: (t, l) => {
      const w = l.classifierWeights();
      return { raw: weightedSum(t, l.a, w), weights: w };
    },
  },
  {
    name: 'gradcam',
    title: 'Grad-CAM',
    hasWeights: true,
    needs: 'class',
    reference: 'PGC grad_cam.py: w_k = mean_ij g',
    record: (t, l) => {
      const w = spatial(t, 'mean', g(l));
      return { raw: weightedSum(t, l.a, w), weights: w };
    },
  },
  {
    name: 'gradcam++',
    title: 'Grad-CAM++',
    hasWeights: true,
    needs: 'class',
    reference: 'PGC grad_cam_plusplus.py',
    record: (t, l) => {
      const w = gradCamPlusPlusWeights(t, l.a, g(l));
      return { raw: weightedSum(t, l.a, w), weights: w };
    },
  },
  {
    name: 'xgradcam',
    title: 'XGrad-CAM',
    hasWeights: true,
    needs: 'class',
    reference: 'PGC xgrad_cam.py: w_k = Σ(g·A)/(ΣA + 1e-7)',
    record: (t, l) => {
      const w = t.div(spatial(t, 'sum', t.mul(g(l), l.a)), t.add(spatial(t, 'sum', l.a), t.scalar(1e-7)));
      return { raw: weightedSum(t, l.a, w), weights: w };
    },
  },
  {
    name: 'hirescam',
    title: 'HiResCAM',
    hasWeights: false,
    needs: 'class',
    reference: 'PGC hirescam.py: Σ_k g ⊙ A',
    record: (t, l) => ({ raw: channelSum(t, t.mul(g(l), l.a)), weights: null }),
  },
  {
    name: 'gradcamelementwise',
    title: 'Grad-CAM element-wise',
    hasWeights: false,
    needs: 'class',
    reference: 'PGC grad_cam_elementwise.py: Σ_k relu(g ⊙ A)',
    record: (t, l) => ({ raw: channelSum(t, relu(t, t.mul(g(l), l.a))), weights: null }),
  },
  {
    name: 'layercam',
    title: 'LayerCAM',
    hasWeights: false,
    needs: 'class',
    reference: 'PGC layer_cam.py: Σ_k relu(g) ⊙ A',
    record: (t, l) => ({ raw: channelSum(t, t.mul(relu(t, g(l)), l.a)), weights: null }),
  },
  {
    name: 'eigencam',
    title: 'EigenCAM',
    hasWeights: false,
    needs: 'none',
    reference: 'PGC utils/svd_on_activations.py: first principal component of the centered activations, sign-corrected',
    record: (t, l) => ({ raw: eigenProjection(t, l.a), weights: null }),
  },
  {
    name: 'eigengradcam',
    title: 'EigenGrad-CAM',
    hasWeights: false,
    needs: 'class',
    reference: 'PGC eigen_grad_cam.py: EigenCAM of g ⊙ A',
    record: (t, l) => ({ raw: eigenProjection(t, t.mul(g(l), l.a)), weights: null }),
  },
  {
    name: 'fem',
    title: 'FEM',
    hasWeights: true,
    needs: 'none',
    reference: 'PGC fem.py: w_k = mean_ij [A > mean + 2·std]',
    record: (t, l) => {
      const [n, k] = l.a.shape;
      const mean = t.reduce('mean', l.a, [2, 3]);
      const centered = t.sub(l.a, mean);
      const std = act(t, t.reduce('mean', t.mul(centered, centered), [2, 3]), { kind: 'sqrt' });
      const over = t.sub(l.a, t.add(mean, t.mul(std, t.scalar(2))));
      const mask = t.where(relu(t, over), t.broadcast(t.scalar(1), over.shape), t.broadcast(t.scalar(0), over.shape));
      const w = t.reshape(t.reduce('mean', mask, [2, 3]), [n, k]);
      return { raw: weightedSum(t, l.a, w), weights: w };
    },
  },
  {
    name: 'kpcacam',
    title: 'KPCA-CAM',
    hasWeights: false,
    needs: 'none',
    reference: 'PGC kpca_cam.py: first kernel principal component (sigmoid kernel, γ = 1/K, coef0 = 1) of the centered activations',
    record: (t, l) => ({ raw: kernelProjection(t, l.a), weights: null }),
  },
  {
    name: 'finercam',
    title: 'Finer-CAM',
    hasWeights: true,
    needs: 'finer',
    reference: 'PGC finer_cam.py: a gradient CAM (Grad-CAM by default, option finerBase) of Σ_j p_j (y_c − y_j)/(Σ_j p_j + 1e-9) over the 3 nearest classes',
    // explain() runs the wrapped method's recording on this objective's gradients.
    record: () => {
      throw new Error('internal: Finer-CAM records through the method it wraps');
    },
  },
  {
    name: 'fakecam',
    title: 'Fake-CAM',
    hasWeights: false,
    needs: 'none',
    reference: 'seed 003 (after Poppi et al.): 1 everywhere but 0 at the top-left pixel; a baseline that games AD/AI',
    record: (t, l) => {
      const [n, , h, w] = l.a.shape;
      return { raw: fakeMap(t, n, h, w), weights: null };
    },
    final: (t, raw, size) => fakeMap(t, raw.shape[0], size[0], size[1]),
  },
  {
    name: 'saliency',
    title: 'Saliency',
    needs: 'class',
    hasWeights: false,
    inputLevel: true,
    reference: 'CAPTUM Saliency(abs=True): max over channels of |∂y_c/∂x|',
    record: (t, l) => {
      const attribution = act(t, l.inputGradient(), { kind: 'abs' });
      return { raw: channelMax(t, attribution), weights: null, attribution };
    },
    final: (t, raw) => normalize01(t, raw),
  },
  {
    name: 'inputxgradient',
    title: 'Input × Gradient',
    needs: 'class',
    hasWeights: false,
    inputLevel: true,
    reference: 'CAPTUM InputXGradient: x ⊙ ∂y_c/∂x; map: |Σ_c| normalized',
    record: (t, l) => {
      const attribution = t.mul(l.x, l.inputGradient());
      return { raw: channelSum(t, attribution), weights: null, attribution };
    },
    final: (t, raw) => normalize01(t, act(t, raw, { kind: 'abs' })),
  },
  {
    name: 'guidedbackprop',
    title: 'Guided Backprop',
    needs: 'class',
    hasWeights: false,
    inputLevel: true,
    reference: 'CAPTUM GuidedBackprop: ReLU gradients pass only where the incoming gradient is positive; map: max_c |·|',
    record: (t, l) => {
      const attribution = l.guidedInputGradient();
      return { raw: channelMax(t, act(t, attribution, { kind: 'abs' })), weights: null, attribution };
    },
    final: (t, raw) => normalize01(t, raw),
  },
  {
    name: 'guidedgradcam',
    title: 'Guided Grad-CAM',
    needs: 'class',
    hasWeights: false,
    inputLevel: true,
    reference: 'CAPTUM GuidedGradCam: Guided Backprop ⊙ the Grad-CAM map upsampled to the input; map: max_c |·|',
    record: (t, l) => {
      const [n, , h, w] = l.x.shape;
      const attribution = t.mul(l.guidedInputGradient(), t.reshape(l.gradCamMap(), [n, 1, h, w]));
      return { raw: channelMax(t, act(t, attribution, { kind: 'abs' })), weights: null, attribution };
    },
    final: (t, raw) => normalize01(t, raw),
  },
  {
    name: 'smoothgradcam++',
    title: 'Smooth Grad-CAM++',
    needs: 'class',
    hasWeights: true,
    reference: 'TC SmoothGradCAMpp (SPEC: Grad-CAM++ with g, g², g³ averaged over 4 copies + N(0, 0.3²))',
    record: (t, l) => {
      const [g1, g2, g3] = l.sampled(SMOOTH_GRADCAM_PP, 'layer', [1, 2, 3]);
      const w = gradCamPlusPlusFromPowers(t, l.a, g1, g2, g3);
      return { raw: weightedSum(t, l.a, w), weights: w };
    },
  },
  {
    name: 'smoothgrad',
    title: 'SmoothGrad',
    needs: 'class',
    hasWeights: false,
    inputLevel: true,
    reference: 'CAPTUM NoiseTunnel(Saliency), smoothgrad: mean |∂y_c/∂x| over 50 copies + N(0, σ²), σ = 0.15·(max x − min x); map max_c',
    record: (t, l) => {
      const [mean] = l.sampled(SMOOTHGRAD, 'input', [1]);
      return { raw: channelMax(t, act(t, mean, { kind: 'abs' })), weights: null, attribution: mean };
    },
    final: (t, raw) => normalize01(t, raw),
  },
  {
    name: 'integratedgradients',
    title: 'Integrated Gradients',
    needs: 'class',
    hasWeights: false,
    inputLevel: true,
    reference: 'CAPTUM IntegratedGradients: x ⊙ ∫₀¹ ∂y_c/∂x(αx) dα, zero baseline, 50 points, trapezoid; map |Σ_c|',
    record: (t, l) => {
      const [avg] = l.sampled(INTEGRATED_GRADIENTS, 'input', [1]);
      const attribution = t.mul(l.x, avg);
      return { raw: channelSum(t, attribution), weights: null, attribution };
    },
    final: (t, raw) => normalize01(t, act(t, raw, { kind: 'abs' })),
  },
  {
    name: 'scorecam',
    title: 'Score-CAM',
    needs: 'none',
    hasWeights: true,
    sweep: 'scorecam',
    reference: 'PGC score_cam.py: w = softmax_k y_c(x ⊙ u(up(A_k))); options alignCorners (PGC), scoreBaseline (TC)',
    record: sweepOnly,
  },
  {
    name: 'ablationcam',
    title: 'Ablation-CAM',
    needs: 'none',
    hasWeights: true,
    sweep: 'ablationcam',
    reference: 'PGC ablation_cam.py: w_k = (y_c − y_c^(k))/y_c, channel k zeroed, the suffix re-run from the layer (batch 32)',
    record: sweepOnly,
  },
  {
    name: 'pixabcam',
    title: 'Pixab-CAM',
    needs: 'none',
    hasWeights: false,
    sweep: 'pixabcam',
    reference: 'seed 002 §4 eq. 7–8 (no public code): boxes 1×1, 1×2, 2×1, 2×2 at the layer, p = ((Y − Y_b)/Y)·((Ỹ_b − Ỹ)/Ỹ) averaged over covering boxes, L = u(relu(p))',
    record: sweepOnly,
  },
  {
    name: 'rise',
    title: 'RISE',
    needs: 'none',
    hasWeights: false,
    sweep: 'rise',
    reference: 'RISE explanations.py: S = Σ_i p_c(x ⊙ M_i)·M_i/(N·p1), N = 4000 seeded masks, grid 8, p1 0.5, softmax score',
    record: sweepOnly,
  },
  {
    name: 'occlusion',
    title: 'Occlusion',
    needs: 'none',
    hasWeights: false,
    sweep: 'occlusion',
    reference: 'seed 000 §4.1, CAPTUM Occlusion: patch 64 (at most the image side), stride 8, fill 0; a pixel is the mean score drop of the patches covering it',
    record: sweepOnly,
  },
  {
    name: 'opticam',
    title: 'Opti-CAM',
    needs: 'none',
    hasWeights: true,
    sweep: 'opticam',
    reference: 'seed 003; OPTI generate_opticam.py / util.py: u from 0.5, Adam lr 0.1, 50 iterations, masks on [0, 1] pixels, early stop every iterations/10',
    record: sweepOnly,
  },
  {
    name: 'sscam',
    title: 'SS-CAM',
    needs: 'none',
    hasWeights: true,
    sweep: 'sscam',
    reference: 'TC activation.py SSCAM: Score-CAM with s_k the mean over 35 masks from A_k + N(0, 2²)',
    record: sweepOnly,
  },
  {
    name: 'iscam',
    title: 'IS-CAM',
    needs: 'none',
    hasWeights: true,
    sweep: 'iscam',
    reference: 'TC activation.py ISCAM: s_k = Σ_{i=1..10} y_c(x ⊙ (i/10)·M_k)',
    record: sweepOnly,
  },
  ...([['polycam', 'plusminus', 'Poly-CAM (PCAM±)', 'w = relu(f_c(x) + f_c(x ⊙ m_k) − f_c(x ⊙ (1 − m_k)))'],
    ['polycam+', 'plus', 'Poly-CAM (PCAM+)', 'w = f_c(x ⊙ m_k)'],
    ['polycam-', 'minus', 'Poly-CAM (PCAM−)', 'w = relu(f_c(x) − f_c(x ⊙ (1 − m_k)))']] as const).map(([name, variant, title, rule]): CamMethod => ({
    name,
    title,
    needs: 'none',
    hasWeights: true,
    sweep: 'polycam',
    polyVariant: variant,
    reference: `seed 000 eq. 1–6; POLY polycam.py: ${rule}, m_k = u(up(A_l^k)), softmax scores, layers shallow to deep (auto: before each downsampling), LNorm; options lnorm, polyNormalize 'percentile'`,
    record: sweepOnly,
  })),
  {
    name: 'randomcam',
    title: 'Random-CAM',
    hasWeights: true,
    needs: 'none',
    reference: 'PGC random_cam.py: w_k uniform in [−1, 1] (a sanity baseline)',
    record: (t, l) => {
      const w = l.uniformWeights();
      return { raw: weightedSum(t, l.a, w), weights: w };
    },
  },
];

function sweepOnly(): LayerResult {
  throw new Error('internal: score sweeps run through src/cam/sweeps.ts');
}

/** [n, h, w] of ones with a 0 at the top-left pixel. */
function fakeMap(t: Tape, n: number, h: number, w: number): Sym {
  const d = new Float32Array(h * w).fill(1);
  d[0] = 0;
  return t.broadcast(t.constant(hostTensor('float32', [1, h, w], d)), [n, h, w]);
}

export const METHOD_BY_NAME: ReadonlyMap<string, CamMethod> = new Map(METHODS.map((m) => [m.name, m]));
