import type { GpuContext } from './device.js';
import type { KernelDef } from './kernel.js';
import type { Dispatch, PreparedDispatch, Recorder } from './recorder.js';
import { writeFloats } from './tensor.js';
import { BufferUsage } from './gpu-constants.js';

/** A tensor slot of a plan: a buffer the plan owns (or borrows) and the shape it holds. */
export interface PlanSlot {
  shape: number[];
  buffer: GPUBuffer;
  bytes: number;
}

/**
 * A compiled pass for fixed shapes: every launch has its pipeline, bind group and
 * parameters ready, intermediate tensors share buffers by liveness, and encoding the pass
 * costs a few calls per launch. Inputs are copied in and results copied out by the caller.
 */
export class ExecutionPlan {
  readonly ctx: GpuContext;
  readonly inputs: ReadonlyMap<string, PlanSlot>;
  readonly results: ReadonlyMap<string, PlanSlot>;
  readonly steps: readonly PreparedDispatch[];
  readonly flops: number;
  /** Bytes of the plan's own intermediate buffers (weights not included). */
  readonly arenaBytes: number;
  private readonly owned: GPUBuffer[];
  private readonly uniformBuffer: GPUBuffer | null;
  private disposed = false;

  private constructor(ctx: GpuContext, inputs: Map<string, PlanSlot>, results: Map<string, PlanSlot>, steps: PreparedDispatch[], owned: GPUBuffer[], uniformBuffer: GPUBuffer | null, arenaBytes: number) {
    this.ctx = ctx;
    this.inputs = inputs;
    this.results = results;
    this.steps = steps;
    this.owned = owned;
    this.uniformBuffer = uniformBuffer;
    this.arenaBytes = arenaBytes;
    this.flops = steps.reduce((s, d) => s + d.flops, 0);
  }

  /**
   * Prepares launches: compiles all their pipelines concurrently, writes all parameters
   * into one uniform buffer, and creates the bind groups once.
   */
  static async build(ctx: GpuContext, dispatches: Dispatch[], inputs: Map<string, PlanSlot>, results: Map<string, PlanSlot>, owned: GPUBuffer[], arenaBytes: number): Promise<ExecutionPlan> {
    const kernels = new Map<string, KernelDef>();
    for (const d of dispatches) kernels.set(d.kernel.key, d.kernel);
    await ctx.pipelines.warm(kernels.values());
    const align = 256;
    let total = 0;
    const offsets = dispatches.map((d) => {
      if (!d.params) return -1;
      const off = total;
      total += Math.ceil(d.params.byteLength / align) * align;
      return off;
    });
    let uniformBuffer: GPUBuffer | null = null;
    const steps: PreparedDispatch[] = [];
    try {
      if (total > 0) {
        uniformBuffer = ctx.device.createBuffer({ size: total, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label: 'plan-uniforms' });
        const mirror = new Uint32Array(total / 4);
        dispatches.forEach((d, i) => {
          if (d.params) mirror.set(d.params, offsets[i] / 4);
        });
        writeFloats(ctx.device.queue, uniformBuffer, 0, mirror);
      }
      dispatches.forEach((d, i) => {
        const k = ctx.pipelines.get(d.kernel);
        const entries: GPUBindGroupEntry[] = [];
        if (d.kernel.params && d.params) entries.push({ binding: 0, resource: { buffer: uniformBuffer!, offset: offsets[i], size: d.params.byteLength } });
        d.buffers.forEach((b, j) => entries.push({ binding: j + 1, resource: b }));
        steps.push({
          pipeline: k.pipeline,
          bindGroup: ctx.device.createBindGroup({ label: d.label, layout: k.layout, entries }),
          workgroups: d.workgroups,
          label: d.label,
          flops: d.flops ?? 0,
        });
      });
    } catch (e) {
      uniformBuffer?.destroy(); // the pooled buffers are the caller's to return
      throw e;
    }
    return new ExecutionPlan(ctx, inputs, results, steps, owned, uniformBuffer, arenaBytes);
  }

  encode(rec: Recorder): void {
    for (const s of this.steps) rec.run(s);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const b of this.owned) this.ctx.pool.release(b);
    this.uniformBuffer?.destroy();
  }
}
