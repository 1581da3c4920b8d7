import { type ActivationKind, POINTWISE, type WgslReal } from './pointwise.js';
import { type KernelDef, LINEAR_GROUP_WGSL, elementwiseMain } from '../runtime/kernel.js';
import { EW_WG, UNARY_PARAMS } from './elementwise.js';
import { SOFTMAX_PARAMS } from './softmax.js';

/**
 * gx = gy · f'(x) from the row's derivative in POINTWISE: v is the activation's input x or
 * its output y, as the row's `from` says (fused activations keep only y). Parameters as
 * UNARY_PARAMS (act_a, act_b carry the activation's arguments).
 */
export function activationGradKernel(kind: ActivationKind, vec4 = false): KernelDef {
  const real: WgslReal = vec4 ? 'vec4<f32>' : 'f32';
  const row = POINTWISE[kind];
  // vec4: n counts vec4s (the caller checks the size is a multiple of 4); 4× fewer loads on lavapipe.
  return {
    key: `activation_grad/${kind}${vec4 ? '/v4' : ''}`,
    params: UNARY_PARAMS,
    storage: [
      { name: 'V', access: 'read', element: real },
      { name: 'GY', access: 'read', element: real },
      { name: 'GX', access: 'read_write', element: real },
    ],
    body: `alias Real = ${real};
${row.wgslHelpers?.(real) ?? ''}${elementwiseMain(EW_WG, 'params.n', `  let v = V[i];
  let g = GY[i];
  GX[i] = ${row.derivative.wgsl};`)}`,
  };
}

/**
 * Softmax gradient along one axis (SOFTMAX_PARAMS, one (outer, inner) line per invocation,
 * as softmaxKernel): gx = y ⊙ (gy − Σ gy ⊙ y); for log-softmax, whose output y gives
 * softmax = exp(y), gx = gy − exp(y) · Σ gy.
 */
export function softmaxGradKernel(log: boolean): KernelDef {
  return {
    key: `softmax_grad/${log ? 'log' : 'plain'}`,
    params: SOFTMAX_PARAMS,
    storage: [
      { name: 'Y', access: 'read', element: 'f32' },
      { name: 'GY', access: 'read', element: 'f32' },
      { name: 'GX', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = linear_group(wid, nwg) * 64u + li;
  if (row >= params.rows) { return; }
  let base = (row / params.inner) * params.axis_len * params.inner + row % params.inner;
  let step = params.inner;
  var s = 0.0;
  for (var a = 0u; a < params.axis_len; a++) { s += ${log ? 'GY[base + a * step]' : 'GY[base + a * step] * Y[base + a * step]'}; }
  for (var a = 0u; a < params.axis_len; a++) {
    let k = base + a * step;
    GX[k] = ${log ? 'GY[k] - exp(Y[k]) * s' : 'Y[k] * (GY[k] - s)'};
  }
}
`,
  };
}
