import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout } from '../runtime/kernel.js';

export const SOFTMAX_PARAMS = new ParamLayout([
  ['rows', 'u32'],
  ['axis_len', 'u32'],
  ['inner', 'u32'],
]);

/** Softmax along one axis; an invocation owns one (outer, inner) line and makes three passes over it. */
export function softmaxKernel(log: boolean): KernelDef {
  return {
    key: `softmax/${log ? 'log' : 'plain'}`,
    params: SOFTMAX_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = linear_group(wid, nwg) * 64u + li;
  if (row >= params.rows) { return; }
  let o = row / params.inner;
  let i = row % params.inner;
  let base = o * params.axis_len * params.inner + i;
  let step = params.inner;
  var m = -3.402823e38;
  for (var a = 0u; a < params.axis_len; a++) { m = max(m, X[base + a * step]); }
  var s = 0.0;
  for (var a = 0u; a < params.axis_len; a++) { s += exp(X[base + a * step] - m); }
  ${log
    ? 'let ls = log(s);\n  for (var a = 0u; a < params.axis_len; a++) { Y[base + a * step] = X[base + a * step] - m - ls; }'
    : 'let inv = 1.0 / s;\n  for (var a = 0u; a < params.axis_len; a++) { Y[base + a * step] = exp(X[base + a * step] - m) * inv; }'}
}
`,
  };
}
