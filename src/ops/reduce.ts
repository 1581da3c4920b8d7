import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { broadcastShapes, formatShape, normalizeAxis, type Shape, shapeEquals, sizeOf, stridesOf } from '../runtime/shape.js';
import { EW_WG, MAX_BCAST_RANK } from '../shaders/elementwise.js';
import {
  BROADCAST_PARAMS, broadcastKernel, COMBINE_PARAMS, REDUCE_PARAMS, REDUCE_ROUTE_PARAMS, REDUCE_WG, type ReduceOp,
  reduceArgKernel, reduceCombineKernel, reduceKernel, reduceRouteKernel,
} from '../shaders/reduce.js';
import { collapseBroadcast } from './elementwise.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export type ReduceKind = 'sum' | 'mean' | 'max' | 'min';

function normalizeAxes(where: string, rank: number, axes: readonly number[]): Set<number> {
  const out = new Set<number>();
  for (const a of axes) {
    const n = normalizeAxis(a, rank);
    if (!Number.isInteger(n) || n < 0 || n >= rank) throw new ShapeError(where, `reduce axis ${a} out of range for rank ${rank}`);
    out.add(n);
  }
  return out;
}

/**
 * Shape of a reduction with keepdims: the reduced axes become 1 (negative axes count from
 * the end; repeats allowed). An empty axis list reduces nothing, so reducing a gradient
 * over "the broadcast axes" needs no special case when there are none.
 */
export function reduceShape(x: Shape, axes: number[]): number[] {
  const set = normalizeAxes('reduce', x.length, axes);
  return x.map((d, i) => (set.has(i) ? 1 : d));
}

/**
 * x viewed as alternating runs of kept and reduced axes: adjacent axes of the same kind
 * merge, size-1 axes vanish. `dims`/`red` are outermost first.
 */
interface ReduceLayout {
  dims: number[];
  red: boolean[];
  /** Outputs and reduced elements per output. */
  n: number;
  R: number;
}

function reduceLayout(where: string, x: Shape, axes: readonly number[]): ReduceLayout {
  const set = normalizeAxes(where, x.length, axes);
  const dims: number[] = [];
  const red: boolean[] = [];
  let n = 1;
  let R = 1;
  x.forEach((d, i) => {
    const r = set.has(i);
    if (r) R *= d;
    else n *= d;
    if (d === 1) return;
    if (red.length > 0 && red[red.length - 1] === r) dims[dims.length - 1] *= d;
    else {
      dims.push(d);
      red.push(r);
    }
  });
  return { dims, red, n, R };
}

/** REDUCE_PARAMS geometry: up to 3 kept and 3 reduced axis runs, right-aligned (slot 2 innermost), with x strides. */
function reduceGeometry(where: string, l: ReduceLayout): Record<string, number> {
  const strides = stridesOf(l.dims);
  const kept: [number, number][] = [];
  const reduced: [number, number][] = [];
  l.dims.forEach((d, i) => (l.red[i] ? reduced : kept).push([d, strides[i]]));
  if (kept.length > 3 || reduced.length > 3) {
    throw new ShapeError(where, `reduction interleaves ${kept.length} kept and ${reduced.length} reduced axis runs; at most 3 of each are supported`);
  }
  const v: Record<string, number> = {};
  for (let s = 0; s < 3; s++) {
    const k = kept[kept.length - 3 + s];
    const r = reduced[reduced.length - 3 + s];
    v[`kd${s}`] = k ? k[0] : 1;
    v[`ks${s}`] = k ? k[1] : 0;
    v[`rd${s}`] = r ? r[0] : 1;
    v[`rs${s}`] = r ? r[1] : 0;
  }
  return v;
}

/** Invocations worth keeping busy before a long reduction is split into partials. */
const SPLIT_TARGET = 4096;
/** Fewest reduced elements one partial should take. */
const MIN_CHUNK = 256;
/** Most partials: the folding launch reads them serially per output. */
const MAX_PARTS = 1024;

