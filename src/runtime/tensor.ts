import type { GpuContext } from './device.js';
import { InputError, LimitError } from './errors.js';
import { BufferUsage, MapMode } from './gpu-constants.js';
import { formatShape, type Shape, sizeOf } from './shape.js';

/**
 * A float32 tensor in a GPU buffer (dense, row-major, NCHW at public boundaries). The
 * buffer comes from the context's pool and goes back to it on dispose(); reading the
 * values back is explicit and asynchronous.
 */
export class Tensor {
  readonly ctx: GpuContext;
  readonly shape: readonly number[];
  readonly buffer: GPUBuffer;
  readonly byteOffset: number;
  private readonly pooled: boolean;
  private released = false;

  constructor(ctx: GpuContext, shape: Shape, buffer: GPUBuffer, options: { byteOffset?: number; pooled?: boolean } = {}) {
    this.ctx = ctx;
    this.shape = [...shape];
    this.buffer = buffer;
    this.byteOffset = options.byteOffset ?? 0;
    this.pooled = options.pooled ?? false;
  }

  static empty(ctx: GpuContext, shape: Shape, label?: string): Tensor {
    const bytes = sizeOf(shape) * 4;
    if (bytes > ctx.limits.maxBufferSize) {
      throw new LimitError(`tensor ${formatShape(shape)} needs ${bytes} bytes, over the device's maxBufferSize ${ctx.limits.maxBufferSize}`);
    }
    return new Tensor(ctx, shape, ctx.pool.acquire(bytes, undefined, label), { pooled: true });
  }

  static fromData(ctx: GpuContext, data: Float32Array, shape: Shape, label?: string): Tensor {
    if (data.length !== sizeOf(shape)) {
      throw new InputError(`data of length ${data.length} does not fill shape ${formatShape(shape)}`);
    }
    const t = Tensor.empty(ctx, shape, label);
    writeFloats(ctx.device.queue, t.buffer, 0, data);
    return t;
  }

  get size(): number {
    return sizeOf(this.shape);
  }

  get byteLength(): number {
    return this.size * 4;
  }

  get isDisposed(): boolean {
    return this.released;
  }

  binding(): GPUBufferBinding {
    this.assertAlive();
    return { buffer: this.buffer, offset: this.byteOffset, size: Math.max(4, this.byteLength) };
  }

  /**
   * The same elements under another shape: a view that shares (and never frees) this
   * tensor's buffer, valid while this tensor is.
   */
  reshaped(shape: Shape): Tensor {
    this.assertAlive();
    if (sizeOf(shape) !== this.size) throw new InputError(`cannot view ${formatShape(this.shape)} as ${formatShape(shape)}`);
    return new Tensor(this.ctx, shape, this.buffer, { byteOffset: this.byteOffset });
  }

  /** Copies the values back to the CPU. */
  async read(): Promise<Float32Array> {
    const [out] = await readTensors(this.ctx, [this]);
    return out;
  }

  dispose(): void {
    if (this.released) return;
    this.released = true;
    if (this.pooled) this.ctx.pool.release(this.buffer);
  }

  assertAlive(): void {
    if (this.released) throw new InputError(`tensor ${formatShape(this.shape)} used after dispose()`);
  }
}

/**
 * queue.writeBuffer that is safe for every view: dawn.node crashes on views of a
 * SharedArrayBuffer, and large writes are chunked to bound staging memory.
 */
export function writeFloats(queue: GPUQueue, buffer: GPUBuffer, byteOffset: number, data: Float32Array | Uint32Array): void {
  const CHUNK = 64 << 20;
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < bytes.byteLength; off += CHUNK) {
    const part = bytes.subarray(off, Math.min(off + CHUNK, bytes.byteLength));
    const shared = typeof SharedArrayBuffer !== 'undefined' && part.buffer instanceof SharedArrayBuffer;
    queue.writeBuffer(buffer, byteOffset + off, (shared ? part.slice() : part) as Uint8Array<ArrayBuffer>);
  }
}

/**
 * Reads several tensors with one submission and one wait, through as few staging buffers as
 * the device's buffer size allows (usually one, so one mapAsync per read however many
 * tensors it reads).
 */
export async function readTensors(ctx: GpuContext, tensors: readonly Tensor[]): Promise<Float32Array[]> {
  const encoder = ctx.device.createCommandEncoder({ label: 'readback' });
  const cap = Math.max(4, Math.min(ctx.limits.maxBufferSize, 1 << 30));
  const groups: { bytes: number; parts: { t: Tensor; offset: number; size: number }[] }[] = [];
  for (const t of tensors) {
    t.assertAlive();
    const size = Math.ceil(t.byteLength / 4) * 4;
    let g = groups[groups.length - 1];
    if (!g || (g.bytes + size > cap && g.parts.length > 0)) groups.push((g = { bytes: 0, parts: [] }));
    g.parts.push({ t, offset: g.bytes, size });
    g.bytes += size;
  }
  const staging = groups.map((g) => {
    const buf = ctx.pool.acquire(Math.max(4, g.bytes), BufferUsage.MAP_READ | BufferUsage.COPY_DST, 'readback');
    for (const p of g.parts) if (p.size > 0) encoder.copyBufferToBuffer(p.t.buffer, p.t.byteOffset, buf, p.offset, p.size);
    return { buf, g };
  });
  ctx.device.queue.submit([encoder.finish()]);
  try {
    await ctx.guard(Promise.all(staging.map(({ buf }) => buf.mapAsync(MapMode.READ))));
    const out: Float32Array[] = [];
    for (const { buf, g } of staging) {
      const all = g.bytes > 0 ? new Float32Array(buf.getMappedRange(0, g.bytes)) : new Float32Array(0);
      for (const p of g.parts) out.push(all.slice(p.offset / 4, (p.offset + p.size) / 4));
      buf.unmap();
    }
    return out;
  } finally {
    for (const { buf } of staging) {
      if (buf.mapState === 'mapped') buf.unmap();
      ctx.pool.release(buf);
    }
  }
}
