import { ACTIVATION_PARAMS, type Activation, activationWgsl } from './pointwise.js';
import { type KernelDef, ParamLayout, elementwiseMain } from '../runtime/kernel.js';

/** Elements per workgroup of the point-wise kernels. */
export const EW_WG = 256;

/** Highest rank the broadcasting kernels index directly (higher ranks are collapsed first). */
export const MAX_BCAST_RANK = 6;

export type BinaryOpKind = 'add' | 'sub' | 'mul' | 'div';

const BINARY_EXPR: Record<BinaryOpKind, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
};

const R = Array.from({ length: MAX_BCAST_RANK }, (_, i) => i);

export const BINARY_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['rank', 'u32'],
  ['a_off', 'u32'],
  ['b_off', 'u32'],
  ...ACTIVATION_PARAMS,
  ...R.map((i) => [`d${i}`, 'u32'] as const),
  ...R.map((i) => [`as${i}`, 'u32'] as const),
  ...R.map((i) => [`bs${i}`, 'u32'] as const),
]);

/** y = act(a ∘ b) with NumPy broadcasting through per-dimension strides (0 on broadcast axes). */
export function binaryKernel(op: BinaryOpKind, act: Activation['kind']): KernelDef {
  // Dimensions are stored right-aligned: d5 is the innermost axis, rank counts from there.
  return {
    key: `binary/${op}/${act}`,
    params: BINARY_PARAMS,
    storage: [
      { name: 'A', access: 'read', element: 'f32' },
      { name: 'B', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${activationWgsl(act)}${elementwiseMain(EW_WG, 'params.n', `  var rem = i;
  var ia = params.a_off;
  var ib = params.b_off;
${R.map(
  (k) => `  if (${k}u < params.rank) {
    let d = params.d${MAX_BCAST_RANK - 1 - k};
    let c = rem % d; rem = rem / d;
    ia += c * params.as${MAX_BCAST_RANK - 1 - k}; ib += c * params.bs${MAX_BCAST_RANK - 1 - k};
  }`,
).join('\n')}
  let a = A[ia];
  let b = B[ib];
  Y[i] = activate(${BINARY_EXPR[op]});`)}`,
  };
}

export const SAME_SHAPE_PARAMS = new ParamLayout([['n4', 'u32'], ...ACTIVATION_PARAMS]);

/**
 * y = act(a ∘ b) for operands of the output's shape and a size that is a multiple of 4:
 * vec4 loads and no index arithmetic (ResNet's residual additions).
 */
export function sameShapeBinaryKernel(op: BinaryOpKind, act: Activation['kind']): KernelDef {
  return {
    key: `binary_same/${op}/${act}`,
    params: SAME_SHAPE_PARAMS,
    storage: [
      { name: 'A', access: 'read', element: 'vec4<f32>' },
      { name: 'B', access: 'read', element: 'vec4<f32>' },
      { name: 'Y', access: 'read_write', element: 'vec4<f32>' },
    ],
    body: `${activationWgsl(act)}${elementwiseMain(EW_WG, 'params.n4', `  let a = A[i];
  let b = B[i];
  let v = ${BINARY_EXPR[op]};
  Y[i] = vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w));`)}`,
  };
}

export const UNARY_PARAMS = new ParamLayout([['n', 'u32'], ...ACTIVATION_PARAMS]);

/** y = act(x) element-wise, for any row of POINTWISE ('none' is a copy). */
export function unaryKernel(act: Activation['kind']): KernelDef {
  return {
    key: `unary/${act}`,
    params: UNARY_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${activationWgsl(act)}${elementwiseMain(EW_WG, 'params.n', `  Y[i] = activate(X[i]);`)}`,
  };
}

export const CHANNEL_AFFINE_PARAMS = new ParamLayout([['n', 'u32'], ['channels', 'u32'], ['inner', 'u32'], ...ACTIVATION_PARAMS]);

/** y = act(x · scale[c] + shift[c]) over NC… tensors: BatchNormalization in inference form. */
export function channelAffineKernel(act: Activation['kind']): KernelDef {
  return {
    key: `channel_affine/${act}`,
    params: CHANNEL_AFFINE_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Scale', access: 'read', element: 'f32' },
      { name: 'Shift', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${activationWgsl(act)}${elementwiseMain(EW_WG, 'params.n', `  let c = (i / params.inner) % params.channels;
  Y[i] = activate(fma(X[i], Scale[c], Shift[c]));`)}`,
  };
}

export const WHERE_PARAMS = new ParamLayout([['n', 'u32']]);

/**
 * y = cond != 0 ? a : b over four tensors of one shape (callers broadcast first). The test
 * is on the bits (any set bit but the sign), not a float comparison: WGSL may assume there
 * are no NaNs (llvmpipe evaluates NaN != 0 as false), and a flushed denormal would compare
 * equal to 0. So NaN and denormal conditions select a, ±0 selects b, exactly as whereCpu.
 * vec4: n counts vec4s.
 */
export function whereKernel(vec4: boolean): KernelDef {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const U = vec4 ? 'vec4<u32>' : 'u32';
  return {
    key: `where${vec4 ? '/v4' : ''}`,
    params: WHERE_PARAMS,
    storage: [
      { name: 'Cond', access: 'read', element: T },
      { name: 'A', access: 'read', element: T },
      { name: 'B', access: 'read', element: T },
      { name: 'Y', access: 'read_write', element: T },
    ],
    body: elementwiseMain(EW_WG, 'params.n', `  Y[i] = select(B[i], A[i], (bitcast<${U}>(Cond[i]) & ${U}(0x7fffffffu)) != ${U}(0u));`),
  };
}
