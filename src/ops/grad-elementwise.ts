import { InputError, ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, normalizeAxis, shapeEquals, sizeOf } from '../runtime/shape.js';
import { EW_WG, UNARY_PARAMS } from '../shaders/elementwise.js';
import { activationGradKernel, softmaxGradKernel } from '../shaders/grad-elementwise.js';
import { SOFTMAX_PARAMS } from '../shaders/softmax.js';
import { type Activation, activationGradientUnsupported, activationParams } from './activation.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

/** Which tensor lowerActivationGrad's `v` must be for an activation: its input x or its output y. */
export { activationGradientReads } from './activation.js';

function sameShapes(where: string, ts: readonly BoundTensor[]): void {
  for (const t of ts) {
    if (!shapeEquals(t.shape, ts[0].shape)) throw new ShapeError(where, `gradient operands differ in shape: ${ts.map((u) => formatShape(u.shape)).join(', ')}`);
  }
}

/**
 * gx = gy ⊙ act'(x), where `v` is the activation's input x or its output y, as
 * activationGradientReads(act) says (y for every activation that fuses: what a fused
 * activation leaves behind).
 */
export function lowerActivationGrad(env: LowerEnv, act: Activation, v: BoundTensor, gy: BoundTensor, gx: BoundTensor): Lowered {
  sameShapes(env.label, [v, gy, gx]);
  const unsupported = activationGradientUnsupported(act);
  if (unsupported !== undefined) throw new InputError(`${env.label}: ${unsupported}`);
  const n = sizeOf(v.shape);
  if (n === 0) return [];
  const vec4 = n % 4 === 0 && [v, gy, gx].every((t) => (t.binding.offset ?? 0) % 16 === 0);
  const items = vec4 ? n / 4 : n;
  return [{
    kernel: activationGradKernel(act.kind, vec4),
    params: UNARY_PARAMS.pack({ n: items, ...activationParams(act) }),
    buffers: [v.binding, gy.binding, gx.binding],
    workgroups: grid1d(cdiv(items, EW_WG)),
    label: env.label,
    flops: 2 * n,
  }];
}

/**
 * Gradient of Softmax / LogSoftmax from its output y, with lowerSoftmax's axis rules
 * (`coerce2d`: pre-opset-13, the axes [axis, rank) flattened into one).
 */
export function lowerSoftmaxGrad(env: LowerEnv, y: BoundTensor, gy: BoundTensor, gx: BoundTensor, axis: number, coerce2d: boolean, log = false): Lowered {
  sameShapes(env.label, [y, gy, gx]);
  const rank = y.shape.length;
  const ax = normalizeAxis(axis, rank);
  if (ax < 0 || ax >= Math.max(rank, 1)) throw new ShapeError(env.label, `softmax axis ${axis} out of range for ${formatShape(y.shape)}`);
  const outer = sizeOf(y.shape.slice(0, ax));
  const axisLen = coerce2d ? sizeOf(y.shape.slice(ax)) : y.shape[ax] ?? 1;
  const inner = coerce2d ? 1 : sizeOf(y.shape.slice(ax + 1));
  const rows = outer * inner;
  if (rows === 0 || axisLen === 0) return [];
  return [{
    kernel: softmaxGradKernel(log),
    params: SOFTMAX_PARAMS.pack({ rows, axis_len: axisLen, inner }),
    buffers: [y.binding, gy.binding, gx.binding],
    workgroups: grid1d(cdiv(rows, 64)),
    label: env.label,
    flops: 4 * sizeOf(y.shape),
  }];
}
