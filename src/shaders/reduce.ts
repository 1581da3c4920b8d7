import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout, elementwiseMain } from '../runtime/kernel.js';
import { EW_WG, MAX_BCAST_RANK } from './elementwise.js';

/**
 * Reductions over any set of axes. The host collapses the input into alternating kept and
 * reduced axis groups, so every reduction is at most 3 kept × 3 reduced axes (slot 2 the
 * innermost, unused slots of size 1). One invocation owns one output (or one output's share
 * of the reduced range) and walks its reduced elements in row-major order with an odometer
 * over the reduced axes: a fixed summation order, so results are deterministic.
 */
export const REDUCE_WG = 64;

const S3 = [0, 1, 2];
const R6 = Array.from({ length: MAX_BCAST_RANK }, (_, i) => i);

export type ReduceOp = 'sum' | 'max' | 'min';

export const REDUCE_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['R', 'u32'],
  ['chunk', 'u32'],
  ['scale', 'f32'],
  ...S3.map((i) => [`kd${i}`, 'u32'] as const),
  ...S3.map((i) => [`ks${i}`, 'u32'] as const),
  ...S3.map((i) => [`rd${i}`, 'u32'] as const),
  ...S3.map((i) => [`rs${i}`, 'u32'] as const),
]);

const INIT: Record<ReduceOp, string> = { sum: '0.0', max: '-3.402823e38', min: '3.402823e38' };
const COMBINE: Record<ReduceOp, (acc: string, v: string) => string> = {
  sum: (a, v) => `${a} + ${v}`,
  max: (a, v) => `max(${a}, ${v})`,
  min: (a, v) => `min(${a}, ${v})`,
};

/** WGSL that sets `off` to output o's first element of reduced index `r_start`. */
const START_WGSL = `  var q = o;
  let q2 = q % params.kd2; q = q / params.kd2;
  let q1 = q % params.kd1; let q0 = q / params.kd1;
  var rr = r_start;
  var c2 = rr % params.rd2; rr = rr / params.rd2;
  var c1 = rr % params.rd1; var c0 = rr / params.rd1;
  var off = q0 * params.ks0 + q1 * params.ks1 + q2 * params.ks2 + c0 * params.rs0 + c1 * params.rs1 + c2 * params.rs2;`;

/** Advances the odometer by one reduced element (innermost axis first, carrying outwards). */
const STEP_WGSL = `    off += params.rs2; c2++;
    if (c2 >= params.rd2) {
      off -= params.rd2 * params.rs2; c2 = 0u; off += params.rs1; c1++;
      if (c1 >= params.rd1) { off -= params.rd1 * params.rs1; c1 = 0u; off += params.rs0; c0++; }
    }`;

/**
 * Y[z·n + o] = op over the reduced elements [z·chunk, min(R, (z+1)·chunk)) of output o, times
 * `scale` (sum only: the mean's 1/R when there is one chunk). z = workgroup_id.z splits long
 * reductions into partials that reduceCombineKernel folds in a fixed order.
 */
export function reduceKernel(op: ReduceOp): KernelDef {
  return {
    key: `reduce/${op}`,
    params: REDUCE_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let o = linear_group(wid, nwg) * ${REDUCE_WG}u + li;
  if (o >= params.n) { return; }
  let r_start = wid.z * params.chunk;
  let r_end = min(params.R, r_start + params.chunk);
${START_WGSL}
  var acc = ${INIT[op]};
  for (var r = r_start; r < r_end; r++) {
    acc = ${COMBINE[op]('acc', 'X[off]')};
${STEP_WGSL}
  }
  Y[wid.z * params.n + o] = ${op === 'sum' ? 'acc * params.scale' : 'acc'};
}
`,
  };
}

/**
 * Arg[o] = reduced index (row-major over the reduced axes) of the FIRST maximum / minimum of
 * output o's elements: where the gradient of a max / min reduction goes.
 */
export function reduceArgKernel(op: 'max' | 'min'): KernelDef {
  return {
    key: `reduce_arg/${op}`,
    params: REDUCE_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Arg', access: 'read_write', element: 'u32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let o = linear_group(wid, nwg) * ${REDUCE_WG}u + li;
  if (o >= params.n) { return; }
  let r_start = 0u;
${START_WGSL}
  var best = X[off];
  var arg = 0u;
  for (var r = 0u; r < params.R; r++) {
    let v = X[off];
    if (v ${op === 'max' ? '>' : '<'} best) { best = v; arg = r; }
${STEP_WGSL}
  }
  Arg[o] = arg;
}
`,
  };
}

export const COMBINE_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['parts', 'u32'],
  ['scale', 'f32'],
]);

/** Y[o] = op over p of P[p·n + o] (partials of a split reduction, folded in order), times scale for sums. */
export function reduceCombineKernel(op: ReduceOp): KernelDef {
  return {
    key: `reduce_combine/${op}`,
    params: COMBINE_PARAMS,
    storage: [
      { name: 'P', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${EW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let o = linear_group(wid, nwg) * ${EW_WG}u + li;
  if (o >= params.n) { return; }
  var acc = ${INIT[op]};
  for (var p = 0u; p < params.parts; p++) { acc = ${COMBINE[op]('acc', 'P[p * params.n + o]')}; }
  Y[o] = ${op === 'sum' ? 'acc * params.scale' : 'acc'};
}
`,
  };
}

export const REDUCE_ROUTE_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['rank', 'u32'],
  ...R6.map((i) => [`d${i}`, 'u32'] as const),
  ...R6.map((i) => [`red${i}`, 'u32'] as const),
]);

/**
 * Gradient of a max / min reduction: GX[i] = GY[o(i)] where element i is the arg element of
 * its output, else 0. i is split over the collapsed axes (right-aligned, `red` flags the
 * reduced ones) into o (row-major over kept axes) and r (row-major over reduced axes).
 */
export function reduceRouteKernel(): KernelDef {
  return {
    key: 'reduce_route',
    params: REDUCE_ROUTE_PARAMS,
    storage: [
      { name: 'GY', access: 'read', element: 'f32' },
      { name: 'Arg', access: 'read', element: 'u32' },
      { name: 'GX', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(EW_WG, 'params.n', `  var rem = i;
  var o = 0u; var om = 1u;
  var r = 0u; var rm = 1u;
${R6.map((k) => {
  const d = MAX_BCAST_RANK - 1 - k;
  return `  if (${k}u < params.rank) {
    let c = rem % params.d${d}; rem = rem / params.d${d};
    if (params.red${d} != 0u) { r += c * rm; rm *= params.d${d}; } else { o += c * om; om *= params.d${d}; }
  }`;
}).join('\n')}
  GX[i] = select(0.0, GY[o], Arg[o] == r);`)}`,
  };
}

export const BROADCAST_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['rank', 'u32'],
  ['scale', 'f32'],
  ...R6.map((i) => [`d${i}`, 'u32'] as const),
  ...R6.map((i) => [`s${i}`, 'u32'] as const),
]);

/** Y[i] = scale · X[Σ c_k·s_k] with stride 0 on broadcast axes (NumPy expand; a sum's / mean's gradient). */
export function broadcastKernel(): KernelDef {
  return {
    key: 'broadcast',
    params: BROADCAST_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(EW_WG, 'params.n', `  var rem = i;
  var src = 0u;
${R6.map((k) => {
  const d = MAX_BCAST_RANK - 1 - k;
  return `  if (${k}u < params.rank) { let c = rem % params.d${d}; rem = rem / params.d${d}; src += c * params.s${d}; }`;
}).join('\n')}
  Y[i] = params.scale * X[src];`)}`,
  };
}
