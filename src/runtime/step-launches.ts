import type { GpuContext } from './device.js';
import { BufferUsage } from './gpu-constants.js';
import type { KernelDef } from './kernel.js';
import type { PreparedDispatch, Recorder } from './recorder.js';
import { writeFloats } from './tensor.js';

/** A launch whose uniform parameters partly change from one submission to the next. */
export interface StepLaunch {
  kernel: KernelDef;
  /** Values of the uniform fields (those given to encode() replace them), or `params` already packed and fixed. */
  values?: Readonly<Record<string, number>>;
  params?: Uint32Array | null;
  buffers: readonly GPUBufferBinding[];
  workgroups: readonly [number, number, number];
  label: string;
  flops?: number;
}

const ALIGN = 256;

/**
 * Launches prepared once (pipelines, bind groups, one uniform buffer with a slot per launch)
 * whose per-step uniform fields (a step count, a learning rate, an offset into an index
 * buffer) are packed again and uploaded with a single writeBuffer when they are encoded.
 * The upload is queue-ordered before the submission that follows it, and a later upload
 * after it, so each submission sees its own values: encode at most once per submission.
 */
export class StepLaunches {
  private readonly ctx: GpuContext;
  private readonly launches: readonly StepLaunch[];
  private readonly prepared: PreparedDispatch[];
  private readonly offsets: number[];
  private readonly uniform: GPUBuffer | null;
  private readonly mirror: Uint32Array;

  private constructor(ctx: GpuContext, launches: readonly StepLaunch[], prepared: PreparedDispatch[], offsets: number[], uniform: GPUBuffer | null, words: number) {
    this.ctx = ctx;
    this.launches = launches;
    this.prepared = prepared;
    this.offsets = offsets;
    this.uniform = uniform;
    this.mirror = new Uint32Array(words);
  }

  static async create(ctx: GpuContext, launches: readonly StepLaunch[], label = 'step-uniforms'): Promise<StepLaunches> {
    await ctx.pipelines.warm(launches.map((l) => l.kernel));
    let total = 0;
    const offsets = launches.map((l) => {
      if (!l.kernel.params) return -1;
      const off = total;
      total += Math.ceil(l.kernel.params.byteSize / ALIGN) * ALIGN;
      return off;
    });
    const uniform = total > 0 ? ctx.device.createBuffer({ size: total, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label }) : null;
    const prepared = launches.map((l, i): PreparedDispatch => {
      if (l.buffers.length !== l.kernel.storage.length) throw new Error(`kernel ${l.kernel.key} takes ${l.kernel.storage.length} buffers, got ${l.buffers.length}`);
      const k = ctx.pipelines.get(l.kernel);
      const entries: GPUBindGroupEntry[] = [];
      if (l.kernel.params) entries.push({ binding: 0, resource: { buffer: uniform!, offset: offsets[i], size: l.kernel.params.byteSize } });
      l.buffers.forEach((b, j) => entries.push({ binding: j + 1, resource: b }));
      return { pipeline: k.pipeline, bindGroup: ctx.device.createBindGroup({ label: l.label, layout: k.layout, entries }), workgroups: l.workgroups, label: l.label, flops: l.flops ?? 0 };
    });
    return new StepLaunches(ctx, launches, prepared, offsets, uniform, total / 4);
  }

  get flops(): number {
    return this.prepared.reduce((s, p) => s + p.flops, 0);
  }

  /** Packs every launch's fixed values with the `dynamic` ones its layout declares, uploads them, and records the launches. */
  encode(rec: Recorder, dynamic: Readonly<Record<string, number>> = {}): void {
    if (this.uniform) {
      this.launches.forEach((l, i) => {
        const layout = l.kernel.params;
        if (!layout) return;
        if (!l.values) {
          if (!l.params) throw new Error(`launch '${l.label}' has neither uniform values nor packed parameters`);
          this.mirror.set(l.params, this.offsets[i] / 4);
          return;
        }
        const values: Record<string, number> = { ...l.values };
        for (const [name] of layout.fields) if (name in dynamic) values[name] = dynamic[name];
        this.mirror.set(layout.pack(values), this.offsets[i] / 4);
      });
      writeFloats(this.ctx.device.queue, this.uniform, 0, this.mirror);
    }
    for (const p of this.prepared) rec.run(p);
  }

  dispose(): void {
    this.uniform?.destroy();
  }
}
