import '../../src/node-provider.js';
import { GpuContext } from '../../src/runtime/device.js';

let shared: Promise<GpuContext> | null = null;

/** One device per test file (vitest runs files in separate workers). */
export function gpu(): Promise<GpuContext> {
  shared ??= GpuContext.create();
  return shared;
}
