import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout } from '../runtime/kernel.js';

export const ONEHOT_ARGMAX_PARAMS = new ParamLayout([['rows', 'u32'], ['cols', 'u32']]);

/** One-hot rows at each row's first maximum: the default Grad-CAM target, chosen on the GPU. */
export function onehotArgmaxKernel(): KernelDef {
  return {
    key: 'onehot_argmax',
    params: ONEHOT_ARGMAX_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = linear_group(wid, nwg) * 64u + li;
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var best = 0u;
  for (var c = 1u; c < params.cols; c++) {
    if (X[base + c] > X[base + best]) { best = c; }
  }
  for (var c = 0u; c < params.cols; c++) { Y[base + c] = select(0.0, 1.0, c == best); }
}
`,
  };
}
