import { BufferPool, type PoolOptions } from './buffer-pool.js';
import { DeviceLostError, GpuError, NoAdapterError } from './errors.js';
import { PipelineCache } from './pipeline-cache.js';

/** What a WebGPU entry point must provide: navigator.gpu in browsers, dawn.node's GPU in Node. */
export interface GpuProvider {
  requestAdapter(options?: GPURequestAdapterOptions): Promise<GPUAdapter | null>;
}

let defaultProvider: (() => Promise<GpuProvider>) | null = null;

/** Called around every wait for the GPU (see setWaitHooks). */
export interface WaitHooks {
  enter(): void;
  exit(): void;
}

let waitHooks: WaitHooks | null = null;

/**
 * Lets a platform adjust how the event loop behaves while camgpu waits for the GPU: Dawn
 * for Node polls pending promises with a setImmediate loop that keeps one CPU core busy,
 * which on a CPU adapter takes that core away from the GPU work being waited for.
 */
export function setWaitHooks(hooks: WaitHooks | null): void {
  waitHooks = hooks;
}

/** The Node entry point registers dawn.node here; browsers fall back to navigator.gpu. */
export function setDefaultGpuProvider(factory: () => Promise<GpuProvider>): void {
  defaultProvider = factory;
}

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation of WebGPU (lavapipe/llvmpipe, SwiftShader, WARP): no shared-memory win. */
  isSoftware: boolean;
}

/**
 * 'sg8': subgroup-broadcast kernels for 8-lane subgroups where every buffer load is a
 * per-lane loop (lavapipe; see src/shaders/sg8.ts). 'generic': register-tiled kernels that
 * need no optional feature.
 */
export type KernelFamily = 'sg8' | 'generic';

export interface GpuContextOptions {
  provider?: GpuProvider;
  powerPreference?: GPUPowerPreference;
  /** Ask for timestamp queries when the adapter offers them (default true). */
  timestamps?: boolean;
  /** Kernel family: 'auto' picks the one measured fastest for the adapter. */
  kernels?: 'auto' | KernelFamily;
  /**
   * Cap, below the device's storage binding limit, on the bytes of one activation tensor:
   * batches are split into passes that respect it, which bounds memory per pass.
   * Constants are split by the device limit alone.
   */
  activationBindingLimit?: number;
  /** Bounds on the free buffers the pool keeps for reuse (see PoolOptions). */
  pool?: PoolOptions;
}

/** The limits camgpu raises to the adapter's maximum. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxBindGroups',
  'maxUniformBufferBindingSize',
] as const;

/**
 * One WebGPU device and everything cached against it: the buffer pool and the pipeline
 * cache. Errors the device reports asynchronously are kept and rethrown at the next
 * synchronization point (readback), so no failure is silent and no wait hangs on a lost device.
 */
export class GpuContext {
  readonly adapter: GPUAdapter;
  readonly device: GPUDevice;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  readonly adapterInfo: AdapterDescription;
  readonly hasTimestamps: boolean;
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  /** Largest activation tensor one pass may bind: the device limit, or a smaller cap. */
  readonly activationBindingLimit: number;
  readonly kernelFamily: KernelFamily;
  private lostError: DeviceLostError | null = null;
  private firstError: GpuError | null = null;
  private readonly lostPromise: Promise<never>;

  private constructor(adapter: GPUAdapter, device: GPUDevice, info: AdapterDescription, hasTimestamps: boolean, kernelFamily: KernelFamily, activationBindingLimit?: number, poolOptions?: PoolOptions) {
    this.adapter = adapter;
    this.kernelFamily = kernelFamily;
    this.activationBindingLimit = Math.min(device.limits.maxStorageBufferBindingSize, activationBindingLimit ?? Infinity);
    this.device = device;
    this.limits = device.limits;
    this.features = new Set([...device.features]);
    this.adapterInfo = info;
    this.hasTimestamps = hasTimestamps;
    this.pool = new BufferPool(device, poolOptions);
    this.pipelines = new PipelineCache(device);
    this.lostPromise = device.lost.then((info) => {
      this.lostError = new DeviceLostError(info.reason ?? 'unknown', info.message || 'no message');
      throw this.lostError;
    });
    // Callers race their waits against this promise; keep Node from reporting it unhandled.
    this.lostPromise.catch(() => undefined);
    device.addEventListener('uncapturederror', (event) => {
      const err = (event as GPUUncapturedErrorEvent).error;
      const kind = err.constructor?.name === 'GPUOutOfMemoryError' ? 'out-of-memory' : 'validation';
      if (!this.firstError) this.firstError = new GpuError(kind, err.message);
    });
  }

