import { ShapeError } from '../runtime/errors.js';
import { grid1d, MAX_WORKGROUPS_PER_DIM } from '../runtime/kernel.js';
import type { Dispatch } from '../runtime/recorder.js';
import { formatShape, shapeEquals, sizeOf } from '../runtime/shape.js';
import { EW_WG } from '../shaders/elementwise.js';
import {
  CONV_GRAD_INPUT_PARAMS, CONV_GRAD_WEIGHT_PARAMS, convGradInputKernel, convGradWeightKernel, FILL_PARAMS, fillKernel, FLIP_WEIGHTS_PARAMS,
  flipConvWeightsKernel, GRAD_CONV_WG, GRAD_INPUT_CI, GRAD_INPUT_POS, PHASE_WEIGHTS_PARAMS, phaseWeightsKernel,
} from '../shaders/grad-conv.js';
import { COMBINE_PARAMS, reduceCombineKernel } from '../shaders/reduce.js';
import { NO_ACTIVATION } from './activation.js';
import { convOutputShape, lowerConv } from './conv.js';
import type { Conv2dAttrs } from './conv-attrs.js';
import { lowerPlacedConvSg8 } from './conv-sg8.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

function checkShapes(where: string, x: readonly number[], w: readonly number[], gy: readonly number[], a: Conv2dAttrs): void {
  const ys = convOutputShape(where, x, w, a);
  if (!shapeEquals(ys, gy)) throw new ShapeError(where, `output gradient ${formatShape(gy)} should be ${formatShape(ys)} for input ${formatShape(x)} and weight ${formatShape(w)}`);
}

/**
 * Pads of the forward convolution that computes a unit-stride conv's input gradient
 * (gy convolved with flipped, transposed weights), or null when one would be negative.
 */
export function gradInputPads(a: Conv2dAttrs): [number, number, number, number] | null {
  if (a.strides[0] !== 1 || a.strides[1] !== 1) return null;
  const sh = a.dilations[0] * (a.kernel[0] - 1);
  const sw = a.dilations[1] * (a.kernel[1] - 1);
  const p: [number, number, number, number] = [sh - a.pads[0], sw - a.pads[1], sh - a.pads[2], sw - a.pads[3]];
  return p.every((v) => v >= 0) ? p : null;
}

/**
 * gx = ∂(Σ gy ⊙ conv(x, w))/∂x (a.activation is ignored: the caller has applied its
 * gradient to gy). Unit-stride convs with non-negative transposed pads become a forward
 * convolution of gy with W'[g·Cin_g + ci][co][KH−1−kh][KW−1−kw] (computed once through
 * env.derive for constant weights) through lowerConv, so they get every fast path of the
 * forward (sg8 1×1 matmul, Winograd, direct). Other convs use a gather kernel: each input
 * position visits the taps whose output position is whole and in range.
 */
export function lowerConvGradInput(env: LowerEnv, gy: BoundTensor, w: BoundTensor, gx: BoundTensor, a: Conv2dAttrs): Lowered {
  checkShapes(env.label, gx.shape, w.shape, gy.shape, a);
  const [n, c, h, wd] = gx.shape;
  const [cout, cinG, kh, kw] = w.shape;
  const [, , oh, ow] = gy.shape;
  const g = a.groups;
  const coutG = cout / g;
  if (sizeOf(gx.shape) === 0) return [];
  const pads = gradInputPads(a);
  if (pads) {
    const count = sizeOf(w.shape);
    const flipped = env.derive('conv-grad-input/flipped-weights', w, count * 4, [c, coutG, kh, kw], (dst): Dispatch[] => [{
      kernel: flipConvWeightsKernel(),
      params: FLIP_WEIGHTS_PARAMS.pack({ n: count, cin_g: cinG, cout_g: coutG, KH: kh, KW: kw }),
      buffers: [w.binding, dst.binding],
      workgroups: grid1d(cdiv(count, 256)),
      label: `${env.label} (flip weights)`,
    }]);
    return lowerConv(env, gy, { shape: [c, coutG, kh, kw], binding: flipped.binding }, null, gx, {
      kernel: a.kernel, strides: [1, 1], pads, dilations: a.dilations, groups: g, activation: NO_ACTIVATION,
    });
  }
  if (env.ctx.kernelFamily === 'sg8' && a.dilations[0] === 1 && a.dilations[1] === 1) {
    const phases = subPixelGradInput(env, gy, w, gx, a);
    if (phases) return phases;
  }
  const cblocks = cdiv(cinG, GRAD_INPUT_CI);
  const HC = cdiv(h, a.strides[0]);
  const WB = cdiv(cdiv(wd, a.strides[1]), GRAD_INPUT_POS);
  const total = n * g * cblocks * a.strides[0] * a.strides[1] * HC * WB;
  return [{
    kernel: convGradInputKernel(),
    params: CONV_GRAD_INPUT_PARAMS.pack({
      n: total, groups: g, cin_g: cinG, cout_g: coutG, cblocks, HC, WB, H: h, W: wd, OH: oh, OW: ow, KH: kh, KW: kw,
      stride_h: a.strides[0], stride_w: a.strides[1], pad_h: a.pads[0], pad_w: a.pads[1], dil_h: a.dilations[0], dil_w: a.dilations[1],
    }),
    buffers: [gy.binding, w.binding, gx.binding],
    workgroups: grid1d(cdiv(total, GRAD_CONV_WG)),
    label: env.label,
    flops: 2 * n * cout * oh * ow * cinG * kh * kw,
  }];
}

