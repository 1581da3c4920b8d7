import { grid1d } from '../runtime/kernel.js';
import { sizeOf } from '../runtime/shape.js';
import { BILINEAR_PARAMS, bilinearKernel, RESAMPLE_WG } from '../shaders/resample.js';
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

/** Bilinear resize of every N×C plane of x (shape [..., H, W]) into y (shape [..., h, w]). */
export function lowerBilinear(env: LowerEnv, x: BoundTensor, y: BoundTensor, outShape: readonly number[], o: BilinearOptions): Lowered {
  const [inH, inW] = x.shape.slice(-2);
  const [outH, outW] = outShape.slice(-2);
  const n = sizeOf(outShape);
  return [{
    kernel: bilinearKernel(o.alignCorners),
    params: BILINEAR_PARAMS.pack({
      n, in_h: inH, in_w: inW, out_h: outH, out_w: outW,
      scaled_h: o.scaled?.[0] ?? outH, scaled_w: o.scaled?.[1] ?? outW,
      off_y: o.offset?.[0] ?? 0, off_x: o.offset?.[1] ?? 0, out_off: o.outOffset ?? 0,
    }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(n, RESAMPLE_WG)),
    label: env.label,
    flops: 8 * n,
  }];
}
