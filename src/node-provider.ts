import { type GpuProvider, setDefaultGpuProvider, setWaitHooks } from './runtime/device.js';

/**
 * The Dawn instance must outlive every adapter and device made from it: if it is garbage
 * collected, Dawn's worker threads are torn down under live devices and the process crashes.
 */
let instance: GpuProvider | null = null;

/**
 * Registers Dawn for Node (npm `webgpu`) as the WebGPU provider. Imported by the Node
 * entry point only, so browser bundles never see it.
 */
setDefaultGpuProvider(async () => {
  if (!process.env.XDG_RUNTIME_DIR) {
    // Mesa warns on every start without it; any private writable folder will do.
    const { mkdirSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = `${tmpdir()}/camgpu-xdg-${process.getuid?.() ?? 'user'}`;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  if (!instance) {
    const { create } = await import('webgpu');
    const flags = (process.env.CAMGPU_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean);
    instance = create(flags) as unknown as GpuProvider;
  }
  return instance;
});

/**
 * While camgpu waits for the GPU, dawn.node re-queues its event polling with setImmediate,
 * spinning one core at 100 %; on lavapipe that halves the cores doing the actual work
 * (measured: a matmul 1.5× slower). During those waits setImmediate becomes a 1 ms timer:
 * at most ~1 ms of extra latency per wait, and passes are submitted whole before waiting.
 */
let waiting = 0;
let originalSetImmediate: typeof setImmediate | null = null;
setWaitHooks({
  enter() {
    if (waiting++ === 0) {
      originalSetImmediate = globalThis.setImmediate;
      const polled = ((fn: (...a: unknown[]) => void, ...args: unknown[]) => setTimeout(fn, 1, ...args)) as unknown as typeof setImmediate;
      globalThis.setImmediate = polled;
    }
  },
  exit() {
    if (--waiting === 0 && originalSetImmediate) {
      globalThis.setImmediate = originalSetImmediate;
      originalSetImmediate = null;
    }
  },
});