/**
 * A strided conv's input gradient as stride-1 convolutions, one per sub-pixel phase
 * (rh, rw): input positions ih ≡ rh − pad (mod stride) receive only the taps
 * kh ≡ rh (mod stride), so on that phase the gradient is gy convolved with those taps
 * (flipped, transposed), its outputs placed every `stride` positions. Each runs on the
 * direct sg8 kernel; phases no tap reaches are zero. Null when a phase would need a
 * negative pad (then the gather kernel does it).
 */
function subPixelGradInput(env: LowerEnv, gy: BoundTensor, w: BoundTensor, gx: BoundTensor, a: Conv2dAttrs): Lowered | null {
  const [, c, h, wd] = gx.shape;
  const [cout, cinG, kh, kw] = w.shape;
  const [sh, sw] = a.strides;
  const [ph, pw] = [a.pads[0], a.pads[1]];
  const coutG = cout / a.groups;
  const out: Lowered = [];
  let empty = false;
  const phases: { rh: number; rw: number; th: number; tw: number; q0h: number; q0w: number; hq: number; wq: number }[] = [];
  for (let rh = 0; rh < sh; rh++) {
    for (let rw = 0; rw < sw; rw++) {
      const th = Math.max(0, Math.ceil((kh - rh) / sh));
      const tw = Math.max(0, Math.ceil((kw - rw) / sw));
      const q0h = Math.ceil((ph - rh) / sh);
      const q0w = Math.ceil((pw - rw) / sw);
      const hq = Math.floor((h - 1 + ph - rh) / sh) - q0h + 1;
      const wq = Math.floor((wd - 1 + pw - rw) / sw) - q0w + 1;
      if (hq <= 0 || wq <= 0) continue;
      if (th === 0 || tw === 0) {
        empty = true;
        continue;
      }
      if (th - 1 - q0h < 0 || tw - 1 - q0w < 0) return null;
      phases.push({ rh, rw, th, tw, q0h, q0w, hq, wq });
    }
  }
  if (empty) {
    const count = sizeOf(gx.shape);
    out.push({ kernel: fillKernel(), params: FILL_PARAMS.pack({ n: count, value: 0 }), buffers: [gx.binding], workgroups: grid1d(cdiv(count, 256)), label: `${env.label} (zero)`, flops: 0 });
  }
  for (const p of phases) {
    const count = c * coutG * p.th * p.tw;
    const pw2 = env.derive(`conv-grad-input/phase-${p.rh}-${p.rw}`, w, count * 4, [c, coutG, p.th, p.tw], (dst): Dispatch[] => [{
      kernel: phaseWeightsKernel(),
      params: PHASE_WEIGHTS_PARAMS.pack({ n: count, cin_g: cinG, cout_g: coutG, KH: kh, KW: kw, TH: p.th, TW: p.tw, rh: p.rh, rw: p.rw, sh, sw }),
      buffers: [w.binding, dst.binding],
      workgroups: grid1d(cdiv(count, 256)),
      label: `${env.label} (phase weights)`,
    }]);
    const attrs: Conv2dAttrs = {
      kernel: [p.th, p.tw], strides: [1, 1], pads: [p.th - 1 - p.q0h, p.tw - 1 - p.q0w, 0, 0], dilations: [1, 1], groups: a.groups, activation: NO_ACTIVATION,
    };
    out.push(...lowerPlacedConvSg8(env, gy, { shape: [c, coutG, p.th, p.tw], binding: pw2.binding }, gx, attrs, {
      size: [p.hq, p.wq], strides: [sh, sw], offset: [sh * p.q0h + p.rh - ph, sw * p.q0w + p.rw - pw],
    }));
  }
  return out;
}

