import type { Activation } from '../ops/activation.js';
import { type KernelDef, LINEAR_GROUP_WGSL, elementwiseMain } from '../runtime/kernel.js';
import { EW_WG, UNARY_PARAMS } from './elementwise.js';
import { SOFTMAX_PARAMS } from './softmax.js';

/**
 * gx = gy · f'(x) written in terms of the activation's output y (fused activations keep only
 * y): relu 1[y > 0], clip 1[min < y < max], leaky_relu (alpha > 0) 1 or alpha by the sign of
 * y, sigmoid y(1 − y), none 1. Parameters as UNARY_PARAMS (act_a, act_b = clip bounds / alpha).
 */
export function activationGradKernel(act: Activation['kind'], vec4 = false): KernelDef {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const zero = `${T}(0.0)`;
  const expr: Record<Activation['kind'], string> = {
    none: 'g',
    relu: `select(${zero}, g, y > ${zero})`,
    clip: `select(${zero}, g, (y > ${T}(params.act_a)) & (y < ${T}(params.act_b)))`,
    leaky_relu: `select(g * params.act_a, g, y >= ${zero})`,
    sigmoid: 'g * y * (1.0 - y)',
  };
  // vec4: n counts vec4s (the caller checks the size is a multiple of 4); 4× fewer loads on lavapipe.
  return {
    key: `activation_grad/${act}${vec4 ? '/v4' : ''}`,
    params: UNARY_PARAMS,
    storage: [
      { name: 'Y', access: 'read', element: T },
      { name: 'GY', access: 'read', element: T },
      { name: 'GX', access: 'read_write', element: T },
    ],
    body: `${elementwiseMain(EW_WG, 'params.n', `  let y = Y[i];
  let g = GY[i];
  GX[i] = ${expr[act]};`)}`,
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