  static async create(options: GpuContextOptions = {}): Promise<GpuContext> {
    const provider = options.provider ?? (await resolveProvider());
    let adapter: GPUAdapter | null = null;
    try {
      adapter = await provider.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
    } catch (e) {
      throw new NoAdapterError(`requestAdapter failed: ${(e as Error).message}`);
    }
    if (!adapter) throw new NoAdapterError('requestAdapter() returned null (no Vulkan/Metal/D3D12 driver that WebGPU accepts)');
    const requiredLimits: Record<string, number> = {};
    for (const name of RAISED_LIMITS) {
      const v = (adapter.limits as unknown as Record<string, number | undefined>)[name];
      if (typeof v === 'number') requiredLimits[name] = v;
    }
    const wantTimestamps = options.timestamps !== false && adapter.features.has('timestamp-query');
    const raw = adapter.info;
    const text = `${raw.vendor} ${raw.architecture} ${raw.device} ${raw.description}`.toLowerCase();
    const isSoftware = /llvmpipe|lavapipe|swiftshader|software|warp|microsoft basic/.test(text);
    const sizes = raw as unknown as { subgroupMinSize?: number; subgroupMaxSize?: number };
    const sg8Capable = adapter.features.has('subgroups') && sizes.subgroupMinSize === 8 && sizes.subgroupMaxSize === 8;
    const wanted = options.kernels ?? 'auto';
    if (wanted === 'sg8' && !sg8Capable) throw new NoAdapterError(`kernels 'sg8' need 8-lane subgroups; adapter '${raw.description || raw.device}' has none`);
    // sg8 is measured on lavapipe only; other adapters get kernels that assume nothing.
    const kernelFamily: KernelFamily = wanted === 'auto' ? (sg8Capable && /llvmpipe|lavapipe/.test(text) ? 'sg8' : 'generic') : wanted;
    const requiredFeatures: GPUFeatureName[] = [];
    if (wantTimestamps) requiredFeatures.push('timestamp-query');
    if (kernelFamily === 'sg8') requiredFeatures.push('subgroups' as GPUFeatureName);
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
    const info: AdapterDescription = { vendor: raw.vendor, architecture: raw.architecture, device: raw.device, description: raw.description, isSoftware };
    return new GpuContext(adapter, device, info, wantTimestamps, kernelFamily, options.activationBindingLimit, options.pool);
  }

  get isLost(): boolean {
    return this.lostError !== null;
  }

  /** Throws the first asynchronous device error, if any, and clears it. */
  throwIfFailed(): void {
    if (this.lostError) throw this.lostError;
    const err = this.firstError;
    if (err) {
      this.firstError = null;
      throw err;
    }
  }

  /** Waits for `promise`, but fails fast with DeviceLostError when the device goes away first. */
  async guard<T>(promise: Promise<T>): Promise<T> {
    if (this.lostError) throw this.lostError;
    waitHooks?.enter();
    try {
      const result = await Promise.race([promise, this.lostPromise]);
      this.throwIfFailed();
      return result;
    } finally {
      waitHooks?.exit();
    }
  }

  /** Completes when all submitted work has finished. */
  async sync(): Promise<void> {
    await this.guard(this.device.queue.onSubmittedWorkDone());
  }

  /** Returns the pool's free buffers to the driver (buffers in use are untouched). */
  trim(): void {
    this.pool.trim();
  }

  /** Frees everything: the pool's buffers (free and in use), the pipelines, the device. */
  destroy(): void {
    this.pipelines.clear();
    this.pool.destroyAll();
    this.device.destroy();
  }
}

async function resolveProvider(): Promise<GpuProvider> {
  if (defaultProvider) return defaultProvider();
  const nav = (globalThis as { navigator?: { gpu?: GpuProvider } }).navigator;
  if (nav?.gpu) return nav.gpu;
  throw new NoAdapterError('neither navigator.gpu nor a Node WebGPU provider is available (import camgpu/node in Node)');
}
