import { grid1d } from '../runtime/kernel.js';
import type { Dispatch } from '../runtime/recorder.js';
import {
  PACK_CONV_PARAMS, packConvWeightsKernel, SG, SG_CONV_KU, SG_CONV_PARAMS, SG_CONV_POS, SG_MATMUL_PARAMS, SG_ROWS, SG_WG,
  sgConvKernel, sgMatmulKernel, subgroupColumns, WINOGRAD_PARAMS, WINOGRAD_WEIGHT_PARAMS, winogradInputKernel,
  winogradOutputKernel, winogradWeightKernel,
} from '../shaders/sg8.js';
import { activationParams } from './activation.js';
import type { Conv2dAttrs } from './conv-attrs.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export type ConvPath = 'matmul' | 'winograd4' | 'winograd2' | 'direct';

/**
 * The sg8 path for a convolution, from measured crossovers on lavapipe (NOTES.md):
 * unit-stride unpadded 1×1 convs whose K and spatial size are multiples of 4 are plain
 * matmuls; 3×3 unit-stride undilated convs of at least 20 MFLOP use Winograd F(4×4) when
 * they have at least 32 output tiles of 4×4 (unless the op forbids F(4×4)), else F(2×2)
 * with at least 16 tiles of 2×2;
 * everything else is the direct implicit GEMM.
 */
export function chooseConvPath(x: readonly number[], w: readonly number[], y: readonly number[], a: Conv2dAttrs): ConvPath {
  const [n, c, h, wd] = x;
  const [, , kh, kw] = w;
  const [, cout, oh, ow] = y;
  const unit = a.strides[0] === 1 && a.strides[1] === 1 && a.dilations[0] === 1 && a.dilations[1] === 1;
  if (a.groups === 1 && kh === 1 && kw === 1 && unit && a.pads.every((p) => p === 0) && (h * wd) % 4 === 0 && c % 4 === 0) return 'matmul';
  const flops = 2 * n * cout * oh * ow * c * kh * kw;
  if (a.groups === 1 && kh === 3 && kw === 3 && unit && flops >= 2e7) {
    if (a.winograd4 !== false && n * Math.ceil(oh / 4) * Math.ceil(ow / 4) >= 32) return 'winograd4';
    if (n * Math.ceil(oh / 2) * Math.ceil(ow / 2) >= 16) return 'winograd2';
  }
  return 'direct';
}

function epilogue(a: Conv2dAttrs) {
  return { alpha: 1, beta: 1, ...activationParams(a.activation) };
}

/** The direct kernel with its outputs placed on a strided grid of y (see OutputPlacement). */
export function lowerPlacedConvSg8(env: LowerEnv, x: BoundTensor, w: BoundTensor, y: BoundTensor, a: Conv2dAttrs, placement: OutputPlacement): Lowered {
  const [n, , , ] = x.shape;
  const [cout, cinG, kh, kw] = w.shape;
  const flops = 2 * n * cout * placement.size[0] * placement.size[1] * cinG * kh * kw;
  return direct(env, x, w, null, y, a, flops, placement);
}

export function lowerConvSg8(env: LowerEnv, path: ConvPath, x: BoundTensor, w: BoundTensor, bias: BoundTensor | null, y: BoundTensor, a: Conv2dAttrs, flops: number): Lowered {
  switch (path) {
    case 'matmul':
      return pointwiseAsMatmul(env, x, w, bias, y, a, flops);
    case 'winograd4':
    case 'winograd2':
      return winograd(env, path === 'winograd4' ? 4 : 2, x, w, bias, y, a, flops);
    case 'direct':
      return direct(env, x, w, bias, y, a, flops);
  }
}

