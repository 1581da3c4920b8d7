import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout } from '../runtime/kernel.js';
import { EW_WG, MAX_BCAST_RANK } from './elementwise.js';

const R = Array.from({ length: MAX_BCAST_RANK }, (_, i) => i);

export const SOFTMAX_PARAMS = new ParamLayout([
  ['rows', 'u32'],
  ['axis_len', 'u32'],
  ['inner', 'u32'],
]);

/** Softmax along one axis; an invocation owns one (outer, inner) line and makes three passes over it. */
export function softmaxKernel(log: boolean): KernelDef {
  return {
    key: `softmax/${log ? 'log' : 'plain'}`,
    params: SOFTMAX_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = linear_group(wid, nwg) * 64u + li;
  if (row >= params.rows) { return; }
  let o = row / params.inner;
  let i = row % params.inner;
  let base = o * params.axis_len * params.inner + i;
  let step = params.inner;
  var m = -3.402823e38;
  for (var a = 0u; a < params.axis_len; a++) { m = max(m, X[base + a * step]); }
  var s = 0.0;
  for (var a = 0u; a < params.axis_len; a++) { s += exp(X[base + a * step] - m); }
  ${log
    ? 'let ls = log(s);\n  for (var a = 0u; a < params.axis_len; a++) { Y[base + a * step] = X[base + a * step] - m - ls; }'
    : 'let inv = 1.0 / s;\n  for (var a = 0u; a < params.axis_len; a++) { Y[base + a * step] = exp(X[base + a * step] - m) * inv; }'}
}
`,
  };
}

export const SLICE_COPY_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['in_axis', 'u32'],
  ['inner', 'u32'],
  ['out_axis', 'u32'],
  ['offset', 'u32'],
]);

/** Copies X (outer × in_axis × inner) into Y's axis range [offset, offset + in_axis): one Concat input. */
export function sliceCopyKernel(): KernelDef {
  return {
    key: 'slice_copy',
    params: SLICE_COPY_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${EW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${EW_WG}u + li;
  if (i >= params.n) { return; }
  let inner = i % params.inner;
  let a = (i / params.inner) % params.in_axis;
  let o = i / (params.inner * params.in_axis);
  Y[(o * params.out_axis + params.offset + a) * params.inner + inner] = X[i];
}
`,
  };
}

export const PAD_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['rank', 'u32'],
  ['value', 'f32'],
  ...R.map((i) => [`od${i}`, 'u32'] as const),
  ...R.map((i) => [`id${i}`, 'u32'] as const),
  ...R.map((i) => [`pb${i}`, 'i32'] as const),
]);

export type PadMode = 'constant' | 'reflect' | 'edge' | 'wrap';

/** ONNX Pad: each output coordinate maps back to an input coordinate by the mode (negative pads crop). */
export function padKernel(mode: PadMode): KernelDef {
  const map: Record<PadMode, string> = {
    constant: 'if (c < 0 || c >= len) { inside = false; }',
    edge: 'c = clamp(c, 0, len - 1);',
    reflect: 'if (len == 1) { c = 0; } else { let period = 2 * (len - 1); c = c % period; if (c < 0) { c += period; } if (c >= len) { c = period - c; } }',
    wrap: 'c = c % len; if (c < 0) { c += len; }',
  };
  return {
    key: `pad/${mode}`,
    params: PAD_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${EW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${EW_WG}u + li;
  if (i >= params.n) { return; }
  var rem = i;
  var src = 0u;
  var stride = 1u;
  var inside = true;
${R.map((k) => {
  const d = MAX_BCAST_RANK - 1 - k;
  return `  if (${k}u < params.rank) {
    let len = i32(params.id${d});
    var c = i32(rem % params.od${d}) - params.pb${d};
    rem = rem / params.od${d};
    ${map[mode]}
    src += u32(max(c, 0)) * stride;
    stride *= params.id${d};
  }`;
}).join('\n')}
  Y[i] = select(params.value, X[select(0u, src, inside)], inside);
}
`,
  };
}
