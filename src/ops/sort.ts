import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, sizeOf } from '../runtime/shape.js';
import { SORT_INIT_PARAMS, SORT_OUT_PARAMS, SORT_STEP_PARAMS, SORT_WG, sortInitKernel, sortOutputKernel, sortStepKernel } from '../shaders/sort.js';
import type { Dispatch } from '../runtime/recorder.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

export interface SortAttrs {
  descending: boolean;
  /** 'values': the sorted values; 'indices': where each came from in its row (as floats). */
  output: 'values' | 'indices';
}

/** Longest row a sort takes: indices must stay exact as float32. */
export const SORT_MAX_ROW = 1 << 24;

export function sortShape(where: string, x: readonly number[]): number[] {
  if (x.length < 1) throw new ShapeError(where, `sort needs at least one axis, got ${formatShape(x)}`);
  const len = x[x.length - 1];
  if (len > SORT_MAX_ROW) throw new ShapeError(where, `sort rows are at most ${SORT_MAX_ROW} long, got ${len}`);
  return [...x];
}

/**
 * A stable sort of every row of the last axis, as a bitonic network: rows padded to a power
 * of two, one launch per network stage over all rows (log₂P·(log₂P+1)/2 launches), keys and
 * indices in scratch. No atomics and no data-dependent control flow: deterministic.
 */
export function lowerSort(env: LowerEnv, x: BoundTensor, y: BoundTensor, a: SortAttrs): Lowered {
  const n = sizeOf(y.shape);
  if (n === 0) return [];
  const len = y.shape[y.shape.length - 1];
  const rows = n / len;
  let padded = 1;
  while (padded < len) padded *= 2;
  const total = rows * padded;
  const keys = env.scratch(total * 4, [total]);
  const idx = env.scratch(total * 4, [total]);
  const out: Dispatch[] = [{
    kernel: sortInitKernel(),
    params: SORT_INIT_PARAMS.pack({ n: total, len, padded, descending: a.descending ? 1 : 0 }),
    buffers: [x.binding, keys.binding, idx.binding],
    workgroups: grid1d(cdiv(total, SORT_WG)),
    label: env.label,
    flops: 0,
  }];
  const pairs = total / 2;
  for (let k = 2; k <= padded; k *= 2) {
    for (let j = k / 2; j >= 1; j /= 2) {
      out.push({
        kernel: sortStepKernel(),
        params: SORT_STEP_PARAMS.pack({ pairs, padded, k, j }),
        buffers: [keys.binding, idx.binding],
        workgroups: grid1d(cdiv(pairs, SORT_WG)),
        label: env.label,
        flops: 0,
      });
    }
  }
  out.push({
    kernel: sortOutputKernel(),
    params: SORT_OUT_PARAMS.pack({ n, len, padded, indices: a.output === 'indices' ? 1 : 0 }),
    buffers: [x.binding, idx.binding, y.binding],
    workgroups: grid1d(cdiv(n, SORT_WG)),
    label: env.label,
    flops: 0,
  });
  return out;
}

/** Float64 reference: a stable sort of each row (NaN last). */
export function sortRef(x: ArrayLike<number>, len: number, a: SortAttrs): Float64Array {
  const out = new Float64Array(x.length);
  for (let r = 0; r * len < x.length; r++) {
    const order = Array.from({ length: len }, (_, i) => i);
    const v = (i: number) => x[r * len + i];
    order.sort((i, j) => {
      const [p, q] = [v(i), v(j)];
      if (Number.isNaN(p) || Number.isNaN(q)) return Number.isNaN(p) === Number.isNaN(q) ? i - j : Number.isNaN(p) ? 1 : -1;
      return p === q ? i - j : (a.descending ? q - p : p - q);
    });
    order.forEach((src, i) => (out[r * len + i] = a.output === 'indices' ? src : v(src)));
  }
  return out;
}
