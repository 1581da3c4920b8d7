import { elementwiseMain, type KernelDef, ParamLayout } from '../runtime/kernel.js';

export const GATHER_WG = 64;

export const GATHER_ROWS_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['row_len', 'u32'],
  ['rows_in', 'u32'],
]);

/**
 * y[r, :] = x[idx[r], :] over rows of row_len elements (idx holds row numbers as floats, the
 * way every camgpu tensor is f32). An index outside [0, rows_in) writes zeros.
 */
export function gatherRowsKernel(): KernelDef {
  return {
    key: 'gather_rows',
    params: GATHER_ROWS_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'IDX', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: elementwiseMain(GATHER_WG, 'params.n', `  let r = i / params.row_len;
  let src = IDX[r];
  if (src < 0.0 || src >= f32(params.rows_in)) { Y[i] = 0.0; return; }
  Y[i] = X[u32(src) * params.row_len + i % params.row_len];`),
  };
}

export const GATHER_ROWS_VEC4_PARAMS = new ParamLayout([
  ['len4', 'u32'],
  ['rows_in', 'u32'],
  ['x_groups', 'u32'],
]);

/**
 * The same gather for rows of a multiple of 4 elements: one row per grid row (wid.y), vec4
 * copies, no division per element (llvmpipe runs integer division and scattered index math
 * per lane; this is what every sweep's per-row gathers of images and activations go through).
 */
export function gatherRowsVec4Kernel(): KernelDef {
  return {
    key: 'gather_rows_vec4',
    params: GATHER_ROWS_VEC4_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'vec4<f32>' },
      { name: 'IDX', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'vec4<f32>' },
    ],
    body: `
@compute @workgroup_size(${GATHER_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let e = (wid.x + wid.z * params.x_groups) * ${GATHER_WG}u + li;
  if (e >= params.len4) { return; }
  let r = wid.y;
  let src = IDX[r];
  if (src < 0.0 || src >= f32(params.rows_in)) { Y[r * params.len4 + e] = vec4<f32>(0.0); return; }
  Y[r * params.len4 + e] = X[u32(src) * params.len4 + e];
}
`,
  };
}
