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
