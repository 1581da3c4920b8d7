import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, type Shape, sizeOf } from '../runtime/shape.js';
import { GLOBAL_POOL_PARAMS, globalPoolKernel, POOL_PARAMS, POOL_WG, poolKernel } from '../shaders/pool.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export interface Pool2dAttrs {
  kernel: [number, number];
  strides: [number, number];
  /** [top, left, bottom, right], auto_pad already applied. */
  pads: [number, number, number, number];
  dilations: [number, number];
  ceilMode: boolean;
  countIncludePad: boolean;
}

/** Output length of one pooled axis, with ONNX's / PyTorch's ceil_mode rule. */
export function pooledSize(inSize: number, k: number, s: number, p0: number, p1: number, d: number, ceil: boolean): number {
  const span = inSize + p0 + p1 - d * (k - 1) - 1;
  let out = (ceil ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
  // With ceil_mode the last window must still start inside the input or its left padding.
  if (ceil && (out - 1) * s >= inSize + p0) out--;
  return out;
}

export function poolOutputShape(where: string, x: Shape, a: Pool2dAttrs): number[] {
  if (x.length !== 4) throw new ShapeError(where, `pooling input must be 4-D NCHW, got ${formatShape(x)}`);
  const oh = pooledSize(x[2], a.kernel[0], a.strides[0], a.pads[0], a.pads[2], a.dilations[0], a.ceilMode);
  const ow = pooledSize(x[3], a.kernel[1], a.strides[1], a.pads[1], a.pads[3], a.dilations[1], a.ceilMode);
  if (oh < 1 || ow < 1) throw new ShapeError(where, `pooling window ${a.kernel} leaves no output for input ${formatShape(x)}`);
  return [x[0], x[1], oh, ow];
}

export function lowerPool(env: LowerEnv, kind: 'max' | 'avg', x: BoundTensor, y: BoundTensor, a: Pool2dAttrs): Lowered {
  const n = sizeOf(y.shape);
  return [{
    kernel: poolKernel(kind),
    params: POOL_PARAMS.pack({
      n, H: x.shape[2], W: x.shape[3], OH: y.shape[2], OW: y.shape[3], KH: a.kernel[0], KW: a.kernel[1],
      stride_h: a.strides[0], stride_w: a.strides[1], pad_h: a.pads[0], pad_w: a.pads[1], pad_h_end: a.pads[2], pad_w_end: a.pads[3],
      dil_h: a.dilations[0], dil_w: a.dilations[1], count_include_pad: a.countIncludePad ? 1 : 0,
    }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(n, POOL_WG)),
    label: env.label,
    flops: n * a.kernel[0] * a.kernel[1],
  }];
}

export function globalPoolOutputShape(where: string, x: Shape): number[] {
  if (x.length < 3) throw new ShapeError(where, `global pooling needs N×C×spatial input, got ${formatShape(x)}`);
  return [x[0], x[1], ...x.slice(2).map(() => 1)];
}

export function lowerGlobalPool(env: LowerEnv, kind: 'max' | 'avg', x: BoundTensor, y: BoundTensor): Lowered {
  const planes = x.shape[0] * x.shape[1];
  const size = sizeOf(x.shape) / Math.max(planes, 1);
  return [{
    kernel: globalPoolKernel(kind),
    params: GLOBAL_POOL_PARAMS.pack({ planes, size }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(planes, 64)),
    label: env.label,
    flops: sizeOf(x.shape),
  }];
}
