import type { GpuContext } from '../../src/runtime/device.js';
import { BufferUsage } from '../../src/runtime/gpu-constants.js';

/** Counts mapAsync calls on every GPU buffer of the adapter from now until restore(). */
export function watchReadbacks(ctx: GpuContext): { count(): number; restore(): void } {
  const probe = ctx.device.createBuffer({ size: 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const proto = Object.getPrototypeOf(probe) as { mapAsync: (...a: unknown[]) => Promise<void> };
  probe.destroy();
  const original = proto.mapAsync;
  let n = 0;
  proto.mapAsync = function (this: unknown, ...a: unknown[]) {
    n++;
    return original.apply(this, a);
  };
  return { count: () => n, restore: () => void (proto.mapAsync = original) };
}
