import type { GpuContext } from '../runtime/device.js';
import type { Dispatch } from '../runtime/recorder.js';
import type { Shape } from '../runtime/shape.js';

/** A tensor as a kernel sees it: its shape and where its elements lie. */
export interface BoundTensor {
  shape: Shape;
  binding: GPUBufferBinding;
}

/** Everything a lowering may consult or ask for: the device (limits, kernel family) and buffers. */
export interface LowerEnv {
  ctx: GpuContext;
  /** Label of the launches (the ONNX node name or the op). */
  label: string;
  /** A buffer the op's launches may use as they like; it is free again after the op. */
  scratch(bytes: number, shape: number[]): BoundTensor;
  /**
   * A buffer computed from `source` by the launches `make` returns (packed or transformed
   * weights). Derived from a constant, it is computed once and cached under `key`;
   * derived from a run-time tensor, it is recomputed in every pass before the op.
   */
  derive(key: string, source: BoundTensor, bytes: number, shape: number[], make: (dst: BoundTensor) => Dispatch[]): BoundTensor;
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
