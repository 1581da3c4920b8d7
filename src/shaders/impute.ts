import { elementwiseMain, type KernelDef, LINEAR_GROUP_WGSL, ParamLayout } from '../runtime/kernel.js';

/**
 * Noisy linear imputation (ROAD, Leemann et al. 2022) solved by conjugate gradients, one
 * system per (image, channel). Unknowns are the removed pixels; each equals the weighted mean
 * of its in-image 8 neighbours (1/6 straight, 1/12 diagonal): d_i·u_i − Σ_{removed j} w_ij u_j
 * = Σ_{known j} w_ij x_j, with d_i the sum of the in-image neighbour weights. That matrix is
 * symmetric and, as soon as one pixel of the image is known, positive definite.
 *
 * Vectors live on the full H×W grid of each system; R, P and Q are kept at 0 on known pixels,
 * so A·p needs no mask lookup at the neighbours and the updates need none at all. Dot products
 * are reduced in two fixed-order stages (a thread's chunk of `chunk` consecutive pixels, then
 * one workgroup per system over its chunks): deterministic, no atomics.
 *
 * SYS holds 4 floats per system: ρ = r·r, ‖b‖², the step's coefficient (α after the alpha
 * kernel, β after the beta kernel) and a done flag. A system is done when ρ ≤ tol²·‖b‖² (or
 * when b = 0: no removed pixel, or none known); every kernel returns at once for a done
 * system, so the fixed number of recorded iterations costs little past convergence.
 */
export const IMPUTE_WG = 64;
/** Workgroup of the per-system reductions (a power of two: the tree halves it). */
export const IMPUTE_SYS_WG = 64;
/** Pixels per thread in the kernels that also produce a partial dot product. */
export const IMPUTE_CHUNK = 32;

export const IMPUTE_PARAMS = new ParamLayout([
  ['systems', 'u32'],
  ['channels', 'u32'],
  ['h', 'u32'],
  ['w', 'u32'],
  /** Threads of the chunked kernels: systems × blocks. */
  ['threads', 'u32'],
  /** Chunks per system: ⌈h·w / chunk⌉. */
  ['blocks', 'u32'],
  ['chunk', 'u32'],
  /** tolerance², relative to ‖b‖². */
  ['tol2', 'f32'],
]);

/**
 * The 8-neighbour stencil at pixel (y, x) of plane `base`: Σ_j w_j·(V(j) − c) over the
 * in-image neighbours j (a missing neighbour's weight leaves the normalizer too, as road.py's
 * sum_neighbors: here its term is multiplied by 0, read at a clamped index). With c the
 * centre's value this is −(A·v)_i without forming d_i·v_i − Σ w_j v_j, whose two large terms
 * cancel: differences of neighbouring values round far less in float32.
 */
function stencilWgsl(fn: string, read: string): string {
  return `fn ${fn}(base: u32, y: u32, x: u32, c: f32) -> f32 {
  let W = params.w;
  let up = y > 0u;
  let down = y + 1u < params.h;
  let left = x > 0u;
  let right = x + 1u < W;
  let ym = select(y, y - 1u, up);
  let yp = select(y, y + 1u, down);
  let xm = select(x, x - 1u, left);
  let xp = select(x, x + 1u, right);
  let s = 0.16666667;
  let d = 0.083333336;
  var sum = select(0.0, s, up) * (${read}(base + ym * W + x) - c);
  sum += select(0.0, s, down) * (${read}(base + yp * W + x) - c);
  sum += select(0.0, s, left) * (${read}(base + y * W + xm) - c);
  sum += select(0.0, s, right) * (${read}(base + y * W + xp) - c);
  sum += select(0.0, d, up && left) * (${read}(base + ym * W + xm) - c);
  sum += select(0.0, d, up && right) * (${read}(base + ym * W + xp) - c);
  sum += select(0.0, d, down && left) * (${read}(base + yp * W + xm) - c);
  sum += select(0.0, d, down && right) * (${read}(base + yp * W + xp) - c);
  return sum;
}
`;
}

/** The chunk of thread t: system s, its image's plane, pixels [e0, e1). */
const CHUNK_HEAD = `  let s = i / params.blocks;
  let plane = params.h * params.w;
  let e0 = (i % params.blocks) * params.chunk;
  let e1 = min(plane, e0 + params.chunk);
  let base = s * plane;
  let kbase = (s / params.channels) * plane;`;

/**
 * Start of the solve: known pixels copy x, removed ones start at 0 with r = p = b; R, P, Q
 * are 0 on known pixels. PART[t] = Σ b² over the thread's chunk.
 */
