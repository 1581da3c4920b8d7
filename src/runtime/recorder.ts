import type { GpuContext } from './device.js';
import { BufferUsage } from './gpu-constants.js';
import type { KernelDef } from './kernel.js';
import { writeFloats } from './tensor.js';

/** One kernel launch: the kernel, its packed parameters, its storage buffers in order, its grid. */
export interface Dispatch {
  kernel: KernelDef;
  params: Uint32Array | null;
  buffers: readonly GPUBufferBinding[];
  workgroups: readonly [number, number, number];
  /** What the launch belongs to (an ONNX node name, an op), for profiles. */
  label: string;
  /** Floating-point operations it performs, for throughput reports. */
  flops?: number;
}

/** A launch whose pipeline and bind group are already made: encoding it costs three calls. */
export interface PreparedDispatch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: readonly [number, number, number];
  label: string;
  flops: number;
}

export interface OpTiming {
  label: string;
  ms: number;
  flops: number;
}

const UNIFORM_ALIGN = 256;
const ARENA_BYTES = 64 * 1024;

/**
 * Writes the parameters of many launches into one uniform buffer, each at its own
 * 256-byte-aligned slot, uploaded with a single writeBuffer before the work is submitted.
 */
export class UniformArena {
  private readonly ctx: GpuContext;
  private readonly chunks: { buffer: GPUBuffer; mirror: Uint32Array; used: number }[] = [];

  constructor(ctx: GpuContext) {
    this.ctx = ctx;
  }

  /** Reserves a slot for `words`; returns the binding to use for it. */
  place(words: Uint32Array): GPUBufferBinding {
    const bytes = Math.ceil(words.byteLength / UNIFORM_ALIGN) * UNIFORM_ALIGN;
    let chunk = this.chunks[this.chunks.length - 1];
    if (!chunk || chunk.used + bytes > ARENA_BYTES) {
      const buffer = this.ctx.pool.acquire(ARENA_BYTES, BufferUsage.UNIFORM | BufferUsage.COPY_DST, 'uniforms');
      chunk = { buffer, mirror: new Uint32Array(ARENA_BYTES / 4), used: 0 };
      this.chunks.push(chunk);
    }
    chunk.mirror.set(words, chunk.used / 4);
    const binding = { buffer: chunk.buffer, offset: chunk.used, size: words.byteLength };
    chunk.used += bytes;
    return binding;
  }

  /** Uploads every slot; queue order puts the upload before the work submitted next. */
  upload(): void {
    for (const c of this.chunks) if (c.used > 0) writeFloats(this.ctx.device.queue, c.buffer, 0, c.mirror.subarray(0, c.used / 4));
  }

  /** Returns the buffers to the pool; safe right after submit, since later writes are queue-ordered. */
  release(): void {
    for (const c of this.chunks) this.ctx.pool.release(c.buffer);
    this.chunks.length = 0;
  }
}

export function bindGroupFor(ctx: GpuContext, d: Dispatch, arena: UniformArena): { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup } {
  const k = ctx.pipelines.get(d.kernel);
  const entries: GPUBindGroupEntry[] = [];
  if (d.kernel.params) {
    if (!d.params) throw new Error(`kernel ${d.kernel.key} launched without parameters`);
    entries.push({ binding: 0, resource: arena.place(d.params) });
  }
  if (d.buffers.length !== d.kernel.storage.length) {
    throw new Error(`kernel ${d.kernel.key} takes ${d.kernel.storage.length} buffers, got ${d.buffers.length}`);
  }
  d.buffers.forEach((b, i) => entries.push({ binding: i + 1, resource: b }));
  const bindGroup = ctx.device.createBindGroup({ label: d.label, layout: k.layout, entries });
  return { pipeline: k.pipeline, bindGroup };
}

/**
 * Records one pass of work into a single command encoder: kernel launches go into one
 * compute pass (or one pass per launch when profiling, for per-op timestamps), buffer
 * copies between them. Nothing is read back here.
 */
export class Recorder {
  readonly ctx: GpuContext;
  private readonly encoder: GPUCommandEncoder;
  private readonly arena: UniformArena;
  private pass: GPUComputePassEncoder | null = null;
  private readonly profile: boolean;
  private readonly querySets: GPUQuerySet[] = [];
  private readonly labels: { label: string; flops: number }[] = [];
  private submitted = false;
  private readonly deferred: (() => void)[] = [];
  private static readonly QUERIES_PER_SET = 4096;

