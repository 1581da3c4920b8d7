import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import type { Dispatch } from '../runtime/recorder.js';
import { formatShape, type Shape, shapeEquals, sizeOf } from '../runtime/shape.js';
import {
  BN_APPLY_PARAMS, BN_FOLD_PARAMS, BN_PLANE_PARAMS, BN_RUNNING_PARAMS, BN_WG, bnApplyKernel, bnFoldKernel, bnGradInputKernel,
  bnPlaneSumsKernel, bnRunningUpdateKernel,
} from '../shaders/batchnorm.js';
import { EW_WG } from '../shaders/elementwise.js';
import { type Activation, activationParams, NO_ACTIVATION } from './activation.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

/** PyTorch's BatchNorm defaults. */
export const BN_EPS = 1e-5;
export const BN_MOMENTUM = 0.1;

interface BnLayout {
  N: number;
  C: number;
  HW: number;
  vec4: boolean;
}

/** N, C and the spatial size of an N×C×… tensor, and whether its planes can be read as vec4s. */
function layoutOf(where: string, x: Shape, ...bound: BoundTensor[]): BnLayout {
  if (x.length < 2) throw new ShapeError(where, `batch normalization needs an N×C×… tensor, got ${formatShape(x)}`);
  const [N, C] = x;
  const HW = sizeOf(x.slice(2));
  const vec4 = HW % 4 === 0 && bound.every((t) => (t.binding.offset ?? 0) % 16 === 0);
  return { N, C, HW, vec4 };
}

function expect(where: string, what: string, t: BoundTensor, shape: Shape): void {
  if (!shapeEquals(t.shape, shape)) throw new ShapeError(where, `${what} is ${formatShape(t.shape)}, expected ${formatShape(shape)}`);
}

/** Per-plane sums then their per-channel fold (see bnPlaneSumsKernel / bnFoldKernel). */
function reduceChannels(env: LowerEnv, mode: 'stats' | 'grad', l: BnLayout, inputs: GPUBufferBinding[], foldInput: GPUBufferBinding, out: BoundTensor, eps: number): Lowered {
  const planes = l.N * l.C;
  const HWq = l.vec4 ? l.HW / 4 : l.HW;
  const partial = env.scratch(planes * 2 * 4, [planes, 2]);
  const first: Dispatch = {
    kernel: bnPlaneSumsKernel(mode, l.vec4),
    params: BN_PLANE_PARAMS.pack({ planes, C: l.C, HWq, eps }),
    buffers: [...inputs, partial.binding],
    workgroups: grid1d(cdiv(planes, BN_WG)),
    label: env.label,
    flops: 3 * planes * l.HW,
  };
  const fold: Dispatch = {
    kernel: bnFoldKernel(mode, l.vec4),
    params: BN_FOLD_PARAMS.pack({ N: l.N, C: l.C, HWq, M: l.N * l.HW, eps }),
    buffers: [partial.binding, foldInput, out.binding],
    workgroups: [cdiv(l.C, BN_WG), 1, 1],
    label: env.label,
    flops: 2 * planes,
  };
  return [first, fold];
}

/** stats = [mean; biased var] of x per channel over N and the spatial axes. */
export function lowerBatchNormStats(env: LowerEnv, x: BoundTensor, stats: BoundTensor): Lowered {
  const l = layoutOf(env.label, x.shape, x);
  expect(env.label, 'statistics', stats, [2, l.C]);
  if (l.N * l.HW === 0) throw new ShapeError(env.label, `batch statistics of an empty tensor ${formatShape(x.shape)}`);
  return reduceChannels(env, 'stats', l, [x.binding], x.binding, stats, 0);
}

function applyGeometry(l: BnLayout) {
  const n = sizeOf([l.N, l.C, l.HW]);
  const items = l.vec4 ? n / 4 : n;
  return { n, items, HWq: l.vec4 ? l.HW / 4 : l.HW };
}