export function imputeInitKernel(): KernelDef {
  return {
    key: 'impute_init',
    params: IMPUTE_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'KEEP', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
      { name: 'R', access: 'read_write', element: 'f32' },
      { name: 'P', access: 'read_write', element: 'f32' },
      { name: 'Q', access: 'read_write', element: 'f32' },
      { name: 'PART', access: 'read_write', element: 'f32' },
    ],
    body: `var<private> known_base: u32;
fn known_x(j: u32) -> f32 { return select(0.0, X[j], KEEP[known_base + (j % (params.h * params.w))] > 0.5); }
${stencilWgsl('stencil_known', 'known_x')}
${elementwiseMain(IMPUTE_WG, 'params.threads', `${CHUNK_HEAD}
  known_base = kbase;
  var acc = 0.0;
  for (var e = e0; e < e1; e++) {
    let j = base + e;
    Q[j] = 0.0;
    if (KEEP[kbase + e] > 0.5) {
      Y[j] = X[j];
      R[j] = 0.0;
      P[j] = 0.0;
    } else {
      let b = stencil_known(base, e / params.w, e % params.w, 0.0);
      Y[j] = 0.0;
      R[j] = b;
      P[j] = b;
      acc += b * b;
    }
  }
  PART[i] = acc;`)}`,
  };
}

/** q = A·p on removed pixels (0 elsewhere, already); PART[t] = Σ p·q over the chunk. */
export function imputeApplyKernel(): KernelDef {
  return {
    key: 'impute_apply',
    params: IMPUTE_PARAMS,
    storage: [
      { name: 'KEEP', access: 'read', element: 'f32' },
      { name: 'P', access: 'read', element: 'f32' },
      { name: 'Q', access: 'read_write', element: 'f32' },
      { name: 'PART', access: 'read_write', element: 'f32' },
      { name: 'SYS', access: 'read', element: 'f32' },
    ],
    body: `fn p_at(j: u32) -> f32 { return P[j]; }
${stencilWgsl('stencil_p', 'p_at')}
${elementwiseMain(IMPUTE_WG, 'params.threads', `${CHUNK_HEAD}
  if (SYS[s * 4u + 3u] != 0.0) { return; }
  var acc = 0.0;
  for (var e = e0; e < e1; e++) {
    if (KEEP[kbase + e] > 0.5) { continue; }
    let j = base + e;
    let p = P[j];
    let q = -stencil_p(base, e / params.w, e % params.w, p);
    Q[j] = q;
    acc += p * q;
  }
  PART[i] = acc;`)}`,
  };
}

/** u += α·p, r −= α·q (no-ops on known pixels, where p = q = r = 0); PART[t] = Σ r² over the chunk. */
export function imputeUpdateKernel(): KernelDef {
  return {
    key: 'impute_update',
    params: IMPUTE_PARAMS,
    storage: [
      { name: 'Y', access: 'read_write', element: 'f32' },
      { name: 'R', access: 'read_write', element: 'f32' },
      { name: 'P', access: 'read', element: 'f32' },
      { name: 'Q', access: 'read', element: 'f32' },
      { name: 'PART', access: 'read_write', element: 'f32' },
      { name: 'SYS', access: 'read', element: 'f32' },
    ],
    body: elementwiseMain(IMPUTE_WG, 'params.threads', `${CHUNK_HEAD}
  if (SYS[s * 4u + 3u] != 0.0) { return; }
  let alpha = SYS[s * 4u + 2u];
  var acc = 0.0;
  for (var e = e0; e < e1; e++) {
    let j = base + e;
    Y[j] = Y[j] + alpha * P[j];
    let r = R[j] - alpha * Q[j];
    R[j] = r;
    acc += r * r;
  }
  PART[i] = acc;`),
  };
}

/** p = r + β·p over the thread's chunk. */
export function imputeDirectionKernel(): KernelDef {
  return {
    key: 'impute_direction',
    params: IMPUTE_PARAMS,
    storage: [
      { name: 'R', access: 'read', element: 'f32' },
      { name: 'P', access: 'read_write', element: 'f32' },
      { name: 'SYS', access: 'read', element: 'f32' },
    ],
    body: elementwiseMain(IMPUTE_WG, 'params.threads', `${CHUNK_HEAD}
  if (SYS[s * 4u + 3u] != 0.0) { return; }
  let beta = SYS[s * 4u + 2u];
  for (var e = e0; e < e1; e++) {
    let j = base + e;
    P[j] = R[j] + beta * P[j];
  }`),
  };
}

export type ImputeScalarStep = 'start' | 'alpha' | 'beta';

