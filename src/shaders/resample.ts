import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout } from '../runtime/kernel.js';

export const RESAMPLE_WG = 256;

export const BILINEAR_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['in_h', 'u32'],
  ['in_w', 'u32'],
  ['out_h', 'u32'],
  ['out_w', 'u32'],
  ['scaled_h', 'u32'],
  ['scaled_w', 'u32'],
  ['off_y', 'u32'],
  ['off_x', 'u32'],
  ['out_off', 'u32'],
]);

/**
 * Bilinear resampling of NCHW planes. The output is a window (off_y, off_x, out_h, out_w)
 * of the input scaled to scaled_h × scaled_w, so resize, and resize-then-center-crop, are
 * one launch. Half-pixel centers (align_corners=false, PyTorch's and ONNX's default) or
 * corner-aligned sampling (align_corners=true) are compile-time variants.
 */
export function bilinearKernel(alignCorners: boolean): KernelDef {
  const coord = alignCorners
    ? (o: string, inn: string, sc: string) => `select(0.0, f32(${o}) * f32(${inn} - 1u) / f32(${sc} - 1u), ${sc} > 1u)`
    : (o: string, inn: string, sc: string) => `max((f32(${o}) + 0.5) * f32(${inn}) / f32(${sc}) - 0.5, 0.0)`;
  return {
    key: `bilinear/${alignCorners ? 'corners' : 'half_pixel'}`,
    params: BILINEAR_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${RESAMPLE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${RESAMPLE_WG}u + li;
  if (i >= params.n) { return; }
  let ox = i % params.out_w;
  let oy = (i / params.out_w) % params.out_h;
  let plane = i / (params.out_w * params.out_h);
  let sy = ${coord('oy + params.off_y', 'params.in_h', 'params.scaled_h')};
  let sx = ${coord('ox + params.off_x', 'params.in_w', 'params.scaled_w')};
  let y0 = min(u32(floor(sy)), params.in_h - 1u);
  let x0 = min(u32(floor(sx)), params.in_w - 1u);
  let y1 = min(y0 + 1u, params.in_h - 1u);
  let x1 = min(x0 + 1u, params.in_w - 1u);
  let wy = sy - f32(y0);
  let wx = sx - f32(x0);
  let base = plane * params.in_h * params.in_w;
  let top = mix(X[base + y0 * params.in_w + x0], X[base + y0 * params.in_w + x1], wx);
  let bottom = mix(X[base + y1 * params.in_w + x0], X[base + y1 * params.in_w + x1], wx);
  Y[params.out_off + i] = mix(top, bottom, wy);
}
`,
  };
}

export const UNPACK_PARAMS = new ParamLayout([
  ['pixels', 'u32'],
  ['out_off', 'u32'],
]);

/** Packed RGBA8 pixels to a planar float [3, H, W] image in [0, 1] (alpha dropped). */
export function unpackRgbaKernel(): KernelDef {
  return {
    key: 'unpack_rgba8',
    params: UNPACK_PARAMS,
    storage: [
      { name: 'P', access: 'read', element: 'u32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${RESAMPLE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${RESAMPLE_WG}u + li;
  if (i >= params.pixels) { return; }
  let rgba = unpack4x8unorm(P[i]);
  Y[params.out_off + i] = rgba.x;
  Y[params.out_off + params.pixels + i] = rgba.y;
  Y[params.out_off + 2u * params.pixels + i] = rgba.z;
}
`,
  };
}