/** out[n] = W · X[n] with W [Cout, Cin] and X[n] viewed as [Cin, H·W]. */
function pointwiseAsMatmul(env: LowerEnv, x: BoundTensor, w: BoundTensor, bias: BoundTensor | null, y: BoundTensor, a: Conv2dAttrs, flops: number): Lowered {
  const [n, cin, h, wd] = x.shape;
  const cout = w.shape[0];
  const P = h * wd;
  const act = a.activation;
  const sgc = subgroupColumns(SG * 4, P);
  return [{
    kernel: sgMatmulKernel({ aligned: true, bLayout: 'kn', activation: act.kind, bias: bias !== null }),
    params: SG_MATMUL_PARAMS.pack({
      M: cout, N: P, K: cin, sgc, a_off: 0, b_off: 0, c_off: 0, ldc: P,
      sa: 0, sb: cin * P, sc: cout * P, bias_off: 0, bias_sm: 1, bias_sn: 0, bias_sb: 0, ...epilogue(a),
    }),
    buffers: bias ? [w.binding, x.binding, bias.binding, y.binding] : [w.binding, x.binding, y.binding],
    workgroups: [cdiv(P, SG * 4 * sgc), cdiv(cout, SG_ROWS * ((SG_WG / SG) / sgc)), n],
    label: env.label,
    flops,
  }];
}

/**
 * Where a convolution's outputs land inside a larger y: output (oh, ow) at
 * (oh·sh + oh0, ow·sw + ow0) of y's planes. The transposed convolution of a strided
 * conv's input gradient is computed as one such placed stride-1 convolution per
 * sub-pixel phase.
 */
export interface OutputPlacement {
  /** Output size of the convolution itself. */
  size: [number, number];
  strides: [number, number];
  offset: [number, number];
}

function direct(env: LowerEnv, x: BoundTensor, w: BoundTensor, bias: BoundTensor | null, y: BoundTensor, a: Conv2dAttrs, flops: number, placement?: OutputPlacement): Lowered {
  const [n, , h, wd] = x.shape;
  const [cout, cinG, kh, kw] = w.shape;
  const [oh, ow] = placement?.size ?? [y.shape[2], y.shape[3]];
  const g = a.groups;
  const coutG = cout / g;
  const K = cinG * kh * kw;
  const kp = cdiv(K, SG_CONV_KU) * SG_CONV_KU;
  const co4 = cdiv(coutG, 4);
  const packedFloats = g * kp * co4 * 4;
  const packed = env.derive(`sg8-conv-packed`, w, packedFloats * 4, [packedFloats], (dst): Dispatch[] => [{
    kernel: packConvWeightsKernel(),
    params: PACK_CONV_PARAMS.pack({ n: packedFloats, groups: g, cout_g: coutG, K, kp, co4 }),
    buffers: [w.binding, dst.binding],
    workgroups: grid1d(cdiv(packedFloats, 256)),
    label: `${env.label} (pack weights)`,
  }]);
  const P = oh * ow;
  const sgc = subgroupColumns(SG * SG_CONV_POS, P);
  const act = a.activation;
  return [{
    kernel: sgConvKernel(act.kind, bias !== null),
    params: SG_CONV_PARAMS.pack({
      groups: g, cin_g: cinG, H: h, W: wd, cout_g: coutG, OH: oh, OW: ow, KH: kh, KW: kw,
      stride_h: a.strides[0], stride_w: a.strides[1], pad_h: a.pads[0], pad_w: a.pads[1],
      dil_h: a.dilations[0], dil_w: a.dilations[1], co4, K, kp, sgc,
      y_h: y.shape[2], y_w: y.shape[3], y_sh: placement?.strides[0] ?? 1, y_sw: placement?.strides[1] ?? 1,
      y_oh: placement?.offset[0] ?? 0, y_ow: placement?.offset[1] ?? 0, ...epilogue(a),
    }),
    buffers: bias ? [x.binding, packed.binding, bias.binding, y.binding] : [x.binding, packed.binding, y.binding],
    workgroups: [cdiv(P, SG * SG_CONV_POS * sgc), cdiv(coutG, SG_ROWS * ((SG_WG / SG) / sgc)), n * g],
    label: env.label,
    flops,
  }];
}

