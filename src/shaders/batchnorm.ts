import { ACTIVATION_PARAMS, type Activation, activationWgsl } from './pointwise.js';
import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout, elementwiseMain } from '../runtime/kernel.js';
import { EW_WG } from './elementwise.js';

/**
 * Training-mode batch normalization over N×C×(spatial) tensors, channel c's elements being
 * N planes of HW. Reductions are two launches without atomics or barriers: one invocation
 * per (n, c) plane sums its plane, then one invocation per channel folds the N plane sums in
 * image order, so every result is the same from run to run. Point-wise launches take vec4s
 * when HW is a multiple of 4 (a vec4 never straddles two channels; lavapipe pays per load).
 */
export const BN_WG = 64;

export const BN_PLANE_PARAMS = new ParamLayout([
  ['planes', 'u32'],
  ['C', 'u32'],
  /** Elements per plane, in vec4s for the vec4 variants. */
  ['HWq', 'u32'],
  ['eps', 'f32'],
]);

/**
 * Per (n, c) plane of X: stats mode, the sums of (x − K_c) and (x − K_c)² with the shift
 * K_c = X[0, c, 0] (a sample of the channel, so the one-pass variance does not cancel
 * catastrophically when |mean| ≫ std); grad mode, Σ g·(x − mean_c) and Σ g. Written as
 * P[(n·C + c)·2 + {0, 1}].
 */
