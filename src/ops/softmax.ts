import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, normalizeAxis, sizeOf } from '../runtime/shape.js';
import { SOFTMAX_PARAMS, softmaxKernel } from '../shaders/softmax.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

/** Softmax over `axis`; `coerce2d` gives the pre-opset-13 rule (flatten [axis, rank) into one axis). */
export function lowerSoftmax(env: LowerEnv, x: BoundTensor, y: BoundTensor, axis: number, coerce2d: boolean, log = false): Lowered {
  const rank = x.shape.length;
  const ax = normalizeAxis(axis, rank);
  if (ax < 0 || ax >= Math.max(rank, 1)) throw new ShapeError(env.label, `softmax axis ${axis} out of range for ${formatShape(x.shape)}`);
  const outer = sizeOf(x.shape.slice(0, ax));
  const axisLen = coerce2d ? sizeOf(x.shape.slice(ax)) : x.shape[ax] ?? 1;
  const inner = coerce2d ? 1 : sizeOf(x.shape.slice(ax + 1));
  const rows = outer * inner;
  return [{
    kernel: softmaxKernel(log),
    params: SOFTMAX_PARAMS.pack({ rows, axis_len: axisLen, inner }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(rows, 64)),
    label: env.label,
    flops: 4 * sizeOf(x.shape),
  }];
}
