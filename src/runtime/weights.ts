import type { GpuContext } from './device.js';
import { LimitError } from './errors.js';
import { BufferUsage } from './gpu-constants.js';
import { type Dispatch, Recorder } from './recorder.js';
import { writeFloats } from './tensor.js';
import { type HostTensor, toFloat32 } from './host-tensor.js';

const WEIGHT_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;

/** One uploaded piece of a constant: rows [rowOffset, rowOffset + rows) of its leading axis. */
export interface WeightChunk {
  buffer: GPUBuffer;
  bytes: number;
  rowOffset: number;
  rows: number;
}

/**
 * Model constants on the GPU, uploaded once and shared by every plan of the model.
 * A constant's name identifies its content within a model (folded constants carry the
 * names of the nodes they were folded from).
 */
export class WeightStore {
  private readonly ctx: GpuContext;
  private readonly chunks = new Map<string, WeightChunk[]>();
  private readonly derivedBuffers = new Map<string, GPUBuffer>();
  private bytes = 0;

  constructor(ctx: GpuContext) {
    this.ctx = ctx;
  }

  get totalBytes(): number {
    return this.bytes;
  }

  /**
   * The constant split along its leading axis into pieces that each fit one storage
   * binding (VGG16's first dense layer is 411 MB; bindings hold 128 MiB).
   */
  chunked(name: string, t: HostTensor, where: string): WeightChunk[] {
    const hit = this.chunks.get(name);
    if (hit) return hit;
    const data = toFloat32(t);
    const limit = this.ctx.limits.maxStorageBufferBindingSize;
    const rows = t.dims.length > 0 ? t.dims[0] : 1;
    const rowBytes = rows > 0 ? (data.length / rows) * 4 : 4;
    if (rowBytes > limit) throw new LimitError(`${where}: one row of constant '${name}' [${t.dims}] is ${rowBytes} bytes, over the device's storage binding limit ${limit}`);
    const rowsPerChunk = Math.max(1, Math.floor(limit / Math.max(rowBytes, 4)));
    const out: WeightChunk[] = [];
    for (let r0 = 0; r0 < Math.max(rows, 1); r0 += rowsPerChunk) {
      const n = Math.min(rowsPerChunk, Math.max(rows, 1) - r0);
      const elems = (rows > 0 ? data.length / rows : data.length) * n;
      const bytes = Math.max(4, elems * 4);
      const buffer = this.ctx.device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: WEIGHT_USAGE, label: name });
      if (elems > 0) writeFloats(this.ctx.device.queue, buffer, 0, data.subarray(r0 * (elems / n), r0 * (elems / n) + elems));
      out.push({ buffer, bytes, rowOffset: r0, rows: n });
      this.bytes += bytes;
    }
    this.chunks.set(name, out);
    return out;
  }

  /** The constant in one binding; a clear error when it cannot fit one. */
  whole(name: string, t: HostTensor, where: string): WeightChunk {
    const c = this.chunked(name, t, where);
    if (c.length !== 1) {
      throw new LimitError(`${where}: constant '${name}' [${t.dims}] needs ${c.length} storage bindings; only Gemm weights are split across bindings`);
    }
    return c[0];
  }

  /**
   * A buffer computed on the GPU from constants (packed or transformed weights), once:
   * `make` returns the launches that fill it, submitted right away.
   */
  derived(key: string, bytes: number, make: (dst: GPUBuffer) => Dispatch[]): GPUBuffer {
    const hit = this.derivedBuffers.get(key);
    if (hit) return hit;
    const buffer = this.ctx.device.createBuffer({ size: Math.max(4, Math.ceil(bytes / 4) * 4), usage: WEIGHT_USAGE, label: key });
    const rec = new Recorder(this.ctx, { label: `derive ${key}` });
    for (const d of make(buffer)) rec.dispatch(d);
    rec.submit();
    this.derivedBuffers.set(key, buffer);
    this.bytes += bytes;
    return buffer;
  }

  dispose(): void {
    for (const list of this.chunks.values()) for (const c of list) c.buffer.destroy();
    for (const b of this.derivedBuffers.values()) b.destroy();
    this.derivedBuffers.clear();
    this.chunks.clear();
    this.bytes = 0;
  }
}
