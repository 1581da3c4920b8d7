import { type KernelDef, ParamLayout, elementwiseMain } from '../runtime/kernel.js';
import { EW_WG, MAX_BCAST_RANK } from './elementwise.js';

const R = Array.from({ length: MAX_BCAST_RANK }, (_, i) => i);

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
    body: `${elementwiseMain(EW_WG, 'params.n', `  let inner = i % params.inner;
  let a = (i / params.inner) % params.in_axis;
  let o = i / (params.inner * params.in_axis);
  Y[(o * params.out_axis + params.offset + a) * params.inner + inner] = X[i];`)}`,
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
    body: `${elementwiseMain(EW_WG, 'params.n', `  var rem = i;
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
  Y[i] = select(params.value, X[select(0u, src, inside)], inside);`)}`,
  };
}

export const SLICE_READ_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['out_axis', 'u32'],
  ['inner', 'u32'],
  ['in_axis', 'u32'],
  ['offset', 'u32'],
]);

/** Y (outer × out_axis × inner) = X's axis range [offset, offset + out_axis): Slice, and Concat's gradient. */
export function sliceReadKernel(): KernelDef {
  return {
    key: 'slice_read',
    params: SLICE_READ_PARAMS,
    storage: [
      { name: 'X', access: 'read', element: 'f32' },
      { name: 'Y', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(EW_WG, 'params.n', `  let inner = i % params.inner;
  let a = (i / params.inner) % params.out_axis;
  let o = i / (params.inner * params.out_axis);
  Y[i] = X[(o * params.in_axis + params.offset + a) * params.inner + inner];`)}`,
  };
}

export const PAD_GRAD_PARAMS = new ParamLayout([
  ['n', 'u32'],
  ['len', 'u32'],
  ['out_len', 'u32'],
  ['inner', 'u32'],
  ['pb', 'i32'],
]);

/**
 * Gradient of Pad along one axis (GY outer × out_len × inner → GX outer × len × inner):
 * GX[c] sums GY over every output coordinate o that padKernel maps to c, i.e. the preimage
 * of c under the mode's map of o − pb: {c + pb} (constant), that plus the whole border run
 * at either end (edge), c + pb + k·len (wrap), or the two residues ±c + pb modulo the
 * reflection period 2(len − 1) (reflect). Summed in increasing o per residue: deterministic.
 */
export function padGradKernel(mode: PadMode): KernelDef {
  const gather: Record<PadMode, string> = {
    constant: `  let o = c + params.pb;
  if (o >= 0 && o < od) { acc = GY[base + u32(o) * params.inner]; }`,
    edge: `  let lo = select(c + params.pb, 0, c == 0);
  let hi = select(c + params.pb, od - 1, c == len - 1);
  for (var o = max(lo, 0); o <= min(hi, od - 1); o++) { acc += GY[base + u32(o) * params.inner]; }`,
    wrap: `  var o = (c + params.pb) % len;
  if (o < 0) { o += len; }
  for (; o < od; o += len) { acc += GY[base + u32(o) * params.inner]; }`,
    reflect: `  if (len == 1) {
    for (var o = 0; o < od; o++) { acc += GY[base + u32(o) * params.inner]; }
  } else {
    let period = 2 * (len - 1);
    var r1 = (c + params.pb) % period;
    if (r1 < 0) { r1 += period; }
    var r2 = (params.pb - c) % period;
    if (r2 < 0) { r2 += period; }
    for (var o = r1; o < od; o += period) { acc += GY[base + u32(o) * params.inner]; }
    if (r2 != r1) {
      for (var o = r2; o < od; o += period) { acc += GY[base + u32(o) * params.inner]; }
    }
  }`,
  };
  return {
    key: `pad_grad/${mode}`,
    params: PAD_GRAD_PARAMS,
    storage: [
      { name: 'GY', access: 'read', element: 'f32' },
      { name: 'GX', access: 'read_write', element: 'f32' },
    ],
    body: `${elementwiseMain(EW_WG, 'params.n', `  let inner = i % params.inner;
  let c = i32((i / params.inner) % params.len);
  let outer = i / (params.inner * params.len);
  let len = i32(params.len);
  let od = i32(params.out_len);
  let base = outer * params.out_len * params.inner + inner;
  var acc = 0.0;
${gather[mode]}
  GX[i] = acc;`)}`,
  };
}