/**
 * One workgroup per system folds its chunks' partial sums (lanes stride over them, then a
 * tree in workgroup memory: a fixed order) and updates the system's scalars:
 * 'start': ‖b‖² = ρ = Σ, done when b = 0; 'alpha': α = ρ / Σ p·q (done if that is not
 * positive); 'beta': β = Σ r²_new / ρ, ρ = Σ r²_new, done once ρ ≤ tol²·‖b‖².
 */
export function imputeScalarKernel(step: ImputeScalarStep): KernelDef {
  const update = {
    start: `    SYS[o] = total;
    SYS[o + 1u] = total;
    SYS[o + 2u] = 0.0;
    SYS[o + 3u] = select(0.0, 1.0, !(total > 0.0));`,
    alpha: `    if (SYS[o + 3u] != 0.0) { return; }
    let rho = SYS[o];
    if (total > 0.0 && rho > 0.0) { SYS[o + 2u] = rho / total; } else { SYS[o + 2u] = 0.0; SYS[o + 3u] = 1.0; }`,
    beta: `    if (SYS[o + 3u] != 0.0) { return; }
    let rho = SYS[o];
    SYS[o + 2u] = total / rho;
    SYS[o] = total;
    if (total <= params.tol2 * SYS[o + 1u]) { SYS[o + 3u] = 1.0; }`,
  }[step];
  return {
    key: `impute_scalar/${step}`,
    params: IMPUTE_PARAMS,
    storage: [
      { name: 'PART', access: 'read', element: 'f32' },
      { name: 'SYS', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
var<workgroup> lanes: array<f32, ${IMPUTE_SYS_WG}>;
@compute @workgroup_size(${IMPUTE_SYS_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let s = linear_group(wid, nwg);
  if (s >= params.systems) { return; }
  var v = 0.0;
  for (var k = li; k < params.blocks; k += ${IMPUTE_SYS_WG}u) { v += PART[s * params.blocks + k]; }
  lanes[li] = v;
  workgroupBarrier();
  for (var span = ${IMPUTE_SYS_WG / 2}u; span > 0u; span = span / 2u) {
    if (li < span) { lanes[li] = lanes[li] + lanes[li + span]; }
    workgroupBarrier();
  }
  if (li == 0u) {
    let total = lanes[0];
    let o = s * 4u;
${update}
  }
}
`,
  };
}

/**
 * The residual of a filled image F (x on known pixels, the solution on removed ones), from
 * scratch: on removed pixels r = Σ_j w_j·(F_j − F_i) (= b − A·u) and b = Σ_{known j} w_j F_j.
 * PART[2t] = Σ r², PART[2t + 1] = Σ b² over the chunk.
 */
export function imputeResidualPartsKernel(): KernelDef {
  return {
    key: 'impute_residual_parts',
    params: IMPUTE_PARAMS,
    storage: [
      { name: 'F', access: 'read', element: 'f32' },
      { name: 'KEEP', access: 'read', element: 'f32' },
      { name: 'PART', access: 'read_write', element: 'f32' },
    ],
    body: `var<private> known_base: u32;
fn f_at(j: u32) -> f32 { return F[j]; }
fn known_f(j: u32) -> f32 { return select(0.0, F[j], KEEP[known_base + (j % (params.h * params.w))] > 0.5); }
${stencilWgsl('stencil_f', 'f_at')}
${stencilWgsl('stencil_known', 'known_f')}
${elementwiseMain(IMPUTE_WG, 'params.threads', `${CHUNK_HEAD}
  known_base = kbase;
  var rr = 0.0;
  var bb = 0.0;
  for (var e = e0; e < e1; e++) {
    if (KEEP[kbase + e] > 0.5) { continue; }
    let j = base + e;
    let y = e / params.w;
    let x = e % params.w;
    let r = stencil_f(base, y, x, F[j]);
    let b = stencil_known(base, y, x, 0.0);
    rr += r * r;
    bb += b * b;
  }
  PART[2u * i] = rr;
  PART[2u * i + 1u] = bb;`)}`,
  };
}

/**
 * Y[n] = ‖r‖ / ‖b‖ over image n's channels (‖r‖ itself when b = 0: nothing removed, or
 * nothing known). One invocation per image, over its channels' chunks in order.
 */
export function imputeResidualFinalKernel(): KernelDef {
  return {
    key: 'impute_residual_final',
    params: IMPUTE_PARAMS,
    storage: [
      { name: 'PART', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: elementwiseMain(IMPUTE_WG, 'params.systems / params.channels', `  let per = params.channels * params.blocks;
  var rr = 0.0;
  var bb = 0.0;
  for (var k = 0u; k < per; k++) {
    rr += PART[2u * (i * per + k)];
    bb += PART[2u * (i * per + k) + 1u];
  }
  Y[i] = select(sqrt(rr), sqrt(rr) / sqrt(bb), bb > 0.0);`),
  };
}
