import { ShapeError } from '../runtime/errors.js';
import { grid1d } from '../runtime/kernel.js';
import { formatShape, shapeEquals, sizeOf } from '../runtime/shape.js';
import { poolArgmaxKernel, poolGradKernel, poolGradTiledMaxKernel } from '../shaders/grad-pool.js';
import { POOL_PARAMS, POOL_WG } from '../shaders/pool.js';
import { globalPoolOutputShape, type Pool2dAttrs, poolOutputShape } from './pool.js';
import { reduceGradFromInput } from './reduce.js';
import { type BoundTensor, cdiv, type LowerEnv, type Lowered } from './types.js';

/**
 * Gradient of MaxPool / AveragePool, gathered per input element (no atomics). Max pooling
 * first records each window's first maximum (scan order kh-major, then kw, as PyTorch),
 * then every input element sums gy over the windows that chose it; average pooling
 * distributes gy / count with the forward kernel's count rule.
 */
export function lowerPoolGrad(env: LowerEnv, kind: 'max' | 'avg', x: BoundTensor, gy: BoundTensor, gx: BoundTensor, a: Pool2dAttrs): Lowered {
  const ys = poolOutputShape(env.label, x.shape, a);
  if (!shapeEquals(ys, gy.shape)) throw new ShapeError(env.label, `pooling gradient ${formatShape(gy.shape)} should be ${formatShape(ys)}`);
  if (!shapeEquals(x.shape, gx.shape)) throw new ShapeError(env.label, `input gradient ${formatShape(gx.shape)} differs from input ${formatShape(x.shape)}`);
  const nx = sizeOf(x.shape);
  const ny = sizeOf(ys);
  if (nx === 0) return [];
  const geometry = {
    H: x.shape[2], W: x.shape[3], OH: ys[2], OW: ys[3], KH: a.kernel[0], KW: a.kernel[1],
    stride_h: a.strides[0], stride_w: a.strides[1], pad_h: a.pads[0], pad_w: a.pads[1], pad_h_end: a.pads[2], pad_w_end: a.pads[3],
    dil_h: a.dilations[0], dil_w: a.dilations[1], count_include_pad: a.countIncludePad ? 1 : 0,
  };
  const gather = (buffers: GPUBufferBinding[]) => ({
    kernel: poolGradKernel(kind),
    params: POOL_PARAMS.pack({ n: nx, ...geometry }),
    buffers,
    workgroups: grid1d(cdiv(nx, POOL_WG)),
    label: env.label,
    flops: nx * a.kernel[0] * a.kernel[1],
  });
  if (kind === 'avg') return [gather([gy.binding, gx.binding])];
  const tiles = a.strides[0] === a.kernel[0] && a.strides[1] === a.kernel[1] && a.dilations.every((d) => d === 1) && a.pads.every((p) => p === 0)
    && ys[2] * a.kernel[0] === x.shape[2] && ys[3] * a.kernel[1] === x.shape[3];
  if (tiles) {
    return [{
      kernel: poolGradTiledMaxKernel(),
      params: POOL_PARAMS.pack({ n: ny, ...geometry }),
      buffers: [x.binding, gy.binding, gx.binding],
      workgroups: grid1d(cdiv(ny, POOL_WG)),
      label: env.label,
      flops: 2 * nx,
    }];
  }
  const arg = env.scratch(ny * 4, [ny]);
  return [
    {
      kernel: poolArgmaxKernel(),
      params: POOL_PARAMS.pack({ n: ny, ...geometry }),
      buffers: [x.binding, arg.binding],
      workgroups: grid1d(cdiv(ny, POOL_WG)),
      label: env.label,
      flops: ny * a.kernel[0] * a.kernel[1],
    },
    gather([gy.binding, arg.binding, gx.binding]),
  ];
}

/** Gradient of GlobalAveragePool (gy / (H·W) everywhere) and GlobalMaxPool (gy to each plane's first maximum). */
export function lowerGlobalPoolGrad(env: LowerEnv, kind: 'max' | 'avg', x: BoundTensor, gy: BoundTensor, gx: BoundTensor): Lowered {
  const ys = globalPoolOutputShape(env.label, x.shape);
  if (!shapeEquals(ys, gy.shape)) throw new ShapeError(env.label, `global pooling gradient ${formatShape(gy.shape)} should be ${formatShape(ys)}`);
  const spatial = x.shape.map((_, i) => i).slice(2);
  return reduceGradFromInput(env, kind === 'avg' ? 'mean' : 'max', x, gy, gx, spatial);
}