/** Invocation tiles worth keeping busy before the (n, oh, ow) reduction is split into partials. */
const SPLIT_TARGET = 4096;
/** Fewest (n, oh, ow) steps one partial should take. */
const MIN_STEPS = 256;

/**
 * gw[co, ci, kh, kw] = Σ_{n, oh, ow} gy[n, co, oh, ow] · x[n, g·Cin_g + ci, oh·s − p + kh·d, ow·s − p + kw·d]:
 * an implicit GEMM (M = Cout_g, columns Cin_g·KH·KW, reduction N·OH·OW) per group. When
 * the product is small and the reduction long (early layers, depthwise convs), the
 * reduction is split into row slices whose partials are folded in slice order, so the
 * result stays deterministic. The bias gradient is lowerReduce('sum', gy, …, [0, 2, 3]).
 */
export function lowerConvGradWeight(env: LowerEnv, x: BoundTensor, gy: BoundTensor, gw: BoundTensor, a: Conv2dAttrs): Lowered {
  checkShapes(env.label, x.shape, gw.shape, gy.shape, a);
  const [n, , h, wd] = x.shape;
  const [cout, cinG, kh, kw] = gw.shape;
  const [, , oh, ow] = gy.shape;
  const g = a.groups;
  const M = cout / g;
  const NC = cinG * kh * kw;
  const count = sizeOf(gw.shape);
  if (count === 0) return [];
  const tm = M >= 8 ? 8 : M >= 4 ? 4 : M >= 2 ? 2 : 1;
  const tn = NC >= 8 ? 8 : NC >= 4 ? 4 : NC;
  const tilesN = cdiv(NC, tn);
  const tiles = g * cdiv(M, tm) * tilesN;
  const wgx = cdiv(tiles, GRAD_CONV_WG);
  if (wgx > MAX_WORKGROUPS_PER_DIM) throw new ShapeError(env.label, `weight gradient of ${formatShape(gw.shape)} needs ${wgx} workgroups, over ${MAX_WORKGROUPS_PER_DIM}`);
  const rows = n * oh;
  let parts = Math.max(1, Math.min(cdiv(SPLIT_TARGET, tiles), Math.floor((rows * ow) / MIN_STEPS), rows));
  const partsLimit = Math.floor(env.ctx.limits.maxStorageBufferBindingSize / (4 * count));
  if (parts > partsLimit) parts = 1;
  const rowsPer = cdiv(rows, parts);
  parts = cdiv(rows, rowsPer);
  const flops = 2 * n * cout * oh * ow * NC;
  const params = (partStride: number) => CONV_GRAD_WEIGHT_PARAMS.pack({
    M, NC, tiles_n: tilesN, tiles, groups: g, cin_g: cinG, rows, rows_per: rowsPer, part_stride: partStride,
    H: h, W: wd, OH: oh, OW: ow, KH: kh, KW: kw, stride_h: a.strides[0], stride_w: a.strides[1],
    pad_h: a.pads[0], pad_w: a.pads[1], dil_h: a.dilations[0], dil_w: a.dilations[1],
  });
  const kernel = convGradWeightKernel({ tm, tn });
  if (parts === 1) {
    return [{ kernel, params: params(0), buffers: [gy.binding, x.binding, gw.binding], workgroups: [wgx, 1, 1], label: env.label, flops }];
  }
  const partial = env.scratch(parts * count * 4, [parts, count]);
  return [
    { kernel, params: params(count), buffers: [gy.binding, x.binding, partial.binding], workgroups: [wgx, parts, 1], label: env.label, flops },
    {
      kernel: reduceCombineKernel('sum'),
      params: COMBINE_PARAMS.pack({ n: count, parts, scale: 1 }),
      buffers: [partial.binding, gw.binding],
      workgroups: grid1d(cdiv(count, EW_WG)),
      label: `${env.label} (sum partials)`,
      flops: parts * count,
    },
  ];
}
