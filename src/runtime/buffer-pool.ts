import { LimitError } from './errors.js';
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
  /** Buffers handed out now. */
  inUseBuffers: number;
  /** Free buffers destroyed to keep the cache within its cap, by trim() or when idle. */
  destroyed: number;
}

export interface PoolOptions {
  /**
   * Most bytes of free buffers kept for reuse (default 256 MiB): releasing past it destroys
   * the least recently released free buffers.
   */
  maxFreeBytes?: number;
  /** After this many milliseconds without an acquire or release, every free buffer is destroyed (default 10 s; Infinity: never). */
  idleMs?: number;
}

export const DEFAULT_POOL_FREE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_POOL_IDLE_MS = 10_000;

/**
 * GPU buffers are expensive to create and must be returned: tensors take buffers from here
 * and give them back when their lifetime ends, and a buffer of the same class and usage is
 * reused instead of a new allocation. The free buffers kept are bounded (maxFreeBytes, least
 * recently released destroyed first) and all destroyed by trim() or after idleMs idle.
 */
export class BufferPool {
  private readonly device: GPUDevice;
  private readonly free = new Map<string, GPUBuffer[]>();
  /** Every free buffer, least recently released first. */
  private readonly freeOrder = new Set<GPUBuffer>();
  private readonly owned = new Map<GPUBuffer, { key: string; size: number }>();
  private stats: PoolStats = { inUseBytes: 0, freeBytes: 0, created: 0, reused: 0, inUseBuffers: 0, destroyed: 0 };
  readonly maxFreeBytes: number;
  readonly idleMs: number;
  private lastUse = 0;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(device: GPUDevice, options: PoolOptions = {}) {
    this.device = device;
    this.maxFreeBytes = Math.max(0, options.maxFreeBytes ?? DEFAULT_POOL_FREE_BYTES);
    this.idleMs = options.idleMs ?? DEFAULT_POOL_IDLE_MS;
  }

  acquire(bytes: number, usage: number = TENSOR_USAGE, label?: string): GPUBuffer {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`BufferPool.acquire: ${bytes} is not a byte size`);
    const size = sizeClass(bytes);
    const key = `${usage}:${size}`;
    const list = this.free.get(key);
    let buffer = list?.pop();
    if (buffer) {
      this.freeOrder.delete(buffer);
      this.stats.reused++;
      this.stats.freeBytes -= size;
    } else {
      if (size > this.device.limits.maxBufferSize) {
        throw new LimitError(`a ${bytes}-byte buffer${label ? ` (${label})` : ''} exceeds the device's maxBufferSize ${this.device.limits.maxBufferSize}`);
      }
      buffer = this.device.createBuffer({ size, usage, label });
      this.owned.set(buffer, { key, size });
      this.stats.created++;
    }
    this.stats.inUseBytes += size;
    this.stats.inUseBuffers++;
    this.touch();
    return buffer;
  }

  release(buffer: GPUBuffer): void {
    const meta = this.owned.get(buffer);
    if (!meta) throw new Error('BufferPool.release: buffer was not acquired from this pool');
    if (this.freeOrder.has(buffer)) throw new Error('BufferPool.release: buffer released twice');
    let list = this.free.get(meta.key);
    if (!list) this.free.set(meta.key, (list = []));
    list.push(buffer);
    this.freeOrder.add(buffer);
    this.stats.inUseBytes -= meta.size;
    this.stats.inUseBuffers--;
    this.stats.freeBytes += meta.size;
    while (this.stats.freeBytes > this.maxFreeBytes && this.freeOrder.size > 0) {
      this.destroyFree(this.freeOrder.values().next().value as GPUBuffer);
    }
    this.touch();
  }

  private destroyFree(b: GPUBuffer): void {
    const meta = this.owned.get(b)!;
    const list = this.free.get(meta.key)!;
    list.splice(list.indexOf(b), 1);
    if (list.length === 0) this.free.delete(meta.key);
    this.freeOrder.delete(b);
    this.owned.delete(b);
    this.stats.freeBytes -= meta.size;
    this.stats.destroyed++;
    b.destroy();
  }

  /** Notes activity, and arms the idle trim while free buffers are kept. */
  private touch(): void {
    this.lastUse = Date.now();
    if (this.idleTimer || !Number.isFinite(this.idleMs) || this.stats.freeBytes === 0) return;
    const arm = (ms: number) => {
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null;
        const idle = Date.now() - this.lastUse;
        if (idle >= this.idleMs) this.trim();
        else if (this.stats.freeBytes > 0) arm(this.idleMs - idle);
      }, ms);
      // Never keep a process alive just to trim.
      (this.idleTimer as { unref?: () => void }).unref?.();
    };
    arm(this.idleMs);
  }

  /** Destroys the buffers kept for reuse (memory goes back to the driver). */
  trim(): void {
    for (const b of [...this.freeOrder]) this.destroyFree(b);
  }

  destroyAll(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    for (const b of this.owned.keys()) b.destroy();
    this.owned.clear();
    this.free.clear();
    this.freeOrder.clear();
    this.stats = { ...this.stats, inUseBytes: 0, freeBytes: 0, inUseBuffers: 0 };
  }

  getStats(): PoolStats {
    return { ...this.stats };
  }
}
