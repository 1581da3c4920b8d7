import { type KernelDef, kernelWgsl } from './kernel.js';

/**
 * Compute pipelines keyed by their kernel's compile-time identity (kernel kind plus tile
 * sizes and fused options). Shapes are uniforms, so one pipeline serves every shape of its
 * kind; compiling is the dominant cold-start cost on software adapters.
 */
export interface CompiledKernel {
  readonly def: KernelDef;
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
}

export interface PipelineStats {
  pipelines: number;
  /** Wall time spent in pipeline creation calls (synchronous creation, or async until ready). */
  compileMs: number;
}

export class PipelineCache {
  private readonly device: GPUDevice;
  private readonly compiled = new Map<string, CompiledKernel>();
  private readonly pending = new Map<string, Promise<CompiledKernel>>();
  private compileMs = 0;

  constructor(device: GPUDevice) {
    this.device = device;
  }

  private layoutFor(def: KernelDef): GPUBindGroupLayout {
    const entries: GPUBindGroupLayoutEntry[] = [];
    if (def.params) entries.push({ binding: 0, visibility: 4 /* COMPUTE */, buffer: { type: 'uniform' } });
    def.storage.forEach((s, i) =>
      entries.push({
        binding: i + 1,
        visibility: 4,
        buffer: { type: s.access === 'read' ? 'read-only-storage' : 'storage' },
      }),
    );
    return this.device.createBindGroupLayout({ label: def.key, entries });
  }

  private descriptor(def: KernelDef, layout: GPUBindGroupLayout): GPUComputePipelineDescriptor {
    const module = this.device.createShaderModule({ code: kernelWgsl(def), label: def.key });
    return {
      label: def.key,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    };
  }

  get(def: KernelDef): CompiledKernel {
    const hit = this.compiled.get(def.key);
    if (hit) return hit;
    const t0 = performance.now();
    const layout = this.layoutFor(def);
    const pipeline = this.device.createComputePipeline(this.descriptor(def, layout));
    const k: CompiledKernel = { def, pipeline, layout };
    this.compileMs += performance.now() - t0;
    this.compiled.set(def.key, k);
    return k;
  }

  /** Compiles kernels concurrently; drivers that compile on worker threads overlap them. */
  async warm(defs: Iterable<KernelDef>): Promise<void> {
    const jobs: Promise<CompiledKernel>[] = [];
    const t0 = performance.now();
    for (const def of defs) {
      if (this.compiled.has(def.key)) continue;
      let job = this.pending.get(def.key);
      if (!job) {
        const layout = this.layoutFor(def);
        job = this.device.createComputePipelineAsync(this.descriptor(def, layout)).then((pipeline) => {
          const k: CompiledKernel = { def, pipeline, layout };
          this.compiled.set(def.key, k);
          this.pending.delete(def.key);
          return k;
        });
        this.pending.set(def.key, job);
      }
      jobs.push(job);
    }
    if (jobs.length === 0) return;
    await Promise.all(jobs);
    this.compileMs += performance.now() - t0;
  }

  getStats(): PipelineStats {
    return { pipelines: this.compiled.size, compileMs: this.compileMs };
  }

  clear(): void {
    this.compiled.clear();
  }
}
