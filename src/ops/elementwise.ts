import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { broadcastShapes, formatShape, type Shape, shapeEquals, sizeOf, stridesOf } from '../runtime/shape.js';
import {
  BINARY_PARAMS, type BinaryOpKind, binaryKernel, CHANNEL_AFFINE_PARAMS, channelAffineKernel, EW_WG, MAX_BCAST_RANK,
  SAME_SHAPE_PARAMS, sameShapeBinaryKernel, UNARY_PARAMS, unaryKernel, WHERE_PARAMS, whereKernel,
} from '../shaders/elementwise.js';
import { type Activation, activationParams, NO_ACTIVATION } from './activation.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export function binaryOutputShape(where: string, a: Shape, b: Shape): number[] {
  const out = broadcastShapes(a, b);
  if (!out) throw new ShapeError(where, `shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast`);
  return out;
}

/** Strides of `shape` read as `out` under broadcasting (0 on broadcast axes), right-aligned. */
function broadcastStrides(shape: Shape, out: Shape): number[] {
  const s = stridesOf(shape);
  return out.map((d, i) => {
    const j = i - (out.length - shape.length);
    return j < 0 || shape[j] === 1 ? 0 : s[j];
  });
}

/**
 * Merges adjacent axes whose strides stay affine in both operands, so any broadcast fits
 * the kernel's fixed rank (and the common cases become rank 1 or 2).
 */
export function collapseBroadcast(out: Shape, sa: number[], sb: number[]): { dims: number[]; sa: number[]; sb: number[] } {
  const dims: number[] = [];
  const ra: number[] = [];
  const rb: number[] = [];
  for (let i = 0; i < out.length; i++) {
    if (out[i] === 1) continue;
    const k = dims.length - 1;
    if (k >= 0 && ra[k] === sa[i] * out[i] && rb[k] === sb[i] * out[i]) {
      dims[k] *= out[i];
      ra[k] = sa[i];
      rb[k] = sb[i];
    } else {
      dims.push(out[i]);
      ra.push(sa[i]);
      rb.push(sb[i]);
    }
  }
  if (dims.length === 0) return { dims: [1], sa: [0], sb: [0] };
  return { dims, sa: ra, sb: rb };
}

export function lowerBinary(env: LowerEnv, op: BinaryOpKind, a: BoundTensor, b: BoundTensor, y: BoundTensor, act: Activation = NO_ACTIVATION): Lowered {
  const out = y.shape;
  const n = sizeOf(out);
  if (n % 4 === 0 && n > 0 && shapeEquals(a.shape, out) && shapeEquals(b.shape, out)) {
    return [{
      kernel: sameShapeBinaryKernel(op, act.kind),
      params: SAME_SHAPE_PARAMS.pack({ n4: n / 4, ...activationParams(act) }),
      buffers: [a.binding, b.binding, y.binding],
      workgroups: grid1d(cdiv(n / 4, EW_WG)),
      label: env.label,
      flops: n,
    }];
  }
  const c = collapseBroadcast(out, broadcastStrides(a.shape, out), broadcastStrides(b.shape, out));
  if (c.dims.length > MAX_BCAST_RANK) {
    throw new ShapeError(env.label, `broadcast of ${formatShape(a.shape)} with ${formatShape(b.shape)} needs rank ${c.dims.length} > ${MAX_BCAST_RANK}`);
  }
  const pad = MAX_BCAST_RANK - c.dims.length;
  const perAxis: Record<`d${number}` | `as${number}` | `bs${number}`, number> = {};
  for (let i = 0; i < MAX_BCAST_RANK; i++) {
    perAxis[`d${i}`] = i < pad ? 1 : c.dims[i - pad];
    perAxis[`as${i}`] = i < pad ? 0 : c.sa[i - pad];
    perAxis[`bs${i}`] = i < pad ? 0 : c.sb[i - pad];
  }
  return [{
    kernel: binaryKernel(op, act.kind),
    params: BINARY_PARAMS.pack({ n: sizeOf(out), rank: c.dims.length, a_off: 0, b_off: 0, ...activationParams(act), ...perAxis }),
    buffers: [a.binding, b.binding, y.binding],
    workgroups: grid1d(cdiv(sizeOf(out), EW_WG)),
    label: env.label,
    flops: sizeOf(out),
  }];
}

export function lowerUnary(env: LowerEnv, x: BoundTensor, y: BoundTensor, act: Activation): Lowered {
  const n = sizeOf(y.shape);
  return [{
    kernel: unaryKernel(act.kind),
    params: UNARY_PARAMS.pack({ n, ...activationParams(act) }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(n, EW_WG)),
    label: env.label,
    flops: n,
  }];
}

/** y = act(x·scale[c] + shift[c]) with c the axis-1 index of an N×C×… tensor. */
export function lowerChannelAffine(env: LowerEnv, x: BoundTensor, scale: BoundTensor, shift: BoundTensor, y: BoundTensor, act: Activation = NO_ACTIVATION): Lowered {
  const n = sizeOf(y.shape);
  const channels = x.shape.length > 1 ? x.shape[1] : 1;
  const inner = x.shape.slice(2).reduce((p, d) => p * d, 1);
  return [{
    kernel: channelAffineKernel(act.kind),
    params: CHANNEL_AFFINE_PARAMS.pack({ n, channels, inner, ...activationParams(act) }),
    buffers: [x.binding, scale.binding, shift.binding, y.binding],
    workgroups: grid1d(cdiv(n, EW_WG)),
    label: env.label,
    flops: 2 * n,
  }];
}

/** y = cond != 0 ? a : b element-wise; all four tensors have one shape (broadcast first). */
export function lowerWhere(env: LowerEnv, cond: BoundTensor, a: BoundTensor, b: BoundTensor, y: BoundTensor): Lowered {
  for (const t of [cond, a, b]) {
    if (!shapeEquals(t.shape, y.shape)) {
      throw new ShapeError(env.label, `where needs operands of the output's shape, got cond ${formatShape(cond.shape)}, a ${formatShape(a.shape)}, b ${formatShape(b.shape)}, y ${formatShape(y.shape)}`);
    }
  }
  const n = sizeOf(y.shape);
  if (n === 0) return [];
  const vec4 = n % 4 === 0 && [cond, a, b, y].every((t) => (t.binding.offset ?? 0) % 16 === 0);
  const items = vec4 ? n / 4 : n;
  return [{
    kernel: whereKernel(vec4),
    params: WHERE_PARAMS.pack({ n: items }),
    buffers: [cond.binding, a.binding, b.binding, y.binding],
    workgroups: grid1d(cdiv(items, EW_WG)),
    label: env.label,
    flops: n,
  }];
}

/** Float64 reference of lowerWhere: a NaN or denormal condition selects a, ±0 selects b (the GPU tests the bits alike). */
export function whereCpu(cond: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  if (a.length !== cond.length || b.length !== cond.length) throw new Error(`whereCpu: lengths differ (${cond.length}, ${a.length}, ${b.length})`);
  return Float64Array.from({ length: cond.length }, (_, i) => (cond[i] !== 0 ? a[i] : b[i]));
}