export function bnPlaneSumsKernel(mode: 'stats' | 'grad', vec4: boolean): KernelDef {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const fold = (v: string) => (vec4 ? `dot(${v}, vec4<f32>(1.0))` : v);
  const grad = mode === 'grad';
  return {
    key: `batchnorm/plane_sums/${mode}/${vec4 ? 'v4' : 's'}`,
    params: BN_PLANE_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: T },
      ...(grad ? [{ name: 'Stats', access: 'read' as const, element: 'f32' }, { name: 'G', access: 'read' as const, element: T }] : []),
      { name: 'P', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${BN_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let plane = linear_group(wid, nwg) * ${BN_WG}u + li;
  if (plane >= params.planes) { return; }
  let c = plane % params.C;
  let base = plane * params.HWq;
  ${grad ? 'let shift = Stats[c];' : `let shift = X[c * params.HWq]${vec4 ? '.x' : ''};`}
  var a = ${T}(0.0);
  var b = ${T}(0.0);
  for (var i = 0u; i < params.HWq; i++) {
    let d = X[base + i] - ${T}(shift);
${grad ? `    let g = G[base + i];
    a = fma(g, d, a);
    b += g;` : `    a += d;
    b = fma(d, d, b);`}
  }
  P[plane * 2u] = ${fold('a')};
  P[plane * 2u + 1u] = ${fold('b')};
}
`,
  };
}

export const BN_FOLD_PARAMS = new ParamLayout([
  ['N', 'u32'],
  ['C', 'u32'],
  ['HWq', 'u32'],
  /** Elements per channel (N·HW). */
  ['M', 'f32'],
  ['eps', 'f32'],
]);

/**
 * Per channel, the plane sums folded in image order. stats: Out = [mean; var] (biased
 * variance, clamped at 0), from the shifted sums and the shift read back from X. grad:
 * Out = [Σ g·x̂; Σ g] (gamma's and beta's gradients), x̂ = (x − mean)·invstd.
 */
export function bnFoldKernel(mode: 'stats' | 'grad', vec4: boolean): KernelDef {
  const grad = mode === 'grad';
  return {
    key: `batchnorm/fold/${mode}/${vec4 ? 'v4' : 's'}`,
    params: BN_FOLD_PARAMS,
    storage: [
      { name: 'P', access: 'read', element: 'f32' },
      grad ? { name: 'Stats', access: 'read', element: 'f32' } : { name: 'X', access: 'read', element: vec4 ? 'vec4<f32>' : 'f32' },
      { name: 'Out', access: 'read_write', element: 'f32' },
    ],
    body: `@compute @workgroup_size(${BN_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= params.C) { return; }
  var a = 0.0;
  var b = 0.0;
  for (var n = 0u; n < params.N; n++) {
    let at = (n * params.C + c) * 2u;
    a += P[at];
    b += P[at + 1u];
  }
${grad ? `  let invstd = 1.0 / sqrt(Stats[params.C + c] + params.eps);
  Out[c] = a * invstd;
  Out[params.C + c] = b;` : `  let shift = X[c * params.HWq]${vec4 ? '.x' : ''};
  let m1 = a / params.M;
  Out[c] = shift + m1;
  Out[params.C + c] = max(b / params.M - m1 * m1, 0.0);`}
}
`,
  };
}

export const BN_APPLY_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['C', 'u32'],
  ['HWq', 'u32'],
  ['eps', 'f32'],
  ['M', 'f32'],
  ...ACTIVATION_PARAMS,
]);

/** Y = act((X − mean[c])·invstd[c]·gamma[c] + beta[c]); n counts elements (vec4s for the vec4 variant). */
export function bnApplyKernel(act: Activation['kind'], vec4: boolean): KernelDef {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  return {
    key: `batchnorm/apply/${act}/${vec4 ? 'v4' : 's'}`,
    params: BN_APPLY_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: T },
      { name: 'Stats', access: 'read', element: 'f32' },
      { name: 'Gamma', access: 'read', element: 'f32' },
      { name: 'Beta', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: T },
    ],
    body: `${activationWgsl(act)}${elementwiseMain(EW_WG, 'params.n', `  let c = (i / params.HWq) % params.C;
  let scale = Gamma[c] / sqrt(Stats[params.C + c] + params.eps);
  let shift = Beta[c] - Stats[c] * scale;
  let v = fma(X[i], ${T}(scale), ${T}(shift));
  Y[i] = ${vec4 ? 'vec4<f32>(activate(v.x), activate(v.y), activate(v.z), activate(v.w))' : 'activate(v)'};`)}`,
  };
}

/**
 * GX from the gradient G at batchnorm's output (before any fused activation's gradient:
 * the caller applied it). batchStats: gamma·invstd·(g − (Σg + x̂·Σg·x̂)/M), reading
 * Params = [Σ g·x̂; Σ g]; else gamma·invstd·g (statistics that do not depend on X).
 */
export function bnGradInputKernel(batchStats: boolean, vec4: boolean): KernelDef {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  return {
    key: `batchnorm/grad_input/${batchStats ? 'batch' : 'fixed'}/${vec4 ? 'v4' : 's'}`,
    params: BN_APPLY_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: T },
      { name: 'Stats', access: 'read', element: 'f32' },
      { name: 'Gamma', access: 'read', element: 'f32' },
      { name: 'G', access: 'read', element: T },
      ...(batchStats ? [{ name: 'Sums', access: 'read' as const, element: 'f32' }] : []),
      { name: 'GX', access: 'read_write', element: T },
    ],
    body: `${elementwiseMain(EW_WG, 'params.n', `  let c = (i / params.HWq) % params.C;
  let invstd = 1.0 / sqrt(Stats[params.C + c] + params.eps);
  let k = Gamma[c] * invstd;
${batchStats ? `  let xhat = (X[i] - ${T}(Stats[c])) * invstd;
  let dgamma = Sums[c];
  let dbeta = Sums[params.C + c];
  GX[i] = ${T}(k) * (G[i] - (${T}(dbeta) + xhat * dgamma) / params.M);` : '  GX[i] = G[i] * k;'}`)}`,
  };
}

export const BN_RUNNING_PARAMS = new ParamLayout([
  ['C', 'u32'],
  ['momentum', 'f32'],
  /** M / (M − 1): the running variance is the unbiased estimate, as PyTorch keeps it. */
  ['unbias', 'f32'],
]);

/** Running = (1 − momentum)·Running + momentum·[mean; unbias·var], in place, both rows [2, C]. */
export function bnRunningUpdateKernel(): KernelDef {
  return {
    key: 'batchnorm/running_update',
    params: BN_RUNNING_PARAMS,
    storage: [
      { name: 'Stats', access: 'read', element: 'f32' },
      { name: 'Running', access: 'read_write', element: 'f32' },
    ],
    body: `@compute @workgroup_size(${BN_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= 2u * params.C) { return; }
  let batch = select(Stats[i], Stats[i] * params.unbias, i >= params.C);
  Running[i] = mix(Running[i], batch, params.momentum);
}
`,
  };
}
