import { type KernelDef, ParamLayout, elementwiseMain } from '../runtime/kernel.js';

/** Parameter updates in place, one element per invocation (parameters are small next to activations). */
export const OPTIM_WG = 256;

export const SGD_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['lr', 'f32'],
  ['momentum', 'f32'],
  ['weight_decay', 'f32'],
]);

/**
 * SGD with momentum as PyTorch's torch.optim.SGD (dampening 0): g' = g + wd·p,
 * v ← μ·v + g', p ← p − lr·(nesterov ? g' + μ·v : v). The velocity starts at 0, which
 * makes the first step's v = g' as PyTorch's first-step copy does.
 */
export function sgdKernel(nesterov: boolean): KernelDef {
  return {
    key: `optim/sgd/${nesterov ? 'nesterov' : 'plain'}`,
    params: SGD_PARAMS,
    storage: [
      { name: 'G', access: 'read', element: 'f32' },
      { name: 'P', access: 'read_write', element: 'f32' },
      { name: 'V', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(OPTIM_WG, 'params.n', `  let p = P[i];
  let g = G[i] + params.weight_decay * p;
  let v = params.momentum * V[i] + g;
  V[i] = v;
  P[i] = p - params.lr * ${nesterov ? '(g + params.momentum * v)' : 'v'};`)}`,
  };
}

export const ADAM_PARAMS = new ParamLayout([
  ['n', 'u32'],
  /** 1-based count of this update, for the bias corrections 1 − β^t. */
  ['step', 'u32'],
  ['lr', 'f32'],
  ['beta1', 'f32'],
  ['beta2', 'f32'],
  ['eps', 'f32'],
  ['weight_decay', 'f32'],
]);

/**
 * Adam as PyTorch's torch.optim.Adam (decoupled: AdamW): g' = g + wd·p (AdamW instead
 * shrinks p by lr·wd first), m ← β1·m + (1 − β1)·g', v ← β2·v + (1 − β2)·g'²,
 * p ← p − lr·m̂ / (√v̂ + eps) with m̂ = m/(1 − β1^t), v̂ = v/(1 − β2^t).
 */
export function adamKernel(decoupled: boolean): KernelDef {
  return {
    key: `optim/adam/${decoupled ? 'adamw' : 'l2'}`,
    params: ADAM_PARAMS,
    storage: [
      { name: 'G', access: 'read', element: 'f32' },
      { name: 'P', access: 'read_write', element: 'f32' },
      { name: 'M', access: 'read_write', element: 'f32' },
      { name: 'V', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(OPTIM_WG, 'params.n', `  let t = f32(params.step);
  var p = P[i];
${decoupled ? '  p = p * (1.0 - params.lr * params.weight_decay);\n  let g = G[i];' : '  let g = G[i] + params.weight_decay * p;'}
  let m = params.beta1 * M[i] + (1.0 - params.beta1) * g;
  let v = params.beta2 * V[i] + (1.0 - params.beta2) * g * g;
  M[i] = m;
  V[i] = v;
  let mhat = m / (1.0 - pow(params.beta1, t));
  let vhat = v / (1.0 - pow(params.beta2, t));
  P[i] = p - params.lr * mhat / (sqrt(vhat) + params.eps);`)}`,
  };
}
