import type { GpuContext } from '../runtime/device.js';
import type { Dispatch } from '../runtime/recorder.js';
import type { BoundTensor, LowerEnv } from './types.js';

/**
 * A lowering environment for work outside a compiled plan (tests, eager ops): derived
 * buffers (packed or transformed weights) and scratch buffers come from the pool, derived
 * ones are computed by launches placed before the op's own, and everything is returned
 * to the pool by release() once the work is submitted.
 */
export class EagerEnv implements LowerEnv {
  readonly ctx: GpuContext;
  readonly label: string;
  private readonly buffers: GPUBuffer[] = [];
  /** Launches that compute derived buffers; encode them before the op's launches. */
  readonly prelude: Dispatch[] = [];

  constructor(ctx: GpuContext, label: string) {
    this.ctx = ctx;
    this.label = label;
  }

  scratch(bytes: number, shape: number[]): BoundTensor {
    const buffer = this.ctx.pool.acquire(bytes, undefined, `${this.label}/scratch`);
    this.buffers.push(buffer);
    return { shape, binding: { buffer, offset: 0, size: Math.max(4, bytes) } };
  }

  derive(_key: string, _source: BoundTensor, bytes: number, shape: number[], make: (dst: BoundTensor) => Dispatch[]): BoundTensor {
    const dst = this.scratch(bytes, shape);
    this.prelude.push(...make(dst));
    return dst;
  }

  /** The op's launches preceded by those of its derived buffers. */
  all(dispatches: Dispatch[]): Dispatch[] {
    return [...this.prelude, ...dispatches];
  }

  release(): void {
    for (const b of this.buffers) this.ctx.pool.release(b);
    this.buffers.length = 0;
  }
}