/**
 * y = reduce(x) over `axes` with keepdims (y.shape = reduceShape(x.shape, axes)). One
 * invocation per output; when there are few outputs and long reductions, the reduced
 * range is split into fixed chunks whose partials a second launch folds in chunk order,
 * so results do not depend on scheduling.
 */
export function lowerReduce(env: LowerEnv, kind: ReduceKind, x: BoundTensor, y: BoundTensor, axes: number[]): Lowered {
  const want = reduceShape(x.shape, axes);
  if (!shapeEquals(want, y.shape)) throw new ShapeError(env.label, `reduce of ${formatShape(x.shape)} over [${axes}] gives ${formatShape(want)}, not ${formatShape(y.shape)}`);
  const l = reduceLayout(env.label, x.shape, axes);
  if (l.n === 0) return [];
  const geom = reduceGeometry(env.label, l);
  const op: ReduceOp = kind === 'mean' ? 'sum' : kind;
  const scale = kind === 'mean' ? 1 / Math.max(l.R, 1) : 1;
  let parts = Math.min(cdiv(SPLIT_TARGET, l.n), Math.max(1, Math.floor(l.R / MIN_CHUNK)), MAX_PARTS);
  const chunk = Math.max(1, cdiv(l.R, Math.max(parts, 1)));
  parts = Math.max(1, cdiv(l.R, chunk));
  const partsLimit = Math.floor(env.ctx.limits.maxStorageBufferBindingSize / (4 * l.n));
  if (parts > Math.min(partsLimit, 65535)) parts = 1;
  const wg = grid1d(cdiv(l.n, REDUCE_WG));
  if (parts === 1) {
    return [{
      kernel: reduceKernel(op),
      params: REDUCE_PARAMS.pack({ n: l.n, R: l.R, chunk: Math.max(l.R, 1), scale, ...geom }),
      buffers: [x.binding, y.binding],
      workgroups: wg,
      label: env.label,
      flops: sizeOf(x.shape),
    }];
  }
  const partial = env.scratch(parts * l.n * 4, [parts, l.n]);
  return [
    {
      kernel: reduceKernel(op),
      params: REDUCE_PARAMS.pack({ n: l.n, R: l.R, chunk: cdiv(l.R, parts), scale: 1, ...geom }),
      buffers: [x.binding, partial.binding],
      workgroups: [wg[0], wg[1], parts],
      label: env.label,
      flops: sizeOf(x.shape),
    },
    {
      kernel: reduceCombineKernel(op),
      params: COMBINE_PARAMS.pack({ n: l.n, parts, scale }),
      buffers: [partial.binding, y.binding],
      workgroups: grid1d(cdiv(l.n, EW_WG)),
      label: env.label,
      flops: parts * l.n,
    },
  ];
}

/**
 * y = x expanded to y.shape by NumPy broadcasting (x's axes right-aligned, size-1 axes
 * repeated), optionally scaled: the gradient of a sum (scale 1) or mean (1/R) reduction.
 */
function broadcastLaunch(env: LowerEnv, x: BoundTensor, y: BoundTensor, scale: number): Lowered {
  const out = y.shape;
  const b = broadcastShapes(x.shape, out);
  if (!b || !shapeEquals(b, out)) throw new ShapeError(env.label, `${formatShape(x.shape)} does not broadcast to ${formatShape(out)}`);
  const n = sizeOf(out);
  if (n === 0) return [];
  const s = stridesOf(x.shape);
  const sx = out.map((d, i) => {
    const j = i - (out.length - x.shape.length);
    return j < 0 || x.shape[j] === 1 ? 0 : s[j];
  });
  const c = collapseBroadcast(out, sx, out.map(() => 0));
  if (c.dims.length > MAX_BCAST_RANK) {
    throw new ShapeError(env.label, `broadcast of ${formatShape(x.shape)} to ${formatShape(out)} needs rank ${c.dims.length} > ${MAX_BCAST_RANK}`);
  }
  const pad = MAX_BCAST_RANK - c.dims.length;
  const perAxis: Record<`d${number}` | `s${number}`, number> = {};
  for (let i = 0; i < MAX_BCAST_RANK; i++) {
    perAxis[`d${i}`] = i < pad ? 1 : c.dims[i - pad];
    perAxis[`s${i}`] = i < pad ? 0 : c.sa[i - pad];
  }
  return [{
    kernel: broadcastKernel(),
    params: BROADCAST_PARAMS.pack({ n, rank: c.dims.length, scale, ...perAxis }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(n, EW_WG)),
    label: env.label,
    flops: 0,
  }];
}

