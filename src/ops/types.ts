import type { GpuContext } from '../runtime/device.js';
import type { Dispatch } from '../runtime/recorder.js';
import type { Shape } from '../runtime/shape.js';

/** A tensor as a kernel sees it: its shape and where its elements lie. */
export interface BoundTensor {
  shape: Shape;
  binding: GPUBufferBinding;
}

/** Everything a lowering may consult: device limits and the adapter kind for kernel choice. */
export interface LowerEnv {
  ctx: GpuContext;
  /** Label of the launches (the ONNX node name or the op). */
  label: string;
}

export type Lowered = Dispatch[];

export function bound(shape: Shape, buffer: GPUBuffer, byteOffset = 0): BoundTensor {
  let n = 1;
  for (const d of shape) n *= d;
  return { shape, binding: { buffer, offset: byteOffset, size: Math.max(4, n * 4) } };
}

/** Integer ceil-division. */
export function cdiv(a: number, b: number): number {
  return Math.floor((a + b - 1) / b);
}
