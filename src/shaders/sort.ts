import { elementwiseMain, type KernelDef, ParamLayout } from '../runtime/kernel.js';

export const SORT_WG = 64;

export const SORT_INIT_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['len', 'u32'],
  ['padded', 'u32'],
  ['descending', 'u32'],
]);

export const SORT_STEP_PARAMS = new ParamLayout([
  ['pairs', 'u32'],
  ['padded', 'u32'],
  ['k', 'u32'],
  ['j', 'u32'],
]);

export const SORT_OUT_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['len', 'u32'],
  ['padded', 'u32'],
  ['indices', 'u32'],
]);

/**
 * Rows of `len` values become rows of `padded` (a power of two) sort keys: the float's bits
 * mapped to an unsigned integer in the order of the reals (negatives flipped, positives with
 * the sign bit set; NaN last), complemented for a descending sort, and each element's index.
 * Padding gets the largest key and an index past the row, so it sorts last either way.
 */
export function sortInitKernel(): KernelDef {
  return {
    key: 'sort_init',
    params: SORT_INIT_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'KEYS', access: 'read_write', element: 'u32' },
      { name: 'IDX', access: 'read_write', element: 'u32' },
    ],
    body: elementwiseMain(SORT_WG, 'params.n', `  let row = i / params.padded;
  let p = i % params.padded;
  if (p >= params.len) { KEYS[i] = 0xffffffffu; IDX[i] = p; return; }
  var bits = bitcast<u32>(X[row * params.len + p]);
  if (bits == 0x80000000u) { bits = 0u; } // −0 sorts as +0
  var key = select(bits | 0x80000000u, ~bits, (bits & 0x80000000u) != 0u);
  if (params.descending != 0u) { key = ~key; }
  // Keep NaN (whatever its sign bit) after every number in both directions.
  if ((bits & 0x7fffffffu) > 0x7f800000u) { key = 0xfffffffeu; }
  KEYS[i] = key;
  IDX[i] = p;`),
  };
}

/**
 * One compare-exchange stage (k, j) of a bitonic sorting network over every row at once: pair
 * t of a row compares elements i and i + j, in the direction bit k of i gives. Keys compare
 * with the index as tie-break, so equal values keep their original order (a stable sort).
 */
export function sortStepKernel(): KernelDef {
  return {
    key: 'sort_step',
    params: SORT_STEP_PARAMS,
    storage: [
      { name: 'KEYS', access: 'read_write', element: 'u32' },
      { name: 'IDX', access: 'read_write', element: 'u32' },
    ],
    body: elementwiseMain(SORT_WG, 'params.pairs', `  let half = params.padded / 2u;
  let row = i / half;
  let t = i % half;
  let lo = (t / params.j) * 2u * params.j + t % params.j;
  let a = row * params.padded + lo;
  let b = a + params.j;
  let ka = KEYS[a];
  let kb = KEYS[b];
  let ia = IDX[a];
  let ib = IDX[b];
  let a_after_b = ka > kb || (ka == kb && ia > ib);
  let ascending = (lo & params.k) == 0u;
  if (a_after_b == ascending) {
    KEYS[a] = kb;
    KEYS[b] = ka;
    IDX[a] = ib;
    IDX[b] = ia;
  }`),
  };
}

/** The sorted rows: each position's value (read back from X through its index) or its index. */
export function sortOutputKernel(): KernelDef {
  return {
    key: 'sort_output',
    params: SORT_OUT_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'IDX', access: 'read', element: 'u32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: elementwiseMain(SORT_WG, 'params.n', `  let row = i / params.len;
  let src = IDX[row * params.padded + i % params.len];
  if (params.indices != 0u) { Y[i] = f32(src); } else { Y[i] = X[row * params.len + src]; }`),
  };
}