export function lowerBroadcast(env: LowerEnv, x: BoundTensor, y: BoundTensor): Lowered {
  return broadcastLaunch(env, x, y, 1);
}

/**
 * Gradient of a reduction without its output: sum / mean broadcast gy back (times 1/R for
 * mean); max / min first find, per output, the reduced index of the first extremum of x
 * in row-major order (recomputed from x, so it needs no y), then route gy there.
 */
export function reduceGradFromInput(env: LowerEnv, kind: ReduceKind, x: BoundTensor, gy: BoundTensor, gx: BoundTensor, axes: number[]): Lowered {
  const want = reduceShape(x.shape, axes);
  if (!shapeEquals(want, gy.shape)) throw new ShapeError(env.label, `gradient ${formatShape(gy.shape)} of a reduction of ${formatShape(x.shape)} over [${axes}] should be ${formatShape(want)}`);
  if (!shapeEquals(x.shape, gx.shape)) throw new ShapeError(env.label, `input gradient ${formatShape(gx.shape)} differs from input ${formatShape(x.shape)}`);
  const l = reduceLayout(env.label, x.shape, axes);
  if (kind === 'sum' || kind === 'mean') return broadcastLaunch(env, gy, gx, kind === 'mean' ? 1 / Math.max(l.R, 1) : 1);
  const total = sizeOf(x.shape);
  if (total === 0) return [];
  const geom = reduceGeometry(env.label, l);
  const arg = env.scratch(l.n * 4, [l.n]);
  const pad = MAX_BCAST_RANK - l.dims.length;
  const perAxis: Record<`d${number}` | `red${number}`, number> = {};
  for (let i = 0; i < MAX_BCAST_RANK; i++) {
    perAxis[`d${i}`] = i < pad ? 1 : l.dims[i - pad];
    perAxis[`red${i}`] = i < pad ? 0 : l.red[i - pad] ? 1 : 0;
  }
  return [
    {
      kernel: reduceArgKernel(kind),
      params: REDUCE_PARAMS.pack({ n: l.n, R: l.R, chunk: l.R, scale: 1, ...geom }),
      buffers: [x.binding, arg.binding],
      workgroups: grid1d(cdiv(l.n, REDUCE_WG)),
      label: env.label,
      flops: total,
    },
    {
      kernel: reduceRouteKernel(),
      params: REDUCE_ROUTE_PARAMS.pack({ n: total, rank: l.dims.length, ...perAxis }),
      buffers: [gy.binding, arg.binding, gx.binding],
      workgroups: grid1d(cdiv(total, EW_WG)),
      label: env.label,
      flops: 0,
    },
  ];
}

/**
 * gx = ∂(Σ gy ⊙ reduce(x))/∂x. `y` (the forward output) only fixes the shapes: max / min
 * routes to the first extremum of x itself, which is the element y was taken from.
 */
export function lowerReduceGrad(env: LowerEnv, kind: ReduceKind, x: BoundTensor, y: BoundTensor, gy: BoundTensor, gx: BoundTensor, axes: number[]): Lowered {
  if (!shapeEquals(y.shape, gy.shape)) throw new ShapeError(env.label, `gradient ${formatShape(gy.shape)} differs from output ${formatShape(y.shape)}`);
  return reduceGradFromInput(env, kind, x, gy, gx, axes);
}