/**
 * Winograd F(m×m, 3×3): input tiles transformed to V [a², Cpad, Tpad], one batched matmul
 * per transform point against U [a², Cout, Cpad] (the filters' transform, computed once
 * for constant weights), and the inverse transform with bias and activation.
 */
function winograd(env: LowerEnv, m: 2 | 4, x: BoundTensor, w: BoundTensor, bias: BoundTensor | null, y: BoundTensor, a: Conv2dAttrs, flops: number): Lowered {
  const [n, cin, h, wd] = x.shape;
  const cout = w.shape[0];
  const [, , oh, ow] = y.shape;
  const A = m + 2;
  const TH = cdiv(oh, m);
  const TW = cdiv(ow, m);
  const T = n * TH * TW;
  const Tpad = cdiv(T, 4) * 4;
  const Cpad = cdiv(cin, 4) * 4;
  const uFloats = A * A * cout * Cpad;
  const U = env.derive(`sg8-winograd${m}`, w, uFloats * 4, [uFloats], (dst): Dispatch[] => [{
    kernel: winogradWeightKernel(m),
    params: WINOGRAD_WEIGHT_PARAMS.pack({ cout, cin, cpad: Cpad }),
    buffers: [w.binding, dst.binding],
    workgroups: [cdiv(Cpad, 64), cout, 1],
    label: `${env.label} (winograd weights)`,
  }]);
  const V = env.scratch(A * A * Cpad * Tpad * 4, [A * A * Cpad * Tpad]);
  const Mx = env.scratch(A * A * cout * Tpad * 4, [A * A * cout * Tpad]);
  const act = a.activation;
  const shape = {
    N: n, H: h, W: wd, OH: oh, OW: ow, pad_h: a.pads[0], pad_w: a.pads[1], TH, TW, T, Tpad, Cpad, ...epilogue(a),
  };
  const sgc = subgroupColumns(SG * 4, Tpad);
  return [
    {
      kernel: winogradInputKernel(m),
      params: WINOGRAD_PARAMS.pack({ ...shape, C: cin }),
      buffers: [x.binding, V.binding],
      workgroups: [cdiv(Tpad, 64), Cpad, 1],
      label: `${env.label} (winograd input)`,
      flops: 0,
    },
    {
      kernel: sgMatmulKernel({ aligned: true, bLayout: 'kn', activation: 'none', bias: false }),
      params: SG_MATMUL_PARAMS.pack({
        M: cout, N: Tpad, K: Cpad, sgc, a_off: 0, b_off: 0, c_off: 0, ldc: Tpad,
        sa: cout * Cpad, sb: Cpad * Tpad, sc: cout * Tpad, bias_off: 0, bias_sm: 0, bias_sn: 0, bias_sb: 0,
        alpha: 1, beta: 0, act_a: 0, act_b: 0,
      }),
      buffers: [U.binding, V.binding, Mx.binding],
      workgroups: [cdiv(Tpad, SG * 4 * sgc), cdiv(cout, SG_ROWS * ((SG_WG / SG) / sgc)), A * A],
      label: env.label,
      flops,
    },
    {
      kernel: winogradOutputKernel(m, act.kind, bias !== null),
      params: WINOGRAD_PARAMS.pack({ ...shape, C: cout }),
      buffers: bias ? [Mx.binding, bias.binding, y.binding] : [Mx.binding, y.binding],
      workgroups: [cdiv(T, 64), cout, 1],
      label: `${env.label} (winograd output)`,
      flops: 0,
    },
  ];
}

/** Bytes of the Winograd intermediates, to fall back to the direct kernel when they would not fit a binding. */
export function winogradScratchBytes(m: 2 | 4, x: readonly number[], w: readonly number[], y: readonly number[]): number {
  const A = m + 2;
  const T = x[0] * cdiv(y[2], m) * cdiv(y[3], m);
  const Tpad = cdiv(T, 4) * 4;
  return A * A * Math.max(cdiv(x[1], 4) * 4, w[0]) * Tpad * 4;
}
