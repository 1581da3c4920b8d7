import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, normalizeAxis, type Shape, shapeEquals, sizeOf } from '../runtime/shape.js';
import { EW_WG, MAX_BCAST_RANK } from '../shaders/elementwise.js';
import {
  PAD_GRAD_PARAMS, PAD_PARAMS, type PadMode, padGradKernel, padKernel, SLICE_COPY_PARAMS, SLICE_READ_PARAMS, sliceCopyKernel,
  sliceReadKernel,
} from '../shaders/layout.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';


export function concatOutputShape(where: string, inputs: Shape[], axis: number): number[] {
  if (inputs.length === 0) throw new ShapeError(where, 'Concat needs at least one input');
  const rank = inputs[0].length;
  const ax = normalizeAxis(axis, rank);
  if (ax < 0 || ax >= rank) throw new ShapeError(where, `Concat axis ${axis} out of range for rank ${rank}`);
  const out = [...inputs[0]];
  out[ax] = 0;
  for (const s of inputs) {
    if (s.length !== rank || s.some((d, i) => i !== ax && d !== inputs[0][i])) {
      throw new ShapeError(where, `Concat inputs ${inputs.map(formatShape).join(', ')} differ off axis ${ax}`);
    }
    out[ax] += s[ax];
  }
  return out;
}

export function lowerConcat(env: LowerEnv, xs: BoundTensor[], y: BoundTensor, axis: number): Lowered {
  const ax = normalizeAxis(axis, y.shape.length);
  const inner = sizeOf(y.shape.slice(ax + 1));
  const outAxis = y.shape[ax];
  let offset = 0;
  const out: Lowered = [];
  for (const x of xs) {
    const n = sizeOf(x.shape);
    if (n > 0) {
      out.push({
        kernel: sliceCopyKernel(),
        params: SLICE_COPY_PARAMS.pack({ n, in_axis: x.shape[ax], inner, out_axis: outAxis, offset }),
        buffers: [x.binding, y.binding],
        workgroups: grid1d(cdiv(n, EW_WG)),
        label: env.label,
        flops: 0,
      });
    }
    offset += x.shape[ax];
  }
  return out;
}

/** pads = [b_0 … b_{r−1}, e_0 … e_{r−1}] as in ONNX. */
export function padOutputShape(where: string, x: Shape, pads: number[]): number[] {
  const r = x.length;
  if (pads.length !== 2 * r) throw new ShapeError(where, `Pad needs ${2 * r} pad values for rank ${r}, got ${pads.length}`);
  const out = x.map((d, i) => d + pads[i] + pads[i + r]);
  if (out.some((d) => d < 0)) throw new ShapeError(where, `Pad with ${JSON.stringify(pads)} crops ${formatShape(x)} below zero`);
  return out;
}

export function lowerPad(env: LowerEnv, x: BoundTensor, y: BoundTensor, pads: number[], mode: PadMode, value: number): Lowered {
  const r = x.shape.length;
  if (r > MAX_BCAST_RANK) throw new ShapeError(env.label, `Pad supports rank <= ${MAX_BCAST_RANK}, got ${r}`);
  if (mode !== 'constant' && x.shape.some((d, i) => d === 0 && (pads[i] > 0 || pads[i + r] > 0))) {
    throw new ShapeError(env.label, `Pad mode ${mode} cannot pad an empty axis of ${formatShape(x.shape)}`);
  }
  const n = sizeOf(y.shape);
  const perAxis: Record<`od${number}` | `id${number}` | `pb${number}`, number> = {};
  const off = MAX_BCAST_RANK - r;
  for (let i = 0; i < MAX_BCAST_RANK; i++) {
    const j = i - off;
    perAxis[`od${i}`] = j < 0 ? 1 : y.shape[j];
    perAxis[`id${i}`] = j < 0 ? 1 : x.shape[j];
    perAxis[`pb${i}`] = j < 0 ? 0 : pads[j];
  }
  if (n === 0) return [];
  return [{
    kernel: padKernel(mode),
    params: PAD_PARAMS.pack({ n, rank: r, value, ...perAxis }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(n, EW_WG)),
    label: env.label,
    flops: 0,
  }];
}

/** y = x[..., start : start + y.shape[axis], ...] along `axis` (Concat's gradient for one input). */
export function lowerSlice(env: LowerEnv, x: BoundTensor, y: BoundTensor, axis: number, start: number): Lowered {
  const rank = x.shape.length;
  const ax = normalizeAxis(axis, rank);
  if (ax < 0 || ax >= rank) throw new ShapeError(env.label, `slice axis ${axis} out of range for ${formatShape(x.shape)}`);
  const len = y.shape[ax];
  const ok = y.shape.length === rank && y.shape.every((d, i) => i === ax || d === x.shape[i]);
  if (!ok || start < 0 || start + len > x.shape[ax]) {
    throw new ShapeError(env.label, `cannot slice ${formatShape(y.shape)} from ${formatShape(x.shape)} at ${start} on axis ${ax}`);
  }
  const n = sizeOf(y.shape);
  if (n === 0) return [];
  return [{
    kernel: sliceReadKernel(),
    params: SLICE_READ_PARAMS.pack({ n, out_axis: len, inner: sizeOf(x.shape.slice(ax + 1)), in_axis: x.shape[ax], offset: start }),
    buffers: [x.binding, y.binding],
    workgroups: grid1d(cdiv(n, EW_WG)),
    label: env.label,
    flops: 0,
  }];
}

/**
 * Gradient of lowerPad (any mode, negative pads included): gx[i] sums gy over every output
 * position the forward maps to i. Axes are independent, so it runs one 1-D gather per
 * padded axis (outermost first), through scratch buffers between them; with no padded
 * axis it is a copy.
 */
export function lowerPadGrad(env: LowerEnv, gy: BoundTensor, gx: BoundTensor, pads: number[], mode: PadMode): Lowered {
  const r = gx.shape.length;
  const want = padOutputShape(env.label, gx.shape, pads);
  if (!shapeEquals(want, gy.shape)) throw new ShapeError(env.label, `Pad gradient ${formatShape(gy.shape)} should be ${formatShape(want)}`);
  if (mode !== 'constant' && gx.shape.some((d, i) => d === 0 && (pads[i] > 0 || pads[i + r] > 0))) {
    throw new ShapeError(env.label, `Pad mode ${mode} cannot pad an empty axis of ${formatShape(gx.shape)}`);
  }
  if (sizeOf(gx.shape) === 0) return [];
  const axes = gx.shape.map((_, i) => i).filter((i) => pads[i] !== 0 || pads[i + r] !== 0);
  // With no padded axis the gradient is gy itself: one pass of the constant gather on the last axis copies it.
  if (axes.length === 0) axes.push(Math.max(r - 1, 0));
  const shape = [...gy.shape];
  let src = gy;
  const out: Lowered = [];
  axes.forEach((ax, k) => {
    const len = gx.shape[ax] ?? 1;
    const outLen = shape[ax] ?? 1;
    shape[ax] = len;
    const dst = k === axes.length - 1 ? gx : env.scratch(sizeOf(shape) * 4, [...shape]);
    const n = sizeOf(shape);
    out.push({
      kernel: padGradKernel(r === 0 ? 'constant' : mode),
      params: PAD_GRAD_PARAMS.pack({ n, len, out_len: outLen, inner: sizeOf(shape.slice(ax + 1)), pb: r === 0 ? 0 : pads[ax] }),
      buffers: [src.binding, dst.binding],
      workgroups: grid1d(cdiv(n, EW_WG)),
      label: env.label,
      flops: 0,
    });
    src = dst;
  });
  return out;
}
