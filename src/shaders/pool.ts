import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout, elementwiseMain } from '../runtime/kernel.js';

export const POOL_WG = 256;

export const POOL_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['H', 'u32'],
  ['W', 'u32'],
  ['OH', 'u32'],
  ['OW', 'u32'],
  ['KH', 'u32'],
  ['KW', 'u32'],
  ['stride_h', 'u32'],
  ['stride_w', 'u32'],
  ['pad_h', 'u32'],
  ['pad_w', 'u32'],
  ['pad_h_end', 'u32'],
  ['pad_w_end', 'u32'],
  ['dil_h', 'u32'],
  ['dil_w', 'u32'],
  ['count_include_pad', 'u32'],
]);

/**
 * Max / average pooling over NCHW planes, one output per invocation. Average divides by
 * the taps inside the input, or (count_include_pad) inside the padded input, as ONNX does.
 */
export function poolKernel(kind: 'max' | 'avg'): KernelDef {
  return {
    key: `pool2d/${kind}`,
    params: POOL_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(POOL_WG, 'params.n', `  let ox = i % params.OW;
  let oy = (i / params.OW) % params.OH;
  let plane = i / (params.OW * params.OH);
  let Hi = i32(params.H);
  let Wi = i32(params.W);
  let y0 = i32(oy * params.stride_h) - i32(params.pad_h);
  let x0 = i32(ox * params.stride_w) - i32(params.pad_w);
  let base = plane * params.H * params.W;
  var best = -3.402823e38;
  var sum = 0.0;
  var inside = 0u;
  var padded = 0u;
  for (var p = 0u; p < params.KH; p++) {
    let iy = y0 + i32(p * params.dil_h);
    for (var q = 0u; q < params.KW; q++) {
      let ix = x0 + i32(q * params.dil_w);
      if (iy >= 0 && iy < Hi && ix >= 0 && ix < Wi) {
        let v = X[base + u32(iy) * params.W + u32(ix)];
        best = max(best, v);
        sum += v;
        inside++;
      } else if (iy < Hi + i32(params.pad_h_end) && ix < Wi + i32(params.pad_w_end)) {
        padded++;
      }
    }
  }
  ${kind === 'max'
    ? 'Y[i] = best;'
    : 'let count = select(inside, inside + padded, params.count_include_pad != 0u);\n  Y[i] = sum / f32(max(count, 1u));'}`)}`,
  };
}

export const GLOBAL_POOL_PARAMS = new ParamLayout([
  ['planes', 'u32'],
  ['size', 'u32'],
]);

/** Mean or max over each plane (GlobalAveragePool / GlobalMaxPool), one plane per invocation. */
export function globalPoolKernel(kind: 'max' | 'avg'): KernelDef {
  return {
    key: `global_pool/${kind}`,
    params: GLOBAL_POOL_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let plane = linear_group(wid, nwg) * 64u + li;
  if (plane >= params.planes) { return; }
  let base = plane * params.size;
  ${kind === 'avg'
    ? `var s0 = 0.0; var s1 = 0.0; var s2 = 0.0; var s3 = 0.0;
  var j = 0u;
  for (; j + 4u <= params.size; j += 4u) {
    s0 += X[base + j]; s1 += X[base + j + 1u]; s2 += X[base + j + 2u]; s3 += X[base + j + 3u];
  }
  for (; j < params.size; j++) { s0 += X[base + j]; }
  Y[plane] = ((s0 + s1) + (s2 + s3)) / f32(params.size);`
    : `var m = -3.402823e38;
  for (var j = 0u; j < params.size; j++) { m = max(m, X[base + j]); }
  Y[plane] = m;`}
}
`,
  };
}
