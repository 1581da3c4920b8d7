import { BufferUsage } from './gpu-constants.js';

/** Usage of every tensor buffer: bound as storage, and copyable both ways. */
export const TENSOR_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;

/**
 * Rounds a byte size up to its pool class: 256-byte granularity below 4 KiB, then four
 * classes per power of two, so a reused buffer wastes at most 25 %.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  if (b <= 4096) return b;
  const p = 2 ** Math.floor(Math.log2(b));
  const quarter = p / 4;
  return Math.ceil(b / quarter) * quarter;
}

export interface PoolStats {
  /** Bytes of buffers currently handed out. */
  inUseBytes: number;
  /** Bytes of buffers kept for reuse. */
  freeBytes: number;
  /** Buffers created since the pool was made. */
  created: number;
  /** Acquisitions served from the free lists. */
  reused: number;
}

/**
 * GPU buffers are expensive to create and must be returned: tensors take buffers from here
 * and give them back when their lifetime ends, and a buffer of the same class and usage is
 * reused instead of a new allocation.
 */
export class BufferPool {
  private readonly device: GPUDevice;
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly owned = new Map<GPUBuffer, { key: string; size: number }>();
  private stats: PoolStats = { inUseBytes: 0, freeBytes: 0, created: 0, reused: 0 };

  constructor(device: GPUDevice) {
    this.device = device;
  }

  acquire(bytes: number, usage: number = TENSOR_USAGE, label?: string): GPUBuffer {
    const size = sizeClass(bytes);
    const key = `${usage}:${size}`;
    const list = this.free.get(key);
    let buffer = list?.pop();
    if (buffer) {
      this.stats.reused++;
      this.stats.freeBytes -= size;
    } else {
      buffer = this.device.createBuffer({ size, usage, label });
      this.owned.set(buffer, { key, size });
      this.stats.created++;
    }
    this.stats.inUseBytes += size;
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const meta = this.owned.get(buffer);
    if (!meta) throw new Error('BufferPool.release: buffer was not acquired from this pool');
    let list = this.free.get(meta.key);
    if (!list) this.free.set(meta.key, (list = []));
    if (list.includes(buffer)) throw new Error('BufferPool.release: buffer released twice');
    list.push(buffer);
    this.stats.inUseBytes -= meta.size;
    this.stats.freeBytes += meta.size;
  }

  /** Destroys the buffers kept for reuse (memory goes back to the driver). */
  trim(): void {
    for (const list of this.free.values()) {
      for (const b of list) {
        this.owned.delete(b);
        b.destroy();
      }
    }
    this.free.clear();
    this.stats.freeBytes = 0;
  }

  destroyAll(): void {
    for (const b of this.owned.keys()) b.destroy();
    this.owned.clear();
    this.free.clear();
    this.stats = { ...this.stats, inUseBytes: 0, freeBytes: 0 };
  }

  getStats(): PoolStats {
    return { ...this.stats };
  }
}
