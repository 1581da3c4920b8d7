import { type KernelDef, LINEAR_GROUP_WGSL, elementwiseMain } from '../runtime/kernel.js';
import { POOL_PARAMS, POOL_WG } from './pool.js';

/** Marks a window without a single input tap (its maximum is a constant). */
export const NO_TAP = 0xffffffff;

/**
 * Arg[o] = in-plane index iy·W + ix of the FIRST maximum of window o in scan order (kh-major,
 * then kw), the element PyTorch routes the window's gradient to; NO_TAP for a window that
 * lies entirely in the padding. Same window geometry as poolKernel (POOL_PARAMS, n = outputs).
 */
export function poolArgmaxKernel(): KernelDef {
  return {
    key: 'pool2d_grad/argmax',
    params: POOL_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Arg', access: 'read_write', element: 'u32' },
    ],
    body: `${elementwiseMain(POOL_WG, 'params.n', `  let ox = i % params.OW;
  let oy = (i / params.OW) % params.OH;
  let plane = i / (params.OW * params.OH);
  let Hi = i32(params.H);
  let Wi = i32(params.W);
  let y0 = i32(oy * params.stride_h) - i32(params.pad_h);
  let x0 = i32(ox * params.stride_w) - i32(params.pad_w);
  let base = plane * params.H * params.W;
  var best = 0.0;
  var arg = ${NO_TAP}u;
  for (var p = 0u; p < params.KH; p++) {
    let iy = y0 + i32(p * params.dil_h);
    for (var q = 0u; q < params.KW; q++) {
      let ix = x0 + i32(q * params.dil_w);
      if (iy >= 0 && iy < Hi && ix >= 0 && ix < Wi) {
        let at = u32(iy) * params.W + u32(ix);
        let v = X[base + at];
        if (arg == ${NO_TAP}u || v > best) { best = v; arg = at; }
      }
    }
  }
  Arg[i] = arg;`)}`,
  };
}

/**
 * Pooling gradient gathered per input element (POOL_PARAMS with n = input elements): the
 * element visits every window that can contain it, one per tap (kh, kw) with
 * oy·stride = iy + pad − kh·dil, and takes that window's gradient: all of it if it is the
 * window's arg element (max), or gy / count with poolKernel's count rule (avg: the taps
 * inside the input, or with count_include_pad those inside the padded extent, which also
 * clips ceil_mode windows).
 */
export function poolGradKernel(kind: 'max' | 'avg'): KernelDef {
  const max = kind === 'max';
  return {
    key: `pool2d_grad/${kind}`,
    params: POOL_PARAMS,
    storage: [
      { name: 'GY', access: 'read', element: 'f32' },
      ...(max ? [{ name: 'Arg', access: 'read' as const, element: 'u32' }] : []),
      { name: 'GX', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
${max ? '' : `// (taps inside [0, len), taps inside [0, len + pad_end)) of the window starting at start.
fn axis_count(start: i32, k: u32, dil: u32, len: u32, pad_end: u32) -> vec2<u32> {
  var inside = 0u;
  var extent = 0u;
  for (var p = 0u; p < k; p++) {
    let c = start + i32(p * dil);
    if (c >= 0 && c < i32(len)) { inside++; }
    if (c < i32(len + pad_end)) { extent++; }
  }
  return vec2<u32>(inside, extent);
}
`}
@compute @workgroup_size(${POOL_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${POOL_WG}u + li;
  if (i >= params.n) { return; }
  let at = i % (params.H * params.W);
  let plane = i / (params.H * params.W);
  let iy = i32(at / params.W);
  let ix = i32(at % params.W);
  let obase = plane * params.OH * params.OW;
  var acc = 0.0;
  for (var p = 0u; p < params.KH; p++) {
    let ty = iy + i32(params.pad_h) - i32(p * params.dil_h);
    if (ty < 0) { break; }
    if (u32(ty) % params.stride_h != 0u) { continue; }
    let oy = u32(ty) / params.stride_h;
    if (oy >= params.OH) { continue; }
${max ? '' : `    let rows = axis_count(i32(oy * params.stride_h) - i32(params.pad_h), params.KH, params.dil_h, params.H, params.pad_h_end);
`}    for (var q = 0u; q < params.KW; q++) {
      let tx = ix + i32(params.pad_w) - i32(q * params.dil_w);
      if (tx < 0) { break; }
      if (u32(tx) % params.stride_w != 0u) { continue; }
      let ox = u32(tx) / params.stride_w;
      if (ox >= params.OW) { continue; }
      let o = obase + oy * params.OW + ox;
${max
  ? '      if (Arg[o] == at) { acc += GY[o]; }'
  : `      let cols = axis_count(i32(ox * params.stride_w) - i32(params.pad_w), params.KW, params.dil_w, params.W, params.pad_w_end);
      let count = select(rows.x * cols.x, rows.y * cols.y, params.count_include_pad != 0u);
      acc += GY[o] / f32(max(count, 1u));`}
    }
  }
  GX[i] = acc;
}
`,
  };
}

/**
 * Max-pool gradient for windows that tile the input exactly (stride = kernel, no padding,
 * no dilation; VGG's 2×2/2 pools): one invocation per window finds the first maximum and
 * writes the window's gradient there and zero on the rest of the window, so every input
 * element is written once and no argmax buffer is needed.
 */
export function poolGradTiledMaxKernel(): KernelDef {
  return {
    key: 'pool2d_grad/max_tiled',
    params: POOL_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'GY', access: 'read', element: 'f32' },
      { name: 'GX', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(POOL_WG, 'params.n', `  let ox = i % params.OW;
  let oy = (i / params.OW) % params.OH;
  let plane = i / (params.OW * params.OH);
  let base = plane * params.H * params.W + oy * params.KH * params.W + ox * params.KW;
  var best = X[base];
  var arg = 0u;
  for (var p = 0u; p < params.KH; p++) {
    for (var q = 0u; q < params.KW; q++) {
      let v = X[base + p * params.W + q];
      if (v > best) { best = v; arg = p * params.KW + q; }
    }
  }
  let g = GY[i];
  for (var p = 0u; p < params.KH; p++) {
    for (var q = 0u; q < params.KW; q++) {
      GX[base + p * params.W + q] = select(0.0, g, p * params.KW + q == arg);
    }
  }`)}`,
  };
}