  constructor(ctx: GpuContext, options: { profile?: boolean; label?: string } = {}) {
    this.ctx = ctx;
    this.encoder = ctx.device.createCommandEncoder({ label: options.label });
    this.arena = new UniformArena(ctx);
    this.profile = (options.profile ?? false) && ctx.hasTimestamps;
  }

  get profiling(): boolean {
    return this.profile;
  }

  private computePass(label: string, flops: number): GPUComputePassEncoder {
    if (this.profile) {
      const i = this.labels.length;
      const setIndex = Math.floor((2 * i) / Recorder.QUERIES_PER_SET);
      if (setIndex >= this.querySets.length) {
        this.querySets.push(this.ctx.device.createQuerySet({ type: 'timestamp', count: Recorder.QUERIES_PER_SET }));
      }
      const q = (2 * i) % Recorder.QUERIES_PER_SET;
      this.labels.push({ label, flops });
      return this.encoder.beginComputePass({
        label,
        timestampWrites: { querySet: this.querySets[setIndex], beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 },
      });
    }
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    return this.pass;
  }

  private endPass(pass: GPUComputePassEncoder): void {
    if (this.profile) pass.end();
  }

  run(p: PreparedDispatch): void {
    const pass = this.computePass(p.label, p.flops);
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, p.bindGroup);
    pass.dispatchWorkgroups(p.workgroups[0], p.workgroups[1], p.workgroups[2]);
    this.endPass(pass);
  }

  dispatch(d: Dispatch): void {
    const { pipeline, bindGroup } = bindGroupFor(this.ctx, d, this.arena);
    this.run({ pipeline, bindGroup, workgroups: d.workgroups, label: d.label, flops: d.flops ?? 0 });
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (bytes === 0) return;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /**
   * Runs `fn` once the recorded work is submitted (or the recorder is discarded): what the
   * work reads may be released then, since later queue writes are ordered after it.
   */
  defer(fn: () => void): void {
    if (this.submitted) throw new Error('Recorder already submitted');
    this.deferred.push(fn);
  }

  get isSubmitted(): boolean {
    return this.submitted;
  }

  /** Drops the recorded work without submitting it and returns what the recorder took. */
  discard(): void {
    if (this.submitted) return;
    this.submitted = true;
    this.arena.release();
    for (const s of this.querySets) s.destroy();
    this.runDeferred();
  }

  private runDeferred(): void {
    const fns = this.deferred.splice(0);
    let first: unknown = null;
    for (const fn of fns) {
      try {
        fn();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== null) throw first;
  }

  /** Finishes the encoder and submits it; the returned promise yields per-launch GPU times when profiling. */
  submit(): Promise<OpTiming[]> | null {
    if (this.submitted) throw new Error('Recorder already submitted');
    this.submitted = true;
    if (this.pass) this.pass.end();
    let timings: Promise<OpTiming[]> | null = null;
    let resolveBuf: GPUBuffer | null = null;
    let readBuf: GPUBuffer | null = null;
    const n = this.labels.length;
    if (this.profile && n > 0) {
      const bytes = 2 * n * 8;
      resolveBuf = this.ctx.device.createBuffer({ size: bytes, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
      readBuf = this.ctx.device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
      let done = 0;
      for (const qs of this.querySets) {
        const count = Math.min(Recorder.QUERIES_PER_SET, 2 * n - done);
        this.encoder.resolveQuerySet(qs, 0, count, resolveBuf, done * 8);
        done += count;
      }
      this.encoder.copyBufferToBuffer(resolveBuf, 0, readBuf, 0, bytes);
    }
    this.arena.upload();
    try {
      this.ctx.device.queue.submit([this.encoder.finish()]);
    } finally {
      this.arena.release();
      this.runDeferred();
    }
    if (readBuf && resolveBuf) {
      const rb = readBuf;
      const qb = resolveBuf;
      const labels = this.labels;
      const sets = this.querySets;
      timings = this.ctx.guard(rb.mapAsync(1)).then(() => {
        const t = new BigInt64Array(rb.getMappedRange());
        const out = labels.map(({ label, flops }, i) => ({ label, flops, ms: Number(t[2 * i + 1] - t[2 * i]) / 1e6 }));
        rb.unmap();
        rb.destroy();
        qb.destroy();
        for (const s of sets) s.destroy();
        return out;
      });
    } else {
      for (const s of this.querySets) s.destroy();
    }
    return timings;
  }
}
