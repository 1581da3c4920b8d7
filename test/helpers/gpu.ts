import '../../src/node-provider.js';
import { GpuContext, type KernelFamily } from '../../src/runtime/device.js';

let shared: Promise<GpuContext> | null = null;

/** One device per test file (vitest runs files in separate workers). */
export function gpu(): Promise<GpuContext> {
  shared ??= GpuContext.create();
  return shared;
}

const families = new Map<KernelFamily, Promise<GpuContext>>();

/** A device whose kernels are of the given family (both run on lavapipe, so both are tested). */
export function gpuFamily(family: KernelFamily): Promise<GpuContext> {
  let c = families.get(family);
  if (!c) families.set(family, (c = GpuContext.create({ kernels: family })));
  return c;
}

export const KERNEL_FAMILIES: readonly KernelFamily[] = ['sg8', 'generic'];
