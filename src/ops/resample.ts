import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, sizeOf } from '../runtime/shape.js';
import { BILINEAR_PARAMS, bilinearGradKernel, bilinearKernel, RESAMPLE_WG } from '../shaders/resample.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export interface BilinearOptions {
  alignCorners: boolean;
  /** Size of the virtual scaled image the output window is cut from (defaults: the output size). */
  scaled?: [number, number];
  /** Top-left of the output window inside the scaled image. */
  offset?: [number, number];
  /** Element offset of the result inside y (writing one image of a batch). */
  outOffset?: number;
}

/** The shared parameters of a resample between planes of inH × inW and an outH × outW window. */
function bilinearParams(n: number, inHW: readonly number[], outHW: readonly number[], o: BilinearOptions): Uint32Array {
  const [inH, inW] = inHW;
  const [outH, outW] = outHW;
  return BILINEAR_PARAMS.pack({
    n, in_h: inH, in_w: inW, out_h: outH, out_w: outW,
    scaled_h: o.scaled?.[0] ?? outH, scaled_w: o.scaled?.[1] ?? outW,
    off_y: o.offset?.[0] ?? 0, off_x: o.offset?.[1] ?? 0, window_off: o.outOffset ?? 0,
  });
}

/** Bilinear resize of every N×C plane of x (shape [..., H, W]) into y (shape [..., h, w]). */
export function lowerBilinear(env: LowerEnv, x: BoundTensor, y: BoundTensor, outShape: readonly number[], o: BilinearOptions): Lowered {
  const n = sizeOf(outShape);
  return [{
    kernel: bilinearKernel(o.alignCorners),
    params: bilinearParams(n, x.shape.slice(-2), outShape.slice(-2), o),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(n, RESAMPLE_WG)),
    label: env.label,
    flops: 8 * n,
  }];
}

/**
 * The adjoint of lowerBilinear: gx (shape [..., H, W], the forward's input) from gy, whose
 * last two axes are the output window (h, w) and whose buffer holds the window's gradient
 * from element o.outOffset on (as the forward wrote it). Gathered: every input pixel sums
 * the outputs whose taps include it, with the forward's own weights.
 */
export function lowerBilinearGrad(env: LowerEnv, gy: BoundTensor, gx: BoundTensor, o: BilinearOptions): Lowered {
  const [inH, inW] = gx.shape.slice(-2);
  const [outH, outW] = gy.shape.slice(-2);
  const n = sizeOf(gx.shape);
  if (sizeOf(gy.shape.slice(0, -2)) !== sizeOf(gx.shape.slice(0, -2))) {
    throw new ShapeError(env.label, `bilinear gradient ${formatShape(gy.shape)} and input gradient ${formatShape(gx.shape)} differ in planes`);
  }
  if (n === 0) return [];
  return [{
    kernel: bilinearGradKernel(o.alignCorners),
    params: bilinearParams(n, [inH, inW], [outH, outW], o),
    buffers: [gy.binding, gx.binding],
    workgroups: grid1d(cdiv(n, RESAMPLE_WG)),
    label: env.label,
    flops: 8 * (n / (inH * inW)) * outH * outW,
  }];
}
