import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, sizeOf } from '../runtime/shape.js';
import { GATHER_ROWS_PARAMS, GATHER_ROWS_VEC4_PARAMS, GATHER_WG, gatherRowsKernel, gatherRowsVec4Kernel } from '../shaders/gather.js';
import { MAX_WORKGROUPS_PER_DIM } from '../runtime/kernel.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

/** Output shape of gathering rows of x [R0, …] at idx [R]: [R, …]. */
export function gatherRowsShape(where: string, x: readonly number[], idx: readonly number[]): number[] {
  if (x.length < 1 || idx.length !== 1) throw new ShapeError(where, `gather_rows needs x [R, …] and indices [N], got ${formatShape(x)}, ${formatShape(idx)}`);
  return [idx[0], ...x.slice(1)];
}

export function lowerGatherRows(env: LowerEnv, x: BoundTensor, idx: BoundTensor, y: BoundTensor): Lowered {
  const n = sizeOf(y.shape);
  if (n === 0) return [];
  const rowLen = sizeOf(x.shape.slice(1));
  const rows = y.shape[0];
  if (rowLen % 4 === 0 && rowLen > 0 && rows <= MAX_WORKGROUPS_PER_DIM) {
    const groups = cdiv(rowLen / 4, GATHER_WG);
    const gx = Math.min(groups, MAX_WORKGROUPS_PER_DIM);
    return [{
      kernel: gatherRowsVec4Kernel(),
      params: GATHER_ROWS_VEC4_PARAMS.pack({ len4: rowLen / 4, rows_in: x.shape[0], x_groups: gx }),
      buffers: [x.binding, idx.binding, y.binding],
      workgroups: [gx, rows, cdiv(groups, gx)],
      label: env.label,
      flops: 0,
    }];
  }
  return [{
    kernel: gatherRowsKernel(),
    params: GATHER_ROWS_PARAMS.pack({ n, row_len: Math.max(1, rowLen), rows_in: x.shape[0] }),
    buffers: [x.binding, idx.binding, y.binding],
    workgroups: grid1d(cdiv(n, GATHER_WG)),
    label: env.label,
    flops: 0,
  }];
}

/** Float64 reference. */
export function gatherRowsRef(x: ArrayLike<number>, rows: number, idx: ArrayLike<number>): Float64Array {
  const len = x.length / rows;
  const out = new Float64Array(idx.length * len);
  for (let r = 0; r < idx.length; r++) {
    const s = idx[r];
    if (s < 0 || s >= rows) continue;
    for (let e = 0; e < len; e++) out[r * len + e] = x[Math.floor(s) * len + e];
  }
  return out;
}