/** y = act((x − mean)·invstd·gamma + beta) with the statistics of `stats` [2, C]. */
export function lowerBatchNorm(env: LowerEnv, x: BoundTensor, stats: BoundTensor, gamma: BoundTensor, beta: BoundTensor, y: BoundTensor, eps: number, act: Activation = NO_ACTIVATION): Lowered {
  const l = layoutOf(env.label, x.shape, x, y);
  expect(env.label, 'output', y, x.shape);
  expect(env.label, 'statistics', stats, [2, l.C]);
  if (sizeOf(gamma.shape) !== l.C || sizeOf(beta.shape) !== l.C) throw new ShapeError(env.label, `scale ${formatShape(gamma.shape)} / bias ${formatShape(beta.shape)} do not have ${l.C} channels`);
  const g = applyGeometry(l);
  if (g.n === 0) return [];
  return [{
    kernel: bnApplyKernel(act.kind, l.vec4),
    params: BN_APPLY_PARAMS.pack({ n: g.items, C: l.C, HWq: g.HWq, eps, M: l.N * l.HW, ...activationParams(act) }),
    buffers: [x.binding, stats.binding, gamma.binding, beta.binding, y.binding],
    workgroups: grid1d(cdiv(g.items, EW_WG)),
    label: env.label,
    flops: 2 * g.n,
  }];
}

/** out = [Σ g·x̂; Σ g] per channel: gamma's and beta's gradients. */
export function lowerBatchNormGradParams(env: LowerEnv, x: BoundTensor, stats: BoundTensor, g: BoundTensor, out: BoundTensor, eps: number): Lowered {
  const l = layoutOf(env.label, x.shape, x, g);
  expect(env.label, 'output gradient', g, x.shape);
  expect(env.label, 'statistics', stats, [2, l.C]);
  expect(env.label, 'parameter gradients', out, [2, l.C]);
  return reduceChannels(env, 'grad', l, [x.binding, stats.binding, g.binding], stats.binding, out, eps);
}

/** The input gradient of lowerBatchNorm (see bnGradInputKernel); `sums` from lowerBatchNormGradParams when the statistics are x's own. */
export function lowerBatchNormGradInput(env: LowerEnv, x: BoundTensor, stats: BoundTensor, gamma: BoundTensor, g: BoundTensor, sums: BoundTensor | null, gx: BoundTensor, eps: number): Lowered {
  const l = layoutOf(env.label, x.shape, x, g, gx);
  expect(env.label, 'output gradient', g, x.shape);
  expect(env.label, 'input gradient', gx, x.shape);
  expect(env.label, 'statistics', stats, [2, l.C]);
  if (sums) expect(env.label, 'parameter gradients', sums, [2, l.C]);
  const geo = applyGeometry(l);
  if (geo.n === 0) return [];
  return [{
    kernel: bnGradInputKernel(sums !== null, l.vec4),
    params: BN_APPLY_PARAMS.pack({ n: geo.items, C: l.C, HWq: geo.HWq, eps, M: l.N * l.HW, ...activationParams(NO_ACTIVATION) }),
    buffers: [x.binding, stats.binding, gamma.binding, g.binding, ...(sums ? [sums.binding] : []), gx.binding],
    workgroups: grid1d(cdiv(geo.items, EW_WG)),
    label: env.label,
    flops: (sums ? 6 : 2) * geo.n,
  }];
}

/**
 * The running statistics' update after a training step (outside any plan: it writes a
 * state buffer in place): running ← (1 − momentum)·running + momentum·[mean; M/(M−1)·var],
 * M the elements per channel of the batch, as PyTorch does.
 */
export function runningStatsUpdate(label: string, stats: GPUBufferBinding, running: GPUBufferBinding, channels: number, elementsPerChannel: number, momentum = BN_MOMENTUM): Dispatch & { params: Uint32Array } {
  const M = elementsPerChannel;
  return {
    kernel: bnRunningUpdateKernel(),
    params: BN_RUNNING_PARAMS.pack({ C: channels, momentum, unbias: M > 1 ? M / (M - 1) : 1 }),
    buffers: [stats, running],
    workgroups: [cdiv(2 * channels, BN_WG), 1, 1],
    label,
    flops: 4 * channels,
  };
}
