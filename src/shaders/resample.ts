import { type KernelDef, LINEAR_GROUP_WGSL, ParamLayout, elementwiseMain } from '../runtime/kernel.js';

export const RESAMPLE_WG = 256;

/**
 * Geometry of a bilinear resample, shared by the forward kernel and its adjoint: n is the
 * number of invocations (outputs forward, input pixels backward); window_off is where the
 * output window starts in its buffer.
 */
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
  ['window_off', 'u32'],
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
    body: `${elementwiseMain(RESAMPLE_WG, 'params.n', `  let ox = i % params.out_w;
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
  Y[params.window_off + i] = mix(top, bottom, wy);`)}`,
  };
}

export const UNPACK_PARAMS = new ParamLayout([
  ['pixels', 'u32'],
  ['out_off', 'u32'],
]);

/**
 * Packed RGBA8 pixels to planar floats in [0, 1], alpha dropped: [3, H, W] RGB, or
 * [1, H, W] luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, as PIL's convert('L')) for
 * grayscale models.
 */
export function unpackRgbaKernel(channels: 1 | 3 = 3): KernelDef {
  const store = channels === 3
    ? `Y[params.out_off + i] = rgba.x;
  Y[params.out_off + params.pixels + i] = rgba.y;
  Y[params.out_off + 2u * params.pixels + i] = rgba.z;`
    : 'Y[params.out_off + i] = dot(rgba.xyz, vec3<f32>(0.299, 0.587, 0.114));';
  return {
    key: `unpack_rgba8/${channels}`,
    params: UNPACK_PARAMS,
    storage: [
      { name: 'P', access: 'read', element: 'u32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(RESAMPLE_WG, 'params.pixels', `  let rgba = unpack4x8unorm(P[i]);
  ${store}`)}`,
  };
}

/**
 * The adjoint of bilinearKernel, gathered per input pixel (n = input elements): the pixel
 * sums gy over the output pixels whose four taps include it, each times its tap weight.
 * Output rows (columns) map monotonically to source rows, so those whose taps can reach
 * source row iy form one range, bounded conservatively from the inverse map (source rows
 * iy−1 … iy+1, one output of margin each side; the edge rows also take the clamped
 * outputs); each candidate then recomputes the forward's taps with the forward's own
 * float expressions, so the weights are exactly those the forward used.
 */
export function bilinearGradKernel(alignCorners: boolean): KernelDef {
  const coord = alignCorners
    ? (o: string, inn: string, sc: string) => `select(0.0, f32(${o}) * f32(${inn} - 1u) / f32(${sc} - 1u), ${sc} > 1u)`
    : (o: string, inn: string, sc: string) => `max((f32(${o}) + 0.5) * f32(${inn}) / f32(${sc}) - 0.5, 0.0)`;
  // [lo, hi] of window outputs (before clamping) whose source coordinate can lie in [c − 1, c + 1].
  const range = alignCorners
    ? `  if (sc <= 1u || inn == 1u) { return vec2<i32>(0, i32(out) - 1); }
  let ratio = f32(sc - 1u) / f32(inn - 1u);
  var lo = i32(floor(f32(i32(c) - 1) * ratio)) - i32(off) - 1;
  var hi = i32(ceil(f32(c + 1u) * ratio)) - i32(off) + 1;`
    : `  let ratio = f32(sc) / f32(inn);
  var lo = i32(floor((f32(c) - 0.5) * ratio - 0.5)) - i32(off) - 1;
  var hi = i32(ceil((f32(c) + 1.5) * ratio - 0.5)) - i32(off) + 1;`;
  return {
    key: `bilinear_grad/${alignCorners ? 'corners' : 'half_pixel'}`,
    params: BILINEAR_PARAMS,
    storage: [
      { name: 'GY', access: 'read', element: 'f32' },
      { name: 'GX', access: 'read_write', element: 'f32' },
    ],
    body: `${LINEAR_GROUP_WGSL}
fn out_range(c: u32, inn: u32, out: u32, sc: u32, off: u32) -> vec2<i32> {
${range}
  if (c == 0u) { lo = 0; }
  if (c == inn - 1u) { hi = i32(out) - 1; }
  return vec2<i32>(max(lo, 0), min(hi, i32(out) - 1));
}

// Weight of source index c in the forward's interpolation at output o (0 when not a tap).
fn tap_weight(s: f32, c: u32, inn: u32) -> f32 {
  let i0 = min(u32(floor(s)), inn - 1u);
  let i1 = min(i0 + 1u, inn - 1u);
  let w = s - f32(i0);
  return select(0.0, 1.0 - w, i0 == c) + select(0.0, w, i1 == c);
}

@compute @workgroup_size(${RESAMPLE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${RESAMPLE_WG}u + li;
  if (i >= params.n) { return; }
  let ix = i % params.in_w;
  let iy = (i / params.in_w) % params.in_h;
  let plane = i / (params.in_w * params.in_h);
  let ry = out_range(iy, params.in_h, params.out_h, params.scaled_h, params.off_y);
  let rx = out_range(ix, params.in_w, params.out_w, params.scaled_w, params.off_x);
  let base = params.window_off + plane * params.out_h * params.out_w;
  var acc = 0.0;
  for (var oy = ry.x; oy <= ry.y; oy++) {
    let sy = ${coord('u32(oy) + params.off_y', 'params.in_h', 'params.scaled_h')};
    let wy = tap_weight(sy, iy, params.in_h);
    if (wy == 0.0) { continue; }
    var row = 0.0;
    for (var ox = rx.x; ox <= rx.y; ox++) {
      let sx = ${coord('u32(ox) + params.off_x', 'params.in_w', 'params.scaled_w')};
      let wx = tap_weight(sx, ix, params.in_w);
      row = fma(wx, GY[base + u32(oy) * params.out_w + u32(ox)], row);
    }
    acc = fma(wy, row, acc);
  }
  GX[i] = acc;
}
`,
  };
}
